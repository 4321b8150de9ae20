"""How trusted graders reach the sandbox: choosing a backend, shipping a driver, reading its verdicts.
Used by ``eval humaneval``/``livecodebench``, RL rewards and ``validate``'s HumanEval check alike.

The drivers in ``hrmcode/sandbox/drivers/`` run inside the sandbox as the trusted side of a process
boundary (``drivers/isolate.py``): the tests run there, each candidate program in a process of its
own. ``run_driver`` writes the job (tests, samples and a fresh random nonce) as a file the driver
reads and deletes before any candidate starts, and accepts only a verdict line carrying that nonce
(``HRMCODE-RESULTS <nonce> <json>``), exactly once. A line a candidate prints, even one that
copies the format, is never taken for the driver's: the candidate never sees the nonce.

Guarantees: a sandbox that cannot run the driver at all (no Python inside, broken profile) raises
``SandboxError`` at the first batch instead of scoring every case as failed (when a batch yields no
verdicts, an empty job is run once per sandbox to tell the two apart); a batch whose driver
was stopped by one of its programs (SIGKILL or SIGSTOP under the shared uid) yields no verdicts, and
the callers then re-run that batch one program per sandbox, so that program alone is charged.
"""

from __future__ import annotations

import functools
import json
import py_compile
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from hrmcode.errors import SandboxError
from hrmcode.sandbox import get_sandbox
from hrmcode.sandbox.base import ExecResult, Limits, Sandbox

DRIVERS = Path(__file__).resolve().parent / "drivers"
MARK = "HRMCODE-RESULTS "
PYTHON = "python3"
# backends whose runs have their own PID namespace, where a driver may kill every process but its own
PID_ISOLATED = ("local", "docker")
# what each driver imports from beside it
DRIVER_LIBRARIES = {"pycheck.py": ("isolate.py",), "lcb.py": ("isolate.py", "lcb_compare.py")}
# The version of the rules by which drivers/pycheck.py turns a HumanEval-style candidate into a verdict: part of
# the cache key of every verdict cached outside a run (validate's execution check), so verdicts given under other
# rules are not reused. Bump it with pycheck's or isolate's checks (and eval's VERDICT_RULES with it).
PYCHECK_RULES = "pycheck-strict-1"


def get_eval_sandbox(backend: str = "local", unsafe_no_sandbox: bool = False) -> Sandbox:
    """The sandbox for model-written code (``hrmcode.sandbox.get_sandbox``)."""
    return get_sandbox(backend, unsafe_no_sandbox=unsafe_no_sandbox)


def driver_files(*names: str) -> dict[str, str | bytes]:
    """The named driver sources, plus compiled bytecode of the libraries among them (not of a
    script: python never caches one), so a driver does not compile them again in every sandbox."""
    files: dict[str, str | bytes] = {name: (DRIVERS / name).read_text(encoding="utf-8") for name in names}
    for name in names:
        if name not in DRIVER_LIBRARIES:
            files.update(_bytecode(name))
    return files


@functools.cache
def _bytecode(name: str) -> dict[str, bytes]:
    """``__pycache__/<module>.<tag>.pyc`` for the sandbox's Python (this interpreter; another one,
    as in a docker image, ignores a tag not its own), hash-based and unchecked: the source is
    written anew in each run, so its mtime would never match."""
    with tempfile.TemporaryDirectory(prefix="hrmcode-pyc-") as tmp:
        target = Path(tmp) / "module.pyc"
        py_compile.compile(str(DRIVERS / name), cfile=str(target), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        return {f"__pycache__/{Path(name).stem}.{sys.implementation.cache_tag}.pyc": target.read_bytes()}


def pycheck_sample(prompt: str, completion: str, test: str, entry_point: str, timeout_s: float) -> dict:
    """One HumanEval sample as ``drivers/pycheck.py`` takes it: the candidate's part (``prompt +
    completion``) and the trusted part (``test``, called as ``check(entry_point)``) apart."""
    return {"prompt": prompt, "completion": completion, "test": test, "entry_point": entry_point, "timeout": timeout_s}


def pid_isolated(sandbox: Sandbox) -> bool:
    return sandbox.name in PID_ISOLATED


def parse_results(stdout: str, nonce: str) -> Any | None:
    """The driver's verdict payload: the one line that carries ``nonce``; None when there is no
    such line (the driver did not finish) or more than one."""
    tag = MARK + nonce + " "
    lines = [line for line in stdout.splitlines() if line.startswith(tag)]
    if len(lines) != 1:
        return None
    try:
        return json.loads(lines[0][len(tag):])
    except json.JSONDecodeError:
        return None


def run_driver(sandbox: Sandbox, driver: str, job: dict, limits: Limits, worker: int) -> tuple[Any | None, ExecResult]:
    """Run ``drivers/<driver>`` on ``job`` in one sandbox: (its payload or None, the ExecResult)."""
    files = driver_files(driver, *DRIVER_LIBRARIES[driver])
    command = [PYTHON, "-I", driver, "job.json"] + (["--sweep"] if pid_isolated(sandbox) else [])
    nonce = secrets.token_hex(16)
    result = sandbox.run(command, {**files, "job.json": json.dumps({**job, "nonce": nonce})}, limits, worker=worker)
    payload = parse_results(result.stdout, nonce)
    if payload is None:  # a program stopped the driver, or the sandbox cannot run it at all (raises)
        health.ensure(sandbox, command, files, worker)
    return payload, result


class HealthCheck:
    """Runs a driver once with no work, per sandbox, and raises if the sandbox cannot run it."""

    def __init__(self) -> None:
        self._ok: set[int] = set()
        self._lock = threading.Lock()

    def ensure(self, sandbox: Sandbox, command: list[str], files: dict[str, str | bytes], worker: int) -> None:
        key = id(sandbox)
        with self._lock:
            if key in self._ok:
                return
        nonce = secrets.token_hex(16)
        empty = json.dumps({"nonce": nonce, "samples": [], "problems": {}})
        result = sandbox.run(command, {**files, "job.json": empty}, Limits(timeout_s=30.0), worker=worker)
        if parse_results(result.stdout, nonce) is None:
            tail = " ".join((result.stderr or result.stdout).split())[-300:]
            raise SandboxError(
                f"the {sandbox.name} sandbox cannot run the eval driver "
                f"(exit {result.exit_code}): {tail or 'no output'}",
                "run `hrmcode sandbox doctor`",
            )
        with self._lock:
            self._ok.add(key)


health = HealthCheck()
