"""What an agent step costs on SWE-ReX deployments against hrmcode's own sandbox session, side by side.

Each row is one session holding a 300-file repository; each round times, in rotating order across
the rows: ``exec("true")`` (the floor of every agent step), ``read_files()`` (what the loop adds
per step to track modified files) and ``write_files`` of one file (a SEARCH/REPLACE step). Rows:

- ``sandbox local``: ``Sandbox.session`` of the bubblewrap backend (no SWE-ReX);
- ``swerex:bwrap``: swerex-remote in the same bubblewrap profile, the async API bridged by the
  session's event-loop thread (what ``hrmcode.agent.swerex`` does);
- ``swerex:bwrap asyncio.run``: the same, but ``asyncio.run`` per call instead of the thread;
- ``swerex:local-unsafe``: SWE-ReX's LocalDeployment (no isolation, no HTTP).
- ``swerex:docker`` with ``--docker`` (needs a Docker engine and the images).

Prints p50/p95 in milliseconds and each session's start time. Usage:

    python benchmarks/swerex_step.py            # -n 30 rounds
    python benchmarks/swerex_step.py --docker -n 20
"""

from __future__ import annotations

import argparse
import asyncio
import time

from hrmcode.agent.swerex import open_swerex_session
from hrmcode.sandbox import get_sandbox
from hrmcode.sandbox.base import Limits


class PerCallLoop:
    """The alternative bridge: a fresh event loop for every SWE-ReX call."""

    def run(self, coroutine, timeout_s=None):
        return asyncio.run(asyncio.wait_for(coroutine, timeout_s))

    def close(self) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def repository(n_files: int = 300, file_bytes: int = 4000) -> dict[str, str]:
    line = "value = compute(alpha, beta)  # a typical line of code\n"
    return {f"pkg/sub{i % 20}/module_{i}.py": line * (file_bytes // len(line)) for i in range(n_files)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=30)
    parser.add_argument("--docker", action="store_true", help="add a swerex:docker row")
    args = parser.parse_args()
    files, limits = repository(), Limits(timeout_s=30)
    rows: dict[str, object] = {}
    starts: dict[str, float] = {}

    def opened(name, make):
        begin = time.monotonic()
        rows[name] = make()
        starts[name] = time.monotonic() - begin

    opened("sandbox local", lambda: get_sandbox("local").session(files, limits))
    opened("swerex:bwrap", lambda: open_swerex_session("swerex:bwrap", files, limits))
    opened("swerex:bwrap asyncio.run", lambda: open_swerex_session("swerex:bwrap", files, limits))
    threaded = rows["swerex:bwrap asyncio.run"]._loop
    rows["swerex:bwrap asyncio.run"]._loop = PerCallLoop()
    opened("swerex:local-unsafe", lambda: open_swerex_session("swerex:local-unsafe", files, limits))
    if args.docker:
        opened("swerex:docker", lambda: open_swerex_session("swerex:docker", files, limits))
    times = {name: {"exec": [], "read_files": [], "write_files": []} for name in rows}
    try:
        for round_index in range(args.rounds):
            names = list(rows)
            names = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in names:
                session = rows[name]
                edit = {"pkg/edit.py": f"x = {round_index}\n"}
                for what, call in (("exec", lambda: session.exec("true")), ("read_files", session.read_files),
                                   ("write_files", lambda: session.write_files(edit))):
                    begin = time.monotonic()
                    call()
                    times[name][what].append((time.monotonic() - begin) * 1000)
    finally:
        rows["swerex:bwrap asyncio.run"]._loop = threaded
        for session in rows.values():
            session.close()
    print(f"{args.rounds} rounds, 300 files of 4 kB; milliseconds")
    print(f"{'session':>26} | {'start':>6} | {'exec p50':>8} {'p95':>6} | {'read_files p50':>14} {'p95':>6} | "
          f"{'write_files p50':>15} {'p95':>6}")
    for name, measured in times.items():
        cells = " | ".join(f"{percentile(measured[what], 0.5):{width}.1f} {percentile(measured[what], 0.95):6.1f}"
                           for what, width in (("exec", 8), ("read_files", 14), ("write_files", 15)))
        print(f"{name:>26} | {starts[name] * 1000:6.0f} | {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
