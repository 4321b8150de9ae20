"""No request can monopolise the server: the work cap, clients that go away (running and queued),
a keep-alive connection that survives errors, connection deadlines, a busy port. Hostile request
bodies (out-of-range numbers, oversized work, text no tokenizer takes) are in ``test_hostile.py``.

Every check looks from outside the app: /health, the engine's own record of what it generated,
and what a raw socket receives.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import httpx
import pytest

from hrmcode.errors import HrmcodeError
from hrmcode.serve.engine import Completion
from hrmcode.serve.server import listen
from hrmcode.serve.settings import ServeSettings
from tests.serve.fakes import FakeEngine
from tests.serve.test_http import assert_error

pytestmark = pytest.mark.timeout(60)

COMPLETIONS = "/v1/completions"


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def raw_request(body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)


def wait_for(condition, within_s: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took, fail after ``within_s``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within_s, f"{what} did not happen within {within_s} s"
        time.sleep(0.01)
    return time.monotonic() - start


def health(url: str) -> dict:
    return httpx.get(f"{url}/health").json()


def test_the_issue_body_over_the_work_cap_is_refused_before_any_work(serve):
    engine = FakeEngine()
    url = serve(engine)  # the defaults: max_tokens_cap 1024, max_request_tokens 16384
    hostile = {"model": "fake-model", "prompt": ["def f():"] * 1000, "n": 16, "max_tokens": 1024}
    assert len(json.dumps(hostile)) < 14_000  # the 13 KB body of the report
    err = assert_error(httpx.post(f"{url}{COMPLETIONS}", json=hostile), 400, code="max_request_tokens_exceeded")
    assert "16384000" in err["message"] and "16384" in err["message"]
    assert not engine.started.acquire(timeout=0.2)  # nothing was generated
    assert (health(url)["running"], health(url)["waiting"]) == (0, 0)


def test_the_work_cap_counts_prompts_n_and_max_tokens(serve):
    url = serve(max_request_tokens=40)
    at_cap = {"model": "fake-model", "prompt": ["a", "b"], "n": 2, "max_tokens": 10}
    assert httpx.post(f"{url}{COMPLETIONS}", json=at_cap).status_code == 200
    assert_error(httpx.post(f"{url}{COMPLETIONS}", json={**at_cap, "max_tokens": 11}), 400,
                 code="max_request_tokens_exceeded")
    assert_error(httpx.post(f"{url}{COMPLETIONS}", json={**at_cap, "prompt": ["a", "b", "c"]}), 400,
                 code="max_request_tokens_exceeded")
    chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "n": 5, "max_tokens": 9}
    assert_error(httpx.post(f"{url}/v1/chat/completions", json=chat), 400, code="max_request_tokens_exceeded")
    # the default max_tokens counts too: 5 x 8 = 40 fits, 5 x 9 does not
    assert httpx.post(f"{url}/v1/chat/completions", json={**chat, "max_tokens": 8}).status_code == 200


def test_a_client_gone_mid_generation_frees_the_slot_and_starts_no_further_choice(serve):
    engine = FakeEngine(reply="y" * 400, delay_s=0.01)  # each choice takes >= 4 s
    url = serve(engine, max_tokens_cap=1000)
    request = {"model": "fake-model", "prompt": ["a", "b", "c"], "n": 4, "max_tokens": 400}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}{COMPLETIONS}", json=request, timeout=0.5)
    gone = time.monotonic()
    wait_for(lambda: health(url)["running"] == 0, 2.0, "the slot being freed")
    assert time.monotonic() - gone < 2.0
    time.sleep(0.3)  # a choice started late would show up here
    assert len(engine.finished) == 1, "the 11 remaining choices must not start"
    assert engine.finished[0].finish_reason == "stop" and engine.finished[0].completion_tokens < 200


def test_a_streaming_client_gone_frees_the_slot(serve):
    engine = FakeEngine(reply="y" * 400, delay_s=0.01)
    url = serve(engine, max_tokens_cap=1000)
    with socket.create_connection(host_port(url), timeout=10) as sock:
        sock.sendall(raw_request({"model": "fake-model", "prompt": ["a", "b"], "n": 3, "max_tokens": 400,
                                  "stream": True}))
        received = b""
        while b"data: " not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream early"
            received += chunk
    wait_for(lambda: health(url)["running"] == 0, 2.0, "the slot being freed")
    time.sleep(0.3)
    assert len(engine.finished) == 1 and engine.finished[0].completion_tokens < 200


def test_a_queued_request_whose_client_went_leaves_the_queue(serve):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    url = serve(engine, max_concurrency=1, max_queue=1)
    request = {"model": "fake-model", "prompt": "x", "max_tokens": 3}
    first: dict = {}
    runner = threading.Thread(target=lambda: first.update(r=httpx.post(f"{url}{COMPLETIONS}", json=request,
                                                                       timeout=30)))
    runner.start()
    try:
        assert engine.started.acquire(timeout=10)  # the first one holds the only slot
        with socket.create_connection(host_port(url), timeout=10) as sock:
            sock.sendall(raw_request(request))
            wait_for(lambda: health(url)["waiting"] == 1, 5.0, "the second request queueing")
        wait_for(lambda: health(url)["waiting"] == 0, 2.0, "the gone client's request leaving the queue")
        assert health(url)["running"] == 1  # the first one still runs
        # its place in the queue is free again: another request queues instead of getting 429
        third: dict = {}
        queued = threading.Thread(target=lambda: third.update(r=httpx.post(f"{url}{COMPLETIONS}", json=request,
                                                                           timeout=30)))
        queued.start()
        wait_for(lambda: health(url)["waiting"] == 1, 5.0, "the third request queueing")
    finally:
        gate.set()
        runner.join(30)
    queued.join(30)
    assert first["r"].status_code == 200 and third["r"].status_code == 200
    assert len(engine.finished) == 2  # the first and the third; the gone client's never ran


def test_seeds_at_the_ends_of_the_range_are_accepted(serve):
    url = serve()
    for seed in (2**63 - 1, -(2**63)):
        reply = httpx.post(f"{url}{COMPLETIONS}", json={"model": "fake-model", "prompt": "x", "max_tokens": 2,
                                                        "n": 16, "seed": seed})
        assert reply.status_code == 200, reply.text


class BuggyEngine(FakeEngine):
    """Fails inside the generation for one prompt, as a bug in the model code would."""

    def stream(self, prompt, params, should_stop):
        if prompt == "boom":
            raise ValueError("Overflow when unpacking long long")
        yield from super().stream(prompt, params, should_stop)


def test_errors_keep_the_keep_alive_connection_usable(serve):
    url = serve(BuggyEngine())
    connection = http.client.HTTPConnection(*host_port(url), timeout=10)

    def post(body: dict) -> tuple[int, dict]:
        connection.request("POST", COMPLETIONS, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    status, body = post({"model": "fake-model", "prompt": "x", "seed": 2**70})
    assert status == 400 and body["error"]["param"] == "seed"
    sock = connection.sock
    status, body = post({"model": "fake-model", "prompt": "boom"})  # a bug: 500, type name only
    assert status == 500 and body["error"]["message"] == "internal server error (ValueError)"
    status, body = post({"model": "fake-model", "prompt": "x", "max_tokens": 3})
    assert status == 200 and body["choices"][0]["text"] == "def"
    assert connection.sock is sock, "the server closed the keep-alive connection"
    connection.close()


def closed_within(sock: socket.socket, within_s: float) -> tuple[bool, bytes]:
    """Read until the server closes (True) or ``within_s`` passes (False); return what arrived too."""
    sock.settimeout(within_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    return True, received


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(serve):
    url = serve(idle_timeout_s=0.5)  # the client timeout stays 30 s
    with socket.create_connection(host_port(url)) as sock:
        start = time.monotonic()
        closed, _ = closed_within(sock, 5)
        assert closed and 0.4 < time.monotonic() - start < 3


def test_headers_sent_a_byte_at_a_time_do_not_hold_the_connection(serve):
    url = serve(client_timeout_s=0.5)  # the idle timeout stays 5 s: the bytes keep it from firing
    with socket.create_connection(host_port(url)) as sock:
        start = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # closed under us: what we want
            time.sleep(0.05)
            if time.monotonic() - start > 3:
                break
        closed, _ = closed_within(sock, 3)
        assert closed and time.monotonic() - start < 4


def test_a_body_that_stalls_gets_408_and_the_connection_closes(serve):
    url = serve(client_timeout_s=0.5)
    with socket.create_connection(host_port(url)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"model\":")
        closed, received = closed_within(sock, 5)
    assert closed and received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"request_timeout" in received


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve):
    url = serve(idle_timeout_s=0.5)
    with socket.create_connection(host_port(url)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        closed, received = closed_within(sock, 5)
        assert received.startswith(b"HTTP/1.1 200")
        assert closed and time.monotonic() - start < 3


class FloodEngine(FakeEngine):
    """Streams 64 KiB pieces until told to stop (at most 20000 of them: over 100 s unstopped)."""

    def stream(self, prompt, params, should_stop):
        self.started.release()
        pieces = 0
        while pieces < 20000 and not should_stop():
            yield "x" * 65536
            pieces += 1
            time.sleep(0.005)
        done = Completion("", len(prompt), pieces, "stop")
        self.finished.append(done)
        yield done


def test_a_client_that_stops_reading_is_disconnected_and_its_generation_stops(serve):
    engine = FloodEngine()
    url = serve(engine, client_timeout_s=0.5)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(host_port(url))
        sock.sendall(raw_request({"model": "fake-model", "prompt": "x", "max_tokens": 1000, "stream": True}))
        assert engine.started.acquire(timeout=10)
        # read nothing: the server's buffers fill, its send waits, and after 0.5 s it gives up
        wait_for(lambda: engine.finished, 30.0, "the generation stopping")  # bounds a loaded machine, not speed
        assert engine.finished[0].completion_tokens < 20000
        wait_for(lambda: health(url)["running"] == 0, 2.0, "the slot being freed")
        closed, received = closed_within(sock, 10)
    assert closed and received.startswith(b"HTTP/1.1 200")
    assert b"[DONE]" not in received  # the server closed it mid-answer


def test_a_slow_but_steady_request_is_served(serve):
    """The deadlines do not cut a client that keeps within them: headers, then the body, in pieces."""
    url = serve(client_timeout_s=1.0)
    request = raw_request({"model": "fake-model", "prompt": "x", "max_tokens": 3})
    head, body = request.split(b"\r\n\r\n", 1)
    with socket.create_connection(host_port(url), timeout=10) as sock:
        sock.sendall(head[:10])
        time.sleep(0.4)
        sock.sendall(head[10:] + b"\r\n\r\n")
        time.sleep(0.4)
        sock.sendall(body[:5])
        time.sleep(0.4)
        sock.sendall(body[5:])
        received = b""
        while b'"usage"' not in received:
            chunk = sock.recv(4096)
            assert chunk
            received += chunk
    assert received.startswith(b"HTTP/1.1 200")


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HrmcodeError) as caught:
            listen("127.0.0.1", port)
    error = caught.value
    assert error.exit_code == 1 and "\n" not in str(error)
    assert f"cannot listen on 127.0.0.1:{port}" in str(error) and "in use" in str(error)



def test_serve_on_a_port_in_use_exits_1_with_one_line_before_loading_the_model(cli, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", str(tmp_path / "no-model-here"), "--port", str(port))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines


def test_serve_options_reach_the_server_settings_and_a_failed_load_frees_the_port(cli, monkeypatch):
    import hrmcode.serve.server as server_module
    from hrmcode.errors import CheckpointError

    seen: dict = {}
    bound: list[socket.socket] = []
    real_listen = server_module.listen

    def recording_listen(host, port):
        bound.extend(real_listen(host, port))
        return bound

    def failing_load(checkpoint, settings, **_kwargs):
        seen["settings"] = settings
        raise CheckpointError("stopped before loading", "nothing to do")

    monkeypatch.setattr(server_module, "listen", recording_listen)
    monkeypatch.setattr(server_module, "checkpoint_app", failing_load)
    monkeypatch.setenv("HRMCODE_API_KEY", "from-the-environment")
    result = cli("serve", "some-model", "--port", "0", "--max-request-tokens", "99", "--client-timeout", "1.5")
    assert result.exit_code == 1 and "stopped before loading" in result.stderr
    expected = ServeSettings(api_key="from-the-environment", max_request_tokens=99, client_timeout_s=1.5)
    assert seen["settings"] == expected
    assert bound and all(sock.fileno() == -1 for sock in bound)  # the port is not held after the failure
