"""hrmcode: build, measure and ship small code models based on the Hierarchical Reasoning Model.

``hrmcode.open_dataset(path, split=None)`` opens any hrmcode artifact or data file as a
``datasets.Dataset`` (``hrmcode/datasets_io.py``; ``datasets`` itself loads on the first call).
"""

from hrmcode.version import __version__
from hrmcode.datasets_io import open_dataset

__all__ = ["__version__", "open_dataset"]
