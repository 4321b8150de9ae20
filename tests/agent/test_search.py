"""Search over agent attempts: best-of-N picks from agent-visible evidence only, and the tree search's
UCB1 selection, exact call budget, determinism, best leaf and exact restore of files into fresh sessions."""

from __future__ import annotations

import hashlib
import inspect
import random
import re

import pytest

from hrmcode.agent.loop import AgentLimits, PolicyReply
from hrmcode.agent.protocol import SUBMIT_SENTINEL
from hrmcode.agent.search import (
    FAILED_COMMAND_PENALTY, FORMAT_ERROR_PENALTY, NEUTRAL_VALUE, SearchNode, TestRun, VisibleEvidence, best_of_n,
    is_test_command, mcts, node_value, pytest_counts, rank_attempts, select, ucb1, visible_evidence,
    widening_allows,
)
from hrmcode.agent.trajectory import Step, Trajectory
from hrmcode.errors import UsageError
from hrmcode.sandbox.base import ExecResult
from tests._sandboxes import BACKENDS, real_sandbox

# -- hand-built trajectories ---------------------------------------------------------------------------

PASS_OUT = "<returncode>0</returncode>\n<output>\n..\n2 passed in 0.01s\n</output>"
FAIL_OUT = "<returncode>1</returncode>\n<output>\nF.\n===== 1 failed, 1 passed in 0.02s =====\n</output>"


def step(index, kind="bash", command="ls", observation="<returncode>0</returncode>", exit_code=0, modified=()):
    action = {"kind": kind, "thought": "", "raw": ""}
    if kind in ("bash", "submit"):
        action["command"] = command
    return Step(index=index, action=action, observation=observation, exit_code=exit_code,
                state={"files_modified": list(modified)})


def trajectory(*specs, status="submitted"):
    """specs: "edit", "pass", "fail", "ls", "bad" (failed command), "format", "submit"."""
    steps = []
    for i, spec in enumerate(specs, start=1):
        steps.append({
            "edit": lambda: step(i, "edit", exit_code=0, modified=["calc.py"]),
            "pass": lambda: step(i, command="python -m pytest -q", observation=PASS_OUT, exit_code=0),
            "fail": lambda: step(i, command="pytest tests", observation=FAIL_OUT, exit_code=1),
            "ls": lambda: step(i),
            "bad": lambda: step(i, command="cat nope", exit_code=1),
            "format": lambda: step(i, "format_error", exit_code=None, observation="Format error:"),
            "submit": lambda: step(i, "submit", command=SUBMIT_SENTINEL, exit_code=None, observation=""),
        }[spec]())
    return Trajectory(problem="p", policy="m", messages=[], steps=steps, exit_status=status)


def test_pytest_summary_counts_and_test_commands():
    assert pytest_counts("x\n===== 2 failed, 3 passed, 1 warning in 0.12s =====\n") == (3, 2)
    assert pytest_counts("1 passed in 0.1s\n...\n1 failed, 2 errors in 0.3s\n") == (0, 3)  # the last line wins
    assert pytest_counts("no tests ran in 0.01s") == (0, 0)
    assert pytest_counts("2 passed") is None and pytest_counts("") is None
    for command in ("pytest -q", "cd repo && python -m pytest tests/", "PYTHONPATH=. timeout 60 python3 -m pytest",
                    "(cd x; /usr/bin/pytest -x)"):
        assert is_test_command(command), command
    for command in ("grep -r pytest setup.cfg", "cat pytest.ini", "ls", "python -m pip list"):
        assert not is_test_command(command), command
    assert is_test_command("./run-tests.sh -v", test_command="./run-tests.sh")


def test_visible_evidence_reads_the_last_run_and_its_freshness():
    evidence = visible_evidence(trajectory("fail", "edit", "pass", "submit"))
    assert evidence.last_run == TestRun(3, 0, 2, 0, True) and evidence.fresh and evidence.tier == 2
    stale = visible_evidence(trajectory("pass", "edit", "submit"))
    assert stale.last_run.passing and not stale.fresh and stale.tier == 1
    assert visible_evidence(trajectory("edit", "fail", "submit")).tier == 0
    # a test command whose output has no summary: its exit code decides
    crashed = trajectory("edit", "submit")
    crashed.steps.insert(1, step(2, command="pytest", observation="<returncode>4</returncode>", exit_code=4))
    assert visible_evidence(crashed).last_run == TestRun(2, 4, 0, 1, False)
    assert visible_evidence(trajectory("ls", "bad", "format", status="step_limit")).failed_commands == 1
    # a failing run before any change only reproduces the bug: no evidence either way
    reproduced = visible_evidence(trajectory("fail", "ls", status="step_limit"))
    assert reproduced.fresh and not reproduced.tested_change and reproduced.tier == 1
    # what pytest and Python leave behind is neither a change nor makes a run stale
    cached = trajectory("fail", "pass", "submit")
    cached.steps[0].state["files_modified"] = ["__pycache__/calc.cpython-311.pyc", ".pytest_cache/v/lastfailed"]
    assert not visible_evidence(cached).changed and visible_evidence(cached).tier == 1
    cached.steps[1].state["files_modified"] = ["calc.py"]  # the run's own command edited a file first
    assert visible_evidence(cached).changed and visible_evidence(cached).tier == 2


def test_a_hidden_resolve_does_not_beat_visible_evidence():
    """Attempt 0 would resolve under the hidden tests but its own last test run failed; attempt 1
    passed its visible tests. The picker takes trajectories only, never grades, and picks 1."""
    hidden_grades = [{"resolved": True}, {"resolved": False}]
    attempts = [trajectory("edit", "fail", "submit"), trajectory("edit", "pass", "submit")]
    assert best_of_n(attempts) == 1
    assert set(inspect.signature(best_of_n).parameters) == {"trajectories", "patches", "test_command"}
    assert hidden_grades[best_of_n(attempts)]["resolved"] is False  # the pick did not follow the grade


def test_best_of_n_ordering_key_by_key():
    # 1. submitted first, even over a visibly passing attempt that did not submit
    assert best_of_n([trajectory("edit", "pass", status="step_limit"), trajectory("edit", "fail", "submit")]) == 1
    # 2. a non-empty patch first (from the patches given, else from files_modified)
    assert best_of_n([trajectory("pass", "submit"), trajectory("edit", "submit")]) == 1
    assert best_of_n([trajectory("edit", "submit"), trajectory("edit", "submit")], patches=["", "diff"]) == 1
    # 3. fresh pass, then no usable evidence (none, or stale), then fresh fail
    order = rank_attempts([trajectory("edit", "fail", "submit"), trajectory("edit", "submit"),
                           trajectory("pass", "edit", "submit"), trajectory("edit", "pass", "submit")])
    assert order == [3, 1, 2, 0]
    # 4. fewer failures in the last (failing) run
    worse = trajectory("edit", "fail", "submit")
    worse.steps[1].observation = "3 failed, 1 passed in 0.1s"
    assert best_of_n([worse, trajectory("edit", "fail", "submit")]) == 1
    # 5. fewer format errors, then fewer failed commands; 6. fewer steps; 7. lower index
    assert best_of_n([trajectory("format", "edit", "pass", "submit"), trajectory("bad", "edit", "pass", "submit")]) == 1
    assert best_of_n([trajectory("bad", "edit", "pass", "submit"), trajectory("ls", "edit", "pass", "submit")]) == 1
    assert best_of_n([trajectory("ls", "edit", "pass", "submit"), trajectory("edit", "pass", "submit")]) == 1
    assert best_of_n([trajectory("edit", "pass", "submit"), trajectory("edit", "pass", "submit")]) == 0
    with pytest.raises(ValueError):
        best_of_n([])


def test_node_value_from_visible_feedback():
    def value(*specs, status="step_limit"):
        return node_value(visible_evidence(trajectory(*specs, status=status)))

    assert value("ls") == NEUTRAL_VALUE
    assert value("edit", "fail") == 0.25  # fresh and failing: half its pass fraction (1 of 2), below no evidence
    assert value("edit", "pass") == 1.0
    assert value("pass", "edit") == NEUTRAL_VALUE  # stale: no usable evidence
    assert value("edit", "pass", "submit", status="submitted") == 1.0
    assert value("submit", status="submitted") == 0.0  # submitted nothing
    assert value("edit", "submit", status="submitted") == NEUTRAL_VALUE
    assert value("ls", "format") == NEUTRAL_VALUE - FORMAT_ERROR_PENALTY
    assert value("ls", "bad") == NEUTRAL_VALUE - FAILED_COMMAND_PENALTY
    assert value("edit", "fail", "submit", status="submitted") == 0.25


# -- UCB1 on a hand-built tree -------------------------------------------------------------------------

def node(id, parent=None, visits=0, total=0.0, exhausted=False):
    made = SearchNode(id=id, parent=parent, messages=[], files={}, visits=visits, total=total, exhausted=exhausted)
    if parent is not None:
        parent.children.append(made)
    return made


def test_ucb1_selection_order_on_a_hand_built_tree():
    root = node(0, visits=10, total=6.0)
    a = node(1, root, visits=6, total=3.0)  # mean 0.5
    b = node(2, root, visits=2, total=1.4)  # mean 0.7, less visited
    c = node(3, root, visits=2, total=1.6)  # mean 0.8
    assert ucb1(b, 10, 1.4) == pytest.approx(0.7 + 1.4 * (2.302585 / 2) ** 0.5)
    assert ucb1(node(99), 10, 1.4) == float("inf")
    assert select(root, 1.4) is c  # unexpanded and the highest UCB1
    # c=0: pure exploitation also picks c; a big c prefers the less-visited over the much-visited
    assert select(root, 0.0) is c
    c.total = 1.0  # mean 0.5: now b leads
    assert select(root, 1.4) is b
    # descend through an expanded child to its best grandchild
    b1 = node(4, b, visits=1, total=0.2)
    b2 = node(5, b, visits=1, total=0.9)
    assert select(root, 1.4) is b2
    # a tie goes to the first child
    b2.total = 0.2
    assert select(root, 1.4) is b1
    # exhausted nodes are skipped; a node whose children are all exhausted becomes exhausted
    b1.exhausted = b2.exhausted = True
    assert select(root, 1.4) is c and b.exhausted
    a.exhausted = c.exhausted = True
    assert select(root, 1.4) is None and root.exhausted


def test_progressive_widening_expands_a_visited_node_again():
    root = node(0, visits=3, total=1.5)
    a = node(1, root, visits=3, total=1.5)
    a1 = node(2, a, visits=2, total=1.0)
    # 3 visits allow 1 child: descend; a1 (2 visits, no child) is the one to expand
    assert not widening_allows(root, 2) and select(root, 1.4, max_children=2) is a1
    root.visits = a.visits = 4  # 4 visits allow a second child: the root itself is expanded again
    assert widening_allows(root, 2) and select(root, 1.4, max_children=2) is root
    assert not widening_allows(root, 1) and select(root, 1.4, max_children=1) is a1
    # all children exhausted but room for more: widen instead of giving up
    root.visits = a.visits = 3
    a.exhausted = True
    assert select(root, 1.4, max_children=2) is root and not root.exhausted
    assert select(root, 1.4, max_children=1) is None and root.exhausted


# -- tree search over a fake session ---------------------------------------------------------------------

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a * b\n"


class FakeSession:
    """A files dict and a tiny interpreter of the scripted commands: ``cat PATH``, ``write PATH WORD``
    (WORD names one of the versions above), ``pytest`` (passes when calc.py adds) and ``fail``."""

    workdir = "/work"
    opened: list[FakeSession] = []

    def __init__(self, files):
        self.files = {path: bytes(data) for path, data in files.items()}
        self.initial = dict(self.files)
        self.closed = False
        FakeSession.opened.append(self)

    def exec(self, command, *, timeout_s=None, env=None):
        assert not self.closed
        words = command.split()
        if words[0] == "cat":
            data = self.files.get(words[1])
            return ExecResult(0 if data is not None else 1, (data or b"").decode(), "", 0.0)
        if words[0] == "write":
            self.files[words[1]] = {"fixed": FIXED, "wrong": WRONG}[words[2]].encode()
            return ExecResult(0, "", "", 0.0)
        if words[0] == "pytest":
            ok = b"a + b" in self.files.get("calc.py", b"")
            summary = "2 passed in 0.01s" if ok else "1 failed, 1 passed in 0.01s"
            return ExecResult(0 if ok else 1, f"..\n{summary}\n", "", 0.0)
        return ExecResult(1, "", f"{command}: not found\n", 0.0)

    def read_files(self, max_file_bytes=1 << 20):
        return dict(self.files)

    def write_files(self, files):
        self.files.update({p: d.encode() if isinstance(d, str) else d for p, d in files.items()})

    def close(self):
        self.closed = True


START = {"calc.py": BUGGY.encode(), "tests/test_calc.py": b"from calc import add\n", "data.bin": bytes(range(256))}


def make_session(files):
    return FakeSession(START if files is None else files)


def reply(command):
    return f"THOUGHT: next.\n\n```bash\n{command}\n```\n"


class SeededPolicy:
    """A stochastic script: read the file, write the fix with probability ``p`` (else a wrong edit), run
    the tests, submit when they passed (else write again); seeded, so a run is reproducible."""

    name = "seeded"

    def __init__(self, seed, p=0.5):
        self.rng = random.Random(seed)
        self.p = p
        self.calls: list[list[dict]] = []

    def act(self, messages):
        self.calls.append([dict(m) for m in messages])
        done = [m["content"] for m in messages if m["role"] == "assistant"]
        last = messages[-1]["content"] if len(messages) > 2 else ""
        if not done:
            text = reply("cat calc.py")
        elif "pytest" in done[-1]:
            text = reply(SUBMIT_SENTINEL) if "2 passed" in last else reply(self.edit())
        elif "write" in done[-1]:
            text = reply("pytest")
        else:
            text = reply(self.edit())
        return PolicyReply(text, prompt_tokens=10, completion_tokens=5)

    def edit(self):
        return "write calc.py " + ("fixed" if self.rng.random() < self.p else "wrong")


def search(seed=0, budget=12, **kw):
    FakeSession.opened = []
    policy = SeededPolicy(seed, kw.pop("p", 0.5))
    result = mcts("add() subtracts", make_session, policy, kw.pop("limits", AgentLimits(step_limit=10)),
                  budget_calls=budget, test_command="pytest", **kw)
    return result, policy


def test_mcts_spends_exactly_its_budget_and_closes_every_session():
    for budget in (1, 2, 5, 7):
        result, policy = search(budget=budget, p=0.0)  # never fixes: never exhausts the tree
        assert result.calls == len(policy.calls) == budget
        assert result.nodes == budget + 1 and not result.submitted and result.stopped == "budget"
        assert all(s.closed for s in FakeSession.opened)


def test_widening_spends_one_call_per_selection_and_the_budget_exactly():
    for budget in (1, 4, 9):
        seen = []
        result, policy = search(budget=budget, p=0.0, widening=True, on_node=seen.append)
        assert result.calls == len(policy.calls) == len(seen) == budget
    # the first calls go deep along one path before the root gets a second child
    assert [n.depth for n in seen[:3]] == [1, 2, 3]
    assert max(len(n.children) for n in seen) <= 2


def test_mcts_is_deterministic_with_a_seeded_policy():
    first, _ = search(seed=3)
    second, _ = search(seed=3)
    assert timeless(first.trajectory.to_record()) == timeless(second.trajectory.to_record())
    assert first.stats() | {"seconds": 0} == second.stats() | {"seconds": 0}
    assert first.trajectory.steps != search(seed=4)[0].trajectory.steps or first.nodes != search(seed=4)[0].nodes


def timeless(record):
    """A trajectory record without its wall-clock seconds."""
    return {**record, "seconds": 0, "steps": [{**s, "seconds": 0} for s in record["steps"]]}


def test_mcts_returns_the_best_submitted_leaf_as_one_linear_trajectory():
    result, _ = search(seed=1, budget=16, p=0.5)
    assert result.submitted and result.trajectory.exit_status == "submitted"
    kinds = [s.action.get("command", s.action["kind"]) for s in result.trajectory.steps]
    assert kinds[0] == "cat calc.py" and kinds[-1] == SUBMIT_SENTINEL
    assert kinds[-2] == "pytest" and kinds[-3] == "write calc.py fixed"
    assert [s.index for s in result.trajectory.steps] == list(range(1, len(kinds) + 1))
    assert [s.done for s in result.trajectory.steps][-1] and not any(s.done for s in result.trajectory.steps[:-1])
    assert result.files["calc.py"] == FIXED.encode()
    # the conversation is the path's, one assistant message per step, each followed by its observation
    messages = result.trajectory.messages
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "user"] * len(kinds)
    assert [m["content"] for m in messages[2::2]] == [s.action["raw"] for s in result.trajectory.steps]
    assert result.depth >= len(kinds) and result.trajectory.prompt_tokens == 10 * len(kinds)


def test_each_expansion_restores_its_node_exactly_and_sees_only_its_path():
    seen = []
    result, policy = search(seed=2, budget=10, on_node=seen.append)
    start = FakeSession.opened[0]
    assert start.initial == START  # make_session(None): the starting tree, read once for the root
    assert len(FakeSession.opened) == 1 + result.calls
    for opened, child in zip(FakeSession.opened[1:], seen, strict=True):
        parent_files = child.parent.files if child.parent.parent is not None else START
        assert opened.initial == parent_files  # the binary file too, byte for byte
        assert child.files == opened.files
    for call, child in zip(policy.calls, seen, strict=True):
        # the model saw exactly its parent's conversation: the path to it, none of its siblings' steps
        assert call == child.messages[:-2] and len(call) == 2 + 2 * (child.depth - 1)
        assert child.parent.parent is None or call == child.parent.messages


def test_mcts_stops_when_every_state_is_terminal():
    class SubmitAtOnce:
        name = "stub"
        calls = 0

        def act(self, messages):
            self.calls += 1
            return PolicyReply(reply(SUBMIT_SENTINEL))

    policy = SubmitAtOnce()
    result = mcts("p", make_session, policy, AgentLimits(), budget_calls=50, expansions=3)
    assert (result.calls, policy.calls, result.nodes, result.stopped) == (3, 3, 4, "exhausted")
    assert result.submitted and result.trajectory.steps[0].action["kind"] == "submit"


def test_step_limit_and_format_errors_end_a_branch():
    class Babbling:
        name = "babble"

        def act(self, messages):
            return PolicyReply("no action here")

    result = mcts("p", make_session, Babbling(), AgentLimits(format_error_limit=2), budget_calls=50, expansions=1)
    assert (result.calls, result.stopped, result.nodes, result.depth, result.terminal) == (2, "exhausted", 3, 2, 1)
    # the format_errors leaf ranks below its parent (one format error fewer); neither submitted
    assert result.trajectory.exit_status == "step_limit" and len(result.trajectory.steps) == 1
    seen = []
    result, _ = search(budget=50, p=0.0, expansions=1, limits=AgentLimits(step_limit=3), on_node=seen.append)
    assert (result.calls, result.depth, result.stopped) == (3, 3, "exhausted")
    assert [n.status for n in seen] == [None, None, "step_limit"]
    # cat, a wrong edit, a failing test run: the pick is the state before the failing run (no evidence
    # beats a fresh failure), not submitted
    assert [s.action["command"] for s in result.trajectory.steps] == ["cat calc.py", "write calc.py wrong"]


def test_bad_search_settings_are_usage_errors():
    for kw in ({"budget_calls": 0}, {"budget_calls": 4, "expansions": 0}, {"budget_calls": 4, "c": -1.0}):
        with pytest.raises(UsageError):
            mcts("p", make_session, SeededPolicy(0), AgentLimits(), **kw)


def test_search_module_never_takes_a_grade():
    import hrmcode.agent.search as module

    source = inspect.getsource(module)
    assert not re.search(r"^from hrmcode\.agent\.(grading|repo)\b", source, re.MULTILINE)
    assert "VisibleEvidence" in source and VisibleEvidence.__dataclass_fields__.keys().isdisjoint({"resolved", "grade"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_into_a_fresh_real_session_is_exact(backend):
    """In real sandbox sessions: the state a step leaves (a nested binary file, a deleted file, an
    edit) is what the next step's fresh session starts with, byte for byte."""
    sandbox = real_sandbox(backend)
    blob = bytes(range(256))
    script = iter([
        reply("mkdir -p deep/er && head -c 256 /dev/zero > zeros && rm tests/test_calc.py && "
              "sed -i 's/a - b/a + b/' calc.py"),
        reply("sha256sum data.bin zeros calc.py"),
        reply(SUBMIT_SENTINEL),
    ])

    class Script:
        name = "script"

        def act(self, messages):
            return PolicyReply(next(script))

    opened = []

    def session(files):
        opened.append(files)
        return sandbox.session(START if files is None else files)

    result = mcts("p", session, Script(), AgentLimits(command_timeout_s=30), budget_calls=3, expansions=1)
    assert result.calls == 3 and result.submitted
    first, second, _ = result.trajectory.steps
    assert first.exit_code == 0 and set(first.state["files_modified"]) == {"calc.py", "zeros", "tests/test_calc.py"}
    for name, data in (("data.bin", blob), ("zeros", bytes(256)), ("calc.py", FIXED.encode())):
        assert f"{hashlib.sha256(data).hexdigest()}  {name}" in second.observation
    assert opened[:2] == [None, START]  # the starting tree, then the root's snapshot of it
    assert opened[3] == opened[2] == result.files  # the second step changed nothing
    assert result.files == {"calc.py": FIXED.encode(), "data.bin": blob, "zeros": bytes(256)}
