"""The scan: data -> detectors -> a result with the quality gate decided.

* :func:`scan` is the public entry: every load, detector, run, engine and
  gate option of :mod:`labelqa.options` as a flat keyword argument; it picks
  the engine (:mod:`labelqa.run.engine`), runs the detectors through the
  driver (:mod:`labelqa.run.driver`) and decides the gate before anything is
  written. The result is the same :class:`~labelqa.result.ScanResult` for
  every engine.
* :func:`run_detectors` is the in-memory step on loaded data (no engine
  choice, no gate), which :func:`labelqa.evaluate_detectors` also uses.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import labelqa.options as opts
from labelqa.data.model import LabelData
from labelqa.detectors.base import Detector
from labelqa.detectors.registry import DETECTORS, make_detector
from labelqa.errors import LabelqaError
from labelqa.report.writers import write_report
from labelqa.result import ScanResult
from labelqa.runtime import small_pages

__all__ = ["DETECTORS", "available_detectors", "detector_params", "load_options", "run_detectors", "scan",
           "top_issues", "write_report"]

#: Callback for progress messages: ``progress("running detector cl")``.
Progress = Callable[[str], None]


def available_detectors(data: LabelData) -> list[str]:
    """Names of the detectors the data has inputs for, in run order."""
    from labelqa.detectors.registry import available_detectors as available

    return available(data.task, dynamics=data.logits_by_epoch is not None, embeddings=data.embeddings is not None)


def _detector(name: str, data: LabelData, params: dict[str, Any] | None) -> Detector:
    return make_detector(name, data.task, params, dynamics=data.logits_by_epoch is not None,
                         embeddings=data.embeddings is not None)


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
    issue_rule: str = "relative_rank",
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
    from labelqa.run.driver import scan_memory

    params = params or {}
    names = available_detectors(data) if detectors is None else detectors
    dets = [_detector(d, data, params.get(d)) if isinstance(d, str) else d for d in names]
    return scan_memory(data, dets, primary=primary, issue_rule=issue_rule, progress=progress)


@small_pages
def scan(
    data: LabelData | str | os.PathLike[str] | Any = None,
    *,
    detectors: Sequence[Detector | str] | str | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    primary: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Any:
    """Scan a dataset for label errors and decide the quality gate.

    Args:
        data: A path (file or folder) to load, validated :class:`LabelData`, or in-memory data: a
            pandas/polars DataFrame, pyarrow Table or RecordBatchReader, datasets.Dataset, or dict of
            arrays (columns chosen by ``label_col=``... as for a file). ``labels=``, ``pred_probs=`` and
            ``embeddings=`` may also be arrays (numpy, Series), with or without ``data``.
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
    row_index = data.index if type(data).__module__.startswith("pandas") and hasattr(data, "index") else None
    data, options = in_memory_data(data, options)
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
    result = _run(data, settings, progress, judge=judge, objects=list(detectors) if objects else None, params=params,
                  primary=primary)
    result.row_index = row_index
    return result


_SCAN_PARAMS = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o.default)
                for n, o in opts.options_for("scan").items()
                if o.api and not o.positional and not o.cli_only and n != "detectors"]
scan.__signature__ = inspect.signature(scan).replace(  # type: ignore[attr-defined]
    parameters=[p for p in inspect.signature(scan).parameters.values() if p.kind != p.VAR_KEYWORD] + _SCAN_PARAMS)


def in_memory_data(data: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``data`` and keyword options with arrays (``labels=``, ``pred_probs=``...) folded into one Arrow table.

    Paths and :class:`LabelData` pass through unchanged; in-memory data
    becomes a :class:`pyarrow.Table` (see :mod:`labelqa.data.frames`).
    """
    from labelqa.data.frames import as_table, is_in_memory, split_arrays, with_arrays

    arrays, options = split_arrays(options)
    if arrays:
        if isinstance(data, LabelData):
            raise LabelqaError(f"{', '.join(arrays)} given as arrays, but data is already loaded")
        return with_arrays(data, arrays, options)
    if data is None:
        raise LabelqaError("no data given", "pass a path, a DataFrame or labels= and pred_probs= arrays")
    if is_in_memory(data) and not isinstance(data, LabelData):
        return as_table(data), options
    return data, options


def load_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`labelqa.load` from resolved load options.

    A repeatable option given once is passed as one value.
    """
    out = {}
    for name, value in settings.items():
        if opts.OPTIONS[name].group != "load" or opts.OPTIONS[name].positional:
            continue
        if isinstance(value, list) and opts.OPTIONS[name].repeatable:
            value = value[0] if len(value) == 1 else value
        if value is None and name == "pred_probs_col":
            continue  # the loader's default: pred_probs, else prob_<class> columns
        out[name] = value
    return out


def top_issues(result: ScanResult, n: int) -> Any:
    """The ``n`` best-ranked flagged rows of a scan (any engine's), in rank order."""
    return result.top_issues(n)


# --------------------------------------------------------------------------- running a scan
def _run(data: Any, settings: opts.Settings, progress: Progress | None, *, judge: bool,
         objects: list[Detector] | None, params: dict[str, Any] | None, primary: str | None) -> ScanResult:
    """Run a scan with resolved ``settings`` (load/detector/run/engine/gate options); the gate decided."""
    from labelqa.gate import check_gate, gate_rules
    from labelqa.run.engine import choose_engine

    rules = gate_rules(**settings.select("gate", api=True))  # checked before any work
    if settings["logits_by_epoch"] is None and (settings["aum_cutoff"] is not None
                                                or settings["aum_percentile"] is not None):
        raise LabelqaError("--aum-cutoff/--aum-percentile need training dynamics", "pass --logits-by-epoch PATH")
    path = data if isinstance(data, (str, os.PathLike)) else None
    why = _needs_memory(data, settings, custom=objects is not None or params is not None)
    engine = choose_engine(settings["engine"], path, memory_only=why)
    if engine == "memory":
        if not isinstance(data, LabelData):
            from labelqa.data import load

            if progress:
                progress(f"loading {data if path is not None else 'in-memory data'}")
            data = load(data, **load_options(settings.select("load")))
        if objects is None and params is None:
            params = {name: detector_params(settings, name) for name in DETECTORS}
        result = run_detectors(data, detectors=objects or settings["detectors"], params=params, primary=primary,
                               issue_rule=settings["issue_rule"], progress=progress)
    else:
        result = _scan_out_of_core(engine, Path(data), settings, progress)
    if judge:
        try:
            result.gate = check_gate(result, rules)
        except BaseException:
            result.close()
            raise
    return result


def _needs_memory(data: Any, s: opts.Settings, *, custom: bool) -> str | None:
    """Why only the in-memory engine can run this scan, or ``None``."""
    if isinstance(data, LabelData):
        return "data already loaded (LabelData)"
    if not isinstance(data, (str, os.PathLike)):
        return "data in memory (a table or DataFrame)"
    if custom:
        return "detector objects or params="
    names = s["detectors"]
    if names is not None:
        needs = [n for n in names if n in DETECTORS and _needs_all_rows(n)]
        if needs:
            return "; ".join(f"{_needs_all_rows(n)} ({n})" for n in needs)
        if "dup" in names and (s["embeddings"] is not None or s.changed("embeddings_col") or any(
                s.changed(n) for n in ("dup_threshold", "dup_k", "dup_index")) or (
                Path(data).is_file() and _has_column(Path(data), s["embeddings_col"]))):
            return ("near duplicates over every embedding (dup; the stream and dask engines find exact "
                    "duplicates of --dup-cols only)")
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


def _needs_all_rows(name: str) -> str | None:
    """What detector ``name`` needs all rows in memory for (``None``: it runs batch by batch)."""
    if name == "cl":
        return None
    det = make_detector(name, "multiclass")
    return det.needs_all_rows


def _has_column(path: Path, name: str) -> bool:
    from labelqa.data.readers import read_schema

    try:
        return name in read_schema(path, None).names
    except Exception:  # noqa: BLE001 - unreadable: the loader reports it properly
        return False


#: Detectors the stream and Dask engines run (their plans); dup finds exact duplicates only there.
OUT_OF_CORE_DETECTORS = ("cl", "dup")


def _spill_dir(given: str) -> str:
    """The ``spill_dir`` option checked: ``auto``, ``off`` or an existing folder."""
    if given in ("auto", "off") or Path(given).is_dir():
        return given
    raise LabelqaError(f"--spill-dir {given}: no such folder", "give an existing folder, auto or off")


def _scan_out_of_core(engine: str, data: Path, s: opts.Settings, progress: Progress | None) -> ScanResult:
    """Open the source, build the detectors for its task (cl, exact dup), run them on the stream or Dask runner."""
    from labelqa.data.source import open_source
    from labelqa.run.driver import scan_out_of_core

    say = progress or (lambda message: None)
    say(f"opening {data}")
    load = load_options(s.select("load"))
    takes = inspect.signature(open_source).parameters
    unused = sorted(k for k in load if k not in takes and s.changed(k))
    if unused:
        raise LabelqaError(f"options {', '.join(unused)} need --engine memory", "drop them or use --engine memory")
    src = open_source(data, batch_size=s["batch_size"], **{k: v for k, v in load.items() if k in takes})
    names = list(s["detectors"] or ["cl"])
    other = [n for n in names if n not in OUT_OF_CORE_DETECTORS]
    if other:  # pragma: no cover - _needs_memory keeps them in memory
        raise LabelqaError(f"--engine {engine} runs {', '.join(OUT_OF_CORE_DETECTORS)} only, not {', '.join(other)}",
                           "use --engine memory")
    detectors = [make_detector(n, src.task, detector_params(s, n), dynamics=False, embeddings=False) for n in names]
    for det in detectors:
        det.check_params()
    columns = [c for det in detectors for c in det.file_columns()]
    if columns:
        src = src.with_columns(columns)
    if "dup" in names:
        say(f"dup on --engine {engine}: exact duplicates of {', '.join(s['dup_cols'] or [])} only "
            "(near duplicates need every embedding in memory: --engine memory)")
    if engine == "stream":
        from labelqa.run.stream import StreamRunner

        runner: Any = StreamRunner(src, s["batch_size"], spill_dir=_spill_dir(s["spill_dir"]))
        say(f"scanning {data} with the stream engine (batches of {s['batch_size']:,} rows)")
    else:
        from labelqa.run.dask import DaskRunner

        runner = DaskRunner(src, scheduler=s["scheduler"], batch_size=s["batch_size"])
        say(f"dask: {len(runner.pieces)} pieces on {runner.address}")
    try:
        meta = {**src.meta, "renormalized": bool(src.renormalize)}
        return scan_out_of_core(runner, detectors, source=src.path, meta=meta, issue_rule=s["issue_rule"],
                                progress=progress)
    except BaseException:
        runner.close()
        raise
