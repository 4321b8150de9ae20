"""From acting back to data: `fetch eval-swe` and `synthesize --source <eval swe run>` turn recorded
agent trajectories, resolved or not, into multi-turn `tool` examples with their reward."""

from __future__ import annotations

import json

import pytest

from hrmcode.agent.trajectory import TRAJECTORY_FORMAT
from hrmcode.data.examples import parse_example
from hrmcode.data.sources import fetch
from hrmcode.data.sources.eval_swe import TRAJECTORY_FORMATS
from hrmcode.data.synthesize import synthesize
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import read_jsonl
from tests._agent_runs import default_records, trajectory_record, write_swe_run


def test_the_reader_knows_the_format_the_agent_writes():
    assert TRAJECTORY_FORMAT in TRAJECTORY_FORMATS


def test_fetch_keeps_every_trajectory_with_its_reward_and_model(tmp_path, workspace):
    run = write_swe_run(tmp_path / "run")
    result = fetch("eval-swe", from_path=run)
    tasks = list(read_jsonl(result.artifact.file("tasks.jsonl")))
    assert result.records == 5 and result.stats["resolved"] == 2 and result.stats["unresolved"] == 3
    assert result.stats["by_model"] == {"demo-int8": 2, "openai:gpt-x": 3}
    assert result.stats["by_exit_status"] == {"crash": 1, "submitted": 4}
    records = default_records()
    for task, record in zip(tasks, records):
        meta = task["metadata"]
        assert task["id"].startswith("eval-swe/") and task["id"].endswith("/" + record["id"])
        assert task["prompt"] == record["problem"] and task["title"] == record["instance_id"]
        assert meta["messages"] == record["messages"] and meta["reward"] == record["reward"]
        assert meta["model"] == record["model"] and meta["exit_status"] == record["exit_status"]
        assert meta["resolved"] is (record["reward"] == 1.0) and meta["instance_id"] == record["instance_id"]
        assert [s["reward"] for s in meta["steps"]] == [s["reward"] for s in record["steps"]]
        assert task["solution"]["patch"] is None  # an agent's patch is learned from at the tool level only
    # Attempts at one instance share the split key; the two attempts of instance 2 have their own ids.
    assert tasks[2]["metadata"]["instance_id"] == tasks[3]["metadata"]["instance_id"] and tasks[2]["id"] != tasks[3]["id"]
    assert tasks[0]["language"] == "python"  # from the files it changed and the tests it was graded on


def test_synthesize_from_an_eval_run_makes_one_multi_turn_example_per_trajectory(tmp_path, workspace):
    run = write_swe_run(tmp_path / "run")
    result = synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0)
    examples = list(read_jsonl(result.artifact.file("examples.jsonl")))
    records = default_records()
    # The crashed trajectory has no reply to learn from; every other one is kept, failed ones too.
    assert len(examples) == 4 and result.stats["tasks_without_examples"] == 1
    assert all(e["level"] == "tool" and e["provenance"]["rule"] == "tool/from-agent-run" for e in examples)
    assert all(e["provenance"]["model_written"] is True for e in examples)
    for example, record in zip(examples, records[:4]):
        parsed = parse_example(example)
        assert example["messages"] == record["messages"]  # the conversation exactly as the model saw it
        assert parsed.reward == record["reward"] and example["input"]["context"]["model"] == record["model"]
        assert example["input"]["context"]["resolved"] is (record["reward"] == 1.0)
        assert example["input"]["context"]["exit_status"] == "submitted"
        assert example["input"]["text"] == record["messages"][1]["content"]
        assert example["target"] == record["messages"][2]["content"]
    assert [e["reward"] for e in examples] == [1.0, 1.0, 0.0, 0.0]
    # The run's tasks were fetched into the workspace once; a rerun reuses them and resumes.
    again = synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0)
    assert again.artifact.file("examples.jsonl").read_bytes() == result.artifact.file("examples.jsonl").read_bytes()
    assert len(list((workspace / "fetch").glob("eval-swe-*/*/manifest.json"))) == 1


def test_single_turn_examples_are_written_exactly_as_before(tmp_path, workspace, swe_tasks):
    result = synthesize("swe", out=tmp_path / "ex", levels=("plan", "tool"))
    for example in read_jsonl(result.artifact.file("examples.jsonl")):
        assert "messages" not in example and "reward" not in example
        assert example["provenance"]["model_written"] is False


def test_an_unfinished_run_is_refused(tmp_path, workspace):
    run = write_swe_run(tmp_path / "run")
    (run / "manifest.json").unlink()  # still running, or killed: rerun eval swe to finish it
    with pytest.raises(InputError, match="not a finished eval run") as exc:
        synthesize(str(run), out=tmp_path / "ex")
    assert "rerun the same `hrmcode eval swe" in exc.value.hint


def test_another_bench_or_a_foreign_record_is_refused_naming_the_line(tmp_path, workspace):
    other = write_swe_run(tmp_path / "humaneval", bench="humaneval")
    with pytest.raises(InputError, match="bench 'humaneval', not swe"):
        fetch("eval-swe", from_path=other)
    old = trajectory_record(0, resolved=True, model="m") | {"format": 0}
    bad = write_swe_run(tmp_path / "old", [trajectory_record(1, resolved=True, model="m"), old])
    with pytest.raises(InputError, match=r"trajectories.jsonl:2: not an eval swe trajectory of format 1"):
        fetch("eval-swe", from_path=bad)
    no_reward = {k: v for k, v in trajectory_record(0, resolved=True, model="m").items() if k != "reward"}
    with pytest.raises(InputError, match="reward must be a number"):
        fetch("eval-swe", from_path=write_swe_run(tmp_path / "ungraded", [no_reward]))
    tool_role = trajectory_record(0, resolved=True, model="m")
    tool_role["messages"][2]["role"] = "tool"
    with pytest.raises(InputError, match="role: system|user|assistant"):
        fetch("eval-swe", from_path=write_swe_run(tmp_path / "roles", [tool_role]))
    with pytest.raises(UsageError, match="needs --from"):
        fetch("eval-swe")


def test_a_bare_trajectories_file_and_several_runs(tmp_path, workspace):
    first = write_swe_run(tmp_path / "a")
    second = write_swe_run(tmp_path / "b", [trajectory_record(9, resolved=True, model="other")])
    bare = tmp_path / "copy.jsonl"
    bare.write_text((first / "trajectories.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    both = fetch("eval-swe", from_path=[first, second])
    assert both.records == 6 and both.stats["by_model"]["other"] == 1
    ids = [json.loads(line)["id"] for line in both.artifact.file("tasks.jsonl").read_text().splitlines()]
    assert len(set(ids)) == 6 and len({i.split("/")[1] for i in ids}) == 2  # one key per run
    assert fetch("eval-swe", from_path=bare).records == 5


def test_validate_compares_whole_conversations_and_checks_the_agent_protocol(tmp_path, workspace):
    from hrmcode.data.validate import validate

    same_start = trajectory_record(0, resolved=True, model="m")  # first step: `cat calc.py`, then a fix
    other_end = trajectory_record(0, resolved=True, model="m", attempt=2)
    other_end["messages"][4]["content"] = "THOUGHT: fix it another way.\n\n```bash\npython fix.py\n```"
    again = trajectory_record(0, resolved=True, model="m", attempt=3)  # the first attempt, exactly
    no_action = trajectory_record(5, resolved=False, model="m")
    for message in no_action["messages"]:
        if message["role"] == "assistant":
            message["content"] = "I think the bug is in add(); it should add."
    run = write_swe_run(tmp_path / "run", [same_start, other_end, again, no_action])
    examples = synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0).artifact
    result = validate(examples.path, exec_checks=False, out=tmp_path / "val")
    accepted = [r["id"].rsplit("__", 1)[1] for r in read_jsonl(result.artifact.file("accepted.jsonl"))]
    rejected = {r["id"].rsplit("__", 1)[1]: r["reasons"] for r in read_jsonl(result.artifact.file("rejected.jsonl"))}
    # Sharing the first step does not make two trajectories duplicates; an identical one is.
    assert accepted == ["0000@1#tool-0", "0000@2#tool-0"]
    assert rejected["0000@3#tool-0"][0].startswith("exact duplicate of")
    assert rejected["0000@3#tool-0"][0].endswith("0000@1#tool-0")
    assert rejected["0005@1#tool-0"] == ["incomplete: failed tool_reply_has_action"]
    assert all("messages" in r and "reward" in r for r in read_jsonl(result.artifact.file("accepted.jsonl")))
