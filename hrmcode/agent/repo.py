"""Repository tasks at their buggy state: what an agent works on and what grading starts from.

``load_repo_tasks(path, repos=, ids=)`` reads either

- a ``tasks`` artifact written by ``synthesize --source repo:`` (``tasks.jsonl`` with its
  ``repo-patch`` tasks and ``repository.jsonl``, the repository's files at the base commit): the
  buggy tree is ``repository.jsonl`` overlaid with each task's ``files`` (the bugged files);
- a ``tasks`` artifact of ``fetch swe-smith`` (no ``repository.jsonl``) or a SWE-smith instances
  ``.jsonl`` file, with ``repos``: a directory holding a git clone of each instance's repository, as
  ``repos/<owner>__<name>`` (the instance's ``repo`` with ``/`` written ``__``), ``repos/<name>``
  (its part after ``/``), that name without its ``.<commit>`` suffix, or the project name after
  ``__``. The tree is read from the clone at the instance's ``base_commit`` (or, without one, the
  commit its ``repo`` name ends with, as SWE-smith names its mirrors) with ``git archive``, which
  never changes the clone, and the instance's ``patch`` (the bug) is applied with
  ``hrmcode.diffs.apply_patch``.

A ``RepoTask``'s ``gold_patch`` is the task's ``solution.patch``: the reverse of the bug. Only text
files are kept: binary (not UTF-8) files, files over 1 MiB and symlinks are left out of a clone's
tree and counted in ``skipped_files``.

Errors are one line naming what is missing: no artifact there, no ``repository.jsonl`` and no
``repos``, no clone under ``repos`` (with the directories looked for), an instance without a base
commit, a commit the clone does not have, a bug patch that does not apply, a task without a test
command. Not guaranteed: that a clone's tree at the base commit is the tree SWE-smith's image
holds (its environment, generated files and submodules are not part of the tree).
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hrmcode.artifacts import load_artifact
from hrmcode.data.bugs import MAX_FILE_BYTES, REPOSITORY
from hrmcode.data.schema import Task, parse_task
from hrmcode.data.gitread import git_output
from hrmcode.data.sources.swe_smith import to_task
from hrmcode.diffs import apply_patch
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import read_jsonl_numbered

REPOS_HINT = "pass --repos DIR holding a git clone of each task's repository (DIR/<owner>__<name> or DIR/<name>)"


@dataclass
class RepoTask:
    id: str                           # the task id (swe-smith/<instance_id>)
    instance_id: str
    problem: str                      # what the agent is shown (task.prompt / problem_statement)
    files: dict[str, str]             # the WHOLE repository at its buggy state (text files)
    test_command: str                 # pytest command line (task.tests.command)
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    gold_patch: str                   # the fix: a unified diff buggy -> fixed (task.solution.patch)
    language: str = "python"
    skipped_files: int = 0            # files of a clone's tree left out (binary, over 1 MiB, symlinks)
    environment: dict | None = None   # the test environment its tests run in (``data.bugs.environments``)


def load_repo_tasks(path: Path | str, *, repos: Path | str | None = None, ids: list[str] | None = None,
                    workspace: Path | str | None = None) -> list[RepoTask]:
    """The repository tasks of ``path`` (module docstring), in file order; ``ids`` keeps those whose
    task id or instance id it names (an id matching none is a ``UsageError``)."""
    path = Path(path)
    repository: dict[str, str] | None = None
    if path.is_file():
        origin = str(path)
        tasks = [to_task(record, f"{path}:{lineno}") for lineno, record in read_jsonl_numbered(path)]
    else:
        artifact = load_artifact(path, "tasks", workspace)
        origin = str(artifact.path)
        tasks = [parse_task(record, f"{artifact.path}/tasks.jsonl:{lineno}")
                 for lineno, record in read_jsonl_numbered(artifact.file("tasks.jsonl"))]
        tasks = [task for task in tasks if task.kind == "repo-patch"]
        if (artifact.path / REPOSITORY).is_file():
            repository = {r["path"]: r["text"] for _, r in read_jsonl_numbered(artifact.file(REPOSITORY))}
    if ids:
        wanted = set(ids)
        tasks = [t for t in tasks if t.id in wanted or t.metadata.get("instance_id") in wanted]
        unknown = wanted - {t.id for t in tasks} - {t.metadata.get("instance_id") for t in tasks}
        if unknown:
            raise UsageError(f"{origin} has no repository task {sorted(unknown)[0]!r}"
                             + (f" (and {len(unknown) - 1} more ids)" if len(unknown) > 1 else ""),
                             "use the task ids of tasks.jsonl (swe-smith/<instance_id>) or the instance ids")
    if not tasks:
        raise InputError(f"{origin} holds no repository task (kind repo-patch)",
                         "give the artifact of `hrmcode synthesize --source repo:PATH` or `hrmcode fetch swe-smith`")
    if repository is None and repos is None:
        what = "holds SWE-smith instances, whose repository is not in them" if path.is_file() else \
            f"carries no {REPOSITORY} (the repository's files)"
        raise InputError(f"{origin} {what}", REPOS_HINT)
    clones = _Clones(Path(repos)) if repos is not None else None
    return [_repo_task(task, repository, clones) for task in tasks]


def _repo_task(task: Task, repository: dict[str, str] | None, clones: _Clones | None) -> RepoTask:
    instance_id = task.metadata.get("instance_id") or task.id.split("/", 1)[-1]
    if not task.tests.command:
        raise InputError(f"{task.id}: the task has no test command",
                         f"its language ({task.language}) has none hrmcode can grade; pick other tasks with --ids")
    skipped = 0
    if repository is not None:
        files = {**repository, **task.files}
    else:
        files, skipped = clones.buggy_tree(task.metadata, instance_id)
    return RepoTask(id=task.id, instance_id=instance_id, problem=task.prompt, files=files,
                    test_command=task.tests.command, fail_to_pass=list(task.tests.fail_to_pass),
                    pass_to_pass=list(task.tests.pass_to_pass), gold_patch=task.solution.patch or "",
                    language=task.language, skipped_files=skipped, environment=task.metadata.get("environment"))


def _git(clone: Path, *args: str) -> bytes:
    return git_output(clone, *args, hint="the clone must be a git repository holding the instances' base commits",
                      timeout_s=600)


class _Clones:
    """The git clones under ``repos`` and the text trees read from them, cached by (clone, commit)."""

    def __init__(self, repos: Path):
        self.repos = repos
        self.trees: dict[tuple[Path, str], tuple[dict[str, str], int]] = {}

    def candidates(self, repo: str) -> list[str]:
        name = repo.rsplit("/", 1)[-1]
        bare = re.sub(r"\.[0-9a-f]{7,40}$", "", name)
        names = [repo.replace("/", "__"), name, bare, bare.split("__", 1)[-1]]
        return list(dict.fromkeys(n for n in names if n and n not in (".", "..")))

    def clone(self, repo: str, instance_id: str) -> Path:
        names = self.candidates(repo)
        for name in names:
            if (self.repos / name).is_dir():
                return self.repos / name
        raise InputError(f"{instance_id}: no clone of {repo} under {self.repos} (looked for "
                         f"{', '.join(str(self.repos / n) for n in names)})", REPOS_HINT)

    def buggy_tree(self, instance: dict, instance_id: str) -> tuple[dict[str, str], int]:
        repo = str(instance.get("repo") or "")
        clone = self.clone(repo, instance_id)
        suffix = re.search(r"\.([0-9a-f]{7,40})$", repo)
        commit = instance.get("base_commit") or (suffix.group(1) if suffix else "")
        if not commit:
            raise InputError(f"{instance_id}: the instance has no base_commit, and its repo {repo!r} names no commit",
                             "add base_commit to the instance (the commit its patch applies to)")
        key = (clone, commit)
        if key not in self.trees:
            self.trees[key] = _read_tree(clone, commit)
        tree, skipped = self.trees[key]
        try:
            return apply_patch(tree, instance["patch"]), skipped
        except InputError as exc:
            raise InputError(f"{instance_id}: its patch does not apply to {clone} at {commit[:12]}: {exc.message}",
                             "the clone must be the repository the instance was made from") from None


def _read_tree(clone: Path, commit: str) -> tuple[dict[str, str], int]:
    """The text files of ``clone`` at ``commit`` (``git archive``: the clone is only read), and how
    many files were left out."""
    try:
        _git(clone, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    except InputError:
        raise InputError(f"{clone} has no commit {commit}",
                         "fetch it there (git fetch), or clone the repository again") from None
    data = _git(clone, "archive", "--format=tar", commit)
    files: dict[str, str] = {}
    skipped = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isdir():
                continue
            if not member.isfile() or member.size > MAX_FILE_BYTES:
                skipped += 1
                continue
            try:
                files[member.name] = tar.extractfile(member).read().decode("utf-8")
            except UnicodeDecodeError:
                skipped += 1
    return files, skipped
