"""Procedural bug injection: each transform, the pytest log parser, and the repo:PATH pipeline."""

from __future__ import annotations

import ast
import functools
import json

import pytest

from hrmcode.data.bugs import candidates, parse_pytest_log, read_repo, repo_tasks
from hrmcode.data.testfiles import is_test_path
from hrmcode.data.bugs.procedural import candidate_bugs
from hrmcode.data.synthesize import synthesize
from hrmcode.jsonl import read_jsonl

SOURCE = '''def f(xs, lo, hi):
    total = 0
    for i in range(len(xs)):
        if xs[i] < lo and xs[0] != hi:
            total += xs[-1]
        pick(lo, hi)
    return total + 2
'''


@functools.cache
def _seeded_bugs() -> tuple:
    """SOURCE's bugs over 40 seeds (each seed makes one per modifier, each site changed with its likelihood)."""
    return tuple(b for seed in range(40) for b in candidate_bugs(SOURCE, seed))


def _bugs(kind: str) -> list[str]:
    return sorted({b.bugged for b in _seeded_bugs() if b.kind == kind})


def _changed_lines(bugged: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(SOURCE.splitlines(), bugged.splitlines()) if a != b]


@pytest.mark.parametrize("kind, before, after", [
    ("op_flip", "        if xs[i] < lo and xs[0] != hi:", "        if xs[i] >= lo and xs[0] != hi:"),
    ("op_change", "        if xs[i] < lo and xs[0] != hi:", "        if xs[i] < lo or xs[0] != hi:"),
    ("loop_off_by_one", "    for i in range(len(xs)):", "    for i in range(len(xs) + 1):"),
    ("arg_swap", "        pick(lo, hi)", "        pick(hi, lo)"),
    ("op_change_const", "    return total + 2", "    return total + 3"),
])
def test_each_transform_changes_one_line(kind, before, after):
    bugs = _bugs(kind)
    assert any(_changed_lines(b) == [(before, after)] for b in bugs), bugs
    for bugged in bugs:
        ast.parse(bugged)


def test_remove_assign_drops_one_statement_and_subscripts_move():
    removed = _bugs("remove_assign")
    assert any("    total = 0\n" not in b and b.count("\n") == SOURCE.count("\n") - 1 for b in removed)
    moved = [_changed_lines(b) for b in _bugs("loop_off_by_one")]
    assert [("            total += xs[-1]", "            total += xs[-2]")] in moved
    assert [("        if xs[i] < lo and xs[0] != hi:", "        if xs[i] < lo and xs[1] != hi:")] in moved


def test_pytest_log_parser_reads_verbose_and_summary_lines():
    log = ("tests/t.py::test_a PASSED                                   [ 50%]\n"
           "tests/t.py::test_b FAILED                                   [100%]\n"
           "=========================== short test summary info ============================\n"
           "PASSED tests/t.py::test_a\nFAILED tests/t.py::test_b - assert 1 == 2\nERROR tests/t.py::test_c\n")
    assert parse_pytest_log(log) == {"tests/t.py::test_a": "PASSED", "tests/t.py::test_b": "FAILED",
                                     "tests/t.py::test_c": "ERROR"}


def test_candidates_skip_tests_and_are_seeded(minirepo):
    info = read_repo(minirepo)
    assert info.owner == "local" and info.name == "minipkg" and len(info.commit) == 40
    pool = candidates(info, 0)
    assert pool and all(not is_test_path(c.path, "python") for c in pool)
    assert [c.bugged for c in candidates(info, 0)] == [c.bugged for c in pool]
    assert [c.bugged for c in candidates(info, 1)] != [c.bugged for c in pool]


@pytest.mark.integration
def test_repo_source_end_to_end(minirepo, tmp_path):
    result = repo_tasks(str(minirepo), test_cmd="python3 -m pytest -q tests", max_bugs=4)
    instances = list(read_jsonl(result.artifact.path / "instances.jsonl"))
    assert len(instances) == result.stats["kept"] >= 1
    commit8 = result.stats["commit"][:8]
    for instance in instances:
        assert list(instance) == ["instance_id", "repo", "patch", "FAIL_TO_PASS", "PASS_TO_PASS", "created_at",
                                  "image_name", "base_commit", "problem_statement"]
        assert instance["instance_id"].startswith(f"local__minipkg.{commit8}.func_pm_")
        assert instance["FAIL_TO_PASS"] and instance["PASS_TO_PASS"]
        assert not set(instance["FAIL_TO_PASS"]) & set(instance["PASS_TO_PASS"])
    # same repo, seed and options: same bytes
    again = repo_tasks(str(minirepo), test_cmd="python3 -m pytest -q tests", max_bugs=4, out=tmp_path / "again")
    assert (again.artifact.path / "tasks.jsonl").read_bytes() == (result.artifact.path / "tasks.jsonl").read_bytes()
    examples = synthesize(result.artifact.name)
    levels = {json.loads(line)["level"] for line in (examples.artifact.path / "examples.jsonl").read_text().splitlines()}
    assert levels == {"plan", "edit", "tool", "coord"}
