"""Split by task, determinism across -j, resume, and the CLI's error paths."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import defaultdict

from hrmcode.data.synthesize import synthesize
from hrmcode.data.synthesize.pipeline import PROGRESS, split_of
from hrmcode.jsonl import read_jsonl


def test_split_is_by_task_and_seeded(humaneval_tasks, tmp_path):
    a = synthesize("humaneval", out=tmp_path / "a", heldout_fraction=0.5, seed=1)
    splits = defaultdict(set)
    for example in read_jsonl(a.artifact.path / "examples.jsonl"):
        splits[example["task_id"]].add(example["split"])
    assert all(len(s) == 1 for s in splits.values())  # never split inside a task
    assert {t: s.pop() for t, s in splits.items()} == {t: split_of(t, 1, 0.5) for t in splits}
    keys = [f"task-{i}" for i in range(2000)]
    heldout = sum(split_of(k, 7, 0.1) == "heldout" for k in keys)
    assert 150 < heldout < 250 and [split_of(k, 7, 0.1) for k in keys] != [split_of(k, 8, 0.1) for k in keys]


def test_same_bytes_for_any_jobs_and_rerun(humaneval_tasks, tmp_path, monkeypatch):
    from hrmcode.data.synthesize import pipeline

    monkeypatch.setattr(pipeline, "CHUNK_TASKS", 1)  # three chunks, so -j 2 really runs in parallel
    one = synthesize("humaneval", out=tmp_path / "one", jobs=1)
    two = synthesize("humaneval", out=tmp_path / "two", jobs=2)
    assert (one.artifact.path / "examples.jsonl").read_bytes() == (two.artifact.path / "examples.jsonl").read_bytes()
    assert one.stats["tasks"] == 3 and one.stats["examples"] == 15


def test_resume_skips_finished_tasks_and_redo_starts_over(humaneval_tasks, tmp_path, monkeypatch):
    from hrmcode.data.synthesize import pipeline

    monkeypatch.setattr(pipeline, "CHUNK_TASKS", 1)
    out = tmp_path / "run"
    first = synthesize("humaneval", out=out)
    expected = (out / "examples.jsonl").read_bytes()
    # simulate a crash after the first chunk: drop the progress of the other two
    lines = (out / PROGRESS).read_text().splitlines(keepends=True)
    (out / PROGRESS).write_text(lines[0])
    calls = []
    real = pipeline._run_chunk
    monkeypatch.setattr(pipeline, "_run_chunk", lambda *a: calls.append(a) or real(*a))
    again = synthesize("humaneval", out=out)
    assert len(calls) == 2  # only the unfinished chunks ran
    assert (out / "examples.jsonl").read_bytes() == expected and again.stats == first.stats
    calls.clear()
    synthesize("humaneval", out=out, redo=True)
    assert len(calls) == 3


def test_rerun_with_other_options_into_same_dir_is_refused(humaneval_tasks, tmp_path, cli):
    out = tmp_path / "run"
    assert cli("synthesize", "--source", "humaneval", "-o", out).exit_code == 0
    result = cli("synthesize", "--source", "humaneval", "-o", out, "--seed", "5")
    assert result.exit_code == 2 and "--redo" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_writes_artifact_and_json(humaneval_tasks, cli):
    result = cli("--json", "synthesize", "--source", "humaneval", "--levels", "plan,solve")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["by_level"] == {"plan": 3, "solve": 3}
    manifest = json.loads(open(f"{payload['artifact']}/manifest.json").read())
    assert manifest["kind"] == "examples" and [i["kind"] for i in manifest["inputs"]] == ["tasks", "analysis"]


def test_cli_errors_are_one_line(cli, humaneval_tasks, tmp_path):
    missing = cli("synthesize", "--source", "nothing-here")
    assert missing.exit_code == 1 and "no artifact 'nothing-here'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_level = cli("synthesize", "--source", "humaneval", "--levels", "plan,dream")
    assert bad_level.exit_code == 2 and "unknown level(s) dream" in bad_level.stderr
    not_git = cli("synthesize", "--source", f"repo:{tmp_path}", "--test-cmd", "pytest")
    assert not_git.exit_code == 1 and "not a git repository" in not_git.stderr
    python_repo = tmp_path / "pyrepo"  # Python has no default test command (Go, Rust and jest do)
    (python_repo / "pkg").mkdir(parents=True)
    (python_repo / "pkg" / "core.py").write_text("def f(x):\n    return x + 1\n")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=python_repo, check=True)
    no_cmd = cli("synthesize", "--source", f"repo:{python_repo}")
    assert no_cmd.exit_code == 2 and "--test-cmd" in no_cmd.stderr


def test_malformed_tasks_line_names_file_and_line(humaneval_tasks, tmp_path, cli):
    from hrmcode.data.analyze import analyze

    analysis, _ = analyze(humaneval_tasks.path)  # analysed while intact; the line breaks afterwards
    tasks = humaneval_tasks.path / "tasks.jsonl"
    lines = tasks.read_text().splitlines(keepends=True)
    tasks.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    # as if fetch had written the bad line: the manifest records these bytes (an edit alone is refused earlier)
    manifest_path = humaneval_tasks.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(o for o in manifest["outputs"] if o["name"] == "tasks.jsonl")
    entry.update(sha256=hashlib.sha256(tasks.read_bytes()).hexdigest(), bytes=tasks.stat().st_size)
    manifest_path.write_text(json.dumps(manifest))
    result = cli("synthesize", "--source", "humaneval", "--analysis", analysis.path, "-o", tmp_path / "x")
    assert result.exit_code == 1 and f"{tasks}:2: malformed JSON" in result.stderr
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_dry_run_writes_nothing(humaneval_tasks, tmp_path, cli):
    result = cli("synthesize", "--source", "humaneval", "-o", tmp_path / "dry", "--dry-run")
    assert result.exit_code == 0 and not (tmp_path / "dry").exists()


def test_limit_takes_the_first_tasks(humaneval_tasks, tmp_path):
    result = synthesize("humaneval", out=tmp_path / "two", limit=2, levels=("plan",))
    ids = [e["task_id"] for e in read_jsonl(result.artifact.path / "examples.jsonl")]
    assert ids == ["humaneval/HumanEval/0", "humaneval/HumanEval/1"] and result.stats["tasks"] == 2
