"""`hrmcode serve` as a real process, and `hrmcode eval humaneval --model openai:...` against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from hrmcode.serve.app import ServeSettings
from hrmcode.serve.server import background_server, checkpoint_app
from tests.quantize.tiny import make_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serve_process_answers_and_stops(tmp_path):
    model = make_tiny_model(tmp_path)
    port = free_port()
    env = dict(os.environ, HRMCODE_API_KEY="k")
    process = subprocess.Popen([sys.executable, "-m", "hrmcode", "serve", str(model), "--port", str(port),
                                "--model-name", "tiny", "--max-tokens-cap", "32"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/v1"
        assert httpx.get(f"{url}/models").status_code == 401  # the key came from HRMCODE_API_KEY
        reply = httpx.post(f"{url}/completions", headers={"Authorization": "Bearer k"},
                           json={"model": "tiny", "prompt": "def f(x):", "max_tokens": 5})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_eval_humaneval_through_the_server(tmp_path, cli, workspace):
    fetched = cli("fetch", "humaneval")
    assert fetched.exit_code == 0, fetched.stderr
    model = make_tiny_model(tmp_path, max_seq_len=4096)  # HumanEval prompts are long in a 300-token vocabulary
    app = checkpoint_app(model, ServeSettings(max_tokens_cap=64, max_concurrency=1, max_queue=16))
    with background_server(app) as url:
        result = cli("--json", "eval", "humaneval", "--model", f"openai:{url}/v1", "--model-name", "model",
                     "--limit", "2", "--k", "1", "--max-tokens", "16", "--concurrency", "2",
                     "-o", str(tmp_path / "run"))
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cases"] == 2 and summary["samples"] == 2
    assert 0.0 <= summary["pass@1"] <= 1.0  # a random-init model: what matters is that the pipeline ran
