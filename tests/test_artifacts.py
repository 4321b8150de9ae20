"""The artifact contract: manifest last, atomic staging, refusal of wrong inputs, workspace lookup."""

from __future__ import annotations

import json

import pytest

from hrmcode.artifacts import ArtifactWriter, load_artifact, output_location, read_manifest
from hrmcode.errors import ArtifactError
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.errors import InputError


def _write(tmp_path, records, out=None, kind="tasks"):
    out_dir, latest = output_location("fetch", "demo", out, tmp_path / "ws", {"a": 1})
    with ArtifactWriter(out_dir, kind, name="demo", params={"a": 1}, seed=3, update_latest=latest) as w:
        w.write_jsonl("tasks.jsonl", records)
        return w.finish({"count": len(records)})


def test_manifest_records_outputs_and_counts(tmp_path):
    art = _write(tmp_path, [{"id": "x/1"}, {"id": "x/2"}])
    manifest = read_manifest(art.path)
    assert manifest["kind"] == "tasks" and manifest["schema_version"] == 1 and manifest["seed"] == 3
    (entry,) = manifest["outputs"]
    assert entry["name"] == "tasks.jsonl" and entry["records"] == 2 and len(entry["sha256"]) == 64
    assert manifest["params"] == {"a": 1}


def test_same_records_same_bytes(tmp_path):
    a = _write(tmp_path, [{"id": "x/1", "t": "é"}], out=tmp_path / "a")
    b = _write(tmp_path, [{"id": "x/1", "t": "é"}], out=tmp_path / "b")
    assert (a.path / "tasks.jsonl").read_bytes() == (b.path / "tasks.jsonl").read_bytes()


def test_failed_step_leaves_nothing_and_keeps_old_artifact(tmp_path):
    out = tmp_path / "out"
    _write(tmp_path, [{"id": "x/1"}], out=out)
    with pytest.raises(RuntimeError):
        with ArtifactWriter(out, "tasks", update_latest=False) as w:
            w.write_jsonl("tasks.jsonl", [{"id": "y"}])
            raise RuntimeError("boom")
    assert [r["id"] for r in read_jsonl(out / "tasks.jsonl")] == ["x/1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_workspace_lookup_by_name_and_refusals(tmp_path):
    art = _write(tmp_path, [{"id": "x/1"}])
    found = load_artifact("demo", "tasks", workspace=tmp_path / "ws")
    assert found.path == art.path
    with pytest.raises(ArtifactError, match="expected 'analysis'"):
        load_artifact(art.path, "analysis")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_artifact(tmp_path, "tasks")
    manifest = json.loads((art.path / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (art.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="schema_version 99"):
        load_artifact(art.path, "tasks")


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        list(read_jsonl(path))


def test_append_log_survives_torn_line(tmp_path):
    path = tmp_path / "results.jsonl"
    with AppendLog(path) as log:
        log.append({"id": "a", "ok": True})
    with path.open("a") as fh:
        fh.write('{"id": "b", "ok"')  # crash mid-write
    log = AppendLog(path)
    assert log.done("a") and not log.done("b")
    log.append({"id": "b", "ok": False})
    log.close()
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]


def test_a_lone_surrogate_is_written_escaped_and_reads_back(tmp_path):
    """A server's JSON may carry a lone surrogate (legal JSON, not UTF-8): the record is written with escapes
    instead of failing the whole step."""
    path = tmp_path / "a.jsonl"
    records = [{"id": "a", "text": "ok \ud800 end"}, {"id": "b", "text": "é"}]
    with AppendLog(path) as log:
        log.extend(records)
    assert list(read_jsonl(path)) == records
    assert AppendLog(path).records == {"a": records[0], "b": records[1]}  # a rerun reads it back too
    assert "é" in path.read_text(encoding="utf-8")  # only the record that needs escapes gets them


def test_a_failed_atomic_write_names_the_users_path(tmp_path):
    from hrmcode.atomic import atomic_open

    for target in (tmp_path / "missing" / "x.html", tmp_path):  # no parent; a directory
        with pytest.raises(OSError) as failure:
            with atomic_open(target) as fh:
                fh.write("x")
        assert failure.value.filename == str(target) and ".tmp" not in str(failure.value)
