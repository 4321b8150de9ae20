"""A repository's test suite in any language, run in the sandbox with per-test verdicts the tested
code does not write by printing: what repository bug validation judges candidates by.

``detect_language(files)`` is the language of most of a repository's non-test code and
``suite_language(command, files)`` the route a test command takes (its runner, else that language);
``default_test_command(language, files)`` the command its tests run with when ``--test-cmd`` is
not given (None where there is no sound default: Python, whose runners and layouts vary);
``run_tests(sandbox, language, files, command, limits, changed, worker) -> SuiteRun`` runs one
command over one tree and returns ``pytest_report.SuiteRun``'s interface (``problem``,
``outcomes`` by full test name, ``passing()``, ``not_passed()``). Per language:

- python: ``pytest_report.run_suite(..., strict=True)`` (hrmcode's nonce-tagged reporter).
- go (``go test [-short] [-run RE] [-tags T] [PKG...]``): each package that has test files
  (found in the tree, ``testdata``/``vendor`` and ``_``/``.`` directories left out; a pattern with
  ``...`` takes the packages under it) is compiled to a test binary (``go test -c``), every
  ``*_test.go`` is deleted, and each binary runs in its package's directory with
  ``-test.v=test2json`` (``frameworks.parse_go``: only ^V-framed lines count, as the polyglot route
  reads them). The trusted shell brackets each binary's output with lines carrying the run's nonce
  and the binary's exit status. Names are ``<package dir>::<TestName>`` (``.`` for the root).
  A module that requires others and vendors none is built in GOPATH mode over Debian's Go library
  sources (``/usr/share/gocode``), offline. A package whose binary panicked (a framed ``--- FAIL`` line, a non-zero exit, no final
  ``PASS``/``FAIL``) is evidence for the tests it reported; its other tests did not run, so did not
  pass. A package that fails to build makes the whole run no evidence.
- rust (``cargo test [ARGS] [-- TESTARGS]``): against Debian's crate registry offline (the polyglot
  route's ``--config``), ``--no-fail-fast`` (every test binary runs), libtest's ``--format pretty``
  lines (``frameworks.parse_libtest``); each test binary's lines are named after the target cargo
  announces (``src/lib.rs::snake::tests::test1``, ``tests/api.rs::roundtrip``). The run is no
  evidence when any binary that started did not report its result, or the exit status disagrees
  with the report (a failure with exit 0, or exit non-zero with nothing failed).
- javascript (``jest [ARGS]``): jest from the shared read-only ``node_modules`` with
  ``--json --outputFile`` into a per-run directory whose name carries a nonce, copied back by the
  trusted shell after jest exits, and the polyglot route's strict guard (``jest_guard.js``);
  ``frameworks.parse_jest`` with names ``<test file>::<describe> <title>``. The run is no evidence
  when the report is missing or its ``success`` disagrees with jest's exit status.

Every route: a run that timed out, whose output was truncated or whose report is incomplete has a
``problem`` and no verdict; a test missing from the report has not passed; a test whose file is one
of the ``changed`` files (a Go package's ``*_test.go``, a Rust ``tests/*.rs`` target, a jest test
file) fails. Test binaries and report files live in a per-run directory outside the work dir whose
parent cannot be listed (``private_dir``), so finding them takes the run's nonce; Go's binaries are
made read-only once built.

Not guaranteed (as ``reports.frameworks`` says per language): the framework runs in the tested
code's process, so code written against this harness can print the framing or result lines, or
find the per-run report path, and forge outcomes in place. In Rust, unit tests live in the source
files a candidate changes: ``tests_untouched`` says whether a candidate left them as they were.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from hrmcode.data.bugs.issues import failure_excerpt as pytest_failure_excerpt
from hrmcode.data.syntax import language_of
from hrmcode.data.testfiles import is_test_path
from hrmcode.errors import InputError, ToolchainMissing, UsageError
from hrmcode.sandbox.base import ExecResult, Limits, Sandbox
from hrmcode.sandbox.hostpaths import DEBIAN_CARGO_REGISTRY
from hrmcode.sandbox.reports import frameworks, pytest_report
from hrmcode.sandbox.reports.pytest_report import SuiteRun
from hrmcode.sandbox.toolchains import DEFAULT_LIMITS, JS_HEAP_MB, ensure_go_seed, missing_toolchain

LANGUAGES = ("python", "go", "rust", "javascript")
REPORT_BYTES = 16 << 20  # output or report longer than this is cut, hence incomplete: no verdict
WORK_DIR = "/work"  # where every sandbox backend runs the tree (jest reports absolute test paths)
_GO_DIRS_LEFT_OUT = {"testdata", "vendor"}


def detect_language(files: dict[str, str]) -> str:
    """The language of most of the repository's non-test source files (by bytes, any language
    ``syntax.language_of`` knows: one without a route here, such as java, is returned too so the
    caller can say so; ties go to the first of ``LANGUAGES``), "python" when it has no source file."""
    sizes: Counter = Counter()
    for path, text in files.items():
        language = language_of(path)
        if language is not None and not is_test_path(path, language):
            sizes[language] += len(text)
    if not sizes:
        return "python"
    order = [*LANGUAGES, *sorted(set(sizes) - set(LANGUAGES))]
    return max(order, key=lambda language: (sizes[language], -order.index(language)))


def suite_language(command: str | None, files: dict[str, str]) -> str:
    """The language whose route runs ``command``: named by the command's runner (``go test``, ``cargo
    test``, ``jest``, pytest), else the repository's (``detect_language``). A Python project whose docs
    ship a large JavaScript bundle is still tested with pytest when its command says so."""
    words = command.split() if command else []
    if words[:2] == ["go", "test"]:
        return "go"
    if words[:2] == ["cargo", "test"]:
        return "rust"
    if words[:1] == ["jest"]:
        return "javascript"
    if "pytest" in (command or ""):
        return "python"
    return detect_language(files)


def default_test_command(language: str, files: dict[str, str]) -> str | None:
    """The command ``run_tests`` runs when none is given, or None (python: give ``--test-cmd``;
    javascript: only when the package's ``test`` script runs jest)."""
    if language == "go":
        return "go test ./..."
    if language == "rust":
        return "cargo test --offline"
    if language == "javascript":
        try:
            scripts = json.loads(files.get("package.json", "{}")).get("scripts") or {}
        except (json.JSONDecodeError, AttributeError):
            return None
        test = scripts.get("test") if isinstance(scripts, dict) else None
        if isinstance(test, str) and re.match(r"^\s*jest(\s|$)", test) and not re.search(r"[;&|<>`$]", test):
            return test.strip()
        return None
    return None


def tests_untouched(language: str, before: str, after: str) -> bool:
    """Whether a candidate's version of a source file keeps the unit tests that live inside it
    (Rust's ``#[cfg(test)]`` items) exactly as they were; other languages keep tests in files of
    their own, which candidates never change."""
    if language != "rust" or before == after:
        return True
    spans = _rust_test_spans(before)
    if not spans:
        return not _rust_test_spans(after)
    prefix = _common_prefix(before, after)
    suffix = _common_prefix(before[prefix:][::-1], after[prefix:][::-1])
    first, last = prefix, len(before) - suffix  # the region of ``before`` the edit replaced
    # touching a test item, or an edit that could merge into one: compare the items themselves
    if any(start <= last and first <= end for start, end in spans):
        return [before[a:b] for a, b in spans] == [after[a:b] for a, b in _rust_test_spans(after)]
    return True


def holds_tests_of(language: str, path: str, run: SuiteRun) -> bool:
    """Whether ``path`` is a file the run's tests are named after (a pytest or jest test file, a Rust
    integration-test target): a candidate that changed it changed the tests that judge it. Go's
    names carry packages, never files; Rust's unit tests are named after the crate root, not the file
    holding them (``tests_untouched`` checks those)."""
    if language == "go" or (language == "rust" and not re.fullmatch(r"tests/[^/]+\.rs", path)):
        return False
    return any(test.split("::", 1)[0] == path for test in run.outcomes)


def _common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix (binary search over C-speed slice comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@functools.lru_cache(maxsize=64)
def _rust_test_spans(source: str) -> tuple[tuple[int, int], ...]:
    """The span of each item marked ``#[cfg(test)]`` (the attribute through its closing brace or
    semicolon), brace-matched outside strings, chars and comments."""
    spans = []
    string = re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL)
    for match in re.finditer(r"#\[cfg\(test\)\]", source):
        depth, index, end = 0, match.end(), len(source)
        while index < end:
            char = source[index]
            if source.startswith("//", index):
                newline = source.find("\n", index)
                index = end if newline < 0 else newline
                continue
            if source.startswith("/*", index):
                close = source.find("*/", index + 2)
                index = end if close < 0 else close + 2
                continue
            if char == '"':
                quoted = string.match(source, index)
                index = quoted.end() if quoted else end
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    index += 1
                    break
            elif char == ";" and depth == 0:
                index += 1
                break
            index += 1
        spans.append((match.start(), index))
    return tuple(spans)


def failure_excerpt(language: str, run: SuiteRun, test: str) -> str:
    """What the run printed about ``test``'s failure, bounded (for the issue text), else ""."""
    output = run.result.stdout + run.result.stderr
    if language == "python":
        return pytest_failure_excerpt(run.result.stdout, test)
    name = test.split("::", 1)[-1]  # without the package, target or test file
    lines: list[str] = []
    if language == "go":  # what the test printed (t.Error streams before its FAIL line), its FAIL line, got/want
        raw = [line.removeprefix("\x16") for line in output.splitlines()]
        fail = next((i for i, line in enumerate(raw) if re.match(rf"\s*--- FAIL: {re.escape(name)} ", line)), None)
        if fail is not None:
            start = max((i for i in range(fail) if re.match(rf"=== (RUN|CONT|NAME)\s+{re.escape(name)}$", raw[i])),
                        default=fail)
            lines = [line for line in raw[start + 1:fail + 1] if not line.startswith("=== ")]
            for line in raw[fail + 1:]:
                if re.match(r"(===|\s*---) |(PASS|FAIL)$", line):
                    break
                lines.append(line)
    elif language == "rust":
        text = output.split(f"---- {name} stdout ----\n", 1)
        if len(text) == 2:
            lines = re.split(r"\n(?:----|failures:|\s*$)", text[1], maxsplit=1)[0].splitlines()
    elif language == "javascript":  # the failure messages jest's report holds for the test
        reports = [text for path, text in run.result.files.items() if path.startswith(".hrmcode-report-")]
        try:
            suites = json.loads(reports[0])["testResults"] if reports else []
            for suite in suites:
                for case in suite.get("assertionResults") or []:
                    if f"{suite.get('name', '')}::{case.get('fullName')}".removeprefix(f"{WORK_DIR}/") == test:
                        messages = "\n".join(str(m) for m in case.get("failureMessages") or []).splitlines()
                        lines = [m for m in messages if not re.match(r"\s+at .*(/node_modules/|<anonymous>)", m)]
        except (json.JSONDecodeError, TypeError, AttributeError, KeyError):
            lines = []
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[:30])[:2000]  # the first lines: the assertion, not the end of a stack trace


# -- running -----------------------------------------------------------------------------------

def run_tests(sandbox: Sandbox, language: str, files: dict[str, str], command: str, limits: Limits,
              changed: Iterable[str] = (), worker: int = 0) -> SuiteRun:
    """Run ``command`` over the tree ``files`` and read its per-test verdicts (module docstring);
    ``changed``: the files the candidate supplied (python: a test defined in one does not pass)."""
    if language == "python":
        return pytest_report.run_suite(sandbox, files, command, limits, changed=changed, strict=True, worker=worker)
    if language not in LANGUAGES:
        raise UsageError(f"no test route for {language} repositories", f"hrmcode runs {', '.join(LANGUAGES)} suites")
    if getattr(sandbox, "name", "") == "local":
        missing = missing_toolchain(language)
        if missing is not None:
            raise ToolchainMissing(*missing)
    floor = DEFAULT_LIMITS[language]
    limits = dataclasses.replace(limits, memory_mb=max(limits.memory_mb, floor.memory_mb),
                                 processes=max(limits.processes, floor.processes),
                                 output_bytes=max(limits.output_bytes, REPORT_BYTES))
    nonce = secrets.token_hex(16)
    if language == "go":
        ensure_go_seed(sandbox, worker)
        script, packages = _go_script(command, files, nonce)
        result = sandbox.run(["/bin/sh", "-c", f"{{ {script} ; }} 2>&1"], files, limits, worker=worker)
        changed_packages = {str(PurePosixPath(p).parent) for p in changed if p.endswith("_test.go")}
        return _foreign_tests_fail(_go_run(result, nonce, packages), changed_packages)
    if language == "rust":
        result = sandbox.run(["/bin/sh", "-c", f"{{ {_rust_script(command)} ; }} 2>&1"], files, limits, worker=worker)
        # unit tests inside a changed src file: the caller's ``tests_untouched``
        return _foreign_tests_fail(_rust_run(result), {p for p in changed if re.fullmatch(r"tests/[^/]+\.rs", p)})
    hidden, collected = private_dir(nonce), f".hrmcode-report-{nonce}"
    tree = {**files, frameworks.JEST_GUARD: frameworks.JEST_GUARD_SOURCE}
    script = (f'{make_private_dir(hidden)} && {{ {_jest_script(command, hidden)} ; }} 2>&1; s=$?; '
              f'rm -rf "$PWD/{collected}"; '
              f'cp {hidden}/jest.json "$PWD/{collected}" 2>/dev/null; exit $s')
    result = sandbox.run(["/bin/sh", "-c", script], tree, limits, worker=worker, collect=[collected])
    return _foreign_tests_fail(_jest_run(result, result.files.get(collected)), set(changed))


def _foreign_tests_fail(run: SuiteRun, owners: set[str]) -> SuiteRun:
    """A test whose name starts with one of ``owners`` (a changed test file, a package or target
    holding one) fails: its code is the candidate's, not the repository's."""
    for name in run.outcomes:
        if name.split("::", 1)[0] in owners:
            run.outcomes[name] = "failed"
    return run


def private_dir(nonce: str) -> str:
    """A per-run directory for reports and test binaries, outside the work dir, under a parent that
    cannot be listed: finding it takes the nonce (``make_private_dir`` is its shell)."""
    return f"/tmp/.hrmcode-{nonce[:16]}/{nonce[16:]}"


def make_private_dir(path: str) -> str:
    parent = path.rsplit("/", 1)[0]
    return f"mkdir -m 700 {parent} {path} && chmod 311 {parent}"


def _words(command: str, program: list[str], what: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot read the test command {command!r}: {exc}", f"give a {what} command") from None
    if words[:len(program)] != program:
        raise UsageError(f"a {what} repository's test command must start with `{' '.join(program)}`: {command!r}",
                         f"e.g. --test-cmd '{' '.join(program)}'")
    return words[len(program):]


# -- go --------------------------------------------------------------------------------------------

_GO_BEGIN = "\x16hrmcode-go-begin"
_GO_END = "\x16hrmcode-go-end"


def go_packages(files: dict[str, str], patterns: list[str]) -> list[str]:
    """The package directories (relative, ``.`` for the root) with test files that ``patterns``
    (``./...``, ``./x``, ``./x/...``, ``.``) name, sorted."""
    dirs = set()
    for path in files:
        parts = PurePosixPath(path).parts
        if path.endswith("_test.go") and not any(p in _GO_DIRS_LEFT_OUT or p[0] in "._" for p in parts[:-1]):
            dirs.add("/".join(parts[:-1]) or ".")
    chosen = set()
    for pattern in patterns or ["."]:
        clean = pattern.removeprefix("./").rstrip("/") or "."
        if clean == "...":
            chosen |= dirs
        elif clean.endswith("/..."):
            base = clean[:-4]
            chosen |= {d for d in dirs if d == base or d.startswith(base + "/")}
        elif clean in dirs:
            chosen.add(clean)
    return sorted(chosen)


def _go_script(command: str, files: dict[str, str], nonce: str) -> tuple[str, list[str]]:
    """The script that builds every package's test binary, deletes the test sources and runs each
    binary bracketed by nonce lines carrying its exit status; and the packages, in binary order."""
    words = _words(command, ["go", "test"], "Go")
    build, run, patterns = [], ["-test.v=test2json", "-test.count=1", "-test.paniconexit0"], []
    index = 0
    while index < len(words):
        word = words[index]
        flag, has_value, value = word.partition("=")
        if flag in ("-run", "-tags", "-timeout", "-count") and not has_value:
            index += 1
            value = words[index] if index < len(words) else ""
        if flag == "-tags":
            build.append(f"-tags={value}")
        elif flag == "-run":
            run.append(f"-test.run={value}")
        elif flag == "-short":
            run.append("-test.short")
        elif flag in ("-v", "-count", "-timeout"):
            pass  # framing and a fresh count are always on; the sandbox's limit is the timeout
        elif word.startswith("-"):
            raise UsageError(f"the Go test command's flag {word} is not supported",
                             "use go test [-short] [-run RE] [-tags T] [./PACKAGE ...]")
        elif not word.startswith("."):
            raise UsageError(f"Go packages must be named relative to the repository: {word!r}",
                             "e.g. go test ./... or go test ./pkg/...")
        else:
            patterns.append(word)
        index += 1
    packages = go_packages(files, patterns)
    if not packages:
        raise UsageError(f"`{command}` names no Go package with test files", "check the packages of --test-cmd")
    binary = private_dir(nonce)
    steps = [make_private_dir(binary), *_go_debian_gopath(files)]
    for i, package in enumerate(packages):
        flags = " ".join(shlex.quote(b) for b in build)
        steps.append(f"go test -c -vet=off -o {binary}/{i}.test {flags} ./{shlex.quote(package)}")
    # built: the expected answers leave the tree, and the binaries can no longer be replaced by name
    steps += ["find . -name '*_test.go' -type f -delete", f"chmod 500 {binary}"]
    runs = []
    for i, package in enumerate(packages):
        # the status comes from this shell; a package whose test files are all constrained out has no binary
        runs.append(f"printf '\\n{_GO_BEGIN} {nonce} {i}\\n'; "
                    f"if [ -x {binary}/{i}.test ]; then (cd ./{shlex.quote(package)} && exec {binary}/{i}.test "
                    f"{' '.join(shlex.quote(r) for r in run)} </dev/null); s=$?; else s=none; fi; "
                    f"printf '\\n{_GO_END} {nonce} {i} %s\\n' \"$s\"; case $s in 0|none) ;; *) rc=1 ;; esac")
    # exit 1 when any binary failed, as go test does
    return " && ".join(steps) + " && { rc=0; " + "; ".join(runs) + "; exit $rc; }", packages


def _go_debian_gopath(files: dict[str, str]) -> list[str]:
    """For a module that requires others and vendors none: build in GOPATH mode with Debian's Go
    library sources (``/usr/share/gocode``, offline) after the repository, which is linked in at its
    module path. Otherwise nothing (module mode; ``GOPROXY=off``, a ``vendor/`` directory is used)."""
    module = re.search(r"^module\s+(\S+)", files.get("go.mod", ""), re.MULTILINE)
    requires = re.search(r"^require\b", files.get("go.mod", ""), re.MULTILINE)
    if module is None or requires is None or "vendor/modules.txt" in files:
        return []
    path = module.group(1).strip('"')
    gopath = "/tmp/.hrmcode-gopath"
    link = shlex.quote(f"{gopath}/src/{path}")
    return [f"mkdir -p {shlex.quote(str(PurePosixPath(gopath, 'src', path).parent))}", f'ln -s "$PWD" {link}',
            f"cd {link}", f"export GO111MODULE=off GOPATH={gopath}:{PurePosixPath(DEBIAN_GOCODE).parent}"]


def _go_run(result: ExecResult, nonce: str, packages: list[str]) -> SuiteRun:
    run = SuiteRun(result)
    if result.timed_out:
        run.problem = "timed out"
        return run
    if result.stdout_truncated:
        run.problem = "the test output was truncated"
        return run
    output = result.stdout
    for i, package in enumerate(packages):
        begin = re.search(rf"^{_GO_BEGIN} {nonce} {i}$", output, re.MULTILINE)
        end = re.search(rf"^{_GO_END} {nonce} {i} (\S+)$", output[begin.end():], re.MULTILINE) if begin else None
        if begin is None:
            run.problem = f"package {package}: its test binary never ran (exit {result.exit_code}): the build failed"
            return run
        if end is None:
            run.problem = f"package {package}: its test binary's output has no end line: the run was stopped"
            return run
        status = end.group(1)
        if status == "none":
            continue  # no test binary for this platform
        segment = output[begin.end():begin.end() + end.start()]
        report = frameworks.parse_go(segment, False)
        if report.problem is not None:
            if status == "0" or not re.search(r"^\x16\s*--- FAIL: ", segment, re.MULTILINE):
                run.problem = f"package {package}: {report.problem} (exit {status})"
                return run
            # a panic: the testing package framed the test's failure, then the binary died; the
            # tests after it never ran (missing, so not passed)
            report = frameworks.parse_go(segment + "\n\x16FAIL\n", False)
        if bool(report.failed()) == (status == "0"):
            run.problem = (f"package {package}: the test binary exited {status} but its report says "
                           f"{'FAIL' if report.failed() else 'PASS'}")
            return run
        for name, outcome in report.tests:
            run.outcomes[f"{package}::{name}"] = outcome
    return run


# -- rust ------------------------------------------------------------------------------------------

# cargo's announcement of each test binary (its own stderr, printed before the binary starts)
_CARGO_TARGET = re.compile(r"^\s+(?:Running (?:unittests )?(\S+)(?: \(.*\))?|Doc-tests (\S+))$", re.MULTILINE)


def _rust_script(command: str) -> str:
    words = _words(command, ["cargo", "test"], "Rust")
    cut = words.index("--") if "--" in words else len(words)
    cargo, libtest = words[:cut], words[cut + 1:]
    if any(w in ("--format", "-q", "--quiet") or w.startswith(("--format=", "-Z")) for w in [*cargo, *libtest]):
        raise UsageError(f"the Rust test command may not choose libtest's output format: {command!r}",
                         "leave out --format and --quiet")
    registry = DEBIAN_CARGO_REGISTRY
    config = ["--config", 'source.crates-io.replace-with="debian"', "--config", f'source.debian.directory="{registry}"',
              "--config", "net.offline=true"]
    argv = ["cargo", "test", "--no-fail-fast", *config, *cargo, "--", *libtest, "--format", "pretty"]
    return " ".join(shlex.quote(w) for w in argv)


def _rust_run(result: ExecResult) -> SuiteRun:
    run = SuiteRun(result)
    if result.timed_out:
        run.problem = "timed out"
        return run
    output = result.stdout
    whole = frameworks.parse_libtest(output, result.stdout_truncated)
    if whole.problem is not None:
        run.problem = f"{whole.problem} (exit {result.exit_code})"
        return run
    targets = list(_CARGO_TARGET.finditer(output))
    for i, target in enumerate(targets):
        segment = output[target.end():targets[i + 1].start() if i + 1 < len(targets) else len(output)]
        label = target.group(1) or f"doctests {target.group(2)}"
        report = frameworks.parse_libtest(segment, False)
        if report.problem is not None:
            if target.group(2) and "never started" in report.problem:
                continue  # a library without doc tests
            run.problem = f"{label}: {report.problem} (exit {result.exit_code})"
            return run
        for name, outcome in report.tests:
            run.outcomes[f"{label}::{name}"] = outcome
    if not targets:
        run.problem = "cargo announced no test binary"
    elif ("failed" in run.outcomes.values()) == (result.exit_code == 0):
        run.problem = f"cargo exited {result.exit_code} but the tests' report says the opposite"
    return run


# -- javascript ------------------------------------------------------------------------------------

def _jest_script(command: str, hidden: str) -> str:
    words = _words(command, ["jest"], "JavaScript")
    if any(w.startswith(("--json", "--outputFile", "--setupFilesAfterEnv", "--watch")) for w in words):
        raise UsageError(f"the jest command may not set its own report or watch mode: {command!r}",
                         "leave out --json, --outputFile, --setupFilesAfterEnv and --watch")
    # -i: one process (the sandbox's CPU budget is per run); --ci: no snapshot is written
    argv = ["jest", "--ci", "-i", "--colors=false", *words, "--setupFilesAfterEnv",
            f"{WORK_DIR}/{frameworks.JEST_GUARD}", "--json", f"--outputFile={hidden}/jest.json"]
    return f"NODE_OPTIONS=--max-old-space-size={JS_HEAP_MB} " + " ".join(shlex.quote(w) for w in argv)


def _jest_run(result: ExecResult, report_text: str | None) -> SuiteRun:
    run = SuiteRun(result)
    if result.timed_out:
        report = frameworks.Report(problem="timed out")
    else:
        report = frameworks.parse_jest(report_text, qualified=True)
    if report.problem is not None:
        run.problem = f"{report.problem} (exit {result.exit_code})"
        return run
    failed = bool(report.failed())
    if failed == (result.exit_code == 0):
        run.problem = f"jest exited {result.exit_code} but its report says {'failed' if failed else 'passed'}"
        return run
    for name, outcome in report.tests:
        name = name.removeprefix(f"{WORK_DIR}/")
        # one name twice (two tests with one title): either failing fails
        run.outcomes[name] = "failed" if run.outcomes.get(name) == "failed" else outcome
    return run


# -- offline sources -------------------------------------------------------------------------------

SOURCE_KINDS = ("debian-go", "debian-rust", "npm")
DEBIAN_GOCODE = "/usr/share/gocode/src"
_COMMIT_ENV = {"GIT_AUTHOR_NAME": "hrmcode", "GIT_AUTHOR_EMAIL": "hrmcode@localhost",
               "GIT_COMMITTER_NAME": "hrmcode", "GIT_COMMITTER_EMAIL": "hrmcode@localhost",
               "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}


def source_repository(spec: str, dest: Path | str) -> Path:
    """A git repository at ``dest/<name>`` (one commit, fixed author and date, so its commit and the
    task ids made from it are the same on every machine) holding an offline library source:

    - ``debian-go:IMPORT/PATH``: Debian's ``golang-*-dev`` source under ``/usr/share/gocode/src``
      (a ``go.mod`` naming the import path is added when the source has none);
    - ``debian-rust:CRATE-VERSION``: Debian's ``librust-*-dev`` crate under ``/usr/share/cargo/registry``;
    - ``npm:NAME@VERSION``: the package tarball ``npm pack`` fetches (its ``package/`` folder).
    """
    kind, _, name = spec.partition(":")
    if kind not in SOURCE_KINDS or not name:
        kinds = ", ".join(k + ":NAME" for k in SOURCE_KINDS)
        raise UsageError(f"unknown offline source {spec!r}", f"use one of {kinds}")
    target = Path(dest) / re.sub(r"[^A-Za-z0-9_.-]", "_", name.rsplit("/", 1)[-1].replace("@", "-"))
    if target.exists():
        raise UsageError(f"{target} already exists", "give an empty destination")
    if kind == "debian-go":
        origin = Path(DEBIAN_GOCODE) / name
        package = "golang-" + "-".join(re.sub(r"^github\.com/", "github-", name).replace("/", "-").split("-")) + "-dev"
        _copy_source(origin, target, f"apt-get install {package} (Debian's Go library sources)")
        if not (target / "go.mod").exists():
            (target / "go.mod").write_text(f"module {name}\n\ngo 1.21\n", encoding="utf-8")
    elif kind == "debian-rust":
        crate = re.sub(r"-\d.*$", "", name)
        _copy_source(Path(DEBIAN_CARGO_REGISTRY) / name, target, f"apt-get install librust-{crate}-dev")
    else:
        with tempfile.TemporaryDirectory() as packed:
            proc = subprocess.run(["npm", "pack", "--silent", name, "--pack-destination", packed],
                                  capture_output=True, text=True, timeout=300)
            tarballs = list(Path(packed).glob("*.tgz"))
            if proc.returncode != 0 or len(tarballs) != 1:
                raise InputError(f"npm pack {name} failed: {(proc.stderr or proc.stdout).strip()[-300:]}",
                                 "check the package name and version, and that the npm registry is reachable")
            with tarfile.open(tarballs[0]) as tar:
                tar.extractall(packed, filter="data")
            shutil.copytree(Path(packed) / "package", target)
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", f"{spec} as shipped"]):
        subprocess.run(argv, cwd=target, check=True, capture_output=True, env={**os.environ, **_COMMIT_ENV})
    return target


def _copy_source(origin: Path, target: Path, install: str) -> None:
    if not origin.is_dir():
        raise InputError(f"{origin} is not installed", install)
    shutil.copytree(origin, target, symlinks=False)
