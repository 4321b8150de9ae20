"""Building blocks shared by the HRM and the transformer baseline.

A block is the HRM paper's: self-attention then a SwiGLU MLP, each followed by a
parameterless RMSNorm of the residual sum (post-norm, computed in fp32). ``PreNormBlock`` is
Llama's instead (the transformer's ``norm="pre"``): each sublayer reads a learned-weight
``RMSNorm`` of the residual stream and adds to it, computed as transformers' ``LlamaRMSNorm``
(normalised in fp32, cast back, then scaled by the weight). Attention is
``torch.nn.functional.scaled_dot_product_attention`` with rotary embeddings; every projection
is a plain ``nn.Linear`` without bias, so quantization can swap them.

Attention masks (``hrmcode.model.attention``, the seam that picks SDPA with a dense mask or
FlexAttention): causal, optionally restricted to one document of a packed row (``doc_ids``) and
optionally bidirectional over a prompt prefix (PrefixLM). Generation passes a
``hrmcode.model.kvcache.KVCache``; a ``Stack`` then asks ``hrmcode.model.fastpath`` whether its
fused kernels take the call.

Gradient checkpointing (``Stack.grad_checkpointing``, set by ``set_grad_checkpointing``): a block
applied with gradient keeps only its input and recomputes its activations in backward
(``torch.utils.checkpoint``, non-reentrant); the same loss and gradients, less memory. Calls
without gradient (most of the HRM's) are unaffected.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hrmcode.model import fastpath
from hrmcode.model.attention import AttnMask, attend, build_attention_mask  # noqa: F401 - the models import them here
from hrmcode.model.kvcache import KVCache, LayerKV


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x.to(dtype)


class RMSNorm(nn.Module):
    """RMSNorm with a learned per-channel weight (initialised to ones): ``weight * rms_norm(x)``."""

    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * rms_norm(x, self.eps)


def trunc_normal_(tensor: torch.Tensor, std: float, bound: float = 2.0) -> torch.Tensor:
    """A normal truncated at +-``bound`` standard deviations whose *measured* std is ``std`` (the
    HRM's ``trunc_normal_init_``, after JAX/flax): truncation removes the tails, so the underlying
    normal is widened by the truncated distribution's std ratio (0.88 at +-2) before cutting.
    ``nn.init.trunc_normal_`` with ``std=s`` yields 0.88 s."""
    pdf = math.exp(-0.5 * bound ** 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))  # P(|z| < bound)
    ratio = math.sqrt(1 - 2 * bound * pdf / mass)  # std of N(0, 1) truncated at +-bound
    wide = std / ratio
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=wide, a=-bound * wide, b=bound * wide)


def init_linear(layer: nn.Linear) -> None:
    """LeCun normal: std 1/sqrt(fan_in)."""
    trunc_normal_(layer.weight, 1.0 / math.sqrt(layer.in_features))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class Rotary:
    """Rotary embeddings (rotate-half): a float32 cos/sin table for every position up to ``max_len``.

    Computed once, in float64 then rounded to float32, on first use (so building a model on the
    meta device costs nothing). Not an ``nn.Module`` with buffers on purpose: ``model.to(torch.bfloat16)``
    must not round the frequencies.
    """

    def __init__(self, head_dim: int, theta: float, max_len: int):
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.max_len = max_len
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def table(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each [max_len, head_dim] float32 on ``device``."""
        device = torch.device(device)
        tables = self._tables.get(device)
        if tables is None:
            freqs = torch.outer(torch.arange(self.max_len, dtype=torch.float64), self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            tables = self._tables[device] = (emb.cos().float().to(device), emb.sin().float().to(device))
        return tables

    def __call__(self, start: int, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.table(device)
        return cos[start:start + length], sin[start:start + length]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, D]; cos/sin: [T, D], or [B, 1, T, D] for rows at positions of their own."""
    dtype = x.dtype
    x = x.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(dtype)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.o = nn.Linear(hidden, hidden, bias=False)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: AttnMask, kv: LayerKV | None
    ) -> torch.Tensor:
        batch, length, hidden = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        q, k = apply_rotary(qkv[:2], cos, sin).unbind(0)
        v = qkv[2]
        if kv is not None:
            k, v = kv.update(k, v)
            if k.dtype != q.dtype:  # a float16 cache (int8 models)
                k, v = k.to(q.dtype), v.to(q.dtype)
        out = attend(q, k, v, mask)
        return self.o(out.transpose(1, 2).reshape(batch, length, hidden))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm: ``h = norm(h + attn(h)); h = norm(h + mlp(h))`` (the HRM paper's block)."""

    pre_norm = False  # the fused kernels of hrmcode.model.fastpath compute this block only

    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.attn = Attention(hidden, heads)
        self.mlp = SwiGLU(hidden, inner)
        self.eps = eps

    def forward(
        self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: AttnMask, kv: LayerKV | None
    ) -> torch.Tensor:
        h = rms_norm(h + self.attn(h, rope, mask, kv), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class PreNormBlock(Block):
    """Pre-norm (Llama's): ``h = h + attn(norm1(h)); h = h + mlp(norm2(h))``, learned-weight norms."""

    pre_norm = True

    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__(hidden, heads, inner, eps)
        self.attn_norm = RMSNorm(hidden, eps)
        self.mlp_norm = RMSNorm(hidden, eps)

    def forward(
        self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: AttnMask, kv: LayerKV | None
    ) -> torch.Tensor:
        h = h + self.attn(self.attn_norm(h), rope, mask, kv)
        return h + self.mlp(self.mlp_norm(h))


class Stack(nn.Module):
    """Blocks applied in order; ``forward(z, injection)`` adds the injection first (HRM input injection).
    ``pre_norm``: ``PreNormBlock`` instead of ``Block`` (the final norm before the LM head is the model's).

    When ``hrmcode.model.fastpath`` says it applies (generation with a KV cache on the CPU, fused
    kernels available), the stack runs through it instead of block by block; same math.
    """

    grad_checkpointing = False  # recompute each block in backward (training without a KV cache only)

    def __init__(self, layers: int, hidden: int, heads: int, inner: int, eps: float, pre_norm: bool = False):
        super().__init__()
        block = PreNormBlock if pre_norm else Block
        self.layers = nn.ModuleList(block(hidden, heads, inner, eps) for _ in range(layers))

    def forward(
        self,
        z: torch.Tensor,
        injection: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttnMask,
        cache: KVCache | None,
        key: tuple,
    ) -> torch.Tensor:
        h = z if injection is None else z + injection
        fast = fastpath.runner(self.layers, h, mask, cache, key)
        if fast is not None:
            return fast(h.clone() if injection is None else h, rope)  # it writes into h: never into the caller's z
        recompute = self.grad_checkpointing and cache is None and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:
                h = checkpoint(layer, h, rope, mask, None, use_reentrant=False)
            else:
                h = layer(h, rope, mask, None if cache is None else cache.slot((*key, i)))
        return h


def set_grad_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Turn gradient checkpointing on or off for every ``Stack`` of ``model``."""
    for module in model.modules():
        if isinstance(module, Stack):
            module.grad_checkpointing = enabled
