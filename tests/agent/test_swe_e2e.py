"""``hrmcode eval swe`` from the CLI, in the real local sandbox, on three task sets (the demo repository
and two PyPI projects, ``tests/agent/conftest.py``): ``oracle`` resolves every task, ``stub`` none,
and a scripted OpenAI-compatible agent (``tests/agent/fake_server.py``) resolves exactly the tasks it
has a correct script for. A SIGKILL mid-run and a rerun lose and repeat no finished attempt.
``hrmcode serve`` with a tiny model drives a run to its end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import TaskSet, hrmcode
from tests.agent.fake_server import FakeAgentServer, ScriptStep, correct_script, wrong_script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _eval_swe(tasks: Path, out: Path, *args: str, timeout: float = 900) -> dict:
    run = hrmcode("--json", "eval", "swe", "--tasks", str(tasks), "--out", str(out), *args, timeout=timeout)
    assert run.returncode in (0, 1) and run.stdout.strip(), f"eval swe exited {run.returncode}:\n{run.stderr[-3000:]}"
    return json.loads(run.stdout)


def _check_outputs(out: Path, task_set: TaskSet, resolved: set[str]) -> None:
    """results, trajectories, predictions and report agree with each other and with ``resolved``."""
    instances = sorted(task.instance_id for task in task_set.tasks)
    results = _jsonl(out / "results.jsonl")
    assert sorted(r["instance_id"] for r in results) == instances
    assert {r["instance_id"] for r in results if r["resolved"]} == resolved
    trajectories = {t["instance_id"]: t for t in _jsonl(out / "trajectories.jsonl")}
    assert sorted(trajectories) == instances
    for instance, trajectory in trajectories.items():
        assert trajectory["reward"] == (1.0 if instance in resolved else 0.0)
        assert trajectory["steps"][-1]["reward"] == trajectory["reward"] and trajectory["steps"][-1]["done"]
    predictions = _jsonl(out / "predictions.jsonl")
    assert sorted(p["instance_id"] for p in predictions) == instances
    report = json.loads((out / "report.json").read_text())
    assert report["resolved_ids"] == sorted(resolved)
    assert report["resolved_instances"] == len(resolved) and report["total_instances"] == len(instances)


def test_oracle_resolves_every_task(task_set, tmp_path):
    summary = _eval_swe(task_set.path, tmp_path / "run", "--model", "oracle", "-j", "2")
    assert summary["resolved_rate"] == 100.0 and summary["cases"] == len(task_set.tasks), summary
    _check_outputs(tmp_path / "run", task_set, {task.instance_id for task in task_set.tasks})


def test_stub_resolves_no_task(task_set, tmp_path):
    summary = _eval_swe(task_set.path, tmp_path / "run", "--model", "stub", "-j", "2")
    assert summary["resolved"] == 0 and summary["empty_patches"] == len(task_set.tasks), summary
    _check_outputs(tmp_path / "run", task_set, set())
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["empty_patch_ids"] == sorted(task.instance_id for task in task_set.tasks)


def _mixed_scripts(task_set: TaskSet) -> tuple[dict[str, list[ScriptStep]], set[str]]:
    """A correct script for every other task (sorted by id), a wrong-line edit for the rest."""
    ordered = sorted(task_set.tasks, key=lambda task: task.id)
    good = {task.instance_id for task in ordered[::2]}
    scripts = {task.instance_id: (correct_script(task) if task.instance_id in good else wrong_script(task))
               for task in ordered}
    return scripts, good


def _command(reply: str) -> str:
    return reply.split("```bash\n", 1)[1].rsplit("\n```", 1)[0]


def test_scripted_agent_resolves_exactly_the_tasks_it_has_a_correct_script_for(task_set, tmp_path):
    scripts, good = _mixed_scripts(task_set)
    assert good and len(good) < len(scripts)
    out = tmp_path / "run"
    with FakeAgentServer(scripts) as server:
        summary = _eval_swe(task_set.path, out, "--model", f"openai:{server.url}", "--model-name", server.model_name,
                            "-j", "2")
    assert server.unmatched == 0
    assert summary["resolved"] == len(good) and summary["exit_status"] == {"submitted": len(scripts)}, summary
    _check_outputs(out, task_set, good)

    results = {r["instance_id"]: r for r in _jsonl(out / "results.jsonl")}
    for instance, trajectory in ((t["instance_id"], t) for t in _jsonl(out / "trajectories.jsonl")):
        script = scripts[instance]
        # the trajectory is the script, step for step: search, read, test, edit, test, diff, submit
        assert [s["action"]["raw"] for s in trajectory["steps"]] == [step.reply for step in script]
        assert [s["action"]["kind"] for s in trajectory["steps"]][-1] == "submit"
        assert trajectory["steps"][0]["action"]["command"].startswith("grep -rnF ")
        assert trajectory["prompt_tokens"] > 0 and trajectory["completion_tokens"] > 0
        assert trajectory["model"] == f"openai:{server.url}"
        before_fix, after_fix = trajectory["steps"][2]["observation"], trajectory["steps"][-3]["observation"]
        assert "failed" in before_fix, before_fix  # the agent saw its tests fail before the edit
        assert trajectory["steps"][3]["exit_code"] == 0, trajectory["steps"][3]["observation"]  # the edit ran
        record = results[instance]
        assert record["model_patch"].strip() and not record["empty_patch"]  # the wrong ones did change code
        if instance in good:
            assert "failed" not in after_fix and " passed" in after_fix, after_fix
            assert all(v == "passed" for v in record["grade"]["fail_to_pass"].values())
        else:
            assert record["f2p_fixed"] < 1.0 and record["error"] is None


def _whole_lines(path: Path) -> list[str]:
    """The complete records of a JSONL file (a line torn by the kill left out)."""
    if not path.exists():
        return []
    raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    return [line for line in (lines if raw.endswith("\n") else lines[:-1]) if line.strip()]


def test_sigkill_mid_run_then_rerun_loses_and_repeats_no_finished_attempt(demo_task_set, tmp_path):
    scripts, good = _mixed_scripts(demo_task_set)
    out = tmp_path / "run"
    attempts = 3
    with FakeAgentServer(scripts, delay_s=0.2) as server:
        args = ["--json", "eval", "swe", "--tasks", str(demo_task_set.path), "--out", str(out), "--model",
                f"openai:{server.url}", "--model-name", server.model_name, "--attempts", str(attempts), "-j", "2"]
        process = subprocess.Popen([sys.executable, "-m", "hrmcode", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env={**os.environ, "HRMCODE_NO_PROGRESS": "1"})
        deadline = time.monotonic() + 300
        while not _whole_lines(out / "results.jsonl"):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no result appeared in 300 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        before = [json.loads(line) for line in _whole_lines(out / "results.jsonl")]
        total = attempts * len(demo_task_set.tasks)
        assert 0 < len(before) < total, f"the kill landed after {len(before)} of {total} attempts"

        rerun = hrmcode(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == len(before) and summary["ran"] == total - len(before), summary

    results = _jsonl(out / "results.jsonl")
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == total, sorted(ids)
    by_id = {r["id"]: r for r in results}
    for record in before:  # every attempt finished before the kill kept, exactly as it was
        assert by_id[record["id"]] == record
    assert {r["id"] for r in results if r["resolved"]} == {r["id"] for r in results if r["instance_id"] in good}
    trajectory_ids = [t["id"] for t in _jsonl(out / "trajectories.jsonl")]
    assert sorted(trajectory_ids) == sorted(ids) and len(trajectory_ids) == len(set(trajectory_ids))
    predictions = [p["instance_id"] for p in _jsonl(out / "predictions.jsonl")]
    assert sorted(predictions) == sorted(task.instance_id for task in demo_task_set.tasks)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hrmcode_serve_with_a_tiny_model_drives_eval_swe(demo_task_set, tmp_path):
    from tests.quantize.tiny import make_tiny_model

    model = make_tiny_model(tmp_path, max_seq_len=8192)  # the agent's prompts are long in a 300-token vocabulary
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hrmcode", "serve", str(model), "--port", str(port),
                               "--model-name", "tiny", "--max-tokens-cap", "24"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "hrmcode serve did not come up in 120 s"
            time.sleep(0.2)
        out = tmp_path / "run"
        summary = _eval_swe(demo_task_set.path, out, "--model", f"openai:http://127.0.0.1:{port}/v1",
                            "--model-name", "tiny", "--limit", "1", "--step-limit", "3", "--max-tokens", "24",
                            "--request-timeout", "300")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert summary["cases"] == 1 and summary["trajectories"] == 1, summary
    [record] = _jsonl(out / "results.jsonl")
    [trajectory] = _jsonl(out / "trajectories.jsonl")
    assert trajectory["id"] == record["id"] and trajectory["model"] == f"openai:http://127.0.0.1:{port}/v1"
    assert trajectory["exit_status"] in ("submitted", "step_limit", "format_errors", "time_limit")
    assert trajectory["steps"] and trajectory["completion_tokens"] > 0  # the served model answered
    assert [m["role"] for m in trajectory["messages"]][:3] == ["system", "user", "assistant"]
    assert trajectory["reward"] == (1.0 if record["resolved"] else 0.0)
