"""Targets checked against their sources: edits reproduce the fix, plans name exactly its files."""

from __future__ import annotations

import json

from hrmcode.data.synthesize import synthesize
from hrmcode.data.synthesize.context import build_context
from hrmcode.diffs import apply_file_diff, content_diffs
from hrmcode.edits import apply_edits, parse_edits
from hrmcode.jsonl import read_jsonl

from tests.synth.conftest import EXERCISE, TEXTSTATS, minipkg_source


def _examples(result) -> list[dict]:
    return list(read_jsonl(result.artifact.path / "examples.jsonl"))


def _tasks(artifact) -> dict[str, dict]:
    return {t["id"]: t for t in read_jsonl(artifact.path / "tasks.jsonl")}


def test_every_edit_target_reproduces_the_fix(swe_tasks, exercise_tasks, humaneval_tasks):
    for tasks in (swe_tasks, exercise_tasks, humaneval_tasks):
        by_id = _tasks(tasks)
        edits = [e for e in _examples(synthesize(tasks.name)) if e["level"] == "edit"]
        assert edits
        for example in edits:
            task = by_id[example["task_id"]]
            context = example["input"]["context"]
            got = apply_edits(context["files"], parse_edits(example["target"], "diff", context["paths"]))
            ctx = build_context(task, {})
            if "hunk" in context:  # only the diff is known: the excerpt becomes the hunk's new side
                diff = next(d for d in ctx.fix if d.path == context["paths"][0])
                assert got == {diff.path: diff.hunks[context["hunk"]].new_text()}
            else:
                assert got == {p: ctx.after[p] for p in context["paths"]}
                if task["kind"] == "repo-patch":
                    assert got == {TEXTSTATS: minipkg_source()}  # the bugged file is fixed back exactly
                else:
                    assert got == {p: task["solution"]["files"][p] for p in context["paths"]}


def test_every_plan_names_exactly_the_files_of_the_fix(swe_tasks, exercise_tasks):
    for tasks in (swe_tasks, exercise_tasks):
        by_id = _tasks(tasks)
        for example in _examples(synthesize(tasks.name, levels=("plan",))):
            task = by_id[example["task_id"]]
            files = [line[5:] for line in example["target"].splitlines() if line.startswith("FILE ")]
            if task["solution"].get("patch"):
                expected = [d.path for d in content_diffs(task["solution"]["patch"])]
            else:
                expected = sorted(p for p, t in task["solution"]["files"].items() if task["files"].get(p) != t)
            assert files == expected


def test_plan_names_touched_function_failing_tests_and_command(swe_tasks):
    plans = {e["task_id"]: e["target"] for e in _examples(synthesize("swe", levels=("plan",)))}
    flip = next(t for i, t in plans.items() if "op_flip" in i)
    assert f"TOUCH {TEXTSTATS}::clamp" in flip.splitlines()
    assert "TEST tests/test_textstats.py::test_clamp_low" in flip.splitlines()
    assert flip.splitlines()[-1] == ("RUN pytest --disable-warnings --color=no --tb=no --verbose "
                                     "tests/test_textstats.py")
    whole = next(t for i, t in plans.items() if "op_change_const" in i)
    assert f"TOUCH {TEXTSTATS}::mean" in whole.splitlines()  # from ast over the whole bugged file


def test_exercise_levels_and_tests_declared_in_files(exercise_tasks):
    examples = {e["level"]: e for e in _examples(synthesize("exercises"))}
    assert set(examples) == {"plan", "edit", "tool", "coord", "solve"}
    plan = examples["plan"]["target"].splitlines()
    assert "TOUCH doubler.py::double" in plan and "TOUCH doubler.py::halve" in plan
    assert "TEST doubler_test.py::test_double" in plan and plan[-1] == "RUN pytest -q"
    solved = apply_edits({}, parse_edits(examples["solve"]["target"], "whole", ["doubler.py"]))
    assert solved == EXERCISE["solution"]["files"]
    tool = examples["tool"]
    assert tool["target"].count("<function=str_replace_editor>") == 1  # one call per hunk (the two changes share one)
    assert "<function=bash>" in tool["target"] and tool["target"].rstrip().endswith("<function=submit>\n</function>")
    assert tool["input"]["context"]["observations"][1] == "exit status 0"
    coord = examples["coord"]["target"].splitlines()
    assert coord[0].startswith("AGENT domain:") and "S1 EDIT doubler.py BY lang:python PRIORITY 1" in coord
    assert coord[-1].endswith("AFTER S2") and "RUN pytest -q" in coord[-2]


def test_trajectory_steps_keep_action_observation_and_reward(trajectory_tasks):
    tools = _examples(synthesize(trajectory_tasks.name))
    assert [e["input"]["context"]["tool"] for e in tools] == ["bash", "str_replace_editor", "submit"]
    assert all(e["input"]["context"]["reward"] == 1.0 for e in tools)
    assert tools[0]["input"]["context"]["observation"] == "OBSERVATION:\n4:def clamp(value, low, high):"
    assert "clamp returns the wrong value" in tools[1]["input"]["text"]
    assert "4:def clamp(value, low, high):" in tools[1]["input"]["text"]  # the previous observation is state
    assert tools[1]["target"].startswith("Fix the comparison.")
    assert all(e["provenance"]["rule"] == "tool/from-trajectory" for e in tools)


def test_hunk_only_fix_applies_to_the_real_file():
    from tests.synth.conftest import swe_instance
    from hrmcode.data.sources.swe_smith import to_task

    task = to_task(swe_instance("    if value > high:", "    if value <= high:"), "x").model_dump(mode="json")
    ctx = build_context(task, {})
    bugged = minipkg_source().replace("    if value > high:", "    if value <= high:")
    assert apply_file_diff(bugged, ctx.fix[0]) == minipkg_source()


def test_examples_are_schema_valid_and_carry_provenance(swe_tasks):
    from hrmcode.data.examples import parse_example

    result = synthesize("swe")
    for record in _examples(result):
        example = parse_example(record)
        assert example.provenance.inputs == [swe_tasks.manifest_sha256(), json.loads(
            (result.artifact.path / "manifest.json").read_text())["inputs"][1]["manifest_sha256"]]
        assert not example.provenance.model_written
