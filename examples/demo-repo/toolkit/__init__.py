"""Small utilities: intervals, run-length encoding, roman numerals, searching and text wrapping."""

from toolkit.intervals import merge_intervals, total_covered
from toolkit.rle import rle_decode, rle_encode
from toolkit.roman import from_roman, to_roman
from toolkit.search import bisect_left, find_all
from toolkit.text import word_wrap

__all__ = [
    "merge_intervals", "total_covered", "rle_encode", "rle_decode", "to_roman", "from_roman",
    "bisect_left", "find_all", "word_wrap",
]
