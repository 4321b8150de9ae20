"""`train --stage rl` killed mid-round (SIGKILL) loses nothing: the rerun continues after the last finished
round and ends with the records and the weights of a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hrmcode.jsonl import read_jsonl
from hrmcode.train.rl import ROUNDS
from tests.train.test_rl import RL, runs, sandbox  # noqa: F401 - the module's fixtures


def _command(tasks, config, model_dir, out):
    return [sys.executable, "-m", "hrmcode", "train", str(tasks), "--config", str(config), *RL, "--from",
            str(model_dir), "-o", str(out)]


def _records(out):
    return [{k: v for k, v in r.items() if "second" not in k and not k.endswith("_s")} for r in read_jsonl(out / ROUNDS)]


@pytest.mark.integration
def test_a_run_killed_in_its_second_round_resumes_to_the_uninterrupted_result(runs, tmp_path):  # noqa: F811
    root, tasks_art, model_dir, config = runs
    env = {**os.environ, "HRMCODE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(_command(tasks_art.path, config, model_dir, tmp_path / "whole"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(tasks_art.path, config, model_dir, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / ROUNDS).exists() and len((out / ROUNDS).read_text(encoding="utf-8").splitlines()) >= 2:
            break  # round 1 finished: round 2 is under way
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed in round 2"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists() and len(_records(out)) == 2

    rerun = subprocess.run(_command(tasks_art.path, config, model_dir, out), env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming after round 1 of 2" in rerun.stderr
    assert _records(out) == _records(tmp_path / "whole")
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
