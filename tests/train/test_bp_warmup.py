"""``--bp-warmup-steps`` (HRM-Text's back-prop warm-up): the HRM's gradient span rises from 2 module
calls to the model's bp_steps, step by step as ``bp_steps_at`` says; the artifact keeps the final
span; resuming mid-warm-up is exact; other archs and a span of 2 are refused."""

from __future__ import annotations

import json

import pytest

from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.model.hrm import HRM
from hrmcode.train.loop import bp_steps_at, train
from hrmcode.train.options import resolve_options

FAST = {"seq_len": 64, "batch_size": 4, "max_steps": 6, "warmup_steps": 2, "eval_every": 3, "log_every": 1,
        "save_every": 3, "eval_generate": 0, "vocab_size": 300}


def _options(**changes):
    return resolve_options("tiny", {**FAST, "model": {"bp_steps": 5}, "bp_warmup_steps": 4, **changes})


def test_the_schedule_rises_linearly_from_two_to_the_final_span():
    assert [bp_steps_at(step, 6, 5) for step in range(8)] == [2, 2, 3, 3, 4, 4, 5, 5]
    assert [bp_steps_at(step, 0, 5) for step in range(3)] == [5, 5, 5]
    assert [bp_steps_at(step, 3, 2) for step in range(4)] == [2, 2, 2, 2]


def test_each_training_step_runs_the_span_of_the_schedule(tmp_path, toy_artifact, monkeypatch):
    spans = []
    segment = HRM.segment

    def recording(self, *args):
        if self.training:
            spans.append((self.config.bp_steps, args[-1]))  # the config's span and the grad calls passed
        return segment(self, *args)

    monkeypatch.setattr(HRM, "segment", recording)
    result = train(_options(), str(toy_artifact.path), out=tmp_path / "run")
    assert result.completed
    # one training segment per step (mode fixed): the span of step s is bp_steps_at(s, 4, 5)
    assert spans == [(bp_steps_at(s, 4, 5), bp_steps_at(s, 4, 5)) for s in range(6)] == \
        [(2, 2), (2, 2), (3, 3), (4, 4), (5, 5), (5, 5)]
    assert json.loads((tmp_path / "run/config.json").read_text())["bp_steps"] == 5


def test_resume_in_the_middle_of_the_warm_up_is_exact(tmp_path, toy_artifact):
    options = _options()
    train(options, str(toy_artifact.path), out=tmp_path / "whole")
    part = train(options, str(toy_artifact.path), out=tmp_path / "split", stop_after=3)
    assert not part.completed
    train(options, str(toy_artifact.path), out=tmp_path / "split", resume="auto")
    whole = list(read_jsonl(tmp_path / "whole/metrics.jsonl"))
    assert list(read_jsonl(tmp_path / "split/metrics.jsonl")) == whole
    assert (tmp_path / "split/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()


@pytest.mark.parametrize("changes, where", [({"arch": "transformer"}, "arch transformer"),
                                            ({"arch": "trm"}, "arch trm"),
                                            ({"model": {}}, "bp_steps 2")])
def test_warm_up_without_an_hrm_span_to_raise_is_refused(changes, where):
    with pytest.raises(UsageError, match=f"--bp-warmup-steps needs --arch hrm.*{where}"):
        _options(**changes)
