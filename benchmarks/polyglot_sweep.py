"""Run every polyglot reference solution (and optionally every unmodified stub) through the sandbox.

Expected: each reference passes its full, un-skipped tests except those in
``polyglot.KNOWN_UNAVAILABLE``; each stub fails except those in ``polyglot.STUBS_THAT_PASS``.
Prints per-language pass counts and wall time, lists every unexpected outcome, and exits 1 if there
is one. Usage:

    python benchmarks/polyglot_sweep.py -j 2                       # references, strict mode
    python benchmarks/polyglot_sweep.py -j 2 --stubs               # references and stubs
    python benchmarks/polyglot_sweep.py --languages go,rust --mode aider-compat
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from hrmcode.data.sources.polyglot import exercise_dirs, to_task
from hrmcode.eval.polyglot import KNOWN_UNAVAILABLE, STUBS_THAT_PASS
from hrmcode.sandbox import get_sandbox, run_many
from hrmcode.sandbox.toolchains import LANGUAGES, release_requested, run_tests

DEFAULT_ROOT = Path(os.environ.get("HRMCODE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "polyglot-benchmark"


def trees(task, stubs: bool) -> list[tuple[str, dict[str, str]]]:
    base = {**task.files, **task.tests.files}
    out = [("reference", {**base, **task.solution.files})]
    if stubs:
        out.append(("stub", base))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="polyglot-benchmark checkout")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--mode", default="strict", choices=["strict", "aider-compat"])
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--stubs", action="store_true", help="also check that unmodified stubs fail")
    parser.add_argument("--limit", type=int, default=None, help="at most this many exercises per language")
    parser.add_argument("--json", type=Path, default=None, help="write every outcome here")
    args = parser.parse_args()

    languages = tuple(args.languages.split(","))
    sandbox = get_sandbox(args.backend)
    jobs, keys = [], []
    per_language: dict[str, int] = defaultdict(int)
    for language, slug, directory in exercise_dirs(args.root, languages):
        if args.limit and per_language[language] >= args.limit:
            continue
        per_language[language] += 1
        task = to_task(language, slug, directory)
        release = release_requested(task.metadata.get("config"))
        for kind, tree in trees(task, args.stubs):
            keys.append((language, slug, kind))
            jobs.append(lambda worker, language=language, tree=tree, release=release: run_tests(
                language, tree, mode=args.mode, sandbox=sandbox, worker=worker, release=release))

    # Warm the one-time caches (Go seed, Catch2 main) before timing, as a prepared machine would be.
    from hrmcode.sandbox.toolchains import ensure_go_seed
    if "go" in languages:
        ensure_go_seed(sandbox)
    load_before = os.getloadavg()
    start = time.monotonic()
    done = [0]

    def progress(index, run):
        done[0] += 1
        language, slug, kind = keys[index]
        print(f"[{done[0]}/{len(jobs)}] {language}/{slug} {kind}: {'pass' if run.passed else 'FAIL'} "
              f"({run.result.wall_s:.1f}s)", file=sys.stderr, flush=True)

    runs = run_many(jobs, args.jobs, on_done=progress)
    wall = time.monotonic() - start
    load_after = os.getloadavg()

    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    unexpected, outcomes = [], []
    for (language, slug, kind), run in zip(keys, runs):
        name = f"{language}/{slug}"
        row = table[language]
        row[f"{kind}s"] += 1
        row[f"{kind} passed"] += run.passed
        row["test seconds"] += run.result.wall_s
        if kind == "reference":
            expected = name not in KNOWN_UNAVAILABLE
        else:
            expected = name in STUBS_THAT_PASS
        if run.passed != expected:
            unexpected.append((name, kind, run))
        outcomes.append({"exercise": name, "kind": kind, "passed": run.passed, "expected": expected,
                         "wall_s": run.result.wall_s, "timed_out": run.result.timed_out,
                         "exit_code": run.result.exit_code})

    columns = ["language", "references", "ref passed", "known unavailable"] + (
        ["stubs", "stubs passed"] if args.stubs else []) + ["test s (sum)"]
    print(" | ".join(f"{c:>17}" for c in columns))
    totals = defaultdict(float)
    for language in languages:
        row = table[language]
        known = sum(1 for k in KNOWN_UNAVAILABLE if k.startswith(language + "/"))
        cells = [language, int(row["references"]), int(row["reference passed"]), known]
        if args.stubs:
            cells += [int(row["stubs"]), int(row["stub passed"])]
        cells.append(f"{row['test seconds']:.0f}")
        for key in ("references", "reference passed", "stubs", "stub passed"):
            totals[key] += row[key]
        print(" | ".join(f"{c:>17}" for c in cells))
    print(f"total: {int(totals['references'])} references, {int(totals['reference passed'])} passed"
          + (f"; {int(totals['stubs'])} stubs, {int(totals['stub passed'])} passed" if args.stubs else "")
          + f"; wall {wall:.1f} s with -j{args.jobs} ({args.mode}, {args.backend});"
          f" load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    for name, kind, run in unexpected:
        print(f"UNEXPECTED {name} {kind}: passed={run.passed} exit={run.result.exit_code} "
              f"timed_out={run.result.timed_out}\n{run.result.stdout[-1500:]}")
    if args.json:
        args.json.write_text(json.dumps({"wall_s": wall, "jobs": args.jobs, "outcomes": outcomes}, indent=1))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
