"""The output half of "never lose or alter a user's data; fail clearly on anything" (docs/safety.md).

Outputs appear whole or not at all (every engine; re-used, foreign, symlinked --out; interrupted and killed
runs; umask), operating-system failures get one line and exit 2, and nothing in the data acts on the reader
(CSV formulas, Markdown, terminal escape sequences, HTML). Each check runs the real command on real files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from labelqa import atomic
from labelqa.cli.app import main
from labelqa.cli.console import os_error_text
from tests.conftest import REPO, noisy_dataset, write_parquet

REPORT = {"issues.parquet", "summary.json", "matrices.npy", "summary.md", "report.html"}  # issues.csv: with --csv
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@pytest.fixture
def data(tmp_path):
    given, _t, probs, _f = noisy_dataset(n=600, k=3, noise=0.1, seed=3)
    return write_parquet(tmp_path / "d.parquet", np.array(["ant", "bee", "cat"])[given], probs)


def one_error_line(err: str) -> str:
    assert err.startswith("labelqa: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "unexpected" not in err, err
    return err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".labelqa-") or p.name.endswith(".tmp"))


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "labelqa", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# --------------------------------------------------------------------------- whole or not at all
@pytest.mark.parametrize("engine", ["memory", "stream"])
def test_a_reused_out_holds_only_the_new_runs_files(data, tmp_path, capsys, engine):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "evaluation.json").write_text('{"stale": true}')
    (out / "issues.csv").write_text("old")
    assert main(["scan", str(data), "-o", str(out), "-q", "--engine", engine]) == 0
    assert {p.name for p in out.iterdir()} == REPORT  # no stale evaluation.json or issues.csv beside the new scan
    assert leftovers(tmp_path) == []


def test_the_report_folder_is_swapped_in_one_step(data, tmp_path, monkeypatch):
    """Publishing never leaves the old and the new report mixed: one exchange (or two renames) of folders."""
    import labelqa

    out = tmp_path / "rep"
    with labelqa.scan(str(data)) as result:
        labelqa.write_report(result, out)
    first_inode = out.stat().st_ino
    calls: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (calls.append((a, b)), real_replace(a, b)))
    with labelqa.scan(str(data), engine="stream", batch_size=128) as result:
        labelqa.write_report(result, out)
    assert calls == []  # no file-by-file publication
    assert out.stat().st_ino != first_inode and {p.name for p in out.iterdir()} == REPORT
    # without renameat2 (other systems, other filesystems): two renames, same outcome
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    with labelqa.scan(str(data), engine="stream", batch_size=128) as result:
        labelqa.write_report(result, out)
    assert {p.name for p in out.iterdir()} == REPORT and leftovers(tmp_path) == []


def test_a_folder_with_other_files_is_refused_before_any_work(data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "summary.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for argv in (["scan", str(data), "-o", str(out)],
                 ["evaluate", str(data), "--inject-noise", "uniform:0.1", "-o", str(out)]):
        assert main(argv) == 2
        err = one_error_line(capsys.readouterr().err)
        assert "'notes.txt'" in err and "labelqa did not write" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_the_current_folder_as_out_replaces_only_labelqas_files(data, tmp_path, monkeypatch, capsys):
    here = tmp_path / "here"
    here.mkdir()
    (here / "evaluation.json").write_text("{}")
    monkeypatch.chdir(here)
    assert main(["scan", str(data), "-o", ".", "-q"]) == 0
    assert {p.name for p in here.iterdir()} == REPORT
    (here / "data.parquet").write_bytes(data.read_bytes())
    assert main(["scan", str(data), "-o", ".", "-q"]) == 2
    assert "'data.parquet'" in one_error_line(capsys.readouterr().err)


def test_out_symlink_to_another_filesystem(data, tmp_path, capsys):
    """No "Invalid cross-device link": the staging folder sits beside the link's target; the link stays."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    target = shm / f"labelqa-test-{os.getpid()}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    try:
        link = tmp_path / "out"
        link.symlink_to(target)
        for _ in range(2):  # a new folder, then a re-used one
            assert main(["scan", str(data), "-o", str(link), "-q"]) == 0, capsys.readouterr().err
            assert link.is_symlink() and {p.name for p in target.iterdir()} == REPORT
        assert leftovers(shm) == [] and leftovers(tmp_path) == []
        # fix through a symlinked file: the target is replaced, the link kept
        dest = target / "clean.parquet"
        dest.write_text("old")
        (tmp_path / "clean.parquet").symlink_to(dest)
        assert main(["fix", str(data), "-o", str(tmp_path / "clean.parquet"), "--force", "-q"]) == 0
        assert (tmp_path / "clean.parquet").is_symlink() and pq.read_table(dest).num_rows == 600
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_dangling_symlinks_are_refused(data, tmp_path, capsys):
    (tmp_path / "out").symlink_to(tmp_path / "nowhere" / "rep")
    (tmp_path / "c.csv").symlink_to(tmp_path / "nowhere" / "c.csv")
    assert main(["scan", str(data), "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert main(["fix", str(data), "-o", str(tmp_path / "c.csv"), "--force"]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    assert main(["scan", str(data), "-o", str(tmp_path / "loop_a")]) == 2
    assert "symlink loop" in one_error_line(capsys.readouterr().err)


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_stage = tmp_path / f".labelqa-stage.{dead.pid}.0123abcd.rep"
    stale_stage.mkdir()
    (stale_stage / "issues.csv").write_text("x" * 1000)
    stale_tmp = tmp_path / f".labelqa-tmp.{dead.pid}.89abcdef.clean.csv"
    stale_tmp.write_text("partial")
    live = tmp_path / f".labelqa-stage.{os.getppid()}.0123abcd.rep"  # a live process's: left alone
    live.mkdir()
    legacy = tmp_path / ".rep.ab12cd34.tmp"  # labelqa < this version, untouched for two hours
    legacy.mkdir()
    (legacy / "report.html").write_text("old")
    for p in (legacy / "report.html", legacy):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    young_legacy = tmp_path / ".rep.zz12cd34.tmp"
    young_legacy.mkdir()
    other = tmp_path / ".labelqa-notes"  # not labelqa's pattern
    other.write_text("keep")
    assert main(["scan", str(data), "-o", str(tmp_path / "rep"), "-q"]) == 0
    assert not stale_stage.exists() and not legacy.exists()
    assert live.exists() and young_legacy.exists() and other.exists()
    assert main(["fix", str(data), "-o", str(tmp_path / "clean.csv"), "-q"]) == 0
    assert not stale_tmp.exists()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(data, tmp_path, mask):
    old = os.umask(mask)
    try:
        assert main(["scan", str(data), "-o", str(tmp_path / "rep"), "-q"]) == 0
        assert main(["fix", str(data), "-o", str(tmp_path / "clean.csv"), "-q"]) == 0
        assert main(["report", str(tmp_path / "rep"), "-q"]) == 0  # rebuilds report.html in place
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "rep").stat().st_mode) == 0o777 & ~mask
    for path in [*(tmp_path / "rep").iterdir(), tmp_path / "clean.csv"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_a_replaced_report_folder_keeps_its_mode(data, tmp_path):
    out = tmp_path / "rep"
    out.mkdir(mode=0o750)
    os.chmod(out, 0o750)
    assert main(["scan", str(data), "-o", str(out), "-q"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o750


def big_parquet(tmp_path: Path, n: int) -> Path:
    given, _t, probs, _f = noisy_dataset(n=n, k=10, noise=0.1, seed=5)
    return write_parquet(tmp_path / "big.parquet", given.astype(str), probs)


def wait_for(proc: subprocess.Popen, folder: Path, prefix: str, timeout: float = 60.0) -> bool:
    """Poll until a temporary name with ``prefix`` appears in ``folder`` (True) or the process ends (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if any(p.name.startswith(prefix) for p in folder.iterdir()):
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("engine", ["stream", "memory"])
def test_interrupted_scan_leaves_nothing(tmp_path, sig, code, engine):
    path = big_parquet(tmp_path, 300_000)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "summary.json").write_text("old report")
    proc = cli("scan", str(path), "-o", str(out), "-q", "--engine", engine, "--batch-size", "20000")
    if not wait_for(proc, tmp_path, ".labelqa-stage."):
        proc.wait()
        pytest.skip("the report was written before the staging folder could be seen")
    time.sleep(0.05)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("finished before the signal arrived")
    assert proc.returncode == code, err
    one_error_line(err)
    assert leftovers(tmp_path) == []
    assert [p.name for p in out.iterdir()] == ["summary.json"] and (out / "summary.json").read_text() == "old report"


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 2.5])
def test_interrupted_dask_scan_is_one_line_and_leaves_nothing(tmp_path, delay):
    """Stopped while the local cluster starts or works: one line, 143, the cluster shut down, nothing left."""
    pytest.importorskip("distributed")
    path = big_parquet(tmp_path, 300_000)
    proc = cli("scan", str(path), "-o", str(tmp_path / "rep"), "-q", "--engine", "dask", "--batch-size", "20000")
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("finished before the signal arrived")
    assert proc.returncode == 143, err
    assert "terminated by SIGTERM" in one_error_line(err)
    assert leftovers(tmp_path) == [] and not (tmp_path / "rep").exists()


@pytest.mark.slow
def test_dask_report_replaces_a_previous_one_whole(data, tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "rep"
    out.mkdir()
    (out / "evaluation.json").write_text("{}")
    assert main(["scan", str(data), "-o", str(out), "-q", "--engine", "dask"]) == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == REPORT and leftovers(tmp_path) == []


@pytest.mark.slow
def test_interrupted_fix_leaves_no_temporary_file(tmp_path):
    path = big_parquet(tmp_path, 300_000)
    proc = cli("fix", str(path), "-o", str(tmp_path / "clean.jsonl"), "-q")
    if not wait_for(proc, tmp_path, ".labelqa-tmp."):
        proc.wait()
        pytest.skip("fix finished before its temporary file could be seen")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    one_error_line(err)
    assert leftovers(tmp_path) == [] and not (tmp_path / "clean.jsonl").exists()


@pytest.mark.slow
def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path):
    path = big_parquet(tmp_path, 300_000)
    proc = cli("scan", str(path), "-o", str(tmp_path / "rep"), "-q", "--engine", "stream")
    if not wait_for(proc, tmp_path, ".labelqa-stage."):
        proc.wait()
        pytest.skip("the report was written before the staging folder could be seen")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert leftovers(tmp_path) != []  # SIGKILL cannot be caught: the staging folder stays...
    small = write_parquet(tmp_path / "s.parquet", *noisy_dataset(n=200, k=3)[::2])
    assert main(["scan", str(small), "-o", str(tmp_path / "rep"), "-q"]) == 0
    assert leftovers(tmp_path) == []  # ...until the next run writing beside it


def test_signals_unwind_restores_the_handlers():
    from labelqa.runtime import Terminated, signals_unwind

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as got, signals_unwind():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert got.value.signum == signal.SIGTERM and isinstance(got.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == before


# --------------------------------------------------------------------------- operating-system failures
def test_output_under_a_file(data, tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    assert main(["scan", str(data), "-o", str(tmp_path / "f.txt" / "rep")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "f.txt" in err and "not a folder" in err
    assert main(["fix", str(data), "-o", str(tmp_path / "f.txt" / "c.csv")]) == 2
    assert "not a folder" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "f.txt").read_text() == "x"


def test_over_long_names(data, tmp_path, capsys):
    long = "r" * 300
    assert main(["scan", str(data), "-o", str(tmp_path / long)]) == 2
    assert "file name too long" in one_error_line(capsys.readouterr().err)
    assert main(["fix", str(data), "-o", str(tmp_path / (long + ".csv"))]) == 2
    assert "file name too long" in one_error_line(capsys.readouterr().err)
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_output_folder(data, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["scan", str(data), "-o", str(ro / "rep")]) == 2
        assert "permission denied" in one_error_line(capsys.readouterr().err)
        assert main(["fix", str(data), "-o", str(ro / "c.csv")]) == 2
        assert "permission denied" in one_error_line(capsys.readouterr().err)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize(("code", "words"), [(errno.EROFS, "read-only file system"),
                                             (errno.EACCES, "permission denied"),
                                             (errno.ENOSPC, "no space left")])
def test_write_failures_mid_report(data, tmp_path, capsys, monkeypatch, code, words):
    """A failure while the files are written (a full or read-only disk) publishes nothing and names the file."""
    from labelqa.report import writers

    out = tmp_path / "rep"
    assert main(["scan", str(data), "-o", str(out), "-q"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(path, text):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(writers, "_write_text", fail)
    assert main(["scan", str(data), "-o", str(out), "-q"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert words in err and f"{out}/summary.json" in err  # the staging name is not shown
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and leftovers(tmp_path) == []


def _on_private_tmpfs(tmp_path, mount_options, source, extra=""):
    """Run scan and fix of ``source`` writing to a private tmpfs; returns (stdout, stderr lines, mount point)."""
    if not ROOT or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o {mount_options} tmpfs {mnt} || exit 99; "
              f"{sys.executable} -m labelqa scan {source} -o {mnt}/rep -q; echo scan=$?; "
              f"{sys.executable} -m labelqa fix {source} -o {mnt}/clean.csv -q; echo fix=$?; {extra.format(mnt=mnt)}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode == 99 or "scan=" not in proc.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert "scan=2" in proc.stdout and "fix=2" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout, proc.stderr.splitlines(), mnt


def test_a_full_disk_for_real(data, tmp_path):
    """A 256 kB tmpfs (root and unshare needed): scan and fix fail with one line, nothing is left there."""
    big = big_parquet(tmp_path, 20_000)
    stdout, lines, mnt = _on_private_tmpfs(tmp_path, "size=256k", big, extra="ls -A {mnt}")
    assert len(lines) == 2 and all("no space left" in line and "Traceback" not in line for line in lines), lines
    assert f"{mnt}/rep: no space left" in lines[0] and f"{mnt}/clean.csv: no space left" in lines[1]
    assert stdout.split("fix=2")[1].strip() == ""  # nothing left on the full disk


def test_a_read_only_disk_for_real(data, tmp_path):
    """A read-only tmpfs (root and unshare needed; root ignores folder permissions): one line each, exit 2."""
    _, lines, _ = _on_private_tmpfs(tmp_path, "ro,size=64k", data)
    assert len(lines) == 2 and all("read-only file system" in line and "-- choose an --out" in line
                                   for line in lines), lines


def test_os_error_lines_for_pyarrow_and_python_errors():
    text = os_error_text(OSError("Failed to open local file '/x/.labelqa-tmp.12.0123abcd.c.parquet'. "
                                 "Detail: [errno 28] No space left on device"))
    assert text.startswith("/x/c.parquet: no space left on the device (ENOSPC) -- ")
    text = os_error_text(PermissionError(errno.EACCES, "Permission denied", "/r/rep"))
    assert text == ("/r/rep: permission denied (EACCES) -- choose a path you may write to (e.g. another --out) "
                    "or fix its permissions")
    assert "(OSError) -- check the path" in os_error_text(OSError("something odd"))


def test_bad_scheduler_addresses(data, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    import labelqa.run.dask as dask_runner

    monkeypatch.setattr(dask_runner, "CONNECT_TIMEOUT_S", 1)
    for address, words in (("not an address", "missing port"), ("foo://h:1", "unknown address scheme"),
                           ("tcp://127.0.0.1:1", "Timed out")):
        assert main(["scan", str(data), "--engine", "dask", "--scheduler", address, "-o", str(tmp_path / "r")]) == 2
        err = one_error_line(capsys.readouterr().err)
        assert "cannot reach the Dask scheduler" in err and words in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_dask_errors_print_no_worker_traceback(tmp_path):
    pytest.importorskip("distributed")
    given, _t, probs, _f = noisy_dataset(n=3000, k=3, seed=1)
    probs = probs.copy()
    probs[2500] = [0.5, 0.6, 0.2]
    path = write_parquet(tmp_path / "bad.parquet", given, probs)
    proc = cli("scan", str(path), "--engine", "dask", "--batch-size", "500", "-o", str(tmp_path / "r"), "-q")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "row 2500" in one_error_line(err)


# --------------------------------------------------------------------------- nothing in the data acts on the reader
HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tcmd", "\rcr",
           "![x](https://host/p.png)", "a|b\r\nc", "\x1b]0;pwned\x07\x1b[2J", "\x1b]8;;http://x\x1b\\link",
           "<script>alert(1)</script>", "[bold]b[/bold]"]


@pytest.fixture
def hostile(tmp_path):
    """A CSV whose classes, ids and a pass-through column hold formula, Markdown, ANSI and HTML payloads."""
    k = len(HOSTILE)
    rng = np.random.default_rng(0)
    n = 40 * k
    given = np.arange(n) % k
    probs = np.full((n, k), 0.02)
    probs[np.arange(n), given] = 1 - 0.02 * (k - 1)
    flip = rng.random(n) < 0.25
    probs[flip] = np.roll(probs[flip], 1, axis=1)
    table = pa.table({
        "id": [f"{HOSTILE[i % k]}#{i}" for i in range(n)],
        "label": [HOSTILE[g] for g in given],
        "score": pa.array(-np.arange(n, dtype=np.int64)),  # negative numbers: not text, never changed
        "note": ["-5" if i % 2 else "=1+1" for i in range(n)],
        "pred_probs": ["[" + ",".join(f"{x:.4f}" for x in row) + "]" for row in probs],
    })
    path = tmp_path / "hostile `name`|x.csv"
    pacsv.write_csv(table, path)
    (tmp_path / "classes.json").write_text(json.dumps(HOSTILE))
    return path, tmp_path / "classes.json"


def formula_cells(table: pa.Table) -> list[str]:
    bad = []
    for col in table.columns:
        if pa.types.is_string(col.type):
            bad += [v for v in col.to_pylist() if v and v[0] in "=+-@\t\r" and not v.lstrip("+-").isdigit()]
    return bad


def test_issues_csv_and_fix_csv_neutralise_formulas(hostile, tmp_path, capsys):
    path, classes = hostile
    out = tmp_path / "rep"
    args = ["--classes-file", str(classes), "--id-col", "id"]
    assert main(["scan", str(path), "-o", str(out), "-q", "--csv", *args]) == 0, capsys.readouterr().err
    strings = pacsv.ConvertOptions(column_types={c: pa.string() for c in ("id", "given_label", "suggested_label")})
    csv = pacsv.read_csv(out / "issues.csv", convert_options=strings)
    assert formula_cells(csv) == []
    assert "'=HYPERLINK(\"http://x\",\"y\")" in csv.column("given_label").to_pylist()
    parquet = pq.read_table(out / "issues.parquet")  # the typed table keeps the exact text
    assert "=HYPERLINK(\"http://x\",\"y\")" in parquet.column("given_label").to_pylist()
    assert main(["fix", str(path), "-o", str(tmp_path / "clean.csv"), "-q", *args]) == 0
    text = (tmp_path / "clean.csv").read_text()
    clean = pacsv.read_csv(tmp_path / "clean.csv", convert_options=pacsv.ConvertOptions(
        column_types={"note": pa.string(), "id": pa.string(), "label": pa.string()}))
    assert formula_cells(clean) == []
    assert clean.column("score").to_pylist() == [-i for i in range(clean.num_rows)]  # numbers as written
    assert set(clean.column("note").to_pylist()) == {"-5", "'=1+1"}  # a numeric text cell stays
    assert "\n-1," in text or ",-1," in text
    # the option turns it off, by flag and by labelqa.toml
    assert main(["fix", str(path), "-o", str(tmp_path / "raw.csv"), "-q", "--csv-formulas", *args]) == 0
    raw = pacsv.read_csv(tmp_path / "raw.csv", convert_options=pacsv.ConvertOptions(column_types={"note": pa.string()}))
    assert set(raw.column("note").to_pylist()) == {"-5", "=1+1"}
    (tmp_path / "labelqa.toml").write_text("[scan]\ncsv = true\ncsv_formulas = true\n")  # both from the file
    assert main(["scan", str(path), "-o", str(tmp_path / "rep2"), "-q", "--config", str(tmp_path / "labelqa.toml"),
                 *args]) == 0
    assert formula_cells(pacsv.read_csv(tmp_path / "rep2" / "issues.csv", convert_options=strings)) != []


def test_summary_md_and_step_summary_are_inert(hostile, tmp_path, capsys, monkeypatch):
    path, classes = hostile
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    assert main(["scan", str(path), "-o", str(tmp_path / "rep"), "--format", "github", "--classes-file",
                 str(classes), "--id-col", "id"]) == 0
    annotations = capsys.readouterr().out
    assert "\x1b" not in annotations and all(line.startswith("::") for line in annotations.splitlines())
    for md in ((tmp_path / "rep" / "summary.md").read_text(), step.read_text()):
        assert "![x](" not in md and "<script>" not in md and "\x1b" not in md and "\r" not in md
        table_lines = [line for line in md.splitlines() if line.startswith("|")]
        widths = {line.count("|") - line.count("\\|") for line in table_lines if "| class |" in line or
                  line.startswith("| ") and " | " in line}
        assert all(line.rstrip().endswith("|") for line in table_lines)
        source = next(line for line in md.splitlines() if line.startswith("| Source |"))
        assert "``" in source and "\\|x.csv" in source  # a code span no backtick in the name can close
        assert widths  # tables found


def test_terminal_view_shows_no_escape_sequences(hostile, tmp_path, capsys, monkeypatch):
    path, classes = hostile
    monkeypatch.chdir(tmp_path)  # a short report path: the line naming it is not wrapped in an 80-column terminal
    assert main(["scan", str(path), "-o", "[red]rep", "--top", "40", "--classes-file", str(classes),
                 "--id-col", "id"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "\\x1b]0;pwned\\x07" in out and "[bold]b[/bold]" in out and "[red]rep/" in out


def test_progress_lines_show_control_characters(data, tmp_path, capsys):
    hostile = tmp_path / "x\x1b]0;pwned\x07[bold].parquet"
    hostile.write_bytes(data.read_bytes())
    assert main(["scan", str(hostile), "-o", str(tmp_path / "rep"), "-v", "--top", "0"]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err + captured.out and "x\\x1b]0;pwned\\x07[bold].parquet" in captured.err


def test_error_lines_show_control_characters(tmp_path, capsys):
    from labelqa.cli.console import error_text

    assert error_text("bad \x1b[2J\nlabel\r") == "bad \\x1b[2J label"
    assert len(error_text("x" * 10_000)) == 2000
    assert main(["scan", str(tmp_path / "\x1b[2Jmissing.parquet")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "\x1b" not in err and "\\x1b[2Jmissing.parquet" in err


def test_report_html_escapes_dataset_text(hostile, tmp_path, capsys):
    path, classes = hostile
    named = tmp_path / "<img src=x onerror=alert(1)>.csv"
    named.write_bytes(path.read_bytes())
    assert main(["scan", str(named), "-o", str(tmp_path / "rep"), "-q", "--classes-file", str(classes),
                 "--id-col", "id"]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    for payload in ("<script>alert(1)", "alert(1)</script>", "<img src=x", "onerror=alert(1)>"):
        assert payload not in html, payload
    import re

    for block in re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.DOTALL):
        assert "<!--" not in block and "</" not in block  # data cannot end its script element early
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_config_paths_are_relative_to_the_config_and_never_echoed(data, tmp_path, capsys, monkeypatch):
    conf = tmp_path / "ci"
    conf.mkdir()
    (conf / "classes.txt").write_text("ant\nbee\ncat\n")
    (conf / "labelqa.toml").write_text('[scan]\nclasses_file = "classes.txt"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["scan", str(data), "-o", "rep", "-q", "--config", str(conf / "labelqa.toml")]) == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("".join(f"password{i}=hunter{i}\n" for i in range(20)))
    (conf / "labelqa.toml").write_text(f'[scan]\nclasses_file = "{secret}"\n')
    assert main(["scan", str(data), "-o", "rep", "-q", "--config", str(conf / "labelqa.toml")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "hunter" not in err and "password" not in err and "20 classes from classes file" in err
    secret.write_text("password=hunter2\nbee\npassword=hunter2\n")
    assert main(["scan", str(data), "-o", "rep", "-q", "--config", str(conf / "labelqa.toml")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "hunter" not in err and "entries 1, 3" in err
