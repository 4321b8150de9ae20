"""Per-launch overhead of each sandbox backend against a bare subprocess, measured side by side.

Each round launches the same trivial command once per backend, in rotating order, so load changes
hit every backend alike. Prints p50/p95 per launch and the overhead over bare (target: local
≤ 25 ms p50). ``--sweep`` also times the 225-exercise polyglot reference sweep with -j2
(benchmarks/polyglot_sweep.py; target ≤ 3 minutes on 2 cores). Usage:

    python benchmarks/sandbox_overhead.py                 # bare vs local (vs docker if running)
    python benchmarks/sandbox_overhead.py -n 200 --sweep
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hrmcode.sandbox.base import Limits


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=100)
    parser.add_argument("--command", default="true", help="what each launch runs (default: true)")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also time the polyglot reference sweep with -j2")
    args = parser.parse_args()

    argv = args.command.split()
    limits = Limits(timeout_s=30)
    launchers = {"bare subprocess": lambda: subprocess.run(argv, capture_output=True, check=False).returncode}
    from hrmcode.sandbox import get_sandbox
    from hrmcode.sandbox import docker_backend

    local = get_sandbox("local")
    launchers["local (bwrap)"] = lambda: local.run(argv, limits=limits).exit_code
    if not args.no_docker and docker_backend.unavailable_reason() is None:
        docker = get_sandbox("docker")
        launchers["docker"] = lambda: docker.run(argv, limits=limits).exit_code
    names = list(launchers)
    times: dict[str, list[float]] = {name: [] for name in names}
    rounds = {name: args.rounds if name != "docker" else max(10, args.rounds // 5) for name in names}
    load_before = os.getloadavg()[0]
    for i in range(args.rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            if len(times[name]) >= rounds[name]:
                continue
            start = time.perf_counter()
            code = launchers[name]()
            times[name].append(time.perf_counter() - start)
            if code != 0:
                print(f"{name}: launch failed with {code}", file=sys.stderr)
                return 1
    bare = statistics.median(times["bare subprocess"])
    print(f"{'backend':<18}{'launches':>9}{'p50 ms':>9}{'p95 ms':>9}{'overhead p50 ms':>17}")
    for name in names:
        p50, p95 = percentile(times[name], 0.5), percentile(times[name], 0.95)
        print(f"{name:<18}{len(times[name]):>9}{p50 * 1000:>9.1f}{p95 * 1000:>9.1f}{(p50 - bare) * 1000:>17.1f}")
    print(f"command: {args.command!r}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"{os.cpu_count()} CPUs")
    if args.sweep:
        script = Path(__file__).resolve().parent / "polyglot_sweep.py"
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(script), "-j", "2"], capture_output=True, text=True)
        print(f"polyglot reference sweep (-j2): {time.monotonic() - start:.1f} s wall, exit {proc.returncode}")
        print(proc.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
