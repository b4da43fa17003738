"""Option declarations shared by the CLI commands (names are the contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from labelqa.errors import LabelqaError

LOAD = "Input"
CL = "Confident learning"
OUT = "Output"

DataArg = Annotated[Path, typer.Argument(help="Dataset file: .parquet, .csv, .jsonl or .arrow/.feather.", show_default=False,
                                         metavar="DATA")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Column holding the given labels (int or string).", rich_help_panel=LOAD)]
PredProbsCol = Annotated[
    Optional[list[str]],
    typer.Option("--pred-probs-col", help="list<float> column of out-of-sample predicted probabilities; repeat for "
                 "several models (default: pred_probs, else prob_<class> columns).", rich_help_panel=LOAD,
                 show_default=False),
]
PredProbsFile = Annotated[
    Optional[list[Path]],
    typer.Option("--pred-probs", help="N x K .npy file of predicted probabilities (row order = data order); "
                 "repeat for several models.", rich_help_panel=LOAD, show_default=False),
]
CombineModels = Annotated[
    str,
    typer.Option("--combine-models", help="How several models' probabilities combine: geometric (default), mean or "
                 "loss_weighted (docs/multimodel.md).", rich_help_panel=LOAD),
]
Classes = Annotated[
    Optional[str],
    typer.Option("--classes", help="Comma-separated class names in probability-column order.", rich_help_panel=LOAD,
                 show_default=False),
]
ClassesFile = Annotated[
    Optional[Path],
    typer.Option("--classes-file", help="File with one class name per line (or a JSON list), in column order.",
                 rich_help_panel=LOAD, show_default=False),
]
IdCol = Annotated[
    Optional[str],
    typer.Option("--id-col", help="Column of row ids for the report (default: row index).", rich_help_panel=LOAD,
                 show_default=False),
]
InputFormat = Annotated[
    Optional[str],
    typer.Option("--input-format", help="Override the format guessed from the suffix: parquet, csv, jsonl, arrow.",
                 rich_help_panel=LOAD, show_default=False),
]
Renormalize = Annotated[
    bool,
    typer.Option("--renormalize", help="Divide each probability row by its sum instead of rejecting rows that "
                 "do not sum to 1.", rich_help_panel=LOAD),
]
FilterBy = Annotated[
    str,
    typer.Option("--filter-by", help="Flagging method: prune_by_noise_rate, prune_by_class, both, "
                 "confident_learning, predicted_neq_given, low_self_confidence, low_normalized_margin.",
                 rich_help_panel=CL),
]
ScoreMethod = Annotated[
    str,
    typer.Option("--score-method", help="Label quality score: self_confidence, normalized_margin, "
                 "confidence_weighted_entropy.", rich_help_panel=CL),
]
AdjustPredProbs = Annotated[
    bool,
    typer.Option("--adjust-pred-probs", help="Subtract per-class thresholds from probabilities before scoring.",
                 rich_help_panel=CL),
]
FracNoise = Annotated[
    float,
    typer.Option("--frac-noise", min=0.0, max=1.0, help="Flag only this fraction of the estimated issues.",
                 rich_help_panel=CL),
]
MinExamples = Annotated[
    int,
    typer.Option("--min-examples-per-class", min=0, help="Keep at least this many rows of every class unflagged.",
                 rich_help_panel=CL),
]
NumToRemove = Annotated[
    Optional[str],
    typer.Option("--num-to-remove-per-class", help="Comma-separated counts, one per class, overriding how many "
                 "rows of each class to flag.", rich_help_panel=CL, show_default=False),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --format json output).")]


def load_options(
    *,
    label_col: str,
    pred_probs_col: list[str] | str | None,
    pred_probs: list[Path] | Path | None,
    classes: str | None,
    classes_file: Path | None,
    id_col: str | None,
    input_format: str | None,
    renormalize: bool,
    **extra: Any,
) -> dict[str, Any]:
    """Keyword arguments for :func:`labelqa.load` from CLI options."""
    if classes is not None and classes_file is not None:
        raise LabelqaError("--classes and --classes-file both given", "pass only one of them")
    class_list = None
    if classes is not None:
        class_list = [c.strip() for c in classes.split(",")]
        if any(not c for c in class_list):
            raise LabelqaError(f"--classes {classes!r} has an empty class name", "write it as --classes a,b,c")
    return {
        "label_col": label_col,
        "pred_probs_col": _one_or_many(pred_probs_col) or "pred_probs",
        "pred_probs_file": _one_or_many(pred_probs),
        "classes": class_list,
        "classes_file": classes_file,
        "id_col": id_col,
        "input_format": input_format,
        "renormalize": renormalize,
        **{k: v for k, v in extra.items() if v is not None},
    }


def parse_int_list(text: str | None, option: str) -> list[int] | None:
    """Parse ``"3,0,5"`` into ints, or ``None``."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise LabelqaError(f"{option} {text!r} is not a comma-separated list of integers", f"e.g. {option} 10,5,0") from None
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log each step with timings to stderr.")]

ML = "Multi-label"
AUM = "AUM (training dynamics)"
NRG = "NRG (embeddings)"
DET = "Detectors"

Task = Annotated[
    str,
    typer.Option("--task", help="auto (multi-label when the label column holds lists or --label-sep is given), "
                 "multiclass or multilabel.", rich_help_panel=LOAD),
]
LabelSep = Annotated[
    Optional[str],
    typer.Option("--label-sep", help="Multi-label labels as a delimited string column, e.g. --label-sep ','.",
                 rich_help_panel=LOAD, show_default=False),
]
EmbeddingsCol = Annotated[
    str,
    typer.Option("--embeddings-col", help="list<float> column of embeddings; enables the nrg detector when present.",
                 rich_help_panel=LOAD),
]
EmbeddingsFile = Annotated[
    Optional[Path],
    typer.Option("--embeddings", help="N x D .npy file of embeddings (row order = data order).", rich_help_panel=LOAD,
                 show_default=False),
]
LogitsByEpoch = Annotated[
    Optional[str],
    typer.Option("--logits-by-epoch", help="Training dynamics for AUM: the dynamics/ folder of `labelqa train`, an "
                 "(epochs, N, K) .npy, a folder of per-epoch .npy/.parquet files, or a list<list<float>> column.",
                 rich_help_panel=AUM, show_default=False),
]
ThresholdSamples = Annotated[
    Optional[str],
    typer.Option("--threshold-samples", help="Bool marks of the rows trained as the fake extra class (a .npy/.txt "
                 "file or a bool column); the logits then have K+1 outputs.", rich_help_panel=AUM,
                 show_default=False),
]
AumCutoff = Annotated[
    Optional[float],
    typer.Option("--aum-cutoff", help="Flag rows with AUM below this value (instead of the threshold samples' "
                 "99th percentile).", rich_help_panel=AUM, show_default=False),
]
AumPercentile = Annotated[
    Optional[float],
    typer.Option("--aum-percentile", min=0.0, max=100.0, help="Flag rows whose AUM is below this percentile of all "
                 "rows' AUM. Without threshold samples, cutoff or percentile: flag AUM < 0.", rich_help_panel=AUM,
                 show_default=False),
]
Detectors = Annotated[
    Optional[str],
    typer.Option("--detectors", help="Comma-separated detectors to run: cl, aum, nrg (default: every detector the "
                 "data has inputs for).", rich_help_panel=DET, show_default=False),
]
IssueRule = Annotated[
    str,
    typer.Option("--issue-rule", help="With several detectors, which rows are issues: primary_or_2 (flagged by the "
                 "primary detector or by >= 2), primary, any, all, majority.", rich_help_panel=DET),
]


def split_names(text: str | None) -> list[str] | None:
    """``"cl, nrg"`` -> ``["cl", "nrg"]``; ``None`` stays ``None``."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise LabelqaError("--detectors is empty", "e.g. --detectors cl,nrg")
    return names

GATE = "Gate"
MaxIssueRate = Annotated[
    Optional[float],
    typer.Option("--max-issue-rate", help="Fail (exit 1) when the share of flagged rows exceeds this fraction, "
                 "e.g. 0.05.", rich_help_panel=GATE, show_default=False),
]
MaxClassIssueRate = Annotated[
    Optional[float],
    typer.Option("--max-class-issue-rate", help="Fail when any class's share of flagged rows exceeds this.",
                 rich_help_panel=GATE, show_default=False),
]
MaxIssues = Annotated[
    Optional[int],
    typer.Option("--max-issues", min=0, help="Fail when more rows than this are flagged.", rich_help_panel=GATE,
                 show_default=False),
]
MaxNoiseRate = Annotated[
    Optional[float],
    typer.Option("--max-noise-rate", help="Fail when the estimated noise rate exceeds this.", rich_help_panel=GATE,
                 show_default=False),
]
NoiseRateBound = Annotated[
    Optional[str],
    typer.Option("--noise-rate-bound", help="Which noise-rate figure --max-noise-rate checks: point, lower or upper "
                 "(95% bootstrap interval) (default: point).", rich_help_panel=GATE, show_default=False),
]
GateDetectors = Annotated[
    Optional[str],
    typer.Option("--gate-detectors", help="Count only rows flagged by these detectors (comma-separated) "
                 "(default: the combined flags).", rich_help_panel=GATE, show_default=False),
]
ExitZero = Annotated[bool, typer.Option("--exit-zero", help="Exit 0 even when the gate fails.", rich_help_panel=GATE)]
Config = Annotated[
    Optional[Path],
    typer.Option("--config", help="TOML config (default: ./labelqa.toml, or the tool.labelqa table of "
                 "./pyproject.toml).",
                 show_default=False),
]


def _one_or_many(values: Any) -> Any:
    """A repeated option: ``None`` when absent, the value itself when given once, else the list."""
    if values is None or isinstance(values, (str, Path)):
        return values
    values = list(values)
    return None if not values else values[0] if len(values) == 1 else values
