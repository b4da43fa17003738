"""In-memory inputs (labelqa.data.frames), pandas results and the notebook view, on a toy with injected noise."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import labelqa
from labelqa.errors import LabelqaError


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    n, k = 300, 3
    truth = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n) * 0.3
    probs[np.arange(n), truth] += 1
    probs /= probs.sum(1, keepdims=True)
    given = truth.copy()
    flip = rng.choice(n, 30, replace=False)
    given[flip] = (given[flip] + 1) % k
    names = np.array(["a<b>", "b", "c"])  # sorted order = column order; one name needs escaping
    return names, truth, given, probs


def test_every_input_shape_gives_the_same_flags(toy):
    names, _truth, given, probs = toy
    df = pd.DataFrame({"label": names[given], **{f"prob_{c}": probs[:, j] for j, c in enumerate(names)}})
    base = labelqa.scan(labels=names[given], pred_probs=probs).is_label_issue
    assert base.sum() > 0
    for data in (df, pa.Table.from_pandas(df), pa.Table.from_pandas(df).to_reader(),
                 {"label": names[given], "pred_probs": probs}):
        np.testing.assert_array_equal(labelqa.scan(data).is_label_issue, base)
    assert labelqa.load(df).classes == tuple(names)


def test_bad_object_is_one_line_error():
    with pytest.raises(LabelqaError, match="cannot read data of type"):
        labelqa.scan(object())
    with pytest.raises(LabelqaError, match="rows"):
        labelqa.scan(pd.DataFrame({"label": [0, 1]}), pred_probs=np.eye(3))


def test_results_as_pandas_and_cleaned(toy):
    names, truth, given, probs = toy
    df = pd.DataFrame({"label": names[given]}, index=[f"r{i}" for i in range(len(given))])
    result = labelqa.scan(df, pred_probs=probs)
    issues = result.issues_df()
    assert list(issues.index) == list(df.index)  # joinable on the index
    ranked = result.ranked_issues()
    assert ranked["is_label_issue"].all() and list(ranked["rank"]) == sorted(ranked["rank"])
    assert len(result.cleaned(df)) == len(df) - result.n_issues
    relabelled = result.cleaned(df, "relabel")
    assert (relabelled["label"].to_numpy() == names[truth]).mean() > (df["label"].to_numpy() == names[truth]).mean()
    assert df["label"].tolist() == names[given].tolist()  # input untouched
    html = result._repr_html_()
    assert "a&lt;b&gt;" in html and "a<b>" not in html
    assert repr(result).startswith("<ScanResult 300 rows") and "\n" not in repr(result)
