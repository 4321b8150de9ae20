"""Best-of-N vs tree search (MCTS) over agent attempts at EQUAL model calls, on demo-repository tasks.

Tasks: bugs injected into ``examples/demo-repo`` by ``synthesize --source repo:``'s library call
(``hrmcode.data.bugs.repo_tasks``), validated in the local sandbox. Every command of every attempt
runs in a real local (bubblewrap) sandbox session; each pick is graded by ``agent.grading.grade``
(FAIL_TO_PASS + PASS_TO_PASS in a fresh sandbox run).

The model is a scripted stochastic policy, in-process (no fake OpenAI-compatible server existed in
``tests/agent/`` when this was written): search the code, read the file, edit, run the tests, submit
after a visible pass, edit again after a failure. Each reply slips with probability ``--p-slip``
(a format error or a command on a file that does not exist); an edit is the gold fix with
probability ``--p-fix``, else a harmless wrong edit; after an edit it submits without testing with
probability ``--p-skip``. The policy decides from the conversation it is sent and its seeded RNG only.

Per task and seed: best-of-N runs ``--attempts`` attempts (``run_agent``, ``--step-limit`` steps each)
and submits ``best_of_n``'s pick; MCTS then gets exactly the model calls best-of-N used on that task
and seed (``budget_calls``), so both columns spend the same calls. "pass@N" grades every attempt: the
rate a pick that could see the hidden tests would reach (a ceiling, not a method). Usage:

    python benchmarks/agent_search.py                       # 5 tasks x 3 seeds, N = 4
    python benchmarks/agent_search.py --tasks 3 --seeds 2 --attempts 3 --p-fix 0.5
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hrmcode.agent.grading import grade, model_patch
from hrmcode.agent.loop import AgentLimits, PolicyReply, run_agent
from hrmcode.agent.protocol import SUBMIT_SENTINEL
from hrmcode.agent.repo import RepoTask, load_repo_tasks
from hrmcode.agent.search import best_of_n, mcts
from hrmcode.data.bugs import repo_tasks
from hrmcode.diffs import content_diffs
from hrmcode.eval.swe import gold_command
from hrmcode.sandbox import get_sandbox

ROOT = Path(__file__).resolve().parents[1]
TEST_CMD = "python -m pytest -q tests"
STAGES = ("search", "read", "edit", "test", "submit")


def demo_tasks(root: Path, count: int, sandbox) -> list[RepoTask]:
    """``count`` validated bug tasks of the demo repository (committed at a fixed date under ``root``)."""
    repo = root / "demo-repo"
    shutil.copytree(ROOT / "examples" / "demo-repo", repo)
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@localhost", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "demo"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    result = repo_tasks(str(repo), test_cmd=TEST_CMD, max_bugs=3 * count, out=root / "tasks", sandbox=sandbox)
    return load_repo_tasks(result.artifact.path)[:count]


class ScriptedPolicy:
    """The stochastic script of the module docstring for one task; a stage is tagged in each thought."""

    name = "scripted-stochastic"

    def __init__(self, task: RepoTask, seed: int, p_fix: float, p_slip: float, p_skip: float):
        self.rng = random.Random(seed)
        self.p_fix, self.p_slip, self.p_skip = p_fix, p_slip, p_skip
        self.path = next(d.new_path or d.old_path for d in content_diffs(task.gold_patch))
        self.function = self.path.rsplit("/", 1)[-1].removesuffix(".py")
        self.fix = gold_command(task)
        self.test_command = task.test_command
        self.calls = 0

    def act(self, messages: list[dict[str, str]]) -> PolicyReply:
        self.calls += 1
        stage = self.next_stage(messages)
        if stage != "submit" and self.rng.random() < self.p_slip:
            if self.rng.random() < 0.5:
                return PolicyReply(f"THOUGHT: [{stage}] I will {stage} now.")  # no action block: a format error
            return self.reply(stage, f"cat {self.path}.orig")  # a file that is not there
        if stage == "search":
            return self.reply(stage, f"grep -rn 'def ' --include=*.py . | grep -i {self.function} | head -20")
        if stage == "read":
            return self.reply(stage, f"cat -n {self.path}")
        if stage == "edit":
            if self.rng.random() < self.p_fix:
                return self.reply(stage, self.fix)
            return self.reply(stage, f"printf '\\n# reviewed: the bug is elsewhere\\n' >> {self.path}")
        if stage == "test":
            return self.reply(stage, self.test_command)
        return self.reply(stage, SUBMIT_SENTINEL)

    def reply(self, stage: str, command: str) -> PolicyReply:
        return PolicyReply(f"THOUGHT: [{stage}] next.\n\n```bash\n{command}\n```\n", prompt_tokens=0, completion_tokens=0)

    def next_stage(self, messages: list[dict[str, str]]) -> str:
        """From the last reply's stage and whether it worked (its observation's return code)."""
        if len(messages) < 4:
            return "search"
        last, observation = messages[-2]["content"], messages[-1]["content"]
        stage = next((s for s in STAGES if f"[{s}]" in last), "search")
        worked = "<returncode>0</returncode>" in observation
        if stage == "test":
            return "submit" if worked else "edit"
        if not worked:
            return stage
        if stage == "edit":
            return "submit" if self.rng.random() < self.p_skip else "test"
        return STAGES[STAGES.index(stage) + 1]


def resolved(task: RepoTask, files: dict[str, bytes], sandbox) -> bool:
    patch, _ = model_patch(task.files, files)
    return grade(task, patch, sandbox).resolved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--attempts", type=int, default=4, help="N of best-of-N")
    parser.add_argument("--step-limit", type=int, default=10)
    parser.add_argument("--p-fix", type=float, default=0.3)
    parser.add_argument("--p-slip", type=float, default=0.1)
    parser.add_argument("--p-skip", type=float, default=0.3)
    parser.add_argument("--expansions", type=int, default=2)
    parser.add_argument("--c", type=float, default=1.4, help="UCB1 exploration constant")
    args = parser.parse_args()

    sandbox = get_sandbox("local")
    limits = AgentLimits(step_limit=args.step_limit, command_timeout_s=60)
    rows: dict[str, dict[str, list]] = {name: {"calls": [], "resolved": [], "seconds": []}
                                        for name in ("best-of-N", "MCTS", "pass@N")}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tasks = demo_tasks(Path(tmp), args.tasks, sandbox)
        for task in tasks:
            for seed in range(args.seeds):
                start = time.perf_counter()
                trajectories, finals = [], []
                for attempt in range(args.attempts):
                    policy = ScriptedPolicy(task, 1000 * seed + attempt, args.p_fix, args.p_slip, args.p_skip)
                    with sandbox.session(task.files) as session:
                        trajectories.append(run_agent(task.problem, session, policy, limits))
                        finals.append(session.read_files())
                patches = [model_patch(task.files, files)[0] for files in finals]
                pick = best_of_n(trajectories, patches=patches, test_command=task.test_command)
                calls = sum(len(t.steps) for t in trajectories)
                ok = resolved(task, finals[pick], sandbox)
                rows["best-of-N"]["seconds"].append(time.perf_counter() - start)
                rows["best-of-N"]["calls"].append(calls)
                rows["best-of-N"]["resolved"].append(ok)
                rows["pass@N"]["calls"].append(calls)
                rows["pass@N"]["resolved"].append(ok or any(resolved(task, files, sandbox)
                                                            for i, files in enumerate(finals) if i != pick))

                start = time.perf_counter()
                policy = ScriptedPolicy(task, 1000 * seed + 999, args.p_fix, args.p_slip, args.p_skip)
                result = mcts(task.problem, lambda files: sandbox.session(task.files if files is None else files),
                              policy, limits, budget_calls=calls, c=args.c, expansions=args.expansions,
                              test_command=task.test_command)
                ok = resolved(task, result.files, sandbox)
                assert result.calls == policy.calls == calls or result.stopped != "budget", result.stats()
                rows["MCTS"]["seconds"].append(time.perf_counter() - start)
                rows["MCTS"]["calls"].append(result.calls)
                rows["MCTS"]["resolved"].append(ok)
                print(f"{task.instance_id} seed {seed}: best-of-{args.attempts} {'resolved' if rows['best-of-N']['resolved'][-1] else 'unresolved'}, "
                      f"mcts {'resolved' if ok else 'unresolved'} ({result.stats()})", file=sys.stderr)

    runs = len(tasks) * args.seeds
    print(f"{len(tasks)} demo-repo tasks x {args.seeds} seeds = {runs} runs per method; N = {args.attempts}, "
          f"step limit {args.step_limit}, p_fix {args.p_fix}, p_slip {args.p_slip}, p_skip {args.p_skip}, "
          f"MCTS c = {args.c}, expansions = {args.expansions}; load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"| {'method':<34} | {'model calls (mean)':>18} | {'resolved':>12} | {'mean seconds':>12} |")
    print(f"|{'-' * 36}|{'-' * 20}|{'-' * 14}|{'-' * 14}|")
    names = {"best-of-N": f"best-of-{args.attempts} (visible pick)", "MCTS": "MCTS at equal calls",
             "pass@N": f"pass@{args.attempts} (hidden-test ceiling)"}
    for key, label in names.items():
        row = rows[key]
        rate = f"{sum(row['resolved'])}/{runs} {100 * sum(row['resolved']) / runs:.0f}%"
        seconds = f"{statistics.mean(row['seconds']):.1f}" if row["seconds"] else "-"
        print(f"| {label:<34} | {statistics.mean(row['calls']):>18.1f} | {rate:>12} | {seconds:>12} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
