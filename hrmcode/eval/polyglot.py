"""Aider's polyglot benchmark, run with Aider's protocol and scored with its metrics.

Protocol per exercise (Aider ``benchmark/benchmark.py``):

- The model sees the editable files (Aider's "added to the chat" message, rebuilt with their
  current content every turn) and the instructions: ``.docs/introduction.md`` +
  ``instructions.md`` + ``instructions.append.md`` (the task prompt) followed by Aider's addendum
  naming the files (by base name) and asking for standard libraries only. Test files are never shown.
- The reply is parsed in the chosen edit format (``whole``, ``diff``, ``udiff``; ``hrmcode.edits``).
  Edits that match are applied; a reply that does not parse or an edit that does not match counts
  as a malformed response and its error is sent back (at most 3 reflections per message, as Aider).
  A reply changes only the solution files (Aider's rule, ``writable_path``; the one exception is a
  new Java class beside the solution, which six references need): anything else it sends (test
  files, ``conftest.py``, ``pytest.ini``, a new ``*_test.go``, ``Cargo.toml``, ``CMakeLists.txt``,
  build files) is dropped and listed in the record (``ignored_edits``).
- Before every test run the test files are restored from the task; tests run through
  ``hrmcode.sandbox.toolchains.run_tests`` with a 180 s timeout. ``--mode strict`` un-skips every
  test and passes a run only on the framework's own per-test report, in which every test of the
  pristine test files passed, plus exit 0 (each run's reason in the record's ``verdicts``);
  ``aider-compat`` un-skips exactly as Aider and passes on exit code 0, as Aider does.
- ``--tries`` (default 2; ``--model oracle`` and ``--model stub`` get one, as they give the same
  answer every time): after a failing run, the first 50 lines of the cleaned test output
  (timings such as ``in 0.12s`` and the sandbox work-dir path removed) plus Aider's "See the testing
  errors above..." message become the next user message. A case stops at its first pass.

Metrics (Aider's ``--stats`` record, with two deliberate differences): ``pass_rate_i`` and
``pass_num_i`` are over ALL selected cases, not only completed ones; ``seconds_per_case`` (model
time) is reported together with ``test_seconds_per_case``. Also: percent of cases well formed,
malformed responses, syntax/indentation errors (test-output lines starting with them), lazy
comments, test timeouts, tokens, a per-language table, the exercises whose unmodified stubs already
pass (decided by running each stub once, see ``Polyglot.stub_passes``; ``score_without_stub_passing``
leaves them out), and which selected exercises' references
cannot pass here (``unavailable_reason``: missing offline dependencies, or a reference that must
change a file the protocol keeps read-only).

Not reproduced: Aider's exact system prompts (the format instructions here are hrmcode's own,
shorter, with examples produced by the same renderer the parser is tested against), its
repository map, and its ``...`` elision handling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hrmcode import __version__
from hrmcode.atomic import write_text
from hrmcode.data.schema import Task
from hrmcode.edits import MalformedEdit, apply_edits_partial, parse_edits, reflection, render_edits, resolve_path
from hrmcode.errors import UsageError
from hrmcode.eval.backends import Backend, PromptTooLong, Reply, Request, segments_field
from hrmcode.eval.metrics import percent
from hrmcode.eval.runner import VERDICT_RULES
from hrmcode.paths import cache_home
from hrmcode.sandbox.base import Sandbox
from hrmcode.sandbox.toolchains import DEFAULT_LIMITS, release_requested, run_tests

EDIT_FORMATS = ("whole", "diff", "udiff")
SANDBOX_WORKDIR = "/work"  # where every sandbox runs the tests; stripped from the output fed back
MAX_REFLECTIONS = 3
FEEDBACK_LINES = 50

# Aider benchmark/prompts.py, verbatim.
INSTRUCTIONS_ADDENDUM = """
####

Use the above instructions to modify the supplied files: {file_list}
Don't change the names of existing functions or classes, as they may be referenced from other code like unit tests, etc.
Only use standard libraries, don't suggest installing any packages.
"""
TEST_FAILURES = """
####

See the testing errors above.
The tests are correct, don't try and change them.
Fix the code in {file_list} to resolve the errors.
"""
# Aider's coders: the message that shows the files, and the assistant's acknowledgement.
FILES_PREFIX = (
    "I have *added these files to the chat* so you can go ahead and edit them.\n\n"
    "*Trust this message as the true contents of these files!*\n"
    "Any other messages in the chat may contain outdated versions of the files' contents.\n"
)
FILES_ACK = "Ok, any changes I propose will be to those files."

_EXAMPLE_BEFORE = {"mathweb/calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"}
_EXAMPLE_AFTER = {"mathweb/calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"}
_FORMAT_RULES = {
    "whole": "To change a file, reply with its path alone on a line, then its COMPLETE new content in a fenced "
             "code block. Never elide code with comments like '... rest of code ...'.",
    "diff": "To change a file, reply with SEARCH/REPLACE blocks: the file's path alone on a line, an opening fence, "
            "'<<<<<<< SEARCH', lines that exactly match existing lines of the file (whitespace, comments and all), "
            "'=======', the lines to put in their place, '>>>>>>> REPLACE', and a closing fence. Keep each SEARCH "
            "section small but unique in the file. To create a file, leave the SEARCH section empty.",
    "udiff": "To change a file, reply with a unified diff in a ```diff fenced block: '--- path' and '+++ path' lines, "
             "then hunks each starting with '@@ ... @@', with ' ' context lines, '-' removed lines and '+' added lines. "
             "Include enough context for each hunk to match the file exactly. Line numbers are not needed.",
}


def system_prompt(edit_format: str) -> str:
    example = render_edits(_EXAMPLE_BEFORE, _EXAMPLE_AFTER, edit_format)
    return (
        "Act as an expert software developer. Always use best practices when coding. Respect and use existing "
        "conventions, libraries, etc that are already present in the code base.\n\n"
        f"{_FORMAT_RULES[edit_format]}\n\nFor example, to fix `add` in mathweb/calc.py:\n\n{example}"
    )


def files_message(files: dict[str, str], editable: Sequence[str]) -> str:
    listing = "".join(f"\n{path}\n```\n{files[path]}{'' if files[path].endswith(chr(10)) else chr(10)}```\n"
                      for path in editable if path in files)
    return FILES_PREFIX + listing


def clean_output(output: str, workdir: str, name: str) -> str:
    """Aider's cleanup (``in N.NNs`` timings removed, the exercise dir replaced by its name), plus the
    timings other runners print (Go's ``0.005s`` columns, ``(0.00s)``, jest's ``Time:``) and temp dirs."""
    text = re.sub(r"\bin \d+\.\d+s\b", "", output)
    text = re.sub(r"\t\d+\.\d+s\b|\s\(\d+(\.\d+)?m?s\)", "", text)
    text = re.sub(r"(?m)^(Time:\s+)[\d.]+ m?s.*$", r"\1", text)
    text = text.replace(workdir.rstrip("/") + "/", "").replace(workdir.rstrip("/"), name)
    return re.sub(r"/tmp/[\w.-]+/", "", text)


_LAZY = re.compile(r"^\s*(#|//|/\*|--)\s*\.\.\..*$|^\s*(#|//)\s*(rest of|remaining|existing|other) .*(code|methods|functions)", re.M | re.I)


def count_lazy_comments(reply: str) -> int:
    return len(_LAZY.findall(reply))


def exercise_name(task: Task) -> str:
    """``<lang>/<slug>``: how the toolchain lists name exercises."""
    return task.id.split("/", 1)[1]


# References that cannot pass offline here, and why (found by running every reference through
# the toolchains with benchmarks/polyglot_sweep.py). Model answers cannot add dependencies
# (Cargo.toml and Java build files are not editable), so these only matter when validating the
# references themselves.
KNOWN_UNAVAILABLE = {
    "rust/alphametics": "reference needs crates itertools 0.5 and permutohedron 0.2, not packaged in Debian",
    "rust/decimal": "reference needs num-bigint >= 0.4.4; Debian bookworm packages 0.4.3",
    "rust/pig-latin": "reference needs crate regex 0.2; Debian packages regex 1.x only",
    "rust/poker": "reference needs crate counter 0.5.2, not packaged in Debian",
    "rust/robot-name": "reference needs crate rand 0.3; Debian packages rand 0.8 only",
    "java/hangman": "tests need io.reactivex.rxjava2:rxjava (Maven central is unreachable offline)",
    "java/rest-api": "reference needs org.json:json (Maven central is unreachable offline)",
    "java/mazy-mice": "tests use AssertJ's hasDimensions, missing from Debian's AssertJ 3.14",
}
# References that pass when applied whole (the sandbox sweep) but cannot be given as an answer:
# their Cargo-example.toml adds a crate, and the protocol keeps Cargo.toml read-only as Aider does.
PROTOCOL_UNAVAILABLE = {
    "rust/grep": "reference needs crate thiserror from its Cargo-example.toml; Cargo.toml is read-only to answers",
}
# Unmodified stubs that already pass on the published 225 (measured: "refactor this working code"
# exercises and go/counter, whose test file is an empty stub). Runs decide this by running each stub
# (``Polyglot.stub_passes``); this list is only the documented cross-check of that.
STUBS_THAT_PASS = frozenset({
    "go/counter", "go/ledger", "go/markdown", "java/ledger", "java/tree-building", "javascript/ledger",
})


# Java references may add classes of their own (bowling's Frame, poker's Card and Hand): pristine-tree
# runs of those references fail to compile without them, so a reply may create new top-level
# classes beside the solution, and nothing else.
_JAVA_NEW_CLASS = re.compile(r"(?:src/main/java/)?([A-Za-z_][A-Za-z0-9_]*\.java)")


def writable_path(task: Task, path: str) -> str | None:
    """Where a reply's file ``path`` may be written, or None when the reply may not change it.
    Aider's rule: only the solution files (``task.editable``); the one exception is a NEW Java
    class beside the solution (``src/main/java/<Name>.java``; a bare ``<Name>.java`` goes there)."""
    if path in task.editable:
        return path
    java = _JAVA_NEW_CLASS.fullmatch(path) if task.language == "java" else None
    if java is None:
        return None
    target = f"src/main/java/{java.group(1)}"
    known = {*task.files, *task.tests.files, *(f"src/main/java/{PurePosixPath(p).name}" for p in task.tests.files)}
    return None if target in known else target


# Backends whose answer never changes between tries: a second try could only repeat the first.
SAME_ANSWER_EVERY_TIME = ("oracle", "stub")


def stub_verdict_path(task: Task, mode: str, sandbox: Sandbox) -> Path:
    """Where the verdict of ``task``'s unmodified stub is kept: under hrmcode's cache, named by a
    hash of everything the verdict depends on that hrmcode controls (the stub and test files, the
    exercise config, the mode, the sandbox, the verdict rules, hrmcode's version). A changed
    toolchain version is not part of it: delete the directory after upgrading one."""
    key = json.dumps({"id": task.id, "language": task.language, "files": task.files, "tests": task.tests.files,
                      "config": task.metadata.get("config"), "mode": mode, "sandbox": sandbox.name,
                      "rules": VERDICT_RULES, "hrmcode": __version__}, sort_keys=True)
    return cache_home() / "polyglot" / "stub-verdicts" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def unavailable_reason(name: str) -> str | None:
    """Why the reference of exercise ``lang/slug`` cannot pass here, or None."""
    return KNOWN_UNAVAILABLE.get(name) or PROTOCOL_UNAVAILABLE.get(name)


def select(tasks: Sequence[Task], languages: str | None, exercises: str | None) -> list[Task]:
    """``--languages python,go`` and ``--exercises forth,go/ledger`` (slug or lang/slug)."""
    selected = [t for t in tasks if t.kind == "exercise"]
    if languages:
        wanted = {part.strip() for part in languages.split(",") if part.strip()}
        known = {t.language for t in selected}
        unknown = sorted(wanted - known)
        if unknown:
            raise UsageError(f"no polyglot tasks in language {', '.join(unknown)}", f"languages present: {', '.join(sorted(known))}")
        selected = [t for t in selected if t.language in wanted]
    if exercises:
        wanted = {part.strip() for part in exercises.split(",") if part.strip()}
        selected = [t for t in selected if exercise_name(t) in wanted or exercise_name(t).split("/", 1)[1] in wanted]
        if not selected:
            raise UsageError(f"no polyglot exercise matches --exercises {exercises}", "use slugs like forth or go/ledger")
    return selected


@dataclass
class CaseState:
    """One exercise in progress: the working files, the chat after the files message, and the
    counters its record reports."""

    files: dict[str, str]
    history: list[dict[str, str]] = field(default_factory=list)
    turns: int = 0
    malformed: int = 0
    model_s: float = 0.0
    test_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: list[Reply] = field(default_factory=list)  # every model turn's reply (their segments)
    lazy_comments: int = 0
    test_timeouts: int = 0
    syntax_errors: int = 0
    indentation_errors: int = 0
    ignored_edits: list[str] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)  # per test run: passed, why not, tests expected, exit


class Polyglot:
    name = "polyglot"

    def __init__(self, backend: Backend, sandbox: Sandbox, *, edit_format: str = "whole", tries: int = 2, mode: str = "strict",
                 test_timeout_s: float = 180.0):
        if edit_format not in EDIT_FORMATS:
            raise UsageError(f"unknown --edit-format '{edit_format}'", f"choose one of: {', '.join(EDIT_FORMATS)}")
        if tries < 1:
            raise UsageError(f"--tries {tries} must be at least 1", "Aider's default is 2")
        self.backend = backend
        self.sandbox = sandbox
        self.edit_format = edit_format
        self.tries = 1 if getattr(backend, "name", None) in SAME_ANSWER_EVERY_TIME else tries
        self.mode = mode
        self.test_timeout_s = test_timeout_s

    # -- answers (--model oracle, --model stub) ---------------------------------------------------
    def reference_answer(self, request: Request) -> Reply:
        """An edit reply, in the request's edit format, that turns the current files into the
        reference solution's editable (and new) files."""
        task = request.task
        current = dict(request.files or task.files)
        target = {path: text for path, text in task.solution.files.items()
                  if path in task.editable or path not in task.files}
        before = {path: current[path] for path in target if path in current}
        return Reply(text=render_edits(before, target, request.edit_format or "whole"), raw=True)

    def stub_answer(self, request: Request) -> Reply:
        """An empty reply: the stub files stay as they are."""
        return Reply(text="", raw=True)

    def stub_passes(self, task: Task, worker: int, outcomes: Sequence[bool] = ()) -> bool:
        """Whether ``task``'s unmodified stub passes its tests here, decided by running it: a case's
        own test run of the stub files (same mode, limits and verdict rules), once, then read from
        ``stub_verdict_path``. Under ``--model stub`` the case's first try is that run (``outcomes``).
        A run that timed out is not kept (load, not the stub, may have caused it)."""
        path = stub_verdict_path(task, self.mode, self.sandbox)
        try:
            return bool(json.loads(path.read_text())["passed"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if getattr(self.backend, "name", None) == "stub" and outcomes:
            passed, timed_out = outcomes[0], False
        else:
            state = CaseState(files=dict(task.files))
            passed, _ = self._test(task, state, worker)
            timed_out = state.test_timeouts > 0
        if not timed_out:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps({"id": task.id, "mode": self.mode, "sandbox": self.sandbox.name,
                                         "passed": passed}) + "\n", unique=True)
        return passed

    # -- one exercise ------------------------------------------------------------------------
    def _model_turn(self, task: Task, state: CaseState, message: str) -> None:
        """Ask, apply, and reflect malformed replies back (at most MAX_REFLECTIONS times)."""
        for _ in range(MAX_REFLECTIONS + 1):
            messages = [
                {"role": "system", "content": system_prompt(self.edit_format)},
                {"role": "user", "content": files_message(state.files, task.editable)},
                {"role": "assistant", "content": FILES_ACK},
                *state.history,
                {"role": "user", "content": message},
            ]
            state.turns += 1
            started = time.monotonic()
            reply = self.backend.complete(Request(bench=self.name, task=task, messages=messages, attempt=state.turns,
                                                  files=dict(state.files), edit_format=self.edit_format,
                                                  answer_key=self))[0]
            state.model_s += time.monotonic() - started
            state.prompt_tokens += reply.prompt_tokens
            state.completion_tokens += reply.completion_tokens
            state.replies.append(reply)
            state.history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply.text}]
            state.lazy_comments += count_lazy_comments(reply.text)
            problem = self._apply(task, state, reply)
            if problem is None:
                return
            state.malformed += 1
            message = problem

    def _apply(self, task: Task, state: CaseState, reply: Reply) -> str | None:
        """Apply the reply to ``state.files``; the reflection text when it was malformed."""
        if reply.files is not None:
            try:
                proposed = [(resolve_path(path, task.editable), text) for path, text in reply.files.items()]
            except MalformedEdit as exc:
                return str(exc)
            edits = None
        else:
            try:
                edits = parse_edits(reply.text, self.edit_format, task.editable)
            except MalformedEdit as exc:
                return str(exc)
            proposed = [(e.path, e) for e in edits]
        allowed, dropped = [], []
        for path, item in proposed:
            target = writable_path(task, path)
            if target is None:
                dropped.append(path)
            else:
                allowed.append((target, item if edits is None or target == path else dataclasses.replace(item, path=target)))
        state.ignored_edits += dropped
        if edits is None:
            state.files.update({path: text for path, text in allowed})
            return None
        files, failures = apply_edits_partial(state.files, [item for _, item in allowed])
        state.files = files
        return reflection(failures, len(allowed)) if failures else None

    def _test(self, task: Task, state: CaseState, worker: int) -> tuple[bool, str]:
        tree = {**state.files, **task.tests.files}  # tests restored before every run
        # the toolchain's own limits for the language, with this run's timeout
        limits = dataclasses.replace(DEFAULT_LIMITS[task.language], timeout_s=self.test_timeout_s)
        run = run_tests(task.language, tree, mode=self.mode, sandbox=self.sandbox, limits=limits, worker=worker,
                        test_files=task.tests.files, changed=[p for p in state.files if p not in task.files or p in task.editable],
                        release=release_requested(task.metadata.get("config")))
        state.test_s += run.result.wall_s
        state.verdicts.append({"passed": run.passed, "reason": run.reason, "expected_tests": run.expected,
                               "exit_code": run.result.exit_code})
        if run.result.timed_out:
            state.test_timeouts += 1
            return False, "Tests timed out!"
        output = clean_output(run.output, SANDBOX_WORKDIR, PurePosixPath(exercise_name(task)).name)
        state.syntax_errors += sum(1 for line in output.splitlines() if line.startswith("SyntaxError"))
        state.indentation_errors += sum(1 for line in output.splitlines() if line.startswith("IndentationError"))
        return run.passed, output

    def evaluate_one(self, task: Task, worker: int) -> dict:
        file_list = " ".join(PurePosixPath(p).name for p in task.editable)
        state = CaseState(files=dict(task.files))
        message = task.prompt + INSTRUCTIONS_ADDENDUM.format(file_list=file_list)
        outcomes: list[bool] = []
        malformed_by_try: list[int] = []
        last_output = ""
        error = None
        for _ in range(self.tries):
            before = state.malformed
            try:
                self._model_turn(task, state, message)
            except PromptTooLong as exc:  # the chat outgrew the model's context: the case fails, the run goes on
                error = exc.message
                break
            malformed_by_try.append(state.malformed - before)
            passed, output = self._test(task, state, worker)
            outcomes.append(passed)
            last_output = output
            if passed:
                break
            errors = "\n".join(output.splitlines()[:FEEDBACK_LINES])
            message = errors + TEST_FAILURES.format(file_list=file_list)
        name = exercise_name(task)
        return {
            "id": task.id, "exercise": name, "language": task.language, "edit_format": self.edit_format,
            "tests_outcomes": outcomes, "passed": any(outcomes),
            "num_malformed_responses": state.malformed, "malformed_by_try": malformed_by_try,
            "syntax_errors": state.syntax_errors, "indentation_errors": state.indentation_errors,
            "lazy_comments": state.lazy_comments, "test_timeouts": state.test_timeouts,
            "model_s": round(state.model_s, 4), "test_s": round(state.test_s, 4),
            "prompt_tokens": state.prompt_tokens, "completion_tokens": state.completion_tokens,
            "model_turns": state.turns, **segments_field(state.replies), "ignored_edits": sorted(set(state.ignored_edits)),
            "mode": self.mode, "verdicts": state.verdicts,
            "stub_passes": self.stub_passes(task, worker, outcomes), "known_unavailable": unavailable_reason(name),
            "last_test_output": last_output[-2000:], "chat": state.history, "error": error,
        }

    def evaluate(self, tasks: Sequence[Task], worker: int) -> list[dict]:
        return [self.evaluate_one(task, worker) for task in tasks]

    # -- metrics -------------------------------------------------------------------------------
    def summarize(self, records: Sequence[dict], tasks: Sequence[Task]) -> dict:
        cases = len(tasks)
        completed = len(records)
        summary: dict[str, Any] = {
            "bench": self.name, "model": self.backend.describe(), "edit_format": self.edit_format, "tries": self.tries,
            "mode": self.mode, "cases": cases, "completed": completed,
        }
        for i in range(1, self.tries + 1):
            passed = sum(1 for r in records if any(r["tests_outcomes"][:i]))
            summary[f"pass_num_{i}"] = passed
            summary[f"pass_rate_{i}"] = percent(passed, cases)
        with_malformed = sum(1 for r in records if r["num_malformed_responses"])
        summary.update({
            "score": summary[f"pass_rate_{self.tries}"],
            "percent_cases_well_formed": round(100.0 * (1 - with_malformed / completed), 2) if completed else 0.0,
            "num_malformed_responses": sum(r["num_malformed_responses"] for r in records),
            "num_with_malformed_responses": with_malformed,
            "syntax_errors": sum(r["syntax_errors"] for r in records),
            "indentation_errors": sum(r["indentation_errors"] for r in records),
            "lazy_comments": sum(r["lazy_comments"] for r in records),
            "test_timeouts": sum(r["test_timeouts"] for r in records),
            "seconds_per_case": round(sum(r["model_s"] for r in records) / completed, 3) if completed else 0.0,
            "test_seconds_per_case": round(sum(r["test_s"] for r in records) / completed, 3) if completed else 0.0,
            "prompt_tokens": sum(r["prompt_tokens"] for r in records),
            "completion_tokens": sum(r["completion_tokens"] for r in records),
        })
        free = sorted(r["id"] for r in records if r.get("stub_passes"))
        rest = [r for r in records if r["id"] not in free]
        summary["stub_passing"] = free
        summary["score_without_stub_passing"] = percent(sum(1 for r in rest if r["passed"]), cases - len(free))
        summary["known_unavailable"] = {t.id: unavailable_reason(exercise_name(t)) for t in tasks
                                        if unavailable_reason(exercise_name(t))}
        summary["failed"] = sorted(r["id"] for r in records if not r["passed"])
        languages: dict[str, dict[str, Any]] = {}
        for task in tasks:
            entry = languages.setdefault(task.language, {"cases": 0, "passed": 0, "stub_passing": 0})
            entry["cases"] += 1
        for record in records:
            languages[record["language"]]["passed"] += bool(record["passed"])
            languages[record["language"]]["stub_passing"] += bool(record.get("stub_passes"))
        for entry in languages.values():
            entry["pass_rate"] = percent(entry["passed"], entry["cases"])
        summary["languages"] = dict(sorted(languages.items()))
        return summary
