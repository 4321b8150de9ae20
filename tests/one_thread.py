"""Autouse fixtures for tests that run tiny models: ``_one_thread`` (import it into a directory's
conftest.py) and ``_one_thread_module`` (import it into a test module whose module-scoped fixtures
build or run models too)."""

from __future__ import annotations

import pytest
import torch


def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin contention."""
    yield from _single_thread()


@pytest.fixture(scope="module", autouse=True)
def _one_thread_module():
    """The same for a whole module, its module-scoped fixtures included."""
    yield from _single_thread()
