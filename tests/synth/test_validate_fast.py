"""The batched/vectorised validate internals give exactly what the straightforward per-example
algorithms give: window hashes, contamination, MinHash signatures, the near-duplicate index
(against datasketch's own MinHashLSH), the cheap schema check (against pydantic), and the same
output bytes for any ``-j`` and after a resume."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest

from hrmcode.artifacts import ArtifactWriter
from hrmcode.data.contamination import (
    STRIDE,
    ContaminationIndex,
    batch_window_hashes,
    window_hashes,
)
from hrmcode.data.examples import parse_example
from hrmcode.data.validate import (
    NUM_PERM,
    SAMPLE,
    NearDuplicates,
    checked_example,
    neardup,
    run,
    signatures,
    validate,
)
from hrmcode.data.validate.checks import _is_canonical
from hrmcode.data.validate.neardup import permutations
from hrmcode.errors import InputError

WORDS = ["def", "return", "x", "value", "=", "+", "(", ")", ":", "\n", "    ", "é", "日本", "\t", "``` ", "self.items"]


def _texts(rng: random.Random, count: int) -> list[str]:
    texts = ["", "short", " " * 80, "a" * 49, "a" * 50, "ab" * 26]
    while len(texts) < count:
        texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 400))))
    return texts


def test_batch_window_hashes_equal_per_text_hashes():
    texts = _texts(random.Random(1), 60)
    hashes, bounds = batch_window_hashes(texts)
    assert len(bounds) == len(texts) + 1
    for i, text in enumerate(texts):
        assert np.array_equal(hashes[bounds[i]:bounds[i + 1]], window_hashes(text))


def _reference_best(index: ContaminationIndex, sample: np.ndarray):
    """The per-text algorithm: count every matching index entry per item, take np.argmax."""
    if not len(index.hashes) or not len(sample):
        return None
    left = np.searchsorted(index.hashes, sample, side="left")
    right = np.searchsorted(index.hashes, sample, side="right")
    if not (right > left).any():
        return None
    owners = np.concatenate([index.owners[a:b] for a, b in zip(left, right) if b > a])
    counts = np.bincount(owners, minlength=len(index.items))
    sizes = np.array([it.windows for it in index.items], dtype=np.float64)
    overlap = np.minimum(counts * STRIDE / sizes, 1.0)
    top = int(np.argmax(overlap))
    return index.items[top].key, float(overlap[top])


def test_best_of_batch_equals_the_per_text_reference():
    rng = random.Random(2)
    items = _texts(rng, 30)[6:]
    shared = "def common(x):\n    return x + 1\n" * 5
    index = ContaminationIndex.build([(f"item{i}", t) for i, t in enumerate(items)] + [("dup-a", shared), ("dup-b", shared)])
    texts = [items[3], "prefix " + items[7][: len(items[7]) // 2], shared, "unrelated " * 30, "", items[1] + items[2]]
    texts += _texts(rng, 20)
    samples = [window_hashes(t, STRIDE) for t in texts]
    owner = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(samples)])
    best, overlap = index.best_of_batch(np.concatenate(samples), owner, len(texts))
    found = 0
    for i, sample in enumerate(samples):
        expected = _reference_best(index, sample)
        if expected is None:
            assert best[i] == -1
        else:
            found += 1
            assert (index.items[best[i]].key, float(overlap[i])) == expected
            assert index.best(texts[i]) is not None and index.best(texts[i]).item == expected[0]
    assert found >= 4
    assert index.items[best[2]].key == "dup-a"  # a tie goes to the lower item, as np.argmax does


def _reference_signature(hashes: np.ndarray) -> np.ndarray:
    sampled = hashes[hashes % np.uint64(SAMPLE) == 0]
    if len(sampled) == 0:
        sampled = hashes[:1] if len(hashes) else np.zeros(1, dtype=np.uint64)
    a, b = permutations()
    with np.errstate(over="ignore"):
        return (np.unique(sampled)[:, None] * a + b).min(axis=0)


def test_batched_signatures_equal_per_text_signatures(monkeypatch):
    monkeypatch.setattr(neardup, "SIGNATURE_ROWS", 7)  # texts spread over many blocks
    texts = _texts(random.Random(3), 40)
    hashes, bounds = batch_window_hashes(texts)
    batch = signatures(hashes, bounds)
    assert batch.shape == (len(texts), NUM_PERM)
    for i, text in enumerate(texts):
        assert np.array_equal(batch[i], _reference_signature(window_hashes(text)))


class _DatasketchReference:
    """The previous implementation: one MinHashLSH per level, MinHash objects per candidate."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.lsh: dict = {}
        self.kept: dict = {}

    def query(self, level, target, given):
        from datasketch import LeanMinHash

        if level not in self.lsh:
            return None
        best = None
        for key in sorted(self.lsh[level].query(LeanMinHash(seed=1, hashvalues=target, scheme="affine64"))):
            kept_target, kept_input = self.kept[key]
            target_j, input_j = float(np.mean(kept_target == target)), float(np.mean(kept_input == given))
            if target_j >= self.threshold and input_j >= self.threshold:
                similarity = min(target_j, input_j)
                if best is None or similarity > best[1]:
                    best = (key, similarity)
        return best

    def insert(self, level, key, target, given):
        from datasketch import LeanMinHash, MinHashLSH

        if level not in self.lsh:
            self.lsh[level] = MinHashLSH(threshold=self.threshold, num_perm=NUM_PERM)
        self.lsh[level].insert(key, LeanMinHash(seed=1, hashvalues=target, scheme="affine64"), check_duplication=False)
        self.kept[key] = (target, given)


def _signature_stream(rng: np.random.Generator, count: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(level, id, target, input) with planted near copies, shared targets and re-used ids."""
    stream = []
    for n in range(count):
        level = ["plan", "edit", "coord"][n % 3]
        if stream and rng.random() < 0.6:
            _, key, target, given = stream[int(rng.integers(len(stream)))]
            target, given = target.copy(), given.copy()
            for sig in (target, given):  # perturb a few positions: some stay above the threshold
                where = rng.choice(NUM_PERM, int(rng.integers(0, 12)), replace=False)
                sig[where] = rng.integers(0, 2**63, len(where), dtype=np.uint64)
            key = key if rng.random() < 0.1 else f"ex{n:04d}"  # sometimes the same id again
        else:
            target = rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
            given = rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
            key = f"ex{n:04d}"
        stream.append((level, key, target, given))
    return stream


@pytest.mark.parametrize(("threshold", "seed"), [(0.9, 4), (0.9, 7), (0.9, 8), (0.8, 4), (0.5, 4)])
def test_near_duplicates_answer_as_datasketch_lsh(threshold, seed):
    stream = _signature_stream(np.random.default_rng(seed), 600)
    fast, reference = NearDuplicates(threshold), _DatasketchReference(threshold)
    assert (fast.blocks > 0) == (threshold >= 0.8)  # both strategies are exercised
    hits = 0
    for start in range(0, len(stream), 64):  # chunks, as the decision pass loads them
        chunk = stream[start:start + 64]
        fast.load_chunk(np.stack([sig for _, _, target, given in chunk for sig in (target, given)]))
        for i, (level, key, target, given) in enumerate(chunk):
            expected = reference.query(level, target, given)
            assert fast.query(level, i) == expected, (start + i, key)
            hits += expected is not None
            if expected is None or (start + i) % 5 == 0:  # keep the non-duplicates, and a few duplicates
                fast.insert(level, key, i)
                reference.insert(level, key, target, given)
    assert hits > 20


def _valid_example() -> dict:
    return {"id": "t#plan-0", "task_id": "t", "source": "s", "level": "plan",
            "input": {"text": "### plan\n", "context": {"files": ["a.py"]}}, "target": "FILE a.py\n",
            "language": "python", "stage": 2, "split": "train",
            "provenance": {"inputs": ["abc"], "rule": "plan/from-reference", "model_written": False}}


def _mutations() -> list:
    records = [_valid_example()]
    variants = [
        ("stage", "2"), ("stage", 2.0), ("stage", True), ("stage", 0), ("stage", 5), ("level", "dream"),
        ("split", "test"), ("target", "  \n"), ("target", 3), ("id", 7), ("language", None), ("extra", 1),
    ]
    for key, value in variants:
        record = _valid_example()
        record[key] = value
        records.append(record)
    for path, value in [(("input", "text"), b"x".decode()), (("input", "text"), 5), (("input", "context"), []),
                        (("input", "extra"), 1), (("provenance", "inputs"), ["a", 1]), (("provenance", "inputs"), "a"),
                        (("provenance", "model_written"), 0), (("provenance", "rule"), None)]:
        record = _valid_example()
        record[path[0]][path[1]] = value
        records.append(record)
    for key in ("provenance", "input", "stage"):
        record = _valid_example()
        del record[key]
        records.append(record)
    record = _valid_example()
    del record["provenance"]["model_written"]
    records.append(record)
    record = _valid_example()
    del record["input"]["context"]
    records.append(record)
    return records + [[1, 2], "text", None]


def test_canonical_fast_path_agrees_with_pydantic():
    fast_path = 0
    for record in _mutations():
        try:
            expected = parse_example(record, where="f:1").model_dump(mode="json")
        except InputError as exc:
            expected = exc.message
        if _is_canonical(record):
            fast_path += 1
            assert expected == record  # validates and dumps back to itself
        try:
            got = checked_example(copy.deepcopy(record), where="f:1")
        except InputError as exc:
            got = exc.message
        assert got == expected, record
    assert fast_path == 2  # the valid record and the same with another input text


def _artifact(tmp_path, records: list, name: str = "ex"):
    with ArtifactWriter(tmp_path / name, "examples", name=name, update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", records)
        return writer.finish({"examples": len(records)})


def test_non_object_line_is_a_schema_rejection(tmp_path):
    result = validate(_artifact(tmp_path, [_valid_example(), [1, 2]]).path, exec_checks=False)
    rejected = [json.loads(line) for line in (result.artifact.path / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejected] == ["line-2"] and rejected[0]["reasons"][0].startswith("schema: ")
    assert result.report["accepted"] == 1


def test_same_bytes_for_any_jobs_and_after_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "CHUNK_EXAMPLES", 3)
    rng = random.Random(5)
    records = []
    for n in range(14):
        record = _valid_example()
        record["id"] = f"t{n % 5}#plan-{n}"
        record["task_id"] = f"t{n % 5}"
        record["input"]["text"] = "### plan\n" + " ".join(rng.choice(WORDS[:9]) for _ in range(120 if n % 4 else 40))
        records.append(record)
    records.append(copy.deepcopy(records[2]) | {"id": "t2#plan-99"})  # an exact duplicate
    artifact = _artifact(tmp_path, records)
    files = ("accepted.jsonl", "rejected.jsonl", "scores.jsonl", "report.json")
    one = validate(artifact.path, exec_checks=False, jobs=1, out=tmp_path / "one")
    two = validate(artifact.path, exec_checks=False, jobs=2, out=tmp_path / "two")
    for name in files:
        assert (one.artifact.path / name).read_bytes() == (two.artifact.path / name).read_bytes()
    assert one.report["gates"]["exact_duplicate"] == 1
    parts = sorted((tmp_path / "two" / "parts").glob("*.json"))
    assert len(parts) == 5
    parts[2].unlink()  # as if the run had stopped while scoring that chunk
    scored = []
    real = run.score_chunk
    monkeypatch.setattr(run, "score_chunk", lambda *a: scored.append(a[-1]) or real(*a))
    again = validate(artifact.path, exec_checks=False, jobs=1, out=tmp_path / "two")
    assert [p.rsplit("/", 1)[1] for p in scored] == [parts[2].stem]
    for name in files:
        assert (again.artifact.path / name).read_bytes() == (one.artifact.path / name).read_bytes()


def test_dedup_threshold_without_two_lsh_bands_is_a_usage_error(cli, tmp_path):
    artifact = _artifact(tmp_path, [_valid_example()])
    result = cli("validate", str(artifact.path), "--dedup-threshold", "1.0", "--no-exec")
    assert result.exit_code == 2 and "--dedup-threshold 1.0" in result.stderr


def test_contamination_scores_equal_the_per_example_reference(tmp_path):
    import gzip

    from hrmcode.data.contamination import build_index
    from hrmcode.data.sources.humaneval import package_data_file

    with gzip.open(package_data_file(), "rt") as fh:
        problems = [json.loads(line) for _, line in zip(range(6), fh)]
    records = []
    for n, problem in enumerate(problems):
        record = _valid_example()
        record["id"] = f"t#plan-{n}"
        solution = problem["prompt"] + problem["canonical_solution"]
        record["input"]["text"] += "see:\n" + solution[: len(solution) * (n + 1) // 6]  # 1/6 .. all of it
        record["target"] += problem["prompt"][: 40 * n]
        records.append(record)
    result = validate(_artifact(tmp_path, records).path, exec_checks=False, allow_contaminated=True)
    scores = [json.loads(line) for line in (result.artifact.path / "scores.jsonl").read_text().splitlines()]
    index = build_index()
    for record, score in zip(records, scores):
        sample = np.concatenate([window_hashes(record["input"]["text"], STRIDE), window_hashes(record["target"], STRIDE)])
        hit = index.best_of_hashes(sample)
        assert score["contamination"] == {"item": hit.item, "overlap": round(hit.overlap, 4)}
    assert sum(s["contamination"]["overlap"] >= 0.5 for s in scores) >= 3
