"""hrmcode.diffs, the one unified-diff parser: the cases each of the two parsers it replaces
handled (file kinds of a git diff, counts, markers, names), read the same way by every user."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hrmcode.diffs import (
    PatchError,
    apply_file_diff,
    changed_files,
    content_diffs,
    diff_texts,
    header_path,
    parse_patch,
    reverse_patch,
)
from hrmcode.edits import MalformedEdit, parse_edits
from hrmcode.errors import InputError

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=ENV).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_every_file_kind_of_a_git_diff(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "my notes.txt").write_text("one\ntwo\n")
    (repo / "moved.txt").write_text("".join(f"line {n}\n" for n in range(10)))
    (repo / "gone.py").write_text("print('bye')\n")
    (repo / "run.sh").write_text("echo hi\n")
    (repo / "last.txt").write_text("a\nb")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "clean")
    (repo / "my notes.txt").write_text("one\nTWO\n")
    _git(repo, "mv", "moved.txt", "renamed.txt")
    _git(repo, "rm", "-q", "gone.py")
    (repo / "run.sh").chmod(0o755)
    (repo / "last.txt").write_text("a\nB")
    (repo / "added.py").write_text("x = 1\n")
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    _git(repo, "add", "-A")
    patch = _git(repo, "diff", "--cached", "-M", "--binary")

    parts = {part.header[0].rsplit(" b/", 1)[1]: part for part in parse_patch(patch)}
    assert set(parts) == {"my notes.txt", "renamed.txt", "gone.py", "run.sh", "last.txt", "added.py", "blob.bin"}
    assert parts["my notes.txt"].path == "my notes.txt"  # the trailing tab git writes after a name with a space
    assert parts["renamed.txt"].path == ""  # no ---/+++ lines: only the header names the file
    assert parts["added.py"].old_path is None and parts["gone.py"].new_path is None
    assert not parts["renamed.txt"].hunks and "rename from moved.txt" in parts["renamed.txt"].header
    assert not parts["run.sh"].hunks and parts["run.sh"].header[-1] == "new mode 100755"
    assert parts["blob.bin"].unreadable == "binary" and not parts["blob.bin"].hunks
    # a changed last line without a newline: the marker follows the removed line inside the hunk
    assert parts["last.txt"].hunks[0].lines == [(" ", "a\n"), ("-", "b"), ("+", "B")]
    assert apply_file_diff("a\nb", parts["last.txt"]) == "a\nB"
    assert apply_file_diff("one\ntwo\n", parts["my notes.txt"]) == "one\nTWO\n"

    # the files whose content changes, for synthesize; every path, for fetch (which refuses binary)
    assert [d.path for d in content_diffs(patch)] == ["added.py", "gone.py", "last.txt", "my notes.txt"]
    with pytest.raises(PatchError, match="binary"):
        changed_files(patch)
    text = _git(repo, "diff", "--cached", "-M", "--", ".", ":!blob.bin")
    assert changed_files(text) == ["added.py", "gone.py", "last.txt", "my notes.txt", "renamed.txt", "run.sh"]
    assert reverse_patch(reverse_patch(text)) == text


def test_names_counts_and_sections():
    patch = ("--- a/dir/my file.py\t2024-01-01 00:00:00.000000000 +0000\n+++ b/dir/my file.py\t2024-01-02\n"
             "@@ -3 +3 @@ def f():\n-x\n+y\n@@ -9,0 +10,2 @@\n+p\n+q\n")
    (diff,) = parse_patch(patch)
    assert diff.old_path == diff.new_path == diff.path == "dir/my file.py"
    first, second = diff.hunks
    assert (first.old_start, first.old_len, first.new_start, first.new_len, first.section) == (3, 1, 3, 1, "def f():")
    assert (second.old_start, second.old_len, second.new_start, second.new_len, second.section) == (9, 0, 10, 2, "")
    assert (diff.added, diff.removed) == (3, 1)
    assert reverse_patch(patch).splitlines()[2:] == ["@@ -3 +3 @@ def f():", "-y", "+x", "@@ -10,2 +9,0 @@", "-p", "-q"]
    assert [header_path(n) for n in ("/dev/null", "a/x.py", "b/x.py", "x.py\t1970", "plain.py ")] == [
        None, "x.py", "x.py", "x.py", "plain.py"]


def test_plain_diffs_blank_context_and_preamble():
    patch = ("Fix the thing.\n\n--- x.py\n+++ x.py\n@@ -1,3 +1,3 @@\n a\n\n-b\n+B\n"
             "--- y.py\n+++ y.py\n@@ -1 +1 @@\n-c\n+C\n")
    x, y = parse_patch(patch)
    assert x.hunks[0].lines == [(" ", "a\n"), (" ", "\n"), ("-", "b\n"), ("+", "B\n")]
    assert apply_file_diff("a\n\nb\n", x) == "a\n\nB\n"
    assert (y.path, y.hunks[0].new_text()) == ("y.py", "C\n")
    assert changed_files(patch) == ["x.py", "y.py"]


def test_malformed_hunks_are_input_errors_with_their_reason():
    with pytest.raises(PatchError, match="unexpected line in hunk") as caught:
        parse_patch("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\nb\n")
    assert isinstance(caught.value, InputError)
    with pytest.raises(InputError, match="shorter than its header"):
        content_diffs("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n")
    with pytest.raises(PatchError, match="combined"):
        reverse_patch("diff --cc x.py\nindex 1,2..3\n--- a/x.py\n+++ b/x.py\n@@@ -1,1 -1,1 +1,1 @@@\n- a\n -b\n++c\n")
    with pytest.raises(PatchError, match="copy"):
        reverse_patch("diff --git a/x b/y\nsimilarity index 100%\ncopy from x\ncopy to y\n")


def test_apply_refuses_a_patch_that_does_not_fit_and_diff_texts_keeps_a_missing_newline():
    diff = diff_texts("x.py", "x.py", "a\nb\nc", "a\nB\nc")
    assert diff.hunks[0].lines[-1] == (" ", "c")
    assert apply_file_diff("a\nb\nc", diff) == "a\nB\nc"
    with pytest.raises(InputError, match="does not fit"):
        apply_file_diff("a\nX\nc", diff)


def test_udiff_edits_read_names_as_the_parser_does():
    reply = "```diff\n--- a/src/x.py\t2024\n+++ b/src/x.py\t2024\n@@ -1 +1 @@\n-a\n+b\n```\n"
    (edit,) = parse_edits(reply, "udiff", ["src/x.py"])
    assert (edit.path, edit.before, edit.after) == ("src/x.py", "a\n", "b\n")
    with pytest.raises(MalformedEdit, match="deleting files"):
        parse_edits("```diff\n--- a/src/x.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n```\n", "udiff", ["src/x.py"])
    with pytest.raises(MalformedEdit, match="without '--- path'"):
        parse_edits("```diff\n@@ -1 +1 @@\n-a\n+b\n```\n", "udiff", ["src/x.py"])
