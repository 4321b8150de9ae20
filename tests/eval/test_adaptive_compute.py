"""``eval --max-segments / --halt-threshold``: the budget reaches a checkpoint's generation and an
``hrmcode serve`` behind ``--model openai:``, each case records the segments used (the mean over its
generations: samples, tries, turns), the summary and the table show the mean per case; backends that generate nothing, models without segments and
bad values are one-line usage errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from hrmcode.eval.backends import Reply, Request
from hrmcode.eval.polyglot import Polyglot
from hrmcode.eval.runner import segments_summary
from hrmcode.jsonl import read_jsonl
from hrmcode.serve.app import ServeSettings
from hrmcode.serve.server import background_server, checkpoint_app
from tests.one_thread import _one_thread_module  # noqa: F401 (an autouse fixture)
from tests._act_model import make_act_model
from tests.eval.test_polyglot import RIGHT, TASK, WRONG
from tests.quantize.tiny import make_tiny_model

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def act(tmp_path_factory):
    return make_act_model(tmp_path_factory.mktemp("act"), max_seq_len=4096)  # HumanEval prompts are long


def _eval(cli, model, out, *extra, limit=2):
    return cli("--json", "eval", "humaneval", "--model", model, "--limit", str(limit), "--max-tokens", "4",
               "-o", str(out), *extra)


def test_checkpoint_cases_record_segments_within_the_budget(cli, act, tmp_path):
    run = cli("eval", "humaneval", "--model", f"checkpoint:{act}", "--limit", "2", "--max-tokens", "4",
              "--max-segments", "2", "-o", str(tmp_path / "run"))
    assert run.exit_code == 0, run.stderr
    assert "segments / case" in run.stdout
    records = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert len(records) == 2 and all(1 <= r["segments"] <= 2 for r in records)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["segments_per_case"] == pytest.approx(sum(r["segments"] for r in records) / 2, abs=1e-3)
    assert summary["model"]["max_segments"] == 2 and "halt_threshold" not in summary["model"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["params"]["generation"]["max_segments"] == 2


def test_an_hrmcode_server_gets_the_budget_in_the_body(cli, act, tmp_path):
    app = checkpoint_app(act, ServeSettings(max_tokens_cap=64, max_concurrency=1, max_queue=8), threads=1)
    with background_server(app) as url:
        result = _eval(cli, f"openai:{url}/v1", tmp_path / "run", "--model-name", "model", "--halt-threshold", "0.01",
                       limit=1)
    assert result.exit_code == 0, result.stderr
    assert [r["segments"] for r in read_jsonl(tmp_path / "run" / "results.jsonl")] == [1.0]
    assert json.loads(result.stdout)["segments_per_case"] == 1.0


@pytest.mark.parametrize("model,extra,words", [
    ("oracle", ["--max-segments", "2"], "--model oracle generates nothing"),
    ("checkpoint:TRANSFORMER", ["--max-segments", "2"], "need a looped hrm or trm model"),
    ("checkpoint:ACT", ["--halt-threshold", "1"], "--halt-threshold must be in (0, 1), got 1.0"),
    ("checkpoint:ACT", ["--max-segments", "0"], "Invalid value for '--max-segments'"),
])
def test_bad_budgets_are_usage_errors(cli, act, tmp_path, model, extra, words):
    if model == "checkpoint:TRANSFORMER":
        model = f"checkpoint:{make_tiny_model(tmp_path / 't', arch='transformer', max_seq_len=64)}"
    model = model.replace("ACT", str(act))
    result = _eval(cli, model, tmp_path / "run", *extra)
    assert result.exit_code == 2 and words in result.stderr, result.stderr
    assert not (tmp_path / "run" / "results.jsonl").exists()


class Budgeted:
    """A backend whose replies report the segments their generation ran (as a looped model's do)."""

    name = "budgeted"

    def __init__(self, replies: list[tuple[str, int | None]]):
        self.replies = list(replies)

    def describe(self) -> dict:
        return {"model": "budgeted"}

    def complete(self, request: Request) -> list[Reply]:
        text, segments = self.replies.pop(0)
        return [Reply(text=text, raw=True, segments=segments)]


def test_a_polyglot_case_records_the_mean_over_its_tries(sandbox):
    record = Polyglot(Budgeted([(WRONG, 1), (RIGHT, 4)]), sandbox).evaluate_one(TASK, worker=0)
    assert record["tests_outcomes"] == [False, True] and record["segments"] == 2.5
    unbudgeted = Polyglot(Budgeted([(RIGHT, None)]), sandbox).evaluate_one(TASK, worker=0)
    assert "segments" not in unbudgeted  # a model without segments records none
    assert segments_summary([record, unbudgeted, {"segments": 1.5}]) == {"segments_per_case": 2.0}
    assert segments_summary([unbudgeted]) == {}


def test_an_agent_attempt_keeps_every_turns_reply_for_its_segments():
    from hrmcode.eval.backends import segments_field
    from hrmcode.eval.swe import BackendPolicy

    policy = BackendPolicy(Budgeted([("ls", 1), ("submit", 3)]), "budgeted", TASK, None)
    assert [policy.act([{"role": "user", "content": "go"}]).text for _ in range(2)] == ["ls", "submit"]
    assert segments_field(policy.replies) == {"segments": 2.0}  # what SweBench.attempt records
