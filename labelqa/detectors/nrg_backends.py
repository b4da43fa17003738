"""Numeric engines of the Neural Relation Graph detector (see :mod:`labelqa.detectors.nrg`).

Everything here works on already validated inputs:

- ``F``: L2-normalised embeddings, float32, C-contiguous, shape ``(N, D)``;
- ``P``: probabilities, float32, shape ``(N, K)`` (unused by the feature kernel);
- ``H``: one-hot given labels, float32, shape ``(N, K)``.

Both graph engines return, for every row ``i`` and class ``c``, the *class sums*
``C[i, c] = sum_{j in cols, label_j = c} k_ij^t`` over the kept edges
(``k_ij > cutoff``), from which the detector gets ``s(i) = 2 C[i, y_i] - sum_c C[i, c]``
(same-label edges count ``+``, the others ``-``), and the *kernel sums*
``sum_{j in cols} k_ij`` over the same kept edges (t = 1, for the outlier score).

- Exact engine (:func:`exact_sums`): row blocks x column tiles of the kernel,
  computed with BLAS in float32; memory is O(block x tile), never N x N.
  ``backend="numpy"`` or ``"torch"`` (CPU tensors, imported lazily).
- kNN engine (:func:`knn_search` + :func:`knn_sums`): every row's sums are
  restricted to itself plus its k nearest rows in embedding space, stored as an
  (N, k+1) neighbour array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError

__all__ = [
    "TILE_BYTES",
    "exact_sums",
    "faiss_available",
    "knn_search",
    "knn_sums",
    "topk_rows",
    "load_torch",
    "torch_available",
]

#: Size in bytes of one float32 kernel tile (rows x columns) of the exact engine.
#: The engine keeps about three such buffers, so its working memory is ~3 x this.
TILE_BYTES = 32 * 2**20


# --------------------------------------------------------------------------- optional imports
def torch_available() -> bool:
    """Whether ``import torch`` works."""
    try:
        import torch  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def load_torch() -> Any:
    """Import torch or raise a LabelqaError that says how to get it."""
    try:
        import torch  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        raise LabelqaError(
            f"the NRG torch backend was requested but torch cannot be imported ({exc})",
            hint="install torch (CPU build) or use --nrg-backend numpy",
        ) from exc
    return torch


def faiss_available() -> bool:
    """Whether ``import faiss`` works (the optional faiss-cpu extra)."""
    try:
        import faiss  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001
        return False
    return True


def _load_faiss() -> Any:
    try:
        import faiss  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        raise LabelqaError(
            f"the NRG faiss index was requested but faiss cannot be imported ({exc})",
            hint="pip install 'labelqa[faiss]' (faiss-cpu) or use --nrg-index sklearn",
        ) from exc
    return faiss


# --------------------------------------------------------------------------- helpers
def _power_inplace(x: np.ndarray, t: float) -> None:
    """x **= t for x >= 0, by repeated squaring when t is a power of two."""
    if t == 1.0:
        return
    e = t
    while e > 1.0 and e == int(e) and (int(e) & (int(e) - 1)) == 0:
        np.multiply(x, x, out=x)
        e /= 2.0
    if e != 1.0:
        np.power(x, np.float32(e), out=x)


def tile_shape(n_rows: int, n_cols: int, block_size: int | None) -> tuple[int, int]:
    """Rows per block and columns per tile for the exact engine.

    ``block_size`` (rows) defaults to 1024; the column tile is chosen so that
    one float32 tile holds at most :data:`TILE_BYTES` (at least 256 columns).
    """
    rows = max(1, min(n_rows, block_size if block_size else 1024))
    cols = max(256, TILE_BYTES // (4 * rows))
    return rows, max(1, min(n_cols, cols))


# --------------------------------------------------------------------------- exact engine
def exact_sums(
    F: np.ndarray,
    P: np.ndarray | None,
    H: np.ndarray,
    cols: np.ndarray | None = None,
    *,
    power: float,
    cutoff: float,
    block_size: int | None = None,
    backend: str = "numpy",
    want_kernel_sums: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class sums (N, K) and kernel sums (N,) of every row over the columns ``cols``.

    ``cols`` is an index array of the rows used as neighbours ``j`` (default:
    all rows). ``P=None`` selects the feature-only kernel. Results are float64.

    With all rows as columns the kernel is symmetric, so only the tiles on or
    above the diagonal are computed (about half the work): a tile of rows I x
    columns J (J after I) adds ``W @ H[J]`` to rows I and ``W.T @ H[I]`` to rows J.
    """
    n, k = F.shape[0], H.shape[1]
    class_sums = np.zeros((n, k), dtype=np.float64)
    kernel_sums = np.zeros(n, dtype=np.float64) if want_kernel_sums else None
    symmetric = cols is None
    if symmetric:
        Fc, Pc, Hc = F, P, H
    else:
        Fc, Hc = F[cols], H[cols]
        Pc = None if P is None else P[cols]
    m = Fc.shape[0]
    if m == 0 or n == 0:
        return class_sums, kernel_sums
    rows, tcols = tile_shape(n, m, block_size)
    if backend == "torch":
        tile = _TorchTiles(F, P, H, Fc, Pc, Hc, power, cutoff, want_kernel_sums)
    else:
        tile = _NumpyTiles(F, P, H, Fc, Pc, Hc, power, cutoff, want_kernel_sums, rows, tcols)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        start = r0 if symmetric else 0
        for c0 in range(start, m, tcols):
            c1 = min(m, c0 + tcols)
            # Columns before ``r1`` are in the diagonal block: row sums only.
            off = max(0, min(c1, r1) - c0) if symmetric else c1 - c0
            row_c, row_k, col_c, col_k = tile(r0, r1, c0, c1, off, symmetric)
            class_sums[r0:r1] += row_c
            if kernel_sums is not None:
                kernel_sums[r0:r1] += row_k
            if col_c is not None:
                class_sums[c0 + off : c1] += col_c
                if kernel_sums is not None:
                    kernel_sums[c0 + off : c1] += col_k
    return class_sums, kernel_sums


class _NumpyTiles:
    """One kernel tile with numpy: BLAS products, in-place float32 elementwise."""

    def __init__(self, F, P, H, Fc, Pc, Hc, power, cutoff, want_k, rows, tcols) -> None:
        self.F, self.P, self.H, self.Fc, self.Pc, self.Hc = F, P, H, Fc, Pc, Hc
        self.power, self.cutoff, self.want_k = power, np.float32(cutoff), want_k
        self.g_buf = np.empty(rows * tcols, dtype=np.float32)
        self.p_buf = np.empty(rows * tcols, dtype=np.float32) if P is not None else None
        self.m_buf = np.empty(rows * tcols, dtype=bool)
        self.ones = np.ones((max(rows, tcols), 1), dtype=np.float32)

    def __call__(self, r0, r1, c0, c1, off, symmetric):
        rb, cb = r1 - r0, c1 - c0
        g = self.g_buf[: rb * cb].reshape(rb, cb)
        np.matmul(self.F[r0:r1], self.Fc[c0:c1].T, out=g)
        np.maximum(g, 0.0, out=g)
        if self.P is not None:
            pp = self.p_buf[: rb * cb].reshape(rb, cb)
            np.matmul(self.P[r0:r1], self.Pc[c0:c1].T, out=pp)
            np.multiply(g, pp, out=g)
        mask = self.m_buf[: rb * cb].reshape(rb, cb)
        np.less_equal(g, self.cutoff, out=mask)
        np.copyto(g, 0.0, where=mask)
        row_k = col_k = col_c = None
        if self.want_k:
            row_k = (g @ self.ones[:cb])[:, 0]
            if symmetric and off < cb:
                col_k = (g[:, off:].T @ self.ones[:rb])[:, 0]
        _power_inplace(g, self.power)
        row_c = g @ self.Hc[c0:c1]
        if symmetric and off < cb:
            col_c = g[:, off:].T @ self.H[r0:r1]
        return row_c, row_k, col_c, col_k


class _TorchTiles:
    """The same tile with torch CPU tensors (float32)."""

    def __init__(self, F, P, H, Fc, Pc, Hc, power, cutoff, want_k) -> None:
        torch = load_torch()
        self.torch = torch

        def t(a):
            return None if a is None else torch.from_numpy(np.array(a, dtype=np.float32, order="C"))

        self.F, self.P, self.H = t(F), t(P), t(H)
        self.Fc = self.F if Fc is F else t(Fc)
        self.Pc = self.P if Pc is P else t(Pc)
        self.Hc = self.H if Hc is H else t(Hc)
        self.power, self.cutoff, self.want_k = power, cutoff, want_k

    def __call__(self, r0, r1, c0, c1, off, symmetric):
        torch = self.torch
        with torch.no_grad():
            g = torch.mm(self.F[r0:r1], self.Fc[c0:c1].T)
            g.clamp_(min=0.0)
            if self.P is not None:
                g.mul_(torch.mm(self.P[r0:r1], self.Pc[c0:c1].T))
            g.masked_fill_(g <= self.cutoff, 0.0)
            cb = c1 - c0
            row_k = col_k = col_c = None
            if self.want_k:
                row_k = g.sum(dim=1).numpy()
                if symmetric and off < cb:
                    col_k = g[:, off:].sum(dim=0).numpy()
            if self.power != 1.0:
                g.pow_(self.power)
            row_c = torch.mm(g, self.Hc[c0:c1]).numpy()
            if symmetric and off < cb:
                col_c = torch.mm(g[:, off:].T, self.H[r0:r1]).numpy()
        return row_c, row_k, col_c, col_k


# --------------------------------------------------------------------------- kNN search
def _topk_small(sims: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_rows` by partition and mask (no threshold sampling)."""
    rows, m = sims.shape
    if m <= kk:
        part = np.broadcast_to(np.arange(m), sims.shape).copy()
    else:
        thr = np.partition(sims, m - kk, axis=1)[:, m - kk]
        mask = sims >= thr[:, None]
        exact = np.count_nonzero(mask, axis=1) == kk
        if exact.all():
            part = np.flatnonzero(mask).reshape(rows, kk) % m  # (flatnonzero: 10x faster than nonzero)
        else:
            part = np.empty((rows, kk), dtype=np.int64)
            part[exact] = np.flatnonzero(mask[exact]).reshape(-1, kk) % m
            part[~exact] = np.argpartition(sims[~exact], m - kk, axis=1)[:, m - kk :]
    vals = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-vals, axis=1)  # introsort: deterministic, 4x faster than the stable sort
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


#: Every TOPK_STRIDE-th column is sampled to estimate each row's selection threshold.
TOPK_STRIDE = 8


def topk_rows(sims: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``sims`` (rows x candidates), the columns of the kk largest values
    and those values, best first (equal values in a deterministic order).

    Wide rows (at least 8 kk columns) first get a threshold from a sample of
    every :data:`TOPK_STRIDE`-th column: a value that about 1.3 kk + 64
    entries of the row reach. One comparison pass keeps those entries (the
    row's kk largest are among them whenever at least kk are kept), and the
    exact selection runs on the kept ones only: about 2x less work than a
    partition of the whole row at 2,000 columns, 3-4x at 4,000. Rows where
    fewer than kk entries pass take the full selection. Narrow rows take it
    directly: the kk-th largest value from ``np.partition`` (values only,
    about twice as fast as ``np.argpartition``), the columns at or above it
    read off a mask, ``np.argpartition`` for rows with ties at that value.
    """
    rows, m = sims.shape
    stride = TOPK_STRIDE
    ms = m // stride
    rank = math.ceil(1.3 * kk / stride) + 8
    if m < 8 * kk or ms <= 2 * rank or rows == 0:
        return _topk_small(sims, kk)
    sample = np.ascontiguousarray(sims[:, : ms * stride : stride])
    thr = np.partition(sample, ms - rank, axis=1)[:, ms - rank]
    if not np.isfinite(thr).all():
        return _topk_small(sims, kk)
    mask = sims >= thr[:, None]
    count = np.count_nonzero(mask, axis=1)
    cols = np.empty((rows, kk), dtype=np.int64)
    vals = np.empty((rows, kk), dtype=sims.dtype)
    ok = count >= kk
    fine = np.flatnonzero(ok)
    if fine.size:
        sub = mask if fine.size == rows else mask[fine]
        c = count[fine]
        pos = np.flatnonzero(sub)  # row-major: each row's kept columns in column order
        row = pos // m
        col = pos - row * m
        slot = np.arange(pos.size) - np.repeat(np.cumsum(c) - c, c)
        width = int(c.max())
        pad_v = np.full((fine.size, width), -np.inf, dtype=sims.dtype)  # thr is finite: padding never wins
        pad_c = np.zeros((fine.size, width), dtype=np.int64)
        pad_v[row, slot] = sims[fine[row], col]
        pad_c[row, slot] = col
        part, v = _topk_small(pad_v, kk)
        cols[fine] = np.take_along_axis(pad_c, part, axis=1)
        vals[fine] = v
    if fine.size < rows:
        rest = np.flatnonzero(~ok)
        cols[rest], vals[rest] = _topk_small(sims[rest], kk)
    return cols, vals


def _normalised_rows(F: np.ndarray, rows: np.ndarray | slice, row_scale: np.ndarray | None) -> np.ndarray:
    """The rows ``rows`` of the normalised embeddings as a float32 C-contiguous block
    (a new array when scaled; never writes to ``F``)."""
    if row_scale is None:
        return np.ascontiguousarray(F[rows], dtype=np.float32)
    return np.multiply(F[rows], row_scale[rows][:, None], dtype=np.float32)


def _self_first(
    rows: np.ndarray, found: np.ndarray, found_sims: np.ndarray, self_sims: np.ndarray, k: int,
    nbrs: np.ndarray, sims: np.ndarray,
) -> None:
    """Write each row itself plus its k best other hits into ``nbrs[rows]`` / ``sims[rows]``.

    ``found`` (rows x kk, best first) may or may not hold the row itself: it is
    dropped where found (duplicated self hits too), else the worst hit is;
    slots that stay empty point at the row itself with similarity ``-inf``.
    """
    kk = found.shape[1]
    r = rows[:, None]
    is_self = found == r
    nbrs[rows, 0] = rows
    sims[rows, 0] = self_sims
    # The usual case: the row is its own best hit, once.
    simple = is_self[:, 0] & (np.count_nonzero(is_self, axis=1) == 1)
    if kk == k + 1 and simple.all():
        nbrs[rows, 1:] = found[:, 1:]
        sims[rows, 1:] = found_sims[:, 1:]
        return
    keep = ~is_self
    keep[~is_self.any(axis=1), kk - 1] = False
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    filled = np.take_along_axis(keep, order, axis=1)
    if order.shape[1] < k:  # fewer hits than k: the rest stay empty
        pad = k - order.shape[1]
        order = np.pad(order, ((0, 0), (0, pad)))
        filled = np.pad(filled, ((0, 0), (0, pad)))
    nbrs[rows, 1:] = np.where(filled, np.take_along_axis(found, order, axis=1), r)
    sims[rows, 1:] = np.where(filled, np.take_along_axis(found_sims, order, axis=1), -np.inf)


def _search_brute(
    F: np.ndarray, k: int, block_size: int | None, row_scale: np.ndarray | None,
    nbrs: np.ndarray, sims: np.ndarray,
) -> None:
    """Exact top-k inner-product neighbours (O(N^2 D), blocked)."""
    n = F.shape[0]
    if row_scale is not None:
        F = _normalised_rows(F, slice(None), row_scale)
    kk = min(n, k + 1)
    rows = max(1, min(n, block_size or max(1, TILE_BYTES // (4 * n))))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        g = F[r0:r1] @ F.T
        found, found_sims = topk_rows(g, kk)
        _self_first(np.arange(r0, r1), found, found_sims, np.einsum("ij,ij->i", F[r0:r1], F[r0:r1]), k,
                    nbrs, sims)


#: Cells of the scikit-learn index per sqrt(N) rows.
CELLS_PER_SQRT_N = 2.0


def ivf_cells(n: int) -> int:
    """Number of k-means cells of the scikit-learn index: ~2 sqrt(N) (at most N / 32)."""
    return int(max(1, min(n // 32, round(CELLS_PER_SQRT_N * math.sqrt(n)))))


#: Lloyd iterations that refine the sampled cell centroids, on a sample of
#: LLOYD_ROWS rows per cell.
LLOYD_ITERATIONS, LLOYD_ROWS = 4, 24


def _group_means(X: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the groups that have rows, ascending; the mean row of each, float32).

    The sums are one sparse (groups x rows) indicator times ``X`` (float32 BLAS-like
    speed; ``np.add.at`` is ~20x slower)."""
    from scipy.sparse import csr_matrix  # noqa: PLC0415 - a scikit-learn dependency

    used, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    ind = csr_matrix((np.ones(group.size, dtype=np.float32), (inverse.ravel(), np.arange(group.size))),
                     shape=(used.size, group.size))
    sums = np.asarray(ind @ X, dtype=np.float32)
    return used, sums / counts[:, None].astype(np.float32)


def _assign(Z: np.ndarray, cent: np.ndarray, half_norm: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of every row of ``Z``, in blocks of at most 32 MB."""
    out = np.empty(Z.shape[0], dtype=np.int64)
    step = max(1, TILE_BYTES // (4 * max(1, cent.shape[0])))
    for r0 in range(0, Z.shape[0], step):
        g = Z[r0 : r0 + step] @ cent.T
        g -= half_norm
        out[r0 : r0 + step] = np.argmax(g, axis=1)
    return out


def _ivf_cells(
    F: np.ndarray, row_scale: np.ndarray | None, canon: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cell of each row, cell centroids), all in full dimension.

    The centroids start as :func:`ivf_cells` rows sampled in the canonical
    order ``canon``, refined by :data:`LLOYD_ITERATIONS` k-means (Lloyd) steps
    on a sample of :data:`LLOYD_ROWS` rows per cell (float32 BLAS); every row
    then goes to its nearest centroid (row blocks on threads, BLAS
    single-threaded inside). k-means is not run to convergence: cells only
    choose candidates, the search itself compares rows exactly.
    """
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - a scikit-learn dependency

    from labelqa.parallel import thread_map  # noqa: PLC0415

    n = F.shape[0]
    n_cells = ivf_cells(n)
    rng = np.random.default_rng(seed)
    sample = canon[np.sort(rng.choice(n, min(n, n_cells * (1 + LLOYD_ROWS)), replace=False))]
    cent = _normalised_rows(F, sample[:n_cells], row_scale)
    train = _normalised_rows(F, sample[n_cells:], row_scale)
    step = 8192

    def assign_all(Z: np.ndarray | None, out: np.ndarray) -> None:
        m = out.shape[0]
        half_norm = 0.5 * np.einsum("ij,ij->i", cent, cent)

        def one(r0: int) -> None:
            rows = slice(r0, min(m, r0 + step))
            block = Z[rows] if Z is not None else _normalised_rows(F, rows, row_scale)
            out[rows] = _assign(block, cent, half_norm)

        for _ in thread_map(one, range(0, m, step), parallel=m >= 2 * step):
            pass

    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(LLOYD_ITERATIONS if train.shape[0] else 0):
            lab = np.empty(train.shape[0], dtype=np.int64)
            assign_all(train, lab)
            moved, means = _group_means(train, lab)  # empty cells keep their centroid
            cent[moved] = means
        cell = np.empty(n, dtype=np.int64)
        assign_all(None, cell)
    cell, cent = _split_large_cells(F, row_scale, canon, cell, cent)
    return cell, cent


#: Cells larger than this many times the mean cell size are split.
CELL_CAP = 4


def _split_large_cells(
    F: np.ndarray, row_scale: np.ndarray | None, canon: np.ndarray, cell: np.ndarray, cent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split cells over :data:`CELL_CAP` x the mean size into cells of about the mean size.

    On data with dense, structureless clusters (a cloud whose rows are all
    about equally similar) k-means puts a centroid at the cloud's centre that
    takes the whole cloud; every query there would then scan it all. Such a
    cell is cut by the nearest of ``size / mean`` of its rows (taken evenly in
    canonical order), and each part gets its members' mean as centroid, so
    the search cost per row stays bounded at any N.
    """
    n, m = cell.shape[0], cent.shape[0]
    mean = max(1.0, n / m)
    sizes = np.bincount(cell, minlength=m)
    big = np.flatnonzero(sizes > CELL_CAP * mean)
    if big.size == 0:
        return cell, cent
    rank = np.empty(n, dtype=np.int64)
    rank[canon] = np.arange(n)
    extra = []
    next_id = m
    for c in big.tolist():
        rows = np.flatnonzero(cell == c)
        rows = rows[np.argsort(rank[rows], kind="stable")]
        parts = int(math.ceil(rows.size / mean))
        X = _normalised_rows(F, rows, row_scale)
        seeds = X[np.linspace(0, rows.size - 1, parts).astype(np.int64)]
        part = _assign(X, seeds, 0.5 * np.einsum("ij,ij->i", seeds, seeds))
        used, means = _group_means(X, part)
        ids = np.full(parts, -1, dtype=np.int64)
        ids[used[0]] = c  # the first part keeps the cell's id
        ids[used[1:]] = next_id + np.arange(used.size - 1)
        next_id += used.size - 1
        cell[rows] = ids[part]
        cent[c] = means[0]
        extra.append(means[1:])
    return cell, np.concatenate([cent, *extra])


def _nearest_cells(cent: np.ndarray, n_probe: int) -> np.ndarray:
    """For every centroid, the ``n_probe`` nearest centroids (itself included), in blocks."""
    m = cent.shape[0]
    width = min(m, n_probe)
    half_norm = 0.5 * np.einsum("ij,ij->i", cent, cent)
    probe = np.empty((m, width), dtype=np.int64)
    step = max(1, TILE_BYTES // (4 * m))
    for r0 in range(0, m, step):
        g = cent[r0 : r0 + step] @ cent.T
        g -= half_norm
        probe[r0 : r0 + step], _ = topk_rows(g, width)
    return probe


def _search_sklearn(
    F: np.ndarray, k: int, *, n_probe: int, seed: int, canon: np.ndarray, row_scale: np.ndarray | None,
    nbrs: np.ndarray, sims: np.ndarray,
) -> bool:
    """Approximate top-k neighbours with an inverted-file index; False if it would be brute force.

    Rows are grouped into ~2 sqrt(N) cells (:func:`_ivf_cells`). The rows of one
    cell are searched together, exactly (BLAS, full dimension, float32), among
    the rows of the cells whose centroids are nearest to that cell's centroid
    (its own first): up to ``n_probe`` cells, fewer when they already hold
    ``n_probe`` mean cells' worth of rows (a candidate budget, so a large
    cell does not multiply the work), more while they hold fewer than k + 1.
    Neighbour similarities are exact inner products; only the candidate set
    is approximate. Cells are searched on :func:`labelqa.parallel.worker_count`
    threads (BLAS single-threaded inside), each with temporaries of one
    cell's queries x candidates. The index is numpy only ("sklearn" is its
    historical name; scikit-learn's threadpoolctl and scipy are used).

    ``canon`` is a canonical row order (a permutation): the samples and the
    order within cells follow it, so the result does not depend on the order
    of the rows of ``F``.
    """
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - a scikit-learn dependency

    from labelqa.parallel import thread_map  # noqa: PLC0415

    n = F.shape[0]
    if ivf_cells(n) <= n_probe:
        return False
    kk = k + 1
    cell, cent = _ivf_cells(F, row_scale, canon, seed)
    n_cells = cent.shape[0]
    rank = np.empty(n, dtype=np.int64)
    rank[canon] = np.arange(n)
    order = np.lexsort((rank, cell))
    del rank
    bounds = np.searchsorted(cell[order], np.arange(n_cells + 1))
    del cell
    sizes = np.diff(bounds)
    budget = max(n_probe * n / n_cells, 2 * kk)
    probe = _nearest_cells(cent, min(n_cells, 4 * n_probe))
    max_block = 1024  # queries per product: bounds the temporaries for oversized cells

    def search_cell(c: int) -> None:
        q = order[bounds[c] : bounds[c + 1]]
        if q.size == 0:
            return
        # The nearest cells, up to n_probe of them or until the candidates reach the budget
        # (n_probe mean-sized cells; more cells while the candidates are fewer than kk).
        near = probe[c]
        total = np.cumsum(sizes[near])
        stop = min(n_probe, int(np.searchsorted(total, budget)) + 1)
        stop = max(stop, int(np.searchsorted(total, kk)) + 1)
        cand = np.concatenate([order[bounds[p] : bounds[p + 1]] for p in near[:stop]])
        if cand.size < kk:  # tiny neighbourhood: all rows
            cand = order
        fc = F[cand]
        cand_scale = None if row_scale is None else row_scale[cand]
        for q0 in range(0, q.size, max_block):
            qq = q[q0 : q0 + max_block]
            fq = F[qq]
            g = fq @ fc.T
            self_sims = np.einsum("ij,ij->i", fq, fq)
            if cand_scale is not None:
                g *= cand_scale  # the query's own scale does not change its ranking
            found, found_sims = topk_rows(g, kk)
            if row_scale is not None:
                q_scale = row_scale[qq]
                found_sims *= q_scale[:, None]
                self_sims *= q_scale * q_scale
            _self_first(qq, cand[found], found_sims, self_sims, k, nbrs, sims)

    with threadpool_limits(limits=1, user_api="blas"):
        for _ in thread_map(search_cell, range(n_cells), parallel=n >= 1 << 14):
            pass
    return True


def _search_faiss(
    F: np.ndarray, k: int, *, canon: np.ndarray, row_scale: np.ndarray | None, nbrs: np.ndarray, sims: np.ndarray
) -> None:
    """Approximate top-k inner-product neighbours with faiss HNSW (flat storage)."""
    faiss = _load_faiss()
    n, d = F.shape
    kk = k + 1
    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.hnsw.efSearch = max(64, 2 * kk)
    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    step = 65536
    for r0 in range(0, n, step):  # insertion in canonical order
        index.add(_normalised_rows(F, canon[r0 : r0 + step], row_scale))
    for r0 in range(0, n, step):
        fq = _normalised_rows(F, slice(r0, r0 + step), row_scale)
        found_sims, raw = index.search(fq, kk)
        found = canon[raw.clip(min=0)]
        bad = raw < 0  # not enough results: point at the row itself with no weight
        rows = np.arange(r0, r0 + fq.shape[0])
        if bad.any():
            found[bad] = np.broadcast_to(rows[:, None], found.shape)[bad]
            found_sims[bad] = -np.inf
        _self_first(rows, found, found_sims.astype(np.float32), np.einsum("ij,ij->i", fq, fq), k, nbrs, sims)


def knn_search(
    F: np.ndarray,
    k: int,
    *,
    index: str,
    n_probe: int = 8,
    seed: int = 0,
    block_size: int | None = None,
    row_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Each row itself plus its k nearest other rows by inner product.

    ``F`` holds L2-normalised embeddings, or, with ``row_scale`` (N,), rows
    that ``F * row_scale[:, None]`` normalises: then no normalised copy of F
    is made (the index scales what it reads, block by block); the raw inner
    products must fit in float32 (row norms well inside 1e-15..1e15).

    Returns ``(nbrs, sims, index_used)``: ``nbrs`` (N, k+1) int32 (int64 past
    2**31 rows) with the row itself in column 0 and the others best first,
    ``sims`` the matching inner products (float32; entries that the index could
    not fill point at the row itself with ``-inf`` and carry no weight).
    """
    n = F.shape[0]
    k = max(0, min(k, n - 1))
    F = np.ascontiguousarray(F, dtype=np.float32)
    if row_scale is not None:
        row_scale = np.asarray(row_scale, dtype=np.float32)
    nbrs = np.empty((n, k + 1), dtype=np.int32 if n < 2**31 else np.int64)
    sims = np.empty((n, k + 1), dtype=np.float32)
    if index == "auto":
        # Measured at 200k x 512 on 2 cores: faiss HNSW 263 s, several times the
        # sklearn index (docs/nrg.md), so auto uses sklearn; faiss is opt-in.
        index = "sklearn"
    if index in ("sklearn", "faiss"):
        # The approximate indexes depend on the order rows are inserted or
        # sampled in: they use a canonical order (by a seeded random
        # projection of the embedding) so results do not depend on row order.
        u = np.random.default_rng(seed).standard_normal(F.shape[1]).astype(np.float32)
        proj = np.empty(n, dtype=np.float32)
        for r0 in range(0, n, 65536):
            proj[r0 : r0 + 65536] = _normalised_rows(F, slice(r0, r0 + 65536), row_scale) @ u
        canon = np.argsort(proj, kind="stable")
        del proj
        if index == "faiss":
            _search_faiss(F, k, canon=canon, row_scale=row_scale, nbrs=nbrs, sims=sims)
        elif not _search_sklearn(F, k, n_probe=n_probe, seed=seed, canon=canon, row_scale=row_scale,
                                 nbrs=nbrs, sims=sims):
            _search_brute(F, k, block_size, row_scale, nbrs, sims)
    elif index == "brute":
        _search_brute(F, k, block_size, row_scale, nbrs, sims)
    else:  # pragma: no cover - validated by the detector
        raise ValueError(index)
    return nbrs, sims, index


def knn_kernel(
    nbrs: np.ndarray, sims: np.ndarray, P: np.ndarray | None, *, cutoff: float, in_place: bool = False
) -> np.ndarray:
    """Kernel values k_ij on the neighbour graph (float32), zero where k_ij <= cutoff.

    In row blocks: the probability term gathers ``P[nbrs]`` for one block
    (block x (k+1) x K, at most :data:`TILE_BYTES`), never for all rows.
    ``in_place=True`` writes the kernel over ``sims`` (float32; saves N x (k+1)
    x 4 bytes, 0.4 GB at 1M rows) and returns it.
    """
    if in_place and sims.dtype == np.float32:
        kern = np.maximum(sims, np.float32(0.0), out=sims)
    else:
        kern = np.maximum(sims, np.float32(0.0), dtype=np.float32)
    from labelqa.parallel import for_row_blocks  # noqa: PLC0415

    n = nbrs.shape[0]
    width = max(1, nbrs.shape[1])
    k_cls = 1 if P is None else P.shape[1]
    step = max(1, TILE_BYTES // (4 * k_cls * width))
    cut = np.float32(cutoff)

    def block_kernel(r0: int, r1: int) -> None:
        block = kern[r0:r1]
        if P is not None:
            block *= np.einsum("ik,ijk->ij", P[r0:r1], P[nbrs[r0:r1]])
        block[block <= cut] = 0.0

    for_row_blocks(block_kernel, n, step, elements=n * width * k_cls)
    return kern


def knn_sums(
    nbrs: np.ndarray,
    kern: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    power: float,
    col_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class sums (N, K) of k_ij^t over each row's neighbours (optionally only
    neighbours with ``col_mask[j]``), and kernel sums (N,) of k_ij (t = 1).

    Processed in row chunks, so the temporaries stay small at any N."""
    from labelqa.parallel import for_row_blocks  # noqa: PLC0415

    n, width = nbrs.shape
    class_sums = np.zeros((n, n_classes), dtype=np.float64)
    ksum = np.zeros(n, dtype=np.float64)
    step = max(1, (2 * 2**20) // max(1, width))

    def block_sums(r0: int, r1: int) -> None:
        nb = nbrs[r0:r1]
        w = kern[r0:r1].astype(np.float64)
        ksum[r0:r1] = w.sum(axis=1)
        _power_inplace(w, power)
        if col_mask is not None:
            w[~col_mask[nb]] = 0.0
        flat = (np.arange(r1 - r0)[:, None] * n_classes + labels[nb]).ravel()
        class_sums[r0:r1] = np.bincount(
            flat, weights=w.ravel(), minlength=(r1 - r0) * n_classes
        ).reshape(r1 - r0, n_classes)

    for_row_blocks(block_sums, n, step, elements=n * width)
    return class_sums, ksum
