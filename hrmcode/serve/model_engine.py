"""``ModelEngine``: the serve ``Engine`` on a loaded checkpoint (full precision or quantized).

Generation is exactly the library's (``hrmcode.model.generate``): the same prompt and sampling
settings give the same tokens over HTTP as from ``generate()``. Completions prompts are encoded
as plain text (``tokenizer.encode``), as ``generate(model, tok, text)`` does, so a client that
wants the training template sends it itself; chat messages are rendered into the training
template (see ``chat_prompt``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.errors import InputError
from hrmcode.memory import release_freed
from hrmcode.model.generate import GenerationConfig, GenerationRun
from hrmcode.serve.engine import Completion, SamplingParams

# OpenAI roles -> the tokenizer's role tokens; "developer" is OpenAI's newer name for "system".
_ROLE_TOKENS = {"system": "<|system|>", "developer": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


class ModelEngine:
    def __init__(self, loaded, model_id: str | None = None, chat_level: str | None = "solve"):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.config = loaded.config
        self.model_id = model_id or Path(loaded.path).name
        self.chat_level = chat_level
        if chat_level is not None:
            CodeTokenizer.format_prompt("", chat_level)  # refuses an unknown level now, not per request

    def chat_prompt(self, messages: list[tuple[str, str]]) -> str:
        """The training template ``<|LEVEL|><|user|>TEXT<|assistant|>`` for one user message.

        Other messages are rendered the same way: ``<|system|>TEXT``, ``<|user|>TEXT``, and
        earlier assistant turns as ``<|assistant|>TEXT<|eos|>`` (how targets end in training).
        """
        head = CodeTokenizer.format_prompt("", self.chat_level).removesuffix("<|user|><|assistant|>")
        parts = [head]
        for role, text in messages:
            if role not in _ROLE_TOKENS:
                raise InputError(f"messages with role '{role}' are not supported",
                                 "send system, developer, user and assistant messages")
            parts.append(_ROLE_TOKENS[role] + text + ("<|eos|>" if role == "assistant" else ""))
        return "".join(parts) + _ROLE_TOKENS["assistant"]

    def _config(self, params: SamplingParams) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                                stop=list(params.stop), seed=params.seed, use_cache=True)

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
        run = GenerationRun(self.model, self.tokenizer, prompt, self._config(params), should_stop)
        yield from run.pieces()
        release_freed()  # the generation's KV cache, so an idle server holds only the model
        result = run.result
        yield Completion(result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason)

    def complete(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Completion:
        *_pieces, done = self.stream(prompt, params, should_stop)
        return done
