"""The run loop every benchmark shares: an ``eval-run`` artifact written case by case.

Layout of a run directory::

    run.json        the resolved parameters and the verdict rules (``VERDICT_RULES``), written when
                    the run starts (a resume must match them)
    results.jsonl   one record per case (``id`` = task id), appended (flushed and fsynced) as each
                    batch of cases finishes; rewritten sorted by id when the run completes
    summary.json    the benchmark's metrics, written when every selected case is done (with
                    ``segments_per_case`` when the model's generations reported segments: a
                    looped model's compute, ``--max-segments``/``--halt-threshold``)
    report.html     the run for people (``html_report.render_run``): pass rate per language, each
                    case's outcome, time, reply and test output
    manifest.json   written last (``kind: eval-run``)

Guarantees: a process killed at any point (SIGKILL included) keeps every case whose record was
appended, and a rerun with the same ``--out`` skips exactly those (a torn last line from the
kill is dropped) and appends each remaining case once, so the finished run holds each selected
case once; ``--redo`` deletes those files first. A rerun whose parameters differ from
``run.json`` (other than jobs, limits and selection), or whose run was scored under other verdict
rules, is refused rather than mixing two experiments in one file. Cases run on ``jobs`` threads
(or Ray tasks under ``--executor ray``, ``hrmcode/executor.py``; records are still appended here),
each holding its own worker id (passed to the sandbox so parallel runs use separate uids and
caches). A case that raises stops the run after the batches already running have finished and
been appended. A case the model cannot be asked (a prompt longer than its context) is the
benchmark's failure record, not a raise. ``enforce_threshold`` (``--fail-under``, a percentage)
is checked by the caller after the run is fully written. Not guaranteed: byte-identical results
across runs (timings differ); a case of a batch that was running when the process died is run
again (its record was never written).
"""

from __future__ import annotations

import json
import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hrmcode import executor
from hrmcode.artifacts import Artifact, ArtifactWriter, latest_in_workspace, load_artifact, output_location
from hrmcode.data.schema import Task, parse_task
from hrmcode.errors import ArtifactError, ThresholdNotMet, UsageError
from hrmcode.eval.html_report import REPORT, render_run
from hrmcode.jsonl import AppendLog, read_jsonl, write_jsonl
from hrmcode.reporting import reporter

RUN_FILES = ("run.json", "results.jsonl", "summary.json", REPORT, "manifest.json")
# The version of the rules that turn a program's run into a verdict, for every benchmark. Bump it
# whenever a change can turn a verdict (strict reports, editable files, the trust boundary ...):
# a run scored under other rules is never resumed into a mix. Runs written before the field
# existed are version 1.
VERDICT_RULES = 3
# parameters that may change between a run and its resume
RESUMABLE_CHANGES = {"jobs", "fail_under", "limit", "languages", "exercises", "batch", "out"}


class Bench(Protocol):
    """A benchmark: evaluates a batch of tasks (one record each) and summarises records.

    A bench with files of its own beside ``results.jsonl`` (``eval swe``) may also have
    ``run_files`` (names ``--redo`` deletes too), ``open_run(writer)`` (called before the first
    case), ``before_append(records)`` (called with each finished batch, in the driver, before its
    records are appended; it may take fields of its own out of them: ``evaluate`` may run on a Ray
    worker, which writes nothing) and ``finish_run(writer, records, selected)`` (called once ``results.jsonl`` is final,
    before the summary; it writes and registers its files through ``writer``).
    """

    name: str

    def evaluate(self, tasks: Sequence[Task], worker: int) -> list[dict]: ...

    def summarize(self, records: Sequence[dict], tasks: Sequence[Task]) -> dict: ...


@dataclass
class RunOptions:
    out: Path | str | None = None
    workspace: Path | str | None = None
    redo: bool = False
    jobs: int = 1
    batch: int = 1  # tasks handed to one evaluate() call
    fail_under: float | None = None  # percent, 0..100; recorded here, enforced by enforce_threshold()
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[Artifact] = field(default_factory=list)


@dataclass
class RunResult:
    artifact: Artifact
    summary: dict
    ran: int
    skipped: int

    failed: list[str] = field(default_factory=list)  # ids of the cases that did not pass, sorted

    def to_dict(self) -> dict:
        return {"run": str(self.artifact.path), "ran": self.ran, "skipped": self.skipped, **self.summary,
                "failed": self.failed}


def case_passed(record: dict) -> bool:
    """Whether a case passed: its ``passed`` flag (polyglot), else at least one correct sample
    (the pass@k benchmarks' ``correct``)."""
    if "passed" in record:
        return bool(record["passed"])
    return int(record.get("correct", 0)) > 0


def segments_summary(records: Sequence[dict]) -> dict[str, float]:
    """``{"segments_per_case": mean}`` over the cases that recorded ``segments`` (each the mean over its
    generations); ``{}`` when none did (a model without segments, oracle, samples)."""
    spent = [float(r["segments"]) for r in records if r.get("segments") is not None]
    return {"segments_per_case": round(sum(spent) / len(spent), 3)} if spent else {}


def load_tasks(source: str, tasks_ref: str | Path | None, workspace: Path | str | None,
               builtin: Callable[[], list[Task]] | None = None,
               kinds: Collection[str] | None = None) -> tuple[list[Task], Artifact | None]:
    """The benchmark's tasks: ``--tasks``, else the newest fetched ``source`` artifact in the workspace,
    else ``builtin()`` when the benchmark ships its own data (HumanEval). An artifact holding a task
    of a kind not in ``kinds`` (another benchmark's tasks) is refused."""
    artifact: Artifact | None = None
    if tasks_ref is not None:
        artifact = load_artifact(tasks_ref, "tasks", workspace)
    else:
        latest = latest_in_workspace("fetch", source, workspace)
        if latest is not None:
            artifact = load_artifact(latest, "tasks", workspace)
        elif builtin is None:
            raise ArtifactError(f"no fetched {source} tasks in the workspace", f"run `hrmcode fetch {source}` or pass --tasks")
    if artifact is None:
        assert builtin is not None
        return builtin(), None
    path = artifact.file("tasks.jsonl")
    tasks = [parse_task(record, f"{path}:{index}") for index, record in enumerate(read_jsonl(path), 1)]
    foreign = [task for task in tasks if kinds is not None and task.kind not in kinds]
    if foreign:
        sources = ", ".join(sorted({task.source for task in foreign}))
        raise UsageError(
            f"{artifact.path} holds {len(foreign)} {sources} task(s) of kind {foreign[0].kind}, "
            f"which {source} does not grade (it grades kind {' or '.join(sorted(kinds or ()))})",
            f"pass --tasks a tasks artifact from `hrmcode fetch {source}`")
    return tasks, artifact


def check_fail_under(value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 100.0:
        raise UsageError(f"--fail-under {value} is not a percentage", "give a pass rate in percent, 0 to 100 (e.g. 40)")


def _prepare(out_dir: Path, options: RunOptions, own_files: Sequence[str] = ()) -> None:
    if options.redo:
        for name in (*RUN_FILES, *own_files):
            (out_dir / name).unlink(missing_ok=True)
    run_file = out_dir / "run.json"
    if run_file.is_file():
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ArtifactError(f"{run_file} is not valid JSON", "rerun with --redo to start over") from None
        if not isinstance(run, dict):
            raise ArtifactError(f"{run_file} is not a run description", "rerun with --redo to start over")
        rules = run.get("verdict_rules", 1)
        if rules != VERDICT_RULES:
            raise UsageError(
                f"{out_dir} was scored under verdict rules {rules}; this hrmcode scores under rules {VERDICT_RULES}",
                "add --redo to start over (or use another --out), so that one run never mixes verdicts",
            )
        previous = run.get("params", {})
        current = json.loads(json.dumps(options.params, default=str))
        changed = sorted(
            key for key in set(previous) | set(current)
            if key not in RESUMABLE_CHANGES and previous.get(key) != current.get(key)
        )
        if changed:
            raise UsageError(
                f"{out_dir} holds a run with different {', '.join(changed)}",
                "use another --out, or --redo to start over",
            )


def _evaluate(bench: Bench, batch: Sequence[Task], worker: int) -> list[dict]:
    return bench.evaluate(batch, worker)


def run_benchmark(bench: Bench, tasks: Sequence[Task], options: RunOptions) -> RunResult:
    """Evaluate every task not already finished in the run directory, then summarise all of them."""
    check_fail_under(options.fail_under)
    if not tasks:
        raise UsageError(f"no {bench.name} tasks selected", "check --limit, --languages and --exercises")
    out_dir, update_latest = output_location("eval", bench.name, options.out, options.workspace, options.params)
    out_dir.mkdir(parents=True, exist_ok=True)
    _prepare(out_dir, options, getattr(bench, "run_files", ()))
    writer = ArtifactWriter(out_dir, "eval-run", name=bench.name, params=options.params, inputs=options.inputs,
                            resumable=True, update_latest=update_latest)
    writer.write_json("run.json", {"bench": bench.name, "verdict_rules": VERDICT_RULES, "params": options.params})
    log = AppendLog(writer.path("results.jsonl"), key="id")
    open_run = getattr(bench, "open_run", None)
    try:
        if open_run is not None:
            open_run(writer)
        pending = [task for task in tasks if not log.done(task.id)]
        skipped = len(tasks) - len(pending)
        if skipped:
            reporter().log(f"resuming {out_dir}: {skipped} of {len(tasks)} cases already done")
        batches = [pending[i:i + max(1, options.batch)] for i in range(0, len(pending), max(1, options.batch))]
        before_append = getattr(bench, "before_append", None)

        def appended(_index: int, batch: list[dict]) -> None:
            # each batch's records go to disk the moment it finishes, so a kill loses only those still running
            if before_append is not None:
                before_append(batch)
            log.extend(batch)
            bar.advance(len(batch))

        with reporter().task(f"eval {bench.name}", len(pending)) as bar:
            executor.current(options.jobs).map(functools.partial(_evaluate, bench), batches, appended)
    finally:
        log.close()
    wanted = {task.id for task in tasks}
    records = sorted((r for r in log.records.values()), key=lambda r: r["id"])
    write_jsonl(writer.path("results.jsonl"), records)
    writer.add("results.jsonl", len(records))
    selected = [r for r in records if r["id"] in wanted]
    finish_run = getattr(bench, "finish_run", None)
    if finish_run is not None:
        finish_run(writer, records, selected)
    summary = {**bench.summarize(selected, tasks), **segments_summary(selected), "verdict_rules": VERDICT_RULES}
    writer.write_json("summary.json", summary)
    writer.write_text(REPORT, render_run(bench.name, selected, summary))
    artifact = writer.finish({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    return RunResult(artifact=artifact, summary=summary, ran=len(pending), skipped=skipped,
                     failed=[r["id"] for r in selected if not case_passed(r)])


def enforce_threshold(result: RunResult, fail_under: float | None) -> None:
    """Raise ``ThresholdNotMet`` when the run's score (percent) is below ``fail_under`` (percent).

    Called after the run is written and shown, so a failed gate still leaves a complete run."""
    if fail_under is not None and result.summary["score"] < fail_under:
        raise ThresholdNotMet(
            f"{result.artifact.name} score {result.summary['score']:.2f}% is below --fail-under {fail_under:g}%",
            f"the run is in {result.artifact.path}",
        )
