"""``plan`` (H level): from a task's fix, the structured plan the high-level module emits.

Target format (one item per line, in this order; documented in docs/examples.md)::

    FILE <path>                 every file the fix changes, in the fix's order
    TOUCH <path>::<symbol>      functions/classes the fix changes, per file, in order
    TEST <test id>              tests that must go from failing to passing
    RUN <command>               the test command (omitted when the task has none)

FILE lines name exactly the fix's files. TOUCH names come from ``symbols`` (ast for Python,
regex/brace fallback for other languages; from the hunks alone when the task has no whole
files). TEST lines are ``tests.fail_to_pass`` (SWE-style tasks), else the test names declared in
the task's test files (an exercise's stub fails every test), else the HumanEval ``check``
entry. Rule names: ``plan/from-reverse-patch`` (repo patches) and ``plan/from-reference``.
"""

from __future__ import annotations

import re

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, header
from hrmcode.data.synthesize.symbols import touched_in_file, touched_in_hunks
from hrmcode.diffs import FileDiff, Hunk

# Test declarations per language, for exercises whose tests are files rather than id lists.
_TEST_DECLS = {
    "python": [re.compile(r"^\s*def (test\w*)\s*\(", re.M)],
    "go": [re.compile(r"^func (Test\w+)\s*\(", re.M)],
    "rust": [re.compile(r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*fn\s+(\w+)", re.M)],
    "java": [re.compile(r"@Test\b(?:\s*@\w+(?:\([^)]*\))?)*\s*(?:public\s+)?void\s+(\w+)\s*\(", re.M)],
    "javascript": [re.compile(r"^\s*x?(?:test|it)(?:\.skip)?\(\s*(['\"`])(.+?)\1", re.M)],
    "cpp": [re.compile(r"^\s*TEST_CASE\(\s*\"((?:\\.|[^\"\\])*)\"", re.M)],
}


def declared_tests(language: str, test_files: dict[str, str]) -> list[str]:
    """``<file>::<name>`` for each test declared in ``test_files``, in file and source order."""
    found: list[str] = []
    for path in sorted(test_files):
        for pattern in _TEST_DECLS.get(language, ()):
            for match in pattern.finditer(test_files[path]):
                found.append(f"{path}::{match.group(match.lastindex or 1)}")
    return list(dict.fromkeys(found))


def touched(ctx: TaskContext) -> list[tuple[str, str]]:
    """(path, symbol) pairs the fix touches, in fix order."""
    pairs: list[tuple[str, str]] = []
    for diff in ctx.fix:
        language = ctx.file_language(diff.path)
        before = ctx.before.get(diff.path)
        if before is not None and before != "":
            names = touched_in_file(before, diff, language)
        elif before == "" and diff.path in ctx.after:  # a new file: what it defines
            names = touched_in_file(ctx.after[diff.path], _as_removal(diff), language)
        else:
            names = touched_in_hunks(diff, language)
        pairs.extend((diff.path, name) for name in names)
    return pairs


def _as_removal(diff: FileDiff) -> FileDiff:
    """The same hunks seen from the new side, so a new file's symbols can be located."""
    flipped = FileDiff(diff.new_path, diff.old_path)
    for hunk in diff.hunks:
        flipped.hunks.append(Hunk(hunk.new_start, hunk.new_len, hunk.old_start, hunk.old_len, hunk.section,
                                  [("-" if tag == "+" else tag, text) for tag, text in hunk.lines if tag != "-"]))
    return flipped


def tests_to_pass(ctx: TaskContext) -> list[str]:
    tests = ctx.tests
    if tests.get("fail_to_pass"):
        return list(tests["fail_to_pass"])
    declared = declared_tests(ctx.language, tests.get("files") or {})
    if declared:
        return declared
    if tests.get("entry_point") and tests.get("files"):
        return [f"{sorted(tests['files'])[0]}::check({tests['entry_point']})"]
    return []


def render_plan(ctx: TaskContext) -> str:
    lines = [f"FILE {path}" for path in ctx.fix_paths()]
    lines += [f"TOUCH {path}::{name}" for path, name in touched(ctx)]
    lines += [f"TEST {test}" for test in tests_to_pass(ctx)]
    command = ctx.test_command()
    if command:
        lines.append(f"RUN {command}")
    return "\n".join(lines) + "\n"


def plan_examples(ctx: TaskContext) -> list[Draft]:
    if not ctx.fix:
        return []
    text = header(ctx.task, "plan") + ctx.prompt.rstrip() + "\n"
    rule = "plan/from-reverse-patch" if ctx.kind == "repo-patch" else "plan/from-reference"
    return [Draft("plan", rule, text, render_plan(ctx), ctx.language, {"files": ctx.fix_paths()})]
