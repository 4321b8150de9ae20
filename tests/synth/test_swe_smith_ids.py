"""Instance ids and image names that ``synthesize --source repo:`` writes, read back with SWE-smith's
own parsing rules. The rules are re-implemented here from swesmith 0.0.9 (PyPI wheel; the same code
as SWE-bench/SWE-smith on GitHub), each with the file it comes from."""

from __future__ import annotations

import json
import shutil

import pytest

from hrmcode.data.bugs import read_repo, repo_tasks, swe_smith_image_name, swe_smith_repo_name
from hrmcode.data.sources import fetch
from hrmcode.jsonl import read_jsonl

COMMIT = "ef069668c0ffee00112233445566778899aabbcc"


def profile_key(instance: dict) -> str:
    """swesmith/profiles/base.py, Registry.get_from_inst: the key of the repository's profile."""
    return instance.get("repo", instance["instance_id"].rsplit(".", 1)[0])


def profile_repo_name(owner: str, repo: str, commit: str) -> str:
    """swesmith/profiles/base.py, RepoProfile.repo_name."""
    return f"{owner}__{repo}.{commit[:8]}"


def profile_image_name(owner: str, repo: str, commit: str, org_dh: str = "swebench", arch: str = "x86_64") -> str:
    """swesmith/profiles/base.py, RepoProfile.image_name (org_dh = constants.ORG_NAME_DH)."""
    return f"{org_dh}/swesmith.{arch}.{owner}_1776_{repo}.{commit[:8]}".lower()


def bug_part(instance_id: str) -> str:
    """swesmith/bug_gen/combine/same_file.py: ``x[KEY_INSTANCE_ID].split(".")[-1]``."""
    return instance_id.split(".")[-1]


def bug_type(instance_id: str) -> str:
    """swesmith/train/traj_mgr/combine_trajs.py: ``k.rsplit(".", 1)[-1].rsplit("_", 1)[0]``, every
    procedural type counted as ``func_pm``."""
    bug = instance_id.rsplit(".", 1)[-1].rsplit("_", 1)[0]
    return "func_pm" if bug.startswith("func_pm") else bug


def dataset_repo(instance_id: str) -> str:
    """How users of SWE-smith's datasets name the repository: ``instance_id.split(".")[0]``
    (then ``__`` -> ``/``), which a dot inside the repository name cuts short."""
    return instance_id.split(".")[0].replace("__", "/", 1)


def assert_swe_smith_parses(instance: dict, owner: str, repo: str, commit: str, kind: str) -> None:
    instance_id = instance["instance_id"]
    repo_part, commit8, bug = instance_id.split(".")  # exactly three parts: no dot inside a name
    assert profile_key(instance) == profile_key({"instance_id": instance_id}) == f"{repo_part}.{commit8}"
    assert profile_key(instance) == profile_repo_name(owner, repo, commit)  # profiles/base.py:553's assert
    assert dataset_repo(instance_id) == f"{owner}/{repo}"
    assert bug_part(instance_id) == bug and bug.startswith(f"func_pm_{kind}__") and bug_type(instance_id) == "func_pm"
    assert instance["image_name"] == profile_image_name(owner, repo, commit)


def test_dots_in_the_repository_name_become_underscores():
    assert swe_smith_repo_name("local", "toolz-1.0.0", COMMIT) == "local__toolz-1_0_0.ef069668"
    assert swe_smith_repo_name("pdfminer", "pdfminer.six", COMMIT) == "pdfminer__pdfminer_six.ef069668"
    image = swe_smith_image_name("local", "toolz-1.0.0", COMMIT)
    assert image == "swebench/swesmith.x86_64.local_1776_toolz-1_0_0.ef069668"
    assert swe_smith_image_name("Pallets", "Flask", COMMIT) == "swebench/swesmith.x86_64.pallets_1776_flask.ef069668"
    instance = {"instance_id": f"{swe_smith_repo_name('local', 'toolz-1.0.0', COMMIT)}.func_pm_op_flip__e655932a",
                "repo": swe_smith_repo_name("local", "toolz-1.0.0", COMMIT),
                "image_name": swe_smith_image_name("local", "toolz-1.0.0", COMMIT)}
    assert_swe_smith_parses(instance, "local", "toolz-1_0_0", COMMIT, "op_flip")
    # the old form breaks the dataset users' split: the repository would read "local/toolz-1"
    assert dataset_repo("local__toolz-1.0.0.ef069668.func_pm_op_flip__e655932a") == "local/toolz-1"


def test_read_repo_of_a_dotted_directory(minirepo, tmp_path):
    dotted = tmp_path / "minipkg-1.0.0"
    shutil.copytree(minirepo, dotted)
    info = read_repo(dotted)
    assert info.name == "minipkg-1.0.0"  # the artifact name keeps the directory's name
    assert info.repo_name == f"local__minipkg-1_0_0.{info.commit[:8]}"
    assert info.image_name == f"swebench/swesmith.x86_64.local_1776_minipkg-1_0_0.{info.commit[:8]}"


@pytest.mark.integration
def test_generated_instances_parse_with_swe_smiths_rules(minirepo, tmp_path):
    dotted = tmp_path / "minipkg-1.0.0"
    shutil.copytree(minirepo, dotted)
    result = repo_tasks(str(dotted), test_cmd="python3 -m pytest -q tests", max_bugs=3)
    instances = list(read_jsonl(result.artifact.path / "instances.jsonl"))
    assert instances
    for instance in instances:
        kind = instance["instance_id"].split(".func_pm_")[1].split("__")[0]
        assert_swe_smith_parses(instance, "local", "minipkg-1_0_0", result.stats["commit"], kind)
    tasks = list(read_jsonl(result.artifact.path / "tasks.jsonl"))
    assert [t["metadata"]["image_name"] for t in tasks] == [i["image_name"] for i in instances]


def test_old_instances_with_dotted_ids_still_load(tmp_path):
    old = {"instance_id": "local__toolz-1.0.0.ef069668.func_pm_op_flip__e655932a",
           "repo": "local__toolz-1.0.0.ef069668",
           "patch": ("diff --git a/toolz/a.py b/toolz/a.py\n--- a/toolz/a.py\n+++ b/toolz/a.py\n"
                     "@@ -1 +1 @@\n-x = 1\n+x = 2\n"),
           "FAIL_TO_PASS": ["tests/test_a.py::test_x"], "PASS_TO_PASS": ["tests/test_a.py::test_y"],
           "created_at": "2024-11-01T00:00:00+00:00", "image_name": "", "base_commit": COMMIT, "problem_statement": ""}
    path = tmp_path / "instances.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (task,) = read_jsonl(fetch("swe-smith", from_path=path).artifact.path / "tasks.jsonl")
    assert task["id"] == "swe-smith/local__toolz-1.0.0.ef069668.func_pm_op_flip__e655932a"  # kept as written
    assert task["metadata"]["image_name"] == ""
