"""``--ema-decay``: the artifact holds the EMA of the weights (the closed form), checkpoints hold both,
and resuming with it on is exact."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hrmcode.errors import CheckpointError, UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.model import build_model
from hrmcode.model.config import ModelConfig
from hrmcode.train.loop import train
from hrmcode.train.options import resolve_options

FAST = {"seq_len": 64, "batch_size": 4, "max_steps": 6, "warmup_steps": 2, "eval_every": 3, "log_every": 1,
        "save_every": 3, "eval_generate": 1, "vocab_size": 300}


def _options(**changes):
    return resolve_options("tiny", {**FAST, **changes})


def _records(run_dir, split):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == split]


@pytest.mark.parametrize("arch", ["trm", "ut"])
def test_resume_with_ema_continues_exactly(tmp_path, toy_artifact, arch):
    options = _options(arch=arch, ema_decay=0.9)
    train(options, str(toy_artifact.path), out=tmp_path / "whole")
    part = train(options, str(toy_artifact.path), out=tmp_path / "split", stop_after=4)
    assert not part.completed
    rest = train(options, str(toy_artifact.path), out=tmp_path / "split", resume="auto")
    assert rest.completed and rest.step == 6
    for split in ("train", "heldout"):  # held-out records are scored with the EMA weights
        assert _records(tmp_path / "split", split) == _records(tmp_path / "whole", split)
    assert len(_records(tmp_path / "whole", "heldout")) == 2
    whole = (tmp_path / "whole/model.safetensors").read_bytes()
    assert (tmp_path / "split/model.safetensors").read_bytes() == whole


def test_artifact_weights_are_the_closed_form_ema_of_the_raw_weights(tmp_path, toy_artifact):
    decay = 0.75
    options = _options(max_steps=2, save_every=1, keep_checkpoints=2, eval_every=0, ema_decay=decay)
    run = tmp_path / "run"
    train(options, str(toy_artifact.path), out=run)
    config = ModelConfig.from_dict(json.loads((run / "config.json").read_text()))
    torch.manual_seed(options.seed)  # what train() does before building the model
    w0 = {k: v.detach() for k, v in build_model(config).state_dict().items()}
    w1 = load_file(run / "checkpoints/step-00000001/model.safetensors")
    w2 = load_file(run / "checkpoints/step-00000002/model.safetensors")
    ema = load_file(run / "model.safetensors")
    state = torch.load(run / "checkpoints/step-00000002/training_state.pt", weights_only=False)
    trainable = set(state["ema"])
    assert trainable and trainable == {n for n, p in build_model(config).named_parameters()}
    for name, value in ema.items():
        if name not in trainable:  # buffers (the HRM's initial states) are not averaged
            assert torch.equal(value, w2[name])
            continue
        expected = decay ** 2 * w0[name] + decay * (1 - decay) * w1[name] + (1 - decay) * w2[name]
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(state["ema"][name], value, rtol=0, atol=0)
    moved = [n for n in trainable if not torch.equal(ema[n], w2[n])]
    assert len(moved) == len(trainable)  # the artifact is not the raw weights


def test_resuming_a_run_without_ema_with_it_on_is_refused(tmp_path, toy_artifact):
    train(_options(max_steps=4, eval_every=0), str(toy_artifact.path), out=tmp_path / "run", stop_after=3)
    with_ema = _options(max_steps=4, eval_every=0, ema_decay=0.9)
    with pytest.raises(UsageError, match="option ema_decay was 0.0, now 0.9"):
        train(with_ema, str(toy_artifact.path), out=tmp_path / "run", resume="auto")
    # a checkpoint written before --ema-decay existed has no such option to compare, and no EMA
    hyper = tmp_path / "run/checkpoints/step-00000003/hyperparameters.json"
    saved = json.loads(hyper.read_text())
    del saved["train"]["ema_decay"]
    hyper.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="without --ema-decay"):
        train(with_ema, str(toy_artifact.path), out=tmp_path / "run", resume="auto")
