"""Where hrmcode keeps its caches on this host: ``$HRMCODE_CACHE``, else ``$XDG_CACHE_HOME/hrmcode``, else
``~/.cache/hrmcode``. The sandbox keeps its state under ``<root>/sandbox``, the decode kernels under
``<root>/kernels``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    base = os.environ.get("HRMCODE_CACHE")
    return Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hrmcode"
