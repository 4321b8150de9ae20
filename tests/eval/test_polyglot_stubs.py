"""Polyglot: which stubs already pass is decided by running them (cached per stub content), and the
answers that never change (oracle, stub) get one try."""

from __future__ import annotations

import json

import pytest

from hrmcode.data.schema import Task
from hrmcode.eval.backends import OracleBackend, StubBackend
from hrmcode.eval.polyglot import STUBS_THAT_PASS, Polyglot, exercise_name, stub_verdict_path

TEST_FILE = "from adder import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
FAILING_STUB = Task(
    id="polyglot/python/adder", source="polyglot", language="python", kind="exercise", prompt="Implement add.\n",
    files={"adder.py": "def add(a, b):\n    pass\n"}, editable=["adder.py"],
    solution={"files": {"adder.py": "def add(a, b):\n    return a + b\n"}},
    tests={"files": {"adder_test.py": TEST_FILE}},
)
# a "refactor this working code" exercise: the stub already works
WORKING_STUB = FAILING_STUB.model_copy(update={
    "id": "polyglot/python/refactor-adder", "files": {"adder.py": "def add(a, b):\n    return b + a\n"}})
WRONG_REFERENCE = FAILING_STUB.model_copy(update={
    "id": "polyglot/python/bad-reference", "solution": FAILING_STUB.solution.model_copy(
        update={"files": {"adder.py": "def add(a, b):\n    return a - b\n"}})})


class CountingSandbox:
    """The eval sandbox, counting the test runs it is asked for."""

    def __init__(self, inner):
        self.inner, self.runs, self.name = inner, 0, inner.name

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.inner.run(*args, **kwargs)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path / "cache"))


def test_stub_verdicts_come_from_running_the_stub_once(sandbox, own_cache):
    counting = CountingSandbox(sandbox)

    class Nothing:  # a model that never answers: the case itself does not run the stub as the stub backend would
        name = "nothing"

        def describe(self):
            return {"model": "nothing"}

        def complete(self, request):
            return StubBackend().complete(request)

    bench = Polyglot(Nothing(), counting, tries=1)
    records = [bench.evaluate_one(task, worker=0) for task in (FAILING_STUB, WORKING_STUB)]
    assert [r["stub_passes"] for r in records] == [False, True]
    assert counting.runs == 4  # each case's try, and each stub's own run
    assert json.loads(stub_verdict_path(WORKING_STUB, "strict", counting).read_text())["passed"] is True
    summary = bench.summarize(records, [FAILING_STUB, WORKING_STUB])
    assert summary["stub_passing"] == ["polyglot/python/refactor-adder"]
    assert summary["languages"]["python"]["stub_passing"] == 1
    assert summary["score_without_stub_passing"] == 0.0
    # the verdict is kept: the next run does not test the stubs again
    again = [bench.evaluate_one(task, worker=0) for task in (FAILING_STUB, WORKING_STUB)]
    assert [r["stub_passes"] for r in again] == [False, True] and counting.runs == 6
    # a changed stub is a new verdict
    changed = WORKING_STUB.model_copy(update={"files": {"adder.py": "def add(a, b):\n    return 0\n"}})
    assert bench.stub_passes(changed, worker=0) is False and counting.runs == 7
    assert stub_verdict_path(changed, "strict", counting) != stub_verdict_path(WORKING_STUB, "strict", counting)
    strict = stub_verdict_path(WORKING_STUB, "strict", counting)
    assert stub_verdict_path(WORKING_STUB, "aider-compat", counting) != strict


def test_the_stub_model_reuses_its_own_run_as_the_stub_verdict(sandbox, own_cache):
    counting = CountingSandbox(sandbox)
    bench = Polyglot(StubBackend(), counting)
    records = [bench.evaluate_one(task, worker=0) for task in (FAILING_STUB, WORKING_STUB)]
    assert [r["tests_outcomes"] for r in records] == [[False], [True]]  # one try each
    assert [r["stub_passes"] for r in records] == [False, True] and counting.runs == 2


def test_oracle_and_stub_get_one_try(sandbox, own_cache):
    oracle = Polyglot(OracleBackend(), sandbox, tries=3)
    stub = Polyglot(StubBackend(), sandbox, tries=3)
    assert oracle.tries == 1 and stub.tries == 1
    record = oracle.evaluate_one(WRONG_REFERENCE, worker=0)
    assert record["tests_outcomes"] == [False] and record["model_turns"] == 1
    summary = oracle.summarize([record], [WRONG_REFERENCE])
    assert summary["tries"] == 1 and "pass_rate_2" not in summary and summary["score"] == summary["pass_rate_1"]


@pytest.mark.shared
@pytest.mark.integration
def test_stubs_found_passing_by_running_are_the_documented_six(shared_dir):
    """Cross-check on the published 225: running every stub finds exactly ``STUBS_THAT_PASS``.
    Cold, this runs 225 stubs (minutes); the verdicts are kept, so later runs only read them."""
    from hrmcode.data.sources.polyglot import LANGUAGES, exercise_dirs, to_task
    from hrmcode.sandbox import get_sandbox, run_many

    tasks = [to_task(language, slug, path)
             for language, slug, path in exercise_dirs(shared_dir / "polyglot-benchmark", LANGUAGES)]
    assert len(tasks) == 225
    bench = Polyglot(StubBackend(), get_sandbox("local"))
    verdicts = run_many([lambda worker, task=task: bench.stub_passes(task, worker) for task in tasks], 2)
    assert {exercise_name(t) for t, passed in zip(tasks, verdicts) if passed} == STUBS_THAT_PASS


def test_the_record_says_a_stub_passes_only_from_a_run(sandbox, own_cache):
    # a task named like a documented free stub, whose stub fails: the name does not make it pass
    task = FAILING_STUB.model_copy(update={"id": "polyglot/go/ledger"})
    assert "go/ledger" in STUBS_THAT_PASS
    record = Polyglot(StubBackend(), sandbox).evaluate_one(task, worker=0)
    assert record["stub_passes"] is False
