"""A scripted OpenAI-compatible agent server: plays multi-step agent trajectories for ``eval swe``.

Usage::

    from tests.agent.fake_server import FakeAgentServer, correct_script, wrong_script

    scripts = {task.instance_id: correct_script(task) for task in good} | {t.instance_id: wrong_script(t) for t in bad}
    with FakeAgentServer(scripts) as server:
        hrmcode eval swe --tasks T --model openai:{server.url} --model-name {server.model_name}

What it serves (stdlib ``http.server`` in a daemon thread on ``127.0.0.1:0``, loopback only):
``POST /v1/chat/completions`` and ``GET /v1/models``. Every POST body is kept in ``requests``, every
GET path in ``gets``.

How it answers a chat request:

- The task is the script whose key (an instance id) occurs in the request's ``user`` field (hrmcode's
  OpenAI backend sends the task id there; the prompt does not name the task), else the script whose
  key (any string, e.g. a test name) occurs in the first user message; the longest matching key wins. A request that
  matches no script is answered with the submit sentinel (and counted in ``unmatched``).
- Deterministic mode (the default): the reply is step ``k`` of the script, ``k`` = the number of
  assistant messages already in the request, so the server holds no per-run state and a resumed or
  parallel run gets the same answers. Past the end of a script it submits.
- Stochastic mode (``stochastic=Stochastic(p_step, seed)``, for search benchmarks): the reply is
  the next step not yet taken (``k`` = how many of the request's assistant messages were the
  script's steps, in order) with probability ``p_step``, else that step's wrong alternative (a
  wrong-line edit for an edit step, an unhelpful command otherwise). A wrong edit spoils the edit
  that follows it (its search text no longer matches), as a real wrong edit would. Draws are seeded
  by ``(seed, task, the request's seed field, the assistant turns so far, how many times this exact
  history was asked before)``: reproducible for the same sequence of requests, and a state expanded
  twice gets two independent draws.
- ``delay_s`` makes every chat reply wait that long (a slow model, so a kill can land mid-run).
- ``usage`` is reported: prompt tokens ~ characters/4 of the messages, completion ~ characters/4
  of the reply.

Scripts (lists of ``ScriptStep``) are built from a ``RepoTask`` by ``correct_script`` (search the
code with grep, read the file with sed, run the failing tests, edit with a ``python3`` heredoc
replace or ``sed -i``, run the tests again, look at ``git diff``, submit: resolves the task) and
``wrong_script`` (the same, but the edit changes the wrong line: never resolves it), or from plain
commands by ``command_script`` (the hostile corpus). Not guaranteed: a ``correct_script`` for a
task whose gold patch adds or deletes files or whose hunks' text is not unique in the file falls
back to writing the fixed file whole (still correct, less realistic).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shlex
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hrmcode.agent.protocol import SUBMIT_SENTINEL
from hrmcode.agent.repo import RepoTask
from hrmcode.diffs import FileDiff, apply_file_diff, content_diffs

HEREDOC = "HRMCODE_FAKE_EDIT"


@dataclass(frozen=True)
class ScriptStep:
    """One agent reply, and what a wrong agent would have said instead (stochastic mode)."""

    reply: str
    wrong: str | None = None


@dataclass(frozen=True)
class Stochastic:
    p_step: float = 0.7  # probability that a step is the script's (else its wrong alternative)
    seed: int = 0


def bash_reply(thought: str, command: str) -> str:
    """A reply in mini-swe-agent's protocol: a THOUGHT and exactly one fenced bash block."""
    return f"THOUGHT: {thought}\n\n```bash\n{command}\n```"


SUBMIT = ScriptStep(bash_reply("The tests pass now; I submit my change.", SUBMIT_SENTINEL),
                    bash_reply("Let me check the state of the work tree first.", "git status --short"))


# -- script builders ----------------------------------------------------------------------------------

def _search_term(task: RepoTask, diff: FileDiff) -> str:
    """What an agent would grep for: the function or class the first hunk is in (the hunk header's
    section, else the nearest ``def``/``class`` above the hunk), else its first changed line."""
    hunk = diff.hunks[0]
    match = re.search(r"\b(def|class)\s+(\w+)", hunk.section or "")
    if match:
        return f"{match.group(1)} {match.group(2)}"
    lines = task.files.get(diff.old_path or "", "").splitlines()
    first_change = hunk.old_start - 1 + next(i for i, (tag, _) in enumerate(hunk.lines) if tag != " ")
    for text in reversed(lines[: first_change + 1]):
        match = re.match(r"\s*(?:async\s+)?(def|class)\s+(\w+)", text)
        if match:
            return f"{match.group(1)} {match.group(2)}"
    return next(text.strip() for tag, text in hunk.lines if tag != "+" and text.strip())


def _test_files(task: RepoTask) -> list[str]:
    files = sorted({test.split("::", 1)[0] for test in task.fail_to_pass})
    return files or ["."]


def _test_command(task: RepoTask) -> str:
    return "python -m pytest -q -x " + " ".join(shlex.quote(path) for path in _test_files(task)) + " 2>&1 | tail -n 30"


def _replace_command(path: str, pairs: Sequence[tuple[str, str]]) -> str:
    """A ``python3`` heredoc that replaces each ``old`` text once, failing loudly when it is not there."""
    lines = ["python3 - <<'" + HEREDOC + "'", "from pathlib import Path", f"path = Path({path!r})",
             "text = path.read_text()"]
    for old, new in pairs:
        lines += [f"old = {old!r}", f"new = {new!r}",
                  "assert text.count(old) == 1, 'the text to replace is not in the file exactly once'",
                  "text = text.replace(old, new, 1)"]
    lines += ["path.write_text(text)", f"print('edited', {path!r})", HEREDOC]
    return "\n".join(lines)


def _sed_command(path: str, line: int, new_text: str) -> str | None:
    """``sed -i 'Nc\\...'`` for a one-line change, when sed would keep the text as it is."""
    if "\\" in new_text or "\n" in new_text.rstrip("\n"):
        return None
    script = f"{line}c\\" + new_text.rstrip("\n")
    return f"sed -i {shlex.quote(script)} {shlex.quote(path)}"


def _write_command(path: str, text: str) -> str:
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    return f"mkdir -p {shlex.quote(parent)} && printf %s {encoded} | base64 -d > {shlex.quote(path)}"


def _edit_command(task: RepoTask, diff: FileDiff) -> str:
    """The command that makes ``diff``'s change: sed for a single one-line change, a replace of each
    hunk's text otherwise, the whole fixed file when the hunk text is not unique (or the file is new)."""
    path = diff.new_path or diff.old_path or ""
    before = task.files.get(diff.old_path or "", None) if diff.old_path else None
    if before is None or diff.old_path != diff.new_path:
        return _write_command(path, apply_file_diff(before or "", diff))
    changed = [(tag, text) for hunk in diff.hunks for tag, text in hunk.lines if tag != " "]
    if len(diff.hunks) == 1 and [tag for tag, _ in changed] == ["-", "+"]:
        hunk = diff.hunks[0]
        offset = next(i for i, (tag, _) in enumerate(hunk.lines) if tag == "-")
        # one line replaced in place (not a line moved elsewhere, as ctrl_shuffle's fix does)
        sed = _sed_command(path, hunk.old_start + offset, changed[1][1]) if hunk.lines[offset + 1][0] == "+" else None
        if sed is not None:
            return sed
    pairs = []
    for hunk in diff.hunks:
        old = "".join(text for tag, text in hunk.lines if tag != "+")
        new = "".join(text for tag, text in hunk.lines if tag != "-")
        if before.count(old) != 1:
            return _write_command(path, apply_file_diff(before, diff))
        pairs.append((old, new))
    return _replace_command(path, pairs)


def _wrong_edit_command(task: RepoTask, diff: FileDiff) -> str:
    """An edit of the wrong line: a trailing comment on a code line of the hunk's context that the
    fix does not touch (the bug stays), as a replace like the right one."""
    path = diff.old_path or diff.new_path or ""
    before = task.files.get(path, "")
    candidates = [text for hunk in diff.hunks for tag, text in hunk.lines
                  if tag == " " and text.strip() and not text.strip().startswith(("#", '"', "'", "@"))
                  and not text.rstrip().endswith(("\\", ",", "(", "[", "{")) and before.count(text) == 1]
    if not candidates:
        return f"printf '\\n# looked at this file\\n' >> {shlex.quote(path)}"
    line = candidates[0]
    return _replace_command(path, [(line, line.rstrip("\n") + "  # checked\n")])


def _steps(task: RepoTask, edits: list[str]) -> list[ScriptStep]:
    diffs = content_diffs(task.gold_patch)
    if not diffs:
        raise ValueError(f"{task.id}: the gold patch changes no file")
    first = diffs[0]
    path = first.old_path or first.new_path or ""
    hunk = first.hunks[0]
    start, end = max(1, hunk.old_start - 8), hunk.old_start + hunk.old_len + 8
    tests = _test_command(task)
    useless = bash_reply("Let me look around first.", "ls -la")
    steps = [
        ScriptStep(bash_reply("I start by finding the code the failing tests exercise.",
                              f"grep -rnF {shlex.quote(_search_term(task, first))} --include='*.py' . | head -n 20"),
                   bash_reply("Let me search for TODO markers.", "grep -rn TODO . | head -n 5")),
        ScriptStep(bash_reply(f"I read the code around line {hunk.old_start} of {path}.",
                              f"sed -n {start},{end}p {shlex.quote(path)}"),
                   useless),
        ScriptStep(bash_reply("I run the failing tests to see the error.", tests), useless),
    ]
    wrong_edits = [_wrong_edit_command(task, diff) for diff in diffs]
    for index, command in enumerate(edits):
        steps.append(ScriptStep(bash_reply("I see the bug; I edit the code to fix it.", command),
                                bash_reply("I think the problem is here; I edit this line.", wrong_edits[index])))
    steps += [
        ScriptStep(bash_reply("I run the tests again to check the fix.", tests), useless),
        ScriptStep(bash_reply("I review my change before submitting.", "git diff"), useless),
        SUBMIT,
    ]
    return steps


def fix_commands(task: RepoTask) -> list[str]:
    """The commands that make the gold patch's change, one per file it changes."""
    return [_edit_command(task, diff) for diff in content_diffs(task.gold_patch)]


def correct_script(task: RepoTask) -> list[ScriptStep]:
    """Search, read, run the tests, edit as the gold patch does (one command per file), test, diff, submit."""
    return _steps(task, fix_commands(task))


def wrong_script(task: RepoTask) -> list[ScriptStep]:
    """The same trajectory with a wrong-line edit in place of the fix: a non-empty patch that fixes nothing."""
    return _steps(task, [_wrong_edit_command(task, diff) for diff in content_diffs(task.gold_patch)])


def command_script(commands: Sequence[str], thought: str = "I run this command.",
                   submit: bool = True) -> list[ScriptStep]:
    """One bash reply per command, then (by default) the submit sentinel."""
    steps = [ScriptStep(bash_reply(thought, command)) for command in commands]
    return [*steps, SUBMIT] if submit else steps


# -- the server ---------------------------------------------------------------------------------------

def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeAgentServer:
    """The server (module docstring). ``url`` is the base URL to give ``--model openai:``."""

    def __init__(self, scripts: Mapping[str, Sequence[ScriptStep]], *, model_name: str = "fake-agent",
                 stochastic: Stochastic | None = None, delay_s: float = 0.0):
        self.scripts = {key: list(steps) for key, steps in scripts.items()}
        self.model_name = model_name
        self.stochastic = stochastic
        self.delay_s = delay_s  # seconds before each chat reply: a slow model, so a test can act mid-run
        self.requests: list[dict] = []  # every POST body
        self.gets: list[str] = []  # every GET path (eval swe never sends one: a GET came from elsewhere)
        self.unmatched = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeAgentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- answering --
    def task_of(self, messages: Sequence[dict], user: str = "") -> str | None:
        """The script for a request: the task named in OpenAI's ``user`` field (hrmcode's backend sends
        the task id there), else a key found in the first user message."""
        first = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
        for text in (user, first):
            keys = [key for key in self.scripts if key and key in text]
            if keys:
                return max(keys, key=len)
        return None

    def answer(self, body: dict) -> str:
        messages = body.get("messages") or []
        key = self.task_of(messages, str(body.get("user") or ""))
        if key is None:
            with self._lock:
                self.unmatched += 1
            return SUBMIT.reply
        script = self.scripts[key]
        said = [m.get("content") or "" for m in messages if m.get("role") == "assistant"]
        if self.stochastic is None:
            return script[len(said)].reply if len(said) < len(script) else SUBMIT.reply
        done = 0
        for text in said:
            if done < len(script) and text == script[done].reply:
                done += 1
        if done >= len(script):
            return SUBMIT.reply
        history = hashlib.sha256(json.dumps([key, body.get("seed"), said]).encode()).hexdigest()
        with self._lock:
            repeat = self._seen[history]
            self._seen[history] += 1
        draw = random.Random(f"{self.stochastic.seed}/{history}/{repeat}").random()
        step = script[done]
        if draw < self.stochastic.p_step or step.wrong is None:
            return step.reply
        return step.wrong

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with fake._lock:
                    fake.gets.append(self.path)
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": fake.model_name, "object": "model",
                                                                 "owned_by": "tests"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                try:
                    body = json.loads(self.rfile.read(length))
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "the body is not JSON"}})
                    return
                with fake._lock:
                    fake.requests.append(body)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                n = max(1, int(body.get("n") or 1))
                texts = [fake.answer(body) for _ in range(n)]
                prompt = sum(_tokens(m.get("content") or "") for m in body.get("messages") or [])
                completion = sum(_tokens(text) for text in texts)
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model", fake.model_name),
                    "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                                for i, text in enumerate(texts)],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
