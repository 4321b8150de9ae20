"""Checkpoint save/load (and its one-line errors) and the byte-level BPE tokenizer (prompt formats: test_prompt.py)."""

from __future__ import annotations

import json

import pytest
import torch

import hrmcode.quantize
from hrmcode.artifacts import ArtifactWriter
from hrmcode.errors import CheckpointError, UsageError
from hrmcode.model import build_model, preset
from hrmcode.model.checkpoint import load_checkpoint, save_checkpoint
from hrmcode.quantize import load_any
from hrmcode.model.tokenizer import SPECIAL_TOKENS, CodeTokenizer


def _saved(tmp_path, tok, arch="hrm", **overrides):
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch, vocab_size=tok.vocab_size, **overrides))
    files = save_checkpoint(tmp_path / "ckpt", model, tok, hyperparameters={"lr": 1e-3})
    return model, tmp_path / "ckpt", files


@pytest.mark.parametrize("arch,overrides", [("hrm", {"mode": "act"}), ("transformer", {})])
def test_checkpoint_roundtrip(tmp_path, tok, arch, overrides):
    model, path, files = _saved(tmp_path, tok, arch, **overrides)
    assert set(files) == {"config.json", "tokenizer.json", "hyperparameters.json", "model.safetensors"}
    loaded = load_checkpoint(path)
    ids = torch.tensor([tok.encode("def add(a, b):")])
    assert torch.equal(loaded.model(ids).logits, model.eval()(ids).logits)
    assert loaded.config == model.config and not loaded.model.training
    assert loaded.tokenizer.to_json() == tok.to_json()
    bf16 = load_checkpoint(path, dtype=torch.bfloat16)
    assert bf16.model.lm_head.weight.dtype == torch.bfloat16
    # same weights -> same bytes
    save_checkpoint(tmp_path / "again", loaded.model, tok)
    assert (tmp_path / "again/model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()


@pytest.mark.parametrize("broken,match", [
    ("missing-weights", "has no model.safetensors"),
    ("corrupt-weights", "not readable safetensors"),
    ("missing-config", "has no config.json"),
    ("bad-config", "not valid JSON"),
    ("wrong-shape", "does not match config.json"),
    ("missing-tokenizer", "has no tokenizer.json"),
])
def test_broken_checkpoints_give_one_line_errors(tmp_path, tok, broken, match):
    _, path, _ = _saved(tmp_path, tok)
    if broken == "missing-weights":
        (path / "model.safetensors").unlink()
    elif broken == "corrupt-weights":
        (path / "model.safetensors").write_bytes(b"not safetensors")
    elif broken == "missing-config":
        (path / "config.json").unlink()
    elif broken == "bad-config":
        (path / "config.json").write_text("{", encoding="utf-8")
    elif broken == "wrong-shape":
        config = json.loads((path / "config.json").read_text())
        config["hidden_size"] = 128
        (path / "config.json").write_text(json.dumps(config))
    else:
        (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_load_any_dispatches_on_the_manifest_kind(tmp_path, tok, monkeypatch):
    model, path, files = _saved(tmp_path, tok)
    with ArtifactWriter(path, "model", resumable=True, update_latest=False) as writer:
        for name in files:
            writer.add(name)
        writer.finish({})
    assert load_any(path).config == model.config
    quant = tmp_path / "quant"
    with ArtifactWriter(quant, "quantized-model", update_latest=False) as writer:
        writer.write_json("quantization.json", {"weights": "qint8"})
        writer.finish({})
    monkeypatch.setattr(hrmcode.quantize, "load_quantized", lambda p, device: ("quantized", p, device), raising=False)
    assert load_any(quant) == ("quantized", quant, "cpu")
    with pytest.raises(CheckpointError, match="no artifact"):
        load_any(tmp_path / "nowhere")


def test_tokenizer_is_deterministic_roundtrips_and_has_fixed_specials(tmp_path, tok, tok_texts):
    assert CodeTokenizer.train(tok_texts, vocab_size=320).to_json() == tok.to_json()
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.pad_id == 0 and tok.eos_id == 1
    for text in ["def f(x):\n\treturn x  # é ✓ 漢字\n", "   \n\n  x=1", ""]:
        assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path / "t.json")
    assert CodeTokenizer.load(tmp_path / "t.json").to_json() == tok.to_json()
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(CheckpointError, match="not a valid tokenizer"):
        CodeTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="below the byte-level minimum"):
        CodeTokenizer.train(tok_texts, vocab_size=100)
