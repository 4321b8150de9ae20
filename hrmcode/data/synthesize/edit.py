"""``edit`` (L level): SEARCH/REPLACE blocks for each file or hunk of a fix, rendered with
``hrmcode.edits.render_edits(before, after, "diff")`` so the target is exactly what the polyglot
harness parses.

- Whole files known (exercises, HumanEval, ``repo:PATH`` tasks): one example per task for
  exercises/functions (all changed files at once, as the eval harness asks; the input shows each
  whole file as it is before the fix, rule ``edit/from-reference``), one per file for repo patches
  (rule ``edit/from-reverse-patch``). A repository file is not shown whole: the input shows the
  window of it the target's SEARCH blocks lie in, ``WINDOW_LINES`` lines around each block (fewer
  when that would pass ``WINDOW_CHARS``), each excerpt headed by the path and its line numbers in
  the file. A SEARCH block needs only enough context to be unique in the whole file
  (``render_edits`` widens it until it is), so the window holds every line the target searches
  for, and applying the target to the WHOLE file gives the fixed file exactly
  (``context.files`` keeps the whole file for that check, ``context.window`` the excerpts' line
  spans). A file whose blocks alone pass ``WINDOW_CHARS`` (the diff fell back to replacing most
  of the file) gives no example: there is no bounded window to show.
- Only the diff known (SWE-smith records carry no files): one example per hunk. The input shows
  the hunk's old side (the excerpt of the file the fix touches, with its line numbers); the
  target turns that excerpt into the hunk's new side (rule ``edit/from-reverse-patch-hunk``).
"""

from __future__ import annotations

from hrmcode.data.synthesize.context import TaskContext
from hrmcode.data.synthesize.draft import Draft, fenced, header, problem_and_files
from hrmcode.diffs import FileDiff
from hrmcode.edits import MalformedEdit, apply_edits, parse_edits, render_edits, render_search_replace

WINDOW_LINES = 12  # lines of the file shown above and below each SEARCH block
WINDOW_CHARS = 8000  # most characters of one file's excerpts in an edit input


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
            target = fix_blocks(diff, before, after) if before else render_edits({}, {diff.path: after}, "diff")
            context: dict = {"files": shown, "paths": [diff.path]}
            if before:
                spans = window_spans(before, [e.before for e in parse_edits(target, "diff", [diff.path])])
                if spans is None:
                    continue  # no bounded window holds the blocks (module docstring)
                listing = excerpts(diff.path, before, spans)
                context["window"] = [list(span) for span in spans]
            else:
                listing = f"(new file {diff.path})\n"
            drafts.append(Draft("edit", "edit/from-reverse-patch", _instruction(ctx) + listing, target, language,
                                context))
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


def fix_blocks(diff: FileDiff, before: str, after: str) -> str:
    """SEARCH/REPLACE blocks turning the whole file ``before`` into ``after``: one per hunk of the
    fix (its old side, context lines included, becomes the SEARCH text) when those blocks applied
    to ``before`` give exactly ``after`` (each SEARCH text unique enough), else ``render_edits``'s
    blocks. The hunks cost one pass over the file; ``render_edits`` diffs the whole file again,
    which takes minutes on a file of many thousand lines with many repeated ones."""
    blocks = "".join(render_search_replace(diff.path, h.old_text(), h.new_text()) for h in diff.hunks)
    try:
        if blocks and all(h.old_text() for h in diff.hunks) and \
                apply_edits({diff.path: before}, parse_edits(blocks, "diff", [diff.path])) == {diff.path: after}:
            return blocks
    except MalformedEdit:
        pass
    return render_edits({diff.path: before}, {diff.path: after}, "diff")


def _block_spans(lines: list[str], searches: list[str]) -> list[tuple[int, int]] | None:
    """(first, last) 0-based line of each SEARCH text in the file, found in order after the previous
    block (the blocks of one file do not overlap and come in file order); None when one is missing."""
    text = "".join(lines)
    if not text.endswith("\n"):
        text += "\n"  # a SEARCH text always ends with one (the edit formats add it)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    spans: list[tuple[int, int]] = []
    cursor = 0
    for search in searches:
        if not search:
            return None  # an empty SEARCH appends: nothing in the file to show it against
        at = text.find(search, cursor)
        if at < 0:
            return None
        first = text.count("\n", 0, at)
        last = first + max(search.rstrip("\n").count("\n"), 0)
        spans.append((first, last))
        cursor = offsets[last + 1]
    return spans


def window_spans(before: str, searches: list[str], pad: int = WINDOW_LINES,
                 limit: int = WINDOW_CHARS) -> list[tuple[int, int]] | None:
    """1-based inclusive line spans of ``before`` to show for SEARCH texts ``searches``: each block
    with up to ``pad`` lines around it, merged where they touch, the padding shrunk until the
    excerpts fit ``limit`` characters. None when even the bare blocks do not fit (or a block is
    not in the file)."""
    lines = before.splitlines(keepends=True)
    blocks = _block_spans(lines, searches)
    if not blocks:
        return None
    for margin in dict.fromkeys((pad, pad // 2, 3, 0)):
        spans: list[list[int]] = []
        for first, last in blocks:
            lo, hi = max(0, first - margin), min(len(lines) - 1, last + margin)
            if spans and lo <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([lo, hi])
        if sum(len(line) for lo, hi in spans for line in lines[lo:hi + 1]) <= limit:
            return [(lo + 1, hi + 1) for lo, hi in spans]
    return None


def excerpts(path: str, before: str, spans: list[tuple[int, int]]) -> str:
    """The listing of ``spans`` of ``path``: per span a line naming the path and its line numbers
    in the file, then the lines verbatim in a fence (SEARCH text is copied from it as it is)."""
    lines = before.splitlines(keepends=True)
    total = len(lines)
    return "".join(f"excerpt of {path}, lines {lo}-{hi} of {total}:\n" + fenced(path, "".join(lines[lo - 1:hi]))
                   for lo, hi in spans)
