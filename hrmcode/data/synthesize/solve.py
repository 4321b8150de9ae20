"""``solve``: problem -> the whole solution, for tasks that ship a reference (HumanEval,
polyglot exercises, LiveCodeBench problems when a reference is present; never SWE-style repo
patches, whose solution is a diff against a repository the record does not hold).

The target is every changed solution file in the ``whole`` edit format (path line, fenced full
content), rendered by ``hrmcode.edits.render_edits(..., "whole")``. The input is the problem
statement and the starting files a model may edit (stubs). Rule: ``solve/from-reference``.
"""

from __future__ import annotations

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, problem_and_files
from hrmcode.edits import render_edits


def solve_examples(ctx: TaskContext) -> list[Draft]:
    if ctx.kind == "repo-patch" or not ctx.after:
        return []
    files = ctx.task.get("files") or {}
    editable = ctx.task.get("editable") or sorted(ctx.after)
    shown = {p: files[p] for p in editable if files.get(p)}
    text = problem_and_files(ctx.task, "solve", shown)
    target = render_edits({}, ctx.after, "whole")
    return [Draft("solve", "solve/from-reference", text, target, ctx.language, {"files": shown, "paths": sorted(ctx.after)})]
