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

``train --stage rl`` logs the same way, one step per round, from its record ``rounds.jsonl``
(``rl_scalar_records``): ``train/mean_reward``, ``train/rewarded``, ``train/groups_with_signal``,
``train/samples``, ``train/loss`` (the round's last optimizer step; absent when it took none) and
``train/seconds`` for each trained round, ``heldout/pass_rate``, ``heldout/passed`` and
``heldout/tasks`` for every round (round 0: the starting model). Its ``curves.png`` draws the loss and
the mean reward with the held-out pass rate against the round.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from hrmcode import atomic
from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl

LOGGERS = ("tensorboard", "wandb", "none")
TENSORBOARD_DIR = "tensorboard"
CURVES = "curves.png"
METRICS = "metrics.jsonl"  # the run's record (hrmcode.train.loop writes it)


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


def _purge_step(directory: Path, metrics: Path, next_step: int | None = None) -> int | None:
    """Where a resumed run's TensorBoard history must restart: ``next_step`` when given, else the step after the
    last record ``metrics.jsonl`` kept (0 when it kept none); None for a fresh run (no event file yet)."""
    if not any(directory.glob("events.out.tfevents.*")):
        return None
    if next_step is not None:
        return next_step
    steps = [int(r.get("step", 0)) for r in read_jsonl(metrics)] if metrics.is_file() else []
    return max(steps) + 1 if steps else 0


def _sort_last(directory: Path) -> None:
    """TensorBoard reads a run's event files in name order and a name starts with the second it was made in (then
    host, pid and a per-process counter, which do not sort by time): a resumed writer's purge mark applies to what
    was logged before only if its file sorts after theirs, so it is not made in the newest one's second."""
    seconds = [int(p.name.split(".")[3]) for p in directory.glob("events.out.tfevents.*")
               if p.name.split(".")[3].isdigit()]
    wait = max(seconds, default=0) + 1 - time.time()
    if 0 < wait <= 1:  # a rerun within the second (a later file from a skewed clock: nothing to wait for)
        time.sleep(wait)


class TensorBoardLogger:
    def __init__(self, directory: Path, config: dict[str, Any], next_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        # the run directory's metrics.jsonl (already truncated to the checkpoint when resuming), or the caller's
        # first step to come (RL: the first round not in rounds.jsonl)
        purge = _purge_step(directory, directory.parent / METRICS, next_step)
        if purge is not None:
            _sort_last(directory)
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


def check_logger(kind: str) -> None:
    """Refuse a ``--logger`` that cannot run here (unknown, or its package missing) before anything is written."""
    if kind not in LOGGERS:
        raise UsageError(f"unknown --logger {kind!r}", f"use one of {', '.join(LOGGERS)}")
    if kind == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--logger tensorboard needs the tensorboard package",
                         "pip install tensorboard, or pass --logger none")
    if kind == "wandb" and importlib.util.find_spec("wandb") is None:
        raise UsageError("--logger wandb needs the wandb package", "pip install wandb (then wandb login), "
                                                                   "or pass --logger tensorboard")


def open_logger(kind: str, run_dir: Path, config: dict[str, Any], next_step: int | None = None) -> Logger:
    """The ``--logger`` of a run. ``next_step``: the first step this invocation will log, for a record other than
    ``metrics.jsonl`` (RL's ``rounds.jsonl``); TensorBoard drops what an earlier invocation logged from it on."""
    check_logger(kind)
    if kind == "none":
        return NoLogger()
    if kind == "tensorboard":
        return TensorBoardLogger(run_dir / TENSORBOARD_DIR, config, next_step)
    return WandbLogger(run_dir, config)


RL_TRAIN = ("mean_reward", "rewarded", "groups_with_signal", "samples", "loss", "seconds")


def rl_scalar_records(record: dict) -> list[dict]:
    """One ``rounds.jsonl`` record as ``metrics.jsonl``-shaped records at step = its round: the held-out score
    (every round), and what the round's sampling and training did (rounds after 0; None values left out)."""
    step = int(record["round"])
    tasks = record.get("heldout_tasks") or 0
    out = [{"step": step, "split": "heldout", "pass_rate": record["heldout_passed"] / tasks if tasks else 0.0,
            "passed": record["heldout_passed"], "tasks": tasks}]
    if step > 0:
        out.insert(0, {"step": step, "split": "train",
                       **{k: record[k] for k in RL_TRAIN if record.get(k) is not None}})
    return out


def _rl_curve_lines(records: Sequence[dict]) -> dict[str, list[tuple[str, list[int], list[float]]]]:
    rows = sorted(records, key=lambda r: r["round"])
    trained = [r for r in rows if r["round"] > 0]

    def line(label: str, rows: list[dict], value) -> list[tuple[str, list[int], list[float]]]:
        rows = [r for r in rows if value(r) is not None]
        return [(label, [r["round"] for r in rows], [float(value(r)) for r in rows])] if rows else []

    return {"loss": line("train loss (last step)", trained, lambda r: r.get("loss")),
            "reward": line("mean reward of the samples", trained, lambda r: r.get("mean_reward"))
            + line("held-out pass rate", rows, lambda r: r["heldout_passed"] / r["heldout_tasks"]
                   if r.get("heldout_tasks") else None)}


def curve_lines(records: Sequence[dict]) -> dict[str, list[tuple[str, list[int], list[float]]]]:
    """What ``plot_curves`` draws: per panel (``loss``, ``accuracy``) its lines as (label, steps, values). A run
    with a pretraining phase has each phase's held-out lines apart (their held-out sets differ: corpus text,
    then examples), labelled with the phase. RL's ``rounds.jsonl`` records (they carry ``round``) give the
    panels ``loss`` (each trained round's last step) and ``reward`` (mean reward of the round's samples and the
    held-out pass rate, round 0 the starting model's) against the round."""
    if any("round" in r for r in records):
        return _rl_curve_lines([r for r in records if "round" in r])
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
    axis, a dotted line where fine-tuning follows pretraining (RL records: loss, and reward with the held-out
    pass rate, against the round); None when there is nothing to draw."""
    lines = curve_lines(records)
    if "reward" in lines:
        if not lines["loss"] and not lines["reward"]:
            return None
        return _plot_rl(lines, path, title)
    if not lines["loss"]:
        return None
    figure = _figure()
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
    return _save(figure, path, title)


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure

    return Figure(figsize=(9, 3.6), dpi=100)


def _save(figure, path: Path, title: str) -> Path:
    figure.suptitle(title)
    figure.tight_layout()
    with atomic.atomic_open(path, "wb") as fh:
        # fixed metadata, so the same metrics give the same bytes
        figure.savefig(fh, format="png", metadata={"Software": None})
    return path


def _plot_rl(lines: dict[str, list[tuple[str, list[int], list[float]]]], path: Path, title: str) -> Path:
    from matplotlib.ticker import MaxNLocator

    figure = _figure()
    loss_axes, reward_axes = figure.subplots(1, 2, sharex=True)
    for axes, panel in ((loss_axes, "loss"), (reward_axes, "reward")):
        for label, steps, values in lines[panel]:
            axes.plot(steps, values, "s--" if label.startswith("held-out") else "o-", markersize=4, label=label)
        if axes.lines:
            axes.legend(fontsize="small")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds
    if not lines["loss"]:  # said, rather than an empty frame
        loss_axes.text(0.5, 0.5, "no optimizer step in these rounds:\nno rewarded answer (expert)\n"
                                 "or group with signal (grpo)", transform=loss_axes.transAxes, ha="center",
                       va="center", color="grey")
    loss_axes.set(xlabel="round", ylabel="loss", title="loss")
    reward_axes.set(xlabel="round", ylabel="reward / pass rate", title="reward", ylim=(-0.03, 1.03))
    return _save(figure, path, title)
