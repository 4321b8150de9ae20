"""``validate``'s near-duplicate test: MinHash signatures of whole batches of texts, and the
index of kept examples that answers "which kept example is a near duplicate of this one".

Guarantees: ``signatures`` gives what datasketch's ``MinHash`` (64 ``affine64`` permutations,
seed 1) gives for the sampled window hashes of each text, computed with numpy over many texts at
once; ``NearDuplicates`` answers exactly as datasketch's ``MinHashLSH`` keyed by example id
would (the tests compare both with datasketch itself). Shingles are the 50-character windows of
whitespace-normalised text that the contamination check hashes anyway, sampled by content (those
whose hash is divisible by ``SAMPLE``). Not here: which example is "earlier" (the run's input
order decides) or what a near duplicate costs (the decision pass rejects it).
"""

from __future__ import annotations

import numpy as np

NUM_PERM = 64
SAMPLE = 8  # keep shingles whose hash is 0 modulo SAMPLE (content-defined, shift-invariant)
_TEMPLATE: tuple[np.ndarray, np.ndarray] | None = None
SIGNATURE_ROWS = 32768  # sampled shingles permuted at once, per permutation (a 256 KiB block)


def permutations() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine64`` permutations (seed 1) as two uint64 arrays, computed once per process."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from datasketch import MinHash

        a, b = MinHash(NUM_PERM, seed=1, scheme="affine64").permutations
        _TEMPLATE = (np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return _TEMPLATE


def signatures(hashes: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """MinHash signature of each text, one row per text, text ``i``'s shingles given as its 64-bit
    window hashes ``hashes[bounds[i]:bounds[i + 1]]``: datasketch's ``affine64`` permutations
    (seed 1) applied to the hashes divisible by ``SAMPLE`` (content-defined sampling: the same
    passage gives the same shingles wherever it sits). The hashes are already mixed, so
    datasketch's own input hashing is not applied again; signatures are compared band by band as
    datasketch's ``MinHashLSH`` does (see ``NearDuplicates``). A text with no sampled shingle uses
    its first window hash, a text with no window the hash 0."""
    texts = len(bounds) - 1
    counts = np.diff(bounds)
    sampled = np.flatnonzero(hashes % np.uint64(SAMPLE) == 0)
    rows, row_owner = hashes[sampled], np.searchsorted(bounds, sampled, side="right") - 1
    lacking = np.flatnonzero(np.bincount(row_owner, minlength=texts) == 0)
    if len(lacking):
        first = hashes[np.minimum(bounds[lacking], max(len(hashes) - 1, 0))] if len(hashes) else np.zeros(len(lacking), np.uint64)
        fallback = np.where(counts[lacking] > 0, first, np.uint64(0)).astype(np.uint64)
        rows = np.concatenate([rows, fallback])
        row_owner = np.concatenate([row_owner, lacking])
        order = np.argsort(row_owner, kind="stable")
        rows, row_owner = rows[order], row_owner[order]
    a, b = permutations()
    result = np.full((NUM_PERM, texts), np.iinfo(np.uint64).max, dtype=np.uint64)
    firsts = np.searchsorted(row_owner, np.arange(texts))  # every text has at least one row
    permuted = np.empty(min(SIGNATURE_ROWS, len(rows)), dtype=np.uint64)
    # one permutation at a time over a block of rows: contiguous arrays that stay in cache
    for lo in range(0, len(rows), SIGNATURE_ROWS):
        hi = min(lo + SIGNATURE_ROWS, len(rows))
        block, out = rows[lo:hi], permuted[:hi - lo]
        first_text, last_text = int(row_owner[lo]), int(row_owner[hi - 1])
        segments = np.maximum(firsts[first_text:last_text + 1], lo) - lo
        for k in range(NUM_PERM):
            np.multiply(block, a[k], out=out)
            np.add(out, b[k], out=out)
            current = result[k, first_text:last_text + 1]
            np.minimum(current, np.minimum.reduceat(out, segments), out=current)
    return np.ascontiguousarray(result.T)


class NearDuplicates:
    """The kept examples' MinHash signatures, answering "which kept example of this level is a
    near duplicate" exactly as datasketch's ``MinHashLSH`` keyed by example id would.

    Candidates are what ``MinHashLSH(threshold, num_perm=64)`` returns for the target signature:
    kept examples of the level sharing one whole band (``b`` bands of ``r`` rows, datasketch's
    optimal parameters for the threshold). A candidate is a near duplicate when the estimated
    Jaccard of its target AND of its input reach the threshold; the answer is the highest
    similarity (the smaller of the two), ties to the smallest id. A re-inserted id keeps its
    old bands and is compared with its newest signatures, as in ``MinHashLSH`` plus a dict.

    Speed: when the threshold allows at most ``k`` <= 14 differing positions out of 64, the input
    signature is cut into ``k + 2`` blocks; a kept example whose input reaches the threshold
    shares at least two whole blocks with the query (pigeonhole: ``k`` differences spoil at
    most ``k`` blocks). Only kept examples found in two of the query's input-block buckets are
    then checked for a shared target band and compared: the same answer, from a handful of
    candidates where the target bands alone can return thousands (many examples of a level
    share the shape of their target). Lower thresholds enumerate the target bands' buckets."""

    MAX_BLOCKS = 16

    def __init__(self, threshold: float):
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)  # raises ValueError below 2 bands
        self.threshold = threshold
        self.b, self.r = lsh.b, lsh.r
        agreeing = next(k for k in range(NUM_PERM + 1) if k / NUM_PERM >= threshold)
        blocks = NUM_PERM - agreeing + 2
        self.blocks = blocks if blocks <= self.MAX_BLOCKS else 0
        self.block_width = NUM_PERM // blocks
        # odd multipliers folding a block into one 64-bit key (equal blocks, equal keys)
        self.mix = np.random.default_rng(0).integers(1, 2**63, self.block_width, dtype=np.uint64) | np.uint64(1)
        self.levels: set[str] = set()
        self.block_tables: dict[str, list[dict[int, list[int]]]] = {}  # with blocks: level -> block -> slots
        self.band_tables: dict[str, list[dict[bytes, set[int]]]] = {}  # without: level -> band -> slots
        self.level_of: list[str] = []  # per slot: the level of its last insert
        self.reinserted: dict[int, list[tuple[str, bytes]]] = {}  # slot -> (level, target bands) of every insert
        self.slots: dict[str, int] = {}
        self.ids: list[str] = []
        self.targets = np.zeros((1024, NUM_PERM), dtype=np.uint64)
        self.inputs = np.zeros((1024, NUM_PERM), dtype=np.uint64)
        self._chunk_targets = self._chunk_inputs = np.zeros((0, NUM_PERM), dtype=np.uint64)
        self._bands = b""
        self._block_keys: list[list[int]] = []

    def load_chunk(self, sigs: np.ndarray) -> None:
        """The signatures of the chunk that the next ``query``/``insert`` indices refer to
        (rows target, input, target, input, ... as ``score_chunk`` writes them)."""
        self._chunk_targets = np.ascontiguousarray(sigs[0::2])
        self._chunk_inputs = np.ascontiguousarray(sigs[1::2])
        self._bands = np.ascontiguousarray(self._chunk_targets[:, :self.b * self.r]).tobytes()
        if self.blocks:
            width = self.block_width
            cut = self._chunk_inputs[:, :self.blocks * width].reshape(len(sigs) // 2, self.blocks, width)
            with np.errstate(over="ignore"):
                self._block_keys = (cut * self.mix).sum(axis=2, dtype=np.uint64).tolist()

    def _target_bands(self, i: int) -> bytes:
        size = self.b * self.r * 8
        return self._bands[i * size:(i + 1) * size]

    def _share_band(self, bands: bytes, other: bytes) -> bool:
        size = self.r * 8
        return any(bands[k * size:(k + 1) * size] == other[k * size:(k + 1) * size] for k in range(self.b))

    def _in_bucket(self, slot: int, level: str, bands: bytes) -> bool:
        """Whether ``MinHashLSH`` of ``level`` returns ``slot`` for a query with these target bands."""
        inserts = self.reinserted.get(slot)
        if inserts is None:
            inserts = [(self.level_of[slot], self.targets[slot, :self.b * self.r].tobytes())]
        return any(lv == level and self._share_band(bands, old) for lv, old in inserts)

    def query(self, level: str, i: int) -> tuple[str, float] | None:
        """(id, similarity) of the best kept near duplicate of chunk example ``i`` in ``level``, or None."""
        if level not in self.levels:
            return None
        bands = self._target_bands(i)
        if self.blocks:
            hits = [hit for hit in (table.get(key) for table, key in zip(self.block_tables[level], self._block_keys[i]))
                    if hit]
            if len(hits) < 2:
                return None
            shared: dict[int, int] = {}  # slot -> input blocks it shares with the query
            for hit in hits:
                for slot in hit:
                    shared[slot] = shared.get(slot, 0) + 1
            candidates = [slot for slot, n in shared.items() if n >= 2 and self._in_bucket(slot, level, bands)]
        else:
            size = self.r * 8
            buckets = [table.get(bands[k * size:(k + 1) * size]) for k, table in enumerate(self.band_tables[level])]
            candidates = list(set().union(*(bucket for bucket in buckets if bucket)))
        if not candidates:
            return None
        slots = np.array(candidates, dtype=np.int64)
        target_j = (self.targets[slots] == self._chunk_targets[i]).mean(axis=1)
        input_j = (self.inputs[slots] == self._chunk_inputs[i]).mean(axis=1)
        close = (target_j >= self.threshold) & (input_j >= self.threshold)
        if not close.any():
            return None
        similarity = np.minimum(target_j[close], input_j[close])
        return min(((self.ids[slot], sim) for slot, sim in zip(slots[close].tolist(), similarity.tolist())),
                   key=lambda pair: (-pair[1], pair[0]))

    def insert(self, level: str, key: str, i: int) -> None:
        """Keep chunk example ``i`` under id ``key``."""
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = len(self.ids)
            self.ids.append(key)
            self.level_of.append(level)
            if slot == len(self.targets):
                self.targets = np.concatenate([self.targets, np.zeros_like(self.targets)])
                self.inputs = np.concatenate([self.inputs, np.zeros_like(self.inputs)])
        else:
            if slot not in self.reinserted:
                self.reinserted[slot] = [(self.level_of[slot], self.targets[slot, :self.b * self.r].tobytes())]
            self.reinserted[slot].append((level, self._target_bands(i)))
            self.level_of[slot] = level
        self.targets[slot] = self._chunk_targets[i]
        self.inputs[slot] = self._chunk_inputs[i]
        bands = self._target_bands(i)
        if level not in self.levels:
            self.levels.add(level)
            self.block_tables[level] = [{} for _ in range(self.blocks)]
            self.band_tables[level] = [{} for _ in range(0 if self.blocks else self.b)]
        if self.blocks:
            # the newest input must be findable wherever the id is a candidate: every level it was kept in
            inserts = self.reinserted.get(slot)
            for lv in {lv for lv, _ in inserts} if inserts else (level,):
                for table, block in zip(self.block_tables[lv], self._block_keys[i]):
                    hit = table.get(block)
                    if hit is None:
                        table[block] = [slot]
                    else:
                        hit.append(slot)
        else:
            size = self.r * 8
            for k, table in enumerate(self.band_tables[level]):
                table.setdefault(bands[k * size:(k + 1) * size], set()).add(slot)
