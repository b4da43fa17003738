"""Several models through the pipeline: the default combination, its count floor and the in-sample guard.

The count rule (docs/multimodel.md): confident learning's default rule flags at
least ``T`` of the model with the lowest log loss on the given labels among the
models that carry weight. Checked by hand on a toy, as a property on random
data, through ``from_arrays``/``load``/``labelqa scan``, and on CIFAR-10N (read
from ``../shared``, skipped when absent) against issue 14's bar.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from labelqa.data import LabelData, load
from labelqa.detectors.confident import (
    NUM_ISSUES_FLOOR_META,
    ConfidentLearning,
    find_label_issues,
    plus_num_issues,
)
from labelqa.models import DEFAULT_COMBINE, in_sample_check, log_linear_pool, num_issues_floor
from tests.conftest import SHARED_DATA

CIFAR_DIR = SHARED_DATA / "cifar10n"
CIFAR_MODELS = ("resnet18", "resnet50d", "swin_base_patch4_window7_224")
CIFAR = all((CIFAR_DIR / f"cifar10n_{s}_{m}.parquet").is_file() for s in ("aggre", "worst") for m in CIFAR_MODELS)
CLASSES = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])


def _with_floor(data: LabelData, floor: int) -> LabelData:
    return dataclasses.replace(data, meta={**data.meta, NUM_ISSUES_FLOOR_META: floor})


def _honest_models(seed: int = 0, n: int = 3000, k: int = 4, noise: float = 0.15):
    """Noisy labels (known truth) and two out-of-sample-like models of different strength."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    labels = np.where(rng.random(n) < noise, (true + rng.integers(1, k, n)) % k, true)
    mats = []
    for strength in (4.0, 2.0):
        alpha = np.full((n, k), 0.7)
        alpha[np.arange(n), true] += strength
        p = rng.gamma(alpha)
        mats.append(p / p.sum(axis=1, keepdims=True))
    return labels, true, mats


# --------------------------------------------------------------------------- the rule by hand
def test_num_issues_floor_by_hand():
    counts, losses = [120, 90, 150], [0.5, 0.3, 0.9]
    assert num_issues_floor(counts, losses) == 90  # the best fit to the labels, not the largest count
    assert num_issues_floor(counts, losses, weights=[1.0, 0.0, 2.0]) == 120  # no weight: passed over
    assert num_issues_floor(counts, losses, suspect=[False, True, False]) == 120  # in-sample suspect: passed over
    assert num_issues_floor(counts, losses, suspect=[True, True, True]) == 90  # all suspects: none set apart
    assert num_issues_floor(counts, losses, weights=[0, 0, 0]) == 0


def test_the_floor_adds_the_lowest_self_confidences_among_the_disputed_rows():
    """K = 2. Row 6 is a clear error (p = 0.05 for its label): T = 1 flags it alone. Rows 7-9 dispute their
    label uncertainly (0.45, 0.40, 0.30). A floor of 3 adds the two lowest, 9 and 8; a floor of 9 adds only
    disputed rows (7, 8, 9): a row whose prediction agrees with its label is never flagged."""
    p_given = np.array([0.95, 0.95, 0.9, 0.9, 0.9, 0.85, 0.05, 0.45, 0.40, 0.30, 0.9, 0.9])
    labels = np.array([0] * 10 + [1, 1])
    probs = np.stack([np.where(labels == 0, p_given, 1 - p_given), np.where(labels == 0, 1 - p_given, p_given)], 1)
    assert plus_num_issues(labels, probs) == 1
    data = LabelData.from_arrays(labels, probs)
    for floor, rows in [(0, [6]), (1, [6]), (2, [6, 9]), (3, [6, 8, 9]), (9, [6, 7, 8, 9])]:
        result = ConfidentLearning().detect(_with_floor(data, floor))
        assert np.flatnonzero(result.issues).tolist() == rows, floor
        assert result.summary["estimated_num_issues_weighted"] == max(floor, 1)
        assert result.summary.get("num_issues_floor") == (floor or None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(0, 400))
def test_a_floor_only_adds_disputed_rows_of_lowest_self_confidence(seed, floor):
    """Property: the floored flags contain the unfloored ones, number max(T, floor) while disputed rows last,
    and every added row is disputed with a self-confidence no higher than any disputed row left out."""
    labels, _, (probs, _) = _honest_models(seed=seed % 1000, n=600, noise=0.2)
    data = LabelData.from_arrays(labels, probs)
    own = ConfidentLearning().detect(data).issues
    floored = ConfidentLearning().detect(_with_floor(data, floor)).issues
    assert not (own & ~floored).any()
    self_conf = probs[np.arange(len(labels)), labels]
    disputed = self_conf < probs.max(axis=1) - 1e-6
    added = floored & ~own
    assert disputed[added].all()
    left = disputed & ~floored
    if added.any() and left.any():
        assert self_conf[added].max() <= self_conf[left].min()
    target = max(plus_num_issues(labels, probs), floor)
    assert floored.sum() >= target or not left.any()  # short of the target only when no disputed row is left


# --------------------------------------------------------------------------- through the pipeline
def test_from_arrays_default_combination_with_its_count_floor():
    labels, true, mats = _honest_models()
    data = LabelData.from_arrays(labels, mats, model_names=["strong", "weak"])
    assert data.meta["combine_models"] == DEFAULT_COMBINE == "log_linear"
    np.testing.assert_allclose(data.pred_probs, log_linear_pool(mats, data.meta["model_weights"]), rtol=1e-6)
    counts = [plus_num_issues(labels, m) for m in mats]
    losses = in_sample_check(mats, labels)["mean_log_loss"]
    assert data.meta["model_num_issues"] == counts
    assert data.meta[NUM_ISSUES_FLOOR_META] == counts[int(np.argmin(losses))] == counts[0]  # the strong model
    result = ConfidentLearning().detect(data)
    assert result.summary["estimated_num_issues_weighted"] >= counts[0]
    assert result.issues.sum() >= min(counts[0], result.summary["disputed_bounds"][1])
    # a fair combination: better than the weaker model alone on the injected errors
    is_error = labels != true
    weak = ConfidentLearning().detect(LabelData.from_arrays(labels, mats[1]))
    assert average_precision_score(is_error, -result.scores) > average_precision_score(is_error, -weak.scores)


def test_load_gives_what_from_arrays_gives(tmp_path):
    labels, _, mats = _honest_models(seed=1, n=1200)
    k = mats[0].shape[1]
    table = pa.table({"label": labels, **{name: pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), k)
                                          for name, m in zip(("a", "b"), mats)}})
    pq.write_table(table, tmp_path / "two.parquet")
    loaded = load(tmp_path / "two.parquet", pred_probs_col=["a", "b"])
    built = LabelData.from_arrays(labels, mats, classes=list(loaded.classes))
    for key in ("combine_models", "model_weights", "model_num_issues", NUM_ISSUES_FLOOR_META):
        assert loaded.meta[key] == built.meta[key], key
    np.testing.assert_array_equal(ConfidentLearning().detect(loaded).issues, ConfidentLearning().detect(built).issues)


def test_scan_cli_with_two_pred_probs_cols(tmp_path, capsys):
    from labelqa.cli.app import main

    labels, _, mats = _honest_models(seed=2, n=1500)
    k = mats[0].shape[1]
    table = pa.table({"label": labels, **{name: pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), k)
                                          for name, m in zip(("strong", "weak"), mats)}})
    pq.write_table(table, tmp_path / "two.parquet")
    code = main(["scan", str(tmp_path / "two.parquet"), "--pred-probs-col", "strong", "--pred-probs-col", "weak",
                 "-o", str(tmp_path / "out"), "--exit-zero"])
    capsys.readouterr()
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    models = summary["models"]
    assert models["combine_models"] == "log_linear" and models["in_sample_suspects"] == []
    counts = [plus_num_issues(labels, m) for m in mats]
    assert models["model_num_issues"] == counts and models["num_issues_floor"] == counts[0]
    assert summary["detectors"]["cl"]["summary"]["num_issues_floor"] == counts[0]
    issues = pq.read_table(tmp_path / "out" / "issues.parquet").to_pydict()
    flagged = sorted(i for i, bad in zip(issues["id"], issues["is_label_issue"]) if bad)
    expected = ConfidentLearning().detect(LabelData.from_arrays(labels, mats)).issues
    assert flagged == np.flatnonzero(expected).tolist()


def test_a_leaky_model_neither_takes_the_weight_nor_sets_the_count():
    """A model with 0.3 of its mass on the given label: a suspect, weight 0, and the floor is the honest
    model's count -- the default then flags what the honest model supports instead of hiding the errors.
    (The honest model alone is recalibrated by the fit, sharper here, and flags somewhat more than alone.)"""
    labels, true, (strong, weak) = _honest_models(seed=3)
    leaky = 0.7 * weak + 0.3 * np.eye(strong.shape[1])[labels]
    data = LabelData.from_arrays(labels, [leaky, strong], model_names=["leaky", "strong"])
    assert in_sample_check([leaky, strong], labels)["suspect"] == [True, False]
    assert data.meta["model_weights"][0] == 0.0 and data.meta["model_weights"][1] > 0
    assert data.meta[NUM_ISSUES_FLOOR_META] == plus_num_issues(labels, strong)
    is_error = labels != true
    flags = ConfidentLearning().detect(data).issues
    alone = ConfidentLearning().detect(LabelData.from_arrays(labels, strong)).issues
    f1 = lambda f: 2 * np.count_nonzero(f & is_error) / (f.sum() + is_error.sum())  # noqa: E731
    assert f1(flags) >= f1(alone) - 0.05 and flags.sum() >= alone.sum()
    # unguarded, the fit gave the leaky model all the weight: about the leaky model alone, which hides errors
    leaky_alone = ConfidentLearning().detect(LabelData.from_arrays(labels, leaky)).issues
    assert f1(flags) > f1(leaky_alone) + 0.2


# --------------------------------------------------------------------------- CIFAR-10N: issue 14's bar
def _read_cifar(noise: str, model: str):
    path = CIFAR_DIR / f"cifar10n_{noise}_{model}.parquet"
    table = pq.read_table(path, columns=["label", "pred_probs", "true_label"])
    col = table.column("pred_probs").combine_chunks()
    probs = col.flatten().to_numpy().reshape(len(col), -1)
    labels, truth = (np.searchsorted(CLASSES, table.column(c).to_numpy(zero_copy_only=False).astype(str))
                     for c in ("label", "true_label"))
    return labels.astype(np.int64), probs, labels != truth  # the truth only scores, it never reaches labelqa


def _f1_ap(data: LabelData, is_error: np.ndarray) -> tuple[float, float]:
    result = ConfidentLearning().detect(data)
    tp = np.count_nonzero(result.issues & is_error)
    return 2 * tp / (result.issues.sum() + is_error.sum()), average_precision_score(is_error, -result.scores)


@pytest.mark.skipif(not CIFAR, reason="CIFAR-10N files not available (../shared/data/cifar10n)")
@pytest.mark.parametrize("noise", ["aggre", "worst"])
def test_default_combination_beats_the_best_member_on_cifar10n(noise):
    """Issue 14 item 3: with 2 (resnet18 + swin) and 3 models, F1 and AP above the best member's; a resnet18
    leaking 0.3 of its mass onto the given label is named a suspect and the default does not collapse."""
    read = {m: _read_cifar(noise, m) for m in CIFAR_MODELS}
    labels, _, is_error = read["resnet18"]
    probs = {m: p for m, (_, p, _) in read.items()}
    alone = {m: _f1_ap(LabelData.from_arrays(labels, p), is_error) for m, p in probs.items()}
    for members in (("resnet18", "swin_base_patch4_window7_224"), CIFAR_MODELS):
        f1, ap = _f1_ap(LabelData.from_arrays(labels, [probs[m] for m in members]), is_error)
        assert f1 > max(alone[m][0] for m in members), members
        assert ap > max(alone[m][1] for m in members), members
    leaky = (0.7 * probs["resnet18"]).astype(np.float32)
    leaky[np.arange(len(labels)), labels] += 0.3
    assert not any(in_sample_check(list(probs.values()), labels)["suspect"])
    assert in_sample_check([leaky, probs["swin_base_patch4_window7_224"]], labels)["suspect"] == [True, False]
    stressed = LabelData.from_arrays(labels, [leaky, probs["swin_base_patch4_window7_224"]])
    f1, _ = _f1_ap(stressed, is_error)
    assert f1 >= alone["swin_base_patch4_window7_224"][0]
