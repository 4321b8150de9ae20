"""A tiny seeded model artifact with its examples artifact (train + heldout), built in seconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from hrmcode.artifacts import ArtifactWriter
from hrmcode.model import build_model, preset
from hrmcode.model.checkpoint import save_checkpoint
from hrmcode.model.tokenizer import CodeTokenizer

SNIPPETS = [
    ("add two numbers", "def add(a, b):\n    return a + b\n"),
    ("reverse a string", "def rev(s):\n    return s[::-1]\n"),
    ("square a number", "def square(x):\n    return x * x\n"),
    ("is n even", "def is_even(n):\n    return n % 2 == 0\n"),
    ("max of a list", "def biggest(xs):\n    return max(xs)\n"),
    ("count words", "def words(s):\n    return len(s.split())\n"),
    ("absolute value", "def absolute(x):\n    return x if x >= 0 else -x\n"),
    ("join with commas", "def join(xs):\n    return ','.join(xs)\n"),
]


def example(i: int, prompt: str, target: str, split: str) -> dict:
    return {"id": f"ex-{i}", "task_id": f"task-{i}", "source": "unit", "level": "solve",
            "input": {"text": prompt, "context": {}}, "target": target, "language": "python", "stage": 1,
            "split": split, "provenance": {"inputs": [], "rule": "unit/fixture", "model_written": False}}


def make_tiny_model(root: Path, seed: int = 0, arch: str = "hrm", max_seq_len: int = 256) -> Path:
    """Write ``root/examples`` and ``root/model`` artifacts; return the model artifact path."""
    records = [example(i, p, t, "heldout" if i % 2 else "train") for i, (p, t) in enumerate(SNIPPETS)]
    with ArtifactWriter(root / "examples", "examples", update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", records)
        examples = writer.finish()
    tokenizer = CodeTokenizer.train([p + t for p, t in SNIPPETS] * 4, vocab_size=300)
    torch.manual_seed(seed)
    model = build_model(preset("tiny", arch=arch, vocab_size=tokenizer.vocab_size, max_seq_len=max_seq_len))
    with ArtifactWriter(root / "model", "model", inputs=[examples], update_latest=False) as writer:
        save_checkpoint(writer.stage, model, tokenizer)
        for name in ("model.safetensors", "config.json", "tokenizer.json"):
            writer.add(name)
        writer.finish()
    return root / "model"


def make_corpus_model(root: Path, documents: int = 60, seed: int = 0) -> Path:
    """Write ``root/corpus`` and ``root/model``, a model pretrained on that corpus alone (no examples artifact)."""
    texts = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(documents)]
    records = [{"id": f"c/{i}", "path": f"f{i}.py", "language": "python", "text": t,
                "sha256": hashlib.sha256(t.encode()).hexdigest()} for i, t in enumerate(texts)]
    with ArtifactWriter(root / "corpus", "corpus", update_latest=False) as writer:
        writer.write_jsonl("corpus.jsonl", records)
        corpus = writer.finish({"count": len(records)})
    tokenizer = CodeTokenizer.train(texts, vocab_size=300)
    torch.manual_seed(seed)
    model = build_model(preset("tiny", vocab_size=tokenizer.vocab_size, max_seq_len=128))
    with ArtifactWriter(root / "model", "model", inputs=[corpus], update_latest=False) as writer:
        for name in save_checkpoint(writer.stage, model, tokenizer):
            writer.add(name)
        writer.finish()
    return root / "model"
