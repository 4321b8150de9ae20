"""Runs end to end: a fake OpenAI-compatible server, resume, --redo, --fail-under, compare, backends."""

from __future__ import annotations

import json

import pytest

from hrmcode.data.schema import Task
from hrmcode.errors import InputError, SourceUnavailable, UsageError
from hrmcode.eval.backends import Generation, OpenAIBackend, Reply, Request, SamplesBackend, make_backend
from hrmcode.eval.extract import humaneval_completion, last_code_block
from hrmcode.eval.humaneval import builtin_tasks
from tests.eval.fake_openai import FakeOpenAI

TASK = Task(id="humaneval/HumanEval/0", source="humaneval", language="python", kind="function", prompt="def f():\n")


def _answers(tasks):
    """Right answers for the first two tasks (one whole function, one body), a wrong one for the third."""
    by_prompt = {}
    first, second, third = tasks[:3]
    by_prompt[first.prompt] = "Here you go:\n```python\n" + first.solution.files["solution.py"] + "```\n"
    by_prompt[second.prompt] = "```python\n" + second.metadata["canonical_solution"] + "```"
    by_prompt[third.prompt] = "```python\ndef " + third.tests.entry_point + "(*args):\n    return None\n```"

    def answer(body: dict) -> str:
        content = body["messages"][-1]["content"]
        return next(text for prompt, text in by_prompt.items() if prompt in content)

    return answer


def _eval(cli, server, out, *extra):
    return cli("--json", "eval", "humaneval", "--model", f"openai:{server.url}", "--model-name", "fake", "--limit", "3",
               "--out", out, "--unsafe-no-sandbox", "--retries", "3", *extra)


def test_end_to_end_with_a_fake_server_that_rate_limits(cli, tmp_path):
    tasks = builtin_tasks()
    with FakeOpenAI(_answers(tasks), fail_first=2) as server:  # two 429s first: retried
        result = _eval(cli, server, tmp_path / "run", "--fail-under", "60")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["solved"] == 2 and payload["score"] == pytest.approx(66.67)
    assert (tmp_path / "run" / "manifest.json").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["samples"][0]["passed"] for r in records] == [True, True, False]


def test_fail_under_exit_codes_and_resume(cli, tmp_path):
    tasks = builtin_tasks()
    with FakeOpenAI(_answers(tasks)) as server:
        ok = _eval(cli, server, tmp_path / "run", "--fail-under", "60")
        assert ok.exit_code == 0, ok.stderr
        assert len(server.requests) == 3
        assert server.requests[0]["model"] == "fake" and server.requests[0]["temperature"] == 0.0
        gate = _eval(cli, server, tmp_path / "run", "--fail-under", "70")
        assert gate.exit_code == 1 and "quality gate failed" in gate.stderr and "66.67%" in gate.stderr
        assert len(server.requests) == 3  # resumed: nothing asked again
        assert json.loads(gate.stdout)["skipped"] == 3
        redo = _eval(cli, server, tmp_path / "run", "--redo")
        assert redo.exit_code == 0 and len(server.requests) == 6
    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == sorted(r["id"] for r in results) and len(results) == 3
    assert results[0]["prompt_tokens"] == 10


def test_bad_fail_under_and_changed_parameters_are_usage_errors(cli, tmp_path):
    bad = cli("eval", "humaneval", "--model", "oracle", "--fail-under", "150", "--out", tmp_path / "x", "--unsafe-no-sandbox")
    assert bad.exit_code == 2 and "percent" in bad.stderr
    first = cli("eval", "humaneval", "--model", "oracle", "--limit", "2", "--out", tmp_path / "run", "--unsafe-no-sandbox")
    assert first.exit_code == 0, first.stderr
    changed = cli("eval", "humaneval", "--model", "stub", "--limit", "2", "--out", tmp_path / "run", "--unsafe-no-sandbox")
    assert changed.exit_code == 2 and "different model" in changed.stderr


def test_compare_lists_regressions_and_improvements(cli, tmp_path):
    for name in ("oracle", "stub"):
        result = cli("eval", "humaneval", "--model", name, "--limit", "3", "--out", tmp_path / name, "--unsafe-no-sandbox")
        assert result.exit_code == 0, result.stderr
    report = json.loads(cli("--json", "eval", "compare", tmp_path / "oracle", tmp_path / "stub").stdout)
    assert len(report["regressed"]) == 3 and report["improved"] == []
    report = json.loads(cli("--json", "eval", "compare", tmp_path / "stub", tmp_path / "oracle").stdout)
    assert len(report["improved"]) == 3 and report["score_a"] == 0.0 and report["score_b"] == 100.0
    missing = cli("eval", "compare", tmp_path / "stub", tmp_path / "nothing")
    assert missing.exit_code == 1 and "no artifact" in missing.stderr


def test_server_errors_are_retried_then_reported():
    with FakeOpenAI(lambda body: "ok", fail_first=2, fail_status=503) as server:
        backend = OpenAIBackend(server.url, "m", Generation(retries=2))
        replies = backend.complete(Request(bench="humaneval", task=TASK, messages=[{"role": "user", "content": "x"}], n=3))
        assert [r.text for r in replies] == ["ok"] * 3 and len(server.requests) == 3
    with FakeOpenAI(lambda body: "ok", fail_first=100, fail_status=500) as server:
        backend = OpenAIBackend(server.url, "m", Generation(retries=1))
        with pytest.raises(SourceUnavailable, match="failed after 2 tries"):
            backend.complete(Request(bench="humaneval", task=TASK, messages=[], n=1))
    with FakeOpenAI(lambda body: "ok", fail_first=100, fail_status=400) as server:
        with pytest.raises(SourceUnavailable, match="HTTP 400"):
            OpenAIBackend(server.url, "m", Generation(retries=3)).complete(Request(bench="humaneval", task=TASK, messages=[]))
        assert len(server.requests) == 1  # a client error is not retried


def test_unreachable_server_is_one_line_error(cli, tmp_path):
    result = cli("eval", "humaneval", "--model", "openai:http://127.0.0.1:9/v1", "--model-name", "m", "--limit", "1",
                 "--retries", "0", "--out", tmp_path / "run", "--unsafe-no-sandbox")
    assert result.exit_code == 1 and "failed after 1 tries" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_model_spec_errors():
    with pytest.raises(UsageError, match="unknown --model"):
        make_backend("gpt4")
    with pytest.raises(UsageError, match="--model-name"):
        make_backend("openai:http://127.0.0.1:1/v1")


def test_oracle_and_stub_take_their_answers_from_the_asking_benchmark():
    class Key:
        def reference_answer(self, request):
            return Reply(text=f"reference for {request.task.id}", raw=True)

        def stub_answer(self, request):
            return Reply(text="stub", raw=True)

    asked = Request(bench="any", task=TASK, messages=[], n=2, answer_key=Key())
    assert [r.text for r in make_backend("oracle").complete(asked)] == [f"reference for {TASK.id}"] * 2
    assert [r.text for r in make_backend("stub").complete(asked)] == ["stub", "stub"]
    for spec in ("oracle", "stub"):
        with pytest.raises(UsageError, match=f"--model {spec} cannot answer"):
            make_backend(spec).complete(Request(bench="any", task=TASK, messages=[]))


def test_samples_file_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n{oops\n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        SamplesBackend(bad)
    with pytest.raises(InputError, match="does not exist"):
        SamplesBackend(tmp_path / "missing.jsonl")
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"name": 1}\n')
    with pytest.raises(InputError, match="not a sample record"):
        SamplesBackend(odd)


def test_code_extraction():
    reply = "Plan.\n```text\nnot code\n```\n```python\ndef f(x):\n    return x\n```\nDone."
    assert last_code_block(reply) == "def f(x):\n    return x\n"
    assert last_code_block("x = 1\n") == "x = 1\n"
    assert humaneval_completion(reply, "def f(x):\n", "f") == "\ndef f(x):\n    return x\n"
    assert humaneval_completion("```\n    return 1\n```", "def g():\n", "g") == "    return 1\n"
