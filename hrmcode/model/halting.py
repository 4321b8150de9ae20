"""Halting of the recurrent models (``hrm``, ``trm`` in ``mode=act``): who halts, on what, and when.

A *unit* is what one halting decision covers: a document of a packed row when ``doc_ids`` are
given (training and teacher-forced evaluation), otherwise a whole row (one generation request:
a KV cache must hold every segment for every position, so a request keeps one segment count
from its prompt to its last token). Units without a target token (a packed row's padding) are
no unit at all when labels are given.

The Q head reads the mean of ``z_H`` over a unit's *prompt* positions (the PrefixLM prefix:
``prefix_mask`` in packed rows, ``prefix_lens`` when generating; a unit with no prompt, such as
a corpus piece, is read whole). Under causal attention prompt positions never see the answer, so
for prompted units the decision made while training is the one generation can make before its
first token, and a cached generation halts where an uncached one does. A unit read whole (corpus
pretraining with ``mode=act``) decides on text that includes its own targets: its training and
held-out segments are not what a generation, which reads only its prompt, would run.

``HaltPolicy`` is a per-call compute budget for evaluation and inference: at most
``max_segments`` segments, and optionally a confidence ``threshold`` (halt once
``sigmoid(q_halt) >= threshold``) instead of the trained rule (``q_halt > q_continue``; TRM:
``q_halt > 0``). A halted unit's state is frozen: later segments run for the batch but never
change its output, so its result is exactly what it would be alone.

Not guaranteed: that halting early keeps quality; that is what the Q head was trained to predict,
and ``segments`` in a model's output reports what was spent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hrmcode.errors import UsageError
from hrmcode.model.base import IGNORE
from hrmcode.model.config import RECURRENT, ModelConfig


@dataclass(frozen=True)
class HaltPolicy:
    max_segments: int | None = None  # most segments a unit runs; None: the model's config.segments
    threshold: float | None = None  # halt once sigmoid(q_halt) >= threshold; None: the trained rule

    def __post_init__(self) -> None:
        check_range(self.max_segments, self.threshold)


def check_range(max_segments: int | None, threshold: float | None,
                names: tuple[str, str] = ("max_segments", "halt threshold")) -> None:
    """A ``UsageError`` for a budget no model can honour, naming the values as ``names`` (a CLI's flags)."""
    if max_segments is not None and max_segments < 1:
        raise UsageError(f"{names[0]} must be >= 1, got {max_segments}", "give 1 or more segments")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise UsageError(f"{names[1]} must be in (0, 1), got {threshold}",
                         "give a probability such as 0.5 (lower halts sooner)")


def check_budget(config: ModelConfig, threshold: float | None) -> None:
    """A ``UsageError`` when a model of ``config`` cannot honour a budget: segments need a looped model
    (hrm, trm), a ``threshold`` one trained with ``mode=act``."""
    if config.arch not in RECURRENT:
        raise UsageError(f"max segments and a halt threshold need a looped hrm or trm model; this model is a "
                         f"{config.arch}", "drop max_segments and halt_threshold for this model")
    if threshold is not None and config.mode != "act":
        raise UsageError(f"a halt threshold needs a model trained with mode=act; this {config.arch} is "
                         f"mode={config.mode}", "drop halt_threshold, or give max_segments only")


@dataclass
class Units:
    """Each position's unit (``index`` [B, T], -1 for positions of no unit), how many units there
    are, and the positions whose mean the Q head reads (``pool`` [B, T] bool)."""

    index: torch.Tensor
    count: int
    pool: torch.Tensor

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """[U, D]: the mean of ``z`` [B, T, D] over each unit's pooled positions, in fp32."""
        weights = self.pool.float()
        flat = self.index.clamp(min=0).reshape(-1)
        sums = z.new_zeros(self.count, z.shape[-1], dtype=torch.float32)
        sums.index_add_(0, flat, (z.float() * weights[..., None]).reshape(-1, z.shape[-1]))
        counts = torch.zeros(self.count, device=z.device).index_add_(0, flat, weights.reshape(-1))
        return sums / counts.clamp(min=1.0)[:, None]

    def per_unit(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of per-target ``values`` [B, T-1] (aligned with ``labels[:, 1:]``) over each unit."""
        flat = self.index[:, 1:].clamp(min=0).reshape(-1)
        keep = (self.index[:, 1:] >= 0).reshape(-1).to(values.dtype)
        return values.new_zeros(self.count).index_add_(0, flat, values.reshape(-1) * keep)

    def spread(self, flags: torch.Tensor) -> torch.Tensor:
        """[B, T] bool: each position's unit flag (``flags`` [U] bool); False for positions of no unit."""
        return flags[self.index.clamp(min=0)] & (self.index >= 0)


def units(batch: int, length: int, device: torch.device, *, doc_ids: torch.Tensor | None = None,
          labels: torch.Tensor | None = None, prefix_mask: torch.Tensor | None = None,
          prefix_lens: torch.Tensor | None = None) -> Units:
    """The units of a batch (module docstring): documents when ``doc_ids`` are given, else rows."""
    if doc_ids is None:
        index = torch.arange(batch, device=device)[:, None].expand(batch, length).clone()
    else:
        rows = torch.arange(batch, device=device)[:, None]
        _, index = torch.unique(rows * (int(doc_ids.max()) + 1) + doc_ids, return_inverse=True)
    if labels is not None:  # only units with a target (the first token of a document is never one)
        has_target = torch.zeros(int(index.max()) + 1, dtype=torch.bool, device=device)
        has_target[index[:, 1:][labels[:, 1:] != IGNORE]] = True
        renumber = torch.cumsum(has_target.long(), 0) - 1
        index = torch.where(has_target[index], renumber[index], torch.full_like(index, -1))
    if not index.numel():
        count = 0
    elif doc_ids is None and labels is None:
        count = batch  # one unit per row (a decode step's case: no sync on the index)
    else:
        count = int(index.max()) + 1
    if prefix_mask is None and prefix_lens is not None:
        lens = torch.as_tensor(prefix_lens, device=device).view(-1, 1)
        prefix_mask = torch.arange(length, device=device)[None, :] < lens
    member = index >= 0
    if prefix_mask is None:
        pool = member
    else:  # a unit's prompt positions, or all its positions when it has no prompt
        prompt = prefix_mask.bool() & member
        flat = index.clamp(min=0).reshape(-1)
        has_prompt = torch.zeros(max(count, 1), device=device).index_add_(0, flat, prompt.float().reshape(-1)) > 0
        pool = torch.where(has_prompt[index.clamp(min=0)], prompt, member)
    return Units(index, count, pool)


def wants_halt(q: torch.Tensor, learns_continue: bool, threshold: float | None) -> torch.Tensor:
    """[U] bool from Q logits [U, 2] (halt, continue): the policy's threshold, else the trained rule."""
    if threshold is not None:
        return torch.sigmoid(q[:, 0]) >= threshold
    return q[:, 0] > (q[:, 1] if learns_continue else 0.0)
