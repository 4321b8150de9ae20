"""SIGKILL an ``hrmcode eval`` at random points, rerun with the same ``-o`` each time, and check the
finished run equals an uninterrupted one: the same cases, the same verdicts, none twice.

The runs are real ``hrmcode eval humaneval`` processes grading a samples file (right completions
for most of 30 tasks, wrong ones for every third) in the sandbox, one task per batch, two workers,
so records are appended all through the run. The kill points are drawn from a seeded generator
(``HRMCODE_KILL_SEED`` replays a failure; the seed is in every assertion message).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from hrmcode.eval.humaneval import builtin_tasks

TASKS = 30
KILLS = 5


def _samples(path: Path) -> Path:
    lines = []
    for index, task in enumerate(builtin_tasks()[:TASKS]):
        solution = task.solution.files["solution.py"]
        completion = solution[len(task.prompt):] if index % 3 else "    return None\n"
        lines.append(json.dumps({"task_id": task.metadata["task_id"], "completion": completion}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _command(samples: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "hrmcode", "eval", "humaneval", "--model", f"samples:{samples}", "--batch", "1",
            "-j", "2", "--out", str(out), "--unsafe-no-sandbox"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HRMCODE_HOME": str(tmp_path / "workspace"), **extra}
    env.pop("HRMCODE_NO_PROGRESS", None)
    return env


def _lines(path: Path) -> list[bytes]:
    """Whole records of a results file (a torn last line from the kill excluded)."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    return [line for line in (lines if raw.endswith(b"\n") else lines[:-1]) if line.strip()]


def _verdicts(path: Path) -> dict[str, list[tuple[str, bool]]]:
    records = [json.loads(line) for line in _lines(path)]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"duplicated cases in {path}"
    return {r["id"]: [(s["result"], s["passed"]) for s in r["samples"]] for r in records}


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    seed = int(os.environ.get("HRMCODE_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    samples = _samples(tmp_path / "samples.jsonl")

    started = time.monotonic()
    whole = subprocess.run(_command(samples, tmp_path / "whole"), env=_env(tmp_path, HRMCODE_PROGRESS_EVERY="0.5"),
                           capture_output=True, text=True, timeout=600)
    duration = time.monotonic() - started
    assert whole.returncode == 0, whole.stderr
    expected = _verdicts(tmp_path / "whole" / "results.jsonl")
    assert len(expected) == TASKS
    assert {passed for verdicts in expected.values() for _, passed in verdicts} == {True, False}
    # stderr is a pipe here: a progress line came every half second instead of nothing
    assert any(line.startswith("eval humaneval: ") and f"/{TASKS} (" in line for line in whole.stderr.splitlines())

    out = tmp_path / "killed"
    kept: list[int] = []
    for kill in range(KILLS):
        process = subprocess.Popen(_command(samples, out), env=_env(tmp_path), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        verdicts = _verdicts(out / "results.jsonl")  # no case twice, even right after a kill
        for case, verdict in verdicts.items():
            assert verdict == expected[case], f"seed {seed}, kill {kill}: {case} has another verdict"
        assert len(verdicts) >= (kept[-1] if kept else 0), f"seed {seed}: kill {kill} lost finished cases"
        kept.append(len(verdicts))
    assert 0 < max(kept), f"seed {seed}: no kill happened after the first case finished ({kept})"

    python, m, hrmcode, *rest = _command(samples, out)
    final = subprocess.run([python, m, hrmcode, "--json", *rest], env=_env(tmp_path), capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr
    payload = json.loads(final.stdout)
    assert (payload["skipped"], payload["ran"]) == (kept[-1], TASKS - kept[-1]), f"seed {seed}: {kept}"
    assert _verdicts(out / "results.jsonl") == expected, f"seed {seed}, kept after each kill: {kept}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["pass@1"]
    assert (out / "manifest.json").is_file()
