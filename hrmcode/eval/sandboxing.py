"""How the benchmarks reach the sandbox: choosing a backend, shipping a driver, reading its verdicts.

The drivers in ``hrmcode/eval/drivers/`` run inside the sandbox and print their verdicts as the
last ``HRMCODE-RESULTS <json>`` line. Guarantees: a sandbox that cannot run the driver at all (no
Python inside, broken profile) raises ``SandboxError`` at the first batch instead of scoring every
case as failed; a batch whose driver was killed by one of its programs is re-run one program per
sandbox, so that program alone is charged.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from hrmcode.errors import SandboxError

DRIVERS = Path(__file__).resolve().parent / "drivers"
MARK = "HRMCODE-RESULTS "
PYTHON = "python3"
# backends whose runs have their own PID namespace, where a driver may kill every process but its own
PID_ISOLATED = ("local", "docker")


def get_eval_sandbox(backend: str = "local", unsafe_no_sandbox: bool = False) -> Any:
    """The sandbox for model-written code (``hrmcode.sandbox.get_sandbox``)."""
    from hrmcode.sandbox import get_sandbox

    return get_sandbox(backend, unsafe_no_sandbox=unsafe_no_sandbox)


def driver_files(*names: str) -> dict[str, str]:
    return {name: (DRIVERS / name).read_text(encoding="utf-8") for name in names}


def pid_isolated(sandbox: Any) -> bool:
    return getattr(sandbox, "name", "") in PID_ISOLATED


def parse_results(stdout: str) -> Any | None:
    """The driver's verdict payload, or None when it did not finish."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            try:
                return json.loads(line[len(MARK):])
            except json.JSONDecodeError:
                return None
    return None


class HealthCheck:
    """Runs a driver once with no work, per sandbox, and raises if the sandbox cannot run it."""

    def __init__(self) -> None:
        self._ok: set[int] = set()
        self._lock = threading.Lock()

    def ensure(self, sandbox: Any, command: list[str], files: dict[str, str], limits: Any, worker: int) -> None:
        key = id(sandbox)
        with self._lock:
            if key in self._ok:
                return
        result = sandbox.run(command, files, limits, worker=worker)
        if parse_results(result.stdout) is None:
            tail = " ".join((result.stderr or result.stdout).split())[-300:]
            raise SandboxError(
                f"the {getattr(sandbox, 'name', 'sandbox')} sandbox cannot run the eval driver "
                f"(exit {result.exit_code}): {tail or 'no output'}",
                "run `hrmcode sandbox doctor`",
            )
        with self._lock:
            self._ok.add(key)


health = HealthCheck()
