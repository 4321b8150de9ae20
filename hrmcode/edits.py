"""Edit formats: how a model's reply says which files change, and how the change is applied.

One implementation of the three formats the Aider polyglot harness uses, shared by ``hrmcode eval``
(parsing model replies) and ``hrmcode synthesize`` (rendering training targets), so a target the
synthesizer writes is exactly what the evaluator accepts:

- ``whole``: the file's path on its own line, then the complete new content in a fenced block.
- ``diff``: Aider SEARCH/REPLACE blocks: a path line, a fence, ``<<<<<<< SEARCH``, the lines to
  find, ``=======``, the lines to put there, ``>>>>>>> REPLACE``, the closing fence. An empty SEARCH
  creates a new file (or appends to an existing one), as in Aider.
- ``udiff``: unified diffs in a ```` ```diff ```` fence (``--- path`` / ``+++ path`` / ``@@ ... @@``
  hunks). Line numbers in ``@@`` headers are ignored, as in Aider; a hunk is located by its text.

API: ``parse_edits(reply, fmt, valid_paths) -> list[Edit]``, ``apply_edits(files, edits) -> files``
(raises ``MalformedEdit``), ``apply_edits_partial`` (applies what it can and returns the failures,
as Aider does before reflecting them), ``render_edits(before_files, after_files, fmt) -> reply``
and the single-block renderers ``render_whole``, ``render_search_replace``, ``render_udiff``.

Guarantees:
- ``parse_edits(render_edits(before, after, fmt), fmt, paths)`` applied to ``before`` gives
  ``after`` for every format, up to one normalisation: an edited file always ends with a newline
  (no format can say "no newline at end of file"; Aider adds it too). ``render_edits`` checks this
  round trip itself and widens its context until it holds.
- A reply that cannot be parsed, or an edit that does not match the file, raises ``MalformedEdit``
  whose message says what is wrong in words meant to be shown back to the model (the reflection).
- Matching is deterministic: exact first, then the flexible strategies below, first match wins.

Not guaranteed / not supported: deleting or renaming files; Aider's ``...`` elision inside SEARCH
blocks; its fuzzy (edit-distance) matching, which Aider itself has switched off. Flexible
matching for SEARCH blocks: ignoring trailing whitespace, a uniform leading-whitespace offset, and
a spurious leading blank line. For udiff hunks additionally: ignoring blank context lines, and
splitting a hunk that does not match whole into its changed sections with less context.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from hrmcode.diffs import header_path

FORMATS = ("whole", "diff", "udiff")

HEAD = "<<<<<<< SEARCH"
DIVIDER = "======="
UPDATED = ">>>>>>> REPLACE"
_HEAD_RE = re.compile(r"^<{5,9} SEARCH>?\s*$")
_DIVIDER_RE = re.compile(r"^={5,9}\s*$")
_UPDATED_RE = re.compile(r"^>{5,9} REPLACE\s*$")
_FENCE_RE = re.compile(r"^(`{3,}|~{3,})(.*)$")


class MalformedEdit(ValueError):
    """A reply that does not parse, or an edit that does not apply. ``str(exc)`` is the reflection text."""


@dataclass(frozen=True)
class Edit:
    """One change to one file.

    ``fmt`` is the format it came from. ``whole`` edits have ``before=None`` and the full new
    content in ``after``; ``diff`` and ``udiff`` edits replace the text ``before`` with ``after``
    (an empty ``before`` creates the file, or appends to it when it exists).
    """

    path: str
    fmt: str
    before: str | None
    after: str


# -- paths -------------------------------------------------------------------------------------

def _strip_filename(line: str) -> str | None:
    """A path named on a line such as ``forth.py``, ``**forth.py**``, ``# forth.py:``; None when the line
    is not a path (prose, empty, a fence, ``...``)."""
    name = line.strip()
    fence = _FENCE_RE.match(name)
    if fence:
        name = fence.group(2).strip()  # ```forth.py names the file in the fence itself
        if "." not in name and "/" not in name:
            return None
    name = name.strip("*").strip().rstrip(":").strip().strip("`").lstrip("#").strip().strip("*").strip()
    if not name or name == "..." or len(name) > 250 or any(c.isspace() for c in name):
        return None
    if "." not in name and "/" not in name:  # "Sure:" or "Changes" is prose, not a path
        return None
    return name


def _safe_new_path(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name not in (".", "")


def resolve_path(name: str, valid_paths: Iterable[str]) -> str:
    """Map a path the model wrote to a known path: exact, then a unique basename or suffix match;
    otherwise a new file if the path is a safe relative path."""
    valid = list(valid_paths)
    if name in valid:
        return name
    suffix = [p for p in valid if name.endswith("/" + p) or p.endswith("/" + name)]
    if len(suffix) == 1:
        return suffix[0]
    base = [p for p in valid if PurePosixPath(p).name == PurePosixPath(name).name]
    if len(base) == 1:
        return base[0]
    if not _safe_new_path(name):
        raise MalformedEdit(f"{name} is not a path inside the exercise; use one of: {', '.join(valid)}")
    return name


# -- parsing -----------------------------------------------------------------------------------

def parse_edits(reply: str, fmt: str, valid_paths: Iterable[str]) -> list[Edit]:
    """Every edit in ``reply`` written in format ``fmt``, paths resolved against ``valid_paths``.

    A reply with no edit at all gives ``[]`` (the model changed nothing). Raises ``MalformedEdit``.
    """
    valid = list(valid_paths)
    if fmt == "whole":
        return _parse_whole(reply, valid)
    if fmt == "diff":
        return _parse_search_replace(reply, valid)
    if fmt == "udiff":
        return _parse_udiff(reply, valid)
    raise ValueError(f"unknown edit format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _parse_whole(reply: str, valid: list[str]) -> list[Edit]:
    lines = reply.splitlines(keepends=True)
    edits: list[Edit] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_RE.match(lines[i].rstrip("\r\n"))
        if not opening:
            i += 1
            continue
        fence = opening.group(1)
        name = _strip_filename(lines[i]) if opening.group(2).strip() else None
        if name is None and i > 0:
            name = _strip_filename(lines[i - 1])
        if name is None:
            if len(valid) != 1:
                raise MalformedEdit(
                    f"no filename before the {fence} block on line {i + 1}; put the file's path alone on the line "
                    f"before the opening fence (one of: {', '.join(valid)})"
                )
            name = valid[0]
        path = resolve_path(name, valid)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(lines[j])
            j += 1
        if j == len(lines):
            raise MalformedEdit(f"the listing of {path} is not closed with {fence}; send the whole file again")
        edits.append(Edit(path=path, fmt="whole", before=None, after="".join(body)))
        i = j + 1
    return edits


def _closes(line: str, fence: str) -> bool:
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}


def _find_filename(lines: list[str], index: int) -> str | None:
    """Aider's rule: look back up to 3 lines from a SEARCH marker, past fences, for a path."""
    for line in reversed(lines[max(0, index - 3):index]):
        name = _strip_filename(line)
        if name:
            return name
        if not _FENCE_RE.match(line.strip()):
            return None
    return None


def _marker(line: str) -> str | None:
    """``HEAD``, ``DIVIDER`` or ``UPDATED`` when ``line`` is that SEARCH/REPLACE marker, else None."""
    first = line[:1]  # each marker starts with its own character; most lines are dismissed here
    if first == "<":
        return HEAD if _HEAD_RE.match(line.rstrip("\r\n")) else None
    if first == "=":
        return DIVIDER if _DIVIDER_RE.match(line.rstrip("\r\n")) else None
    if first == ">":
        return UPDATED if _UPDATED_RE.match(line.rstrip("\r\n")) else None
    return None


def _next_mark(marks: list[str | None], start: int, mark: str, section: str, path: str) -> int:
    """The index of the first ``mark`` line from ``start`` on, which ends ``section``; MalformedEdit when
    another marker comes first or the reply ends."""
    j = start
    while j < len(marks) and marks[j] is not mark:
        if marks[j] is not None:
            raise MalformedEdit(f"line {j + 1}: expected '{mark}' to end {section}")
        j += 1
    if j == len(marks):
        raise MalformedEdit(f"the SEARCH/REPLACE block for {path} has no '{mark}' line")
    return j


def _parse_search_replace(reply: str, valid: list[str]) -> list[Edit]:
    lines = reply.splitlines(keepends=True)
    marks = [_marker(line) for line in lines]
    edits: list[Edit] = []
    current: str | None = None
    i = 0
    while i < len(lines):
        if marks[i] is not HEAD:
            if marks[i] is not None:
                stray = lines[i].rstrip("\r\n")
                raise MalformedEdit(f"line {i + 1}: '{stray.strip()}' without a '{HEAD}' line before it")
            i += 1
            continue
        name = _find_filename(lines, i) or current
        if name is None:
            raise MalformedEdit(
                f"line {i + 1}: SEARCH/REPLACE block without a filename; put the file's path alone on the line before "
                f"the opening fence (one of: {', '.join(valid)})"
            )
        path = resolve_path(name, valid)
        j = _next_mark(marks, i + 1, DIVIDER, f"the SEARCH section of the block for {path}", path)
        k = _next_mark(marks, j + 1, UPDATED, f"the block for {path}", path)
        edits.append(Edit(path=path, fmt="diff", before="".join(lines[i + 1:j]), after="".join(lines[j + 1:k])))
        current = name
        i = k + 1
    return edits


def _parse_udiff(reply: str, valid: list[str]) -> list[Edit]:
    if not reply.endswith("\n"):
        reply += "\n"
    lines = reply.splitlines(keepends=True)
    edits: list[Edit] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```diff"):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise MalformedEdit(f"the ```diff block starting on line {i + 1} is not closed with ```")
        edits.extend(_udiff_block(lines[i + 1:j], valid, i + 2))
        i = j + 1
    return edits


def _udiff_block(block: list[str], valid: list[str], first_line: int) -> list[Edit]:
    edits: list[Edit] = []
    named = False
    name: str | None = None  # after '+++ ': the path, None for /dev/null
    hunk: list[str] = []

    def flush() -> None:
        if any(line[:1] in "+-" for line in hunk):
            if not named:
                raise MalformedEdit(
                    f"line {first_line}: diff hunk without '--- path' and '+++ path' lines; start each file's diff with them"
                )
            before, after = _hunk_texts(hunk)
            if name is None:
                raise MalformedEdit("deleting files is not supported; change the file's content instead")
            path = resolve_path(name, valid)
            edits.append(Edit(path=path, fmt="udiff", before=before, after=after))
        hunk.clear()

    for n, line in enumerate(block):
        if line.startswith("--- ") and n + 1 < len(block) and block[n + 1].startswith("+++ "):
            flush()
            continue
        if line.startswith("+++ ") and n > 0 and block[n - 1].startswith("--- "):
            named, name = True, header_path(line[4:])
            continue
        if line.startswith("@@"):
            flush()
            continue
        hunk.append(line)
    flush()
    return edits


def _hunk_texts(hunk: list[str]) -> tuple[str, str]:
    """Aider's hunk_to_before_after: a line shorter than 2 characters is context (a blank line whose
    leading space the model dropped)."""
    before: list[str] = []
    after: list[str] = []
    for line in hunk:
        if len(line) < 2:
            op, text = " ", line
        else:
            op, text = line[0], line[1:]
        if op == "-":
            before.append(text)
        elif op == "+":
            after.append(text)
        elif op == "\\":  # "\ No newline at end of file"
            continue
        else:
            before.append(text if op == " " else line)
            after.append(text if op == " " else line)
    return "".join(before), "".join(after)


# -- applying ----------------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    if text and not text.endswith("\n"):
        text += "\n"
    return text.splitlines(keepends=True)


def _find(haystack: list[str], needle: list[str], key=None) -> int:
    """Index of the first run of ``haystack`` equal to ``needle`` (compared through ``key``), or -1."""
    if not needle:
        return -1
    if key is not None:
        needle = [key(x) for x in needle]
        haystack = [key(x) for x in haystack]
    n = len(needle)
    first, last_start = needle[0], len(haystack) - n
    start = 0
    while start <= last_start:
        try:
            start = haystack.index(first, start, last_start + 1)  # candidates by their first line, at C speed
        except ValueError:
            return -1
        if haystack[start:start + n] == needle:
            return start
        start += 1
    return -1


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _replace_offset_indent(whole: list[str], part: list[str], replace: list[str]) -> list[str] | None:
    """Match ``part`` ignoring a uniform leading-whitespace offset; shift ``replace`` the same way."""
    nonblank = [p for p in part + replace if p.strip()]
    if not nonblank or not any(p.strip() for p in part):
        return None
    common = min(len(_leading(p)) for p in nonblank)
    part_d = [p[common:] if p.strip() else p for p in part]
    repl_d = [p[common:] if p.strip() else p for p in replace]
    n = len(part_d)
    for start in range(len(whole) - n + 1):
        pad: str | None = None
        for have, want in zip(whole[start:start + n], part_d):
            if not want.strip():
                if have.strip():
                    break
                continue
            h, w = have.rstrip(), want.rstrip()
            if not h.endswith(w) or h[: len(h) - len(w)].strip() or (pad is not None and h[: len(h) - len(w)] != pad):
                break
            pad = h[: len(h) - len(w)]
        else:
            shifted = [(pad or "") + r if r.strip() else r for r in repl_d]
            return whole[:start] + shifted + whole[start + n:]
    return None


def _replace_block(content: str, before: str, after: str) -> str | None:
    """Aider's replace_most_similar_chunk without ``...`` and fuzzy matching: exact, then trailing
    whitespace ignored, then a uniform indentation offset, then without a leading blank line."""
    whole = _lines(content)
    part = _lines(before)
    replace = _lines(after)
    attempts = [part]
    if len(part) > 2 and not part[0].strip():
        attempts.append(part[1:])
    for candidate in attempts:
        for key in (None, str.rstrip):
            at = _find(whole, candidate, key)
            if at >= 0:
                return "".join(whole[:at] + replace + whole[at + len(candidate):])
        shifted = _replace_offset_indent(whole, candidate, replace)
        if shifted is not None:
            return "".join(shifted)
    return None


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _apply_hunk(content: str, before: str, after: str) -> str | None:
    """udiff hunks: the SEARCH strategies, then without leading/trailing blank lines, then section
    by section with less context."""
    result = _replace_block(content, before, after)
    if result is not None:
        return result
    b_lines, a_lines = _lines(before), _lines(after)
    trimmed = _trim_blank(b_lines)
    if trimmed and trimmed != b_lines:
        result = _replace_block(content, "".join(trimmed), "".join(_trim_blank(a_lines)))
        if result is not None:
            return result
    return _apply_sections(content, b_lines, a_lines)


def _apply_sections(content: str, b_lines: list[str], a_lines: list[str]) -> str | None:
    """Split a hunk into its changed sections and apply each with as much of its context as matches."""
    matcher = difflib.SequenceMatcher(a=b_lines, b=a_lines, autojunk=False)
    sections = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if len(sections) < 1:
        return None
    current = content
    for tag, i1, i2, j1, j2 in sections:
        applied = None
        for ctx in range(min(3, max(len(b_lines), 1)), -1, -1):
            lo, hi = max(0, i1 - ctx), min(len(b_lines), i2 + ctx)
            search = b_lines[lo:hi]
            if not search:
                continue
            replace = b_lines[lo:i1] + a_lines[j1:j2] + b_lines[i2:hi]
            applied = _replace_block(current, "".join(search), "".join(replace))
            if applied is not None:
                break
        if applied is None:
            return None
        current = applied
    return current


def _failure_text(edit: Edit, files: Mapping[str, str]) -> str:
    kind = "SEARCH block" if edit.fmt == "diff" else "diff hunk"
    shown = edit.before if edit.before is not None else ""
    text = (
        f"The {kind} for {edit.path} does not match its lines exactly; the {'SEARCH section' if edit.fmt == 'diff' else 'context and - lines'} "
        f"must match existing lines of {edit.path}, including whitespace, comments and docstrings:\n{shown}"
    )
    if edit.path not in files:
        text = f"{edit.path} does not exist, so the {kind} for it cannot match anything (an empty SEARCH creates a file)"
    return text


def apply_edits_partial(files: Mapping[str, str], edits: Iterable[Edit]) -> tuple[dict[str, str], list[str]]:
    """Apply every edit that matches, in order; return the new files and one message per failure.

    This is Aider's behaviour: blocks that match are kept, the others are reported back.
    """
    result = dict(files)
    failures: list[str] = []
    for edit in edits:
        if edit.fmt == "whole":
            result[edit.path] = edit.after if not edit.after or edit.after.endswith("\n") else edit.after + "\n"
            continue
        before = edit.before or ""
        if edit.path not in result:
            if before.strip():
                failures.append(_failure_text(edit, result))
            else:
                result[edit.path] = "".join(_lines(edit.after))
            continue
        content = result[edit.path]
        if not before.strip():
            result[edit.path] = "".join(_lines(content) + _lines(edit.after))
            continue
        new = _replace_block(content, before, edit.after) if edit.fmt == "diff" else _apply_hunk(content, before, edit.after)
        if new is None:
            failures.append(_failure_text(edit, result))
        else:
            result[edit.path] = new
    return result, failures


def apply_edits(files: Mapping[str, str], edits: Iterable[Edit]) -> dict[str, str]:
    """Apply all edits in order to a copy of ``files``; raise ``MalformedEdit`` if any does not match."""
    edits = list(edits)
    result, failures = apply_edits_partial(files, edits)
    if failures:
        raise MalformedEdit(reflection(failures, len(edits)))
    return result


def reflection(failures: list[str], total: int) -> str:
    """The message sent back to the model for edits that did not apply (Aider's wording, shortened)."""
    head = f"# {len(failures)} edit{'s' if len(failures) != 1 else ''} failed to apply!"
    body = "\n\n".join(failures)
    tail = ""
    if total > len(failures):
        tail = f"\n\n# The other {total - len(failures)} edits were applied successfully. Don't re-send them.\nJust reply with fixed versions of the edits above that failed."
    return f"{head}\n\n{body}{tail}"


# -- rendering ---------------------------------------------------------------------------------

_FENCE_RUN = re.compile(r"^\s*(`{3,})", re.M)


def _fence_for(text: str) -> str:
    if "```" not in text:  # no run of backticks to outgrow (the usual case, decided at C speed)
        return "```"
    longest = max((len(m.group(0)) for m in _FENCE_RUN.finditer(text)), default=0)
    return "`" * max(3, longest + 1)


def _norm(text: str) -> str:
    return "".join(_lines(text))


def render_whole(path: str, content: str) -> str:
    """``path`` then the full content in a fence long enough not to be closed by the content."""
    body = _norm(content)
    fence = _fence_for(body)
    return f"{path}\n{fence}\n{body}{fence}\n"


def render_search_replace(path: str, before: str, after: str) -> str:
    """One SEARCH/REPLACE block replacing the text ``before`` with ``after`` in ``path``."""
    search, replace = _norm(before), _norm(after)
    inner = f"{HEAD}\n{search}{DIVIDER}\n{replace}{UPDATED}\n"
    fence = _fence_for(inner)
    return f"{path}\n{fence}\n{inner}{fence}\n"


def _udiff_text(path: str, hunks: list[list[str]], new_file: bool = False) -> str:
    header = f"--- {'/dev/null' if new_file else path}\n+++ {path}\n"
    body = "".join("@@ @@\n" + "".join(lines) for lines in hunks)
    return f"```diff\n{header}{body}```\n"


def render_udiff(path: str, before: str, after: str, context: int = 3) -> str:
    """A unified diff of ``path`` from ``before`` to ``after`` with ``context`` lines around each
    change (empty ``before`` = a new file)."""
    a, b = _lines(before), _lines(after)
    return _udiff_text(path, _udiff_hunk_lines(a, b, context), new_file=not a)


def _regions(a: list[str], b: list[str], context: int) -> list[tuple[int, int, int, int]]:
    """Changed regions widened by ``context`` lines (at least one line around a pure insertion,
    so its text can be located), merged when they touch."""
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    regions: list[list[int]] = []
    for _, i1, i2, j1, j2 in ops:
        ctx = max(context, 1 if i1 == i2 else 0)
        lo, hi = max(0, i1 - ctx), min(len(a), i2 + ctx)
        lo_b, hi_b = j1 - (i1 - lo), j2 + (hi - i2)
        if regions and lo <= regions[-1][1]:
            regions[-1][1], regions[-1][3] = hi, hi_b
        else:
            regions.append([lo, hi, lo_b, hi_b])
    return [tuple(r) for r in regions]  # type: ignore[misc]


def _udiff_hunk_lines(a: list[str], b: list[str], context: int) -> list[list[str]]:
    hunks = []
    for lo, hi, lo_b, hi_b in _regions(a, b, context):
        lines: list[str] = []
        sub = difflib.SequenceMatcher(a=a[lo:hi], b=b[lo_b:hi_b], autojunk=False)
        for tag, i1, i2, j1, j2 in sub.get_opcodes():
            if tag == "equal":
                lines += [" " + x for x in a[lo + i1:lo + i2]]
            else:
                lines += ["-" + x for x in a[lo + i1:lo + i2]]
                lines += ["+" + x for x in b[lo_b + j1:lo_b + j2]]
        hunks.append(lines)
    return hunks


def _search_replace_blocks(before: str | None, after: str, context: int | None) -> list[tuple[str, str]]:
    """(search, replace) texts of the SEARCH/REPLACE blocks turning ``before`` into ``after``: the
    changed regions with ``context`` lines, or one block replacing everything (``context=None``)."""
    if context is None:
        return [(before or "", after)]
    a = _lines(before) if before is not None else []
    if not a:
        return [("", after)]
    b = _lines(after)
    return [("".join(a[lo:hi]), "".join(b[lo_b:hi_b])) for lo, hi, lo_b, hi_b in _regions(a, b, context)]


def _has_marker(text: str) -> bool:
    if "<<<<<" not in text and "=====" not in text and ">>>>>" not in text:
        return False
    return any(_marker(line) for line in text.splitlines(keepends=True))


def _parsed_blocks(path: str, blocks: list[tuple[str, str]]) -> list[Edit] | None:
    """What ``parse_edits`` returns for the ``render_search_replace`` blocks of ``path``, when that
    is certain without parsing: the path line reads back as ``path`` (it is then in the valid
    paths) and no line of a block reads as a marker. None otherwise (parse the text then)."""
    if _strip_filename(path) != path or any(_has_marker(text) for block in blocks for text in block):
        return None
    return [Edit(path=path, fmt="diff", before=_norm(search), after=_norm(replace)) for search, replace in blocks]


def _render_file(path: str, before: str | None, after: str, fmt: str, context: int) -> str:
    if fmt == "whole":
        return render_whole(path, after)
    if fmt == "diff":
        return "".join(render_search_replace(path, s, r) for s, r in _search_replace_blocks(before, after, context))
    if before is None:
        return render_udiff(path, "", after)
    a, b = _lines(before), _lines(after)
    if not a:
        return render_udiff(path, "", after)
    return _udiff_text(path, _udiff_hunk_lines(a, b, context))


def render_edits(before_files: Mapping[str, str], after_files: Mapping[str, str], fmt: str) -> str:
    """A reply in format ``fmt`` that turns ``before_files`` into ``after_files``.

    Files are visited in sorted path order; unchanged files are left out. The result is checked
    by parsing and applying it; context is widened until the check passes (a diff that is still
    ambiguous falls back to replacing the whole file). Raises ``ValueError`` for a deleted file
    or a file whose text no format can carry (e.g. a line ``=======`` in a SEARCH/REPLACE block).
    SEARCH/REPLACE blocks whose parse is certain (``_parsed_blocks``) are applied without
    re-parsing their text; the check that they apply to give the new file is always made.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown edit format {fmt!r}; expected one of {', '.join(FORMATS)}")
    deleted = sorted(set(before_files) - set(after_files))
    if deleted:
        raise ValueError(f"edit formats cannot delete files: {', '.join(deleted)}")
    paths = sorted(set(before_files) | set(after_files))
    valid = list(paths)
    parts: list[str] = []
    for path in paths:
        before = before_files.get(path)
        after = after_files[path]
        if before is not None and _norm(before) == _norm(after):
            continue
        target = {path: _norm(after)}
        start = {path: before} if before is not None else {}
        # widening context until the round trip holds; the last try replaces the whole file
        for context in (1, 3, 8, 32, None):
            edits = None
            if fmt == "diff":
                blocks = _search_replace_blocks(before, after, context)
                text = "".join(render_search_replace(path, s, r) for s, r in blocks)
                edits = _parsed_blocks(path, blocks)
            else:
                text = _render_file(path, before, after, fmt, 1 << 30 if context is None else context)
            try:
                got = apply_edits(start, edits if edits is not None else parse_edits(text, fmt, valid))
            except MalformedEdit:
                continue
            if got == target:
                parts.append(text)
                break
        else:
            raise ValueError(f"cannot express the change to {path} in the {fmt} format")
    return "\n".join(parts)
