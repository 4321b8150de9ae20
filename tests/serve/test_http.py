"""The HTTP layer against a scripted engine: wire format, errors, limits, queueing, disconnects."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from tests.serve.fakes import FakeEngine

pytestmark = pytest.mark.timeout(60)


def sse_events(text: str) -> list:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def assert_error(response: httpx.Response, status: int, param=None, code=None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_models_and_health(serve):
    url = serve()
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    models = httpx.get(f"{url}/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["fake-model"]
    assert httpx.get(f"{url}/v1/models/fake-model").json()["id"] == "fake-model"
    assert_error(httpx.get(f"{url}/v1/models/other"), 404, code="model_not_found")
    assert_error(httpx.get(f"{url}/v1/nowhere"), 404)


def test_completion_fields_usage_and_length(serve):
    url = serve()
    body = httpx.post(f"{url}/v1/completions", json={"model": "fake-model", "prompt": "abc", "max_tokens": 5}).json()
    assert body["object"] == "text_completion" and body["model"] == "fake-model"
    assert body["choices"] == [{"index": 0, "text": "def a", "logprobs": None, "finish_reason": "length"}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_stop_sequence_and_echo_and_n(serve):
    url = serve()
    body = httpx.post(f"{url}/v1/completions", json={
        "model": "fake-model", "prompt": ["p1", "p22"], "stop": ["("], "n": 2, "echo": True}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in body["choices"]] == ["p1def add", "p1def add", "p22def add", "p22def add"]
    assert all(c["finish_reason"] == "stop" for c in body["choices"])
    assert body["usage"]["prompt_tokens"] == 2 + 3  # each prompt counted once, not once per choice
    assert body["usage"]["completion_tokens"] == 4 * 7


def test_streamed_completion_equals_plain(serve):
    url = serve()
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 12}
    plain = httpx.post(f"{url}/v1/completions", json=request).json()
    with httpx.stream("POST", f"{url}/v1/completions", json={**request, "stream": True,
                                                              "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    text = "".join(c["text"] for e in events for c in e["choices"])
    assert text == plain["choices"][0]["text"]
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finishes == [plain["choices"][0]["finish_reason"]]
    assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]


def test_chat_plain_and_streamed(serve):
    url = serve()
    request = {"model": "fake-model", "messages": [{"role": "system", "content": "be brief"},
                                                   {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    plain = httpx.post(f"{url}/v1/chat/completions", json=request).json()
    assert plain["object"] == "chat.completion"
    message = plain["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == FakeEngine().reply
    assert plain["usage"]["prompt_tokens"] == len("<system>be brief<user>hi<assistant>")
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**request, "stream": True}) as r:
        events = sse_events(r.read().decode())
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert streamed == message["content"]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


def test_bad_requests_are_openai_shaped(serve):
    url = serve(max_tokens_cap=64, max_body_bytes=2000)
    post = f"{url}/v1/completions"
    err = assert_error(httpx.post(post, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert "JSON" in err["message"]
    assert_error(httpx.post(post, json={"model": "fake-model"}), 400, param="prompt")
    assert_error(httpx.post(post, json={"model": "fake-model", "prompt": "x", "temperature": 9}), 400,
                 param="temperature")
    assert_error(httpx.post(post, json={"model": "nope", "prompt": "x"}), 404, param="model", code="model_not_found")
    assert_error(httpx.post(post, json={"model": "fake-model", "prompt": "x", "max_tokens": 65}), 400,
                 param="max_tokens", code="max_tokens_exceeded")
    assert_error(httpx.post(post, json={"model": "fake-model", "prompt": "x", "logprobs": 3}), 400, param="logprobs")
    assert_error(httpx.post(post, json={"model": "fake-model", "prompt": ""}), 400, param="prompt", code="invalid_prompt")
    assert_error(httpx.post(post, json={"model": "fake-model", "prompt": "x" * 5000}), 413, code="request_too_large")
    assert_error(httpx.post(f"{url}/v1/chat/completions", json={"model": "fake-model", "messages": []}), 400,
                 param="messages")


def test_oversized_chunked_body_is_refused_while_reading(serve):
    url = serve(max_body_bytes=1000)

    def chunks():
        for _ in range(50):
            yield b"x" * 100

    assert_error(httpx.post(f"{url}/v1/completions", content=chunks()), 413)


def test_api_key(serve, monkeypatch):
    url = serve(api_key="s3cret")
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 2}
    assert_error(httpx.post(f"{url}/v1/completions", json=request), 401, code="invalid_api_key")
    assert_error(httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    ok = httpx.post(f"{url}/v1/completions", json=request, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200


def test_requests_beyond_the_queue_get_429(serve):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    url = serve(engine, max_concurrency=1, max_queue=1)
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 3}
    results = {}

    def call(name):
        results[name] = httpx.post(f"{url}/v1/completions", json=request, timeout=30)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert engine.started.acquire(timeout=10)  # the first one runs (blocked on the gate)
    second = threading.Thread(target=call, args=("second",))
    second.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/health").json()["waiting"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    third = httpx.post(f"{url}/v1/completions", json=request)
    assert_error(third, 429, code="rate_limit_exceeded")
    assert third.headers["retry-after"] == "1"
    gate.set()
    first.join(30)
    second.join(30)
    assert results["first"].status_code == 200 and results["second"].status_code == 200
    health = httpx.get(f"{url}/health").json()
    assert (health["running"], health["waiting"]) == (0, 0)  # every slot was given back


def test_client_disconnect_stops_streamed_generation(serve):
    engine = FakeEngine(reply="y" * 400, delay_s=0.01)
    url = serve(engine, max_tokens_cap=1000)
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "fake-model", "prompt": "x", "max_tokens": 400, "stream": True}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while b"data: " not in received:  # generation has started
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream early"
            received += chunk
    deadline = time.monotonic() + 10
    while not engine.finished:
        assert time.monotonic() < deadline, "generation did not stop after the client went away"
        time.sleep(0.02)
    assert engine.finished[0].finish_reason == "stop"
    assert engine.finished[0].completion_tokens < 300  # 400 tokens take >= 4 s; it stopped well before
    while httpx.get(f"{url}/health").json()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_client_disconnect_stops_plain_generation(serve):
    engine = FakeEngine(reply="y" * 400, delay_s=0.01)
    url = serve(engine, max_tokens_cap=1000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/completions", json={"model": "fake-model", "prompt": "x", "max_tokens": 400},
                   timeout=0.5)
    deadline = time.monotonic() + 10
    while not engine.finished:
        assert time.monotonic() < deadline, "generation did not stop after the client went away"
        time.sleep(0.02)
    assert engine.finished[0].completion_tokens < 300


def test_handoff_delivers_every_item_in_order_across_threads():
    """The generating thread's items reach the event loop all and in order, whatever the
    interleaving of ``put`` (another thread) with ``take`` clearing its wake flag."""
    import asyncio

    from hrmcode.serve.app import _Handoff

    async def main() -> tuple[list, int]:
        handoff = _Handoff(asyncio.get_running_loop())

        def produce() -> None:
            for i in range(20000):
                handoff.put(i)
                if i % 997 == 0:
                    time.sleep(0.001)  # the loop catches up and waits: the next put must wake it
            handoff.put(None)

        thread = threading.Thread(target=produce)
        thread.start()
        got, takes = [], 0
        while not got or got[-1] is not None:
            got += await handoff.take()
            takes += 1
        thread.join()
        return got, takes

    got, takes = asyncio.run(asyncio.wait_for(main(), 30))
    assert got == [*range(20000), None]
    assert takes < 20001  # several items per wake: the point of coalescing


def test_a_request_without_a_seed_samples_afresh(serve):
    """As OpenAI's API: no seed, a fresh one per request (k sampled requests of one prompt are k samples, not
    k copies); a given seed is used as is, choice i with seed + i."""
    seeds = []

    class Recording(FakeEngine):
        def stream(self, prompt, params, should_stop):
            seeds.append(params.seed)
            return super().stream(prompt, params, should_stop)

    url = serve(Recording())
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 2, "temperature": 0.8}
    for body in (request, request, {**request, "n": 3}, {**request, "seed": 7, "n": 2}):
        assert httpx.post(f"{url}/v1/completions", json=body).status_code == 200
    assert seeds[0] != seeds[1]
    assert seeds[3:5] == [seeds[2] + 1, seeds[2] + 2] and seeds[2] not in seeds[:2]
    assert seeds[5:] == [7, 8]
