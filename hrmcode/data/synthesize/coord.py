"""``coord``: agent assignments for a task, derived from what the task itself holds: the files its
fix changes and the symbols in them, the tests that must pass, the test command and the program
that runs it, the languages, and the environment it runs in when it records one.

Target format (documented in docs/examples.md)::

    AGENT domain:<domain>                  one domain agent (analyze's primary domain)
    AGENT lang:<language>                  one per language the fix's files are written in
    AGENT tool:<runner>                    the program the test command runs (pytest, go, cargo, npm, ...)
    AGENT env:<environment>                the task's test environment or image, only when it records one
    S<k> EDIT <path> BY lang:<language> PRIORITY <k>          one per fixed file, plan order
    S<k> TOUCH <path>::<symbol>                               the functions/classes of that file the fix changes
    S<n> EXPECT <test>                      the tests that must pass (at most ``MAX_EXPECT``, then ``+N more``)
    S<n> RUN <test command> BY tool:<runner> PRIORITY <n> AFTER S1,...   when there is a command
    S<m> REVIEW BY domain:<domain> PRIORITY <m> AFTER S<m-1>

Edits of different files are independent sub-tasks (no AFTER); the test run depends on every
edit, the domain review on the test run (or on the edits when there is no command). The runner
is read from the command (``runner_of``), never from analyze's list of tools a task of its kind
may need: a task without a recorded environment or image gets no ``env`` agent, and no agent
is ever told to use docker. Nothing is emitted without an analysis profile or without a fix.
Rule: ``coord/from-task``.

Tasks that nothing distinguishes (the same target: same files, symbols, tests, command and
environment; e.g. two bugs in one function caught by the same tests) would teach one answer to
different prompts; ``pipeline`` keeps the first such task's coord example in input order and
counts the others in its stats (``coord_same_target``), see ``coord_key``.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import PurePosixPath

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, header
from hrmcode.data.synthesize.plan import tests_to_pass, touched

RULE = "coord/from-task"
MAX_EXPECT = 8  # tests named one per line; the rest are counted

# launchers whose next argument names the program that really runs (``python -m pytest``, ``npx jest``)
_LAUNCHERS = {"python": "-m", "python3": "-m", "npx": "", "uv": "run", "poetry": "run", "pipenv": "run"}


def runner_of(command: str) -> str | None:
    """The program a test command runs: ``python3 -m pytest -q`` -> ``pytest``, ``go test ./...``
    -> ``go``, ``cd sub && cargo test`` -> ``cargo``, ``npx jest`` -> ``jest``; leading
    ``VAR=value`` assignments are skipped. None when the command does not split as shell words."""
    try:
        words = shlex.split(command.split("&&")[-1])
    except ValueError:
        return None
    words = [w for w in words if not ("=" in w and not w.startswith("-") and w.split("=", 1)[0].isidentifier())]
    if not words:
        return None
    program = PurePosixPath(words[0]).name
    flag = _LAUNCHERS.get(program)
    if flag is not None:
        rest = words[1:]
        if flag:
            rest = rest[rest.index(flag) + 1:] if flag in rest else []
        rest = [w for w in rest if not w.startswith("-")]
        if rest:
            return PurePosixPath(rest[0]).name
    return program


def environment_of(task: dict, from_repository: bool = False) -> str | None:
    """The environment the task records: a prepared test environment with packages (its id, as
    ``repo:PATH`` tasks record it: ``hrmcode.data.bugs.environments``), else its ``image_name`` (the
    image SWE-smith's tasks run in) when it has no environment record and does not run
    ``from_repository`` (a ``repo:PATH`` task's ``image_name`` is only the name SWE-smith would give
    an image hrmcode never builds); None when it records neither (the plain sandbox)."""
    metadata = task.get("metadata") or {}
    record = metadata.get("environment")
    if isinstance(record, dict):
        if record.get("requirements") and isinstance(record.get("id"), str):
            return f"{record.get('kind') or 'python'}:{record['id']}"
        return None  # recorded, and nothing beyond the plain sandbox
    if from_repository:
        return None
    image = metadata.get("image_name")
    return image.strip() if isinstance(image, str) and image.strip() else None


def render_coord(ctx: TaskContext, domain: str) -> str:
    paths = ctx.fix_paths()
    languages = list(dict.fromkeys(ctx.file_language(p) for p in paths))
    command = ctx.test_command()
    runner = runner_of(command) if command else None
    environment = environment_of(ctx.task, ctx.from_repository)
    lines = [f"AGENT domain:{domain}"] + [f"AGENT lang:{lang}" for lang in languages]
    if runner:
        lines.append(f"AGENT tool:{runner}")
    if environment:
        lines.append(f"AGENT env:{environment}")
    symbols = touched(ctx)
    edits = []
    for k, path in enumerate(paths, 1):
        lines.append(f"S{k} EDIT {path} BY lang:{ctx.file_language(path)} PRIORITY {k}")
        lines += [f"S{k} TOUCH {p}::{name}" for p, name in symbols if p == path]
        edits.append(f"S{k}")
    last = edits
    if command:
        n = len(edits) + 1
        tests = tests_to_pass(ctx)
        lines += [f"S{n} EXPECT {test}" for test in tests[:MAX_EXPECT]]
        if len(tests) > MAX_EXPECT:
            lines.append(f"S{n} EXPECT +{len(tests) - MAX_EXPECT} more")
        by = f"tool:{runner}" if runner else f"lang:{ctx.language}"
        lines.append(f"S{n} RUN {command} BY {by} PRIORITY {n} AFTER {','.join(edits)}")
        last = [f"S{n}"]
    m = len(edits) + (2 if command else 1)
    lines.append(f"S{m} REVIEW BY domain:{domain} PRIORITY {m} AFTER {','.join(last)}")
    return "\n".join(lines) + "\n"


def coord_key(target: str) -> str:
    """What two tasks share when nothing distinguishes them: the digest of their coord target."""
    return hashlib.sha256(target.encode()).hexdigest()[:16]


def coord_examples(ctx: TaskContext) -> list[Draft]:
    profile = ctx.profile
    if not profile or not ctx.fix:
        return []
    domain = profile.get("domain") or "general"
    target = render_coord(ctx, domain)
    text = header(ctx.task, "coord") + ctx.prompt.rstrip() + "\n"
    context = {key: profile.get(key) for key in ("estimated_agents", "coordination", "hierarchical_depth", "domain")
               if profile.get(key) is not None}
    context["coord_key"] = coord_key(target)
    return [Draft("coord", RULE, text, target, ctx.language, context)]
