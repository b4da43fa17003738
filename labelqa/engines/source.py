"""Moved to :mod:`labelqa.data.source`; re-exported here for the engines until they move."""

from labelqa.data.source import *  # noqa: F403
from labelqa.data.source import Batch, Source, open_dataset, open_source, scan_batches  # noqa: F401
