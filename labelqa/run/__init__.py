"""Running detector plans: the in-memory, streaming and Dask runners, and the driver.

* :mod:`labelqa.run.driver`: runs detector plans on a runner and builds the
  :class:`~labelqa.result.ScanResult` (the same for every engine);
* :mod:`labelqa.run.stream`: record batches of Parquet/Arrow files, folders
  and hive datasets, bounded memory;
* :mod:`labelqa.run.dask`: the same functions on a Dask cluster (optional
  extra ``labelqa[dask]``);
* :mod:`labelqa.run.engine`: which engine runs a scan (``auto``).

In memory a detector's plan runs on one block, the whole dataset
(:meth:`labelqa.detectors.base.Detector.detect`).
"""
