"""The synthesis run: tasks (+ analysis) in, an ``examples`` artifact out.

Guarantees:
- Every example comes from a rule over real task data (see the level modules); an example's
  ``provenance`` names its rule and the sha256 of the input manifests.
- The train/held-out split is by task, never by example: a task's split is a seeded hash of its
  split key (the SWE-smith ``instance_id`` when the task has one, so an instance and its
  trajectories land on the same side; else the task id). It does not depend on order, ``-j``
  or ``--limit``.
- Resumable: tasks are processed in fixed chunks of ``CHUNK_TASKS`` consecutive lines; each
  finished chunk's examples are written to ``parts/`` (atomically) and then recorded in
  ``progress.jsonl``, so a rerun with the same ``--out`` and options skips every finished task
  (a crash loses at most the chunks in flight). ``--redo`` starts over. A rerun with different
  options into the same directory is refused.
- Parallel: chunks run in a process pool (``jobs``); workers read their byte range of
  ``tasks.jsonl`` themselves, so no task is pickled between processes. Under ``--executor ray``
  each chunk is a Ray task instead: its bytes go out, its part's text and progress record come
  back and are written here. ``examples.jsonl`` is assembled in input order, so the bytes are the
  same for any ``jobs`` and either executor.
- A task that yields no example (no fix, no reference, no trajectory) is counted with its
  reason in the manifest stats, not an error. A malformed line of ``tasks.jsonl`` is an error
  naming file and line.
- Tasks whose coord targets are the same (nothing distinguishes them: ``coord.coord_key``) keep
  one coord example, the first in input order; the others are left out of ``examples.jsonl``
  and counted (``coord_same_target``), for any ``jobs``.
- Repository tasks with their repository (``repository.jsonl`` beside ``tasks.jsonl``) get their
  ``tool`` examples from reference runs executed in the sandbox before the chunks
  (``tool.execute_reference_runs``: ``jobs`` sandbox slots, resumable through
  ``parts/tool-runs.jsonl``); their outcome is in the stats (``tool_runs``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hrmcode import executor
from hrmcode.artifacts import Artifact, ArtifactWriter, output_location
from hrmcode.atomic import atomic_open, write_text
from hrmcode.data.bugs import REPOSITORY
from hrmcode.data.examples import LEVELS
from hrmcode.data.synthesize.context import build_context
from hrmcode.data.synthesize.coord import coord_examples
from hrmcode.data.synthesize.edit import edit_examples
from hrmcode.data.synthesize.plan import plan_examples
from hrmcode.data.synthesize.solve import solve_examples
from hrmcode.data.synthesize.tool import RUN_LOG, execute_reference_runs, tool_examples
from hrmcode.edits import MalformedEdit
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import AppendLog, dumps, iter_chunk_lines
from hrmcode.reporting import reporter

CHUNK_TASKS = 256
RULES = {"plan": plan_examples, "edit": edit_examples, "tool": tool_examples, "coord": coord_examples, "solve": solve_examples}
PROGRESS = "progress.jsonl"
PARTS = "parts"
RUN_PARAMS = "run-params.json"


def split_key(task: dict) -> str:
    metadata = task.get("metadata") or {}
    key = metadata.get("instance_id")
    return key if isinstance(key, str) and key else task["id"]


def split_of(key: str, seed: int, heldout_fraction: float) -> str:
    """``heldout`` for a seeded-hash fraction of keys, ``train`` for the rest."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout_fraction else "train"


def stage_of(profile: dict) -> int | None:
    for key in ("stage", "curriculum_stage"):
        value = profile.get(key)
        if value is not None:
            return int(value)
    return None


@dataclass
class Settings:
    seed: int
    heldout_fraction: float
    levels: tuple[str, ...]
    inputs: list[str]  # sha256 of input manifests
    tool_runs: dict[str, dict] = field(default_factory=dict)  # task id -> its reference run (tool level)
    from_repository: bool = False  # the tasks' repository is beside them (their tests run from its files)


def task_examples(task: dict, profile: dict, settings: Settings) -> list[dict]:
    """All examples of one task, as JSON-ready dicts in level order."""
    ctx = build_context(task, profile, settings.tool_runs.get(task["id"]), settings.from_repository)
    stage = stage_of(profile)
    if stage is None:
        raise InputError(f"the analysis has no curriculum stage for task {task['id']}", "rerun `hrmcode analyze`")
    split = split_of(split_key(task), settings.seed, settings.heldout_fraction)
    examples: list[dict] = []
    for level in settings.levels:
        for n, draft in enumerate(RULES[level](ctx)):
            example = {
                "id": f"{task['id']}#{level}-{n}",
                "task_id": task["id"],
                "source": task.get("source", ""),
                "level": level,
                "input": {"text": draft.text, "context": draft.context},
                "target": draft.target,
                "language": draft.language,
                "stage": stage,
                "split": split,
                "provenance": {"inputs": settings.inputs, "rule": draft.rule, "model_written": draft.model_written},
            }
            # Only multi-turn examples carry these (Example leaves them out when null).
            example.update({k: v for k, v in (("messages", draft.messages), ("reward", draft.reward)) if v is not None})
            examples.append(example)
    return examples


# -- worker side -------------------------------------------------------------------------------
_PROFILES: dict[str, dict] = {}
_SETTINGS: Settings | None = None


def _init_worker(profiles: dict[str, dict], settings: Settings) -> None:
    global _PROFILES, _SETTINGS
    _PROFILES, _SETTINGS = profiles, settings


def _run_chunk(tasks_path: str, start: int, end: int, first_line: int, part_path: str) -> dict:
    with open(tasks_path, "rb") as fh:
        fh.seek(start)
        raw = fh.read(end - start)
    with atomic_open(part_path) as out:
        return _chunk(raw, first_line, tasks_path, out)


def _chunk_text(profiles: dict[str, dict], settings: Settings, tasks_path: str, chunk: tuple[bytes, int],
                worker: int) -> tuple[str, dict]:
    """One chunk away from the run's files (``--executor ray``): its part file's text and progress record."""
    _init_worker(profiles, settings)
    out = io.StringIO()
    record = _chunk(chunk[0], chunk[1], tasks_path, out)
    return out.getvalue(), record


class _ChunkBytes(Sequence):
    """(bytes, first line) of each chunk, read when asked for (the executor sends a few at a time)."""

    def __init__(self, path: Path, chunks: list[tuple[int, int, int]]) -> None:
        self.path, self.chunks = path, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index):  # type: ignore[override]
        start, end, first_line = self.chunks[index]
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start), first_line


def _chunk(raw: bytes, first_line: int, tasks_path: str, out: IO[str]) -> dict:
    """A chunk's examples written to ``out``; returns its progress record."""
    assert _SETTINGS is not None
    ids: list[str] = []
    counts: dict[str, Counter] = {"level": Counter(), "split": Counter(), "language": Counter(), "stage": Counter()}
    task_splits: Counter = Counter()
    empty: dict[str, str] = {}
    coord: list[list] = []  # [line in the part, coord key, task id, split, language, stage, the task's only example]
    count = 0
    for lineno, task in iter_chunk_lines(raw, first_line, tasks_path, "fix the line or refetch"):
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            raise InputError(f"{tasks_path}:{lineno}: not a task record (no id)", "refetch the tasks")
        ids.append(task["id"])
        profile = _PROFILES.get(task["id"])
        if profile is None:
            raise InputError(f"the analysis has no row for task {task['id']}", "rerun `hrmcode analyze` on these tasks")
        try:
            examples = task_examples(task, profile, _SETTINGS)
        except (InputError, MalformedEdit, ValueError) as exc:
            empty[task["id"]] = f"skipped: {' '.join(str(exc).split())[:200]}"
            continue
        if not examples:
            empty[task["id"]] = "no fix, reference or trajectory to learn from"
        else:
            task_splits[examples[0]["split"]] += 1
        for example in examples:
            if example["level"] == "coord":
                coord.append([count, example["input"]["context"].get("coord_key"), task["id"], example["split"],
                              example["language"], str(example["stage"]), len(examples) == 1])
            out.write(dumps(example))
            out.write("\n")
            for key in counts:
                counts[key][str(example[key])] += 1
            count += 1
    return {"ids": ids, "examples": count, "counts": {k: dict(v) for k, v in counts.items()},
            "task_splits": dict(task_splits), "empty": empty, "coord": coord}


# -- driver side -------------------------------------------------------------------------------
def line_chunks(path: Path, size: int) -> list[tuple[int, int, int]]:
    """(start byte, end byte, first line number) of each run of ``size`` lines."""
    chunks: list[tuple[int, int, int]] = []
    with path.open("rb") as fh:
        data = fh.read()
    position = 0
    line = 1
    total = len(data)
    while position < total:
        end = position
        for _ in range(size):
            nxt = data.find(b"\n", end)
            if nxt < 0:
                end = total
                break
            end = nxt + 1
            if end >= total:
                break
        chunks.append((position, end, line))
        line += data.count(b"\n", position, end)
        position = end
    return chunks


@dataclass
class SynthesisResult:
    artifact: Artifact | None
    stats: dict = field(default_factory=dict)
    dry_run: bool = False


def run_synthesis(
    tasks: Artifact,
    analysis: Artifact,
    profiles: dict[str, dict],
    *,
    out: Path | str | None,
    workspace: Path | str | None,
    seed: int,
    heldout_fraction: float,
    levels: tuple[str, ...],
    jobs: int,
    redo: bool,
    limit: int | None,
    dry_run: bool,
    name: str,
    extra_params: dict | None = None,
) -> SynthesisResult:
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise UsageError(f"unknown level(s) {', '.join(unknown)}", f"choose from {', '.join(LEVELS)}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise UsageError(f"--heldout-fraction {heldout_fraction} is outside [0, 1)", "use e.g. 0.1")
    tasks_path = tasks.file("tasks.jsonl")
    chunks = line_chunks(tasks_path, CHUNK_TASKS)
    if limit is not None:
        chunks = _limit_chunks(tasks_path, chunks, limit)
    params = {"source": name, "tasks": str(tasks.path), "analysis": str(analysis.path), "seed": seed,
              "heldout_fraction": heldout_fraction, "levels": list(levels), "limit": limit, **(extra_params or {})}
    if dry_run:
        lines = sum(c[1] - c[0] > 0 for c in chunks)
        count = tasks.stats.get("tasks") or tasks.stats.get("records") or tasks.stats.get("count")
        return SynthesisResult(None, {"tasks_file": str(tasks_path), "chunks": lines, "params": params,
                                      "tasks": count}, dry_run=True)
    out_dir, update_latest = output_location("synthesize", name, out, workspace, params)
    settings = Settings(seed, heldout_fraction, tuple(levels), [tasks.manifest_sha256(), analysis.manifest_sha256()])
    repository = tasks.path / REPOSITORY
    settings.from_repository = repository.is_file()
    resume_params = {k: v for k, v in params.items() if k not in ("tasks", "analysis")} | {"inputs": settings.inputs}
    _prepare_resume(out_dir, resume_params, redo)
    writer = ArtifactWriter(out_dir, "examples", name=name, params=params, seed=seed, inputs=[tasks, analysis],
                            resumable=True, update_latest=update_latest)
    (out_dir / PARTS).mkdir(exist_ok=True)
    tool_runs = None
    if "tool" in levels and repository.is_file():
        settings.tool_runs, tool_runs = execute_reference_runs(tasks_path, repository, out_dir / PARTS / RUN_LOG, jobs,
                                                               limit=limit, workspace=workspace)
    names = [f"{i:06d}" for i in range(len(chunks))]
    with AppendLog(out_dir / PROGRESS, key="chunk") as log:
        todo = [(n, c) for n, c in zip(names, chunks) if not (log.done(n) and (out_dir / PARTS / f"{n}.jsonl").exists())]
        resumed = len(chunks) - len(todo)
        if resumed:
            reporter().log(f"resuming: {resumed} of {len(chunks)} chunks already done in {out_dir}")
        with reporter().task("synthesize", total=len(chunks)) as bar:
            bar.advance(resumed)
            args = [(str(tasks_path), c[0], c[1], c[2], str(out_dir / PARTS / f"{n}.jsonl")) for n, c in todo]
            cluster = executor.chosen()
            if cluster is not None and todo:  # --executor ray: chunks come back as text, written here

                def written(index: int, result: tuple[str, dict]) -> None:
                    write_text(args[index][4], result[0])
                    log.append({"chunk": todo[index][0], **result[1]})
                    bar.advance()

                cluster.map(functools.partial(_chunk_text, profiles, settings, str(tasks_path)),
                            _ChunkBytes(tasks_path, [c for _, c in todo]), written)
            elif jobs > 1 and len(todo) > 1:
                with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(profiles, settings)) as pool:
                    futures = {pool.submit(_run_chunk, *a): n for n, a in zip([n for n, _ in todo], args)}
                    for future in as_completed(futures):
                        log.append({"chunk": futures[future], **future.result()})
                        bar.advance()
            else:
                _init_worker(profiles, settings)
                for (n, _), a in zip(todo, args):
                    log.append({"chunk": n, **_run_chunk(*a)})
                    bar.advance()
        records = [log.records[n] for n in names]
    stats = _assemble(writer, out_dir, names, records, tasks, settings)
    if tool_runs is not None:
        stats["tool_runs"] = tool_runs
    writer.write_json("synthesis-report.json", stats)
    artifact = writer.finish(stats)
    return SynthesisResult(artifact, stats)


def _limit_chunks(path: Path, chunks: list[tuple[int, int, int]], limit: int) -> list[tuple[int, int, int]]:
    kept: list[tuple[int, int, int]] = []
    remaining = limit
    with path.open("rb") as fh:
        for start, end, first in chunks:
            if remaining <= 0:
                break
            fh.seek(start)
            lines = fh.read(end - start).split(b"\n")
            nonblank = 0
            cut = start
            for line in lines:
                if nonblank == remaining:
                    break
                cut += len(line) + 1
                if line.strip():
                    nonblank += 1
            kept.append((start, min(cut, end), first))
            remaining -= nonblank
    return kept


def _prepare_resume(out_dir: Path, params: dict, redo: bool) -> None:
    params_file = out_dir / RUN_PARAMS
    if redo:
        for name in (PROGRESS, RUN_PARAMS, "examples.jsonl", "manifest.json"):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / PARTS, ignore_errors=True)
    if params_file.exists():
        previous = json.loads(params_file.read_text(encoding="utf-8"))
        if previous != json.loads(json.dumps(params)):
            raise UsageError(f"{out_dir} holds a synthesis run with other inputs or options",
                             "pass --redo to start over there, or choose another --out")
    elif (out_dir / PROGRESS).exists():
        raise UsageError(f"{out_dir} holds progress of an unknown run", "pass --redo to start over there")
    out_dir.mkdir(parents=True, exist_ok=True)
    params_file.write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")


def _assemble(writer: ArtifactWriter, out_dir: Path, names: list[str], records: list[dict], tasks: Artifact,
              settings: Settings) -> dict:
    counts: dict[str, Counter] = {"level": Counter(), "split": Counter(), "language": Counter(), "stage": Counter()}
    task_splits: Counter = Counter()
    for record in records:
        for key, values in record["counts"].items():
            counts[key].update(values)
        task_splits.update(record["task_splits"])
    empty = {k: v for r in records for k, v in r["empty"].items()}
    first_with: dict[str, str] = {}  # coord key -> the first task with that target
    same: dict[str, str] = {}  # task id -> the task whose coord example stands for its own
    dropped: dict[str, set[int]] = {}
    for name, record in zip(names, records):
        for line, key, task_id, split, language, stage, alone in record.get("coord", []):
            if key is None or first_with.setdefault(key, task_id) == task_id:
                continue
            same[task_id] = first_with[key]
            dropped.setdefault(name, set()).add(line)
            for counter, value in (("level", "coord"), ("split", split), ("language", language), ("stage", stage)):
                counts[counter][value] -= 1
            if alone:
                task_splits[split] -= 1
                empty[task_id] = f"coord target the same as {first_with[key]}'s"
    target = writer.path("examples.jsonl")
    with atomic_open(target, "wb") as out:
        for name in names:
            with (out_dir / PARTS / f"{name}.jsonl").open("rb") as part:
                if name not in dropped:
                    shutil.copyfileobj(part, out, 1 << 20)
                    continue
                out.writelines(line for n, line in enumerate(part) if n not in dropped[name])
    total = sum(r["examples"] for r in records) - len(same)
    writer.add("examples.jsonl", total)
    counts = {key: +counter for key, counter in counts.items()}  # drop the zero counts
    return {
        "tasks": sum(len(r["ids"]) for r in records),
        "tasks_with_examples": sum(task_splits.values()),
        "tasks_by_split": dict(sorted((+task_splits).items())),
        "examples": total,
        "by_level": dict(sorted(counts["level"].items())),
        "by_split": dict(sorted(counts["split"].items())),
        "by_language": dict(sorted(counts["language"].items())),
        "by_stage": dict(sorted(counts["stage"].items())),
        "tasks_without_examples": len(empty),
        "without_examples_sample": dict(list(sorted(empty.items()))[:20]),
        "coord_same_target": len(same),
        "coord_same_target_sample": dict(list(sorted(same.items()))[:20]),
        "source_tasks": str(tasks.path),
    }
