"""Every option of every command, declared once, and the one function that checks a value.

An option has ONE name: the Python keyword argument, the configuration key
(``labelqa.toml [scan] nrg_lambda``; ``-`` or ``_``), and, with ``_`` ->
``-``, the command-line flag (``--nrg-lambda``). Its declaration
(:class:`Option`) says its kind of value, default, allowed values or range,
help text, group, the detectors it tunes and the commands that take it. From
the declarations come:

* the CLI's parameters (:mod:`labelqa.cli.params` builds each command's
  signature from :func:`options_for`);
* the configuration tables and their keys (:func:`config_keys`,
  :mod:`labelqa.config`);
* the keyword arguments of :func:`labelqa.scan`, :func:`labelqa.fix`,
  :func:`labelqa.evaluate_detectors` and :func:`labelqa.train.train_from_file`
  (each validates them with :func:`resolve`);
* validation and its messages: :func:`check` is the one place a value is
  checked, whichever way it came, and its errors name the option the way the
  user gave it (``--nrg-lambda``, ``labelqa.toml [scan] nrg_lambda``,
  ``nrg_lambda=``).

Like scikit-learn's ``_parameter_constraints``/``validate_params``:
constraints declared once, checked once. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelqa.errors import LabelqaError

__all__ = [
    "COMMANDS",
    "DEFAULT",
    "FLAG",
    "GROUPS",
    "KWARG",
    "OPTIONS",
    "READS",
    "Interval",
    "Option",
    "Settings",
    "Source",
    "check",
    "config_keys",
    "config_table",
    "option",
    "options_for",
    "resolve",
]

#: The commands (``labelqa COMMAND``) and the library function each one calls.
COMMANDS = ("scan", "fix", "evaluate", "train", "report", "export")

#: Option groups. ``load``: reading the data; ``detector``: a detector's
#: parameters (``Option.detectors`` says whose); ``run``: which detectors run
#: and how their flags combine; ``engine``: where the scan runs; ``gate``: the
#: quality gate; ``output``: what the command writes or prints; ``fix``,
#: ``evaluate``, ``train``: options of that command alone.
GROUPS = ("load", "detector", "run", "engine", "gate", "output", "fix", "evaluate", "train", "export")

#: Groups whose options live in the ``[scan]`` table, whichever command reads them.
SCAN_GROUPS = ("load", "detector", "run", "engine")

#: The configuration tables each command reads, later ones winning on a shared key (none is shared).
READS: dict[str, tuple[str, ...]] = {
    "scan": ("scan", "gate"),
    "fix": ("scan", "fix"),
    "evaluate": ("scan", "evaluate"),
    "train": ("train",),
    "report": (),
    "export": ("export",),
}

#: Detector names used in declarations: ``cl`` (multiclass confident learning), ``mlcl`` (its multi-label
#: form, also run as ``--detectors cl``), ``aum``, ``nrg``, ``dup`` (duplicates with conflicting labels).
DETECTOR_KINDS = ("cl", "mlcl", "aum", "nrg", "dup")

KINDS = ("str", "int", "float", "bool", "path", "names", "values", "ints")


@dataclass(frozen=True)
class Interval:
    """An allowed range of a number: ``low``/``high`` (``None`` = unbounded), ends closed unless ``open_*``.

    ``text`` replaces the generated wording (``a number in [0, 1]``) where a
    message must keep its words (the gate's ``a fraction between 0 and 1``).
    """

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    text: str | None = None

    def contains(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.open_low and x == self.low)):
            return False
        return not (self.high is not None and (x > self.high or (self.open_high and x == self.high)))

    def describe(self, noun: str) -> str:
        if self.text:
            return self.text
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{noun} {'>' if self.open_low else '>='} {self.low:g}"
        return f"{noun} {'<' if self.open_high else '<='} {self.high:g}"


FRACTION = Interval(0, 1)
GATE_FRACTION = Interval(0, 1, text="a fraction between 0 and 1")
NON_NEGATIVE = Interval(0)
POSITIVE = Interval(0, open_low=True)
AT_LEAST_1 = Interval(1)


@dataclass(frozen=True, eq=False)
class Option:
    """The declaration of one option.

    Attributes:
        name: The one name (keyword argument, configuration key; flag ``--`` + name with ``-``).
        kind: ``str``, ``int``, ``float``, ``bool``, ``path``, ``names`` (a list of names, or
            ``"a,b"``), ``values`` (a list of class values, or ``"a,b"``) or ``ints`` (a list of
            integers, or ``"1,2"``).
        default: The value when not given (``None``: unset).
        help: One or two sentences for ``--help`` and the docs.
        group: One of :data:`GROUPS`.
        commands: The commands that take it.
        detectors: For ``group="detector"``: the detectors it tunes (:data:`DETECTOR_KINDS`).
        choices: The allowed values (for ``names``: of each item).
        interval: The allowed range of a number.
        repeatable: The flag may be given several times (the value is a list).
        short: A short flag (``-o``).
        aliases: Further flag spellings kept working (CLI only).
        metavar: The placeholder in ``--help``.
        panel: The ``--help`` panel, when not the group's.
        required: The command cannot run without it (then it is not a configuration key).
        positional: A command-line argument (``DATA``), not a flag.
        cli_only: Only a flag (``--quiet``, ``--config``): neither a configuration key nor a keyword argument.
        api: The command's library function takes it as a keyword argument (``False``: CLI and
            configuration only, such as ``--exit-zero``).
        example: A typical value, shown in the hint of an error.
        variants: Per command, fields that differ there (``out`` is a folder for ``scan``, a
            required file for ``fix``); :meth:`for_command` applies them.
    """

    name: str
    kind: str
    default: Any
    help: str
    group: str
    commands: tuple[str, ...]
    detectors: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    interval: Interval | None = None
    repeatable: bool = False
    short: str | None = None
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    panel: str | None = None
    required: bool = False
    positional: bool = False
    cli_only: bool = False
    api: bool = True
    example: str | None = None
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def flag(self) -> str:
        """The long flag: ``--nrg-lambda``."""
        return "--" + self.name.replace("_", "-")

    def for_command(self, command: str) -> Option:
        """This option as ``command`` takes it (its variant applied)."""
        overrides = self.variants.get(command)
        return dataclasses.replace(self, **overrides) if overrides else self


_PANELS = {"load": "Input", "run": "Detectors", "engine": "Scale", "gate": "Gate", "output": "Output",
           "fix": "Fix", "evaluate": "Ground truth", "train": "Training", "export": "Export"}
_DETECTOR_PANELS = {("cl", "mlcl"): "Confident learning", ("cl",): "Confident learning", ("mlcl",): "Multi-label",
                    ("aum",): "AUM (training dynamics)", ("nrg",): "NRG (embeddings)",
                    ("dup",): "Duplicates"}


def panel_of(opt: Option) -> str:
    """The ``--help`` panel of an option."""
    if opt.panel:
        return opt.panel
    if opt.group == "detector":
        return _DETECTOR_PANELS[opt.detectors]
    return _PANELS[opt.group]


# --------------------------------------------------------------------------- the declarations
S, F, E, T, R, X = "scan", "fix", "evaluate", "train", "report", "export"
SFE, SF = (S, F, E), (S, F)
_AUM_PANEL = "AUM (training dynamics)"

_DECLARED = [
    # positional arguments
    Option("data", "path", None, "Dataset file: .parquet, .csv, .jsonl or .arrow/.feather.", "load", (S, F, E, T),
           positional=True, required=True, metavar="DATA"),
    Option("report_dir", "path", None, "Report folder written by `labelqa scan` (holds summary.json and "
           "issues.parquet).", "output", (R, X), positional=True, required=True, metavar="REPORT_DIR"),
    # ------------------------------------------------------------------ load
    Option("label_col", "str", "label", "Column holding the given labels (int or string).", "load", (S, F, E, T)),
    Option("pred_probs_col", "str", None, "list<float> column of out-of-sample predicted probabilities; repeat for "
           "several models (default: pred_probs, else prob_<class> columns).", "load", (S, F, E, T), repeatable=True,
           variants={T: {"repeatable": False, "default": "pred_probs", "help": "Name of the written probability "
                         "column.", "panel": "Output"}}),
    Option("pred_probs_cols", "names", None, "Per-class probability columns by name or glob pattern, comma-separated "
           "(e.g. 'p_*'); a column's class is the part the * matched (p_cat -> cat, proba_0 -> 0), in column order "
           "unless --classes orders them.", "load", SFE, metavar="PATTERNS", example="p_*"),
    Option("pred_probs", "path", None, "N x K .npy file of predicted probabilities (row order = data order); "
           "repeat for several models.", "load", SFE, repeatable=True),
    Option("combine_models", "str", "log_linear", "How several models' probabilities combine: log_linear (default: "
           "weights fitted to the labels, in-sample models held back), geometric, mean or loss_weighted "
           "(docs/multimodel.md).", "load", SFE,
           choices=("geometric", "mean", "loss_weighted", "log_linear")),
    Option("classes", "values", None, "Comma-separated class names in probability-column order.", "load",
           (S, F, E, T), metavar="A,B,C"),
    Option("classes_file", "path", None, "File with one class name per line (or a JSON list), in column order.",
           "load", SFE),
    Option("id_col", "str", None, "Column of row ids for the report (default: row index).", "load", (S, F, E, T),
           variants={T: {"help": "Column of row ids (checked, kept in the copy and in the printed scan command)."}}),
    Option("input_format", "str", None, "Override the format guessed from the suffix: parquet, csv, jsonl, arrow.",
           "load", (S, F, E, T),
           choices=("parquet", "csv", "jsonl", "arrow", "pq", "tsv", "json", "ndjson", "feather", "ipc"),
           metavar="FORMAT"),
    Option("renormalize", "bool", False, "Divide each probability row by its sum instead of rejecting rows that do "
           "not sum to 1.", "load", SFE),
    Option("task", "str", "auto", "auto (multi-label when the label column holds lists or --label-sep is given), "
           "multiclass or multilabel.", "load", (S, F, T), choices=("auto", "multiclass", "multilabel")),
    Option("label_sep", "str", None, "Multi-label labels as a delimited string column, e.g. --label-sep ','.",
           "load", (S, F, T)),
    Option("embeddings_col", "str", "embedding", "list<float> column of embeddings; enables the nrg detector when "
           "present.", "load", SFE),
    Option("embeddings", "path", None, "N x D .npy file of embeddings (row order = data order).", "load", SFE),
    Option("trust_class_order", "bool", False, "Go on even when the labels fit another order of the probability "
           "columns far better than the resolved one (docs/safety.md).", "load", SFE),
    Option("logits_by_epoch", "str", None, "Training dynamics for AUM: the dynamics/ folder of `labelqa train`, an "
           "(epochs, N, K) .npy, a folder of per-epoch .npy/.parquet files, or a list<list<float>> column.", "load",
           SFE, panel=_AUM_PANEL, metavar="PATH"),
    Option("threshold_samples", "str", None, "Bool marks of the rows trained as the fake extra class (a .npy/.txt "
           "file or a bool column); the logits then have K+1 outputs.", "load", SFE, panel=_AUM_PANEL),
    # ------------------------------------------------------------------ detectors
    Option("filter_by", "str", "prune_by_noise_rate_plus", "Flagging method: prune_by_noise_rate_plus (default: "
           "cleanlab's rows plus the uncertain disputes the confident joint misses; multi-label data: "
           "prune_by_noise_rate), prune_by_noise_rate (cleanlab's default), prune_by_class, both, "
           "confident_learning, predicted_neq_given, low_self_confidence, low_normalized_margin, "
           "low_margin_midpoint (the last and the default cl only; docs/detection.md).", "detector", SFE,
           detectors=("cl", "mlcl"), metavar="METHOD",
           choices=("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                    "low_self_confidence", "low_normalized_margin", "low_margin_midpoint",
                    "prune_by_noise_rate_plus")),
    Option("score_method", "str", "self_confidence", "Label quality score: self_confidence, normalized_margin, "
           "confidence_weighted_entropy.", "detector", SFE, detectors=("cl",), metavar="METHOD",
           choices=("self_confidence", "normalized_margin", "confidence_weighted_entropy")),
    Option("adjust_pred_probs", "bool", False, "Subtract per-class thresholds from probabilities before scoring.",
           "detector", SFE, detectors=("cl",)),
    Option("frac_noise", "float", 1.0, "Flag only this fraction of the estimated issues.", "detector", SFE,
           detectors=("cl", "mlcl"), interval=FRACTION),
    Option("min_examples_per_class", "int", 1, "Keep at least this many rows of every class unflagged.", "detector",
           SFE, detectors=("cl", "mlcl"), interval=NON_NEGATIVE),
    Option("num_to_remove_per_class", "ints", None, "Comma-separated counts, one per class, overriding how many rows "
           "of each class to flag.", "detector", SFE, detectors=("cl", "mlcl"), example="10,5,0"),
    Option("aggregation", "str", "ema", "Multi-label row score: ema (exponential moving average of the sorted "
           "per-class scores) or softmin.", "detector", SF, detectors=("mlcl",), choices=("ema", "softmin")),
    Option("ema_alpha", "float", 0.8, "alpha of the ema aggregation.", "detector", SF, detectors=("mlcl",),
           interval=FRACTION),
    Option("softmin_temperature", "float", 0.1, "Temperature of softmin.", "detector", SF, detectors=("mlcl",),
           interval=POSITIVE),
    Option("aum_cutoff", "float", None, "Flag rows with AUM below this value (instead of the threshold samples' "
           "99th percentile).", "detector", SFE, detectors=("aum",)),
    Option("aum_percentile", "float", None, "Flag rows whose AUM is below this percentile of all rows' AUM. Without "
           "threshold samples, cutoff or percentile: flag AUM < 0.", "detector", SFE, detectors=("aum",),
           interval=Interval(0, 100)),
    Option("nrg_mode", "str", "auto", "auto (exact up to 60,000 rows, else kNN), exact or knn.", "detector", SFE,
           detectors=("nrg",), choices=("auto", "exact", "knn")),
    Option("nrg_kernel", "str", "prob", "prob (features x probabilities) or feature (features only).", "detector",
           SFE, detectors=("nrg",), choices=("prob", "feature")),
    Option("nrg_power", "float", 4.0, "Edge power t (4 images/text, 8 audio).", "detector", SFE, detectors=("nrg",),
           interval=POSITIVE),
    Option("nrg_k", "int", None, "Neighbours per row in kNN mode (default: 100).", "detector", SFE,
           detectors=("nrg",), interval=AT_LEAST_1),
    Option("nrg_edge_cutoff", "float", 0.03, "Drop edges whose kernel value is at most this.", "detector", SFE,
           detectors=("nrg",), interval=Interval(0, 1, open_high=True)),
    Option("nrg_lambda", "float", 0.05, "lambda of the suspect set.", "detector", SFE, detectors=("nrg",),
           interval=NON_NEGATIVE),
    Option("nrg_backend", "str", "numpy", "Exact mode engine: numpy, torch or auto.", "detector", SFE,
           detectors=("nrg",), choices=("numpy", "torch", "auto")),
    Option("nrg_index", "str", "auto", "kNN index: auto (sklearn), sklearn, faiss or brute.", "detector", SFE,
           detectors=("nrg",), choices=("auto", "sklearn", "faiss", "brute")),
    Option("outlier_rate", "float", 0.01, "Share of rows flagged is_outlier by NRG.", "detector", SFE,
           detectors=("nrg",), interval=Interval(0, 1, open_high=True)),
    Option("dup_cols", "names", None, "Comma-separated columns hashed to find exact duplicates (text, image bytes "
           "or paths, numbers, lists) for the dup detector.", "detector", SFE, detectors=("dup",), example="text"),
    Option("dup_threshold", "float", 0.98, "Cosine similarity of embeddings at or above which two rows are near "
           "duplicates (dup detector, when the data has embeddings).", "detector", SFE, detectors=("dup",),
           interval=Interval(0, 1, open_low=True)),
    Option("dup_k", "int", 10, "Neighbours searched per row for near duplicates.", "detector", SFE,
           detectors=("dup",), interval=AT_LEAST_1),
    Option("dup_index", "str", "auto", "Near-duplicate neighbour index: auto (sklearn), sklearn, faiss or brute.",
           "detector", SFE, detectors=("dup",), choices=("auto", "sklearn", "faiss", "brute")),
    Option("split_col", "str", None, "Column naming each row's split (train/test...); duplicate groups spanning "
           "splits are reported as leakage by the dup detector.", "detector", SFE, detectors=("dup",)),
    # ------------------------------------------------------------------ run
    Option("detectors", "names", None, "Comma-separated detectors to run: cl, aum, nrg, dup (default: every "
           "detector the data has inputs for but dup).", "run", SFE, choices=("cl", "aum", "nrg", "dup"),
           example="cl,nrg"),
    Option("issue_rule", "str", "relative_rank", "With several detectors, which rows are issues: relative_rank "
           "(within the detectors' own cuts on average; docs/detection.md), primary_or_2 (flagged by the primary "
           "detector or by >= 2), primary, any, all, majority.", "run", SFE,
           choices=("relative_rank", "primary_or_2", "primary", "any", "all", "majority")),
    # ------------------------------------------------------------------ engine
    Option("engine", "str", "auto", "auto (stream large Parquet/Arrow inputs scanned with cl and exact dup only), "
           "memory, stream (bounded memory) or dask.", "engine", (S,), choices=("auto", "memory", "stream", "dask")),
    Option("batch_size", "int", 262_144, "Rows per record batch of the stream and dask engines.", "engine", (S,),
           interval=AT_LEAST_1),
    Option("spill_dir", "str", "auto", "Where --engine stream keeps the decoded rows of a dataset too large to "
           "keep in memory, so that later passes read them back instead of decoding the input again: auto (the "
           "system's temporary folder), a folder, or off (decode the input on every pass). The file has no name "
           "and is freed when the scan ends; it is only made where twice its size is free.", "engine", (S,)),
    Option("scheduler", "str", None, "Dask scheduler address (default: a local cluster on this machine).", "engine",
           (S,)),
    # ------------------------------------------------------------------ gate
    Option("max_issue_rate", "float", None, "Fail (exit 1) when the share of flagged rows exceeds this fraction, "
           "e.g. 0.05.", "gate", (S,), interval=GATE_FRACTION, example="0.05"),
    Option("max_class_issue_rate", "float", None, "Fail when any class's share of flagged rows exceeds this.", "gate",
           (S,), interval=GATE_FRACTION, example="0.2"),
    Option("max_issues", "int", None, "Fail when more rows than this are flagged.", "gate", (S,),
           interval=Interval(0, text="a whole number >= 0"), example="100"),
    Option("max_noise_rate", "float", None, "Fail when the estimated noise rate exceeds this.", "gate", (S,),
           interval=GATE_FRACTION, example="0.1"),
    Option("noise_rate_bound", "str", None, "Which noise-rate figure --max-noise-rate checks: point, lower or upper "
           "(95% bootstrap interval) (default: point).", "gate", (S,), choices=("point", "lower", "upper")),
    Option("gate_detectors", "names", None, "Count only rows flagged by these detectors (comma-separated) (default: "
           "the combined flags).", "gate", (S,), example="cl"),
    Option("exit_zero", "bool", False, "Exit 0 even when the gate fails.", "gate", (S,), api=False),
    # ------------------------------------------------------------------ output
    Option("out", "path", None, "Output folder.", "output", (S, F, E, T, X), short="-o",
           variants={S: {"default": Path("labelqa-report"), "help": "Folder for the report files.", "api": False},
                     F: {"required": True, "help": "Output file (.parquet, .csv, .jsonl, .arrow); never the input.",
                         "panel": "Fix"},
                     E: {"help": "Write the scan report plus evaluation.json (shown in report.html and summary.md) "
                         "into this folder."},
                     T: {"default": Path("labelqa-train"), "help": "Output folder (data.parquet and dynamics/)."},
                     X: {"help": "Output file (default: REPORT_DIR/review.json for label-studio, review.csv, "
                         "review.jsonl)."}}),
    Option("format", "str", None, "What goes to stdout.", "output", (S, E), api=False,
           variants={S: {"default": "human", "choices": ("human", "json", "markdown", "github"),
                         "help": "stdout: human (rich tables), json (summary.json), markdown (summary.md), github "
                         "(workflow annotations; summary.md appended to $GITHUB_STEP_SUMMARY)."},
                     E: {"default": "table", "choices": ("table", "json", "markdown"),
                         "help": "stdout: table (rich), json (evaluation.json) or markdown."}}),
    Option("show_cols", "names", None, "Comma-separated data columns shown beside the flagged rows in the terminal, "
           "summary.md, report.html and exports: text, numbers, images (paths, bytes or pixel arrays) as thumbnails.",
           "output", (S,), api=False, example="text"),
    Option("top", "int", 10, "Issues listed in the terminal.", "output", (S, X), interval=NON_NEGATIVE, api=False,
           variants={X: {"default": None, "api": True, "help": "Export only the N best-ranked flagged rows "
                         "(default: every flagged row)."}}),
    Option("csv", "bool", False, "Also write issues.csv (every row, as issues.parquet; default: only issues.parquet, "
           "which is complete and several times smaller and faster to write).", "output", (S,), api=False),
    Option("csv_formulas", "bool", False, "Write CSV text cells that start with =, +, -, @, tab or CR as they are "
           "(default: prefix them with ' so spreadsheets do not run them as formulas; numbers stay as written).",
           "output", (S, F, X), variants={S: {"api": False}}),
    Option("quiet", "bool", False, "Print nothing but errors (and --format json output).", "output",
           (S, F, E, T, R, X), short="-q", cli_only=True, panel="Options"),
    Option("verbose", "bool", False, "Log each step with timings to stderr.", "output", (S, F, E, T), short="-v",
           cli_only=True, panel="Options"),
    Option("config", "path", None, "TOML configuration (default: ./labelqa.toml, or the tool.labelqa table of "
           "./pyproject.toml).", "output", (S, F, E, T, X), cli_only=True, panel="Options"),
    # ------------------------------------------------------------------ fix
    Option("report", "path", None, "Report folder from `labelqa scan` (default: scan DATA now).", "fix", (F,)),
    Option("strategy", "str", "relabel", "relabel flagged rows to the suggested label, drop them, or only flag them.",
           "fix", (F,), choices=("relabel", "drop", "flag")),
    Option("min_confidence", "float", 0.0, "Relabel/drop only when the suggested label's probability is at least "
           "this; other flagged rows are flagged.", "fix", (F,), interval=FRACTION),
    Option("decisions", "path", None, "Reviewers' answers to apply: a Label Studio JSON export of `labelqa export` "
           "tasks, or a .csv/.jsonl with columns id and decision (keep, drop, relabel:CLASS or a class).", "fix", (F,)),
    Option("undecided", "str", "keep", "With --decisions, rows without a decision: keep their label, or follow "
           "--strategy on a scan (strategy).", "fix", (F,), choices=("keep", "strategy")),
    Option("force", "bool", False, "Overwrite an existing output file.", "fix", (F, X),
           variants={X: {"group": "export"}}),
    # ------------------------------------------------------------------ export
    Option("to", "str", "label-studio", "Review format: label-studio (task JSON with the suggested label as a "
           "prediction, plus a labeling config), csv or jsonl (a blank decision column to fill in), or argilla "
           "(Argilla records with the suggestion, plus dataset settings).", "export", (X,),
           choices=("label-studio", "csv", "jsonl", "argilla")),
    # ------------------------------------------------------------------ evaluate
    Option("truth_col", "str", None, "Column of true labels, read only for scoring (never given to a detector).",
           "evaluate", (E,)),
    Option("inject_noise", "str", None, "Flip the given labels first, KIND:RATE with KIND uniform or pairflip (e.g. "
           "uniform:0.2); the original labels are then the truth.", "evaluate", (E,), metavar="KIND:RATE"),
    Option("seed", "int", 0, "Seed of --inject-noise.", "evaluate", (E, T), interval=NON_NEGATIVE,
           variants={T: {"group": "train", "help": "Seed of everything random (threshold samples, weights, batches, "
                         "folds)."}}),
    # ------------------------------------------------------------------ train
    Option("features_col", "str", None, "list<float> column of features or embeddings. Default: the first of the "
           "columns embedding, embeddings, features that exists.", "train", (T,), panel="Features"),
    Option("features", "path", None, "N x D .npy file of features (row order = data order).", "train", (T,),
           panel="Features"),
    Option("feature_cols", "names", None, "Comma-separated numeric columns to use as features: names or glob "
           "patterns such as 'px_*'.", "train", (T,), panel="Features", example="px_*"),
    Option("text_cols", "names", None, "Comma-separated text columns (names or glob patterns) turned into TF-IDF "
           "features (scikit-learn's TfidfVectorizer), added to the other features.", "train", (T,),
           panel="Features", example="text"),
    Option("group_col", "str", None, "Column of groups (a source, a near-duplicate cluster): rows of a group stay in "
           "one cross-validation fold.", "train", (T,)),
    Option("epochs", "int", 30, "Training epochs (logits recorded after each).", "train", (T,), interval=AT_LEAST_1),
    Option("hidden", "int", 128, "Hidden units of the MLP; 0 = linear model.", "train", (T,), interval=NON_NEGATIVE),
    Option("train_batch_size", "int", 128, "Minibatch size (--batch-size is the old spelling).", "train", (T,),
           interval=AT_LEAST_1, aliases=("--batch-size",)),
    Option("lr", "float", 0.02, "SGD learning rate (constant, momentum 0.9).", "train", (T,), interval=POSITIVE),
    Option("runs", "int", 2, "Training runs, each with its own disjoint set of threshold samples.", "train", (T,),
           interval=AT_LEAST_1),
    Option("folds", "int", 5, "Cross-validation folds for pred_probs.", "train", (T,), interval=Interval(2)),
    Option("model", "str", "logreg", "Model of the cross-validated pred_probs: logreg, hgb (HistGradientBoosting), "
           "knn, mlp (scikit-learn) or torch (the small torch model; needs torch). Multi-label data trains "
           "one-vs-rest.", "train", (T,), choices=("logreg", "hgb", "knn", "mlp", "torch"), aliases=("--cv-model",)),
    Option("dynamics", "str", "auto", "Per-epoch training dynamics for AUM (the small torch model): auto (when "
           "torch is installed and the data is multiclass), on (needs torch) or off.", "train", (T,),
           choices=("auto", "on", "off")),
    Option("threads", "int", 1, "BLAS and OpenMP (hgb) threads of the scikit-learn models, never more than the "
           "cores this process may use; 0 = all of them. One by default: on a busy machine threads that wait on each "
           "other are many times slower. The torch model always trains on one thread.", "train", (T,),
           interval=NON_NEGATIVE),
]

#: Every declared option by name.
OPTIONS: dict[str, Option] = {o.name: o for o in _DECLARED}
assert len(OPTIONS) == len(_DECLARED), "an option is declared twice"
del S, F, E, T, R, X, SFE, SF


def option(name: str, command: str | None = None) -> Option:
    """The declaration of ``name`` (as ``command`` takes it, when given)."""
    opt = OPTIONS[name]
    return opt.for_command(command) if command else opt


def options_for(command: str) -> dict[str, Option]:
    """The options ``command`` takes, in declaration order, as it takes them."""
    if command not in COMMANDS:
        raise KeyError(command)
    return {o.name: o.for_command(command) for o in _DECLARED if command in o.commands}


def config_table(opt: Option, command: str) -> str | None:
    """The configuration table ``command`` reads ``opt`` from (``None``: not a configuration key).

    Load, detector, run and engine options are ``[scan]`` keys for every command that takes them, gate
    options ``[gate]`` keys, and a command's own options keys of its table (``[fix]``, ``[evaluate]``,
    ``[scan]`` for ``out``/``format``/``top``). ``train`` reads ``[train]`` only.
    """
    opt = opt.for_command(command)
    if opt.cli_only or opt.positional or opt.required:
        return None
    if command == "train":
        return "train"
    if opt.group in SCAN_GROUPS:
        return "scan"
    if opt.group == "gate":
        return "gate"
    return command


def config_keys() -> dict[str, dict[str, Option]]:
    """Every configuration table and its keys (option name -> declaration as that table's command takes it)."""
    tables: dict[str, dict[str, Option]] = {}
    for command, reads in READS.items():
        for name, opt in options_for(command).items():
            table = config_table(opt, command)
            if table is not None:
                assert table in reads, (command, name, table)
                tables.setdefault(table, {}).setdefault(name, opt)
    return {table: tables[table] for table in ("scan", "gate", "fix", "evaluate", "train", "export")}


# --------------------------------------------------------------------------- where a value came from
@dataclass(frozen=True)
class Source:
    """Where a value came from, to name the option in a message the way the user gave it.

    Attributes:
        kind: ``flag``, ``config``, ``kwarg`` or ``default``.
        file: The configuration file (``config``).
        table: The table as written there (``scan``, ``tool.labelqa.gate``).
        key: The key as written there (``nrg-lambda`` or ``nrg_lambda``).
    """

    kind: str
    file: Path | None = None
    table: str | None = None
    key: str | None = None

    def name(self, opt: Option) -> str:
        """``--nrg-lambda``, ``labelqa.toml [scan] nrg_lambda`` or ``nrg_lambda=``."""
        if self.kind == "flag":
            return opt.flag if not opt.positional else opt.metavar or opt.name.upper()
        if self.kind == "config":
            return f"{self.file} [{self.table}] {self.key or opt.name}"
        if self.kind == "kwarg":
            return f"{opt.name}="
        return opt.name

    def example(self, opt: Option, value: str) -> str:
        """A typical value written this way, for a hint."""
        if self.kind == "flag":
            return f"e.g. {opt.flag} {value}"
        if self.kind == "config":
            quoted = value if opt.kind in ("int", "float") else f'"{value}"'
            return f"e.g. {self.key or opt.name} = {quoted}"
        return f"e.g. {opt.name}={value if opt.kind in ('int', 'float') else repr(value)}"


FLAG = Source("flag")
KWARG = Source("kwarg")
DEFAULT = Source("default")


# --------------------------------------------------------------------------- the one check
def check(opt: Option, value: Any, source: Source = KWARG) -> Any:
    """Validate one value of ``opt`` and return it in canonical form.

    Canonical forms: ``str``, ``int``, ``float``, ``bool``, :class:`~pathlib.Path`;
    ``names``/``values``/``ints`` become lists; a repeatable option a list
    (``None`` when empty); ``None`` stays ``None`` for an option whose default is ``None``.

    Raises:
        LabelqaError: The value has the wrong type, is not one of the
            choices or out of range; the message names the option as
            ``source`` gave it, e.g. ``--frac-noise must be a number in [0, 1], got 1.5``.
    """
    who = source.name(opt)
    if value is None:
        if opt.default is None and not opt.required:
            return None
        raise LabelqaError(f"{who} must be set, got None")
    if opt.repeatable:
        items = [value] if isinstance(value, (str, os.PathLike)) else value
        if not isinstance(items, (list, tuple)):
            raise LabelqaError(f"{who} must be {_noun(opt)} or a list of them, got {value!r}")
        checked = [_check_one(opt, v, source, who) for v in items]
        return checked or None
    return _check_one(opt, value, source, who)


def _noun(opt: Option) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "path": "a path", "names": "a list of names", "values": "a list of class names",
            "ints": "a list of integers"}[opt.kind]


def _check_one(opt: Option, value: Any, source: Source, who: str) -> Any:
    kind = opt.kind

    def bad(expected: str, hint: str | None = None) -> LabelqaError:
        return LabelqaError(f"{who} must be {expected}, got {value!r}", hint)

    if kind == "bool":
        if type(value).__name__ not in ("bool", "bool_"):
            raise bad("true or false")
        return bool(value)
    if kind in ("int", "float"):
        if type(value).__name__ in ("bool", "bool_") or not _is_number(value, integer=kind == "int"):
            raise bad(_noun(opt))
        number: int | float = int(value) if kind == "int" else float(value)
        if kind == "float" and not math.isfinite(number):
            raise bad("a finite number")
        if opt.interval is not None and not opt.interval.contains(number):
            hint = source.example(opt, opt.example) if opt.example else None
            raise bad(opt.interval.describe("an integer" if kind == "int" else "a number"), hint)
        return number
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        if opt.choices and value not in opt.choices:
            raise bad(f"one of {', '.join(opt.choices)}")
        return value
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise bad("a path")
        return Path(value).expanduser()
    if kind == "names":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
            raise bad("a non-empty list of names (or a comma-separated string)")
        names = list(dict.fromkeys(x.strip() for x in items if x.strip()))
        if not names:
            raise bad("a non-empty list of names (or a comma-separated string)",
                      source.example(opt, opt.example) if opt.example else None)
        unknown = [x for x in names if opt.choices and x not in opt.choices]
        if unknown:
            raise bad(f"a list of {', '.join(opt.choices)}")
        return names
    if kind == "values":
        if isinstance(value, str):
            items = [x.strip() for x in value.split(",")]
            if not all(items):
                raise LabelqaError(f"{who} {value!r} has an empty class name",
                                   source.example(opt, "a,b,c").replace("e.g.", "write it as"))
            return items
        if not isinstance(value, (list, tuple)) or not value or any(
                not isinstance(x, (str, int)) or isinstance(x, bool) or x == "" for x in value):
            raise bad("a non-empty list of class names (or a comma-separated string)")
        return list(value)
    if kind == "ints":
        return _ints(opt, value, source, who)
    raise AssertionError(kind)  # pragma: no cover


def _is_number(value: Any, *, integer: bool) -> bool:
    import numbers

    if integer:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real)


def _ints(opt: Option, value: Any, source: Source, who: str) -> list[Any]:
    """``"1,0,2"`` or a list of integers (or, from Python, of integer lists: multi-label per-class pairs)."""
    if isinstance(value, str):
        try:
            return [int(x) for x in value.split(",")]
        except ValueError:
            raise LabelqaError(f"{who} {value!r} is not a comma-separated list of integers",
                               source.example(opt, opt.example or "1,2")) from None

    def item(x: Any) -> Any:
        if isinstance(x, str) and x.strip().lstrip("-").isdigit():
            return int(x)
        if isinstance(x, (list, tuple)) and source.kind == "kwarg":
            return [item(y) for y in x]
        if type(x).__name__ in ("bool", "bool_") or not _is_number(x, integer=True):
            raise LabelqaError(f"{who} must be a list of integers, got {value!r}")
        return int(x)

    if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise LabelqaError(f"{who} must be a non-empty list of integers, got {value!r}")
    items = value.tolist() if hasattr(value, "tolist") else value
    if not items:
        raise LabelqaError(f"{who} must be a non-empty list of integers, got {value!r}")
    return [item(x) for x in items]


# --------------------------------------------------------------------------- resolving a command's values
class Settings(dict):
    """The resolved options of one command: every option it takes -> its validated value.

    Attributes:
        command: The command.
        sources: Option name -> :class:`Source` of its value (``DEFAULT`` when not given).
    """

    def __init__(self, command: str, values: Mapping[str, Any], sources: Mapping[str, Source]) -> None:
        super().__init__(values)
        self.command = command
        self.sources = dict(sources)

    @property
    def given(self) -> set[str]:
        """Names given by flag, configuration or keyword (not defaults)."""
        return {n for n, s in self.sources.items() if s.kind != "default"}

    def name(self, option_name: str) -> str:
        """How the user gave ``option_name`` (``--nrg-lambda``, ``... [scan] nrg_lambda``, ``nrg_lambda=``)."""
        return self.sources.get(option_name, DEFAULT).name(option(option_name, self.command))

    def select(self, *groups: str, detector: str | None = None, api: bool | None = None) -> dict[str, Any]:
        """The values of the options of ``groups`` (all groups when none), optionally only those tuning
        ``detector`` or only those the library function takes (``api=True``)."""
        out = {}
        for name, opt in options_for(self.command).items():
            if name not in self or opt.positional or opt.cli_only:
                continue
            if groups and opt.group not in groups:
                continue
            if detector is not None and detector not in opt.detectors:
                continue
            if api is not None and opt.api != api:
                continue
            out[name] = self[name]
        return out

    def changed(self, name: str) -> bool:
        """Whether the value differs from the option's default."""
        return self[name] != option(name, self.command).default


def resolve(
    command: str,
    *,
    given: Mapping[str, Any] | None = None,
    config: Any = None,
    source: Source = KWARG,
    function: str | None = None,
    groups: Iterable[str] | None = None,
) -> Settings:
    """Validate and complete ``command``'s options: given > configuration > default.

    Args:
        command: A :data:`COMMANDS` name.
        given: Values given explicitly (flags given on the command line, or
            keyword arguments); each is checked with :func:`check`.
        config: A :class:`labelqa.config.LabelqaConfig` (values already
            checked when it was loaded), or ``None``.
        source: How ``given`` came (:data:`FLAG` or :data:`KWARG`), for messages.
        function: For keyword arguments, the function's name in the
            "unexpected keyword argument" error (default ``command``).
        groups: Only these option groups (e.g. a library function that takes
            a part of the command's options); default all.

    Returns:
        :class:`Settings` with every option of the command (of ``groups``).

    Raises:
        TypeError: A keyword the command (or its library function) does not take.
        LabelqaError: An invalid value.
    """
    opts = options_for(command)
    if groups is not None:
        wanted = set(groups)
        opts = {n: o for n, o in opts.items() if o.group in wanted}
    given = dict(given or {})
    if source.kind == "kwarg":
        takes = {n for n, o in opts.items() if o.api and not o.cli_only and not o.positional}
        for name in given:
            if name not in takes:
                raise _unexpected(function or command, name, takes)
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    from_config = config.for_command(command) if config is not None else {}
    for name, opt in opts.items():
        if name in given:
            values[name], sources[name] = check(opt, given[name], source), source
        elif name in from_config:
            values[name], sources[name] = from_config[name]
        elif not opt.required:
            values[name], sources[name] = opt.default, DEFAULT
    return Settings(command, values, sources)


def _unexpected(function: str, name: str, takes: Iterable[str]) -> TypeError:
    close = difflib.get_close_matches(name, sorted(takes), n=1)
    other = OPTIONS.get(name)
    if other is not None:
        hint = f" ({name} is an option of labelqa {', '.join(other.commands)}, not of {function}())"
    else:
        hint = f" (did you mean {close[0]}?)" if close else ""
    return TypeError(f"{function}() got an unexpected keyword argument {name!r}{hint}")
