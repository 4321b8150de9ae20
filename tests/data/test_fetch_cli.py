"""`hrmcode fetch` and `hrmcode analyze` from the command line: results, and every error path as one line."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _versions(workspace: Path, name: str) -> list[str]:
    base = workspace / "fetch" / name
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def test_fetch_humaneval_json_result(cli, workspace):
    result = cli("--json", "fetch", "humaneval", "--limit", "5")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["records"] == 5 and payload["languages"] == {"python": 5} and payload["kind"] == "tasks"
    manifest = json.loads((Path(payload["artifact"]) / "manifest.json").read_text())
    assert manifest["stats"]["source"] == "humaneval" and manifest["stats"]["languages"] == {"python": 5}
    assert (workspace / "fetch" / "humaneval" / "LATEST").is_file()


def test_fetch_dry_run_writes_nothing(cli, workspace):
    result = cli("fetch", "polyglot", "--from", FIXTURES / "polyglot", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "would fetch 6 polyglot records" in result.stdout
    assert not (workspace / "fetch").exists()


def test_fetch_to_an_explicit_out_dir(cli, tmp_path):
    result = cli("fetch", "swe-smith", "--from", FIXTURES / "swe_smith_7field.jsonl", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "manifest.json").is_file() and (tmp_path / "out" / "tasks.jsonl").is_file()


def test_unknown_source_is_a_usage_error(cli):
    result = cli("fetch", "stackoverflow")
    assert result.exit_code == 2
    assert "unknown source 'stackoverflow'" in _one_error_line(result)


def test_option_the_source_does_not_take(cli):
    result = cli("fetch", "humaneval", "--release", "v6")
    assert result.exit_code == 2 and "takes no --release" in _one_error_line(result)


def test_missing_path(cli, tmp_path, workspace):
    result = cli("fetch", "swe-smith", "--from", tmp_path / "nope.jsonl")
    assert result.exit_code == 1 and "no such path" in _one_error_line(result)
    assert _versions(workspace, "swe-smith") == []


def test_malformed_jsonl_line_names_the_line(cli, tmp_path, workspace):
    good = (FIXTURES / "swe_smith_9field.jsonl").read_text()
    bad = tmp_path / "instances.jsonl"
    bad.write_text(good + "{not json\n")
    result = cli("fetch", "swe-smith", "--from", bad)
    assert result.exit_code == 1
    assert f"{bad}:3: malformed JSON" in _one_error_line(result)
    assert _versions(workspace, "swe-smith") == []


def test_wrong_schema(cli, workspace):
    result = cli("fetch", "tasks", "--from", FIXTURES / "swe_smith_7field.jsonl")
    assert result.exit_code == 1
    assert "swe_smith_7field.jsonl:1: not a valid hrmcode task" in _one_error_line(result)
    assert _versions(workspace, "tasks") == []


def test_unreachable_remote(cli, monkeypatch, workspace):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = cli("fetch", "livecodebench", "--release", "v1")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "source unavailable: cannot reach Hugging Face dataset livecodebench/code_generation_lite" in line
    assert "--from" in line
    assert _versions(workspace, "livecodebench") == []


def test_failed_fetch_keeps_the_earlier_artifact(cli, tmp_path):
    out = tmp_path / "tasks-out"
    assert cli("fetch", "humaneval", "--from", FIXTURES / "humaneval.jsonl", "-o", out).exit_code == 0
    before = (out / "tasks.jsonl").read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/9"}\n')
    assert cli("fetch", "humaneval", "--from", bad, "-o", out).exit_code == 1
    assert (out / "tasks.jsonl").read_bytes() == before


def test_analyze_prints_the_summary_and_writes_parquet(cli, workspace):
    assert cli("fetch", "polyglot", "--from", FIXTURES / "polyglot").exit_code == 0
    result = cli("analyze", "polyglot")
    assert result.exit_code == 0, result.stderr
    assert "6 tasks by source and language" in result.stdout and "by curriculum stage" in result.stdout
    as_json = cli("--json", "analyze", "polyglot")
    payload = json.loads(as_json.stdout)
    assert payload["tasks"] == 6 and Path(payload["artifact"], "analysis.parquet").is_file()
    assert {r["language"] for r in payload["by_source_language"]} == {"cpp", "go", "java", "javascript", "python", "rust"}


def test_analyze_refuses_a_missing_or_wrong_artifact(cli, tmp_path):
    result = cli("analyze", "nothing-here")
    assert result.exit_code == 1 and "no artifact 'nothing-here'" in _one_error_line(result)
    assert cli("fetch", "code", "--from", FIXTURES / "polyglot", "-o", tmp_path / "corpus").exit_code == 0
    wrong = cli("analyze", tmp_path / "corpus")
    assert wrong.exit_code == 1 and "is a 'corpus' artifact, expected 'tasks'" in _one_error_line(wrong)
