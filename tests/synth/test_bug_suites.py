"""Repository bug validation beyond Python (``hrmcode.data.bugs.suites``): Go, Rust and jest suites run
in the real sandbox with per-test verdicts.

Each language has a tiny repository under ``fixtures/`` (``gocalc`` with two packages, ``rustcalc``
with unit and integration tests, ``jscalc`` with jest tests) and one planted bug (``sign(0)`` is 1):
the reference run passes every test, the bugged run's FAIL_TO_PASS is exactly the sign test. The
hostile corpus (``fixtures/hostile/bug_*``: bugged source files that print the framework's plain
result lines, write a fake report, exit 0 early, abort, or never return) must never make the sign
test pass. Tests whose toolchain is missing skip with the reason (CI installs them all).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hrmcode.data.bugs import judge_candidate, repo_tasks, suites
from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.sandbox.base import ExecResult, Limits
from hrmcode.sandbox.toolchains import missing_toolchain
from tests._sandboxes import real_sandbox
from tests.synth.conftest import commit_tree

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile"
LIMITS = Limits(timeout_s=60, memory_mb=4096)
# fixture, the test the planted bug breaks, the bugged file, the bug (old -> new)
ROUTES = {
    "go": ("gocalc", ".::TestSign", "calc.go", "if x == 0 {", "if x == 1 {"),
    "rust": ("rustcalc", "src/lib.rs::tests::signs", "src/lib.rs", "} else if x == 0 {", "} else if x == 1 {"),
    "javascript": ("jscalc", "src/calc.test.js::sign is -1, 0 or 1", "src/calc.js", "if (x === 0) {", "if (x === 1) {"),
}
PASSING = {
    "go": {".::TestAdd", ".::TestSign", ".::TestSum", "strutil::TestShout", "strutil::TestFirst"},
    "rust": {"src/lib.rs::tests::adds", "src/lib.rs::tests::signs", "tests/api.rs::adds", "tests/api.rs::sums"},
    "javascript": {"src/calc.test.js::add adds two numbers", "src/calc.test.js::sign is -1, 0 or 1",
                   "src/calc.test.js::sum adds up a list"},
}
EXTENSIONS = {".go": "go", ".rs": "rust", ".js": "javascript"}


def fixture_files(name: str) -> dict[str, str]:
    root = FIXTURES / name
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sandbox():
    return real_sandbox("local")


def toolchain(language: str) -> None:
    missing = missing_toolchain(language)
    if missing is not None:
        pytest.skip(f"{missing[0]} ({missing[1]})")


@pytest.fixture(scope="module")
def references(sandbox) -> dict:
    """Each language's reference run, made once."""
    return {}


def reference(language: str, sandbox, references: dict):
    toolchain(language)
    if language not in references:
        files = fixture_files(ROUTES[language][0])
        references[language] = suites.run_tests(sandbox, language, files, suites.default_test_command(language, files), LIMITS)
    return references[language]


# -- without the sandbox ------------------------------------------------------------------------------

def test_language_and_default_command_come_from_the_repository():
    for language, (name, *_rest) in ROUTES.items():
        files = fixture_files(name)
        assert suites.detect_language(files) == language
    assert suites.default_test_command("go", {}) == "go test ./..."
    assert suites.default_test_command("rust", {}) == "cargo test --offline"
    assert suites.default_test_command("javascript", fixture_files("jscalc")) == "jest"
    # no sound default: python, a test script that is not jest, or one that chains commands
    assert suites.default_test_command("python", {"setup.py": ""}) is None
    assert suites.default_test_command("javascript", {"package.json": '{"scripts": {"test": "mocha"}}'}) is None
    assert suites.default_test_command("javascript", {"package.json": '{"scripts": {"test": "jest; rm -rf /"}}'}) is None
    # a Python project whose docs ship a big JavaScript bundle is tested with pytest when its command says so
    bundled = {"pkg/a.py": "x = 1\n", "docs/_static/jquery.js": "x" * 100_000}
    assert suites.detect_language(bundled) == "javascript"
    assert suites.suite_language("python -m pytest -q tests", bundled) == "python"
    assert suites.suite_language("go test ./...", {}) == "go" and suites.suite_language(None, bundled) == "javascript"
    assert suites.detect_language({"src/main/java/A.java": "class A {}", "b.py": ""}) == "java"  # no route: said so
    # tests do not count: a Go module whose only JavaScript is its test helpers is Go
    assert suites.detect_language({"a.go": "package a\n", "web/x.test.js": "x" * 1000}) == "go"


def test_commands_that_would_choose_their_own_report_are_refused():
    files = fixture_files("gocalc")
    for command in ["go test -json ./...", "go vet ./...", "go test github.com/x/y", "go test ./nothing/..."]:
        with pytest.raises(UsageError):
            suites._go_script(command, files, "0" * 32)
    for command in ["cargo test -- --format json", "cargo build", "cargo test -q"]:
        with pytest.raises(UsageError):
            suites._rust_script(command)
    for command in ["jest --json", "npm test", "jest --outputFile=x.json"]:
        with pytest.raises(UsageError):
            suites._jest_script(command, "/tmp/x")


def test_go_packages_follow_the_patterns():
    files = {"a_test.go": "", "x/b_test.go": "", "x/y/c_test.go": "", "x/testdata/d_test.go": "", "vendor/e_test.go": "",
             "z/f.go": ""}
    assert suites.go_packages(files, ["./..."]) == [".", "x", "x/y"]
    assert suites.go_packages(files, ["./x/..."]) == ["x", "x/y"]
    assert suites.go_packages(files, ["./x", "."]) == [".", "x"]
    assert suites.go_packages(files, ["./z"]) == []


def test_rust_unit_tests_in_a_bugged_file_must_stay_as_they_were():
    source = fixture_files("rustcalc")["src/lib.rs"]
    assert suites.tests_untouched("rust", source, source.replace("x == 0 {", "x == 1 {"))
    assert not suites.tests_untouched("rust", source, source.replace("assert_eq!(sign(0), 0);", ""))
    assert not suites.tests_untouched("rust", source, source.replace("#[cfg(test)]", ""))
    assert suites.tests_untouched("go", "a", "b")  # Go's tests live in files of their own


def result(stdout: str, exit_code: int | None = 0, **kw) -> ExecResult:
    return ExecResult(exit_code, stdout, "", 0.1, **kw)


def test_go_reports_need_the_shells_nonce_lines_and_agree_with_the_exit_status():
    nonce = "ab" * 16
    framed = "\x16=== RUN   TestA\n\x16--- PASS: TestA (0.00s)\n\x16PASS\n"
    good = f"\n\x16hrmcode-go-begin {nonce} 0\n{framed}\n\x16hrmcode-go-end {nonce} 0 0\n"
    assert suites._go_run(result(good), nonce, ["."]).outcomes == {".::TestA": "passed"}
    plain = good.replace("\x16=", "=").replace("\x16-", "-").replace("\x16P", "P")
    assert suites._go_run(result(plain), nonce, ["."]).problem is not None  # unframed lines are output
    forged_end = f"\n\x16hrmcode-go-begin {nonce} 0\n{framed}\n\x16hrmcode-go-end {'cd' * 16} 0 0\n"
    assert suites._go_run(result(forged_end), nonce, ["."]).problem is not None  # another nonce: not the shell's
    failing = good.replace("--- PASS", "--- FAIL").replace("\x16PASS", "\x16FAIL")
    assert suites._go_run(result(failing.replace(f"{nonce} 0 0", f"{nonce} 0 1")), nonce, ["."]).outcomes == {".::TestA": "failed"}
    assert suites._go_run(result(failing), nonce, ["."]).problem is not None  # FAIL, exit 0
    assert suites._go_run(result(good.replace(f"{nonce} 0 0", f"{nonce} 0 1")), nonce, ["."]).problem is not None  # PASS, exit 1
    assert suites._go_run(result(good, timed_out=True, exit_code=None), nonce, ["."]).problem == "timed out"
    assert suites._go_run(result(good, stdout_truncated=True), nonce, ["."]).problem is not None
    assert suites._go_run(result(good), nonce, [".", "x"]).problem is not None  # package x never ran


def test_rust_and_jest_reports_agree_with_the_exit_status():
    libtest = ("     Running unittests src/lib.rs (target/debug/deps/x-1)\n\nrunning 1 test\ntest t::a ... ok\n\n"
               "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n")
    assert suites._rust_run(result(libtest)).outcomes == {"src/lib.rs::t::a": "passed"}
    assert suites._rust_run(result(libtest, exit_code=101)).problem is not None
    assert suites._rust_run(result(libtest.split("\ntest result")[0])).problem is not None  # never closed
    jest = json.dumps({"success": True, "testResults": [{"name": "/work/a.test.js", "status": "passed", "assertionResults": [
        {"title": "t", "fullName": "d t", "status": "passed"}]}]})
    assert suites._jest_run(result(""), jest).outcomes == {"a.test.js::d t": "passed"}
    assert suites._jest_run(result("", exit_code=1), jest).problem is not None
    assert suites._jest_run(result(""), None).problem is not None


# -- in the sandbox ------------------------------------------------------------------------------------

@pytest.mark.parametrize("language", sorted(ROUTES))
def test_reference_passes_and_the_planted_bug_fails_exactly_its_test(language, sandbox, references):
    ref = reference(language, sandbox, references)
    assert ref.problem is None and ref.passing() == PASSING[language]
    name, broken, path, old, new = ROUTES[language]
    files = fixture_files(name)
    files[path] = files[path].replace(old, new, 1)
    run = suites.run_tests(sandbox, language, files, suites.default_test_command(language, files), LIMITS, changed=[path])
    verdict = judge_candidate(run, ref.passing())
    assert verdict == {"verdict": "kept", "FAIL_TO_PASS": [broken], "PASS_TO_PASS": sorted(PASSING[language] - {broken})}
    excerpt = suites.failure_excerpt(language, run, broken)
    assert {"go": "Sign(0) = 1, want 0", "rust": "left: 1", "javascript": "Received: 1"}[language] in excerpt


@pytest.mark.docker
@pytest.mark.parametrize("language", sorted(ROUTES))
def test_the_docker_backend_gives_the_same_verdicts(language):
    sandbox = real_sandbox("docker")
    name, broken, path, old, new = ROUTES[language]
    files = fixture_files(name)
    command = suites.default_test_command(language, files)
    ref = suites.run_tests(sandbox, language, files, command, LIMITS)
    assert ref.problem is None and ref.passing() == PASSING[language]
    files[path] = files[path].replace(old, new, 1)
    run = suites.run_tests(sandbox, language, files, command, LIMITS, changed=[path])
    assert judge_candidate(run, ref.passing())["FAIL_TO_PASS"] == [broken]


def test_a_bug_that_does_not_compile_is_rejected_as_such(sandbox, references):
    ref = reference("go", sandbox, references)
    files = fixture_files("gocalc")
    files["calc.go"] = files["calc.go"].replace("\ttotal := 0\n", "\ttotal := 0\n\tunused := 1\n")
    run = suites.run_tests(sandbox, "go", files, "go test ./...", LIMITS, changed=["calc.go"])
    assert judge_candidate(run, ref.passing()) == {"verdict": "rejected", "reason": "does_not_build"}
    assert "declared and not used" in run.result.stdout


def test_a_changed_test_file_gives_no_pass(sandbox, references):
    ref = reference("javascript", sandbox, references)
    files = fixture_files("jscalc")
    files["src/calc.js"] = files["src/calc.js"].replace("if (x === 0) {", "if (x === 1) {")
    files["src/calc.test.js"] = files["src/calc.test.js"].replace("expect(sign(0)).toBe(0);", "")
    run = suites.run_tests(sandbox, "javascript", files, "jest", LIMITS, changed=["src/calc.js", "src/calc.test.js"])
    assert run.problem is None and not run.passing() & ref.passing()


@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("bug_*")))
def test_hostile_bugged_sources_never_pass_the_broken_test(name, sandbox, references):
    language = EXTENSIONS[Path(name).suffix]
    ref = reference(language, sandbox, references)
    text = (HOSTILE / name).read_text(encoding="utf-8")
    fixture, path = text.split("replaces: ", 1)[1].split(" ", 1)[0].split("/", 1)
    files = {**fixture_files(fixture), path: text}
    limits = Limits(timeout_s=4 if "endless" in name else 60, memory_mb=4096)
    run = suites.run_tests(sandbox, language, files, suites.default_test_command(language, files), limits, changed=[path])
    broken = ROUTES[language][1]
    assert not run.passed(broken), (run.problem, run.outcomes)
    verdict = judge_candidate(run, ref.passing())
    assert verdict["verdict"] == "rejected" or broken in verdict["FAIL_TO_PASS"]
    if "endless" in name:
        assert verdict == {"verdict": "rejected", "reason": "timed_out"}


def test_a_rust_repository_gives_tasks(tmp_path, sandbox):
    """Through repo_tasks: a Rust unit test is named after the crate root, not the bugged file, so it
    must not make the candidate ``changed_tests``."""
    toolchain("rust")
    repo = tmp_path / "rustcalc"
    shutil.copytree(FIXTURES / "rustcalc", repo)
    commit_tree(repo, "fixture")
    result = repo_tasks(str(repo), test_cmd=None, max_bugs=2, sandbox=sandbox, out=tmp_path / "tasks")
    assert result.stats["kept"] >= 1 and "changed_tests" not in result.stats["rejected"], result.stats
    for instance in read_jsonl(result.artifact.path / "instances.jsonl"):
        assert set(instance["FAIL_TO_PASS"]) | set(instance["PASS_TO_PASS"]) == PASSING["rust"]


def test_a_repository_in_a_language_without_a_route_is_refused(tmp_path):
    repo = tmp_path / "javalib"
    (repo / "src/main/java").mkdir(parents=True)
    (repo / "src/main/java/A.java").write_text("class A { int f() { return 1 + 2; } }\n")
    commit_tree(repo, "fixture")
    with pytest.raises(UsageError, match="is a java repository"):
        repo_tasks(str(repo), test_cmd=None)


def test_a_debian_go_library_becomes_a_repository_whose_tests_pass(sandbox, tmp_path):
    toolchain("go")
    if not Path(suites.DEBIAN_GOCODE, "github.com/pmezard/go-difflib").is_dir():
        pytest.skip("Debian's Go source is not installed (apt-get install golang-github-pmezard-go-difflib-dev)")
    repo = suites.source_repository("debian-go:github.com/pmezard/go-difflib", tmp_path)
    first = suites.source_repository("debian-go:github.com/pmezard/go-difflib", tmp_path / "again")
    from hrmcode.data.bugs import read_repo

    info = read_repo(repo)
    assert info.commit == read_repo(first).commit  # fixed author and date: the same commit everywhere
    assert suites.detect_language(info.files) == "go"
    run = suites.run_tests(sandbox, "go", info.files, "go test ./...", LIMITS)
    assert run.problem is None and len(run.passing()) >= 10 and "difflib::TestSplitLines" in run.passing()


def test_a_debian_go_library_with_a_dependency_builds_from_debians_sources(sandbox, tmp_path):
    """go-runewidth's go.mod requires github.com/rivo/uniseg and vendors nothing: GOPATH mode over
    Debian's Go library sources builds it offline."""
    toolchain("go")
    if not Path(suites.DEBIAN_GOCODE, "github.com/mattn/go-runewidth").is_dir():
        pytest.skip("Debian's Go source is not installed (apt-get install golang-github-mattn-go-runewidth-dev)")
    from hrmcode.data.bugs import read_repo

    info = read_repo(suites.source_repository("debian-go:github.com/mattn/go-runewidth", tmp_path))
    run = suites.run_tests(sandbox, "go", info.files, "go test ./...", LIMITS)
    assert run.problem is None and ".::TestRuneWidth" in run.passing() and len(run.passing()) >= 20


def test_synthesize_cli_makes_go_tasks_without_a_test_command(cli, tmp_path):
    toolchain("go")
    real_sandbox("local")
    repo = tmp_path / "gocalc"
    shutil.copytree(FIXTURES / "gocalc", repo)
    commit_tree(repo, "fixture")
    done = cli("--json", "synthesize", "--source", f"repo:{repo}", "--max-bugs", "2", "--bug-timeout", "60")
    assert done.exit_code == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["bugs"]["reference_passing"] == 5 and report["bugs"]["kept"] >= 1, report["bugs"]
    assert report["by_language"] == {"go": report["examples"]}
    # the tool level's executed reference runs are judged by the same Go route
    assert report["tool_runs"]["kept"] == report["bugs"]["kept"] and report["by_level"]["tool"] >= 1, report["tool_runs"]
    instances = [json.loads(line) for line in (Path(report["source_tasks"]) / "instances.jsonl").read_text().splitlines()]
    assert len(instances) == report["bugs"]["kept"]
    for instance in instances:
        assert instance["FAIL_TO_PASS"] and instance["PASS_TO_PASS"]
        assert set(instance["FAIL_TO_PASS"]) | set(instance["PASS_TO_PASS"]) == PASSING["go"]
        assert instance["patch"].startswith("diff --git a/") and "_test.go" not in instance["patch"]
