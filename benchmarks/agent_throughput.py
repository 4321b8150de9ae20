"""Agent throughput of ``hrmcode eval swe`` and what a step's command costs in the sandbox, side by side.

On tasks made by ``hrmcode synthesize --source repo:`` from ``examples/demo-repo`` (or ``--tasks``):

1. Tasks per hour: ``eval swe --model oracle`` at ``-j 1`` and at ``-j 2`` (``--attempts`` attempts
   per task; wall clock of the whole CLI process, so start-up and writing the run are in it).
2. Per-step latency: a scripted agent (``tests/agent/fake_server.py``: grep, sed, pytest, an edit,
   pytest, git diff, submit per task) drives ``eval swe``; its trajectories' ``Step.seconds`` (model
   call + command + the loop's file digests) per command kind. The same commands are then replayed
   in a bare shell on the host (no sandbox, the sandbox's environment) and through ``Sandbox.session().exec`` alone; the
   difference of their p50s is what the sandbox adds to a command.

Usage::

    python benchmarks/agent_throughput.py                       # local (bubblewrap) backend
    python benchmarks/agent_throughput.py --attempts 3 --max-bugs 12 --backend docker

Prints two tables. Timings are wall clock on a shared machine: compare columns of one run.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hrmcode.agent.repo import RepoTask, load_repo_tasks  # noqa: E402
from hrmcode.eval.swe import GIT_BASE  # noqa: E402
from hrmcode.sandbox import get_sandbox  # noqa: E402
from hrmcode.sandbox.base import Limits  # noqa: E402
from tests.agent.conftest import git_commit, synthesize_tasks  # noqa: E402
from tests.agent.fake_server import FakeAgentServer, correct_script  # noqa: E402

KINDS = ("read (grep/sed/git)", "edit", "pytest", "oracle write")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def kind_of(command: str) -> str:
    if "pytest" in command:
        return "pytest"
    if "| base64 -d >" in command:
        return "oracle write"
    if command.startswith(("python3 - <<", "sed -i", "mkdir -p")):
        return "edit"
    return "read (grep/sed/git)"


def hrmcode(*args: str) -> tuple[float, dict]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "hrmcode", "--json", *args], capture_output=True, text=True,
                         env={**os.environ, "HRMCODE_NO_PROGRESS": "1"})
    seconds = time.monotonic() - started
    if run.returncode not in (0, 1):
        raise SystemExit(f"hrmcode {' '.join(args)} exited {run.returncode}:\n{run.stderr[-2000:]}")
    return seconds, json.loads(run.stdout)


def demo_tasks(root: Path, max_bugs: int) -> Path:
    repo = root / "demo"
    shutil.copytree(REPO / "examples" / "demo-repo", repo)
    git_commit(repo)
    return synthesize_tasks(repo, root / "ws", "python -m pytest -q tests", max_bugs)


def step_commands(trajectories: Path) -> dict[str, list[tuple[str, float]]]:
    """Per task id, each bash step's (command, Step.seconds), in order."""
    found: dict[str, list[tuple[str, float]]] = {}
    for line in trajectories.read_text().splitlines():
        record = json.loads(line)
        found[record["task_id"]] = [(s["action"]["command"], s["seconds"]) for s in record["steps"]
                                    if s["action"]["kind"] == "bash"]
    return found


def sandbox_environment(sandbox) -> dict[str, str]:
    """The environment commands get in a session, with the host's paths to the same interpreter and
    tools in place of ``/opt/hrmcode`` (the bare replay's environment)."""
    with sandbox.session(files={}, limits=Limits(timeout_s=60)) as session:
        result = session.exec("env -0")
    env = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH"):
        env.pop(name, None)
    # this interpreter's bin dir holds the same python with pytest; its other plugins stay off, as in the sandbox
    env["PATH"] = ":".join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def replay_bare(task: RepoTask, commands: list[str], root: Path, env: dict[str, str]) -> list[tuple[float, int]]:
    """The commands in a plain ``bash -c`` on the host, in a copy of the buggy tree, with the
    sandbox's environment, without the sandbox: (seconds, exit code) each."""
    work = Path(tempfile.mkdtemp(dir=root))
    env = {**env, "HOME": str(work), "TMPDIR": str(root), "PWD": str(work)}
    for path, text in task.files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text, encoding="utf-8")
    subprocess.run(["bash", "-c", GIT_BASE], cwd=work, capture_output=True, env=env)
    times = []
    for command in commands:
        started = time.monotonic()
        done = subprocess.run(["bash", "-c", command], cwd=work, capture_output=True, env=env)
        times.append((time.monotonic() - started, done.returncode))
    shutil.rmtree(work)
    return times


def replay_session(sandbox, task: RepoTask, commands: list[str]) -> list[tuple[float, int | None]]:
    """The commands through ``session.exec`` alone (no model call, no digests): (seconds, exit code) each."""
    times = []
    with sandbox.session(files=dict(task.files), limits=Limits(timeout_s=120)) as session:
        session.exec(f"{{ {GIT_BASE}; }} >/dev/null 2>&1; true")
        for command in commands:
            started = time.monotonic()
            result = session.exec(command)
            times.append((time.monotonic() - started, result.exit_code))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, help="a tasks artifact (default: synthesized from examples/demo-repo)")
    parser.add_argument("--max-bugs", type=int, default=12, help="candidate bugs for the demo tasks (default 12)")
    parser.add_argument("--attempts", type=int, default=2, help="oracle attempts per task (default 2)")
    parser.add_argument("--backend", default="local")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="agent-throughput-"))
    try:
        tasks_path = args.tasks or demo_tasks(root, args.max_bugs)
        tasks = {task.id: task for task in load_repo_tasks(tasks_path)}
        common = ["eval", "swe", "--tasks", str(tasks_path), "--backend", args.backend]

        print(f"backend {args.backend}, {len(tasks)} tasks x {args.attempts} attempts, --model oracle; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"{'run':>12} | {'attempts':>8} | {'wall s':>7} | {'tasks/hour':>10} | {'agent s':>7} | "
              f"{'grade s':>7} | resolved")
        for jobs in (1, 2):
            seconds, summary = hrmcode(*common, "--model", "oracle", "--attempts", str(args.attempts),
                                       "-j", str(jobs), "--out", str(root / f"oracle-j{jobs}"))
            n = summary["trajectories"]
            print(f"{'oracle -j ' + str(jobs):>12} | {n:>8} | {seconds:>7.1f} | {3600 * n / seconds:>10.0f} | "
                  f"{summary['seconds']['agent']:>7.1f} | {summary['seconds']['grade']:>7.1f} | "
                  f"{summary['resolved']}/{n}")

        scripts = {task.instance_id: correct_script(task) for task in tasks.values()}
        with FakeAgentServer(scripts) as server:
            hrmcode(*common, "--model", f"openai:{server.url}", "--model-name", server.model_name, "-j", "1",
                    "--out", str(root / "scripted"))
        in_eval: dict[str, list[float]] = {kind: [] for kind in KINDS}
        bare: dict[str, list[float]] = {kind: [] for kind in KINDS}
        session: dict[str, list[float]] = {kind: [] for kind in KINDS}
        sandbox = get_sandbox(args.backend)
        environment = sandbox_environment(sandbox)
        runs = [step_commands(root / "scripted" / "trajectories.jsonl"),
                step_commands(root / "oracle-j1" / "trajectories.jsonl")]
        differing = 0  # commands whose exit code differs between the replays (they did not do the same work)
        for steps_by_task in runs:
            for task_id, steps in steps_by_task.items():
                commands = [command for command, _ in steps]
                for (command, seconds), (b, b_code), (s, s_code) in zip(
                        steps, replay_bare(tasks[task_id], commands, root, environment),
                        replay_session(sandbox, tasks[task_id], commands)):
                    kind = kind_of(command)
                    in_eval[kind].append(seconds)
                    bare[kind].append(b)
                    session[kind].append(s)
                    differing += b_code != s_code

        print()
        print("milliseconds per command: a bare shell on the host, session.exec in the sandbox, a step of eval swe "
              "(model call + command + file digests)")
        print(f"{'command':>20} | {'n':>3} | {'bare p50':>8} {'p95':>6} | {'session p50':>11} {'p95':>6} | "
              f"{'eval step p50':>13} {'p95':>6} | {'sandbox adds p50':>16}")
        everything = ([], [], [])
        for kind in KINDS:
            if not in_eval[kind]:
                continue
            for bucket, values in zip(everything, (bare[kind], session[kind], in_eval[kind])):
                bucket.extend(values)
            row(kind, bare[kind], session[kind], in_eval[kind])
        row("all commands", *everything)
        print(f"load average {os.getloadavg()[0]:.2f}")
        print(f"commands whose exit code differed between the bare and the sandboxed replay: {differing}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def row(name: str, bare: list[float], session: list[float], in_eval: list[float]) -> None:
    ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
    adds = 1000 * (statistics.median(session) - statistics.median(bare))
    print(f"{name:>20} | {len(in_eval):>3} | {ms(bare, .5):>8.1f} {ms(bare, .95):>6.1f} | {ms(session, .5):>11.1f} "
          f"{ms(session, .95):>6.1f} | {ms(in_eval, .5):>13.1f} {ms(in_eval, .95):>6.1f} | {adds:>16.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
