"""Scale check: 52,000 SWE-smith-format tasks through fetch + analyze + synthesize + validate (no execution).

The tasks are made by varying real-format fixtures: the genuine SWE-smith instance in
``../shared/swe-smith-sample`` (when present) and bug patches produced by hrmcode's own procedural
transforms on the minipkg fixture. Each copy gets its own repository name, file path and renamed
identifiers in its patch, problem statement and test names, so no two tasks are identical.

Prints one table: per phase wall seconds, CPU seconds (this process and its workers: less noisy
than wall time on a shared machine), tasks/s, and the peak resident memory of the largest
process and of all processes together (this one plus ``--jobs`` workers, each at its own peak:
an upper bound). The 1-minute load average is printed beside each phase, since other work on
the machine stretches wall time. Target: analyze + synthesize + validate <= 60 s and <= 4 GB
on a 2-core machine.

    python benchmarks/synthesize_scale.py [--tasks 52000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hrmcode.data.bugs import bug_patch  # noqa: E402
from hrmcode.data.bugs.procedural import candidate_bugs  # noqa: E402

MINIPKG = REPO / "tests" / "synth" / "fixtures" / "minipkg" / "minipkg" / "textstats.py"
SHARED = Path(os.environ.get("HRMCODE_SHARED", REPO.parent / "shared"))


def base_instances() -> list[dict]:
    bases: list[dict] = []
    sample = SHARED / "swe-smith-sample" / "instances.jsonl"
    if sample.is_file():
        bases.extend(json.loads(line) for line in sample.read_text().splitlines() if line.strip())
    source = MINIPKG.read_text()
    for bug in candidate_bugs(source, 0, "minipkg/textstats.py"):
        bases.append({
            "instance_id": f"local__minipkg.0123abcd.func_pm_{bug.kind}__{len(bases):08d}",
            "repo": "swesmith/local__minipkg.0123abcd",
            "patch": bug_patch("minipkg/textstats.py", source, bug.bugged),
            "FAIL_TO_PASS": [f"tests/test_textstats.py::test_{bug.entity}"],
            "PASS_TO_PASS": ["tests/test_textstats.py::test_mean_empty", "tests/test_textstats.py::test_clamp_inside"],
            "image_name": "",
            "problem_statement": f"{bug.entity} gives a wrong result after the last change.",
        })
    return bases


WORD = re.compile(r"\b(value|values|total|result|best|word|counts|sums|start|size|key|keyarr|indexer)\b")


def vary(base: dict, i: int) -> dict:
    owner, repo = f"org{i % 613}", f"proj{i % 977}"
    suffix = f"_{i}"
    rename = lambda text: WORD.sub(lambda m: m.group(1) + suffix, text)  # noqa: E731
    patch = rename(base["patch"])
    patch = re.sub(r"(?m)^(diff --git a/|--- a/|\+\+\+ b/)(\S+)", lambda m: f"{m.group(1)}pkg{i % 89}/{m.group(2)}", patch)
    patch = patch.replace(" b/", f" b/pkg{i % 89}/", 1) if patch.startswith("diff --git") else patch
    commit = f"{i:08x}"
    kind = base["instance_id"].rsplit(".", 1)[1].split("__")[0]
    return {
        "instance_id": f"{owner}__{repo}.{commit}.{kind}__{i:08x}",
        "repo": f"swesmith/{owner}__{repo}.{commit}",
        "patch": patch,
        "FAIL_TO_PASS": [f"pkg{i % 89}/{t}{suffix}" for t in base["FAIL_TO_PASS"]],
        "PASS_TO_PASS": [f"pkg{i % 89}/{t}{suffix}" for t in base["PASS_TO_PASS"]],
        "image_name": f"swesmith.x86_64.{owner}__{repo}.{commit}",
        "problem_statement": rename(base.get("problem_statement") or "") + f"\n\n(seen in {owner}/{repo} build {i})",
    }


def peak_mb(jobs: int) -> tuple[float, float]:
    """(largest process, this process + ``jobs`` workers) peak resident MB so far."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024, (own + jobs * children) / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished workers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=52_000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from hrmcode.data.analyze import analyze
    from hrmcode.data.sources import fetch
    from hrmcode.data.synthesize import synthesize
    from hrmcode.data.validate import validate

    with tempfile.TemporaryDirectory(prefix="hrmcode-scale-") as tmp:
        workspace = Path(tmp) / "ws"
        os.environ["HRMCODE_HOME"] = str(workspace)
        bases = base_instances()
        source = Path(tmp) / "instances.jsonl"
        with source.open("w") as fh:
            for i in range(args.tasks):
                fh.write(json.dumps(vary(bases[i % len(bases)], i)) + "\n")
        rows = []

        def phase(name: str, fn):
            start, cpu = time.perf_counter(), cpu_seconds()
            value = fn()
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            rows.append((name, seconds, cpu, *peak_mb(args.jobs), os.getloadavg()[0]))
            return value

        phase("fetch (normalise)", lambda: fetch("swe-smith", from_path=source).records)
        phase("analyze", lambda: analyze("swe-smith")[1]["tasks"])
        synth = phase("synthesize", lambda: synthesize("swe-smith", jobs=args.jobs))
        report = phase("validate (no exec)", lambda: validate("swe-smith", exec_checks=False, jobs=args.jobs).report)

        print(f"{args.tasks} SWE-smith-format tasks from {len(bases)} fixtures, -j {args.jobs}, {os.cpu_count()} CPUs")
        print(f"examples: {synth.stats['examples']} {synth.stats['by_level']}; "
              f"accepted {report['accepted']}, rejected {report['rejected']} {report['gates']}")
        print(f"{'phase':<24}{'wall s':>8}{'CPU s':>8}{'tasks/s':>9}{'peak MB':>9}{'all MB':>8}{'load':>6}")
        for name, seconds, cpu, mb, all_mb, load in rows:
            print(f"{name:<24}{seconds:>8.1f}{cpu:>8.1f}{args.tasks / seconds:>9.0f}{mb:>9.0f}{all_mb:>8.0f}{load:>6.1f}")
        pipeline = rows[1:]
        wall = sum(r[1] for r in pipeline)
        mb = max(r[4] for r in pipeline)
        print(f"{'analyze+synth+validate':<24}{wall:>8.1f}{sum(r[2] for r in pipeline):>8.1f}{args.tasks / wall:>9.0f}"
              f"{max(r[3] for r in pipeline):>9.0f}{mb:>8.0f}")
        print(f"target <= 60 s and <= 4096 MB: {'met' if wall <= 60 and mb <= 4096 else 'NOT met'} "
              f"(load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
