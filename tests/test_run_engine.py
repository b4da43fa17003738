"""Which engine runs a scan (labelqa.run.engine.choose_engine), and labelqa.scan following it."""

from __future__ import annotations

import pytest

import labelqa
from labelqa.errors import LabelqaError
from labelqa.run import engine as choose
from tests.conftest import noisy_dataset, write_parquet


@pytest.fixture
def big(tmp_path):
    given, _, probs, _ = noisy_dataset(n=30_000, k=6, seed=9)
    return write_parquet(tmp_path / "big.parquet", given, probs)


def sized(path, n_bytes: int):
    path.write_bytes(b"\0" * n_bytes)
    return path


def test_auto_rule(big, monkeypatch):
    assert choose.choose_engine("auto", big) == "memory"  # 30k x 6 is small
    monkeypatch.setattr(choose, "STREAM_MIN_CELLS", 100_000)
    assert choose.choose_engine("auto", big) == "stream"  # ~180k cells
    assert choose.choose_engine("auto", big, memory_only="embeddings") == "memory"
    assert choose.choose_engine("auto", big.parent) == "stream"  # a folder is a dataset
    assert choose.choose_engine("auto", None) == "memory"  # data already in memory


def test_auto_threshold_is_the_file_size_in_float32_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(choose, "STREAM_MIN_CELLS", 1000)
    assert choose.choose_engine("auto", sized(tmp_path / "a.parquet", 4000)) == "stream"  # 1000 cells
    assert choose.choose_engine("auto", sized(tmp_path / "b.parquet", 3999)) == "memory"  # 999 cells
    for suffix in (".pq", ".arrow", ".feather", ".ipc", ".PARQUET"):
        assert choose.choose_engine("auto", sized(tmp_path / f"c{suffix}", 8000)) == "stream", suffix
    for suffix in (".csv", ".jsonl", ".npy"):  # formats the streaming engines cannot read stay in memory
        assert choose.choose_engine("auto", sized(tmp_path / f"d{suffix}", 10**6)) == "memory", suffix
    # a missing file: the in-memory loader gives the clear error
    assert choose.choose_engine("auto", tmp_path / "missing.parquet") == "memory"


def test_explicit_engines(big):
    assert choose.choose_engine("memory", big.parent) == "memory"
    assert choose.choose_engine("memory", big, memory_only="embeddings") == "memory"
    for engine in ("stream", "dask"):
        assert choose.choose_engine(engine, big) == engine
        with pytest.raises(LabelqaError, match=f"--engine {engine} reads files") as err:
            choose.choose_engine(engine, None)
        assert "--engine memory" in err.value.hint
        with pytest.raises(LabelqaError, match="this scan needs the neighbour graph"):
            choose.choose_engine(engine, big, memory_only="the neighbour graph")
    with pytest.raises(LabelqaError, match="unknown engine 'gpu'") as err:
        choose.choose_engine("gpu", big)
    assert "auto, memory, stream, dask" in err.value.hint


def test_scan_follows_the_rule(big, monkeypatch):
    assert labelqa.scan(str(big)).engine == "memory"
    monkeypatch.setattr(choose, "STREAM_MIN_CELLS", 100_000)
    with labelqa.scan(str(big), batch_size=10_000) as result:
        assert result.engine == "stream" and result.summary()["options"]["engine"] == "stream"
    # options only the in-memory engine can serve keep auto in memory, whatever the size
    assert labelqa.scan(str(big), detectors=["cl"], params={"cl": {"filter_by": "both"}}).engine == "memory"
    data = labelqa.load(str(big))
    assert labelqa.scan(data).engine == "memory"
    with pytest.raises(LabelqaError, match="already in memory"):
        labelqa.scan(data, engine="stream")
