"""`examples/pipeline.sh` runs every step end to end on built-in data and leaves a complete artifact of each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
@pytest.mark.timeout(1800)  # every step of the pipeline; the subprocess has the same bound
def test_pipeline_script_runs_every_step(tmp_path):
    workspace = tmp_path / "ws"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HRMCODE_NO_PROGRESS": "1"}
    proc = subprocess.run(["bash", str(REPO / "examples" / "pipeline.sh"), str(workspace)],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    kinds = {}
    for manifest in workspace.glob("*/*/*/manifest.json"):
        data = json.loads(manifest.read_text())
        kinds.setdefault(data["kind"], []).append(data)
    assert set(kinds) == {"tasks", "corpus", "analysis", "examples", "validated-examples", "model",
                          "quantized-model", "eval-run"}
    # Training data came from the demo repository, never from the benchmark that was evaluated.
    (model,) = kinds["model"]
    assert all("humaneval" not in i["path"] for i in model["inputs"])
    # The served model answered one completion request.
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["model"] == "demo-int8" and answer["usage"]["completion_tokens"] > 0
