"""The agent loop with scripted policies: every exit status, edits, truncation, the context policy, and
trajectories that round-trip through their JSON record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hrmcode.agent.context import CONTEXT_POLICY, sent_messages
from hrmcode.agent.loop import EXIT_STATUSES, AgentLimits, ContextExceeded, PolicyReply, run_agent
from hrmcode.agent.protocol import PLAN_HEADING, PROTOCOL, SUBMIT_MARKER, SUBMIT_SENTINEL
from hrmcode.agent.trajectory import TRAJECTORY_FORMAT, Trajectory
from hrmcode.errors import InputError, SandboxError, UsageError
from hrmcode.sandbox.base import ExecResult, Limits
from tests._sandboxes import BACKENDS, real_sandbox


class DirSession:
    """The Session seam over a plain directory: commands run unsandboxed with subprocess (these tests
    exercise the loop; the sandboxed sessions have their own tests)."""

    workdir = "."

    def __init__(self, root: Path, files: dict[str, str]):
        self.root = root
        self.commands: list[tuple[str, float | None]] = []
        self.write_files(files)

    def exec(self, command: str, *, timeout_s: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        self.commands.append((command, timeout_s))
        start = time.monotonic()
        proc = subprocess.Popen(["/bin/bash", "-c", command], cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout_s)
            return ExecResult(exit_code=proc.returncode, stdout=out, stderr=err, wall_s=time.monotonic() - start)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return ExecResult(exit_code=None, stdout=out, stderr=err, wall_s=time.monotonic() - start,
                              timed_out=True, killed_signal=signal.SIGKILL)

    def read_files(self, max_file_bytes: int = 1 << 20) -> dict[str, bytes]:
        found = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if rel.split("/")[0] == ".git" or path.is_symlink() or not path.is_file():
                continue
            if path.stat().st_size <= max_file_bytes:
                found[rel] = path.read_bytes()
        return found

    def write_files(self, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)

    def close(self) -> None:
        pass


class Scripted:
    """A policy that plays a fixed list of replies (str, or an exception to raise)."""

    name = "scripted"

    def __init__(self, *replies):
        self.replies = list(replies)
        self.seen: list[list[dict[str, str]]] = []

    def act(self, messages):
        self.seen.append([dict(m) for m in messages])
        reply = self.replies.pop(0) if self.replies else bash("ls")
        if isinstance(reply, Exception):
            raise reply
        return PolicyReply(text=reply, prompt_tokens=100, completion_tokens=10)


def bash(command: str, thought: str = "THOUGHT: next.") -> str:
    return f"{thought}\n\n```bash\n{command}\n```\n"


SUBMIT = bash(SUBMIT_SENTINEL, "THOUGHT: done.")
CALC = "def add(a, b):\n    return a - b\n"
FIX = "I fix the sign.\n\ncalc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n"


@pytest.fixture
def session(tmp_path):
    return DirSession(tmp_path, {"calc.py": CALC, "tests/test_calc.py": "from calc import add\n"})


def run(session, *replies, limits=None, **kw):
    policy = Scripted(*replies)
    trajectory = run_agent("add() subtracts", session, policy, limits or AgentLimits(), **kw)
    assert trajectory.exit_status in EXIT_STATUSES
    return trajectory, policy


def test_submit_at_once_runs_nothing(session):
    trajectory, policy = run(session, SUBMIT)
    assert trajectory.exit_status == "submitted" and trajectory.error is None
    assert session.commands == []
    [step] = trajectory.steps
    assert (step.index, step.action["kind"], step.done, step.exit_code) == (1, "submit", True, None)
    assert step.action["raw"] == SUBMIT and step.action["thought"] == "THOUGHT: done."
    assert [m["role"] for m in trajectory.messages] == ["system", "user", "assistant", "user"]
    assert policy.seen[0] == trajectory.messages[:2]
    assert (trajectory.prompt_tokens, trajectory.completion_tokens, trajectory.protocol) == (100, 10, PROTOCOL)


def test_format_error_is_fed_back_then_a_correct_reply_runs(session):
    trajectory, policy = run(session, "I will just think.", bash("cat calc.py"), SUBMIT)
    assert trajectory.exit_status == "submitted" and trajectory.format_errors == 1
    assert [s.action["kind"] for s in trajectory.steps] == ["format_error", "bash", "submit"]
    assert trajectory.steps[0].observation.startswith("Format error:")
    assert policy.seen[1][-1] == {"role": "user", "content": trajectory.steps[0].observation}
    assert trajectory.steps[1].observation == f"<returncode>0</returncode>\n<output>\n{CALC}</output>"
    assert trajectory.steps[1].exit_code == 0


def test_format_errors_in_a_row_end_the_run_but_a_valid_reply_resets_the_count(session):
    limits = AgentLimits(format_error_limit=2)
    trajectory, _ = run(session, "no", bash("ls"), "no", "still no", limits=limits)
    assert trajectory.exit_status == "format_errors"
    assert trajectory.format_errors == 3 and len(trajectory.steps) == 4 and trajectory.steps[-1].done


def test_step_limit_counts_every_model_call(session):
    trajectory, _ = run(session, "bad", *[bash("true")] * 10, limits=AgentLimits(step_limit=3))
    assert trajectory.exit_status == "step_limit" and len(trajectory.steps) == 3
    assert [s.done for s in trajectory.steps] == [False, False, True]


def test_time_limit_caps_the_running_command_and_ends_the_run(session):
    started = time.monotonic()
    trajectory, _ = run(session, bash("sleep 30"), limits=AgentLimits(time_limit_s=2.0, command_timeout_s=60))
    assert time.monotonic() - started < 10
    assert trajectory.exit_status == "time_limit"
    [step] = trajectory.steps
    assert session.commands[0][1] <= 2.0
    assert step.exit_code is None and "<returncode>-1</returncode>" in step.observation
    assert "ran past its time limit" in step.observation


def test_a_model_call_that_uses_up_the_time_leaves_its_command_unrun(session):
    class Slow(Scripted):
        def act(self, messages):
            time.sleep(2.5)
            return super().act(messages)

    trajectory = run_agent("p", session, Slow(bash("touch ran")), AgentLimits(time_limit_s=2.0))
    assert trajectory.exit_status == "time_limit" and session.commands == []
    assert "the command was not run" in trajectory.steps[0].observation and not (session.root / "ran").exists()


def test_command_timeout_kills_one_command_and_the_run_goes_on(session):
    trajectory, _ = run(session, bash("sleep 30"), SUBMIT, limits=AgentLimits(command_timeout_s=0.5))
    assert trajectory.exit_status == "submitted"
    assert session.commands == [("sleep 30", 0.5)]
    assert trajectory.steps[0].exit_code is None and trajectory.steps[0].seconds < 10


def test_policy_exception_is_a_crash_with_its_error_and_earlier_steps_kept(session):
    trajectory, _ = run(session, bash("ls"), RuntimeError("server went away"))
    assert trajectory.exit_status == "crash"
    assert trajectory.error == "policy: RuntimeError: server went away"
    assert len(trajectory.steps) == 1 and trajectory.steps[0].done


def test_session_failure_is_a_crash_too(session):
    def broken(command, **kw):
        raise OSError("sandbox is gone")

    session.exec = broken
    trajectory, _ = run(session, bash("ls"))
    assert trajectory.exit_status == "crash" and trajectory.error == "session: OSError: sandbox is gone"


def test_on_step_sees_each_step_and_its_own_errors_propagate(session):
    seen = []
    run(session, bash("true"), SUBMIT, on_step=seen.append)
    assert [s.index for s in seen] == [1, 2]

    def failing(step):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run(session, SUBMIT, on_step=failing)


def test_submit_marker_printed_by_a_command_submits_its_output(session):
    trajectory, _ = run(session, bash(f"{SUBMIT_SENTINEL} && cat calc.py"))
    assert trajectory.exit_status == "submitted" and trajectory.submission == CALC
    assert trajectory.to_record()["info"]["exit_status"] == "Submitted"
    failing, _ = run(session, bash(f"{SUBMIT_SENTINEL} && false"), SUBMIT)
    assert len(failing.steps) == 2  # a failing command does not submit


def test_search_replace_edit_is_applied_to_the_session(session):
    trajectory, _ = run(session, FIX, SUBMIT)
    assert trajectory.exit_status == "submitted"
    assert (session.root / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    step = trajectory.steps[0]
    assert step.action["kind"] == "edit" and step.action["thought"] == "I fix the sign."
    assert step.action["edits"] == [{"path": "calc.py", "before": "    return a - b\n", "after": "    return a + b\n"}]
    assert step.observation == "<returncode>0</returncode>\n<output>\nChanged: calc.py\n</output>"
    assert (step.exit_code, step.state["files_modified"]) == (0, ["calc.py"])
    assert session.commands == []


def test_search_replace_edit_that_does_not_match_says_why_and_changes_nothing(session):
    wrong = FIX.replace("return a - b", "return b - a")
    trajectory, _ = run(session, wrong, SUBMIT)
    step = trajectory.steps[0]
    assert step.exit_code == 1 and step.state["files_modified"] == []
    assert "No file changed." in step.observation and "1 edit failed to apply" in step.observation
    assert "The SEARCH block for calc.py does not match its lines exactly" in step.observation
    assert (session.root / "calc.py").read_text() == CALC


def test_edits_resolve_paths_create_files_and_refuse_binary_files(session):
    session.write_files({"data/blob.py": b"\xff\xfe\x00binary"})
    new_file = "src/new.py\n```python\n<<<<<<< SEARCH\n=======\nX = 1\n>>>>>>> REPLACE\n```\n"
    by_basename = FIX.replace("calc.py\n```", "pkg/calc.py\n```")  # resolved to the only calc.py
    binary = "data/blob.py\n```\n<<<<<<< SEARCH\n=======\nY = 2\n>>>>>>> REPLACE\n```\n"
    trajectory, _ = run(session, new_file, by_basename, binary, SUBMIT)
    assert [s.state["files_modified"] for s in trajectory.steps[:3]] == [["src/new.py"], ["calc.py"], []]
    assert (session.root / "src/new.py").read_text() == "X = 1\n"
    assert "not a UTF-8 text file" in trajectory.steps[2].observation
    assert (session.root / "data/blob.py").read_bytes() == b"\xff\xfe\x00binary"


def test_a_write_the_session_refuses_is_reported_to_the_model(session):
    real_write = session.write_files

    def refusing(files):
        if "calc.py" in files:
            raise SandboxError("calc.py: a symlink on the way")
        real_write(files)

    session.write_files = refusing
    both = FIX + "\nnew.py\n```\n<<<<<<< SEARCH\n=======\nZ = 3\n>>>>>>> REPLACE\n```\n"
    trajectory, _ = run(session, both, SUBMIT)
    step = trajectory.steps[0]
    assert trajectory.exit_status == "submitted" and step.exit_code == 1
    assert "Changed: new.py" in step.observation and "calc.py could not be written: calc.py: a symlink" in step.observation
    assert step.state["files_modified"] == ["new.py"]


def test_files_modified_lists_what_each_command_created_changed_or_deleted(session):
    trajectory, _ = run(session, bash("echo x > new.txt && rm tests/test_calc.py"), bash("cat calc.py"),
                        bash("printf 'def add(a, b):\\n    return a + b\\n' > calc.py"), SUBMIT)
    assert [s.state["files_modified"] for s in trajectory.steps] == [
        ["new.txt", "tests/test_calc.py"], [], ["calc.py"], []]


def test_long_output_is_truncated_with_a_note(session):
    command = "python3 -c \"print('x' * 3000 + 'END', end='')\""
    trajectory, _ = run(session, bash(command), SUBMIT, limits=AgentLimits(observation_chars=1000))
    observation = trajectory.steps[0].observation
    assert "<elided_chars>\n2003 characters elided\n</elided_chars>" in observation
    assert observation.count("x") < 1100 and "END\n</output_tail>" in observation


def test_plan_is_shown_under_its_heading_and_recorded(session):
    trajectory, policy = run(session, SUBMIT, plan="EDIT calc.py add\nRUN pytest", planner="oracle")
    task = policy.seen[0][1]["content"]
    assert f"{PLAN_HEADING}\n\nA planner read the issue and wrote this plan:\n\nEDIT calc.py add\nRUN pytest\n" in task
    assert (trajectory.plan, trajectory.planner) == ("EDIT calc.py add\nRUN pytest", "oracle")


def test_tiny_context_budget_elides_old_observations_and_records_what_was_sent(session):
    big = "python3 -c \"print('y' * 2000)\""
    limits = AgentLimits(context_tokens=2000, observation_chars=4000)
    trajectory, policy = run(session, bash(big), bash(big), bash(big), SUBMIT, limits=limits)
    assert trajectory.exit_status == "submitted" and trajectory.context_policy == CONTEXT_POLICY
    contexts = [s.state["context"] for s in trajectory.steps]
    assert [c["sent"] for c in contexts] == [list(range(n)) for n in (2, 4, 6, 8)]
    assert [c["elided"] for c in contexts] == [[], [], [], [3]]  # the fourth call no longer fits whole
    assert all(c["policy"] == CONTEXT_POLICY and c["dropped"] == [] and c["tokens"] <= 2000 for c in contexts)
    last_sent = policy.seen[3]
    assert last_sent[:3] + last_sent[4:] == trajectory.messages[:3] + trajectory.messages[4:8]
    assert last_sent[3] == {"role": "user", "content": f"[observation of step 1 elided: {len(trajectory.messages[3]['content'])} chars]"}
    assert len(trajectory.messages) == 10  # the trajectory keeps the whole conversation
    for step, seen in zip(trajectory.steps, policy.seen):
        assert sent_messages(trajectory.messages, step.state["context"]) == seen


def test_context_overflow_ends_the_run(session):
    trajectory, policy = run(session, SUBMIT, limits=AgentLimits(context_tokens=50))
    assert trajectory.exit_status == "context_overflow" and trajectory.steps == [] and policy.seen == []


def test_a_model_that_refuses_the_prompt_as_too_long_ends_with_context_overflow_and_its_reason(session):
    refusal = ContextExceeded("the prompt has 300 tokens, the model's context is 256")
    trajectory, _ = run(session, bash("ls"), refusal)
    assert trajectory.exit_status == "context_overflow" and len(trajectory.steps) == 1
    assert trajectory.error == "policy: ContextExceeded: the prompt has 300 tokens, the model's context is 256"
    assert trajectory.steps[0].done


def test_impossible_limits_are_a_usage_error(session):
    for bad in (AgentLimits(step_limit=0), AgentLimits(time_limit_s=0), AgentLimits(observation_chars=0),
                AgentLimits(context_tokens=-1)):
        with pytest.raises(UsageError):
            run(session, SUBMIT, limits=bad)


def test_trajectory_round_trips_through_its_json_record(session):
    trajectory, _ = run(session, "oops", FIX, bash("ls"), SUBMIT, plan="RUN pytest", planner="p",
                        limits=AgentLimits(context_tokens=100_000))
    trajectory.steps[-1].reward = 1.0
    record = json.loads(json.dumps(trajectory.to_record()))
    assert record["format"] == TRAJECTORY_FORMAT and record["trajectory_format"] == "mini-swe-agent-1.1"
    assert record["info"]["model_stats"]["api_calls"] == 4
    assert Trajectory.from_record(record) == trajectory
    assert Trajectory.from_record({**record, "grade": None, "reward": 1.0}) == trajectory  # eval swe's extra keys
    with pytest.raises(InputError, match="format 99"):
        Trajectory.from_record({**record, "format": 99})
    with pytest.raises(InputError, match="malformed"):
        Trajectory.from_record({k: v for k, v in record.items() if k != "steps"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_loop_in_a_real_sandbox_session(backend):
    """Read, edit with SEARCH/REPLACE, run the code, outlive a runaway command, submit: in bubblewrap
    (and docker where it runs), with what each step changed seen through the session."""
    sandbox = real_sandbox(backend)
    policy = Scripted(bash("cat calc.py"), FIX, bash("python3 -c 'from calc import add; print(add(2, 3))'"),
                      bash("sleep 60 & sleep 60"), bash("echo made > made.txt"), SUBMIT)
    with sandbox.session({"calc.py": CALC}, Limits(timeout_s=30)) as live:
        trajectory = run_agent("add() subtracts", live, policy, AgentLimits(command_timeout_s=5))
        final = live.read_files()
    assert trajectory.exit_status == "submitted", trajectory.error
    steps = trajectory.steps
    assert CALC in steps[0].observation and steps[0].state["files_modified"] == []
    assert steps[1].state["files_modified"] == ["calc.py"] and steps[1].exit_code == 0
    assert steps[2].observation == "<returncode>0</returncode>\n<output>\n5\n</output>"
    assert steps[3].exit_code is None and "ran past its time limit" in steps[3].observation
    assert steps[4].state["files_modified"] == ["made.txt"]
    assert final["calc.py"] == b"def add(a, b):\n    return a + b\n" and final["made.txt"] == b"made\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_replies_in_a_real_session_are_contained_and_reported(backend):
    """An edit through a symlink the agent planted, a flood of output, a command that kills its own
    shell: each is one reported step, and the run goes on to submit."""
    sandbox = real_sandbox(backend)
    through_link = "escape/etc/hrmcode-owned.py\n```\n<<<<<<< SEARCH\n=======\nowned = True\n>>>>>>> REPLACE\n```\n"
    policy = Scripted(bash("mkdir -p /tmp/out && ln -s /tmp/out escape"), through_link,
                      bash("yes 0123456789 | head -c 50000000"), bash("kill -9 $$"), SUBMIT)
    with sandbox.session({"calc.py": CALC}, Limits(timeout_s=30)) as live:
        trajectory = run_agent("add() subtracts", live, policy, AgentLimits(command_timeout_s=20, observation_chars=2000))
        final = live.read_files()
    assert trajectory.exit_status == "submitted", trajectory.error
    link, flood, killed = trajectory.steps[1], trajectory.steps[2], trajectory.steps[3]
    assert link.exit_code == 1 and "escape/etc/hrmcode-owned.py could not be written" in link.observation
    assert link.state["files_modified"] == [] and not Path("/tmp/out/etc/hrmcode-owned.py").exists()
    assert "characters elided" in flood.observation and len(flood.observation) < 4000
    assert killed.exit_code != 0 and "<returncode>" in killed.observation
    assert sorted(final) == ["calc.py"]
