"""Strict verdicts of a pytest suite in the sandbox: what a repository bug and an example are judged by.

``run_suite(sandbox, files, command, limits, changed) -> SuiteRun`` runs ``command`` (a pytest
command line) over the tree ``files`` with hrmcode's reporter (``pytest_plugin.py``, loaded
through ``PYTEST_ADDOPTS=-p``) and reads per-test outcomes only from the report it writes, never
from the program's output or its exit status alone. The report keeps full node ids (spaces, ``::``
and parameters exactly) and subtest outcomes. A test passes only when its setup, call and teardown
passed, none of its subtests failed (unittest's ``subTest`` leaves a failed subtest's parent
"passed"), and its function is not defined in one of the ``changed`` files (the candidate's: so a
candidate that swaps the test module's functions for its own does not pass). With the reporter's
strict checks on (``reporting_script(strict=True)``, polyglot's strict mode) a test also fails when
the reporter saw pytest, pluggy or unittest change while it ran (a ``tampered`` record), and
unittest's equality assertions refuse an object with its own ``__eq__`` posing as a plain value.

A run is evidence at all (``SuiteRun.problem`` is None) only when it did not time out, the report
is complete (one start and one end record, every line carrying the run's nonce, which the reporter
reads and deletes before any test code is imported) and the process exit status equals the status
pytest recorded at the end. So a program that exits early (``os._exit(0)`` at import), forces the
exit status at exit, prints pytest's summary lines, or writes a report file of its own gets no
verdict; a caller counts its expected tests (from a run of the pristine tree) against the report,
and a test missing from it has not passed. Which files a candidate may supply is the caller's rule:
tests, ``conftest.py`` and pytest's config come from the pristine tree. ``files`` under the
reporter's directory (on ``PYTHONPATH``) are never written: only the reporter and its nonce are.

Not guaranteed: pytest runs in the tested code's process, so code written against this reporter
can still forge outcomes in place: read the nonce out of the interpreter's memory and write records
through the reporter's descriptor, patch pytest's reporting, or give a replacement test function
the test file's name (``compile(..., "tests/test_x.py", ...)``). Nothing outside the process sees
the tests run; the report is the evidence.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hrmcode.sandbox.base import ExecResult, Limits, Sandbox

REPORT_DIR = ".hrmcode-pytest"
PLUGIN = "hrmcode_pytest_report"
REPORT = f"{REPORT_DIR}/report.jsonl"
REPORT_BYTES = 16 << 20  # a report longer than this is truncated, hence incomplete: no verdict
# The version of the rules that turn a strict report into verdicts: part of every cache key of a verdict
# (validate's execution check, repository bug validation), so verdicts given under other rules are not
# reused. Bump it with the reporter's strict checks (and eval's VERDICT_RULES with it).
STRICT_RULES = "strict-3"
PLUGIN_SOURCE = (Path(__file__).parent / "pytest_plugin.py").read_text(encoding="utf-8")


@dataclass
class SuiteRun:
    """One run of a suite: per-test outcomes (``passed`` | ``failed`` | ``skipped``) by exact node
    id, and ``problem`` (why the run is no evidence at all) or None."""

    result: ExecResult
    outcomes: dict[str, str] = field(default_factory=dict)
    failed_subtests: dict[str, list[str]] = field(default_factory=dict)
    problem: str | None = None

    def passed(self, test: str) -> bool:
        return self.problem is None and self.outcomes.get(test) == "passed"

    def not_passed(self, tests: Iterable[str]) -> list[str]:
        """The tests of ``tests`` this run gives no pass for (missing ones included), sorted."""
        return sorted(t for t in tests if not self.passed(t))

    def passing(self) -> set[str]:
        return {t for t, o in self.outcomes.items() if o == "passed"} if self.problem is None else set()

    def verdict(self, expected: list[str], clean_exit: bool | None = None) -> tuple[bool, str]:
        """Passed when the run is evidence, every expected test passed and (``clean_exit``) pytest
        exited 0; the detail says why not. ``clean_exit`` None: exit 0 is needed when the expected
        tests are all the suite ran (a suite with tests that failed before cannot exit 0)."""
        if self.problem is not None:
            return False, self.problem
        if clean_exit is None:
            clean_exit = set(self.outcomes) <= set(expected)
        missing = self.not_passed(expected)
        detail = f"exit {self.result.exit_code}"
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            return False, detail if len(expected) == 1 else f"{detail}; not passed: {shown}"
        if clean_exit and self.result.exit_code != 0:
            return False, f"{detail} after every expected test passed"
        return True, detail


def run_suite(sandbox: Sandbox, files: dict[str, str], command: str, limits: Limits,
              changed: Iterable[str] = (), strict: bool = False, worker: int = 0) -> SuiteRun:
    """Run the pytest ``command`` over ``files`` with the reporter; ``changed`` names the files the
    candidate supplied (a test whose function is defined in one of them does not pass); ``strict``
    turns on the reporter's strict checks; ``worker`` is the sandbox's worker slot (parallel runs)."""
    nonce = secrets.token_hex(16)
    # nothing of the candidate's may stand in the reporter's directory (it is on PYTHONPATH: a
    # sitecustomize.py there would run before the reporter and could read the nonce)
    tree = {**{p: t for p, t in files.items() if not p.startswith(f"{REPORT_DIR}/")}, **plugin_files(nonce)}
    script = reporting_script(command, strict)
    limits = dataclasses.replace(limits, output_bytes=max(limits.output_bytes, REPORT_BYTES))
    result = sandbox.run(["/bin/sh", "-c", script], tree, limits, collect=[REPORT], worker=worker)
    return judge(result, nonce, set(changed))


def reporting_script(command: str, strict: bool = False) -> str:
    """``command`` (a pytest command line, run in the tree's root) with the reporter loaded;
    ``strict`` turns on its strict checks (plain-value equality, framework tampering)."""
    checks = " HRMCODE_PYTEST_STRICT=1" if strict else ""
    return (f'export PYTHONPATH="$PWD/{REPORT_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"{checks} '
            f'HRMCODE_PYTEST_REPORT="$PWD/{REPORT}" PYTEST_ADDOPTS="-p {PLUGIN}"; {command}')


def judge(result: ExecResult, nonce: str, changed: set[str]) -> SuiteRun:
    """The ``SuiteRun`` of a finished run: only the nonce-tagged report counts."""
    run = SuiteRun(result)
    if result.timed_out:
        run.problem = "timed out"
        return run
    report = result.files.get(REPORT)
    if report is None:
        run.problem = f"no test report (exit {result.exit_code}): pytest did not start or the run removed it"
        return run
    records, problem = read_report(report, nonce)
    if problem is not None:
        run.problem = f"{problem} (exit {result.exit_code})"
        return run
    end = records[-1]
    if end["exitstatus"] != result.exit_code:
        run.problem = (f"exit {result.exit_code}, but pytest ended with status {end['exitstatus']}: "
                       "something after the tests changed the exit")
        return run
    run.outcomes, run.failed_subtests = outcomes(records, changed)
    return run


def plugin_files(nonce: str) -> dict[str, str]:
    """The reporter and the nonce it reads (and deletes) when pytest loads it, before any test code."""
    return {f"{REPORT_DIR}/{PLUGIN}.py": PLUGIN_SOURCE, f"{REPORT_DIR}/report.jsonl.nonce": nonce + "\n"}


def read_report(text: str, nonce: str) -> tuple[list[dict], str | None]:
    """The report's records, or why it is no evidence (foreign or torn lines, no start or end)."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return [], "the test report has a line the reporter did not write"
        if not isinstance(record, dict) or record.get("nonce") != nonce:
            return [], "the test report has a record the reporter did not write"
        records.append(record)
    kinds = [r.get("kind") for r in records]
    if kinds[:1] != ["start"] or kinds.count("start") != 1:
        return [], "the test report does not start with pytest's session"
    if kinds[-1:] != ["end"] or kinds.count("end") != 1 or not isinstance(records[-1].get("exitstatus"), int):
        return [], "the test report ends before pytest's session did"
    return records, None


def outcomes(records: list[dict], changed: set[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Per node id: ``passed`` (setup, call and teardown passed, no subtest failed, the test's code
    not from a changed file), ``failed`` or ``skipped``; and the failed subtests of each test."""
    phases: dict[str, dict[str, str]] = {}
    failed_subtests: dict[str, list[str]] = {}
    foreign: set[str] = set()
    for record in records:
        nodeid = record.get("nodeid")
        if record["kind"] == "phase":
            phases.setdefault(nodeid, {})[record["when"]] = record["outcome"]
        elif record["kind"] == "subtest" and record["outcome"] == "failed":
            failed_subtests.setdefault(nodeid, []).append(record["label"])
        elif record["kind"] == "origin" and record["file"] in changed:
            foreign.add(nodeid)
        elif record["kind"] == "tampered":  # strict: the framework changed while this test ran
            foreign.add(nodeid)
    verdicts = {}
    for nodeid, seen in phases.items():
        if "failed" in seen.values() or nodeid in failed_subtests or nodeid in foreign:
            verdicts[nodeid] = "failed"
        elif all(seen.get(when) == "passed" for when in ("setup", "call", "teardown")):
            verdicts[nodeid] = "passed"
        else:
            verdicts[nodeid] = "skipped"
    return verdicts, failed_subtests
