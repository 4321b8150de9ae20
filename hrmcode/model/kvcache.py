"""The KV cache generation keeps: one key/value pair per (recurrent module call, layer).

Decoding with it gives the same result as recomputing the whole sequence, because no earlier
position ever attends to a later one (a PrefixLM prompt is attended bidirectionally only within
itself). Buffers grow geometrically, or are sized once when the caller knows the final length.

Guarantees: appending a position copies only that position (until a buffer grows); a cache
belongs to one generation, so what the fast decode path keeps in ``decode_state`` is never
shared between concurrent generations. It does not check that the keys it is given belong to
one model or one sequence: the model's forward keys the slots.
"""

from __future__ import annotations

import torch


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

    ``expected_length`` (prompt + tokens to generate, when known) sizes every buffer once, so a
    generation never holds a buffer and its grown copy at the same time. ``dtype`` is the storage
    dtype (a model's ``kv_dtype``; None: that of the keys). ``decode_state`` belongs to
    ``hrmcode.model.fastpath`` (its scratch buffers and int8 plans, one set per generation).
    """

    def __init__(self, expected_length: int = 0, dtype: torch.dtype | None = None) -> None:
        self.slots: dict[tuple, LayerKV] = {}
        self.length = 0
        self.expected_length = expected_length
        self.dtype = dtype
        self.decode_state: object | None = None

    def slot(self, key: tuple) -> LayerKV:
        if key not in self.slots:
            self.slots[key] = LayerKV(self.expected_length, self.dtype)
        return self.slots[key]

    def storage_dtype(self, key: tuple, default: torch.dtype) -> torch.dtype:
        """The dtype slot ``key`` stores (or will, when keys of ``default``'s dtype come first)."""
        buffer = self.slot(key).k_buffer
        return buffer.dtype if buffer is not None else self.dtype or default
