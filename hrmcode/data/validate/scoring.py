"""``validate``'s worker side: score one chunk of ``examples.jsonl`` into part files.

Per example in Python: JSON, schema, completeness (``checks.py``) and the exact-duplicate key;
window hashing, contamination (``hrmcode.data.contamination``) and MinHash (``neardup.py``) over
batches of examples with numpy. A chunk's results are three part files written in the order of
``PART_FILES``, each atomically, so the last one's presence means the chunk is finished. Scoring
decides nothing: duplicates, thresholds and execution are the decision pass's (``run.py``).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from hrmcode.atomic import atomic_open, write_text
from hrmcode.data.contamination import STRIDE, ContaminationIndex, batch_window_hashes
from hrmcode.data.examples import compared_texts
from hrmcode.data.validate.checks import checked_example, completeness
from hrmcode.data.validate.neardup import NUM_PERM, signatures
from hrmcode.errors import InputError
from hrmcode.jsonl import dumps, iter_chunk_lines

SUMMARY_KEYS = ("id", "task_id", "level", "language", "stage", "split", "source")
BATCH_CHARS = 1 << 21  # text hashed per numpy pass (bounds the worker's arrays to ~100 MiB)
PART_FILES = (".npy", ".scores", ".json")  # written in this order; the last one marks a finished chunk

_INDEX: ContaminationIndex | None = None  # set by init_worker in each process


def init_worker(index: ContaminationIndex) -> None:
    """Give this process the contamination index (a pool's initializer, or the run's own process)."""
    global _INDEX
    _INDEX = index


def score_chunk(path: str, start: int, end: int, first_line: int, part: str) -> int:
    """Score every example of one byte range into ``<part>.npy`` (MinHash signatures, target and
    input per example), ``<part>.scores`` (each example's ``scores.jsonl`` line up to the fields
    the decision adds) and ``<part>.json`` (what the decision reads).

    Per example in Python: JSON, schema, completeness and the exact-duplicate key. Window
    hashing, contamination and MinHash run over batches of examples (``_hash_batch``)."""
    assert _INDEX is not None
    with open(path, "rb") as fh:
        fh.seek(start)
        raw = fh.read(end - start)
    entries: list[dict] = []
    valid: list[tuple[int, str, str]] = []  # (entry index, input text, target) of schema-valid examples
    for lineno, record in iter_chunk_lines(raw, first_line, path):
        try:
            example = checked_example(record, where=f"{path}:{lineno}")
        except InputError as exc:
            given_id = record.get("id", f"line-{lineno}") if isinstance(record, dict) else f"line-{lineno}"
            entries.append({"line": lineno, "id": str(given_id), "schema_error": exc.message})
            continue
        checks = completeness(example)
        text, target = compared_texts(example)
        valid.append((len(entries), text, target))
        entries.append({
            "line": lineno, "id": example["id"], "task_id": example["task_id"], "level": example["level"],
            "language": example["language"], "stage": example["stage"], "split": example["split"],
            "source": example["source"],
            "exact": hashlib.sha256(f"{example['level']}\0{text}\0{target}".encode()).hexdigest()[:32],
            "checks": checks,
            "completeness": round(sum(checks.values()) / len(checks), 4),
            "contamination": None,
        })
    sigs = np.zeros((2 * len(entries), NUM_PERM), dtype=np.uint64)  # [target, input] per entry; zeros for schema errors
    batch: list[tuple[int, str, str]] = []
    size = 0
    for item in valid:
        batch.append(item)
        size += len(item[1]) + len(item[2])
        if size >= BATCH_CHARS:
            _hash_batch(batch, entries, sigs)
            batch, size = [], 0
    if batch:
        _hash_batch(batch, entries, sigs)
    prefixes: list[str] = []
    decisions: list[dict] = []
    for entry in entries:
        exact = entry.pop("exact", None)
        prefixes.append(dumps(entry)[:-1])  # the closing brace comes after the decision's fields
        if "schema_error" in entry:
            decisions.append({"id": entry["id"], "schema_error": entry["schema_error"]})
            continue
        decision = {k: entry[k] for k in SUMMARY_KEYS}
        decision.update({"exact": exact, "failed": sorted(k for k, ok in entry["checks"].items() if not ok),
                         "completeness": entry["completeness"], "contamination": entry["contamination"]})
        decisions.append(decision)
    # in the order of PART_FILES: the last one marks a finished chunk
    with atomic_open(part + ".npy", "wb") as fh:
        np.save(fh, sigs)
    write_text(part + ".scores", "".join(line + "\n" for line in prefixes))
    write_text(part + ".json", json.dumps(decisions))
    return len(entries)


def _hash_batch(batch: list[tuple[int, str, str]], entries: list[dict], sigs: np.ndarray) -> None:
    """Contamination and MinHash signatures of a batch of examples, from one hashing pass over
    their texts (target, input, target, input, ...)."""
    assert _INDEX is not None
    hashes, bounds = batch_window_hashes([t for _, text, target in batch for t in (target, text)])
    rows = np.array([2 * i for i, _, _ in batch], dtype=np.int64)
    block = signatures(hashes, bounds)
    sigs[rows] = block[0::2]
    sigs[rows + 1] = block[1::2]
    if not len(_INDEX):
        return
    # every STRIDE-th window of each text, as ContaminationIndex.best samples one text
    samples = (np.diff(bounds) + STRIDE - 1) // STRIDE
    before = np.cumsum(samples) - samples
    positions = np.repeat(bounds[:-1] - STRIDE * before, samples) + STRIDE * np.arange(int(samples.sum()))
    example = np.repeat(np.arange(len(samples), dtype=np.int64) // 2, samples)
    items, overlaps = _INDEX.best_of_batch(hashes[positions], example, len(batch))
    for (index, _, _), item, overlap in zip(batch, items.tolist(), overlaps.tolist()):
        if item >= 0:
            entries[index]["contamination"] = {"item": _INDEX.items[item].key, "overlap": round(overlap, 4)}
