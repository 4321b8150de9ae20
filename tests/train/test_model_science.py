"""benchmarks/model_science.py: the smoke configuration runs every arm end to end (grid, seed, code
corpus, report, plots); every arm spends the same counted training FLOPs; a rerun skips finished
runs; the pre-registered rule is computed from the records (it can say yes, no, or provisional)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _threads_restored():
    """The runner sets its process's torch threads (--threads 1): give later tests theirs back."""
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def ms():
    spec = importlib.util.spec_from_file_location("model_science", REPO / "benchmarks" / "model_science.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_science"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(ms, tmp_path_factory):
    out = tmp_path_factory.mktemp("model-science")
    text = ms.main(["--smoke", "--out", str(out)])
    return out, text


def test_smoke_runs_every_arm_with_equal_training_flops(ms, smoke):
    out, text = smoke
    runs = ms.read_runs(out / "runs.jsonl")
    scale = ms.CONFIGS["smoke"]
    assert len(runs) == len(ms.ARMS) * (len(scale.lr_grid) + len(scale.seeds) + 1)
    budget = ms.budget_flops(scale)
    for record in runs.values():
        limit = ms.code_budget_flops(scale) if record["kind"] == "code" else budget * record["fraction"]
        # trained until the counted FLOPs reached the budget, and not a step further
        assert limit <= record["train_flops"] < limit + record["last_step_flops"], record["key"]
    finals = [r for r in runs.values() if r["kind"] == "final"]
    assert {r["arm"] for r in finals} == set(ms.ARMS)
    for record in finals:
        assert sorted(record["test"]["n"]) == [str(d) for d in range(1, 9)]
        assert record["lr"] == ms.chosen_lr(record["arm"], scale, runs)
        flops = [point["train_flops"] for point in record["curve"]]
        assert flops == sorted(flops) and flops[-1] == record["train_flops"]
    assert len(next(r for r in finals if r["arm"] == "transformer-4")["curve"]) >= 3  # 1/4, 1/2 and the end
    adaptive = [r for r in finals if r["arm"] in ms.ADAPTIVE_ARMS]
    assert all(sorted(r["by_segments"], key=int) == [str(k) for k in range(1, 9)] for r in adaptive)
    assert all(1 <= r["test"]["segments_used"] <= 4 for r in adaptive)
    hrm_fixed = next(r for r in finals if r["arm"] == "hrm-fixed")
    assert hrm_fixed["bp_warmup_steps"] >= 1
    assert "## Verdict" in text and "Missing runs: none" in text
    assert json.loads((out / "verdict.json").read_text())["complete"] is False  # one seed: provisional
    for name in ("accuracy_vs_depth", "accuracy_vs_flops", "accuracy_vs_wallclock", "accuracy_vs_segments"):
        assert (out / f"{name}.png").stat().st_size > 1000


def test_a_rerun_skips_finished_runs_and_the_report_names_missing_ones(ms, smoke, tmp_path):
    out, _ = smoke
    lines = (out / "runs.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["key"] != "final/trm/lr=0.001/seed=0"
            and not json.loads(line)["key"].startswith("final/trm/")]
    assert len(kept) == len(lines) - 1
    (tmp_path / "runs.jsonl").write_text("\n".join(kept) + "\n")
    text = ms.main(["--smoke", "--out", str(tmp_path), "--report-only"])
    assert "Missing runs: final/trm/seed=0" in text
    assert "| trm | 0 |" in text
    ms.main(["--smoke", "--out", str(tmp_path)])  # trains only the missing run
    after = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert after[:len(kept)] == kept and len(after) == len(kept) + 1
    assert json.loads(after[-1])["key"].startswith("final/trm/")


def _final(arm, seed, rule_acc, low_acc=0.9, n=500):
    acc = {str(d): (low_acc if d < 5 else rule_acc) for d in range(1, 9)}
    return {"key": f"final/{arm}/lr=0.001/seed={seed}", "kind": "final", "arm": arm, "lr": 0.001, "seed": seed,
            "test": {"acc": acc, "n": {str(d): n for d in range(1, 9)}}}


def _runs(values: dict[str, list[float]]) -> dict:
    records = [_final(arm, seed, v) for arm, per_seed in values.items() for seed, v in enumerate(per_seed)]
    return {r["key"]: r for r in records}


def test_the_rule_needs_both_controls_beaten_by_two_standard_errors(ms):
    base = {arm: [0.20, 0.21, 0.19] for arm in ms.ARMS}
    assert ms.verdict(_runs(base))["helps"] == []
    clear = {**base, "trm": [0.40, 0.41, 0.39]}
    result = ms.verdict(_runs(clear))
    assert result["helps"] == ["trm"] and result["complete"] and result["text"].startswith("HRM (or TRM) helps")
    # beats transformer-12 but not the looped transformer: no
    one_control = {**clear, "looped": [0.40, 0.42, 0.38]}
    assert ms.verdict(_runs(one_control))["helps"] == []
    # a gap of less than two standard errors (seeds spread widely): no
    noisy = {**base, "hrm-fixed": [0.10, 0.45, 0.20]}
    assert ms.verdict(_runs(noisy))["helps"] == []
    # only depths >= 5 count: a recurrent arm better at depths 1-4 alone does not help
    shallow = _runs(base)
    for seed in range(3):
        shallow[f"final/hrm-act/lr=0.001/seed={seed}"] = _final("hrm-act", seed, 0.20, low_acc=1.0)
    assert ms.verdict(shallow)["helps"] == []


def test_two_seeds_make_the_verdict_provisional_and_the_error_never_zero(ms):
    values = {arm: [0.2, 0.2] for arm in ms.ARMS}
    result = ms.verdict(_runs(values))
    assert not result["complete"] and "provisional" in result["text"]
    mean, se = ms.mean_se([0.2, 0.2, 0.2], 2000)
    assert mean == pytest.approx(0.2) and se == pytest.approx((0.2 * 0.8 / 6000) ** 0.5)


def test_past_the_deadline_no_run_starts_and_the_report_says_what_is_missing(ms, tmp_path):
    text = ms.main(["--smoke", "--out", str(tmp_path), "--deadline-min", "1e-9"])
    assert not (tmp_path / "runs.jsonl").exists()
    assert "Missing runs: lr/transformer-4/lr=0.001/seed=0" in text and "final/trm/seed=0" in text


@pytest.mark.parametrize("name", ["smoke", "cpu", "cuda"])
def test_every_configuration_builds_every_arm_from_the_same_block(ms, name):
    scale = ms.CONFIGS[name]
    configs = [ms.arm_config(arm, scale, len(ms.DT.VOCAB), ms.SEQ_LEN) for arm in ms.ARMS]
    for config in configs:
        config.validate()
        assert (config.hidden_size, config.num_heads, config.mlp_hidden) == \
            (scale.width, scale.heads, configs[0].mlp_hidden)
    applications = {arm: c.layer_applications_per_token() for arm, c in zip(ms.ARMS, configs)}
    assert applications["transformer-12"] == applications["looped"] == applications["hrm-fixed"] == 12


def test_a_constant_predictor_is_recognised_from_its_accuracy_per_depth(ms):
    n = 500
    shares = {str(d): [t.answer for t in ms.DT.test_set(d, n, seed=0)].count("5") / n for d in range(1, 9)}
    record = {"test": {"acc": dict(shares), "n": {str(d): n for d in range(1, 9)}}}
    assert ms.constant_digit(record) == "5"
    record["test"]["acc"]["3"] += 1 / n  # one more right answer than the digit's share: not constant
    assert ms.constant_digit(record) is None


def test_a_run_torn_by_a_kill_is_dropped_and_configs_never_mix(ms, smoke, tmp_path):
    out, _ = smoke
    lines = (out / "runs.jsonl").read_text().splitlines()
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n" + lines[-1][:40])  # killed mid-append
    assert "Missing runs: none" in ms.main(["--smoke", "--out", str(tmp_path), "--report-only"])
    (tmp_path / "config.txt").write_text("cpu\n")
    with pytest.raises(SystemExit, match="holds runs of --config cpu, not smoke"):
        ms.main(["--smoke", "--out", str(tmp_path)])
