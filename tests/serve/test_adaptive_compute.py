"""A per-request compute budget for looped models over HTTP: ``max_segments`` / ``halt_threshold`` in
the body (and as server defaults) reach the model, ``usage.segments`` reports what ran (streaming
too), bad budgets are one-line 400s, and batched requests of different budgets get their own text."""

from __future__ import annotations

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hrmcode.model.generate import GenerationConfig, generate, next_tokens
from hrmcode.model.kvcache import BatchKVCache
from hrmcode.quantize import load_any
from hrmcode.serve.app import ServeSettings
from hrmcode.serve.batching import BatchDecoder
from hrmcode.serve.server import background_server, checkpoint_app
from tests.one_thread import _one_thread_module  # noqa: F401 (an autouse fixture)
from tests._act_model import PROMPTS, make_act_model
from tests.quantize.tiny import make_tiny_model

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def act(tmp_path_factory):
    return make_act_model(tmp_path_factory.mktemp("act"))


@pytest.fixture(scope="module")
def loaded(act):
    return load_any(act)


@pytest.fixture(scope="module")
def mixed(loaded):
    """Two prompts whose Q heads halt after different numbers of segments (both under 4)."""
    chosen = {}
    for prompt in PROMPTS:
        used = generate(loaded.model, loaded.tokenizer, prompt, GenerationConfig(max_new_tokens=1)).segments
        chosen.setdefault(used, prompt)
    counts = sorted(chosen)
    assert len(counts) >= 2, f"every prompt halted after the same number of segments: {counts}"
    return [(chosen[c], c) for c in counts[:2]]


def _library(loaded, prompt, tokens=12, **budget):
    return generate(loaded.model, loaded.tokenizer, prompt, GenerationConfig(max_new_tokens=tokens, **budget))


def _post(url, body, path="/v1/completions"):
    return httpx.post(f"{url}{path}", json={"model": "model", "max_tokens": 12, "temperature": 0, **body}, timeout=120)


def test_the_body_budget_reaches_the_model_and_usage_reports_segments(act, loaded, mixed):
    (prompt, used), _ = mixed
    app = checkpoint_app(act, ServeSettings(max_concurrency=1), threads=1)
    with background_server(app) as url:
        free = _post(url, {"prompt": prompt}).json()
        assert free["usage"]["segments"] == used
        assert free["choices"][0]["text"] == _library(loaded, prompt).text
        one = _post(url, {"prompt": prompt, "max_segments": 1}).json()
        expected = _library(loaded, prompt, max_segments=1)
        assert one["usage"]["segments"] == expected.segments == 1
        assert one["choices"][0]["text"] == expected.text
        eager = _post(url, {"prompt": prompt, "halt_threshold": 0.01, "n": 2}).json()
        assert eager["usage"]["segments"] == 2  # one segment for each of the two choices
        chat = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "model", "max_tokens": 6, "max_segments": 2, "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": prompt}]})
        chunks = [json.loads(line[6:]) for line in chat.text.splitlines()
                  if line.startswith("data: {")]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["segments"] <= 2
        assert all("usage" not in c for c in chunks[:-1])


def test_server_defaults_apply_to_requests_without_a_budget(act, loaded, mixed):
    _, (prompt, used) = mixed
    assert used > 1
    app = checkpoint_app(act, ServeSettings(max_concurrency=1, max_segments=used - 1), threads=1)
    with background_server(app) as url:
        capped = _post(url, {"prompt": prompt}).json()
        assert capped["usage"]["segments"] == used - 1
        assert capped["choices"][0]["text"] == _library(loaded, prompt, max_segments=used - 1).text
        assert _post(url, {"prompt": prompt, "max_segments": used}).json()["usage"]["segments"] == used


def test_bad_budgets_are_one_line_400s(act, tmp_path):
    transformer = make_tiny_model(tmp_path / "t", arch="transformer", max_seq_len=64)
    with background_server(checkpoint_app(act, ServeSettings(), threads=1)) as url, \
            background_server(checkpoint_app(transformer, ServeSettings(), threads=1)) as plain:
        for body, param, words in (({"max_segments": 0}, "max_segments", "greater than or equal to 1"),
                                   ({"halt_threshold": 1.0}, "halt_threshold", "less than 1"),
                                   ({"halt_threshold": "often"}, "halt_threshold", "number"),
                                   ({"max_segments": 9}, "max_segments", "over this server's limit of 4 segments")):
            reply = _post(url, {"prompt": "def f():", **body})
            error = reply.json()["error"]
            assert reply.status_code == 400 and error["param"] == param, error
            assert words in error["message"] and "\n" not in error["message"]
        reply = _post(plain, {"prompt": "def f():", "max_segments": 2})
        assert reply.status_code == 400 and "need a looped hrm or trm model" in reply.json()["error"]["message"]
        assert _post(plain, {"prompt": "def f():"}).json()["usage"].keys() == {
            "prompt_tokens", "completion_tokens", "total_tokens"}  # no segments for a transformer


def test_batched_requests_of_different_budgets_get_what_each_gets_alone(act, loaded, mixed, monkeypatch):
    (short, _), (long, used) = mixed
    cases = [(long, GenerationConfig(max_new_tokens=16)), (short, GenerationConfig(max_new_tokens=16)),
             (long, GenerationConfig(max_new_tokens=16, max_segments=1)),
             (short, GenerationConfig(max_new_tokens=16, halt_threshold=0.99))]
    expected = []
    for prompt, cfg in cases:
        seen = []
        ids = loaded.tokenizer.encode(prompt)
        expected.append((list(itertools.islice(next_tokens(loaded.model, ids, cfg, seen.append), 16)), seen[0]))
    assert len({segments for _, segments in expected}) >= 2
    rows_seen = []
    add_row = BatchKVCache.add_row

    def recording_add_row(self, single):
        row = add_row(self, single)
        rows_seen.append(self.segments[: self.rows].tolist())  # each row's segment count once this one joined
        return row

    monkeypatch.setattr(BatchKVCache, "add_row", recording_add_row)
    decoder = BatchDecoder(loaded.model, eos_id=None, max_batch=4)
    got = [None] * len(cases)

    def consume(i):
        seen = []
        prompt, cfg = cases[i]
        got[i] = (list(decoder.tokens(loaded.model, loaded.tokenizer.encode(prompt), cfg, seen.append)), seen[0])

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected
    assert any(len(set(rows)) >= 2 for rows in rows_seen)  # rows of different segment counts shared the batch

    app = checkpoint_app(act, ServeSettings(max_concurrency=4, max_queue=4), threads=1)
    bodies = [{"prompt": long}, {"prompt": short, "max_segments": 1}, {"prompt": long, "max_segments": 2},
              {"prompt": short}]
    alone = [_library(loaded, b["prompt"], 24, max_segments=b.get("max_segments")) for b in bodies]
    with background_server(app) as url, ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda b: _post(url, {**b, "max_tokens": 24}).json(), bodies))
    assert [r["choices"][0]["text"] for r in replies] == [a.text for a in alone]
    assert [r["usage"]["segments"] for r in replies] == [a.segments for a in alone]


@pytest.mark.parametrize("options,words", [(["--halt-threshold", "1"], "halt threshold must be in (0, 1), got 1.0"),
                                           (["--max-segments", "0"], "Invalid value for '--max-segments'"),
                                           (["--max-segments", "2"], "need a looped hrm or trm model")])
def test_bad_serve_defaults_are_usage_errors(cli, act, tmp_path, options, words):
    model = act if options[0] == "--halt-threshold" or options[1] == "0" else \
        make_tiny_model(tmp_path / "t", arch="transformer", max_seq_len=64)
    result = cli("serve", str(model), "--port", "0", *options)
    assert result.exit_code == 2 and words in result.stderr, result.stderr
    if options[1] != "0":  # hrmcode's own error (typer's range check draws its usage box)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
