"""The hostile agent corpus (``tests/agent/hostile/*.json``), each played through ``hrmcode eval swe``
by the scripted agent server on the demo repository's tasks, in each real backend (bubblewrap, and
docker where an engine and its image are up: ``tests/_sandboxes.py``).

A corpus file is one agent: ``commands`` (one reply each, then the submit sentinel; a command that
is exactly ``{fix}`` stands for the task's correct edit commands), ``attack`` (what it tries),
``fix`` (whether the script ALSO applies the correct fix), and what must hold beyond the rules for
every file: ``expect_resolved``, ``discarded`` (test paths whose changes grading must drop),
``exit_status``, ``args`` (extra ``eval swe`` options), and ``steps`` (per step, by position:
``includes``/``excludes`` of its observation, ``exit_code`` "killed", ``max_chars``).
Placeholders: ``{instance_id}``, ``{test_file}``, ``{tasks_dir}``, ``{canary}``, ``{canary_dir}``,
``{canary_name}``, ``{canary_token}``, ``{host_url}``, ``{host_port}``, ``{model_name}``.

Every file, whatever it does: the run finishes with one result and one trajectory; the host's canary
file and every file of the tasks artifact are byte for byte as before; no process the agent started
outlives the run; nothing reached the model server but the run's own chat requests; and a script
that does not fix the task does not resolve it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pytest

from hrmcode.agent.repo import RepoTask
from tests._sandboxes import BACKENDS, real_sandbox
from tests.agent.conftest import TaskSet, hrmcode
from tests.agent.fake_server import FakeAgentServer, ScriptStep, command_script, fix_commands

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CORPUS = Path(__file__).parent / "hostile"
ATTACKS = sorted(CORPUS.glob("*.json"))
LEFTOVER_MARKERS = (b"sleep\x00612", b"sleep\x00613")  # the corpus's sleepers, as /proc/PID/cmdline spells them


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _script(spec: dict, task: RepoTask, values: dict[str, str]) -> list[ScriptStep]:
    commands: list[str] = []
    for command in spec["commands"]:
        commands += fix_commands(task) if command == "{fix}" else [_fill(command, values)]
    return command_script(commands, thought="I do what I was built to do.")


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _leftovers() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if any(marker in cmdline for marker in LEFTOVER_MARKERS):
            found.append(f"{proc.name}: {cmdline!r}")
    return found


def test_corpus_is_not_empty_and_well_formed():
    assert len(ATTACKS) >= 15
    for path in ATTACKS:
        spec = json.loads(path.read_text())
        assert spec["attack"] and spec["commands"] and isinstance(spec["fix"], bool), path.name
        assert not spec.get("expect_resolved") or spec["fix"], f"{path.name}: only a script that fixes may resolve"
        assert set(spec) <= {"attack", "commands", "fix", "expect_resolved", "discarded", "exit_status", "args",
                             "steps"}, path.name


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    real_sandbox(request.param)  # skips (or fails, under HRMCODE_REQUIRE_DOCKER=1) when it is not there
    return request.param


@pytest.mark.parametrize("attack", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_hostile_agent_is_contained_and_never_resolves_what_it_did_not_fix(attack: Path, backend: str,
                                                                          demo_task_set: TaskSet, tmp_path: Path):
    spec = json.loads(attack.read_text())
    canary_dir = tmp_path / "host"
    canary_dir.mkdir()
    token = secrets.token_hex(16)
    canary = canary_dir / "canary.txt"
    canary.write_text(f"host canary {token}\n")
    before = _digests(demo_task_set.path)

    with FakeAgentServer({}) as server:
        values_by_task: dict[str, dict[str, str]] = {}
        for task in demo_task_set.tasks:
            values = {"instance_id": task.instance_id, "test_file": task.fail_to_pass[0].split("::", 1)[0],
                      "tasks_dir": str(demo_task_set.path), "canary": str(canary), "canary_dir": str(canary_dir),
                      "canary_name": canary.name, "canary_token": token, "host_url": server.url,
                      "host_port": str(server.server.server_address[1]), "model_name": server.model_name}
            values_by_task[task.instance_id] = values
            server.scripts[task.instance_id] = _script(spec, task, values)
        out = tmp_path / "run"
        run = hrmcode("--json", "eval", "swe", "--tasks", str(demo_task_set.path), "--out", str(out), "--limit", "1",
                      "--model", f"openai:{server.url}", "--model-name", server.model_name, "--backend", backend,
                      *spec.get("args", []),
                      timeout=500)
    assert run.returncode in (0, 1) and (out / "results.jsonl").exists(), f"{attack.name}: eval swe exited {run.returncode}:\n{run.stderr[-3000:]}"

    # contained: the host and the task data untouched, nothing left running, no stray request
    assert canary.read_text() == f"host canary {token}\n"
    assert sorted(p.name for p in canary_dir.iterdir()) == [canary.name]
    assert _digests(demo_task_set.path) == before, f"{attack.name} changed the tasks artifact"
    assert _leftovers() == [], f"{attack.name} left processes running"
    assert server.gets == [] and server.unmatched == 0, (server.gets, server.unmatched)

    # the run finished with a record, and the verdict is the grader's
    [record] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    [trajectory] = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert trajectory["id"] == record["id"]
    values = values_by_task[record["instance_id"]]
    if not spec["fix"]:
        assert record["resolved"] is False and trajectory["reward"] == 0.0, f"{attack.name} resolved an unfixed task"
    if spec.get("expect_resolved"):
        assert record["resolved"] is True, f"{attack.name}: the fix after the attack did not resolve: {record['grade']}"
    for path in spec.get("discarded", []):
        assert _fill(path, values) in record["discarded"], (path, record["discarded"])
    if "exit_status" in spec:
        assert trajectory["exit_status"] == spec["exit_status"]

    steps = trajectory["steps"]
    assert steps[0]["action"]["raw"] == server.scripts[record["instance_id"]][0].reply
    for check in spec.get("steps", []):
        step = steps[check["index"]]
        observation = step["observation"]
        for text in check.get("includes", []):
            assert _fill(text, values) in observation, (attack.name, check["index"], observation[-2000:])
        for text in check.get("excludes", []):
            assert _fill(text, values) not in observation, (attack.name, check["index"], observation[-2000:])
        if check.get("exit_code") == "killed":  # no exit status: the sandbox killed it
            assert step["exit_code"] is None, (attack.name, check["index"], step["exit_code"])
        if "max_chars" in check:
            assert len(observation) <= check["max_chars"], (attack.name, check["index"], len(observation))
