"""The server on a real (tiny, random-init) checkpoint: same tokens as the library, real clients."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from hrmcode.quantize import load_any
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.serve.app import ServeSettings
from hrmcode.serve.server import background_server, checkpoint_app
from tests.quantize.tiny import make_tiny_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def server(tiny):
    app = checkpoint_app(tiny, ServeSettings(api_key="k", max_tokens_cap=64, max_concurrency=2))
    with background_server(app) as url:
        yield url


def library(tiny, prompt, **cfg):
    loaded = load_any(tiny)
    return generate(loaded.model, loaded.tokenizer, prompt, GenerationConfig(**cfg))


AUTH = {"Authorization": "Bearer k"}


def test_greedy_completion_matches_library_generate(tiny, server):
    expected = library(tiny, "def add(a, b):", max_new_tokens=24, temperature=0.0)
    body = httpx.post(f"{server}/v1/completions", headers=AUTH, json={
        "model": "model", "prompt": "def add(a, b):", "max_tokens": 24, "temperature": 0}).json()
    assert body["choices"][0]["text"] == expected.text
    assert body["choices"][0]["finish_reason"] == expected.finish_reason
    assert body["usage"]["completion_tokens"] == expected.completion_tokens
    assert body["usage"]["prompt_tokens"] == expected.prompt_tokens


def test_streamed_and_plain_agree_with_stop_and_sampling(tiny, server):
    request = {"model": "model", "prompt": "def rev(s):", "max_tokens": 30, "temperature": 0.8, "top_p": 0.9,
               "seed": 7, "stop": ["\n\n"]}
    plain = httpx.post(f"{server}/v1/completions", headers=AUTH, json=request).json()
    with httpx.stream("POST", f"{server}/v1/completions", headers=AUTH, json={**request, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain["choices"][0]["text"]
    expected = library(tiny, "def rev(s):", max_new_tokens=30, temperature=0.8, top_p=0.9, seed=7, stop=["\n\n"])
    assert plain["choices"][0]["text"] == expected.text  # seeded sampling is reproducible too


def test_chat_uses_the_training_template(tiny, server):
    loaded = load_any(tiny)
    ids = loaded.config.prompt.encode(loaded.tokenizer, "add two numbers", level="solve")
    expected = generate(loaded.model, loaded.tokenizer, ids, GenerationConfig(max_new_tokens=16))
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="k", max_retries=0)
    reply = client.chat.completions.create(model="model", max_tokens=16, temperature=0,
                                           messages=[{"role": "user", "content": "add two numbers"}])
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.prompt_tokens == len(ids)
    stream = client.chat.completions.create(model="model", max_tokens=16, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "add two numbers"}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == expected.text


def test_openai_client_completions_and_errors(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["model"]
    completion = client.completions.create(model="model", prompt="def square(x):", max_tokens=8, temperature=0, n=2)
    assert len(completion.choices) == 2 and completion.choices[0].text == completion.choices[1].text
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=4)
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.completions.create(model="model", prompt="x", max_tokens=65)
    assert excinfo.value.body["param"] == "max_tokens"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()


def test_tool_messages_are_refused(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="model", messages=[{"role": "tool", "content": "x",
                                                                 "tool_call_id": "1"}])


def test_seeds_out_of_range_are_a_400_and_the_ends_of_the_range_generate(tiny, server):
    """The model's torch generator takes the whole accepted range (seed + i for n choices), nothing more."""
    with httpx.Client(base_url=server, headers=AUTH) as client:
        refused = client.post("/v1/completions", json={"model": "model", "prompt": "x", "seed": 2**70})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "seed"
        for seed in (2**63 - 1, -(2**63)):
            request = {"model": "model", "prompt": "def f(x):", "max_tokens": 4, "temperature": 1.0, "n": 16,
                       "seed": seed}
            reply = client.post("/v1/completions", json=request)
            assert reply.status_code == 200, reply.text  # on the same keep-alive connection as the 400
            expected = library(tiny, "def f(x):", max_new_tokens=4, temperature=1.0, seed=seed + 15)
            assert reply.json()["choices"][15]["text"] == expected.text
