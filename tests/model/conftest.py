"""A small tokenizer trained once per test session (milliseconds)."""

from __future__ import annotations

import pytest
import torch

from hrmcode.data.tokenizer import CodeTokenizer

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    "class Stack:\n    def push(self, x):\n        self.items.append(x)\n",
] * 20


@pytest.fixture(scope="session")
def tok_texts() -> list[str]:
    return TEXTS


@pytest.fixture(scope="session")
def tok() -> CodeTokenizer:
    return CodeTokenizer.train(TEXTS, vocab_size=320)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin contention."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
