"""Grading a model patch on a repository task: SWE-bench's harness with hrmcode's strict verdicts.

``model_patch(base, final, language)`` is what an agent's work becomes: the git-style diff
(``hrmcode.diffs.tree_patch``) from the task's buggy tree to the agent's final work dir, after every
change to tests and test configuration is put back (``hrmcode.data.testfiles``). Left out of it,
and returned in its list of paths with the discarded test changes: files that are not UTF-8 text
(a binary file cannot be a text diff) and paths with a newline or tab (a diff cannot name them).
Left out silently: new files that running the tests leaves behind, under ``__pycache__/`` or a
directory whose own ``.gitignore`` is ``*`` (``.pytest_cache/``, as ``git diff`` leaves them out;
a file of the base there stays in the diff). A file of the base that the work dir no longer holds
as a regular file is deleted by the patch (the work dir is read without following symlinks, and
files over its size cap are not read).

``grade(task, patch, sandbox)`` applies ``patch`` to the task's buggy tree (``apply_patch``: exact,
no fuzz), puts every test and test-configuration change back again (a patch need not come from
``model_patch``), and runs the task's test command once in a fresh ``sandbox.run`` (not the
agent's session) through ``hrmcode.data.bugs.suites.run_tests`` (pytest with hrmcode's reporter's
strict checks; Go, Rust and jest repositories with their framework's own per-test report, as the bug
was validated), ``changed`` = the files the patch still changes (a test whose function is defined
in one of them fails). ``SuiteRun.verdict`` (the one validate's execution check uses) decides:

- ``resolved`` = the run is evidence (``problem`` None: not timed out, the nonce-tagged report
  complete, the exit status the one pytest recorded), every FAIL_TO_PASS and PASS_TO_PASS test
  passed, and, when those are all the tests the suite ran, pytest exited 0;
- per test: ``passed``, ``failed``, ``skipped``, ``missing`` (not in the report: not passed), or
  ``no verdict`` when the run is no evidence; ``f2p_fixed`` = the fraction of FAIL_TO_PASS that
  passed, ``p2p_broken`` = the PASS_TO_PASS tests that did not (all of them without evidence);
- not run, never resolved: an empty patch (``empty_patch``, SWE-bench's category), a patch that
  does not apply (``patch_applied`` False, ``problem`` says where), a patch that changes nothing
  but tests and test configuration, a task without FAIL_TO_PASS tests.

Not guaranteed: more than the task's tests prove, nor what the reporter's own docstring leaves
open (pytest runs in the process of the code it tests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from hrmcode.agent.repo import RepoTask
from hrmcode.data.bugs import suites
from hrmcode.data.testfiles import discard_test_changes
from hrmcode.diffs import apply_patch, tree_patch
from hrmcode.errors import InputError
from hrmcode.sandbox.base import Limits, Sandbox

NO_VERDICT = "no verdict"
NOT_RUN = "not run"


@dataclass
class Grade:
    resolved: bool
    fail_to_pass: dict[str, str]      # test id -> passed | failed | skipped | missing | no verdict | not run
    pass_to_pass: dict[str, str]
    f2p_fixed: float                  # fraction of FAIL_TO_PASS that pass
    p2p_broken: int                   # PASS_TO_PASS tests that no longer pass
    patch_applied: bool
    problem: str | None = None        # why there is no verdict (timed out, no report, patch did not apply)
    discarded: list[str] = field(default_factory=list)   # test/config paths whose changes were dropped
    empty_patch: bool = False         # nothing to grade: the patch is empty (not run)
    detail: str = ""                  # the verdict's detail: the exit status, the tests not passed

    def to_dict(self) -> dict:
        return asdict(self)


def _generated(path: str, final: dict) -> bool:
    """A file the tools leave behind: under ``__pycache__/`` or a directory that ignores itself."""
    parts = PurePosixPath(path).parts
    if "__pycache__" in parts[:-1]:
        return True
    for depth in range(1, len(parts)):
        ignore = final.get("/".join(parts[:depth]) + "/.gitignore")
        if isinstance(ignore, bytes):
            ignore = ignore.decode("utf-8", "replace")
        rules = [line.strip() for line in (ignore or "").splitlines() if line.strip() and not line.startswith("#")]
        if rules == ["*"]:  # e.g. pytest's .pytest_cache/.gitignore, "# Created by pytest automatically.\n*"
            return True
    return False


def model_patch(base: dict[str, str], final: dict[str, bytes | str],
                language: str = "python") -> tuple[str, list[str]]:
    """The unified diff base -> final over non-test text files, and the sorted paths left out of it
    (test and test-configuration changes put back, files that are not text; module docstring)."""
    text: dict[str, str] = {}
    left_out: list[str] = []
    for path, data in final.items():
        if path not in base and _generated(path, final):
            continue
        try:
            decoded = data if isinstance(data, str) else data.decode("utf-8")
        except UnicodeDecodeError:
            decoded = None
        if decoded is None or "\n" in path or "\t" in path:
            left_out.append(path)
            if path in base:
                text[path] = base[path]  # its change cannot be written as a text diff: it keeps the base's text
            continue
        text[path] = decoded
    tree, discarded = discard_test_changes(base, text, language)
    return tree_patch(base, tree), sorted(set(discarded) | set(left_out))


def _not_run(task: RepoTask, problem: str, *, applied: bool, discarded: list[str] | None = None,
             empty: bool = False) -> Grade:
    return Grade(resolved=False, fail_to_pass=dict.fromkeys(task.fail_to_pass, NOT_RUN),
                 pass_to_pass=dict.fromkeys(task.pass_to_pass, NOT_RUN), f2p_fixed=0.0,
                 p2p_broken=len(task.pass_to_pass), patch_applied=applied, problem=problem,
                 discarded=discarded or [], empty_patch=empty)


def grade(task: RepoTask, patch: str, sandbox: Sandbox, *, timeout_s: float = 300.0, worker: int = 0,
          memory_mb: int = 4096) -> Grade:
    """``patch`` graded on ``task`` in a fresh run of ``sandbox`` (module docstring)."""
    if not patch.strip():
        return _not_run(task, "empty patch", applied=False, empty=True)
    try:
        patched = apply_patch(task.files, patch)
    except InputError as exc:
        return _not_run(task, f"the patch does not apply: {exc.message}", applied=False)
    tree, discarded = discard_test_changes(task.files, patched, task.language)
    changed = sorted(p for p in set(tree) | set(task.files) if tree.get(p) != task.files.get(p))
    if not changed:
        return _not_run(task, "the patch changes only tests and test configuration, which grading puts back",
                        applied=True, discarded=discarded)
    if not task.fail_to_pass:
        return _not_run(task, "the task has no FAIL_TO_PASS tests", applied=True, discarded=discarded)
    run = suites.run_tests(sandbox, suites.suite_language(task.test_command, tree), tree, task.test_command,
                           Limits(timeout_s=timeout_s, memory_mb=memory_mb), changed=changed, worker=worker)
    resolved, detail = run.verdict(task.fail_to_pass + task.pass_to_pass)

    def verdicts(tests: list[str]) -> dict[str, str]:
        return {t: NO_VERDICT if run.problem is not None else run.outcomes.get(t, "missing") for t in tests}

    fixed = len(task.fail_to_pass) - len(run.not_passed(task.fail_to_pass))
    return Grade(resolved=resolved, fail_to_pass=verdicts(task.fail_to_pass), pass_to_pass=verdicts(task.pass_to_pass),
                 f2p_fixed=fixed / len(task.fail_to_pass), p2p_broken=len(run.not_passed(task.pass_to_pass)),
                 patch_applied=True, problem=run.problem, discarded=discarded, detail=detail)
