"""The resumable ``validate`` run: score chunks (``scoring.py``, in a process pool with ``jobs``),
then the decision pass in input order, which writes ``accepted.jsonl``, ``rejected.jsonl``,
``scores.jsonl`` and ``report.json``.

The decision pass follows the workers chunk by chunk, so the two overlap. Per example, in order:
schema; completeness; exact duplicates (same level, input text and target as an earlier
example); near duplicates (``neardup.py``: target AND input at ``dedup_threshold`` estimated
Jaccard with an earlier kept example); contamination at or above its threshold (a reason, or
only a flag under ``allow_contaminated``); the quality score against ``min_score``; then, for an
edit/solve example with no reason against it, execution (``execution.py``). Earlier = input
order, so the result is deterministic, and the output bytes do not depend on ``jobs``.

Resumable: per-chunk scores are kept in ``parts/`` and execution results in ``exec.jsonl``; a
rerun with the same ``--out`` skips both (``--redo`` starts over). The decision pass is always
redone (it is cheap next to scoring). The gates' options are ``ValidateOptions``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from hrmcode.artifacts import Artifact, ArtifactWriter, load_artifact, output_location
from hrmcode import executor
from hrmcode.atomic import atomic_open, write_text
from hrmcode.data.contamination import DEFAULT_THRESHOLD, ContaminationIndex, build_index
from hrmcode.data.synthesize.pipeline import line_chunks
from hrmcode.data.validate.execution import ExecChecker, TaskBook, check_apart, tasks_of
from hrmcode.data.validate.neardup import NearDuplicates, permutations
from hrmcode.data.validate.scoring import PART_FILES, init_worker, score_chunk
from hrmcode.errors import UsageError
from hrmcode.jsonl import AppendLog, dumps
from hrmcode.options import option
from hrmcode.reporting import reporter
from hrmcode.sandbox import run_many

CHUNK_EXAMPLES = 2048
PARTS = "parts"
RUN_PARAMS = "run-params.json"
BALANCE_KEYS = ("language", "level", "stage", "split")


@dataclass(frozen=True)
class ValidateOptions:
    """The gates' options; ``hrmcode validate`` generates its options from these fields."""

    min_score: float = option(0.5, "Accept only examples whose quality score (completeness x (1 - contamination "
                                   "overlap)) reaches this fraction.", min=0.0, max=1.0)
    dedup_threshold: float = option(0.9, "Estimated Jaccard similarity (of target and of input) at which a later "
                                         "example is a near duplicate.", min=0.0, max=1.0)
    contamination_threshold: float = option(DEFAULT_THRESHOLD, "Fraction of a benchmark item's 50-character n-grams "
                                                               "that makes an example contaminated.", min=0.0, max=1.0)
    allow_contaminated: bool = option(False, "Keep contaminated examples, flagged in scores.jsonl.")
    exec_checks: bool = option(True, "Skip execution checks in the sandbox.", flags=("--no-exec",), negate=True)
    exec_timeout_s: float = option(30.0, "Seconds per execution check.", flags=("--exec-timeout",), min=1.0)


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
    write_text(params_file, json.dumps(params, sort_keys=True) + "\n")


def validate(
    examples: str | Path,
    *,
    out: Path | str | None = None,
    workspace: Path | str | None = None,
    min_score: float = ValidateOptions.min_score,
    dedup_threshold: float = ValidateOptions.dedup_threshold,
    contamination_threshold: float = ValidateOptions.contamination_threshold,
    allow_contaminated: bool = ValidateOptions.allow_contaminated,
    exec_checks: bool = ValidateOptions.exec_checks,
    exec_timeout_s: float = ValidateOptions.exec_timeout_s,
    jobs: int = 1,
    redo: bool = False,
    dry_run: bool = False,
) -> ValidationResult:
    options = ValidateOptions(min_score, dedup_threshold, contamination_threshold, allow_contaminated, exec_checks,
                              exec_timeout_s)
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
    run = RunContext(source, path, out_dir, writer, options, index, near_duplicates,
                     [f"{i:06d}" for i in range(len(chunks))], chunks)
    report = _score_and_decide(run, jobs)
    writer.write_json("report.json", report)
    artifact = writer.finish(report)
    return ValidationResult(artifact, report)


# -- the decision pass -------------------------------------------------------------------------
@dataclass
class RunContext:
    """What the decision pass reads: the input, where it writes, the options and the indexes."""

    source: Artifact
    path: Path  # the input's examples.jsonl
    out_dir: Path
    writer: ArtifactWriter
    options: ValidateOptions
    index: ContaminationIndex
    near_duplicates: NearDuplicates
    names: list[str]  # one part name per chunk
    chunks: list[tuple[int, int, int]]  # (start byte, end byte, first line) per chunk


@dataclass
class Tally:
    """What the decision pass has seen so far, in input order."""

    seen_exact: dict[str, str] = field(default_factory=dict)  # exact-duplicate key -> first id
    gates: Counter = field(default_factory=Counter)
    every: Counter = field(default_factory=Counter)  # (language, level, stage, split) -> examples
    kept: Counter = field(default_factory=Counter)  # the same, of the accepted examples
    counts: Counter = field(default_factory=Counter)  # accepted / rejected


def _score_and_decide(run: RunContext, jobs: int) -> dict:
    """Score the chunks not scored yet (in a pool with ``jobs`` > 1) while deciding in input order."""
    todo = [(n, c) for n, c in zip(run.names, run.chunks)
            if not all((run.out_dir / PARTS / f"{n}{suffix}").exists() for suffix in PART_FILES)]
    permutations()  # computed once here; forked workers inherit it
    args = {n: (str(run.path), c[0], c[1], c[2], str(run.out_dir / PARTS / n)) for n, c in todo}
    pool = None
    if jobs > 1 and len(todo) > 1:
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=init_worker, initargs=(run.index,))
    else:
        init_worker(run.index)
    try:
        with reporter().task("validate", total=len(run.chunks)) as bar:
            # workers score chunks ahead while the decision pass follows them in input order
            pending = {n: pool.submit(score_chunk, *a) for n, a in args.items()} if pool is not None else {}

            def scored(name: str) -> None:
                if name in pending:
                    pending.pop(name).result()
                elif name in args:
                    score_chunk(*args[name])
                bar.advance()

            return _decide(run, scored, jobs)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _decide(run: RunContext, scored: Callable[[str], None], jobs: int = 1) -> dict:
    """The sequential pass, in input order: duplicates, thresholds, execution, and the output files.
    ``scored(name)`` returns once chunk ``name``'s part files exist; with ``jobs`` > 1 or ``--executor
    ray`` each chunk's execution checks run ahead in parallel (``_check_ahead``)."""
    tally = Tally()
    exec_log = AppendLog(run.out_dir / "exec.jsonl", key="id") if run.options.exec_checks else None
    checker = ExecChecker(tasks_of(run.source), exec_log, run.options.exec_timeout_s) if exec_log is not None else None
    try:
        with open(run.path, "rb") as examples_fh, contextlib.ExitStack() as outputs:
            acc = outputs.enter_context(atomic_open(run.writer.path("accepted.jsonl"), "wb"))
            rej = outputs.enter_context(atomic_open(run.writer.path("rejected.jsonl")))
            sco = outputs.enter_context(atomic_open(run.writer.path("scores.jsonl")))
            for name, (start, end, _first) in zip(run.names, run.chunks):
                scored(name)
                entries, prefixes = _load_part(run, name)
                examples_fh.seek(start)
                lines = [line for line in examples_fh.read(end - start).split(b"\n") if line.strip()]
                if checker is not None and (jobs > 1 or executor.chosen() is not None):
                    _check_ahead(checker, entries, lines, jobs)
                for i, (entry, line, prefix) in enumerate(zip(entries, lines, prefixes)):
                    decided = _judge(run, tally, checker, entry, line, i)
                    _record(tally, entry, line, decided, acc, rej)
                    sco.write(prefix + _decided_json(decided) + "\n")
    finally:
        if exec_log is not None:
            exec_log.close()
    run.writer.add("accepted.jsonl", tally.counts["accepted"])
    run.writer.add("rejected.jsonl", tally.counts["rejected"])
    run.writer.add("scores.jsonl")
    return _report(tally, run.index)


def _check_ahead(checker: ExecChecker, entries: list[dict], lines: list[bytes], jobs: int) -> None:
    """Run a chunk's execution checks in parallel (``run_many``: -j threads or Ray tasks) into the exec
    log, so the decision pass reads their verdicts from it. Every complete edit/solve example is
    checked, including those a duplicate gate will reject (the gates depend on input order; the checks
    do not), so the verdicts and output bytes are the sequential pass's."""
    cached: dict[str, list[dict]] = {}
    for record in checker.log.records.values():
        cached.setdefault(record.get("task_id"), []).append(record)
    jobs_list = []
    for entry, line in zip(entries, lines):
        if "schema_error" in entry or entry["failed"] or entry["level"] not in ("edit", "solve"):
            continue
        task_id = entry.get("task_id")
        if task_id not in checker.tasks:
            continue
        repository = {task_id: checker.repositories[task_id]} if task_id in checker.repositories else {}
        book = TaskBook({task_id: checker.tasks[task_id]}, repository)
        jobs_list.append(functools.partial(check_apart, book, checker.timeout_s, cached.get(task_id, []),
                                           json.loads(line)))
    # an edit and a solve example of one task often make the same check: its record is kept once
    run_many(jobs_list, n_workers=jobs,
             on_done=lambda _i, records: checker.log.extend(r for r in records if not checker.log.done(r["id"])))


def _load_part(run: RunContext, name: str) -> tuple[list[dict], list[str]]:
    """A scored chunk's decision entries and ``scores.jsonl`` prefixes; its signatures go to the index."""
    part = run.out_dir / PARTS / name
    with open(f"{part}.json", encoding="utf-8") as fh:
        entries = json.load(fh)
    with open(f"{part}.scores", encoding="utf-8", newline="") as fh:
        prefixes = fh.read().split("\n")
    run.near_duplicates.load_chunk(np.load(f"{part}.npy"))
    return entries, prefixes


def _judge(run: RunContext, tally: Tally, checker: ExecChecker | None, entry: dict, line: bytes, i: int) -> dict:
    """The fields ``scores.jsonl`` adds for chunk example ``i``: score, execution verdict, reasons
    (empty when accepted), flags. Counts its gates and remembers it for later duplicates."""
    reasons: list[str] = []
    flags: list[str] = []
    decided: dict = {}
    if "schema_error" in entry:
        reasons.append(f"schema: {entry['schema_error']}")
        tally.gates["schema"] += 1
    else:
        decided["score"] = _gate(run, tally, entry, i, reasons, flags)
        if not reasons and checker is not None and entry["level"] in ("edit", "solve"):
            verdict, detail = checker.check(json.loads(line))
            decided["exec"] = {"verdict": verdict, "detail": detail}
            tally.gates[f"exec_{verdict}"] += 1
            if verdict == "failed":
                reasons.append(f"execution: {detail}")
        if not reasons:
            tally.seen_exact[entry["exact"]] = entry["id"]
            run.near_duplicates.insert(entry["level"], entry["id"], i)
        else:
            tally.seen_exact.setdefault(entry["exact"], entry["id"])
    decided.update({"reasons": reasons, "flags": flags, "accepted": not reasons})
    return decided


def _gate(run: RunContext, tally: Tally, entry: dict, i: int, reasons: list[str], flags: list[str]) -> float:
    """The gates before execution for a schema-valid example: appends its reasons and flags and
    returns its quality score."""
    options = run.options
    failed = entry["failed"]
    if failed:
        tally.gates["incomplete"] += 1
    contamination = entry["contamination"]
    overlap = contamination["overlap"] if contamination else 0.0
    # with --allow-contaminated the overlap is a flag, not a penalty
    score = round(entry["completeness"] * (1.0 if options.allow_contaminated else 1.0 - overlap), 4)
    duplicate_of = tally.seen_exact.get(entry["exact"])
    if duplicate_of is not None:
        reasons.append(f"exact duplicate of {duplicate_of}")
        tally.gates["exact_duplicate"] += 1
    else:
        near = run.near_duplicates.query(entry["level"], i)
        if near is not None:
            reasons.append(f"near duplicate of {near[0]} (jaccard {near[1]:.2f})")
            tally.gates["near_duplicate"] += 1
    if contamination and overlap >= run.index.threshold:
        text = f"contaminated: {overlap:.0%} of {contamination['item']} appears in the prompt or target"
        tally.gates["contaminated"] += 1
        (flags if options.allow_contaminated else reasons).append(text)
    if failed:
        reasons.append(f"incomplete: failed {', '.join(failed)}")
    if score < options.min_score:
        reasons.append(f"score {score:.2f} below --min-score {options.min_score:.2f}")
        tally.gates["low_score"] += 1
    return score


def _record(tally: Tally, entry: dict, line: bytes, decided: dict, accepted: IO[bytes], rejected: IO[str]) -> None:
    """Write the example to accepted.jsonl (its bytes as given) or rejected.jsonl (with its reasons)."""
    group = tuple(entry.get(key) for key in BALANCE_KEYS)
    tally.every[group] += 1
    if decided["reasons"]:
        rejected.write(dumps({"id": entry["id"], "reasons": decided["reasons"], "example": json.loads(line)}) + "\n")
        tally.counts["rejected"] += 1
    else:
        accepted.write(line + b"\n")
        tally.kept[group] += 1
        tally.counts["accepted"] += 1


def _report(tally: Tally, index: ContaminationIndex) -> dict:
    accepted, rejected = tally.counts["accepted"], tally.counts["rejected"]
    total = accepted + rejected
    return {
        "examples": total,
        "accepted": accepted,
        "rejected": rejected,
        "acceptance_rate": round(accepted / total, 4) if total else 0.0,
        "gates": dict(sorted(tally.gates.items())),
        "balance": {key: {"all": _balance(tally.every, k), "accepted": _balance(tally.kept, k)}
                    for k, key in enumerate(BALANCE_KEYS)},
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
