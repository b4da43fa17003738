"""The Dask engine (2-worker loopback LocalCluster) equals the in-process streaming engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask.dataframe")

from labelqa.detectors.confident import FILTER_METHODS  # noqa: E402
from labelqa.engines.dask_engine import scan_dask  # noqa: E402
from labelqa.engines.stream import scan_stream  # noqa: E402
from labelqa.errors import LabelqaError  # noqa: E402

from conftest import noisy_dataset, write_parquet  # noqa: E402
from test_engines_stream import _split_write, tie_heavy  # noqa: E402

# The loopback cluster's HTTP routes fall back to a free port when 8787 is taken.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    given_, _t, probs, _ = noisy_dataset(n=40_000, k=5, noise=0.12, seed=21)
    return _split_write(tmp_path_factory.mktemp("dask") / "ds", given_, probs, parts=5, hive=True)


def reports(tmp_path: Path, out_a: str, out_b: str) -> tuple:
    a, b = tmp_path / out_a, tmp_path / out_b
    return (pq.read_table(a / "issues.parquet"), pq.read_table(b / "issues.parquet"),
            json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text()))


@pytest.mark.parametrize("filter_by", FILTER_METHODS)
def test_dask_equals_stream(client, dataset, tmp_path, filter_by):
    res_s = scan_stream(dataset, out_dir=tmp_path / "s", batch_size=3000, filter_by=filter_by)
    res_d = scan_dask(dataset, out_dir=tmp_path / "d", client=client, blocksize=None, filter_by=filter_by)
    ts, td, ss, sd = reports(tmp_path, "s", "d")
    assert ts.equals(td)
    assert ss == sd
    assert res_d.n_issues == res_s.n_issues > 0


@pytest.mark.parametrize("options", [{"min_examples_per_class": 12_000}, {"frac_noise": 0.3},
                                     {"num_to_remove_per_class": [4_000, 3, 900]}], ids=lambda o: ",".join(o))
def test_dask_tie_heavy_equals_stream(client, tmp_path, options):
    labels, probs = tie_heavy(n=30_000, seed=8)
    folder = _split_write(tmp_path / "t", labels, probs, parts=3)
    for filter_by in ("prune_by_noise_rate", "both", "low_normalized_margin"):
        scan_stream(folder, out_dir=tmp_path / "s", batch_size=2048, filter_by=filter_by, **options)
        scan_dask(folder, out_dir=tmp_path / "d", client=client, blocksize=None, filter_by=filter_by, **options)
        ts, td, ss, sd = reports(tmp_path, "s", "d")
        assert ts.equals(td), filter_by
        assert ss == sd


def test_dask_by_scheduler_address_and_row_group_partitions(cluster, tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=30_000, k=4, noise=0.1, seed=5)
    path = tmp_path / "one.parquet"
    write_parquet(path, given_, probs)
    pq.write_table(pq.read_table(path), path, row_group_size=4_000)  # 8 row groups -> several partitions
    scan_stream(path, out_dir=tmp_path / "s", batch_size=5000)
    res = scan_dask(path, out_dir=tmp_path / "d", scheduler=cluster.scheduler_address, blocksize="64KiB")
    ts, td, ss, sd = reports(tmp_path, "s", "d")
    assert ts.equals(td)
    assert ss == sd
    assert res.n_rows == 30_000


def test_dask_local_cluster_when_no_scheduler(tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=5_000, k=3, noise=0.1, seed=6)
    path = write_parquet(tmp_path / "small.parquet", given_, probs)
    scan_stream(path, out_dir=tmp_path / "s")
    scan_dask(path, out_dir=tmp_path / "d")  # starts and closes its own loopback cluster
    ts, td, ss, sd = reports(tmp_path, "s", "d")
    assert ts.equals(td) and ss == sd


def test_dask_bad_row_in_late_partition_is_named_globally(client, tmp_path):
    given_, _t, probs, _ = noisy_dataset(n=20_000, k=3, noise=0.1, seed=9)
    probs = probs.copy()
    probs[17_321] = [0.5, 0.6, 0.2]
    folder = _split_write(tmp_path / "bad", given_, probs, parts=4)
    with pytest.raises(LabelqaError) as err:
        scan_dask(folder, out_dir=tmp_path / "d", client=client, blocksize=None)
    assert "row 17321" in str(err.value)
    assert not (tmp_path / "d").exists()
    with pytest.raises(LabelqaError) as err_s:
        scan_stream(folder, out_dir=tmp_path / "s")
    assert str(err.value) == str(err_s.value)


def test_dask_large_partitions_are_many_stream_batches(client, tmp_path):
    """A partition is not a batch: the same partials whatever the split."""
    given_, _t, probs, _ = noisy_dataset(n=25_000, k=6, noise=0.15, seed=10)
    path = write_parquet(tmp_path / "x.parquet", given_, probs)
    scan_stream(path, out_dir=tmp_path / "s", batch_size=512)
    scan_dask(path, out_dir=tmp_path / "d", client=client)
    ts, td, ss, sd = reports(tmp_path, "s", "d")
    assert ts.equals(td) and ss == sd
    assert np.array_equal(ts.column("rank").to_numpy(), td.column("rank").to_numpy())
