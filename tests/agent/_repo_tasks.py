"""Repository tasks for the agent tests: bugs injected into ``examples/demo-repo`` by
``synthesize --source repo:``'s library call in the real local sandbox, and the grading hostile
corpus (``hostile_grading/*.attack``) read into file changes."""

from __future__ import annotations

import shutil
from pathlib import Path

from hrmcode.data.bugs import repo_tasks
from tests._sandboxes import read_attack, real_sandbox
from tests.synth.conftest import commit_tree

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-repo"
HOSTILE = Path(__file__).parent / "hostile_grading"
TEST_CMD = "python3 -m pytest -q tests"  # python3: the docker image has no `python`


def demo_tasks(root: Path, max_bugs: int = 4) -> tuple[Path, Path]:
    """(the git clone of the demo repository, the tasks artifact of its validated bugs) under ``root``."""
    repo = root / "demo"
    shutil.copytree(DEMO, repo)
    commit_tree(repo, "demo")
    result = repo_tasks(str(repo), test_cmd=TEST_CMD, max_bugs=max_bugs, out=root / "tasks",
                        sandbox=real_sandbox("local"))
    return repo, result.artifact.path


def attack_changes(path: Path, files: dict[str, str]) -> tuple[dict[str, str], dict[str, str | None]]:
    """An attack file's header, and its changes to ``files``: path -> new text, or None to delete.

    After the ``# key: value`` header, ``=== PATH`` starts a file's whole new text, ``=== -PATH``
    deletes it, ``=== ^PATH`` puts the text before the file's current text."""
    header, lines = read_attack(path)
    changes: dict[str, str | None] = {}
    current: str | None = None
    for line in lines:
        if line.startswith("=== "):
            mark = line[4:].strip()
            if mark.startswith("-"):
                changes[mark[1:]] = None
                current = None
                continue
            current = mark
            changes[current] = ""
            continue
        if current is not None:
            changes[current] += line
    for target in list(changes):
        if target.startswith("^"):
            changes[target[1:]] = changes.pop(target) + files[target[1:]]
    return header, changes
