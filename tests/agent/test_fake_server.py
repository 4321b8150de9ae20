"""The scripted agent server itself (``tests/agent/fake_server.py``): task matching, turn counting,
usage, ``/v1/models``, and the stochastic mode's seeding and progress rules."""

from __future__ import annotations

import httpx

from hrmcode.agent.protocol import SUBMIT_SENTINEL, parse_action
from hrmcode.agent.repo import RepoTask
from hrmcode.diffs import tree_patch
from tests.agent.fake_server import FakeAgentServer, Stochastic, command_script, correct_script, wrong_script

BUGGY = "def add(a, b):\n    return a - b\n\n\ndef double(x):\n    return 2 * x\n"
FIXED = BUGGY.replace("a - b", "a + b")


def _task(instance: str = "local__calc.0001") -> RepoTask:
    test = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    files = {"calc.py": BUGGY, "tests/test_calc.py": test}
    return RepoTask(id=f"swe-smith/{instance}", instance_id=instance, problem=f"The repository has a bug ({instance}).",
                    files=files, test_command="python -m pytest -q tests",
                    fail_to_pass=["tests/test_calc.py::test_add"],
                    pass_to_pass=[], gold_patch=tree_patch({"calc.py": BUGGY}, {"calc.py": FIXED}))


def _chat(url: str, first_user: str, assistant_turns: list[str], seed: int = 0) -> dict:
    messages = [{"role": "system", "content": "system"}, {"role": "user", "content": first_user}]
    for text in assistant_turns:
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "<returncode>0</returncode>"}]
    response = httpx.post(f"{url}/chat/completions", json={"model": "fake-agent", "messages": messages, "seed": seed})
    assert response.status_code == 200
    return response.json()


def _text(reply: dict) -> str:
    return reply["choices"][0]["message"]["content"]


def test_deterministic_mode_plays_step_k_at_turn_k_and_reports_usage():
    task = _task()
    script = correct_script(task)
    with FakeAgentServer({task.instance_id: script}) as server:
        said: list[str] = []
        for step in script:
            reply = _chat(server.url, task.problem, said)
            assert _text(reply) == step.reply
            assert reply["usage"]["prompt_tokens"] > 0 and reply["usage"]["completion_tokens"] > 0
            said.append(_text(reply))
        assert parse_action(_text(_chat(server.url, task.problem, said))).kind == "submit"  # past the end: submit
        models = httpx.get(f"{server.url}/models").json()
        assert [m["id"] for m in models["data"]] == ["fake-agent"] and server.gets == ["/v1/models"]
        assert parse_action(_text(_chat(server.url, "an unknown task", []))).kind == "submit"
        assert server.unmatched == 1


def test_scripts_are_valid_actions_and_only_the_correct_one_edits_as_the_gold_patch():
    task = _task()
    right, wrong = correct_script(task), wrong_script(task)
    kinds = [parse_action(step.reply).kind for step in right]
    assert kinds == ["bash"] * (len(right) - 1) + ["submit"]
    assert right[0].reply.count("```bash") == 1 and "grep -rnF 'def add'" in right[0].reply
    [edit] = [s.reply for s in right if "calc.py" in s.reply and ("sed -i" in s.reply or "python3 -" in s.reply)]
    assert "a + b" in edit
    assert [s.reply for s in wrong] != [s.reply for s in right] and not any("a + b" in s.reply for s in wrong)
    assert parse_action(command_script(["ls"])[-1].reply).command == SUBMIT_SENTINEL


def test_stochastic_mode_is_seeded_and_counts_progress_in_script_steps():
    task = _task()
    script = correct_script(task)

    def play(p_step: float, seed: int, turns: int = 12) -> list[str]:
        with FakeAgentServer({task.instance_id: script}, stochastic=Stochastic(p_step, seed)) as server:
            said: list[str] = []
            for _ in range(turns):
                said.append(_text(_chat(server.url, task.problem, said, seed=seed)))
            return said

    assert play(1.0, 0)[: len(script)] == [step.reply for step in script]
    assert all(text != script[0].reply for text in play(0.0, 0, turns=4))  # never the script's step: no progress
    assert play(0.0, 0, turns=4) == [script[0].wrong] * 4
    first, again, other = play(0.5, 7), play(0.5, 7), play(0.5, 8)
    assert first == again and first != other
    # a wrong step is not progress: the next reply is the same script step again, or its alternative
    done = 0
    for text in first:
        assert text in (script[min(done, len(script) - 1)].reply, script[min(done, len(script) - 1)].wrong)
        done += text == script[min(done, len(script) - 1)].reply


def test_stochastic_mode_draws_anew_when_the_same_state_is_expanded_again():
    task = _task()
    script = correct_script(task)
    with FakeAgentServer({task.instance_id: script}, stochastic=Stochastic(0.5, 3)) as server:
        replies = {_text(_chat(server.url, task.problem, [])) for _ in range(20)}
    assert replies == {script[0].reply, script[0].wrong}
