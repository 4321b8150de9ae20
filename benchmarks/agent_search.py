"""Best-of-N vs tree search (MCTS) over agent attempts at EQUAL model calls, on demo-repository tasks.

Tasks: bugs injected into ``examples/demo-repo`` by ``synthesize --source repo:``'s library call
(``hrmcode.data.bugs.repo_tasks``), validated in the local sandbox. Every command of every attempt
runs in a real local (bubblewrap) sandbox session; each pick is graded by ``agent.grading.grade``
(FAIL_TO_PASS + PASS_TO_PASS in a fresh sandbox run).

The model is the scripted OpenAI-compatible server of the tests (``tests/agent/fake_server.py``) in
its seeded stochastic mode, reached over HTTP through ``eval swe``'s own ``openai:`` backend and
policy: per task a correct multi-step script (search, read, run the failing tests, edit, test
again, diff, submit); each reply is the script's next step with probability ``--p-step``, else that
step's wrong alternative (a wrong-line edit, which also spoils the right edit after it, or an
unhelpful command). A fresh server per method and seed, so both methods draw from the same seed.

Per task and seed: best-of-N runs ``--attempts`` attempts (``run_agent``, ``--step-limit`` steps each)
and submits ``best_of_n``'s pick; MCTS then gets exactly the model calls best-of-N used on that task
and seed (``budget_calls``), once with ``--expansions`` children per expansion and once with
progressive widening (``widening=True``), so every row spends the same calls (the server's own request count is
checked against it). "pass@N" grades every attempt: the rate a pick that could see the hidden tests
would reach (a ceiling, not a method). "submitted": how many picks had submitted (an unsubmitted
state of the search is still graded on its files, as ``eval swe --search mcts`` does). Usage:

    python benchmarks/agent_search.py                       # 5 tasks x 3 seeds, N = 4
    python benchmarks/agent_search.py --tasks 3 --seeds 2 --attempts 3 --p-step 0.8
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake server lives in the tests

from hrmcode.agent.grading import grade, model_patch  # noqa: E402
from hrmcode.agent.loop import AgentLimits, run_agent  # noqa: E402
from hrmcode.agent.repo import RepoTask, load_repo_tasks  # noqa: E402
from hrmcode.agent.search import best_of_n, mcts  # noqa: E402
from hrmcode.data.bugs import repo_tasks  # noqa: E402
from hrmcode.eval.backends import Generation, make_backend  # noqa: E402
from hrmcode.eval.swe import GIT_BASE, AgentAnswers, BackendPolicy  # noqa: E402
from hrmcode.sandbox import get_sandbox  # noqa: E402
from tests.agent.fake_server import FakeAgentServer, Stochastic, correct_script  # noqa: E402

TEST_CMD = "python -m pytest -q tests"
SEARCHES = {"MCTS": False, "MCTS widening": True}  # row name -> mcts(widening=)


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


def open_session(sandbox, task: RepoTask, files: dict[str, bytes] | None):
    """As ``eval swe`` opens one: the task's repository committed as git's base (so the script's
    ``git diff`` works), then a search state's ``files`` written over it."""
    session = sandbox.session(dict(task.files))
    session.exec(GIT_BASE)
    if files is not None:
        session.write_files({path: data for path, data in files.items() if task.files.get(path, "").encode() != data})
        removed = [path for path in task.files if path not in files]
        if removed:
            session.exec("rm -f -- " + " ".join(shlex.quote(path) for path in removed))
    return session


def serve(task: RepoTask, p_step: float, seed: int) -> FakeAgentServer:
    return FakeAgentServer({task.instance_id: correct_script(task)}, stochastic=Stochastic(p_step, seed))


def policy_of(server: FakeAgentServer, task: RepoTask) -> BackendPolicy:
    backend = make_backend(f"openai:{server.url}", model_name=server.model_name,
                           generation=Generation(temperature=0.8, retries=0, timeout_s=60))
    return BackendPolicy(backend, server.model_name, task, AgentAnswers())


def resolved(task: RepoTask, files: dict[str, bytes], sandbox) -> bool:
    patch, _ = model_patch(task.files, files)
    return grade(task, patch, sandbox).resolved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--attempts", type=int, default=4, help="N of best-of-N")
    parser.add_argument("--step-limit", type=int, default=10)
    parser.add_argument("--p-step", type=float, default=0.7, help="probability a reply is the script's next step")
    parser.add_argument("--expansions", type=int, default=2)
    parser.add_argument("--c", type=float, default=1.4, help="UCB1 exploration constant")
    args = parser.parse_args()

    sandbox = get_sandbox("local")
    limits = AgentLimits(step_limit=args.step_limit, command_timeout_s=60)
    rows: dict[str, dict[str, list]] = {name: {"calls": [], "resolved": [], "seconds": [], "submitted": []}
                                        for name in ("best-of-N", *SEARCHES, "pass@N")}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tasks = demo_tasks(Path(tmp), args.tasks, sandbox)
        for task in tasks:
            for seed in range(args.seeds):
                start = time.perf_counter()
                trajectories, finals = [], []
                with serve(task, args.p_step, seed) as server:
                    policy = policy_of(server, task)
                    for _ in range(args.attempts):
                        with open_session(sandbox, task, None) as session:
                            trajectories.append(run_agent(task.problem, session, policy, limits))
                            finals.append(session.read_files())
                    served = len(server.requests)
                patches = [model_patch(task.files, files)[0] for files in finals]
                pick = best_of_n(trajectories, patches=patches, test_command=task.test_command)
                calls = sum(len(t.steps) for t in trajectories)
                assert served == calls, (served, calls)
                ok = resolved(task, finals[pick], sandbox)
                rows["best-of-N"]["seconds"].append(time.perf_counter() - start)
                rows["best-of-N"]["calls"].append(calls)
                rows["best-of-N"]["resolved"].append(ok)
                rows["best-of-N"]["submitted"].append(trajectories[pick].exit_status == "submitted")
                rows["pass@N"]["calls"].append(calls)
                rows["pass@N"]["resolved"].append(ok or any(resolved(task, files, sandbox)
                                                            for i, files in enumerate(finals) if i != pick))

                for name, widening in SEARCHES.items():
                    start = time.perf_counter()
                    with serve(task, args.p_step, seed) as server:
                        result = mcts(task.problem, lambda files: open_session(sandbox, task, files),
                                      policy_of(server, task), limits, budget_calls=calls, c=args.c,
                                      expansions=args.expansions, test_command=task.test_command,
                                      widening=widening)
                        served = len(server.requests)
                    assert served == result.calls and (result.calls == calls or result.stopped != "budget"), result.stats()
                    ok = resolved(task, result.files, sandbox)
                    row = rows[name]
                    row["seconds"].append(time.perf_counter() - start)
                    row["calls"].append(result.calls)
                    row["resolved"].append(ok)
                    row["submitted"].append(result.submitted)
                    print(f"{task.instance_id} seed {seed}: best-of-{args.attempts} resolved="
                          f"{rows['best-of-N']['resolved'][-1]}, {name} resolved={ok} {result.stats()}", file=sys.stderr)

    runs = len(tasks) * args.seeds
    print(f"{len(tasks)} demo-repo tasks x {args.seeds} seeds = {runs} runs per method; N = {args.attempts}, "
          f"step limit {args.step_limit}, p_step {args.p_step}, "
          f"MCTS c = {args.c}, expansions = {args.expansions}; load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"| {'method':<38} | {'model calls (mean)':>18} | {'resolved':>12} | {'submitted':>9} | {'mean seconds':>12} |")
    print(f"|{'-' * 40}|{'-' * 20}|{'-' * 14}|{'-' * 11}|{'-' * 14}|")
    names = {"best-of-N": f"best-of-{args.attempts} (visible pick)",
             "MCTS": f"MCTS, {args.expansions} children per expansion",
             "MCTS widening": f"MCTS, 1 child per step, widening to {args.expansions}",
             "pass@N": f"pass@{args.attempts} (hidden-test ceiling)"}
    for key, label in names.items():
        row = rows[key]
        rate = f"{sum(row['resolved'])}/{runs} {100 * sum(row['resolved']) / runs:.0f}%"
        seconds = f"{statistics.mean(row['seconds']):.1f}" if row["seconds"] else "-"
        submitted = f"{sum(row['submitted'])}/{runs}" if row["submitted"] else "-"
        print(f"| {label:<38} | {statistics.mean(row['calls']):>18.1f} | {rate:>12} | {submitted:>9} | {seconds:>12} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
