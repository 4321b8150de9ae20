"""Per-step command latency of an agent's sandbox session against a plain host subprocess, side by side.

An agent step runs one short shell command in its workspace. Each round runs the next of
``true``, ``ls``, ``cat file.txt`` once per arm, in rotating order (so load changes hit every arm
alike): a plain ``bash -c`` subprocess on the host in a temporary directory (the baseline), a
``local`` (bubblewrap) session, a ``docker`` session (one warm container; when an engine is up),
and, for contrast, a fresh ``Sandbox.run`` per command (what a step would cost without sessions).
Prints p50/p95 per arm and the latency each adds over the baseline (targets, issue 14: local
≤ 30 ms p50, docker ≤ 150 ms), then what opening and closing a session costs. Usage:

    python benchmarks/agent_step.py                # 200 steps per arm
    python benchmarks/agent_step.py -n 50 --no-docker
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hrmcode.sandbox.base import Limits

COMMANDS = ("true", "ls", "cat file.txt")
FILES = {"file.txt": "hello\n" * 50, "src/app.py": "def f():\n    return 1\n",
         "tests/test_app.py": "from src import app\n"}
TARGETS_MS = {"local session": 30.0, "docker session": 150.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--steps", type=int, default=200, help="commands per arm (default 200)")
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()

    from hrmcode.sandbox import docker_backend, get_sandbox

    limits = Limits(timeout_s=30)
    host_dir = Path(tempfile.mkdtemp(prefix="agent-step-"))
    for name, text in FILES.items():
        (host_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (host_dir / name).write_text(text)

    def host(command: str) -> int:
        return subprocess.run(["/bin/bash", "-c", command], cwd=host_dir, capture_output=True, check=False).returncode

    local = get_sandbox("local")
    arms: dict[str, Callable[[str], int | None]] = {"host subprocess (baseline)": host}
    local_session = local.session(FILES, limits)
    arms["local session"] = lambda command: local_session.exec(command).exit_code
    sessions = [local_session]
    docker = None
    if not args.no_docker and docker_backend.unavailable_reason() is None:
        docker = get_sandbox("docker")
        docker_session = docker.session(FILES, limits)
        sessions.append(docker_session)
        arms["docker session"] = lambda command: docker_session.exec(command).exit_code
    arms["Sandbox.run per command (local)"] = lambda command: local.run(["/bin/bash", "-c", command], FILES,
                                                                         limits).exit_code
    if docker is not None:
        arms["Sandbox.run per command (docker)"] = lambda command: docker.run(["/bin/bash", "-c", command], FILES,
                                                                               limits).exit_code
    steps = {name: args.steps if "per command (docker)" not in name else max(10, args.steps // 10) for name in arms}
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    load_before = os.getloadavg()[0]
    try:
        for i in range(args.steps):
            command = COMMANDS[i % len(COMMANDS)]
            for name in names[i % len(names):] + names[:i % len(names)]:
                if len(times[name]) >= steps[name]:
                    continue
                start = time.perf_counter()
                code = arms[name](command)
                times[name].append(time.perf_counter() - start)
                if code != 0:
                    print(f"{name}: {command!r} exited {code}", file=sys.stderr)
                    return 1
        open_close = {"local session": _open_close(local, limits)}
        if docker is not None:
            open_close["docker session"] = _open_close(docker, limits)
    finally:
        for session in sessions:
            session.close()
    base = percentile(times[names[0]], 0.5)
    print(f"{'arm':<34}{'steps':>6}{'p50 ms':>9}{'p95 ms':>9}{'added p50 ms':>14}{'target':>9}")
    for name in names:
        p50, p95 = percentile(times[name], 0.5), percentile(times[name], 0.95)
        target = f"<= {TARGETS_MS[name]:.0f}" if name in TARGETS_MS else ""
        print(f"{name:<34}{len(times[name]):>6}{p50 * 1000:>9.1f}{p95 * 1000:>9.1f}{(p50 - base) * 1000:>14.1f}"
              f"{target:>9}")
    for name, (opened, closed) in open_close.items():
        print(f"{name}: open {opened * 1000:.0f} ms, close {closed * 1000:.0f} ms (median of 5)")
    print(f"commands: {', '.join(COMMANDS)} in turn; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {os.cpu_count()} CPUs")
    return 0


def _open_close(sandbox, limits: Limits) -> tuple[float, float]:
    opens, closes = [], []
    for _ in range(5):
        start = time.perf_counter()
        session = sandbox.session(FILES, limits)
        opens.append(time.perf_counter() - start)
        start = time.perf_counter()
        session.close()
        closes.append(time.perf_counter() - start)
    return statistics.median(opens), statistics.median(closes)


if __name__ == "__main__":
    sys.exit(main())
