"""Short human reasons for flagged rows, one phrase per detector that fired.

Phrases are built only for the rows asked for (the flagged ones), so their
cost scales with the number of issues, not the dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelqa.data.arrays import from_numpy
from labelqa.data.model import LabelData
from labelqa.detectors.base import DetectorResult

Reasoner = Callable[[LabelData, DetectorResult, np.ndarray], "list[str] | pa.Array"]


def _names(data: LabelData) -> np.ndarray:
    return np.asarray(data.class_names, dtype=object)


@cache
def _percents() -> pa.StringArray:
    """``"0%"`` .. ``"100%"``: the text of every whole percentage a probability in [0, 1] rounds to.

    Built on first use: ``pa.array`` of a list at import time would run pyarrow's pandas probe.
    """
    return pa.array([f"{i}%" for i in range(101)], pa.string())


def _pct_text(values: np.ndarray) -> pa.Array:
    """Probabilities as whole percentages, e.g. ``93%`` (vectorised: a lookup for values in [0, 1])."""
    pct = np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64)
    if pct.size and pct.min() >= 0 and pct.max() <= 100:
        return _percents().take(from_numpy(pct))
    return pc.binary_join_element_wise(pc.cast(pa.array(pct), pa.string()), "%", "")


def _cells(probs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``probs[rows, cols]``: one flat take on a C-contiguous matrix (2-D fancy indexing is ~3x slower)."""
    if not probs.flags.c_contiguous:
        return probs[rows, cols]
    flat = rows.astype(np.int64) * probs.shape[1]
    flat += cols
    return probs.reshape(-1).take(flat)


def _cl(data: LabelData, res: DetectorResult, idx: np.ndarray) -> pa.Array:
    names = data.class_names
    given, sugg = data.labels[idx], np.asarray(res.suggested)[idx]
    probs = np.asarray(data.pred_probs)
    opening = pa.array([f"given '{name}' (" for name in names], pa.string())  # the class's text, joined once
    middle = pa.array([f"), model says '{name}' (" for name in names], pa.string())
    return pc.binary_join_element_wise(
        opening.take(from_numpy(given)), _pct_text(_cells(probs, idx, given)),
        middle.take(from_numpy(sugg)), _pct_text(_cells(probs, idx, sugg)), ")", "",
    )


def _aum(data: LabelData, res: DetectorResult, idx: np.ndarray) -> list[str]:
    names = _names(data)
    aum = np.asarray(res.extra.get("aum", res.scores))[idx]
    sugg = names[np.asarray(res.suggested)[idx]]
    return [f"training margin of the given label is {a:.2f} (AUM); logits favour '{s}'" for a, s in zip(aum, sugg)]


def _nrg(data: LabelData, res: DetectorResult, idx: np.ndarray) -> list[str]:
    names = _names(data)
    given, sugg = data.labels[idx], np.asarray(res.suggested)[idx]
    return [
        f"embedding neighbours disagree with '{g}'" + (f", most are '{s}'" if s != g else "")
        for g, s in zip(names[given], names[sugg])
    ]


def _two_decimals(values: np.ndarray) -> pa.Array:
    """Numbers in [0, 1] as text with two decimals, e.g. ``0.07``: the text ``f"{v:.2f}"`` gives, vectorised.

    ``v * 100`` is inexact, so values within 1e-9 of a half cent are rounded
    by Python's correctly rounded formatting (rare; a few per 100,000).
    """
    values = np.asarray(values, dtype=np.float64)
    scaled = values * 100
    cents = np.rint(scaled).astype(np.int64)
    near_half = np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-9)
    if near_half.size:
        cents[near_half] = [int(f"{v:.2f}".replace(".", "")) for v in values[near_half]]
    whole = pc.cast(pa.array(cents // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole, ".", frac, "")


def _multilabel(data: LabelData, res: DetectorResult, idx: np.ndarray) -> pa.Array:
    """``remove 'a' (p=0.91), add 'b' (p=0.88)`` per row: removals then additions, each by class order."""
    names = pa.array([str(c) for c in data.class_names], pa.string())
    remove = np.asarray(res.extra.get("labels_to_remove"))[idx]
    add = np.asarray(res.extra.get("labels_to_add"))[idx]
    r_rm, c_rm = np.nonzero(remove)
    r_add, c_add = np.nonzero(add)
    rows = np.concatenate([r_rm, r_add])
    cols = np.concatenate([c_rm, c_add])
    is_add = np.concatenate([np.zeros(r_rm.size, bool), np.ones(r_add.size, bool)])
    order = np.lexsort((cols, is_add, rows))
    rows, cols, is_add = rows[order], cols[order], is_add[order]
    verb = pc.if_else(pa.array(is_add), "add '", "remove '")
    probs = np.asarray(data.pred_probs)[idx[rows], cols]
    phrases = pc.binary_join_element_wise(verb, names.take(pa.array(cols)), "' (p=", _two_decimals(probs), ")", "")
    offsets = np.zeros(len(idx) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(idx)), out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), phrases), ", ")


def _dup(data: LabelData, res: DetectorResult, idx: np.ndarray) -> list[str]:
    from labelqa.detectors.duplicates import reasons

    return reasons(data.class_names, data.labels, res.extra, res.suggested, idx)


_REASONERS: dict[str, Reasoner] = {"cl": _cl, "aum": _aum, "nrg": _nrg, "dup": _dup}


def reasons_for(data: LabelData, res: DetectorResult, idx: np.ndarray) -> pa.StringArray:
    """One phrase per row of ``idx`` where ``res`` flagged it, "" elsewhere (an Arrow string array)."""
    fired = np.asarray(res.issues, dtype=bool)[idx]
    sub = idx[fired]
    if sub.size == 0:
        return pa.array([""] * len(idx), pa.string())
    if "labels_to_remove" in res.extra:
        phrases = _multilabel(data, res, sub)
    elif res.name in _REASONERS:
        phrases = _REASONERS[res.name](data, res, sub)
    else:
        scores = np.asarray(res.scores)[sub]
        phrases = [f"flagged by {res.name} (score {s:.3f})" for s in scores]
    if sub.size == idx.size:
        return pa.array(phrases, pa.string())
    return scatter_text(pa.array(phrases, pa.string()), np.flatnonzero(fired), len(idx))


def scatter_text(values: pa.Array, positions: np.ndarray, n: int) -> pa.StringArray:
    """A length-``n`` string array holding ``values`` at ``positions`` and "" elsewhere.

    With increasing positions and no nulls (the usual case: flagged rows in
    input order) the text bytes are reused as they are and only the offsets
    are built; otherwise one Arrow take.
    """
    values = values.cast(pa.string())
    positions = np.asarray(positions, dtype=np.int64)
    if (values.null_count == 0 and positions.size == len(values)
            and (positions.size < 2 or bool(np.all(positions[1:] > positions[:-1])))
            and (positions.size == 0 or (positions[0] >= 0 and positions[-1] < n))):
        return _spread(values, positions, n)
    index = np.full(n, len(values), dtype=np.int64)
    index[positions] = np.arange(len(values))
    return pa.concat_arrays([values.cast(pa.string()), pa.array([""], pa.string())]).take(pa.array(index))


def _spread(values: pa.StringArray, positions: np.ndarray, n: int) -> pa.StringArray:
    """:func:`scatter_text` for increasing in-range positions and no nulls: new offsets, the same text bytes."""
    _, off_buf, data_buf = values.buffers()
    off = np.frombuffer(off_buf, dtype=np.int32, count=len(values) + 1, offset=values.offset * 4) if off_buf \
        else np.zeros(1, dtype=np.int32)
    lengths = np.zeros(n, dtype=np.int32)
    lengths[positions] = np.diff(off)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    start, stop = int(off[0]), int(off[-1])
    data = data_buf.slice(start, stop - start) if data_buf is not None and stop > start else pa.py_buffer(b"")
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), data, null_count=0)
