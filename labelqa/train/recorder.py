"""Record per-epoch logits from your own training loop, for AUM: :class:`AUMRecorder`.

The recorder takes numpy arrays, torch tensors (any device) or sequences;
torch is never imported (tensors are recognised by duck typing, see
:func:`labelqa.data.dynamics.as_numpy`). It writes a dynamics folder with
:class:`labelqa.train.dynamics_writer.DynamicsWriter`, which
``labelqa scan --logits-by-epoch`` reads.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.data.dynamics import MANIFEST, as_numpy, check_finite, check_labels
from labelqa.detectors.aum import block_margins
from labelqa.errors import LabelqaError
from labelqa.train.dynamics_writer import DynamicsWriter

__all__ = ["AUMRecorder"]


class AUMRecorder:
    """Record per-epoch logits from your own training loop, for AUM.

    Framework-light: logits, labels and ids may be numpy arrays, torch tensors
    (on any device; detached and copied to CPU) or Python sequences. torch is
    never imported. Memory: one epoch of logits (``N x K`` float32) plus a
    temporary file holding the finished epochs.

    Call :meth:`update` for every batch (in any order; a batch of one row may
    pass logits of shape ``(K,)`` and scalar label and id) and :meth:`end_epoch`
    after each epoch (an epoch also ends by itself when a complete epoch is
    followed by a batch with an id seen again). Every row must be recorded
    exactly once per epoch. Then :meth:`save` writes a dynamics folder that
    ``labelqa scan --logits-by-epoch`` reads.

    Example::

        rec = AUMRecorder(n_samples=len(train_set))
        for epoch in range(epochs):
            for x, y, idx in loader:          # idx = row positions in the data file
                logits = model(x)
                ...
                rec.update(logits, y, idx)
            rec.end_epoch()
        rec.save("dynamics/")

    Args:
        n_samples: N, the number of rows; sample ids are row positions
            ``0..N-1`` in the data file that will be scanned.
        threshold_class: With threshold samples, the fake class's output
            index (must be the last output, K); rows trained with that label
            are saved as threshold samples.
        dtype: Storage dtype of the logits (float32).
    """

    def __init__(self, n_samples: int, *, threshold_class: int | None = None, dtype: Any = np.float32) -> None:
        if int(n_samples) < 1:
            raise LabelqaError(f"n_samples must be at least 1, got {n_samples}")
        self.n_samples = int(n_samples)
        self.threshold_class = threshold_class
        self.dtype = np.dtype(dtype)
        self.n_outputs: int | None = None
        self.labels = np.full(self.n_samples, -1, dtype=np.int64)
        self._epoch: np.ndarray | None = None
        self._seen = np.zeros(self.n_samples, dtype=bool)
        self._margin_sum = np.zeros(self.n_samples, dtype=np.float64)
        self._spill: Any = None
        self.epochs = 0

    def update(self, logits: Any, labels: Any, sample_ids: Any) -> np.ndarray:
        """Record one batch; returns the batch's margins.

        Args:
            logits: Raw logits, shape ``(B, K)`` (or ``(K,)`` for one row).
            labels: Labels the model was trained with, shape ``(B,)``.
            sample_ids: Row positions ``0..N-1``, shape ``(B,)``.
        """
        z = np.asarray(as_numpy(logits))
        if z.ndim == 1:
            z = z.reshape(1, -1)
        ids = np.asarray(as_numpy(sample_ids)).reshape(-1)
        y = np.asarray(as_numpy(labels)).reshape(-1)
        if z.ndim != 2:
            raise LabelqaError(f"logits must have shape (batch, K), got {z.shape}")
        b, k = z.shape
        if ids.shape != (b,) or y.shape != (b,):
            raise LabelqaError(f"batch of {b} logits rows but {y.shape[0]} labels and {ids.shape[0]} sample ids")
        if self.n_outputs is None:
            if k < 2:
                raise LabelqaError(f"logits need at least 2 outputs, got {k}")
            if self.threshold_class is not None and self.threshold_class != k - 1:
                raise LabelqaError(f"threshold_class {self.threshold_class} must be the last output ({k - 1})")
            self.n_outputs = k
            self._epoch = np.zeros((self.n_samples, k), dtype=self.dtype)
        elif k != self.n_outputs:
            raise LabelqaError(f"logits have {k} outputs, earlier batches had {self.n_outputs}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise LabelqaError(f"sample ids must be integer row positions, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        if b and (ids.min() < 0 or ids.max() >= self.n_samples):
            raise LabelqaError(f"sample id {int(ids[(ids < 0) | (ids >= self.n_samples)][0])} is outside "
                               f"0..{self.n_samples - 1}")
        if len(np.unique(ids)) != b:
            raise LabelqaError("a batch repeats a sample id", "record each row once per epoch")
        y = check_labels(y, b, k, "labels")
        z64 = z.astype(np.float64)
        check_finite(z64, "recorded logits")
        if self._seen[ids].any():
            if self._seen.all():
                self.end_epoch()
            else:
                dup = int(ids[self._seen[ids]][0])
                raise LabelqaError(f"sample id {dup} recorded twice in epoch {self.epochs} before every row was "
                                   f"seen ({int(self._seen.sum())} of {self.n_samples})",
                                   "call end_epoch() after each epoch; record every row exactly once per epoch")
        known = self.labels[ids]
        changed = (known >= 0) & (known != y)
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            raise LabelqaError(f"sample {int(ids[i])} was recorded with label {int(known[i])}, now {int(y[i])}",
                               "labels must stay the same across epochs")
        self.labels[ids] = y
        assert self._epoch is not None
        self._epoch[ids] = z
        self._seen[ids] = True
        return block_margins(z64, y)

    def end_epoch(self) -> None:
        """Close the current epoch (every row must have been recorded)."""
        if self._epoch is None or not self._seen.any():
            raise LabelqaError("end_epoch() called with nothing recorded in this epoch")
        if not self._seen.all():
            missing = int(np.flatnonzero(~self._seen)[0])
            raise LabelqaError(f"epoch {self.epochs} is incomplete: {int((~self._seen).sum())} of "
                               f"{self.n_samples} rows not recorded (first: row {missing})",
                               "record every row once per epoch (an eval pass over the whole data works)")
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="labelqa-aum-")
        self._spill.write(np.ascontiguousarray(self._epoch).tobytes())
        self._margin_sum += block_margins(self._epoch.astype(np.float64), self.labels)
        self._seen[:] = False
        self.epochs += 1

    def _close_pending(self) -> None:
        if self._seen.any():
            self.end_epoch()

    def aum(self) -> np.ndarray:
        """AUM of every row over the finished epochs (a complete pending epoch is closed first)."""
        self._close_pending()
        if self.epochs == 0:
            raise LabelqaError("no epoch recorded yet")
        return self._margin_sum / self.epochs

    def save(self, path: str | os.PathLike[str], *, classes: Sequence[Any] | None = None,
             run: int | None = None) -> Path:
        """Write the recorded epochs as a labelqa dynamics folder.

        Args:
            path: Output folder.
            classes: Class values in output order (checked by ``scan``).
            run: ``None`` writes a new single-run folder (replacing ``path``);
                an index ``i`` adds or replaces run ``run{i}`` of an existing
                folder, e.g. for the two runs with disjoint threshold samples.
        """
        self._close_pending()
        if self.epochs == 0 or self.n_outputs is None:
            raise LabelqaError("nothing to save: no epoch recorded")
        n_classes = self.n_outputs - 1 if self.threshold_class is not None else self.n_outputs
        threshold = self.labels == self.threshold_class if self.threshold_class is not None else None
        keep: list[dict[str, Any]] = []
        path = Path(path)
        name = "run0" if run is None else f"run{int(run)}"
        if run is not None and (path / MANIFEST).is_file():
            old = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            if old.get("n_rows") != self.n_samples or old.get("n_classes") != n_classes:
                raise LabelqaError(f"{path} holds runs for {old.get('n_rows')} rows x {old.get('n_classes')} "
                                   f"classes, this recorder has {self.n_samples} x {n_classes}")
            if classes is None:
                classes = old.get("classes")
            keep = [r for r in old.get("runs", []) if r.get("name") != name]
        with DynamicsWriter(path, n_rows=self.n_samples, n_classes=n_classes, classes=classes,
                            producer={"by": "labelqa.train.recorder.AUMRecorder"}, keep_runs=keep) as w:
            writer = w.add_run(self.epochs, self.n_outputs, threshold=threshold, labels=self.labels, name=name)
            self._spill.seek(0)
            epoch_bytes = self.n_samples * self.n_outputs * self.dtype.itemsize
            for _ in range(self.epochs):
                chunk = self._spill.read(epoch_bytes)
                writer.write_epoch(np.frombuffer(chunk, dtype=self.dtype).reshape(self.n_samples, self.n_outputs))
            self._spill.seek(0, os.SEEK_END)
        return path
