"""An ``hrmcode eval swe`` run directory written by the tests: ``trajectories.jsonl`` records in
exactly the shape ``eval/swe.py`` appends them (``Trajectory.to_record()`` plus ``id``, ``task_id``,
``instance_id``, ``attempt``, ``model``, ``plan_reply``, ``grade``, ``reward``), under an
``eval-run`` manifest of bench ``swe``. Short conversations, so a tiny model's context holds them."""

from __future__ import annotations

from pathlib import Path

from hrmcode.agent.trajectory import Step, Trajectory
from hrmcode.artifacts import ArtifactWriter

SYSTEM = "You act in a repository. Answer with THOUGHT and exactly one ```bash block."
SUBMIT = "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"


def _turns(problem: str, actions: list[tuple[str, str]]) -> tuple[list[dict], list[Step]]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Please solve this issue: {problem}"}]
    steps = []
    for index, (reply, observation) in enumerate(actions, 1):
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": observation}]
        kind = "submit" if "COMPLETE_TASK" in reply else "bash"
        steps.append(Step(index=index, action={"kind": kind, "command": reply.split("```bash\n")[-1].split("\n```")[0],
                                               "thought": reply.split("\n\n")[0], "raw": reply},
                          observation=observation, exit_code=0, done=kind == "submit",
                          state={"files_modified": ["calc.py"] if "sed" in reply else []}))
    return messages, steps


def trajectory_record(n: int, *, resolved: bool, model: str, attempt: int = 1, crashed: bool = False) -> dict:
    instance = f"local__calc.func_pm_op_change__{n:04d}"
    problem = f"add() subtracts (case {n}); tests/test_calc.py::test_add fails."
    if crashed:  # the model's server died before its first reply
        messages, steps = _turns(problem, [])
        exit_status, error = "crash", "BackendError: connection refused"
    elif resolved:
        messages, steps = _turns(problem, [
            ("THOUGHT: read it.\n\n```bash\ncat calc.py\n```", "<returncode>0</returncode>\n<output>\ndef add(a, b):\n    return a - b\n</output>"),
            ("THOUGHT: fix the sign.\n\n```bash\nsed -i 's/a - b/a + b/' calc.py\n```", "<returncode>0</returncode>\n<output>\n</output>"),
            (SUBMIT, ""),
        ])
        exit_status, error = "submitted", None
    else:
        messages, steps = _turns(problem, [
            ("THOUGHT: list files.\n\n```bash\nls\n```", "<returncode>0</returncode>\n<output>\ncalc.py\ntests\n</output>"),
            (SUBMIT, ""),
        ])
        exit_status, error = "submitted", None
    reward = 1.0 if resolved else 0.0
    if steps:
        steps[-1].reward = reward
    trajectory = Trajectory(problem=problem, policy=model, messages=messages, steps=steps, exit_status=exit_status,
                            context_policy="keep-system-task-latest-v1", protocol="mini-swe-agent-bash-v1", error=error)
    grade = None if crashed or not resolved else {
        "resolved": True, "fail_to_pass": {"tests/test_calc.py::test_add": "passed"}, "pass_to_pass": {},
        "f2p_fixed": 1.0, "p2p_broken": 0, "patch_applied": True, "problem": None, "discarded": []}
    task_id = f"swe-smith/{instance}"
    return {"id": f"{task_id}@{attempt}", "task_id": task_id, "instance_id": instance, "attempt": attempt,
            "model": model, **trajectory.to_record(), "plan_reply": None, "grade": grade, "reward": reward}


def default_records() -> list[dict]:
    """Two resolved (oracle-like), two failed (stub-like) and one crashed trajectory."""
    return [trajectory_record(0, resolved=True, model="demo-int8"), trajectory_record(1, resolved=True, model="demo-int8"),
            trajectory_record(2, resolved=False, model="openai:gpt-x"),
            trajectory_record(2, resolved=False, model="openai:gpt-x", attempt=2),
            trajectory_record(3, resolved=False, model="openai:gpt-x", crashed=True)]


def write_swe_run(path: Path, records: list[dict] | None = None, bench: str = "swe") -> Path:
    records = default_records() if records is None else records
    with ArtifactWriter(path, "eval-run", name=bench, params={"bench": bench, "model": ["demo-int8", "openai:gpt-x"]},
                        update_latest=False) as writer:
        writer.write_jsonl("trajectories.jsonl", records)
        writer.finish({"cases": len(records)})
    return path
