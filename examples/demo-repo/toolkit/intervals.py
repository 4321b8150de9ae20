"""Closed integer intervals given as (start, end) pairs."""


def merge_intervals(intervals):
    """Merge overlapping or touching intervals; the result is sorted by start."""
    ordered = sorted(intervals)
    merged = []
    for start, end in ordered:
        if start > end:
            raise ValueError(f"interval ({start}, {end}) ends before it starts")
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_covered(intervals):
    """How many integers are covered by at least one interval."""
    return sum(end - start + 1 for start, end in merge_intervals(intervals))
