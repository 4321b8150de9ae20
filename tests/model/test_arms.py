"""The comparison arms: TRM, the looped transformer and the equal-FLOPs transformer — sizes, compute,
exact cached generation (single and batched rows), TRM's full-recursion gradient and halting rule,
and a CLI run of each new arm that eval and quantize can load."""

from __future__ import annotations

import json

import pytest
import torch

from hrmcode.errors import UsageError
from hrmcode.model import build_model, count_parameters, preset
from hrmcode.model.kvcache import BatchKVCache, KVCache
from hrmcode.model.looped import LoopedTransformer
from hrmcode.model.trm import TRM
from tests.train.conftest import toy_examples, write_examples

VOCAB = 97


def _model(arch, seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(preset("tiny", arch, vocab_size=VOCAB, max_seq_len=64, **overrides))


@pytest.mark.parametrize("mode", ["fixed", "act"])
def test_arms_have_the_hrms_parameters_and_the_flops_transformer_its_block_applications(mode):
    hrm, trm, ut = (count_parameters(_model(arch, mode=mode))["total"] for arch in ("hrm", "trm", "ut"))
    q_head = 64 * 2 + 2
    assert trm == hrm  # one shared stack of h_layers + l_layers blocks (and the same Q head in act)
    assert ut == hrm - (q_head if mode == "act" else 0)
    reference = preset("tiny", "hrm", mode=mode).layer_applications_per_token()
    flops = preset("tiny", "transformer", "flops", mode=mode)
    assert flops.n_layers == flops.layer_applications_per_token() == reference == (12 if mode == "fixed" else 24)
    blocks = count_parameters(_model("transformer", mode=mode))["non_embedding"] // 4
    assert count_parameters(build_model(flops))["non_embedding"] == reference * blocks
    looped = preset("tiny", "ut", mode=mode)
    assert looped.loops * looped.n_layers == looped.layer_applications_per_token() == reference
    assert preset("tiny", "trm", mode=mode).layer_applications_per_token() == (2 if mode == "act" else 1) * 2 * 3 * 4


def test_arm_configs_are_checked():
    with pytest.raises(UsageError, match="depth_match flops is for the transformer"):
        preset("tiny", "trm", "flops")
    with pytest.raises(UsageError, match="loops must be >= 1"):
        preset("tiny", "ut", loops=0)
    with pytest.raises(UsageError, match="halt_max_steps >= 2"):
        preset("tiny", "trm", mode="act", halt_max_steps=1)
    assert preset("tiny", "ut", n_layers=2).loops == 6  # loops follow an overridden depth to the HRM's compute
    assert isinstance(_model("trm"), TRM) and isinstance(_model("ut"), LoopedTransformer)


VARIANTS = [("trm", {"mode": "fixed"}), ("trm", {"mode": "act"}), ("trm", {"prefix_bidirectional": True}),
            ("ut", {}), ("transformer", {"depth_match": "flops"})]


def _variant(arch, overrides, seed=0):
    overrides = dict(overrides)
    match = overrides.pop("depth_match", "params")
    torch.manual_seed(seed)
    return build_model(preset("tiny", arch, match, vocab_size=VOCAB, max_seq_len=64, **overrides)).eval()


@pytest.mark.parametrize("arch,overrides", VARIANTS)
def test_cached_decoding_equals_the_full_forward(arch, overrides):
    model = _variant(arch, overrides)
    ids = torch.randint(0, VOCAB, (1, 14), generator=torch.Generator().manual_seed(1))
    prompt = 5
    with torch.no_grad():
        full = model(ids, prefix_lens=torch.tensor([prompt])).logits
        cache = KVCache()
        steps = [model(ids[:, :prompt], prefix_lens=torch.tensor([prompt]), cache=cache).logits]
        for t in range(prompt, ids.shape[1]):
            steps.append(model(ids[:, t:t + 1], cache=cache).logits)
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
    assert cache.length == ids.shape[1]
    assert len(cache.slots) == model.config.layer_applications_per_token()  # one slot per block application


@pytest.mark.parametrize("arch", ["trm", "ut"])
def test_batched_rows_decode_as_each_sequence_alone(arch):
    """The serving path: rows of their own lengths in a BatchKVCache, through ``attention_context``."""
    model = _variant(arch, {})
    gen = torch.Generator().manual_seed(2)
    sequences = [torch.randint(0, VOCAB, (1, n), generator=gen) for n in (7, 4)]
    batch = BatchKVCache(2)
    with torch.no_grad():
        for seq in sequences:
            single = KVCache()
            model(seq[:, :-1], cache=single)
            batch.add_row(single)
        last = torch.cat([seq[:, -1:] for seq in sequences])
        rows = model(last, cache=batch).logits
        for i, seq in enumerate(sequences):
            assert (rows[i, -1] - model(seq).logits[0, -1]).abs().max() < 1e-4
    assert batch.row_lengths.tolist() == [7, 4]


def _record_net_calls(model):
    """Wrap TRM's shared stack: per call, its output (kept for its gradient)."""
    outputs = []
    original = model.net.forward

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if result.requires_grad:
            result.retain_grad()
        outputs.append(result)
        return result

    model.net.forward = wrapped
    return outputs


def test_trm_gradient_flows_through_the_whole_last_recursion_only():
    model = _model("trm", h_cycles=3, l_cycles=2).train()
    model.H_init.requires_grad_(True)  # only the first recursion reads the initial state
    outputs = _record_net_calls(model)
    ids = torch.randint(0, VOCAB, (2, 10))
    model(ids, labels=ids).loss.backward()
    assert [o.requires_grad for o in outputs] == [False] * 6 + [True] * 3
    for output in outputs[-3:]:  # every call of the last recursion, the first L update included
        assert output.grad is not None and output.grad.abs().sum() > 0
    assert model.H_init.grad is None  # the earlier recursions are detached
    assert model.net.layers[0].attn.qkv.weight.grad.abs().sum() > 0

    one = _model("trm", h_cycles=1, l_cycles=2).train()
    one.H_init.requires_grad_(True)
    one(ids, labels=ids).loss.backward()
    assert one.H_init.grad is not None and one.H_init.grad.abs().sum() > 0  # the check above can fail


def test_trm_act_halts_on_q_halt_alone_without_a_continue_target():
    model = _model("trm", mode="act", halt_max_steps=3, halt_exploration_prob=0.0).train()
    outputs = _record_net_calls(model)
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([1.0, 5.0]))  # q_halt > 0 but < q_continue: TRM halts, HRM would not
    ids = torch.randint(0, VOCAB, (2, 10))
    out = model(ids, labels=ids, trace=True)
    assert out.metrics["act_steps"] == 1.0 and out.metrics["q_continue_loss"] == 0.0
    assert len(outputs) == model.config.calls_per_segment  # no extra target segment
    assert all("target_continue" not in r for r in out.trace)
    out.loss.backward()
    assert model.q_head.weight.grad is not None
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([-1.0, -5.0]))  # q_halt < 0: runs every segment
    assert model(ids, labels=ids).metrics["act_steps"] == 3.0


# -- the CLI: train each new arm, then eval and quantize load what it wrote ----------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CLI run per new arm: a 640-token context so the first two HumanEval prompts fit, one
    recursion (TRM) or two loops (ut) to keep it fast."""
    from typer.testing import CliRunner

    from hrmcode.cli.app import app

    base = tmp_path_factory.mktemp("arms")
    examples = write_examples(base / "examples", toy_examples())
    config = base / "small.json"
    config.write_text(json.dumps({"preset": "tiny", "train": {"eval_rows": 1},
                                  "model": {"h_cycles": 1, "l_cycles": 1, "loops": 2}}))
    runs = {}
    for arch in ("trm", "ut"):
        result = CliRunner().invoke(app, [
            "--json", "train", str(examples.path), "--config", str(config), "--arch", arch, "--seq-len", "640",
            "--batch-size", "1", "--max-steps", "1", "--warmup-steps", "0", "--eval-every", "0",
            "--eval-generate", "0", "--vocab-size", "300", "--ema-decay", "0.5", "--logger", "none",
            "-o", str(base / arch)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["completed"]
        runs[arch] = base / arch
    return runs


@pytest.mark.parametrize("arch", ["trm", "ut"])
def test_cli_trained_arm_is_evaluated_from_its_checkpoint(cli, trained, arch, tmp_path):
    assert json.loads((trained[arch] / "config.json").read_text())["arch"] == arch
    result = cli("--json", "eval", "humaneval", "--model", f"checkpoint:{trained[arch]}", "--limit", "2",
                 "--k", "1", "--max-tokens", "2", "--concurrency", "1", "-o", str(tmp_path / "eval"))
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cases"] == summary["completed"] == 2
    assert summary["tokens"]["completion"] > 0  # it generated: the prompts fit and the model ran


def test_new_arms_quantize_and_generate(trained, tmp_path):
    from hrmcode.model.generate import GenerationConfig, generate
    from hrmcode.quantize import QuantSpec, load_quantized, quantize_checkpoint
    from hrmcode.quantize.torch_backend import DynamicInt8Linear

    for arch, run in trained.items():
        result = quantize_checkpoint(run, QuantSpec(weights="int8"), out=tmp_path / arch, limit=2,
                                     exact_match_limit=1, latency_tokens=2)
        loaded = load_quantized(result.artifact.path)
        assert loaded.config.arch == arch
        assert any(isinstance(m, DynamicInt8Linear) for m in loaded.model.modules())
        cached = generate(loaded.model, loaded.tokenizer, "def f():", GenerationConfig(max_new_tokens=4))
        uncached = generate(loaded.model, loaded.tokenizer, "def f():", GenerationConfig(max_new_tokens=4,
                                                                                           use_cache=False))
        assert cached.completion_tokens == 4 and len(cached.token_ids) == len(uncached.token_ids) == 4


def test_the_hf_export_refuses_the_new_arms(cli, trained, tmp_path):
    result = cli("export", "model", str(trained["trm"]), "-o", str(tmp_path / "hf"))
    assert result.exit_code == 2 and "implements arch hrm and transformer, not trm" in result.stderr
    assert not (tmp_path / "hf").exists()
