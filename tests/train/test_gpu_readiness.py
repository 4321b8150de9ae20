"""GPU-readiness options of `hrmcode train`, tested on the CPU: --parallel fsdp under torchrun (gloo),
--grad-checkpointing and --attention end to end, and bf16 autocast through forward and generation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hrmcode.errors import CheckpointError, UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.model import build_model, preset
from hrmcode.model.checkpoint import load_checkpoint
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.train.loop import train
from hrmcode.train.options import resolve_options

FAST = {"seq_len": 64, "batch_size": 4, "max_steps": 4, "warmup_steps": 2, "eval_every": 0, "log_every": 1,
        "save_every": 2, "eval_generate": 1, "vocab_size": 300}
CLI_FAST = [f"--{key.replace('_', '-')}={value}" for key, value in FAST.items()]


def _losses(run_dir):
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "train"]


@pytest.mark.integration
def test_fsdp_two_processes_match_one_process_save_full_weights_and_resume(tmp_path, toy_artifact):
    """torchrun, 2 CPU processes (gloo), FULL_SHARD: stop after 2 steps, resume, and compare with one process.
    Two torchrun launches (~10 s each on 2 cores, mostly start-up)."""
    single = train(resolve_options("tiny", FAST), str(toy_artifact.path), out=tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HRMCODE_NO_PROGRESS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29519",
               "-m", "hrmcode", "train", str(toy_artifact.path), *CLI_FAST, "--parallel", "fsdp",
               "-o", str(tmp_path / "two")]
    for extra in (["--stop-after", "2"], ["--resume", "auto"]):
        run = subprocess.run(command + extra, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    assert len(_losses(tmp_path / "two")) == 4 and single.completed
    # the checkpoints and the artifact hold ordinary full weights that load anywhere
    for directory in (tmp_path / "two/checkpoints/step-00000002", tmp_path / "two"):
        loaded = load_checkpoint(directory)
        assert all(type(t) is torch.Tensor for t in loaded.model.state_dict().values())
    ours, theirs = load_checkpoint(tmp_path / "two").model.state_dict(), load_checkpoint(tmp_path / "one").model.state_dict()
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-5) for k in theirs)
    # one process cannot pick up FSDP's optimizer state: a one-line error, not a crash
    with pytest.raises(CheckpointError, match="--parallel fsdp over 2 processes"):
        train(resolve_options("tiny", {**FAST, "parallel": "fsdp"}), str(toy_artifact.path),
              resume=str(tmp_path / "two/checkpoints/step-00000002"))
    # weights only rank 0 reads are corrupt: every rank stops with its one-line error, none waits in a collective
    weights = tmp_path / "two/checkpoints/step-00000002/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    run = subprocess.run(command[:-1] + [str(tmp_path / "three"), "--resume", str(weights.parent)], env=env,
                         capture_output=True, text=True, timeout=120)
    ours = [line for line in run.stderr.splitlines() if "model.safetensors" in line and "error" in line.lower()]
    assert run.returncode == 1 and len(ours) == 2, run.stderr[-3000:]  # each rank's own line (then torchrun's report)


def test_fsdp_refuses_options_that_need_whole_weights():
    for bad in ({"ema_decay": 0.9}, {"qat": "int8"}):
        with pytest.raises(UsageError, match="--parallel fsdp"):
            resolve_options("tiny", {**FAST, "parallel": "fsdp", **bad})


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_checkpointing_and_flex_runs_train_the_same_model(tmp_path, toy_artifact, monkeypatch):
    """--grad-checkpointing: the same losses and bytes; --attention flex on the CPU (no-grad calls through
    FlexAttention, eager here: compiling it takes ~17 s) to float tolerance; --attention auto is dense here."""
    from torch.nn.attention.flex_attention import flex_attention

    from hrmcode.model import attention

    monkeypatch.setattr(attention, "_compiled_flex", lambda: flex_attention)
    runs = {"plain": {}, "ckpt": {"grad_checkpointing": True}, "flex": {"attention": "flex"}}
    for name, extra in runs.items():
        train(resolve_options("tiny", {**FAST, "max_steps": 2, "save_every": 2, "eval_generate": 0, "eval_rows": 4,
                                         **extra}),
              str(toy_artifact.path), out=tmp_path / name)
    plain = (tmp_path / "plain/model.safetensors").read_bytes()
    assert _losses(tmp_path / "ckpt") == _losses(tmp_path / "plain")
    assert (tmp_path / "ckpt/model.safetensors").read_bytes() == plain
    assert _losses(tmp_path / "flex") == pytest.approx(_losses(tmp_path / "plain"), rel=1e-5)
    assert (tmp_path / "flex/model.safetensors").read_bytes() != plain  # it did run another kernel


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    return CodeTokenizer.train(["def add(a, b):\n    return a + b\n", "for i in range(3):\n    print(i)\n"] * 10,
                               vocab_size=300)


@pytest.mark.parametrize("arch", ["hrm", "transformer", "trm", "ut"])
def test_bf16_autocast_runs_forward_and_generation_on_the_cpu(arch, tok):
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch, vocab_size=tok.vocab_size)).eval()
    ids = torch.tensor([tok.encode("def add(a, b):\n    return a + b\n")])
    with torch.no_grad():
        full = model(ids, labels=ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(ids, labels=ids)
            result = generate(model, tok, ids[0].tolist(), GenerationConfig(max_new_tokens=4))
    assert half.logits.dtype == torch.bfloat16 and torch.isfinite(half.loss)
    assert abs(float(half.loss) - float(full.loss)) < 0.05 * float(full.loss)
    assert len(result.token_ids) >= 1


@pytest.mark.parametrize("arch", ["transformer", "hrm", "trm", "ut"])
def test_train_speed_counts_the_matmul_flops_torch_counts(arch):
    """benchmarks/train_speed.py's analytic FLOPs per token (attention term off: seq_len 0) against
    FlopCounterMode over one training forward and backward, no-grad recurrent calls included."""
    import importlib.util
    from pathlib import Path

    from torch.utils.flop_counter import FlopCounterMode

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "train_speed.py"
    spec = importlib.util.spec_from_file_location("train_speed", path)
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)
    config = preset("tiny", arch, vocab_size=512, max_seq_len=32)
    torch.manual_seed(0)
    model = build_model(config).train()
    ids = torch.randint(0, 512, (2, 32))
    counter = FlopCounterMode(display=False)
    with counter:
        model(ids, labels=ids).loss.backward()
    assert counter.get_total_flops() / ids.numel() == train_speed.flops_per_token(config, 0, 0.0)


def test_serve_dtype_bfloat16_loads_bf16_weights_and_answers(tmp_path, monkeypatch):
    import httpx

    import hrmcode.quantize as quantize
    from hrmcode.serve.app import ServeSettings
    from hrmcode.serve.server import background_server, checkpoint_app
    from tests.quantize.tiny import make_tiny_model

    path = make_tiny_model(tmp_path)
    with pytest.raises(UsageError, match="--dtype 'float16'"):
        checkpoint_app(path, ServeSettings(), dtype="float16", threads=1)
    loads, load_any = [], quantize.load_any  # checkpoint_app imports load_any when called: see what it loads
    monkeypatch.setattr(quantize, "load_any", lambda *a, **k: loads.append(load_any(*a, **k)) or loads[-1])
    app = checkpoint_app(path, ServeSettings(), dtype="bfloat16", threads=1)
    assert {p.dtype for p in loads[0].model.parameters()} == {torch.bfloat16}
    with background_server(app) as url:
        reply = httpx.post(f"{url}/v1/completions", json={"model": "model", "prompt": "def add(a, b):",
                                                         "max_tokens": 4, "temperature": 0}, timeout=120)
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
