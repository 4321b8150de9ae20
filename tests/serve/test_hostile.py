"""The hostile corpus: requests that try to monopolise, crash or wedge a server on a real (tiny) model.

Each file in ``tests/serve/hostile/`` is one attack: ``attack`` (what it tries), ``path``, the
body as JSON (``body``) or as the exact text sent (``raw``: NaN, huge integers, lone surrogates),
and the answer it must get (``status``, and ``param`` / ``code`` where given). Every attack must be
refused with that answer before any generation starts (counted by the engine, not by the app),
leave ``/health`` at nothing running and nothing waiting, and leave its keep-alive connection
usable: a good request on the same socket right after it gets a 200.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import httpx
import pytest

from hrmcode.quantize import load_any
from hrmcode.serve.app import create_app
from hrmcode.serve.model_engine import ModelEngine
from hrmcode.serve.server import background_server
from hrmcode.serve.settings import ServeSettings
from tests.quantize.tiny import make_tiny_model

pytestmark = pytest.mark.timeout(120)

CORPUS = Path(__file__).parent / "hostile"
ATTACKS = sorted(CORPUS.glob("*.json"))
GOOD = {"model": "model", "prompt": "def f(x):", "max_tokens": 4, "temperature": 0}


class CountingEngine(ModelEngine):
    """The real engine, counting the generations it starts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = 0

    def stream(self, prompt, params, should_stop):
        self.started += 1
        yield from super().stream(prompt, params, should_stop)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return CountingEngine(load_any(make_tiny_model(tmp_path_factory.mktemp("tiny"))), "model")


@pytest.fixture(scope="module")
def server(engine):
    with background_server(create_app(engine, ServeSettings())) as url:  # the defaults a user gets
        yield url


def test_the_corpus_is_there():
    assert len(ATTACKS) >= 25


@pytest.mark.parametrize("path", ATTACKS, ids=lambda p: p.stem)
def test_attack_is_refused_and_leaves_the_server_as_it_was(path, engine, server):
    attack = json.loads(path.read_text(encoding="utf-8"))
    body = attack["raw"] if "raw" in attack else json.dumps(attack["body"])
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    started = engine.started
    try:
        connection.request("POST", attack["path"], body.encode("utf-8", "surrogatepass"),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == attack["status"], (attack["attack"], answer)
        assert set(answer) == {"error"} and answer["error"]["message"]
        for key in ("param", "code"):
            if key in attack:
                assert answer["error"][key] == attack[key], (attack["attack"], answer)
        assert engine.started == started, "a generation started"
        sock = connection.sock
        connection.request("POST", "/v1/completions", json.dumps(GOOD), {"Content-Type": "application/json"})
        after = connection.getresponse()
        assert after.status == 200, after.read()
        assert json.loads(after.read())["usage"]["completion_tokens"] >= 1
        assert connection.sock is sock, "the keep-alive connection was closed"
    finally:
        connection.close()
    health = httpx.get(f"{server}/health").json()
    assert (health["running"], health["waiting"]) == (0, 0)
