"""Where training metrics go besides ``metrics.jsonl``: TensorBoard, Weights & Biases, and the loss
and accuracy curves drawn into the model artifact (``curves.png``).

``open_logger(kind, run_dir, config)``: ``tensorboard`` (the default) writes event files under
``<run>/tensorboard/`` (``tensorboard --logdir <run>/tensorboard``); ``wandb`` starts a Weights &
Biases run (``wandb`` must be installed: it is not a dependency; its project, mode and key come from
the usual ``WANDB_*`` variables); ``none`` writes nothing. Each record of ``metrics.jsonl`` is logged
as ``<split>/<metric>`` at its step (``train/loss``, ``heldout/loss``, ``heldout/token_acc`` ...).

Guarantees: ``metrics.jsonl`` stays the record (byte-stable, truncated on resume); the loggers
only mirror it, on rank 0 only, so a logger failing to write never changes training. A resumed
run's TensorBoard writer starts with a purge mark at the step after the last record
``metrics.jsonl`` kept, so TensorBoard drops what the killed run logged past the checkpoint and
shows each step once, as ``metrics.jsonl`` and ``curves.png`` do (W&B keeps what it was sent: it
continues the same run). ``plot_curves`` draws from ``metrics.jsonl`` alone, so the PNG of a
resumed run equals that of an uninterrupted one: train and held-out loss, train and held-out token
accuracy and held-out exact match on one shared step axis, each phase's held-out lines apart when
the run pretrained first.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from hrmcode import atomic
from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl

LOGGERS = ("tensorboard", "wandb", "none")
TENSORBOARD_DIR = "tensorboard"
CURVES = "curves.png"
METRICS = "metrics.jsonl"  # the run's record (hrmcode.train.loop.METRICS is this name)


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


def _purge_step(directory: Path, metrics: Path) -> int | None:
    """Where a resumed run's TensorBoard history must restart: the step after the last record ``metrics.jsonl``
    kept (0 when it kept none); None for a fresh run (no event file yet)."""
    if not any(directory.glob("events.out.tfevents.*")):
        return None
    steps = [int(r.get("step", 0)) for r in read_jsonl(metrics)] if metrics.is_file() else []
    return max(steps) + 1 if steps else 0


class TensorBoardLogger:
    def __init__(self, directory: Path, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        # the run directory's metrics.jsonl (already truncated to the checkpoint when resuming)
        purge = _purge_step(directory, directory.parent / METRICS)
        self.writer = SummaryWriter(log_dir=str(directory), purge_step=purge)
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


def curve_lines(records: Sequence[dict]) -> dict[str, list[tuple[str, list[int], list[float]]]]:
    """What ``plot_curves`` draws: per panel (``loss``, ``accuracy``) its lines as (label, steps, values). A run
    with a pretraining phase has each phase's held-out lines apart (their held-out sets differ: corpus text,
    then examples), labelled with the phase."""
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    heldout = [r for r in records if r.get("split") == "heldout" and "loss" in r]
    phases = list(dict.fromkeys(r.get("phase") for r in (*train, *heldout)))
    groups = [("", heldout)] if len(phases) < 2 else [
        (f" ({phase})", [r for r in heldout if r.get("phase") == phase]) for phase in phases]

    def line(label: str, rows: list[dict], key: str) -> list[tuple[str, list[int], list[float]]]:
        rows = [r for r in rows if key in r]
        return [(label, [r["step"] for r in rows], [r[key] for r in rows])] if rows else []

    lines: dict[str, list[tuple[str, list[int], list[float]]]] = {
        "loss": line("train", train, "loss"), "accuracy": line("train token accuracy", train, "token_acc")}
    for suffix, rows in groups:
        lines["loss"] += line(f"held-out{suffix}", rows, "loss")
        lines["accuracy"] += line(f"held-out token accuracy{suffix}", rows, "token_acc")
        lines["accuracy"] += line(f"held-out exact match{suffix}", rows, "exact_match")
    return lines


def _phase_start(records: Sequence[dict]) -> int | None:
    """The first step logged in the second phase (steps are counted across phases), or None for one phase."""
    phases = list(dict.fromkeys(r.get("phase") for r in records if r.get("split") in ("train", "heldout")))
    if len(phases) < 2:
        return None
    return min(r["step"] for r in records if r.get("phase") == phases[1])


def plot_curves(records: Sequence[dict], path: Path, title: str) -> Path | None:
    """``curve_lines`` as a PNG: loss, and token accuracy with held-out exact match, against one shared step
    axis, a dotted line where fine-tuning follows pretraining; None when there is nothing to draw."""
    lines = curve_lines(records)
    if not lines["loss"]:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100)
    loss_axes, acc_axes = figure.subplots(1, 2, sharex=True)
    for axes, panel in ((loss_axes, "loss"), (acc_axes, "accuracy")):
        for label, steps, values in lines[panel]:
            if label.startswith("train"):
                axes.plot(steps, values, "-", label=label, alpha=1.0 if panel == "loss" else 0.6)
            else:
                axes.plot(steps, values, "s--" if "exact" in label else "o-", markersize=3, label=label)
        if axes.lines:
            axes.legend(fontsize="small")
    start = _phase_start(records)
    if start is not None:
        for axes in (loss_axes, acc_axes):
            axes.axvline(start, color="grey", linestyle=":", linewidth=1)
    loss_axes.set(xlabel="step", ylabel="loss", title="loss")
    acc_axes.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(-0.03, 1.03))  # 0 and 1 stay visible
    figure.suptitle(title)
    figure.tight_layout()
    with atomic.atomic_open(path, "wb") as fh:
        # fixed metadata, so the same metrics give the same bytes
        figure.savefig(fh, format="png", metadata={"Software": None})
    return path
