"""synthesize --source repo:PATH at scale: parallel validation (-j), resuming from the verdict log
(after a kill -9 too), whole test ids with spaces, failing subtests, refused options, the reports,
and a repository owned by another user."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrmcode.data.bugs import Candidate, candidate_hash, judge_candidate, read_repo, repo_tasks
from hrmcode.errors import InputError
from hrmcode.sandbox.base import Limits
from hrmcode.sandbox.reports.pytest_report import run_suite
from tests._sandboxes import real_sandbox
from tests.synth.conftest import commit_tree

NAMES = '''def initials(name):
    parts = name.split()
    letters = []
    for part in parts:
        letters.append(part[0].upper())
    return "".join(letters)


def shout(text):
    loud = text.upper()
    return loud + "!"


def clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value


def untested(x):
    return x + 1  # no test calls it: its bugs break nothing
'''
TESTS = '''import unittest

import pytest

from names import clamp, initials, shout


@pytest.mark.parametrize("name, expected", [("Donald E. Knuth", "DEK"), ("Ada Lovelace", "AL")])
def test_initials(name, expected):
    assert initials(name) == expected


def test_clamp():
    assert clamp(5, 0, 10) == 5
    assert clamp(-1, 0, 10) == 0
    assert clamp(11, 0, 10) == 10


class ShoutTest(unittest.TestCase):
    def test_shout(self):
        for word in ["a", "b"]:
            with self.subTest(word=word):
                self.assertEqual(shout(word), word.upper() + "!")
'''
KNUTH = "tests/test_names.py::test_initials[Donald E. Knuth-DEK]"
SHOUT = "tests/test_names.py::ShoutTest::test_shout"
ALL_IDS = {KNUTH, "tests/test_names.py::test_initials[Ada Lovelace-AL]", "tests/test_names.py::test_clamp", SHOUT}
TEST_CMD = "python3 -m pytest -q tests"


@pytest.fixture
def names_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "names"
    (repo / "tests").mkdir(parents=True)
    (repo / "names.py").write_text(NAMES, encoding="utf-8")
    (repo / "tests" / "test_names.py").write_text(TESTS, encoding="utf-8")
    (repo / "conftest.py").write_text("import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n")
    return commit_tree(repo, "fixture")


@pytest.fixture(scope="module")
def sandbox():
    return real_sandbox("local")


class CountingSandbox:
    """The real sandbox, counting its test runs (a resumed run must not redo finished ones)."""

    def __init__(self, inner):
        self.inner = inner
        self.runs = 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.inner.run(*args, **kwargs)


def _outputs(result) -> dict[str, bytes]:
    return {name: (result.artifact.path / name).read_bytes()
            for name in ("instances.jsonl", "tasks.jsonl", "repository.jsonl")}


def _made(stats: dict) -> dict:
    """The stats of what a run made (not how: resumed counts and the log's path differ)."""
    return {k: v for k, v in stats.items() if k not in ("resumed", "verdict_log")}


@pytest.mark.integration
def test_ids_with_spaces_stay_whole_and_a_failing_subtest_fails(names_repo, sandbox):
    info = read_repo(names_repo)
    limits = Limits(timeout_s=60)
    reference = run_suite(sandbox, info.files, TEST_CMD, limits, strict=True)
    assert reference.problem is None and reference.passing() == ALL_IDS
    # one of the two subtests fails, the test method's own call passes
    bugged = NAMES.replace('    return loud + "!"', '    return loud + ("?" if text == "b" else "!")')
    run = run_suite(sandbox, {**info.files, "names.py": bugged}, TEST_CMD, limits, changed=["names.py"], strict=True)
    assert list(run.failed_subtests) == [SHOUT] and run.result.exit_code == 1
    verdict = judge_candidate(run, reference.passing())
    assert verdict == {"verdict": "kept", "FAIL_TO_PASS": [SHOUT], "PASS_TO_PASS": sorted(ALL_IDS - {SHOUT})}


@pytest.mark.integration
def test_kept_bugs_name_whole_ids(names_repo, workspace, sandbox):
    result = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=40, sandbox=sandbox)
    instances = [json.loads(line) for line in (result.artifact.path / "instances.jsonl").read_text().splitlines()]
    named = {t for i in instances for t in i["FAIL_TO_PASS"] + i["PASS_TO_PASS"]}
    assert named == ALL_IDS  # the Knuth id whole, never "...[Donald"
    assert any(SHOUT in i["FAIL_TO_PASS"] for i in instances)
    assert any(KNUTH in i["FAIL_TO_PASS"] for i in instances)


@pytest.mark.integration
def test_two_workers_give_the_same_bytes_and_a_rerun_tests_nothing(names_repo, tmp_path, workspace, sandbox):
    serial_box, parallel_box = CountingSandbox(sandbox), CountingSandbox(sandbox)
    serial = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=10, out=tmp_path / "j1", jobs=1,
                        sandbox=serial_box)
    parallel = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=10, out=tmp_path / "j2", jobs=2,
                          sandbox=parallel_box)
    tried = serial.stats["tried"]
    assert tried == min(10, serial.stats["candidates"]) >= 6
    assert serial_box.runs == parallel_box.runs == 1 + tried  # the reference and each candidate, once
    assert _outputs(serial) == _outputs(parallel)
    assert _made(serial.stats) == _made(parallel.stats) and serial.stats["kept"] >= 1
    assert sum(serial.stats["rejected"].values()) + serial.stats["kept"] == tried
    assert sum(serial.stats["by_type_rejected"].values()) == sum(serial.stats["rejected"].values())
    # a rerun over the same output finds every verdict in the log
    again_box = CountingSandbox(sandbox)
    again = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=10, out=tmp_path / "j1", jobs=2,
                       sandbox=again_box)
    assert again_box.runs == 0 and again.stats["resumed"] == tried
    assert _outputs(again) == _outputs(serial)
    # --redo tests every candidate again, to the same result
    redo_box = CountingSandbox(sandbox)
    redone = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=10, out=tmp_path / "j1", redo=True,
                        sandbox=redo_box)
    assert redo_box.runs == 1 + tried and redone.stats["resumed"] == 0
    assert _outputs(redone) == _outputs(serial)
    # another test command is another key: tested again
    other_box = CountingSandbox(sandbox)
    repo_tasks(str(names_repo), test_cmd=TEST_CMD + " -p no:cacheprovider", max_bugs=2, out=tmp_path / "j1",
               sandbox=other_box)
    assert other_box.runs == 3


@pytest.mark.integration
def test_a_torn_last_verdict_is_tested_again(names_repo, tmp_path, workspace, sandbox):
    first = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=4, out=tmp_path / "t", sandbox=sandbox)
    log = Path(first.stats["verdict_log"])
    assert log == tmp_path / "t.bug-verdicts.jsonl"
    raw = log.read_bytes()
    log.write_bytes(raw[:len(raw) - 40])  # a write cut by a crash
    box = CountingSandbox(sandbox)
    again = repo_tasks(str(names_repo), test_cmd=TEST_CMD, max_bugs=4, out=tmp_path / "t", sandbox=box)
    assert box.runs == 1 and again.stats["resumed"] == 3
    assert _outputs(again) == _outputs(first)


@pytest.mark.integration
def test_kill_9_mid_run_resumes_without_redoing_finished_candidates(names_repo, tmp_path, sandbox):
    workspace = tmp_path / "ws"
    env = {**os.environ, "HRMCODE_HOME": str(workspace), "HRMCODE_NO_PROGRESS": "1"}
    args = [sys.executable, "-m", "hrmcode", "--json", "synthesize", "--source", f"repo:{names_repo}",
            "--test-cmd", TEST_CMD, "--max-bugs", "8", "--levels", "plan"]
    log = workspace / "fetch" / "repo-names" / "bug-verdicts.jsonl"
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_bytes().count(b"\n") >= 4:  # the reference and three candidates
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = sum(1 for line in log.read_bytes().split(b"\n") if line.strip().endswith(b"}")) - 1
    assert 3 <= finished < 8
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    bugs = json.loads(done.stdout)["bugs"]
    assert bugs["resumed"] >= finished and bugs["tried"] == 8
    # the same kept bugs as a run that was never killed
    fresh = subprocess.run([*args, "-o", str(tmp_path / "fresh-examples")],
                           env={**env, "HRMCODE_HOME": str(tmp_path / "ws2")}, capture_output=True, text=True,
                           timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    fresh_bugs = json.loads(fresh.stdout)["bugs"]
    assert fresh_bugs["resumed"] == 0
    assert {k: v for k, v in bugs.items() if k not in ("resumed", "verdict_log")} == \
        {k: v for k, v in fresh_bugs.items() if k not in ("resumed", "verdict_log")}
    killed = sorted((workspace / "fetch" / "repo-names").glob("*/instances.jsonl"))
    never_killed = sorted((tmp_path / "ws2" / "fetch" / "repo-names").glob("*/instances.jsonl"))
    assert len(killed) == len(never_killed) == 1
    assert killed[0].read_bytes() == never_killed[0].read_bytes()


def test_repo_options_with_another_source_are_refused(cli, workspace):
    for extra in (["--test-cmd", "pytest"], ["--max-bugs", "3"], ["--bug-timeout", "5"]):
        result = cli("synthesize", "--source", "swe-smith", *extra)
        assert result.exit_code == 2, result.output
        message = [line for line in result.stderr.splitlines() if line.strip()]
        assert message and extra[0] in message[0] and "repo:PATH" in message[0]


def test_repo_source_without_a_test_command_is_refused(cli, names_repo):
    result = cli("synthesize", "--source", f"repo:{names_repo}")
    assert result.exit_code == 2 and "--test-cmd" in result.stderr


def test_dry_run_reports_in_words(cli, names_repo, workspace):
    result = cli("synthesize", "--source", f"repo:{names_repo}", "--test-cmd", TEST_CMD, "--max-bugs", "5",
                 "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would test 5 of" in result.stdout and "nothing written" in result.stdout
    assert "{" not in result.stdout and "'" not in result.stdout
    assert not (workspace / "fetch").exists()
    as_json = json.loads(cli("--json", "synthesize", "--source", f"repo:{names_repo}", "--test-cmd", TEST_CMD,
                             "--max-bugs", "5", "--dry-run").stdout)
    assert as_json["dry_run"] is True and as_json["bugs"]["tried"] == 5
    assert sum(as_json["bugs"]["by_type_tried"].values()) == 5


def test_dry_run_of_a_tasks_artifact_reports_in_words(cli, humaneval_tasks):
    first = cli("synthesize", "--source", "humaneval", "--dry-run")
    assert first.exit_code == 0, first.output
    assert "would analyze" in first.stdout and "{" not in first.stdout
    assert cli("analyze", "humaneval").exit_code == 0
    second = cli("synthesize", "--source", "humaneval", "--dry-run", "--levels", "plan,solve")
    assert second.exit_code == 0, second.output
    assert "would synthesize from 3 tasks" in second.stdout and "levels plan,solve" in second.stdout
    assert "{" not in second.stdout and "nothing written" in second.stdout


@pytest.mark.integration
def test_normal_and_json_output_report_bugs_by_reason_and_strategy(cli, names_repo, workspace):
    args = ["synthesize", "--source", f"repo:{names_repo}", "--test-cmd", TEST_CMD, "--max-bugs", "40",
            "--levels", "plan", "-j", "2"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "by strategy" in result.stdout and "rejected because" in result.stdout and "no_test_broke" in result.stdout
    bugs = json.loads(cli("--json", *args).stdout)["bugs"]
    tried = bugs["tried"]
    assert f"{bugs['kept']} kept of {tried} tried" in result.stdout
    assert tried == bugs["candidates"] and bugs["resumed"] == tried  # the second run found every verdict
    assert bugs["rejected"]["no_test_broke"] >= 1 and bugs["kept"] >= 1
    assert bugs["kept"] + sum(bugs["rejected"].values()) == tried
    assert sum(bugs["by_type_tried"].values()) == tried
    for kind, tried in bugs["by_type_tried"].items():
        assert bugs["by_type_kept"].get(kind, 0) + bugs["by_type_rejected"].get(kind, 0) == tried


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_repository_owned_by_another_user_is_read(names_repo, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # git's global config: must stay untouched
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for root, dirs, files in os.walk(names_repo):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), 54321, 54321)
    os.lchown(names_repo, 54321, 54321)
    plain = subprocess.run(["git", "-C", str(names_repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert plain.returncode != 0 and "dubious ownership" in plain.stderr  # git itself refuses it
    info = read_repo(names_repo)
    assert set(info.files) == {"names.py", "tests/test_names.py", "conftest.py"} and len(info.commit) == 40
    assert not (home / ".gitconfig").exists() and not (home / ".config" / "git").exists()


def test_a_directory_that_is_not_a_repository_is_one_line(tmp_path):
    (tmp_path / "plain" / ".git").mkdir(parents=True)
    with pytest.raises(InputError) as raised:
        read_repo(tmp_path / "plain")
    assert "\n" not in str(raised.value) and "git" in str(raised.value)


def test_candidate_keys_differ_by_file_and_text():
    a = Candidate("a.py", "f", "op_flip", "x = 1\n")
    assert candidate_hash(a) != candidate_hash(Candidate("b.py", "f", "op_flip", "x = 1\n"))
    assert candidate_hash(a) != candidate_hash(Candidate("a.py", "f", "op_flip", "x = 2\n"))
    assert candidate_hash(a) == candidate_hash(Candidate("a.py", "g", "op_swap", "x = 1\n"))
