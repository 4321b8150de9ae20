"""Repository task sets for the agent tests: bugs injected by ``hrmcode synthesize --source repo:``.

Three sets, each built once per test session (module docstring of ``hrmcode.data.bugs`` for how):

- ``demo``: ``examples/demo-repo``;
- ``inflection`` and ``toolz``: two real PyPI projects, pure Python and dependency-free, whose
  sdists carry their own pytest suites. Their sdists are downloaded with pip
  (``pip download --no-deps --no-binary :all:``) into the session's tmp dir, unpacked, and
  committed as a git repository with a fixed author and date, so the same versions give the same
  tasks.

Network: when PyPI cannot be reached the PyPI sets FAIL with what pip said, unless
``HRMCODE_OFFLINE=1`` says the machine is offline on purpose (then they are skipped with that reason).
Without bubblewrap every set is skipped (``tests/_sandboxes.real_sandbox``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrmcode.agent.repo import RepoTask, load_repo_tasks

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo-repo"
OFFLINE_ENV = "HRMCODE_OFFLINE"
GIT_DATE = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class PypiProject:
    requirement: str   # NAME==VERSION
    test_command: str  # its own suite, as synthesize runs it
    max_bugs: int      # candidate bugs to try (kept small so the suite stays fast)


PYPI_PROJECTS = {
    "inflection": PypiProject("inflection==0.5.1", "python -m pytest -q test_inflection.py", 4),
    "toolz": PypiProject("toolz==1.0.0", "python -m pytest -q toolz/tests", 4),
}
TASK_SETS = ("demo", *PYPI_PROJECTS)


@dataclass(frozen=True)
class TaskSet:
    name: str
    path: Path             # the tasks artifact (tasks.jsonl + repository.jsonl)
    tasks: list[RepoTask]


def hrmcode(*args: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    """``python -m hrmcode ARGS`` as a separate process (no progress bars)."""
    env = {**os.environ, "HRMCODE_NO_PROGRESS": "1", **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "hrmcode", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, **kwargs)


def git_commit(repo: Path) -> None:
    """``git init`` + one commit of everything, with a fixed author and date."""
    env = {**os.environ, "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE}
    git = ["git", "-C", str(repo), "-c", "user.name=hrmcode-tests", "-c", "user.email=tests@hrmcode.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base", "--no-verify"]):
        subprocess.run([*git, *args], check=True, env=env, capture_output=True)


def synthesize_tasks(repo: Path, workspace: Path, test_command: str, max_bugs: int) -> Path:
    made = hrmcode("--workspace", str(workspace), "synthesize", "--source", f"repo:{repo}", "--test-cmd", test_command,
                   "--max-bugs", str(max_bugs), "--levels", "plan")
    assert made.returncode == 0, f"synthesize --source repo:{repo} failed:\n{made.stderr}"
    [tasks] = [p for p in (workspace / "fetch").glob("*/*") if (p / "tasks.jsonl").is_file()]
    return tasks


def download_sdist(requirement: str, into: Path) -> Path:
    """The sdist of ``requirement`` from PyPI (pip), or a test failure saying why (a skip under HRMCODE_OFFLINE=1)."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                                  requirement, "-d", str(into)], capture_output=True, text=True, timeout=300)
        failure = None if fetched.returncode == 0 else fetched.stderr.strip()[-800:]
    except subprocess.TimeoutExpired:
        failure = "pip download timed out after 300 s"
    sdists = sorted(into.glob("*.tar.gz"))
    if failure is not None or not sdists:
        why = failure or "pip wrote no .tar.gz"
        if os.environ.get(OFFLINE_ENV) == "1":
            pytest.skip(f"{OFFLINE_ENV}=1 and the sdist of {requirement} could not be downloaded: {why}")
        pytest.fail(f"could not download the sdist of {requirement} from PyPI (set {OFFLINE_ENV}=1 on a machine "
                    f"that is offline on purpose): {why}")
    return sdists[0]


def unpack_sdist(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")  # no owners, no links out of the tree
    [root] = [p for p in into.iterdir() if p.is_dir()]
    return root


@pytest.fixture(scope="session")
def task_root(tmp_path_factory) -> Path:
    from tests._sandboxes import real_sandbox

    real_sandbox("local")  # skips without bubblewrap
    return tmp_path_factory.mktemp("agent-tasks")


@pytest.fixture(scope="session")
def demo_task_set(task_root: Path) -> TaskSet:
    repo = task_root / "demo" / "repo"
    shutil.copytree(DEMO, repo)
    git_commit(repo)
    path = synthesize_tasks(repo, task_root / "demo" / "ws", "python -m pytest -q tests", max_bugs=4)
    return TaskSet("demo", path, load_repo_tasks(path))


def _pypi_task_set(name: str, task_root: Path) -> TaskSet:
    project = PYPI_PROJECTS[name]
    base = task_root / name
    sdist = download_sdist(project.requirement, base / "sdist")
    repo = unpack_sdist(sdist, base / "src")
    git_commit(repo)
    path = synthesize_tasks(repo, base / "ws", project.test_command, project.max_bugs)
    return TaskSet(name, path, load_repo_tasks(path))


@pytest.fixture(scope="session")
def inflection_task_set(task_root: Path) -> TaskSet:
    return _pypi_task_set("inflection", task_root)


@pytest.fixture(scope="session")
def toolz_task_set(task_root: Path) -> TaskSet:
    return _pypi_task_set("toolz", task_root)


@pytest.fixture(params=TASK_SETS)
def task_set(request) -> TaskSet:
    """Each of the three task sets in turn."""
    found = request.getfixturevalue(f"{request.param}_task_set")
    assert len(found.tasks) >= 2, f"{found.name}: synthesize made {len(found.tasks)} task(s); the tests need 2 or more"
    return found
