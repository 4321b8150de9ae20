"""Training data: examples and corpus text -> token documents -> packed rows -> batches.

A document is a token sequence with a prompt part (no loss; the PrefixLM prefix) and a target
part (loss). Examples are rendered by the model's prompt format (``hrmcode.model.prompt``; new
models: ``<|LEVEL|><|user|>PROMPT<|assistant|>TARGET<|eos|>``) with the loss on
``TARGET<|eos|>``; corpus texts become ``TEXT<|eos|>`` cut into ``seq_len`` pieces with
the loss on every token. Rows are filled greedily with whole documents in order and padded;
attention never crosses documents (``doc_ids``).

Order: each epoch shuffles the documents with ``(seed, epoch)``; ``--curriculum`` orders them
by stage (1..4), shuffled within a stage. The stream position is (epoch, row), so a resumed run
continues with exactly the rows an uninterrupted run would have seen.

Guarantees: the same documents, seq_len, seed and curriculum flag give the same rows.
Not guaranteed: that documents longer than ``seq_len`` are used — examples that do not fit
are skipped and counted (``skipped_too_long``); corpus texts are cut instead.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import torch

from hrmcode.artifacts import Artifact
from hrmcode.data.examples import Example, parse_example
from hrmcode.errors import InputError
from hrmcode.jsonl import read_jsonl
from hrmcode.model.base import IGNORE
from hrmcode.model.prompt import DEFAULT_FORMAT, PromptFormat, prompt_format
from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.reporting import reporter


@dataclass
class Doc:
    ids: list[int]
    prompt_len: int
    stage: int = 1


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], IGNORE where no loss
    doc_ids: torch.Tensor  # [B, T]
    prefix_mask: torch.Tensor  # [B, T] bool: prompt tokens

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.labels, self.doc_ids, self.prefix_mask)))

    def shard(self, rank: int, world: int) -> "Batch":
        """Rows ``rank::world`` (one DDP process's share of a global batch)."""
        return Batch(*(t[rank::world] for t in (self.input_ids, self.labels, self.doc_ids, self.prefix_mask)))

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())


# -- reading --------------------------------------------------------------------------------
def read_examples(artifact: Artifact) -> list[Example]:
    name = "accepted.jsonl" if artifact.kind == "validated-examples" else "examples.jsonl"
    path = artifact.file(name)
    examples = [parse_example(record, f"{path}:{i}") for i, record in enumerate(read_jsonl(path), 1)]
    if not examples:
        raise InputError(f"{path} holds no examples", "run `hrmcode validate` on a non-empty examples artifact")
    return examples


def read_corpus(artifact: Artifact) -> list[dict]:
    path = artifact.file("corpus.jsonl")
    records = []
    for i, record in enumerate(read_jsonl(path), 1):
        if not isinstance(record.get("text"), str):
            raise InputError(f"{path}:{i}: corpus record has no text", "rerun `hrmcode fetch code`")
        records.append(record)
    if not records:
        raise InputError(f"{path} holds no documents", "fetch a non-empty corpus")
    return records


def corpus_is_heldout(record: dict) -> bool:
    """A fixed ~5% of corpus documents (by content hash) is held out for evaluation."""
    key = record.get("sha256") or hashlib.sha256(record["text"].encode("utf-8")).hexdigest()
    return int(str(key)[:8], 16) % 20 == 0


def example_texts(examples: list[Example]) -> list[str]:
    return [t for ex in examples for t in (ex.input.text, ex.target)]


# -- encoding -------------------------------------------------------------------------------
@dataclass
class EncodedSet:
    docs: list[Doc] = field(default_factory=list)
    skipped_too_long: int = 0


def encode_examples(examples: list[Example], tok: CodeTokenizer, seq_len: int,
                    prompt: PromptFormat = prompt_format(DEFAULT_FORMAT)) -> EncodedSet:
    """``prompt``: the format of the model being trained (its ``config.prompt``)."""
    encoded = EncodedSet()
    for ex in examples:
        ids, prompt_len = prompt.encode_example(tok, ex.input.text, ex.target, ex.level)
        if len(ids) > seq_len:
            encoded.skipped_too_long += 1
            continue
        encoded.docs.append(Doc(ids, prompt_len, ex.stage))
    return encoded


def encode_corpus(records: list[dict], tok: CodeTokenizer, seq_len: int) -> EncodedSet:
    encoded = EncodedSet()
    for record in records:
        ids = tok.encode(record["text"]) + [tok.eos_id]
        for start in range(0, len(ids), seq_len):
            piece = ids[start:start + seq_len]
            if len(piece) > 1:  # a lone token has nothing to predict inside its document
                encoded.docs.append(Doc(piece, 0))
    return encoded


# -- packing --------------------------------------------------------------------------------
def pack(docs: list[Doc], seq_len: int, pad_id: int) -> list[tuple[list[int], list[int], list[int], list[bool]]]:
    """Greedy in-order packing into rows of exactly ``seq_len`` (ids, labels, doc ids, prefix flags)."""
    rows = []
    ids: list[int] = []
    labels: list[int] = []
    docs_of: list[int] = []
    prefix: list[bool] = []

    def flush() -> None:
        pad = seq_len - len(ids)
        pad_doc = (docs_of[-1] + 1) if docs_of else 0
        rows.append((ids + [pad_id] * pad, labels + [IGNORE] * pad, docs_of + [pad_doc] * pad, prefix + [False] * pad))

    n_in_row = 0
    for doc in docs:
        if ids and len(ids) + len(doc.ids) > seq_len:
            flush()
            ids, labels, docs_of, prefix, n_in_row = [], [], [], [], 0
        ids += doc.ids
        # The first token of a document is never a target: nothing in its document precedes it.
        labels += [IGNORE] * max(doc.prompt_len, 1) + doc.ids[max(doc.prompt_len, 1):]
        docs_of += [n_in_row] * len(doc.ids)
        prefix += [True] * doc.prompt_len + [False] * (len(doc.ids) - doc.prompt_len)
        n_in_row += 1
    if ids:
        flush()
    return rows


def collate(rows: list[tuple[list[int], list[int], list[int], list[bool]]]) -> Batch:
    ids, labels, docs, prefix = zip(*rows)
    return Batch(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long),
                 torch.tensor(docs, dtype=torch.long), torch.tensor(prefix, dtype=torch.bool))


class RowStream:
    """An endless, resumable stream of packed rows over epochs of one document set."""

    def __init__(self, docs: list[Doc], seq_len: int, pad_id: int, seed: int, curriculum: bool):
        if not docs:
            raise InputError("no training documents fit the sequence length", "raise --seq-len or check the data")
        self.docs, self.seq_len, self.pad_id, self.seed, self.curriculum = docs, seq_len, pad_id, seed, curriculum
        self.epoch, self.row = 0, 0
        self._rows = self._epoch_rows(0)

    def _epoch_rows(self, epoch: int) -> list:
        order = list(range(len(self.docs)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        if self.curriculum:
            order.sort(key=lambda i: self.docs[i].stage)  # stable: shuffled within a stage
        return pack([self.docs[i] for i in order], self.seq_len, self.pad_id)

    def next_batch(self, size: int) -> Batch:
        taken = []
        while len(taken) < size:
            if self.row >= len(self._rows):
                self.epoch, self.row = self.epoch + 1, 0
                self._rows = self._epoch_rows(self.epoch)
            take = min(size - len(taken), len(self._rows) - self.row)
            taken += self._rows[self.row:self.row + take]
            self.row += take
        return collate(taken)

    def state(self) -> dict:
        return {"epoch": self.epoch, "row": self.row}

    def restore(self, state: dict) -> None:
        self.epoch, self.row = int(state["epoch"]), int(state["row"])
        self._rows = self._epoch_rows(self.epoch)


def eval_batches(docs: list[Doc], seq_len: int, pad_id: int, max_rows: int, batch_size: int) -> list[Batch]:
    rows = pack(docs, seq_len, pad_id)[:max_rows]
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def log_skipped(kind: str, skipped: int, total: int, seq_len: int) -> None:
    if skipped:
        reporter().warn(f"{skipped} of {total} {kind} examples are longer than --seq-len {seq_len} tokens and are skipped")
