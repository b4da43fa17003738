"""The Dask runner's contract, through ``labelqa.scan(path, engine="dask")`` and ``write_report``.

A few tests only (a cluster costs seconds): one module-scoped loopback
cluster reached by its scheduler address, and one scan that starts (and
closes) its own local cluster. Report files must be those of the in-memory
engine; errors name rows by their global index.
"""

from __future__ import annotations

import contextlib
import socket
import warnings
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import labelqa
from labelqa.errors import LabelqaError
from tests.conftest import noisy_dataset, write_parquet
from tests.test_run_stream import assert_same_report, ml_data, read_summary, report, split_write, tie_heavy, write_ml

distributed = pytest.importorskip("distributed")

# The loopback cluster's HTTP routes fall back to a free port when 8787 is taken.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use")


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_hive_dataset_by_scheduler_address_equals_memory(scheduler, tmp_path):
    """Several files of several row groups -> many pieces; tie-heavy data, a min-examples cap, a gate."""
    n = 4000
    labels, probs = tie_heavy(n=n, seed=8)

    def write(path, a, b):
        write_parquet(path, labels[a:b], probs[a:b])
        pq.write_table(pq.read_table(path), path, row_group_size=300)

    folder = split_write(tmp_path / "ds", n, write, 3, hive=True)
    whole = write_parquet(tmp_path / "whole.parquet", labels, probs)
    options = {"filter_by": "both", "min_examples_per_class": 900, "max_issue_rate": 0.01}
    report(whole, tmp_path / "mem", "memory", **options)
    messages: list[str] = []
    result = report(folder, tmp_path / "dask", "dask", scheduler=scheduler, batch_size=500,
                    progress=messages.append, **options)
    assert_same_report(tmp_path / "mem", tmp_path / "dask", "dask", same_source=False)
    assert not result.gate.passed and read_summary(tmp_path / "dask")["gate"]["passed"] is False
    assert any(m.startswith("dask: 9 pieces on tcp://127.0.0.1") for m in messages), messages


def test_pbnr_plus_by_scheduler_address_equals_memory(scheduler, tmp_path):
    """prune_by_noise_rate_plus: its extra passes (PBNR counts, class caps, global cut) merge across pieces."""
    given_, _t, probs, _ = noisy_dataset(n=3000, k=5, noise=0.15, seed=21)
    path = write_parquet(tmp_path / "p.parquet", given_, probs)
    pq.write_table(pq.read_table(path), path, row_group_size=300)
    for min_ex in (1, 540):
        out = tmp_path / str(min_ex)
        options = {"filter_by": "prune_by_noise_rate_plus", "min_examples_per_class": min_ex}
        report(path, out / "mem", "memory", **options)
        report(path, out / "dask", "dask", scheduler=scheduler, batch_size=256, **options)
        assert_same_report(out / "mem", out / "dask", "dask")
        summary = read_summary(out / "dask")
        assert summary["issues_found"] > 0
        assert summary["detectors"]["cl"]["summary"]["estimated_noise_rate_estimator"] == "disputed_weighted_trend"


def test_multilabel_by_scheduler_address_equals_memory(scheduler, tmp_path):
    given, probs = ml_data(n=3000, seed=12)
    path = write_ml(tmp_path / "m.parquet", given, probs, row_group_size=400)
    for filter_by in ("prune_by_noise_rate", "low_normalized_margin"):
        out = tmp_path / filter_by
        report(path, out / "mem", "memory", filter_by=filter_by, min_examples_per_class=1500)
        report(path, out / "dask", "dask", scheduler=scheduler, batch_size=256, filter_by=filter_by,
               min_examples_per_class=1500)
        assert_same_report(out / "mem", out / "dask", "dask")
        assert read_summary(out / "dask")["issues_found"] > 0


def test_bad_row_in_a_late_piece_is_named_globally(scheduler, tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=2000, k=3, noise=0.1, seed=9)
    probs = probs.copy()
    probs[1_732] = [0.5, 0.6, 0.2]
    folder = split_write(tmp_path / "bad", 2000, lambda p, a, b: write_parquet(p, given_[a:b], probs[a:b]), 4)
    with pytest.raises(LabelqaError) as stream_err:  # (the in-memory loader reads files, not folders)
        labelqa.scan(str(folder), engine="stream", batch_size=100)
    with pytest.raises(LabelqaError) as err:
        labelqa.scan(str(folder), engine="dask", scheduler=scheduler, batch_size=100)
    assert "row 1732" in str(err.value)
    assert str(err.value) == str(stream_err.value)


def test_local_cluster_when_no_scheduler(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=1500, k=3, noise=0.1, seed=6)
    path = write_parquet(tmp_path / "small.parquet", given_, probs)
    report(path, tmp_path / "mem", "memory")
    with socket.socket() as dashboard, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(OSError):  # dask's dashboard port taken (e.g. a notebook's cluster): no warning
            dashboard.bind(("127.0.0.1", 8787))
            dashboard.listen()
        report(path, tmp_path / "dask", "dask", batch_size=400)  # starts its own loopback cluster; `with` closes it
    assert not [w for w in caught if "8787" in str(w.message)]
    assert_same_report(tmp_path / "mem", tmp_path / "dask", "dask")


def test_inputs_dask_cannot_read_are_refused(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=50, k=3, seed=1)
    path = write_parquet(tmp_path / "a.parquet", given_, probs)
    feather.write_feather(pq.read_table(path), tmp_path / "a.arrow")
    with pytest.raises(LabelqaError, match="--engine dask reads Parquet") as err:
        labelqa.scan(str(tmp_path / "a.arrow"), engine="dask")
    assert "--engine stream" in err.value.hint
    csv = tmp_path / "d.csv"
    csv.write_text("label\n1\n")
    with pytest.raises(LabelqaError, match="Parquet or Arrow"):
        labelqa.scan(str(csv), engine="dask")
    with pytest.raises(LabelqaError, match="--engine memory"):
        labelqa.scan(str(path), engine="dask", detectors="cl,nrg")
    assert np.array_equal(pq.read_table(path).column("label").to_numpy(), given_)  # input untouched
