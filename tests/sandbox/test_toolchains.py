"""Toolchain routes: un-skipping rules (unit) and real builds of polyglot exercises (integration)."""

from __future__ import annotations

import pytest

from hrmcode.errors import UsageError
from hrmcode.eval.polyglot import KNOWN_UNAVAILABLE, STUBS_THAT_PASS
from hrmcode.sandbox import _seccomp, toolchains
from hrmcode.sandbox.toolchains import run_tests, unskip

JAVA = """class T {
    @Test
    public void a() {}

    @Disabled("Remove to run test")
    @Test
    public void b() {}

    @Disabled
    @Test
    public void c() {}
}
"""
JS = "test('a', () => {});\nxtest('b', () => {});\nxit('c', () => {});\ntest.skip('slow', () => {});\n"


def test_java_strict_removes_every_disabled_and_aider_compat_only_parenthesised():
    strict, n = unskip("java", {"src/test/java/T.java": JAVA, "src/main/java/X.java": "@Disabled"}, "strict")
    assert n == 2 and "@Disabled" not in strict["src/test/java/T.java"]
    assert strict["src/main/java/X.java"] == "@Disabled"  # only test files are touched
    compat, n = unskip("java", {"src/test/java/T.java": JAVA}, "aider-compat")
    assert n == 1 and compat["src/test/java/T.java"].count("@Disabled") == 1
    assert '@Disabled("Remove' not in compat["src/test/java/T.java"]


def test_javascript_strict_unskips_xtest_and_xit_but_keeps_test_skip():
    strict, n = unskip("javascript", {"a.spec.js": JS}, "strict")
    assert n == 2 and "xtest" not in strict["a.spec.js"] and "xit(" not in strict["a.spec.js"]
    assert "test.skip('slow'" in strict["a.spec.js"]
    compat, n = unskip("javascript", {"a.spec.js": JS}, "aider-compat")
    assert n == 1 and "xit('c'" in compat["a.spec.js"]


def test_jest_per_test_timeout_is_raised_in_strict_mode_only():
    strict, _ = toolchains._javascript({}, "strict", toolchains.DEFAULT_LIMITS["javascript"])
    compat, _ = toolchains._javascript({}, "aider-compat", toolchains.DEFAULT_LIMITS["javascript"])
    assert f"--testTimeout={toolchains.JS_TEST_TIMEOUT_MS}" in strict and toolchains.JS_TEST_TIMEOUT_MS > 5000
    assert "--testTimeout" not in compat


def test_cmake_libraries_are_read_from_the_build_file():
    cmake = "find_package(Boost 1.58 REQUIRED COMPONENTS date_time)\nfind_package(Threads REQUIRED)\n"
    assert toolchains._cmake_libs(cmake) == ["-lboost_date_time", "-pthread"]
    assert toolchains._cmake_libs("project(x CXX)") == []


def test_unknown_language_and_mode_are_usage_errors(local_sandbox):
    with pytest.raises(UsageError):
        run_tests("cobol", {}, sandbox=local_sandbox)
    with pytest.raises(UsageError):
        run_tests("python", {}, mode="lenient", sandbox=local_sandbox)


def test_seccomp_program_is_well_formed():
    program = _seccomp.filter_bytes()
    if program is None:
        pytest.skip("seccomp filter is x86_64 only")
    assert len(program) % 8 == 0 and 10 < len(program) // 8 < 255


def test_python_route_passes_and_fails(local_sandbox):
    files = {"m.py": "def f():\n    return 1\n", "m_test.py": "from m import f\n\ndef test_f():\n    assert f() == 1\n"}
    assert run_tests("python", files, sandbox=local_sandbox).passed
    broken = {**files, "m.py": "def f():\n    return 2\n"}
    run = run_tests("python", broken, sandbox=local_sandbox)
    assert not run.passed and "assert 2 == 1" in run.result.stdout


@pytest.mark.docker
@pytest.mark.integration
def test_every_language_passes_its_smoke_exercise_in_docker(docker_sandbox):
    from hrmcode.sandbox import doctor

    rows = doctor.smoke_test(docker_sandbox)
    assert [row["component"] for row in rows] == [f"smoke {language}" for language in toolchains.LANGUAGES]
    assert [row for row in rows if row["status"] != "ok"] == []


def _polyglot(shared_dir, language, slug):
    from hrmcode.data.sources.polyglot import to_task

    task = to_task(language, slug, shared_dir / "polyglot-benchmark" / language / "exercises" / "practice" / slug)
    base = {**task.files, **task.tests.files}
    return base, {**base, **task.solution.files}


# Two per language: one plain, one with a dependency or a twist (Boost, a crate, a bare @Disabled,
# xit, Go >= 1.21's slices, a stub that already passes).
SAMPLE = ["python/forth", "python/paasio", "go/forth", "go/dnd-character", "go/ledger", "rust/forth",
          "rust/gigasecond", "java/forth", "java/bowling", "javascript/grep", "javascript/forth",
          "cpp/gigasecond", "cpp/all-your-base"]


@pytest.mark.shared
@pytest.mark.integration
@pytest.mark.parametrize("exercise", SAMPLE)
def test_polyglot_reference_passes_and_stub_fails(shared_dir, local_sandbox, exercise):
    language, slug = exercise.split("/")
    stub, reference = _polyglot(shared_dir, language, slug)
    run = run_tests(language, reference, sandbox=local_sandbox)
    assert run.passed == (exercise not in KNOWN_UNAVAILABLE), run.result.stdout[-2000:]
    assert run_tests(language, stub, sandbox=local_sandbox).passed == (exercise in STUBS_THAT_PASS)


@pytest.mark.shared
@pytest.mark.integration
def test_strict_runs_tests_aider_compat_leaves_skipped(shared_dir, local_sandbox):
    _, reference = _polyglot(shared_dir, "javascript", "grep")
    strict = run_tests("javascript", reference, sandbox=local_sandbox)
    compat = run_tests("javascript", reference, mode="aider-compat", sandbox=local_sandbox)
    assert strict.passed and compat.passed
    assert strict.unskipped > compat.unskipped
    assert "skipped" in compat.result.stdout and "skipped" not in strict.result.stdout
