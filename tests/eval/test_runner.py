"""The eval run loop: torn and duplicated results, verdict-rules versions, refused nonsense, prompts
longer than the model's context, the failed cases in the table, progress lines off a terminal.

The SIGKILL-and-resume test is in ``test_runner_kill.py``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from hrmcode.cli._output import Output
from hrmcode.errors import InputError, UsageError
from hrmcode.eval.backends import Generation, OpenAIBackend, OracleBackend, PromptTooLong, Reply, Request
from hrmcode.eval.humaneval import CHAT_PROMPT, builtin_tasks
from hrmcode.eval.livecodebench import LiveCodeBench
from hrmcode.eval.polyglot import Polyglot
from hrmcode.eval.runner import VERDICT_RULES, RunOptions, run_benchmark
from hrmcode.jsonl import AppendLog, read_jsonl
from tests.eval.conftest import load_fixture_tasks, write_tasks_artifact
from tests.eval.test_polyglot import TASK as POLYGLOT_TASK
from tests.quantize.tiny import make_tiny_model


def _humaneval(cli, out, *extra):
    return cli("eval", "humaneval", "--model", "oracle", "--limit", "3", "--out", out, "--unsafe-no-sandbox", *extra)


def _one_line_usage_error(result) -> None:
    """Exit 2 and one error line (after any warnings), no traceback."""
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: usage:"), result.stderr


# -- results that survive crashes ------------------------------------------------------------------

def test_a_torn_last_line_cut_inside_a_utf8_character_is_dropped(tmp_path):
    path = tmp_path / "results.jsonl"
    with AppendLog(path) as log:
        log.append({"id": "a", "note": "ok"})
    torn = json.dumps({"id": "b", "note": "naïve"}, ensure_ascii=False).encode("utf-8")
    cut = torn.index("ï".encode("utf-8")) + 1  # inside the two bytes of ï
    with path.open("ab") as fh:
        fh.write(torn[:cut])
    with pytest.raises(UnicodeDecodeError):
        torn[:cut].decode("utf-8")  # the tail really is cut inside a character
    log = AppendLog(path)
    assert log.done("a") and not log.done("b")
    log.append({"id": "b", "note": "naïve"})
    log.close()
    assert [r["note"] for r in read_jsonl(path)] == ["ok", "naïve"]


def test_a_rerun_after_a_torn_utf8_line_resumes_from_the_cli(cli, tmp_path):
    out = tmp_path / "run"
    first = _humaneval(cli, out, "--limit", "2")
    assert first.exit_code == 0, first.stderr
    record = json.loads((out / "results.jsonl").read_text(encoding="utf-8").splitlines()[0])
    record.update(id="humaneval/HumanEval/2", note="日本語")
    line = json.dumps(record, ensure_ascii=False).encode("utf-8")
    with (out / "results.jsonl").open("ab") as fh:
        fh.write(line[: line.index("日".encode("utf-8")) + 2])  # killed two bytes into a three-byte character
    again = cli("--json", "eval", "humaneval", "--model", "oracle", "--limit", "3", "--out", out, "--unsafe-no-sandbox")
    assert again.exit_code == 0, again.stderr
    payload = json.loads(again.stdout)
    assert (payload["ran"], payload["skipped"], payload["solved"]) == (1, 2, 3)
    ids = [r["id"] for r in read_jsonl(out / "results.jsonl")]
    assert ids == [f"humaneval/HumanEval/{i}" for i in range(3)]
    assert all("note" not in r for r in read_jsonl(out / "results.jsonl"))


def test_repeated_records_count_once_and_a_malformed_inner_line_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 1}\n{"id": "a", "v": 2}\n', encoding="utf-8")
    log = AppendLog(path)
    log.close()
    assert log.records == {"b": {"id": "b", "v": 1}, "a": {"id": "a", "v": 2}}
    assert [(r["id"], r["v"]) for r in read_jsonl(path)] == [("b", 1), ("a", 2)]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "a"}\n{"id": "b", "v\xc3\n{"id": "c"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed record"):
        AppendLog(bad)
    assert bad.read_bytes() == b'{"id": "a"}\n{"id": "b", "v\xc3\n{"id": "c"}\n'  # left as it was


# -- verdict rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("recorded", [None, VERDICT_RULES - 1, VERDICT_RULES + 1])
def test_resuming_a_run_scored_under_other_verdict_rules_is_refused(cli, tmp_path, recorded):
    out = tmp_path / "run"
    assert _humaneval(cli, out, "--limit", "2").exit_code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["verdict_rules"] == VERDICT_RULES
    assert json.loads((out / "summary.json").read_text())["verdict_rules"] == VERDICT_RULES
    if recorded is None:
        del run["verdict_rules"]  # a run written before the version was recorded: rules 1
    else:
        run["verdict_rules"] = recorded
    (out / "run.json").write_text(json.dumps(run))
    results_before = (out / "results.jsonl").read_bytes()
    refused = _humaneval(cli, out)
    _one_line_usage_error(refused)
    assert f"verdict rules {recorded or 1}" in refused.stderr and "--redo" in refused.stderr
    assert (out / "results.jsonl").read_bytes() == results_before and (out / "manifest.json").is_file()
    redone = _humaneval(cli, out, "--redo")
    assert redone.exit_code == 0, redone.stderr
    assert json.loads((out / "run.json").read_text())["verdict_rules"] == VERDICT_RULES


# -- refused nonsense ------------------------------------------------------------------------------

@pytest.fixture
def tasks_of_each_bench(tmp_path) -> dict[str, Path]:
    return {
        "polyglot": write_tasks_artifact(tmp_path / "polyglot-tasks", [POLYGLOT_TASK]),
        "livecodebench": write_tasks_artifact(tmp_path / "lcb-tasks", load_fixture_tasks("lcb_tasks.jsonl")),
        "humaneval": write_tasks_artifact(tmp_path / "humaneval-tasks", builtin_tasks()[:2]),
    }


NONSENSE = [
    (["humaneval", "--timeout", "0"], "--timeout 0 is not a positive number of seconds"),
    (["humaneval", "--timeout", "-2"], "'--timeout': Input should be greater than or equal to 0"),
    (["livecodebench", "--timeout", "0"], "--timeout 0 is not a positive number of seconds"),
    (["polyglot", "--test-timeout", "0"], "--test-timeout 0 is not a positive number of seconds"),
    (["humaneval", "--request-timeout", "0"], "--request-timeout 0 is not a positive number of seconds"),
    (["humaneval", "--k", "5"], "--k 5 needs at least 5 samples per task, and --n is 1"),
    (["humaneval", "--n", "2", "--k", "1,3"], "--k 3 needs at least 3 samples per task, and --n is 2"),
    (["livecodebench", "--n", "4", "--k", "5"], "--k 5 needs at least 5 samples per task, and --n is 4"),
    (["humaneval", "--temperature", "-0.5"], "--temperature"),
    (["humaneval", "--top-p", "0"], "--top-p 0 is not in (0, 1]"),
    (["humaneval", "--top-p", "1.5"], "--top-p"),
    (["polyglot", "--tasks", "{humaneval}"], "humaneval task(s) of kind function, which polyglot does not grade"),
    (["livecodebench", "--tasks", "{humaneval}"], "which livecodebench does not grade"),
    (["humaneval", "--tasks", "{polyglot}"], "polyglot task(s) of kind exercise, which humaneval does not grade"),
    (["humaneval", "--tasks", "{livecodebench}"], "which humaneval does not grade"),
]


@pytest.mark.parametrize("args,message", NONSENSE, ids=[" ".join(a) for a, _ in NONSENSE])
def test_nonsense_options_are_one_line_usage_errors(cli, tmp_path, tasks_of_each_bench, args, message):
    args = [str(tasks_of_each_bench[a[1:-1]]) if a.startswith("{") else a for a in args]
    defaults = [] if "--tasks" in args else ["--tasks", str(tasks_of_each_bench[args[0]])]
    result = cli("eval", *args, "--model", "oracle", *defaults, "--out", tmp_path / "run", "--unsafe-no-sandbox")
    _one_line_usage_error(result)
    assert message in result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_k_above_the_samples_a_samples_file_holds_is_refused(cli, tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": f"HumanEval/{i}", "completion": "    pass\n"}) + "\n"
                               for i in range(2)))
    result = cli("eval", "humaneval", "--model", f"samples:{samples}", "--k", "2", "--out", tmp_path / "run",
                 "--unsafe-no-sandbox")
    _one_line_usage_error(result)
    assert "--k 2 needs at least 2 samples per task, and the samples file has 1" in result.stderr


def test_default_ks_are_those_the_samples_allow_and_pass_at_1_is_always_the_score(cli, tmp_path):
    one = cli("--json", "eval", "humaneval", "--model", "oracle", "--limit", "2", "--out", tmp_path / "one",
              "--unsafe-no-sandbox")
    assert one.exit_code == 0, one.stderr
    assert json.loads(one.stdout)["ks"] == [1] and json.loads(one.stdout)["score"] == 100.0
    two = cli("--json", "eval", "humaneval", "--model", "oracle", "--n", "2", "--k", "2", "--limit", "2",
              "--out", tmp_path / "two", "--unsafe-no-sandbox")
    assert two.exit_code == 0, two.stderr
    payload = json.loads(two.stdout)
    assert payload["ks"] == [1, 2] and payload["pass@1"] == payload["pass@2"] == 1.0 and payload["score"] == 100.0


def test_a_refused_rerun_leaves_the_finished_run_as_it_was(cli, tmp_path):
    out = tmp_path / "run"
    assert _humaneval(cli, out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _one_line_usage_error(_humaneval(cli, out, "--timeout", "0"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- prompts longer than the model's context -------------------------------------------------------

def test_a_prompt_longer_than_the_checkpoints_context_fails_that_case_and_the_run_goes_on(cli, tmp_path):
    model = make_tiny_model(tmp_path / "tiny", max_seq_len=480)
    from hrmcode.quantize import load_any

    loaded = load_any(model)
    tasks = builtin_tasks()[:3]
    lengths = [len(loaded.config.prompt.encode_chat(loaded.tokenizer, [("user", CHAT_PROMPT.format(prompt=t.prompt))]))
               for t in tasks]
    too_long = [n >= 480 for n in lengths]
    assert any(too_long) and not all(too_long), lengths  # the fixture mixes both kinds of case
    result = cli("--json", "eval", "humaneval", "--model", f"checkpoint:{model}", "--limit", "3", "--max-tokens", "4",
                 "--out", tmp_path / "run", "--unsafe-no-sandbox")
    assert result.exit_code == 0, result.stderr
    records = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert [r["id"] for r in records] == [t.id for t in tasks]
    for record, length, long in zip(records, lengths, too_long):
        if long:
            reason = f"the prompt has {length} tokens, the model's context is 480"
            assert record["error"] == reason and record["samples"][0]["result"] == f"failed: {reason}"
            assert not record["samples"][0]["passed"] and record["n"] == 1
        else:
            assert "error" not in record and record["prompt_tokens"] == length and record["completion_tokens"] >= 1
    assert {t.id for t, long in zip(tasks, too_long) if long} <= set(json.loads(result.stdout)["failed"])


class _TooLongFor:
    """Answers as the oracle, except that the prompts of ``ids`` do not fit its context."""

    name = "too-long"

    def __init__(self, ids: set[str]):
        self.ids = ids
        self.oracle = OracleBackend()

    def describe(self) -> dict:
        return {"model": "too-long"}

    def complete(self, request: Request) -> list[Reply]:
        if request.task.id in self.ids:
            raise PromptTooLong("the prompt has 9999 tokens, the model's context is 64", "a longer context")
        return self.oracle.complete(request)


def test_livecodebench_fails_a_too_long_case_with_its_reason_and_grades_the_rest(sandbox, tmp_path):
    tasks = load_fixture_tasks("lcb_tasks.jsonl")
    skipped = {tasks[1].id}
    bench = LiveCodeBench(_TooLongFor(skipped), sandbox, n=2, ks=(1, 2), comparator="tolerant")  # all references pass
    result = run_benchmark(bench, tasks, RunOptions(out=tmp_path / "run", batch=len(tasks)))
    records = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "results.jsonl")}
    assert len(records) == len(tasks)
    long = records[tasks[1].id]
    assert long["n"] == 2 and long["correct"] == 0
    assert all(s["error"]["message"].startswith("the prompt has 9999 tokens") for s in long["samples"])
    assert all(r["correct"] == 2 for i, r in records.items() if i not in skipped)
    assert result.failed == [tasks[1].id] and result.summary["pass@2"] == pytest.approx((len(tasks) - 1) / len(tasks))


def test_polyglot_fails_a_too_long_case_with_its_reason(sandbox, tmp_path):
    bench = Polyglot(_TooLongFor({POLYGLOT_TASK.id}), sandbox)
    result = run_benchmark(bench, [POLYGLOT_TASK], RunOptions(out=tmp_path / "run"))
    (record,) = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert record["error"].startswith("the prompt has 9999 tokens") and record["passed"] is False
    assert record["tests_outcomes"] == [] and result.failed == [POLYGLOT_TASK.id]


def test_a_servers_context_length_error_is_a_prompt_too_long():
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "This model's maximum context length is 4096 tokens. "
                                                              "However, you requested 9000 tokens.",
                                                   "code": "context_length_exceeded"}})

    backend = OpenAIBackend("http://model.invalid/v1", "m", Generation(retries=0))
    backend.client = httpx.Client(transport=httpx.MockTransport(server))
    task = builtin_tasks()[0]
    with pytest.raises(PromptTooLong, match="maximum context length is 4096"):
        backend.complete(Request(bench="humaneval", task=task, messages=[{"role": "user", "content": "x"}]))


# -- what the user sees ---------------------------------------------------------------------------

def test_the_result_table_names_the_failed_cases(cli, tmp_path):
    result = cli("eval", "humaneval", "--model", "stub", "--limit", "3", "--out", tmp_path / "run",
                 "--unsafe-no-sandbox")
    assert result.exit_code == 0, result.stderr
    assert "failed cases (3)" in result.stdout
    assert all(f"humaneval/HumanEval/{i}" in result.stdout for i in range(3))
    passed = cli("eval", "humaneval", "--model", "oracle", "--limit", "3", "--out", tmp_path / "ok",
                 "--unsafe-no-sandbox")
    assert "failed cases" not in passed.stdout


def test_progress_lines_every_few_seconds_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("HRMCODE_NO_PROGRESS", raising=False)
    monkeypatch.setenv("HRMCODE_PROGRESS_EVERY", "0.05")
    output = Output()
    output.configure()
    with output.task("eval demo", 4) as task:
        task.advance()
        time.sleep(0.3)  # nothing finishes for a while: the lines still come
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(line.startswith("eval demo: 1/4 (25%), 0m00s") for line in lines), lines
    with output.task("quick", 4) as task:
        task.advance(4)
    assert capsys.readouterr().err == ""  # shorter than one interval: nothing
    output.configure(quiet=True)
    with output.task("quiet", 4):
        time.sleep(0.2)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("HRMCODE_PROGRESS_EVERY", "0")
    output.configure()
    with pytest.raises(UsageError, match="HRMCODE_PROGRESS_EVERY"):
        with output.task("bad", 1):
            pass


def test_a_task_artifact_with_mixed_kinds_is_refused_naming_it(tmp_path):
    from hrmcode.eval.runner import load_tasks

    mixed = write_tasks_artifact(tmp_path / "mixed", [*builtin_tasks()[:1], POLYGLOT_TASK])
    with pytest.raises(UsageError, match="1 polyglot task"):
        load_tasks("humaneval", mixed, None, kinds=("function",))
    tasks, _ = load_tasks("humaneval", write_tasks_artifact(tmp_path / "he", builtin_tasks()[:2]), None,
                          kinds=("function",))
    assert [t.id for t in tasks] == ["humaneval/HumanEval/0", "humaneval/HumanEval/1"]


def test_the_library_refuses_what_the_command_line_would(tmp_path):
    from hrmcode.eval.api import EvalConfig, eval_humaneval, eval_livecodebench, eval_polyglot

    config = EvalConfig(model="oracle", out=tmp_path / "run", unsafe_no_sandbox=True)
    with pytest.raises(UsageError, match="--timeout -1 is not a positive number"):
        eval_humaneval(config, timeout_s=-1.0)
    with pytest.raises(UsageError, match="--timeout nan is not a positive number"):
        eval_livecodebench(config, timeout_s=float("nan"))
    with pytest.raises(UsageError, match="--test-timeout 0 is not a positive number"):
        eval_polyglot(config, test_timeout_s=0.0)
    with pytest.raises(UsageError, match="--temperature -1 is negative"):
        eval_humaneval(EvalConfig(model="oracle", temperature=-1.0))
    assert not (tmp_path / "run").exists()


class _Slow:
    """A benchmark whose cases take ``seconds`` each; ``broken`` raises at once."""

    name = "slow"

    def __init__(self, seconds: float, broken: str | None = None):
        self.seconds, self.broken = seconds, broken
        self.finished = 0

    def evaluate(self, tasks, worker):
        if tasks[0].id == self.broken:
            raise UsageError("this case cannot run", "a test")
        time.sleep(self.seconds)
        self.finished += len(tasks)
        return [{"id": task.id, "passed": True} for task in tasks]

    def summarize(self, records, tasks):
        return {"bench": self.name, "score": 100.0 * len(records) / len(tasks)}


def _tasks(count: int) -> list:
    return [task.model_copy(update={"id": f"slow/{i:02d}"}) for i, task in enumerate(builtin_tasks()[:count])]


def test_each_batch_is_on_disk_as_soon_as_it_finishes(tmp_path, monkeypatch):
    tasks = _tasks(6)
    first_on_disk = threading.Event()

    class Gated(_Slow):
        """Every case but the first waits (at most 5 s) until a record is on disk."""

        def evaluate(self, tasks, worker):
            if tasks[0].id != "slow/00":
                first_on_disk.wait(5)
            return super().evaluate(tasks, worker)

    bench = Gated(0.0)
    on_disk_when: list[tuple[int, int]] = []  # (records in the file, cases evaluated) at each append
    real_extend = AppendLog.extend

    def extend(log, records):
        real_extend(log, records)
        on_disk_when.append((len(list(read_jsonl(log.path))), bench.finished))
        first_on_disk.set()

    monkeypatch.setattr(AppendLog, "extend", extend)
    started = time.monotonic()
    run_benchmark(bench, tasks, RunOptions(out=tmp_path / "run", jobs=2))
    assert [on_disk for on_disk, _ in on_disk_when] == [1, 2, 3, 4, 5, 6]
    assert on_disk_when[0][1] == 1, on_disk_when  # written while the other five waited for it
    assert time.monotonic() - started < 4


def test_a_failing_case_stops_the_run_but_keeps_the_cases_already_running(tmp_path):
    tasks = _tasks(4)
    with pytest.raises(UsageError, match="cannot run"):
        run_benchmark(_Slow(0.3, broken="slow/00"), tasks, RunOptions(out=tmp_path / "run", jobs=2))
    kept = [r["id"] for r in read_jsonl(tmp_path / "run" / "results.jsonl")]
    # slow/01 was running beside the failure: finished and appended. slow/02 may have started on the
    # failed worker before the rest was cancelled; slow/03 never starts.
    assert "slow/01" in kept and set(kept) <= {"slow/01", "slow/02"}
    result = run_benchmark(_Slow(0.0), tasks, RunOptions(out=tmp_path / "run", jobs=2))
    assert (result.ran, result.skipped) == (4 - len(kept), len(kept))
