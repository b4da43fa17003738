"""Reading and validating label data.

Public API:

- :func:`load` -- a table file (Parquet, CSV/TSV, JSON lines, Arrow IPC) plus
  optional ``.npy`` probabilities, embeddings and training dynamics to a
  validated :class:`LabelData`, multiclass or multi-label (``task``), from one
  model's probabilities or several (lists of columns/files, combined by
  :mod:`labelqa.models`);
- :func:`read_table` -- a table file to a :class:`pyarrow.Table`;
- :class:`LabelData` -- the validated data detectors consume
  (:meth:`LabelData.from_arrays` builds it from in-memory arrays);
- :data:`SUPPORTED_FORMATS` -- the ``input_format`` values.
"""

from labelqa.data.loader import load
from labelqa.data.model import LabelData
from labelqa.data.readers import SUPPORTED_FORMATS, read_table

__all__ = ["SUPPORTED_FORMATS", "LabelData", "load", "read_table"]
