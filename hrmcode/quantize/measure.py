"""Held-out measurements used to compare a checkpoint with its quantized version.

- ``heldout_loss``: token-weighted LM loss on the targets (prompt tokens are not scored), with
  the model's own prompt format (``config.prompt``, as train rendered them), sequences cut to the
  context.
- ``exact_match``: greedy generation from each prompt; a hit when the generated text equals the
  target (surrounding whitespace ignored).
- ``latency``: time to the first token (prefill + 1 token) and per further token (decode, KV
  cache), medians over a few held-out prompts after one warm-up run.
All run under ``torch.no_grad()`` (``inference_mode`` breaks quantized int4 weights). Numbers
are comparable between two models only when measured on the same examples in one process.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from hrmcode.data.examples import Example
from hrmcode.model.base import model_device
from hrmcode.model.checkpoint import LoadedModel
from hrmcode.model.generate import GenerationConfig, generate, next_tokens
from hrmcode.reporting import reporter

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    prompt_len: int
    target: str


def encode_examples(loaded: LoadedModel, examples: list[Example]) -> list[Encoded]:
    """Examples in ``loaded``'s prompt format whose prompt fits its context (with room for at least
    one target token)."""
    max_seq_len = loaded.config.max_seq_len
    encoded = []
    for ex in examples:
        ids, prompt_len = loaded.config.prompt.encode_example(loaded.tokenizer, ex.input.text, ex.target, ex.level)
        if prompt_len >= max_seq_len - 1:
            continue
        encoded.append(Encoded(ids[:max_seq_len], prompt_len, ex.target))
    return encoded


def encode_documents(loaded: LoadedModel, texts: list[str], prompt_tokens: int = 32) -> list[Encoded]:
    """Held-out corpus documents, tokenized as pretraining did (text + EOS), cut to the context: the first
    ``prompt_tokens`` (at most half the document) are the prompt, the rest the scored continuation."""
    tok, max_seq_len = loaded.tokenizer, loaded.config.max_seq_len
    encoded = []
    for text in texts:
        ids = (tok.encode(text) + [tok.eos_id])[:max_seq_len]
        if len(ids) < 2:
            continue
        prompt_len = min(prompt_tokens, len(ids) // 2)
        encoded.append(Encoded(ids, prompt_len, tok.decode(ids[prompt_len:])))
    return encoded


def forward_examples(model: torch.nn.Module, encoded: list[Encoded]) -> None:
    """One forward pass per example (for activation calibration)."""
    device = model_device(model)
    with torch.no_grad():
        for item in encoded:
            model(torch.tensor([item.ids], device=device), prefix_lens=torch.tensor([item.prompt_len], device=device))


def heldout_loss(model: torch.nn.Module, encoded: list[Encoded]) -> float:
    device = model_device(model)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), reporter().task("held-out loss", total=len(encoded)) as task:
        for item in encoded:
            ids = torch.tensor([item.ids], device=device)
            labels = ids.clone()
            labels[:, : item.prompt_len] = IGNORE
            out = model(ids, labels=labels, prefix_lens=torch.tensor([item.prompt_len], device=device))
            total += float(out.loss_sum)
            count += int(out.loss_count)
            task.advance()
    return total / count if count else float("nan")


def exact_match(model: torch.nn.Module, tokenizer, encoded: list[Encoded], slack_tokens: int = 8) -> float:
    hits = 0
    with reporter().task("exact match", total=len(encoded)) as task:
        for item in encoded:
            target_len = len(item.ids) - item.prompt_len
            cfg = GenerationConfig(max_new_tokens=target_len + slack_tokens, temperature=0.0)
            result = generate(model, tokenizer, item.ids[: item.prompt_len], cfg)
            hits += result.text.strip() == item.target.strip()
            task.advance()
    return hits / len(encoded) if encoded else float("nan")


def latency(model: torch.nn.Module, encoded: list[Encoded], new_tokens: int = 32, prompts: int = 4
            ) -> tuple[float, float] | None:
    """(first-token seconds, seconds per further token): medians over the first ``prompts`` prompts.

    Greedy decoding with the KV cache through ``next_tokens``, which does not stop at EOS, so
    every prompt times exactly ``new_tokens`` tokens. One warm-up run first. None without prompts.
    """
    chosen = encoded[:prompts]
    if not chosen or new_tokens < 2:
        return None
    cfg = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)
    first, per_token = [], []
    model.eval()
    with torch.no_grad():
        for item in [chosen[0], *chosen]:  # the first run warms up allocations and lazy kernels
            prompt = item.ids[: item.prompt_len]
            room = min(new_tokens, model.config.max_seq_len - len(prompt))
            tokens = next_tokens(model, prompt, cfg)
            start = time.perf_counter()
            next(tokens)
            after_first = time.perf_counter()
            for _ in range(room - 1):
                next(tokens)
            end = time.perf_counter()
            first.append(after_first - start)
            per_token.append((end - after_first) / max(room - 1, 1))
    return statistics.median(first[1:]), statistics.median(per_token[1:])
