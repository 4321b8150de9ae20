"""The HRM and baseline models: sizes, masks, the truncated gradient, ACT halting and Q targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrmcode.errors import UsageError
from hrmcode.model import build_model, count_parameters, preset
from hrmcode.model.config import ModelConfig
from hrmcode.model.hrm import q_continue_target


def _model(arch="hrm", seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(preset("tiny", arch, vocab_size=97, **overrides))


def test_27m_preset_matches_the_paper_block_size_and_baseline_has_equal_params():
    with torch.device("meta"):  # sizes only: skip initialising 3 x 31M weights
        hrm = build_model(preset("27m", "hrm", vocab_size=1000))
        base = build_model(preset("27m", "transformer", vocab_size=1000))
        act = build_model(preset("27m", "hrm", vocab_size=1000, mode="act"))
    # HRM paper: 8 blocks x 3,407,872 parameters.
    assert count_parameters(hrm)["non_embedding"] == 8 * 3_407_872
    assert count_parameters(base) == count_parameters(hrm)
    assert count_parameters(act)["total"] - count_parameters(hrm)["total"] == 512 * 2 + 2  # the Q head


def test_config_roundtrip_and_validation():
    config = preset("tiny", "hrm", vocab_size=300, mode="act", prefix_bidirectional=True)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="bp_steps"):
        preset("tiny", "hrm", bp_steps=1)
    with pytest.raises(UsageError, match="divisible"):
        preset("tiny", "hrm", num_heads=3)
    with pytest.raises(UsageError, match="unknown model config key"):
        ModelConfig.from_dict({**config.to_dict(), "colour": "red"})
    assert preset("tiny", "hrm").layer_applications_per_token() == 2 * (2 * 2 + 2)
    assert preset("tiny", "hrm", mode="act").layer_applications_per_token() == 2 * 2 * (2 * 2 + 2)
    assert preset("tiny", "transformer").layer_applications_per_token() == 4


@pytest.mark.parametrize("arch", ["hrm", "transformer"])
def test_loss_is_shifted_cross_entropy_on_labelled_positions(arch):
    model = _model(arch).eval()
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    out = model(ids, labels=labels)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss_count == int((labels[:, 1:] != -100).sum()) == 2 * 7


def _record_calls(model):
    """Wrap the HRM's L and H stacks to record, per call, whether its output is in the autograd graph."""
    calls = []
    for name in ("L", "H"):
        stack = getattr(model, name)
        original = stack.forward

        def wrapped(*args, _original=original, _name=name, **kwargs):
            result = _original(*args, **kwargs)
            calls.append((_name, result.requires_grad))
            return result

        stack.forward = wrapped
    return calls


@pytest.mark.parametrize("bp_steps", [2, 3, 6])
def test_fixed_mode_gradient_reaches_only_the_last_bp_steps_calls(bp_steps):
    model = _model(bp_steps=bp_steps).train()
    calls = _record_calls(model)
    ids = torch.randint(0, 97, (2, 10))
    out = model(ids, labels=ids)
    assert [name for name, _ in calls] == ["L", "L", "H", "L", "L", "H"]
    assert [grad for _, grad in calls] == [False] * (6 - bp_steps) + [True] * bp_steps
    out.loss.backward()
    assert model.L.layers[0].attn.qkv.weight.grad is not None and model.H.layers[0].attn.qkv.weight.grad is not None


def test_earlier_calls_contribute_no_gradient():
    """Perturbing an early (no-grad) call's weights changes the loss but leaves the gradient graph
    size unchanged: the graph only holds the last bp_steps calls."""
    model = _model(bp_steps=2).train()
    ids = torch.randint(0, 97, (2, 10))
    out = model(ids, labels=ids)

    def graph_size(fn):
        seen, todo = set(), [fn]
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            todo.extend(n for n, _ in node.next_functions)
        return len(seen)

    small = graph_size(out.loss.grad_fn)
    full = _model(bp_steps=6).train()(ids, labels=ids)
    assert graph_size(full.loss.grad_fn) > 2 * small


def test_act_runs_each_segment_with_one_step_gradient_and_halts_within_max():
    model = _model(mode="act", halt_max_steps=3).train()
    calls = _record_calls(model)
    ids = torch.randint(0, 97, (4, 10))
    out = model(ids, labels=ids, trace=True)
    assert 1 <= len(out.trace) <= 3 and out.metrics["act_steps"] <= 3
    grads = [grad for _, grad in calls]
    # every supervised segment: 4 no-grad calls then the final L and H with grad; then one no-grad target segment
    segments = len(out.trace)
    assert grads == ([False] * 4 + [True, True]) * segments + [False] * 6
    out.loss.backward()
    assert model.q_head.weight.grad is not None


def test_act_q_targets_follow_the_paper():
    torch.manual_seed(3)
    model = _model(mode="act", halt_max_steps=4, halt_exploration_prob=0.0).train()
    ids = torch.randint(0, 97, (3, 10))
    out = model(ids, labels=ids, trace=True)
    trace = out.trace
    # Q starts near zero (bias -5, zero weight): q_halt == q_continue, nobody halts early.
    assert len(trace) == 4 and all(bool(r["active"].all()) for r in trace)
    for t, record in enumerate(trace[:-1]):
        nxt = trace[t + 1]
        expected = torch.sigmoid(torch.maximum(nxt["q_halt"], nxt["q_continue"]))
        assert torch.allclose(record["target_continue"], expected)
    # the halt target (every target token of a document exactly predicted): tests/model/test_act.py
    assert torch.equal(q_continue_target(torch.tensor([1.0]), torch.tensor([3.0]), is_last=True), torch.sigmoid(torch.tensor([1.0])))
    assert torch.equal(q_continue_target(torch.tensor([1.0]), torch.tensor([3.0]), is_last=False), torch.sigmoid(torch.tensor([3.0])))


def test_act_halts_when_q_halt_wins_after_the_exploration_minimum():
    torch.manual_seed(5)
    model = _model(mode="act", halt_max_steps=4, halt_exploration_prob=1.0).train()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([5.0, -5.0]))  # q_halt > q_continue from the start
    ids = torch.randint(0, 97, (6, 10))
    out = model(ids, labels=ids, trace=True)
    min_steps = out.trace[0]["min_steps"]
    halted_at = torch.zeros(6, dtype=torch.long)
    for record in out.trace:
        halted_at[(record["halted"]) & (halted_at == 0)] = record["step"]
    assert torch.equal(halted_at, min_steps.clamp(min=1))
    # no exploration: everyone halts after the first segment
    model.config.halt_exploration_prob = 0.0
    out = model(ids, labels=ids, trace=True)
    assert len(out.trace) == 1 and out.metrics["act_steps"] == 1.0


@pytest.mark.parametrize("arch", ["hrm", "transformer"])
def test_prefix_bidirectional_attention_and_causality(arch):
    ids = torch.randint(0, 97, (1, 10))
    changed = ids.clone()
    changed[0, 3] = (ids[0, 3] + 1) % 97
    causal = _model(arch).eval()
    a, b = causal(ids).logits, causal(changed).logits
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6) and not torch.allclose(a[0, 3:], b[0, 3:])
    prefix = _model(arch, prefix_bidirectional=True).eval()
    lens = torch.tensor([6])
    a, b = prefix(ids, prefix_lens=lens).logits, prefix(changed, prefix_lens=lens).logits
    assert not torch.allclose(a[0, :3], b[0, :3])  # earlier prompt positions see position 3
    later = ids.clone()
    later[0, 8] = (ids[0, 8] + 1) % 97
    c = prefix(later, prefix_lens=lens).logits
    assert torch.allclose(a[0, :8], c[0, :8], atol=1e-6)  # nothing sees a later response token


@pytest.mark.parametrize("arch", ["hrm", "transformer"])
def test_packed_documents_do_not_see_each_other(arch):
    model = _model(arch).eval()
    first, second = torch.randint(0, 97, (1, 5)), torch.randint(0, 97, (1, 7))
    packed = torch.cat([first, second], dim=1)
    doc_ids = torch.tensor([[0] * 5 + [1] * 7])
    together = model(packed, doc_ids=doc_ids).logits
    alone = model(second).logits
    assert torch.allclose(together[0, 5:], alone[0], atol=1e-4)


def test_act_with_one_halting_step_is_refused_not_crashed():
    with pytest.raises(UsageError, match="halt_max_steps >= 2"):
        preset("tiny", "hrm", mode="act", halt_max_steps=1)
    assert preset("tiny", "hrm", mode="fixed", halt_max_steps=1).segments == 1  # fixed ignores it


def test_truncated_normal_init_has_the_asked_std():
    from hrmcode.model.layers import trunc_normal_

    torch.manual_seed(0)
    sample = trunc_normal_(torch.empty(400_000), 0.02)
    assert sample.std().item() == pytest.approx(0.02, rel=0.01)  # nn.init.trunc_normal_ gives 0.0176
    assert sample.abs().max().item() <= 2 * 0.02 / 0.8796 + 1e-9  # cut at 2 of the widened stds


def test_fixed_mode_splits_training_from_inference_segments_and_warns_past_training():
    old = preset("tiny", "hrm", inference_segments=2)  # configs written before train_segments
    assert (old.training_segments, old.segments) == (2, 2) and old.segment_mismatch() is None
    deeper = preset("tiny", "hrm", train_segments=1, inference_segments=3)
    assert (deeper.training_segments, deeper.segments) == (1, 3)
    with pytest.warns(UserWarning, match="trained with 1 segment"):
        model = build_model(deeper)
    calls = []
    model.segment = lambda *args, **kwargs: calls.append(args[6]) or (args[0], args[1])  # index of each segment
    ids = torch.zeros(1, 4, dtype=torch.long)
    model.train()(ids)
    assert calls == [0]
    calls.clear()
    model.eval()(ids)
    assert calls == [0, 1, 2]
    assert preset("tiny", "hrm", mode="act", inference_segments=8).segment_mismatch() is None  # act may vary
