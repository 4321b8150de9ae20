"""Per-test reports of go test, libtest, the JUnit console launcher, jest and Catch2, read outside the
sandbox and counted against the pristine test list.

``parse(language, result, report_text) -> Report`` turns one framework's structured output into
``(name, outcome)`` pairs (``passed`` | ``failed`` | ``skipped``), or a ``problem`` saying why it is
no evidence (missing, truncated, unparsable, ended before the framework did). ``count(expected,
report, exit_code) -> reason | None`` is the strict verdict: None only when the report is
complete, nothing in it failed, every expected test (``expected.expected_tests``, a multiset) has
a pass of its own, and the process exited 0. Python goes through ``pytest_report`` (hrmcode's
own nonce-tagged reporter) and is counted here the same way.

Where each report comes from (all written by the framework inside the tested code's process):

- Go: the test binary (``go test -c``, test sources deleted after the build) run with
  ``-test.v=test2json``: only framing lines carrying the ``testing`` package's ^V marker count,
  and its final ``PASS`` line is required (printed ``--- PASS`` lines are just output).
- Rust: libtest's ``test NAME ... ok`` lines and each binary's ``test result:`` line on stdout.
- Java: the console launcher's XML report, written to a per-run directory whose name carries a nonce.
- JavaScript: ``jest --json --outputFile`` into a per-run directory whose name carries a nonce;
  ``success``, ``numFailedTests`` and each ``assertionResults`` status. ``jest_guard.js`` runs
  before the test file: jest's globals and matchers pinned, the built-ins watched after each test.
- C++: Catch2's XML reporter into a per-run directory whose name carries a nonce; each
  ``TestCase``'s ``OverallResult`` and the closing ``OverallResults``. Before the build,
  ``catch_macros.awk`` refuses a solution header that defines or undefines Catch2's macros.

What this does not guarantee: the framework runs in the tested code's process (no language here
lets the tests run elsewhere), so code written against this harness can still forge a report in
place: print the ^V-marked framing (Go) or libtest's result lines (Rust) for every test name and
exit 0 before the real tests run; find the per-run report path in its own process (Java's
``sun.java.command``, jest's argv, Catch2's argv) and write a report there; patch the framework's
assertions or reporter in memory. Such code must know the test names, which it can read from the
test files in its working directory or its own binary. A report only says what the framework saw.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hrmcode.sandbox.base import ExecResult

# jest's strict-mode guard (pins jest's globals and matchers, watches the built-ins), loaded with
# --setupFilesAfterEnv before any test file.
JEST_GUARD = ".hrmcode-jest-guard.js"
JEST_GUARD_SOURCE = (Path(__file__).parent / "jest_guard.js").read_text(encoding="utf-8")
# The C++ route's check that the solution's headers leave Catch2's macros alone (run on g++ -E -dD).
CATCH_MACROS = ".hrmcode-catch-macros.awk"
CATCH_MACROS_SOURCE = (Path(__file__).parent / "catch_macros.awk").read_text(encoding="utf-8")


@dataclass
class Report:
    """What one framework reported: (test name, outcome) pairs, or why it is no evidence."""

    tests: list[tuple[str, str]] = field(default_factory=list)
    problem: str | None = None

    def failed(self) -> list[str]:
        return [name for name, outcome in self.tests if outcome == "failed"]


def count(expected: list[str], report: Report, exit_code: int | None) -> str | None:
    """None when the run is a strict pass; otherwise the one-line reason it is not."""
    if report.problem is not None:
        return report.problem
    failed = report.failed()
    if failed:
        return f"{len(failed)} test(s) failed: {', '.join(failed[:5])}"
    passes = Counter(name for name, outcome in report.tests if outcome == "passed")
    missing = list((Counter(expected) - passes).elements())
    if missing:
        return (f"{len(missing)} of {len(expected)} expected test(s) not reported passed "
                f"(skipped or never run): {', '.join(missing[:5])}")
    if exit_code != 0:
        return f"every expected test passed, but the run exited {exit_code}"
    return None


# -- go: the test binary's test2json framing ---------------------------------------------------

_GO_FRAME = "\x16"  # the testing package's framing marker in -test.v=test2json mode
_GO_RESULT = re.compile(r"\s*--- (PASS|FAIL|SKIP): (\S+)")


def parse_go(output: str, truncated: bool) -> Report:
    """The framing lines (^V-prefixed) of a test binary run with ``-test.v=test2json``: each
    ``--- PASS|FAIL|SKIP: name`` and the final ``PASS``/``FAIL``. Lines without the marker are the
    program's output, whatever they say."""
    if truncated:
        return Report(problem="the test output was truncated")
    outcome: dict[str, str] = {}
    end = None
    for line in output.splitlines():
        if not line.startswith(_GO_FRAME):
            continue
        frame = line[len(_GO_FRAME):]
        result = _GO_RESULT.match(frame)
        if result:
            outcome[result.group(2)] = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[result.group(1)]
        elif frame.strip() in ("PASS", "FAIL"):
            end = frame.strip()
    if end is None:
        return Report(problem="the Go test binary ended before the testing package reported its result "
                              "(build failure, panic, exit or kill)")
    tests = [(name, result) for name, result in outcome.items() if "/" not in name or result == "failed"]
    if end != "PASS" and not any(result == "failed" for _, result in tests):
        tests.append(("(go test: FAIL)", "failed"))
    return Report(tests)


def go_feedback(output: str) -> str:
    """What ``go test`` prints without ``-v``: the marker removed, the framing of running and passing tests left out."""
    lines = []
    for line in output.splitlines(keepends=True):
        frame = line[len(_GO_FRAME):] if line.startswith(_GO_FRAME) else None
        if frame is not None and re.match(r"\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)", frame):
            continue
        lines.append(frame if frame is not None else line)
    return "".join(lines)


# -- rust: libtest's lines ---------------------------------------------------------------------

_LIBTEST_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored(?:, .*)?)$", re.MULTILINE)
_LIBTEST_RESULT = re.compile(r"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored", re.MULTILINE)
_LIBTEST_RUNNING = re.compile(r"^running (\d+) tests?$", re.MULTILINE)


def parse_libtest(output: str, truncated: bool) -> Report:
    """Each ``test NAME ... ok|FAILED|ignored`` line; every ``running N tests`` must be closed by
    a ``test result:`` line (a binary stopped mid-run leaves one open)."""
    if truncated:
        return Report(problem="the test output was truncated")
    runs, results = _LIBTEST_RUNNING.findall(output), _LIBTEST_RESULT.findall(output)
    if not runs:
        return Report(problem="libtest never started (the build failed)")
    if len(results) != len(runs):
        return Report(problem=f"{len(runs)} test binaries started but {len(results)} reported a result: one was stopped")
    tests = [(name, "passed" if status == "ok" else "failed" if status == "FAILED" else "skipped")
             for name, status in _LIBTEST_LINE.findall(output)]
    if any(status == "FAILED" for status, *_ in results) and not any(o == "failed" for _, o in tests):
        tests.append(("(test result: FAILED)", "failed"))
    return Report(tests)


# -- java: the console launcher's XML ------------------------------------------------------------

def _xml(text: str | None, what: str) -> tuple[ElementTree.Element | None, str | None]:
    if text is None:
        return None, f"no {what} report (the run stopped before the framework wrote it)"
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return None, f"the {what} report declares entities: not written by the framework"
    try:
        return ElementTree.fromstring(text), None
    except ElementTree.ParseError as exc:
        return None, f"the {what} report is not well-formed XML ({exc}): truncated or not the framework's"


def parse_junit_xml(text: str | None) -> Report:
    """``testcase`` elements: ``classname.name`` (the launcher writes ``name`` as ``method()``)."""
    root, problem = _xml(text, "JUnit XML")
    if root is None:
        return Report(problem=problem)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if not suites:
        return Report(problem="the JUnit XML report has no testsuite")
    tests = []
    for suite in suites:
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '')}.{re.sub(r'[(].*$', '', case.get('name', ''))}"
            if case.find("failure") is not None or case.find("error") is not None:
                tests.append((name, "failed"))
            elif case.find("skipped") is not None:
                tests.append((name, "skipped"))
            else:
                tests.append((name, "passed"))
        if int(suite.get("failures", "0") or 0) + int(suite.get("errors", "0") or 0) and not any(o == "failed" for _, o in tests):
            tests.append(("(testsuite failures)", "failed"))
    return Report(tests)


# -- javascript: jest --json ----------------------------------------------------------------------

def parse_jest(text: str | None, qualified: bool = False) -> Report:
    """Each test's title; ``qualified``: ``<test file>::<describe blocks> <title>`` (jest's ``fullName``)."""
    if text is None:
        return Report(problem="no jest JSON report (jest did not finish: the run stopped first)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Report(problem="the jest JSON report is not JSON: truncated or not jest's")
    if not isinstance(data, dict) or not isinstance(data.get("testResults"), list):
        return Report(problem="the jest JSON report has no testResults")
    tests = []
    for suite in data["testResults"]:
        if not isinstance(suite, dict):
            return Report(problem="the jest JSON report has a malformed test suite")
        if suite.get("status") == "failed" and not suite.get("assertionResults"):
            tests.append((f"(suite {suite.get('name', '?')}: {str(suite.get('message', ''))[:200]})", "failed"))
        for case in suite.get("assertionResults") or []:
            status = case.get("status") if isinstance(case, dict) else None
            title = str(case.get("title", "")) if isinstance(case, dict) else ""
            if qualified and isinstance(case, dict):
                title = f"{suite.get('name', '')}::{case.get('fullName', title)}"
            tests.append((title, {"passed": "passed", "failed": "failed"}.get(status, "skipped")))
    if (data.get("numFailedTests") or data.get("numFailedTestSuites") or data.get("numRuntimeErrorTestSuites")) \
            and not any(o == "failed" for _, o in tests):
        tests.append(("(jest: failed suites)", "failed"))
    return Report(tests)


# -- cpp: Catch2's XML reporter -------------------------------------------------------------------

def parse_catch_xml(text: str | None) -> Report:
    """Each ``TestCase``'s ``OverallResult``; the closing ``OverallResults`` must be there."""
    root, problem = _xml(text, "Catch2 XML")
    if root is None:
        return Report(problem=problem)
    group = root.find("Group")
    if root.tag != "Catch" or group is None or group.find("OverallResults") is None:
        return Report(problem="the Catch2 XML report ends before the test run did")
    tests = []
    for case in group.findall("TestCase"):
        result = case.find("OverallResult")
        ok = result is not None and result.get("success") == "true"
        tests.append((case.get("name", ""), "passed" if ok else "failed"))
    return Report(tests)


def catch_feedback(text: str | None) -> str:
    """The failed assertions of a Catch2 XML report, one block per failed test case."""
    root, _ = _xml(text, "Catch2 XML")
    if root is None:
        return ""
    out = []
    for case in root.iter("TestCase"):
        result = case.find("OverallResult")
        if result is not None and result.get("success") == "true":
            continue
        out.append(f"FAILED: {case.get('name', '')}\n")
        for expr in case.iter("Expression"):
            if expr.get("success") == "false":
                original = (expr.findtext("Original") or "").strip()
                expanded = (expr.findtext("Expanded") or "").strip()
                out.append(f"  {expr.get('filename', '')}:{expr.get('line', '')}: REQUIRE( {original} ) with expansion: {expanded}\n")
        for exc in case.iter("Exception"):
            out.append(f"  due to unexpected exception: {(exc.text or '').strip()}\n")
        for fatal in case.iter("FatalErrorCondition"):
            out.append(f"  fatal error condition: {(fatal.text or '').strip()}\n")
    return "".join(out)


def feedback(language: str, result: ExecResult, report_text: str | None) -> str:
    """What the run printed as a person reads it: the structured report turned back into the
    framework's usual text where the report replaced it (Go's events, Catch2's XML), and
    libtest's per-test ``ok`` lines left out."""
    if language == "go":
        return go_feedback(result.stdout) + result.stderr
    if language == "rust":
        return re.sub(r"(?m)^test \S+ \.\.\. ok\n", "", result.stdout) + result.stderr
    if language == "cpp":
        return result.stdout + result.stderr + catch_feedback(report_text)
    return result.stdout + result.stderr


def parse(language: str, result: ExecResult, report_text: str | None) -> Report:
    """The report of a finished run in ``language`` (not python: see ``pytest_report``)."""
    if result.timed_out:
        return Report(problem="timed out")
    if language == "go":
        return parse_go(result.stdout, result.stdout_truncated)
    if language == "rust":
        return parse_libtest(result.stdout, result.stdout_truncated)
    if language == "java":
        return parse_junit_xml(report_text)
    if language == "javascript":
        return parse_jest(report_text)
    if language == "cpp":
        return parse_catch_xml(report_text)
    raise ValueError(f"no report parser for {language}")
