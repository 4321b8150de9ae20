"""Keeping a long-running process's resident memory close to what it holds (glibc's malloc).

glibc keeps freed pages in its heaps for reuse, so after a model load's temporary copies or a
generation's KV cache are freed, the process still holds them. ``release_freed`` returns the
free pages to the OS. It does nothing off glibc.
"""

from __future__ import annotations

import ctypes


def release_freed() -> None:
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
