"""Unified (git) diffs: parse, list changed files, and reverse.

``reverse_patch(patch)`` turns a diff that takes A to B into one that takes B to A: ``---``/``+++``
names and ``a/``/``b/`` prefixes swapped, ``new file``/``deleted file`` and ``rename from/to``
swapped, ``index X..Y`` swapped, each hunk's ranges swapped and its ``+``/``-`` lines exchanged
(within each change run the removals are put first, as ``git diff`` writes them). Hunk bodies are
read by their line counts, so a removed line that itself starts with ``--`` is not taken for a
header. Applying the result with ``git apply`` gives what ``git apply --reverse`` gives.

Not supported: binary patches (``GIT binary patch``), combined (merge) diffs; both raise
``PatchError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")


class PatchError(ValueError):
    """The text is not a unified diff this module can handle."""


@dataclass
class FileDiff:
    header: list[str] = field(default_factory=list)  # 'diff --git', mode/index lines, '---', '+++'
    hunks: list[tuple[str, list[str]]] = field(default_factory=list)  # (header line, body lines)
    old_path: str | None = None
    new_path: str | None = None


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t", 1)[0]
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith(("a/", "b/")) else name


def parse_patch(patch: str) -> list[FileDiff]:
    """Split a unified diff into per-file parts (lines keep no newline; a final newline is implied)."""
    lines = patch.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FileDiff] = []
    current: FileDiff | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git ") or (line.startswith("--- ") and (current is None or current.hunks)):
            current = FileDiff()
            files.append(current)
        if current is None:
            i += 1  # preamble text before the first file (e.g. a commit message)
            continue
        if line.startswith("GIT binary patch") or line.startswith("diff --cc "):
            raise PatchError("binary or combined diffs cannot be reversed")
        match = HUNK.match(line)
        if match:
            old_len = int(match.group(2)) if match.group(2) is not None else 1
            new_len = int(match.group(4)) if match.group(4) is not None else 1
            body: list[str] = []
            i += 1
            while (old_len > 0 or new_len > 0) and i < len(lines):
                body_line = lines[i]
                tag = body_line[:1]
                if tag == " " or body_line == "":
                    old_len -= 1
                    new_len -= 1
                elif tag == "-":
                    old_len -= 1
                elif tag == "+":
                    new_len -= 1
                elif tag != "\\":
                    raise PatchError(f"unexpected line in hunk: {body_line[:60]!r}")
                body.append(body_line)
                i += 1
            if old_len > 0 or new_len > 0:
                raise PatchError("hunk is shorter than its header says")
            while i < len(lines) and lines[i].startswith("\\"):
                body.append(lines[i])  # '\ No newline at end of file' after the last line
                i += 1
            current.hunks.append((line, body))
            continue
        if line.startswith("--- "):
            current.old_path = _strip_prefix(line[4:])
        elif line.startswith("+++ "):
            current.new_path = _strip_prefix(line[4:])
        current.header.append(line)
        i += 1
    return files


def changed_files(patch: str) -> list[str]:
    """Paths a patch touches (new name for renames/additions, old name for deletions), in order."""
    paths = []
    for part in parse_patch(patch):
        path = part.new_path or part.old_path
        if path is None:
            match = re.match(r"diff --git a/(\S+) b/(\S+)", part.header[0]) if part.header else None
            path = match.group(2) if match else None
        if path and path not in paths:
            paths.append(path)
    return paths


_SWAP_PREFIX = {"a/": "b/", "b/": "a/"}


def _swap_name(name: str) -> str:
    return _SWAP_PREFIX[name[:2]] + name[2:] if name[:2] in _SWAP_PREFIX else name


def _reverse_header(header: list[str]) -> list[str]:
    old_line = next((ln for ln in header if ln.startswith("--- ")), None)
    new_line = next((ln for ln in header if ln.startswith("+++ ")), None)
    result = []
    for line in header:
        if line.startswith("diff --git "):
            match = re.match(r"diff --git (\S+) (\S+)$", line)
            result.append(f"diff --git {_swap_name(match.group(2))} {_swap_name(match.group(1))}" if match else line)
        elif line.startswith("new file mode "):
            result.append("deleted file mode " + line[len("new file mode "):])
        elif line.startswith("deleted file mode "):
            result.append("new file mode " + line[len("deleted file mode "):])
        elif line.startswith("old mode "):
            result.append("new mode " + line[len("old mode "):])
        elif line.startswith("new mode "):
            result.append("old mode " + line[len("new mode "):])
        elif line.startswith("rename from "):
            result.append("rename to " + line[len("rename from "):])
        elif line.startswith("rename to "):
            result.append("rename from " + line[len("rename to "):])
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


def _reverse_hunk(header: str, body: list[str]) -> list[str]:
    match = HUNK.match(header)
    old = match.group(1) + (f",{match.group(2)}" if match.group(2) is not None else "")
    new = match.group(3) + (f",{match.group(4)}" if match.group(4) is not None else "")
    out = [f"@@ -{new} +{old} @@{match.group(5)}"]
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        out.extend(removed)
        out.extend(added)
        removed.clear()
        added.clear()

    last: list[str] | None = None
    for line in body:
        tag = line[:1]
        if tag == "+":
            removed.append("-" + line[1:])
            last = removed
        elif tag == "-":
            added.append("+" + line[1:])
            last = added
        elif tag == "\\":
            (last if last is not None else out).append(line)  # stays with the line it follows
        else:
            flush()
            out.append(line)
            last = out
    flush()
    return out


def reverse_patch(patch: str) -> str:
    """The diff that undoes ``patch`` (see the module docstring)."""
    parts = parse_patch(patch)
    if not parts:
        raise PatchError("no file diffs found")
    lines: list[str] = []
    for part in parts:
        lines.extend(_reverse_header(part.header))
        for header, body in part.hunks:
            lines.extend(_reverse_hunk(header, body))
    return "\n".join(lines) + "\n"
