"""Neural Relation Graph (NRG): label-noise and outlier scores from the relation
graph of the examples in embedding space (docs/nrg.md; Kim, Yun,
Song, NeurIPS 2023). Documentation, defaults and measurements: ``docs/nrg.md``.

For L2-normalised embeddings ``f_i`` and probabilities ``p_i``:

- kernel ``k_ij = max(<f_i, f_j>, 0) * <p_i, p_j>`` (``nrg_kernel="feature"`` drops
  the probability term);
- relation ``r_ij = +k_ij`` if rows i and j have the same given label, else
  ``-k_ij``; edge weight ``w_ij = sign(r_ij) |r_ij|^t``, kept only when
  ``|r_ij| > nrg_edge_cutoff`` (cutoff before the power), self-edge included;
- ``s(i) = sum_j w_ij``; suspect set ``S = {i : s(i) / max|s| < -nrg_lambda}``;
  one refinement pass ``s'(i) = s(i) - 2 sum_{j in S} w_ij`` (j = i included
  when i is in S, exactly as the formula reads);
- outlier score ``1 / (sum_j k_ij + 1e-6)`` over the kept edges (t = 1, same
  cutoff, no label term, self-edge included).

Outputs (:class:`~labelqa.detectors.base.DetectorResult`):

- ``scores`` = ``s'(i) / max_j |s'(j)|`` in [-1, 1]: a monotone transform of
  ``s'``, so the ranking is the paper's; lower = more suspect.
- ``issues`` = ``s'(i) < 0``: after refinement the row's weighted neighbourhood
  disagrees with its given label (rule and measurements in docs/nrg.md).
- ``suggested``: for flagged rows, the class with the largest sum of kept edge
  weights ``k_ij^t`` over the row's neighbours (itself excluded); rows with no
  neighbour edge, and unflagged rows, keep their given label.
- ``extra``: ``outlier_score`` (float64, higher = more out-of-distribution) and
  ``is_outlier`` (bool): the ``outlier_rate`` share of rows with the highest
  outlier score (strictly above the ``1 - outlier_rate`` quantile).

Modes (``nrg_mode``): ``exact`` sums over all N rows, in row blocks x column tiles with BLAS
(float32), memory O(block x tile); ``knn`` restricts each row's sums to itself
plus its ``nrg_k`` nearest rows from a kNN index (a k-means inverted-file
index in numpy float32 by default, faiss HNSW on request); ``auto`` is
exact up to ``exact_max_n`` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from labelqa.data.model import LabelData
from labelqa.detectors import nrg_backends as be
from labelqa.detectors.base import Detector, DetectorResult
from labelqa.errors import LabelqaError

__all__ = ["NeuralRelationGraph", "prepare_embeddings", "embedding_scales", "DEFAULT_EXACT_MAX_N",
           "DEFAULT_K_NEIGHBORS"]

#: ``mode="auto"`` uses the exact graph up to this many rows (about a minute
#: on 2 cores at D = 512; see docs/nrg.md), the kNN graph above.
DEFAULT_EXACT_MAX_N = 60_000

#: Default neighbours per row in kNN mode (besides the row itself); see
#: docs/nrg.md for the measured agreement with exact mode.
DEFAULT_K_NEIGHBORS = 100

#: Added to the kernel sum in the outlier score, as in the formula.
OUTLIER_EPS = 1e-6



def _rows_text(rows: np.ndarray, ids: np.ndarray | None, limit: int = 5) -> str:
    """'rows 3, 17 (ids a, b)' for the first few 0-based row positions."""
    rows = np.asarray(rows)
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    text = f"row{'s' if rows.size > 1 else ''} {shown}{more}"
    if ids is not None and len(ids) > int(rows.max(initial=0)):
        id_vals = [ids[int(r)] for r in rows[:limit]]
        if any(str(v) != str(int(r)) for v, r in zip(id_vals, rows[:limit])):
            text += f" (id {', '.join(str(v) for v in id_vals)})"
    return text


_EMBEDDING_HINT = "embeddings must be an N x D array of finite numbers with no all-zero row"

#: Rows whose largest absolute value lies in this range are scaled on the fly
#: by :func:`embedding_scales` (their raw float32 inner products cannot
#: overflow or lose precision); others are normalised into a copy.
SCALE_RANGE = (1e-15, 1e15)


def _as_matrix(embeddings: Any, n_rows: int) -> np.ndarray:
    """The embeddings as a 2-D numeric array with ``n_rows`` rows and at least one column."""
    hint = _EMBEDDING_HINT
    try:
        arr = np.asarray(embeddings)
    except ValueError as exc:  # ragged nested sequences (numpy >= 1.24)
        raise LabelqaError(f"embeddings are ragged: rows have different lengths ({exc})", hint=hint) from exc
    if arr.dtype == object:
        lengths = [np.size(r) for r in arr] if arr.ndim == 1 else []
        if lengths and len(set(lengths)) > 1:
            first = next(i for i, ln in enumerate(lengths) if ln != lengths[0])
            raise LabelqaError(
                f"embeddings are ragged: row 0 has {lengths[0]} values but row {first} has {lengths[first]}",
                hint=hint,
            )
        try:
            arr = np.asarray(arr.tolist(), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise LabelqaError(f"embeddings are not numeric ({exc})", hint=hint) from exc
    if arr.ndim != 2:
        raise LabelqaError(f"embeddings must be 2-D (N x D), got shape {arr.shape}", hint=hint)
    if arr.dtype.kind not in "fiub":
        raise LabelqaError(f"embeddings must be numbers, got dtype {arr.dtype}", hint=hint)
    if arr.shape[0] != n_rows:
        raise LabelqaError(
            f"embeddings have {arr.shape[0]} rows but the labels have {n_rows}",
            hint="embeddings must have one row per labelled example, in the same order",
        )
    if arr.shape[1] == 0:
        raise LabelqaError("embeddings have 0 dimensions", hint=hint)
    return arr


def _row_norms(arr: np.ndarray, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest absolute value and the L2 norm (float64), in blocks of ~16 MB.

    The norm is computed after dividing the row by its largest absolute value,
    so huge values do not overflow. Raises on NaN/inf and all-zero rows.
    """
    from labelqa.parallel import for_row_blocks  # noqa: PLC0415

    n, d = arr.shape
    step = max(1, (1 << 18) // d)
    peak = np.empty(n, dtype=np.float64)
    norm = np.empty(n, dtype=np.float64)

    def block(r0: int, r1: int) -> None:  # row blocks of ~2 MB of float64, on threads
        x = np.array(arr[r0:r1], dtype=np.float64)  # a copy: scaled in place below
        p = np.abs(x).max(axis=1)
        peak[r0:r1] = p
        safe = np.where(np.isfinite(p) & (p > 0), p, 1.0)
        x /= safe[:, None]
        norm[r0:r1] = np.sqrt(np.einsum("ij,ij->i", x, x)) * safe

    for_row_blocks(block, n, step, elements=n * d)
    bad = np.flatnonzero(~np.isfinite(peak))
    if bad.size:
        raise LabelqaError(
            f"embeddings contain NaN or infinite values in {bad.size} row(s): {_rows_text(bad, ids)}",
            hint=_EMBEDDING_HINT,
        )
    zero = np.flatnonzero(peak == 0.0)
    if zero.size:
        raise LabelqaError(
            f"embeddings have {zero.size} all-zero row(s), which cannot be L2-normalised: {_rows_text(zero, ids)}",
            hint="drop those rows or give them a non-zero embedding",
        )
    return peak, norm


def prepare_embeddings(
    embeddings: Any, n_rows: int, ids: np.ndarray | None = None, *, block_rows: int = 65536
) -> np.ndarray:
    """Validate embeddings and return them L2-normalised as a new C-contiguous float32 matrix.

    Raises:
        LabelqaError: ragged or non-2-D input, non-numeric values, a row count
            other than ``n_rows``, no dimensions, non-finite values or all-zero
            rows (each naming the first offending rows, 0-based).
    """
    arr = _as_matrix(embeddings, n_rows)
    _peak, norm = _row_norms(arr, ids)
    out = np.empty(arr.shape, dtype=np.float32)
    step = max(1, min(block_rows, (2 << 20) // arr.shape[1]))
    for r0 in range(0, arr.shape[0], step):
        x = np.asarray(arr[r0 : r0 + step], dtype=np.float64)
        out[r0 : r0 + step] = x / norm[r0 : r0 + step, None]
    return out


def embedding_scales(
    embeddings: Any, n_rows: int, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated embeddings without a normalised copy where possible: ``(F, row_scale)``.

    For C-contiguous float32 input whose row maxima lie in :data:`SCALE_RANGE`
    (the usual case), ``F`` is the input itself (not copied, not modified) and
    ``row_scale`` the per-row 1 / L2 norm, so ``F * row_scale[:, None]`` is
    normalised (what :func:`labelqa.detectors.nrg_backends.knn_search` takes).
    Otherwise ``F`` is :func:`prepare_embeddings`' normalised copy and
    ``row_scale`` is ``None``. Same checks and errors as :func:`prepare_embeddings`.
    """
    arr = _as_matrix(embeddings, n_rows)
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        return prepare_embeddings(arr, n_rows, ids), None
    peak, norm = _row_norms(arr, ids)
    if peak.min() < SCALE_RANGE[0] or peak.max() > SCALE_RANGE[1]:
        return prepare_embeddings(arr, n_rows, ids), None
    return arr, (1.0 / norm).astype(np.float32)


@dataclass(kw_only=True)
class NeuralRelationGraph(Detector):
    """Neural Relation Graph label-noise and outlier detector.

    Args:
        nrg_kernel: ``"prob"`` (features x probabilities, the default) or
            ``"feature"`` (feature similarity only).
        nrg_power: Exponent t of the edge weights (4 for images/text, 8 for audio).
        nrg_edge_cutoff: Edges with kernel value ``<= nrg_edge_cutoff`` are dropped
            (before the power).
        nrg_lambda: lambda of the suspect set ``s / max|s| < -nrg_lambda``.
        nrg_mode: ``"exact"`` (all pairs), ``"knn"`` (k nearest neighbours) or
            ``"auto"`` (exact when N <= ``exact_max_n``).
        exact_max_n: Largest N for which ``auto`` picks exact mode.
        nrg_k: Neighbours per row in kNN mode, besides the row itself.
        block_size: Rows per block in exact mode (default 1024); each block is
            processed in column tiles of at most 32 MB.
        nrg_backend: Exact-mode engine: ``"numpy"``, ``"torch"`` (CPU, needs
            torch) or ``"auto"`` (torch when importable, else numpy).
        nrg_index: kNN index: ``"faiss"`` (HNSW, needs faiss-cpu), ``"sklearn"``
            (scikit-learn k-means inverted file searched with numpy BLAS),
            ``"brute"`` (exact neighbours, O(N^2)) or ``"auto"`` (sklearn:
            it was faster than faiss HNSW in the benchmark).
        n_probe: Cells searched per cell by the sklearn index (at most; also
            a budget of ``n_probe`` mean-sized cells of candidates).
        outlier_rate: Share of rows flagged ``is_outlier`` (highest outlier
            scores); 0 flags none.
        seed: Random seed of the approximate indexes.
    """

    name: ClassVar[str] = "nrg"
    needs_all_rows: ClassVar[str] = "the neighbour graph over all embeddings"

    nrg_kernel: str = "prob"
    nrg_power: float = 4.0
    nrg_edge_cutoff: float = 0.03
    nrg_lambda: float = 0.05
    nrg_mode: str = "auto"
    exact_max_n: int = DEFAULT_EXACT_MAX_N
    nrg_k: int = DEFAULT_K_NEIGHBORS
    block_size: int | None = None
    nrg_backend: str = "numpy"
    nrg_index: str = "auto"
    n_probe: int = 8
    outlier_rate: float = 0.01
    seed: int = 0

    # ------------------------------------------------------------------ validation
    def check_params(self) -> None:
        """The declared options checked as their flags are; then the internal knobs."""
        super().check_params()

        def bad(what: str, hint: str) -> LabelqaError:
            return LabelqaError(f"invalid NRG option: {what}", hint=hint)

        if self.block_size is not None and int(self.block_size) < 1:
            raise bad(f"block_size={self.block_size}", "use at least 1 (or leave unset)")
        if int(self.exact_max_n) < 0:
            raise bad(f"exact_max_n={self.exact_max_n}", "use a non-negative row count")
        if int(self.n_probe) < 1:
            raise bad(f"n_probe={self.n_probe}", "use at least 1")

    def _backend(self) -> str:
        if self.nrg_backend == "auto":
            return "torch" if be.torch_available() else "numpy"
        if self.nrg_backend == "torch":
            be.load_torch()  # clear error when missing
        return self.nrg_backend

    # ------------------------------------------------------------------ detect
    def detect(self, data: LabelData) -> DetectorResult:
        """Score every row of ``data`` (which must carry embeddings)."""
        self.check_params()
        if data.embeddings is None:
            raise LabelqaError(
                "the NRG detector needs feature embeddings, and the data has none",
                hint="pass --embeddings-col COLUMN (a list<float> column) or --embeddings FILE",
            )
        n, n_classes = data.n_rows, data.n_classes
        mode = self.nrg_mode
        if mode == "auto":
            mode = "exact" if n <= self.exact_max_n else "knn"
        if mode == "exact":
            F, row_scale = prepare_embeddings(data.embeddings, n, data.ids), None
        else:  # no normalised copy of a large matrix: the index scales the rows it reads
            F, row_scale = embedding_scales(data.embeddings, n, data.ids)
        labels = np.asarray(data.labels, dtype=np.int64)
        P = None
        if self.nrg_kernel == "prob":
            P = np.ascontiguousarray(data.pred_probs, dtype=np.float32)
        power, cutoff = float(self.nrg_power), float(self.nrg_edge_cutoff)
        summary: dict[str, Any] = {"mode": mode, "n_rows": n}

        if mode == "exact":
            H = np.zeros((n, n_classes), dtype=np.float32)
            H[np.arange(n), labels] = 1.0
            backend = self._backend()
            summary["backend"] = backend
            csum, ksum = be.exact_sums(
                F, P, H, power=power, cutoff=cutoff, block_size=self.block_size, backend=backend
            )
            self_w = self._self_weight(F, P, power, cutoff)
        else:
            nbrs, sims, index_used = be.knn_search(
                F, int(self.nrg_k), index=self.nrg_index, n_probe=int(self.n_probe), seed=self.seed,
                block_size=self.block_size, row_scale=row_scale,
            )
            kern = be.knn_kernel(nbrs, sims, P, cutoff=cutoff, in_place=True)
            del sims
            csum, ksum = be.knn_sums(nbrs, kern, labels, n_classes, power=power)
            self_w = kern[:, 0].astype(np.float64) ** power
            summary["index"] = index_used
            summary["k_neighbors"] = int(nbrs.shape[1] - 1)

        rows = np.arange(n)
        s = 2.0 * csum[rows, labels] - csum.sum(axis=1)
        max_abs = float(np.abs(s).max()) if n else 0.0
        suspect = (s / max_abs < -self.nrg_lambda) if max_abs > 0 else np.zeros(n, dtype=bool)
        s_ref = s.copy()
        if suspect.any():
            cols = np.flatnonzero(suspect)
            if mode == "exact":
                c_s, _ = be.exact_sums(
                    F, P, H, cols, power=power, cutoff=cutoff, block_size=self.block_size,
                    backend=summary["backend"], want_kernel_sums=False,
                )
            else:
                c_s, _ = be.knn_sums(nbrs, kern, labels, n_classes, power=power, col_mask=suspect)
            s_ref = s - 2.0 * (2.0 * c_s[rows, labels] - c_s.sum(axis=1))

        max_ref = float(np.abs(s_ref).max()) if n else 0.0
        scores = s_ref / max_ref if max_ref > 0 else np.zeros(n)
        issues = s_ref < 0

        # Suggested label: heaviest class among the neighbours (self excluded).
        nb = csum.copy()
        nb[rows, labels] -= self_w
        np.maximum(nb, 0.0, out=nb)
        best = np.argmax(nb, axis=1)
        has_nb = nb[rows, best] > 0
        suggested = np.where(issues & has_nb, best, labels).astype(np.int64)
        suggested_conf = np.asarray(data.pred_probs, dtype=np.float64)[rows, suggested]

        outlier = 1.0 / (ksum + OUTLIER_EPS)
        if self.outlier_rate > 0 and n:
            threshold = float(np.quantile(outlier, 1.0 - self.outlier_rate))
            is_outlier = outlier > threshold
        else:
            threshold = float("inf")
            is_outlier = np.zeros(n, dtype=bool)

        summary.update(
            {
                "kernel": self.nrg_kernel,
                "power": power,
                "edge_cutoff": cutoff,
                "lam": float(self.nrg_lambda),
                "max_abs_s": max_abs,
                "max_abs_s_refined": max_ref,
                "n_suspect": int(suspect.sum()),
                "n_issues": int(issues.sum()),
                "n_outliers": int(is_outlier.sum()),
                "outlier_rate": float(self.outlier_rate),
                "outlier_threshold": threshold,
                "issue_rule": "s'(i) < 0",
                "outlier_rule": "outlier_score > quantile(outlier_score, 1 - outlier_rate)",
            }
        )
        return DetectorResult(
            name=self.name,
            scores=scores,
            issues=issues,
            suggested=suggested,
            suggested_confidence=suggested_conf,
            summary=summary,
            params=self.get_params(),
            extra={
                "outlier_score": outlier,
                "is_outlier": is_outlier,
            },
        )

    @staticmethod
    def _self_weight(F: np.ndarray, P: np.ndarray | None, power: float, cutoff: float) -> np.ndarray:
        """w_ii = k_ii^t (0 when k_ii <= cutoff), computed like the engines do."""
        k = np.maximum(np.einsum("ij,ij->i", F, F), 0.0).astype(np.float32)
        if P is not None:
            k = k * np.einsum("ij,ij->i", P, P).astype(np.float32)
        k = np.where(k > np.float32(cutoff), k, np.float32(0.0)).astype(np.float64)
        return k**power
