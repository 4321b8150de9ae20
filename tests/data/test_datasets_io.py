"""hrmcode's artifacts as ``datasets`` objects: ``open_dataset`` on real artifacts (fetch, analyze,
synthesize), ``hrmcode export dataset`` round-tripped through ``datasets.load_from_disk``, and the
one-line errors of bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

import hrmcode
from hrmcode.artifacts import load_artifact
from hrmcode.data.sources import fetch
from hrmcode.data.synthesize import synthesize
from hrmcode.data.validate import validate
from hrmcode.datasets_io import export_examples, open_dataset
from hrmcode.errors import ArtifactError, InputError, UsageError
from hrmcode.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A tasks artifact (6 HumanEval tasks), its analysis and the examples synthesized from them."""
    root = tmp_path_factory.mktemp("pipeline")
    workspace = root / "workspace"
    tasks = fetch("humaneval", limit=6, workspace=workspace).artifact
    examples = synthesize("humaneval", workspace=workspace, heldout_fraction=0.5).artifact
    analysis = load_artifact(examples.params["analysis"], "analysis")
    return {"workspace": workspace, "tasks": tasks, "examples": examples, "analysis": analysis, "root": root}


def _rows(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def _same_records(rows: list[dict], records: list[dict]) -> None:
    """Each row holds its record's values exactly; a key the record lacks reads as None."""
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert {k: v for k, v in row.items() if k in record} == record
        assert all(row[k] is None for k in row if k not in record)


def test_examples_artifact_opens_in_one_call_with_every_value(pipeline):
    examples = pipeline["examples"]
    records = list(read_jsonl(examples.path / "examples.jsonl"))
    assert len(records) == 30 and examples.stats["by_split"] == {"heldout": 25, "train": 5}
    dataset = hrmcode.open_dataset(examples.path)  # the package's own name for it: one import, one call
    assert isinstance(dataset, datasets.Dataset) and len(dataset) == 30
    assert dataset.column_names == ["id", "task_id", "source", "level", "input", "target", "language", "stage",
                                    "split", "provenance"]
    assert dataset.features["stage"] == datasets.Value("int64") and dataset.features["input"] == datasets.Json()
    _same_records(_rows(dataset), records)
    heldout = open_dataset(examples.path, split="heldout")
    assert len(heldout) == 25 and set(heldout["split"]) == {"heldout"}
    assert len(open_dataset(examples.path / "examples.jsonl", split="train")) == 5


def test_tasks_by_workspace_name_and_file_and_the_analysis_parquet(pipeline):
    tasks = pipeline["tasks"]
    records = list(read_jsonl(tasks.path / "tasks.jsonl"))
    by_name = open_dataset("humaneval", workspace=pipeline["workspace"])
    _same_records(_rows(by_name), records)
    assert by_name[0]["tests"] == records[0]["tests"] and isinstance(by_name[0]["metadata"], dict)
    assert len(open_dataset(tasks.path / "tasks.jsonl")) == 6
    examples = open_dataset("synthesize/humaneval", workspace=pipeline["workspace"])  # STEP/NAME: that step's newest
    assert len(examples) == 30 and "target" in examples.column_names
    with pytest.raises(ArtifactError, match="no synthesize artifact named 'other'"):
        open_dataset("synthesize/other", workspace=pipeline["workspace"])
    analysis = open_dataset(pipeline["analysis"].path)
    table = pq.read_table(pipeline["analysis"].path / "analysis.parquet")
    assert len(analysis) == table.num_rows == 6 and analysis.column_names == table.column_names
    assert list(analysis["id"]) == table.column("id").to_pylist() == [r["id"] for r in records]


def test_validated_examples_open_and_export_their_accepted_rows(pipeline, tmp_path):
    # HumanEval's examples overlap the benchmark itself: accepted here only because contamination is allowed
    validated = validate(pipeline["examples"].path, workspace=pipeline["workspace"], exec_checks=False,
                         allow_contaminated=True).artifact
    accepted = list(read_jsonl(validated.path / "accepted.jsonl"))
    assert validated.kind == "validated-examples" and len(accepted) == 30
    _same_records(_rows(open_dataset(validated.path)), accepted)
    exported = export_examples("humaneval", tmp_path / "validated-hf", workspace=pipeline["workspace"])
    assert exported.source.path == validated.path  # the name finds the validated artifact first
    loaded = datasets.load_from_disk(str(tmp_path / "validated-hf"))
    assert {split: len(rows) for split, rows in loaded.items()} == {"train": 5, "heldout": 25}
    _same_records(_rows(loaded["heldout"]), [r for r in accepted if r["split"] == "heldout"])


def test_a_users_own_jsonl_and_mixed_value_types(tmp_path):
    path = tmp_path / "mine.jsonl"
    records = [{"id": "a", "score": 1, "extra": {"k": [1, 2], "overlap": 0.9953}, "tags": ["x"]},  # exact float
               {"id": "b", "score": 2.5, "extra": "text", "tags": []},
               {"id": "d", "score": 3, "extra": "[1, 2]", "tags": ["y"]},  # a str that parses as JSON stays a str
               {"id": "c", "score": None, "other": {"files": {"a.py": "x = 1\n"}}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = open_dataset(path)
    assert dataset.features["score"] == datasets.Value("float64") and dataset.features["extra"] == datasets.Json()
    _same_records(_rows(dataset), records)
    packed = tmp_path / "mine.jsonl.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    _same_records(_rows(open_dataset(packed)), records)


def test_an_edited_file_is_reopened_not_answered_from_the_cache(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a"}\n')
    assert list(open_dataset(path)["id"]) == ["a"]
    path.write_text('{"id": "b"}\n{"id": "c"}\n')
    assert list(open_dataset(path)["id"]) == ["b", "c"]


def test_bad_input_is_one_line(pipeline, tmp_path):
    with pytest.raises(InputError, match="no such file or directory") as missing:
        open_dataset(tmp_path / "absent")
    assert "\n" not in str(missing.value)
    with pytest.raises(ArtifactError, match="no artifact 'nothing-here'"):
        open_dataset("nothing-here", workspace=pipeline["workspace"])
    (tmp_path / "loose").mkdir()
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        open_dataset(tmp_path / "loose")
    with pytest.raises(UsageError, match="no 'split' field to choose 'train'"):
        open_dataset(pipeline["tasks"].path, split="train")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(UsageError, match="not a JSONL, parquet or arrow file"):
        open_dataset(tmp_path / "notes.txt")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="no records"):
        open_dataset(tmp_path / "empty.jsonl")
    no_rows = pq.read_table(pipeline["analysis"].path / "analysis.parquet").slice(0, 0)
    pq.write_table(no_rows, tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="empty.parquet: no records"):  # it was datasets' "An error occurred"
        open_dataset(tmp_path / "empty.parquet")


def test_a_file_that_no_longer_matches_its_manifest_is_refused(pipeline, tmp_path):
    import shutil

    copy = tmp_path / "tasks-copy"
    shutil.copytree(pipeline["tasks"].path, copy)
    with (copy / "tasks.jsonl").open("a") as fh:
        fh.write('{"id": "forged"}\n')
    with pytest.raises(ArtifactError, match="tasks.jsonl has .* bytes, its manifest records"):
        open_dataset(copy / "tasks.jsonl")
    with pytest.raises(ArtifactError, match="its manifest records"):
        open_dataset(copy)


def test_export_dataset_round_trips_through_load_from_disk(cli, pipeline, tmp_path):
    examples = pipeline["examples"]
    out = tmp_path / "examples-hf"
    result = cli("--json", "--workspace", pipeline["workspace"], "export", "dataset", examples.path, "-o", out)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["splits"] == {"train": 5, "heldout": 25} and payload["kind"] == "hf-dataset"

    loaded = datasets.load_from_disk(str(out))
    assert isinstance(loaded, datasets.DatasetDict) and list(loaded) == ["train", "heldout"]
    records = list(read_jsonl(examples.path / "examples.jsonl"))
    for split in ("train", "heldout"):
        _same_records(_rows(loaded[split]), [r for r in records if r["split"] == split])

    artifact = load_artifact(out, "hf-dataset")
    artifact.verify()  # every file save_to_disk wrote is listed with its sha256
    assert artifact.manifest["inputs"][0]["kind"] == "examples"
    assert artifact.manifest["inputs"][0]["manifest_sha256"] == examples.manifest_sha256()
    card = DatasetCard.load(out / "README.md")
    assert [c["data_files"] for c in card.data.configs] == [[{"split": "train", "path": "data/train-*"},
                                                              {"split": "heldout", "path": "data/heldout-*"}]]
    assert examples.manifest_sha256() in card.text and "| heldout | 25 |" in card.text
    assert len(open_dataset(out, split="heldout")) == 25

    # the parquet shards push_to_hub uploads read back the same values
    shard = tmp_path / "train-00000-of-00001.parquet"
    loaded["train"].to_parquet(str(shard))
    _same_records(_rows(datasets.load_dataset("parquet", data_files=str(shard), split="train")),
                  [r for r in records if r["split"] == "train"])


def test_export_refuses_other_input_and_keeps_what_is_there(cli, pipeline, tmp_path):
    out = tmp_path / "export"
    assert export_examples(pipeline["examples"].path, out).splits == {"train": 5, "heldout": 25}
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = cli("export", "dataset", pipeline["tasks"].path, "-o", out)
    assert result.exit_code == 1
    assert "is a 'tasks' artifact, expected 'validated-examples' or 'examples'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    result = cli("export", "dataset", pipeline["examples"].path, "-o", mine)
    assert result.exit_code == 2 and "holds files and is not an hrmcode artifact" in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me\n" and [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".export.tmp-*"))
    again = export_examples(pipeline["examples"].path, out)  # an earlier export of its own is replaced
    assert again.artifact.path == out and len(datasets.load_from_disk(str(out))["train"]) == 5


def test_export_by_step_and_name_and_of_a_validation_that_accepted_nothing(pipeline, tmp_path):
    exported = export_examples("synthesize/humaneval", tmp_path / "by-step", workspace=pipeline["workspace"])
    assert exported.source.path == pipeline["examples"].path  # STEP/NAME, as open_dataset takes it
    # HumanEval's examples are the benchmark itself: validate rejects every one as contaminated
    none = validate(pipeline["examples"].path, out=tmp_path / "rejected-all", workspace=pipeline["workspace"],
                    exec_checks=False).artifact
    with pytest.raises(InputError, match=r"validate accepted none of its examples \(30 rejected\)") as info:
        export_examples(none.path, tmp_path / "none-hf")
    assert "hrmcode export dataset synthesize/humaneval" in info.value.hint
    assert not (tmp_path / "none-hf").exists()


def test_the_cli_does_not_import_datasets_at_start_up():
    code = "import sys, hrmcode.cli.app; print('datasets' in sys.modules, 'pandas' in sys.modules)"
    assert hrmcode.open_dataset is open_dataset
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_an_arrow_file_read_first_in_a_process_decodes_json_floats_exactly(tmp_path, monkeypatch):
    """``exact_json_floats`` is installed by every reader, not only by whichever ran first in the process."""
    from datasets.features import features as module
    from datasets.utils.json import ujson_loads

    from hrmcode.datasets_io import arrow_rows

    monkeypatch.setattr(module, "ujson_loads", ujson_loads)  # as in a fresh process: datasets' own decoder
    saved = datasets.Dataset.from_dict({"extra": [{"overlap": 0.9953}]},
                                       features=datasets.Features({"extra": datasets.Json()}))
    saved.save_to_disk(str(tmp_path / "saved"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    assert [row["extra"] for _, row in arrow_rows(arrow)] == [{"overlap": 0.9953}]
