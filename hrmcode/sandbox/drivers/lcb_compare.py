"""LiveCodeBench output comparators. Standard library only: this file is also copied into the
sandbox, where the trusted test driver (``lcb.py``) compares there, outside the candidate's process.

``lcb-exact`` copies lcb_runner's rules (``testing_util.py``): stdin output and expected output are
stripped, split on newlines and each line stripped; the line counts must match; each line must
match exactly or, token by token, as equal ``Decimal`` values (no tolerance). Functional results
are compared with ``==`` after turning a returned tuple into a list (the top level only: a tuple
inside a list is not equal to a list there, as in lcb_runner).

``tolerant`` is the same except that numbers (Decimal tokens, JSON floats) are equal when they are
within 1e-6 absolutely or relatively, so ``0.3333333`` matches ``0.333333333333``. It relaxes
numbers only: tuples and lists below the top level are as distinct as under ``lcb-exact``.

``strict`` (either comparator) also requires the returned value's JSON type to be the expected
one at every depth: ``True`` is not ``1`` and ``1`` is not ``True`` (``==`` says they are), an
int may stand for a float and nothing else may.
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
    if isinstance(got, bool) or isinstance(want, bool):
        return got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want or _close(float(got), float(want))
    if type(got) is list and type(want) is list:
        return len(got) == len(want) and all(_tolerant_equal(g, w) for g, w in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_tolerant_equal(got[k], want[k]) for k in got)
    return got == want


def same_shape(got: object, want: object) -> bool:
    """Strict mode: ``got`` has the JSON type of ``want`` at every depth (an int may be a float)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want)
    if isinstance(want, float):
        return type(got) in (int, float)
    if isinstance(want, list):
        return type(got) is list and len(got) == len(want) and all(same_shape(g, w) for g, w in zip(got, want))
    if isinstance(want, dict):
        return (type(got) is dict and got.keys() == want.keys()
                and all(same_shape(got[k], want[k]) for k in want))
    return type(got) is type(want)


def compare_value(got: object, want: object, comparator: str = "lcb-exact", strict: bool = False) -> bool:
    """A functional problem's returned value (plain data, decoded on the trusted side) against the
    expected value (``json.loads`` of the test's output)."""
    if isinstance(got, tuple):
        got = list(got)
    if strict and not same_shape(got, want):
        return False
    if comparator == "tolerant":
        return _tolerant_equal(got, want)
    return got == want
