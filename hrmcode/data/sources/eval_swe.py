"""Agent trajectories recorded by ``hrmcode eval swe``: ``--from`` a finished run directory (an
``eval-run`` artifact of bench ``swe``; several ``--from`` combine runs), or one of its
``trajectories.jsonl`` files.

Every trajectory becomes one task, resolved or not: id ``eval-swe/<8 hex of the run's manifest
sha256>/<the record's id>`` (``<task id>@<attempt>``, so attempts and runs never collide), kind
``repo-patch``, ``prompt`` = the problem the agent was given, ``title`` = the instance id. Its
``metadata`` keeps what training needs and nothing it does not: ``messages`` (the whole
conversation, as the acting model saw it), ``reward`` (1.0 resolved, 0.0 not), ``resolved``,
``exit_status``, ``model`` (the acting model's name), ``instance_id`` (so ``synthesize`` puts every
attempt at one instance on the same side of the split), the attempt, plan and planner, the grade,
one ``{index, kind, exit_code, reward, done}`` line per step (the actions and observations are the
messages), and the run it came from. The language is the task's in the run's input tasks artifact
when that can still be read, else that of the files the agent changed and the tests it was graded
on, else ``unknown``.

No solution is set: an agent's patch is model-written, and the ``tool`` level is where it is
learned from, with its reward (``hrmcode.data.synthesize.tool``).

Guarantees: a run without a manifest (still running or killed) is refused; a record of another
trajectory format, or without messages, an id or a reward, is an ``InputError`` naming its line.
The record format is read here without importing ``hrmcode.agent`` (which sits a floor above
``data/``); ``TRAJECTORY_FORMATS`` names the formats this reader knows, and a test holds it to
``hrmcode.agent.trajectory.TRAJECTORY_FORMAT``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from hrmcode.artifacts import Artifact, load_artifact
from hrmcode.data.schema import Task
from hrmcode.data.sources._common import Fetched, FetchRequest, SourceSpec, iter_records, language_of, require_path
from hrmcode.errors import ArtifactError, InputError
from hrmcode.jsonl import read_jsonl

TRAJECTORIES = "trajectories.jsonl"
TRAJECTORY_FORMATS = (1,)
_ROLES = ("system", "user", "assistant")


def is_eval_swe_run(path: str | Path) -> bool:
    """True when ``path`` is a directory holding an ``eval swe`` run's trajectories (finished or not)."""
    return Path(path).is_dir() and (Path(path) / TRAJECTORIES).is_file()


def _task_languages(run: Artifact) -> dict[str, str]:
    """task id -> language, from the run's input tasks artifacts that can still be read."""
    languages: dict[str, str] = {}
    for entry in run.manifest.get("inputs", []):
        if entry.get("kind") != "tasks":
            continue
        try:
            tasks = load_artifact(entry["path"], "tasks")
            languages.update({r["id"]: r["language"] for r in read_jsonl(tasks.file("tasks.jsonl"))
                              if isinstance(r, dict) and isinstance(r.get("id"), str)
                              and isinstance(r.get("language"), str)})
        except (ArtifactError, InputError, OSError, KeyError):
            continue  # moved or replaced since the run: the trajectory's own paths say the language
    return languages


def run_key(path: str | Path) -> str:
    """8 hex naming one state of a run: of its manifest's sha256 (or of a bare trajectories file's
    bytes), so the same finished run always gives the same task ids, and a run resumed and
    extended since gives new ones."""
    return _run_file(Path(path))[1]


def _run_file(path: Path) -> tuple[Path, str, Artifact | None]:
    """(the trajectories file, the run key, the run's artifact unless a bare file was given)."""
    if path.is_file():
        return path, hashlib.sha256(path.read_bytes()).hexdigest()[:8], None
    if not (path / TRAJECTORIES).is_file():
        raise InputError(f"--from {path}: no {TRAJECTORIES} there",
                         "point --from at an `hrmcode eval swe` run directory")
    try:
        run = load_artifact(path, "eval-run")
    except ArtifactError as exc:
        raise InputError(f"--from {path}: not a finished eval run ({exc.message})",
                         "finish it first: rerun the same `hrmcode eval swe ... --out` command") from None
    bench = run.manifest.get("params", {}).get("bench")
    if bench != "swe":
        raise InputError(f"--from {path}: an eval run of bench {bench!r}, not swe",
                         "point --from at an `hrmcode eval swe` run directory")
    return run.file(TRAJECTORIES), run.manifest_sha256()[:8], run


def _messages(record: dict, where: str) -> list[dict]:
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str) for m in messages):
        raise InputError(f"{where}: messages must be a list of {{role: system|user|assistant, content: str}}",
                         "each line must be a record of `hrmcode eval swe`'s trajectories.jsonl")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _language(record: dict, known: dict[str, str]) -> tuple[str, list[str]]:
    if known.get(record.get("task_id")):
        return known[record["task_id"]], [known[record["task_id"]]]
    paths = [p for step in record.get("steps") or [] for p in (step.get("state") or {}).get("files_modified") or []]
    grade = record.get("grade") or {}
    paths += [test.split("::", 1)[0] for key in ("fail_to_pass", "pass_to_pass") for test in grade.get(key) or {}]
    counts = Counter(lang for lang in map(language_of, paths) if lang)
    if not counts:
        return "unknown", ["unknown"]
    return counts.most_common(1)[0][0], sorted(counts)


def to_task(record: dict, where: str, run_key: str, origin: str, languages: dict[str, str] | None = None) -> Task:
    if not isinstance(record, dict) or record.get("format") not in TRAJECTORY_FORMATS:
        found = record.get("format") if isinstance(record, dict) else None
        raise InputError(f"{where}: not an eval swe trajectory of format {'/'.join(map(str, TRAJECTORY_FORMATS))} "
                         f"(format {found!r})", "record it again with this hrmcode's `eval swe`")
    for key in ("id", "instance_id", "problem", "exit_status", "model"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise InputError(f"{where}: the trajectory has no {key}", "each line must be a record of eval swe")
    reward = record.get("reward")
    if type(reward) not in (int, float) or not 0.0 <= reward <= 1.0:
        raise InputError(f"{where}: the trajectory's reward must be a number in [0, 1], got {reward!r}",
                         "each line must be a graded record of eval swe")
    grade = record.get("grade") if isinstance(record.get("grade"), dict) else None
    resolved = bool(grade["resolved"]) if grade and "resolved" in grade else reward >= 1.0
    language, all_languages = _language(record, languages or {})
    steps = [{k: step.get(k) for k in ("index", "exit_code", "reward", "done")}
             | {"kind": (step.get("action") or {}).get("kind")} for step in record.get("steps") or []]
    metadata = {
        "messages": _messages(record, where), "reward": float(reward), "resolved": resolved,
        "exit_status": record["exit_status"], "model": record["model"], "policy": record.get("policy"),
        "instance_id": record["instance_id"], "task_id": record.get("task_id"), "attempt": record.get("attempt"),
        "plan": record.get("plan"), "planner": record.get("planner"), "grade": grade, "steps": steps,
        "format_errors": record.get("format_errors"), "protocol": record.get("protocol"),
        "context_policy": record.get("context_policy"), "trajectory_format": record["format"],
        "eval_run": origin, "eval_run_key": run_key, "record_id": record["id"],
    }
    return Task(id=f"eval-swe/{run_key}/{record['id']}", source="eval-swe", language=language, languages=all_languages,
                kind="repo-patch", title=record["instance_id"], prompt=record["problem"], metadata=metadata)


def _convert(runs: list[tuple[Path, str, dict[str, str], str]], stats: dict) -> Iterator[Task]:
    for path, run_key, languages, origin in runs:
        for where, record in iter_records(path):
            task = to_task(record, where, run_key, origin, languages)
            stats["resolved" if task.metadata["resolved"] else "unresolved"] += 1
            for key, value in (("by_model", task.metadata["model"]), ("by_exit_status", task.metadata["exit_status"])):
                stats[key][value] = stats[key].get(value, 0) + 1
            yield task


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    runs = []
    for given in request.from_paths:
        path = require_path(given, "eval run directory or trajectories file")
        file, key, run = _run_file(path)
        runs.append((file, key, _task_languages(run) if run is not None else {}, str(path)))
    stats: dict = {"resolved": 0, "unresolved": 0, "by_model": {}, "by_exit_status": {}}
    yield Fetched(records=_convert(runs, stats), origin=", ".join(request.from_paths), stats=stats)


SPEC = SourceSpec(
    name="eval-swe",
    summary="agent trajectories with their rewards from `hrmcode eval swe` runs (--from RUN_DIR, repeatable)",
    remote=None,
    open=_open,
    needs_from=True,
    many_from=True,
)
