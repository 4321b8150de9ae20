"""Strict verdict evidence (unit): the tests read from pristine test files, each framework's report
parser, the count, and the pytest reporter's strict equality check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from hrmcode.sandbox.base import ExecResult
from hrmcode.sandbox.reports import frameworks
from hrmcode.sandbox.reports.expected import expected_tests, go_build_satisfied
from hrmcode.sandbox.reports.frameworks import Report, count

V = "\x16"  # Go's framing marker


def _result(stdout="", exit_code=0, **kw) -> ExecResult:
    return ExecResult(exit_code=exit_code, stdout=stdout, stderr="", wall_s=0.1, **kw)


# -- the count ----------------------------------------------------------------------------------

def test_count_needs_every_expected_test_passed_nothing_failed_and_exit_zero():
    report = Report([("a", "passed"), ("b", "passed"), ("b", "passed")])
    assert count(["a", "b", "b"], report, 0) is None
    assert "1 of 4 expected" in count(["a", "b", "b", "b"], report, 0)  # a multiset: a repeated title needs two passes
    assert "not reported passed" in count(["a", "c"], report, 0)
    assert "exited 1" in count(["a"], report, 1)
    assert "failed: x" in count(["a"], Report([("a", "passed"), ("x", "failed")]), 0)
    assert count(["a"], Report(problem="no report"), 0) == "no report"
    assert "skipped or never run" in count(["a"], Report([("a", "skipped")]), 0)


# -- expected tests from pristine files -----------------------------------------------------------

def test_python_tests_are_node_ids_of_test_functions_and_testcase_methods():
    source = ("import unittest\n\nclass ForthTest(unittest.TestCase):\n    def test_a(self): pass\n    def helper(self): pass\n\n"
              "class TestPlain:\n    def test_b(self): pass\n\nclass Other:\n    def test_c(self): pass\n\ndef test_d(): pass\n")
    names = expected_tests("python", {"forth_test.py": source, "forth.py": "def test_x(): pass\n", "sub/x_test.py": source})
    assert names == ["forth_test.py::ForthTest::test_a", "forth_test.py::TestPlain::test_b", "forth_test.py::test_d"]


def test_go_tests_skip_files_whose_build_line_is_false_without_tags():
    assert go_build_satisfied("step1 || (!step2 && !step3)") and not go_build_satisfied("bonus")
    assert go_build_satisfied("linux && go1.21") and not go_build_satisfied("!linux")
    files = {"a_test.go": "package a\n\nfunc TestA(t *testing.T) {}\nfunc helper(t *testing.T) {}\n",
             "bonus_test.go": "//go:build bonus\n\npackage a\n\nfunc TestBonus(t *testing.T) {}\n",
             "b_test.go": "//go:build !bonus\n\npackage a\n\nfunc TestB(t *testing.T) {}\nfunc BenchmarkB(b *testing.B) {}\n"}
    assert expected_tests("go", files) == ["TestA", "TestB"]


def test_rust_tests_carry_their_module_path_and_skip_feature_gated_items():
    source = ('#[test]\nfn top() {}\n\nmod inner {\n    #[test]\n    #[ignore]\n    fn one() { let s = "}{"; }\n}\n\n'
              '#[cfg(feature = "io")]\nmod io {\n    #[test]\n    fn gated() {}\n}\n\n'
              '#[test]\n#[cfg(feature = "advanced")]\nfn also_gated() {}\n\n#[test]\nfn last() {}\n')
    assert expected_tests("rust", {"tests/x.rs": source, "tests/invalid/y.rs": source, "src/lib.rs": source}) == \
        ["top", "inner::one", "last"]


def test_java_javascript_and_cpp_tests():
    java = "import x;\n\npublic class FooTest {\n    @Test\n    public void a() {}\n\n    // @Test void c() {}\n    @Test\n    @DisplayName(\"b\")\n    void b() {}\n}\n"
    assert expected_tests("java", {"src/test/java/FooTest.java": java, "src/main/java/Foo.java": java}) == ["FooTest.a", "FooTest.b"]
    js = "describe('d', () => {\n  test('one', () => {});\n  it(\"it's two\", () => {});\n  test.skip('slow', () => {});\n  test('one', () => {});\n});\n"
    assert expected_tests("javascript", {"x.spec.js": js}) == ["one", "it's two", "one"]
    cpp = ('TEST_CASE("first") {}\n#if defined(EXERCISM_RUN_ALL_TESTS)\nTEST_CASE(\n    "second \\"q\\"", "[tag]") {}\n'
           '#if defined(EXERCISM_INCLUDE_BENCHMARK)\nTEST_CASE("benchmark") {}\n#endif\n#endif\n')
    assert expected_tests("cpp", {"x_test.cpp": cpp}) == ["first", 'second "q"']


# -- the parsers ----------------------------------------------------------------------------------

def test_go_counts_only_marked_framing_and_needs_the_final_result():
    real = f"{V}=== RUN   TestA\n{V}--- PASS: TestA (0.00s)\n{V}=== RUN   TestB\n{V}    --- FAIL: TestB/sub (0.00s)\n{V}--- FAIL: TestB (0.00s)\n{V}FAIL\n"
    assert frameworks.parse_go(real, False).tests == [("TestA", "passed"), ("TestB/sub", "failed"), ("TestB", "failed")]
    forged = "--- PASS: TestA (0.00s)\nPASS\nok  \tx\t0.1s\n"
    assert frameworks.parse_go(forged, False).problem  # printed lines are output, not framing
    assert frameworks.parse_go(f"{V}=== RUN   TestA\n", False).problem  # stopped before the result
    assert frameworks.go_feedback(real) == "    --- FAIL: TestB/sub (0.00s)\n--- FAIL: TestB (0.00s)\nFAIL\n"


def test_libtest_needs_every_started_binary_to_report():
    ok = "running 2 tests\ntest a ... ok\ntest m::b ... ignored, slow\n\ntest result: ok. 1 passed; 0 failed; 1 ignored; 0 measured\n"
    assert frameworks.parse_libtest(ok, False).tests == [("a", "passed"), ("m::b", "skipped")]
    assert frameworks.parse_libtest(ok + "running 3 tests\ntest c ... ok\n", False).problem
    assert frameworks.parse_libtest("error[E0425]: cannot find value", False).problem
    assert frameworks.parse_libtest(ok, True).problem


def test_junit_xml_names_and_outcomes_and_hostile_xml():
    xml = ('<?xml version="1.0"?><testsuite failures="1" errors="0"><testcase name="a()" classname="T"/>'
           '<testcase name="b()" classname="T"><failure message="x"/></testcase>'
           '<testcase name="c()" classname="T"><skipped/></testcase></testsuite>')
    assert frameworks.parse_junit_xml(xml).tests == [("T.a", "passed"), ("T.b", "failed"), ("T.c", "skipped")]
    assert frameworks.parse_junit_xml(None).problem
    assert frameworks.parse_junit_xml(xml[:60]).problem
    bomb = '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><testsuite>&a;</testsuite>'
    assert "entities" in frameworks.parse_junit_xml(bomb).problem


def test_jest_json_and_catch_xml():
    jest = ('{"numFailedTests": 0, "testResults": [{"status": "passed", "assertionResults": '
            '[{"title": "one", "status": "passed"}, {"title": "two", "status": "pending"}]}]}')
    assert frameworks.parse_jest(jest).tests == [("one", "passed"), ("two", "skipped")]
    assert frameworks.parse_jest('{"testResults": [{"status": "failed", "message": "SyntaxError", "assertionResults": []}]}').failed()
    assert frameworks.parse_jest("{not json").problem and frameworks.parse_jest(None).problem
    catch = ('<Catch><Group name="t"><TestCase name="a"><OverallResult success="true"/></TestCase>'
             '<TestCase name="b"><Expression success="false" filename="x_test.cpp" line="3"><Original>1 == 2</Original>'
             '<Expanded>1 == 2</Expanded></Expression><OverallResult success="false"/></TestCase>'
             '<OverallResults successes="1" failures="1"/></Group></Catch>')
    assert frameworks.parse_catch_xml(catch).tests == [("a", "passed"), ("b", "failed")]
    assert "REQUIRE( 1 == 2 )" in frameworks.catch_feedback(catch)
    assert frameworks.parse_catch_xml('<Catch><Group name="t"><TestCase name="a"/></Group></Catch>').problem


def test_a_timed_out_run_is_no_evidence():
    assert frameworks.parse("go", _result(timed_out=True, exit_code=None), None).problem == "timed out"


# -- the pytest reporter's strict equality ----------------------------------------------------------

@pytest.fixture(scope="module")
def plugin():
    path = Path(frameworks.__file__).parent / "pytest_plugin.py"
    spec = importlib.util.spec_from_file_location("hrmcode_pytest_report_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # without HRMCODE_PYTEST_REPORT it writes nothing
    yield module
    del sys.modules[spec.name]


def test_strict_equality_refuses_objects_posing_as_plain_values(plugin):
    class Anything:
        def __eq__(self, other):
            return True

    class Yes(str):
        def __eq__(self, other):
            return True

    class Point:  # the program's own type, compared with its own kind: its equality is the program's business
        def __eq__(self, other):
            return True

    from collections import namedtuple
    pair = namedtuple("pair", "a b")
    assert plugin._plain_mismatch(Anything(), "Norwegian")
    assert plugin._plain_mismatch([1, {"k": Anything()}], [1, {"k": 2}])
    assert plugin._plain_mismatch(Yes("x"), "y")
    assert plugin._plain_mismatch(Point(), Point()) is None
    assert plugin._plain_mismatch(pair(1, 2), (1, 2)) is None
    assert plugin._plain_mismatch(memoryview(b"ab"), b"ab") is None  # a C type's equality is not the program's
    assert plugin._plain_mismatch(1, 1.0) is None and plugin._plain_mismatch(True, 1) is None
