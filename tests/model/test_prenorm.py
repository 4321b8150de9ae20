"""The pre-norm transformer (``norm="pre"``, Llama's block): config rules, the block's math, cached and batched
decoding without the fused kernels, checkpoints, ``--norm`` in training options, and quantize + generate."""

from __future__ import annotations

import pytest
import torch

from hrmcode.errors import UsageError
from hrmcode.model import build_model, count_parameters, preset
from hrmcode.model.attention import AttnMask
from hrmcode.model.checkpoint import load_checkpoint, save_checkpoint
from hrmcode.model.config import ModelConfig
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.model.kvcache import BatchKVCache, KVCache
from hrmcode.model.layers import PreNormBlock, rms_norm

VOCAB = 97


def _model(vocab_size=VOCAB, seed=0):
    torch.manual_seed(seed)
    model = build_model(preset("tiny", "transformer", norm="pre", vocab_size=vocab_size, max_seq_len=64))
    with torch.no_grad():  # learned norm weights away from their init of ones, so a lost or misplaced one shows
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model.eval()


def test_norm_option_defaults_to_post_and_pre_is_for_the_transformer_only():
    post = preset("tiny", "transformer", vocab_size=VOCAB)
    assert post.norm == "post"
    old = post.to_dict()
    del old["norm"]  # a config.json written before the option
    assert ModelConfig.from_dict(old).norm == "post"
    pre = preset("tiny", "transformer", norm="pre", vocab_size=VOCAB)
    assert ModelConfig.from_dict(pre.to_dict()) == pre
    for arch in ("hrm", "trm", "ut"):
        with pytest.raises(UsageError, match=f"norm pre is for arch transformer, not {arch}"):
            preset("tiny", arch, norm="pre")
    with pytest.raises(UsageError, match="unknown norm"):
        preset("tiny", "transformer", norm="mid")
    # two learned weights per block and the final norm, nothing else
    extra = count_parameters(_model())["total"] - count_parameters(build_model(post))["total"]
    assert extra == (2 * post.n_layers + 1) * post.hidden_size


def test_prenorm_block_is_llamas():
    torch.manual_seed(0)
    block = PreNormBlock(16, 2, 32, 1e-5).eval()
    with torch.no_grad():
        block.attn_norm.weight.uniform_(0.5, 1.5)
        block.mlp_norm.weight.uniform_(0.5, 1.5)
        h = torch.randn(1, 5, 16)
        rope = (torch.ones(5, 8), torch.zeros(5, 8))  # position 0 everywhere: rotary is the identity
        mask = AttnMask(None, True)
        mid = h + block.attn(rms_norm(h, 1e-5) * block.attn_norm.weight, rope, mask, None)
        expected = mid + block.mlp(rms_norm(mid, 1e-5) * block.mlp_norm.weight)
        assert torch.equal(block(h, rope, mask, None), expected)


def test_cached_and_batched_decoding_equal_the_full_forward():
    model = _model()
    ids = torch.randint(0, VOCAB, (1, 14), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache()
        steps = [model(ids[:, :5], cache=cache).logits]
        steps += [model(ids[:, t:t + 1], cache=cache).logits for t in range(5, ids.shape[1])]
        assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
        batch = BatchKVCache(2)  # the serving path: rows of their own lengths
        sequences = [ids[:, :9], ids[:, 3:7]]
        for seq in sequences:
            single = KVCache()
            model(seq[:, :-1], cache=single)
            batch.add_row(single)
        rows = model(torch.cat([seq[:, -1:] for seq in sequences]), cache=batch).logits
        for i, seq in enumerate(sequences):
            assert (rows[i, -1] - model(seq).logits[0, -1]).abs().max() < 1e-4


def test_the_fused_kernels_decline_prenorm_stacks(tok):
    from hrmcode.model import fastpath, kernels

    model = _model(vocab_size=tok.vocab_size)
    post = build_model(model.config.replace(norm="post")).eval()
    ids = torch.randint(0, tok.vocab_size, (1, 1))  # one position into an empty cache: a float decode step
    with torch.no_grad():
        for stack, expected in ((post.blocks, kernels.load() is not None), (model.blocks, False)):
            cache = KVCache()
            _, mask = model.attention_context(ids, None, None, None, cache)
            found = fastpath.runner(stack.layers, model.embed_tokens(ids), mask, cache, ("blocks",))
            assert (found is not None) == expected
    cached = generate(model, tok, "def add(a, b):", GenerationConfig(max_new_tokens=8, ignore_eos=True))
    uncached = generate(model, tok, "def add(a, b):", GenerationConfig(max_new_tokens=8, ignore_eos=True,
                                                                       use_cache=False))
    assert cached.token_ids == uncached.token_ids and len(cached.token_ids) == 8


def test_checkpoint_round_trip_carries_the_norm_weights(tmp_path, tok):
    model = _model(vocab_size=tok.vocab_size)
    save_checkpoint(tmp_path / "ckpt", model, tok)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config.norm == "pre"
    ours, theirs = model.state_dict(), loaded.model.state_dict()
    assert {k for k in ours if "norm" in k} == {"norm.weight"} | {
        f"blocks.layers.{i}.{n}_norm.weight" for i in range(model.config.n_layers) for n in ("attn", "mlp")}
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_train_norm_option_reaches_the_model_config_and_is_refused_for_other_archs():
    from hrmcode.train.options import model_config, resolve_options

    options = resolve_options("tiny", {"arch": "transformer", "norm": "pre"})
    assert model_config(options, vocab_size=300).norm == "pre"
    assert model_config(resolve_options("tiny", {"arch": "transformer"}), vocab_size=300).norm == "post"
    with pytest.raises(UsageError, match="norm pre is for arch transformer, not hrm") as err:
        resolve_options("tiny", {"norm": "pre"})
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="set by the training options"):
        resolve_options("tiny", {"arch": "transformer", "model": {"norm": "pre"}})


def test_prenorm_model_quantizes_and_generates(tmp_path):
    from hrmcode.artifacts import ArtifactWriter
    from hrmcode.model.tokenizer import CodeTokenizer
    from hrmcode.quantize import QuantSpec, load_quantized, quantize_checkpoint
    from hrmcode.quantize.torch_backend import DynamicInt8Linear
    from tests.quantize.tiny import SNIPPETS, example

    with ArtifactWriter(tmp_path / "examples", "examples", update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", [example(i, p, t, "heldout") for i, (p, t) in enumerate(SNIPPETS[:2])])
        examples = writer.finish()
    tokenizer = CodeTokenizer.train([p + t for p, t in SNIPPETS] * 4, vocab_size=300)
    model = _model(vocab_size=tokenizer.vocab_size)
    with ArtifactWriter(tmp_path / "model", "model", inputs=[examples], update_latest=False) as writer:
        save_checkpoint(writer.stage, model, tokenizer)
        for name in ("model.safetensors", "config.json", "tokenizer.json"):
            writer.add(name)
        writer.finish()
    result = quantize_checkpoint(tmp_path / "model", QuantSpec(weights="int8"), out=tmp_path / "int8", limit=2,
                                 exact_match_limit=1, latency_tokens=2)
    loaded = load_quantized(result.artifact.path)
    assert loaded.config.norm == "pre"
    assert any(isinstance(m, DynamicInt8Linear) for m in loaded.model.modules())
    assert torch.equal(loaded.model.norm.weight, model.norm.weight)  # norm weights stay float, unchanged
    out = generate(loaded.model, loaded.tokenizer, "def f():", GenerationConfig(max_new_tokens=4, ignore_eos=True))
    assert out.completion_tokens == 4
