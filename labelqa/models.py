"""Several models' predicted probabilities: combining them, and where they disagree.

A scan can take the out-of-sample probabilities of several models
(``--pred-probs-col a --pred-probs-col b``, ``--pred-probs x.npy``, or
``load(pred_probs_col=["a", "b"])``). Detectors then see one N x K matrix,
:attr:`LabelData.pred_probs`, combined here by ``combine_models``:

- ``geometric`` (default): the (weighted) geometric mean, renormalised per
  row, the log-linear pool: a class one model rules out stays unlikely, so a
  model that confirms a wrong label cannot outvote one that rules it out;
- ``mean``: the (weighted) arithmetic mean per row, the linear opinion pool;
- ``log_linear``: the log-linear pool ``p ∝ prod_m p_m^{w_m}`` with free
  weights ``w_m >= 0`` (not summing to 1) fitted by maximum likelihood of
  the **given** labels: a stacked, recalibrated geometric mean (multiclass);
- ``loss_weighted``: the mean with weights ``exp(-T * log_loss_m)``, each
  model's log loss measured against the **given** labels, with the
  temperature ``T`` chosen from a grid to minimise the combination's own log
  loss (cleanlab's ``log_loss_search`` idea). Beware: a model that saw the
  rows in training fits their labels, wrong ones included, and wins the
  weights.

For multi-label data each class is combined on its own (the geometric pool of
a class pools ``p`` and ``1 - p``); rows need not sum to 1.

``docs/multimodel.md`` has the measurement on CIFAR-10N behind the default:
on real data ``geometric`` and ``mean`` are on par (neither beats the better
model alone); when one model leaks (was scored partly in-sample) ``geometric``
keeps far more of the errors and ``loss_weighted`` keeps none.

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
    "in_sample_warning",
    "model_disagreement",
]

#: The ``combine_models`` values.
COMBINE_METHODS = ("geometric", "mean", "loss_weighted", "log_linear")
#: The default combination (see docs/multimodel.md for why).
DEFAULT_COMBINE = "geometric"
#: Probabilities are floored at this value before taking logs.
LOG_FLOOR = 1e-12
#: Temperatures tried by ``loss_weighted`` (0 = the plain mean).
TEMPERATURES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: About this many matrix elements per row block.
_BLOCK_ELEMENTS = 1 << 18
#: ``log_linear`` fits its weights on at most about this many (row x class x model) log-probabilities
#: (a seeded sample of rows beyond it).
LOG_LINEAR_FIT_ELEMENTS = 1 << 24
#: Multi-label: a model predicts class k for a row when ``p >= 0.5``.
MULTILABEL_THRESHOLD = 0.5
#: A model "looks in-sample" when, on the rows where every other model's argmax disputes the given
#: label, it backs the label on more than this share of them (an out-of-sample model sides with
#: the others' evidence there far more often; in-sample models back their training labels).
IN_SAMPLE_BACKING = 0.5
#: ... and only with at least this many such rows (less is no evidence either way),
IN_SAMPLE_MIN_ROWS = 20
#: ... and when its argmax agrees with at least this share of all the given labels (near-perfect:
#: models scored on their own training rows reach it, out-of-sample ones on real data do not).
IN_SAMPLE_AGREEMENT = 0.99


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
        method: ``"geometric"`` (default), ``"mean"`` or ``"loss_weighted"`` (see the
            module docstring).
        weights: Optional non-negative weight per model (normalised to sum
            to 1); default equal. Not with ``loss_weighted``, which fits them.
        labels: Given labels, needed by ``loss_weighted``: class codes
            ``(N,)`` (multiclass) or an ``(N, K)`` bool matrix (multi-label).
        task: ``"multiclass"`` (output rows sum to 1) or ``"multilabel"``
            (each class combined on its own).
        names: Model names for messages (default ``model 0``, ``model 1``...).

    Returns:
        A new N x K array, float32 when every model is float32, else float64.
        With a single model, a copy of it (renormalised for multiclass).

    Raises:
        LabelqaError: Unknown method, models of different shapes (naming
            both), bad weights, ``loss_weighted`` without labels.
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
        if task != "multiclass":
            raise LabelqaError("log_linear combines multiclass probabilities only",
                               hint="use --combine-models geometric, mean or loss_weighted for multi-label data")
        return log_linear_pool(mats, fit_log_linear_weights(mats, labels))
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


def fit_model_weights(models: Sequence[Any], labels: Any, *, task: str = "multiclass") -> np.ndarray:
    """Weights for ``loss_weighted``: ``exp(-T * log_loss_m)``, normalised, with ``T`` from
    :data:`TEMPERATURES` minimising the mean's log loss against the given labels.

    A model that looks in-sample (:func:`in_sample_check`) fits the given labels
    best because it saw them: it gets no weight while another model does not
    look in-sample (:func:`drop_suspects`), so it cannot take the weight.
    """
    mats, _ = _check_models(models, None)
    losses = _log_losses(mats, labels, task)
    grid = np.stack([np.exp(-t * (losses - losses.min())) for t in TEMPERATURES])
    grid /= grid.sum(axis=1, keepdims=True)
    best = int(np.argmin(_log_losses(mats, labels, task, grid)))
    weights = grid[best]
    if task == "multiclass":
        suspect = np.array(in_sample_check(mats, labels)["suspect"], dtype=bool)
        weights = drop_suspects(weights, suspect)
    return weights


def log_linear_pool(models: Sequence[Any], weights: Sequence[float]) -> np.ndarray:
    """``p ∝ prod_m p_m^{w_m}`` per row with the weights as given (not normalised), probabilities floored at 1e-12."""
    mats, _ = _check_models(models, None)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(mats),) or not np.isfinite(w).all() or (w < 0).any():
        raise LabelqaError(f"log-linear weights must be {len(mats)} finite numbers >= 0, got {weights!r}")
    if not w.any():
        w = np.ones(len(mats))
    return _geometric(mats, w, "multiclass")


def fit_log_linear_weights(models: Sequence[Any], labels: Any, *, seed: int = 0) -> np.ndarray:
    """Weights ``w_m >= 0`` of the log-linear pool maximising the likelihood of the given labels (multiclass).

    The mean log loss of ``softmax(sum_m w_m log p_m)`` is convex in ``w``;
    it is minimised by L-BFGS-B (scipy) from equal weights, on a seeded
    sample of rows when N x K x M exceeds :data:`LOG_LINEAR_FIT_ELEMENTS`.
    Weights may sum to more than 1 (the pool is then sharper than a mean of
    logs: models that agree reinforce each other) or less (softer).

    A model that looks in-sample (:func:`in_sample_check`) gets no weight
    while another model does not look in-sample (:func:`drop_suspects`).
    """
    from scipy.optimize import minimize

    mats, _ = _check_models(models, None)
    n, k = mats[0].shape
    m_count = len(mats)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= k)):
        raise LabelqaError(f"labels must be {n} class codes in 0..{k - 1}", hint="pass the encoded labels")
    if n == 0:
        return np.full(m_count, 1.0 / m_count)
    rows = np.arange(n)
    limit = max(LOG_LINEAR_FIT_ELEMENTS // max(k * m_count, 1), 1)
    if n > limit:
        rows = np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    logs = np.stack([np.log(np.maximum(np.asarray(m)[rows].astype(np.float64), LOG_FLOOR)) for m in mats])  # (M, n, K)
    ys = y[rows]
    idx = np.arange(rows.size)

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.tensordot(w, logs, axes=1)
        z -= z.max(axis=1, keepdims=True)
        ez = np.exp(z)
        total = ez.sum(axis=1)
        q = ez / total[:, None]
        loss = float(np.mean(np.log(total) - z[idx, ys]))
        grad = np.einsum("mnk,nk->m", logs, q) / rows.size - logs[:, idx, ys].mean(axis=1)
        return loss, grad

    start = np.full(m_count, 1.0 / m_count)
    res = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * m_count)
    w = np.asarray(res.x if np.isfinite(res.fun) else start, dtype=np.float64)
    w = drop_suspects(w, np.array(in_sample_check(mats, y)["suspect"], dtype=bool), normalize=False)
    if not w.any():
        w = start
    return w


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

    For each model, the rows where **every other** model's argmax disputes
    the given label: an out-of-sample model backs the label on a minority
    of them (it sees what the others see; on CIFAR-10N's real noise 4-17%),
    a model that trained on the rows backs its training labels (a model with
    half its probability on the given label: 100%). A model is a suspect
    when its argmax agrees with at least :data:`IN_SAMPLE_AGREEMENT` of all
    the given labels (near-perfect) **and** it backs the label on more than
    :data:`IN_SAMPLE_BACKING` of at least :data:`IN_SAMPLE_MIN_ROWS` rows that
    every other model disputes. (Two models cannot tell "A saw the labels"
    from "B is poor and A is perfect on clean labels"; the near-perfect
    agreement is what real out-of-sample models do not reach on real data.)

    Returns:
        ``{"backs_label_where_others_dispute": [share or None per model],
        "rows_others_dispute": [count per model], "agreement_with_given": [per model],
        "mean_log_loss": [per model],
        "suspect": [bool per model], "names": [...]}``.
    """
    mats, labs_names = _check_models(models, names)
    n, k = mats[0].shape
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    agree = np.zeros((len(mats), n), dtype=bool)
    for sl in _blocks(n, k):
        for i, m in enumerate(mats):
            agree[i, sl] = np.asarray(m[sl]).argmax(axis=1) == y[sl]
    losses = _log_losses(mats, y, "multiclass")
    backs: list[float | None] = []
    rows: list[int] = []
    suspect: list[bool] = []
    for i in range(len(mats)):
        others = np.delete(agree, i, axis=0)
        disputed = ~others.any(axis=0) if others.size else np.zeros(n, dtype=bool)
        count = int(np.count_nonzero(disputed))
        share = float(np.count_nonzero(agree[i] & disputed) / count) if count else None
        rows.append(count)
        backs.append(share)
        suspect.append(bool(len(mats) > 1 and count >= IN_SAMPLE_MIN_ROWS and share is not None
                            and share > IN_SAMPLE_BACKING and agree[i].mean() >= IN_SAMPLE_AGREEMENT))
    return {"names": labs_names, "backs_label_where_others_dispute": backs, "rows_others_dispute": rows,
            "agreement_with_given": [float(a.mean()) if n else 0.0 for a in agree],
            "mean_log_loss": [float(x) for x in losses], "suspect": suspect}


def in_sample_warning(check: dict[str, Any]) -> str | None:
    """One warning line naming the suspects of :func:`in_sample_check` (``None`` when there are none)."""
    parts = [f"{name} agrees with {agree:.1%} of the given labels and backs them on {share:.0%} of the {count:,} "
             "rows where every other model disputes them"
             for name, agree, share, count, bad in zip(check["names"], check["agreement_with_given"],
                                                       check["backs_label_where_others_dispute"],
                                                       check["rows_others_dispute"], check["suspect"]) if bad]
    if not parts:
        return None
    return ("probabilities look in-sample (scored on rows the model trained on?): " + "; ".join(parts)
            + ". loss_weighted and log_linear give it no weight; use out-of-sample (cross-validated) probabilities.")


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
    matches the label).
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
    if data.task == "multiclass":
        check = in_sample_check(mats, data.labels, out["models"] if len(out["models"]) == len(mats) else None)
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
