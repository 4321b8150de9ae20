"""Unified-diff parsing and exact application, for the fixes that plan and edit targets come from.

Guarantees: ``parse_unified_diff`` reads git-style and plain unified diffs (``diff --git``,
``---``/``+++``, ``@@`` hunks with the optional section text after the second ``@@``, and
``\\ No newline at end of file``), keeping every line exactly. ``apply_file_diff`` applies a
file's hunks at their stated line numbers and raises ``InputError`` if a context or removed
line does not match, so a target is never built from a patch that does not fit its file.
It does not do fuzzy matching (that is the eval harness's job for model output).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from hrmcode.errors import InputError

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
NO_NEWLINE = "\\ No newline at end of file"


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    section: str  # the text git prints after the second @@ (enclosing function or class line)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text with its newline)

    def old_text(self) -> str:
        return "".join(text for tag, text in self.lines if tag != "+")

    def new_text(self) -> str:
        return "".join(text for tag, text in self.lines if tag != "-")

    def changed_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != " "]


@dataclass
class FileDiff:
    old_path: str | None  # None for a new file
    new_path: str | None  # None for a deleted file
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str:
        """The path of the file as it exists before the change (or after, for a new file)."""
        return self.old_path or self.new_path or ""

    @property
    def added(self) -> int:
        return sum(1 for h in self.hunks for tag, _ in h.lines if tag == "+")

    @property
    def removed(self) -> int:
        return sum(1 for h in self.hunks for tag, _ in h.lines if tag == "-")


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    if name.startswith(("a/", "b/")):
        return name[2:]
    return name


def parse_unified_diff(text: str) -> list[FileDiff]:
    """Parse ``text`` into per-file diffs in the order they appear. Raises ``InputError`` when a
    hunk's line counts disagree with its header (a truncated or hand-edited patch)."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: Hunk | None = None
    remaining_old = remaining_new = 0
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        bare = line.rstrip("\r\n")
        if hunk is not None and (remaining_old > 0 or remaining_new > 0):
            tag = bare[:1] if bare else " "
            if tag not in " -+":
                raise InputError(f"patch hunk for {current.path if current else '?'} ends early at line {i + 1}",
                                 "the patch is truncated or malformed")
            content = line[1:] if line else ""
            if not bare:  # a blank context line whose leading space was stripped
                content = "\n"
            hunk.lines.append((tag, content))
            if tag != "+":
                remaining_old -= 1
            if tag != "-":
                remaining_new -= 1
            i += 1
            continue
        if bare == NO_NEWLINE and hunk is not None and hunk.lines:
            tag, content = hunk.lines[-1]
            hunk.lines[-1] = (tag, content.rstrip("\n").rstrip("\r"))
            i += 1
            continue
        if bare.startswith("diff --git "):
            current = None
            hunk = None
            i += 1
            continue
        if bare.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FileDiff(_strip_prefix(bare[4:]), _strip_prefix(lines[i + 1].rstrip("\r\n")[4:]))
            files.append(current)
            hunk = None
            i += 2
            continue
        match = _HUNK.match(bare)
        if match and current is not None:
            old_len = int(match.group(2)) if match.group(2) is not None else 1
            new_len = int(match.group(4)) if match.group(4) is not None else 1
            hunk = Hunk(int(match.group(1)), old_len, int(match.group(3)), new_len, match.group(5).strip())
            current.hunks.append(hunk)
            remaining_old, remaining_new = old_len, new_len
            i += 1
            continue
        i += 1  # index lines, mode lines, "Binary files differ": nothing to keep
    if hunk is not None and (remaining_old > 0 or remaining_new > 0):
        raise InputError(f"patch hunk for {current.path if current else '?'} is truncated", "the patch is incomplete")
    return [f for f in files if f.hunks]


def apply_file_diff(before: str, diff: FileDiff) -> str:
    """Apply ``diff``'s hunks to ``before`` exactly at their line numbers."""
    old = before.splitlines(keepends=True)
    result: list[str] = []
    cursor = 0  # index into old
    for hunk in diff.hunks:
        start = hunk.old_start - 1 if hunk.old_len > 0 else hunk.old_start
        if start < cursor:
            raise InputError(f"{diff.path}: overlapping hunks at line {hunk.old_start}", "the patch is malformed")
        result.extend(old[cursor:start])
        cursor = start
        for tag, text in hunk.lines:
            if tag == "+":
                result.append(text)
                continue
            if cursor >= len(old) or old[cursor] != text:
                raise InputError(
                    f"{diff.path}:{cursor + 1}: patch does not fit the file (expected {text.rstrip()!r})",
                    "the task's files and its patch disagree",
                )
            if tag == " ":
                result.append(text)
            cursor += 1
    result.extend(old[cursor:])
    return "".join(result)


def diff_texts(old_path: str | None, new_path: str, before: str, after: str, context: int = 3) -> FileDiff:
    """The ``FileDiff`` turning ``before`` into ``after`` (hunks with ``context`` lines), built
    from ``difflib`` opcodes directly so a missing final newline is kept exactly."""
    a = before.splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    diff = FileDiff(old_path, new_path)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        i1, j1 = group[0][1], group[0][3]
        i2, j2 = group[-1][2], group[-1][4]
        hunk = Hunk(i1 + 1 if i2 > i1 else i1, i2 - i1, j1 + 1 if j2 > j1 else j1, j2 - j1, "")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                hunk.lines.extend((" ", line) for line in a[a1:a2])
                continue
            hunk.lines.extend(("-", line) for line in a[a1:a2])
            hunk.lines.extend(("+", line) for line in b[b1:b2])
        diff.hunks.append(hunk)
    return diff
