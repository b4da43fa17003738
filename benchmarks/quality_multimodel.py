"""Do several models find label errors better than the best one alone? Measured on CIFAR-10N.

For each noise set in --data-dir (``cifar10n_<set>_<model>.parquet``, models
with the same row order; see the README there) it runs the scan's ``cl``
detector (``ConfidentLearning().detect``: ``--filter-by``, default the scan's
``prune_by_noise_rate_plus``, with the several-models count floor) and its
``self_confidence`` score on:

- each model alone (resnet18, swin, resnet50d);
- resnet18 + swin, and all three, combined into one matrix by every
  ``combine_models`` method of :mod:`labelqa.models` (built with
  ``LabelData.from_arrays([...])``, the path ``load()`` takes; the default is
  marked);
- for reference, per-model results combined afterwards (not a labelqa option):
  the union / intersection of the two models' flags, with the lower / mean
  self-confidence as score;
- a stress test: swin plus a *leaky* resnet18, i.e. one scored partly
  in-sample, simulated as ``(1 - LEAK) * resnet18 + LEAK * one_hot(given
  label)`` -- the mistake (a model that saw the rows in training) the
  combination should survive -- by every method, the default with all three,
  and the fitted methods with a leak of ``2 * LEAK``.

Each row names the fitted weights, the count floor and the number of
in-sample suspects. Against the ground truth ``label != true_label`` it
reports precision, recall and F1 of the flagged rows, and AUROC and average
precision of the score (sklearn.metrics; lower score = more suspect). It also
reports how often the models disagree (argmax) and the error rate on those
rows, which is what the ``models_disagree`` report column shows.

``true_label`` is split off right after reading: only ``label`` and
``pred_probs`` reach labelqa. The files are read in place and never copied.
When they are absent the script prints "skipped: data not found" and exits 0.

Usage:
    python benchmarks/quality_multimodel.py [--data-dir ../shared/data/cifar10n] [--markdown]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labelqa.data import LabelData  # noqa: E402
from labelqa.detectors.confident import PLUS_METHOD, ConfidentLearning  # noqa: E402
from labelqa.models import COMBINE_METHODS, DEFAULT_COMBINE, disagreement_summary, model_disagreement  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "cifar10n"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MODELS = {"resnet18": "resnet18", "swin": "swin_base_patch4_window7_224"}
NOISE_SETS = ("aggre", "worst")
#: Share of the leaky model's probability put on the given label in the stress test.
LEAK = 0.3


def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(given labels as strings, pred_probs N x K float32, truth) -- truth kept apart from the inputs."""
    table = pq.read_table(path, columns=["id", "label", "pred_probs", "true_label"])
    truth = table.column("true_label").to_numpy(zero_copy_only=False).astype(str)
    table = table.drop_columns(["true_label"])  # ground truth never reaches labelqa
    col = table.column("pred_probs").combine_chunks()
    probs = col.flatten().to_numpy().reshape(len(col), -1)
    given = table.column("label").to_numpy(zero_copy_only=False).astype(str)
    return given, probs, truth


def prf(flags: np.ndarray, is_error: np.ndarray) -> tuple[int, float, float, float]:
    tp = int(np.count_nonzero(flags & is_error))
    n_flag = int(np.count_nonzero(flags))
    n_err = int(np.count_nonzero(is_error))
    p = tp / n_flag if n_flag else 0.0
    r = tp / n_err if n_err else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return n_flag, p, r, f


def row(name: str, flags: np.ndarray, scores: np.ndarray, is_error: np.ndarray) -> dict:
    n_flag, p, r, f = prf(np.asarray(flags, dtype=bool), is_error)
    suspicion = -np.asarray(scores, dtype=np.float64)
    return {"name": name, "flagged": n_flag, "P": p, "R": r, "F1": f,
            "AUROC": roc_auc_score(is_error, suspicion), "AP": average_precision_score(is_error, suspicion)}


def cl(data: LabelData, filter_by: str) -> tuple[np.ndarray, np.ndarray]:
    """The flags and self-confidence scores of the scan's ``cl`` detector (with several models' count floor)."""
    result = ConfidentLearning(filter_by=filter_by, score_method="self_confidence").detect(data)
    return result.issues, result.scores


def label(prefix: str, method: str, data: LabelData) -> str:
    """A table row's name: the method, its fitted weights, the count floor and in-sample suspects."""
    name = f"{prefix}, {method}"
    notes = []
    if "model_weights" in data.meta:
        notes.append("weights " + ", ".join(f"{w:.2f}" for w in data.meta["model_weights"]))
    if data.meta.get("num_issues_floor"):
        notes.append(f"count floor {data.meta['num_issues_floor']}")
    suspects = disagreement_summary(data)["in_sample_suspects"]
    if suspects:
        notes.append(f"in-sample suspects: {len(suspects)}")
    if notes:
        name += " (" + "; ".join(notes) + ")"
    if method == DEFAULT_COMBINE:
        name += " [default]"
    return name


def evaluate(data_dir: Path, noise: str, filter_by: str) -> tuple[list[dict], dict] | None:
    run = functools.partial(cl, filter_by=filter_by)
    paths = {m: data_dir / f"cifar10n_{noise}_{stem}.parquet" for m, stem in MODELS.items()}
    if not all(p.is_file() for p in paths.values()):
        return None
    read_out = {m: read(p) for m, p in paths.items()}
    given, _, truth = read_out["resnet18"]
    if not np.array_equal(given, read_out["swin"][0]):
        raise SystemExit(f"{noise}: the two models' files do not hold the same labels in the same order")
    is_error = given != truth
    probs = [read_out[m][1] for m in MODELS]

    rows = []
    alone = {}
    for m, p in zip(MODELS, probs):
        data = LabelData.from_arrays(given, p, classes=CLASSES)
        alone[m] = run(data)
        rows.append(row(f"{m} alone", *alone[m], is_error))
    for method in COMBINE_METHODS:
        data = LabelData.from_arrays(given, probs, classes=CLASSES, combine_models=method,
                                     model_names=list(MODELS))
        rows.append(row(label("both", method, data), *run(data), is_error))
    (f_a, s_a), (f_b, s_b) = alone.values()
    rows.append(row("ref: either model flags (union; min score)", f_a | f_b, np.minimum(s_a, s_b), is_error))
    rows.append(row("ref: both models flag (intersection; mean score)", f_a & f_b, (s_a + s_b) / 2, is_error))

    third = data_dir / f"cifar10n_{noise}_resnet50d.parquet"
    if third.is_file():  # a third model: resnet50d, and all three combined
        given3, probs3, _ = read(third)
        if not np.array_equal(given, given3):
            raise SystemExit(f"{noise}: the resnet50d file does not hold the same labels in the same order")
        rows.append(row("resnet50d alone", *run(LabelData.from_arrays(given, probs3, classes=CLASSES)), is_error))
        for method in COMBINE_METHODS:
            d3 = LabelData.from_arrays(given, [probs[0], probs3, probs[1]], classes=CLASSES, combine_models=method)
            rows.append(row(label("all three", method, d3), *run(d3), is_error))

    codes = np.asarray(data.labels)
    leaky = ((1 - LEAK) * probs[0]).astype(np.float32)
    leaky[np.arange(len(codes)), codes] += LEAK
    stress = [row("leaky resnet18 alone", *run(LabelData.from_arrays(given, leaky, classes=CLASSES)), is_error)]
    for method in COMBINE_METHODS:
        d = LabelData.from_arrays(given, [leaky, probs[1]], classes=CLASSES, combine_models=method)
        stress.append(row(label("swin + leaky resnet18", method, d), *run(d), is_error))
    if third.is_file():
        d = LabelData.from_arrays(given, [leaky, probs3, probs[1]], classes=CLASSES)
        stress.append(row(label("all three, resnet18 leaky", DEFAULT_COMBINE, d), *run(d), is_error))
    fully = ((1 - 2 * LEAK) * probs[0]).astype(np.float32)  # a model leaking more
    fully[np.arange(len(codes)), codes] += 2 * LEAK
    for method in ("loss_weighted", "log_linear"):
        d = LabelData.from_arrays(given, [fully, probs[1]], classes=CLASSES, combine_models=method)
        stress.append(row(label(f"swin + resnet18 leaking {2 * LEAK:g}", method, d), *run(d), is_error))

    dis = model_disagreement(data.model_pred_probs)["models_disagree"]
    extra = {
        "n": len(given), "errors": int(is_error.sum()),
        "disagree": int(dis.sum()),
        "err_disagree": float(is_error[dis].mean()) if dis.any() else 0.0,
        "err_agree": float(is_error[~dis].mean()) if (~dis).any() else 0.0,
        "stress": stress,
    }
    return rows, extra


def print_table(noise: str, rows: list[dict], extra: dict) -> None:
    print(f"\n### {noise}: N={extra['n']}, wrong labels {extra['errors']} ({extra['errors'] / extra['n']:.2%})\n")
    print("| probabilities | flagged | precision | recall | F1 | AUROC | AP |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['flagged']} | {r['P']:.3f} | {r['R']:.3f} | {r['F1']:.3f} "
              f"| {r['AUROC']:.4f} | {r['AP']:.4f} |")
    print(f"\nModels disagree (argmax) on {extra['disagree']} rows ({extra['disagree'] / extra['n']:.2%}); "
          f"wrong labels: {extra['err_disagree']:.1%} of those rows vs {extra['err_agree']:.1%} where they agree.")
    print(f"\nStress test, a leaky model ({LEAK:g} of its probability on the given label):\n")
    print("| probabilities | flagged | precision | recall | F1 | AUROC | AP |")
    print("|---|---|---|---|---|---|---|")
    for r in extra["stress"]:
        print(f"| {r['name']} | {r['flagged']} | {r['P']:.3f} | {r['R']:.3f} | {r['F1']:.3f} "
              f"| {r['AUROC']:.4f} | {r['AP']:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--filter-by", default=PLUS_METHOD,
                        help=f"confident-learning flag rule (default {PLUS_METHOD}, the scan default; "
                             "prune_by_noise_rate is cleanlab's)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (the only format)")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"skipped: data not found ({args.data_dir})")
        return 0
    t0 = time.perf_counter()
    results = [(noise, evaluate(args.data_dir, noise, args.filter_by)) for noise in NOISE_SETS]
    if all(r is None for _, r in results):
        print(f"skipped: data not found ({args.data_dir})")
        return 0
    print(f"## Several models on CIFAR-10N: confident learning ({args.filter_by}) and self-confidence\n")
    print("Ground truth: label != true_label. Flags: precision/recall/F1; score: AUROC/AP (lower = more suspect).")
    for noise, res in results:
        if res is not None:
            print_table(noise, *res)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
