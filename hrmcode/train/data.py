"""Training data: examples and corpus text -> token documents -> packed rows -> batches.

A document is a token sequence with a prompt part (no loss; the PrefixLM prefix) and a target
part (loss). Examples are rendered by the model's prompt format (``hrmcode.model.prompt``; new
models: ``<|LEVEL|><|user|>PROMPT<|assistant|>TARGET<|eos|>``) with the loss on
``TARGET<|eos|>``; corpus texts become ``TEXT<|eos|>`` cut into ``seq_len`` pieces with
the loss on every token. Rows are filled greedily with whole documents in order and padded;
attention never crosses documents (``doc_ids``).

Multi-turn examples (``messages``: recorded agent trajectories) are rendered by the same format
as the chat the acting model was prompted with (``PromptFormat.encode_conversation`` at the chat
level) and the loss is on the assistant turns only (each turn's text and ``<|eos|>``); the
system prompt, the task and every observation are context. Their PrefixLM prefix is the prompt
before the first reply (a model built with ``prefix_bidirectional`` so reads later observations
causally, where generation takes the whole chat so far as its prefix).

By ``reward`` (``--reward-weighting``; examples without a reward are never touched): ``mask``
leaves out every example whose reward is below 1 (a failed trajectory contributes no loss),
``weight`` multiplies each of its loss tokens by
``failed_weight + (1 - failed_weight) * reward`` (reward 0 -> ``failed_weight``, 1 -> 1; the step's
loss is still divided by the number of loss tokens, so a failed trajectory contributes exactly
that factor times what it would unweighted), ``none`` trains on every example alike. Held-out
loss is unweighted (examples left out by ``mask`` are left out there too).

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
from hrmcode.model.base import IGNORE, ModelOutput, shifted_token_loss
from hrmcode.model.prompt import CHAT_LEVEL, DEFAULT_FORMAT, PromptFormat, prompt_format
from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.reporting import reporter


REWARD_WEIGHTINGS = ("mask", "weight", "none")


@dataclass
class Doc:
    ids: list[int]
    prompt_len: int  # the PrefixLM prefix; the loss starts here unless ``loss_mask`` says otherwise
    stage: int = 1
    loss_mask: list[bool] | None = None  # a multi-turn document: loss exactly where true
    weight: float = 1.0  # each loss token's factor (``--reward-weighting weight``)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], IGNORE where no loss
    doc_ids: torch.Tensor  # [B, T]
    prefix_mask: torch.Tensor  # [B, T] bool: prompt tokens
    weights: torch.Tensor | None = None  # [B, T] float: each label's loss factor; None: all 1

    def _map(self, fn) -> "Batch":
        return Batch(*(fn(t) for t in (self.input_ids, self.labels, self.doc_ids, self.prefix_mask)),
                     weights=None if self.weights is None else fn(self.weights))

    def to(self, device: torch.device | str) -> "Batch":
        return self._map(lambda t: t.to(device))

    def rows(self, index: slice | torch.Tensor) -> "Batch":
        """The rows ``index`` picks (a slice or a tensor of row numbers), every field alike."""
        return self._map(lambda t: t[index])

    def shard(self, rank: int, world: int) -> "Batch":
        """Rows ``rank::world`` (one DDP process's share of a global batch)."""
        return self._map(lambda t: t[rank::world])

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
    """What a tokenizer for these examples is trained on: every text train will encode."""
    return [text for ex in examples
            for text in ([turn.content for turn in ex.messages] if ex.messages is not None
                         else [ex.input.text, ex.target])]


# -- encoding -------------------------------------------------------------------------------
@dataclass
class EncodedSet:
    docs: list[Doc] = field(default_factory=list)
    skipped_too_long: int = 0
    masked_by_reward: int = 0  # failed trajectories left out (their weight is 0: ``mask``, or ``weight`` at 0)


def reward_weight(reward: float | None, weighting: str, failed_weight: float) -> float:
    """The loss factor of an example with ``reward`` (0.0 = leave it out); see the module docstring."""
    if weighting not in REWARD_WEIGHTINGS:
        raise ValueError(f"unknown reward weighting {weighting!r}")
    if reward is None or weighting == "none":
        return 1.0
    if weighting == "mask":
        return 1.0 if reward >= 1.0 else 0.0
    return failed_weight + (1.0 - failed_weight) * reward


def encode_example(ex: Example, tok: CodeTokenizer, prompt: PromptFormat) -> Doc:
    """One example as a document: the chat of a multi-turn example, else prompt + target."""
    if ex.messages is not None:
        ids, mask = prompt.encode_conversation(tok, [(turn.role, turn.content) for turn in ex.messages], CHAT_LEVEL)
        return Doc(ids, mask.index(True), ex.stage, loss_mask=mask)
    ids, prompt_len = prompt.encode_example(tok, ex.input.text, ex.target, ex.level)
    return Doc(ids, prompt_len, ex.stage)


def encode_examples(examples: list[Example], tok: CodeTokenizer, seq_len: int,
                    prompt: PromptFormat = prompt_format(DEFAULT_FORMAT), *,
                    reward_weighting: str = "none", failed_weight: float = 0.0) -> EncodedSet:
    """``prompt``: the format of the model being trained (its ``config.prompt``)."""
    encoded = EncodedSet()
    for ex in examples:
        weight = reward_weight(ex.reward, reward_weighting, failed_weight)
        if weight == 0.0:
            encoded.masked_by_reward += 1
            continue
        doc = encode_example(ex, tok, prompt)
        if len(doc.ids) > seq_len:
            encoded.skipped_too_long += 1
            continue
        doc.weight = weight
        encoded.docs.append(doc)
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
Row = tuple  # (ids, labels, doc ids, prefix flags), and each label's weight when packed ``weighted``


def doc_labels(doc: Doc) -> list[int]:
    """The document's labels: its ids where it has loss, ``IGNORE`` elsewhere. The first token is
    never a target: nothing in its document precedes it."""
    if doc.loss_mask is not None:
        return [IGNORE] + [t if learned else IGNORE for t, learned in zip(doc.ids[1:], doc.loss_mask[1:])]
    return [IGNORE] * max(doc.prompt_len, 1) + doc.ids[max(doc.prompt_len, 1):]


def pack(docs: list[Doc], seq_len: int, pad_id: int, weighted: bool = False) -> list[Row]:
    """Greedy in-order packing into rows of exactly ``seq_len``: (ids, labels, doc ids, prefix flags),
    plus each position's weight when ``weighted``."""
    rows = []
    ids: list[int] = []
    labels: list[int] = []
    docs_of: list[int] = []
    prefix: list[bool] = []
    weights: list[float] = []

    def flush() -> None:
        pad = seq_len - len(ids)
        pad_doc = (docs_of[-1] + 1) if docs_of else 0
        row = (ids + [pad_id] * pad, labels + [IGNORE] * pad, docs_of + [pad_doc] * pad, prefix + [False] * pad)
        rows.append((*row, weights + [1.0] * pad) if weighted else row)

    n_in_row = 0
    for doc in docs:
        if ids and len(ids) + len(doc.ids) > seq_len:
            flush()
            ids, labels, docs_of, prefix, weights, n_in_row = [], [], [], [], [], 0
        ids += doc.ids
        labels += doc_labels(doc)
        docs_of += [n_in_row] * len(doc.ids)
        prefix += [True] * doc.prompt_len + [False] * (len(doc.ids) - doc.prompt_len)
        weights += [doc.weight] * len(doc.ids)
        n_in_row += 1
    if ids:
        flush()
    return rows


def collate(rows: list[Row]) -> Batch:
    """A batch of packed rows; it carries weights only when some row has a weight other than 1."""
    ids, labels, docs, prefix = (list(column) for column in zip(*(row[:4] for row in rows)))
    weights = [row[4] for row in rows if len(row) > 4]
    weighted = any(w != 1.0 for row in weights for w in row)
    return Batch(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long),
                 torch.tensor(docs, dtype=torch.long), torch.tensor(prefix, dtype=torch.bool),
                 torch.tensor([row[4] for row in rows], dtype=torch.float32) if weighted else None)


def step_loss_sum(out: ModelOutput, batch: Batch) -> torch.Tensor:
    """The loss sum a training step backpropagates: the model's own, or, when the batch carries
    weights, each label's cross entropy times its weight (the model's token loss, reweighted;
    ACT training's per-sequence loss cannot be, and ``hrmcode train`` refuses that combination)."""
    if batch.weights is None:
        return out.loss_sum
    ce, _valid, _correct = shifted_token_loss(out.logits, batch.labels)
    return (ce * batch.weights[:, 1:].to(ce.dtype)).sum()


class RowStream:
    """An endless, resumable stream of packed rows over epochs of one document set."""

    def __init__(self, docs: list[Doc], seq_len: int, pad_id: int, seed: int, curriculum: bool):
        if not docs:
            raise InputError("no training documents fit the sequence length", "raise --seq-len or check the data")
        self.docs, self.seq_len, self.pad_id, self.seed, self.curriculum = docs, seq_len, pad_id, seed, curriculum
        self.weighted = any(doc.weight != 1.0 for doc in docs)
        self.epoch, self.row = 0, 0
        self._rows = self._epoch_rows(0)

    def _epoch_rows(self, epoch: int) -> list:
        order = list(range(len(self.docs)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        if self.curriculum:
            order.sort(key=lambda i: self.docs[i].stage)  # stable: shuffled within a stage
        return pack([self.docs[i] for i in order], self.seq_len, self.pad_id, weighted=self.weighted)

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


def log_masked(kind: str, masked: int, total: int) -> None:
    if masked:
        reporter().log(f"{masked} of {total} {kind} examples are failed trajectories left out (--reward-weighting)")
