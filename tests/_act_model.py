"""A tiny ACT model artifact whose Q head halts different prompts after different numbers of
segments (a random Q head instead of the untrained one, which never halts), built in a second.
With the default seed, the prompts of ``PROMPTS`` halt after 1, 2 and 4 segments."""

from __future__ import annotations

from pathlib import Path

import torch

from hrmcode.artifacts import ArtifactWriter
from hrmcode.model import build_model, preset
from hrmcode.model.checkpoint import save_checkpoint
from hrmcode.model.tokenizer import CodeTokenizer
from tests.quantize.tiny import SNIPPETS, example

# one block per stack and one cycle each: a segment is two block applications, so tests stay fast
PROMPTS = [p for p, _ in SNIPPETS] + [t for _, t in SNIPPETS]
SMALL = dict(h_layers=1, l_layers=1, h_cycles=1, l_cycles=1, mode="act", halt_max_steps=4)


def act_model(vocab_size: int, seed: int = 2, arch: str = "hrm", max_seq_len: int = 128) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(preset("tiny", arch, vocab_size=vocab_size, max_seq_len=max_seq_len, **SMALL)).eval()
    with torch.no_grad():
        model.q_head.weight.normal_(0, 0.5)
        model.q_head.bias.zero_()
    return model


def make_act_model(root: Path, seed: int = 2, max_seq_len: int = 128) -> Path:
    """Write ``root/examples`` and ``root/model`` (a tiny act hrm); return the model artifact path."""
    records = [example(i, p, t, "heldout" if i % 2 else "train") for i, (p, t) in enumerate(SNIPPETS)]
    with ArtifactWriter(root / "examples", "examples", update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", records)
        examples = writer.finish()
    tokenizer = make_tokenizer()
    model = act_model(tokenizer.vocab_size, seed, max_seq_len=max_seq_len)
    with ArtifactWriter(root / "model", "model", inputs=[examples], update_latest=False) as writer:
        for name in save_checkpoint(writer.stage, model, tokenizer):
            writer.add(name)
        writer.finish()
    return root / "model"


def make_tokenizer() -> CodeTokenizer:
    return CodeTokenizer.train([p + t for p, t in SNIPPETS] * 4, vocab_size=300)
