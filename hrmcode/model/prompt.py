"""The one prompt renderer: how a prompt, or a chat, becomes the token ids a model was trained on.

A checkpoint names its format in ``config.json`` (``ModelConfig.prompt_format``); train writes
it, and everything that prompts a checkpoint reads it back through ``config.prompt``: train's own
sampling and held-out data, quantize's measurements, ``eval --model checkpoint:`` and ``serve``.
A ``config.json`` without the entry (written before formats were stored) gets ``hrmcode-v1``,
the template every such checkpoint was trained on.

``hrmcode-v1``: a training example is ``<|LEVEL|><|user|>PROMPT<|assistant|>TARGET<|eos|>``
(the level token optional); the loss is on ``TARGET<|eos|>``. A chat is the same template with
one role token per message: ``<|system|>TEXT`` (OpenAI's ``developer`` is a system message),
``<|user|>TEXT``, earlier assistant turns as ``<|assistant|>TEXT<|eos|>`` (how targets end), then
``<|assistant|>``. So a chat of one user message renders exactly like a plain prompt.

A conversation to train on (a recorded agent trajectory) is the same chat rendered through its
last assistant turn, without the open ``<|assistant|>`` after it: ``encode_conversation`` gives its
ids and a loss mask that is true exactly on each assistant turn's ``TEXT<|eos|>``. So the ids
before each assistant turn's text are exactly ``encode_chat`` of the messages before it (what the
model was prompted with at that step), and a conversation of one user and one assistant message
encodes exactly like ``encode_example`` of that prompt and target, with the same loss.

Guarantees: the ids are the tokenizer's encoding of the rendered text, so a client that sends
the rendered text to a plain completion gets the same ids. Not guaranteed: that special-token
strings inside message text stay text (the tokenizer reads them as the special tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hrmcode.errors import InputError, UsageError
from hrmcode.model.tokenizer import LEVEL_TOKENS, CodeTokenizer

DEFAULT_FORMAT = "hrmcode-v1"
CHAT_LEVEL = "solve"  # the level a chat starts with unless the caller picks another (or none)

# OpenAI roles -> the tokenizer's role tokens; "developer" is OpenAI's newer name for "system".
_ROLE_TOKENS = {"system": "<|system|>", "developer": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
_END_OF_TURN = {"assistant": "<|eos|>"}


def check_level(level: str | None) -> None:
    """``UsageError`` unless ``level`` is None or one of the tokenizer's level names."""
    if level is not None and f"<|{level}|>" not in LEVEL_TOKENS:
        raise UsageError(f"unknown level {level!r}", f"use one of {', '.join(t[2:-2] for t in LEVEL_TOKENS)}")


@dataclass(frozen=True)
class PromptFormat:
    name: str

    # -- text ------------------------------------------------------------------------------
    def render_chat(self, messages: Sequence[tuple[str, str]], level: str | None = CHAT_LEVEL) -> str:
        """(role, text) messages as the prompt text, ending where the model's reply starts."""
        check_level(level)
        parts = [f"<|{level}|>" if level is not None else ""]
        for role, text in messages:
            if role not in _ROLE_TOKENS:
                raise InputError(f"messages with role '{role}' are not supported",
                                 "send system, developer, user and assistant messages")
            parts.append(_ROLE_TOKENS[role] + text + _END_OF_TURN.get(role, ""))
        return "".join(parts) + _ROLE_TOKENS["assistant"]

    def render(self, text: str, level: str | None = None) -> str:
        """The training template around one prompt: the chat of that one user message."""
        return self.render_chat([("user", text)], level)

    # -- ids -------------------------------------------------------------------------------
    def encode_chat(self, tok: CodeTokenizer, messages: Sequence[tuple[str, str]],
                    level: str | None = CHAT_LEVEL) -> list[int]:
        return tok.encode(self.render_chat(messages, level))

    def encode(self, tok: CodeTokenizer, text: str, level: str | None = None) -> list[int]:
        return tok.encode(self.render(text, level))

    def encode_example(self, tok: CodeTokenizer, prompt: str, target: str, level: str | None = None
                       ) -> tuple[list[int], int]:
        """(prompt ids + target ids + eos, number of prompt ids)."""
        prompt_ids = self.encode(tok, prompt, level)
        return prompt_ids + tok.encode(target) + [tok.eos_id], len(prompt_ids)

    def encode_conversation(self, tok: CodeTokenizer, messages: Sequence[tuple[str, str]],
                            level: str | None = CHAT_LEVEL) -> tuple[list[int], list[bool]]:
        """(ids, loss mask) of a conversation through its last assistant turn (later turns are
        dropped: nothing follows them to learn). The mask is true on each assistant turn's text
        and its ``<|eos|>``, false on the level, role tokens, system and user turns. ``InputError``
        when there is no assistant turn."""
        last = max((i for i, (role, _) in enumerate(messages) if role == "assistant"), default=None)
        if last is None:
            raise InputError("a conversation to train on needs an assistant turn", "drop conversations without a reply")
        rendered = self.render_chat(messages[:last + 1], level).removesuffix(_ROLE_TOKENS["assistant"])
        ids: list[int] = tok.encode(f"<|{level}|>") if level is not None else []
        mask = [False] * len(ids)
        for role, text in messages[:last + 1]:
            head = tok.encode(_ROLE_TOKENS[role])
            body = tok.encode(text + _END_OF_TURN.get(role, ""))
            ids += head + body
            mask += [False] * len(head) + [role == "assistant"] * len(body)
        # The mask is built turn by turn; it is only right if the turns' ids are the whole text's ids.
        if ids != tok.encode(rendered):
            raise InputError("this tokenizer encodes the conversation differently turn by turn than as one text",
                             "train a tokenizer whose special tokens split the text (hrmcode's do)")
        return ids, mask


FORMATS = {DEFAULT_FORMAT: PromptFormat(DEFAULT_FORMAT)}


def prompt_format(name: str) -> PromptFormat:
    """The format called ``name``; ``UsageError`` for a name this hrmcode does not know."""
    if name not in FORMATS:
        raise UsageError(f"unknown prompt format {name!r}", f"this hrmcode knows {', '.join(FORMATS)}")
    return FORMATS[name]
