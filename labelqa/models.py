"""Several models' predicted probabilities: combining them, and where they disagree.

A scan can take the out-of-sample probabilities of several models
(``--pred-probs-col a --pred-probs-col b``, ``--pred-probs x.npy``, or
``load(pred_probs_col=["a", "b"])``). Detectors then see one N x K matrix,
:attr:`LabelData.pred_probs`, combined here by ``combine_models``:

- ``log_linear`` (default): the log-linear pool ``p ∝ prod_m p_m^{w_m}``
  with free weights ``w_m >= 0`` (not summing to 1) fitted by maximum
  likelihood of the **given** labels seen through a uniform noise channel
  (:func:`fit_log_linear_weights`): a stacked, recalibrated geometric
  mean (multi-label: per class ``sigmoid(sum_m w_m logit p_m)``). A model
  whose probabilities look in-sample (:func:`in_sample_check`) gets weight
  0 and the others are fitted without it;
- ``geometric``: the (weighted) geometric mean, renormalised per row, the
  log-linear pool with equal weights: a class one model rules out stays
  unlikely, so a model that confirms a wrong label cannot outvote one that
  rules it out;
- ``mean``: the (weighted) arithmetic mean per row, the linear opinion pool;
- ``loss_weighted``: the mean with weights ``exp(-T * log_loss_m)``, each
  model's log loss measured against the **given** labels, with the
  temperature ``T`` chosen from a grid to minimise the combination's own log
  loss (cleanlab's ``log_loss_search`` idea); in-sample suspects get no
  weight.

For multi-label data each class is combined on its own (the geometric pool of
a class pools ``p`` and ``1 - p``); rows need not sum to 1.

Whatever the combination, confident learning's default rule
(``prune_by_noise_rate_plus``) flags at least as many rows as the error
count of the model that fits the given labels best (:func:`num_issues_floor`):
each model's count estimates the same number, and the combination's own
count can fall below its members'.

``docs/multimodel.md`` has the measurement on CIFAR-10N behind the default:
``log_linear`` with the count floor beats the best single model on F1 and
AP on both noise sets, with two and three models, and a model leaking
0.1-0.6 of its mass onto the given labels is caught and held back (on small
tabular data with injected noise it is on par with the best model).

Each model's matrix stays in :attr:`LabelData.model_pred_probs`;
:func:`disagreement_columns` turns them into per-row report columns
(``models_disagree``, ``model_spread``, ``models_agree_with_label``) and
:func:`disagreement_summary` into summary figures.

Everything works in row blocks: the only full-size allocation is the output
(one N x K matrix), whatever the number of models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError

__all__ = [
    "COMBINE_METHODS",
    "DEFAULT_COMBINE",
    "combine_pred_probs",
    "disagreement_columns",
    "disagreement_summary",
    "drop_suspects",
    "fit_log_linear_weights",
    "fit_model_weights",
    "log_linear_pool",
    "in_sample_check",
    "member_num_issues",
    "num_issues_floor",
    "in_sample_warning",
    "model_disagreement",
]

#: The ``combine_models`` values.
COMBINE_METHODS = ("geometric", "mean", "loss_weighted", "log_linear")
#: The default combination (see docs/multimodel.md for why).
DEFAULT_COMBINE = "log_linear"
#: Probabilities are floored at this value before taking logs.
LOG_FLOOR = 1e-12
#: Temperatures tried by ``loss_weighted`` (0 = the plain mean).
TEMPERATURES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: About this many matrix elements per row block.
_BLOCK_ELEMENTS = 1 << 18
#: ``log_linear`` fits its weights on at most about this many (row x class x model) log-probabilities
#: (a seeded sample of rows beyond it). A few weights need far fewer rows than that to settle (at 2^21:
#: 100k rows of 10 classes and 2 models); every L-BFGS step reads them all several times (2 models,
#: 1M x 10: the fit took 8.5 s of an 11.8 s scan at 2^24, ~1 s at 2^21). CIFAR-10N (50k x 10 x 3 models)
#: is fitted on every row either way.
LOG_LINEAR_FIT_ELEMENTS = 1 << 21
#: Multi-label: a model predicts class k for a row when ``p >= 0.5``.
MULTILABEL_THRESHOLD = 0.5
#: A model that doubts no given label while the others doubt R "looks in-sample" (:func:`in_sample_check`)
#: when a model doubting as often as they do would miss all R by chance with less than this probability
#: (a conventional significance level: a leak gives chances below 1e-100 on CIFAR-10N).
IN_SAMPLE_CHANCE = 1e-3


def _names(n_models: int, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [f"model {i}" for i in range(n_models)]
    return [str(n) for n in names]


def _check_models(models: Sequence[Any], names: Sequence[str] | None) -> tuple[list[np.ndarray], list[str]]:
    """The models as 2-D float arrays of one shape (a clear error naming both sources otherwise)."""
    if isinstance(models, np.ndarray) or not isinstance(models, Sequence) or len(models) == 0:
        raise LabelqaError("expected a non-empty list of N x K probability matrices, one per model",
                           hint="pass [pred_probs_model_a, pred_probs_model_b, ...]")
    labels = _names(len(models), names)
    if len(labels) != len(models):
        raise LabelqaError(f"{len(labels)} model names for {len(models)} models", hint="give one name per model")
    mats = []
    for m, name in zip(models, labels):
        arr = np.asarray(m)
        if arr.ndim != 2:
            raise LabelqaError(f"{name}: predicted probabilities must be 2-D (rows x classes), got shape {arr.shape}",
                               hint="pass one N x K matrix per model")
        if arr.dtype != np.float32 and arr.dtype != np.float64:
            arr = arr.astype(np.float64)
        mats.append(arr)
    check_same_shape(mats, labels)
    return mats, labels


def check_same_shape(mats: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise a :class:`LabelqaError` naming both sources when two models differ in N or K."""
    n0, k0 = mats[0].shape
    for m, name in zip(mats[1:], names[1:]):
        n, k = m.shape
        if k != k0:
            raise LabelqaError(
                f"{name} has {k} probabilities per row but {names[0]} has {k0}: every model must give one "
                "probability per class",
                hint="combine only models trained on the same classes, with their columns in the same class order",
            )
        if n != n0:
            raise LabelqaError(
                f"{name} has {n} rows but {names[0]} has {n0}",
                hint="every model must give one row of probabilities per data row, in the same order",
            )


def _weights(weights: Any, n_models: int) -> np.ndarray:
    if weights is None:
        return np.full(n_models, 1.0 / n_models)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n_models,):
        raise LabelqaError(f"{w.size} weights for {n_models} models", hint="give one weight per model")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise LabelqaError(f"model weights must be non-negative finite numbers, not all 0; got {w.tolist()}",
                           hint="e.g. weights=[2, 1]")
    return w / w.sum()


def _out_dtype(mats: Sequence[np.ndarray]) -> np.dtype:
    return np.dtype(np.float32) if all(m.dtype == np.float32 for m in mats) else np.dtype(np.float64)


def _blocks(n: int, k: int):
    step = max(1, _BLOCK_ELEMENTS // max(k, 1))
    for a in range(0, n, step):
        yield slice(a, min(n, a + step))


def combine_pred_probs(
    models: Sequence[Any],
    method: str = DEFAULT_COMBINE,
    weights: Sequence[float] | None = None,
    *,
    labels: Any = None,
    task: str = "multiclass",
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Combine several models' N x K probabilities into one N x K matrix.

    Args:
        models: One N x K matrix per model (same N, same K and class order).
            They should be valid probabilities already (see
            :func:`labelqa.load`, which validates each one).
        method: ``"log_linear"`` (default; needs ``labels``), ``"geometric"``, ``"mean"``
            or ``"loss_weighted"`` (see the module docstring).
        weights: Optional non-negative weight per model (normalised to sum
            to 1); default equal. Not with ``loss_weighted``, which fits them.
        labels: Given labels, needed by ``log_linear`` and ``loss_weighted``: class codes
            ``(N,)`` (multiclass) or an ``(N, K)`` bool matrix (multi-label).
        task: ``"multiclass"`` (output rows sum to 1) or ``"multilabel"``
            (each class combined on its own).
        names: Model names for messages (default ``model 0``, ``model 1``...).

    Returns:
        A new N x K array, float32 when every model is float32, else float64.
        With a single model, a copy of it (renormalised for multiclass).

    Raises:
        LabelqaError: Unknown method, models of different shapes (naming
            both), bad weights, ``log_linear`` or ``loss_weighted`` without labels.
    """
    if method not in COMBINE_METHODS:
        raise LabelqaError(f"unknown model combination {method!r}",
                           hint=f"use --combine-models {', '.join(COMBINE_METHODS)}")
    if task not in ("multiclass", "multilabel"):
        raise LabelqaError(f"unknown task {task!r}", hint="use 'multiclass' or 'multilabel'")
    mats, _ = _check_models(models, names)
    if method == "log_linear":
        if weights is not None:
            raise LabelqaError("log_linear fits the model weights itself; weights were given too",
                               hint="drop weights, or use method='geometric' with your weights")
        if labels is None:
            raise LabelqaError("log_linear needs the given labels to fit the model weights",
                               hint="pass labels=..., or use method='geometric'")
        return log_linear_pool(mats, fit_log_linear_weights(mats, labels, task=task), task=task)
    if method == "loss_weighted":
        if weights is not None:
            raise LabelqaError("loss_weighted fits the model weights itself; weights were given too",
                               hint="drop weights, or use method='mean' with your weights")
        if labels is None:
            raise LabelqaError("loss_weighted needs the given labels to weigh the models",
                               hint="pass labels=..., or use method='mean'")
        w = fit_model_weights(mats, labels, task=task)
        return _mean(mats, w, task)
    w = _weights(weights, len(mats))
    if method == "geometric":
        return _geometric(mats, w, task)
    return _mean(mats, w, task)


def _mean(mats: Sequence[np.ndarray], w: np.ndarray, task: str) -> np.ndarray:
    n, k = mats[0].shape
    out = np.empty((n, k), dtype=_out_dtype(mats))
    for sl in _blocks(n, k):
        acc = np.zeros((sl.stop - sl.start, k), dtype=np.float64)
        for m, wm in zip(mats, w):
            if wm:
                acc += wm * np.asarray(m[sl], dtype=np.float64)
        if task == "multiclass":
            sums = acc.sum(axis=1, keepdims=True)
            np.divide(acc, sums, out=acc, where=sums > 0)
        else:
            np.clip(acc, 0.0, 1.0, out=acc)
        out[sl] = acc
    return out


def _geometric(mats: Sequence[np.ndarray], w: np.ndarray, task: str) -> np.ndarray:
    n, k = mats[0].shape
    out = np.empty((n, k), dtype=_out_dtype(mats))
    for sl in _blocks(n, k):
        rows = sl.stop - sl.start
        log_p = np.zeros((rows, k), dtype=np.float64)
        log_q = np.zeros((rows, k), dtype=np.float64) if task == "multilabel" else None
        for m, wm in zip(mats, w):
            if not wm:
                continue
            block = np.asarray(m[sl], dtype=np.float64)
            log_p += wm * np.log(np.maximum(block, LOG_FLOOR))
            if log_q is not None:
                log_q += wm * np.log(np.maximum(1.0 - block, LOG_FLOOR))
        if log_q is None:
            log_p -= log_p.max(axis=1, keepdims=True)
            np.exp(log_p, out=log_p)
            log_p /= log_p.sum(axis=1, keepdims=True)
            out[sl] = log_p
        else:
            # p / (p + q) with p = exp(log_p), q = exp(log_q), computed stably
            out[sl] = 1.0 / (1.0 + np.exp(np.clip(log_q - log_p, -700.0, 700.0)))
    return out


def _log_losses(mats: Sequence[np.ndarray], labels: Any, task: str, w_grid: np.ndarray | None = None) -> np.ndarray:
    """Mean log loss vs the given labels: per model (``w_grid`` None) or per weight vector (rows of ``w_grid``)."""
    n, k = mats[0].shape
    if task == "multiclass":
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= k)):
            raise LabelqaError(f"labels must be {n} class codes in 0..{k - 1}", hint="pass the encoded labels")
        picked = np.stack([np.asarray(m)[np.arange(n), y].astype(np.float64) for m in mats])  # (M, N), no N x K copy
        if w_grid is None:
            return -np.log(np.maximum(picked, LOG_FLOOR)).mean(axis=1)
        return np.array([-np.log(np.maximum(wr @ picked, LOG_FLOOR)).mean() for wr in w_grid])
    y = np.asarray(labels, dtype=bool)
    if y.shape != (n, k):
        raise LabelqaError(f"multi-label labels must be an {n} x {k} matrix", hint="pass the label matrix")
    rows = w_grid if w_grid is not None else np.eye(len(mats))
    total = np.zeros(len(rows), dtype=np.float64)
    for sl in _blocks(n, k):
        yb = y[sl]
        blocks = [np.asarray(m[sl], dtype=np.float64) for m in mats]
        for r, wr in enumerate(rows):
            p = sum(wm * b for wm, b in zip(wr, blocks))
            total[r] -= np.log(np.maximum(np.where(yb, p, 1.0 - p), LOG_FLOOR)).sum()
    return total / (n * k)


def fit_model_weights(models: Sequence[Any], labels: Any, *, task: str = "multiclass",
                      suspect: Sequence[bool] | None = None) -> np.ndarray:
    """Weights for ``loss_weighted``: ``exp(-T * log_loss_m)``, normalised, with ``T`` from
    :data:`TEMPERATURES` minimising the mean's log loss against the given labels.

    A model that looks in-sample (:func:`in_sample_check`) fits the given labels
    best because it saw them: it gets no weight while another model does not
    look in-sample (:func:`drop_suspects`), so it cannot take the weight.
    ``suspect``: :func:`in_sample_check`'s ``suspect`` when the caller has it (multiclass).
    """
    mats, _ = _check_models(models, None)
    losses = _log_losses(mats, labels, task)
    grid = np.stack([np.exp(-t * (losses - losses.min())) for t in TEMPERATURES])
    grid /= grid.sum(axis=1, keepdims=True)
    best = int(np.argmin(_log_losses(mats, labels, task, grid)))
    weights = grid[best]
    if task == "multiclass":
        if suspect is None:
            suspect = in_sample_check(mats, labels)["suspect"]
        weights = drop_suspects(weights, np.array(suspect, dtype=bool))
    return weights


def log_linear_pool(models: Sequence[Any], weights: Sequence[float], *, task: str = "multiclass") -> np.ndarray:
    """``p ∝ prod_m p_m^{w_m}`` per row with the weights as given (not normalised), probabilities floored at 1e-12.

    Multi-label: per class ``sigmoid(sum_m w_m logit p_m)``, the same pool of ``p`` and ``1 - p``.
    """
    mats, _ = _check_models(models, None)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(mats),) or not np.isfinite(w).all() or (w < 0).any():
        raise LabelqaError(f"log-linear weights must be {len(mats)} finite numbers >= 0, got {weights!r}")
    if not w.any():
        w = np.ones(len(mats))
    return _geometric(mats, w, task)


def fit_log_linear_weights(models: Sequence[Any], labels: Any, *, task: str = "multiclass",
                           seed: int = 0, suspect: Sequence[bool] | None = None) -> np.ndarray:
    """Weights ``w_m >= 0`` of the log-linear pool maximising the likelihood of the given labels.

    The pool is ``q = softmax(sum_m w_m log p_m)`` (multi-label, per cell:
    ``sigmoid(sum_m w_m logit p_m)``, the geometric pool of ``p`` and
    ``1 - p``). The given labels are noisy -- that is why they are being
    checked -- so their likelihood is taken through a uniform noise channel:
    a label is the pool's class with probability ``1 - ε`` and each other
    class with ``ε / (K - 1)`` (multi-label: a cell flips with ``ε``), i.e.
    ``P(s) = (1 - ε) q_s + ε (1 - q_s) / (K - 1)``, with ``ε`` fitted along
    with the weights. Without the channel a model that rules a wrong label
    out (probability near 0) is punished without bound for being right, and
    the fit moves the weight to models that doubt less; with it, a doubted
    label costs at most ``-log(ε / (K - 1))``. On CIFAR-10N's neural models
    the fitted ``ε`` is about 0 and nothing changes; with k-nearest
    neighbours or boosted trees (exact zeros) it is what keeps their weight
    (docs/multimodel.md). Minimised by L-BFGS-B (scipy) from equal weights
    and ``ε = 0``, on a seeded sample of rows when N x K x M exceeds
    :data:`LOG_LINEAR_FIT_ELEMENTS`. Weights may sum to more than 1 (the
    pool is then sharper than a mean of logs: models that agree reinforce
    each other) or less (softer).

    Multiclass: a model that looks in-sample (:func:`in_sample_check`) gets
    weight 0 and the others' weights are fitted without it (unless every
    model looks in-sample): it fits the given labels best because it saw
    them, so a free fit would give it all the weight.
    ``suspect``: :func:`in_sample_check`'s ``suspect`` when the caller has it.
    """
    from scipy.optimize import minimize

    mats, _ = _check_models(models, None)
    n, k = mats[0].shape
    m_count = len(mats)
    multilabel = task == "multilabel"
    if multilabel:
        y = np.asarray(labels, dtype=bool)
        if y.shape != (n, k):
            raise LabelqaError(f"multi-label labels must be an {n} x {k} matrix", hint="pass the label matrix")
    else:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= k)):
            raise LabelqaError(f"labels must be {n} class codes in 0..{k - 1}", hint="pass the encoded labels")
    start = np.full(m_count, 1.0 / m_count)
    if n == 0:
        return start
    if multilabel:
        suspect = np.zeros(m_count, dtype=bool)
    elif suspect is None:
        suspect = in_sample_check(mats, y)["suspect"]
    suspect = np.array(suspect, dtype=bool)
    active = np.flatnonzero(~suspect) if not suspect.all() else np.arange(m_count)
    if active.size < m_count:  # fit the others alone: a suspect gets no weight
        w = np.zeros(m_count)
        w[active] = fit_log_linear_weights([mats[i] for i in active], y, task=task, seed=seed)
        return w
    rows = np.arange(n)
    limit = max(LOG_LINEAR_FIT_ELEMENTS // max(k * m_count, 1), 1)
    if n > limit:
        rows = np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    if multilabel:
        def logit(m: Any) -> np.ndarray:
            block = np.asarray(m)[rows].astype(np.float64)
            return np.log(np.maximum(block, LOG_FLOOR)) - np.log(np.maximum(1.0 - block, LOG_FLOOR))

        logits = np.stack([logit(m) for m in mats])  # (M, n, K)
        sign = np.where(y[rows], 1.0, -1.0)  # +1 where the cell's label is set
        top_noise = 0.5

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, noise = theta[:-1], theta[-1]
            z = np.tensordot(w, logits, axes=1) * sign  # the given value's logit
            log_q = -np.logaddexp(0.0, -z)  # log P(the given value) under the pool
            log_p = np.logaddexp(np.log1p(-2.0 * noise) + log_q, np.log(noise) if noise > 0 else -np.inf)
            share = np.exp(np.log1p(-2.0 * noise) + log_q - log_p)  # d log p / d log q
            dz = share * (1.0 - np.exp(log_q)) * sign  # d log p / d (w . logits)
            grad_w = -np.einsum("mnk,nk->m", logits, dz) / z.size
            grad_noise = -float(np.mean((1.0 - 2.0 * np.exp(log_q)) / np.exp(log_p)))
            return float(-np.mean(log_p)), np.append(grad_w, grad_noise)
    else:
        logs = np.stack([np.log(np.maximum(np.asarray(m)[rows].astype(np.float64), LOG_FLOOR)) for m in mats])
        ys = y[rows]
        idx = np.arange(rows.size)
        top_noise = (k - 1) / k

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, noise = theta[:-1], theta[-1]
            z = np.tensordot(w, logs, axes=1)
            z -= z.max(axis=1, keepdims=True)
            log_total = np.log(np.exp(z).sum(axis=1))
            log_q = z[idx, ys] - log_total  # log q_s, the pool's probability of the given label
            flip = noise / (k - 1)
            log_p = np.logaddexp(np.log1p(-noise - flip) + log_q, np.log(flip) if flip > 0 else -np.inf)
            share = np.exp(np.log1p(-noise - flip) + log_q - log_p)  # d log p / d log q_s
            q = np.exp(z - log_total[:, None])
            dlog_q = logs[:, idx, ys] - np.einsum("mnk,nk->mn", logs, q)  # d log q_s / d w_m
            grad_w = -(dlog_q * share).mean(axis=1)
            grad_noise = -float(np.mean((1.0 - k * np.exp(log_q)) / ((k - 1) * np.exp(log_p))))
            return float(-np.mean(log_p)), np.append(grad_w, grad_noise)

    start_theta = np.append(start, 0.0)
    bounds = [(0.0, None)] * m_count + [(0.0, top_noise * (1 - 1e-6))]
    res = minimize(loss_and_grad, start_theta, jac=True, method="L-BFGS-B", bounds=bounds)
    w = np.asarray(res.x[:-1] if np.isfinite(res.fun) else start, dtype=np.float64)
    return w if w.any() else start


def member_num_issues(models: Sequence[Any], labels: Any) -> list[int]:
    """Each model's own count of label errors, ``T = A + min(W, R)`` of ``prune_by_noise_rate_plus`` (multiclass)."""
    from labelqa.detectors.confident import plus_num_issues

    mats, _ = _check_models(models, None)
    return [plus_num_issues(labels, m) for m in mats]


def num_issues_floor(counts: Sequence[int], log_losses: Sequence[float], weights: Sequence[float] | None = None,
                     suspect: Sequence[bool] | None = None) -> int:
    """The least count the combination flags: the error count of the model that fits the given labels best.

    Every model's ``T`` estimates the same number, the wrong labels, and
    ``T`` is cautious by construction (the smaller of two estimates, ``W``
    and ``R``); pooling sharpens the combination, which leaves it fewer
    uncertain rows to extrapolate to, so its own ``T`` can fall below its
    members' (docs/multimodel.md). The member with the lowest log loss on
    the given labels -- the likelihood the fitted weights maximise -- is
    the one whose probabilities explain the labels best; its count is the
    floor. Not the largest count: a badly calibrated member (boosted trees
    on small tabular data) overcounts. Models with weight 0 and in-sample
    suspects (unless every model is one) are passed over: the first add
    nothing to the combination, the second fit the labels because they saw
    them.
    """
    c = np.asarray(counts, dtype=np.int64)
    loss = np.asarray(log_losses, dtype=np.float64)
    keep = np.ones(c.size, dtype=bool)
    if weights is not None:
        keep &= np.asarray(weights, dtype=np.float64) > 0
    if suspect is not None and not np.all(suspect):
        keep &= ~np.asarray(suspect, dtype=bool)
    if not keep.any():
        return 0
    return int(c[np.flatnonzero(keep)[np.argmin(loss[keep])]])


def drop_suspects(weights: np.ndarray, suspect: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """``weights`` with the ``suspect`` models' set to 0, unless every model is a suspect (then unchanged).

    With ``normalize`` the result sums to 1; when the other models had no
    weight at all they share it equally.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    suspect = np.asarray(suspect, dtype=bool)
    if not suspect.any() or suspect.all():
        return w
    w[suspect] = 0.0
    if not w.any():
        w[~suspect] = 1.0
    return w / w.sum() if normalize else w


def in_sample_check(models: Sequence[Any], labels: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Which models' probabilities look in-sample (multiclass), and the evidence.

    A model *doubts* a row's given label when it gives it less than ``1/K``,
    less than a uniform guess would. A model scored on rows it trained on
    keeps probability on their labels, wrong ones included; with a share
    ``λ >= 1/K`` of its mass on the given label it never doubts one. An
    out-of-sample model doubts many of the labels the others doubt: wrong
    labels are wrong for every model, and models err on the same hard rows
    (CIFAR-10N: 71-90% of the labels another model doubts; on the correctly
    labelled rows alone still 4-54%).

    A model is a suspect when it doubts **no** given label at all while the
    others doubt ``R`` of them, and that is no accident: a model doubting
    labels as often as the others do (their mean rate ``u``) would doubt
    none of those ``R`` with probability ``(1 - u)^R``, required below
    :data:`IN_SAMPLE_CHANCE`. (Not "none of the ``R``" alone: a strong
    honest model on labels without errors doubts few labels, its own
    mistakes, and may miss every one of a weaker model's.)
    (Near-perfect agreement with the given labels is no evidence: an honest
    model agrees with 99% of correct labels; ``backs_label_where_others_dispute``,
    the share of the rows where every other model's argmax disputes the
    label on which this model's argmax is the label, is reported only.)

    Returns:
        ``{"doubts_where_others_doubt": [share or None per model],
        "rows_others_doubt": [count per model], "doubt_rate": [share of all rows per model],
        "chance_of_no_doubt": [(1 - u)^R per model],
        "backs_label_where_others_dispute": [share or None per model],
        "rows_others_dispute": [count per model], "agreement_with_given": [per model],
        "mean_log_loss": [per model], "suspect": [bool per model], "names": [...]}``.
    """
    mats, labs_names = _check_models(models, names)
    n, k = mats[0].shape
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    agree = np.zeros((len(mats), n), dtype=bool)
    doubts = np.zeros((len(mats), n), dtype=bool)
    level = 1.0 / k if k else 0.0
    for sl in _blocks(n, k):
        picked = np.arange(sl.stop - sl.start), y[sl]
        for i, m in enumerate(mats):
            block = np.asarray(m[sl])
            agree[i, sl] = block.argmax(axis=1) == y[sl]
            doubts[i, sl] = block[picked] < level
    losses = _log_losses(mats, y, "multiclass")
    rate = doubts.mean(axis=1) if n else np.zeros(len(mats))
    out: dict[str, list[Any]] = {key: [] for key in (
        "doubts_where_others_doubt", "rows_others_doubt", "chance_of_no_doubt",
        "backs_label_where_others_dispute", "rows_others_dispute", "suspect")}
    for i in range(len(mats)):
        others = np.delete(np.arange(len(mats)), i)
        others_doubt = doubts[others].any(axis=0) if others.size else np.zeros(n, dtype=bool)
        doubted = int(np.count_nonzero(others_doubt))
        shared = int(np.count_nonzero(doubts[i] & others_doubt))
        chance = float((1.0 - rate[others].mean()) ** doubted) if others.size else 1.0
        never_doubts = doubted > 0 and not doubts[i].any() and chance < IN_SAMPLE_CHANCE
        others_dispute = ~agree[others].any(axis=0) if others.size else np.zeros(n, dtype=bool)
        disputed = int(np.count_nonzero(others_dispute))
        backs = float(np.count_nonzero(agree[i] & others_dispute) / disputed) if disputed else None
        out["doubts_where_others_doubt"].append(shared / doubted if doubted else None)
        out["rows_others_doubt"].append(doubted)
        out["chance_of_no_doubt"].append(chance)
        out["backs_label_where_others_dispute"].append(backs)
        out["rows_others_dispute"].append(disputed)
        out["suspect"].append(bool(len(mats) > 1 and never_doubts))
    return {"names": labs_names, **out, "doubt_rate": [float(r) for r in rate],
            "agreement_with_given": [float(a.mean()) if n else 0.0 for a in agree],
            "mean_log_loss": [float(x) for x in losses]}


def in_sample_warning(check: dict[str, Any]) -> str | None:
    """One warning line naming the suspects of :func:`in_sample_check` (``None`` when there are none)."""
    parts = [f"{name} gives no given label less than 1/K where the other models doubt {count:,} (chance, doubting "
             f"as often as they do: {chance:.0e}); it agrees with {agree:.1%} of the given labels"
             for name, count, chance, agree, bad in zip(check["names"], check["rows_others_doubt"],
                                                        check["chance_of_no_doubt"], check["agreement_with_given"],
                                                        check["suspect"]) if bad]
    if not parts:
        return None
    return ("probabilities look in-sample (scored on rows the model trained on?): " + "; ".join(parts)
            + ". log_linear and loss_weighted give it no weight; use out-of-sample (cross-validated) probabilities.")


def model_disagreement(models: Sequence[Any], *, task: str = "multiclass") -> dict[str, np.ndarray]:
    """Per-row figures of how far the models are apart.

    Multiclass:

    - ``models_disagree`` (bool): the models' argmax classes are not all equal;
    - ``model_spread`` (float in [0, 1]): the largest total-variation distance
      ``0.5 * sum_k |p_a,k - p_b,k|`` over pairs of models (0 = identical rows).

    Multi-label: ``models_disagree`` when some class is predicted
    (``p >= 0.5``) by one model and not by another; ``model_spread`` is the
    largest ``|p_a,k - p_b,k|`` over pairs and classes.

    Args:
        models: One N x K matrix per model.
        task: ``"multiclass"`` or ``"multilabel"``.

    Returns:
        ``{"models_disagree": bool (N,), "model_spread": float64 (N,)}``.
    """
    mats, _ = _check_models(models, None)
    n, k = mats[0].shape
    disagree = np.zeros(n, dtype=bool)
    spread = np.zeros(n, dtype=np.float64)
    for sl in _blocks(n, k):
        blocks = [np.asarray(m[sl], dtype=np.float64) for m in mats]
        if task == "multiclass":
            top = [b.argmax(axis=1) for b in blocks]
            disagree[sl] = np.any([t != top[0] for t in top[1:]], axis=0) if len(top) > 1 else False
        else:
            pred = [b >= MULTILABEL_THRESHOLD for b in blocks]
            disagree[sl] = np.any([(p != pred[0]).any(axis=1) for p in pred[1:]], axis=0) if len(pred) > 1 else False
        for a in range(len(blocks)):
            for b in range(a + 1, len(blocks)):
                diff = np.abs(blocks[a] - blocks[b])
                d = 0.5 * diff.sum(axis=1) if task == "multiclass" else diff.max(axis=1)
                np.maximum(spread[sl], d, out=spread[sl])
    if task == "multiclass":
        np.clip(spread, 0.0, 1.0, out=spread)
    return {"models_disagree": disagree, "model_spread": spread}


def _models_agree_with_label(data: Any) -> np.ndarray:
    """Multiclass: how many models' argmax equals the given label, per row (int64)."""
    mats = data.model_pred_probs
    n, k = mats[0].shape
    out = np.zeros(n, dtype=np.int64)
    labels = np.asarray(data.labels, dtype=np.int64)
    for sl in _blocks(n, k):
        for m in mats:
            out[sl] += np.asarray(m[sl]).argmax(axis=1) == labels[sl]
    return out


def disagreement_columns(data: Any) -> dict[str, np.ndarray]:
    """Per-row arrays for the issues table, or ``{}`` for a single model.

    - ``models_disagree`` (bool) and ``model_spread`` (float): see
      :func:`model_disagreement`;
    - multiclass only: ``models_agree_with_label`` (int): how many of the
      models' argmax classes equal the given label (``0..n_models``).

    Args:
        data: A :class:`labelqa.data.LabelData`; uses ``model_pred_probs``,
            ``labels`` and ``task``.
    """
    mats = getattr(data, "model_pred_probs", None)
    if not mats or len(mats) < 2:
        return {}
    cols = model_disagreement(mats, task=data.task)
    if data.task == "multiclass":
        cols["models_agree_with_label"] = _models_agree_with_label(data)
    return cols


def disagreement_summary(data: Any) -> dict[str, Any] | None:
    """Figures for summary.json, or ``None`` for a single model.

    Keys: ``n_models``, ``models`` (source names), ``combine_models``,
    ``model_weights`` (when fitted), ``rows_disagree`` and
    ``rows_disagree_rate``, ``mean_model_spread``, and per model
    ``agreement_with_given`` (multiclass: share of rows whose argmax is the
    given label; multi-label: share of (row, class) cells whose ``p >= 0.5``
    matches the label). Multiclass also: ``model_num_issues`` and
    ``num_issues_floor`` (:func:`num_issues_floor`), the in-sample evidence
    of :func:`in_sample_check` per model (``doubts_where_others_doubt``,
    ``doubt_rate``, ``chance_of_no_doubt``, ``backs_label_where_others_dispute``),
    ``in_sample_suspects`` and, with a suspect, ``warning``.
    """
    mats = getattr(data, "model_pred_probs", None)
    if not mats or len(mats) < 2:
        return None
    meta = getattr(data, "meta", {}) or {}
    cols = model_disagreement(mats, task=data.task)
    n = len(cols["models_disagree"])
    rows_disagree = int(np.count_nonzero(cols["models_disagree"]))
    agreement = []
    for m in mats:
        if data.task == "multiclass":
            agreement.append(float(np.mean(np.asarray(m).argmax(axis=1) == np.asarray(data.labels))))
        else:
            agreement.append(float(np.mean((np.asarray(m) >= MULTILABEL_THRESHOLD) == np.asarray(data.labels))))
    out: dict[str, Any] = {
        "n_models": len(mats),
        "models": list(meta.get("models", _names(len(mats), None))),
        "combine_models": meta.get("combine_models", DEFAULT_COMBINE),
        "rows_disagree": rows_disagree,
        "rows_disagree_rate": rows_disagree / n if n else 0.0,
        "mean_model_spread": float(cols["model_spread"].mean()) if n else 0.0,
        "agreement_with_given": agreement,
    }
    if "model_weights" in meta:
        out["model_weights"] = list(meta["model_weights"])
    if "model_num_issues" in meta:
        out["model_num_issues"] = list(meta["model_num_issues"])
        out["num_issues_floor"] = meta.get("num_issues_floor")
    if data.task == "multiclass":
        check = in_sample_check(mats, data.labels, out["models"] if len(out["models"]) == len(mats) else None)
        out["doubts_where_others_doubt"] = check["doubts_where_others_doubt"]
        out["doubt_rate"] = check["doubt_rate"]
        out["chance_of_no_doubt"] = check["chance_of_no_doubt"]
        out["backs_label_where_others_dispute"] = check["backs_label_where_others_dispute"]
        out["in_sample_suspects"] = [name for name, bad in zip(check["names"], check["suspect"]) if bad]
        warning = in_sample_warning(check)
        if warning:
            out["warning"] = warning
    return out


def _is_matrix_like(x: Any) -> bool:
    """Whether ``x`` looks like one 2-D matrix (an array, a DataFrame, or a non-empty list of rows)."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return len(shape) == 2
    if isinstance(x, (list, tuple)) and len(x) > 0:
        first = x[0]
        return isinstance(first, (list, tuple)) or (getattr(first, "shape", None) is not None
                                                     and len(getattr(first, "shape")) == 1)
    return False


def split_models(pred_probs: Any) -> list[Any] | None:
    """The list of model matrices when ``pred_probs`` is a list/tuple of 2-D matrices, else ``None``.

    A single matrix given as a list of rows (``[[0.1, 0.9], ...]``) is one
    model, not several.
    """
    if isinstance(pred_probs, (list, tuple)) and len(pred_probs) > 0 and all(
        _is_matrix_like(m) for m in pred_probs
    ):
        return list(pred_probs)
    return None
