"""analyze: per-task profile columns and curriculum rules, on fixture tasks of every kind."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hrmcode.artifacts import load_artifact
from hrmcode.data.analyze import DOMAINS, analyze, profile, read_tasks
from hrmcode.data.schema import Solution, Task, Tests
from hrmcode.data.sources import fetch
from hrmcode.jsonl import write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"


def _rows(tmp_path: Path, tasks: list[Task]) -> dict[str, dict]:
    path = tmp_path / "tasks.jsonl"
    write_jsonl(path, tasks)
    return {row["id"]: row for row in profile(read_tasks(path)).to_dicts()}


def test_repo_patch_profile_from_the_swe_smith_fixture():
    fetched = fetch("swe-smith", from_path=FIXTURES / "swe_smith_9field.jsonl")
    artifact, summary = analyze(fetched.artifact.path)
    rows = {r["id"]: r for r in pl.read_parquet(artifact.path / "analysis.parquet").to_dicts()}
    row = rows["swe-smith/acme__calc.1a2b3c4d.func_pm_op_change__k3j9x0aa"]
    # the fix touches ops.py (2 hunks merged into 1) and server.go (1 hunk)
    assert row["files_touched"] == 2 and row["hunks"] == 2
    assert row["lines_added"] == 3 and row["lines_removed"] == 3
    assert row["tests"] == 3 and row["languages"] == ["go", "python"]
    assert row["stage"] == 4 and row["stage_name"] == "tool_use"
    assert {"git", "docker", "python", "pytest", "go"} <= set(row["tools"])
    assert row["estimated_agents"] == 3 and row["coordination"] == "team" and row["hierarchical_depth"] == 3
    assert summary["tasks"] == 2 and summary["by_stage"] == [{"stage": 4, "stage_name": "tool_use", "tasks": 2}]
    assert load_artifact(artifact.path, "analysis").manifest["inputs"][0]["kind"] == "tasks"


def test_polyglot_fixture_tests_tools_and_stages():
    fetched = fetch("polyglot", from_path=FIXTURES / "polyglot")
    artifact, _ = analyze(fetched.artifact.path)
    rows = {r["language"]: r for r in pl.read_parquet(artifact.path / "analysis.parquet").to_dicts()}
    assert rows["python"]["tests"] == 2 and rows["rust"]["tests"] == 2 and rows["java"]["tests"] == 2
    assert rows["javascript"]["tests"] == 2 and rows["cpp"]["tests"] == 2 and rows["go"]["tests"] == 2
    assert rows["cpp"]["files_touched"] == 2 and rows["cpp"]["stage"] == 3  # .cpp + .h
    assert rows["java"]["stage"] == 3  # reference adds Helper.java
    assert rows["python"]["stage"] == 1 and rows["python"]["stage_name"] == "syntax"  # one short loop-free line
    assert {"g++", "cmake"} <= set(rows["cpp"]["tools"]) and {"javac", "junit", "gradle"} <= set(rows["java"]["tools"])
    assert {"node", "npm", "jest"} <= set(rows["javascript"]["tools"]) and "cargo" in rows["rust"]["tools"]


def test_stage_rules_and_domains(tmp_path):
    short = Task(id="t/short", source="t", language="python", kind="function", prompt="Return the sum of two numbers.",
                 files={"solution.py": "def add(a, b):\n"}, editable=["solution.py"],
                 solution=Solution(files={"solution.py": "def add(a, b):\n    return a + b\n"}),
                 tests=Tests(files={"test.py": "def check(c):\n    assert c(1, 2) == 3\n    assert c(0, 0) == 0\n"}))
    looping = short.model_copy(update={
        "id": "t/loop",
        "solution": Solution(files={"solution.py": "def add(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n"}),
    })
    stdin = Task(id="t/stdin", source="t", language="python", kind="stdin",
                 prompt="Parse the HTTP request, the URL and the cookie from the browser, then print the response.")
    game = Task(id="t/game", source="t", language="python", kind="stdin", prompt="Score a bowling game for each player.")
    rows = _rows(tmp_path, [short, looping, stdin, game])
    assert rows["t/short"]["stage"] == 1 and rows["t/short"]["solution_lines"] == 1 and rows["t/short"]["tests"] == 2
    assert rows["t/loop"]["stage"] == 2
    assert rows["t/stdin"]["stage"] == 2 and rows["t/stdin"]["domain"] == "web" and rows["t/stdin"]["score_web"] >= 4
    assert rows["t/game"]["domain"] == "game"
    assert rows["t/short"]["domain"] == "general"
    assert all(f"score_{d}" in rows["t/short"] for d in DOMAINS)


def test_analysis_is_deterministic(tmp_path):
    fetched = fetch("polyglot", from_path=FIXTURES / "polyglot")
    first, _ = analyze(fetched.artifact.path, out=tmp_path / "a")
    second, _ = analyze(fetched.artifact.path, out=tmp_path / "b")
    assert (first.path / "analysis.parquet").read_bytes() == (second.path / "analysis.parquet").read_bytes()


@pytest.mark.shared
def test_polyglot_shared_profile(shared_dir):
    fetched = fetch("polyglot", from_path=shared_dir / "polyglot-benchmark")
    artifact, summary = analyze(fetched.artifact.path)
    frame = pl.read_parquet(artifact.path / "analysis.parquet")
    tests = dict(frame.group_by("language").agg(pl.col("tests").sum()).iter_rows())
    # test counts of the real 225 exercises: 459 TEST_CASE, 114 func Test, 790 @Test, 584 def test, 650 #[test]
    assert tests["cpp"] == 459 and tests["go"] == 114 and tests["java"] == 790
    assert tests["python"] == 584 and tests["rust"] == 650
    assert summary["tasks"] == 225
