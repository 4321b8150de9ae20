"""Searching sorted and unsorted sequences."""


def bisect_left(items, target):
    """Index of the first element >= target in sorted ``items`` (len(items) if none)."""
    low, high = 0, len(items)
    while low < high:
        middle = (low + high) // 2
        if items[middle] < target:
            low = middle + 1
        else:
            high = middle
    return low


def find_all(text, pattern):
    """Start indices of every (possibly overlapping) occurrence of ``pattern`` in ``text``."""
    if not pattern:
        return []
    found = []
    for start in range(len(text) - len(pattern) + 1):
        if text[start:start + len(pattern)] == pattern:
            found.append(start)
    return found
