"""The Dask engine: the streaming engine's per-piece functions over Dask partitions.

``scan_dask(path, scheduler="tcp://host:8786", out_dir=...)`` reads the same
inputs with ``dask.dataframe.read_parquet`` (Arrow-backed pandas partitions),
and runs, on the workers, exactly the functions the streaming engine runs on
its record batches (:mod:`labelqa.engines.stream`: ``piece_pass1``,
``piece_pass2``, ``piece_stage``, ``piece_ranks``, ``piece_issues``). Each
returns a small partial (class sums, a K x K joint, bounded selection
buffers); the client merges them with the kernels' ``merge`` and decides
the next pass. So the results equal the in-process engines'.

What runs where:

* workers: reading and validating partitions, every per-row computation;
* client: merging partials (K, K^2, issue-sized), the rank index (4-8 bytes
  per row), writing issues.parquet/.csv and the summary from the pieces the
  workers send back, in partition order (the report is one local folder).

Without ``scheduler`` a loopback ``distributed.LocalCluster`` (2 workers, 1
thread each, no dashboard) is started and closed afterwards.

Needs the optional extra ``labelqa[dask]`` (``dask[dataframe]``,
``distributed``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from labelqa.engines.source import Source, open_source
from labelqa.engines.stream import DEFAULT_BATCH_SIZE, Progress, StreamSummary, detector_for, run_scan
from labelqa.errors import LabelqaError

__all__ = ["scan_dask"]


def _import_dask() -> tuple[Any, Any, Any]:
    try:
        import dask
        import dask.dataframe as dd
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LabelqaError(
            f"--engine dask needs Dask ({exc.name} is not installed)",
            hint='pip install "labelqa[dask]"',
        ) from exc
    return dask, dd, distributed


def _apply(fn: Callable[..., Any], src: Source, frame: Any, offset: int, *args: Any) -> Any:
    """Run a piece function on one pandas partition (converted back to Arrow)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return fn(src, table, offset, *args)


def _apply_fold(fn: Callable[..., Any], src: Source, frame: Any, offset: int, acc: Any, *args: Any) -> Any:
    """One step of a sequential fold: ``fn(src, table, offset, acc, *args)``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return fn(src, table, offset, acc, *args)


def _length(frame: Any) -> int:
    return len(frame)


class DaskRunner:
    """Runs piece functions over the partitions of a Dask dataframe; yields results in order."""

    inplace = False  # partials travel: every partition gets an empty one, the client merges

    def __init__(self, client: Any, src: Source, ddf: Any) -> None:
        import dask

        self.client = client
        self.src = src
        self.parts = ddf.to_delayed(optimize_graph=True)
        lengths = client.compute([dask.delayed(_length)(p) for p in self.parts], sync=True)
        self.offsets = [0]
        for n in lengths:
            self.offsets.append(self.offsets[-1] + int(n))
        if self.offsets[-1] != src.n_rows:
            raise LabelqaError(f"{src.path}: Dask read {self.offsets[-1]} rows, pyarrow counts {src.n_rows}",
                               hint="check the dataset files")

    def map(self, fn: Callable[..., Any], *args: Any) -> Iterator[Any]:
        import dask

        src = dask.delayed(self.src)
        tasks = [dask.delayed(_apply, pure=False)(fn, src, part, off, *args)
                 for part, off in zip(self.parts, self.offsets)]
        futures = self.client.compute(tasks)
        try:
            for fut in futures:
                yield fut.result()
                fut.release()
        finally:
            for fut in futures:
                fut.release()

    def fold_outputs(self, fn: Callable[..., Any], state: Any, *args: Any) -> tuple[Any, list[Any]]:
        """Like :meth:`fold`, for ``fn`` returning ``(state, output)``: the last state and every
        piece's output, in order (the outputs are computed on the workers and sent back)."""
        import dask

        src = dask.delayed(self.src)
        cur: Any = state
        outs = []
        for part, off in zip(self.parts, self.offsets):
            step = dask.delayed(_apply_fold, pure=False, nout=2)(fn, src, part, off, cur, *args)
            cur, out = step
            outs.append(out)
        last, outputs = self.client.compute([cur, outs], sync=True)
        return last, list(outputs)

    def split(self, values: Any) -> list[Any]:
        """``values`` (one per row) cut into the partitions' slices."""
        return [values[a:b] for a, b in zip(self.offsets, self.offsets[1:])]

    def map_per_piece(self, fn: Callable[..., Any], per_piece: list[Any], *args: Any) -> Iterator[Any]:
        """:meth:`map` with one more, last, argument: ``per_piece[i]`` for partition i."""
        import dask

        src = dask.delayed(self.src)
        tasks = [dask.delayed(_apply, pure=False)(fn, src, part, off, *args, extra)
                 for part, off, extra in zip(self.parts, self.offsets, per_piece)]
        futures = self.client.compute(tasks)
        try:
            for fut in futures:
                yield fut.result()
                fut.release()
        finally:
            for fut in futures:
                fut.release()

    def fold(self, fn: Callable[..., Any], acc: Any, *args: Any) -> Any:
        """``acc = fn(src, piece, offset, acc, *args)`` over the partitions in order: a chain of
        tasks (each waits for the previous accumulator, a few K-sized arrays), for the partials
        that must be accumulated in input order (the multi-label float64 ``q`` sums)."""
        import dask

        src = dask.delayed(self.src)
        cur: Any = acc
        for part, off in zip(self.parts, self.offsets):
            cur = dask.delayed(_apply_fold, pure=False)(fn, src, part, off, cur, *args)
        return self.client.compute(cur, sync=True)


@contextlib.contextmanager
def _client(scheduler: str | None) -> Iterator[Any]:
    _dask, _dd, distributed = _import_dask()
    if scheduler:
        with distributed.Client(scheduler) as client:
            yield client
        return
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def scan_dask(
    source: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    out_dir: str | os.PathLike[str] = "labelqa-report",
    label_col: str = "label",
    pred_probs_col: str = "pred_probs",
    classes: Sequence[Any] | str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    id_col: str | None = None,
    input_format: str | None = None,
    renormalize: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    blocksize: str | int | None = "128MiB",
    filter_by: str = "prune_by_noise_rate",
    score_method: str = "self_confidence",
    adjust_pred_probs: bool = False,
    frac_noise: float = 1.0,
    num_to_remove_per_class: Sequence[int] | None = None,
    min_examples_per_class: int = 1,
    csv: bool = True,
    progress: Progress | None = None,
    client: Any = None,
    task: str = "auto",
    label_sep: str | None = None,
    aggregation: str = "ema",
    alpha: float = 0.8,
    temperature: float = 0.1,
) -> StreamSummary:
    """:func:`labelqa.engines.stream.scan_stream` on a Dask cluster.

    Args:
        source: A Parquet file or folder (hive partitions allowed) that every
            worker can read at this path (shared filesystem or object store
            URL such as ``s3://bucket/data/``).
        scheduler: Address of a running scheduler (``tcp://10.0.0.5:8786``);
            ``None`` starts a local loopback cluster for the scan.
        blocksize: Target partition size (``split_row_groups="adaptive"``
            with this ``blocksize``); ``None``: one partition per file.
        batch_size: Rows per batch for the class inference pass (client).
        client: An existing ``distributed.Client`` to use instead of
            ``scheduler`` (not closed).
        task, label_sep, aggregation, alpha, temperature: Multi-label data
            and its options, as :func:`~labelqa.engines.stream.scan_stream`
            (pass 1 of a multi-label scan visits the partitions one after
            another: its per-class float64 sums follow the input order).
            EMA row scores are computed in that chain on the in-memory
            detector's row blocks (as ``scan_stream`` does), sent back to
            the client (8 bytes a row) and shipped with the later passes'
            tasks, partition by partition.
        Other arguments: as :func:`~labelqa.engines.stream.scan_stream`.

    Raises:
        LabelqaError: Invalid input or options; Dask not installed.
    """
    _dask, dd, _distributed = _import_dask()
    src = open_source(source, label_col=label_col, pred_probs_col=pred_probs_col, classes=classes,
                      classes_file=classes_file, id_col=id_col, input_format=input_format,
                      renormalize=renormalize, batch_size=batch_size, task=task, label_sep=label_sep)
    if src.fmt != "parquet":
        raise LabelqaError("--engine dask reads Parquet inputs", hint="convert the data to Parquet, or use --engine stream")
    det = detector_for(src, filter_by=filter_by, score_method=score_method, adjust_pred_probs=adjust_pred_probs,
                       frac_noise=frac_noise, num_to_remove_per_class=num_to_remove_per_class,
                       min_examples_per_class=min_examples_per_class, aggregation=aggregation, alpha=alpha,
                       temperature=temperature)
    read_kw: dict[str, Any] = {"columns": src.columns, "dtype_backend": "pyarrow", "calculate_divisions": False}
    if blocksize is not None:
        read_kw.update(split_row_groups="adaptive", blocksize=blocksize)
    if os.path.isdir(src.path):
        read_kw["dataset"] = {"partitioning": "hive"}
    ddf = dd.read_parquet(src.path, **read_kw)

    ctx = contextlib.nullcontext(client) if client is not None else _client(scheduler)
    with ctx as cl:
        if progress:
            progress(f"dask: {ddf.npartitions} partitions on {cl.scheduler.address if hasattr(cl, 'scheduler') else cl}")
        runner = DaskRunner(cl, src, ddf)
        return run_scan(src, runner, det, Path(out_dir), csv=csv, progress=progress)
