"""Attention behind one seam: the mask a forward builds once, and the kernel each call runs.

A forward builds one ``AttnMask`` (``build_attention_mask``) and every attention call of that
forward reuses it (the recurrent models call attention many times per forward). ``attend``
runs one call. Kernels for packed training rows (``doc_ids``/``prefix_mask``):

- ``dense``: a [B, 1, T, T] boolean mask and ``scaled_dot_product_attention`` (every device).
- ``flex``: a FlexAttention ``BlockMask`` built from a ``mask_mod`` (causal, same document, both
  ways inside a document's prompt prefix) and the compiled ``flex_attention``, which skips blocks
  that are fully masked and reads no dense mask. Building the BlockMask evaluates the mask_mod over
  all position pairs once per forward (torch holds [B, T, T] booleans transiently), never per call.
  torch 2.13 has no FlexAttention backward on the CPU: there the mask also carries the dense form,
  and calls that need a gradient run SDPA with it (calls without gradient, most of the HRM's, run flex).
- ``auto``: flex on CUDA, dense elsewhere.

Not affected: rows without packing (SDPA's causal flag), prompt prefixes given as lengths, and
generation with a KV cache keep the dense path. The two kernels agree to float rounding, not bitwise.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from hrmcode.errors import UsageError

KERNELS = ("dense", "flex", "auto")

def resolve_kernel(kind: str, device: torch.device) -> str:
    """``dense`` or ``flex`` for ``--attention kind`` on ``device``."""
    if kind not in KERNELS:
        raise UsageError(f"unknown attention kernel {kind!r}", f"use one of {', '.join(KERNELS)}")
    if kind == "auto":
        return "flex" if torch.device(device).type == "cuda" else "dense"
    return kind


@contextlib.contextmanager
def kernel_used(model: torch.nn.Module, kernel: str):
    """``model`` builds its packed rows' masks for ``kernel`` inside the block, as before after it."""
    saved = model.attention_kernel
    model.attention_kernel = kernel
    try:
        yield
    finally:
        model.attention_kernel = saved


@dataclass
class AttnMask:
    """What the attention calls of one forward get: a boolean mask [B, 1, Tq, Tk] (True = may attend)
    or the causal flag for SDPA, and for packed rows under ``flex`` a ``BlockMask`` (``block``)."""

    mask: torch.Tensor | None
    is_causal: bool
    block: BlockMask | None = None


def packed_mask_mod(doc_ids: torch.Tensor | None, prefix_mask: torch.Tensor | None):
    """The mask_mod of packed rows: ``k <= q``, or both inside the prompt prefix; and the same document."""

    def mask_mod(b, h, q, k):
        allowed = k <= q
        if prefix_mask is not None:
            allowed = allowed | (prefix_mask[b, q] & prefix_mask[b, k])
        if doc_ids is not None:
            allowed = allowed & (doc_ids[b, q] == doc_ids[b, k])
        return allowed

    return mask_mod


def dense_mask(
    batch: int,
    length: int,
    past: int,
    device: torch.device,
    prefix_lens: torch.Tensor | None,
    prefix_mask: torch.Tensor | None,
    doc_ids: torch.Tensor | None,
) -> torch.Tensor:
    """The boolean mask [B, 1, length, past + length] (see ``build_attention_mask``)."""
    q_pos = torch.arange(past, past + length, device=device)
    k_pos = torch.arange(past + length, device=device)
    allowed = (k_pos[None, :] <= q_pos[:, None]).unsqueeze(0).expand(batch, -1, -1)
    if prefix_lens is not None:
        limit = prefix_lens.to(device).view(batch, 1, 1)
        allowed = allowed | ((q_pos.view(1, -1, 1) < limit) & (k_pos.view(1, 1, -1) < limit))
    if prefix_mask is not None:
        allowed = allowed | (prefix_mask[:, :, None] & prefix_mask[:, None, :])
    if doc_ids is not None:
        allowed = allowed & (doc_ids[:, :, None] == doc_ids[:, None, :])
    return allowed.unsqueeze(1)


def build_attention_mask(
    batch: int,
    length: int,
    past: int,
    device: torch.device,
    *,
    prefix_lens: torch.Tensor | None = None,
    prefix_mask: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    kernel: str = "dense",
) -> AttnMask:
    """The mask for ``length`` new positions after ``past`` cached ones.

    ``prefix_lens`` [B]: the first n positions of each row attend to each other both ways.
    ``prefix_mask`` [B, T] with ``doc_ids`` [B, T] (packed training rows, ``past == 0``): the
    marked positions of one document attend to each other both ways.
    ``doc_ids`` [B, T]: attention stays inside a document.
    ``kernel`` (``dense`` or ``flex``, see ``resolve_kernel``): the form packed rows get.
    """
    if prefix_lens is None and prefix_mask is None and doc_ids is None:
        if past == 0:
            return AttnMask(None, True)
        if length == 1:
            return AttnMask(None, False)  # one new token sees everything cached, and itself
    if (prefix_mask is not None or doc_ids is not None) and past:
        raise ValueError("prefix_mask/doc_ids describe packed training rows and cannot be used with a KV cache")
    if kernel == "flex" and prefix_lens is None:
        block = create_block_mask(packed_mask_mod(doc_ids, prefix_mask), batch, None, length, length, device=device)
        # The CPU has no FlexAttention backward in torch 2.13: calls that need a gradient use the dense form.
        cpu = torch.device(device).type == "cpu"
        dense = dense_mask(batch, length, 0, device, None, prefix_mask, doc_ids) if cpu else None
        return AttnMask(dense, False, block)
    return AttnMask(dense_mask(batch, length, past, device, prefix_lens, prefix_mask, doc_ids), False)


@functools.cache
def _compiled_flex():
    # Eager flex_attention materializes the scores; compiled it is the fused, block-sparse kernel.
    return torch.compile(flex_attention)


def flex_runs(q: torch.Tensor, mask: AttnMask) -> bool:
    """Whether ``attend`` takes the FlexAttention kernel for this call."""
    return mask.block is not None and (q.device.type != "cpu" or not (torch.is_grad_enabled() and q.requires_grad))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttnMask) -> torch.Tensor:
    """Attention of q [B, H, Tq, D] over k, v [B, H, Tk, D] under ``mask``."""
    if flex_runs(q, mask):
        return _compiled_flex()(q, k, v, block_mask=mask.block)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.mask, is_causal=mask.is_causal)
