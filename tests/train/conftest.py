"""Tiny example artifacts written by the tests themselves (no shared data, no benchmarks)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from hrmcode.artifacts import ArtifactWriter
from tests.one_thread import _one_thread  # noqa: F401 (an autouse fixture)

LEVELS = ("solve", "plan", "edit")


def toy_examples(n_train: int = 48, n_heldout: int = 8, seed: int = 0) -> list[dict]:
    """Small code-ish tasks: reverse a word list, add two numbers, rename a function."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    records = []
    for i in range(n_train + n_heldout):
        kind = i % 3
        if kind == 0:
            items = rng.sample(words, 3)
            prompt, target = f"def f():\n    return {items!r}[::-1]\n", repr(items[::-1])
        elif kind == 1:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            prompt, target = f"print({a} + {b})", str(a + b)
        else:
            old, new = rng.sample(words, 2)
            prompt, target = f"rename {old} to {new}:\ndef {old}(x):\n    return x", f"def {new}(x):\n    return x"
        records.append({
            "id": f"toy/{i}", "task_id": f"toy-task/{i}", "source": "toy", "level": LEVELS[kind],
            "input": {"text": prompt, "context": {}}, "target": target, "language": "python",
            "stage": 1 + i % 4, "split": "train" if i < n_train else "heldout",
            "provenance": {"inputs": [], "rule": "tests/toy", "model_written": False},
        })
    return records


def write_examples(path: Path, records: list[dict], kind: str = "validated-examples"):
    file_name = "accepted.jsonl" if kind == "validated-examples" else "examples.jsonl"
    with ArtifactWriter(path, kind, name="toy", update_latest=False) as writer:
        writer.write_jsonl(file_name, records)
        return writer.finish({"count": len(records)})


def write_corpus(path: Path, texts: list[str]):
    records = [{"id": f"c/{i}", "path": f"f{i}.py", "language": "python", "text": t,
                "sha256": hashlib.sha256(t.encode()).hexdigest()} for i, t in enumerate(texts)]
    with ArtifactWriter(path, "corpus", name="toycorpus", update_latest=False) as writer:
        writer.write_jsonl("corpus.jsonl", records)
        return writer.finish({"count": len(records)})


@pytest.fixture
def toy_artifact(tmp_path: Path):
    return write_examples(tmp_path / "examples", toy_examples())


@pytest.fixture
def toy():
    """The helpers, for tests that build their own artifacts."""
    return type("Toy", (), {"examples": staticmethod(toy_examples), "write_examples": staticmethod(write_examples),
                            "write_corpus": staticmethod(write_corpus)})
