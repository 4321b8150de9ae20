"""Polyglot: Aider's protocol (prompt, tries, feedback, reflections, restored tests) and metrics."""

from __future__ import annotations

import json
import re

import pytest

from hrmcode.data.schema import Task
from hrmcode.eval.backends import Reply, Request
from hrmcode.eval.polyglot import INSTRUCTIONS_ADDENDUM, Polyglot, clean_output, select
from tests.eval.conftest import write_tasks_artifact
from tests.eval.fake_openai import FakeOpenAI

TEST_FILE = (
    "import unittest\n\nfrom adder import add\n\n\nclass AdderTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
)
TASK = Task(
    id="polyglot/python/adder", source="polyglot", language="python", kind="exercise",
    prompt="# Adder\n\nImplement `add`.\n",
    files={"adder.py": "def add(a, b):\n    pass\n"}, editable=["adder.py"],
    solution={"files": {"adder.py": "def add(a, b):\n    return a + b\n"}},
    tests={"files": {"adder_test.py": TEST_FILE}},
)
RIGHT = "adder.py\n```python\ndef add(a, b):\n    return a + b\n```\n"
WRONG = "adder.py\n```python\ndef add(a, b):\n    return a - b\n```\n"


class Scripted:
    """A backend replying from a list, recording every request."""

    name = "scripted"

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.requests: list[Request] = []

    def describe(self) -> dict:
        return {"model": "scripted"}

    def complete(self, request: Request) -> list[Reply]:
        self.requests.append(request)
        return [Reply(text=self.replies.pop(0) if self.replies else "", raw=True, prompt_tokens=7, completion_tokens=3)]


def test_prompt_is_aiders_and_tests_are_never_shown(sandbox):
    backend = Scripted([RIGHT])
    record = Polyglot(backend, sandbox).evaluate_one(TASK, worker=0)
    assert record["tests_outcomes"] == [True]
    messages = backend.requests[0].messages
    assert messages[-1]["content"] == TASK.prompt + INSTRUCTIONS_ADDENDUM.format(file_list="adder.py")
    assert "adder.py\n```\ndef add(a, b):\n    pass\n```" in messages[1]["content"]
    assert all("assertEqual" not in m["content"] for m in messages)


def test_second_try_gets_the_cleaned_test_output(sandbox):
    backend = Scripted([WRONG, RIGHT])
    bench = Polyglot(backend, sandbox)
    record = bench.evaluate_one(TASK, worker=0)
    assert record["tests_outcomes"] == [False, True] and record["passed"]
    feedback = backend.requests[1].messages[-1]["content"]
    assert "AssertionError" in feedback and "See the testing errors above." in feedback
    assert "Fix the code in adder.py to resolve the errors." in feedback
    assert "/work" not in feedback and not re.search(r"\bin \d+\.\d+s\b", feedback)
    summary = bench.summarize([record], [TASK])
    assert summary["pass_rate_1"] == 0.0 and summary["pass_rate_2"] == 100.0 and summary["prompt_tokens"] == 14


def test_malformed_reply_is_reflected_and_counted(sandbox):
    bad = "adder.py\n```\n<<<<<<< SEARCH\n    return 0\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n"
    good = "adder.py\n```\n<<<<<<< SEARCH\n    pass\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n"
    backend = Scripted([bad, good])
    bench = Polyglot(backend, sandbox, edit_format="diff")
    record = bench.evaluate_one(TASK, worker=0)
    assert record["tests_outcomes"] == [True] and record["num_malformed_responses"] == 1
    assert "failed to apply" in backend.requests[1].messages[-1]["content"]
    summary = bench.summarize([record], [TASK])
    assert summary["percent_cases_well_formed"] == 0.0 and summary["num_malformed_responses"] == 1


def test_edits_to_tests_are_discarded(sandbox):
    cheat = "adder_test.py\n```python\ndef test_nothing():\n    pass\n```\n"
    record = Polyglot(Scripted([cheat, cheat]), sandbox).evaluate_one(TASK, worker=0)
    assert record["tests_outcomes"] == [False, False] and record["ignored_edits"] == ["adder_test.py"]


def test_stub_and_timeouts_and_output_cleanup(sandbox):
    record = Polyglot(Scripted([]), sandbox, tries=1).evaluate_one(TASK, worker=0)
    assert record["tests_outcomes"] == [False]
    loop = "adder.py\n```python\ndef add(a, b):\n    while True:\n        pass\n```\n"
    record = Polyglot(Scripted([loop]), sandbox, tries=1, test_timeout_s=3).evaluate_one(TASK, worker=0)
    assert record["test_timeouts"] == 1 and record["last_test_output"] == "Tests timed out!"
    text = "FAILED /work/adder_test.py::test - 1 failed in 0.12s\nok  \tforth\t0.005s\n"
    assert clean_output(text, "/work", "adder") == "FAILED adder_test.py::test - 1 failed \nok  \tforth\n"


def test_selection_errors():
    from hrmcode.errors import UsageError

    with pytest.raises(UsageError, match="language cobol"):
        select([TASK], "cobol", None)
    assert select([TASK], "python", "adder") == [TASK]
    with pytest.raises(UsageError, match="no polyglot exercise"):
        select([TASK], None, "nothing")


def test_cli_with_a_fake_server_and_fail_under(cli, tmp_path):
    artifact = write_tasks_artifact(tmp_path / "tasks", [TASK])
    with FakeOpenAI(lambda body: "Sure.\n\n" + WRONG) as server:
        result = cli("--json", "eval", "polyglot", "--model", f"openai:{server.url}", "--model-name", "m",
                     "--tasks", artifact, "--out", tmp_path / "run", "--fail-under", "50", "--unsafe-no-sandbox")
        assert len(server.requests) == 2  # two tries
    assert result.exit_code == 1 and "quality gate failed" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["pass_rate_2"] == 0.0 and summary["cases"] == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["failed"] == ["polyglot/python/adder"]


@pytest.mark.shared
@pytest.mark.integration
def test_oracle_passes_and_only_the_free_stubs_pass_on_a_subset(cli, shared_dir, tmp_path):
    fetched = cli("fetch", "polyglot", "--from", shared_dir / "polyglot-benchmark", "--out", tmp_path / "tasks")
    assert fetched.exit_code == 0, fetched.stderr
    # two per language, including three of the six exercises whose stubs already pass
    exercises = ("python/forth,python/two-bucket,go/ledger,go/two-bucket,rust/forth,rust/gigasecond,java/ledger,"
                 "java/bowling,javascript/ledger,javascript/grep,cpp/all-your-base,cpp/gigasecond")
    common = ("--tasks", tmp_path / "tasks", "--exercises", exercises, "-j", "2", "--unsafe-no-sandbox")
    oracle = cli("--json", "eval", "polyglot", "--model", "oracle", "--edit-format", "diff", "--out", tmp_path / "oracle", *common)
    assert oracle.exit_code == 0, oracle.stderr
    summary = json.loads(oracle.stdout)
    assert summary["pass_num_1"] == 12, summary["failed"]
    stub = cli("--json", "eval", "polyglot", "--model", "stub", "--tries", "1", "--out", tmp_path / "stub", *common)
    assert stub.exit_code == 0, stub.stderr
    summary = json.loads(stub.stdout)
    assert sorted(set(summary["languages"])) == ["cpp", "go", "java", "javascript", "python", "rust"]
    passed = sorted(set(summary["stub_passing"]) - set(summary["failed"]))
    assert passed == ["polyglot/go/ledger", "polyglot/java/ledger", "polyglot/javascript/ledger"]
    assert summary["pass_num_1"] == 3 and summary["score_without_stub_passing"] == 0.0
