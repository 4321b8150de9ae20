"""What recording ``Step.state["files_modified"]`` costs an agent step, side by side.

One sandbox session per repository size; each round times, in rotating order:

- ``command``: the agent's command alone (``session.exec("true")``), the floor every step pays;
- ``read_files + digest``: what ``hrmcode.agent.loop`` adds per step (BLAKE2b of every file
  ``session.read_files()`` returns), exact;
- ``mtime listing``: the alternative, one more command per step listing path/size/mtime with
  ``find`` inside the sandbox (misses edits that keep size and mtime).

Prints p50/p95 in milliseconds per repository size. Usage:

    python benchmarks/agent_step_tracking.py                       # local (bubblewrap) backend
    python benchmarks/agent_step_tracking.py --backend docker -n 20
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from hrmcode.sandbox import get_sandbox
from hrmcode.sandbox.base import Limits

LISTING = "find . -path ./.git -prune -o -type f -printf '%P\\t%s\\t%T@\\n'"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def repository(n_files: int, file_bytes: int) -> dict[str, str]:
    line = "value = compute(alpha, beta)  # a typical line of code\n"
    body = line * max(1, file_bytes // len(line))
    return {f"pkg/sub{i % 20}/module_{i}.py": body for i in range(n_files)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=40)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--sizes", default="50x4000,300x4000,2000x4000",
                        help="repositories as FILESxBYTES, comma-separated (default: 50, 300, 2000 files of 4 kB)")
    args = parser.parse_args()
    sandbox = get_sandbox(args.backend)
    print(f"backend {args.backend}, {args.rounds} rounds; milliseconds per step")
    print(f"{'repository':>18} | {'command p50':>11} {'p95':>7} | {'read_files+digest p50':>21} {'p95':>7} | "
          f"{'mtime listing p50':>17} {'p95':>7}")
    for size in args.sizes.split(","):
        n_files, file_bytes = (int(x) for x in size.split("x"))
        with sandbox.session(repository(n_files, file_bytes), Limits(timeout_s=60)) as session:
            probes = {
                "command": lambda: session.exec("true"),
                "digest": lambda: {p: hashlib.blake2b(d, digest_size=16).hexdigest()
                                   for p, d in session.read_files().items()},
                "listing": lambda: session.exec(LISTING),
            }
            times: dict[str, list[float]] = {name: [] for name in probes}
            names = list(probes)
            for i in range(args.rounds):
                for name in names[i % 3:] + names[:i % 3]:
                    start = time.perf_counter()
                    probes[name]()
                    times[name].append((time.perf_counter() - start) * 1000)
        row = [f"{percentile(times[n], 0.5):.1f} {percentile(times[n], 0.95):7.1f}" for n in names]
        label = f"{n_files} files, {n_files * file_bytes // 1000} kB"
        print(f"{label:>18} | {row[0]:>19} | {row[1]:>29} | {row[2]:>25}")
    print(f"(means: {', '.join(f'{n} {statistics.mean(times[n]):.1f}' for n in names)} for the last size)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
