"""The KV cache generation keeps: one key/value pair per (recurrent module call, layer).

Decoding with it gives the same result as recomputing the whole sequence, because no earlier
position ever attends to a later one (a PrefixLM prompt is attended bidirectionally only within
itself). Buffers grow geometrically, or are sized once when the caller knows the final length.

Guarantees: appending a position copies only that position (until a buffer grows); a cache
belongs to one generation, so what the fast decode path keeps in ``decode_state`` is never
shared between concurrent generations. It does not check that the keys it is given belong to
one model or one sequence: the model's forward keys the slots.

``BatchKVCache`` holds several generations of their own lengths, one row each (continuous
batching in ``hrmcode.serve.batching``): each decode step appends one position to every row at
that row's own length, and the model attends each row to its own positions only
(``batch_context``). Rows join with a cache their prompt filled alone (``add_row``) and leave in
any order (``remove_row``: the last row moves into the gap, so the active rows stay the first
``rows``). A row's keys and values are the same numbers its own ``KVCache`` would hold.
"""

from __future__ import annotations

import weakref

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
        self.row_segments: torch.Tensor | None = None  # [B] segments each row ran for its prompt (halting models)

    def slot(self, key: tuple) -> LayerKV:
        if key not in self.slots:
            self.slots[key] = LayerKV(self.expected_length, self.dtype)
        return self.slots[key]

    def advance(self, positions: int) -> None:
        """The model's forward cached ``positions`` more positions of every sequence."""
        self.length += positions

    row_lengths = None  # a BatchKVCache's per-row lengths; None: one sequence of ``length``

    def storage_dtype(self, key: tuple, default: torch.dtype) -> torch.dtype:
        """The dtype slot ``key`` stores (or will, when keys of ``default``'s dtype come first)."""
        buffer = self.slot(key).k_buffer
        return buffer.dtype if buffer is not None else self.dtype or default


class RaggedKV:
    """Keys and values of one attention layer for a batch of rows of different lengths.

    Buffers [rows capacity, H, positions capacity, D]; ``update`` writes each row's new key at that
    row's length (``BatchKVCache.lengths``) and returns keys and values up to the longest row, which
    the mask of ``BatchKVCache.batch_context`` cuts to each row's own."""

    def __init__(self, owner: "BatchKVCache") -> None:
        self._owner = weakref.ref(owner)  # no cycle: a dropped batch cache frees its buffers at once, not at a GC
        self.k_buffer: torch.Tensor | None = None
        self.v_buffer: torch.Tensor | None = None

    @property
    def owner(self) -> "BatchKVCache":
        return self._owner()

    @property
    def capacity(self) -> int:
        return 0 if self.k_buffer is None else self.k_buffer.shape[2]

    def _reserve(self, like: torch.Tensor, rows: int, positions: int) -> None:
        """Room for ``rows`` rows of ``positions`` positions shaped like ``like`` ([*, H, *, D]), growing
        geometrically."""
        if positions > self.capacity:
            step = LayerKV.GROWTH_STEP
            positions = -(-max(positions, 2 * self.capacity) // step) * step
        self.reserve_rows(like, max(positions, self.capacity), rows)

    def reserve_rows(self, like: torch.Tensor, positions: int, rows: int | None = None) -> None:
        """Exactly ``positions`` positions for ``rows`` rows (all the batch's by default) unless there
        are more already (the fused path gives every block of a stack one capacity)."""
        rows = self.owner.capacity_rows if rows is None else rows
        have_rows = 0 if self.k_buffer is None else self.k_buffer.shape[0]
        if rows <= have_rows and positions <= self.capacity:
            return
        dtype = self.owner.dtype or like.dtype if self.k_buffer is None else self.k_buffer.dtype
        shape = (max(rows, have_rows), like.shape[1], max(positions, self.capacity), like.shape[3])
        k, v = like.new_zeros(shape, dtype=dtype), like.new_zeros(shape, dtype=dtype)
        if self.k_buffer is not None:
            k[:have_rows, :, :self.capacity] = self.k_buffer
            v[:have_rows, :, :self.capacity] = self.v_buffer
        self.k_buffer, self.v_buffer = k, v

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.owner.lengths[: k.shape[0]]
        if k.shape[2] != 1:
            raise ValueError("a batch cache takes one new position per row (decode steps)")
        self._reserve(k, self.owner.capacity_rows, int(lengths.max()) + 1)
        rows = torch.arange(k.shape[0], device=k.device)
        self.k_buffer[rows, :, lengths] = k[:, :, 0].to(self.k_buffer.dtype)
        self.v_buffer[rows, :, lengths] = v[:, :, 0].to(self.v_buffer.dtype)
        end = int(lengths.max()) + 1
        return self.k_buffer[: k.shape[0], :, :end], self.v_buffer[: k.shape[0], :, :end]

    def put_row(self, row: int, source: LayerKV) -> None:
        """Row ``row`` becomes ``source``'s keys and values (a prompt cached alone)."""
        n = source.length
        self._reserve(source.keys, self.owner.capacity_rows, n + 1)
        self.k_buffer[row, :, :n] = source.keys[0].to(self.k_buffer.dtype)
        self.v_buffer[row, :, :n] = source.values[0].to(self.v_buffer.dtype)

    def move_row(self, source: int, target: int, length: int) -> None:
        if self.k_buffer is not None:
            self.k_buffer[target, :, :length] = self.k_buffer[source, :, :length]
            self.v_buffer[target, :, :length] = self.v_buffer[source, :, :length]


class BatchKVCache:
    """The rows of several generations decoded together (module docstring); the model uses it as
    it uses a ``KVCache``: ``slot(key)``, ``advance``, and ``row_lengths`` for the attention seam."""

    def __init__(self, capacity_rows: int, dtype: torch.dtype | None = None) -> None:
        self.capacity_rows = capacity_rows
        self.dtype = dtype
        self.decode_state: object | None = None  # hrmcode.model.fastpath's, as for a KVCache
        self.slots: dict[tuple, RaggedKV] = {}
        self.lengths = torch.zeros(capacity_rows, dtype=torch.long)
        self.segments = torch.zeros(capacity_rows, dtype=torch.long)  # each row's (halting models; 0: unset)
        self.rows = 0

    @property
    def row_lengths(self) -> torch.Tensor:
        return self.lengths[: self.rows]

    @property
    def row_segments(self) -> torch.Tensor | None:
        """Segments each row runs (what its prompt ran alone), or None when the model does not halt."""
        segments = self.segments[: self.rows]
        return segments if self.rows and bool((segments > 0).all()) else None

    @property
    def length(self) -> int:
        """The longest row (what a context check must allow for)."""
        return int(self.row_lengths.max()) if self.rows else 0

    def slot(self, key: tuple) -> RaggedKV:
        if key not in self.slots:
            self.slots[key] = RaggedKV(self)
        return self.slots[key]

    def storage_dtype(self, key: tuple, default: torch.dtype) -> torch.dtype:
        buffer = self.slot(key).k_buffer
        return buffer.dtype if buffer is not None else self.dtype or default

    def advance(self, positions: int) -> None:
        self.lengths[: self.rows] += positions

    def add_row(self, single: KVCache) -> int:
        """Append the generation whose prompt ``single`` cached; its row index."""
        if self.rows >= self.capacity_rows:
            raise ValueError(f"the batch holds {self.capacity_rows} rows already")
        row = self.rows
        for key, layer in single.slots.items():
            self.slot(key).put_row(row, layer)
        self.lengths[row] = single.length
        self.segments[row] = int(single.row_segments[0]) if single.row_segments is not None else 0
        self.rows += 1
        return row

    def remove_row(self, row: int) -> int | None:
        """Drop ``row``; the last row moves into its place: that row's old index (None when ``row``
        was the last)."""
        last = self.rows - 1
        if not 0 <= row <= last:
            raise IndexError(f"no row {row} in a batch of {self.rows}")
        moved = None
        if row != last:
            length = int(self.lengths[last])
            for layer in self.slots.values():
                layer.move_row(last, row, length)
            self.lengths[row] = length
            self.segments[row] = self.segments[last]
            moved = last
        self.lengths[last] = 0
        self.segments[last] = 0
        self.rows -= 1
        return moved
