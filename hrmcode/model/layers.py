"""Building blocks shared by the HRM and the transformer baseline.

A block is the HRM paper's: self-attention then a SwiGLU MLP, each followed by a
parameterless RMSNorm of the residual sum (post-norm, computed in fp32). Attention is
``torch.nn.functional.scaled_dot_product_attention`` with rotary embeddings; every projection
is a plain ``nn.Linear`` without bias, so quantization can swap them.

Attention masks: causal, optionally restricted to one document of a packed row
(``doc_ids``) and optionally bidirectional over a prompt prefix (PrefixLM). ``KVCache``
holds one key/value pair per (recurrent call, layer); decoding with it gives the same
result as recomputing the whole sequence, because no earlier position ever attends to a
later one (the prefix is attended bidirectionally only within itself).
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrmcode.model import kernels


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x.to(dtype)


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Normal(0, std) truncated at +-2 std (the HRM's init, without its variance correction)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


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
    """x: [B, H, T, D]; cos/sin: [T, D]."""
    dtype = x.dtype
    x = x.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(dtype)


@dataclass
class AttnMask:
    """What SDPA gets: a boolean mask [B, 1, Tq, Tk] (True = may attend), or the causal flag."""

    mask: torch.Tensor | None
    is_causal: bool


def build_attention_mask(
    batch: int,
    length: int,
    past: int,
    device: torch.device,
    *,
    prefix_lens: torch.Tensor | None = None,
    prefix_mask: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
) -> AttnMask:
    """The mask for ``length`` new positions after ``past`` cached ones.

    ``prefix_lens`` [B]: the first n positions of each row attend to each other both ways.
    ``prefix_mask`` [B, T] with ``doc_ids`` [B, T] (packed training rows, ``past == 0``): the
    marked positions of one document attend to each other both ways.
    ``doc_ids`` [B, T]: attention stays inside a document.
    """
    if prefix_lens is None and prefix_mask is None and doc_ids is None:
        if past == 0:
            return AttnMask(None, True)
        if length == 1:
            return AttnMask(None, False)  # one new token sees everything cached, and itself
    if (prefix_mask is not None or doc_ids is not None) and past:
        raise ValueError("prefix_mask/doc_ids describe packed training rows and cannot be used with a KV cache")
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
    return AttnMask(allowed.unsqueeze(1), False)


class LayerKV:
    """Keys and values of one attention layer in one recurrent call.

    Held in buffers [B, H, capacity, D] that grow geometrically, so appending a position copies
    only that position; ``keys``/``values`` are views of the first ``length`` positions.
    """

    GROWTH_STEP = 64

    def __init__(self, expected_length: int = 0, dtype: torch.dtype | None = None) -> None:
        self.k_buffer: torch.Tensor | None = None
        self.v_buffer: torch.Tensor | None = None
        self.length = 0
        self.expected_length = expected_length  # the first allocation's size, when known (no regrowth, no copy)
        self.dtype = dtype  # storage dtype; None: that of the first keys

    @property
    def capacity(self) -> int:
        return 0 if self.k_buffer is None else self.k_buffer.shape[2]

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self.k_buffer is None else self.k_buffer[:, :, : self.length]

    @property
    def values(self) -> torch.Tensor | None:
        return None if self.v_buffer is None else self.v_buffer[:, :, : self.length]

    def reserve(self, extra: int, like: torch.Tensor) -> None:
        """Room for ``extra`` more positions of tensors shaped like ``like`` ([B, H, *, D])."""
        needed = self.length + extra
        if needed <= self.capacity:
            return
        step = self.GROWTH_STEP
        capacity = -(-max(needed, 2 * self.capacity) // step) * step
        if self.k_buffer is None and self.expected_length >= needed:
            capacity = self.expected_length
        batch, heads, _, dim = like.shape
        dtype = (self.dtype or like.dtype) if self.k_buffer is None else self.k_buffer.dtype
        k = like.new_empty(batch, heads, capacity, dim, dtype=dtype)
        v = like.new_empty(batch, heads, capacity, dim, dtype=dtype)
        if self.length:
            k[:, :, : self.length] = self.keys
            v[:, :, : self.length] = self.values
        self.k_buffer, self.v_buffer = k, v

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.reserve(k.shape[2], k)
        end = self.length + k.shape[2]
        self.k_buffer[:, :, self.length: end] = k
        self.v_buffer[:, :, self.length: end] = v
        self.length = end
        return self.keys, self.values


class KVCache:
    """One ``LayerKV`` per (recurrent call, layer) key; ``length`` = positions already cached.

    Also holds the decode kernels' scratch buffers, so concurrent generations (one cache each)
    never share memory. ``expected_length`` (prompt + tokens to generate, when known) sizes every
    buffer once, so a generation never holds a buffer and its grown copy at the same time.
    ``dtype`` is the storage dtype (a model's ``kv_dtype``; None: that of the keys).
    """

    def __init__(self, expected_length: int = 0, dtype: torch.dtype | None = None) -> None:
        self.slots: dict[tuple, LayerKV] = {}
        self.length = 0
        self.expected_length = expected_length
        self.dtype = dtype
        self.q8_plans: dict[tuple, object] = {}  # Stack._q8_plan's, per stack call
        self._scratch: dict[str, torch.Tensor] = {}

    def slot(self, key: tuple) -> LayerKV:
        if key not in self.slots:
            self.slots[key] = LayerKV(self.expected_length, self.dtype)
        return self.slots[key]

    def storage_dtype(self, key: tuple, default: torch.dtype) -> torch.dtype:
        """The dtype slot ``key`` stores (or will, when keys of ``default``'s dtype come first)."""
        buffer = self.slot(key).k_buffer
        return buffer.dtype if buffer is not None else self.dtype or default

    def scratch(self, name: str, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A reusable 1-D CPU buffer of at least ``size`` elements."""
        buffer = self._scratch.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = self._scratch[name] = torch.empty(max(size, 2 * (0 if buffer is None else buffer.numel())),
                                                       dtype=dtype)
        return buffer


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
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.mask, is_causal=mask.is_causal)
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

    def q8_block(self) -> kernels.Q8Block | None:
        """The four projections for ``hrm_block_q8``, when every one is an int8 layer offering ``q8_linear()``."""
        parts = [kernels.q8_linear(m) for m in (self.attn.qkv, self.attn.o, self.mlp.gate_up, self.mlp.down)]
        return None if None in parts else kernels.Q8Block(*parts)


@dataclass
class _Q8Plan:
    """One stack call's int8 blocks, laid out for ``hrm_stack_q8`` (built once per generation and cache size)."""

    kvs: list[LayerKV]
    blocks: ctypes.Array
    keys: ctypes.Array
    values: ctypes.Array
    capacity: int
    inner: int


class Stack(nn.Module):
    """Blocks applied in order; ``forward(z, injection)`` adds the injection first (HRM input injection).

    With a KV cache, one sequence in float32, and the fused C kernels of ``hrmcode.model.kernels``
    available: a stack whose projections are all int8 layers runs new positions (a prompt or one
    decoded token) in one ``hrm_stack_q8`` call; a float stack decodes one token with 4 kernel
    calls per block around its 4 matmuls, instead of ~35 PyTorch ops.
    """

    def __init__(self, layers: int, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(Block(hidden, heads, inner, eps) for _ in range(layers))

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
        # New positions that see every cached one and, causally, each other: a decode step, or a prompt into an
        # empty cache. Those can run through the fused kernels.
        if cache is not None and mask.mask is None and (not mask.is_causal or cache.length == 0):
            fused = kernels.load() if kernels.usable(h, self.layers[0].attn.head_dim) else None
            plan = self._q8_plan(cache, key, h) if fused is not None else None
            if plan is not None:
                return self._run_q8(fused, plan, h.clone() if injection is None else h, rope, cache)
            if fused is not None and h.shape[1] == 1 and cache.storage_dtype((*key, 0), h.dtype) == torch.float32:
                return self._decode(fused, h.clone() if injection is None else h, rope, cache, key)
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, mask, None if cache is None else cache.slot((*key, i)))
        return h

    def _run_q8(self, fused: kernels.Kernels, plan: _Q8Plan, h: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache) -> torch.Tensor:
        """``forward`` through ``hrm_stack_q8`` ([1, T, hidden] float32, updated in place)."""
        cos, sin = (t.contiguous() for t in rope)
        rows = h.shape[1]
        attn = self.layers[0].attn
        hidden = attn.heads * attn.head_dim
        scratch = cache.scratch("block", rows * (4 * hidden + 3 * plan.inner) + plan.capacity)
        codes = cache.scratch("codes", min(rows, 64) * max(hidden, plan.inner), torch.uint8)
        fused.stack_q8(plan.blocks, len(plan.kvs), h.data_ptr(), rows, attn.heads, attn.head_dim, self.layers[0].eps,
                       plan.keys, plan.values, plan.capacity, plan.kvs[0].length, cos.data_ptr(), sin.data_ptr(),
                       scratch.data_ptr(), codes.data_ptr())
        for kv in plan.kvs:
            kv.length += rows
        return h

    def _decode(self, fused: kernels.Kernels, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                cache: KVCache, key: tuple) -> torch.Tensor:
        """``forward`` for one position ([1, 1, hidden], float32) of a model with float projections, updating
        ``h`` in place: the projections run as modules, the rest of each block through the fused kernels."""
        cos, sin = (t.contiguous() for t in rope)
        first = self.layers[0]
        heads, head_dim = first.attn.heads, first.attn.head_dim
        hidden = heads * head_dim
        h_ptr = h.data_ptr()
        attn_out = cache.scratch("attn", hidden)[:hidden].view(1, 1, hidden)
        kv_shape = h.new_empty(1, heads, 0, head_dim)
        for i, layer in enumerate(self.layers):
            kv = cache.slot((*key, i))
            kv.reserve(1, kv_shape)
            if kv.k_buffer.dtype != torch.float32:
                raise RuntimeError("a float16 KV cache reached the float32 decode kernel")
            scores = cache.scratch("scores", kv.capacity)
            qkv = layer.attn.qkv(h)
            fused.rope_attend(qkv.data_ptr(), kv.k_buffer.data_ptr(), kv.v_buffer.data_ptr(), kv.capacity, kv.length,
                              cos.data_ptr(), sin.data_ptr(), heads, head_dim, attn_out.data_ptr(), scores.data_ptr())
            kv.length += 1
            # Every tensor handed to C is held by a name until the call returns: a temporary would be
            # freed first, and free() may write into it.
            attended = layer.attn.o(attn_out)
            fused.add_rms_norm(h_ptr, attended.data_ptr(), hidden, layer.eps)
            gate_up = layer.mlp.gate_up(h)
            inner = gate_up.shape[-1] // 2
            gated = cache.scratch("gated", inner)[:inner].view(1, 1, inner)
            fused.silu_mul(gate_up.data_ptr(), gated.data_ptr(), inner)
            mixed = layer.mlp.down(gated)
            fused.add_rms_norm(h_ptr, mixed.data_ptr(), hidden, layer.eps)
        return h

    def _q8_plan(self, cache: KVCache, key: tuple, h: torch.Tensor) -> _Q8Plan | None:
        """This stack call's ``_Q8Plan`` (None when a block is not all int8), with room for ``h``'s positions.

        Kept in the cache: the weights cannot change within one generation, and a new generation gets a new cache.
        A plan must not refer back to the cache: the cycle would keep every generation's KV buffers alive until
        Python's cycle collector happens to run.
        """
        rows = h.shape[1]
        plans = cache.q8_plans
        plan = plans.get(key, False)
        if plan is None:
            return None
        kvs = plan.kvs if plan else [cache.slot((*key, i)) for i in range(len(self.layers))]
        if plan and kvs[0].length + rows <= plan.capacity:
            return plan
        if not plan:
            blocks = [layer.q8_block() for layer in self.layers]
            if None in blocks or cache.storage_dtype((*key, 0), torch.float16) != torch.float16:
                plans[key] = None  # float layers, or a cache that stores float32
                return None
        first = self.layers[0].attn
        like = h.new_empty(1, first.heads, 0, first.head_dim, dtype=torch.float16)  # see hrm_rope_attend_h
        for kv in kvs:
            kv.reserve(rows, like)
        if len({kv.capacity for kv in kvs}) != 1 or len({kv.length for kv in kvs}) != 1:
            plans[key] = None  # slots filled unevenly (not by this model's forward): take the per-block path
            return None
        pointers = ctypes.c_void_p * len(kvs)
        plan = plans[key] = _Q8Plan(
            kvs=kvs,
            blocks=plan.blocks if plan else (kernels.Q8Block * len(blocks))(*blocks),
            keys=pointers(*(kv.k_buffer.data_ptr() for kv in kvs)),
            values=pointers(*(kv.v_buffer.data_ptr() for kv in kvs)),
            capacity=kvs[0].capacity,
            inner=plan.inner if plan else blocks[0].down.in_features,
        )
        return plan
