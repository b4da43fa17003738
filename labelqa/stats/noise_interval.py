"""A bootstrap interval for confident learning's estimated noise rate.

The estimate (confident learning) depends on the rows only through
counts: the raw confident joint ``C`` (``C[j, g]`` = rows given ``j`` whose
guessed true label is ``g``) and the class counts ``n_j`` (which also hold the
rows with an empty confident set, not counted in ``C``). Resampling the N rows
with replacement is therefore the same as a multinomial draw of those counts,
so the bootstrap never touches the rows and never re-runs the detector: it
costs milliseconds at 1M rows x 100 classes.

Without rounding, the calibrated joint gives

    noise = 1 - (1/N) * sum_j n_j * C[j, j] / R_j        (R_j = sum_g C[j, g])

(a class with ``R_j = 0`` counts as clean), so per class only three counts
matter: the diagonal ``C[j, j]``, the counted off-diagonal rows ``R_j -
C[j, j]`` and the uncounted rows ``n_j - R_j``. Each replicate is one
multinomial draw of N rows over these ``3K`` cells, all replicates at once.

The point estimate is exactly the detector's (calibration with its integer
rounding: :func:`labelqa.stats.confident.calibrate_confident_joint`);
the replicates use the smooth formula above, whose spread around its own
value on the observed counts is added to the point estimate (a percentile
interval, moved by the rounding difference, at most K/N). The interval is
then clipped to [0, 1] and, should it not, widened to hold the point
estimate.

What the interval does and does not cover: the sampling variability of the
rows, with the per-class thresholds and the model held fixed. It says nothing
about a biased model (probabilities that are not out-of-sample, or a model
that learnt the noise), which moves the estimate itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelqa.errors import LabelqaError
from labelqa.stats.confident import calibrate_confident_joint, noise_rate

__all__ = ["bootstrap_noise_rates", "interval_from_replicates", "noise_rate_interval", "noise_rate_point"]

#: Most replicate-by-cell entries drawn in one block (bounds memory for huge K).
_BLOCK_ELEMENTS = 1 << 22


def _check(confident_joint: Any, class_counts: Any) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confident_joint)
    n = np.asarray(class_counts)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or n.shape != (c.shape[0],):
        raise LabelqaError(f"need a (K, K) confident joint and K class counts, got shapes {c.shape} and {n.shape}")
    c = c.astype(np.int64)
    n = n.astype(np.int64)
    if (c < 0).any() or (n < 0).any():
        raise LabelqaError("confident joint and class counts must be counts >= 0")
    if (c.sum(axis=1) > n).any():
        j = int(np.flatnonzero(c.sum(axis=1) > n)[0])
        raise LabelqaError(f"row {j} of the confident joint counts more rows ({int(c[j].sum())}) than class {j} has "
                           f"({int(n[j])})", "pass the raw (uncalibrated) confident joint and the class counts")
    return c, n


def noise_rate_point(confident_joint: Any, class_counts: Any) -> float:
    """The estimated noise rate ``1 - trace(Q)``, exactly as the ``cl`` detector reports it."""
    c, n = _check(confident_joint, class_counts)
    return noise_rate(calibrate_confident_joint(c, n))


def _smooth(diag: np.ndarray, counted: np.ndarray, size: np.ndarray, n_rows: int) -> np.ndarray:
    """``1 - (1/N) sum_j n_j C_jj / R_j`` over the last axis (R_j = 0: class clean)."""
    kept = np.where(counted > 0, size * diag / np.where(counted > 0, counted, 1), size)
    return 1.0 - kept.sum(axis=-1) / n_rows


def bootstrap_noise_rates(
    confident_joint: Any, class_counts: Any, *, n_boot: int = 200, seed: int | None = 0
) -> tuple[np.ndarray, float]:
    """Bootstrap replicates of the (unrounded) noise-rate estimate.

    Returns:
        ``(replicates, smooth)``: ``n_boot`` replicate estimates, and the same
        unrounded statistic on the observed counts.
    """
    c, n = _check(confident_joint, class_counts)
    k = n.size
    n_rows = int(n.sum())
    if n_rows == 0:
        return np.zeros(int(n_boot)), 0.0
    diag = np.diagonal(c).astype(np.int64)
    counted = c.sum(axis=1)
    cells = np.concatenate([diag, counted - diag, n - counted])  # 3K cells, N rows in all
    smooth = float(_smooth(diag, counted, n, n_rows))
    rng = np.random.default_rng(seed)
    nz = np.flatnonzero(cells)  # empty cells stay empty: draw only the others
    probs = cells[nz] / n_rows
    probs /= probs.sum()
    out = np.empty(int(n_boot))
    step = max(1, _BLOCK_ELEMENTS // max(nz.size, 1))
    for start in range(0, int(n_boot), step):
        size = min(step, int(n_boot) - start)
        draws = np.zeros((size, 3 * k), dtype=np.int64)
        draws[:, nz] = rng.multinomial(n_rows, probs, size=size)
        d, o, u = draws[:, :k], draws[:, k:2 * k], draws[:, 2 * k:]
        out[start:start + size] = _smooth(d, d + o, d + o + u, n_rows)
    return out, smooth


def linear_quantiles(values: np.ndarray, quantiles: Any) -> np.ndarray:
    """``np.quantile(values, quantiles)`` (its default linear method), the same numbers, from one sort.

    numpy's quantile imports ``numpy.ma`` on first use (~10 ms of a scan's start-up); this takes the
    same order statistics and interpolates them as numpy does.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if ordered.size == 0:
        raise ValueError("quantiles of an empty array")
    position = np.asarray(quantiles, dtype=np.float64) * (ordered.size - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, ordered.size - 1)
    weight = position - below
    low, high = ordered[below], ordered[above]
    step = high - low
    out = low + step * weight
    np.subtract(high, step * (1 - weight), out=out, where=weight >= 0.5)  # numpy's lerp, exact at both ends
    return out


def noise_rate_interval(
    confident_joint: Any,
    class_counts: Any,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int | None = 0,
    point: float | None = None,
) -> tuple[float, float]:
    """Bootstrap interval of the estimated noise rate (resampling rows, seeded).

    Args:
        confident_joint: The raw (uncalibrated) confident joint ``C``, shape
            ``(K, K)``, rows = given label (the ``cl`` summary's
            ``confident_joint``).
        class_counts: Rows given each class, shape ``(K,)`` (all rows, also
            those with an empty confident set).
        n_boot: Bootstrap replicates (>= 1).
        level: Coverage of the interval, in (0, 1).
        seed: Seed of the random draws; the same seed gives the same interval.
        point: :func:`noise_rate_point` of these counts when the caller has it (at K = 1,000
            calibrating the joint again takes ~50 ms).

    Returns:
        ``(low, high)`` with ``0 <= low <= estimate <= high <= 1``, where
        ``estimate`` is :func:`noise_rate_point` (the detector's
        ``estimated_noise_rate``). ``(0.0, 0.0)`` for no rows.

    Raises:
        LabelqaError: On inconsistent counts or options.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise LabelqaError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0.0 < float(level) < 1.0:
        raise LabelqaError(f"level must be in (0, 1), got {level!r}", "e.g. level=0.95")
    if point is None:
        point = noise_rate_point(confident_joint, class_counts)
    reps, smooth = bootstrap_noise_rates(confident_joint, class_counts, n_boot=int(n_boot), seed=seed)
    return interval_from_replicates(reps, smooth, point, level=level)


def interval_from_replicates(replicates: np.ndarray, smooth: float, point: float, *,
                             level: float = 0.95) -> tuple[float, float]:
    """:func:`noise_rate_interval` from :func:`bootstrap_noise_rates`' ``(replicates, smooth)`` drawn already.

    The replicates' spread around ``smooth`` is moved to ``point`` and clipped to ``[0, 1]``, so that
    ``low <= point <= high``.
    """
    alpha = (1.0 - float(level)) / 2.0
    lo, hi = linear_quantiles(np.asarray(replicates) - smooth, [alpha, 1.0 - alpha])
    low = min(max(point + float(lo), 0.0), point)
    high = max(min(point + float(hi), 1.0), point)
    return float(low), float(high)
