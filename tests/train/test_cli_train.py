"""`hrmcode train` on the command line: output, errors and exit codes, shipped configs, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrmcode.jsonl import read_jsonl
from hrmcode.model import build_model, count_parameters
from hrmcode.train.options import model_config, resolve_options

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "examples/configs").glob("*.json"))
FAST = ["--seq-len", "64", "--batch-size", "4", "--max-steps", "3", "--vocab-size", "300", "--eval-generate", "1"]


def test_train_command_writes_a_model_artifact(cli, toy_artifact, tmp_path):
    result = cli("--json", "train", toy_artifact.path, *FAST, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["completed"] and payload["step"] == 3 and payload["params"]["total"] > 0
    assert (tmp_path / "run/manifest.json").is_file() and (tmp_path / "run/model.safetensors").is_file()
    human = cli("train", toy_artifact.path, *FAST, "-o", tmp_path / "run2")
    assert human.exit_code == 0 and "heldout loss" in human.stdout and "training hrm" in human.stderr


def test_workspace_name_lookup_and_resume_auto(cli, toy_artifact, toy, workspace):
    toy.write_examples(workspace / "synthesize/toyex/v1", toy.examples())
    (workspace / "synthesize/toyex/LATEST").write_text("v1\n")
    first = cli("train", "toyex", *FAST, "--stop-after", "2")
    assert first.exit_code == 0 and "continue with --resume auto" in first.stderr
    second = cli("--json", "train", "toyex", *FAST, "--resume", "auto")
    assert second.exit_code == 0, second.stderr
    payload = json.loads(second.stdout)
    assert payload["completed"] and payload["step"] == 3
    assert (workspace / "train/toy/LATEST").read_text().strip() == Path(payload["out"]).name


def test_dry_run_writes_nothing(cli, toy_artifact, tmp_path):
    result = cli("--json", "train", toy_artifact.path, *FAST, "-o", tmp_path / "run", "--dry-run")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)["plan"]
    assert plan["sft_train_docs"] == 48 and plan["tokens_per_step"] == 4 * 64
    assert not (tmp_path / "run").exists()


def test_errors_are_one_line_with_exit_codes(cli, toy_artifact, toy, tmp_path):
    missing = cli("train", tmp_path / "nope")
    assert missing.exit_code == 1 and "no artifact" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    bad_arch = cli("train", toy_artifact.path, "--arch", "lstm")
    assert bad_arch.exit_code == 2 and "arch" in bad_arch.stderr
    assert cli("train", toy_artifact.path, *FAST, "-o", tmp_path / "run").exit_code == 0
    again = cli("train", toy_artifact.path, *FAST, "-o", tmp_path / "run")
    assert again.exit_code == 2 and "--resume auto" in again.stderr
    redo = cli("train", toy_artifact.path, *FAST, "-o", tmp_path / "run", "--redo")
    assert redo.exit_code == 0
    changed = cli("train", toy_artifact.path, *FAST, "-o", tmp_path / "run", "--resume", "auto", "--lr", "0.5")
    assert changed.exit_code == 2 and "option lr" in changed.stderr
    records = toy.examples(2, 0)
    records[1]["level"] = "dance"
    bad = toy.write_examples(tmp_path / "bad", records)
    malformed = cli("train", bad.path)
    assert malformed.exit_code == 1 and "accepted.jsonl:2" in malformed.stderr
    unvalidated = toy.write_examples(tmp_path / "raw", toy.examples(), kind="examples")
    warned = cli("train", unvalidated.path, *FAST, "-o", tmp_path / "raw-run")
    assert warned.exit_code == 0 and "not validated" in warned.stderr
    no_cuda = cli("train", toy_artifact.path, *FAST, "--device", "cuda", "-o", tmp_path / "gpu")
    if not torch.cuda.is_available():
        assert no_cuda.exit_code == 2 and "CUDA" in no_cuda.stderr


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_resolve_and_build(path):
    options = resolve_options(str(path))
    config = model_config(options, vocab_size=options.vocab_size)
    with torch.device("meta"):
        model = build_model(config)
    assert count_parameters(model)["total"] > 0 and config.max_seq_len == options.seq_len


@pytest.mark.integration
def test_ddp_two_processes_match_one_process(tmp_path, toy_artifact):
    """torchrun, 2 CPU processes (gloo), same global batch -> the same losses as one process."""
    args = ["train", str(toy_artifact.path), *FAST, "--max-steps", "4", "--log-every", "1", "--eval-every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HRMCODE_NO_PROGRESS": "1"}
    single = subprocess.run([sys.executable, "-m", "hrmcode", *args, "-o", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                          "-m", "hrmcode", *args, "-o", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one = [r["loss"] for r in read_jsonl(tmp_path / "one/metrics.jsonl") if r["split"] == "train"]
    two = [r["loss"] for r in read_jsonl(tmp_path / "two/metrics.jsonl") if r["split"] == "train"]
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=1e-5)
    assert json.loads((tmp_path / "two/hyperparameters.json").read_text())["world_size"] == 2
