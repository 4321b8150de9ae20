"""``fetch --from`` on what users have on disk from ``datasets``, made here in the hub's own formats:
``save_to_disk`` directories (a Dataset, a DatasetDict), arrow shards, a hub-snapshot folder
(``data/<split>-*.parquet`` + a README dataset card with ``configs``); each gives the same tasks as
the same rows in JSONL. The hub itself: the pinned revision is what is asked for, and an offline or
unreachable hub is one line naming --from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hrmcode.data.sources import fetch, livecodebench, swe_smith
from hrmcode.errors import InputError, SourceUnavailable, UsageError
from hrmcode.jsonl import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def _rows(name: str) -> list[dict]:
    return list(read_jsonl(FIXTURES / name))


def _tasks(result) -> list[dict]:
    return list(read_jsonl(result.artifact.path / "tasks.jsonl"))


def _smith_rows(name: str = "swe_smith_9field.jsonl") -> list[dict]:
    """A SWE-smith fixture with its test lists as JSON strings in every row, as a parquet or arrow
    column holds them (one type per column, and per dataset)."""
    return [{**r, **{k: r[k] if isinstance(r[k], str) else json.dumps(r[k]) for k in ("FAIL_TO_PASS", "PASS_TO_PASS")}}
            for r in _rows(name)]


@pytest.fixture(scope="module")
def from_jsonl(tmp_path_factory) -> dict[str, list[dict]]:
    """The tasks each fixture gives when read as JSONL (what every other format must equal)."""
    workspace = tmp_path_factory.mktemp("jsonl-workspace")
    smith = workspace / "smith.jsonl"
    smith.write_text("".join(json.dumps(r) + "\n" for r in _smith_rows()))
    return {
        "swe-smith": _tasks(fetch("swe-smith", from_path=smith, workspace=workspace)),
        "trajectories": _tasks(fetch("swe-smith-trajectories", from_path=FIXTURES / "trajectories.jsonl",
                                     workspace=workspace)),
        "livecodebench": _tasks(fetch("livecodebench", from_path=FIXTURES / "livecodebench" / "test.jsonl",
                                      workspace=workspace)),
    }


def test_swe_smith_from_a_saved_dataset_its_arrow_shard_and_a_saved_dataset_dict(tmp_path, from_jsonl):
    rows = _smith_rows()
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    assert _tasks(fetch("swe-smith", from_path=saved, name="saved")) == from_jsonl["swe-smith"]
    (shard,) = saved.glob("*.arrow")
    assert _tasks(fetch("swe-smith", from_path=shard, name="shard")) == from_jsonl["swe-smith"]

    splits = tmp_path / "splits"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "extra": datasets.Dataset.from_list(rows[:1])}
                         ).save_to_disk(str(splits))
    result = fetch("swe-smith", from_path=splits, name="splits")
    assert _tasks(result) == from_jsonl["swe-smith"] and result.records == 2
    assert fetch("swe-smith", from_path=splits, split="extra", dry_run=True).records == 1
    with pytest.raises(UsageError, match=r"has no split 'test'.*choose one of train, extra"):
        fetch("swe-smith", from_path=splits, split="test")


def _snapshot(folder: Path, splits: dict[str, list[dict]]) -> Path:
    """A local copy of a hub dataset repository as ``snapshot_download`` leaves it: parquet shards
    under data/ named as push_to_hub names them, and the dataset card's YAML ``configs``."""
    (folder / "data").mkdir(parents=True)
    card = ["---", "license: mit", "configs:", "- config_name: default", "  data_files:"]
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
        card += [f"  - split: {split}", f"    path: data/{split}-*"]
    (folder / "README.md").write_text("\n".join([*card, "---", "", "# A dataset", ""]))
    (folder / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    return folder


def test_swe_smith_from_a_hub_snapshot_reads_the_cards_split(tmp_path, from_jsonl):
    rows = _smith_rows()
    other = [{**r, "base_commit": None, "created_at": None} for r in _smith_rows("swe_smith_7field.jsonl")]
    snapshot = _snapshot(tmp_path / "SWE-smith", {"train": rows, "other": other})
    result = fetch("swe-smith", from_path=snapshot)
    assert _tasks(result) == from_jsonl["swe-smith"]
    assert [t["metadata"]["schema"] for t in _tasks(fetch("swe-smith", from_path=snapshot, split="other",
                                                          name="other"))] == ["7-field"]
    with pytest.raises(UsageError, match="no split 'test'"):
        fetch("swe-smith", from_path=snapshot, split="test")


def test_trajectories_from_a_hub_snapshot_with_the_three_splits(tmp_path):
    rows = _rows("trajectories.jsonl")
    listed = [dict(r, messages=r["messages"] if isinstance(r["messages"], str) else json.dumps(r["messages"]))
              for r in rows]  # the hub's rows carry messages as one JSON string column
    snapshot = _snapshot(tmp_path / "SWE-smith-trajectories", {"xml": listed, "tool": listed[:1], "ticks": listed[1:]})
    xml = fetch("swe-smith-trajectories", from_path=snapshot)
    assert xml.records == len(rows) == 2 and xml.stats["resolved"] == 1
    tool = fetch("swe-smith-trajectories", from_path=snapshot, split="tool", name="tool")
    assert [t["title"] for t in _tasks(tool)] == [rows[0]["instance_id"]]


def test_livecodebench_from_a_saved_dataset_as_datasets_loads_it(tmp_path, from_jsonl):
    # what a user has after load_dataset(...) on the release files and save_to_disk: a DatasetDict with "test"
    loaded = datasets.load_dataset("json", data_files={"test": str(FIXTURES / "livecodebench" / "test.jsonl")})
    saved = tmp_path / "lcb"
    loaded.save_to_disk(str(saved))
    result = fetch("livecodebench", from_path=saved)
    assert result.stats["release"] == "saved dataset"
    assert [t["id"] for t in _tasks(result)] == [t["id"] for t in from_jsonl["livecodebench"]]
    for got, want in zip(_tasks(result), from_jsonl["livecodebench"]):
        assert got["tests"] == want["tests"] and got["prompt"] == want["prompt"] and got["kind"] == want["kind"]
        assert got["metadata"]["contest_date"] == want["metadata"]["contest_date"]
    window = fetch("livecodebench", from_path=saved, since="2023-08-01", dry_run=True)
    assert window.records + window.stats["outside_window"] == len(from_jsonl["livecodebench"])


def test_a_saved_dataset_of_the_wrong_schema_and_a_missing_folder_are_one_line(tmp_path, workspace):
    wrong = tmp_path / "wrong"
    datasets.Dataset.from_list([{"question": "q", "answer": "a"}]).save_to_disk(str(wrong))
    with pytest.raises(InputError, match=r"wrong:row 1: not a SWE-smith instance: missing instance_id") as info:
        fetch("swe-smith", from_path=wrong)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=r"wrong:row 1: not a LiveCodeBench problem"):
        fetch("livecodebench", from_path=wrong)
    with pytest.raises(InputError, match="no such path"):
        fetch("swe-smith", from_path=tmp_path / "absent")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(InputError, match="not a readable save_to_disk directory"):
        fetch("swe-smith", from_path=broken)
    assert not (workspace / "fetch").exists() or not any((workspace / "fetch").rglob("manifest.json"))


def test_a_snapshot_whose_card_or_files_disagree_is_one_line_and_logs_nothing(tmp_path, capfd):
    rows = _smith_rows()
    card_says_less = _snapshot(tmp_path / "card", {"train": rows})
    card = (card_says_less / "README.md").read_text()
    (card_says_less / "README.md").write_text(card.replace(
        "\n---\n", "\ndataset_info:\n  features:\n  - name: instance_id\n    dtype: string\n---\n", 1))
    with pytest.raises(InputError, match=r"card: its data files' columns do not match the features its README.md "
                                         r"declares \(dataset_info\)") as info:
        fetch("swe-smith", from_path=card_says_less)
    assert "\n" not in str(info.value) and "fix or remove dataset_info" in info.value.hint
    mixed = _snapshot(tmp_path / "mixed", {"train": rows})
    pq.write_table(pa.table({"other": [1]}), mixed / "data" / "train-00001-of-00002.parquet")
    with pytest.raises(InputError, match="mixed: its data files do not all have the same columns"):
        fetch("swe-smith", from_path=mixed)
    assert capfd.readouterr().err == ""  # datasets logs a failed file with its whole schema: none of it shows


def test_a_clone_without_git_lfs_names_the_pointer_file(tmp_path):
    snapshot = _snapshot(tmp_path / "cloned", {"train": _smith_rows()})
    shard = snapshot / "data" / "train-00000-of-00001.parquet"
    shard.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 9041\n")
    for given in (snapshot, shard):  # the folder, and the file itself
        with pytest.raises(InputError, match=r"train-00000-of-00001.parquet: a Git LFS pointer, not the data") as info:
            fetch("swe-smith", from_path=given)
        assert "git lfs pull" in info.value.hint


def test_a_folder_holding_the_same_rows_twice_says_so(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    rows = _smith_rows()
    (folder / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), folder / "instances.parquet")
    with pytest.raises(InputError, match="duplicate task id") as info:
        fetch("swe-smith", from_path=folder)
    assert f"--from {folder} may hold the same rows in two files" in info.value.hint


def test_livecodebench_from_a_saved_dataset_dict_of_several_splits_reads_test(tmp_path, from_jsonl):
    problems = datasets.load_dataset("json", data_files=str(FIXTURES / "livecodebench" / "test.jsonl"), split="train")
    several = tmp_path / "several"
    datasets.DatasetDict({"validation": problems.select([0]), "test": problems}).save_to_disk(str(several))
    assert [t["id"] for t in _tasks(fetch("livecodebench", from_path=several))] == [
        t["id"] for t in from_jsonl["livecodebench"]]
    no_test = tmp_path / "no-test"
    datasets.DatasetDict({"a": problems, "b": problems}).save_to_disk(str(no_test))
    with pytest.raises(UsageError, match="holds the splits a, b and no 'test' split to read"):
        fetch("livecodebench", from_path=no_test)


def test_the_hub_is_asked_for_the_pinned_revision(monkeypatch):
    from huggingface_hub import HfApi

    asked: list[tuple[str, str | None]] = []

    def dataset_info(self, repo_id, *, revision=None, **kwargs):
        asked.append((repo_id, revision))
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    for source in ("swe-smith", "swe-smith-trajectories", "livecodebench"):
        with pytest.raises(SourceUnavailable):
            fetch(source)
    with pytest.raises(SourceUnavailable):
        fetch("swe-smith", revision="v1.0")
    with pytest.raises(SourceUnavailable):
        fetch("swe-smith", dataset="me/my-smith")
    assert asked == [("SWE-bench/SWE-smith", swe_smith.DEFAULT_REVISION), ("SWE-bench/SWE-smith-trajectories", None),
                     ("livecodebench/code_generation_lite", livecodebench.DEFAULT_REVISION),
                     ("SWE-bench/SWE-smith", "v1.0"), ("me/my-smith", None)]
    assert len(swe_smith.DEFAULT_REVISION) == len(livecodebench.DEFAULT_REVISION) == 40
    with pytest.raises(UsageError, match="source 'humaneval' takes no --revision option"):
        fetch("humaneval", revision="abc")


def test_offline_hub_fails_at_once_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HRMCODE_HOME": str(tmp_path / "ws"), "HRMCODE_DEBUG": ""}
    env.pop("HF_ENDPOINT", None)
    done = subprocess.run([sys.executable, "-m", "hrmcode", "fetch", "swe-smith"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "cannot reach Hugging Face dataset SWE-bench/SWE-smith" in line and "--from PATH" in line
    assert not (tmp_path / "ws" / "fetch").exists() or not any((tmp_path / "ws" / "fetch").rglob("manifest.json"))


def test_hub_rows_streams_and_labels_each_row(tmp_path):
    # the streaming path of a hub read, on a local copy (datasets reads a folder path without the network)
    from hrmcode.datasets_io import hub_rows

    snapshot = _snapshot(tmp_path / "repo", {"train": _smith_rows()})
    rows = list(hub_rows(str(snapshot), "0123456789abcdef" * 2 + "01234567", split="train"))
    assert [where.rsplit(":", 1)[1] for where, _ in rows] == ["row 1", "row 2"]
    assert rows[0][0].startswith(f"hf:{snapshot}@0123456789ab (train)")
    assert [row["instance_id"] for _, row in rows] == [r["instance_id"] for r in _smith_rows()]
