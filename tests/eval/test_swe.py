"""``hrmcode eval swe`` end to end on tasks generated from examples/demo-repo, in the real local sandbox:
the gold agent resolves every task, the stub none; outputs (results, trajectories, predictions,
SWE-bench report); resume after a torn results.jsonl; routing across models; the planner; refusals."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hrmcode.eval.swe import (
    AgentAnswers,
    PlanAnswers,
    SweSettings,
    fixed_files,
    gold_command,
    parse_weights,
    plan_lines,
    route,
    summarize_records,
    swe_bench_report,
)
from hrmcode.errors import UsageError
from tests.eval.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo-repo"


def _hrmcode(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HRMCODE_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "hrmcode", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=900)


def _synthesize(root: Path, test_cmd: str) -> Path:
    """A tasks artifact of bugs injected into a copy of the demo repository (``synthesize --source repo:``)."""
    repo = root / "demo"
    shutil.copytree(DEMO, repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git[:3], "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "demo"], check=True,
                   env={**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
                        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"})
    workspace = root / "ws"
    made = _hrmcode("--workspace", str(workspace), "synthesize", "--source", f"repo:{repo}",
                    "--test-cmd", test_cmd, "--max-bugs", "3", "--levels", "plan")
    assert made.returncode == 0, made.stderr
    [tasks] = [p for p in (workspace / "fetch").glob("*/*") if (p / "tasks.jsonl").is_file()]
    assert sum(1 for _ in (tasks / "tasks.jsonl").open()) >= 2
    return tasks


@pytest.fixture(scope="module")
def demo_tasks(tmp_path_factory) -> Path:
    from tests._sandboxes import real_sandbox

    real_sandbox("local")  # skips without bubblewrap
    return _synthesize(tmp_path_factory.mktemp("swe"), "python -m pytest -q tests")


def _run(cli, tasks: Path, out: Path, *args: str):
    result = cli("--json", "eval", "swe", "--tasks", str(tasks), "--out", str(out), *args)
    payload = json.loads(result.stdout) if result.exit_code in (0, 1) and result.stdout.strip() else None
    return result, payload


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _task_ids(tasks: Path) -> list[str]:
    return sorted(record["id"] for record in _jsonl(tasks / "tasks.jsonl"))


# -- end to end ----------------------------------------------------------------------------------

def test_oracle_resolves_every_task_and_writes_swe_bench_outputs(cli, demo_tasks, tmp_path):
    out = tmp_path / "oracle"
    result, payload = _run(cli, demo_tasks, out, "--model", "oracle", "-j", "2", "--fail-under", "100")
    assert result.exit_code == 0, result.stdout + result.stderr
    ids = _task_ids(demo_tasks)
    assert payload["score"] == 100.0 and payload["resolved_rate"] == 100.0 and payload["pass@1"] == 1.0
    assert payload["cases"] == len(ids) and payload["failed"] == []
    assert payload["exit_status"] == {"submitted": len(ids)} and payload["mean_steps"] == 2.0
    assert payload["f2p_fixed_mean"] == 1.0 and payload["p2p_broken_total"] == 0

    results = _jsonl(out / "results.jsonl")
    assert [r["id"] for r in results] == [f"{i}@1" for i in ids]
    assert all(r["resolved"] and r["model"] == "oracle" and r["model_patch"].startswith("diff") for r in results)
    assert all(all(v == "passed" for v in r["grade"]["fail_to_pass"].values()) for r in results)

    trajectories = _jsonl(out / "trajectories.jsonl")
    assert [t["id"] for t in trajectories] == [r["id"] for r in results]
    for t in trajectories:
        assert t["model"] == "oracle" and t["reward"] == 1.0 and t["exit_status"] == "submitted"
        assert [s["action"]["kind"] for s in t["steps"]] == ["bash", "submit"]
        assert t["steps"][-1]["reward"] == 1.0 and t["steps"][-1]["done"] and t["steps"][0]["reward"] == 0.0
        assert t["steps"][0]["exit_code"] == 0
        assert [m["role"] for m in t["messages"]][:3] == ["system", "user", "assistant"]

    predictions = _jsonl(out / "predictions.jsonl")
    instances = sorted(i.split("/", 1)[1] for i in ids)
    assert sorted(p["instance_id"] for p in predictions) == instances
    assert all(p["model_name_or_path"] == "oracle" and p["model_patch"] for p in predictions)
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 2 and report["resolved_ids"] == instances
    assert report["resolved_instances"] == report["completed_instances"] == report["total_instances"] == len(ids)
    assert report["empty_patch_ids"] == report["error_ids"] == report["unresolved_ids"] == []
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {o["name"] for o in manifest["outputs"]}
    assert {"results.jsonl", "trajectories.jsonl", "predictions.jsonl", "report.json", "summary.json",
            "report.html", "trajectories.html"} <= listed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict_rules"] >= 2 and summary["score"] == 100.0
    viewer = (out / "trajectories.html").read_text()  # each attempt with its command, diff and graded tests
    assert viewer.count('<div class="step">') == 2 * len(ids) and viewer.count('class="outcome passed"') == len(ids)
    first = results[0]
    assert html.escape(first["model_patch"].splitlines()[0]) in viewer
    assert all(f"passed     {html.escape(test)}" in viewer for test in first["grade"]["fail_to_pass"])


def test_stub_resolves_nothing_and_fail_under_fails(cli, demo_tasks, tmp_path):
    out = tmp_path / "stub"
    result, payload = _run(cli, demo_tasks, out, "--model", "stub", "--fail-under", "1")
    assert result.exit_code == 1, result.stdout + result.stderr
    ids = _task_ids(demo_tasks)
    assert payload["score"] == 0.0 and payload["resolved"] == 0 and payload["empty_patches"] == len(ids)
    assert payload["exit_status"] == {"submitted": len(ids)} and payload["mean_steps"] == 1.0
    assert sorted(payload["failed"]) == [f"{i}@1" for i in ids]
    report = json.loads((out / "report.json").read_text())
    assert report["resolved_ids"] == [] and len(report["empty_patch_ids"]) == len(ids)
    trajectories = _jsonl(out / "trajectories.jsonl")
    assert all(t["reward"] == 0.0 and t["steps"][-1]["reward"] == 0.0 for t in trajectories)

    oracle = tmp_path / "oracle"
    assert _run(cli, demo_tasks, oracle, "--model", "oracle")[0].exit_code == 0
    compared = cli("--json", "eval", "compare", str(out), str(oracle))
    report = json.loads(compared.stdout)
    assert report["bench"] == "swe" and report["score_a"] == 0.0 and report["score_b"] == 100.0
    assert len(report["improved"]) == len(ids) and report["regressed"] == []


def test_rerun_after_a_kill_skips_finished_attempts_and_duplicates_none(cli, demo_tasks, tmp_path):
    out = tmp_path / "run"
    assert _run(cli, demo_tasks, out, "--model", "oracle")[0].exit_code == 0
    ids = _task_ids(demo_tasks)
    results = (out / "results.jsonl").read_text().splitlines(keepends=True)
    # what a kill -9 leaves: the first attempt's record, a torn second one, no manifest
    (out / "results.jsonl").write_text(results[0] + results[1][: len(results[1]) // 2])
    (out / "manifest.json").unlink()
    result, payload = _run(cli, demo_tasks, out, "--model", "oracle")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["ran"] == len(ids) - 1 and payload["skipped"] == 1 and payload["score"] == 100.0
    assert [r["id"] for r in _jsonl(out / "results.jsonl")] == [f"{i}@1" for i in ids]
    assert [t["id"] for t in _jsonl(out / "trajectories.jsonl")] == [f"{i}@1" for i in ids]
    assert len(_jsonl(out / "predictions.jsonl")) == len(ids)
    # another experiment in the same directory is refused
    other, _ = _run(cli, demo_tasks, out, "--model", "stub")
    assert other.exit_code == 2 and "different" in other.stderr


def test_several_models_are_routed_and_recorded(cli, demo_tasks, tmp_path):
    ids = _task_ids(demo_tasks)
    out = tmp_path / "mixed"
    result, payload = _run(cli, demo_tasks, out, "--model", "oracle", "--model", "stub", "--attempts", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    expected = route(ids, ["oracle", "stub"], None, 0)
    assert sorted(set(expected.values())) == ["oracle", "stub"]
    for record in _jsonl(out / "results.jsonl"):
        assert record["model"] == expected[record["task_id"]]
        assert record["resolved"] == (record["model"] == "oracle")
    for trajectory in _jsonl(out / "trajectories.jsonl"):
        assert trajectory["model"] == trajectory["policy"] == expected[trajectory["task_id"]]
    for prediction in _jsonl(out / "predictions.jsonl"):
        assert prediction["model_name_or_path"] == expected[f"swe-smith/{prediction['instance_id']}"]
    assert payload["trajectories"] == 2 * len(ids) and payload["attempts"] == 2
    oracle_tasks = sum(1 for m in expected.values() if m == "oracle")
    assert payload["pass@2"] == pytest.approx(oracle_tasks / len(ids), abs=1e-6)
    assert payload["by_model"]["oracle"]["resolved_rate"] == 100.0 and payload["by_model"]["stub"]["resolved"] == 0

    weighted = tmp_path / "weighted"
    result, payload = _run(cli, demo_tasks, weighted, "--model", "oracle", "--model", "stub", "--model-weights", "0,1")
    assert result.exit_code == 0 and payload["score"] == 0.0 and payload["models"] == ["oracle", "stub"]
    assert {r["model"] for r in _jsonl(weighted / "results.jsonl")} == {"stub"}


def test_planner_plan_reaches_the_actor_and_is_recorded(cli, demo_tasks, tmp_path):
    out = tmp_path / "planned"
    result, payload = _run(cli, demo_tasks, out, "--model", "oracle", "--planner", "oracle", "--limit", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["planner"] == "oracle" and payload["score"] == 100.0
    [record] = _jsonl(out / "results.jsonl")
    [trajectory] = _jsonl(out / "trajectories.jsonl")
    task = next(t for t in _jsonl(demo_tasks / "tasks.jsonl") if t["id"] == record["task_id"])
    [changed] = task["metadata"]["changed_files"]
    assert record["plan"].startswith(f"FILE {changed}\n") and "\nTEST " in record["plan"]
    assert trajectory["planner"] == "oracle" and trajectory["plan"] == record["plan"]
    assert record["plan"].strip() in trajectory["messages"][1]["content"]


def test_bad_input_is_one_line_and_writes_nothing(cli, demo_tasks, tmp_path, monkeypatch):
    out = tmp_path / "bad"
    monkeypatch.delenv("HRMCODE_SWEREX_TOKEN", raising=False)
    cases = [
        (["--tasks", str(tmp_path / "missing"), "--model", "oracle"], 1, "missing"),
        (["--tasks", str(demo_tasks), "--model", f"samples:{tmp_path / 's.jsonl'}"], 2, "samples"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--search", "mcts-ish"], 2, "--search"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--model-weights", "1,2"], 2, "--model-weights"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--planner", "samples:x"], 2, "samples"),
        (["--tasks", str(demo_tasks)], 2, "--model"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--grade-timeout", "0"], 2, "--grade-timeout"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--runtime", "swerex:modal"], 2, "--runtime"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--runtime", "docker"], 2, "--runtime"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--runtime", "swerex:local-unsafe"], 2, "unisolated"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--search-widening"], 2, "--search mcts"),
        (["--tasks", str(demo_tasks), "--model", "oracle", "--runtime", "swerex:remote:http://127.0.0.1:9"], 2,
         "HRMCODE_SWEREX_TOKEN"),
    ]
    for args, code, word in cases:
        result = cli("eval", "swe", "--out", str(out), *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == code, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and word in lines[0], (args, result.stderr)
        assert not out.exists() or not any(out.iterdir()), args


# -- the pieces ------------------------------------------------------------------------------------

def test_route_round_robin_and_weights_are_deterministic():
    ids = [f"t{i}" for i in range(20)]
    assert route(ids, ["a", "b"], None, 0) == {t: "ab"[i % 2] for i, t in enumerate(sorted(ids))}
    weighted = route(ids, ["a", "b"], [3, 1], 7)
    assert weighted == route(list(reversed(ids)), ["a", "b"], [3, 1], 7)  # order-free
    assert route(ids[:5], ["a", "b"], [3, 1], 7) == {t: weighted[t] for t in ids[:5]}  # selection-free
    assert set(weighted.values()) == {"a", "b"}
    assert set(route(ids, ["a", "b"], [0, 1], 7).values()) == {"b"}
    for bad in ("1", "a,b", "-1,2", "0,0"):
        with pytest.raises(UsageError):
            parse_weights(bad, ["a", "b"])


class _Task:
    id = "swe-smith/x"
    instance_id = "x"
    language = "python"
    problem = "fix it"
    test_command = "pytest"
    fail_to_pass = ["tests/test_m.py::test_a"]
    pass_to_pass: list[str] = []
    files = {"pkg/m.py": "def a():\n    return 1\n", "old.py": "gone = 1\n", "tests/test_m.py": "x = 1\n"}
    gold_patch = ("--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -1,2 +1,2 @@\n def a():\n-    return 1\n+    return 2\n"
                  "--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone = 1\n"
                  "--- /dev/null\n+++ b/new/dir/n.py\n@@ -0,0 +1 @@\n+made = \"```'$(x)\"\n")


def test_gold_command_leaves_the_files_the_gold_patch_makes(tmp_path):
    task = _Task()
    for path, text in task.files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert fixed_files(task) == {"pkg/m.py": "def a():\n    return 2\n", "old.py": None,
                                 "new/dir/n.py": "made = \"```'$(x)\"\n"}
    subprocess.run(["bash", "-c", gold_command(task)], cwd=tmp_path, check=True)
    files = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == {"pkg/m.py": "def a():\n    return 2\n", "tests/test_m.py": "x = 1\n",
                     "new/dir/n.py": "made = \"```'$(x)\"\n"}


def test_the_gold_agent_decides_its_turn_from_the_messages_alone():
    from hrmcode.agent.protocol import SUBMIT_SENTINEL, parse_action
    from hrmcode.eval.backends import Request

    answers, task = AgentAnswers(), _Task()
    first = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    act = parse_action(answers.reference_answer(Request("swe", task, first)).text)  # type: ignore[arg-type]
    assert act.kind == "bash" and act.command == gold_command(task)
    later = first + [{"role": "assistant", "content": "a"}, {"role": "user", "content": "o"}]
    assert parse_action(answers.reference_answer(Request("swe", task, later)).text).kind == "submit"  # type: ignore[arg-type]
    stub = parse_action(answers.stub_answer(Request("swe", task, first)).text)  # type: ignore[arg-type]
    assert stub.kind == "submit" and stub.command == SUBMIT_SENTINEL
    plan = PlanAnswers().reference_answer(Request("swe", task, first)).text  # type: ignore[arg-type]
    assert plan.splitlines()[:3] == ["FILE pkg/m.py", "FILE old.py", "FILE new/dir/n.py"]
    assert "TEST tests/test_m.py::test_a" in plan.splitlines()


def test_plan_lines_keep_only_the_plan_format():
    reply = "Here is my plan:\n```\nFILE a.py\nTOUCH a.py::f\nTEST t.py::test_f\nRUN pytest -q\n```\nGood luck."
    assert plan_lines(reply) == "FILE a.py\nTOUCH a.py::f\nTEST t.py::test_f\nRUN pytest -q\n"
    assert plan_lines("I would look at the code first.") is None
    assert plan_lines("FILE\nFILES a.py") is None


def _record(task: str, attempt: int, resolved: bool, *, empty: bool = False, error: str | None = None,
            model: str = "m") -> dict:
    return {"id": f"{task}@{attempt}", "task_id": task, "instance_id": task.split("/", 1)[1], "attempt": attempt,
            "model": model, "resolved": resolved, "empty_patch": empty, "error": error, "steps": 3,
            "prompt_tokens": 10, "completion_tokens": 5, "seconds": {"agent": 1.0, "grade": 2.0},
            "exit_status": "submitted", "f2p_fixed": 1.0 if resolved else 0.5, "p2p_broken": 0 if resolved else 1,
            "model_patch": "" if empty else "diff"}


def test_report_and_summary_follow_swe_bench_and_the_unbiased_estimator():
    picked = [_record("s/a", 1, True), _record("s/b", 1, False), _record("s/c", 1, False, empty=True),
              _record("s/d", 1, False, error="timed out")]
    report = swe_bench_report(picked)
    assert (report["total_instances"], report["completed_instances"], report["resolved_instances"],
            report["unresolved_instances"], report["empty_patch_instances"], report["error_instances"]) == (4, 2, 1, 1, 1, 1)
    assert report["resolved_ids"] == ["a"] and report["unresolved_ids"] == ["b"] and report["error_ids"] == ["d"]
    records = [_record("s/a", 1, True), _record("s/a", 2, False), _record("s/a", 3, False),
               _record("s/b", 1, False), _record("s/b", 2, False), _record("s/b", 3, True)]
    settings = SweSettings(limits=None, models=["m"], attempts=3, search="best-of-n")  # type: ignore[arg-type]
    summary = summarize_records(records, settings, {"s/a": 2, "s/b": 3})
    assert summary["pass@1"] == pytest.approx(1 / 3) and summary["pass@3"] == 1.0 and summary["score"] == 33.33
    assert summary["best_of_n"] == {"picked": 2, "resolved": 1, "resolved_rate": 50.0}
    assert summary["p2p_broken_total"] == 4 and summary["f2p_fixed_mean"] == pytest.approx(2 / 3, abs=1e-4)


# -- a scripted OpenAI-compatible model --------------------------------------------------------------

def _tasks_by_problem(tasks: Path) -> dict[str, dict]:
    return {t["prompt"]: t for t in _jsonl(tasks / "tasks.jsonl")}


def _problem_of(body: dict) -> str:
    """The task text the agent was given (the first user message holds it)."""
    return body["messages"][1]["content"]


def _scripted(tasks: Path, script, fail_first: int = 0) -> FakeOpenAI:
    """A server playing ``script(task, turn, seed, body) -> reply text``; ``turn`` counts from 0."""
    by_problem = _tasks_by_problem(tasks)

    def answer(body: dict) -> str:
        text = _problem_of(body)
        task = next(t for problem, t in by_problem.items() if problem.strip() in text)
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        return script(task, turn, body.get("seed", 0), body)

    return FakeOpenAI(answer, fail_first=fail_first, fail_status=503)


def _fix_edit(task: dict) -> str:
    from hrmcode.diffs import apply_file_diff, content_diffs
    from hrmcode.edits import render_edits

    [diff] = content_diffs(task["solution"]["patch"])
    before = task["files"][diff.path]
    return "I fix the bug.\n\n" + render_edits({diff.path: before}, {diff.path: apply_file_diff(before, diff)}, "diff")


def _bash(command: str) -> str:
    return f"THOUGHT: next.\n\n```bash\n{command}\n```"


def test_a_multi_step_agent_that_edits_diffs_and_tests_resolves(cli, demo_tasks, tmp_path):
    def script(task, turn, seed, body):
        return [_bash("grep -rn 'def ' toolkit | head -20"), _fix_edit(task), _bash("git status --short && git diff"),
                _bash("python -m pytest -q tests 2>&1 | tail -3"), _bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")][turn]

    with _scripted(demo_tasks, script) as server:
        out = tmp_path / "scripted"
        result, payload = _run(cli, demo_tasks, out, "--model", f"openai:{server.url}", "--model-name", "scripted")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["score"] == 100.0 and payload["mean_steps"] == 5.0
    for t in _jsonl(out / "trajectories.jsonl"):
        kinds = [s["action"]["kind"] for s in t["steps"]]
        assert kinds == ["bash", "edit", "bash", "bash", "submit"], kinds
        git_diff = t["steps"][2]["observation"]
        assert "diff --git" in git_diff and "M toolkit/" in git_diff  # the session is a git repo at the base
        assert " passed" in t["steps"][3]["observation"] and t["reward"] == 1.0


def test_changes_to_tests_are_discarded_and_never_resolve(cli, demo_tasks, tmp_path):
    cheat = ("cat > tests/test_toolkit.py <<'EOF'\ndef test_nothing():\n    pass\nEOF\n"
             "printf 'import pytest\\n' > conftest.py && printf '[pytest]\\naddopts = -p no:randomly\\n' > pytest.ini")

    def script(task, turn, seed, body):
        return [_bash(cheat), _bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")][turn]

    with _scripted(demo_tasks, script) as server:
        out = tmp_path / "cheat"
        result, payload = _run(cli, demo_tasks, out, "--model", f"openai:{server.url}", "--model-name", "cheater")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["score"] == 0.0 and payload["empty_patches"] == payload["cases"]
    for record in _jsonl(out / "results.jsonl"):
        assert record["model_patch"] == "" and not record["resolved"]
        assert {"tests/test_toolkit.py", "conftest.py", "pytest.ini"} <= set(record["discarded"])


def test_best_of_n_picks_from_what_the_agent_saw(cli, demo_tasks, tmp_path):
    """Attempt 1 (seed 0) submits at once; attempt 2 (seed 1) fixes, runs the tests, submits."""
    def script(task, turn, seed, body):
        if seed == 0:
            return _bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")
        return [_fix_edit(task), _bash("python -m pytest -q tests 2>&1 | tail -3"),
                _bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")][turn]

    with _scripted(demo_tasks, script) as server:
        out = tmp_path / "best"
        result, payload = _run(cli, demo_tasks, out, "--model", f"openai:{server.url}", "--model-name", "m",
                               "--attempts", "2", "--temperature", "0.7", "--search", "best-of-n")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["pass@1"] == 0.5 and payload["pass@2"] == 1.0 and payload["score"] == 50.0
    assert payload["best_of_n"]["resolved_rate"] == 100.0
    assert all(p["model_patch"] for p in _jsonl(out / "predictions.jsonl"))
    assert json.loads((out / "report.json").read_text())["resolved_instances"] == payload["cases"]


def test_a_server_that_is_down_stops_the_run_and_the_rerun_resumes(cli, demo_tasks, tmp_path):
    def script(task, turn, seed, body):
        return _bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")

    out = tmp_path / "down"
    with _scripted(demo_tasks, script, fail_first=1) as server:  # the first request gets a 503
        args = ("--model", f"openai:{server.url}", "--model-name", "m", "--retries", "0")
        result = cli("eval", "swe", "--tasks", str(demo_tasks), "--out", str(out), *args)
        assert result.exit_code == 1 and "failed after 1 tries" in result.stderr, result.stderr
        # the attempt whose model call failed is not scored (no crash record); one already running may finish
        kept = _jsonl(out / "results.jsonl")
        assert len(kept) < len(_task_ids(demo_tasks)) and all(r["exit_status"] == "submitted" for r in kept)
        result, payload = _run(cli, demo_tasks, out, *args)
    assert result.exit_code == 0, result.stderr
    assert payload["skipped"] == len(kept) and payload["ran"] == payload["cases"] - len(kept)
    assert payload["exit_status"] == {"submitted": payload["cases"]}


def test_tree_search_resolves_with_the_gold_agent(cli, demo_tasks, tmp_path):
    out = tmp_path / "mcts"
    result, payload = _run(cli, demo_tasks, out, "--model", "oracle", "--search", "mcts", "--search-budget", "4")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["score"] == 100.0 and payload["search"] == "mcts"
    for record in _jsonl(out / "results.jsonl"):
        assert record["search"]["method"] == "mcts" and record["search"]["calls"] <= 4 and record["resolved"]


def test_a_checkpoint_acts_through_its_own_prompt_format(cli, demo_tasks, tmp_path):
    """A tiny untrained model: the run completes and records what it did, whatever it resolves."""
    from hrmcode.agent.loop import EXIT_STATUSES
    from tests.quantize.tiny import make_tiny_model

    model = make_tiny_model(tmp_path, max_seq_len=4096)
    out = tmp_path / "tiny"
    result, payload = _run(cli, demo_tasks, out, "--model", f"checkpoint:{model}", "--max-tokens", "8",
                           "--step-limit", "2", "--limit", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    [trajectory] = _jsonl(out / "trajectories.jsonl")
    assert trajectory["exit_status"] in EXIT_STATUSES and trajectory["exit_status"] != "crash", trajectory.get("error")
    assert trajectory["model"] == f"checkpoint:{model}" and len(trajectory["steps"]) >= 1
    assert all(step["prompt_tokens"] > 0 and step["completion_tokens"] >= 1 for step in trajectory["steps"])
    assert payload["tokens"]["prompt"] == sum(step["prompt_tokens"] for step in trajectory["steps"])


def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(demo_tasks, tmp_path):
    import signal
    import time

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "hrmcode", "eval", "swe", "--tasks", str(demo_tasks), "--model", "oracle",
               "--attempts", "4", "-j", "2", "--out", str(out)]
    expected = sorted(f"{task}@{attempt}" for task in _task_ids(demo_tasks) for attempt in range(1, 5))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if results.is_file() and results.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the process we started, and everything it started
    process.wait()
    before = {json.loads(line)["id"] for line in results.read_bytes().split(b"\n")[:-1] if line.strip()}
    assert before and not (out / "manifest.json").exists()
    rerun = _hrmcode("--json", *command[3:])
    assert rerun.returncode == 0, rerun.stderr
    payload = json.loads(rerun.stdout)
    assert payload["skipped"] >= len(before) and payload["ran"] + payload["skipped"] == len(expected)
    assert [r["id"] for r in _jsonl(results)] == expected
    assert [t["id"] for t in _jsonl(out / "trajectories.jsonl")] == expected
    assert payload["score"] == 100.0 and payload["pass@4"] == 1.0


def test_a_checkpoint_whose_context_cannot_hold_the_task_ends_with_context_overflow(cli, demo_tasks, tmp_path):
    from tests.quantize.tiny import make_tiny_model

    model = make_tiny_model(tmp_path, max_seq_len=256)
    out = tmp_path / "short"
    result, payload = _run(cli, demo_tasks, out, "--model", f"checkpoint:{model}", "--max-tokens", "8", "--limit", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["exit_status"] == {"context_overflow": 1} and payload["mean_steps"] == 0.0


def test_a_served_model_that_refuses_a_grown_prompt_ends_with_context_overflow(cli, demo_tasks, tmp_path):
    """An OpenAI-compatible server answering HTTP 400 "maximum context length" once the conversation
    outgrows the first request by 500 characters: the step before is kept, the attempt ends as
    context_overflow with the server's reason, and the run goes on (no crash, no stopped run)."""
    sizes: list[int] = []

    def answer(body: dict) -> tuple[int, dict]:
        size = sum(len(m["content"]) for m in body["messages"])
        sizes.append(size)
        if size > sizes[0] + 500:
            return 400, {"error": {"message": f"This model's maximum context length is {sizes[0] + 500} tokens. "
                                              f"However, you requested {size} tokens.",
                                   "code": "context_length_exceeded"}}
        text = _bash("python3 -c \"print('x' * 2000)\"")
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}

    with _StatusServer(answer) as url:
        out = tmp_path / "served"
        result, payload = _run(cli, demo_tasks, out, "--model", f"openai:{url}", "--model-name", "short",
                               "--limit", "1", "--retries", "0")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["exit_status"] == {"context_overflow": 1} and payload["mean_steps"] == 1.0
    [record] = _jsonl(out / "results.jsonl")
    assert record["agent_error"].startswith("policy: ContextExceeded: the model's context is too short")
    assert "maximum context length" in record["agent_error"]
    [trajectory] = _jsonl(out / "trajectories.jsonl")
    assert trajectory["error"] == record["agent_error"] and trajectory["steps"][0]["exit_code"] == 0


class _StatusServer:
    """A loopback HTTP server whose ``answer(body) -> (status, payload)`` may refuse a request."""

    def __init__(self, answer):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                status, payload = answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_checkpoint_that_refuses_a_prompt_longer_than_its_context_ends_with_context_overflow(
        cli, demo_tasks, tmp_path):
    """--context-tokens far above the checkpoint's own context: the whole task is sent, the checkpoint
    refuses it, and the attempt ends as context_overflow with the reason (before: a crash)."""
    from tests.quantize.tiny import make_tiny_model

    model = make_tiny_model(tmp_path, max_seq_len=256)
    out = tmp_path / "refused"
    result, payload = _run(cli, demo_tasks, out, "--model", f"checkpoint:{model}", "--max-tokens", "8",
                           "--context-tokens", "100000", "--limit", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["exit_status"] == {"context_overflow": 1} and payload["mean_steps"] == 0.0
    [record] = _jsonl(out / "results.jsonl")
    assert record["agent_error"].startswith("policy: ContextExceeded: the prompt has ")
    assert "the model's context is 256" in record["agent_error"]
    assert _jsonl(out / "trajectories.jsonl")[0]["error"] == record["agent_error"]


def test_a_planner_whose_context_cannot_hold_the_task_gives_no_plan_and_its_reason(cli, demo_tasks, tmp_path):
    from tests.quantize.tiny import make_tiny_model

    model = make_tiny_model(tmp_path, max_seq_len=64)
    out = tmp_path / "short-planner"
    result, payload = _run(cli, demo_tasks, out, "--model", "oracle", "--planner", f"checkpoint:{model}",
                           "--max-tokens", "8", "--limit", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert payload["score"] == 100.0
    [record] = _jsonl(out / "results.jsonl")
    assert record["plan"] is None and "the model's context is 64" in record["plan_error"]
    [trajectory] = _jsonl(out / "trajectories.jsonl")
    assert trajectory["plan_error"] == record["plan_error"] and trajectory["plan"] is None


def test_search_widening_reaches_the_tree_search(cli, demo_tasks, tmp_path, monkeypatch):
    """At 2 calls the gold agent (fix, then submit) submits only when widening lets the second call
    go one state deeper; plain UCB1 expansion spends both calls on two children of the root."""
    import hrmcode.eval.swe as swe

    seen = []
    real = swe.mcts
    monkeypatch.setattr(swe, "mcts", lambda *args, **kwargs: seen.append(kwargs["widening"]) or real(*args, **kwargs))
    depths = {}
    for widening in (False, True):
        out = tmp_path / f"widening-{widening}"
        flags = ["--search-widening"] if widening else []
        result, payload = _run(cli, demo_tasks, out, "--model", "oracle", "--search", "mcts", "--search-budget", "2",
                               "--limit", "1", *flags)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert payload["search_widening"] is widening
        assert json.loads((out / "manifest.json").read_text())["params"]["search_widening"] is widening
        [record] = _jsonl(out / "results.jsonl")
        assert record["search"]["widening"] is widening and record["search"]["calls"] == 2
        depths[widening] = (record["search"]["depth"], record["search"]["submitted"], record["resolved"])
    assert seen == [False, True]
    assert depths == {False: (1, False, True), True: (2, True, True)}


def test_the_agent_acts_on_a_swerex_deployment_and_is_graded_in_the_sandbox(cli, demo_tasks, tmp_path, monkeypatch):
    """--runtime swerex:bwrap: the agent's session is SWE-ReX's (one per attempt); grading stays in
    --backend's sandbox. One task: oracle resolves it, stub does not."""
    import hrmcode.eval.swe as swe
    from hrmcode.sandbox import local

    if local.bwrap_path() is None:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")
    opened = []
    real = swe.open_swerex_session
    monkeypatch.setattr(swe, "open_swerex_session", lambda spec, *a, **kw: opened.append(spec) or real(spec, *a, **kw))
    for model, score in (("oracle", 100.0), ("stub", 0.0)):
        out = tmp_path / model
        result, payload = _run(cli, demo_tasks, out, "--model", model, "--runtime", "swerex:bwrap", "--limit", "1")
        assert result.exit_code == 0, result.stdout + result.stderr
        assert payload["score"] == score and payload["runtime"] == "swerex:bwrap" and payload["grading_errors"] == 0
        assert json.loads((out / "manifest.json").read_text())["params"]["runtime"] == "swerex:bwrap"
        [record] = _jsonl(out / "results.jsonl")
        assert record["exit_status"] == "submitted" and record["resolved"] is (model == "oracle")
        if model == "oracle":
            assert all(v == "passed" for v in record["grade"]["fail_to_pass"].values())
    assert opened == ["swerex:bwrap", "swerex:bwrap"]


@pytest.mark.docker
def test_oracle_resolves_and_stub_does_not_in_docker(cli, tmp_path):
    """The docker backend: one warm container per attempt (the image has python3 and no git: the
    session is then not a git repository, and nothing else changes)."""
    from tests._sandboxes import real_sandbox

    real_sandbox("docker")  # skips when no Docker engine is reachable
    tasks = _synthesize(tmp_path, "python3 -m pytest -q tests")
    for model, score in (("oracle", 100.0), ("stub", 0.0)):
        result, payload = _run(cli, tasks, tmp_path / model, "--model", model, "--backend", "docker")
        assert result.exit_code == 0, result.stdout + result.stderr
        assert payload["score"] == score and payload["grading_errors"] == 0, payload
