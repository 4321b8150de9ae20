"""SIGTERM / Ctrl-C while generations run: each stops at its next token and is answered 503
(``server_shutting_down``), queued and later requests too, so the server exits at once instead of
after every running request's max_tokens, and no client takes a cut-short answer for a whole one."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hrmcode.serve.app import ServeSettings, create_app
from hrmcode.serve.server import _config, _Server, background_server
from tests.serve.fakes import FakeEngine

pytestmark = pytest.mark.timeout(60)


def test_sigterm_stops_running_and_queued_generations_with_503():
    engine = FakeEngine(reply="y" * 3000, delay_s=0.01)  # 30 s per request if nothing stopped it
    app = create_app(engine, ServeSettings(max_concurrency=2, max_queue=2, max_tokens_cap=3000))
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 3000}
    with background_server(app) as url, httpx.Client(timeout=30) as client, ThreadPoolExecutor(2) as pool:
        plain = pool.submit(client.post, f"{url}/v1/completions", json=request)
        assert engine.started.acquire(timeout=10)
        with client.stream("POST", f"{url}/v1/completions", json={**request, "stream": True}) as streamed:
            events = (line[len("data: "):] for line in streamed.iter_lines() if line.startswith("data: "))
            assert json.loads(next(events))["choices"][0]["finish_reason"] is None
            queued = pool.submit(client.post, f"{url}/v1/completions", json=request)
            deadline = time.monotonic() + 10
            while client.get(f"{url}/health").json()["waiting"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            started = time.monotonic()
            _Server(_config(app)).handle_exit(signal.SIGTERM, None)  # what the signal runs
            rest = list(events)
        for response in (plain.result(timeout=10), queued.result(timeout=10),
                         client.post(f"{url}/v1/completions", json=request)):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "server_shutting_down"
        assert time.monotonic() - started < 5
    assert "[DONE]" not in rest  # the stream ends with the error, not as if it were whole
    assert json.loads(rest[-1])["error"]["code"] == "server_shutting_down"
    assert all(done.completion_tokens < 2000 for done in engine.finished)


class _PausesAfterFirstChoice(FakeEngine):
    """Holds the second choice until the test has closed the server: close() lands between two choices."""

    def __init__(self, resume, **kwargs):
        super().__init__(**kwargs)
        self.resume = resume
        self.calls = 0

    def stream(self, prompt, params, should_stop):
        self.calls += 1
        yield from super().stream(prompt, params, should_stop)
        if self.calls == 1:
            self.resume.wait(10)


def test_a_stream_of_several_choices_cut_between_them_ends_with_503_not_done():
    import threading

    resume = threading.Event()
    app = create_app(_PausesAfterFirstChoice(resume, reply="abc"), ServeSettings())
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 3, "n": 2, "stream": True}
    with background_server(app) as url, httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{url}/v1/completions", json=request) as streamed:
            events = []
            for line in streamed.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: "):])
                    chunk = json.loads(events[-1]) if events[-1] != "[DONE]" else {}
                    if chunk.get("choices") and chunk["choices"][0]["finish_reason"]:
                        app.state.close()  # choice 0 is whole, choice 1 not begun
                        resume.set()
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "server_shutting_down"
