"""Text generation for one prompt: greedy or sampled, with stop sequences and a KV cache.

Guarantees: greedy decoding (``temperature == 0``) and seeded sampling are deterministic;
cached and uncached generation compute the same logits up to float rounding (the cache keeps
one key/value set per recurrent module call, see ``hrmcode.model.kvcache.KVCache``), so they
give the same tokens. A model with ``kv_dtype`` float16 (int8 models) stores keys and values
rounded to float16, which uncached generation does not: tokens can differ where two are
nearly tied. The prompt is the PrefixLM prefix when the model was built with
``prefix_bidirectional``. Runs under ``torch.no_grad()`` (not ``inference_mode``, which
breaks quantized int4 weights) and in eval mode, restoring the model's mode afterwards.

Compute budget (hrm/trm only): ``max_segments`` and ``halt_threshold`` become the prompt's
``HaltPolicy`` (``hrmcode.model.halting``). The model decides on the prompt how many segments the
request runs, and every later token runs that many (a KV cache holds every segment for every
position); the uncached path passes the prompt length each step, so it decides on the same
positions and runs the same count. ``GenerationResult.segments`` reports it. A budget for a model
without segments (transformer, ut), or a threshold for a ``fixed``-mode model, is a ``UsageError``
before anything runs.

For timing, ``GenerationConfig(ignore_eos=True)`` generates exactly ``max_new_tokens`` tokens (fewer
only at a stop sequence or the end of the context), as llama.cpp's ``--ignore-eos`` does; the
token-level ``next_tokens`` never stops by itself.

Not guaranteed: batching several prompts here (one prompt per call; ``hrmcode.serve.batching``
decodes concurrent requests together), contexts longer than the
model's ``max_seq_len`` (a longer prompt is refused; generation stops there with
``finish_reason == "length"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from hrmcode.errors import InputError
from hrmcode.model.base import model_device
from hrmcode.model.config import RECURRENT, ModelConfig
from hrmcode.model.halting import HaltPolicy, check_budget
from hrmcode.model.kvcache import KVCache


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    use_cache: bool = True
    ignore_eos: bool = False  # generate past EOS (fixed-length runs for timing); EOS then appears in token_ids
    max_segments: int | None = None  # hrm/trm: most segments the request runs (None: the model's own count)
    halt_threshold: float | None = None  # act models: halt once sigmoid(q_halt) >= this (None: the trained rule)


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (stop sequence, EOS or should_stop) or "length"
    segments: int | None = None  # segments the request ran (hrm/trm); None for models without segments


def halt_policy(config: ModelConfig, max_segments: int | None, threshold: float | None) -> HaltPolicy | None:
    """The compute budget for a model of ``config`` (None when neither bound is given); a ``UsageError``
    for a budget that model cannot honour."""
    if max_segments is None and threshold is None:
        return None
    check_budget(config, threshold)
    return HaltPolicy(max_segments=max_segments, threshold=threshold)


def prefill(model: torch.nn.Module, ids: Sequence[int], cfg: GenerationConfig, cache: KVCache | None,
            prompt_length: int | None = None) -> tuple[torch.Tensor, int | None]:
    """The forward of ``ids`` (the prompt, then any tokens generated: ``prompt_length``, default all, are
    the prompt) under the request's budget: the last position's logits, and the segments the request
    runs (None for a model without segments). With ``cache``, later tokens run that count."""
    device = model_device(model)
    budget = {"halt": halt_policy(model.config, cfg.max_segments, cfg.halt_threshold)} \
        if model.config.arch in RECURRENT else {}
    prefix = torch.tensor([len(ids) if prompt_length is None else prompt_length], device=device)
    out = model(torch.tensor([list(ids)], device=device), prefix_lens=prefix, cache=cache, **budget)
    return out.logits[0, -1], None if out.segments is None else int(out.segments[0])


SegmentsSeen = Callable[[int | None], None]  # told the segments a request runs, once, before its first token


def pick_token(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator) -> int:
    if cfg.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.double().cpu() / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs[before >= cfg.top_p] = 0.0  # keep the smallest head whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def next_tokens(model: torch.nn.Module, prompt_ids: Sequence[int], cfg: GenerationConfig,
                segments_seen: SegmentsSeen | None = None) -> Iterator[int]:
    """Token ids one at a time; each forward pass runs only when the next token is asked for.

    Ignores EOS, stop sequences and ``max_new_tokens`` (which only sizes the cache): it stops only at the
    model's context. Call under ``torch.no_grad()`` with the model in eval mode (``generate`` does both).
    ``segments_seen`` is told the segments the prompt chose, before the first token.
    """
    device = model_device(model)
    max_len = model.config.max_seq_len
    generator = torch.Generator().manual_seed(cfg.seed)
    ids = list(prompt_ids)
    cache = KVCache(min(len(ids) + cfg.max_new_tokens, max_len), getattr(model, "kv_dtype", None)) if cfg.use_cache \
        else None
    logits, segments = prefill(model, ids, cfg, cache)
    if segments_seen is not None:
        segments_seen(segments)
    prompt_length = len(ids)
    while True:
        token = pick_token(logits, cfg, generator)
        yield token
        ids.append(token)
        if len(ids) >= max_len:
            return
        if cache is not None:  # runs the segments the prompt chose (cache.row_segments)
            logits = model(torch.tensor([[token]], device=device), cache=cache).logits[0, -1]
        else:  # decides again on the same prompt positions: the same count
            logits, _ = prefill(model, ids, cfg, None, prompt_length)


# (model, prompt ids, config, segments_seen) -> token ids
TokenSource = Callable[[torch.nn.Module, Sequence[int], GenerationConfig, SegmentsSeen | None], Iterator[int]]


class GenerationRun:
    """One generation: ``pieces()`` yields text pieces, then ``.result`` holds the ``GenerationResult``
    (for callers that stream and also need the token counts and finish reason).

    ``tokens`` produces the token ids (``next_tokens`` by default: this thread runs the model; a
    serving batch passes its own, fed by the thread that decodes every request together). The
    text, stop sequences, EOS and ``max_new_tokens`` are handled here either way; closing the
    iterator it returns tells that source the generation has ended."""

    def __init__(self, model, tokenizer, prompt: str | Sequence[int], cfg: GenerationConfig,
                 should_stop: Callable[[], bool] | None, tokens: TokenSource = next_tokens):
        self.model, self.tokenizer, self.cfg, self.tokens = model, tokenizer, cfg, tokens
        self.prompt_ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.should_stop = should_stop or (lambda: False)
        self.result: GenerationResult | None = None
        self.segments: int | None = None  # what the token source reports the prompt chose
        halt_policy(model.config, cfg.max_segments, cfg.halt_threshold)  # a budget it cannot honour: refused now
        if not self.prompt_ids:
            raise InputError("the prompt is empty", "give at least one token of prompt")
        limit = model.config.max_seq_len
        if len(self.prompt_ids) >= limit:
            raise InputError(f"the prompt has {len(self.prompt_ids)} tokens, the model's context is {limit}",
                             "shorten the prompt")

    def pieces(self) -> Iterator[str]:
        cfg, tok = self.cfg, self.tokenizer
        hold = max((len(s) for s in cfg.stop if s), default=1) - 1  # a stop may still be forming in the tail
        generated: list[int] = []
        emitted = 0
        text = ""
        finish = "length"
        was_training = self.model.training
        self.model.eval()
        stream = self.tokens(self.model, self.prompt_ids, cfg, self._seen) if cfg.max_new_tokens > 0 else iter(())
        try:
            with torch.no_grad():
                for token in stream:
                    if token == tok.eos_id and not cfg.ignore_eos:
                        finish = "stop"
                        break
                    generated.append(token)
                    text = tok.decode(generated)
                    cut = min((i for i in (text.find(s) for s in cfg.stop if s) if i >= 0), default=-1)
                    if cut >= 0:
                        text, finish = text[:cut], "stop"
                        break
                    safe = len(text.rstrip("\ufffd")) - hold  # never split a multi-byte character
                    if safe > emitted:
                        yield text[emitted:safe]
                        emitted = safe
                    if len(generated) >= cfg.max_new_tokens:
                        break
                    if self.should_stop():
                        finish = "stop"
                        break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            self.model.train(was_training)
        if len(text) > emitted:
            yield text[emitted:]
        self.result = GenerationResult(text=text, token_ids=generated, prompt_tokens=len(self.prompt_ids),
                                       completion_tokens=len(generated), finish_reason=finish,
                                       segments=self.segments)

    def _seen(self, segments: int | None) -> None:
        self.segments = segments


def generate(model, tokenizer, prompt: str | Sequence[int], cfg: GenerationConfig | None = None) -> GenerationResult:
    """Generate a completion of ``prompt`` (text, encoded as is, or token ids: ``config.prompt.encode(...)``)."""
    run = GenerationRun(model, tokenizer, prompt, cfg or GenerationConfig(), None)
    for _ in run.pieces():
        pass
    return run.result


def stream_generate(model, tokenizer, prompt: str | Sequence[int], cfg: GenerationConfig | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """Text pieces as they are produced; stops early when ``should_stop()`` returns True."""
    run = GenerationRun(model, tokenizer, prompt, cfg or GenerationConfig(), should_stop)
    yield from run.pieces()
