"""Search over agent attempts: pick one of N attempts (best-of-N), or search a tree of agent states (MCTS).

Both decide from what the agent itself could see: its own commands' exit codes and the output of
the test runs it chose to make. Neither takes a grade, the hidden tests or the gold patch, so a pick
cannot lean on what grading will say (``best_of_n`` takes only trajectories and, optionally, their
model patches).

Visible evidence (``visible_evidence``). A step is a *visible test run* when its action is a shell
command that runs pytest (``pytest``, ``py.test``, ``python -m pytest``) or contains the task's test
command. Its outcome is pytest's summary line, the last ``N failed, M passed ... in T s`` in the
observation (errors count as failures), and the step's exit code; with no summary line (a crash at
collection, output cut), exit code 0 counts as all passed and anything else as all failed. A test
run is *fresh* when no later step changed a file (``Step.state["files_modified"]``, exact per step),
and it *tests the agent's change* when some earlier step (or the run itself) changed one: a failing
run before any change only reproduces the bug, so it is no evidence either way. Files under
``__pycache__/`` and ``.pytest_cache/`` (what running the tests leaves) are not changes.
Anyone can print a fake summary line; that only fools this pick, never the grade.

``best_of_n`` ordering — the attempt that comes first under these keys, in this order, is submitted:

1. submitted (exit status ``submitted``) before not submitted;
2. a non-empty model patch before an empty one (the given patch, else: some step changed a file);
3. the last visible test run: fresh, testing the change, and passing (exit 0, no failures); then no
   usable evidence (no test run, a stale one, or one before any change); then fresh and failing;
4. fewer failures in that last run (failing ones only), then a higher pass fraction;
5. fewer format errors, then fewer failed commands (non-zero exit of a step that is not a test run);
6. fewer steps;
7. the lower index (so the pick is deterministic).

Tree search (``mcts``), after SWE-Search: a node is an agent state, the conversation so far and the
work tree's files (``Session.read_files()``). Expanding a node restores its files into a fresh
session (``make_session(files)``) and asks the policy, once per child, for the next action given the
node's conversation (sampling at temperature > 0 is the backend's business), runs it (one step of
``run_agent``: the same protocol, observations and exit statuses) and snapshots the files. Each model
call is one child; the search stops after exactly ``budget_calls`` calls, or earlier when every state
is terminal or ``limits.time_limit_s`` has passed (the whole search's wall time).

Node value (``node_value``), in [0, 1], from agent-visible feedback only, ordered as ``best_of_n``'s
tiers: 1.0 when the path's last visible test run is fresh, tests the change and passes; half its pass
fraction when it is fresh, tests the change and fails (below any state without evidence); 0.5 with no
usable evidence (no run, a stale one, or one before any change); 0.0 for a submitted state that changed no file; then minus 0.25 when the step into the
node was a format error, minus 0.1 when it was a failed command (non-zero exit, not a test run),
never below 0.

Selection descends from the root by UCB1 (``mean value + c * sqrt(ln(parent visits) / visits)``,
the first child wins a tie) through expanded nodes until it reaches an unexpanded, non-terminal one;
a node whose children are all terminal or exhausted is exhausted. Each child's value is backed up to
the root (visits + 1, total + value). A node is terminal when it submitted, its depth reached
``limits.step_limit``, ``limits.format_error_limit`` format errors in a row led to it, or its step ended in
``time_limit``, ``context_overflow`` or ``crash``. The answer is the ``best_of_n`` pick over every
non-root node's root-to-node path (so a submitted state wins when there is one), returned as one
linear ``Trajectory`` with that state's files.

Widening (``widening=True``, SWE-Search's one child per iteration): each selection expands ONE
child, and a node gains another child, up to ``expansions``, once it has been visited ``k**2``
times for its ``k``-th child (progressive widening, exponent 1/2), or when all its children are
exhausted. Without it, an agent tree whose states mostly carry no test evidence (value 0.5 alike)
is searched breadth first, so at a few dozen calls it rarely gets as deep as a whole attempt; with
it the search goes deep first and branches where it has spent visits.

Not guaranteed: the state is what ``read_files`` sees, so ``.git/``, symlinks, files over 1 MiB and
file modes are not carried into a child's session; processes and files outside the work dir do not
survive between steps (as with every step of ``run_agent``, each command is a fresh subshell).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from hrmcode.agent.context import ContextOverflow, ContextPolicy
from hrmcode.agent.loop import AgentLimits, Policy, PolicyReply, run_agent
from hrmcode.agent.trajectory import Step, Trajectory
from hrmcode.diffs import tree_patch
from hrmcode.errors import UsageError

if TYPE_CHECKING:
    from hrmcode.sandbox.base import Session

NEUTRAL_VALUE = 0.5
FORMAT_ERROR_PENALTY = 0.25
FAILED_COMMAND_PENALTY = 0.1

# what running Python and pytest leaves behind; grading leaves these out of the model patch too
_TOOL_DIRS = ("__pycache__", ".pytest_cache")
_SEGMENT_SPLIT_RE = re.compile(r"&&|\|\||[;|\n()]")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# pytest's last line: "===== 2 failed, 3 passed, 1 warning in 0.12s =====", or without the rules in -q mode
_SUMMARY_RE = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+|no tests ran)\s+in [\d.]+s?\b", re.MULTILINE)
_COUNT_RE = re.compile(r"(\d+) ([a-z]+)")


# -- what the agent could see ----------------------------------------------------------------------

@dataclass(frozen=True)
class TestRun:
    """One visible test run: a step whose command ran the tests, and what it showed."""

    __test__ = False  # not a pytest test class

    step: int  # the Step.index
    exit_code: int | None
    passed: int
    failed: int  # failed + errors
    summary: bool  # whether pytest's summary line was found (else the counts come from the exit code)

    @property
    def passing(self) -> bool:
        return self.exit_code == 0 and self.failed == 0 and self.passed > 0

    @property
    def pass_fraction(self) -> float:
        total = self.passed + self.failed
        return self.passed / total if total else 0.0


def is_test_command(command: str, test_command: str | None = None) -> bool:
    """Whether a shell command runs the tests: it contains ``test_command``, or one of its simple
    commands (split at ``&&``, ``||``, ``;``, ``|``, parentheses, newlines) is ``pytest ...``,
    ``py.test ...`` or ``python -m pytest ...`` (after any ``VAR=value`` words and a ``timeout N``)."""
    if test_command and test_command.strip() and test_command.strip() in command:
        return True
    for segment in _SEGMENT_SPLIT_RE.split(command):
        words = segment.split()
        while words and _ASSIGNMENT_RE.match(words[0]):
            words.pop(0)
        if words[:1] == ["timeout"]:
            words = words[2:]
        program = words[0].rsplit("/", 1)[-1] if words else ""
        if program in ("pytest", "py.test") or (program.startswith("python") and words[1:3] == ["-m", "pytest"]):
            return True
    return False


def pytest_counts(output: str) -> tuple[int, int] | None:
    """(passed, failed + errors) from the last pytest summary line in ``output``; None when there is none."""
    found = _SUMMARY_RE.findall(output)
    if not found:
        return None
    counts = {word: int(n) for n, word in _COUNT_RE.findall(found[-1])}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    return counts.get("passed", 0), failed


def is_tool_output(path: str) -> bool:
    """A file the tools leave behind (under ``__pycache__/`` or ``.pytest_cache/``), not the agent's change."""
    return any(part in _TOOL_DIRS for part in path.split("/")[:-1])


def _changes(step: Step) -> list[str]:
    return [path for path in step.state.get("files_modified") or [] if not is_tool_output(path)]


def _test_run(step: Step, test_command: str | None) -> TestRun | None:
    if step.action.get("kind") != "bash" or not is_test_command(step.action.get("command", ""), test_command):
        return None
    counts = pytest_counts(step.observation)
    if counts is not None:
        return TestRun(step.index, step.exit_code, counts[0], counts[1], True)
    ok = step.exit_code == 0
    return TestRun(step.index, step.exit_code, int(ok), int(not ok), False)


@dataclass(frozen=True)
class VisibleEvidence:
    """What one attempt showed its agent (see the module docstring)."""

    submitted: bool
    changed: bool  # a non-empty model patch
    last_run: TestRun | None
    fresh: bool  # no file changed after last_run
    tested_change: bool  # some file had changed before last_run (so it tested the agent's change)
    format_errors: int
    failed_commands: int
    steps: int
    last_step_kind: str  # the action kind of the last step ("" with no steps)
    last_step_failed: bool  # the last step was a failed command that is not a test run

    @property
    def tier(self) -> int:
        """2: the last test run tested the agent's change, is fresh and passed; 0: the same, but it
        failed; 1: no usable evidence (no run, a stale one, or one before any change)."""
        if self.last_run is None or not self.fresh or not self.tested_change:
            return 1
        return 2 if self.last_run.passing else 0

    def key(self) -> tuple:
        """The sort key of ``best_of_n`` (smaller is better; the index is added by the caller)."""
        failing = self.last_run is not None and self.tier == 0
        return (not self.submitted, not self.changed, -self.tier,
                self.last_run.failed if failing else 0, -(self.last_run.pass_fraction if failing else 0.0),
                self.format_errors, self.failed_commands, self.steps)


def visible_evidence(trajectory: Trajectory, *, patch: str | None = None,
                     test_command: str | None = None) -> VisibleEvidence:
    """The agent-visible evidence of one trajectory; ``patch``: its model patch, when known (else
    whether some step changed a file decides ``changed``)."""
    last_run: TestRun | None = None
    fresh = True
    changed_before = tested_change = False
    failed_commands = 0
    last_failed = False
    for step in trajectory.steps:
        run = _test_run(step, test_command)
        changes = _changes(step)
        if run is not None:  # a run whose own command also edits (``sed -i ... && pytest``) tests that edit
            last_run, fresh, tested_change = run, True, changed_before or bool(changes)
        elif changes:
            fresh = False
        changed_before = changed_before or bool(changes)
        last_failed = run is None and step.action.get("kind") == "bash" and step.exit_code != 0
        failed_commands += last_failed
    if patch is not None:
        changed = bool(patch.strip())
    else:
        changed = any(_changes(step) for step in trajectory.steps)
    return VisibleEvidence(
        submitted=trajectory.exit_status == "submitted", changed=changed, last_run=last_run, fresh=fresh,
        tested_change=tested_change,
        format_errors=sum(step.action.get("kind") == "format_error" for step in trajectory.steps),
        failed_commands=failed_commands, steps=len(trajectory.steps),
        last_step_kind=trajectory.steps[-1].action.get("kind", "") if trajectory.steps else "",
        last_step_failed=last_failed)


def rank_attempts(trajectories: list[Trajectory], *, patches: list[str] | None = None,
                  test_command: str | None = None) -> list[int]:
    """The indices of ``trajectories`` best first, under ``best_of_n``'s ordering."""
    if patches is not None and len(patches) != len(trajectories):
        raise ValueError(f"{len(patches)} patches for {len(trajectories)} trajectories")
    keys = [visible_evidence(t, patch=None if patches is None else patches[i], test_command=test_command).key()
            for i, t in enumerate(trajectories)]
    return sorted(range(len(trajectories)), key=lambda i: (keys[i], i))


def best_of_n(trajectories: list[Trajectory], *, patches: list[str] | None = None,
              test_command: str | None = None) -> int:
    """The index of the attempt to submit, from agent-visible evidence only (module docstring)."""
    if not trajectories:
        raise ValueError("best_of_n needs at least one trajectory")
    return rank_attempts(trajectories, patches=patches, test_command=test_command)[0]


def node_value(evidence: VisibleEvidence) -> float:
    """A state's value in [0, 1] from agent-visible feedback (module docstring); it orders states as
    ``best_of_n``'s tiers do: a fresh visible pass above no evidence above a fresh visible failure."""
    if evidence.tier == 2:
        value = 1.0
    elif evidence.tier == 0:
        value = NEUTRAL_VALUE * evidence.last_run.pass_fraction
    else:
        value = NEUTRAL_VALUE
    if evidence.submitted and not evidence.changed:
        value = 0.0
    if evidence.last_step_kind == "format_error":
        value -= FORMAT_ERROR_PENALTY
    elif evidence.last_step_failed:
        value -= FAILED_COMMAND_PENALTY
    return max(0.0, value)


# -- tree search -------------------------------------------------------------------------------------

@dataclass(eq=False)
class SearchNode:
    """One agent state of the tree: the conversation so far and the work tree's files."""

    id: int  # creation order; the root is 0
    parent: SearchNode | None
    messages: list[dict[str, str]]  # the whole conversation to this state ([] at the root until expanded)
    files: dict[str, bytes]
    step: Step | None = None  # the step into this state (None at the root)
    status: str | None = None  # the exit status when terminal, else None
    value: float = 0.0  # this state's own value (node_value)
    visits: int = 0
    total: float = 0.0  # sum of the values backed up through this node
    children: list[SearchNode] = field(default_factory=list)
    exhausted: bool = False  # terminal, or every child exhausted: selection never enters it
    depth: int = 0
    errors_in_a_row: int = 0  # format errors in a row ending at this state
    submission: str = ""
    error: str | None = None
    context_policy: str = ""
    protocol: str = ""

    @property
    def mean(self) -> float:
        return self.total / self.visits if self.visits else 0.0

    def path(self) -> list[SearchNode]:
        """The nodes from the root's first child down to this one."""
        nodes, node = [], self
        while node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


def ucb1(child: SearchNode, parent_visits: int, c: float) -> float:
    """UCB1: the mean backed-up value plus ``c * sqrt(ln(parent_visits) / visits)``; inf when unvisited."""
    if child.visits == 0:
        return math.inf
    return child.mean + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def widening_allows(node: SearchNode, max_children: int) -> bool:
    """Progressive widening: a node may hold ``floor(sqrt(visits))`` children (at least 1, at most
    ``max_children``); True when it holds fewer."""
    return len(node.children) < min(max_children, max(1, math.isqrt(node.visits)))


def select(root: SearchNode, c: float, *, max_children: int | None = None) -> SearchNode | None:
    """The node to expand next: descend by UCB1 (first child on a tie) through expanded nodes to an
    unexpanded, non-terminal one; None when the whole tree is exhausted. Marks the exhausted nodes met.

    With ``max_children`` (progressive widening) a node on the way down is expanded again, by one
    child, when ``widening_allows`` it, or when all its children are exhausted and it has fewer than
    ``max_children``."""
    node = root
    while not root.exhausted:
        if node.exhausted:  # a dead end found on the way down: start again from the root
            node = root
            continue
        if not node.children or (max_children is not None and widening_allows(node, max_children)):
            return node
        open_children = [child for child in node.children if not child.exhausted]
        if not open_children:
            if max_children is not None and len(node.children) < max_children:
                return node
            node.exhausted = True
            continue
        node = max(open_children, key=lambda child: ucb1(child, node.visits, c))  # max keeps the first of a tie
    return None


def backpropagate(node: SearchNode, value: float) -> None:
    """Add one visit of ``value`` to ``node`` and each of its ancestors."""
    while node is not None:
        node.visits += 1
        node.total += value
        node = node.parent


@dataclass
class SearchResult:
    """What a search submits: the chosen state's path as one linear trajectory, and its files."""

    trajectory: Trajectory
    files: dict[str, bytes]  # the chosen state's work tree (read_files view): grade its model patch
    submitted: bool
    calls: int  # model calls made: exactly the number of policy.act calls
    budget_calls: int
    nodes: int  # states in the tree, the root included
    depth: int  # the deepest state's steps from the root
    terminal: int  # terminal states
    stopped: str  # "budget", "exhausted" (every state terminal) or "time_limit"
    seconds: float

    def stats(self) -> dict:
        return {"method": "mcts", "calls": self.calls, "budget_calls": self.budget_calls, "nodes": self.nodes,
                "depth": self.depth, "terminal": self.terminal, "stopped": self.stopped,
                "submitted": self.submitted, "seconds": round(self.seconds, 3)}


class _NodePolicy:
    """Sends the node's conversation (fitted to the context) to the policy in place of the fresh one
    ``run_agent`` starts with, and counts the calls."""

    def __init__(self, policy: Policy, window: list[dict[str, str]] | None):
        self.policy = policy
        self.name = getattr(policy, "name", type(policy).__name__)
        self.window = window
        self.calls = 0

    def act(self, messages: list[dict[str, str]]) -> PolicyReply:
        self.calls += 1
        return self.policy.act(self.window if self.window is not None else messages)


def _path_trajectory(problem: str, policy_name: str, plan: str | None, node: SearchNode) -> Trajectory:
    """The root-to-``node`` path as one linear trajectory."""
    steps = [replace(n.step, index=i, done=False) for i, n in enumerate(node.path(), start=1)]
    if steps and node.status is not None:
        steps[-1].done = True
    return Trajectory(
        problem=problem, policy=policy_name, messages=list(node.messages), steps=steps,
        exit_status=node.status or "step_limit", plan=plan, seconds=sum(s.seconds for s in steps),
        prompt_tokens=sum(s.prompt_tokens for s in steps), completion_tokens=sum(s.completion_tokens for s in steps),
        format_errors=sum(s.action.get("kind") == "format_error" for s in steps),
        context_policy=node.context_policy, protocol=node.protocol, submission=node.submission, error=node.error)


def _texts(files: dict[str, bytes]) -> dict[str, str]:
    return {path: data.decode("utf-8", "replace") for path, data in files.items() if not is_tool_output(path)}


def mcts(problem: str, make_session: Callable[[dict[str, bytes] | None], Session], policy: Policy,
         limits: AgentLimits, *, budget_calls: int, c: float = 1.4, expansions: int = 2, plan: str | None = None,
         test_command: str | None = None, count_tokens: Callable[[str], int] | None = None,
         on_node: Callable[[SearchNode], None] | None = None, widening: bool = False) -> SearchResult:
    """Tree search over agent states (module docstring) with exactly at most ``budget_calls`` model calls.

    ``make_session(None)`` opens the task's starting work tree (read once, for the root's files);
    ``make_session(files)`` a fresh one holding exactly ``files``. Every session is closed.
    ``test_command``: the task's test command, to recognise the agent's test runs. ``on_node`` is
    called with each new state. ``widening``: one child per selection and progressive widening up to
    ``expansions`` children per node (``select``'s ``max_children``), instead of ``expansions``
    children at once per leaf (module docstring, "Widening"). ``UsageError`` for a budget below 1, ``expansions`` below 1 or ``c`` below 0.
    """
    limits.check()
    if budget_calls < 1:
        raise UsageError(f"the search needs a budget of at least 1 model call, got {budget_calls}")
    if expansions < 1:
        raise UsageError(f"expansions must be at least 1, got {expansions}")
    if not c >= 0:
        raise UsageError(f"the UCB1 exploration constant c must be 0 or more, got {c}")
    start = time.monotonic()
    session = make_session(None)
    try:
        root_files = session.read_files()
    finally:
        session.close()
    policy_name = getattr(policy, "name", type(policy).__name__)
    root = SearchNode(id=0, parent=None, messages=[], files=root_files)
    nodes = [root]
    calls = 0
    one_step = replace(limits, step_limit=1, format_error_limit=1)
    context = ContextPolicy(limits.context_tokens, count_tokens)
    stopped = "budget"

    def expand_once(node: SearchNode, time_left: float) -> SearchNode:
        nonlocal calls
        window = None
        if node.messages:
            try:
                window = context.fit(node.messages)
            except ContextOverflow:  # nothing fits: the state ends without a model call
                return SearchNode(id=len(nodes), parent=node, messages=node.messages, files=node.files,
                                  status="context_overflow", depth=node.depth)
        wrapper = _NodePolicy(policy, window.messages if window is not None else None)
        session = make_session(node.files)
        try:
            one = run_agent(problem, session, wrapper, replace(one_step, time_limit_s=time_left), plan=plan,
                            count_tokens=count_tokens)
            files = session.read_files()
        finally:
            session.close()
            calls += wrapper.calls
        first_reply = next((i for i, m in enumerate(one.messages) if m["role"] == "assistant"), len(one.messages))
        messages = (node.messages or one.messages[:first_reply]) + one.messages[first_reply:]
        step = one.steps[0] if one.steps else None
        if step is None:  # the run ended before its model call (a crash, or no time left)
            return SearchNode(id=len(nodes), parent=node, messages=node.messages, files=node.files,
                              status=one.exit_status if one.exit_status != "step_limit" else "crash",
                              depth=node.depth, error=one.error)
        if window is not None:
            step.state["context"] = window.record()
        in_a_row = node.errors_in_a_row + 1 if step.action.get("kind") == "format_error" else 0
        status = None
        if one.exit_status in ("submitted", "time_limit", "context_overflow", "crash"):
            status = one.exit_status
        elif in_a_row >= limits.format_error_limit:
            status = "format_errors"
        elif node.depth + 1 >= limits.step_limit:
            status = "step_limit"
        return SearchNode(id=len(nodes), parent=node, messages=messages, files=files, step=step, status=status,
                          depth=node.depth + 1, errors_in_a_row=in_a_row, submission=one.submission,
                          error=one.error, context_policy=one.context_policy, protocol=one.protocol)

    while calls < budget_calls and stopped == "budget":
        node = select(root, c, max_children=expansions if widening else None)
        if node is None:
            stopped = "exhausted"
            break
        for _ in range(1 if widening else expansions):
            time_left = limits.time_limit_s - (time.monotonic() - start)
            if time_left <= 0:
                stopped = "time_limit"
                break
            child = expand_once(node, time_left)
            nodes.append(child)
            node.children.append(child)
            if child.step is not None:
                trajectory = _path_trajectory(problem, policy_name, plan, child)
                patch = tree_patch(_texts(root_files), _texts(child.files))
                child.value = node_value(visible_evidence(trajectory, patch=patch, test_command=test_command))
            child.exhausted = child.status is not None
            backpropagate(child, child.value)
            if on_node is not None:
                on_node(child)
            if calls >= budget_calls:
                break

    candidates = [node for node in nodes[1:] if node.step is not None]
    if not candidates:  # nothing was expanded (time ran out at once): the root, not submitted
        trajectory, files = _path_trajectory(problem, policy_name, plan, root), root_files
    else:
        paths = [_path_trajectory(problem, policy_name, plan, node) for node in candidates]
        patches = [tree_patch(_texts(root_files), _texts(node.files)) for node in candidates]
        chosen = best_of_n(paths, patches=patches, test_command=test_command)
        trajectory, files = paths[chosen], candidates[chosen].files
    return SearchResult(
        trajectory=trajectory, files=files, submitted=trajectory.exit_status == "submitted", calls=calls,
        budget_calls=budget_calls, nodes=len(nodes), depth=max(n.depth for n in nodes),
        terminal=sum(n.status is not None for n in nodes), stopped=stopped, seconds=time.monotonic() - start)
