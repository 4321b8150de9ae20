"""``coord``: agent assignments for a task, derived from its ``analyze`` profile and its fix.

Target format (documented in docs/examples.md)::

    AGENT domain:<domain>                  one domain agent (analyze's primary domain)
    AGENT lang:<language>                  one per language the fix's files are written in
    AGENT tool:<tool>                      one per tool analyze says the task needs
    S<k> EDIT <path> BY lang:<language> PRIORITY <k>          one per fixed file, plan order
    S<n> RUN <test command> BY tool:<runner> PRIORITY <n> AFTER S1,...   when there is a command
    S<m> REVIEW BY domain:<domain> PRIORITY <m> AFTER S<m-1>

Edits of different files are independent sub-tasks (no AFTER); the test run depends on every
edit, the domain review on the test run (or on the edits when there is no command). The runner
is the first of analyze's required tools that runs tests for the language, else the language
agent. Nothing is emitted without an analysis profile or without a fix. Rule:
``coord/from-analysis``.
"""

from __future__ import annotations

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, header

# Tools (as analyze names them) that run a language's tests, in preference order.
TEST_RUNNERS = {
    "python": ("pytest",),
    "go": ("go",),
    "rust": ("cargo",),
    "java": ("gradle", "junit", "javac"),
    "javascript": ("jest", "npm", "node"),
    "cpp": ("cmake", "g++", "make"),
}


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace(";", ",").split(",") if v]
    return [str(v) for v in value]


def coord_examples(ctx: TaskContext) -> list[Draft]:
    profile = ctx.profile
    if not profile or not ctx.fix:
        return []
    domain = profile.get("domain") or "general"
    languages = list(dict.fromkeys(ctx.file_language(p) for p in ctx.fix_paths()))
    tools = _as_list(profile.get("tools"))
    lines = [f"AGENT domain:{domain}"] + [f"AGENT lang:{lang}" for lang in languages] + [f"AGENT tool:{t}" for t in tools]
    edits = []
    for k, path in enumerate(ctx.fix_paths(), 1):
        lines.append(f"S{k} EDIT {path} BY lang:{ctx.file_language(path)} PRIORITY {k}")
        edits.append(f"S{k}")
    last = edits
    command = ctx.test_command()
    if command:
        runner = next((f"tool:{t}" for t in TEST_RUNNERS.get(ctx.language, ()) if t in tools), f"lang:{ctx.language}")
        n = len(edits) + 1
        lines.append(f"S{n} RUN {command} BY {runner} PRIORITY {n} AFTER {','.join(edits)}")
        last = [f"S{n}"]
    m = len(edits) + (2 if command else 1)
    lines.append(f"S{m} REVIEW BY domain:{domain} PRIORITY {m} AFTER {','.join(last)}")
    text = header(ctx.task, "coord") + ctx.prompt.rstrip() + "\n"
    context = {key: profile.get(key) for key in ("estimated_agents", "coordination", "hierarchical_depth", "domain")
               if profile.get(key) is not None}
    return [Draft("coord", "coord/from-analysis", text, "\n".join(lines) + "\n", ctx.language, context)]
