"""Repository tasks at their buggy state (``hrmcode.agent.repo``): from a ``synthesize --source
repo:`` artifact, and from SWE-smith instances with their repository from a git clone (``--repos``),
which gives the same trees and never changes the clone; one-line errors for everything missing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hrmcode.agent.repo import RepoTask, load_repo_tasks
from hrmcode.diffs import apply_patch
from hrmcode.errors import ArtifactError, HrmcodeError, InputError, UsageError
from hrmcode.jsonl import read_jsonl
from tests.agent._repo_tasks import TEST_CMD, demo_tasks
from tests.synth.conftest import commit_tree


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(the demo clone, its tasks artifact, its instances)."""
    from tests._sandboxes import real_sandbox

    real_sandbox("local")  # skips without bubblewrap
    clone, artifact = demo_tasks(tmp_path_factory.mktemp("repo"), max_bugs=3)
    return clone, artifact, list(read_jsonl(artifact / "instances.jsonl"))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _instances(path: Path, instances: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in instances), encoding="utf-8")
    return path


def test_tasks_of_a_synthesized_artifact_are_the_repository_with_the_bug(demo):
    clone, artifact, instances = demo
    tasks = load_repo_tasks(artifact)
    assert [t.instance_id for t in tasks] == sorted(i["instance_id"] for i in instances)
    head = {r["path"]: r["text"] for r in read_jsonl(artifact / "repository.jsonl")}
    for task, instance in zip(tasks, sorted(instances, key=lambda i: i["instance_id"]), strict=True):
        assert isinstance(task, RepoTask) and task.id == f"swe-smith/{task.instance_id}"
        assert task.files == apply_patch(head, instance["patch"]) and set(task.files) == set(head)
        assert apply_patch(task.files, task.gold_patch) == head
        assert task.fail_to_pass == instance["FAIL_TO_PASS"] and task.pass_to_pass == instance["PASS_TO_PASS"]
        assert task.test_command.startswith(TEST_CMD) and task.language == "python" and task.skipped_files == 0
        # the problem is the instance's issue text, which never names the instance (its bug type)
        assert task.problem == instance["problem_statement"] and task.instance_id not in task.problem


def test_ids_pick_tasks_by_task_id_or_instance_id(demo):
    _, artifact, instances = demo
    first, second = sorted(i["instance_id"] for i in instances)[:2]
    picked = load_repo_tasks(artifact, ids=[f"swe-smith/{first}", second])
    assert [t.instance_id for t in picked] == [first, second]
    with pytest.raises(UsageError, match="has no repository task 'nope'"):
        load_repo_tasks(artifact, ids=[first, "nope"])


@pytest.mark.parametrize("layout", ["name", "repo-field", "bare", "owner-prefixed"])
def test_instances_with_a_clone_give_the_same_tasks_and_leave_the_clone_as_it_was(demo, tmp_path, layout):
    clone, artifact, instances = demo
    repo_field = instances[0]["repo"]  # local__demo.<commit8>
    if layout == "owner-prefixed":
        instances = [{**i, "repo": f"swesmith/{repo_field}"} for i in instances]
    names = {"name": "demo", "repo-field": repo_field, "bare": repo_field.split(".")[0],
             "owner-prefixed": f"swesmith__{repo_field}"}
    repos = tmp_path / "repos"
    repos.mkdir()
    os.symlink(clone, repos / names[layout])
    status, head = _git(clone, "status", "--porcelain", "--ignored"), _git(clone, "rev-parse", "HEAD")
    from_clone = load_repo_tasks(_instances(tmp_path / "instances.jsonl", instances), repos=repos)
    from_artifact = load_repo_tasks(artifact)
    assert [(t.id, t.files, t.gold_patch, t.fail_to_pass, t.pass_to_pass) for t in from_clone] == \
           [(t.id, t.files, t.gold_patch, t.fail_to_pass, t.pass_to_pass) for t in from_artifact]
    assert _git(clone, "status", "--porcelain", "--ignored") == status and _git(clone, "rev-parse", "HEAD") == head


def test_a_fetched_swe_smith_artifact_needs_repos(demo, tmp_path, cli):
    clone, artifact, instances = demo
    fetched = tmp_path / "fetched"
    result = cli("fetch", "swe-smith", "--from", str(artifact / "instances.jsonl"), "-o", str(fetched))
    assert result.exit_code == 0, result.stderr
    with pytest.raises(InputError, match="carries no repository.jsonl") as info:
        load_repo_tasks(fetched)
    assert "--repos" in str(info.value)
    repos = tmp_path / "repos"
    repos.mkdir()
    os.symlink(clone, repos / "demo")
    tasks = load_repo_tasks(fetched, repos=repos)
    assert {t.id: t.files for t in tasks} == {t.id: t.files for t in load_repo_tasks(artifact)}
    # the fetched tasks carry SWE-smith's default command; the repository's own is the synthesized one
    assert all("pytest" in t.test_command for t in tasks)


def test_without_base_commit_the_commit_in_the_repo_name_is_used(demo, tmp_path):
    clone, artifact, instances = demo
    repos = tmp_path / "repos"
    repos.mkdir()
    os.symlink(clone, repos / "demo")
    stripped = [{k: v for k, v in i.items() if k != "base_commit"} for i in instances]
    tasks = load_repo_tasks(_instances(tmp_path / "i.jsonl", stripped), repos=repos)
    assert [t.files for t in tasks] == [t.files for t in load_repo_tasks(artifact)]
    nameless = [{**i, "repo": "local__demo"} for i in stripped]
    with pytest.raises(InputError, match="has no base_commit, and its repo 'local__demo' names no commit"):
        load_repo_tasks(_instances(tmp_path / "j.jsonl", nameless), repos=repos)


def test_one_line_errors_for_what_is_missing(demo, tmp_path):
    clone, artifact, instances = demo
    repos = tmp_path / "repos"
    repos.mkdir()
    path = _instances(tmp_path / "i.jsonl", instances[:1])
    with pytest.raises(InputError, match="no clone of local__demo") as info:
        load_repo_tasks(path, repos=repos)
    for name in ("local__demo.", "/local__demo,", "/demo)"):
        assert name in str(info.value)
    with pytest.raises(InputError, match="holds SWE-smith instances, whose repository is not in them"):
        load_repo_tasks(path)
    with pytest.raises(ArtifactError, match="no artifact"):
        load_repo_tasks(tmp_path / "nothing-here")
    os.symlink(clone, repos / "demo")
    unknown = _instances(tmp_path / "u.jsonl", [{**instances[0], "base_commit": "0" * 40}])
    with pytest.raises(InputError, match="repos/demo has no commit 0000"):
        load_repo_tasks(unknown, repos=repos)
    bad = instances[0]["patch"].replace("\n ", "\n #", 1)
    wrong = _instances(tmp_path / "w.jsonl", [{**instances[0], "patch": bad}])
    with pytest.raises(InputError, match=f"{instances[0]['instance_id']}: its patch does not apply to "):
        load_repo_tasks(wrong, repos=repos)
    assert "\n" not in str(info.value) and isinstance(info.value, HrmcodeError)


def test_a_clone_tree_keeps_text_files_only_and_counts_the_rest(tmp_path):
    repo = tmp_path / "repos" / "pkg"
    repo.mkdir(parents=True)
    (repo / "a.py").write_text("def f():\n    return 1\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (repo / "big.txt").write_text("x" * ((1 << 20) + 1))
    os.symlink("a.py", repo / "link.py")
    commit_tree(repo, "pkg")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    bug = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1,2 +1,2 @@\n def f():\n-    return 1\n+    return 2\n"
    instance = {"instance_id": "x__pkg.1.func_pm_op__1", "repo": "x/pkg", "patch": bug, "base_commit": commit,
                "FAIL_TO_PASS": ["tests/test_a.py::test_f"], "PASS_TO_PASS": []}
    [task] = load_repo_tasks(_instances(tmp_path / "i.jsonl", [instance]), repos=tmp_path / "repos")
    assert task.files == {"a.py": "def f():\n    return 2\n"} and task.skipped_files == 3
    assert apply_patch(task.files, task.gold_patch) == {"a.py": "def f():\n    return 1\n"}


@pytest.mark.shared
def test_the_shared_swe_smith_sample_names_the_clones_it_needs(shared_dir, tmp_path):
    sample = shared_dir / "swe-smith-sample" / "instances.jsonl"
    if not sample.is_file():
        pytest.skip(f"{sample} not found")
    first = next(read_jsonl(sample))
    (tmp_path / "repos").mkdir()
    with pytest.raises(InputError, match="no clone of " + first["repo"]) as info:
        load_repo_tasks(sample, repos=tmp_path / "repos")
    owner_name = first["repo"].split("/")[-1]
    assert f"{tmp_path / 'repos' / owner_name}" in str(info.value)
