"""--show-cols: data columns (text, numbers, image thumbnails) beside the flagged rows in every output."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelqa.cli.app import main
from labelqa.export import export_review
from labelqa.report.shown import attach, display_text, shown_columns, shown_fields
from labelqa.report.thumbnails import MAX_RAW_BYTES, THUMB_PX, array_png, looks_like_image_column, thumbnails
from tests.conftest import REPO, noisy_dataset, write_parquet


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def decode_png(data: bytes) -> np.ndarray:
    """A grey 8-bit PNG back to pixels, with the standard library only (filter type 0 rows)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:]


# --------------------------------------------------------------------------- thumbnails
def test_array_png_scales_levels_and_enlarges_by_whole_pixels():
    pixels = np.array([[0, 16], [8, 4]])
    img = decode_png(array_png(pixels, max_px=8))
    assert img.shape == (8, 8)  # 2x2 enlarged 4 times
    assert img[0, 0] == 0 and img[0, 7] == 255 and img[7, 0] == 128 and img[7, 7] == 64
    assert (img[:4, :4] == 0).all()
    big = decode_png(array_png(np.arange(200 * 100).reshape(200, 100), max_px=64))
    assert max(big.shape) <= 64
    assert (decode_png(array_png(np.ones((3, 3)))) == 0).all()  # a flat image is one level


def test_image_columns_are_recognised_by_their_values(tmp_path):
    assert looks_like_image_column([None, list(range(64))])  # flat 8x8
    assert looks_like_image_column([[[0, 1], [2, 3]]])
    assert not looks_like_image_column([list(range(10))])  # not square
    assert looks_like_image_column([b"\x89PNG\r\n\x1a\nrest"]) and not looks_like_image_column([b"plain"])
    assert looks_like_image_column(["img/0001.JPG"]) and not looks_like_image_column(["a cat"])
    assert not looks_like_image_column([None, None])


def test_thumbnails_of_bytes_and_paths_and_the_budget(tmp_path):
    png = array_png(np.eye(4), max_px=4)
    (tmp_path / "a.png").write_bytes(png)
    out = thumbnails([png, "a.png", "missing.png", b"not an image", None, list(range(16))], base=tmp_path)
    assert out[0] is not None and out[1] is not None
    assert out[2] is None and out[3] is None and out[4] is None
    assert decode_png(out[5]).shape == (THUMB_PX, THUMB_PX)
    # the byte budget: rows past it get no thumbnail
    many = thumbnails([list(range(64))] * 50, budget=3 * len(array_png(np.arange(64).reshape(8, 8))))
    assert sum(t is not None for t in many) == 3 and all(t is None for t in many[3:])


def test_pillow_shrinks_large_encoded_images():
    pil = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    pil.new("RGB", (640, 480), (200, 10, 10)).save(buf, format="JPEG")
    (thumb,) = thumbnails([buf.getvalue()])
    with pil.open(io.BytesIO(thumb)) as img:
        assert max(img.size) == THUMB_PX and img.format == "PNG"
    assert len(buf.getvalue()) > MAX_RAW_BYTES or len(thumb) < len(buf.getvalue())


def test_display_text_is_one_short_line():
    assert display_text("a\nb\t c", 10) == "a b c"
    assert display_text("x" * 20, 8) == "x" * 7 + "\u2026"
    assert display_text(None, 5) == ""


# --------------------------------------------------------------------------- the shown columns
@pytest.fixture
def texty(tmp_path):
    given, _, probs, flipped = noisy_dataset(n=300, k=3, noise=0.15, seed=2)
    names = np.array(["cat", "dog", "<b>bird</b>"])
    text = [f"row {i}: " + ("long text " * 40 if i % 2 else "<script>alert(1)</script> | pipe") for i in range(300)]
    extra = {"text": pa.array(text), "n_tokens": pa.array(np.arange(300) * 2),
             "pixels": pa.array([list(range(i % 7, i % 7 + 64)) for i in range(300)], pa.list_(pa.int64())),
             "uid": pa.array([f"u{i:03d}" for i in range(300)])}
    path = write_parquet(tmp_path / "texty.parquet", names[given], probs, classes=names, extra=extra)
    return path


def test_shown_columns_follow_the_ids_and_tag_kinds(texty):
    ids = pa.array(["u007", "u002"])
    shown = shown_columns(texty, ["text", "n_tokens", "pixels"], ids, id_col="uid")
    assert shown_fields(shown) == [("text", "text"), ("n_tokens", "number"), ("pixels", "image")]
    assert shown.column("n_tokens").to_pylist() == [14, 4]
    assert shown.column("text").to_pylist()[1].startswith("row 2: <script>")
    top = pa.table({"id": ["u002", "u404", "u007"], "rank": [1, 2, 3]})
    joined = attach(top, shown)
    assert joined.column("n_tokens").to_pylist() == [4, None, 14]
    assert shown_fields(joined) == shown_fields(shown)
    clash = attach(pa.table({"id": ["u002"], "text": ["report text"]}), shown)
    assert "data:text" in clash.column_names and clash.column("text").to_pylist() == ["report text"]


def test_scan_shows_columns_everywhere_and_escapes_text(texty, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # room for every terminal column
    out = tmp_path / "rep"
    code, stdout, err = run(["scan", texty, "--id-col", "uid", "--show-cols", "text,n_tokens,pixels", "-o", out,
                             "--top", "3"], capsys)
    assert code == 0, err
    assert "n_tokens" in stdout and "[image]" in stdout  # the terminal table
    md = (out / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| rank |"))
    assert header.endswith("| text | n\\_tokens | pixels |")  # Markdown-escaped column name
    assert "<script>" not in md and "\\| pipe" in md  # escaped by the markdown renderer
    page = (out / "report.html").read_text()
    assert "<script>alert(1)" not in page
    data = json.loads(re.search(r'id="issues-data">(.*?)</script>', page).group(1))
    keys = [c["key"] for c in data["columns"]]
    assert keys[-3:] == ["text", "n_tokens", "pixels"]
    images = [row[-1] for row in data["rows"]]
    assert all(v.startswith("data:image/png;base64,") for v in images)
    assert decode_png(base64.b64decode(images[0].split(",", 1)[1])).shape == (THUMB_PX, THUMB_PX)
    # labelqa report rebuilds the page with them (shown.parquet), and a scan without --show-cols drops them
    page_before = page
    assert run(["report", out, "-q"], capsys)[0] == 0
    assert (out / "report.html").read_text() == page_before
    assert run(["scan", texty, "--id-col", "uid", "-o", out, "-q"], capsys)[0] == 0
    assert not (out / "shown.parquet").exists() and "n_tokens" not in (out / "report.html").read_text()


def test_unknown_show_column_is_one_line_exit_2(texty, tmp_path, capsys):
    code, _, err = run(["scan", texty, "--show-cols", "nope", "-o", tmp_path / "rep", "-q"], capsys)
    assert code == 2 and "no column 'nope'" in err and err.count("\n") == 1
    assert not (tmp_path / "rep").exists()


def test_exports_carry_the_shown_columns(texty, tmp_path, capsys):
    out = tmp_path / "rep"
    assert run(["scan", texty, "--id-col", "uid", "--show-cols", "text,pixels", "-o", out, "-q"], capsys)[0] == 0
    export_review(out, top=5)
    tasks = json.loads((out / "review.json").read_text())
    shown = pq.read_table(out / "shown.parquet").to_pandas().set_index("id")
    for task in tasks:
        rid = task["data"]["labelqa_id"]
        assert task["data"]["col_text"] == shown.loc[rid, "text"]
        assert task["data"]["col_pixels"] == "data:image/png;base64," + base64.b64encode(
            shown.loc[rid, "pixels"]).decode()
    config = (out / "review.xml").read_text()
    assert '<Image name="item" value="$col_pixels"' in config and 'value="$col_text"' in config
    export_review(out, to="csv")
    header = (out / "review.csv").read_text().splitlines()[0]
    assert header.split(",")[-2:] == ["text", "decision"] and "pixels" not in header  # images stay out of the CSV


def test_digits_turned_into_images(tmp_path, capsys):
    """The digits example with --images: the report shows each flagged row's digit."""
    data = tmp_path / "digits.parquet"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "make_digits.py"), "--images", "--out", str(data)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "rep"
    assert run(["scan", data, "--show-cols", "pixels", "-o", out, "-q"], capsys)[0] == 0
    page = (out / "report.html").read_text()
    payload = json.loads(re.search(r'id="issues-data">(.*?)</script>', page).group(1))
    flagged = int(json.loads((out / "summary.json").read_text())["issues_found"])
    thumbs = [row[-1] for row in payload["rows"]]
    assert len(thumbs) == flagged and all(t.startswith("data:image/png;base64,") for t in thumbs)
    pixels = pq.read_table(data, columns=["id", "pixels"]).to_pandas().set_index("id")
    first = payload["rows"][0][1]
    img = decode_png(base64.b64decode(thumbs[0].split(",", 1)[1]))
    expected = np.array(pixels.loc[first, "pixels"].tolist())
    assert (img[::8, ::8] == np.rint(expected / expected.max() * 255)).all()  # the digit itself, enlarged 8 times
    assert len(page) < 3 * 2**20
