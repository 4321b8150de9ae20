"""Checkpoint directories: ``model.safetensors`` + ``config.json`` + ``tokenizer.json``
(+ ``hyperparameters.json``, and ``training_state.pt`` for resuming).

Guarantees: ``save_checkpoint`` writes each file to a temporary name and renames it, the
weights last but one and ``training_state.pt`` last, so a directory whose
``training_state.pt`` exists is complete; the same weights give the same safetensors bytes;
``load_checkpoint`` raises a one-line ``CheckpointError`` naming the missing or unreadable
file, and refuses weights that do not match the config (strict loading). ``config.json`` names
the prompt format the model was trained with (``config.prompt``, ``hrmcode.model.prompt``); one
written before formats were stored loads with the training template it was trained on.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hrmcode.atomic import atomic_open, staged, write_text
from hrmcode.errors import CheckpointError, HrmcodeError, is_write_failure, output_error
from hrmcode.model.config import ModelConfig
from hrmcode.model.tokenizer import CodeTokenizer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
HYPERPARAMETERS = "hyperparameters.json"
TRAINING_STATE = "training_state.pt"


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: CodeTokenizer
    config: ModelConfig
    path: Path


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_checkpoint(
    directory: Path | str,
    model: torch.nn.Module,
    tokenizer: CodeTokenizer,
    hyperparameters: dict | None = None,
    training_state: dict | None = None,
) -> list[str]:
    """Write a checkpoint into ``directory``; return the file names written.

    A full disk or read-only directory is a one-line ``OutputError`` naming the directory, with no
    temporary file left behind."""
    directory = Path(directory)
    try:
        return _save_checkpoint(directory, model, tokenizer, hyperparameters, training_state)
    except SafetensorError as exc:  # its temporary file is already gone (atomic.staged)
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise output_error(OSError(int(code[1]), os.strerror(int(code[1]))), directory / WEIGHTS) from exc
    except OSError as exc:
        if is_write_failure(exc):
            raise output_error(exc, directory) from exc
        raise


class _KeptWriteError:
    """A file that keeps its write error: torch.save turns it into an 'unexpected pos' RuntimeError."""

    def __init__(self, fh: Any):
        self.fh, self.error = fh, None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def _save_checkpoint(directory: Path, model: torch.nn.Module, tokenizer: CodeTokenizer,
                     hyperparameters: dict | None, training_state: dict | None) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    written = [CONFIG, TOKENIZER]
    _write_json(directory / CONFIG, model.config.to_dict())
    tokenizer.save(directory / TOKENIZER)
    if hyperparameters is not None:
        _write_json(directory / HYPERPARAMETERS, hyperparameters)
        written.append(HYPERPARAMETERS)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with staged(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    written.append(WEIGHTS)
    if training_state is not None:
        with atomic_open(directory / TRAINING_STATE, "wb") as fh:
            kept = _KeptWriteError(fh)
            try:
                torch.save(training_state, kept)
            except RuntimeError as exc:
                if kept.error is None:
                    raise
                raise kept.error from exc
        written.append(TRAINING_STATE)
    return written


def require_file(directory: Path, name: str, fix: str) -> Path:
    """``directory / name``; a ``CheckpointError`` (with ``fix``) when it is not a file."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {name}", fix)
    return path


def read_config(directory: Path) -> ModelConfig:
    path = require_file(directory, CONFIG, "pass a model artifact or a checkpoints/step-* directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})", "the checkpoint is corrupt; retrain or copy it again") from None
    try:
        return ModelConfig.from_dict(data)
    except HrmcodeError as exc:
        raise CheckpointError(f"{path}: {exc.message}", "the checkpoint was written by another hrmcode version") from None


def load_weights(model: torch.nn.Module, path: Path) -> None:
    require_file(path.parent, path.name, "the checkpoint is incomplete; retrain or copy it again")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not readable safetensors ({' '.join(str(exc).split())[:120]})",
                              "the checkpoint is corrupt; retrain or copy it again") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "shape mismatch"
        raise CheckpointError(f"{path} does not match {CONFIG} ({first[:160]})", "the checkpoint is corrupt") from None


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    """Build the model from ``config.json``, load the weights and tokenizer; eval mode."""
    from hrmcode.model import build_model

    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory", "pass a model artifact or a checkpoints/step-* directory")
    config = read_config(directory)
    tokenizer = CodeTokenizer.load(require_file(directory, TOKENIZER,
                                                "the checkpoint is incomplete; retrain or copy it again"))
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{directory}: tokenizer has {tokenizer.vocab_size} tokens, the model {config.vocab_size}",
                              "the tokenizer.json belongs to another model")
    model = build_model(config)
    load_weights(model, directory / WEIGHTS)
    model.to(device=device)
    if dtype is not None:
        model.to(dtype=dtype)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, path=directory)
