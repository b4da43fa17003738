"""A small torch classifier that records training dynamics for AUM.

A linear model or a one-hidden-layer MLP on standardized features, trained on
CPU with SGD (momentum, weight decay, constant learning rate, so every epoch
is "before the first learning-rate drop" as AUM wants) on minibatches. After
every epoch an evaluation pass (no gradients) records the logits of ALL rows.

Deterministic: seeded weights and batch order, ``torch.use_deterministic_algorithms``
and a fixed number of threads; the same inputs, seed and ``threads`` give the
same logits. torch is imported only when these functions run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelqa.errors import LabelqaError

#: ``progress(label, done, total)``: called after every epoch / fold.
StepProgress = Callable[[str, int, int], None]

TORCH_HINT = ("pip install 'labelqa[torch]', or the CPU build alone: pip install torch==2.13.0 --index-url "
              "https://download.pytorch.org/whl/cpu (a plain index resolves that pin to the multi-GB CUDA build)")


def require_torch() -> Any:
    """Import torch, or raise the user-facing error saying what to install."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LabelqaError("labelqa train needs torch for AUM training dynamics and --model torch", TORCH_HINT) from exc
    return torch


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the small model (defaults suit embeddings of 10-1000 dims).

    Attributes:
        epochs: Training epochs; logits are recorded after each.
        hidden: Hidden units of the MLP; 0 = linear model.
        batch_size: Minibatch size.
        lr: SGD learning rate (constant).
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        seed: Base seed (runs and folds derive their own).
        threads: torch intra-op threads.
    """

    epochs: int = 30
    hidden: int = 128
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 1

    def validate(self) -> None:
        """Raise LabelqaError on out-of-range values."""
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.hidden >= 0, f"--hidden must be 0 (linear) or more, got {self.hidden}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.threads >= 1, f"--threads must be at least 1, got {self.threads}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise LabelqaError(msg)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, for manifests."""
        return asdict(self)


def standardize(features: np.ndarray) -> np.ndarray:
    """Column z-scores as float32 (constant columns become 0)."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32)


@contextlib.contextmanager
def torch_settings(threads: int) -> Iterator[Any]:
    """Deterministic torch for the duration of the block; previous settings restored."""
    torch = require_torch()
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        yield torch
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint32)[0])


def build_model(torch: Any, n_features: int, n_outputs: int, hidden: int) -> Any:
    """Linear (hidden=0) or ``Linear -> ReLU -> Linear`` MLP."""
    nn = torch.nn
    if hidden == 0:
        return nn.Linear(n_features, n_outputs)
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))


def _predict(torch: Any, model: Any, x: Any, chunk: int = 8192) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for a in range(0, x.shape[0], chunk):
            outs.append(model(x[a:a + chunk]))
    model.train()
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outs).numpy()


def fit(
    features: np.ndarray,
    targets: np.ndarray,
    n_outputs: int,
    config: TrainConfig,
    *,
    seed_parts: tuple[int, ...] = (0,),
    on_epoch: Callable[[int, np.ndarray], None] | None = None,
    eval_features: np.ndarray | None = None,
) -> tuple[Any, Any]:
    """Train the model; after each epoch pass the logits of ``eval_features`` to ``on_epoch``.

    Args:
        features: Standardized float32 features ``(N, D)``.
        targets: Int targets ``0..n_outputs-1``, shape ``(N,)``.
        n_outputs: Number of outputs.
        config: Hyperparameters.
        seed_parts: Extra seed material (run or fold index).
        on_epoch: ``on_epoch(epoch, logits)`` after every epoch, logits of
            ``eval_features`` (default: the training features), float32.
        eval_features: Rows to record logits for.

    Returns:
        ``(torch, model)``; call inside :func:`torch_settings`.
    """
    torch = require_torch()
    seed = _derive_seed(config.seed, *seed_parts)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    x_eval = x if eval_features is None else torch.from_numpy(np.ascontiguousarray(eval_features, dtype=np.float32))
    model = build_model(torch, x.shape[1], n_outputs, config.hidden)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        for a in range(0, n, config.batch_size):
            idx = order[a:a + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch, _predict(torch, model, x_eval))
    return torch, model


def train_dynamics(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    out: str | Path,
    *,
    config: TrainConfig = TrainConfig(),
    runs: int = 2,
    classes: list[Any] | None = None,
    progress: StepProgress | None = None,
    producer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``runs`` models with disjoint threshold samples and write their dynamics to ``out``.

    Run ``r`` moves its threshold rows (see
    :func:`labelqa.train.threshold.assign_threshold_samples`) to the fake class
    K, trains a K+1-output model and records the logits of every row after
    every epoch into ``out/run{r}/logits.npy`` (written epoch by epoch), with
    ``threshold.npy`` and ``labels.npy``; ``out/dynamics.json`` is the manifest.
    ``out`` is replaced atomically.

    Args:
        features: ``(N, D)`` numeric features (standardized here).
        labels: Given labels, int codes ``0..K-1``.
        n_classes: K.
        out: Output folder.
        config: Hyperparameters.
        runs: Number of runs (disjoint threshold sets).
        classes: Class values in output order, stored in the manifest.
        progress: ``progress("run 1/2", epoch_done, epochs)``.
        producer: Extra provenance for the manifest.

    Returns:
        Per-run figures: training accuracy on the ordinary rows at the last
        epoch, number of threshold samples.
    """
    from labelqa.train.dynamics_writer import DynamicsWriter
    from labelqa.train.threshold import assign_threshold_samples, assigned_labels

    config.validate()
    x = standardize(features)
    y = np.asarray(labels, dtype=np.int64)
    n = x.shape[0]
    marks = assign_threshold_samples(y, n_classes, runs, config.seed)
    info: dict[str, Any] = {"runs": []}
    prov = {"by": "labelqa train", "model": "linear" if config.hidden == 0 else "mlp", **config.as_dict(),
            "n_features": int(x.shape[1]), **(producer or {})}
    with torch_settings(config.threads), DynamicsWriter(out, n_rows=n, n_classes=n_classes, classes=classes,
                                                        producer=prov) as writer:
        for r in range(runs):
            assigned = assigned_labels(y, marks[r], n_classes)
            run_writer = writer.add_run(config.epochs, n_classes + 1, threshold=marks[r], labels=assigned)
            last: dict[str, np.ndarray] = {}

            def on_epoch(epoch: int, logits: np.ndarray, r: int = r) -> None:
                run_writer.write_epoch(logits)
                last["logits"] = logits
                if progress:
                    progress(f"run {r + 1}/{runs}", epoch + 1, config.epochs)

            fit(x, assigned, n_classes + 1, config, seed_parts=(1, r), on_epoch=on_epoch)
            ordinary = ~marks[r]
            acc = float(np.mean(np.argmax(last["logits"], axis=1)[ordinary] == y[ordinary])) if ordinary.any() else 0.0
            info["runs"].append({"n_threshold": int(marks[r].sum()), "train_accuracy_ordinary": acc})
    return info


def fit_predict_proba(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, config: TrainConfig,
    fold: int = 0,
) -> np.ndarray:
    """Train a K-output model on one fold and return softmax probabilities of ``x_test``."""
    with torch_settings(config.threads):
        torch, model = fit(x_train, y_train, n_classes, config, seed_parts=(2, fold))
        logits = torch.from_numpy(_predict(torch, model, torch.from_numpy(np.ascontiguousarray(x_test))))
        return torch.softmax(logits.double(), dim=1).numpy()
