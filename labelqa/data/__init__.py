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

Layout (data flows down this list; no module imports one above it, except
``model`` importing ``build`` lazily in ``LabelData.from_arrays``):

- ``loader`` -- :func:`load`; ``source`` -- the streaming engines' input
  (Parquet/Arrow file, folder, hive dataset -> validated batches; imports
  ``pyarrow.dataset``, so ``import labelqa`` does not import it);
- ``schema`` -- :func:`~labelqa.data.schema.resolve_schema`, used by both:
  columns, probability layout, task, label format, classes and their source;
- ``build`` -- ``validated_fields``: the checks below, in order, to the fields of a ``LabelData``;
- ``readers`` (format detection, reading files), ``columns`` (probability
  and embedding lists, ``prob_<class>`` columns to matrices);
- one module per concern: ``labels``, ``labelsets``, ``classes``, ``ids``,
  ``probabilities``, ``embeddings``;
- ``rows`` (naming rows and places in messages), ``arrays`` (Arrow type
  helpers, the one list-type check), ``model`` (``LabelData``).
"""

from labelqa.data.loader import load
from labelqa.data.model import LabelData
from labelqa.data.readers import SUPPORTED_FORMATS, read_table

__all__ = ["SUPPORTED_FORMATS", "LabelData", "load", "read_table"]
