"""The agent loop: a policy acts in a sandbox session until it submits or a limit ends the run.

``run_agent(problem, session, policy, limits)`` sends the system prompt and the task
(``hrmcode.agent.protocol``), then repeats: check the limits, fit the conversation to the context
(``hrmcode.agent.context``), ask the policy for a reply, parse its one action, carry it out in the
session, and send back the observation. It returns the ``Trajectory``; it never raises for the
model's or the command's faults, which end the run with one of ``EXIT_STATUSES``:

- ``submitted``: the reply's command was ``SUBMIT_SENTINEL``, or a command printed the submit marker
  as its first line and exited 0 (mini-swe-agent's rule);
- ``step_limit``: ``step_limit`` model calls were made (format errors count, as in mini-swe-agent);
- ``time_limit``: ``time_limit_s`` had passed when the next model call was due, or when the reply's
  command was due (it is then not run). Every command's timeout is capped by the time left, so a run
  overruns the limit by at most one model call;
- ``format_errors``: ``format_error_limit`` replies in a row held no valid action (mini-swe-agent's
  ``max_consecutive_format_errors``);
- ``context_overflow``: even the system prompt, the task and the latest action do not fit
  ``context_tokens``, or the policy raised ``ContextExceeded`` (the model itself refused the prompt
  as longer than its context: a served model's HTTP 400, a checkpoint's own length check);
  ``Trajectory.error`` then records its reason as ``policy: ContextExceeded: ...``;
- ``crash``: the policy, the session or the loop raised; ``Trajectory.error`` records the exception
  and where (``policy:``, ``session:``, ``loop:``), and the run stops.

A command runs as ``session.exec(command, timeout_s=...)`` in a fresh subshell at the repository
root. A SEARCH/REPLACE reply is applied to the session's text files (``session.read_files`` /
``write_files``) with ``hrmcode.edits.apply_edits_partial``; the observation names the files that
changed and reflects the blocks that did not apply.

``Step.state["files_modified"]``: the paths a step created, changed or deleted, found by comparing
content digests of ``session.read_files()`` before and after the step (the after-digests of one step
are the before-digests of the next, so each command step costs one ``read_files``). Exact (it sees
edits that keep size and mtime) and the same view of the tree the model patch is taken from; files
``read_files`` skips (over 1 MiB, symlinks, ``.git/``) are not tracked.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from hrmcode.agent.context import ContextOverflow, ContextPolicy
from hrmcode.agent.protocol import (
    PROTOCOL, Action, FormatError, edit_observation, observation_text, parse_action, submission, system_prompt,
    task_prompt,
)
from hrmcode.agent.trajectory import Step, Trajectory
from hrmcode.edits import MalformedEdit, apply_edits_partial, reflection, resolve_path
from hrmcode.errors import HrmcodeError, UsageError
from hrmcode.options import option
from hrmcode.sandbox.base import Session

_TIME_UP = "<exception>The attempt's time limit ran out during the model call; the command was not run.</exception>"

EXIT_STATUSES = ("submitted", "step_limit", "time_limit", "format_errors", "context_overflow", "crash")


@dataclass
class AgentLimits:
    step_limit: int = option(30, "Most model calls per attempt (default 30).", min=1)
    time_limit_s: float = option(900.0, "Seconds per attempt; checked before each model call (default 900).",
                                 flags=("--time-limit",), min=0.0)
    command_timeout_s: float = option(60.0, "Seconds per agent command before it is killed (default 60).",
                                      flags=("--command-timeout",), min=0.0)
    observation_chars: int = option(10_000, "Most characters of a command's output shown to the model; longer "
                                    "output keeps its head and tail (default 10000).", min=1)
    format_error_limit: int = option(3, "End the attempt after this many replies in a row without a valid "
                                     "action (default 3).", min=1)
    context_tokens: int = option(0, "The model's prompt budget in tokens: 0 = unlimited; else the context "
                                 "policy elides old observations and drops old steps (docs/agent.md).", min=0)

    def check(self) -> None:
        """``UsageError`` for limits no run can keep."""
        for name in ("step_limit", "observation_chars", "format_error_limit"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("time_limit_s", "command_timeout_s"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name} must be above 0 seconds, got {getattr(self, name)}")
        if self.context_tokens < 0:
            raise UsageError(f"context_tokens must be 0 (unlimited) or more, got {self.context_tokens}")


@dataclass
class PolicyReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ContextExceeded(Exception):
    """What a ``Policy.act`` raises when its model refused the messages as longer than its context:
    the model's limit, not a failure of the policy, so the run ends as ``context_overflow`` (not
    ``crash``) with the exception's message recorded as the reason. The loop's own context policy
    cannot always prevent it: its token counts may be estimates, and a server's limit unknown."""


class Policy(Protocol):
    """A model answering the conversation so far with one reply. ``act`` raises ``ContextExceeded``
    when the model cannot take that many tokens; anything else it raises ends the run as a crash."""

    name: str

    def act(self, messages: list[dict[str, str]]) -> PolicyReply: ...


class _CallbackFailed(Exception):
    """``on_step`` raised: the caller's fault, re-raised to the caller as it was."""


class _Crash(Exception):
    """The policy or the session failed; ``where`` says which."""

    def __init__(self, where: str, exc: BaseException):
        super().__init__(f"{where}: {type(exc).__name__}: {exc}")


def _digests(session: Session) -> dict[str, str]:
    try:
        return {path: hashlib.blake2b(data, digest_size=16).hexdigest() for path, data in session.read_files().items()}
    except Exception as exc:
        raise _Crash("session", exc) from exc


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def _action_record(action: Action | None, raw: str) -> dict:
    if action is None:
        return {"kind": "format_error", "thought": "", "raw": raw}
    record: dict = {"kind": action.kind, "thought": action.thought, "raw": raw}
    if action.kind == "edit":
        record["edits"] = [{"path": e.path, "before": e.before, "after": e.after} for e in action.edits]
    else:
        record["command"] = action.command
    return record


def _apply_edits(session: Session, action: Action) -> tuple[str, int]:
    """Apply a SEARCH/REPLACE reply to the session's text files: (observation, exit code)."""
    try:
        raw = session.read_files()
    except Exception as exc:
        raise _Crash("session", exc) from exc
    files: dict[str, str] = {}
    binary: set[str] = set()
    for path, data in raw.items():
        try:
            files[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            binary.add(path)
    edits, problems = [], []
    for edit in action.edits:
        try:
            path = resolve_path(edit.path, files)
        except MalformedEdit as exc:
            problems.append(str(exc))
            continue
        if path in binary:
            problems.append(f"{path} is not a UTF-8 text file; SEARCH/REPLACE blocks edit text files only")
            continue
        edits.append(replace(edit, path=path))
    result, failures = apply_edits_partial(files, edits)
    changed = []
    for path in sorted(path for path in result if files.get(path) != result[path]):
        try:
            session.write_files({path: result[path]})
        except HrmcodeError as exc:  # the session refused the path (e.g. a symlink the agent planted on the way)
            problems.append(f"{path} could not be written: {exc}")
        except Exception as exc:
            raise _Crash("session", exc) from exc
        else:
            changed.append(path)
    failed = problems + failures
    return edit_observation(changed, reflection(failed, len(action.edits)) if failed else ""), int(bool(failed))


def run_agent(problem: str, session: Session, policy: Policy, limits: AgentLimits, *,
              plan: str | None = None, count_tokens: Callable[[str], int] | None = None,
              on_step: Callable[[Step], None] | None = None, planner: str | None = None) -> Trajectory:
    """Run ``policy`` on ``problem`` in ``session`` until it submits or a limit ends the run (see the
    module docstring). ``plan``: a planner's plan, shown in the task under its own heading, and
    ``planner`` its name; both are recorded. ``count_tokens``: the context policy's token counter
    (default: a chars/4 estimate). ``on_step`` is called with each step as it is recorded; what it raises propagates.
    ``UsageError`` for impossible ``limits``; nothing else is raised for the model's or a command's faults.
    """
    limits.check()
    start = time.monotonic()
    context = ContextPolicy(limits.context_tokens, count_tokens)
    trajectory = Trajectory(problem=problem, policy=getattr(policy, "name", type(policy).__name__),
                            messages=[{"role": "system", "content": system_prompt()},
                                      {"role": "user", "content": task_prompt(problem, plan)}],
                            steps=[], exit_status="", plan=plan, planner=planner, context_policy=context.name,
                            protocol=PROTOCOL)
    try:
        trajectory.exit_status = _loop(trajectory, session, policy, limits, context, start, on_step)
    except _CallbackFailed as exc:
        raise exc.__cause__ from None
    except _Crash as exc:
        trajectory.exit_status, trajectory.error = "crash", str(exc)
    except Exception as exc:  # a bug in the loop itself still ends the run with its error recorded
        trajectory.exit_status, trajectory.error = "crash", f"loop: {type(exc).__name__}: {exc}"
    if trajectory.steps:
        trajectory.steps[-1].done = True
    trajectory.seconds = time.monotonic() - start
    return trajectory


def _loop(trajectory: Trajectory, session: Session, policy: Policy, limits: AgentLimits, context: ContextPolicy,
          start: float, on_step: Callable[[Step], None] | None) -> str:
    messages = trajectory.messages
    digests: dict[str, str] | None = None  # the tree after the last step that may have changed it
    errors_in_a_row = 0
    while True:
        if len(trajectory.steps) >= limits.step_limit:
            return "step_limit"
        if time.monotonic() - start >= limits.time_limit_s:
            return "time_limit"
        try:
            window = context.fit(messages)
        except ContextOverflow:
            return "context_overflow"
        step_start = time.monotonic()
        try:
            reply = policy.act([dict(message) for message in window.messages])  # the policy cannot alter the record
        except ContextExceeded as exc:
            trajectory.error = f"policy: ContextExceeded: {exc}"
            return "context_overflow"
        except Exception as exc:
            raise _Crash("policy", exc) from exc
        trajectory.prompt_tokens += reply.prompt_tokens
        trajectory.completion_tokens += reply.completion_tokens
        messages.append({"role": "assistant", "content": reply.text})
        state: dict = {"files_modified": [], "context": window.record()}
        exit_code: int | None = None
        status = ""
        try:
            action: Action | None = parse_action(reply.text)
        except FormatError as exc:
            action, observation = None, str(exc)
            trajectory.format_errors += 1
            errors_in_a_row += 1
            if errors_in_a_row >= limits.format_error_limit:
                status = "format_errors"
        else:
            errors_in_a_row = 0
            left = limits.time_limit_s - (time.monotonic() - start)
            if action.kind == "submit":
                observation, status = "", "submitted"
            elif action.kind == "bash" and left <= 0:
                observation, status = _TIME_UP, "time_limit"  # the model call used up the time left
            else:
                if digests is None:
                    digests = _digests(session)
                if action.kind == "edit":
                    observation, exit_code = _apply_edits(session, action)
                else:
                    try:
                        result = session.exec(action.command, timeout_s=min(limits.command_timeout_s, left))
                    except Exception as exc:
                        raise _Crash("session", exc) from exc
                    exit_code = result.exit_code
                    observation = observation_text(result, limits.observation_chars)
                    submitted = submission(result.stdout, result.exit_code)
                    if submitted is not None:
                        trajectory.submission, status = submitted, "submitted"
                after = _digests(session)
                state["files_modified"] = _changed(digests, after)
                digests = after
        messages.append({"role": "user", "content": observation})
        step = Step(index=len(trajectory.steps) + 1, action=_action_record(action, reply.text),
                    observation=observation, exit_code=exit_code, seconds=time.monotonic() - step_start,
                    prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, state=state)
        trajectory.steps.append(step)
        if on_step is not None:
            try:
                on_step(step)
            except Exception as exc:
                raise _CallbackFailed() from exc
        if status:
            return status
