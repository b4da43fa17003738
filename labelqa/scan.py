"""The scan: data -> detectors -> a result with the quality gate decided.

* :func:`scan` is the public entry: every load, detector, run, engine and
  gate option of :mod:`labelqa.options` as a flat keyword argument; it picks
  the engine and decides the gate before anything is written.
* :func:`write_report` writes a scan's report files; :func:`top_issues`
  gives the best-ranked rows to show. Both work whichever engine ran.
* :func:`run_detectors` is the in-memory step on loaded data (no engine
  choice, no gate), which :func:`labelqa.evaluate_detectors` also uses.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import labelqa.options as opts
from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector
from labelqa.errors import LabelqaError
from labelqa.gate import GateResult
from labelqa.result import ScanResult

#: Callback for progress messages: ``progress("running detector cl")``.
Progress = Callable[[str], None]


#: Detector names a user can ask for, and what each needs.
DETECTORS = {
    "cl": "confident learning (labels + predicted probabilities)",
    "aum": "area under the margin (per-epoch training logits: --logits-by-epoch)",
    "nrg": "neural relation graph (embeddings: --embeddings-col / --embeddings)",
}

#: Detector fields still spelled the old way (the detectors are being renamed to the option names):
#: option name -> field name. :func:`make_detector` uses the option name when the detector has it.
FIELD_WAS = {
    "ema_alpha": "alpha", "softmin_temperature": "temperature", "aum_cutoff": "cutoff",
    "aum_percentile": "percentile", "nrg_mode": "mode", "nrg_kernel": "kernel", "nrg_power": "power",
    "nrg_k": "k_neighbors", "nrg_edge_cutoff": "edge_cutoff", "nrg_lambda": "lam", "nrg_backend": "backend",
    "nrg_index": "index",
}


#: load() arguments still spelled the old way: option name -> argument name.
LOAD_WAS = {"pred_probs": "pred_probs_file", "embeddings": "embeddings_file"}


def available_detectors(data: LabelData) -> list[str]:
    """Names of the detectors the data has inputs for, in run order."""
    names = ["cl"]
    if data.task == "multiclass" and data.logits_by_epoch is not None:
        names.append("aum")
    if data.task == "multiclass" and data.embeddings is not None:
        names.append("nrg")
    return names


def make_detector(name: str, data: LabelData, params: dict[str, Any] | None = None) -> Detector:
    """Build detector ``name`` for ``data`` with keyword ``params`` (option names or field names).

    ``cl`` is the multi-label confident-learning detector on multi-label data.

    Raises:
        LabelqaError: For an unknown name, or a detector the data cannot feed.
    """
    params = dict(params or {})
    if name == "cl":
        if data.task == "multilabel":
            from labelqa.detectors.multilabel import MultilabelConfidentLearning

            return _build(MultilabelConfidentLearning, params, "multi-label data")
        from labelqa.detectors.confident import ConfidentLearning

        return _build(ConfidentLearning, params, "multiclass data")
    if name == "aum":
        if data.task == "multilabel":
            raise LabelqaError("AUM is not defined for multi-label data", "drop aum from --detectors")
        if data.logits_by_epoch is None:
            raise LabelqaError("the aum detector needs training dynamics", "pass --logits-by-epoch PATH")
        from labelqa.detectors.aum import AreaUnderMargin

        return _build(AreaUnderMargin, params, "the aum detector")
    if name == "nrg":
        if data.task == "multilabel":
            raise LabelqaError("the nrg detector is not defined for multi-label data", "drop nrg from --detectors")
        if data.embeddings is None:
            raise LabelqaError("the nrg detector needs embeddings", "pass --embeddings-col COLUMN or --embeddings FILE")
        from labelqa.detectors.nrg import NeuralRelationGraph

        return _build(NeuralRelationGraph, params, "the nrg detector")
    raise LabelqaError(f"unknown detector {name!r}", f"choose from {', '.join(DETECTORS)}")


def _build(cls: type, params: dict[str, Any], what: str) -> Detector:
    fields = {f.name for f in dataclasses.fields(cls)}
    params = {FIELD_WAS[k] if k not in fields and FIELD_WAS.get(k) in fields else k: v for k, v in params.items()}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise LabelqaError(
            f"option {', '.join(unknown)} does not apply to {what}",
            f"{cls.__name__} takes {', '.join(sorted(fields))}",
        )
    return cls(**params)


def default_detectors(data: LabelData, params: dict[str, dict[str, Any]] | None = None) -> list[Detector]:
    """The detectors a scan runs when none are given: every one the data has inputs for."""
    params = params or {}
    return [make_detector(name, data, params.get(name)) for name in available_detectors(data)]


def detector_params(settings: dict[str, Any], name: str, command: str = "scan") -> dict[str, Any]:
    """The options of ``settings`` that tune detector ``name`` (``cl``, ``aum``, ``nrg``), by option name.

    Only values that differ from the option's default are included, so an
    option of the other task (``aggregation`` on multiclass data) left at
    its default never reaches a detector that would reject it.
    """
    kinds = ("cl", "mlcl") if name == "cl" else (name,)
    out = {}
    for opt_name, opt in opts.options_for(command).items():
        if opt.group == "detector" and set(opt.detectors) & set(kinds) and opt_name in settings:
            if settings[opt_name] != opt.default:
                out[opt_name] = settings[opt_name]
    return out


def run_detectors(
    data: LabelData,
    *,
    detectors: Sequence[Detector | str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    primary: str | None = None,
    issue_rule: str = "primary_or_2",
    progress: Progress | None = None,
) -> ScanResult:
    """Run detectors on loaded data, in memory (no engine choice, no gate).

    Args:
        data: Validated :class:`LabelData`.
        detectors: Detector instances or names; default every detector the data has inputs for.
        params: Keyword parameters per detector name (option or field names), for detectors given by
            name or chosen by default (e.g. ``{"cl": {"filter_by": "both"}}``).
        primary: Name of the primary detector; default the first one.
        issue_rule: How flags combine when several detectors run.
        progress: Optional callback receiving a short message before each step.
    """
    params = params or {}
    if detectors is None:
        dets = default_detectors(data, params)
    else:
        dets = [make_detector(d, data, params.get(d)) if isinstance(d, str) else d for d in detectors]
    if not dets:
        raise LabelqaError("no detectors to run", "pass at least one detector")
    results = {}
    for det in dets:
        if det.name in results:
            raise LabelqaError(f"detector {det.name!r} given twice", "pass each detector once")
        if progress:
            progress(f"running detector {det.name}")
        results[det.name] = det.detect(data)
    primary = primary or dets[0].name
    if primary not in results:
        raise LabelqaError(f"primary detector {primary!r} did not run", f"choose one of {sorted(results)}")
    options = {"detectors": {d.name: d.get_params() for d in dets}}
    options.update(data.meta)
    return JudgedScan(data=data, results=results, primary=primary, issue_rule=issue_rule, options=options)


def scan(
    data: LabelData | str | os.PathLike[str],
    *,
    detectors: Sequence[Detector | str] | str | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    primary: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Any:
    """Scan a dataset for label errors and decide the quality gate.

    Args:
        data: A path (file or folder) to load, or validated :class:`LabelData`.
        detectors: Detector names (``["cl", "nrg"]`` or ``"cl,nrg"``); default every detector the
            data has inputs for. Detector *objects* (and ``params=``, ``primary=``) are the
            lower-level form: the scan then runs in memory and is judged only when a gate
            option is given.
        params: Lower-level: keyword parameters per detector name (``{"cl": {"filter_by": "both"}}``);
            prefer the flat options (``filter_by="both"``).
        primary: Lower-level: name of the primary detector; default the first one.
        progress: Optional callback receiving a short message before each step.
        **options: Any load, detector, run, engine or gate option of :mod:`labelqa.options`
            (``label_col``, ``pred_probs``, ``filter_by``, ``nrg_lambda``, ``issue_rule``,
            ``engine``, ``max_issue_rate``...; the README lists them). Each is checked like its
            flag; the engine (``engine="auto"``) is chosen here.

    Returns:
        The scan result: ``gate`` (a :class:`~labelqa.gate.GateResult`), ``summary()``
        (with the gate), ``n_issues``, ``issue_rate``; :func:`write_report` writes it and
        :func:`top_issues` gives its best-ranked rows. An in-memory scan is a
        :class:`~labelqa.result.ScanResult` (``issues_table()``, ``results``, ``data``...).

    Raises:
        LabelqaError: On invalid input or options (nothing is written).
        TypeError: An unknown keyword argument.
    """
    objects = detectors is not None and not isinstance(detectors, str) and any(
        not isinstance(d, str) for d in detectors)
    if detectors is not None and not objects:
        options["detectors"] = detectors
    settings = opts.resolve("scan", given=options, function="scan", groups=opts.SCAN_GROUPS + ("gate",))
    if params and set(options) & {n for n, o in opts.options_for("scan").items() if o.group == "detector"}:
        raise LabelqaError("detector options given both as keywords and in params=", "pass them as keywords only")
    lower_level = objects or params is not None or primary is not None
    if isinstance(data, LabelData):
        given_load = [n for n in options if opts.OPTIONS[n].group == "load"]
        if given_load:
            raise LabelqaError(f"load options {sorted(given_load)} given, but data is already loaded")
    judge = not lower_level or any(settings.changed(n) for n in settings.select("gate", api=True))
    return _run_with_current_engines(data, settings, progress, judge=judge,
                                     objects=list(detectors) if objects else None, params=params, primary=primary)


_SCAN_PARAMS = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o.default)
                for n, o in opts.options_for("scan").items()
                if o.api and not o.positional and not o.cli_only and n != "detectors"]
scan.__signature__ = inspect.signature(scan).replace(  # type: ignore[attr-defined]
    parameters=[p for p in inspect.signature(scan).parameters.values() if p.kind != p.VAR_KEYWORD] + _SCAN_PARAMS)


def load_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`labelqa.load` from resolved load options.

    A repeatable option given once is passed as one value; ``pred_probs`` and ``embeddings`` go by
    the names ``load`` has (``pred_probs_file``/``embeddings_file`` until the loader takes the option names).
    """
    from labelqa.data import load

    takes = inspect.signature(load).parameters
    out = {}
    for name, value in settings.items():
        if opts.OPTIONS[name].group != "load" or opts.OPTIONS[name].positional:
            continue
        if isinstance(value, list) and opts.OPTIONS[name].repeatable:
            value = value[0] if len(value) == 1 else value
        if value is None and name == "pred_probs_col":
            continue  # the loader's default: pred_probs, else prob_<class> columns
        out[name if name in takes else LOAD_WAS[name]] = value
    return out


class JudgedScan(ScanResult):
    """An in-memory :class:`~labelqa.result.ScanResult` with the quality gate decided.

    Attributes:
        gate: The gate outcome (``None`` for the lower-level forms when no gate option was given);
            :meth:`summary` includes it under ``gate``.
    """

    gate: GateResult | None = None

    def summary(self) -> dict[str, Any]:
        """The dataset summary with ``gate`` when decided (computed once: treat nested values as read-only)."""
        base = self.__dict__.get("_base_summary")
        if base is None:
            base = self.__dict__["_base_summary"] = ScanResult.summary(self)
        out = dict(base)
        if self.gate is not None:
            out["gate"] = self.gate.as_dict()
        return out


def write_report(result: Any, out_dir: str | os.PathLike[str], **kwargs: Any) -> list[Path]:
    """Write the report files of a scan (any engine's) into ``out_dir`` atomically.

    Keyword arguments (``csv``, ``evaluation``, ``summary``) go to
    :func:`labelqa.report.writers.write_report` for an in-memory scan.
    """
    if isinstance(result, _OutOfCoreScan):
        if kwargs:
            raise LabelqaError(f"{', '.join(sorted(kwargs))}: only for an in-memory scan")
        return result.publish(Path(out_dir))
    from labelqa.report.writers import write_report as write

    return write(result, out_dir, **kwargs)


def top_issues(result: Any, n: int) -> Any:
    """An issues table holding at least the ``n`` best-ranked flagged rows of a scan (any engine's).

    In memory this is the whole issues table (row positions are input positions); after an
    out-of-core scan, the rows of issues.parquet ranked ``<= n``, read with a filter.
    """
    if isinstance(result, _OutOfCoreScan):
        return result.read_top(n)
    return result.issues_table()


# =========================================================================== ADAPTER (to be replaced)
# Everything below runs a scan on TODAY's engines: the in-memory pipeline above, and
# labelqa.engines.stream.scan_stream / labelqa.engines.dask_engine.scan_dask, which write their report
# files themselves. The core's one driver (labelqa/run) replaces _run_with_current_engines and
# _OutOfCoreScan; scan(), write_report() and top_issues() keep their contracts.


def _run_with_current_engines(data: Any, settings: opts.Settings, progress: Progress | None, *, judge: bool,
                              objects: list[Detector] | None, params: dict[str, Any] | None,
                              primary: str | None) -> Any:
    """Run a scan with resolved ``settings`` (load/detector/run/engine/gate options) on today's engines.

    Returns a :class:`JudgedScan` (memory) or an :class:`_OutOfCoreScan` (stream, dask), gate decided.
    """
    from labelqa.engines.choose import choose_engine
    from labelqa.gate import check_gate, gate_rules

    rules = gate_rules(**settings.select("gate", api=True))  # checked before any work
    if settings["logits_by_epoch"] is None and (settings["aum_cutoff"] is not None
                                                or settings["aum_percentile"] is not None):
        raise LabelqaError("--aum-cutoff/--aum-percentile need training dynamics", "pass --logits-by-epoch PATH")
    why = _needs_memory(data, settings, custom=objects is not None or params is not None)
    engine = choose_engine(settings["engine"], data if why is None else "", memory_only=why)
    if engine != "memory":
        return _scan_out_of_core(engine, Path(data), settings, rules, progress)
    if not isinstance(data, LabelData):
        from labelqa.data import load

        if progress:
            progress(f"loading {data}")
        data = load(data, **load_options(settings.select("load")))
    if objects is None and params is None:
        params = {name: detector_params(settings, name) for name in DETECTORS}
    result = run_detectors(data, detectors=objects or settings["detectors"], params=params, primary=primary,
                           issue_rule=settings["issue_rule"], progress=progress)
    if judge:
        result.gate = check_gate(result, rules)
    return result


def _needs_memory(data: Any, s: opts.Settings, *, custom: bool) -> str | None:
    """Why only the in-memory engine can run this scan, or ``None``."""
    if isinstance(data, LabelData):
        return "data already loaded (LabelData)"
    if custom:
        return "detector objects or params="
    names = s["detectors"]
    if names is not None and set(names) - {"cl"}:
        return f"the detectors {', '.join(sorted(set(names) - {'cl'}))}"
    if s["embeddings"] is not None or s["logits_by_epoch"] is not None or s["threshold_samples"] is not None:
        return "embeddings or training dynamics for nrg/aum"
    if s["pred_probs"]:
        return "probabilities from a .npy file"
    if s["pred_probs_col"] and len(s["pred_probs_col"]) > 1:
        return f"several models' probabilities (--pred-probs-col given {len(s['pred_probs_col'])} times)"
    if names is None and (s.changed("embeddings_col") or (
            Path(data).is_file() and _has_column(Path(data), s["embeddings_col"]))):
        return f"embeddings (column {s['embeddings_col']!r}) for nrg"
    return None


def _has_column(path: Path, name: str) -> bool:
    from labelqa.data.readers import read_schema

    try:
        return name in read_schema(path, None).names
    except Exception:  # noqa: BLE001 - unreadable: the loader reports it properly
        return False


def _scan_out_of_core(engine: str, data: Path, s: opts.Settings, rules: dict[str, Any],
                      progress: Progress | None) -> _OutOfCoreScan:
    """scan_stream / scan_dask into a temporary folder, then the gate judged from their summary."""
    import shutil
    import tempfile

    from labelqa.atomic import write_atomic
    from labelqa.gate import check_summary_gate
    from labelqa.report.html import write_html
    from labelqa.report.writers import summary_json

    if engine == "stream":
        from labelqa.engines.stream import scan_stream as run
    else:
        from labelqa.engines.dask_engine import scan_dask as run
    takes = inspect.signature(run).parameters
    kwargs: dict[str, Any] = {k: v for k, v in load_options(s.select("load")).items() if k in takes}
    for name, value in detector_params(s, "cl").items():
        kwargs[name if name in takes else FIELD_WAS[name]] = value
    if engine == "dask":
        kwargs["scheduler"] = s["scheduler"]
    say = progress or (lambda message: None)
    say(f"scanning {data} with the {engine} engine (batches of {s['batch_size']:,} rows)")
    tmp = Path(tempfile.mkdtemp(prefix="labelqa-scan-"))
    try:
        folder = tmp / "report"
        res = run(data, out_dir=folder, batch_size=s["batch_size"], progress=progress, **kwargs)
        summary = dict(res.summary)
        gate = check_summary_gate(summary, rules)
        summary["gate"] = gate.as_dict()
        summary["options"] = {**summary.get("options", {}), "engine": engine}
        write_atomic(folder / "summary.json", lambda p: p.write_text(summary_json(summary), encoding="utf-8"))
        if gate.rules:  # put the gate line under the title of the engine's summary.md
            title, _, rest = (folder / "summary.md").read_text(encoding="utf-8").partition("\n\n")
            status = "PASSED" if gate.passed else "FAILED"
            md = f"{title}\n\n**Quality gate: {status}** ({gate.reason})\n\n{rest}"
            write_atomic(folder / "summary.md", lambda p: p.write_text(md, encoding="utf-8"))
        say("writing report.html (issues.parquet read back in batches)")
        write_html(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _OutOfCoreScan(summary, gate, folder, res.n_rows, res.n_issues, engine)


class _OutOfCoreScan:
    """The result of a stream or Dask scan: its report files wait in a temporary folder.

    Attributes:
        gate: The gate outcome.
        n_rows, n_issues, issue_rate: Rows scanned and flagged.
        engine: ``stream`` or ``dask``.
    """

    def __init__(self, summary: dict[str, Any], gate: GateResult, folder: Path, n_rows: int, n_issues: int,
                 engine: str) -> None:
        import shutil
        import weakref

        self._summary, self.gate, self._folder = summary, gate, folder
        self.n_rows, self.n_issues, self.engine = n_rows, n_issues, engine
        self._owned = True
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder.parent, True)

    @property
    def issue_rate(self) -> float:
        return self.n_issues / self.n_rows if self.n_rows else 0.0

    def summary(self) -> dict[str, Any]:
        """summary.json's content (with the gate)."""
        return dict(self._summary)

    def issues_table(self) -> Any:
        """The whole issues table, read from issues.parquet (every row in memory)."""
        import pyarrow.parquet as pq

        return pq.read_table(self._folder / "issues.parquet")

    def read_top(self, n: int) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(self._folder / "issues.parquet", filters=[("rank", "<=", n)])

    def publish(self, out: Path) -> list[Path]:
        """Move (the first time; later copy) the report files into ``out``, each atomically."""
        import shutil

        from labelqa.atomic import write_atomic

        if out.exists() and not out.is_dir():
            raise LabelqaError(f"output path {out} exists and is not a folder", "pass --out with a folder path")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted(self._folder.iterdir()):
            target = out / src.name
            try:
                if not self._owned:
                    raise OSError("copy")
                os.replace(src, target)
            except OSError:  # another filesystem, or already published: copy
                write_atomic(target, lambda tmp, src=src: shutil.copyfile(src, tmp))
            written.append(target)
        if self._owned:
            self._cleanup()
            self._folder, self._owned = out, False
        return written
