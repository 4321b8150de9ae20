"""The wheel is complete: installed from it, hrmcode builds its decode kernels and generates through them.

A wheel without ``model/kernels.c`` would install fine and silently take the slow PyTorch path, so this
builds the wheel from a copy of the sources, installs it into a fresh virtualenv, and asks that install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USES_THE_FAST_PATH = """
import sys, torch, hrmcode
from hrmcode.model import build_model, preset
from hrmcode.model.kvcache import KVCache
assert hrmcode.__file__.startswith(sys.prefix), hrmcode.__file__
model = build_model(preset("tiny", vocab_size=64, max_seq_len=32)).eval()
cache = KVCache()
with torch.no_grad():
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    model(torch.tensor([[4]]), cache=cache)
assert cache.decode_state is not None, "the decode step did not go through the fused kernels"
"""


def _run(*command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=240, **kwargs)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.mark.integration
def test_wheel_installs_with_its_decode_kernels(tmp_path):
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler: the kernels cannot be built here")
    source = tmp_path / "src"  # building in the checkout would leave build/ and *.egg-info behind
    shutil.copytree(REPO / "hrmcode", source / "hrmcode", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", source)
    (wheel,) = (tmp_path / "dist").glob("hrmcode-*.whl")
    assert "hrmcode/model/kernels.c" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # The dependencies (torch ...) come from the environment running the tests; listed as a plain path, its
    # .pth files (the checkout's editable install) are not read, so hrmcode can only come from the wheel.
    (purelib / "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)

    env = {**os.environ, "HRMCODE_CACHE": str(tmp_path / "cache"), "HRMCODE_KERNELS": "1"}
    env.pop("PYTHONPATH", None)
    report = json.loads(_run(venv / "bin" / "hrmcode", "--json", "env", cwd=tmp_path, env=env).stdout)
    assert report["decode_kernels"].startswith("ok ("), report["decode_kernels"]
    assert str(tmp_path / "cache" / "kernels") in report["decode_kernels"]
    _run(python, "-c", USES_THE_FAST_PATH, cwd=tmp_path, env=env)
