"""validate: planted contamination, duplicates, schema errors, completeness, execution, report."""

from __future__ import annotations

import copy
import gzip
import json
import re

import pytest

from hrmcode.artifacts import ArtifactWriter
from hrmcode.data.contamination import ContaminationIndex, build_index, corpus_excluder
from hrmcode.data.synthesize import synthesize
from hrmcode.data.validate import validate
from hrmcode.jsonl import read_jsonl


def _humaneval_record(n: int) -> dict:
    from hrmcode.data.sources.humaneval import package_data_file

    with gzip.open(package_data_file(), "rt") as fh:
        for i, line in enumerate(fh):
            if i == n:
                return json.loads(line)
    raise AssertionError(n)


def _examples_artifact(tmp_path, records: list[dict], name: str = "planted"):
    with ArtifactWriter(tmp_path / name, "examples", name=name, update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", records)
        return writer.finish({"examples": len(records)})


@pytest.fixture
def swe_examples(swe_tasks):
    return [json.loads(line) for line in (synthesize("swe").artifact.path / "examples.jsonl").read_text().splitlines()]


def _rejected(result) -> dict[str, list[str]]:
    return {r["id"]: r["reasons"] for r in read_jsonl(result.artifact.path / "rejected.jsonl")}


def test_planted_contaminated_example_is_rejected_with_reason(swe_examples, tmp_path):
    record = _humaneval_record(7)
    planted = copy.deepcopy(next(e for e in swe_examples if e["level"] == "plan"))
    planted["id"] = planted["task_id"] + "#plan-99"
    planted["input"]["text"] += "\nHere is some code we found:\n" + record["prompt"] + record["canonical_solution"]
    result = validate(_examples_artifact(tmp_path, swe_examples + [planted]).path, exec_checks=False)
    rejected = _rejected(result)
    assert list(rejected) == [planted["id"]]
    # the planted text holds HumanEval/7's problem and solution; which of the two is reported (both can reach
    # 100%) follows where the sampled windows fall, i.e. the length of the text before it (the task's header)
    assert any(re.match(r"contaminated: \d+% of humaneval/HumanEval/7:(problem|solution) ", r)
               for r in rejected[planted["id"]])
    accepted = [json.loads(line)["id"] for line in (result.artifact.path / "accepted.jsonl").read_text().splitlines()]
    assert accepted == [e["id"] for e in swe_examples]
    assert result.report["gates"]["contaminated"] == 1


def test_allow_contaminated_keeps_it_with_a_flag(swe_examples, tmp_path):
    record = _humaneval_record(3)
    planted = copy.deepcopy(swe_examples[0])
    planted["id"] = planted["task_id"] + "#plan-98"
    planted["input"]["text"] += record["prompt"] + record["canonical_solution"]
    result = validate(_examples_artifact(tmp_path, swe_examples + [planted]).path, exec_checks=False,
                      allow_contaminated=True)
    assert result.report["rejected"] == 0
    scores = {s["id"]: s for s in read_jsonl(result.artifact.path / "scores.jsonl")}
    assert scores[planted["id"]]["flags"][0].startswith("contaminated: ")


def test_duplicates_schema_and_incomplete_targets(swe_examples, tmp_path):
    exact = copy.deepcopy(swe_examples[0])
    exact["id"] = exact["task_id"] + "#plan-7"
    near = copy.deepcopy(next(e for e in swe_examples if e["level"] == "coord"))
    near["id"] = near["task_id"] + "#coord-7"
    near["input"]["text"] = near["input"]["text"].replace("###", "####", 1)
    broken_edit = copy.deepcopy(next(e for e in swe_examples if e["level"] == "edit"))
    broken_edit["id"] = broken_edit["task_id"] + "#edit-7"
    broken_edit["target"] = broken_edit["target"].replace("=======", "=====\n", 1).replace("<<<<<<< SEARCH", "SEARCH")
    bad_schema = {"id": "x", "level": "dream"}
    result = validate(_examples_artifact(tmp_path, swe_examples + [exact, near, broken_edit, bad_schema]).path,
                      exec_checks=False)
    rejected = _rejected(result)
    assert rejected[exact["id"]] == [f"exact duplicate of {swe_examples[0]['id']}"]
    assert rejected[near["id"]][0].startswith(f"near duplicate of {near['task_id']}#coord-0")
    assert any(r.startswith("incomplete: failed edit_applies, edit_parses") for r in rejected[broken_edit["id"]])
    assert rejected["x"][0].startswith("schema: ")
    assert result.report["accepted"] == len(swe_examples)


def test_exec_checks_humaneval_and_balance_report(humaneval_tasks, cli):
    synthesize("humaneval", levels=("edit", "solve"))
    result = cli("--json", "validate", "humaneval", "--allow-contaminated")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["gates"]["exec_passed"] == 6 and report["accepted"] == 6
    assert report["balance"]["level"]["accepted"] == {"edit": 3, "solve": 3}
    assert report["balance"]["language"]["all"] == {"python": 6}


def test_exec_rejects_a_wrong_solution(humaneval_tasks, tmp_path):
    examples = [json.loads(line) for line in
                (synthesize("humaneval", levels=("solve",)).artifact.path / "examples.jsonl").read_text().splitlines()]
    wrong = examples[0]
    wrong["target"] = wrong["target"].replace("return True", "return False", 1)
    result = validate(_examples_artifact(tmp_path, examples).path, allow_contaminated=True,
                      out=tmp_path / "v")
    # the examples artifact has no tasks input, so execution is skipped, not failed
    assert result.report["gates"].get("exec_failed", 0) == 0
    with ArtifactWriter(tmp_path / "linked", "examples", name="linked", inputs=[humaneval_tasks],
                        update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", examples)
        linked = writer.finish({})
    result = validate(linked.path, allow_contaminated=True)
    assert _rejected(result)[wrong["id"]] == ["execution: tests fail with the target applied (driver: failed: )"]


def test_contamination_index_scores():
    index = build_index()
    record = _humaneval_record(11)
    hit = index.check("unrelated words\n" + record["prompt"] + record["canonical_solution"])
    assert hit is not None and hit.item.startswith("humaneval/HumanEval/11:") and hit.overlap > 0.95
    assert index.check("def add(a, b):\n    return a + b\n" * 3) is None
    excluded = corpus_excluder()
    assert excluded(record["prompt"]) and not excluded("print('hello world')\n" * 10)
    small = ContaminationIndex.build([("k", "x" * 20)])
    assert len(small) == 0  # too short to index


def test_validate_errors(cli, tmp_path, humaneval_tasks):
    wrong_kind = cli("validate", str(humaneval_tasks.path))
    assert wrong_kind.exit_code == 1 and "is a 'tasks' artifact, expected 'examples'" in wrong_kind.stderr
    bad = cli("validate", "humaneval", "--min-score", "2")
    assert bad.exit_code == 2


@pytest.mark.integration
def test_exec_runs_exercise_tests_through_the_toolchain(exercise_tasks):
    synthesize("exercises", levels=("edit", "solve"))
    result = validate("exercises", allow_contaminated=True)
    verdicts = [s.get("exec", {}).get("verdict") for s in read_jsonl(result.artifact.path / "scores.jsonl")]
    assert verdicts == ["passed", "passed"] and result.report["accepted"] == 2
