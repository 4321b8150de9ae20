"""Continuous batching: concurrent requests decoded as one batch give each request the tokens it
gets alone (float and int8 models, the fused int8 batch kernel included), rows join and leave
mid-flight, sampling stays per request, a closed consumer leaves the batch, and over HTTP many
concurrent clients get what the library gives each of them."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from torch import nn

from hrmcode.model import build_model, fastpath, preset
from hrmcode.model.generate import GenerationConfig, generate, next_tokens
from hrmcode.quantize import load_any
from hrmcode.quantize.torch_backend import DynamicInt8Linear, int8_per_channel
from hrmcode.serve.app import ServeSettings
from hrmcode.serve.batching import BatchDecoder
from hrmcode.serve.server import background_server, checkpoint_app
from tests.quantize.tiny import make_tiny_model

pytestmark = pytest.mark.timeout(300)
PROMPTS = [[1, 5, 7, 9], [3] * 11, [4, 8, 15, 16, 23, 42], [2, 2], [9] * 70]  # the fifth waits for a free row


def _model(arch: str, int8: bool, **overrides) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch, vocab_size=97, **overrides)).eval()
    if int8:
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(module, name, DynamicInt8Linear(*int8_per_channel(child.weight)))
        model.kv_dtype = torch.float16  # as the torch backend sets it
    return model


def _alone(model, prompt, cfg, count):
    with torch.no_grad():
        return list(itertools.islice(next_tokens(model, prompt, cfg), count))


def _together(decoder, model, prompts, cfgs):
    out = [None] * len(prompts)

    def consume(i):
        out[i] = list(decoder.tokens(model, prompts[i], cfgs[i]))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


# 70 tokens after a 70-token prompt: past 64 and 128 positions, the batch buffers grow mid-flight
@pytest.mark.parametrize("arch,int8,overrides,tokens", [("hrm", False, {}, 12), ("transformer", False, {}, 12),
                                                        ("hrm", True, {}, 70), ("transformer", True, {}, 12),
                                                        ("hrm", True, {"mode": "act"}, 12)])
def test_each_request_gets_its_own_tokens(arch, int8, overrides, tokens, monkeypatch):
    model = _model(arch, int8, **overrides)
    fused_calls = []
    run_rows = fastpath._run_q8_rows
    monkeypatch.setattr(fastpath, "_run_q8_rows", lambda *a: fused_calls.append(1) or run_rows(*a))
    cfg = GenerationConfig(max_new_tokens=tokens)
    expected = [_alone(model, p, cfg, tokens) for p in PROMPTS]
    got = _together(BatchDecoder(model, eos_id=None, max_batch=4), model, PROMPTS, [cfg] * len(PROMPTS))
    assert got == expected
    assert bool(fused_calls) == int8  # int8 stacks ran through the batch kernel, float ones through PyTorch


def test_eight_int8_rows_get_their_own_tokens():
    """8 rows: the wide 5-8-row matmul tiles, and every row's attention claimed by either kernel thread."""
    model = _model("hrm", True)
    prompts = [[i + 1] * (3 + 2 * i) for i in range(8)]
    cfg = GenerationConfig(max_new_tokens=10)
    expected = [_alone(model, p, cfg, 10) for p in prompts]
    assert _together(BatchDecoder(model, eos_id=None, max_batch=8), model, prompts, [cfg] * 8) == expected


def test_sampling_is_per_request_and_seeded():
    model = _model("hrm", True)
    cfgs = [GenerationConfig(max_new_tokens=20, temperature=0.9, top_p=0.9, seed=s) for s in (1, 2, 3)]
    expected = [_alone(model, PROMPTS[i], cfgs[i], 20) for i in range(3)]
    assert len({tuple(e) for e in expected}) == 3
    assert _together(BatchDecoder(model, eos_id=None, max_batch=8), model, PROMPTS[:3], cfgs) == expected


def test_eos_ends_a_request_and_a_closed_consumer_leaves_the_batch():
    model = _model("transformer", True)
    cfg = GenerationConfig(max_new_tokens=40)
    stream = _alone(model, PROMPTS[0], cfg, 40)
    eos = stream[5]  # pretend this id is EOS: the request ends right after it
    decoder = BatchDecoder(model, eos_id=eos, max_batch=4)
    assert list(decoder.tokens(model, PROMPTS[0], cfg)) == stream[: stream.index(eos) + 1]
    early = decoder.tokens(model, PROMPTS[1], cfg)
    first = [next(early) for _ in range(3)]
    other = list(decoder.tokens(model, PROMPTS[2], GenerationConfig(max_new_tokens=25)))  # runs beside the open one
    early.close()  # a stop sequence or a client gone
    assert first == _alone(model, PROMPTS[1], cfg, 3)
    assert other == _alone(model, PROMPTS[2], cfg, 25)
    for _ in range(200):
        if decoder.running == 0:
            break
        threading.Event().wait(0.01)
    assert decoder.running == 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_many_clients_over_http_get_what_the_library_gives_each(tiny):
    loaded = load_any(tiny)
    requests = [{"prompt": f"def f{i}(x):", "max_tokens": 24, "temperature": 0.7 * (i % 2), "seed": i,
                 "stop": ["\n\n"] if i % 3 == 0 else []} for i in range(8)]
    expected = [generate(loaded.model, loaded.tokenizer, r["prompt"],
                         GenerationConfig(max_new_tokens=24, temperature=r["temperature"], seed=r["seed"],
                                          stop=r["stop"])).text for r in requests]
    app = checkpoint_app(tiny, ServeSettings(max_tokens_cap=64, max_concurrency=8, max_queue=8))
    with background_server(app) as url, ThreadPoolExecutor(8) as pool:
        def ask(request):
            body = {"model": "model", **request}
            return httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]

        assert list(pool.map(ask, requests)) == expected


def test_a_request_alone_runs_exactly_the_library_path(monkeypatch):
    model = _model("hrm", False)
    single_calls = []
    decode = fastpath._decode_float
    monkeypatch.setattr(fastpath, "_decode_float", lambda *a: single_calls.append(1) or decode(*a))
    cfg = GenerationConfig(max_new_tokens=12)
    expected = _alone(model, PROMPTS[1], cfg, 12)
    alone_calls = len(single_calls)
    decoder = BatchDecoder(model, eos_id=None, max_batch=8)
    assert list(decoder.tokens(model, PROMPTS[1], cfg)) == expected
    assert len(single_calls) == 2 * alone_calls > 0  # the same fused single-sequence calls, none batched


def test_a_failed_prefill_fails_its_own_request_only(monkeypatch):
    """A prompt whose prefill raises (out of memory, a bug) reaches its consumer as that error; the rows already
    decoding go on and get their tokens, and the next request is served."""
    import hrmcode.serve.batching as batching

    model = _model("transformer", False)
    cfg = GenerationConfig(max_new_tokens=12)
    expected = [_alone(model, p, cfg, 12) for p in PROMPTS[:2]]
    real_prefill = batching.prefill

    def prefill(model_, ids, cfg_, cache):
        if list(ids) == [6, 6, 6]:
            raise RuntimeError("out of memory (planted)")
        return real_prefill(model_, ids, cfg_, cache)

    monkeypatch.setattr(batching, "prefill", prefill)
    decoder = BatchDecoder(model, eos_id=None, max_batch=4)
    with ThreadPoolExecutor(3) as pool:
        good = [pool.submit(lambda p=p: list(decoder.tokens(model, p, cfg))) for p in PROMPTS[:2]]
        bad = pool.submit(lambda: list(decoder.tokens(model, [6, 6, 6], cfg)))
        with pytest.raises(RuntimeError, match="planted"):
            bad.result(timeout=60)
        assert [f.result(timeout=60) for f in good] == expected
    assert list(decoder.tokens(model, PROMPTS[0], cfg)) == expected[0]


def test_a_batch_frees_its_buffers_when_its_last_row_leaves(monkeypatch):
    """An idle server holds no batch buffers, and not only once a cyclic collection runs: their tensors
    do not hasten one, so hundreds of MB of a busy server's KV caches lingered between collections."""
    import gc
    import weakref

    from hrmcode.model.kvcache import BatchKVCache

    caches = []
    add_row = BatchKVCache.add_row
    monkeypatch.setattr(BatchKVCache, "add_row", lambda self, single: caches.append(weakref.ref(self))
                        or add_row(self, single))
    model = _model("hrm", True)
    cfg = GenerationConfig(max_new_tokens=8)
    decoder = BatchDecoder(model, eos_id=None, max_batch=4)
    gc.disable()
    try:
        assert _together(decoder, model, PROMPTS[:3], [cfg] * 3) == [_alone(model, p, cfg, 8) for p in PROMPTS[:3]]
        assert caches  # the rows shared a batch
        for _ in range(200):
            if all(ref() is None for ref in caches):
                break
            threading.Event().wait(0.01)
        assert [ref() for ref in caches if ref() is not None] == []
    finally:
        gc.enable()


def test_a_request_the_batch_cannot_take_fails_instead_of_hanging(monkeypatch):
    """Growing the batch for a joining row can fail (out of memory): the running rows fail, and so must the joining
    request, which has its first token already and would otherwise wait for ever."""
    from hrmcode.model.kvcache import BatchKVCache

    def cannot_grow(self, single):
        raise RuntimeError("out of memory growing the batch")

    monkeypatch.setattr(BatchKVCache, "add_row", cannot_grow)
    model = _model("hrm", False)
    decoder = BatchDecoder(model, eos_id=None, max_batch=4)
    cfg = GenerationConfig(max_new_tokens=200)
    outcomes: dict[int, str] = {}

    def consume(index: int) -> None:
        try:
            outcomes[index] = str(len(list(decoder.tokens(model, PROMPTS[index], cfg))))
        except RuntimeError as exc:
            outcomes[index] = str(exc)

    first = threading.Thread(target=consume, args=(0,))
    first.start()
    threading.Event().wait(0.3)  # decoding alone by now
    second = threading.Thread(target=consume, args=(1,))
    second.start()
    for thread in (first, second):
        thread.join(20)
        assert not thread.is_alive(), "a consumer hung"
    assert outcomes == {0: "out of memory growing the batch", 1: "out of memory growing the batch"}
