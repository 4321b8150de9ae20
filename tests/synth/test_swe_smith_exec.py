"""validate's execution check on SWE-smith dataset rows (tasks without files): an edit example's
target is applied to the files the example shows, and its tests, which need the repository, are
skipped with that reason. The instance is the real one shared from SWE-smith's test fixtures, in
its pretty-printed form (tests/data/fixtures/swe_smith_formats)."""

from __future__ import annotations

import json
from pathlib import Path

from hrmcode.data.sources import fetch
from hrmcode.data.synthesize import synthesize
from hrmcode.data.validate import validate
from hrmcode.data.validate.execution import ExecChecker, TaskBook, tasks_of
from hrmcode.jsonl import AppendLog, read_jsonl

INSTANCE = (Path(__file__).parents[1] / "data" / "fixtures" / "swe_smith_formats"
            / "pandas-dev__pandas.95280573.pr_53652.json")


def _edit_example_and_checker(tmp_path: Path) -> tuple[dict, ExecChecker]:
    fetch("swe-smith", from_path=INSTANCE)
    examples = synthesize("swe-smith").artifact
    (edit,) = [e for e in read_jsonl(examples.path / "examples.jsonl") if e["level"] == "edit"]
    return edit, ExecChecker(tasks_of(examples), AppendLog(tmp_path / "exec.jsonl", key="id"))


def test_the_real_instances_edit_example_is_accepted_and_its_tests_skipped():
    fetch("swe-smith", from_path=INSTANCE)
    synthesize("swe-smith")
    result = validate("swe-smith")
    scores = {r["level"]: r for r in read_jsonl(result.artifact.path / "scores.jsonl")}
    edit = scores["edit"]
    assert edit["checks"]["edit_applies"] is True and edit["accepted"] is True
    assert edit["exec"]["verdict"] == "skipped"
    assert edit["exec"]["detail"].startswith("the target applies; its tests run in swesmith.x86_64.pandas-dev__pandas")
    assert "cannot run offline" in edit["exec"]["detail"]
    assert result.report["accepted"] == result.report["examples"]


def test_a_target_that_does_not_apply_to_the_shown_files_fails(tmp_path):
    edit, checker = _edit_example_and_checker(tmp_path)
    assert checker.check(edit)[0] == "skipped"
    search = edit["target"].split("<<<<<<< SEARCH\n", 1)[1].split("\n", 1)[0]
    broken = {**edit, "target": edit["target"].replace(search, search + "  # not in the file", 1)}
    verdict, detail = checker.check(broken)
    assert verdict == "failed" and detail.startswith("target does not apply")


def test_the_shown_files_are_what_the_target_is_applied_to(tmp_path):
    edit, checker = _edit_example_and_checker(tmp_path)
    files = edit["input"]["context"]["files"]
    (path,) = files
    emptied = json.loads(json.dumps(edit))
    emptied["input"]["context"]["files"] = {path: ""}  # the task has no files either: nothing to apply to
    assert checker.check(emptied)[0] == "failed"


def test_shown_files_never_stand_in_where_the_tests_could_run(tmp_path):
    """A repository task with its repository's files runs its tests: the files an example shows (which
    the example itself wrote) must not become the tree they run on."""
    edit, checker = _edit_example_and_checker(tmp_path)
    task = checker.tasks[edit["task_id"]]
    book = TaskBook(tasks={task["id"]: task}, repositories={task["id"]: {"README.md": "a repository\n"}})
    with_repository = ExecChecker(book, AppendLog(tmp_path / "exec-repo.jsonl", key="id"))
    verdict, detail = with_repository.check(edit)
    assert verdict == "failed" and detail.startswith("target does not apply")
