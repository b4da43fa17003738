"""The detector interface: one definition per detector, run unchanged by every runner.

A detector that can work batch by batch is written as a *plan*
(:meth:`Detector.plan`), a generator over the dataset's passes:

1. **statistics passes**: it yields a :class:`Step`; the runner feeds every
   block of rows to it (``feed``), merges the partials (``merge``: exact, so
   the batching and the merge order never change a result) and sends the
   merged partial back into the generator;
2. **selection stages**: more steps of the same kind ("the c rows of class k
   with the largest margin", see :mod:`labelqa.stats.selection`);
3. **per-row outputs**: the generator returns a :class:`RowRule`, which
   scores, flags and suggests labels for any block, counts what its summary
   needs (``tally``, summed over blocks) and writes its summary.

The in-memory runner feeds one block, the whole dataset
(:func:`run_on_block`, which :meth:`Detector.detect` uses); the streaming and
Dask runners feed record batches and partitions (:mod:`labelqa.run`). Steps
and row rules are small picklable objects (Dask ships them to workers); the
generator stays with the driver.

A detector that needs every row at once (NRG's neighbour graph, AUM's
training dynamics) says so in :attr:`Detector.needs_all_rows` and implements
:meth:`Detector.detect` directly; the driver then runs it in memory or
explains why it cannot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from labelqa import options
from labelqa.data.model import LabelData
from labelqa.stats.selection import Selections

__all__ = [
    "Block",
    "DatasetInfo",
    "Detector",
    "DetectorResult",
    "DetectorRows",
    "NamedRows",
    "Plan",
    "RowRule",
    "SelectStep",
    "Step",
    "add_tallies",
    "lockless_cached_property",
    "run_on_block",
    "selection_stages",
]


class lockless_cached_property:  # noqa: N801 - used as a decorator, like functools.cached_property
    """:func:`functools.cached_property` without its lock: computed on first use, then an instance attribute.

    On Python 3.11 ``cached_property`` holds one lock per *property*, shared
    by every instance: two threads computing it for two different blocks
    (the streaming runner's lanes) ran one after the other. Per-block row
    state needs no lock: each block is worked on by one thread, and a plan
    computes a property before it hands the block's classes to threads.
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value  # shadows this (non-data) descriptor from now on
        return value


@dataclass(eq=False)
class DetectorResult:
    """What a detector found, in the same shape for every detector.

    Attributes:
        name: Detector name; report columns are ``<name>_score`` and
            ``<name>_issue``.
        scores: Per-row label quality, shape ``(N,)``, lower = more suspect.
            The documented range depends on the detector ([0, 1] for
            confident learning).
        issues: Per-row flag, shape ``(N,)``, bool.
        suggested: Per-row suggested label as a class code, shape ``(N,)``;
            for multi-label detectors the suggested label set as an N x K
            bool matrix. Unflagged rows suggest their given label.
        suggested_confidence: Per-row probability of the suggested label,
            shape ``(N,)``, or ``None`` when the detector has no such notion.
        summary: Dataset-level figures, JSON-serialisable (lists, floats,
            ints, strings); e.g. noise matrix and thresholds. K x K matrices
            above :data:`labelqa.jsonable.MATRIX_INLINE_CLASSES` classes are
            read-only arrays instead (:func:`labelqa.jsonable.jsonable` turns
            them into lists; summary.json keeps them in matrices.npy).
        params: The detector's parameters, as given.
        extra: Further per-row arrays, length N in the first axis (e.g. for
            multi-label: ``labels_to_remove``/``labels_to_add`` as N x K
            bool; for NRG: ``outlier_score``). Report writers turn each into
            a column.
    """

    name: str
    scores: np.ndarray
    issues: np.ndarray
    suggested: np.ndarray
    suggested_confidence: np.ndarray | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_issues(self) -> int:
        """Number of flagged rows."""
        return int(np.count_nonzero(self.issues))


@dataclass(frozen=True)
class DatasetInfo:
    """What a plan knows about the dataset before the first pass.

    Attributes:
        n_rows: Rows N.
        classes: Class values in probability-column order.
        task: ``"multiclass"`` or ``"multilabel"``.
        prob_dtype: dtype of the probability blocks (float32 or float64).
        gather_rows: The runner would rather the plan gathered its rows' scores
            in its last pass (:meth:`RowRule.named_rows`) than read the data
            once more to rank them: set out of core with one detector.
        out_of_core: The passes see the rows in many blocks (stream, Dask): a
            statistics pass may also count what bounds a later selection,
            which in memory one block selects directly.
    """

    n_rows: int
    classes: tuple[Any, ...]
    task: str = "multiclass"
    prob_dtype: np.dtype = np.dtype(np.float64)
    gather_rows: bool = False
    out_of_core: bool = False

    @property
    def n_classes(self) -> int:
        """Classes K."""
        return len(self.classes)

    @classmethod
    def of(cls, data: LabelData) -> DatasetInfo:
        """The info of in-memory data."""
        return cls(data.n_rows, tuple(data.classes), data.task, np.dtype(data.pred_probs.dtype))


class Block:
    """Rows ``offset .. offset + n - 1`` of a dataset, as a plan sees them.

    Attributes:
        labels: Class codes ``(n,)`` int64, or for multi-label data an
            ``(n, K)`` bool matrix.
        pred_probs: ``(n, K)`` probabilities (float32 or float64).
        ids: Row ids ``(n,)``.
        offset: Global index of the first row.
        data: The whole :class:`LabelData` when the block is the in-memory
            dataset (detectors that need all rows read it), else ``None``.
        columns: The block's rows of the further data-file columns the
            detectors asked for (:meth:`Detector.file_columns`, e.g. the
            columns the dup detector hashes), read by the streaming and Dask
            runners; ``None`` in memory (read them from ``data.source``).
    """

    def __init__(self, labels: np.ndarray, pred_probs: np.ndarray, ids: np.ndarray | None = None, offset: int = 0,
                 data: LabelData | None = None, columns: Any = None) -> None:
        self.labels = labels
        self.pred_probs = pred_probs
        self._ids = ids
        self.offset = int(offset)
        self.data = data
        self.columns = columns
        self._cache: dict[Any, Any] = {}

    @classmethod
    def of(cls, data: LabelData) -> Block:
        """The whole in-memory dataset as one block."""
        return cls(data.labels, data.pred_probs, data.ids, 0, data)

    @property
    def ids(self) -> np.ndarray:
        """Row ids ``(n,)``; without ids given, the global indices (made on first use: most plans never ask)."""
        if self._ids is None:
            self._ids = self.positions
        return self._ids

    @property
    def n(self) -> int:
        """Rows in the block."""
        return int(self.labels.shape[0])

    @property
    def positions(self) -> np.ndarray:
        """Global indices of the rows."""
        return np.arange(self.offset, self.offset + self.n, dtype=np.int64)

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()`` once per block and ``key``: per-row work shared by a plan's passes.

        In memory the one block lives through every pass, so work done for
        one step (e.g. each row's guessed true label) is reused by the next;
        a streamed batch is decoded anew for each pass and caches nothing
        across them.
        """
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


class Step:
    """One pass of a plan: a partial aggregate folded over every block.

    Subclasses set :attr:`name` and implement :meth:`start` and :meth:`feed`;
    :meth:`merge` defaults to ``a.merge(b)``.
    """

    name: str = "step"

    def start(self) -> Any:
        """An empty partial."""
        raise NotImplementedError

    def feed(self, partial: Any, block: Block) -> Any:
        """Fold one block into ``partial``; returns the partial (may be ``partial`` itself)."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        """Fold partial ``b`` (over other blocks) into ``a``; returns the merged partial."""
        return a.merge(b)


class SelectStep(Step):
    """One selection stage of a detector's flag rule: ``rule.feed(stage, partial, block)`` over every block.

    The partial is a :class:`~labelqa.stats.selection.Selections` (picks,
    grouped selections and counters by key), started from ``template``.
    """

    def __init__(self, rule: Any, stage: str, template: Selections) -> None:
        self.rule = rule
        self.stage = stage
        self.template = template
        self.name = f"selection ({stage})"

    def start(self) -> Selections:
        return self.template.empty()

    def feed(self, partial: Selections, block: Block) -> Selections:
        self.rule.feed(self.stage, partial, block)
        return partial


def selection_stages(rule: Any) -> Generator[Step, Any, None]:
    """A plan's selection passes: a :class:`SelectStep` per stage of ``rule.stages()``, each finished in turn.

    Use inside a plan as ``yield from selection_stages(rule)``.
    """
    for stage, template in rule.stages():
        partial = yield SelectStep(rule, stage, template)
        rule.finish(stage, partial)


@dataclass(eq=False)
class DetectorRows:
    """A detector's per-row outputs for one block (the columns of :class:`DetectorResult`)."""

    scores: np.ndarray
    issues: np.ndarray
    suggested: np.ndarray
    suggested_confidence: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(eq=False)
class NamedRows:
    """What a rows pass would count of a detector's rows, gathered by its plan's last pass (see :meth:`RowRule.named_rows`).

    Attributes:
        index: Every row's score (the detector's label quality) and flag, fed
            (:class:`~labelqa.stats.ranks.RankIndex`, not finished).
        labels: Given labels of the flagged rows.
        suggested: Suggested labels of the flagged rows.
        class_counts: Rows given each class.
        tallies: The summed :meth:`RowRule.tally` of every row.
    """

    index: Any
    labels: np.ndarray
    suggested: np.ndarray
    class_counts: np.ndarray
    tallies: dict[str, Any] = field(default_factory=dict)


class RowRule:
    """The end of a plan: per-row outputs of any block, and the detector's summary."""

    def named_rows(self) -> NamedRows | None:
        """Its rows' scores, flags and suggestions when the plan gathered them already (else ``None``).

        With one detector, the driver then needs no pass to rank the rows and
        count the totals: the plan's last pass did it on the way.
        """
        return None

    def rows(self, block: Block) -> DetectorRows:
        """Scores, flags and suggestions of the block's rows."""
        raise NotImplementedError

    def tally(self, block: Block, rows: DetectorRows) -> dict[str, Any]:
        """Integer counts of one block that the summary needs (summed over blocks)."""
        return {}

    def summary(self, tallies: dict[str, Any]) -> dict[str, Any]:
        """The detector's summary, from its aggregates and the summed tallies."""
        return {}


#: A detector's plan: yields steps, receives their merged partials, returns its row rule.
Plan = Generator[Step, Any, RowRule]


def add_tallies(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Sum two tally dicts key by key (ints or integer arrays)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = out[key] + value if key in out else value
    return out


def run_on_block(plan: Plan, block: Block) -> RowRule:
    """Run a plan over one block (the in-memory runner): every step sees the whole dataset."""
    try:
        step = next(plan)
        while True:
            partial = step.feed(step.start(), block)
            step = plan.send(partial)
    except StopIteration as done:
        return done.value


class Detector:
    """Base class of detectors, in the spirit of a scikit-learn estimator.

    Subclasses are keyword-only dataclasses: parameters are stored as given and
    validated when the detector runs; learned state lives on the returned
    :class:`DetectorResult`, never on the detector.

    A batch-capable detector implements :meth:`plan` (and inherits
    :meth:`detect`, which runs the plan on the whole dataset as one block);
    a detector that needs all rows sets :attr:`needs_all_rows` and implements
    :meth:`detect`.
    """

    name: ClassVar[str] = "detector"
    #: Why the detector needs every row in memory at once (a few words, e.g.
    #: "the neighbour graph over all embeddings"), or ``None`` when it can run
    #: on batches. The engine chooser asks this instead of guessing.
    needs_all_rows: ClassVar[str | None] = None

    def get_params(self) -> dict[str, Any]:
        """The detector's parameters as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    #: Parameters validated against the dataset by the detector itself (e.g. one count per class).
    shaped_params: ClassVar[tuple[str, ...]] = ("num_to_remove_per_class",)

    def check_params(self) -> None:
        """Validate every parameter that is a declared option exactly as its flag is validated.

        One declaration (:mod:`labelqa.options`) gives the range, the choices
        and the message (``frac_noise= must be a number in [0, 1], got 1.5``).

        Raises:
            LabelqaError: Naming the parameter and the allowed values.
        """
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name in options.OPTIONS and f.name not in self.shaped_params:
                options.check(options.OPTIONS[f.name], getattr(self, f.name))

    def check(self, info: DatasetInfo) -> None:
        """Validate the parameters against the dataset; raise :class:`~labelqa.errors.LabelqaError`."""
        self.check_params()

    def file_columns(self) -> list[str]:
        """Columns of the data file the plan reads besides labels, probabilities and ids (``Block.columns``)."""
        return []

    def plan(self, info: DatasetInfo) -> Plan:  # pragma: no cover - interface
        """The detector's passes over a dataset described by ``info``."""
        raise NotImplementedError(f"the {self.name} detector needs all rows in memory")

    def detect(self, data: LabelData) -> DetectorResult:
        """Score and flag every row of ``data`` (the plan, run on one block)."""
        info = DatasetInfo.of(data)
        self.check(info)
        block = Block.of(data)
        rule = run_on_block(self.plan(info), block)
        rows = rule.rows(block)
        return DetectorResult(
            name=self.name,
            scores=rows.scores,
            issues=rows.issues,
            suggested=rows.suggested,
            suggested_confidence=rows.suggested_confidence,
            summary=rule.summary(rule.tally(block, rows)),
            params=self.get_params(),
            extra=rows.extra,
        )
