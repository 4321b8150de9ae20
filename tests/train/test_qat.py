"""``--qat``: the fake-quantized layers compute what ``hrmcode quantize``'s layers compute, gradients pass
straight through, QAT starts at ``--qat-start``, resuming is exact, and the float artifact quantizes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.model import build_model
from hrmcode.model.config import preset
from hrmcode.model.quantization import QuantAware, fake_int8_activation, fake_int8_weight
from hrmcode.quantize.backend import QuantSpec
from hrmcode.quantize.torch_backend import (DynamicInt8Linear, Int4Linear, Int8Embedding, TorchBackend,
                                            int8_per_channel)
from hrmcode.train.loop import train
from hrmcode.train.options import resolve_options

FAST = {"seq_len": 64, "batch_size": 4, "max_steps": 6, "warmup_steps": 2, "eval_every": 3, "log_every": 1,
        "save_every": 3, "eval_generate": 1, "vocab_size": 300}
CLI_FAST = ["--seq-len", "64", "--batch-size", "4", "--max-steps", "3", "--vocab-size", "300", "--eval-generate", "1"]


def _options(**changes):
    return resolve_options("tiny", {**FAST, **changes})


def _records(run_dir, split):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == split]


@pytest.mark.parametrize("shape", [(192, 64), (64, 256), (300, 64)])
def test_fake_int8_equals_the_dynamic_int8_layer(shape):
    torch.manual_seed(0)
    linear = nn.Linear(shape[1], shape[0], bias=False)
    real = DynamicInt8Linear(*int8_per_channel(linear.weight))
    QuantAware(linear, "int8")
    x = torch.randn(3, 7, shape[1]) * 2 + 0.5
    with torch.no_grad():
        fake, served = linear(x), real(x)
    assert torch.allclose(fake, served, rtol=1e-5, atol=1e-5 * served.abs().max().item())
    plain = x @ linear.weight.detach().T
    assert (fake - plain).abs().max() > 1e-3  # it is quantized, not the float layer


def test_fake_int8_embedding_equals_the_int8_table():
    torch.manual_seed(0)
    table = nn.Embedding(50, 64)
    real = Int8Embedding(*int8_per_channel(table.weight))
    QuantAware(table, "int8")
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert torch.allclose(table(ids), real(ids), rtol=0, atol=1e-7)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_fake_int4_equals_the_int4_layer(group):
    torch.manual_seed(0)
    linear = nn.Linear(256, 64, bias=False)
    real = Int4Linear.quantize(linear.weight, group, torch.bfloat16)
    QuantAware(linear, "int4", group_size=group)
    x = torch.randn(2, 5, 256)
    with torch.no_grad():
        assert torch.allclose(linear(x), real(x), rtol=1e-6, atol=1e-6)  # float32 input: the dequantized path
        served = real(x.bfloat16()).float()  # TinyGemm in bfloat16, what serving runs
        assert torch.allclose(linear(x), served, rtol=0.02, atol=0.02 * served.abs().max().item())


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_qat_covers_exactly_the_layers_quantize_replaces(weights):
    model = build_model(preset("tiny", "hrm", vocab_size=300, max_seq_len=64))
    qat = QuantAware(model, weights)
    quantized = TorchBackend().quantize(build_model(preset("tiny", "hrm", vocab_size=300, max_seq_len=64)),
                                        QuantSpec(weights=weights), None)
    replaced = {name for name, m in quantized.named_modules()
                if isinstance(m, (DynamicInt8Linear, Int4Linear, Int8Embedding))}
    assert set(qat.layers) == replaced and replaced
    if weights == "int4":
        assert "lm_head" not in replaced  # 300 outputs: TinyGemm cannot take it, both leave it float


def test_gradients_pass_straight_through():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=False)
    QuantAware(linear, "int8")
    x = torch.randn(4, 64, requires_grad=True)
    upstream = torch.randn(4, 32)
    linear(x).backward(upstream)
    # d/dW and d/dx of a linear layer at the fake-quantized values, passed to the float ones unchanged
    assert torch.allclose(linear.weight.grad, upstream.T @ fake_int8_activation(x).detach(), atol=1e-6)
    assert torch.allclose(x.grad, upstream @ fake_int8_weight(linear.weight).detach(), atol=1e-6)
    assert linear.weight.grad.abs().sum() > 0


def test_qat_starts_at_qat_start_and_resumes_exactly(tmp_path, toy_artifact):
    data = str(toy_artifact.path)
    float_run = train(_options(), data, out=tmp_path / "float")
    options = _options(qat="int8", qat_start=4)
    train(options, data, out=tmp_path / "whole")
    part = train(options, data, out=tmp_path / "split", stop_after=3)
    assert not part.completed
    rest = train(options, data, out=tmp_path / "split", resume="auto")
    assert rest.completed and rest.step == 6
    for split in ("train", "heldout"):
        assert _records(tmp_path / "split", split) == _records(tmp_path / "whole", split)
    assert (tmp_path / "split/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()
    qat_losses = [r["loss"] for r in _records(tmp_path / "whole", "train")]
    float_losses = [r["loss"] for r in _records(float_run.out_dir, "train")]
    assert qat_losses[:4] == float_losses[:4]  # float before --qat-start: the same steps exactly
    assert qat_losses[4] != float_losses[4]  # then the forward pass sees int8 numbers
    assert (tmp_path / "whole/model.safetensors").read_bytes() != (float_run.out_dir / "model.safetensors").read_bytes()
    hyper = json.loads((tmp_path / "whole/hyperparameters.json").read_text())
    assert hyper["train"]["qat"] == "int8" and hyper["train"]["qat_start"] == 4
    with pytest.raises(UsageError, match="cannot resume"):  # QAT changes what is computed
        train(_options(), data, out=tmp_path / "split", resume="auto")


def test_cli_qat_int4_gives_a_float_model_that_quantizes(cli, toy_artifact, tmp_path):
    result = cli("--json", "train", toy_artifact.path, *CLI_FAST, "--qat", "int4", "--qat-group-size", "64",
                 "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    weights = load_file(str(tmp_path / "run/model.safetensors"))
    assert weights and all(t.dtype == torch.float32 for t in weights.values())  # the artifact stays float
    quantized = cli("--json", "quantize", tmp_path / "run", "--weights", "int4", "--group-size", "64",
                    "-o", tmp_path / "q", "--limit", "3", "--exact-match-limit", "1", "--latency-tokens", "2")
    assert quantized.exit_code == 0, quantized.stderr
    report = json.loads(quantized.stdout)
    assert report["quantized_layers"] > 0 and report["after"]["heldout_loss"] > 0
    late = cli("train", toy_artifact.path, *CLI_FAST, "--qat", "int8", "--qat-start", "3", "-o", tmp_path / "bad")
    assert late.exit_code == 2 and "--qat-start 3 leaves no QAT steps" in late.stderr
    orphan = cli("train", toy_artifact.path, *CLI_FAST, "--qat-start", "1", "-o", tmp_path / "bad")
    assert orphan.exit_code == 2 and "apply only with --qat" in orphan.stderr
    wrong = cli("train", toy_artifact.path, *CLI_FAST, "--qat", "int4", "--qat-group-size", "48", "-o", tmp_path / "bad")
    assert wrong.exit_code == 2 and "qat_group_size" in wrong.stderr
