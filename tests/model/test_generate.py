"""Generation: the KV cache is exact, stop/length handling, sampling, streaming."""

from __future__ import annotations

import pytest
import torch

from hrmcode.errors import InputError, UsageError
from hrmcode.model import build_model, preset
from hrmcode.model.generate import GenerationConfig, generate, stream_generate
from hrmcode.model.kvcache import KVCache

VARIANTS = [
    ("hrm", {"mode": "fixed"}),
    ("hrm", {"mode": "act", "halt_max_steps": 2}),
    ("hrm", {"mode": "fixed", "prefix_bidirectional": True, "h_cycles": 1, "l_cycles": 3, "bp_steps": 3}),
    ("transformer", {}),
    ("transformer", {"prefix_bidirectional": True}),
]


def _model(tok, arch, seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(preset("tiny", arch, vocab_size=tok.vocab_size, max_seq_len=64, **overrides)).eval()


@pytest.mark.parametrize("arch,overrides", VARIANTS)
def test_cached_decoding_equals_recomputing_the_sequence(tok, arch, overrides):
    model = _model(tok, arch, **overrides)
    ids = torch.tensor([tok.encode("def add(a, b):\n    return")])
    prompt = 5
    with torch.no_grad():
        full = model(ids, prefix_lens=torch.tensor([prompt])).logits
        cache = KVCache()
        steps = [model(ids[:, :prompt], prefix_lens=torch.tensor([prompt]), cache=cache).logits]
        for t in range(prompt, ids.shape[1]):
            steps.append(model(ids[:, t:t + 1], cache=cache).logits)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert cache.length == ids.shape[1]
    if arch == "hrm":  # one cache per (segment, module call, layer)
        cfg = model.config
        assert len(cache.slots) == cfg.segments * cfg.h_cycles * (cfg.l_cycles * cfg.l_layers + cfg.h_layers)


@pytest.mark.parametrize("arch,overrides", VARIANTS)
def test_cached_and_uncached_generation_give_the_same_tokens(tok, arch, overrides):
    model = _model(tok, arch, seed=1, **overrides)
    cached = generate(model, tok, "def add(a, b):", GenerationConfig(max_new_tokens=25))
    uncached = generate(model, tok, "def add(a, b):", GenerationConfig(max_new_tokens=25, use_cache=False))
    assert cached.token_ids == uncached.token_ids and len(cached.token_ids) == 25
    assert cached.finish_reason == "length" and cached.completion_tokens == 25
    sampled = [generate(model, tok, "for i", GenerationConfig(max_new_tokens=15, temperature=1.0, seed=s, use_cache=c))
               for s, c in ((7, True), (7, False), (8, True))]
    assert sampled[0].token_ids == sampled[1].token_ids != sampled[2].token_ids


def test_stop_sequences_eos_and_context_limit(tok):
    model = _model(tok, "transformer", seed=2)
    free = generate(model, tok, "for i", GenerationConfig(max_new_tokens=20))
    text = free.text
    stop = text[5:7]
    cut = generate(model, tok, "for i", GenerationConfig(max_new_tokens=20, stop=[stop]))
    assert cut.finish_reason == "stop" and cut.text == text[: text.find(stop)]
    def eos_wins(module, inputs, output):
        output = output.clone()
        output[..., tok.eos_id] += 1e4
        return output

    model.lm_head.register_forward_hook(eos_wins)
    eos = generate(model, tok, "for i", GenerationConfig(max_new_tokens=20))
    assert eos.finish_reason == "stop" and eos.text == "" and eos.completion_tokens == 0
    timed = generate(model, tok, "for i", GenerationConfig(max_new_tokens=20, ignore_eos=True))  # fixed length
    assert timed.finish_reason == "length" and timed.token_ids == [tok.eos_id] * 20
    with pytest.raises(InputError, match="context is 64"):
        generate(model, tok, "x " * 100)
    with pytest.raises(InputError, match="empty"):
        generate(model, tok, "")


def test_generation_stops_at_max_seq_len(tok):
    model = _model(tok, "hrm", seed=3)
    prompt = tok.encode("def add(a, b):\n") * 4
    result = generate(model, tok, prompt[:60], GenerationConfig(max_new_tokens=50))
    assert result.finish_reason == "length" and result.prompt_tokens + result.completion_tokens == 64


def test_top_p_near_zero_is_greedy_and_stream_matches(tok):
    model = _model(tok, "hrm", seed=4)
    greedy = generate(model, tok, "class", GenerationConfig(max_new_tokens=12))
    nucleus = generate(model, tok, "class", GenerationConfig(max_new_tokens=12, temperature=0.8, top_p=1e-9, seed=3))
    assert nucleus.token_ids == greedy.token_ids
    pieces = list(stream_generate(model, tok, "class", GenerationConfig(max_new_tokens=12, stop=["zzz"])))
    assert "".join(pieces) == greedy.text and len(pieces) > 1
    calls = []
    early = list(stream_generate(model, tok, "class", GenerationConfig(max_new_tokens=12),
                                 should_stop=lambda: calls.append(1) or len(calls) >= 3))
    assert len(calls) == 3 and len("".join(early)) <= len(greedy.text)


def test_generation_leaves_the_model_mode_and_grad_state_alone(tok):
    model = _model(tok, "hrm").train()
    result = generate(model, tok, "for", GenerationConfig(max_new_tokens=3))
    assert model.training and torch.is_grad_enabled() and result.completion_tokens == 3


# -- a compute budget for looped models (hrmcode.model.halting) ----------------------------------------

BUDGETS = [{}, {"max_segments": 1}, {"max_segments": 2}, {"halt_threshold": 0.3}, {"halt_threshold": 0.9}]


def test_a_budget_gives_the_same_tokens_and_segments_cached_and_uncached():
    from tests._act_model import PROMPTS, act_model, make_tokenizer

    tokenizer = make_tokenizer()
    model = act_model(tokenizer.vocab_size)
    seen = set()
    for prompt in PROMPTS[:4]:
        for budget in BUDGETS:
            cached = generate(model, tokenizer, prompt, GenerationConfig(max_new_tokens=5, **budget))
            uncached = generate(model, tokenizer, prompt, GenerationConfig(max_new_tokens=5, use_cache=False, **budget))
            assert (cached.token_ids, cached.segments) == (uncached.token_ids, uncached.segments), (prompt, budget)
            assert 1 <= cached.segments <= budget.get("max_segments", 4)
            seen.add(cached.segments)
    assert {1, 2, 4} <= seen  # the prompts halt apart; budgets and thresholds move them


def test_budgets_a_model_cannot_honour_are_refused(tok):
    transformer = _model(tok, "transformer")
    assert generate(transformer, tok, "for", GenerationConfig(max_new_tokens=2)).segments is None
    with pytest.raises(UsageError, match="need a looped hrm or trm model; this model is a transformer"):
        generate(transformer, tok, "for", GenerationConfig(max_new_tokens=2, max_segments=2))
    fixed = _model(tok, "hrm")
    with pytest.raises(UsageError, match="halt threshold needs a model trained with mode=act"):
        generate(fixed, tok, "for", GenerationConfig(max_new_tokens=2, halt_threshold=0.5))
    assert generate(fixed, tok, "for", GenerationConfig(max_new_tokens=2)).segments == fixed.config.segments
    assert generate(fixed, tok, "for", GenerationConfig(max_new_tokens=2, max_segments=1)).segments == 1


def test_a_quantized_act_model_honours_the_budget_on_the_fast_path(tmp_path, monkeypatch):
    from hrmcode.model import fastpath
    from hrmcode.quantize import QuantSpec, load_any, quantize_checkpoint
    from tests._act_model import PROMPTS, make_act_model

    result = quantize_checkpoint(make_act_model(tmp_path), QuantSpec(weights="int8"),  # the Q head stays float
                                 out=tmp_path / "int8", limit=1, exact_match_limit=0, latency_tokens=1)
    loaded = load_any(result.artifact.path)
    assert isinstance(loaded.model.q_head, torch.nn.Linear) and loaded.model.q_head.weight.dtype == torch.float32
    fused = []
    run_q8 = fastpath._run_q8
    monkeypatch.setattr(fastpath, "_run_q8", lambda *a: fused.append(1) or run_q8(*a))
    prompt = next(p for p in PROMPTS if generate(loaded.model, loaded.tokenizer, p,
                                                   GenerationConfig(max_new_tokens=1)).segments == 4)
    calls = {}
    for budget in ({}, {"max_segments": 1}):
        fused.clear()
        cached = generate(loaded.model, loaded.tokenizer, prompt, GenerationConfig(max_new_tokens=6, **budget))
        calls[cached.segments] = len(fused)
        uncached = generate(loaded.model, loaded.tokenizer, prompt,
                            GenerationConfig(max_new_tokens=6, use_cache=False, **budget))
        assert cached.segments == uncached.segments == budget.get("max_segments", 4)
        assert cached.token_ids == uncached.token_ids or loaded.model.kv_dtype == torch.float16
    assert calls[1] > 0 and calls[4] == 4 * calls[1]  # the int8 kernels ran, each token's stacks once per segment
