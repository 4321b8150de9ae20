"""``edit`` (L level): SEARCH/REPLACE blocks for each file or hunk of a fix, rendered with
``hrmcode.edits.render_edits(before, after, "diff")`` so the target is exactly what the polyglot
harness parses.

- Whole files known (exercises, HumanEval, ``repo:PATH`` tasks): one example per task for
  exercises/functions (all changed files at once, as the eval harness asks), one per file for
  repo patches. The input shows each file as it is before the fix; applying the target to those
  files gives the fixed files exactly (rule ``edit/from-reference``, ``edit/from-reverse-patch``).
- Only the diff known (SWE-smith records carry no files): one example per hunk. The input shows
  the hunk's old side (the excerpt of the file the fix touches, with its line numbers); the
  target turns that excerpt into the hunk's new side (rule ``edit/from-reverse-patch-hunk``).
"""

from __future__ import annotations

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, fenced, header, problem_and_files
from hrmcode.edits import render_edits


def _instruction(ctx: TaskContext) -> str:
    return header(ctx.task, "edit") + ctx.prompt.rstrip() + "\n\n"


def edit_examples(ctx: TaskContext) -> list[Draft]:
    if not ctx.fix:
        return []
    drafts: list[Draft] = []
    whole = [d for d in ctx.fix if d.path in ctx.after]
    if ctx.kind != "repo-patch" and whole:
        before = {d.path: ctx.before[d.path] for d in whole}
        after = {d.path: ctx.after[d.path] for d in whole}
        shown = {p: t for p, t in before.items() if t}
        text = problem_and_files(ctx.task, "edit", shown)
        target = render_edits(before, after, "diff")
        drafts.append(Draft("edit", "edit/from-reference", text, target, ctx.language,
                            {"files": shown, "paths": sorted(after)}))
        return drafts
    for diff in ctx.fix:
        language = ctx.file_language(diff.path)
        if diff.path in ctx.after:
            before, after = ctx.before[diff.path], ctx.after[diff.path]
            shown = {diff.path: before} if before else {}
            text = _instruction(ctx) + (fenced(diff.path, before) if before else f"(new file {diff.path})\n")
            target = render_edits({diff.path: before} if before else {}, {diff.path: after}, "diff")
            drafts.append(Draft("edit", "edit/from-reverse-patch", text, target, language,
                                {"files": shown, "paths": [diff.path]}))
            continue
        if diff.new_path is None:
            continue  # deleting a file cannot be said in SEARCH/REPLACE
        for number, hunk in enumerate(diff.hunks):
            old, new = hunk.old_text(), hunk.new_text()
            if not old.strip():
                continue  # no old text to anchor a SEARCH block in the real file
            try:
                target = render_edits({diff.path: old}, {diff.path: new}, "diff")
            except ValueError:
                continue  # text no SEARCH/REPLACE block can carry (a literal ======= line)
            if not target:
                continue
            span = f"lines {hunk.old_start}-{hunk.old_start + max(hunk.old_len, 1) - 1}"
            text = _instruction(ctx) + f"excerpt of {diff.path}, {span}:\n" + fenced(diff.path, old)
            drafts.append(Draft("edit", "edit/from-reverse-patch-hunk", text, target, language,
                                {"files": {diff.path: old}, "paths": [diff.path], "hunk": number,
                                 "old_start": hunk.old_start}))
    return drafts
