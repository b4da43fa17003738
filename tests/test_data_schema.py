"""labelqa.data.schema: one resolution of columns, probability layout, task and classes, for load() and the source.

The agreement tests prove the in-memory loader and the streaming source now
answer "which classes, from where, which task, which probabilities" the same
way, and decode the same rows to the same arrays (or fail with the same
message), for hand-picked schemas and for small generated Parquet files.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelqa.data import load
from labelqa.data.schema import model_sources, resolve_schema, resolve_task
from labelqa.data.source import open_source
from labelqa.errors import LabelqaError

#: The meta keys both readers resolve, in the order summary.json shows them.
SHARED_META = ("input_format", "task", "label_format", "pred_probs_source", "pred_probs_columns", "classes_source",
               "labels_are_codes")

SCHEMA = pa.schema([("label", pa.string()), ("id", pa.int64()), ("pred_probs", pa.list_(pa.float32())),
                    ("embedding", pa.list_(pa.float32())), ("prob_a", pa.float64()), ("prob_b", pa.float64())])


# ------------------------------------------------------------------ resolution


def test_probability_layouts_columns_and_meta():
    s = resolve_schema("d.parquet", "parquet", SCHEMA, id_col="id", embeddings_col="embedding")
    assert (s.probs, s.columns, s.classes, s.task) == ("column", ["label", "id", "pred_probs", "embedding"], None,
                                                       "multiclass")
    assert list(s.meta().items()) == [("input_format", "parquet"), ("task", "multiclass"),
                                      ("pred_probs_source", "column pred_probs"), ("embeddings_source", "column embedding")]
    cols = resolve_schema("d.parquet", "parquet", SCHEMA.remove(2), classes=["b", "a"], classes_source="--classes")
    assert (cols.probs, cols.prob_cols, cols.columns) == ("columns", ("prob_b", "prob_a"), ["label", "prob_b", "prob_a"])
    assert cols.meta()["pred_probs_columns"] == ["prob_b", "prob_a"] and cols.classes_source == "--classes"
    named = resolve_schema("d.parquet", "parquet", SCHEMA.remove(2))
    assert (named.classes, named.classes_source) == (("a", "b"), "prob_* column names")
    npy = resolve_schema("d.parquet", "parquet", SCHEMA, pred_probs_file="p.npy", embeddings_file="e.npy",
                         embeddings_col="embedding")
    assert npy.columns == ["label"] and npy.meta()["pred_probs_source"] == "file p.npy"
    assert npy.meta()["embeddings_source"] == "file e.npy"
    models = resolve_schema("d.parquet", "parquet", SCHEMA, model_files=["m.npy"], model_cols=["pred_probs", "embedding"])
    assert (models.probs, models.prob_files, models.columns) == ("models", ("m.npy",),
                                                                ["label", "pred_probs", "embedding"])
    assert "pred_probs_source" not in models.meta()
    assert pickle.loads(pickle.dumps(s)) == s


def test_task_label_format_metadata_and_dynamics(tmp_path):
    lists = pa.schema([("tags", pa.list_(pa.string())), ("p", pa.list_(pa.float64())), ("logits", pa.list_(pa.float64()))])
    ml = resolve_schema("d.arrow", "arrow", lists.with_metadata({"labelqa.classes": '["x", "y"]'}), label_col="tags",
                        pred_probs_col="p", logits_by_epoch="logits", threshold_samples=str(tmp_path))
    assert (ml.task, ml.label_format, ml.label_sep) == ("multilabel", "list column", None)
    assert (ml.classes, ml.classes_source) == (("x", "y"), "schema metadata 'labelqa.classes'")
    assert ml.dynamics == (("--logits-by-epoch", ("column", "logits")), ("--threshold-samples", ("path", str(tmp_path))))
    assert ml.columns == ["tags", "p", "logits"]
    csv = resolve_schema("d.csv", "csv", SCHEMA.with_metadata({"labelqa.classes": '["x"]'}), label_sep="|")
    assert (csv.task, csv.label_sep, csv.label_format) == ("multilabel", "|", "delimited strings (separator '|')")
    assert csv.classes is None  # schema metadata is read from Parquet/Arrow only
    with pytest.raises(LabelqaError, match=r"--renormalize does not apply to multi-label data \(d\.arrow, column 'tags'"):
        resolve_schema("d.arrow", "arrow", lists, label_col="tags", pred_probs_col="p", renormalize=True)
    assert resolve_task("auto", None, pa.int64(), "w") == "multiclass"
    with pytest.raises(LabelqaError, match="but the task is multiclass"):
        resolve_task("multiclass", None, pa.large_list(pa.int64()), "w")


def test_errors_name_the_option_and_the_columns():
    with pytest.raises(LabelqaError, match=r"^d\.parquet: no column 'y' \(available columns: 'label', .*pass --label-col"):
        resolve_schema("d.parquet", "parquet", SCHEMA, label_col="y")
    with pytest.raises(LabelqaError, match=r"no column 'zz' .* -- pass --embeddings-col NAME"):
        resolve_schema("d.parquet", "parquet", SCHEMA, embeddings_col="zz")
    bare = pa.schema([("label", pa.int64())])
    with pytest.raises(LabelqaError, match=r"or pass --pred-probs probs\.npy \(an N x K \.npy file\)$"):
        resolve_schema("d.parquet", "parquet", bare)
    with pytest.raises(LabelqaError) as info:
        resolve_schema("d.parquet", "parquet", bare, files_hint=False)
    assert str(info.value).endswith("or --pred-probs-cols 'p_*' for per-class columns (prob_<class> ones are found "
                                    "without it)")
    assert "d.parquet has no feature columns (numbers, a list of numbers, or text) for labelqa train" in str(info.value)
    with pytest.raises(LabelqaError, match="probability column 'a' given more than once"):
        model_sources(["a", "b", "a"], None)
    assert model_sources("p", ["x.npy", "y.npy"]) == (["x.npy", "y.npy"], [])


# ------------------------------------------------------- loader == source


def _load_outcome(path, **opts):
    try:
        d = load(path, **opts)
    except LabelqaError as exc:
        return str(exc)
    meta = [(k, d.meta[k]) for k in d.meta if k in SHARED_META]
    return d.classes, meta, d.labels.tolist(), np.asarray(d.pred_probs).tolist(), str(d.pred_probs.dtype), d.ids.tolist()


def _source_outcome(path, **opts):
    try:
        src = open_source(path, **opts)
        batches = [src.decode(t, off) for off, t in src.tables(1 << 20)]
    except LabelqaError as exc:
        return str(exc)
    pickle.loads(pickle.dumps(src))
    meta = [(k, src.meta[k]) for k in src.meta if k in SHARED_META]
    labels = np.concatenate([b.labels for b in batches]).tolist()
    probs = np.concatenate([b.probs for b in batches])
    return (src.classes, meta, labels, probs.tolist(), str(probs.dtype),
            np.concatenate([b.ids for b in batches]).tolist())


NAMES = np.array(["ant", "bee", "cat"])
P3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]], dtype=np.float32)
LIST = pa.array(list(P3), pa.list_(pa.float32()))
CASES = {
    "int codes": ({"label": [0, 1, 2, 1], "pred_probs": LIST}, None, {}),
    "ints by value": ({"label": [10, 30, 20, 10], "pred_probs": LIST}, None, {}),
    "string labels, sorted": ({"label": list(NAMES[[0, 1, 2, 1]]), "pred_probs": LIST}, None, {}),
    "string labels, two of three": ({"label": ["ant", "bee", "bee", "ant"], "pred_probs": LIST}, None, {}),
    "metadata classes": ({"label": list(NAMES[[2, 0, 1, 0]]), "pred_probs": LIST}, ["cat", "ant", "bee"], {}),
    "metadata classes, int labels": ({"label": [7, 5, 3, 5], "pred_probs": LIST}, ["5", "7", "3"], {}),
    "duplicate classes once typed": ({"label": [1, 2, 1, 1], "pred_probs": LIST}, ["1", 1, 2], {}),
    "given classes, codes": ({"label": [0, 1, 2, 1], "pred_probs": LIST}, None, {"classes": "x,y,z"}),
    "given classes, wrong count": ({"label": [0, 1, 2, 1], "pred_probs": LIST}, None, {"classes": "x,y"}),
    "prob columns": ({"label": list(NAMES[[0, 1, 2, 1]]), **{f"prob_{c}": P3[:, j] for j, c in enumerate(NAMES)}},
                     None, {}),
    "prob columns reordered": ({"label": list(NAMES[[0, 1, 2, 1]]),
                                **{f"prob_{c}": P3[:, j] for j, c in enumerate(NAMES)}}, None,
                               {"classes": ["cat", "ant", "bee"]}),
    "prob columns do not match": ({"label": ["ant"] * 4, **{f"prob_{c}": P3[:, j] for j, c in enumerate(NAMES)}},
                                  None, {"classes": ["ant", "bee", "dog"]}),
    "ids and float64": ({"label": [0, 1, 2, 1], "key": ["a", "b", "c", "d"], "pred_probs": pa.array(list(P3.astype(float)))},
                        None, {"id_col": "key"}),
    "label sets": ({"label": [["ant"], [], ["bee", "cat"], ["cat"]], "pred_probs": LIST}, None, {}),
    "label sets, int codes": ({"label": pa.array([[0], [], [1, 2], [2]], pa.list_(pa.int16())), "pred_probs": LIST},
                              None, {}),
    "label sets, metadata": ({"label": [["ant"], [], ["bee"], ["cat"]], "pred_probs": LIST}, ["cat", "bee", "ant"], {}),
    "delimited label sets": ({"label": ["ant|bee", None, "cat", "bee"], "pred_probs": LIST}, None, {"label_sep": "|"}),
    "delimited integers": ({"label": ["0|2", "", "1", "2"], "pred_probs": LIST}, None, {"label_sep": "|"}),
    "multilabel renormalize": ({"label": [["ant"], [], ["bee"], ["cat"]], "pred_probs": LIST}, None,
                               {"renormalize": True}),
    "forced multiclass on lists": ({"label": [["ant"], [], ["bee"], ["cat"]], "pred_probs": LIST}, None,
                                   {"task": "multiclass"}),
    "forced multilabel on strings": ({"label": ["ant"] * 4, "pred_probs": LIST}, None, {"task": "multilabel"}),
    "no probabilities": ({"label": [0, 1, 2, 1], "scores": LIST}, None, {}),
    "missing probability column": ({"label": [0, 1, 2, 1], "pred_probs": LIST}, None, {"pred_probs_col": "p"}),
    "one probability": ({"label": [0, 0, 0, 0], "pred_probs": pa.array([[1.0]] * 4)}, None, {}),
    "bad metadata": ({"label": [0, 1, 2, 1], "pred_probs": LIST}, "x,y", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loader_and_source_resolve_and_decode_alike(tmp_path, case):
    cols, md, opts = CASES[case]
    table = pa.table(cols)
    if md is not None:
        table = table.replace_schema_metadata({"labelqa.classes": md if isinstance(md, str) else json.dumps(md)})
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    want, got = _load_outcome(path, **opts), _source_outcome(path, **opts)
    if case == "no probabilities":  # the one difference: the streaming engines read no .npy, their hint says so
        assert got.endswith("or --pred-probs-cols 'p_*' for per-class columns (prob_<class> ones are found without it)")
        want, got = want.split(" -- ")[0], got.split(" -- ")[0]
    assert got == want


def test_the_agreement_covers_successes_and_failures(tmp_path):
    """The table above is not all errors (nor all successes)."""
    outcomes = []
    for case, (cols, md, opts) in CASES.items():
        table = pa.table(cols)
        if isinstance(md, list):
            table = table.replace_schema_metadata({"labelqa.classes": json.dumps(md)})
        pq.write_table(table, tmp_path / f"{len(outcomes)}.parquet")
        outcomes.append(isinstance(_load_outcome(tmp_path / f"{len(outcomes)}.parquet", **opts), str))
    assert 5 < sum(outcomes) < len(outcomes) - 5


@st.composite
def datasets(draw):
    k = draw(st.integers(2, 4))
    n = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["codes", "ints", "strings", "list_str", "list_int", "delimited"]))
    universe = {"codes": list(range(k)), "ints": [10 * (j + 1) for j in range(k)], "list_int": list(range(k))}.get(
        kind, ["ant", "bee", "cat", "dog"][:k])
    order = draw(st.permutations(universe))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    multilabel = kind in ("list_str", "list_int", "delimited")
    if multilabel:
        sets = [[v for v in universe if rng.random() < 0.5] for _ in range(n)]
        labels = ["|".join(map(str, s)) for s in sets] if kind == "delimited" else sets
        probs = rng.random((n, k))
    else:
        labels = [universe[i] for i in rng.integers(0, k, n)]
        probs = rng.dirichlet(np.ones(k), n)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    probs = probs.astype(dtype)
    if not multilabel:
        probs /= probs.sum(axis=1, keepdims=True)
    cols = {"label": labels}
    if draw(st.booleans()):
        cols["pred_probs"] = pa.array(list(probs))
    else:
        cols.update({f"prob_{c}": probs[:, j] for j, c in enumerate(order)})
    opts = {"label_sep": "|"} if kind == "delimited" else {}
    if draw(st.booleans()):
        cols["id"] = [f"r{i}" for i in range(n)]
        opts["id_col"] = "id"
    classes_from = draw(st.sampled_from(["none", "option", "metadata"]))
    if classes_from == "option":
        opts["classes"] = ",".join(map(str, order))
    md = json.dumps(order) if classes_from == "metadata" else None
    return cols, md, opts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(datasets())
def test_generated_parquet_files_resolve_and_decode_alike(tmp_path, dataset):
    cols, md, opts = dataset
    table = pa.table(cols)
    if md is not None:
        table = table.replace_schema_metadata({"labelqa.classes": md})
    path = tmp_path / "g.parquet"
    pq.write_table(table, path)
    assert _source_outcome(path, **opts) == _load_outcome(path, **opts)
