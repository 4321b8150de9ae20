"""``validate``'s execution checks: an edit or solve example's target must make its task's tests
pass in the sandbox, and the starting files alone must fail them. Verdicts are strict:

- Only the files the task lets a model edit (``editable``; HumanEval: the solution) are taken from
  the applied target. Anything else it writes (a ``conftest.py``, a test file, ``pytest.ini``) is
  ignored and named in the verdict's detail; tests, framework config and reporter are the task's.
- HumanEval functions are judged by ``eval humaneval``'s trusted driver in strict mode
  (``hrmcode.sandbox.driving``, ``drivers/pycheck.py``): the solution file runs in a process of its
  own (after the task's prompt, which its definitions replace) and the task's ``check`` runs in the
  driver, out of its reach, calling it across the process boundary with plain data; a pass is the
  driver's ``passed`` verdict, carried by the run's nonce. So reading the tests or the job, tracing,
  patching builtins, exiting early, printing verdicts or returning objects with lying ``__eq__``
  fail (tests/synth/test_hostile_verdicts.py runs tests/eval/hostile/he_*.py through this check).
- For the other kinds a pass needs a per-test report counted against the task's own tests, plus a
  clean exit: repository tasks (``repo-patch`` with the repository's files, as
  ``synthesize --source repo:`` writes them) run their command
  through ``hrmcode.sandbox.reports.pytest_report`` with the reporter's strict checks (nonce-tagged report,
  exit status checked against it, a test defined in the candidate's file fails, a plain value
  compared with an object of the candidate's own ``__eq__`` fails). A repository task passes when
  every FAIL_TO_PASS and PASS_TO_PASS test passed (and pytest exited 0, when those are all the tests
  it ran); the starting files fail when some FAIL_TO_PASS test does not pass. Exercises run through ``hrmcode.sandbox.toolchains.run_tests`` in its strict
  mode, counted against the task's own test files.

The target is applied to the task's files; a repository task that carries neither files nor its
repository's (rows of a SWE-smith dataset, whose repository lives in a Docker image) has its target
applied to the files the example itself shows (``input.context.files``), so a target that does not
apply there fails; those files never stand in where tests run. Every other task kind
(and a repository task without its repository's files, such as those dataset rows, whose tests
cannot run offline) is ``skipped`` with the reason, as is every check when no sandbox can be
started. Verdicts are cached in
``exec.jsonl`` by a hash of (verdict rules, task id, files), so a resumed run does not run them
again and never reuses a verdict given under other rules.
Not guaranteed: that a pass proves the target right (the task's tests are all the evidence); what
code under test could still forge inside pytest's process (repository tasks) is stated in
``sandbox.reports.pytest_report`` and ``pytest_plugin``; what HumanEval's driver does not guarantee
is stated in ``eval.humaneval`` (a candidate shares the driver's uid; signals to it are refused on
x86_64 only, and stopping it costs a failure, never a pass).
"""

from __future__ import annotations

import ast
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hrmcode.artifacts import Artifact, load_artifact
from hrmcode.data.bugs import REPOSITORY, suites
from hrmcode.data.bugs.environments import environment_sandbox
from hrmcode.edits import MalformedEdit, apply_edits, parse_edits
from hrmcode.errors import HrmcodeError, SandboxError
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.sandbox import get_sandbox
from hrmcode.sandbox.base import Limits, Sandbox
from hrmcode.sandbox.driving import PYCHECK_RULES, pycheck_sample, run_driver
from hrmcode.sandbox.reports.pytest_report import STRICT_RULES
from hrmcode.sandbox.toolchains import run_tests

# the rules the verdicts are given under, part of each cached verdict's key: HumanEval by the
# trusted driver (before: ``check`` inside the solution's pytest process, which it could forge)
VERDICT_RULES = [STRICT_RULES, PYCHECK_RULES]


def _split_future_imports(solution: str) -> tuple[str, str]:
    """(the solution file's leading ``from __future__`` statements, the file with those lines blanked).

    The driver runs the prompt then the solution as one program, where a ``from __future__`` line
    is only legal at the very top: it moves there, and blank lines keep the rest's line numbers.
    A file that does not parse is returned as is (the driver reports its syntax error)."""
    try:
        body = ast.parse(solution).body
    except (SyntaxError, ValueError):
        return "", solution
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # a module docstring may precede them
    spans = []
    for node in body:
        if not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            break
        spans.append((node.lineno, node.end_lineno))
    if not spans:
        return "", solution
    lines = solution.splitlines(keepends=True)
    moved = []
    for first, last in spans:
        moved.extend(lines[first - 1:last])
        lines[first - 1:last] = ["\n"] * (last - first + 1)
    future = "".join(line if line.endswith("\n") else line + "\n" for line in moved)
    return future, "".join(lines)


def _humaneval_verdict(box: Sandbox, task: dict, solution: str, timeout_s: float) -> tuple[bool, str]:
    """(passed, detail) from ``eval humaneval``'s trusted driver in strict mode: the task's prompt
    (its helpers, for ``check``) then the solution file, which replaces its definitions."""
    tests = task["tests"]
    future, solution = _split_future_imports(solution)
    sample = pycheck_sample(future + (task.get("prompt") or ""), "\n" + solution, next(iter(tests["files"].values())),
                            tests["entry_point"], timeout_s)
    payload, result = run_driver(box, "pycheck.py", {"strict": True, "samples": [sample]},
                                 Limits(timeout_s=timeout_s + 11.5, memory_mb=2048), worker=0)
    verdicts = payload.get("verdicts") if isinstance(payload, dict) else None
    if not (isinstance(verdicts, list) and len(verdicts) == 1 and isinstance(verdicts[0], str)):
        return False, ("timed out" if result.timed_out
                       else f"failed: the program stopped the test driver (exit {result.exit_code})")
    return verdicts[0] == "passed", f"driver: {verdicts[0]}"


@dataclass
class TaskBook:
    """The tasks examples were synthesized from, by id, and each repository task's repository files."""

    tasks: dict[str, dict] = field(default_factory=dict)
    repositories: dict[str, dict[str, str]] = field(default_factory=dict)


class ExecChecker:
    """Runs the candidate and the stub of a task in the sandbox; caches verdicts in ``exec.jsonl``."""

    def __init__(self, book: TaskBook, log: AppendLog, timeout_s: float = 30.0, sandbox: Sandbox | None = None):
        self.tasks = book.tasks
        self.repositories = book.repositories
        self.log = log
        self.timeout_s = timeout_s
        self._sandbox = sandbox  # None: the default backend, started at the first check
        self._unavailable: str | None = None

    def _box(self):
        if self._sandbox is None and self._unavailable is None:
            try:
                self._sandbox = get_sandbox()
            except HrmcodeError as exc:
                self._unavailable = f"sandbox unavailable: {exc.message}"
        return self._sandbox

    def _run(self, task: dict, files: dict[str, str], stub: bool) -> tuple[bool | None, str]:
        """(passed, detail) for ``files`` (only editable paths) on ``task``; None when it cannot run.
        For the stub (``stub=True``) of a repository task, passed = every FAIL_TO_PASS test passes."""
        key = hashlib.sha256(json.dumps([VERDICT_RULES, task["id"], files, stub], sort_keys=True).encode()).hexdigest()
        if self.log.done(key):
            entry = self.log.records[key]
            return entry["passed"], entry["detail"]
        tests = task.get("tests") or {}
        kind = task.get("kind")
        runnable = ((kind == "function" and tests.get("entry_point") and tests.get("files"))
                    or kind == "exercise" or (kind == "repo-patch" and task["id"] in self.repositories))
        if not runnable and kind == "repo-patch":
            metadata = task.get("metadata") or {}
            where = metadata.get("image_name") or metadata.get("repo") or "its repository"
            return None, f"its tests run in {where}, and the repository's files are not here: they cannot run offline"
        if not runnable:
            return None, "the task carries no tests that can run here"
        box = self._box()
        if box is None:
            return None, self._unavailable or "sandbox unavailable"
        if kind == "function":
            try:
                passed, detail = _humaneval_verdict(box, task, next(iter(files.values()), ""), self.timeout_s)
            except SandboxError as exc:  # the sandbox cannot run the driver at all: no verdict either way
                return None, f"sandbox cannot run the test driver: {exc.message}"
        elif kind == "exercise":
            # counted against the task's own (pristine) test files; a test defined in the candidate's files fails
            result = run_tests(task["language"], {**(task.get("files") or {}), **files}, mode="strict", sandbox=box,
                               limits=Limits(timeout_s=self.timeout_s * 4), test_files=tests.get("files") or None,
                               changed=sorted(files))
            passed, detail = bool(result.passed), f"exit {result.result.exit_code}"
            if not passed and result.reason:
                detail += f": {result.reason}"
        else:
            tree = {**self.repositories[task["id"]], **(task.get("files") or {}), **files}
            try:  # the repository's test dependencies, as its tests ran when the task was made
                box = environment_sandbox((task.get("metadata") or {}).get("environment"), box)
            except HrmcodeError as exc:
                return None, f"its test environment cannot be prepared here: {exc.message}"
            # the repository's language decides the runner and its report, as when the bug was validated
            run = suites.run_tests(box, suites.suite_language(tests["command"], tree), tree, tests["command"],
                                   Limits(timeout_s=self.timeout_s * 4, memory_mb=4096), changed=files)
            expected = tests["fail_to_pass"] if stub else tests["fail_to_pass"] + tests["pass_to_pass"]
            # a suite of only expected tests must also exit 0; one with tests that failed at HEAD cannot
            passed, detail = run.verdict(expected)
        self.log.append({"id": key, "task_id": task["id"], "passed": passed, "detail": detail})
        return passed, detail

    def check(self, example: dict) -> tuple[str, str]:
        """('passed' | 'failed' | 'skipped', detail) for one edit/solve example."""
        task = self.tasks.get(example["task_id"])
        if task is None:
            return "skipped", "task not found in the examples' input tasks artifact"
        context = example["input"]["context"]
        paths = context.get("paths") or []
        task_files = task.get("files") or {}
        # a repository task without files or repository (a dataset row): the example's own files are what
        # its target edits. Never where tests can run: the example's files are not evidence of the task's
        dataset_row = task.get("kind") == "repo-patch" and not task_files and task["id"] not in self.repositories
        shown = {p: t for p, t in (context.get("files") or {}).items() if isinstance(t, str)} if dataset_row else {}
        editable = set(task.get("editable") or shown)
        start = {p: task_files.get(p, shown.get(p, "")) for p in sorted(editable | set(paths))}
        # the target is applied to the whole tree it works on; only the editable files are taken
        tree = {**self._pristine(task), **start}
        try:
            fmt = "whole" if example["level"] == "solve" else "diff"
            applied = apply_edits({p: t for p, t in tree.items() if t or fmt == "diff"},
                                  parse_edits(example["target"], fmt, paths))
        except MalformedEdit as exc:
            return "failed", f"target does not apply: {str(exc).splitlines()[0]}"
        candidate = {p: applied.get(p, "") for p in sorted(editable)}
        ignored = sorted(p for p, t in applied.items() if p not in editable and t != tree.get(p, ""))
        note = f"; ignored (not editable): {', '.join(ignored)}" if ignored else ""
        passed, detail = self._run(task, candidate, stub=False)
        if passed is None:
            return "skipped", f"the target applies; {detail}" if shown else detail
        if not passed:
            return "failed", f"tests fail with the target applied ({detail}){note}"
        stub_passed, stub_detail = self._run(task, {p: start[p] for p in sorted(editable)}, stub=True)
        if stub_passed:
            return "failed", f"tests already pass on the starting files (the example teaches nothing){note}"
        return "passed", f"target passes, stub fails ({stub_detail}){note}"

    def _pristine(self, task: dict) -> dict[str, str]:
        """The files around the editable ones that a target could try to change: tests, the rest of
        a repository."""
        if task.get("kind") == "repo-patch":
            return self.repositories.get(task["id"], {})
        return dict((task.get("tests") or {}).get("files") or {}) if task.get("kind") == "exercise" else {}


def tasks_of(examples: Artifact) -> TaskBook:
    """Every task of the tasks artifacts the examples were synthesized from, by id, with the
    repository files of the artifacts that carry them (``synthesize --source repo:``)."""
    book = TaskBook()
    for entry in examples.manifest.get("inputs", []):
        if entry.get("kind") == "tasks" and Path(entry["path"]).is_dir():
            tasks = load_artifact(entry["path"], "tasks")
            repository = None
            if (tasks.path / REPOSITORY).is_file():
                repository = {r["path"]: r["text"] for r in read_jsonl(tasks.file(REPOSITORY))}
            for task in read_jsonl(tasks.file("tasks.jsonl")):
                book.tasks[task["id"]] = task
                if repository is not None and task.get("kind") == "repo-patch":
                    book.repositories[task["id"]] = repository
    return book


def check_apart(book: TaskBook, timeout_s: float, cached: list[dict], example: dict, worker: int) -> list[dict]:
    """``ExecChecker.check(example)`` away from the run's ``exec.jsonl`` (on a thread, or a Ray worker with
    its own sandbox): ``book`` holds the example's task, ``cached`` the log's records for that task. Returns
    the records the check added, for the run to append; its verdict is then read from the log."""
    with tempfile.TemporaryDirectory(prefix="hrmcode-exec-") as tmp, AppendLog(Path(tmp) / "exec.jsonl") as log:
        log.extend(cached)
        ExecChecker(book, log, timeout_s).check(example)
        known = {record["id"] for record in cached}
        return [record for key, record in log.records.items() if key not in known]
