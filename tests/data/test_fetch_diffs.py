"""reverse_patch: applying the reverse of a bug patch with `git apply` restores the original files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hrmcode.diffs import PatchError, changed_files, reverse_patch

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t"}

ORIGINAL = {
    "src/calc/ops.py": "def add(a, b):\n    return a + b\n\n\ndef clamp(value, low, high):\n"
                       "    if value < low:\n        return low\n    if value > high:\n        return high\n    return value\n",
    "src/query.sql": "-- totals per day\nSELECT day, SUM(x)\nFROM t\nGROUP BY day;\n",
    "README": "calc\nno newline at the end",
    "old_name.txt": "one\ntwo\nthree\nfour\nfive\nsix\n",
    "gone.py": "print('bye')\n",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=ENV).stdout


def _snapshot(repo: Path) -> dict[str, str]:
    return {p.relative_to(repo).as_posix(): p.read_text() for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts}


@pytest.fixture
def bugged_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repo whose HEAD holds a bug commit; returns (repo, the bug patch as `git diff` wrote it)."""
    repo = tmp_path / "repo"
    for rel, text in ORIGINAL.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "clean")
    # the bug: edits in two hunks, a removed line starting with '--', a no-newline change,
    # a rename with an edit, a deleted file and a new file
    ops = repo / "src/calc/ops.py"
    ops.write_text(ops.read_text().replace("a + b", "a - b").replace("value > high", "value >= high"))
    (repo / "src/query.sql").write_text("SELECT day, SUM(x)\nFROM t\nGROUP BY day;\n")
    (repo / "README").write_text("calc\nno newline at the end, changed")
    _git(repo, "mv", "old_name.txt", "new_name.txt")
    (repo / "new_name.txt").write_text("one\ntwo\nTHREE\nfour\nfive\nsix\n")
    _git(repo, "rm", "-q", "gone.py")
    (repo / "added.py").write_text("x = 1\n")
    _git(repo, "add", "-A")
    patch = _git(repo, "diff", "--cached", "-M")
    _git(repo, "commit", "-qm", "bug")
    return repo, patch


def test_reverse_patch_applied_with_git_restores_the_original(bugged_repo):
    repo, bug = bugged_repo
    assert "rename from old_name.txt" in bug and "\\ No newline at end of file" in bug and "\n--- a/gone.py" in bug
    fix = reverse_patch(bug)
    (repo.parent / "fix.diff").write_text(fix)
    _git(repo, "apply", "--check", str(repo.parent / "fix.diff"))
    _git(repo, "apply", "--index", str(repo.parent / "fix.diff"))
    assert _snapshot(repo) == ORIGINAL


def test_reverse_matches_git_apply_reverse(bugged_repo, tmp_path):
    repo, bug = bugged_repo
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    _git(other, "update-index", "-q", "--refresh")  # copied files have new stat data
    (tmp_path / "bug.diff").write_text(bug)
    _git(other, "apply", "--reverse", "--index", str(tmp_path / "bug.diff"))
    (tmp_path / "fix.diff").write_text(reverse_patch(bug))
    _git(repo, "apply", "--index", str(tmp_path / "fix.diff"))
    assert _snapshot(repo) == _snapshot(other)


def test_reversing_twice_gives_the_original_patch(bugged_repo):
    _, bug = bugged_repo
    assert reverse_patch(reverse_patch(bug)) == bug


def test_hunk_ranges_and_headers_are_swapped():
    patch = (
        "diff --git a/x.py b/x.py\nindex 1111111..2222222 100644\n--- a/x.py\n+++ b/x.py\n"
        "@@ -1,3 +1,2 @@ def f():\n a\n-b\n-c\n+B\n"
    )
    assert reverse_patch(patch) == (
        "diff --git a/x.py b/x.py\nindex 2222222..1111111 100644\n--- a/x.py\n+++ b/x.py\n"
        "@@ -1,2 +1,3 @@ def f():\n a\n-B\n+b\n+c\n"
    )
    assert changed_files(patch) == ["x.py"]


def test_binary_and_truncated_patches_are_refused():
    with pytest.raises(PatchError):
        reverse_patch("diff --git a/x.bin b/x.bin\nindex 1..2 100644\nGIT binary patch\nliteral 3\n")
    with pytest.raises(PatchError, match="shorter than its header"):
        reverse_patch("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n")
    with pytest.raises(PatchError, match="no file diffs"):
        reverse_patch("just text\n")
