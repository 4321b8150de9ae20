"""``hrmcode validate``: quality gates over an ``examples`` artifact -> a ``validated-examples`` artifact.

Gates, in order, each with its score in ``scores.jsonl`` and its reason in ``rejected.jsonl``:

1. schema: the record parses as an ``Example`` (hard gate).
2. completeness: level-specific checks, each a hard gate; the score is the fraction passed (plan: only
   FILE/TOUCH/TEST/RUN lines, at least one FILE, FILE lines equal to the context's files; edit:
   the target parses as SEARCH/REPLACE blocks and applies to the files in ``input.context``;
   tool: at least one complete ``<function=...>`` call; coord: AGENT and S lines, every AFTER
   names an earlier S; solve: the target parses as whole files).
3. exact duplicates: same level, input text and target as an earlier example (hard gate).
4. near duplicates: MinHash (``datasketch``, 64 permutations, shingles = the 50-character
   windows of whitespace-normalised text that the contamination check hashes anyway, sampled by
   content: those whose hash is divisible by 8) with datasketch's LSH banding per level (see
   ``NearDuplicates``); an example whose target AND input both reach ``dedup_threshold``
   estimated Jaccard with an earlier kept example is rejected (hard gate). Earlier = input
   order, so the result is deterministic.
5. contamination: overlap with HumanEval (always) and the polyglot / LiveCodeBench / HumanEval
   tasks fetched into the workspace (``hrmcode.data.contamination``); at or above the threshold
   the example is flagged and rejected, or kept with the flag under ``allow_contaminated``.
6. execution (unless ``exec_checks=False``): for ``edit``/``solve`` examples of tasks that carry
   runnable tests (HumanEval functions run as the official harness assembles them; polyglot-style
   exercises through ``hrmcode.sandbox.toolchains.run_tests``), the target applied to the starting files must pass the task's tests in the
   sandbox and the starting files alone must fail (hard gate when it runs; ``skipped`` with the
   reason otherwise).

Quality score = completeness x (1 - contamination overlap) (just completeness under
``allow_contaminated``); an example is accepted when it passes
every hard gate and its score reaches ``min_score``. ``accepted.jsonl`` holds the accepted
records byte-for-byte as they were in ``examples.jsonl``; ``rejected.jsonl`` each rejected record
with its reasons; ``report.json`` the gate counts and the balance by language / level / stage /
split (of all examples and of the accepted ones).

How it runs: examples are scored in chunks of ``CHUNK_EXAMPLES`` lines by a process pool
(``jobs``): JSON, schema, completeness and the exact-duplicate key per example; window hashing,
contamination and MinHash over whole batches of examples with numpy. The decision pass (gates
3-6, the output files) is sequential in input order and follows the workers chunk by chunk, so
the two overlap. The schema is checked in Python for records in the canonical form that
``synthesize`` writes and by pydantic for any other record (same verdicts, see
``checked_example``). The output bytes do not depend on ``jobs``.

Resumable: per-chunk scores are kept in ``parts/`` and execution results in ``exec.jsonl``;
a rerun with the same ``--out`` skips both (``--redo`` starts over). The decision pass is
always redone (it is cheap next to scoring).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrmcode.artifacts import Artifact, ArtifactWriter, load_artifact, output_location
from hrmcode.data.contamination import DEFAULT_THRESHOLD, STRIDE, ContaminationIndex, batch_window_hashes, build_index
from hrmcode.data.examples import LEVELS, parse_example
from hrmcode.data.synthesize.pipeline import line_chunks
from hrmcode.edits import MalformedEdit, apply_edits, parse_edits
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import AppendLog, dumps, iter_chunk_lines
from hrmcode.reporting import reporter

NUM_PERM = 64
SAMPLE = 8  # keep shingles whose hash is 0 modulo SAMPLE (content-defined, shift-invariant)
CHUNK_EXAMPLES = 2048
PARTS = "parts"
RUN_PARAMS = "run-params.json"


# -- per-example checks (worker side) ----------------------------------------------------------
def _plan_checks(example: dict) -> dict[str, bool]:
    lines = example["target"].splitlines()
    files = [line[5:] for line in lines if line.startswith("FILE ")]
    expected = example["input"]["context"].get("files")
    checks = {
        "plan_lines_known": all(line.split(" ", 1)[0] in ("FILE", "TOUCH", "TEST", "RUN") for line in lines if line),
        "plan_has_file": bool(files),
    }
    if isinstance(expected, list):
        checks["plan_files_match"] = files == expected
    return checks


def _edit_checks(example: dict) -> dict[str, bool]:
    context = example["input"]["context"]
    files = context.get("files") or {}
    paths = context.get("paths") or sorted(files)
    try:
        edits = parse_edits(example["target"], "diff", paths)
    except (MalformedEdit, ValueError):
        return {"edit_parses": False, "edit_applies": False}
    try:
        apply_edits(files, edits)
        applies = bool(edits)
    except MalformedEdit:
        applies = False
    return {"edit_parses": bool(edits), "edit_applies": applies}


def _tool_checks(example: dict) -> dict[str, bool]:
    target = example["target"]
    return {"tool_has_call": "<function=" in target and "</function>" in target,
            "tool_calls_closed": target.count("<function=") == target.count("</function>")}


def _coord_checks(example: dict) -> dict[str, bool]:
    lines = example["target"].splitlines()
    ids: set[str] = set()
    ordered = True
    for line in lines:
        if line.startswith("S") and " " in line:
            sid = line.split(" ", 1)[0]
            if " AFTER " in line:
                ordered &= all(dep in ids for dep in line.rsplit(" AFTER ", 1)[1].split(","))
            ids.add(sid)
    return {"coord_has_agents": any(line.startswith("AGENT ") for line in lines), "coord_has_subtasks": bool(ids),
            "coord_dependencies_known": ordered}


def _solve_checks(example: dict) -> dict[str, bool]:
    paths = example["input"]["context"].get("paths") or []
    try:
        edits = parse_edits(example["target"], "whole", paths)
    except (MalformedEdit, ValueError):
        return {"solve_parses": False}
    return {"solve_parses": bool(edits)}


LEVEL_CHECKS = {"plan": _plan_checks, "edit": _edit_checks, "tool": _tool_checks, "coord": _coord_checks,
                "solve": _solve_checks}


def completeness(example: dict) -> dict[str, bool]:
    checks = {"input_text": bool(example["input"]["text"].strip()),
              "id_names_task": example["id"].startswith(example["task_id"])}
    checks.update(LEVEL_CHECKS[example["level"]](example))
    return checks


_TEMPLATE: tuple[np.ndarray, np.ndarray] | None = None
SIGNATURE_ROWS = 32768  # sampled shingles permuted at once, per permutation (a 256 KiB block)


def _permutations() -> tuple[np.ndarray, np.ndarray]:
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
    a, b = _permutations()
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


# The schema in the form ``synthesize`` writes it: a record of exactly these keys and types
# parses as an ``Example`` unchanged, so pydantic is only consulted for the others (which it
# then accepts, coerces or rejects with its message).
_EXAMPLE_KEYS = frozenset(("id", "task_id", "source", "level", "input", "target", "language", "stage", "split",
                           "provenance"))
_INPUT_KEYS = frozenset(("text", "context"))
_PROVENANCE_KEYS = frozenset(("inputs", "rule", "model_written"))
_SPLITS = ("train", "heldout")
SUMMARY_KEYS = ("id", "task_id", "level", "language", "stage", "split", "source")


def _is_canonical(record) -> bool:
    """True when ``record`` certainly validates as an ``Example`` and dumps back to itself."""
    if type(record) is not dict or record.keys() != _EXAMPLE_KEYS:
        return False
    given, provenance = record["input"], record["provenance"]
    stage = record["stage"]
    return (type(record["id"]) is str and type(record["task_id"]) is str and type(record["source"]) is str
            and type(record["language"]) is str and type(record["target"]) is str and bool(record["target"].strip())
            and record["level"] in LEVELS and record["split"] in _SPLITS and type(stage) is int and 1 <= stage <= 4
            and type(given) is dict and given.keys() == _INPUT_KEYS and type(given["text"]) is str
            and type(given["context"]) is dict
            and type(provenance) is dict and provenance.keys() == _PROVENANCE_KEYS
            and type(provenance["rule"]) is str and type(provenance["model_written"]) is bool
            and type(provenance["inputs"]) is list and all(type(i) is str for i in provenance["inputs"]))


def checked_example(record, where: str) -> dict:
    """The record as a validated ``Example`` dict (JSON mode); ``InputError`` when it is not one.
    Records already in canonical form skip pydantic (the same result, see ``_is_canonical``)."""
    if _is_canonical(record):
        return record
    return parse_example(record, where=where).model_dump(mode="json")


_INDEX: ContaminationIndex | None = None


def _init_worker(index: ContaminationIndex) -> None:
    global _INDEX
    _INDEX = index


BATCH_CHARS = 1 << 21  # text hashed per numpy pass (bounds the worker's arrays to ~100 MiB)
PART_FILES = (".npy", ".scores", ".json")  # written in this order; the last one marks a finished chunk


def _score_chunk(path: str, start: int, end: int, first_line: int, part: str) -> int:
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
        text, target = example["input"]["text"], example["target"]
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
    outputs = {".scores": "".join(line + "\n" for line in prefixes), ".json": json.dumps(decisions)}
    for suffix in PART_FILES:
        tmp = part + suffix + ".tmp"
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, sigs)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(outputs[suffix])
        os.replace(tmp, part + suffix)
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


# -- execution checks --------------------------------------------------------------------------
def _humaneval_program(task: dict, solution: str) -> str:
    tests = task["tests"]
    test_code = next(iter(tests["files"].values()))
    return f"{solution}\n\n{test_code}\n\ncheck({tests['entry_point']})\n"


class ExecChecker:
    """Runs the candidate and the stub of a task in the sandbox; caches verdicts in ``exec.jsonl``."""

    def __init__(self, tasks: dict[str, dict], log: AppendLog, timeout_s: float = 30.0):
        self.tasks = tasks
        self.log = log
        self.timeout_s = timeout_s
        self._sandbox = None
        self._unavailable: str | None = None

    def _box(self):
        if self._sandbox is None and self._unavailable is None:
            from hrmcode.errors import HrmcodeError
            from hrmcode.sandbox import get_sandbox

            try:
                self._sandbox = get_sandbox()
            except HrmcodeError as exc:
                self._unavailable = f"sandbox unavailable: {exc.message}"
        return self._sandbox

    def _run(self, task: dict, files: dict[str, str]) -> tuple[bool | None, str]:
        key = hashlib.sha256(json.dumps([task["id"], files], sort_keys=True).encode()).hexdigest()
        if self.log.done(key):
            entry = self.log.records[key]
            return entry["passed"], entry["detail"]
        from hrmcode.sandbox.base import Limits

        tests = task.get("tests") or {}
        if task.get("kind") == "function" and tests.get("entry_point") and tests.get("files"):
            box = self._box()
            if box is None:
                return None, self._unavailable or "sandbox unavailable"
            solution = next(iter(files.values()))
            result = box.run(["python3", "program.py"], {"program.py": _humaneval_program(task, solution)},
                             Limits(timeout_s=self.timeout_s))
            passed, detail = result.ok, f"exit {result.exit_code}{' (timeout)' if result.timed_out else ''}"
        elif task.get("kind") == "exercise":
            from hrmcode.sandbox.toolchains import run_tests

            box = self._box()
            if box is None:
                return None, self._unavailable or "sandbox unavailable"
            tree = {**(task.get("files") or {}), **files, **(tests.get("files") or {})}
            run = run_tests(task["language"], tree, sandbox=box, limits=Limits(timeout_s=self.timeout_s * 4))
            passed, detail = bool(run.passed), f"exit {run.result.exit_code}"
        else:
            return None, "the task carries no tests that can run here"
        self.log.append({"id": key, "task_id": task["id"], "passed": passed, "detail": detail})
        return passed, detail

    def check(self, example: dict) -> tuple[str, str]:
        """('passed' | 'failed' | 'skipped', detail) for one edit/solve example."""
        task = self.tasks.get(example["task_id"])
        if task is None:
            return "skipped", "task not found in the examples' input tasks artifact"
        context = example["input"]["context"]
        paths = context.get("paths") or []
        start = {p: (task.get("files") or {}).get(p, "") for p in paths}
        try:
            fmt = "whole" if example["level"] == "solve" else "diff"
            candidate = apply_edits({p: t for p, t in start.items() if t or fmt == "diff"},
                                    parse_edits(example["target"], fmt, paths))
        except MalformedEdit as exc:
            return "failed", f"target does not apply: {str(exc).splitlines()[0]}"
        passed, detail = self._run(task, candidate)
        if passed is None:
            return "skipped", detail
        if not passed:
            return "failed", f"tests fail with the target applied ({detail})"
        stub_passed, stub_detail = self._run(task, start)
        if stub_passed:
            return "failed", "tests already pass on the starting files (the example teaches nothing)"
        return "passed", f"target passes, stub fails ({stub_detail})"


def _tasks_of(examples: Artifact) -> dict[str, dict]:
    from hrmcode.jsonl import read_jsonl

    tasks: dict[str, dict] = {}
    for entry in examples.manifest.get("inputs", []):
        if entry.get("kind") == "tasks" and Path(entry["path"]).is_dir():
            for task in read_jsonl(load_artifact(entry["path"], "tasks").file("tasks.jsonl")):
                tasks[task["id"]] = task
    return tasks


# -- the run -----------------------------------------------------------------------------------
@dataclass
class ValidationResult:
    artifact: Artifact | None
    report: dict = field(default_factory=dict)
    dry_run: bool = False


def _prepare(out_dir: Path, params: dict, redo: bool) -> None:
    if redo:
        for name in ("exec.jsonl", RUN_PARAMS, "accepted.jsonl", "rejected.jsonl", "scores.jsonl", "report.json",
                     "manifest.json"):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / PARTS, ignore_errors=True)
    params_file = out_dir / RUN_PARAMS
    if params_file.exists() and json.loads(params_file.read_text(encoding="utf-8")) != json.loads(json.dumps(params)):
        raise UsageError(f"{out_dir} holds a validation run with other inputs or options",
                         "pass --redo to start over there, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PARTS).mkdir(exist_ok=True)
    params_file.write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")


def validate(
    examples: str | Path,
    *,
    out: Path | str | None = None,
    workspace: Path | str | None = None,
    min_score: float = 0.5,
    dedup_threshold: float = 0.9,
    contamination_threshold: float = DEFAULT_THRESHOLD,
    allow_contaminated: bool = False,
    exec_checks: bool = True,
    exec_timeout_s: float = 30.0,
    jobs: int = 1,
    redo: bool = False,
    dry_run: bool = False,
) -> ValidationResult:
    for name, value in (("--min-score", min_score), ("--dedup-threshold", dedup_threshold),
                        ("--contamination-threshold", contamination_threshold)):
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{name} {value} is outside [0, 1]", "give a fraction such as 0.5")
    source = load_artifact(examples, "examples", workspace)
    path = source.file("examples.jsonl")
    chunks = line_chunks(path, CHUNK_EXAMPLES)
    params = {"examples": str(source.path), "input_sha256": source.manifest_sha256(), "min_score": min_score,
              "dedup_threshold": dedup_threshold, "contamination_threshold": contamination_threshold,
              "allow_contaminated": allow_contaminated, "exec": exec_checks}
    if dry_run:
        return ValidationResult(None, {"examples": source.stats.get("examples"), "chunks": len(chunks), "params": params},
                                dry_run=True)
    try:
        near_duplicates = NearDuplicates(dedup_threshold)
    except ValueError as exc:
        raise UsageError(f"--dedup-threshold {dedup_threshold} cannot be indexed: {exc}", "use 0.9 or lower") from None
    index = build_index(workspace, contamination_threshold)
    reporter().log(f"contamination index: {len(index)} benchmark items from {', '.join(index.origins)}")
    out_dir, update_latest = output_location("validate", source.name, out, workspace, params)
    _prepare(out_dir, params, redo)
    writer = ArtifactWriter(out_dir, "validated-examples", name=source.name, params=params, inputs=[source],
                            resumable=True, update_latest=update_latest)
    names = [f"{i:06d}" for i in range(len(chunks))]
    todo = [(n, c) for n, c in zip(names, chunks)
            if not all((out_dir / PARTS / f"{n}{suffix}").exists() for suffix in PART_FILES)]
    _permutations()  # computed once here; forked workers inherit it
    args = {n: (str(path), c[0], c[1], c[2], str(out_dir / PARTS / n)) for n, c in todo}
    pool = None
    if jobs > 1 and len(todo) > 1:
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(index,))
    else:
        _init_worker(index)
    try:
        with reporter().task("validate", total=len(chunks)) as bar:
            # workers score chunks ahead while the decision pass follows them in input order
            pending = {n: pool.submit(_score_chunk, *a) for n, a in args.items()} if pool is not None else {}

            def scored(name: str) -> None:
                if name in pending:
                    pending.pop(name).result()
                elif name in args:
                    _score_chunk(*args[name])
                bar.advance()

            report = _decide(writer, out_dir, names, chunks, path, source, min_score, near_duplicates,
                             allow_contaminated, exec_checks, exec_timeout_s, index, scored)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    writer.write_json("report.json", report)
    artifact = writer.finish(report)
    return ValidationResult(artifact, report)


def _decide(writer: ArtifactWriter, out_dir: Path, names: list[str], chunks, path: Path, source: Artifact,
            min_score: float, near_duplicates: "NearDuplicates", allow_contaminated: bool, exec_checks: bool,
            exec_timeout_s: float, index: ContaminationIndex, scored=lambda name: None) -> dict:
    """The sequential pass, in input order: duplicates, thresholds, execution, and the output files.
    ``scored(name)`` returns once chunk ``name``'s part files exist."""
    seen_exact: dict[str, str] = {}
    gates: Counter = Counter()
    balance_keys = ("language", "level", "stage", "split")
    every, kept = Counter(), Counter()  # (language, level, stage, split) -> examples
    checker = None
    exec_log = None
    if exec_checks:
        exec_log = AppendLog(out_dir / "exec.jsonl", key="id")
        checker = ExecChecker(_tasks_of(source), exec_log, exec_timeout_s)
    accepted_path = writer.path("accepted.jsonl")
    rejected_path = writer.path("rejected.jsonl")
    scores_path = writer.path("scores.jsonl")
    counts = Counter()
    try:
        with open(path, "rb") as examples_fh, open(str(accepted_path) + ".tmp", "wb") as acc, \
                open(str(rejected_path) + ".tmp", "w", encoding="utf-8") as rej, \
                open(str(scores_path) + ".tmp", "w", encoding="utf-8") as sco:
            for name, (start, end, _first) in zip(names, chunks):
                scored(name)
                part = out_dir / PARTS / name
                with open(f"{part}.json", encoding="utf-8") as fh:
                    entries = json.load(fh)
                with open(f"{part}.scores", encoding="utf-8", newline="") as fh:
                    prefixes = fh.read().split("\n")
                near_duplicates.load_chunk(np.load(f"{part}.npy"))
                examples_fh.seek(start)
                lines = [line for line in examples_fh.read(end - start).split(b"\n") if line.strip()]
                for i, (entry, line, prefix) in enumerate(zip(entries, lines, prefixes)):
                    reasons: list[str] = []
                    flags: list[str] = []
                    decided: dict = {}  # the fields scores.jsonl adds after the prefix
                    if "schema_error" in entry:
                        reasons.append(f"schema: {entry['schema_error']}")
                        gates["schema"] += 1
                    else:
                        failed = entry["failed"]
                        if failed:
                            gates["incomplete"] += 1
                        contamination = entry["contamination"]
                        overlap = contamination["overlap"] if contamination else 0.0
                        # with --allow-contaminated the overlap is a flag, not a penalty
                        score = round(entry["completeness"] * (1.0 if allow_contaminated else 1.0 - overlap), 4)
                        decided["score"] = score
                        duplicate_of = seen_exact.get(entry["exact"])
                        if duplicate_of is not None:
                            reasons.append(f"exact duplicate of {duplicate_of}")
                            gates["exact_duplicate"] += 1
                        else:
                            near = near_duplicates.query(entry["level"], i)
                            if near is not None:
                                reasons.append(f"near duplicate of {near[0]} (jaccard {near[1]:.2f})")
                                gates["near_duplicate"] += 1
                        if contamination and overlap >= index.threshold:
                            text = (f"contaminated: {overlap:.0%} of {contamination['item']} "
                                    f"appears in the prompt or target")
                            gates["contaminated"] += 1
                            (flags if allow_contaminated else reasons).append(text)
                        if failed:
                            reasons.append(f"incomplete: failed {', '.join(failed)}")
                        if score < min_score:
                            reasons.append(f"score {score:.2f} below --min-score {min_score:.2f}")
                            gates["low_score"] += 1
                        if not reasons and checker is not None and entry["level"] in ("edit", "solve"):
                            verdict, detail = checker.check(json.loads(line))
                            decided["exec"] = {"verdict": verdict, "detail": detail}
                            gates[f"exec_{verdict}"] += 1
                            if verdict == "failed":
                                reasons.append(f"execution: {detail}")
                        if not reasons:
                            seen_exact[entry["exact"]] = entry["id"]
                            near_duplicates.insert(entry["level"], entry["id"], i)
                        else:
                            seen_exact.setdefault(entry["exact"], entry["id"])
                    decided.update({"reasons": reasons, "flags": flags, "accepted": not reasons})
                    group = tuple(entry.get(key) for key in balance_keys)
                    every[group] += 1
                    if reasons:
                        rej.write(dumps({"id": entry["id"], "reasons": reasons, "example": json.loads(line)}) + "\n")
                        counts["rejected"] += 1
                    else:
                        acc.write(line + b"\n")
                        kept[group] += 1
                        counts["accepted"] += 1
                    sco.write(prefix + _decided_json(decided) + "\n")
        for target in (accepted_path, rejected_path, scores_path):
            os.replace(str(target) + ".tmp", target)
    finally:
        if exec_log is not None:
            exec_log.close()
    writer.add("accepted.jsonl", counts["accepted"])
    writer.add("rejected.jsonl", counts["rejected"])
    writer.add("scores.jsonl")
    total = counts["accepted"] + counts["rejected"]
    return {
        "examples": total,
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "acceptance_rate": round(counts["accepted"] / total, 4) if total else 0.0,
        "gates": dict(sorted(gates.items())),
        "balance": {key: {"all": _balance(every, k), "accepted": _balance(kept, k)}
                    for k, key in enumerate(balance_keys)},
        "contamination_index": {"items": len(index), "origins": index.origins, "threshold": index.threshold},
    }


def _balance(groups: Counter, k: int) -> dict[str, int]:
    """Examples per value of the ``k``-th grouping key (values as strings, sorted)."""
    counts: Counter = Counter()
    for group, n in groups.items():
        counts[str(group[k])] += n
    return dict(sorted(counts.items()))


def _decided_json(decided: dict) -> str:
    """``dumps(decided)`` without its opening brace, after a comma: the rest of a scores line.
    The usual case (accepted, nothing to say) is formatted directly, as ``dumps`` would."""
    if len(decided) == 4 and decided["accepted"] and not decided["flags"]:
        return f',"score":{float.__repr__(decided["score"])},"reasons":[],"flags":[],"accepted":true}}'
    return "," + dumps(decided)[1:]


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
        (rows target, input, target, input, ... as ``_score_chunk`` writes them)."""
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
