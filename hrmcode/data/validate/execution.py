"""``validate``'s execution checks: an edit or solve example's target must make its task's tests
pass in the sandbox, and the starting files alone must fail them.

Runs HumanEval functions as the official harness assembles them (``python3 program.py``) and
polyglot-style exercises through ``hrmcode.sandbox.toolchains.run_tests``; every other task kind
is ``skipped`` with the reason, as is every check when no sandbox can be started. Verdicts are
cached in ``exec.jsonl`` by a hash of (task id, files), so a resumed run does not run them again.
Not guaranteed: that a pass proves the target right (the task's tests are all the evidence).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hrmcode.artifacts import Artifact, load_artifact
from hrmcode.edits import MalformedEdit, apply_edits, parse_edits
from hrmcode.errors import HrmcodeError
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.sandbox import get_sandbox
from hrmcode.sandbox.base import Limits
from hrmcode.sandbox.toolchains import run_tests


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


def tasks_of(examples: Artifact) -> dict[str, dict]:
    """Every task of the tasks artifacts the examples were synthesized from, by id."""
    tasks: dict[str, dict] = {}
    for entry in examples.manifest.get("inputs", []):
        if entry.get("kind") == "tasks" and Path(entry["path"]).is_dir():
            for task in read_jsonl(load_artifact(entry["path"], "tasks").file("tasks.jsonl")):
                tasks[task["id"]] = task
    return tasks
