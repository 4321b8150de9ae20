"""LiveCodeBench: real stdin, functional driver, comparators, the official runner's false negatives."""

from __future__ import annotations

import json

import pytest

from hrmcode.eval.backends import OracleBackend, SamplesBackend
from hrmcode.sandbox.drivers.lcb_compare import compare_stdout, compare_value
from hrmcode.eval.livecodebench import LiveCodeBench
from tests.eval.conftest import load_fixture_tasks, write_tasks_artifact

WRONG = {
    "fx_sum_lines": "import sys\nfor line in sys.stdin:\n    print(len(line.split()))\n",
    "fx_two_readline": "import sys\nn = int(sys.stdin.buffer.readline())\nprint(n)\n",
    "fx_float_third": "n = int(input())\nprint(n / 4)\n",
    "1873_A": "t = int(input())\nfor _ in range(t):\n    input()\n    print('YES')\n",
    "fx_pair_sum": "class Solution:\n    def pairSum(self, nums, target):\n        return [0, 0]\n",
    "fx_average": "class Solution:\n    def ratio(self, a, b):\n        return a // b\n",
}


def test_lcb_exact_rules():
    assert compare_stdout("  1 2\n3  \n\n", "1 2\n3")
    assert compare_stdout("1.50\n", "1.5")  # Decimal token equality
    assert not compare_stdout("0.3333333\n", "0.333333333333")  # no tolerance
    assert compare_stdout("0.3333333\n", "0.333333333333", "tolerant")
    assert not compare_stdout("1\n2\n", "1\n")
    assert not compare_stdout("YES\n", "yes\n")
    assert compare_value((1, 2), [1, 2]) and not compare_value(1 / 3, 0.3333333333)
    assert compare_value([1 / 3], [0.3333333333], "tolerant") and not compare_value([True], [1.0000001], "tolerant")


@pytest.mark.parametrize("comparator", ["lcb-exact", "tolerant"])
def test_reference_solutions(sandbox, comparator):
    tasks = load_fixture_tasks("lcb_tasks.jsonl")
    records = LiveCodeBench(OracleBackend(), sandbox, comparator=comparator).evaluate(tasks, worker=0)
    passed = {r["id"].split("/", 1)[1]: bool(r["correct"]) for r in records}
    # the two official false negatives on stdin pass under both comparators
    assert passed["fx_sum_lines"] and passed["fx_two_readline"] and passed["1873_A"] and passed["fx_pair_sum"]
    # the float outputs pass only with the tolerant comparator
    assert passed["fx_float_third"] is (comparator == "tolerant")
    assert passed["fx_average"] is (comparator == "tolerant")


def test_wrong_solutions_fail_with_lcb_codes(sandbox, tmp_path):
    tasks = load_fixture_tasks("lcb_tasks.jsonl")
    samples = tmp_path / "codegen.json"
    samples.write_text(json.dumps([{"question_id": qid, "code_list": [code]} for qid, code in WRONG.items()]))
    records = LiveCodeBench(SamplesBackend(samples), sandbox, comparator="tolerant").evaluate(tasks, worker=0)
    assert [r["correct"] for r in records] == [0] * len(tasks)
    assert all(r["samples"][0]["results"][-1] == -2 for r in records)


def test_timeouts_and_runtime_errors(sandbox, tmp_path):
    tasks = load_fixture_tasks("lcb_tasks.jsonl")[:2]
    samples = tmp_path / "codegen.json"
    samples.write_text(json.dumps([
        {"question_id": "fx_sum_lines", "code_list": ["while True:\n    pass\n"]},
        {"question_id": "fx_two_readline", "code_list": ["raise ValueError('boom')\n"]},
    ]))
    records = LiveCodeBench(SamplesBackend(samples), sandbox, timeout_s=1.0).evaluate(tasks, worker=0)
    assert records[0]["samples"][0]["results"] == [-3]
    assert records[1]["samples"][0]["results"] == [-4] and "boom" in records[1]["samples"][0]["error"]["message"]


def test_cli_pass_at_1_and_5_with_window(cli, tmp_path):
    tasks = load_fixture_tasks("lcb_tasks.jsonl")
    artifact = write_tasks_artifact(tmp_path / "lcb", tasks, {"release": "v6", "since": None, "until": None})
    samples = tmp_path / "codegen.json"
    # five samples per problem: the reference once and the wrong program four times
    samples.write_text(json.dumps([
        {"question_id": t.metadata["question_id"], "code_list": [t.solution.files["solution.py"]] + [WRONG[t.metadata["question_id"]]] * 4}
        for t in tasks
    ]))
    result = cli("--json", "eval", "livecodebench", "--model", f"samples:{samples}", "--tasks", artifact,
                 "--comparator", "tolerant", "--since", "2024-01-01", "--out", tmp_path / "run", "--unsafe-no-sandbox")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cases"] == 4  # four fixture problems are dated 2024
    assert summary["pass@1"] == pytest.approx(0.2) and summary["pass@5"] == pytest.approx(1.0)
    assert summary["release"] == "v6" and summary["since"] == "2024-01-01"
    assert summary["contest_dates"] == ["2024-02-11", "2024-06-30"]


def test_functional_answer_with_a_main_block_reading_stdin_passes(sandbox):
    """lcb_runner imports a functional answer as a module, so a trailing __main__ block never runs."""
    task = next(t for t in load_fixture_tasks("lcb_tasks.jsonl") if t.tests.entry_point == "pairSum")
    code = task.solution.files["solution.py"] + (
        "\nif __name__ == '__main__':\n    import sys, json\n"
        "    lines = sys.stdin.read().split('\\n')\n    print(Solution().pairSum(json.loads(lines[0]), int(lines[1])))\n")
    graded = LiveCodeBench(OracleBackend(), sandbox).grade(task, code, worker=0)
    assert graded["passed"] and graded["results"] == [1] * len(task.tests.cases)


def test_tolerant_equates_numbers_only_and_strict_equates_types_too():
    assert compare_value((1, 2), [1, 2], "tolerant")  # the top-level tuple, as lcb_runner
    assert not compare_value([(1, 2)], [[1, 2]], "tolerant") and not compare_value([(1, 2)], [[1, 2]])
    assert compare_value([True, 2], [1, 2]) and not compare_value([True, 2], [1, 2], strict=True)
    assert compare_value([1, 2.0], [1.0, 2.0], strict=True) and not compare_value(["1"], [1], strict=True)
    assert compare_value({"a": [1 / 3]}, {"a": [0.3333333333]}, "tolerant", strict=True)


def test_run_records_the_samples_graded_the_mode_and_where_the_tasks_came_from(cli, tmp_path):
    tasks = load_fixture_tasks("lcb_tasks.jsonl")
    params = {"source": "livecodebench", "from": ["/data/test6.jsonl"], "release": "latest", "since": None, "until": None}
    artifact = write_tasks_artifact(tmp_path / "lcb", tasks, params)
    samples = tmp_path / "codegen.json"
    samples.write_text(json.dumps([{"question_id": t.metadata["question_id"],
                                    "code_list": [t.solution.files["solution.py"]] * 6} for t in tasks]))
    result = cli("--json", "eval", "livecodebench", "--model", f"samples:{samples}", "--tasks", artifact,
                 "--mode", "strict", "--out", tmp_path / "run", "--unsafe-no-sandbox")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["release"] is None and summary["tasks_from"] == "/data/test6.jsonl"
    assert summary["mode"] == "strict" and summary["samples_per_task"] == [6] and summary["samples"] == 6 * len(tasks)
    run = json.loads((tmp_path / "run" / "run.json").read_text())["params"]
    assert run["n"] == 6 and run["mode"] == "strict"


@pytest.mark.parametrize(("ending", "passed", "code"), [
    ("import sys\nsys.exit(0)\n", True, 1),  # a script may end itself once its answer is out
    ("import sys, os\nsys.stdout.flush()\nos._exit(0)\n", True, 1),  # even without cleanup: a new process next test
    ("raise ValueError('after the answer')\n", False, -4),
    ("import os\nos.kill(os.getpid(), 9)\n", False, -4),
])
def test_stdin_runs_end_as_a_script_would(sandbox, ending, passed, code):
    task = next(t for t in load_fixture_tasks("lcb_tasks.jsonl") if t.metadata["question_id"] == "fx_sum_lines")
    graded = LiveCodeBench(OracleBackend(), sandbox).grade(task, task.solution.files["solution.py"] + ending, worker=0)
    assert graded["passed"] is passed and graded["results"][-1] == code
    if passed:
        assert graded["results"] == [1] * len(task.tests.cases)


def test_every_functional_test_gets_a_fresh_solution(sandbox):
    """lcb_runner calls one Solution instance for all tests; here each test gets its own."""
    task = next(t for t in load_fixture_tasks("lcb_tasks.jsonl") if t.tests.entry_point == "pairSum")
    code = task.solution.files["solution.py"].replace(
        "class Solution:\n", "class Solution:\n    def __init__(self):\n        self.calls = 0\n\n", 1).replace(
        "        seen = {}\n", "        self.calls += 1\n        if self.calls > 1:\n            return []\n        seen = {}\n", 1)
    assert "self.calls" in code
    graded = LiveCodeBench(OracleBackend(), sandbox).grade(task, code, worker=0)
    assert graded["passed"] and len(graded["results"]) == len(task.tests.cases) > 1
