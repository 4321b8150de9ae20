"""The fast decode path: a stack of blocks run through the fused C kernels of ``hrmcode.model.kernels``.

``Stack.forward`` asks ``runner`` once per call whether this path applies; when it does not, the
stack runs its blocks with PyTorch ops. It applies to new positions that see every cached one
and, causally, each other (a decode step, or a prompt into an empty cache) of one sequence in
float32 on the CPU, without gradient, with a KV cache and the kernels loaded:

- a stack whose projections are all int8 layers offering ``q8_linear()`` runs the new positions in
  one ``hrm_stack_q8`` call (with a float16 KV cache);
- a float stack decodes one token with 4 kernel calls per block around its 4 matmuls (the
  projections still run as modules), instead of ~35 PyTorch ops (with a float32 KV cache).

Guarantees: the same math as the blocks in ``hrmcode.model.layers`` (see ``kernels`` for how
close); the stack's KV slots are filled exactly as the PyTorch path fills them, so the two paths
can take turns within one generation. Per-generation state (scratch buffers, int8 plans) lives in
the cache's ``decode_state``, so concurrent generations never share memory, and holds no
reference back to the cache, so a finished generation's buffers are freed without the cycle
collector. A batch of sequences (``kvcache.BatchKVCache``, continuous batching), one new position
each, runs its int8 stacks in one ``hrm_stack_q8_rows`` call: each row attends to its own cache
row, and the matmuls take every row in one pass over the weights. Not guaranteed: any speed-up
for float batches, bfloat16 or GPU models (they never take it).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from hrmcode.model import kernels
from hrmcode.model.kvcache import BatchKVCache, KVCache, LayerKV

Rope = tuple[torch.Tensor, torch.Tensor]


@dataclass
class _Q8Plan:
    """One stack call's int8 blocks, laid out for ``hrm_stack_q8`` (built once per generation and cache size)."""

    kvs: list[LayerKV]
    blocks: ctypes.Array
    keys: ctypes.Array
    values: ctypes.Array
    capacity: int
    inner: int


@dataclass
class DecodeState:
    """What one generation's (or one batch's) fast path keeps between calls (``KVCache.decode_state``,
    ``BatchKVCache.decode_state``)."""

    q8_plans: dict[tuple, _Q8Plan | None] = field(default_factory=dict)  # per stack call; None: not all int8
    row_plans: dict[tuple, "_RowsPlan | None"] = field(default_factory=dict)  # a batch's, per stack call
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    def scratch(self, name: str, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A reusable 1-D CPU buffer of at least ``size`` elements."""
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = self.buffers[name] = torch.empty(max(size, 2 * (0 if buffer is None else buffer.numel())),
                                                      dtype=dtype)
        return buffer


def q8_block(block: nn.Module) -> kernels.Q8Block | None:
    """A block's four projections for ``hrm_stack_q8``, when every one is an int8 layer offering ``q8_linear()``."""
    parts = [kernels.q8_linear(m) for m in (block.attn.qkv, block.attn.o, block.mlp.gate_up, block.mlp.down)]
    return None if None in parts else kernels.Q8Block(*parts)


def runner(layers: nn.ModuleList, h: torch.Tensor, mask, cache: KVCache | None, key: tuple
           ) -> Callable[[torch.Tensor, Rope], torch.Tensor] | None:
    """How to run ``layers`` on new positions ``h`` through the kernels, or None when this path does not apply.

    The runner takes ``(h, rope)`` and returns ``h`` updated in place: pass a tensor the caller owns.
    ``mask`` is the call's ``AttnMask``; ``key`` the stack call's cache key (the blocks' slots are ``(*key, i)``).
    The kernels compute post-norm blocks only: a pre-norm stack (``layers.PreNormBlock``) always gets None.
    """
    if layers[0].pre_norm:
        return None
    if cache is not None and cache.row_lengths is not None:
        return _rows_runner(layers, h, cache, key)
    if cache is None or mask.mask is not None or (mask.is_causal and cache.length != 0):
        return None
    fused = kernels.load() if kernels.usable(h, layers[0].attn.head_dim) else None
    if fused is None:
        return None
    if cache.decode_state is None:
        cache.decode_state = DecodeState()
    plan = _q8_plan(layers, cache, key, h)
    if plan is not None:
        return partial(_run_q8, fused, plan, layers, cache.decode_state)
    if h.shape[1] == 1 and cache.storage_dtype((*key, 0), h.dtype) == torch.float32:
        return partial(_decode_float, fused, layers, cache, key)
    return None


@dataclass
class _RowsPlan:
    """One stack call's int8 blocks for ``hrm_stack_q8_rows`` and its blocks' batch buffers by address (rebuilt when a
    buffer grows). Holds no reference to the cache or its buffers: a grown-out buffer is freed at once."""

    blocks: ctypes.Array
    keys: ctypes.Array | None = None
    values: ctypes.Array | None = None
    buffers: tuple = ()  # (address, capacity) of each block's k buffer when the pointer arrays were made
    capacity: int = 0
    hidden: int = 0
    inner: int = 0


def _rows_runner(layers: nn.ModuleList, h: torch.Tensor, cache: BatchKVCache, key: tuple
                 ) -> Callable[[torch.Tensor, Rope], torch.Tensor] | None:
    """A batch of sequences, one new position each, through ``hrm_stack_q8_rows`` when every block is int8."""
    first = layers[0].attn
    if not (h.dtype == torch.float32 and h.device.type == "cpu" and h.shape[1] == 1
            and first.head_dim <= kernels.MAX_HEAD_DIM and not torch.is_grad_enabled()):
        return None
    fused = kernels.load()
    if cache.decode_state is None:
        cache.decode_state = DecodeState()
    known = cache.decode_state.row_plans
    plan = known.get(key, False)
    if plan is False:
        parts = [q8_block(layer) for layer in layers]
        usable = None not in parts and cache.storage_dtype((*key, 0), torch.float16) == torch.float16
        plan = known[key] = _RowsPlan((kernels.Q8Block * len(parts))(*parts), hidden=first.heads * first.head_dim,
                                      inner=parts[0].down.in_features) if usable else None
    if fused is None or plan is None:
        return None
    return partial(_run_q8_rows, fused, plan, layers, cache, key)


def _run_q8_rows(fused: kernels.Kernels, plan: _RowsPlan, layers: nn.ModuleList, cache: BatchKVCache, key: tuple,
                 h: torch.Tensor, rope: Rope) -> torch.Tensor:
    """``[rows, 1, hidden]`` float32, row t at position ``cache.row_lengths[t]`` of its own sequence, updated in place."""
    rows = h.shape[0]
    first = layers[0].attn
    positions = cache.row_lengths
    longest = int(positions.max()) + 1
    kvs = [cache.slot((*key, i)) for i in range(len(layers))]
    buffers = tuple((kv.k_buffer.data_ptr(), kv.capacity) if kv.k_buffer is not None else None for kv in kvs)
    if longest > plan.capacity or buffers != plan.buffers:
        like = h.new_empty(1, first.heads, 0, first.head_dim, dtype=torch.float16)  # see hrm_rope_attend_h
        current = max(kv.capacity for kv in kvs)
        step = LayerKV.GROWTH_STEP
        capacity = current if current >= longest else -(-max(longest, 2 * current) // step) * step
        for kv in kvs:
            kv.reserve_rows(like, capacity)  # one capacity for every block: the kernel takes one
        pointers = ctypes.c_void_p * len(kvs)
        plan.keys = pointers(*(kv.k_buffer.data_ptr() for kv in kvs))
        plan.values = pointers(*(kv.v_buffer.data_ptr() for kv in kvs))
        plan.buffers = tuple((kv.k_buffer.data_ptr(), kv.capacity) for kv in kvs)
        plan.capacity = capacity
    cos, sin = (t.reshape(rows, -1).contiguous() for t in rope)
    state = cache.decode_state
    scratch = state.scratch("block", rows * (4 * plan.hidden + 3 * plan.inner + plan.capacity))  # scores per row
    codes = state.scratch("codes", min(rows, 64) * max(plan.hidden, plan.inner), torch.uint8)
    fused.stack_q8_rows(plan.blocks, len(kvs), h.data_ptr(), rows, first.heads, first.head_dim, layers[0].eps,
                        plan.keys, plan.values, plan.capacity, positions.data_ptr(), cos.data_ptr(), sin.data_ptr(),
                        scratch.data_ptr(), codes.data_ptr())
    return h


def _run_q8(fused: kernels.Kernels, plan: _Q8Plan, layers: nn.ModuleList, state: DecodeState, h: torch.Tensor,
            rope: Rope) -> torch.Tensor:
    """The stack through ``hrm_stack_q8`` ([1, T, hidden] float32, updated in place)."""
    cos, sin = (t.contiguous() for t in rope)
    rows = h.shape[1]
    attn = layers[0].attn
    hidden = attn.heads * attn.head_dim
    scratch = state.scratch("block", rows * (4 * hidden + 3 * plan.inner) + plan.capacity)
    codes = state.scratch("codes", min(rows, 64) * max(hidden, plan.inner), torch.uint8)
    fused.stack_q8(plan.blocks, len(plan.kvs), h.data_ptr(), rows, attn.heads, attn.head_dim, layers[0].eps,
                   plan.keys, plan.values, plan.capacity, plan.kvs[0].length, cos.data_ptr(), sin.data_ptr(),
                   scratch.data_ptr(), codes.data_ptr())
    for kv in plan.kvs:
        kv.length += rows
    return h


def _decode_float(fused: kernels.Kernels, layers: nn.ModuleList, cache: KVCache, key: tuple, h: torch.Tensor,
                  rope: Rope) -> torch.Tensor:
    """One position ([1, 1, hidden], float32) through float blocks, updating ``h`` in place: the projections
    run as modules, the rest of each block through the fused kernels."""
    cos, sin = (t.contiguous() for t in rope)
    state = cache.decode_state
    first = layers[0]
    heads, head_dim = first.attn.heads, first.attn.head_dim
    hidden = heads * head_dim
    h_ptr = h.data_ptr()
    attn_out = state.scratch("attn", hidden)[:hidden].view(1, 1, hidden)
    kv_shape = h.new_empty(1, heads, 0, head_dim)
    for i, layer in enumerate(layers):
        kv = cache.slot((*key, i))
        kv.reserve(1, kv_shape)
        if kv.k_buffer.dtype != torch.float32:
            raise RuntimeError("a float16 KV cache reached the float32 decode kernel")
        scores = state.scratch("scores", kv.capacity)
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
        gated = state.scratch("gated", inner)[:inner].view(1, 1, inner)
        fused.silu_mul(gate_up.data_ptr(), gated.data_ptr(), inner)
        mixed = layer.mlp.down(gated)
        fused.add_rms_norm(h_ptr, mixed.data_ptr(), hidden, layer.eps)
    return h


def _q8_plan(layers: nn.ModuleList, cache: KVCache, key: tuple, h: torch.Tensor) -> _Q8Plan | None:
    """This stack call's ``_Q8Plan`` (None when a block is not all int8), with room for ``h``'s positions.

    Kept in the cache's ``decode_state``: the weights cannot change within one generation, and a new generation
    gets a new cache. A plan must not refer back to the cache: the cycle would keep every generation's KV buffers
    alive until Python's cycle collector happens to run.
    """
    rows = h.shape[1]
    plans = cache.decode_state.q8_plans
    plan = plans.get(key, False)
    if plan is None:
        return None
    kvs = plan.kvs if plan else [cache.slot((*key, i)) for i in range(len(layers))]
    if plan and kvs[0].length + rows <= plan.capacity:
        return plan
    if not plan:
        blocks = [q8_block(layer) for layer in layers]
        if None in blocks or cache.storage_dtype((*key, 0), torch.float16) != torch.float16:
            plans[key] = None  # float layers, or a cache that stores float32
            return None
    first = layers[0].attn
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
