"""``ModelEngine``: the serve ``Engine`` on a loaded checkpoint (full precision or quantized).

Generation is the library's (``hrmcode.model.generate``): the same prompt and sampling settings
give the same tokens over HTTP as from ``generate()`` (with batching, up to float rounding: see
``hrmcode.serve.batching``). Completions prompts are encoded
as plain text (``tokenizer.encode``), as ``generate(model, tok, text)`` does, so a client that
wants the training template sends it itself; chat messages are rendered by the checkpoint's own
prompt format (``config.prompt``), the renderer ``eval --model checkpoint:`` uses too, so a chat
request gives the same prompt ids here as in that eval.

Compute budget (hrm/trm models): a request's ``max_segments`` and ``halt_threshold``, each defaulting
to the server's, become the generation's ``HaltPolicy``; a request may ask for at most the larger of
the model's own segment count and the server's ``--max-segments``. The segments a generation ran
come back in its ``Completion``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from hrmcode.errors import InputError
from hrmcode.memory import release_freed
from hrmcode.model.generate import GenerationConfig, GenerationRun, halt_policy
from hrmcode.model.prompt import CHAT_LEVEL, check_level
from hrmcode.serve.batching import BatchDecoder
from hrmcode.serve.engine import Completion, SamplingParams


class ModelEngine:
    """``max_batch`` > 1: concurrent generations are decoded together (``serve.batching``); 1: each
    runs alone in its caller's thread."""

    def __init__(self, loaded, model_id: str | None = None, chat_level: str | None = CHAT_LEVEL, max_batch: int = 1,
                 max_segments: int | None = None, halt_threshold: float | None = None):
        halt_policy(loaded.config, max_segments, halt_threshold)  # a default the model cannot honour: refused now
        self.max_segments, self.halt_threshold = max_segments, halt_threshold
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.config = loaded.config
        self.model_id = model_id or Path(loaded.path).name
        self.chat_level = chat_level
        check_level(chat_level)  # refuses an unknown level now, not per request
        self.model.eval()
        self.batch = BatchDecoder(self.model, self.tokenizer.eos_id, max_batch) if max_batch > 1 else None

    def chat_prompt(self, messages: list[tuple[str, str]]) -> str:
        """The checkpoint's prompt format around (role, text) messages, starting with ``chat_level``."""
        return self.config.prompt.render_chat(messages, self.chat_level)

    def _config(self, params: SamplingParams) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                                stop=list(params.stop), seed=params.seed, use_cache=True,
                                max_segments=self.max_segments if params.max_segments is None else params.max_segments,
                                halt_threshold=self.halt_threshold if params.halt_threshold is None
                                else params.halt_threshold)

    def check_budget(self, max_segments: int | None, halt_threshold: float | None) -> None:
        """``UsageError`` for a budget the model cannot honour; ``InputError`` for more segments than allowed."""
        segments = self.max_segments if max_segments is None else max_segments
        halt_policy(self.config, segments, self.halt_threshold if halt_threshold is None else halt_threshold)
        limit = max(self.config.segments, self.max_segments or 0)
        if segments is not None and segments > limit:
            raise InputError(f"max_segments is {segments}, over this server's limit of {limit} segments",
                             f"ask for at most {limit}, or start the server with a higher --max-segments")

    def check_prompt(self, prompt: str) -> int:
        """The prompt's token count; ``InputError`` when it is empty or does not fit the context."""
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise InputError("the prompt is empty", "send at least one token of prompt")
        limit = self.config.max_seq_len
        if len(ids) >= limit:
            raise InputError(f"the prompt has {len(ids)} tokens, the model's context is {limit}", "shorten the prompt")
        return len(ids)

    def stream(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Iterator[str | Completion]:
        if self.batch is None:
            run = GenerationRun(self.model, self.tokenizer, prompt, self._config(params), should_stop)
        else:
            run = GenerationRun(self.model, self.tokenizer, prompt, self._config(params), should_stop,
                                tokens=self.batch.tokens)
        yield from run.pieces()
        if self.batch is None:  # (a batch hands memory back itself, once its last row has left)
            release_freed()  # the generation's KV cache, so an idle server holds only the model
        result = run.result
        yield Completion(result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason,
                         result.segments)

    def complete(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Completion:
        *_pieces, done = self.stream(prompt, params, should_stop)
        return done
