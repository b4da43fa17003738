"""The detector registry: names a user can ask for, what each needs, building one from option values."""

from __future__ import annotations

import pytest

from labelqa.detectors.aum import AreaUnderMargin
from labelqa.detectors.confident import ConfidentLearning
from labelqa.detectors.multilabel import MultilabelConfidentLearning
from labelqa.detectors.nrg import NeuralRelationGraph
from labelqa.detectors.registry import DETECTORS, available_detectors, make_detector
from labelqa.errors import LabelqaError


def test_names_and_what_they_need():
    assert list(DETECTORS) == ["cl", "aum", "nrg", "dup"]
    assert "--logits-by-epoch" in DETECTORS["aum"] and "--embeddings" in DETECTORS["nrg"]
    assert "--dup-cols" in DETECTORS["dup"]


@pytest.mark.parametrize("task, dynamics, embeddings, expected", [
    ("multiclass", False, False, ["cl"]),
    ("multiclass", True, False, ["cl", "aum"]),
    ("multiclass", False, True, ["cl", "nrg"]),
    ("multiclass", True, True, ["cl", "aum", "nrg"]),
    ("multilabel", True, True, ["cl"]),  # aum and nrg are multiclass only
])
def test_available_detectors_follow_the_inputs(task, dynamics, embeddings, expected):
    assert available_detectors(task, dynamics=dynamics, embeddings=embeddings) == expected


def test_cl_is_the_detector_of_the_task_with_its_params():
    det = make_detector("cl", "multiclass", {"filter_by": "both", "min_examples_per_class": 3})
    assert type(det) is ConfidentLearning
    assert (det.filter_by, det.min_examples_per_class) == ("both", 3)
    ml = make_detector("cl", "multilabel", {"aggregation": "softmin"})
    assert type(ml) is MultilabelConfidentLearning and ml.aggregation == "softmin" and ml.name == "mlcl"
    assert make_detector("cl", "multiclass").get_params() == ConfidentLearning().get_params()
    # every built detector can run batch by batch, or says what it needs all rows for
    assert det.needs_all_rows is None and ml.needs_all_rows is None
    assert isinstance(make_detector("aum", "multiclass"), AreaUnderMargin)
    nrg = make_detector("nrg", "multiclass")
    assert isinstance(nrg, NeuralRelationGraph) and nrg.needs_all_rows


@pytest.mark.parametrize("name, task, kwargs, match", [
    ("oracle", "multiclass", {}, "unknown detector 'oracle'"),
    ("aum", "multilabel", {}, "AUM is not defined for multi-label data"),
    ("aum", "multiclass", {"dynamics": False}, "needs training dynamics"),
    ("nrg", "multilabel", {}, "not defined for multi-label data"),
    ("nrg", "multiclass", {"embeddings": False}, "needs embeddings"),
    ("dup", "multilabel", {}, "defined for multiclass data"),
    ("dup", "multiclass", {"embeddings": False}, "needs columns to hash or embeddings"),
])
def test_detectors_the_data_cannot_feed_are_refused(name, task, kwargs, match):
    with pytest.raises(LabelqaError, match=match):
        make_detector(name, task, **kwargs)


def test_options_of_another_detector_are_refused_naming_the_valid_ones():
    with pytest.raises(LabelqaError, match="option aggregation does not apply to multiclass data") as err:
        make_detector("cl", "multiclass", {"aggregation": "softmin"})
    assert "ConfidentLearning takes" in err.value.hint and "filter_by" in err.value.hint
    with pytest.raises(LabelqaError, match="option score_method does not apply to multi-label data"):
        make_detector("cl", "multilabel", {"score_method": "normalized_margin"})
    with pytest.raises(LabelqaError, match="option filter_by does not apply to the nrg detector"):
        make_detector("nrg", "multiclass", {"filter_by": "both"})
