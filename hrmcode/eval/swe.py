"""``hrmcode eval swe``: models acting in repositories, graded as SWE-bench grades them.

One case is one attempt at one task (``<task id>@<attempt>``). Per attempt:

1. The task's repository at its buggy state is written into a fresh session and committed there
   once as a git repository, so ``git diff`` and ``git status`` work for the agent as in
   SWE-bench's ``/testbed``. The session (``--runtime``) is the sandbox's own (``Sandbox.session``
   of ``--backend``, the default) or a SWE-ReX deployment (``hrmcode.agent.swerex``:
   ``swerex:bwrap``, ``swerex:docker[:IMAGE]``, ``swerex:remote:URL``). Only the agent runs there:
   grading always runs in ``--backend``'s sandbox, whatever the agent's runtime, so a runtime that
   isolates less (SWE-ReX's deployments share a network) never weakens the verdict.
2. With ``--planner``, the planner is asked once for a plan in the ``plan`` level's format
   (``FILE``/``TOUCH``/``TEST``/``RUN`` lines, ``hrmcode.data.synthesize.plan``); its plan lines are
   given to the actor. Both are recorded; a planner whose context cannot hold the task gives no plan
   (``plan_error`` says why) and the actor acts without one.
3. The actor (``--model``; several are routed across tasks round-robin or by ``--model-weights``)
   runs through ``hrmcode.agent.loop.run_agent`` until it submits or a limit ends it; under
   ``--search mcts`` the attempt is one tree search (``agent.search.mcts``, ``--search-budget``
   model calls; plain UCB1 expansion, or progressive widening with ``--search-widening``), each
   state's session rebuilt as the base commit with that state's files over it.
4. The model patch is computed by hrmcode from the session's files against the base
   (``agent.grading.model_patch``: test-file changes are discarded), never taken from the agent's
   git; the session is closed; the patch is graded in a FRESH sandbox run on the pristine tests
   (``agent.grading.grade``). An empty patch is not graded (SWE-bench's ``empty_patch``). The
   episode reward is 1.0 when resolved, else 0.0, on the trajectory's last step.

Models (``--model``): ``oracle`` is an agent that applies the task's gold fix through the same
tool protocol (one bash command writing each fixed file, then the submit sentinel; it decides its
turn from the messages alone); ``stub`` submits at once; ``openai:URL`` and ``checkpoint:PATH`` get
the chat messages (a checkpoint renders them through its own ``config.prompt``). ``samples:``
files hold single answers, which a multi-turn agent cannot use: refused.

Run directory (``runner.run_benchmark``'s, plus): ``trajectories.jsonl`` (each attempt's
``Trajectory.to_record()`` with its ids, model, grade and reward, appended before its result, so a
kill never leaves a result without its trajectory), ``predictions.jsonl`` (SWE-bench: one per task,
the picked attempt), ``report.json`` (SWE-bench's run report, ``schema_version`` 2, over the
picked attempts), ``trajectories.html`` (a viewer: each attempt's steps, final diff and graded tests). The pick is attempt 1 under ``--search none`` and the best-of-N choice
(``agent.search.best_of_n``, from what the agent could see: its own test runs, never the hidden
tests) under ``--search best-of-n`` and ``mcts``; the summary reports the best-of-N pick's resolved rate either
way, next to pass@1 and pass@N (the unbiased estimator of ``eval/metrics.py``).

Guarantees: a verdict is the grader's, from per-test reports in a sandbox the agent never touched;
nothing the agent writes to test files or test configuration reaches it. A model that cannot
answer at all (server down after its retries) stops the run instead of being scored, so a rerun
retries that attempt; a prompt too long for the model ends that attempt as ``context_overflow``
with its reason (``agent_error``). Not guaranteed: the same
trajectory twice from a model sampled at temperature > 0 (each attempt gets seed + attempt - 1).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import random
import shlex
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hrmcode.agent.grading import Grade, grade, model_patch
from hrmcode.agent.loop import AgentLimits, ContextExceeded, PolicyReply, run_agent
from hrmcode.agent.protocol import SUBMIT_SENTINEL
from hrmcode.agent.repo import RepoTask
from hrmcode.agent.search import best_of_n, mcts
from hrmcode.agent.swerex import TOKEN_ENV, is_swerex_spec, open_swerex_session, parse_spec
from hrmcode.agent.trajectory import Trajectory
from hrmcode.artifacts import ArtifactWriter
from hrmcode.data.bugs.environments import environment_sandbox
from hrmcode.data.synthesize.context import build_context
from hrmcode.data.synthesize.draft import header
from hrmcode.data.synthesize.plan import render_plan
from hrmcode.diffs import apply_file_diff, content_diffs
from hrmcode.errors import HrmcodeError, UsageError
from hrmcode.eval.backends import Backend, PromptTooLong, Reply, Request, segments_field
from hrmcode.eval.html_report import TRAJECTORIES, render_trajectories
from hrmcode.eval.metrics import mean_pass_at_k, percent
from hrmcode.jsonl import AppendLog
from hrmcode.sandbox.base import Limits, Sandbox, Session

SEARCHES = ("none", "best-of-n", "mcts")
SANDBOX_RUNTIME = "sandbox"  # --runtime's default: the agent's session is a session of --backend's sandbox
PLAN_KEYWORDS = ("FILE", "TOUCH", "TEST", "RUN")
PLANNER_SYSTEM = (
    "You are the planner of a software engineering agent. Read the task and write a plan for the agent that "
    "will fix it, one item per line, in this order and nothing else:\n"
    "FILE <path>                 each file the fix changes\n"
    "TOUCH <path>::<symbol>      each function or class the fix changes\n"
    "TEST <test id>              each test that must go from failing to passing\n"
    "RUN <command>               the command that runs the tests"
)
GIT_BASE = ("git init -q && git add -A && git -c user.name=hrmcode -c user.email=hrmcode@localhost "
            "commit -qm base --no-verify")
SWE_BENCH_REPORT_VERSION = 2


@dataclass
class SweCase:
    """One attempt at one task: the runner's case (``id`` keys ``results.jsonl``)."""

    id: str
    task: RepoTask
    attempt: int
    model: str  # the --model spec this task is routed to


def case_id(task_id: str, attempt: int) -> str:
    return f"{task_id}@{attempt}"


# -- routing ---------------------------------------------------------------------------------------

def parse_weights(text: str | None, models: Sequence[str]) -> list[float] | None:
    """``--model-weights 2,1``: one non-negative weight per ``--model``, not all zero."""
    if text is None:
        return None
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--model-weights {text!r} is not a comma-separated list of numbers", "e.g. --model-weights 2,1") from None
    if len(weights) != len(models):
        raise UsageError(f"--model-weights gives {len(weights)} weight(s) for {len(models)} --model(s)",
                         "give one weight per --model, in the same order")
    if any(not w >= 0 for w in weights) or not sum(weights) > 0:
        raise UsageError(f"--model-weights {text!r} needs non-negative weights, at least one above 0", "e.g. --model-weights 2,1")
    return weights


def route(task_ids: Sequence[str], models: Sequence[str], weights: Sequence[float] | None, seed: int) -> dict[str, str]:
    """Which model acts on each task: round-robin over ``task_ids`` in sorted order, or, with
    ``weights``, a draw per task seeded by ``seed`` and the task id alone (so a task keeps its model
    whatever else is selected)."""
    ordered = sorted(task_ids)
    if weights is None:
        return {task_id: models[index % len(models)] for index, task_id in enumerate(ordered)}
    routed = {}
    for task_id in ordered:
        draw = int.from_bytes(hashlib.sha256(f"{seed}/{task_id}".encode()).digest()[:8], "big")
        routed[task_id] = random.Random(draw).choices(list(models), weights=list(weights))[0]
    return routed


def check_runtime(runtime: str) -> None:
    """``--runtime``: ``sandbox`` or a SWE-ReX deployment that isolates (``UsageError`` otherwise;
    ``swerex:local-unsafe`` runs the agent's commands on this host unisolated, for tests only), checked
    before the run starts: a remote deployment's token must be set."""
    if runtime == SANDBOX_RUNTIME:
        return
    hint = "use sandbox (--backend's, the default), swerex:bwrap, swerex:docker[:IMAGE] or swerex:remote:URL"
    try:
        kind = parse_spec(runtime).kind if is_swerex_spec(runtime) else None
    except UsageError:
        kind = None
    if kind is None:
        raise UsageError(f"unknown --runtime {runtime!r}", hint)
    if kind == "local-unsafe":
        raise UsageError(f"--runtime {runtime} would run the agent's commands unisolated on this host", hint)
    if kind == "remote" and not os.environ.get(TOKEN_ENV):
        raise UsageError(f"--runtime {runtime} needs the swerex-remote server's token", f"set ${TOKEN_ENV}")


# -- the gold agent and the planner's answers ------------------------------------------------------

def fixed_files(task: RepoTask) -> dict[str, str | None]:
    """The files the gold patch changes, as they are after it (None: deleted)."""
    result: dict[str, str | None] = {}
    for diff in content_diffs(task.gold_patch):
        before = task.files.get(diff.old_path, "") if diff.old_path else ""
        after = apply_file_diff(before, diff)
        if diff.old_path and diff.old_path != diff.new_path:
            result[diff.old_path] = None
        if diff.new_path:
            result[diff.new_path] = after
    return result


def gold_command(task: RepoTask) -> str:
    """One shell command that leaves the work dir as the gold patch would: each fixed file written
    from base64 (so no character of it can end a heredoc or a fenced block), deleted files removed."""
    parts = []
    for path, text in sorted(fixed_files(task).items()):
        quoted = shlex.quote(path)
        if text is None:
            parts.append(f"rm -f -- {quoted}")
            continue
        encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            parts.append(f"mkdir -p -- {shlex.quote(parent)}")
        parts.append(f"printf %s {encoded} | base64 -d > {quoted}")
    return " && ".join(parts) or "true"


def bash_reply(thought: str, command: str) -> str:
    return f"THOUGHT: {thought}\n\n```bash\n{command}\n```"


class AgentAnswers:
    """The ``AnswerKey`` of an actor's requests: ``oracle`` applies the gold fix then submits,
    ``stub`` submits at once. Both decide from the request alone (its task and how many assistant
    turns its messages hold), as a model would."""

    def reference_answer(self, request: Request) -> Reply:
        turns = sum(1 for message in request.messages if message.get("role") == "assistant")
        if turns == 0:
            return Reply(text=bash_reply("I write the fixed files.", gold_command(request.task)), raw=True)
        return Reply(text=bash_reply("The fix is in place; I submit.", SUBMIT_SENTINEL), raw=True)

    def stub_answer(self, request: Request) -> Reply:
        return Reply(text=bash_reply("I submit without changing anything.", SUBMIT_SENTINEL), raw=True)


def task_record(task: RepoTask) -> dict:
    """The task as ``hrmcode.data.synthesize`` reads one (for the plan level's renderer and header)."""
    return {"id": task.id, "language": task.language, "kind": "repo-patch", "title": task.instance_id,
            "prompt": task.problem, "files": task.files, "solution": {"patch": task.gold_patch},
            "tests": {"fail_to_pass": task.fail_to_pass, "pass_to_pass": task.pass_to_pass,
                      "command": task.test_command}}


class PlanAnswers:
    """The ``AnswerKey`` of a planner's request: ``oracle`` gives the plan level's own target for
    the gold fix (``render_plan``), ``stub`` no plan."""

    def reference_answer(self, request: Request) -> Reply:
        return Reply(text=render_plan(build_context(task_record(request.task), {})), raw=True)

    def stub_answer(self, request: Request) -> Reply:
        return Reply(text="", raw=True)


def plan_lines(text: str) -> str | None:
    """The plan-format lines of a planner's reply (fences and prose dropped), or None if it has none."""
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line.split(" ", 1)[0] in PLAN_KEYWORDS and " " in line]
    return "\n".join(kept) + "\n" if kept else None


def planner_messages(task: RepoTask) -> list[dict[str, str]]:
    return [{"role": "system", "content": PLANNER_SYSTEM},
            {"role": "user", "content": header(task_record(task), "plan") + task.problem.rstrip() + "\n"}]


# -- the policy --------------------------------------------------------------------------------------

class BackendPolicy:
    """An eval ``Backend`` as an agent ``Policy``: each turn is one ``Request`` with the chat so far.

    A backend that cannot answer at all (server down after its retries, a broken checkpoint) is
    kept in ``failure`` as well as raised: the loop ends the attempt as a crash, and the benchmark
    then raises it, so the run stops and a rerun retries the attempt instead of scoring it. A prompt
    too long for the model (``PromptTooLong``: a checkpoint's length check, a server's HTTP 400 that
    says the context is exceeded) is the model's limit: it is raised as the loop's
    ``ContextExceeded``, which ends that attempt as ``context_overflow`` with the reason recorded."""

    def __init__(self, backend: Backend, name: str, task: RepoTask, answers: Any):
        self.backend = backend
        self.name = name
        self.task = task
        self.answers = answers
        self.failure: HrmcodeError | None = None
        self.replies: list[Reply] = []  # every turn's reply (their segments)

    def act(self, messages: list[dict[str, str]]) -> PolicyReply:
        request = Request(bench="swe", task=self.task, messages=list(messages), answer_key=self.answers)  # type: ignore[arg-type]
        try:
            replies = self.backend.complete(request)
        except PromptTooLong as exc:
            raise ContextExceeded(str(exc)) from exc
        except HrmcodeError as exc:
            self.failure = exc
            raise
        if not replies:
            return PolicyReply(text="")
        reply = replies[0]
        self.replies.append(reply)
        return PolicyReply(text=reply.text, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)


# -- the benchmark -----------------------------------------------------------------------------------

@dataclass
class SweSettings:
    """What one ``eval swe`` run does per attempt (resolved by ``eval.api.eval_swe``)."""

    limits: AgentLimits
    models: list[str] = dataclasses.field(default_factory=list)  # the --model specs, in order
    attempts: int = 1
    search: str = "none"
    planner: str | None = None
    grade_timeout_s: float = 300.0
    search_budget: int = 0  # mcts: model calls per attempt (0: the step limit)
    search_widening: bool = False  # mcts: one child per selection, progressive widening
    runtime: str = SANDBOX_RUNTIME  # where the agent's commands run (grading: always the sandbox)
    session_limits: Limits = dataclasses.field(default_factory=Limits)


class SweBench:
    """The ``Bench`` of ``runner.run_benchmark`` for repository tasks, one case per attempt."""

    name = "swe"
    run_files = ("trajectories.jsonl", "predictions.jsonl", "report.json", TRAJECTORIES)

    def __init__(self, backends: dict[tuple[str, int], Backend], planner: Backend | None, sandbox: Sandbox,
                 settings: SweSettings):
        self.backends = backends  # (model spec, attempt) -> backend (each attempt its own seed)
        self.planner = planner
        self.sandbox = sandbox
        self.settings = settings
        self.trajectories: AppendLog | None = None  # the driver's: attempts return their trajectory
        self.picks: dict[str, int] = {}

    def __getstate__(self) -> dict:
        """What a Ray worker gets (``--executor ray``): everything but the driver's open log."""
        return {**self.__dict__, "trajectories": None}

    # -- runner hooks --
    def open_run(self, writer: ArtifactWriter) -> None:
        self.trajectories = AppendLog(writer.path("trajectories.jsonl"), key="id")

    def evaluate(self, cases: Sequence[SweCase], worker: int) -> list[dict]:
        return [self.attempt(case, worker) for case in cases]

    def before_append(self, records: list[dict]) -> None:
        """In the driver, before the runner appends ``records``: each attempt's trajectory goes to disk
        first (a kill in between only makes the rerun do that attempt again; the log keeps its last
        trajectory per id)."""
        assert self.trajectories is not None
        self.trajectories.extend(record.pop("trajectory") for record in records)

    def finish_run(self, writer: ArtifactWriter, records: Sequence[dict], selected: Sequence[dict]) -> None:
        """trajectories.jsonl (those with a result, by id), then the pick per task, predictions.jsonl
        and report.json over the selected tasks."""
        assert self.trajectories is not None
        self.trajectories.close()
        finished = {record["id"] for record in records}
        kept = sorted((t for t in self.trajectories.records.values() if t["id"] in finished), key=lambda t: t["id"])
        writer.write_jsonl("trajectories.jsonl", kept)
        writer.write_text(TRAJECTORIES, render_trajectories(kept, records))
        by_id = {t["id"]: t for t in kept}
        self.picks = self.pick(selected, by_id)
        picked = [r for r in selected if r["attempt"] == self.picks.get(r["task_id"])]
        picked.sort(key=lambda r: r["task_id"])
        writer.write_jsonl("predictions.jsonl", [
            {"instance_id": r["instance_id"], "model_name_or_path": r["model"], "model_patch": r["model_patch"]}
            for r in picked])
        writer.write_json("report.json", swe_bench_report(picked))

    def pick(self, records: Sequence[dict], trajectories: dict[str, dict]) -> dict[str, int]:
        """The attempt kept per task: attempt 1 under ``--search none`` (or when a task has only one),
        else ``best_of_n`` over the attempts' trajectories (agent-visible evidence only)."""
        by_task: dict[str, list[dict]] = {}
        for record in records:
            by_task.setdefault(record["task_id"], []).append(record)
        picks = {}
        for task_id, attempts in by_task.items():
            attempts.sort(key=lambda r: r["attempt"])
            if self.settings.search == "none" or len(attempts) == 1:
                picks[task_id] = attempts[0]["attempt"]
                continue
            candidates = [Trajectory.from_record(trajectories[r["id"]]) for r in attempts]
            chosen = best_of_n(candidates, patches=[r["model_patch"] for r in attempts],
                               test_command=attempts[0]["test_command"])
            picks[task_id] = attempts[chosen]["attempt"]
        return picks

    # -- one attempt --
    def plan(self, task: RepoTask) -> tuple[str | None, str | None, str | None]:
        """(the plan given to the actor, the planner's raw reply, why there is none), all None with no
        planner. A planner whose context cannot hold the task gives no plan, and the reason: the actor
        still acts (a planner that cannot answer at all stops the run, as an actor does)."""
        if self.planner is None:
            return None, None, None
        request = Request(bench="swe", task=task, messages=planner_messages(task), answer_key=PlanAnswers())  # type: ignore[arg-type]
        try:
            replies = self.planner.complete(request)
        except PromptTooLong as exc:
            return None, None, str(exc)
        raw = replies[0].text if replies else ""
        return plan_lines(raw), raw, None

    def limits_for(self, backend: Backend) -> AgentLimits:
        """The agent's limits for ``backend``: a checkpoint without ``--context-tokens`` gets its own
        context less the reply's tokens as the budget, so a conversation that outgrows the model is
        fitted by the context policy (or ends as ``context_overflow``) instead of failing the call."""
        limits, loaded = self.settings.limits, getattr(backend, "loaded", None)
        if loaded is None or limits.context_tokens:
            return limits
        budget = loaded.model.config.max_seq_len - backend.generation.max_tokens  # type: ignore[attr-defined]
        return dataclasses.replace(limits, context_tokens=max(1, budget))

    @staticmethod
    def token_counter(backend: Backend) -> Any:
        """A checkpoint's own tokenizer for the context policy (other backends: its estimate)."""
        loaded = getattr(backend, "loaded", None)
        return (lambda text: len(loaded.tokenizer.encode(text))) if loaded is not None else None

    def task_sandbox(self, task: RepoTask) -> Sandbox:
        """The sandbox with the task's recorded test environment (its repository's dependencies, read-only)."""
        return environment_sandbox(task.environment, self.sandbox)

    def open_session(self, task: RepoTask, files: dict[str, bytes] | None, worker: int) -> Session:
        """A session holding the task's repository committed as git's base, then, for a state of the
        tree search, that state's ``files`` written over it (so ``git diff`` shows the whole change)."""
        limits = dataclasses.replace(self.settings.session_limits, timeout_s=self.settings.limits.command_timeout_s)
        if self.settings.runtime == SANDBOX_RUNTIME:
            session = self.task_sandbox(task).session(files=dict(task.files), limits=limits, worker=worker)
        else:
            session = open_swerex_session(self.settings.runtime, dict(task.files), limits, worker=worker)
        try:
            session.exec(f"command -v git >/dev/null 2>&1 && {{ {GIT_BASE}; }} >/dev/null 2>&1; true")
            if files is not None:
                changed = {path: data for path, data in files.items() if task.files.get(path, "").encode() != data}
                removed = sorted(path for path in task.files if path not in files)
                if changed:
                    session.write_files(changed)
                if removed:
                    session.exec("rm -f -- " + " ".join(shlex.quote(path) for path in removed))
        except BaseException:
            session.close()
            raise
        return session

    def attempt(self, case: SweCase, worker: int) -> dict:
        task, settings = case.task, self.settings
        backend = self.backends[(case.model, case.attempt)]
        started = time.monotonic()  # the agent's seconds include the planner's
        plan, plan_raw, plan_error = self.plan(task)
        policy = BackendPolicy(backend, case.model, task, AgentAnswers())
        search: dict | None = None
        limits = self.limits_for(backend)
        if settings.search == "mcts":
            result = mcts(task.problem, lambda files: self.open_session(task, files, worker), policy, limits,
                          budget_calls=settings.search_budget or settings.limits.step_limit, plan=plan,
                          test_command=task.test_command, count_tokens=self.token_counter(backend),
                          widening=settings.search_widening)
            trajectory, final = result.trajectory, result.files
            search = {**result.stats(), "widening": settings.search_widening}
            trajectory.planner = settings.planner
        else:
            with self.open_session(task, None, worker) as session:
                trajectory = run_agent(task.problem, session, policy, limits, plan=plan,
                                       planner=settings.planner, count_tokens=self.token_counter(backend))
                final = session.read_files()
        agent_seconds = time.monotonic() - started
        if policy.failure is not None:
            raise policy.failure
        patch, discarded = model_patch(task.files, final, task.language)
        graded: Grade | None = None
        grade_started = time.monotonic()
        if patch.strip():
            graded = grade(task, patch, self.task_sandbox(task), timeout_s=settings.grade_timeout_s, worker=worker)
        grade_seconds = time.monotonic() - grade_started
        resolved = bool(graded is not None and graded.resolved)
        reward = 1.0 if resolved else 0.0
        if trajectory.steps:
            trajectory.steps[-1].reward = reward
            trajectory.steps[-1].done = True
        grade_record = graded.to_dict() if graded is not None else None
        trajectory_record = {"id": case.id, "task_id": task.id, "instance_id": task.instance_id,
                             "attempt": case.attempt, "model": case.model, **trajectory.to_record(),
                             "plan_reply": plan_raw, "plan_error": plan_error, "grade": grade_record, "reward": reward}
        return {
            "trajectory": trajectory_record,  # taken out by before_append, in the driver
            "id": case.id, "task_id": task.id, "instance_id": task.instance_id, "attempt": case.attempt,
            "model": case.model, "planner": settings.planner, "plan": plan, "plan_error": plan_error, "search": search,
            "test_command": task.test_command,
            "resolved": resolved, "passed": resolved, "reward": reward,
            "exit_status": trajectory.exit_status, "agent_error": trajectory.error, "steps": len(trajectory.steps),
            "format_errors": trajectory.format_errors,
            "prompt_tokens": trajectory.prompt_tokens, "completion_tokens": trajectory.completion_tokens,
            **segments_field(policy.replies),
            "seconds": {"agent": round(agent_seconds, 3), "grade": round(grade_seconds, 3)},
            "model_patch": patch, "empty_patch": not patch.strip(), "discarded": sorted(set(discarded)),
            "f2p_fixed": graded.f2p_fixed if graded is not None else 0.0,
            "p2p_broken": graded.p2p_broken if graded is not None else 0,
            "error": graded.problem if graded is not None else None,
            "grade": grade_record,
        }

    # -- metrics --
    def summarize(self, records: Sequence[dict], cases: Sequence[SweCase]) -> dict:
        return summarize_records(records, self.settings, self.picks)


def swe_bench_report(picked: Sequence[dict]) -> dict:
    """SWE-bench's run report (``make_run_report``, schema_version 2) over one prediction per task:
    an empty patch is not evaluated; a graded one whose grading had no verdict is an error."""
    ids = lambda pred: sorted(r["instance_id"] for r in picked if pred(r))  # noqa: E731
    submitted = ids(lambda r: True)
    empty = ids(lambda r: r["empty_patch"])
    error = ids(lambda r: not r["empty_patch"] and r["error"] is not None)
    completed = ids(lambda r: not r["empty_patch"] and r["error"] is None)
    resolved = ids(lambda r: r["resolved"])
    unresolved = sorted(set(completed) - set(resolved))
    return {
        "total_instances": len(submitted), "submitted_instances": len(submitted),
        "completed_instances": len(completed), "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved), "empty_patch_instances": len(empty), "error_instances": len(error),
        "completed_ids": completed, "incomplete_ids": [], "empty_patch_ids": empty, "submitted_ids": submitted,
        "resolved_ids": resolved, "unresolved_ids": unresolved, "error_ids": error,
        "schema_version": SWE_BENCH_REPORT_VERSION,
    }


def summarize_records(records: Sequence[dict], settings: SweSettings, picks: dict[str, int]) -> dict:
    """Resolved rate (= the score, mean pass@1 in percent), pass@1 and pass@N, the best-of-N pick's
    resolved rate, and the means and counts of the trajectories."""
    by_task: dict[str, list[dict]] = {}
    for record in records:
        by_task.setdefault(record["task_id"], []).append(record)
    counts = [(len(attempts), sum(r["resolved"] for r in attempts)) for attempts in by_task.values()]
    ks = sorted({1, settings.attempts})
    passes = mean_pass_at_k(counts, ks)
    n = len(records)
    picked = [r for r in records if picks.get(r["task_id"]) == r["attempt"]]
    by_model: dict[str, dict] = {}
    for record in records:
        entry = by_model.setdefault(record["model"], {"attempts": 0, "resolved": 0})
        entry["attempts"] += 1
        entry["resolved"] += int(record["resolved"])
    for entry in by_model.values():
        entry["resolved_rate"] = percent(entry["resolved"], entry["attempts"])
    return {
        "bench": "swe", "model": {"model": ",".join(settings.models)}, "models": list(settings.models),
        "planner": settings.planner,
        "search": settings.search, "search_widening": settings.search_widening, "runtime": settings.runtime,
        "cases": len(by_task), "attempts": settings.attempts, "trajectories": n,
        "resolved": sum(r["resolved"] for r in records),
        "resolved_rate": percent(sum(r["resolved"] for r in records), n),
        "score": round(100.0 * passes.get("pass@1", 0.0), 2),
        **{key: round(value, 6) for key, value in passes.items()},
        "best_of_n": {"picked": len(picked), "resolved": sum(r["resolved"] for r in picked),
                      "resolved_rate": percent(sum(r["resolved"] for r in picked), len(picked))},
        "mean_steps": round(sum(r["steps"] for r in records) / n, 2) if n else 0.0,
        "tokens": {"prompt": sum(r["prompt_tokens"] for r in records),
                   "completion": sum(r["completion_tokens"] for r in records)},
        "seconds": {"agent": round(sum(r["seconds"]["agent"] for r in records), 2),
                    "grade": round(sum(r["seconds"]["grade"] for r in records), 2)},
        "exit_status": dict(sorted(Counter(r["exit_status"] for r in records).items())),
        "f2p_fixed_mean": round(sum(r["f2p_fixed"] for r in records) / n, 4) if n else 0.0,
        "p2p_broken_total": sum(r["p2p_broken"] for r in records),
        "empty_patches": sum(r["empty_patch"] for r in records),
        "grading_errors": sum(r["error"] is not None for r in records),
        "by_model": by_model,
    }

