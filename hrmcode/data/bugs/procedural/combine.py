"""SWE-smith's ``combine_file`` step: validated bugs of one file merged, two at a time, into one
multi-bug task (``swesmith/bug_gen/combine/same_file.py``).

SWE-smith takes the first ``max_combos`` (100) pairs of a file's validated bug patches in order,
applies each pair with ``git apply``; a pair that applies becomes a ``combine_file`` patch, and every
other pair that shares one of its bugs is dropped (each bug joins at most one combination); a pair
that does not apply is skipped. Here a pair applies when the two bugs change disjoint line ranges
of the file, with at least one unchanged line between them (``merge_edits``), and the merged
Python text must parse. The combined candidate is then validated like any other (SWE-smith's rule:
at least one test fails, at least one keeps passing).

Not guaranteed: that the combination breaks more tests than either bug alone (SWE-smith does not
ask that either).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Sequence
from itertools import combinations

COMBINE_FILE = "combine_file"
MAX_COMBOS = 100  # SWE-smith's --max_combos default: pairs tried per file
NUM_PATCHES = 2  # SWE-smith's --num_patches default: bugs per combination


def _edits(before: list[str], after: list[str]) -> list[tuple[int, int, list[str]]]:
    """(first, end, new lines) of each changed range of ``before``."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return [(i1, i2, after[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def merge_edits(original: str, edited: Sequence[str]) -> str | None:
    """``original`` with the changes of every text in ``edited``; None when two of them change the
    same or adjacent lines (the merge would be ambiguous, as ``git apply`` would refuse it)."""
    before = original.splitlines(keepends=True)
    edits = sorted(e for text in edited for e in _edits(before, text.splitlines(keepends=True)))
    for (_, end, _), (start, _, _) in zip(edits, edits[1:]):
        if start <= end:  # overlapping or touching ranges
            return None
    merged: list[str] = []
    at = 0
    for start, end, lines in edits:
        merged += before[at:start] + lines
        at = end
    return "".join(merged + before[at:])


def file_combos(path: str, original: str, bugged: Sequence[str], max_combos: int = MAX_COMBOS,
                num_patches: int = NUM_PATCHES) -> list[tuple[tuple[int, ...], str]]:
    """(indices into ``bugged``, merged text) of each combination SWE-smith's procedure keeps."""
    pairs = list(combinations(range(len(bugged)), num_patches))[:max_combos]
    found: list[tuple[tuple[int, ...], str]] = []
    i = 0
    while i < len(pairs):
        combo = pairs[i]
        merged = merge_edits(original, [bugged[j] for j in combo])
        if merged is None or not _parses(path, merged):
            i += 1
            continue
        found.append((combo, merged))
        pairs = [p for p in pairs if not set(p) & set(combo)]
        i = 0
    return found


def _parses(path: str, text: str) -> bool:
    if not path.endswith(".py"):
        return True  # other languages: the test run decides
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True
