"""Forgery attempts on the verdicts that decide training data: ``validate``'s execution check and
``synthesize --source repo:``'s bug validation (FAIL_TO_PASS / PASS_TO_PASS).

The attacks are real replies (``fixtures/hostile/``) run through the real sandbox: each must be
rejected. Bug validation runs on a real git repository made here (``calc``) whose tests have ids
with spaces, ``::`` and brackets, a unittest subTest loop, and a package that prints a fake
``PASSED`` line for a test that does not exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrmcode.artifacts import ArtifactWriter, load_artifact
from hrmcode.data.bugs import REPOSITORY, parse_pytest_log, repo_tasks
from hrmcode.data.sources import fetch
from hrmcode.data.synthesize import synthesize
from hrmcode.data.validate import validate
from hrmcode.data.validate.execution import ExecChecker, TaskBook
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.sandbox.base import ExecResult, Limits
from hrmcode.sandbox.reports.pytest_report import REPORT, judge, read_report, run_suite
from tests._sandboxes import BACKENDS, read_attack, real_sandbox
from tests.synth.conftest import commit_tree

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
EVAL_HOSTILE = Path(__file__).parents[1] / "eval" / "hostile"  # eval humaneval's corpus: completions after the prompt
CALC = {
    # at exit, after pytest's capture has ended: a result line for a test that does not exist
    "calc/__init__.py": ('import atexit\nimport os\n\n'
                         'atexit.register(os.write, 1, b"tests/test_ops.py::test_ghost PASSED\\n")\n'),
    "calc/ops.py": ('"""Arithmetic helpers."""\n\n\ndef add(a, b):\n    return a + b\n\n\n'
                    "def sign(x):\n    if x < 0:\n        return -1\n    if x == 0:\n        return 0\n    return 1\n"),
    "tests/test_ops.py": '''import unittest

import pytest

from calc.ops import add, sign


@pytest.mark.parametrize("a, b, total", [(1, 2, 3), (2, 2, 4)], ids=["one two", "x::y [z]"])
def test_add(a, b, total):
    assert add(a, b) == total


def test_add_zero():
    assert add(0, 0) == 0


class SignTest(unittest.TestCase):
    def test_sign(self):
        for x, expected in ((-5, -1), (0, 0), (5, 1)):
            with self.subTest(x=x):
                self.assertEqual(sign(x), expected)
''',
}
ADD_IDS = ["tests/test_ops.py::test_add[one two]", "tests/test_ops.py::test_add[x::y [z]]"]
SIGN_ID = "tests/test_ops.py::SignTest::test_sign"
ALL_IDS = {*ADD_IDS, "tests/test_ops.py::test_add_zero", SIGN_ID}


def _git_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return commit_tree(root, "calc")


@pytest.fixture(scope="module")
def calc_bugs(tmp_path_factory):
    """Every candidate bug of the calc repository, validated: (result, instances by bugged function)."""
    root = tmp_path_factory.mktemp("calc")
    repo = _git_repo(root / "calc", CALC)
    result = repo_tasks(str(repo), test_cmd="python3 -m pytest -q tests", max_bugs=100, out=root / "tasks")
    return result, list(read_jsonl(result.artifact.path / "instances.jsonl"))


@pytest.mark.integration
def test_a_test_command_that_is_not_pytest_is_one_line_error(tmp_path, cli):
    """unittest prints its own results, but nothing hrmcode can count: refused, not guessed."""
    repo = _git_repo(tmp_path / "calc", CALC)
    result = cli("synthesize", "--source", f"repo:{repo}", "--test-cmd", "python3 -m unittest discover -s tests -t .")
    assert result.exit_code == 1, result.stderr
    line, = result.stderr.strip().splitlines()[-1:]
    assert "reference run of `python3 -m unittest discover -s tests -t .` gives no passing test: no test report" in line
    assert "must run pytest" in line


def _sign_after(patch: str) -> dict[int, int]:
    """What the bugged ``sign`` returns for the subtests' inputs (the patch applied here, in-process)."""
    from hrmcode.diffs import apply_file_diff, content_diffs

    bugged = apply_file_diff(CALC["calc/ops.py"], content_diffs(patch)[0])
    space: dict = {}
    exec(compile(bugged, "ops.py", "exec"), space)  # our own fixture code with one injected bug
    return {x: space["sign"](x) for x in (-5, 0, 5)}


@pytest.mark.integration
def test_bug_validation_keeps_exact_ids_and_subtests_and_ignores_printed_results(calc_bugs):
    result, instances = calc_bugs
    assert result.stats["reference_tests"] == 4 and result.stats["reference_passing"] == 4
    for instance in instances:
        tests = set(instance["FAIL_TO_PASS"]) | set(instance["PASS_TO_PASS"])
        # the ids are pytest's own, spaces, '::' and brackets included; the printed ghost never counts
        assert tests == ALL_IDS, tests
    add_bugs = [i for i in instances if "def add" in i["patch"] or "return a " in i["patch"]]
    assert add_bugs and all(set(ADD_IDS) <= set(i["FAIL_TO_PASS"]) for i in add_bugs)
    sign_bugs = [i for i in instances if i not in add_bugs]
    # a bug that breaks one subtest of three: the unittest test is "passed" to pytest, failed here
    one_subtest = [i for i in sign_bugs
                   if sum(v != e for v, e in zip(_sign_after(i["patch"]).values(), (-1, 0, 1))) == 1]
    assert one_subtest, [i["patch"] for i in sign_bugs]
    assert all(i["FAIL_TO_PASS"] == [SIGN_ID] for i in one_subtest)


@pytest.mark.integration
def test_the_report_not_the_output_decides(verdict_sandbox):
    """What the printed lines claim (SWE-smith's parser) against what the report says, on one run."""
    bugged = {**CALC, "calc/ops.py": CALC["calc/ops.py"].replace("    return 1\n", "    return 2\n")}
    run = run_suite(verdict_sandbox, bugged, "python3 -m pytest -q tests -rA", Limits(timeout_s=60))
    claimed = parse_pytest_log(run.result.stdout + "\n" + run.result.stderr)
    assert claimed["tests/test_ops.py::test_ghost"] == "PASSED" and claimed[SIGN_ID] == "PASSED"
    assert "tests/test_ops.py::test_add[one" in claimed  # the id cut at its space
    assert run.problem is None and run.result.exit_code == 1
    assert run.outcomes == {**dict.fromkeys(ALL_IDS, "passed"), SIGN_ID: "failed"}
    assert run.failed_subtests == {SIGN_ID: ["x=5"]}


def test_report_without_the_runs_nonce_or_end_is_no_evidence():
    nonce = "n" * 32
    good = [{"nonce": nonce, "kind": "start"},
            {"nonce": nonce, "kind": "phase", "nodeid": "t.py::a b[1]", "when": "setup", "outcome": "passed"},
            {"nonce": nonce, "kind": "phase", "nodeid": "t.py::a b[1]", "when": "call", "outcome": "passed"},
            {"nonce": nonce, "kind": "phase", "nodeid": "t.py::a b[1]", "when": "teardown", "outcome": "passed"},
            {"nonce": nonce, "kind": "end", "exitstatus": 0}]

    def run(records, exit_code=0):
        text = "".join(json.dumps(r) + "\n" for r in records)
        return judge(ExecResult(exit_code, "", "", 0.1, files={REPORT: text}), nonce, set())

    assert run(good).passed("t.py::a b[1]")
    forged = [dict(r, nonce="0" * 32) for r in good]
    assert run(forged).problem.startswith("the test report has a record the reporter did not write")
    assert run(good[:-1]).problem.startswith("the test report ends before pytest's session did")
    assert run(good + [good[-1]]).problem.startswith("the test report ends before")
    assert run(good, exit_code=1).problem.startswith("exit 1, but pytest ended with status 0")
    assert read_report("not json\n", nonce)[1] == "the test report has a line the reporter did not write"
    subtest = {"nonce": nonce, "kind": "subtest", "nodeid": "t.py::a b[1]", "outcome": "failed", "label": "x=1"}
    assert not run(good[:-1] + [subtest, good[-1]]).passed("t.py::a b[1]")


def _reply(name: str) -> str:
    return (HOSTILE / name).read_text(encoding="utf-8")


def _checker(tmp_path: Path, book: TaskBook, sandbox=None) -> ExecChecker:
    return ExecChecker(book, AppendLog(tmp_path / "exec.jsonl", key="id"), timeout_s=30.0, sandbox=sandbox)


@pytest.fixture(scope="module", params=BACKENDS)
def verdict_sandbox(request):
    """bubblewrap, and docker where an engine is up (HRMCODE_REQUIRE_DOCKER=1 makes its absence fail)."""
    return real_sandbox(request.param)


@pytest.fixture(scope="module")
def add_task(calc_bugs):
    """The bug task whose bug is ``add`` returning ``a - b``, with its repository's files."""
    result, _instances = calc_bugs
    tasks = [t for t in read_jsonl(result.artifact.path / "tasks.jsonl")
             if "return a - b" in t["files"].get("calc/ops.py", "")]
    assert len(tasks) == 1
    repository = {r["path"]: r["text"] for r in read_jsonl(result.artifact.path / REPOSITORY)}
    return TaskBook({tasks[0]["id"]: tasks[0]}, {tasks[0]["id"]: repository}), tasks[0]


def _example(task: dict, target: str, level: str) -> dict:
    return {"task_id": task["id"], "level": level, "target": target,
            "input": {"context": {"paths": sorted(task["editable"])}}}


@pytest.mark.integration
def test_an_honest_fix_passes_and_the_bug_alone_fails(add_task, verdict_sandbox, tmp_path):
    book, task = add_task
    fixed = task["files"]["calc/ops.py"].replace("return a - b", "return a + b")
    verdict, detail = _checker(tmp_path, book, verdict_sandbox).check(_example(task, f"calc/ops.py\n```python\n{fixed}```\n", "solve"))
    assert verdict == "passed", detail
    assert "not passed: " + ", ".join(ADD_IDS) in detail


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("repo_*.reply")))
def test_hostile_repository_reply_is_rejected(add_task, verdict_sandbox, tmp_path, name):
    book, task = add_task
    level = "edit" if name.endswith(".diff.reply") else "solve"
    verdict, detail = _checker(tmp_path, book, verdict_sandbox).check(_example(task, _reply(name), level))
    assert verdict == "failed", detail
    assert detail.startswith("tests fail with the target applied"), detail
    outside = {"conftest": "conftest.py", "pytest_ini": "pytest.ini", "edit_tests": "tests/test_ops.py"}
    for key, path in outside.items():
        if key in name:
            assert detail.endswith(f"; ignored (not editable): {path}"), detail


@pytest.fixture
def humaneval_book(humaneval_tasks) -> tuple[TaskBook, dict]:
    tasks = {t["id"]: t for t in read_jsonl(humaneval_tasks.path / "tasks.jsonl")}
    return TaskBook(tasks), tasks["humaneval/HumanEval/0"]


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("he_*.reply")))
def test_hostile_humaneval_reply_is_rejected(humaneval_book, verdict_sandbox, tmp_path, name):
    book, task = humaneval_book
    example = {"task_id": task["id"], "level": "solve", "target": _reply(name),
               "input": {"context": {"paths": ["solution.py"]}}}
    verdict, detail = _checker(tmp_path, book, verdict_sandbox).check(example)
    assert verdict == "failed", detail
    assert detail.startswith("tests fail with the target applied"), detail


@pytest.mark.integration
def test_validate_rejects_planted_attacks_beside_honest_examples(calc_bugs, tmp_path):
    result, instances = calc_bugs
    honest = [json.loads(line) for line in
              (synthesize(str(result.artifact.path), levels=("edit",)).artifact.path / "examples.jsonl").read_text().splitlines()]
    assert len(honest) == len(instances)
    template = next(e for e in honest if "return a - b" in e["input"]["context"]["files"]["calc/ops.py"])
    planted = []
    for name in ("repo_conftest_marks_passed.reply", "repo_pytest_ini_collect_only.reply", "repo_exit0_at_import.reply"):
        attack = dict(template, id=f"{template['task_id']}#hostile-{name}", target=_reply(name))
        attack["level"] = "edit" if name.endswith(".diff.reply") else "solve"
        planted.append(attack)
    with ArtifactWriter(tmp_path / "linked", "examples", name="linked", inputs=[load_artifact(result.artifact.path, "tasks")],
                        update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", honest + planted)
        linked = writer.finish({})
    report = validate(linked.path, allow_contaminated=True, out=tmp_path / "v").report
    assert report["gates"]["exec_passed"] == len(honest)
    rejected = {r["id"]: r["reasons"] for r in read_jsonl(tmp_path / "v" / "rejected.jsonl")}
    assert set(rejected) == {a["id"] for a in planted}
    assert any("ignored (not editable): conftest.py" in r for r in rejected[planted[0]["id"]])
    assert any("ignored (not editable): pytest.ini" in r for r in rejected[planted[1]["id"]])


@pytest.fixture
def exercise_book(exercise_tasks) -> tuple[TaskBook, dict]:
    tasks = {t["id"]: t for t in read_jsonl(exercise_tasks.path / "tasks.jsonl")}
    return TaskBook(tasks), tasks["polyglot/python/doubler"]


def _exercise_example(task: dict, target: str) -> dict:
    return {"task_id": task["id"], "level": "solve", "target": target, "input": {"context": {"paths": ["doubler.py"]}}}


@pytest.mark.integration
def test_an_honest_exercise_solution_passes(exercise_book, verdict_sandbox, tmp_path):
    book, task = exercise_book
    target = f"doubler.py\n```python\n{task['solution']['files']['doubler.py']}```\n"
    verdict, detail = _checker(tmp_path, book, verdict_sandbox).check(_exercise_example(task, target))
    assert verdict == "passed", detail


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("ex_*.reply")))
def test_hostile_exercise_reply_is_rejected(exercise_book, verdict_sandbox, tmp_path, name):
    book, task = exercise_book
    verdict, detail = _checker(tmp_path, book, verdict_sandbox).check(_exercise_example(task, _reply(name)))
    assert verdict == "failed", detail
    assert detail.startswith("tests fail with the target applied"), detail
    if "conftest" in name:
        assert detail.endswith("; ignored (not editable): conftest.py, doubler_test.py"), detail


@pytest.fixture(scope="module")
def humaneval_all(tmp_path_factory) -> TaskBook:
    """The first 14 HumanEval tasks (those eval humaneval's hostile corpus answers), as ``validate`` reads them."""
    tasks = fetch("humaneval", limit=14, workspace=tmp_path_factory.mktemp("ws")).artifact
    return TaskBook({t["id"]: t for t in read_jsonl(tasks.path / "tasks.jsonl")})


def _solve(task: dict, solution: str) -> dict:
    return {"task_id": task["id"], "level": "solve", "target": f"```python\n{solution}```\n",
            "input": {"context": {"paths": ["solution.py"]}}}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(p.name for p in EVAL_HOSTILE.glob("he_*.py")))
def test_eval_humaneval_attacks_fail_validate(humaneval_all, verdict_sandbox, tmp_path, name):
    """Every attack of ``eval humaneval``'s corpus, as the solution file of a solve example (the
    task's prompt, then the completion): validate's check is the same trusted driver, so each fails."""
    header, lines = read_attack(EVAL_HOSTILE / name)
    task = humaneval_all.tasks[f"humaneval/{header['task']}"]
    example = _solve(task, task["prompt"] + "".join(lines))
    checker = ExecChecker(humaneval_all, AppendLog(tmp_path / "exec.jsonl", key="id"), timeout_s=2.0, sandbox=verdict_sandbox)
    verdict, detail = checker.check(example)
    assert verdict == "failed", detail
    assert detail.startswith("tests fail with the target applied ("), detail


@pytest.mark.integration
@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/4", "HumanEval/13"])
def test_an_honest_humaneval_solution_passes_and_its_stub_fails(humaneval_all, verdict_sandbox, tmp_path, task_id):
    task = humaneval_all.tasks[f"humaneval/{task_id}"]
    verdict, detail = _checker(tmp_path, humaneval_all, verdict_sandbox).check(
        _solve(task, task["solution"]["files"]["solution.py"]))
    assert verdict == "passed", detail
    assert detail.startswith("target passes, stub fails (driver: failed"), detail


@pytest.mark.integration
def test_a_solution_that_starts_with_a_future_import_is_judged_on_its_code(humaneval_book, tmp_path):
    """The driver runs prompt + solution as one program; the solution's ``from __future__`` goes first."""
    book, task = humaneval_book
    body = ('    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n')
    good = f'"""Close elements."""\nfrom __future__ import annotations\n\nfrom typing import List\n\n\n' \
           f'def has_close_elements(numbers: List[float], threshold: float) -> bool:\n{body}'
    wrong = good.replace("< threshold", "> threshold")
    checker = _checker(tmp_path, book, real_sandbox("local"))
    for target, expected in ((good, "passed"), (wrong, "failed")):
        example = {"task_id": task["id"], "level": "solve", "target": f"solution.py\n```python\n{target}```\n",
                   "input": {"context": {"paths": ["solution.py"]}}}
        verdict, detail = checker.check(example)
        assert verdict == expected, detail
