"""Keeping a long-running process's resident memory close to what it holds (glibc's malloc).

glibc keeps freed pages in its heaps for reuse, and raises its mmap threshold to the size of the
largest block freed, so a model load's temporary copies (a layer's weights as read from the file,
freed once packed) leave holes in the heap that the process keeps. ``serve_policy`` fixes the mmap
threshold (blocks of 256 KiB and more get their own mapping and go back to the OS when freed);
``release_freed`` returns the heaps' free pages. Both do nothing off glibc.
"""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 256 * 1024


def _libc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def serve_policy() -> None:
    """For a serving process: large blocks are mapped on their own (call before loading the model)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def release_freed() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
