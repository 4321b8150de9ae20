"""``--model checkpoint:`` renders prompts as the checkpoint was trained, and as ``hrmcode serve`` does.

The end-to-end test trains a tiny model on a few HumanEval-shaped examples, then runs the same
HumanEval cases through ``eval --model checkpoint:DIR`` and through ``eval --model openai:URL``
against a real ``hrmcode serve DIR`` process (greedy): the completions must be identical, and the
prompt ids both send must be the training template's.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

import hrmcode.model.generate
from hrmcode.errors import InputError
from hrmcode.eval.backends import CheckpointBackend, Generation, Request
from hrmcode.eval.humaneval import CHAT_PROMPT, builtin_tasks
from hrmcode.jsonl import read_jsonl
from hrmcode.model.checkpoint import load_checkpoint
from hrmcode.model.prompt import CHAT_LEVEL
from hrmcode.serve.model_engine import ModelEngine
from tests.quantize.tiny import make_tiny_model

CASES = 3


def _record_prompts(monkeypatch) -> list[list[int]]:
    """Record the prompt every in-process ``generate`` call is given (the backend looks it up when built)."""
    seen: list[list[int]] = []
    real = hrmcode.model.generate.generate

    def recording(model, tokenizer, prompt, cfg=None):
        seen.append(list(prompt))
        return real(model, tokenizer, prompt, cfg)

    monkeypatch.setattr(hrmcode.model.generate, "generate", recording)
    return seen


def test_checkpoint_backend_renders_the_chat_in_the_checkpoints_format(tmp_path, monkeypatch):
    seen = _record_prompts(monkeypatch)
    backend = CheckpointBackend(make_tiny_model(tmp_path), Generation(max_tokens=6, seed=3))
    loaded = backend.loaded
    task = builtin_tasks()[0]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add two numbers"}]
    replies = backend.complete(Request(bench="humaneval", task=task, messages=messages, n=2))
    expected = loaded.config.prompt.encode_chat(loaded.tokenizer, [("system", "be brief"), ("user", "add two numbers")])
    assert expected[0] == loaded.tokenizer.token_id(f"<|{CHAT_LEVEL}|>")
    assert seen == [expected, expected]
    assert len(replies) == 2 and all(r.prompt_tokens == len(expected) and not r.raw for r in replies)
    assert all(1 <= r.completion_tokens <= 6 for r in replies)
    assert backend.describe() == {"model": f"checkpoint:{backend.path}", "temperature": 0.0, "max_tokens": 6}
    with pytest.raises(InputError, match="role 'tool'"):
        backend.complete(Request(bench="humaneval", task=task, messages=[{"role": "tool", "content": "x"}]))


# -- end to end ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_tiny(tmp_path, tasks):
    from hrmcode.artifacts import ArtifactWriter
    from hrmcode.train.loop import train
    from hrmcode.train.options import resolve_options
    from tests.quantize.tiny import example

    records = [example(i, CHAT_PROMPT.format(prompt=t.prompt),
                       "```python\n" + t.prompt + t.metadata["canonical_solution"] + "```\n", split)
               for i, t in enumerate(tasks) for split in ("train", "heldout")]
    with ArtifactWriter(tmp_path / "examples", "examples", update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", records)
        examples = writer.finish()
    options = resolve_options("tiny", {"seq_len": 2048, "batch_size": 1, "max_steps": 2, "warmup_steps": 1,
                                       "eval_every": 0, "save_every": 2, "eval_generate": 0, "vocab_size": 1024})
    return train(options, str(examples.path), out=tmp_path / "model").out_dir


def _serve(model, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "hrmcode", "serve", str(model), "--port", str(port),
                                "--model-name", "model"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.2)


def _eval(cli, model_spec: str, out) -> list[dict]:
    result = cli("--json", "eval", "humaneval", "--model", model_spec, "--model-name", "model", "--limit", str(CASES),
                 "--k", "1", "--max-tokens", "12", "--concurrency", "1", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    return sorted(read_jsonl(out / "results.jsonl"), key=lambda r: r["id"])


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_eval_checkpoint_and_eval_openai_against_serve_agree(tmp_path, cli, monkeypatch):
    assert cli("fetch", "humaneval").exit_code == 0
    tasks = builtin_tasks()[:CASES]
    model = _train_tiny(tmp_path, tasks)
    loaded = load_checkpoint(model)
    tok, prompt = loaded.tokenizer, loaded.config.prompt
    # The prompt each case must reach the model as: the training template's prompt part.
    trained = {}
    for t in tasks:
        text = CHAT_PROMPT.format(prompt=t.prompt)
        ids, n_prompt = prompt.encode_example(tok, text, "", CHAT_LEVEL)
        trained[t.id] = ids[:n_prompt]

    seen = _record_prompts(monkeypatch)
    in_process = _eval(cli, f"checkpoint:{model}", tmp_path / "checkpoint-run")
    assert sorted(map(tuple, seen)) == sorted(map(tuple, trained.values()))

    engine = ModelEngine(loaded)  # what the server process runs on a chat request
    for t in tasks:
        rendered = engine.chat_prompt([("user", CHAT_PROMPT.format(prompt=t.prompt))])
        assert tok.encode(rendered) == trained[t.id]

    port = _free_port()
    server = _serve(model, port)
    try:
        served = _eval(cli, f"openai:http://127.0.0.1:{port}/v1", tmp_path / "served-run")
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert [r["id"] for r in served] == [r["id"] for r in in_process] and len(served) == CASES
    for here, there in zip(in_process, served):
        assert [s["completion"] for s in here["samples"]] == [s["completion"] for s in there["samples"]]
        assert here["prompt_tokens"] == there["prompt_tokens"] == len(trained[here["id"]])
        assert here["completion_tokens"] == there["completion_tokens"] > 0
