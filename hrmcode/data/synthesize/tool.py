"""``tool``: state -> action -> observation steps in SWE-agent's ``xml`` function-call format
(``<function=bash>``, ``<function=str_replace_editor>``, ``<function=submit>``), the format of
the SWE-smith trajectories.

- ``tool/from-trajectory``: one example per assistant turn of a recorded trajectory (a task whose
  ``metadata.messages`` holds the conversation). Input: the PR description and the last
  ``HISTORY`` action/observation pairs (observations cut to ``OBSERVATION_CHARS``); target: the
  assistant turn verbatim (thought and call); context: the observation that followed, the step
  number and the final reward (``metadata.resolved`` as 1.0/0.0, or null when not recorded).
- ``tool/canonical-from-task``: one example per task with a fix, whose target is the whole
  canonical sequence: one ``str_replace_editor`` call per hunk (``create`` for a new file), then
  ``bash`` running the task's test command, then ``submit``; the expected observation after each
  call is in ``context.observations`` (one example, not one per step: the sequence does not
  depend on what is observed, and 52K tasks should not become 200K near-identical prompts). Observations are not captured logs: an edit's is the
  editor's own confirmation with the hunk's new lines numbered as ``cat -n`` numbers them; the
  test run's is one ``<test> PASSED`` line per FAIL_TO_PASS and PASS_TO_PASS test (what the
  record states the fixed code does), or ``exit status 0`` for exercises (the reference passes;
  ``hrmcode validate`` checks this by execution where it can). Reward 1.0: the reference fix.
  Paths are under ``/testbed`` as in SWE-agent.
- ``tool/from-agent-run``: one multi-turn example per trajectory recorded by ``hrmcode eval swe``
  (tasks of source ``eval-swe``), resolved or not. ``messages`` is the conversation exactly as the
  acting model saw it (system prompt, task, then each reply and the observation that answered it:
  mini-swe-agent's protocol, one bash block or SEARCH/REPLACE edits per turn); train takes the
  loss on the replies only. ``reward`` is the episode's (1.0 resolved, 0.0 failed), so training can
  mask or weight failed runs (``--reward-weighting``); ``context`` records the acting model,
  ``resolved``, ``exit_status``, steps, attempt, planner and the run. ``input.text`` / ``target``
  are the first user message and the first non-empty reply (the single-turn view of the first step).
  ``provenance.model_written`` is true: a model wrote every reply. A trajectory without a
  non-empty reply (the model crashed before answering) yields nothing.
"""

from __future__ import annotations

import json
import re

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, header

HISTORY = 2
OBSERVATION_CHARS = 2000
TESTBED = "/testbed"
_CALL = re.compile(r"<function=([\w.-]+)>(.*?)</function>", re.S)
_PARAM = re.compile(r"<parameter=([\w.-]+)>(.*?)</parameter>", re.S)
_PR = re.compile(r"<pr_description>\s*(.*?)\s*</pr_description>", re.S)


def render_call(tool: str, params: list[tuple[str, str]]) -> str:
    inner = "".join(f"<parameter={name}>{value}</parameter>\n" for name, value in params)
    return f"<function={tool}>\n{inner}</function>"


def _cut(text: str, limit: int = OBSERVATION_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"


def _state(ctx_header: str, problem: str, history: list[tuple[str, str]], step: int) -> str:
    parts = [ctx_header, problem.rstrip(), "\n"]
    shown = history[-HISTORY:]
    if shown:
        parts.append(f"\nsteps so far: {len(history)} (last {len(shown)} shown)\n")
        for action, observation in shown:
            parts.append(f"\nACTION:\n{action}\nOBSERVATION:\n{_cut(observation)}\n")
    parts.append(f"\nnext: step {step}\n")
    return "".join(parts)


def parse_messages(raw) -> list[dict]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, list):
        return []
    return [m for m in raw if isinstance(m, dict) and isinstance(m.get("content"), str)]


def _reward(metadata: dict) -> float | None:
    resolved = metadata.get("resolved")
    if isinstance(resolved, bool):
        return 1.0 if resolved else 0.0
    return None


def trajectory_examples(ctx: TaskContext) -> list[Draft]:
    messages = parse_messages(ctx.metadata.get("messages"))
    if not messages:
        return []
    problem = ctx.prompt
    for message in messages:
        if message.get("role") == "user":
            found = _PR.search(message["content"])
            if found:
                problem = found.group(1)
            break
    reward = _reward(ctx.metadata)
    head = header(ctx.task, "tool")
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant" and _CALL.search(m["content"])]
    drafts: list[Draft] = []
    history: list[tuple[str, str]] = []
    for step, index in enumerate(turns, 1):
        content = messages[index]["content"]
        call = _CALL.search(content)
        observation = ""
        if index + 1 < len(messages) and messages[index + 1].get("role") in ("user", "tool"):
            observation = messages[index + 1]["content"]
        context = {
            "step": step, "steps": len(turns), "tool": call.group(1),
            "params": dict(_PARAM.findall(call.group(2))), "observation": _cut(observation, 4000),
            "reward": reward, "final": step == len(turns),
        }
        drafts.append(Draft("tool", "tool/from-trajectory", _state(head, problem, history, step), content,
                            ctx.language, context))
        history.append((call.group(0), observation.removeprefix("OBSERVATION:").lstrip("\n")))
    return drafts


def _numbered(start: int, text: str) -> str:
    return "".join(f"{n:6d}\t{line}\n" for n, line in enumerate(text.splitlines(), start))


def canonical_actions(ctx: TaskContext) -> list[tuple[str, str]]:
    """(action, observation) pairs of the canonical sequence, or [] without a fix."""
    steps: list[tuple[str, str]] = []
    for diff in ctx.fix:
        if diff.new_path is None:
            continue
        path = f"{TESTBED}/{diff.new_path}"
        if diff.old_path is None:
            content = ctx.after.get(diff.path) or "".join(h.new_text() for h in diff.hunks)
            steps.append((render_call("str_replace_editor", [("command", "create"), ("path", path), ("file_text", content)]),
                          f"File created successfully at: {path}"))
            continue
        for hunk in diff.hunks:
            old, new = hunk.old_text(), hunk.new_text()
            action = render_call("str_replace_editor", [("command", "str_replace"), ("path", path),
                                                        ("old_str", old), ("new_str", new)])
            observation = (f"The file {path} has been edited. Here's the result of running `cat -n` on a snippet of "
                           f"{path}:\n{_numbered(max(hunk.new_start, 1), new)}"
                           "Review the changes and make sure they are as expected. Edit the file again if necessary.")
            steps.append((action, observation))
    if not steps:
        return []
    command = ctx.test_command()
    if command:
        tests = list(ctx.tests.get("fail_to_pass", [])) + list(ctx.tests.get("pass_to_pass", []))
        observation = "\n".join(f"{t} PASSED" for t in tests) if tests else "exit status 0"
        steps.append((render_call("bash", [("command", f"cd {TESTBED} && {command}")]), observation))
    steps.append((render_call("submit", []), ""))
    return steps


def canonical_examples(ctx: TaskContext) -> list[Draft]:
    """One example per task: the state before any action -> the whole canonical action sequence.
    The expected observation after each action is in ``context.observations``."""
    steps = canonical_actions(ctx)
    if not steps:
        return []
    context = {"steps": len(steps), "tools": [_CALL.match(a).group(1) for a, _ in steps],
               "observations": [o for _, o in steps], "reward": 1.0}
    target = "\n".join(action for action, _ in steps) + "\n"
    return [Draft("tool", "tool/canonical-from-task", _state(header(ctx.task, "tool"), ctx.prompt, [], 1), target,
                  ctx.language, context)]


AGENT_RUN_SOURCE = "eval-swe"  # hrmcode.data.sources.eval_swe's tasks
_AGENT_CONTEXT_KEYS = ("model", "resolved", "exit_status", "instance_id", "attempt", "planner", "format_errors",
                       "protocol", "context_policy", "eval_run", "record_id")


def agent_run_examples(ctx: TaskContext) -> list[Draft]:
    """The ``tool/from-agent-run`` example of one recorded ``eval swe`` trajectory, or [] without a reply."""
    messages = [{"role": m["role"], "content": m["content"]} for m in ctx.metadata.get("messages") or []]
    replies = [m["content"] for m in messages if m["role"] == "assistant" and m["content"].strip()]
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not replies or not users:
        return []
    reward = float(ctx.metadata["reward"])
    context = {key: ctx.metadata.get(key) for key in _AGENT_CONTEXT_KEYS}
    context.update({"reward": reward, "steps": len(ctx.metadata.get("steps") or []), "turns": len(replies)})
    return [Draft("tool", "tool/from-agent-run", users[0], replies[0], ctx.language, context,
                  messages=messages, reward=reward, model_written=True)]


def tool_examples(ctx: TaskContext) -> list[Draft]:
    if ctx.task.get("source") == AGENT_RUN_SOURCE:
        return agent_run_examples(ctx)
    if "messages" in ctx.metadata:
        return trajectory_examples(ctx)
    return canonical_examples(ctx)
