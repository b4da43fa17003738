"""The I/O floor of a scan: what any pyarrow-based tool spends on a file before detecting anything.

Runs, in this fresh process, only the parts of ``labelqa scan FILE`` that do
not depend on the detector:

1. start Python and import numpy and pyarrow;
2. decode the label column and the ``pred_probs`` list column into an
   N x K array (row groups on two threads, in 16k-row batches; no checks);
3. build a 1-row-per-input issues table with the columns the report must
   have (id, given/suggested label, label_quality, is_label_issue, rank,
   suggested_confidence, detectors, reason, cl_score, cl_issue) from a
   stand-in score (the given label's probability; no ranking sort);
4. write it as issues.parquet (zstd) and issues.csv, side by side on two
   threads.

No detection, no checks, no summary, no HTML, no CLI framework. The end-to-end
CLI time can only approach this number, so when ``cleanlab's time / 3`` is
below it, the "CLI >= 3x faster than cleanlab's call" target is out of reach on
that machine for any implementation that reads and writes with pyarrow.

Usage (prints one JSON line)::

    python benchmarks/io_floor.py DATA.parquet OUT_DIR
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def _read_matrix(source: pa.NativeFile, pf: pq.ParquetFile) -> np.ndarray:
    """The list<float> column as one (N, K) array: row groups on two threads, each in 16k-row batches
    copied into the array as they come (the fastest way found on our VM; labelqa's loader does the same).
    No checks: the benchmark's own files."""
    n = pf.metadata.num_rows
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    lock = threading.Lock()
    out: list[np.ndarray] = []

    def fill(i: int) -> None:
        start = int(starts[i])
        for batch in pq.ParquetFile(source).iter_batches(batch_size=16_384, row_groups=[i], columns=["pred_probs"],
                                                         use_threads=False):
            values = batch.column(0).values
            dtype = np.float32 if pa.types.is_float32(values.type) else np.float64
            flat = np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values),
                                 offset=values.offset * dtype().itemsize)
            part = flat.reshape(len(batch), -1)
            with lock:
                if not out:
                    out.append(np.empty((n, part.shape[1]), dtype=dtype))
            out[0][start : start + len(part)] = part
            start += len(part)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(fill, range(pf.num_row_groups)))
    return out[0]


def main(path: str, out_dir: str) -> dict[str, float]:
    np._core.multiarray._set_madvise_hugepage(False)  # as the CLI does (labelqa.runtime)
    t_imports = time.perf_counter()
    source = pa.memory_map(path)
    pf = pq.ParquetFile(source)
    labels = pf.read(columns=["label"]).column(0).to_numpy()
    probs = _read_matrix(source, pf)
    t_read = time.perf_counter()
    score = probs[np.arange(len(labels)), labels].astype(np.float64)
    flags = score < 0.3
    n = len(labels)
    text = pa.array(np.where(flags, "cl", ""))
    table = pa.table({
        "id": pa.array(np.arange(n)), "given_label": pa.array(labels), "suggested_label": pa.array(labels),
        "label_quality": pa.array(score), "is_label_issue": pa.array(flags), "rank": pa.array(np.arange(1, n + 1)),
        "suggested_confidence": pa.array(score), "detectors": text, "reason": text,
        "cl_score": pa.array(score), "cl_issue": pa.array(flags),
    })
    t_table = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(pq.write_table, table, os.path.join(out_dir, "issues.parquet"), compression="zstd"),
                pool.submit(pacsv.write_csv, table, os.path.join(out_dir, "issues.csv"))]
        for job in jobs:
            job.result()
    t_write = time.perf_counter()
    return {"imports": t_imports - T0, "read": t_read - t_imports, "table": t_table - t_read,
            "write": t_write - t_table, "in_process": t_write - T0}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
    os._exit(0)  # as the CLI: no interpreter teardown
