"""Training metrics mirrored to TensorBoard and drawn as curves; Weights & Biases only when installed."""

from __future__ import annotations

import time

import pytest

from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl, write_jsonl
from hrmcode.train.loggers import curve_lines, open_logger, plot_curves, rl_scalar_records
from hrmcode.train.loop import train
from hrmcode.train.options import resolve_options

FAST = {"seq_len": 64, "batch_size": 4, "max_steps": 4, "warmup_steps": 2, "eval_every": 2, "log_every": 1,
        "save_every": 4, "eval_generate": 1, "vocab_size": 300}


def test_tensorboard_holds_exactly_the_metrics_jsonl_values(tmp_path, toy_artifact):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train(resolve_options("tiny", FAST), str(toy_artifact.path), out=tmp_path / "run")
    events = accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    records = list(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    for split, metric in (("train", "loss"), ("train", "lr"), ("heldout", "loss"), ("heldout", "token_acc")):
        logged = [(e.step, e.value) for e in events.Scalars(f"{split}/{metric}")]
        expected = [(r["step"], r[metric]) for r in records if r["split"] == split]
        assert len(logged) == len(expected) > 0
        assert all(s == t and v == pytest.approx(w, rel=1e-6) for (s, v), (t, w) in zip(logged, expected))


def test_logger_none_writes_no_events_and_wandb_without_the_package_is_refused(tmp_path, toy_artifact, monkeypatch):
    train(resolve_options("tiny", {**FAST, "logger": "none"}), str(toy_artifact.path), out=tmp_path / "run")
    assert not (tmp_path / "run" / "tensorboard").exists() and (tmp_path / "run" / "curves.png").is_file()
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else object())
    with pytest.raises(UsageError, match="needs the wandb package") as error:
        open_logger("wandb", tmp_path, {})
    assert "pip install wandb" in error.value.hint


def test_wandb_cli_error_is_one_line_and_writes_nothing(cli, toy_artifact, tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    result = cli("train", toy_artifact.path, "--logger", "wandb", "--max-steps", "2", "-o", tmp_path / "run")
    assert result.exit_code == 2 and "needs the wandb package" in result.stderr
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_curves_need_records_and_are_a_png(tmp_path):
    image = pytest.importorskip("PIL.Image")
    assert plot_curves([], tmp_path / "none.png", "empty") is None and not (tmp_path / "none.png").exists()
    records = [{"step": s, "split": "train", "loss": 5.0 / s} for s in range(1, 6)]
    records.append({"step": 5, "split": "heldout", "loss": 1.2, "token_acc": 0.4, "exact_match": 0.0})
    path = plot_curves(records, tmp_path / "c.png", "tiny")
    assert image.open(path).size == (900, 360)


def test_curves_keep_phases_apart_and_draw_train_accuracy(tmp_path):
    records = [{"step": s, "split": "train", "phase": "pretrain" if s <= 4 else "sft", "loss": 5.0 / s,
                "token_acc": s / 10} for s in range(1, 9)]
    records += [{"step": 4, "split": "heldout", "phase": "pretrain", "loss": 2.0, "token_acc": 0.3},
                {"step": 8, "split": "heldout", "phase": "sft", "loss": 1.0, "token_acc": 0.6, "exact_match": 0.0}]
    lines = {panel: {label: (steps, values) for label, steps, values in got}
             for panel, got in curve_lines(records).items()}
    assert lines["loss"] == {"train": (list(range(1, 9)), [5.0 / s for s in range(1, 9)]),
                             "held-out (pretrain)": ([4], [2.0]), "held-out (sft)": ([8], [1.0])}
    assert set(lines["accuracy"]) == {"train token accuracy", "held-out token accuracy (pretrain)",
                                      "held-out token accuracy (sft)", "held-out exact match (sft)"}
    one_phase = [r for r in records if r["phase"] == "sft"]
    assert [label for label, _, _ in curve_lines(one_phase)["loss"]] == ["train", "held-out"]
    assert plot_curves(records, tmp_path / "c.png", "two phases").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_runs_tensorboard_shows_each_step_once(tmp_path):
    """The killed run logged steps 1-4; the checkpoint was at step 2, so metrics.jsonl kept 1-2 and the resumed run
    logs 3-4 again (other values): TensorBoard must show 1, 2 and the new 3, 4, not both 3s and 4s."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    first = [{"step": s, "split": "train", "loss": float(s)} for s in range(1, 5)]
    logger = open_logger("tensorboard", tmp_path, {})
    for record in first:
        logger.log(record)
    logger.close()
    write_jsonl(tmp_path / "metrics.jsonl", first[:2])  # what the resume's truncation keeps
    logger = open_logger("tensorboard", tmp_path, {})
    for step in (3, 4):
        logger.log({"step": step, "split": "train", "loss": 10.0 * step})
    logger.close()
    events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


RL_ROUNDS = [
    {"round": 0, "samples": 0, "rewarded": 0, "groups_with_signal": 0, "mean_reward": None, "heldout_passed": 1,
     "heldout_tasks": 4, "loss": None, "seconds": 0.5, "kept": []},
    {"round": 1, "samples": 8, "rewarded": 2, "groups_with_signal": 1, "mean_reward": 0.25, "heldout_passed": 2,
     "heldout_tasks": 4, "loss": 0.75, "seconds": 3.0, "kept": [{"task_id": "t", "target": "x"}]},
    {"round": 2, "samples": 8, "rewarded": 0, "groups_with_signal": 0, "mean_reward": 0.0, "heldout_passed": 2,
     "heldout_tasks": 4, "loss": None, "seconds": 2.0, "kept": []},
]


def test_rl_rounds_become_scalars_at_step_round():
    assert rl_scalar_records(RL_ROUNDS[0]) == [
        {"step": 0, "split": "heldout", "pass_rate": 0.25, "passed": 1, "tasks": 4}]  # round 0 trained nothing
    train, heldout = rl_scalar_records(RL_ROUNDS[1])
    assert train == {"step": 1, "split": "train", "mean_reward": 0.25, "rewarded": 2, "groups_with_signal": 1,
                     "samples": 8, "loss": 0.75, "seconds": 3.0}
    assert heldout["pass_rate"] == 0.5
    assert "loss" not in rl_scalar_records(RL_ROUNDS[2])[0]  # no optimizer step: nothing, not a NaN or 0


def test_rl_curves_draw_loss_reward_and_pass_rate_per_round(tmp_path):
    image = pytest.importorskip("PIL.Image")
    lines = {panel: {label: (steps, values) for label, steps, values in got}
             for panel, got in curve_lines(list(reversed(RL_ROUNDS))).items()}
    assert lines == {"loss": {"train loss (last step)": ([1], [0.75])},
                     "reward": {"mean reward of the samples": ([1, 2], [0.25, 0.0]),
                                "held-out pass rate": ([0, 1, 2], [0.25, 0.5, 0.5])}}
    path = plot_curves(RL_ROUNDS, tmp_path / "rl.png", "rl")
    assert image.open(path).size == (900, 360)
    assert plot_curves(RL_ROUNDS[:1], tmp_path / "zero.png", "round 0 only") is not None  # the pass rate alone
    supervised = [{"step": 1, "split": "train", "loss": 2.0}]
    assert set(curve_lines(supervised)) == {"loss", "accuracy"}  # supervised records keep their panels


def test_an_rl_rerun_purges_the_rounds_it_redoes(tmp_path, monkeypatch):
    """RL's record is rounds.jsonl, not metrics.jsonl: the caller names the first round it will log, and a round the
    killed run logged but did not record (logged just before its append) shows once, with the rerun's value."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.summary.writer.event_file_writer import AtomicCounter
    logger = open_logger("tensorboard", tmp_path, {}, next_step=0)
    for record in RL_ROUNDS:
        for scalars in rl_scalar_records(record):
            logger.log(scalars)
    logger.close()
    # the rerun within the same second, its writer's file numbered 10 in the process after one numbered 9: by name it
    # would sort before the first ("...10" < "...9") and TensorBoard would read its purge mark first
    [first] = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    first.rename(first.with_name(".".join([*first.name.split(".")[:3], f"{int(time.time()):010d}",
                                           *first.name.split(".")[4:-1], "9"])))  # this host and pid
    monkeypatch.setattr("tensorboard.summary.writer.event_file_writer._global_uid", AtomicCounter(10))
    logger = open_logger("tensorboard", tmp_path, {}, next_step=2)  # rounds.jsonl kept rounds 0 and 1
    logger.log({"step": 2, "split": "heldout", "pass_rate": 1.0})
    logger.close()
    events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("heldout/pass_rate")] == [(0, 0.25), (1, 0.5), (2, 1.0)]
    assert [e.step for e in events.Scalars("train/mean_reward")] == [1]
