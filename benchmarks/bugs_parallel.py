"""Validating candidate bugs with ``-j 1`` against ``-j N`` on the same candidates, and a resumed rerun.

``synthesize --source repo:PATH``'s library call (``hrmcode.data.bugs.repo_tasks``) over one git
repository (default: ``examples/demo-repo`` committed at a fixed date in a temporary directory), each
run into its own output (so its own verdict log, nothing resumed), in the local sandbox. Printed side
by side: seconds, test runs (the reference plus one per candidate), kept, the speed-up over ``-j 1``,
and whether ``instances.jsonl`` and ``tasks.jsonl`` are byte-identical to ``-j 1``'s. The last row reruns
``-j 1``'s output: every verdict comes from the log, so it makes no test run. Timings depend on the
machine's free cores (each candidate's test run is one sandboxed pytest process). Usage:

    python benchmarks/bugs_parallel.py                        # demo-repo, 16 candidates, -j 1 vs -j 2
    python benchmarks/bugs_parallel.py --repo PATH --test-cmd 'python -m pytest -q tests' --max-bugs 30 --jobs 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrmcode.data.bugs import repo_tasks  # noqa: E402
from hrmcode.sandbox import get_sandbox  # noqa: E402


class CountingSandbox:
    """The sandbox, counting test runs."""

    def __init__(self, inner):
        self.inner = inner
        self.runs = 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.inner.run(*args, **kwargs)


def demo_repo(root: Path) -> Path:
    repo = root / "demo-repo"
    shutil.copytree(ROOT / "examples" / "demo-repo", repo)
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@localhost", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "demo"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="a git repository (default: examples/demo-repo)")
    parser.add_argument("--test-cmd", default="python -m pytest -q tests")
    parser.add_argument("--max-bugs", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bugs-parallel-") as tmp:
        root = Path(tmp)
        repo = Path(args.repo) if args.repo else demo_repo(root)
        rows = []
        outputs = {}
        for label, jobs, out in (("-j 1", 1, "j1"), (f"-j {args.jobs}", args.jobs, "jn"), ("-j 1 rerun", 1, "j1")):
            sandbox = CountingSandbox(get_sandbox())
            start = time.perf_counter()
            result = repo_tasks(str(repo), test_cmd=args.test_cmd, max_bugs=args.max_bugs, out=root / out,
                                jobs=jobs, sandbox=sandbox, workspace=root / "ws")
            seconds = time.perf_counter() - start
            made = tuple((result.artifact.path / name).read_bytes() for name in ("instances.jsonl", "tasks.jsonl"))
            outputs.setdefault("-j 1", made)
            rows.append((label, seconds, sandbox.runs, result.stats["tried"], result.stats["kept"],
                         result.stats["resumed"], made == outputs["-j 1"]))
        base = rows[0][1]
        print(f"{repo}: {rows[0][3]} candidates tried, `{args.test_cmd}`, {os.cpu_count()} cpus")
        print(f"{'run':<12} {'seconds':>8} {'speed-up':>8} {'test runs':>9} {'kept':>5} {'resumed':>7} {'same bytes':>10}")
        for label, seconds, runs, _tried, kept, resumed, same in rows:
            print(f"{label:<12} {seconds:>8.1f} {base / seconds:>7.2f}x {runs:>9} {kept:>5} {resumed:>7} {str(same):>10}")


if __name__ == "__main__":
    main()
