"""``tool``: state -> action -> observation steps in SWE-agent's ``xml`` function-call format
(``<function=bash>``, ``<function=str_replace_editor>``, ``<function=submit>``), the format of
the SWE-smith trajectories.

- ``tool/from-trajectory``: one example per assistant turn of a recorded trajectory (a task whose
  ``metadata.messages`` holds the conversation). Input: the PR description and the last
  ``HISTORY`` action/observation pairs (observations cut to ``OBSERVATION_CHARS``); target: the
  assistant turn verbatim (thought and call); context: the observation that followed, the step
  number and the final reward (``metadata.resolved`` as 1.0/0.0, or null when not recorded).
- ``tool/executed-reference``: a repository task (``repo-patch``) with its repository at hand
  (``synthesize --source repo:PATH`` writes ``repository.jsonl`` beside the tasks) and no
  trajectory: the reference fix carried out step by step in a sandbox session over the task's
  buggy tree, through the agent's own protocol (``hrmcode.data.turns``, what ``eval swe`` sends:
  its system prompt, its task prompt around the problem statement, one ```` ```bash ```` block or
  SEARCH/REPLACE blocks per reply, ``<returncode>``/``<output>`` observations cut as eval swe cuts
  them). The replies are scripted from the task (``reference_replies``): run the test command and
  see it fail; ``grep -n`` the functions the fix touches; ``nl -ba FILE | sed -n 'A,Bp'`` the
  window the fix lies in (the ``edit`` level's window); the reference fix as SEARCH/REPLACE
  blocks (the ``edit`` level's target); the test command again; the submit sentinel. Every
  observation is what the session printed (``normalise`` puts timings, hex addresses and the host's
  temporary paths into one spelling, so reruns give the same bytes). The example is kept only when
  the first test run failed and the fixed tree passes every FAIL_TO_PASS and PASS_TO_PASS test under
  hrmcode's strict verdict (``bugs.suites.run_tests``, a fresh run on the pristine tests, as
  ``eval swe`` grades): a fix that does not really pass gives no tool example, and the reason is
  counted. ``messages`` hold the conversation (loss on the replies), ``reward`` 1.0, provenance not
  model-written (hrmcode scripted the replies). Runs happen before the examples are written
  (``execute_reference_runs``: in parallel on sandbox worker slots, each appended to
  ``parts/tool-runs.jsonl`` as it finishes, so a rerun resumes). Python (pytest), Go, Rust and jest
  suites: the strict verdict reads hrmcode's pytest reporter or the framework's own per-test report.
- ``tool/canonical-from-task``: exercises, functions, and repository tasks whose repository is
  not at hand (SWE-smith's own records: nothing to run them in); never a task that had a reference
  run, kept or not. One example per task with a fix, whose target is the whole
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

import hashlib
import json
import re
import shlex
import threading
from collections import Counter
from pathlib import Path

from hrmcode.data.bugs import suites
from hrmcode.data.bugs.environments import environment_sandbox
from hrmcode.data.synthesize.context import TaskContext, build_context
from hrmcode.data.synthesize.draft import Draft, header
from hrmcode.data.synthesize.edit import fix_blocks, window_spans
from hrmcode.data.synthesize.plan import touched
from hrmcode.data.turns import PROTOCOL, SUBMIT_SENTINEL, edit_observation, observation_text, system_prompt, task_prompt
from hrmcode.edits import MalformedEdit, apply_edits, parse_edits
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.reporting import reporter
from hrmcode.sandbox import get_sandbox, run_many
from hrmcode.sandbox.base import ExecResult, Limits, Sandbox
from hrmcode.sandbox.reports.pytest_report import STRICT_RULES

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
    if ctx.run is not None:  # its repository was at hand: what the run printed, or nothing
        return executed_examples(ctx)
    return canonical_examples(ctx)


# -- executed reference runs --------------------------------------------------------------------
RUN_LOG = "tool-runs.jsonl"  # under the synthesis output's parts/: one record per executed task
RUN_RULES = "executed-reference/3"  # bump when the scripted steps, the normalisation or the verdict change
RUN_OBSERVATION_CHARS = 10_000  # eval swe's default --observation-chars (AgentLimits.observation_chars)
RUN_TIMEOUT_S = 120.0  # seconds per command of a run, and for the verdict's test run
RUN_MEMORY_MB = 4096

_NORMALISE = (
    (re.compile(r"\b(in|took) \d+(?:\.\d+)?s\b"), r"\1 0.00s"),  # pytest's "9 passed in 0.03s"
    (re.compile(r"\(\d+(?:\.\d+)?s\)"), "(0.00s)"),  # go test's "--- PASS: TestX (0.00s)"
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "0x0"),  # object addresses in reprs
    (re.compile(r"\.\.\.[0-9a-f]+>"), "...0>"),  # the tail of an address pytest's saferepr cut ("...7febbdafefe0>")
    (re.compile(r"/tmp/[A-Za-z0-9_.-]*\d[A-Za-z0-9_.-]*"), "/tmp/tmp"),  # per-run temporary names
)


def normalise(text: str, workdir: str = "/work") -> str:
    """One spelling for what varies between two runs of the same commands: durations, object
    addresses, temporary names, and the work dir when the backend's is a host path."""
    if workdir != "/work":
        text = text.replace(workdir, "/work")
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def _bash(thought: str, command: str) -> str:
    return f"THOUGHT: {thought}\n\n```bash\n{command}\n```"


def reference_replies(ctx: TaskContext) -> list[tuple[str, str, str]]:
    """The scripted replies of a task's reference run: (kind, reply text, command or edit text),
    kind ``bash`` | ``edit`` | ``submit``; [] when the task has no whole fixed files or no command."""
    command = ctx.tests.get("command")
    paths = [d.path for d in ctx.fix if d.path in ctx.after and ctx.before.get(d.path)]
    if not command or not paths or len(paths) != len(ctx.fix):
        return []
    before = {p: ctx.before[p] for p in paths}
    target = "".join(fix_blocks(d, ctx.before[d.path], ctx.after[d.path]) for d in ctx.fix)
    searches: dict[str, list[str]] = {p: [] for p in paths}
    for edit in parse_edits(target, "diff", paths):
        searches[edit.path].append(edit.before)
    replies = [("bash", _bash("First I run the test suite to see which tests fail and how.", command), command)]
    names = list(dict.fromkeys(name.rsplit(".", 1)[-1] for _, name in touched(ctx)))
    if names:
        quoted = " ".join(shlex.quote(p) for p in paths)
        pattern = shlex.quote("|".join(re.escape(n) for n in names))
        grep = f"grep -n -w -E {pattern} {quoted}"
        replies.append(("bash", _bash(f"The failures point at {', '.join(names)}; I find where they are defined and "
                                      "used.", grep), grep))
    for path in paths:
        spans = window_spans(before[path], searches[path])
        if spans is None:
            return []
        ranges = ";".join(f"{lo},{hi}p" for lo, hi in spans)
        view = f"nl -ba {shlex.quote(path)} | sed -n '{ranges}'"
        replies.append(("bash", _bash(f"I read the code around the suspect lines of {path}.", view), view))
    replies.append(("edit", f"THOUGHT: This is the bug; I fix it.\n\n{target}", target))
    replies.append(("bash", _bash("I run the test suite again to check the fix.", command), command))
    replies.append(("submit", _bash("The tests pass; I submit.", SUBMIT_SENTINEL), SUBMIT_SENTINEL))
    return replies


def run_key(task: dict, tree_digest: str) -> str:
    """What a recorded run depends on: the task, the repository and the rules of the run."""
    material = json.dumps([RUN_RULES, STRICT_RULES, RUN_TIMEOUT_S, tree_digest, task], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def execute_reference(task: dict, repository: dict[str, str], sandbox: Sandbox, worker: int = 0) -> dict:
    """Carry out the reference run of one repository task (module docstring) and judge it:
    ``{"task", "kept", "reason", "messages", "steps"}``; ``kept`` only when the first test run
    failed and the fixed tree passes the strict verdict."""
    ctx = build_context(task, {})
    record: dict = {"task": task["id"], "kept": False, "reason": "", "messages": [], "steps": []}
    replies = reference_replies(ctx)
    if not replies:
        record["reason"] = "no test command or no whole file to fix"
        return record
    tree = {**repository, **(task.get("files") or {})}
    messages = [{"role": "system", "content": system_prompt()},
                {"role": "user", "content": task_prompt(ctx.prompt)}]
    limits = Limits(timeout_s=RUN_TIMEOUT_S, memory_mb=RUN_MEMORY_MB)
    exits: list[int | None] = []
    with sandbox.session(tree, limits, worker=worker, env={"PYTHONHASHSEED": "0"}) as session:
        for kind, reply, action in replies:
            messages.append({"role": "assistant", "content": reply})
            if kind == "submit":
                break
            if kind == "edit":
                held = session.read_files()
                current = {p: held[p].decode("utf-8") for p in ctx.after if p in held}
                try:
                    fixed = apply_edits(current, parse_edits(action, "diff", list(current)))
                except MalformedEdit as exc:
                    record["reason"] = f"the reference fix does not apply in the session: {exc}"
                    return record
                changed = sorted(p for p in fixed if fixed[p] != current[p])
                session.write_files({p: fixed[p] for p in changed})
                observation, code = edit_observation(changed, ""), 0
            else:
                result = session.exec(action)
                observation = normalise(observation_text(result, RUN_OBSERVATION_CHARS), session.workdir)
                code = _exit(result)
            exits.append(code)
            record["steps"].append({"kind": kind, "exit_code": code})
            messages.append({"role": "user", "content": observation})
        final = session.read_files()
    record["messages"] = messages
    if not exits or exits[0] == 0:
        record["reason"] = "the test command passed before the fix"
        return record
    fixed_tree = {**tree, **{p: final[p].decode("utf-8") for p in ctx.after}}
    # the runner and report of the repository's language (``bugs.suites``), as its bug was validated
    run = suites.run_tests(sandbox, suites.suite_language(ctx.tests["command"], fixed_tree), fixed_tree,
                           ctx.tests["command"], limits, changed=sorted(ctx.after), worker=worker)
    expected = list(ctx.tests.get("fail_to_pass", [])) + list(ctx.tests.get("pass_to_pass", []))
    resolved, detail = run.verdict(expected) if expected else (False, "no FAIL_TO_PASS / PASS_TO_PASS tests")
    record["kept"], record["reason"] = resolved, "" if resolved else f"the fixed tree fails the verdict: {detail}"
    return record


def _exit(result: ExecResult) -> int | None:
    return None if result.timed_out or result.exit_code is None else result.exit_code


def execute_reference_runs(tasks_path: Path, repository_path: Path, log_path: Path, jobs: int = 1,
                           sandbox: Sandbox | None = None, limit: int | None = None,
                           workspace: Path | str | None = None) -> tuple[dict[str, dict], dict]:
    """The reference runs of every repository task of ``tasks_path`` without a trajectory, over the
    repository of ``repository_path``: ``({task id: record}, stats)``; a run not kept is returned
    as ``{"kept": False, "reason"}`` only (it gives no example, and no other tool example either).
    Runs go on ``jobs`` sandbox worker slots (``run_many``; with ``limit``, the first ``limit``
    tasks of the file); each is appended to ``log_path`` as it finishes under its ``run_key``, and
    a rerun only runs tasks without a record of the same key. A task that records
    its test environment runs with it mounted (``environments.environment_sandbox``, prepared again
    in ``workspace`` when this machine lacks it)."""
    repository = {r["path"]: r["text"] for r in read_jsonl(repository_path)}
    tree_digest = hashlib.sha256(json.dumps(repository, sort_keys=True).encode()).hexdigest()
    tasks = list(read_jsonl(tasks_path))[:limit]
    tasks = [t for t in tasks if isinstance(t, dict) and t.get("kind") == "repo-patch"
             and t.get("source") != AGENT_RUN_SOURCE and "messages" not in (t.get("metadata") or {})]
    records: dict[str, dict] = {}
    with AppendLog(log_path, key="task") as log:
        keys = {t["id"]: run_key(t, tree_digest) for t in tasks}
        todo = [t for t in tasks if (log.records.get(t["id"]) or {}).get("key") != keys[t["id"]]]
        if todo:
            box = sandbox or get_sandbox()
            with reporter().task("tool runs", total=len(todo)) as bar:
                lock = threading.Lock()

                def done(_index: int, record: dict) -> None:
                    with lock:  # run_many's threads finish together
                        log.append(record)
                        bar.advance()

                def job(task: dict):
                    recorded = (task.get("metadata") or {}).get("environment")
                    task_box = environment_sandbox(recorded, box, workspace)
                    return lambda worker: {**execute_reference(task, repository, task_box, worker),
                                           "key": keys[task["id"]]}

                run_many([job(t) for t in todo], jobs, on_done=done)
        records = {t["id"]: log.records[t["id"]] for t in tasks}
    reasons = Counter(r["reason"] for r in records.values() if not r["kept"])
    stats = {"tasks": len(tasks), "executed": len(todo), "kept": sum(r["kept"] for r in records.values()),
             "not_kept": dict(sorted(reasons.items()))}
    return {k: r if r["kept"] else {"kept": False, "reason": r["reason"]} for k, r in records.items()}, stats


def executed_examples(ctx: TaskContext) -> list[Draft]:
    """The ``tool/executed-reference`` example of a repository task's kept reference run, if any."""
    run = ctx.run
    if not run or not run.get("kept"):
        return []
    messages = [dict(m) for m in run["messages"]]
    users = [m["content"] for m in messages if m["role"] == "user"]
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    context = {"steps": len(replies), "exit_codes": [s["exit_code"] for s in run["steps"]], "reward": 1.0,
               "resolved": True, "protocol": PROTOCOL, "run_rules": RUN_RULES}
    return [Draft("tool", "tool/executed-reference", users[0], replies[0], ctx.language, context,
                  messages=messages, reward=1.0)]
