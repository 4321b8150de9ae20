"""SWE-smith's own file formats (fixtures/swe_smith_formats, made from SWE-smith's code: see its
README): a pretty-printed instance, the ``harness.gather`` JSON array and SWE-agent ``.traj`` files
load through ``fetch`` and synthesize; a malformed file is one line naming the file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hrmcode.data.schema import parse_task
from hrmcode.data.sources import fetch
from hrmcode.data.synthesize import synthesize
from hrmcode.errors import InputError
from hrmcode.jsonl import read_jsonl

FORMATS = Path(__file__).parent / "fixtures" / "swe_smith_formats"
INSTANCE_ID = "pandas-dev__pandas.95280573.pr_53652"
PRETTY = FORMATS / f"{INSTANCE_ID}.json"
GATHER = FORMATS / "task_insts" / "run_fixture.json"
TRAJ = FORMATS / f"{INSTANCE_ID}.traj"


def _tasks(result) -> dict[str, dict]:
    records = list(read_jsonl(result.artifact.path / "tasks.jsonl"))
    for record in records:
        parse_task(record)
    return {r["id"]: r for r in records}


def test_the_fixtures_are_in_the_shapes_swe_smith_writes():
    # a pretty-printed object, a gather array dumped with indent=4, a .traj with SWE-agent's keys
    assert PRETTY.read_text().startswith('{\n    "instance_id": ')
    assert GATHER.read_text().startswith('[\n    {\n        "instance_id": ')
    traj = json.loads(TRAJ.read_text())
    assert set(traj) == {"trajectory", "history", "info", "replay_config", "environment"}
    assert set(traj["trajectory"][0]) >= {"action", "observation", "response", "thought", "query"}


def test_pretty_printed_instance_loads_like_its_jsonl_line(tmp_path):
    record = json.loads(PRETTY.read_text())
    line = tmp_path / "instances.jsonl"
    line.write_text(json.dumps(record) + "\n")
    pretty = _tasks(fetch("swe-smith", from_path=PRETTY))
    compact = _tasks(fetch("swe-smith", from_path=line, name="compact"))
    assert list(pretty) == [f"swe-smith/{INSTANCE_ID}"]
    assert pretty == compact
    task = pretty[f"swe-smith/{INSTANCE_ID}"]
    assert task["metadata"]["schema"] == "9-field" and task["prompt"].startswith("# PyArrow timestamp indexes")
    assert '+        if lib.is_np_dtype(keyarr.dtype, "mM") or isinstance(' in task["solution"]["patch"]


def test_gather_array_loads_with_the_image_and_mirror_repo():
    result = fetch("swe-smith", from_path=GATHER)
    (task,) = _tasks(result).values()
    assert task["id"] == f"swe-smith/{INSTANCE_ID}" and task["metadata"]["schema"] == "7-field"
    assert task["metadata"]["image_name"] == "swebench/swesmith.x86_64.pandas-dev_1776_pandas.95280573"
    assert task["metadata"]["repo"] == "swesmith/pandas-dev__pandas.95280573"
    assert task["metadata"]["prompt_source"] == "fail_to_pass"  # gather writes no problem statement
    assert task["tests"]["fail_to_pass"] == json.loads(PRETTY.read_text())["FAIL_TO_PASS"]


def test_a_directory_of_gather_output_is_searched_for_json(tmp_path):
    shutil.copytree(FORMATS / "task_insts", tmp_path / "logs" / "task_insts")
    result = fetch("swe-smith", from_path=tmp_path / "logs")
    assert result.records == 1


def test_swe_agent_traj_becomes_a_trajectory_task():
    result = fetch("swe-smith-trajectories", from_path=TRAJ)
    (task,) = _tasks(result).values()
    traj = json.loads(TRAJ.read_text())
    assert task["id"] == f"swe-smith-trajectories/{INSTANCE_ID}" and task["title"] == INSTANCE_ID
    assert task["prompt"].startswith("BUG: [pyarrow] AttributeError: 'Index' object has no attribute 'freq'")
    messages = task["metadata"]["messages"]
    # the last step's query: everything the model saw before its last action
    assert len(messages) == len(traj["trajectory"][-1]["query"]) == 8
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "user"] * 3
    assert all(isinstance(m["content"], str) for m in messages)
    assert "<function=bash>\n<parameter=command>" in messages[2]["content"]
    assert messages[3]["content"].startswith("OBSERVATION:")
    assert task["metadata"]["patch"] == traj["info"]["submission"] and task["metadata"]["model"].startswith("claude")
    assert task["solution"]["patch"] is None and result.stats["resolved_unknown"] == 1  # .traj has no verdict
    assert task["language"] == "python"


@pytest.mark.shared
def test_traj_messages_match_swe_smith_xml_conversion(shared_dir):
    """The fixture .traj was made from the first messages of this fine-tuning row, which SWE-smith's
    transform_traj_xml produced from the real .traj: converting it back must give the same text."""
    sample = shared_dir / "swe-smith-sample" / "trajectories.jsonl"
    rows = [json.loads(line) for line in sample.read_text().splitlines()]
    row = next(r for r in rows if r["instance_id"] == INSTANCE_ID)
    (task,) = _tasks(fetch("swe-smith-trajectories", from_path=TRAJ)).values()
    assert task["metadata"]["messages"] == row["messages"][:8]


def _traj_variant(tmp_path: Path, name: str, change) -> Path:
    traj = json.loads(TRAJ.read_text())
    change(traj)
    path = tmp_path / name
    path.write_text(json.dumps(traj, indent=2))
    return path


def test_traj_before_swe_agent_1_1_and_after_a_cost_limit_exit(tmp_path):
    expected = _tasks(fetch("swe-smith-trajectories", from_path=TRAJ))[f"swe-smith-trajectories/{INSTANCE_ID}"]

    def old_format(traj):  # < 1.1: each step's messages include its own action; the last one is dropped
        for step in traj["trajectory"]:
            step["messages"] = [*step.pop("query"), {"role": "assistant", "content": "submit"}]

    def cost_exit(traj):  # the last step is the exit: its query is not the conversation
        traj["trajectory"].append({"action": "", "observation": "", "response": "Exit due to cost limit",
                                   "thought": "", "execution_time": 0.0, "state": {}, "query": [], "extra_info": {}})

    for name, change in (("old.traj", old_format), ("cost.traj", cost_exit)):
        path = _traj_variant(tmp_path, name, change)
        (task,) = _tasks(fetch("swe-smith-trajectories", from_path=path, name=path.stem)).values()
        assert task["metadata"]["messages"] == expected["metadata"]["messages"], name


def test_traj_of_a_thought_action_agent_keeps_each_whole_reply(tmp_path):
    reply = "Let's list the files.\n\n```\nls /testbed\n```"

    def thought_action(traj):  # no tool calls: the action is inside the reply's text
        for step in traj["trajectory"]:
            for message in step["query"]:
                if message["role"] == "assistant":
                    message.update(content=reply, thought="Let's list the files.", action="ls /testbed",
                                   tool_calls=None)

    path = _traj_variant(tmp_path, "ticks.traj", thought_action)
    (task,) = _tasks(fetch("swe-smith-trajectories", from_path=path)).values()
    assert [m["content"] for m in task["metadata"]["messages"] if m["role"] == "assistant"] == [reply] * 3


def test_traj_instance_id_falls_back_to_the_file_name(tmp_path):
    # SWE-smith's collect_trajs names the instance after the .traj's folder/stem
    path = _traj_variant(tmp_path, "acme__calc.1a2b3c4d.func_pm_op_flip__abcd1234.traj",
                         lambda traj: traj.pop("replay_config"))
    (task,) = _tasks(fetch("swe-smith-trajectories", from_path=path)).values()
    assert task["id"] == "swe-smith-trajectories/acme__calc.1a2b3c4d.func_pm_op_flip__abcd1234"
    assert "model" not in task["metadata"]


def test_a_swe_agent_run_directory_reads_the_traj_files_only(tmp_path):
    run = tmp_path / "run"
    (run / INSTANCE_ID).mkdir(parents=True)
    shutil.copy(TRAJ, run / INSTANCE_ID / TRAJ.name)
    (run / "preds.json").write_text(json.dumps({INSTANCE_ID: {"model_patch": ""}}))  # not a trajectory
    assert fetch("swe-smith-trajectories", from_path=run).records == 1


GOOD = json.dumps(json.loads(PRETTY.read_text()))  # one valid instance on one line


@pytest.mark.parametrize("name, text, where", [
    ("broken.json", '{\n    "instance_id": "a",\n    "patch": oops\n}\n', r"broken\.json:3: malformed JSON"),
    ("array.json", f'[\n    {GOOD},\n    7\n]\n', r"array\.json:3: expected a JSON object, got int"),
    ("unclosed.json", f'[\n    {GOOD}\n', r"unclosed\.json:3: malformed JSON"),
    ("comma.json", f'[\n    {GOOD}\n    {GOOD}\n]', r"comma\.json:3: malformed JSON \(expected ','"),
    ("trailing.json", '[]\n]\n', r"trailing\.json:2: malformed JSON \(extra data"),
    ("cut.traj", '{\n  "trajectory": [\n    {"action": "ls"\n', r"cut\.traj:4: malformed JSON"),
])
def test_a_malformed_document_names_the_file_and_line(tmp_path, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    source = "swe-smith-trajectories" if name.endswith(".traj") else "swe-smith"
    with pytest.raises(InputError, match=where) as info:
        fetch(source, from_path=path)
    assert "\n" not in str(info.value)


def test_json_lines_under_a_json_name_are_read_line_by_line(tmp_path):
    record = json.loads(PRETTY.read_text())
    other = {**record, "instance_id": record["instance_id"] + "x"}
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n")
    assert fetch("swe-smith", from_path=path).records == 2
    path.write_text(json.dumps(record) + "\n" + json.dumps({"instance_id": "y"}) + "\n")
    with pytest.raises(InputError, match=r"rows\.json:2: not a SWE-smith instance"):
        fetch("swe-smith", from_path=path, name="bad")


def test_cli_fetch_and_synthesize_from_swe_smith_files(cli, tmp_path):
    for source, path in (("swe-smith", PRETTY), ("swe-smith", GATHER), ("swe-smith-trajectories", TRAJ)):
        done = cli("fetch", source, "--from", path)
        assert done.exit_code == 0, done.stdout + done.stderr
    examples = synthesize("swe-smith")
    assert examples.stats["tasks"] == 1 and examples.stats["examples"] > 0
    tool = synthesize("swe-smith-trajectories", levels=("tool",))
    assert tool.stats["tasks"] == 1 and tool.stats["examples"] > 0
    assert tool.stats["by_level"] == {"tool": tool.stats["examples"]}
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "instance_id": \n')
    done = cli("fetch", "swe-smith", "--from", bad)
    assert done.exit_code in (1, 2) and "bad.json:3: malformed JSON" in done.stdout + done.stderr
