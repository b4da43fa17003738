"""The ``labelqa evaluate`` entry: load, take the truth, run the detectors, score them.

It sits above :mod:`labelqa.scan`; :mod:`labelqa.evaluate` holds the scoring
and rendering that the report writers also use.
"""

from __future__ import annotations

import os
from typing import Any

import labelqa.options as opts
from labelqa.data import load
from labelqa.errors import LabelqaError
from labelqa.evaluate import INJECTION_CAVEAT, evaluate, inject_into, parse_noise_spec, read_truth_codes
from labelqa.scan import detector_params, load_options, run_detectors

__all__ = ["evaluate_detectors"]

def evaluate_detectors(
    data: str | os.PathLike[str] | Any = None,
    *,
    truth_col: str | Any = None,
    inject_noise: str | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    progress: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Scan a multiclass dataset and score every detector (and the ensemble) against the truth.

    Args:
        data: Dataset file, or in-memory data as :func:`labelqa.scan` takes it (a pandas/polars
            DataFrame, pyarrow Table or RecordBatchReader, datasets.Dataset, dict of arrays;
            ``labels=``/``pred_probs=`` arrays with or without it).
        truth_col: Column of true labels, read only for scoring (never given to a detector); for
            in-memory data also an array of true labels, one per row.
        inject_noise: ``KIND:RATE`` (``uniform:0.2``, ``pairflip:0.1``): flip the given labels first;
            the original labels are then the truth (with ``truth_col`` too, the column stays the truth).
        seed: Seed of ``inject_noise``.
        out: Write the scan report plus evaluation.json into this folder.
        progress: Optional callback receiving a short message before each step.
        **options: The load, detector and run options of :mod:`labelqa.options` that
            ``labelqa evaluate`` takes (every scan option but the multi-label, engine and gate ones).

    Returns:
        The evaluation (:func:`evaluate`; evaluation.json's content).

    Raises:
        LabelqaError: No truth, a bad noise spec, a truth column that is also a detector input,
            or any scan error (nothing is written).
        TypeError: An unknown keyword argument.
    """

    in_memory = not isinstance(data, (str, os.PathLike))
    truth_array = False
    if in_memory:
        from labelqa.data.frames import is_array

        truth_array = is_array(truth_col)
        data, truth_col, options = _in_memory(data, truth_col, options)
    own = opts.resolve("evaluate", given={"truth_col": truth_col, "inject_noise": inject_noise, "seed": seed,
                                          "out": out}, function="evaluate_detectors", groups=("evaluate", "output"))
    s = opts.resolve("evaluate", given=options, function="evaluate_detectors", groups=opts.SCAN_GROUPS)
    truth_col, inject_noise, seed = own["truth_col"], own["inject_noise"], own["seed"]
    if own["out"] is not None:
        from labelqa.paths import option_inputs, refuse_overwriting_inputs

        refuse_overwriting_inputs(option_inputs(s if in_memory else {"data": data, **s}), out_dir=own["out"])
    say = progress or (lambda message: None)
    if truth_col is None and inject_noise is None:
        raise LabelqaError("evaluate needs ground truth", "pass --truth-col COLUMN or --inject-noise uniform:0.2")
    noise = parse_noise_spec(inject_noise) if inject_noise is not None else None
    if own["out"] is not None:
        from labelqa.atomic import check_report_folder

        check_report_folder(own["out"])  # before any work: a folder with other files is refused
    inputs = {*(s["pred_probs_col"] or ["pred_probs"]), s["embeddings_col"], s["id_col"], s["logits_by_epoch"],
              s["threshold_samples"]}
    if truth_col is not None and truth_col in inputs:
        raise LabelqaError(f"--truth-col {truth_col!r} is also a detector input", "pass the column of true labels")
    say(f"loading {'in-memory data' if in_memory else data}")
    labeled = load(data, task="multiclass", **load_options(s.select("load")))  # the truth column is not read
    truth_info: dict[str, Any] = {}
    if truth_col is not None:
        say(f"reading true labels from column {truth_col!r}")
        truth = read_truth_codes(data, truth_col, labeled, s["input_format"])
        truth_info = {"kind": "array"} if truth_array else {"kind": "column", "column": truth_col}
    if noise is not None:
        kind, rate = noise
        say(f"injecting {kind} noise at rate {rate} (seed {seed})")
        labeled, original = inject_into(labeled, kind, rate, seed)
        injected = {"noise": kind, "rate": rate, "seed": seed, "caveat": INJECTION_CAVEAT}
        if truth_col is None:
            truth, truth_info = original, {"kind": "injected", **injected}
        else:
            truth_info["injected"] = injected
    params = {name: detector_params(s, name, "evaluate") for name in ("cl", "aum", "nrg")}
    result = run_detectors(labeled, detectors=s["detectors"], params=params, issue_rule=s["issue_rule"],
                           progress=progress)
    say("scoring")
    evaluation = evaluate(result, truth, truth=truth_info)
    if own["out"] is not None:
        from labelqa.report.writers import write_report

        say(f"writing the report with evaluation.json to {own['out']}/")
        write_report(result, own["out"], evaluation=evaluation)
    return evaluation


def _in_memory(data: Any, truth: Any, options: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """In-memory data as one Arrow table (arrays folded in, :func:`labelqa.scan.in_memory_data`), with true labels
    given as an array added as a column; returns the table, the truth column's name and the options."""
    from labelqa.data.frames import is_array, matrix_column
    from labelqa.data.model import LabelData
    from labelqa.scan import in_memory_data

    if isinstance(data, LabelData):
        raise LabelqaError("evaluate needs the data's rows, not loaded LabelData",
                           "pass the path, DataFrame or table that was loaded")
    table, options = in_memory_data(data, options)
    if is_array(truth):
        column = matrix_column(truth, "truth_col=")
        if len(column) != table.num_rows:
            raise LabelqaError(f"truth_col= has {len(column)} values but the data has {table.num_rows} rows",
                               "pass one true label per row, in the same order")
        name = "truth"
        while name in table.column_names:  # never shadow a user column
            name = "_" + name
        table, truth = table.append_column(name, column), name
    return table, truth, options
