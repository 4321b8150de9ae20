"""The LM a bug-synthesis run asks (``--llm openai:URL --llm-model NAME``): one chat request at a time
to an OpenAI-compatible ``/chat/completions`` server, through ``httpx``; and LM-written bugs
(SWE-smith's ``lm_modify``: ``lm_modify_bugs`` asks the LM to rewrite one function with a subtle bug).

An LM bug is kept as a candidate only when the reply holds one fenced code block that parses as a
function of the same name and signature, the file still parses with it in place, the file changed,
and no comment line was added (SWE-smith asks for none: a comment would point at the bug). It is
then validated exactly like a procedural bug (same test runs, same verdict rules); the caller marks
its instance ``model_written``. Not guaranteed: that the LM's bug is subtle.

Requests go through ``hrmcode.openai_client.post_chat``, the transport ``eval --model openai:`` uses too:
temperature 0, a fixed ``seed``, retries with backoff, the API key from ``$OPENAI_API_KEY`` when set.
Guaranteed: a server that cannot answer after the retries raises ``SourceUnavailable`` with the URL; a
prompt longer than the model's context raises ``PromptTooLong`` (that request is skipped, the run goes
on); an answer without text is returned as "" (the caller decides). Not guaranteed: the same text
across runs from a remote server (even with ``seed``).
"""

from __future__ import annotations

import ast
import io
import os
import random
import re
import textwrap
import tokenize
from collections import Counter

from hrmcode.errors import SourceUnavailable, UsageError
from hrmcode.openai_client import PromptTooLong, post_chat

PREFIX = "openai:"


class ChatClient:
    """``chat(messages) -> text`` against ``openai:BASE_URL`` serving ``model``."""

    def __init__(self, spec: str, model: str | None, *, timeout_s: float = 120.0, retries: int = 3,
                 max_tokens: int = 1024, seed: int = 0):
        import httpx

        if not spec.startswith(PREFIX) or not spec[len(PREFIX):].startswith(("http://", "https://")):
            raise UsageError(f"--llm {spec}: expected openai:BASE_URL (http:// or https://)",
                             "e.g. --llm openai:http://127.0.0.1:8000/v1 --llm-model NAME")
        if not model:
            raise UsageError("--llm needs --llm-model", "the model name the server serves, e.g. --llm-model gpt-4o")
        self.base_url = spec[len(PREFIX):].rstrip("/")
        self.model = model
        self.retries = retries
        self.max_tokens = max_tokens
        self.seed = seed
        key = os.environ.get("OPENAI_API_KEY")
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(30.0, timeout_s)),
                                   headers={"Authorization": f"Bearer {key}"} if key else {})

    def describe(self) -> dict:
        return {"llm": f"{PREFIX}{self.base_url}", "llm_model": self.model}

    def chat(self, messages: list[dict[str, str]]) -> str:
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens,
                "seed": self.seed, "n": 1}
        answer = post_chat(self.client, f"{self.base_url}/chat/completions", body, retries=self.retries,
                           rejected_hint="check --llm-model and the server's options",
                           down_hint="check that the server is up, or drop --llm (templates need no LM)")
        try:
            choices = answer.get("choices") or [{}]
            return str((choices[0].get("message") or {}).get("content") or "")
        except (AttributeError, IndexError):
            raise SourceUnavailable(f"{self.base_url} answered with a body that is not a chat completion",
                                    "check that --llm names an OpenAI-compatible server") from None

    def close(self) -> None:
        self.client.close()


# -- LM-written bugs (configs/bug_gen/lm_modify.yml) -------------------------------------------------

LM_MODIFY_SYSTEM = """You are a software developer doing chaos monkey testing.
Your job is to rewrite a function such that it introduces a logical bug that will break existing unit test(s)
in a codebase.

To this end, some kinds of bugs you might introduce include:
- Modify logic in conditionals or loops: adjust conditions or loop boundaries (e.g., replace <= with <).
- Introduce off-by-one errors in indices or loop boundaries.
- Change variable assignments to alter computation state.

Tips about the bug-introducing task:
- It should not cause compilation errors or syntax errors.
- It should be subtle and challenging to detect.
- It should not modify the function signature or the documentation significantly.
- Please DO NOT INCLUDE COMMENTS IN THE CODE indicating the bug location or the bug itself.

Your answer should be formatted as follows:

Explanation:
<explanation>

Bugged Code:
```
<bugged_code>
```"""

LM_MODIFY_INSTANCE = """<INPUT>
{source}
</INPUT>

<IMPORTANT>As a reminder, Please DO NOT INCLUDE ANY COMMENTS IN THE CODE OR POINT OUT THE BUG IN ANY WAY.</IMPORTANT>

OUTPUT:"""
FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.S)
MIN_BODY_LINES = 3  # shorter functions leave an LM no room for a subtle bug


def functions_to_modify(files: dict[str, str], paths: list[str], n: int, seed: int) -> list[tuple[str, ast.AST]]:
    """``n`` functions (of ``paths``, at least ``MIN_BODY_LINES`` long), drawn with ``seed``."""
    found = []
    for path in sorted(paths):
        try:
            tree = ast.parse(files[path])
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.end_lineno - node.lineno >= MIN_BODY_LINES):
                found.append((path, node))
    found.sort(key=lambda item: (item[0], item[1].lineno))
    random.Random(seed).shuffle(found)
    return found[:n]


def _comments(source: str) -> set[str]:
    """Every comment of ``source``, trailing ones included."""
    try:
        return {t.string.strip() for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type == tokenize.COMMENT}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return {"<unreadable>"}


def apply_rewrite(text: str, node: ast.AST, reply: str) -> str | None:
    """``text`` with ``node`` (a function) replaced by the reply's code, or None when the reply is
    not a same-named, same-signature function without new comments, or changes nothing."""
    blocks = FENCE.findall(reply.split("Bugged Code:", 1)[-1])
    if len(blocks) != 1:
        return None
    lines = text.splitlines(keepends=True)
    start = node.lineno - 1  # the def line: decorators stay as they are (the LM is shown the def onwards)
    original = "".join(lines[start:node.end_lineno])
    indent = re.match(r"\s*", lines[start]).group(0)
    code = textwrap.indent(textwrap.dedent(blocks[0]).strip("\n") + "\n", indent)
    try:
        rewritten = ast.parse(textwrap.dedent(code)).body
    except SyntaxError:
        return None
    if (len(rewritten) != 1 or not isinstance(rewritten[0], type(node)) or rewritten[0].name != node.name
            or ast.dump(rewritten[0].args) != ast.dump(node.args) or _comments(code) - _comments(original)):
        return None
    bugged = "".join(lines[:start]) + code + "".join(lines[node.end_lineno:])
    try:
        ast.parse(bugged)
    except SyntaxError:
        return None
    return bugged if bugged != text else None


def lm_modify_bugs(files: dict[str, str], paths: list[str], client, n: int, seed: int,
                   refused: Counter | None = None) -> list[tuple[str, str, str]]:
    """``(path, function, bugged file)`` for each of ``n`` functions the LM rewrote acceptably; the
    others are counted in ``refused`` by reason (``prompt_too_long``: the function does not fit the
    model; ``no_usable_rewrite``: no code block, not Python, or the function unchanged)."""
    bugs = []
    refused = Counter() if refused is None else refused
    for path, node in functions_to_modify(files, paths, n, seed):
        source = ast.get_source_segment(files[path], node, padded=True) or ""
        try:
            reply = client.chat([{"role": "system", "content": LM_MODIFY_SYSTEM},
                                 {"role": "user", "content": LM_MODIFY_INSTANCE.format(source=source)}])
        except PromptTooLong:
            refused["prompt_too_long"] += 1
            continue  # this function does not fit the model: the others may
        bugged = apply_rewrite(files[path], node, reply)
        if bugged is None:
            refused["no_usable_rewrite"] += 1
        else:
            bugs.append((path, node.name, bugged))
    return bugs
