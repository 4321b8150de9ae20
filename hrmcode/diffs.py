"""Unified (git) diffs: the one parser, exact application, reversal, and diffs of two texts.

``parse_patch`` reads git-style and plain unified diffs into one ``FileDiff`` per file, in order:
``diff --git`` headers with their mode/index/rename lines kept as written, ``---``/``+++`` names
(``a/``/``b/`` prefixes and a tab-separated timestamp dropped, ``/dev/null`` read as no file),
``@@`` hunks with the optional section text after the second ``@@``, and
``\\ No newline at end of file`` (the line before it loses its newline). Hunk bodies are read by
their line counts, so a removed line that itself starts with ``--`` is not taken for a header; a
blank line inside a hunk is a context line whose leading space was stripped. Files are split on
``\\n`` only, as git splits them. A binary (``GIT binary patch``) or combined (``diff --cc``) file
diff is kept with its header and ``unreadable`` set; its body is skipped.

``content_diffs`` keeps the files whose content changes (those with hunks). ``apply_file_diff``
applies a file's hunks at their stated line numbers and raises ``InputError`` if a context or
removed line does not match; there is no fuzzy matching (that is ``hrmcode.edits``' job for model
output). ``diff_texts`` builds the ``FileDiff`` between two texts.

``reverse_patch(patch)`` turns a diff that takes A to B into one that takes B to A: ``---``/``+++``
names and ``a/``/``b/`` prefixes swapped, ``new file``/``deleted file`` and ``rename from/to``
swapped, ``index X..Y`` swapped, each hunk's ranges swapped and its ``+``/``-`` lines exchanged
(within each change run the removals are put first, as ``git diff`` writes them). Applying the
result with ``git apply`` gives what ``git apply --reverse`` gives; reversing a ``git diff``
twice gives it back byte for byte (hunk lines are written back in git's form, so a blank context
line of a hand-edited patch comes back with its leading space).

Errors: a hunk shorter than its header says, or a line inside a hunk that is not context,
removal, addition or ``\\`` marker, raises ``PatchError`` (an ``InputError``) while parsing;
``changed_files`` and ``reverse_patch`` refuse binary, combined and copy diffs with it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from hrmcode.errors import InputError

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
NO_NEWLINE = "\\ No newline at end of file"


class PatchError(InputError):
    """The text is not a unified diff this module can handle."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    section: str  # the text git prints after the second @@ (enclosing function or class line)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text with its newline)
    header: str = ""  # the '@@' line as written, so a reversed hunk keeps its counts and section text exactly

    def old_text(self) -> str:
        return "".join(text for tag, text in self.lines if tag != "+")

    def new_text(self) -> str:
        return "".join(text for tag, text in self.lines if tag != "-")

    def changed_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != " "]


@dataclass
class FileDiff:
    old_path: str | None = None  # None for a new file
    new_path: str | None = None  # None for a deleted file
    hunks: list[Hunk] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # 'diff --git', mode/index/rename lines, '---', '+++' as written
    unreadable: str = ""  # "binary" or "combined" when the body was skipped

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


def header_path(name: str) -> str | None:
    """The path a ``---``/``+++`` line names (the text after those four characters): without a
    tab-separated timestamp and an ``a/``/``b/`` prefix; None for ``/dev/null``."""
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith(("a/", "b/")) else name


# -- parsing -----------------------------------------------------------------------------------

def parse_patch(patch: str) -> list[FileDiff]:
    """Every file diff of ``patch`` in order, including those without hunks (renames, mode
    changes, binary files). Text before the first file (a commit message) is skipped."""
    lines = patch.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FileDiff] = []
    current: FileDiff | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        starts_file = line.startswith(("diff --git ", "diff --cc "))
        if starts_file or (line.startswith("--- ") and (current is None or current.hunks)):
            current = FileDiff(unreadable="combined" if line.startswith("diff --cc ") else "")
            files.append(current)
        if current is None:
            i += 1  # preamble text before the first file (e.g. a commit message)
            continue
        if current.unreadable and not starts_file:
            i += 1  # the body of a binary or combined diff
            continue
        if line.startswith("GIT binary patch"):
            current.unreadable = "binary"
            i += 1
            continue
        match = HUNK.match(line)
        if match:
            hunk, i = _read_hunk(lines, i, match)
            current.hunks.append(hunk)
            continue
        if line.startswith("--- "):
            current.old_path = header_path(line[4:])
        elif line.startswith("+++ "):
            current.new_path = header_path(line[4:])
        current.header.append(line)
        i += 1
    return files


def _read_hunk(lines: list[str], i: int, match: re.Match) -> tuple[Hunk, int]:
    """The hunk whose '@@' line is ``lines[i]``, and the index of the line after it."""
    old_len = int(match.group(2)) if match.group(2) is not None else 1
    new_len = int(match.group(4)) if match.group(4) is not None else 1
    hunk = Hunk(int(match.group(1)), old_len, int(match.group(3)), new_len, match.group(5).strip(), header=lines[i])
    i += 1
    while (old_len > 0 or new_len > 0) and i < len(lines):
        line = lines[i]
        tag = line[:1]
        if tag == "\\":
            _drop_newline(hunk)
        elif tag == " " or line == "":
            hunk.lines.append((" ", line[1:] + "\n"))
            old_len -= 1
            new_len -= 1
        elif tag == "-":
            hunk.lines.append(("-", line[1:] + "\n"))
            old_len -= 1
        elif tag == "+":
            hunk.lines.append(("+", line[1:] + "\n"))
            new_len -= 1
        else:
            raise PatchError(f"unexpected line in hunk: {line[:60]!r}")
        i += 1
    if old_len > 0 or new_len > 0:
        raise PatchError("hunk is shorter than its header says")
    while i < len(lines) and lines[i].startswith("\\"):
        _drop_newline(hunk)  # '\ No newline at end of file' after the last line
        i += 1
    return hunk, i


def _drop_newline(hunk: Hunk) -> None:
    if hunk.lines:
        tag, text = hunk.lines[-1]
        hunk.lines[-1] = (tag, text[:-1] if text.endswith("\n") else text)


def content_diffs(patch: str) -> list[FileDiff]:
    """The file diffs of ``patch`` that change content (those with hunks), in order."""
    return [diff for diff in parse_patch(patch) if diff.hunks]


def _readable(parts: list[FileDiff]) -> list[FileDiff]:
    if any(part.unreadable for part in parts):
        raise PatchError("binary or combined diffs cannot be reversed")
    return parts


def changed_files(patch: str) -> list[str]:
    """Paths a patch touches (new name for renames/additions, old name for deletions), in order."""
    paths = []
    for part in _readable(parse_patch(patch)):
        path = part.new_path or part.old_path
        if path is None:
            match = re.match(r"diff --git a/(\S+) b/(\S+)", part.header[0]) if part.header else None
            path = match.group(2) if match else None
        if path and path not in paths:
            paths.append(path)
    return paths


# -- applying and building ---------------------------------------------------------------------

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


# -- reversing ---------------------------------------------------------------------------------

_SWAP_PREFIX = {"a/": "b/", "b/": "a/"}


def _swap_name(name: str) -> str:
    return _SWAP_PREFIX[name[:2]] + name[2:] if name[:2] in _SWAP_PREFIX else name


# header lines whose reverse is the other line of the pair, with the same text after the prefix
_SWAPPED_HEADERS = (("new file mode ", "deleted file mode "), ("deleted file mode ", "new file mode "),
                    ("old mode ", "new mode "), ("new mode ", "old mode "),
                    ("rename from ", "rename to "), ("rename to ", "rename from "))


def _reverse_header(header: list[str]) -> list[str]:
    old_line = next((ln for ln in header if ln.startswith("--- ")), None)
    new_line = next((ln for ln in header if ln.startswith("+++ ")), None)
    result = []
    for line in header:
        swapped = next((to + line[len(prefix):] for prefix, to in _SWAPPED_HEADERS if line.startswith(prefix)), None)
        if swapped is not None:
            result.append(swapped)
        elif line.startswith("diff --git "):
            match = re.match(r"diff --git (\S+) (\S+)$", line)
            result.append(f"diff --git {_swap_name(match.group(2))} {_swap_name(match.group(1))}" if match else line)
        elif line.startswith("copy from ") or line.startswith("copy to "):
            raise PatchError("copy diffs cannot be reversed")
        elif line.startswith("index "):
            match = re.match(r"index ([0-9a-f]+)\.\.([0-9a-f]+)(.*)$", line)
            result.append(f"index {match.group(2)}..{match.group(1)}{match.group(3)}" if match else line)
        elif line.startswith("--- "):
            result.append("--- " + _swap_name(new_line[4:]) if new_line else line)
        elif line.startswith("+++ "):
            result.append("+++ " + _swap_name(old_line[4:]) if old_line else line)
        else:
            result.append(line)
    # 'rename from/to' and 'old/new mode' pairs must stay in git's order (from before to).
    return _reorder_pairs(result, ("rename from ", "rename to "), ("old mode ", "new mode "))


def _reorder_pairs(lines: list[str], *pairs: tuple[str, str]) -> list[str]:
    for first, second in pairs:
        i = next((k for k, ln in enumerate(lines) if ln.startswith(second)), None)
        j = next((k for k, ln in enumerate(lines) if ln.startswith(first)), None)
        if i is not None and j is not None and i < j:
            lines[i], lines[j] = lines[j], lines[i]
    return lines


def hunk_line(tag: str, text: str) -> list[str]:
    """A hunk line as a diff writes it, with its no-newline marker when it has no newline."""
    return [tag + text[:-1]] if text.endswith("\n") else [tag + text, NO_NEWLINE]


def _reverse_hunk(hunk: Hunk) -> list[str]:
    match = HUNK.match(hunk.header)
    old = match.group(1) + (f",{match.group(2)}" if match.group(2) is not None else "")
    new = match.group(3) + (f",{match.group(4)}" if match.group(4) is not None else "")
    out = [f"@@ -{new} +{old} @@{match.group(5)}"]
    removed: list[str] = []
    added: list[str] = []
    for tag, text in hunk.lines:
        if tag == " ":
            out.extend(removed + added)
            removed.clear()
            added.clear()
            out.extend(hunk_line(" ", text))
        else:
            (removed if tag == "+" else added).extend(hunk_line("-" if tag == "+" else "+", text))
    out.extend(removed + added)
    return out


def reverse_patch(patch: str) -> str:
    """The diff that undoes ``patch`` (see the module docstring)."""
    parts = _readable(parse_patch(patch))
    if not parts:
        raise PatchError("no file diffs found")
    lines: list[str] = []
    for part in parts:
        lines.extend(_reverse_header(part.header))
        for hunk in part.hunks:
            lines.extend(_reverse_hunk(hunk))
    return "\n".join(lines) + "\n"


# -- whole trees -------------------------------------------------------------------------------

def tree_patch(before: dict[str, str], after: dict[str, str], context: int = 3) -> str:
    """The git-style diff taking the tree ``before`` to ``after`` (path -> text), files in path
    order: a changed file with its hunks, an added one as ``new file mode 100644`` from
    ``/dev/null``, a removed one as ``deleted file mode 100644`` to ``/dev/null``. ``git apply``
    and ``apply_patch`` take it; an unchanged tree gives ``""``."""
    lines: list[str] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        lines.append(f"diff --git a/{path} b/{path}")
        if old is None:
            lines.append("new file mode 100644")
        elif new is None:
            lines.append("deleted file mode 100644")
        diff = diff_texts(path, path, old or "", new or "", context)
        if diff.hunks:
            lines.append("--- " + ("/dev/null" if old is None else f"a/{path}"))
            lines.append("+++ " + ("/dev/null" if new is None else f"b/{path}"))
        for hunk in diff.hunks:
            lines.append(f"@@ -{hunk.old_start},{hunk.old_len} +{hunk.new_start},{hunk.new_len} @@")
            for tag, text in hunk.lines:
                lines.extend(hunk_line(tag, text))
    return "\n".join(lines) + "\n" if lines else ""


def _tree_path(path: str | None) -> str | None:
    """``path`` when it names a file inside the tree; else PatchError (absolute, ``..``, empty)."""
    if path is None:
        return None
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or "" in parts:
        raise PatchError(f"the patch names {path!r}, which is not a path inside the repository")
    return path


def _git_header_name(line: str) -> str:
    """The name of ``diff --git a/NAME b/NAME`` (the same name twice, so spaces in it are no
    ambiguity); a rename's two names come from its ``rename from/to`` lines instead."""
    rest = line[len("diff --git a/"):] if line.startswith("diff --git a/") else ""
    name = rest[:(len(rest) - 3) // 2]
    if rest and rest == f"{name} b/{name}":
        return name
    match = re.match(r"diff --git a/(\S+) b/(\S+)$", line)
    if match is None:
        raise PatchError("a file diff names no file", "the patch is malformed")
    return match.group(1)


def _file_paths(part: FileDiff) -> tuple[str | None, str | None]:
    """(path before, path after) of one file diff; None where the file does not exist."""
    if any(line.startswith("--- ") for line in part.header):
        old, new = part.old_path, part.new_path
    else:  # no ---/+++ lines (an empty new file, a pure rename): the names of 'diff --git'
        old = new = _git_header_name(part.header[0] if part.header else "")
    for line in part.header:
        if line.startswith("new file mode "):
            old = None
        elif line.startswith("deleted file mode "):
            new = None
        elif line.startswith("rename from "):
            old = line[len("rename from "):]
        elif line.startswith("rename to "):
            new = line[len("rename to "):]
    return _tree_path(old), _tree_path(new)


def apply_patch(files: dict[str, str], patch: str) -> dict[str, str]:
    """``files`` (path -> text) with every file diff of ``patch`` applied exactly, in order: new
    files created, deleted ones removed (their whole text must be removed), renames moved. Raises
    ``InputError`` (``PatchError`` for the patch's own faults) when a hunk does not fit, a created
    file exists, a changed file does not, a path leaves the tree, or a diff is binary."""
    tree = dict(files)
    for part in parse_patch(patch):
        if part.unreadable:
            raise PatchError(f"{part.path or 'a file'}: a {part.unreadable} diff cannot be applied to text files")
        old, new = _file_paths(part)
        if old is None and new is None:
            raise PatchError("a file diff names no file", "the patch is malformed")
        if old is not None and old not in tree:
            raise PatchError(f"{old}: the patch changes a file the repository does not have")
        if new is not None and new != old and new in tree:
            raise PatchError(f"{new}: the patch creates a file the repository already has")
        text = apply_file_diff(tree[old] if old is not None else "", part)
        if new is None and text:
            raise PatchError(f"{old}: the patch deletes the file but leaves lines in it")
        if old is not None:
            del tree[old]
        if new is not None:
            tree[new] = text
    return tree
