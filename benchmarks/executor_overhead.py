"""The same validate and eval work on the local thread pool and on Ray on this machine: the overhead ratio.

Work: ``fetch humaneval --limit N``, ``synthesize --levels edit,solve`` (2 examples per task), then
``validate --allow-contaminated`` (its execution checks: two sandboxed pytest runs per example) and
``eval humaneval --model oracle`` (one sandboxed test run per task), each with ``--jobs S`` on the local
executor and on a one-machine Ray cluster with S ``sandbox_slot`` resources (started once; its start
and its workers' first imports are timed apart). Every run writes into its own output, so nothing is
resumed. Printed side by side: seconds, the Ray/local ratio, and whether Ray wrote the local run's
outputs (validate: byte for byte; eval: every record but its timings).

Then what N nodes would give, from this run's measurements: each Ray output is rerun once (every
item is then taken from the append logs, so the rerun is the work that stays on the driver: loading,
the decision pass, writing), and the estimate for N nodes of S slots is
``driver + (ray - driver) / N`` (Amdahl's law with the measured serial part; it assumes items spread
evenly and that the nodes are like this one). Timings depend on the machine's free cores. Usage:

    python benchmarks/executor_overhead.py                  # 16 tasks, 2 slots
    python benchmarks/executor_overhead.py --tasks 40 --slots 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrmcode import executor  # noqa: E402
from hrmcode.data.sources import fetch  # noqa: E402
from hrmcode.data.synthesize import synthesize  # noqa: E402
from hrmcode.data.validate import validate  # noqa: E402
from hrmcode.eval.api import EvalConfig, HumanEvalOptions, eval_humaneval  # noqa: E402

VALIDATE_FILES = ("accepted.jsonl", "rejected.jsonl", "scores.jsonl", "report.json")


def untimed(path: Path) -> list:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not k.endswith("_s")}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return [strip(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _noop(item: int, worker: int) -> int:
    return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16, help="HumanEval tasks (2 examples each for validate)")
    parser.add_argument("--slots", type=int, default=2, help="-j locally; sandbox_slot resources on Ray")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hrmcode-executor-bench-"))
    os.environ["HRMCODE_HOME"] = str(root / "workspace")
    os.environ["HRMCODE_NO_PROGRESS"] = "1"
    fetch("humaneval", limit=args.tasks)
    examples = synthesize("humaneval", levels=("edit", "solve"), out=root / "examples").artifact

    def validate_on(out: Path) -> None:
        validate(examples.path, allow_contaminated=True, jobs=args.slots, out=out)

    def eval_on(out: Path) -> None:
        eval_humaneval(EvalConfig(model="oracle", jobs=args.slots, out=out), HumanEvalOptions())

    work = {"validate (exec checks)": (validate_on, 2 * args.tasks), "eval humaneval": (eval_on, args.tasks)}
    seconds: dict[tuple[str, str], float] = {}
    for name, (run, _items) in work.items():
        seconds[name, "local"] = timed(lambda: run(root / f"{name}-local"))

    import ray

    start = timed(lambda: ray.init(num_cpus=args.slots, resources={executor.SLOT_RESOURCE: args.slots},
                                   include_dashboard=False, logging_level="WARNING", log_to_driver=False))
    on_ray = executor.RayExecutor()
    warm = timed(lambda: on_ray.map(_noop, list(range(4 * args.slots))))
    with executor.active(on_ray):
        for name, (run, _items) in work.items():
            seconds[name, "ray"] = timed(lambda: run(root / f"{name}-ray"))
            seconds[name, "driver"] = timed(lambda: run(root / f"{name}-ray"))  # every item from the logs
    ray.shutdown()

    same = {
        "validate (exec checks)": all((root / f"validate (exec checks)-{e}" / f).read_bytes() ==
                                      (root / "validate (exec checks)-local" / f).read_bytes()
                                      for e in ("ray",) for f in VALIDATE_FILES),
        "eval humaneval": untimed(root / "eval humaneval-ray" / "results.jsonl") ==
                          untimed(root / "eval humaneval-local" / "results.jsonl"),
    }
    print(f"one machine ({os.cpu_count()} cores), {args.slots} slots; Ray cluster start {start:.1f} s, "
          f"workers' first imports {warm:.1f} s (paid once per cluster, not per run)")
    print(f"{'work':<24}{'items':>6}{'local s':>9}{'ray s':>8}{'ray/local':>10}{'same output':>13}")
    for name, (_run, items) in work.items():
        local, ray_s = seconds[name, "local"], seconds[name, "ray"]
        verdict = "yes" if same[name] else "NO"
        print(f"{name:<24}{items:>6}{local:>9.1f}{ray_s:>8.1f}{ray_s / local:>9.2f}x{verdict:>13}")
    nodes = (1, 2, 4, 8)
    print(f"\nestimated seconds on N nodes like this one ({args.slots} slots each): driver + (ray - driver) / N")
    print(f"{'work':<24}{'driver s':>9}" + "".join(f"{f'N={n}':>8}" for n in nodes))
    for name in work:
        driver, ray_s = seconds[name, "driver"], seconds[name, "ray"]
        print(f"{name:<24}{driver:>9.1f}" + "".join(f"{driver + max(0.0, ray_s - driver) / n:>8.1f}" for n in nodes))


if __name__ == "__main__":
    main()
