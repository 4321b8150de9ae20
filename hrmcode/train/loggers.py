"""Where training metrics go besides ``metrics.jsonl``: TensorBoard, Weights & Biases, and the loss
and accuracy curves drawn into the model artifact (``curves.png``).

``open_logger(kind, run_dir, config)``: ``tensorboard`` (the default) writes event files under
``<run>/tensorboard/`` (``tensorboard --logdir <run>/tensorboard``); ``wandb`` starts a Weights &
Biases run (``wandb`` must be installed: it is not a dependency; its project, mode and key come from
the usual ``WANDB_*`` variables); ``none`` writes nothing. Each record of ``metrics.jsonl`` is logged
as ``<split>/<metric>`` at its step (``train/loss``, ``heldout/loss``, ``heldout/token_acc`` ...).

Guarantees: ``metrics.jsonl`` stays the record (byte-stable, truncated on resume); the loggers
only mirror it, on rank 0 only, so a logger failing to write never changes training. After a
resume TensorBoard shows the steps between the checkpoint and the kill twice (its event files are
append-only); ``metrics.jsonl`` and ``curves.png`` show them once. ``plot_curves`` draws from
``metrics.jsonl`` alone, so the PNG of a resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from hrmcode import atomic
from hrmcode.errors import UsageError

LOGGERS = ("tensorboard", "wandb", "none")
TENSORBOARD_DIR = "tensorboard"
CURVES = "curves.png"


class Logger(Protocol):
    def log(self, record: dict) -> None: ...

    def close(self) -> None: ...


def _scalars(record: dict) -> dict[str, float]:
    split = record.get("split", "train")
    return {f"{split}/{key}": float(value) for key, value in record.items()
            if key not in ("step", "split", "phase") and isinstance(value, (int, float)) and not isinstance(value, bool)}


class NoLogger:
    def log(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, directory: Path, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))
        self.writer.add_text("hyperparameters", "\n".join(f"    {k}: {v}" for k, v in sorted(config.items())))

    def log(self, record: dict) -> None:
        for tag, value in _scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=int(record["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(dir=str(run_dir), config=config, name=run_dir.name, resume="allow", id=_wandb_id(run_dir))

    def log(self, record: dict) -> None:
        self.run.log(_scalars(record), step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


def _wandb_id(run_dir: Path) -> str:
    """One W&B run per training run directory, so ``--resume`` continues the same W&B run."""
    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]


def open_logger(kind: str, run_dir: Path, config: dict[str, Any]) -> Logger:
    if kind == "none":
        return NoLogger()
    if kind == "tensorboard":
        if importlib.util.find_spec("tensorboard") is None:
            raise UsageError("--logger tensorboard needs the tensorboard package",
                             "pip install tensorboard, or pass --logger none")
        return TensorBoardLogger(run_dir / TENSORBOARD_DIR, config)
    if kind == "wandb":
        if importlib.util.find_spec("wandb") is None:
            raise UsageError("--logger wandb needs the wandb package", "pip install wandb (then wandb login), "
                                                                       "or pass --logger tensorboard")
        return WandbLogger(run_dir, config)
    raise UsageError(f"unknown --logger {kind!r}", f"use one of {', '.join(LOGGERS)}")


def plot_curves(records: Sequence[dict], path: Path, title: str) -> Path | None:
    """Loss (train and held-out) and held-out token accuracy against step, as a PNG; None when
    there is nothing to draw."""
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    heldout = [r for r in records if r.get("split") == "heldout" and "loss" in r]
    if not train and not heldout:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100)
    loss_axes, acc_axes = figure.subplots(1, 2)
    for rows, label, style in ((train, "train", "-"), (heldout, "held-out", "o-")):
        if rows:
            loss_axes.plot([r["step"] for r in rows], [r["loss"] for r in rows], style, label=label, markersize=3)
    loss_axes.set(xlabel="step", ylabel="loss", title="loss")
    loss_axes.legend()
    accuracy = [r for r in heldout if "token_acc" in r]
    if accuracy:
        acc_axes.plot([r["step"] for r in accuracy], [r["token_acc"] for r in accuracy], "o-", markersize=3,
                      label="held-out token accuracy")
        exact = [r for r in heldout if "exact_match" in r]
        if exact:
            acc_axes.plot([r["step"] for r in exact], [r["exact_match"] for r in exact], "s--", markersize=3,
                          label="held-out exact match")
        acc_axes.legend()
    acc_axes.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    figure.suptitle(title)
    figure.tight_layout()
    with atomic.atomic_open(path, "wb") as fh:
        # fixed metadata, so the same metrics give the same bytes
        figure.savefig(fh, format="png", metadata={"Software": None})
    return path
