"""Scale check for `fetch swe-smith` + `analyze`: 52,000 SWE-smith-format records (the size of the
dataset) built by varying the test fixtures (repositories, files, patches, statements), fetched
through the swe-smith local path and analyzed. Prints records/s per phase.

Target: analyze (read + profile + write) of all 52K in under 20 s on a 2-core machine. Wall and
CPU seconds (all threads of this process) are both printed, with the load average: on a shared
machine wall time includes waiting for other processes, CPU time does not.

    python benchmarks/analyze_scale.py [--records 52000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from hrmcode.data.analyze import analyze
from hrmcode.data.sources import fetch

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures" / "swe_smith_9field.jsonl"
REPOS = ["pandas-dev__pandas", "getmoto__moto", "pydantic__pydantic", "pallets__flask", "django__django",
         "encode__httpx", "psf__requests", "scrapy__scrapy", "gorilla__mux", "tokio-rs__tokio", "spf13__cobra",
         "sqlalchemy__sqlalchemy", "numpy__numpy", "python-pillow__Pillow", "pygame__pygame", "paramiko__paramiko"]
DIRS = ["src", "lib", "core", "api", "utils", "io", "models", "server", "client", "internal"]
EXTS = [".py"] * 6 + [".go", ".rs", ".js", ".java"]
WORDS = ["request", "response", "dataframe", "column", "thread", "buffer", "docker", "config", "database", "query",
         "button", "render", "player", "board", "token", "password", "parse", "string", "cache", "socket"]
BUG_TYPES = ["func_pm_op_change", "func_pm_remove_cond", "lm_rewrite", "func_basic", "combine_file", "pr_"]


def _hunk(rng: random.Random, start: int) -> str:
    context = [f"    value_{start + i} = compute({i})" for i in range(3)]
    removed = [f"    result = left {rng.choice('+-*')} right  # {rng.choice(WORDS)}" for _ in range(rng.randint(1, 3))]
    added = [f"    result = left {rng.choice('+-*/')} right" for _ in range(rng.randint(1, 3))]
    body = [" " + c for c in context] + ["-" + r for r in removed] + ["+" + a for a in added] + [" " + context[0]]
    old, new = len(context) + len(removed) + 1, len(context) + len(added) + 1
    return f"@@ -{start},{old} +{start},{new} @@ def handler_{start}(left, right):\n" + "\n".join(body) + "\n"


def _patch(rng: random.Random) -> tuple[str, list[str]]:
    paths = sorted({f"{rng.choice(DIRS)}/{rng.choice(WORDS)}_{rng.randint(0, 99)}{rng.choice(EXTS)}"
                    for _ in range(rng.choice([1, 1, 1, 2, 3]))})
    parts = []
    for path in paths:
        hunks = "".join(_hunk(rng, 10 + 40 * k) for k in range(rng.randint(1, 3)))
        parts.append(f"diff --git a/{path} b/{path}\nindex 1a2b3c4..5d6e7f8 100644\n--- a/{path}\n+++ b/{path}\n{hunks}")
    return "".join(parts), paths


def build_records(count: int, seed: int, path: Path) -> None:
    template = json.loads(FIXTURE.read_text().splitlines()[0])
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            repo = rng.choice(REPOS)
            commit = f"{rng.getrandbits(32):08x}"
            patch, paths = _patch(rng)
            record = dict(template)
            tests = [f"tests/test_{rng.choice(WORDS)}.py::test_{n}" for n in range(rng.randint(1, 40))]
            record.update({
                "instance_id": f"{repo}.{commit}.{rng.choice(BUG_TYPES)}__{i:08x}",
                "repo": f"swesmith/{repo}.{commit}",
                "patch": patch,
                "FAIL_TO_PASS": tests[: max(1, len(tests) // 4)],
                "PASS_TO_PASS": tests[max(1, len(tests) // 4):],
                "image_name": f"swesmith.x86_64.{repo}.{commit}",
                "problem_statement": "" if i % 5 == 0 else
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200))) + f"\nFiles: {', '.join(paths)}",
            })
            if i % 2:  # half in the later 7-field schema
                record.pop("base_commit")
                record.pop("created_at")
            fh.write(json.dumps(record) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=52_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hrmcode-bench-") as tmp:
        root = Path(tmp)
        data = root / "instances.jsonl"
        t0, c0 = time.perf_counter(), time.process_time()
        build_records(args.records, args.seed, data)
        rows.append(("generate records", time.perf_counter() - t0, time.process_time() - c0))
        t0, c0 = time.perf_counter(), time.process_time()
        fetched = fetch("swe-smith", from_path=data, out=root / "tasks", workspace=root / "ws")
        rows.append(("fetch swe-smith (--from)", time.perf_counter() - t0, time.process_time() - c0))
        t0, c0 = time.perf_counter(), time.process_time()
        _, summary = analyze(fetched.artifact.path, out=root / "analysis", workspace=root / "ws")
        rows.append(("analyze (read+profile+write)", time.perf_counter() - t0, time.process_time() - c0))
        mb = (fetched.artifact.path / "tasks.jsonl").stat().st_size / 1e6
    n = fetched.records
    print(f"{n} SWE-smith-format records, tasks.jsonl {mb:.0f} MB, stages {[(s['stage'], s['tasks']) for s in summary['by_stage']]}")
    print(f"cores {os.cpu_count()}, load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"{'phase':<30} {'wall s':>8} {'cpu s':>8} {'records/s (wall)':>17}")
    for phase, wall, cpu in rows:
        print(f"{phase:<30} {wall:>8.2f} {cpu:>8.2f} {n / wall:>17.0f}")
    analyze_s = rows[-1][1]
    verdict = "meets" if analyze_s < 20 else "MISSES"
    print(f"analyze {verdict} the target: {analyze_s:.1f} s wall ({rows[-1][2]:.1f} s cpu) for {n} records (target < 20 s)")
    return 0 if analyze_s < 20 else 1


if __name__ == "__main__":
    sys.exit(main())
