"""The code tokenizer: a byte-level BPE (Hugging Face ``tokenizers``) with role/level specials.

Guarantees: any text round-trips (``decode(encode(t)) == t`` for text without special-token
strings: byte-level, no normalisation, no added prefix space); training on the same texts in
the same order with the same vocabulary size gives the same ``tokenizer.json`` bytes; the
special tokens have fixed ids 0..N-1 in ``SPECIAL_TOKENS`` order (``<|pad|>`` = 0,
``<|eos|>`` = 1). How prompts are laid out in those tokens is ``hrmcode.model.prompt``'s.

Not guaranteed: that special-token strings inside ordinary text stay text (they are read as
the special tokens, which is what lets a caller write a prompt template by hand).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from hrmcode.atomic import write_text
from hrmcode.errors import CheckpointError, UsageError

ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
LEVEL_TOKENS = ("<|plan|>", "<|edit|>", "<|tool|>", "<|coord|>", "<|solve|>")
SPECIAL_TOKENS = ("<|pad|>", "<|eos|>", *ROLE_TOKENS, *LEVEL_TOKENS)
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
FILENAME = "tokenizer.json"


class CodeTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise CheckpointError("the tokenizer lacks hrmcode's special tokens at ids 0..9",
                                  "train one with `hrmcode train` or pass a tokenizer.json written by hrmcode")
        self.pad_id = 0
        self.eos_id = 1

    # -- construction ------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> "CodeTokenizer":
        if vocab_size < MIN_VOCAB:
            raise UsageError(f"vocab size {vocab_size} is below the byte-level minimum {MIN_VOCAB}",
                             f"use --vocab-size {MIN_VOCAB} or more")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path | str) -> "CodeTokenizer":
        """From a ``tokenizer.json`` file, or a directory holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise CheckpointError(f"{path}: no such tokenizer file", "pass a tokenizer.json or a checkpoint directory")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception for bad JSON
            raise CheckpointError(f"{path}: not a valid tokenizer ({' '.join(str(exc).split())[:120]})",
                                  "retrain it or copy it again") from None
        return cls(tok)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        return write_text(path, self.to_json())

    def to_json(self) -> str:
        return self._tok.to_str(pretty=False)

    # -- use ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def token_id(self, token: str) -> int:
        found = self._tok.token_to_id(token)
        if found is None:
            raise KeyError(token)
        return found

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
