"""Reading tables from disk with pyarrow: Parquet, CSV/TSV, JSON lines, Arrow IPC.

The format comes from the file suffix unless ``input_format`` is given. Only
the requested columns are read where the format allows it (Parquet, Arrow IPC
and CSV skip the other columns; JSON lines parses them but does not convert
them), which matters for wide files.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from labelqa.errors import LabelqaError

#: Canonical input formats, the values ``input_format`` / ``--input-format`` take.
SUPPORTED_FORMATS: tuple[str, ...] = ("parquet", "csv", "jsonl", "arrow")
#: The formats the streaming engines read (files, folders, hive datasets).
STREAM_FORMATS: tuple[str, ...] = ("parquet", "arrow")

_SUFFIX_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
# Friendly spellings accepted for input_format, mapped to the canonical names.
_FORMAT_ALIASES = {
    "pq": "parquet",
    "tsv": "csv",
    "json": "jsonl",
    "ndjson": "jsonl",
    "feather": "arrow",
    "ipc": "arrow",
}
# Compressed CSV / JSON lines are decompressed by pyarrow from the suffix.
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")

_STREAM_HINT = "convert the data to Parquet, or use --engine memory"
_FORMAT_HINT = "pass --input-format " + "|".join(SUPPORTED_FORMATS) + " if the suffix is misleading"


def _strip_compression(name: str) -> str:
    lower = name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def resolve_format(path: str | os.PathLike[str], input_format: str | None = None, *, streaming: bool = False) -> str:
    """The canonical format of ``path``: ``input_format`` if given, else from the suffix.

    With ``streaming``, only :data:`STREAM_FORMATS` are accepted (the
    streaming engines' messages), suffixes name the files as they are (no
    decompression), and a folder takes the one format of its files (hidden
    and ``_``-prefixed files ignored).

    Raises:
        LabelqaError: Unknown ``input_format``, or a suffix that names no
            format (or, streaming, no streamable one; a folder with none or both).
    """
    allowed = STREAM_FORMATS if streaming else SUPPORTED_FORMATS
    if input_format is not None:
        fmt = str(input_format).strip().lower().lstrip(".")
        fmt = _FORMAT_ALIASES.get(fmt, fmt)
        if fmt in allowed:
            return fmt
        if streaming:
            raise LabelqaError(f"the streaming engines read Parquet or Arrow IPC, not {input_format!r}", hint=_STREAM_HINT)
        raise LabelqaError(
            f"unknown input format {input_format!r}",
            hint="use one of " + ", ".join(SUPPORTED_FORMATS),
        )
    if streaming and os.path.isdir(path):
        return _folder_format(os.fspath(path))
    name = Path(path).name.lower() if streaming else _strip_compression(Path(path).name)
    suffix = Path(name).suffix
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt in ("parquet", "arrow") and name != Path(path).name.lower():
        raise LabelqaError(f"{path}: a compressed {suffix} file cannot be read ({fmt} files compress their "
                           "columns themselves)", hint=f"decompress it first (e.g. gunzip), then pass the {suffix} file")
    if fmt in allowed:
        return fmt
    if streaming:
        raise LabelqaError(f"the streaming engines read Parquet or Arrow IPC files and folders, not {path}",
                           hint=_STREAM_HINT)
    known = ", ".join(sorted(_SUFFIX_FORMATS))
    raise LabelqaError(
        f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r} "
        f"(known suffixes: {known})",
        hint="pass --input-format " + "|".join(SUPPORTED_FORMATS),
    )


def _folder_format(path: str) -> str:
    """The one streamable format of a folder's files."""
    fmts = set()
    for _root, _dirs, files in os.walk(path):
        for f in files:
            fmt = _SUFFIX_FORMATS.get(os.path.splitext(f)[1].lower())
            if not f.startswith((".", "_")) and fmt in STREAM_FORMATS:
                fmts.add(fmt)
    if len(fmts) == 1:
        return fmts.pop()
    if not fmts:
        raise LabelqaError(f"{path}: no .parquet or .arrow files in the folder", hint="check the path")
    raise LabelqaError(f"{path}: the folder mixes Parquet and Arrow files", hint="pass --input-format")


def _is_tsv(path: str | os.PathLike[str], input_format: str | None) -> bool:
    if input_format is not None and str(input_format).strip().lower().lstrip(".") == "tsv":
        return True
    return _strip_compression(Path(path).name).endswith(".tsv")


def check_file(path: str | os.PathLike[str], what: str = "input file", folder_ok: bool = False) -> str:
    """Return ``path`` as a string, or raise if it is not an existing regular file (or folder, if ``folder_ok``)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        if os.path.lexists(p):
            raise LabelqaError(f"{what} not found: {p} is a symbolic link to a missing file ({os.readlink(p)})",
                               hint="fix or remove the link")
        raise LabelqaError(f"{what} not found: {p}", hint="check the path")
    if os.path.isdir(p):
        if not folder_ok:
            raise LabelqaError(f"{what} is a directory, not a file: {p}", hint="pass the path of a file")
    elif not os.path.isfile(p):
        mode = os.stat(p).st_mode
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        raise LabelqaError(f"{what} {p} is {kind}; labelqa reads regular files only (it reads some files twice)",
                           hint="write the data to a file first, then pass that file")
    return p


#: Leading bytes of the binary formats, to catch a binary file read as text (``--input-format csv`` on Parquet).
_MAGIC = {b"PAR1": "parquet", b"ARROW1": "arrow"}


def check_content(path: str, fmt: str) -> None:
    """Raise when a regular file's first bytes say it is Parquet or Arrow IPC but ``fmt`` is another format."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, actual in _MAGIC.items():
        if head.startswith(magic) and fmt != actual:
            raise LabelqaError(f"{path} is a {actual} file (it starts with {magic.decode()}), not {fmt}",
                               hint=f"pass --input-format {actual}, or drop --input-format to go by the suffix")


def _unreadable(path: str, fmt: str, exc: BaseException) -> LabelqaError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(reason) > 200:
        reason = reason[:200] + "..."
    return LabelqaError(f"cannot read {path} as {fmt}: {reason}", hint=f"check the file, or {_FORMAT_HINT}")


def format_columns(names: Sequence[str], limit: int = 20) -> str:
    """Column names for a message, truncated after ``limit``."""
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown or "(none)"


# --------------------------------------------------------------------------- CSV


def _csv_options(path: str, input_format: str | None, columns: Sequence[str] | None,
                 column_types: dict[str, pa.DataType] | None = None):
    import pyarrow.csv as pacsv

    delimiter = "\t" if _is_tsv(path, input_format) else ","
    parse = pacsv.ParseOptions(delimiter=delimiter)
    header_bytes = _csv_header_bytes(path, delimiter)
    convert = pacsv.ConvertOptions(
        include_columns=list(columns) if columns is not None else None,
        column_types=column_types,
        # Only an empty cell is a missing value, for every column, strings included: a label or id
        # spelled "NA", "null" or "nan" keeps its text.
        null_values=[""],
        strings_can_be_null=True,
    )
    # A block must hold the header line (pyarrow's default block of 1 MiB fails on wide files with "Empty CSV").
    return pacsv.ReadOptions(block_size=max(1 << 20, 4 * header_bytes)), parse, convert


#: The longest CSV header line read (bytes).
MAX_HEADER_BYTES = 64 << 20


def _csv_header_bytes(path: str, delimiter: str) -> int:
    """The length of the first line; raises when it names more than :data:`MAX_COLUMNS` columns.

    Counts delimiters in the first line (decompressed like the file), a cheap upper bound of the columns.
    """
    sep = delimiter.encode()
    size, count = 0, 0
    with pa.input_stream(path, compression="detect") as stream:
        while size < MAX_HEADER_BYTES:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            end = chunk.find(b"\n")
            part = chunk if end < 0 else chunk[:end]
            size += len(part)
            count += part.count(sep)
            if count + 1 > MAX_COLUMNS:
                raise LabelqaError(
                    f"{path} has more than {MAX_COLUMNS:,} columns in its header; labelqa reads at most "
                    f"{MAX_COLUMNS:,} columns from a CSV",
                    hint="keep the label, id and probability columns, or store the N x K probabilities as a .npy "
                    "(--pred-probs) or one pred_probs list column in Parquet")
            if end >= 0:
                return size
    if size >= MAX_HEADER_BYTES:
        raise LabelqaError(f"{path}: the first line is longer than {MAX_HEADER_BYTES >> 20} MiB",
                           hint="check that the file is a CSV with a header line")
    return size


def _csv_schema(path: str, input_format: str | None) -> pa.Schema:
    import pyarrow.csv as pacsv

    read, parse, convert = _csv_options(path, input_format, None)
    reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    try:
        schema = reader.schema
    finally:
        reader.close()
    check_csv_header(path, schema.names)
    return schema


def check_csv_header(path: str, names: Sequence[str]) -> None:
    """Refuse a header that names a column twice (which column would be meant?) or holds too many columns."""
    if len(names) > MAX_COLUMNS:
        raise LabelqaError(f"{path} has {len(names):,} columns; labelqa reads at most {MAX_COLUMNS:,} columns",
                           hint="keep the label, id and probability columns (K classes need K prob_ columns or one "
                           "pred_probs list column), or store the probabilities as an N x K .npy (--pred-probs)")
    seen: set[str] = set()
    again = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if again:
        raise LabelqaError(f"{path}: the header names column {again[0]!r} more than once "
                           f"({len(again) + 1 if len(set(again)) == 1 else 'several'} columns share a name)",
                           hint="give every column a distinct name in the first line")


#: Integer columns of text files whose cells are not all canonical integers (``"01"``, ``"007"``, ``"+3"``) keep
#: their text, so ``01`` and ``1`` stay two labels and an id ``007`` stays ``007``; so do whole-number float
#: columns that spell one number two ways (``1.0`` and ``1``), and boolean columns that spell a truth value two
#: ways (``True`` and ``true``).
_CANONICAL_INT_TEXT = r"^-?(?:0|[1-9][0-9]*)$"
#: The most columns a CSV or JSON lines table may have.
MAX_COLUMNS = 100_000


def _csv_read(path: str, input_format: str | None, columns: Sequence[str] | None, *, text: bool = False) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.compute as pc

    names = _csv_schema(path, input_format).names
    if text:
        wanted = list(columns) if columns is not None else names
        read, parse, convert = _csv_options(path, input_format, columns, {n: pa.string() for n in wanted})
        return pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    read, parse, convert = _csv_options(path, input_format, columns)
    table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    ints = [n for n in table.column_names if pa.types.is_integer(table.schema.field(n).type)]
    # whole-number float columns too: "1.0" and "1" must not become one class
    whole = [n for n in table.column_names if pa.types.is_floating(table.schema.field(n).type)
             and pc.all(pc.fill_null(pc.equal(table.column(n), pc.floor(table.column(n))), True)).as_py()]
    # booleans too: "True" and "true" must not become one class
    bools = [n for n in table.column_names if pa.types.is_boolean(table.schema.field(n).type)]
    if ints or whole or bools:
        again = ints + whole + bools
        read, parse, convert = _csv_options(path, input_format, again, {n: pa.string() for n in again})
        raw = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        for name in again:
            cells = raw.column(name)
            if name in ints:
                keep_text = not pc.all(pc.fill_null(pc.match_substring_regex(cells, _CANONICAL_INT_TEXT), True)).as_py()
            else:  # distinct spellings of one number or truth value
                keep_text = pc.count_distinct(cells).as_py() != pc.count_distinct(table.column(name)).as_py()
            if keep_text:
                table = table.set_column(table.column_names.index(name), name, cells)
    return table


# --------------------------------------------------------------------- JSON lines


#: The deepest nesting of arrays/objects accepted in a JSON lines file (pyarrow's parser overflows its stack on
#: very deep values, killing the process; no dataset needs more than a few levels).
MAX_JSON_DEPTH = 1000


def check_json_depth(path: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise when a line of a JSON lines file nests arrays/objects deeper than ``limit``.

    A vectorised pass over the bytes (decompressed like the file), 16 MiB at a time: brackets are counted
    per line whether inside strings or not, which can only overstate the depth.
    """
    import numpy as np

    depth_at_start, line = 0, 1
    with pa.input_stream(path, compression="detect") as stream:
        while True:
            chunk = stream.read(1 << 24)
            if not chunk:
                return
            b = np.frombuffer(chunk, dtype=np.uint8)
            step = (b == 0x5B).astype(np.int32) + (b == 0x7B) - (b == 0x5D) - (b == 0x7D)
            cum = np.cumsum(step, dtype=np.int64) + depth_at_start
            newline = b == 0x0A
            last = np.maximum.accumulate(np.where(newline, np.arange(len(b)), -1))
            depth = cum - np.where(last >= 0, cum[np.maximum(last, 0)], 0)
            deepest = int(depth.max())
            if deepest > limit:
                at = int(np.argmax(depth > limit))
                raise LabelqaError(
                    f"{path}: line {line + int(np.count_nonzero(newline[:at]))} nests arrays or objects more than "
                    f"{limit} levels deep; labelqa reads at most {limit} levels",
                    hint="flatten that value (labels, ids and probabilities need one or two levels)")
            depth_at_start = int(depth[-1])
            line += int(np.count_nonzero(newline))


def check_input(path: str, fmt: str) -> None:
    """The checks before pyarrow parses a file: content that fits ``fmt``, JSON nesting (once per file version)."""
    st = os.stat(path)
    _check_input_once(os.path.realpath(path), fmt, st.st_size, st.st_mtime_ns, path)


@functools.lru_cache(maxsize=32)
def _check_input_once(real: str, fmt: str, size: int, mtime_ns: int, shown: str) -> None:
    check_content(shown, fmt)
    if fmt == "jsonl":
        check_json_depth(shown)


def _jsonl_schema(path: str) -> pa.Schema:
    """Schema inferred from the first block (keys first seen later are missing)."""
    import pyarrow.json as pajson

    reader = pajson.open_json(path)
    try:
        return reader.schema
    finally:
        reader.close()


def _jsonl_read(path: str, columns: Sequence[str] | None) -> pa.Table:
    import pyarrow.json as pajson

    if columns is not None:
        # Convert only the wanted keys, typed as inferred from the first block;
        # if later rows disagree with that guess (an int column that turns
        # float), fall back to a full read, which infers over the whole file.
        try:
            first = _jsonl_schema(path)
            if all(c in first.names for c in columns):
                schema = pa.schema([first.field(c) for c in columns])
                opts = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
                return pajson.read_json(path, parse_options=opts)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    return pajson.read_json(path)


# ------------------------------------------------------------------- Arrow IPC


def _ipc_open(path: str, columns: Sequence[str] | None):
    """Open an Arrow IPC file (Feather v2) or stream; return a reader."""
    import pyarrow.ipc as ipc

    def options(schema: pa.Schema) -> ipc.IpcReadOptions | None:
        if columns is None:
            return None
        idx = [schema.get_field_index(c) for c in columns]
        if any(i < 0 for i in idx):
            return None  # reported by the caller with the available columns
        return ipc.IpcReadOptions(included_fields=sorted(set(idx)))

    try:
        schema = ipc.open_file(pa.memory_map(path)).schema
        return ipc.open_file(pa.memory_map(path), options=options(schema))
    except pa.ArrowInvalid as file_exc:
        try:
            schema = ipc.open_stream(pa.memory_map(path)).schema
            return ipc.open_stream(pa.memory_map(path), options=options(schema))
        except pa.ArrowInvalid:
            raise file_exc from None


def _arrow_schema(path: str) -> pa.Schema:
    try:
        return _ipc_open(path, None).schema
    except pa.ArrowInvalid:
        import pyarrow.feather as feather

        return feather.read_table(path).schema  # Feather v1


def _arrow_read(path: str, columns: Sequence[str] | None) -> pa.Table:
    try:
        return _ipc_open(path, columns).read_all()
    except pa.ArrowInvalid:
        import pyarrow.feather as feather

        return feather.read_table(path, columns=list(columns) if columns is not None else None)


# ------------------------------------------------------------------ public API


def read_schema(path: str | os.PathLike[str], input_format: str | None = None) -> pa.Schema:
    """The schema of a table file, reading as little as the format allows.

    Parquet and Arrow read the footer/header only; CSV and JSON lines infer
    types from the first block. Schema metadata (e.g. ``labelqa.classes``) is
    kept for Parquet and Arrow.

    Raises:
        LabelqaError: Missing or unreadable file, unknown format.
    """
    p = check_file(path)
    fmt = resolve_format(p, input_format)
    check_input(p, fmt)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(p)
        if fmt == "csv":
            return _csv_schema(p, input_format)
        if fmt == "jsonl":
            return _jsonl_schema(p)
        return _arrow_schema(p)
    except LabelqaError:
        raise
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError) as exc:
        raise _unreadable(p, fmt, exc) from exc


def read_table(
    path: str | os.PathLike[str],
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    text: bool = False,
) -> pa.Table:
    """Read a table file into a :class:`pyarrow.Table`.

    Args:
        path: A ``.parquet``/``.pq``, ``.csv``/``.tsv``, ``.jsonl``/``.ndjson``
            or ``.arrow``/``.feather``/``.ipc`` file (CSV and JSON lines may be
            compressed: ``.gz``, ``.bz2``, ``.zst``, ``.lz4``).
        input_format: ``"parquet"``, ``"csv"``, ``"jsonl"`` or ``"arrow"``
            (also ``"tsv"``, ``"feather"``...), overriding the suffix.
        columns: Read only these columns, in this order; ``None`` reads all.
        text: CSV only: every column as the exact text of its cells (for
            writing unchanged columns back as they were read).

    Returns:
        The table. In CSV files an empty cell is a null, for strings too, and
        only an empty cell; an integer column whose cells are not all plainly
        spelled integers (``01``, ``007``), or a whole-number column that
        spells one number two ways (``1.0`` and ``1``), keeps its text.

    Raises:
        LabelqaError: Missing file, unreadable file (naming the format tried),
            or a requested column that is not in the file (listing those that
            are).
    """
    p = check_file(path)
    fmt = resolve_format(p, input_format)
    check_input(p, fmt)
    if columns is not None:
        columns = list(dict.fromkeys(columns))  # dedupe, keep order
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if columns is not None:
                _require_columns(p, pq.read_schema(p).names, columns)
            # ParquetFile, not pq.read_table: the latter builds a dataset (importing pyarrow.dataset and
            # pandas, ~0.3 s). Mapped pages, no read copies.
            table = pq.ParquetFile(p, memory_map=True).read(columns=columns, use_pandas_metadata=False)
        elif fmt == "csv":
            if columns is not None:
                _require_columns(p, _csv_schema(p, input_format).names, columns)
            table = _csv_read(p, input_format, columns, text=text)
        elif fmt == "jsonl":
            table = _jsonl_read(p, columns)
            if columns is not None:
                _require_columns(p, table.column_names, columns)
        else:
            if columns is not None:
                _require_columns(p, _arrow_schema(p).names, columns)
            table = _arrow_read(p, columns)
    except LabelqaError:
        raise
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError) as exc:
        raise _unreadable(p, fmt, exc) from exc
    if columns is not None:
        table = table.select(columns)
    return table


def _require_columns(path: str, available: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise LabelqaError(
            f"{path}: no column {names} (available columns: {format_columns(list(available))})",
            hint="check the column name",
        )


# ------------------------------------------------------------------------ .npy


def read_npy(
    path: str | os.PathLike[str],
    what: str = "probabilities file",
    save_hint: str = "save the N x K probabilities with np.save('probs.npy', pred_probs)",
):
    """A ``.npy`` array, memory-mapped read-only; never unpickles.

    Args:
        path: The ``.npy`` file.
        what: What the file holds, for "not found" messages.
        save_hint: How to write such a file, for the hints.

    Raises:
        LabelqaError: Missing file, not a ``.npy`` file, or an object array
            (which would need unpickling, refused for safety).
    """
    import numpy as np

    p = check_file(path, what=what)
    if p.lower().endswith(".npz"):
        raise LabelqaError(f"{p} is a .npz archive; expected a single .npy array", hint=save_hint)
    shape, _fortran, dtype, _offset = npy_header(p, hint=save_hint)
    if dtype.hasobject:
        raise LabelqaError(
            f"{p} holds Python objects (dtype {dtype}); refusing to unpickle it",
            hint="save a numeric N x K array, e.g. np.save('probs.npy', np.asarray(p, dtype=np.float32))",
        )
    try:
        if 0 in shape:
            return np.load(p, allow_pickle=False)
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise LabelqaError(f"cannot read {p} as .npy: {exc}", hint="re-save it with np.save") from exc


def npy_header(path: str | os.PathLike[str], *, hint: str = "write it with numpy.save") -> tuple[
        tuple[int, ...], bool, Any, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, reading its header only (no unpickling).

    Raises:
        LabelqaError: Not a readable ``.npy`` file.
    """
    import numpy as np

    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # (3, 0): utf-8 header, no public reader
                shape, fortran, dtype = np.lib.format._read_array_header(fh, version)  # noqa: SLF001
            offset = fh.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        raise LabelqaError(f"cannot read {path} as .npy: {exc}", hint=hint) from exc
    return tuple(int(x) for x in shape), bool(fortran), np.dtype(dtype), offset
