"""Grading model patches on repository tasks made from examples/demo-repo, in the real local sandbox:
the gold fix resolves, and no patch in the hostile corpus (``hostile_grading/*.attack``: edited or
deleted tests, conftest hooks, startup hooks, a shadowed pytest, a plugin entry point, deselecting
config, fake summaries, forged reports, killed processes, patched reporting) resolves a task it
did not fix. Also: ``model_patch`` (what an agent's final work dir becomes), tree diffs through
``git apply``, and the ways a grade gets no verdict."""

from __future__ import annotations

import subprocess

import pytest

from hrmcode.agent.grading import Grade, grade, model_patch
from hrmcode.agent.repo import load_repo_tasks
from hrmcode.diffs import PatchError, apply_patch, tree_patch
from hrmcode.errors import InputError
from tests._sandboxes import BACKENDS, real_sandbox
from tests.agent._repo_tasks import HOSTILE, attack_changes, demo_tasks

ATTACKS = sorted(HOSTILE.glob("*.attack"))
# every attack also edits the package a little, so grading runs the suite instead of stopping at
# "the patch changes only tests"
TOUCH = "toolkit/__init__.py"


@pytest.fixture(scope="module", params=BACKENDS)
def box(request):
    """The sandbox grading runs in: bubblewrap, and docker where an engine is up."""
    return real_sandbox(request.param)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """Bugs of the demo repository, made once (in the local sandbox) for every backend."""
    _, artifact = demo_tasks(tmp_path_factory.mktemp("grading"), max_bugs=4)
    return load_repo_tasks(artifact)


@pytest.fixture(scope="module")
def task(tasks):
    return tasks[0]


def _patch(files: dict[str, str], changes: dict[str, str | None]) -> str:
    after = dict(files)
    for path, text in changes.items():
        if text is None:
            after.pop(path, None)
        else:
            after[path] = text
    return tree_patch(files, after)


def _fixed(task) -> dict[str, str]:
    return apply_patch(task.files, task.gold_patch)


# -- the gold fix and the hostile corpus -----------------------------------------------------------

def test_the_gold_patch_resolves_every_task(tasks, box):
    assert len(tasks) >= 2
    for task in tasks:
        graded = grade(task, task.gold_patch, box, timeout_s=120)
        assert graded.resolved, (task.id, graded)
        assert graded.patch_applied and graded.problem is None and graded.f2p_fixed == 1.0 and graded.p2p_broken == 0
        assert set(graded.fail_to_pass.values()) == {"passed"} and set(graded.pass_to_pass.values()) == {"passed"}


def test_the_unfixed_tree_is_not_resolved(task, box):
    touched = _patch(task.files, {TOUCH: task.files[TOUCH] + "# touched\n"})
    graded = grade(task, touched, box, timeout_s=120)
    assert not graded.resolved and graded.problem is None and graded.f2p_fixed == 0.0
    assert set(graded.fail_to_pass.values()) == {"failed"} and graded.p2p_broken == 0


def test_the_corpus_is_all_there():
    assert len(ATTACKS) >= 18
    for path in ATTACKS:
        header, changes = attack_changes(path, {TOUCH: ""})
        assert header.get("attack") and changes, path.name


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda p: p.stem)
def test_a_hostile_patch_never_resolves_a_task_it_did_not_fix(attack, task, box):
    header, changes = attack_changes(attack, task.files)
    expected = {p.strip() for p in header.get("discarded", "").split(",") if p.strip()}
    only_discarded = set(changes) <= expected  # the whole attack is in files grading puts back
    changes.setdefault(TOUCH, task.files[TOUCH] + "# touched\n")
    graded = grade(task, _patch(task.files, changes), box, timeout_s=60)
    assert not graded.resolved, graded
    assert graded.f2p_fixed < 1.0, graded
    assert expected <= set(graded.discarded), (expected, graded.discarded)
    # the gold fix on the same task, with the same attack beside it: discarding keeps the fix
    with_fix = {**changes, **{p: t for p, t in _fixed(task).items() if t != task.files.get(p) and p not in changes}}
    if only_discarded:
        both = grade(task, _patch(task.files, with_fix), box, timeout_s=60)
        assert both.resolved, both


def test_an_attack_through_the_agents_work_dir_is_discarded_before_the_patch(task, box):
    """model_patch on a final work dir holding a conftest hook, sitecustomize and edited tests."""
    _, conftest = attack_changes(HOSTILE / "conftest_all_passed.attack", task.files)
    _, tests = attack_changes(HOSTILE / "tests_pass.attack", task.files)
    final = {p: t.encode() for p, t in {**task.files, **conftest, **tests, "sitecustomize.py": "import os\n"}.items()}
    patch, left_out = model_patch(task.files, final)
    assert patch == ""
    assert left_out == ["conftest.py", "sitecustomize.py", "tests/test_toolkit.py"]
    graded = grade(task, patch, box)
    assert graded.empty_patch and not graded.resolved and not graded.patch_applied


# -- grades without a verdict ---------------------------------------------------------------------

def test_an_empty_patch_is_not_run(task, box):
    for patch in ("", "  \n"):
        graded = grade(task, patch, box)
        assert isinstance(graded, Grade) and graded.empty_patch and not graded.resolved
        assert graded.problem == "empty patch" and set(graded.fail_to_pass.values()) == {"not run"}
        assert graded.p2p_broken == len(task.pass_to_pass)


def test_a_patch_that_does_not_apply(task, box):
    wrong = task.gold_patch.replace("\n ", "\n #", 1)  # a context line that is not in the file
    graded = grade(task, wrong, box)
    assert not graded.resolved and not graded.patch_applied
    assert graded.problem.startswith("the patch does not apply: ") and "patch does not fit" in graded.problem
    outside = _patch({}, {"x": "y\n"}).replace("a/x", "a/../../etc/x").replace("b/x", "b/../../etc/x")
    escaped = grade(task, outside, box)
    assert not escaped.patch_applied and "not a path inside the repository" in escaped.problem


def test_a_patch_of_only_tests_is_not_run(task, box):
    _, changes = attack_changes(HOSTILE / "tests_pass.attack", task.files)
    graded = grade(task, _patch(task.files, changes), box)
    assert graded.patch_applied and not graded.resolved and not graded.empty_patch
    assert "only tests" in graded.problem and graded.discarded == ["tests/test_toolkit.py"]


def test_a_fix_that_hangs_times_out_without_a_verdict(task, box):
    fixed = _fixed(task)
    hang = {**{p: t for p, t in fixed.items() if t != task.files.get(p)},
            TOUCH: "import time\ntime.sleep(600)\n" + task.files[TOUCH]}
    graded = grade(task, _patch(task.files, hang), box, timeout_s=5)
    assert not graded.resolved and graded.problem == "timed out"
    assert set(graded.fail_to_pass.values()) == {"no verdict"} and graded.f2p_fixed == 0.0
    assert graded.p2p_broken == len(task.pass_to_pass)


def test_a_fix_that_breaks_another_test_counts_it(task, box):
    fixed = _fixed(task)
    breaks = {"toolkit/text.py": "\n\ndef word_wrap(text, width):\n    return []\n",
              "toolkit/roman.py": "\n\ndef to_roman(number):\n    return ''\n"}
    other = next(p for p in breaks if fixed[p] == task.files[p])  # a file the bug is not in
    broken = {**{p: t for p, t in fixed.items() if t != task.files.get(p)}, other: task.files[other] + breaks[other]}
    graded = grade(task, _patch(task.files, broken), box, timeout_s=60)
    assert not graded.resolved and graded.problem is None and graded.f2p_fixed == 1.0
    assert graded.p2p_broken >= 1 and "failed" in graded.pass_to_pass.values()
    assert graded.to_dict()["p2p_broken"] == graded.p2p_broken


# -- model_patch and tree diffs -------------------------------------------------------------------

def test_model_patch_is_the_diff_of_text_files_and_names_what_it_left_out():
    base = {"pkg/a.py": "x = 1\n", "pkg/gone.py": "y = 2\n", "tests/test_a.py": "def test(): pass\n",
            "logo.txt": "text\n"}
    final = {"pkg/a.py": b"x = 2\n", "pkg/new.py": b"z = 3\n", "tests/test_a.py": b"def test(): assert 1\n",
             "logo.txt": b"\x89PNG\xff\xfe", "blob.bin": b"\x00\xff\xfe",
             ".pytest_cache/.gitignore": b"# Created by pytest automatically.\n*\n",  # what pytest writes
             ".pytest_cache/v/cache/lastfailed": b"{}\n", "pkg/__pycache__/a.cpython-311.pyc": b"\x00\x01",
             "pkg/__pycache__/note.txt": b"cache\n"}
    patch, left_out = model_patch(base, final)
    assert left_out == ["blob.bin", "logo.txt", "tests/test_a.py"]
    assert apply_patch(base, patch) == {"pkg/a.py": "x = 2\n", "pkg/new.py": "z = 3\n",
                                        "tests/test_a.py": "def test(): pass\n", "logo.txt": "text\n"}
    assert "deleted file mode 100644" in patch and "new file mode 100644" in patch
    assert model_patch(base, {p: t.encode() for p, t in base.items()}) == ("", [])
    # a self-ignoring directory hides new files only: the base's files there are not deleted
    hidden = {**{p: t.encode() for p, t in base.items()}, "pkg/.gitignore": b"*\n", "pkg/a.py": b"x = 3\n"}
    patch, _ = model_patch(base, hidden)
    assert apply_patch(base, patch) == {**base, "pkg/a.py": "x = 3\n"}


def test_a_tree_patch_is_what_git_apply_applies(tmp_path):
    before = {"a.py": "one\ntwo\nthree\n", "b.txt": "no newline", "c/d.py": "gone\n", "empty.txt": "",
              "with space.txt": "x\n"}
    after = {"a.py": "one\n2\nthree\nfour\n", "b.txt": "no newline, still", "e/f.py": "new\n", "empty.txt": "",
             "new-empty.txt": "", "with space.txt": "y\n", "new dir/empty file.txt": ""}
    patch = tree_patch(before, after)
    assert apply_patch(before, patch) == after
    for path, text in before.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "p.diff").write_text(patch)
    done = subprocess.run(["git", "-C", str(tmp_path), "apply", "p.diff"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (tmp_path / "p.diff").unlink()
    got = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*")
           if p.is_file() and ".git" not in p.parts}
    assert got == after
    assert tree_patch(after, after) == ""


def test_apply_patch_refuses_what_does_not_fit():
    files = {"a.py": "x\n"}
    with pytest.raises(PatchError, match="does not have"):
        apply_patch(files, tree_patch({"b.py": "y\n"}, {"b.py": "z\n"}))
    with pytest.raises(PatchError, match="already has"):
        apply_patch(files, tree_patch({}, {"a.py": "new\n"}))
    with pytest.raises(InputError, match="does not fit"):
        apply_patch(files, tree_patch({"a.py": "other\n"}, {"a.py": "z\n"}))
    with pytest.raises(PatchError, match="leaves lines"):
        apply_patch({"a.py": "x\ny\n"}, tree_patch({"a.py": "x\n"}, {}))
    with pytest.raises(PatchError, match="binary"):
        apply_patch(files, "diff --git a/a.py b/a.py\nGIT binary patch\nliteral 1\nzcmV\n")
    renamed = "diff --git a/a.py b/b.py\nsimilarity index 100%\nrename from a.py\nrename to b.py\n"
    assert apply_patch(files, renamed) == {"b.py": "x\n"}


def test_run_suite_itself_drops_files_in_the_reporters_directory(task, box):
    """Behind the discard rules: a sitecustomize.py a caller lets into ``.hrmcode-pytest/`` (on
    PYTHONPATH) would read the nonce before the reporter; run_suite never writes it."""
    from hrmcode.sandbox.base import Limits
    from hrmcode.sandbox.reports.pytest_report import run_suite

    _, changes = attack_changes(HOSTILE / "forged_report_sitecustomize.attack", task.files)
    run = run_suite(box, {**task.files, **changes}, task.test_command, Limits(timeout_s=60), changed=list(changes),
                    strict=True)
    assert run.problem is None and run.not_passed(task.fail_to_pass) == sorted(task.fail_to_pass)
