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


# --------------------------------------------------------------------------- Arrow streams, polars, datasets
def _frame(toy):
    names, _truth, given, probs = toy
    return pd.DataFrame({"label": names[given], **{f"prob_{c}": probs[:, j] for j, c in enumerate(names)}})


def test_record_batch_reader_of_many_batches(toy):
    names, _truth, given, probs = toy
    table = pa.Table.from_pandas(_frame(toy), preserve_index=False)
    base = labelqa.scan(labels=names[given], pred_probs=probs).is_label_issue
    reader = table.to_reader(max_chunksize=37)  # 300 rows in 9 batches
    np.testing.assert_array_equal(labelqa.scan(reader).is_label_issue, base)
    np.testing.assert_array_equal(labelqa.scan(table.to_batches(max_chunksize=300)[0]).is_label_issue, base)

    class Stream:  # any producer of the Arrow C stream interface (duckdb, nanoarrow...)
        def __arrow_c_stream__(self, requested_schema=None):
            return table.to_reader(max_chunksize=50).__arrow_c_stream__(requested_schema)

    np.testing.assert_array_equal(labelqa.scan(Stream()).is_label_issue, base)
    assert labelqa.load(table.to_reader()).n_rows == len(given)


def test_polars_in_and_out(toy):
    pl = pytest.importorskip("polars")
    names, _truth, given, probs = toy
    base = labelqa.scan(labels=names[given], pred_probs=probs)
    frame = pl.from_pandas(_frame(toy))
    result = labelqa.scan(frame)
    np.testing.assert_array_equal(result.is_label_issue, base.is_label_issue)
    with_list = pl.DataFrame({"label": names[given], "pred_probs": probs})  # a 2-D column: polars Array
    np.testing.assert_array_equal(labelqa.scan(with_list).is_label_issue, base.is_label_issue)
    cleaned = labelqa.fix(frame)
    assert isinstance(cleaned, pl.DataFrame) and cleaned.height == len(given)
    relabelled = cleaned["fix_action"].to_numpy() == "relabel"
    np.testing.assert_array_equal(relabelled, base.is_label_issue)
    assert labelqa.load(frame).classes == tuple(names)


def test_datasets_in_and_out(toy, tmp_path):
    datasets = pytest.importorskip("datasets")
    names, _truth, given, probs = toy
    base = labelqa.scan(labels=names[given], pred_probs=probs).is_label_issue
    ds = datasets.Dataset.from_pandas(_frame(toy), preserve_index=False)
    np.testing.assert_array_equal(labelqa.scan(ds).is_label_issue, base)
    order = np.random.default_rng(1).permutation(len(given))
    shuffled = ds.select(order)  # an indices mapping over the same Arrow table
    np.testing.assert_array_equal(labelqa.scan(shuffled).issues_df()["given_label"].to_numpy(), names[given][order])
    ds.save_to_disk(str(tmp_path / "ds"))
    on_disk = datasets.load_from_disk(str(tmp_path / "ds"))  # memory-mapped Arrow
    np.testing.assert_array_equal(labelqa.scan(on_disk).is_label_issue, base)
    cleaned = labelqa.fix(on_disk, strategy="drop")
    assert isinstance(cleaned, datasets.Dataset) and cleaned.num_rows == len(given) - base.sum()
    assert list(tmp_path.iterdir()) == [tmp_path / "ds"]  # nothing else written


def test_like_input_round_trips(toy):
    from labelqa.data.frames import as_table, like_input

    df = _frame(toy).iloc[:5]
    table = as_table(df)
    back = like_input(df, table.append_column("extra", pa.array(range(5))), np.arange(5))
    assert list(back.columns) == [*df.columns, "extra"] and back.index.equals(df.index)
    probs = np.arange(10.0).reshape(5, 2)
    as_dict = like_input({"a": [1] * 5}, pa.table({"a": [1] * 5, "p": as_table({"p": probs}).column("p")}),
                         np.arange(5))
    np.testing.assert_array_equal(as_dict["p"], probs)
    assert like_input(table, table, np.arange(5)) is table
