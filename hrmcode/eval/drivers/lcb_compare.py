"""LiveCodeBench output comparators. Standard library only: this file is also copied into the
sandbox, where the test driver imports it to stop at the first failing test.

``lcb-exact`` copies lcb_runner's rules (``testing_util.py``): stdin output and expected output are
stripped, split on newlines and each line stripped; the line counts must match; each line must
match exactly or, token by token, as equal ``Decimal`` values (no tolerance). Functional results
are compared with ``==`` after turning a returned tuple into a list.

``tolerant`` is the same except that numbers (Decimal tokens, JSON floats) are equal when they are
within 1e-6 absolutely or relatively, so ``0.3333333`` matches ``0.333333333333``.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

COMPARATORS = ("lcb-exact", "tolerant")
ABS_TOL = 1e-6
REL_TOL = 1e-6


def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare_stdout(output: str, expected: str, comparator: str = "lcb-exact") -> bool:
    got, want = stripped_lines(output), stripped_lines(expected)
    if len(got) != len(want):
        return False
    for got_line, want_line in zip(got, want):
        if got_line == want_line:
            continue
        got_numbers, want_numbers = _decimals(got_line), _decimals(want_line)
        if got_numbers is None or want_numbers is None:
            return False
        if got_numbers == want_numbers:
            continue
        if comparator != "tolerant" or len(got_numbers) != len(want_numbers):
            return False
        if not all(_close(float(g), float(w)) for g, w in zip(got_numbers, want_numbers)):
            return False
    return True


def _tolerant_equal(got: object, want: object) -> bool:
    if isinstance(got, tuple):
        got = list(got)
    if isinstance(got, bool) or isinstance(want, bool):
        return got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want or _close(float(got), float(want))
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_tolerant_equal(g, w) for g, w in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_tolerant_equal(got[k], want[k]) for k in got)
    return got == want


def compare_value(got: object, want: object, comparator: str = "lcb-exact") -> bool:
    """A functional problem's returned value (already JSON round-tripped) against the expected value."""
    if isinstance(got, tuple):
        got = list(got)
    if comparator == "tolerant":
        return _tolerant_equal(got, want)
    return got == want
