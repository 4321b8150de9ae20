"""A small tokenizer trained once per test session (milliseconds)."""

from __future__ import annotations

import pytest

from hrmcode.model.tokenizer import CodeTokenizer
from tests.one_thread import _one_thread  # noqa: F401 (an autouse fixture)

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
