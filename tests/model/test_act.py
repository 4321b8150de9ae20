"""ACT training halts per document (``HRM._act_train``): each document of a packed row has its own
Q value, q_halt target, segments and loss; padding is no unit; what is packed beside a document
changes nothing about it; ``loss_units`` counts documents; the trainer reports held-out segments."""

from __future__ import annotations

import json
import re

import pytest
import torch

from hrmcode.jsonl import read_jsonl
from hrmcode.model import build_model, preset
from hrmcode.model.base import IGNORE
from hrmcode.model.checkpoint import load_checkpoint
from tests.train.conftest import toy_examples, write_examples

VOCAB = 97
A, B, PAD = 8, 8, 4  # tokens of document A, of document B, of padding


def _act(arch="hrm", seed=0, **overrides):
    torch.manual_seed(seed)
    config = preset("tiny", arch, vocab_size=VOCAB, max_seq_len=64, mode="act", halt_max_steps=3,
                    halt_exploration_prob=0.0, **overrides)
    return build_model(config).train()


def _row(*docs: torch.Tensor, length: int = A + B + PAD) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One packed row (as ``hrmcode.train.data.pack`` makes it): ids, labels (IGNORE on each first
    token and on padding), doc ids (padding is a document of its own)."""
    ids, labels, doc_ids = [], [], []
    for n, doc in enumerate(docs):
        ids += doc.tolist()
        labels += [IGNORE] + doc.tolist()[1:]
        doc_ids += [n] * len(doc)
    pad = length - len(ids)
    ids += [0] * pad
    labels += [IGNORE] * pad
    doc_ids += [len(docs)] * pad
    return torch.tensor([ids]), torch.tensor([labels]), torch.tensor([doc_ids])


def _doc(seed: int, n: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def _q_inputs(model, *args, **kwargs) -> list[torch.Tensor]:
    """What the Q head read at each segment ([U, D]: each unit's pooled z_H)."""
    seen = []
    handle = model.q_head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    try:
        model(*args, **kwargs)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("arch", ["hrm", "trm"])
def test_an_exact_and_an_inexact_document_of_one_row_halt_apart(arch):
    model = _act(arch)
    ids, labels, doc_ids = _row(_doc(1, A), _doc(2, B))
    # Document A's labels are what the model predicts after one segment: A is exact, B is not.
    with torch.no_grad():
        first = model.eval()(ids, doc_ids=doc_ids, segments=1).logits.argmax(-1)
    model.train()
    labels[0, 1:A] = first[0, :A - 1]
    # A Q head that halts A after its first segment and lets B run on (q_halt > 0 = q_continue for A only).
    pooled = _q_inputs(model, ids, labels=labels, doc_ids=doc_ids)[0]
    direction = pooled[0] - pooled[1]
    with torch.no_grad():
        model.q_head.weight.zero_()
        model.q_head.bias.zero_()
        model.q_head.weight[0] = direction
        model.q_head.bias[0] = -direction @ (pooled[0] + pooled[1]) / 2
    out = model(ids, labels=labels, doc_ids=doc_ids, trace=True)
    trace = out.trace
    assert torch.equal(trace[0]["target_halt"], torch.tensor([1.0, 0.0]))  # per row it would be 0: not all exact
    assert trace[0]["q_halt"][0] > 0 > trace[0]["q_halt"][1]
    assert trace[0]["halted"].tolist() == [True, False]
    assert len(trace) >= 2 and trace[1]["active"].tolist() == [False, True]
    b_steps = sum(int(r["active"][1]) for r in trace)
    assert b_steps >= 2 and out.metrics["act_steps"] == (1 + b_steps) / 2
    assert out.metrics["exact"] == 0.5  # A halted exact, B halted inexact
    assert out.loss_count == 2 == model.loss_units(labels, doc_ids)  # two documents; padding is no unit
    assert torch.allclose(out.loss, out.loss_sum / 2)
    # A's LM loss is over A's own targets only
    logits = model.eval()(ids, doc_ids=doc_ids, segments=1).logits
    a_loss = torch.nn.functional.cross_entropy(logits[0, :A - 1], labels[0, 1:A])
    assert torch.allclose(trace[0]["lm_loss"][0], a_loss, atol=1e-5)
    model.train()
    out.loss.backward()
    assert model.q_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["hrm", "trm"])
def test_a_document_is_unchanged_by_what_is_packed_beside_it(arch):
    model = _act(arch)
    with torch.no_grad():  # a Q head whose values depend on the document read
        model.q_head.weight.normal_(0, 0.5)
        model.q_head.bias.zero_()
    doc_a, doc_b = _doc(3, A), _doc(4, B)
    alone = model(*_row(doc_a)[:1], labels=_row(doc_a)[1], doc_ids=_row(doc_a)[2], trace=True)
    ids, labels, doc_ids = _row(doc_a, doc_b)
    packed = model(ids, labels=labels, doc_ids=doc_ids, trace=True)
    assert alone.loss_count == 1 and packed.loss_count == 2
    a_steps = sum(int(r["active"][0]) for r in alone.trace)
    assert a_steps == sum(int(r["active"][0]) for r in packed.trace)
    for step in range(a_steps):
        one, two = alone.trace[step], packed.trace[step]
        for key in ("q_halt", "q_continue", "target_halt", "lm_loss", "target_continue"):
            if key in one:
                assert torch.allclose(one[key][0], two[key][0], atol=1e-5), (key, step)
        assert bool(one["halted"][0]) == bool(two["halted"][0])
    # the row's loss is the sum of its documents' own losses (B alone sits at position 0: rotary is relative)
    b_alone = model(*_row(doc_b)[:1], labels=_row(doc_b)[1], doc_ids=_row(doc_b)[2])
    assert torch.allclose(packed.loss_sum, alone.loss_sum + b_alone.loss_sum, rtol=1e-5, atol=1e-5)


def test_rows_without_doc_ids_are_one_unit_each():
    model = _act()
    ids, labels, doc_ids = _row(_doc(5, A), _doc(6, B))
    ids, labels = ids.repeat(3, 1), labels.repeat(3, 1)
    out = model(ids, labels=labels, trace=True)
    assert out.loss_count == 3 == model.loss_units(labels)
    assert out.trace[0]["q_halt"].shape == (3,)
    with_docs = model(ids, labels=labels, doc_ids=doc_ids.repeat(3, 1), trace=True)
    assert with_docs.loss_count == 6 == model.loss_units(labels, doc_ids.repeat(3, 1))
    assert with_docs.trace[0]["q_halt"].shape == (6,)


def test_loss_units_counts_documents_with_a_target():
    model = _act()
    ids, labels, doc_ids = _row(_doc(7, A), _doc(8, 4), _doc(9, 4))
    labels[doc_ids == 1] = IGNORE  # a prompt-only document: nothing to predict, no unit
    assert model.loss_units(labels, doc_ids) == 2 == model(ids, labels=labels, doc_ids=doc_ids).loss_count
    assert model.loss_units(labels) == 1  # rows
    tokens = int((labels[:, 1:] != IGNORE).sum())
    assert model.eval().loss_units(labels, doc_ids) == tokens  # evaluation's loss is per token
    fixed = build_model(preset("tiny", "hrm", vocab_size=VOCAB, max_seq_len=64)).train()
    assert fixed.loss_units(labels, doc_ids) == tokens
    transformer = build_model(preset("tiny", "transformer", vocab_size=VOCAB, max_seq_len=64)).train()
    assert transformer.loss_units(labels, doc_ids) == tokens


def test_a_batch_without_targets_gives_a_zero_loss_that_backpropagates():
    model = _act()
    ids, labels, doc_ids = _row(_doc(10, A))
    labels[:] = IGNORE
    assert model.loss_units(labels, doc_ids) == 0
    out = model(ids, labels=labels, doc_ids=doc_ids)
    assert out.loss_count == 0 and float(out.loss_sum.detach()) == 0.0
    out.loss_sum.backward()


FAST = ["--seq-len", "64", "--batch-size", "4", "--max-steps", "2", "--vocab-size", "300", "--eval-generate", "0",
        "--eval-every", "0", "--save-every", "2"]


@pytest.mark.parametrize("mode", ["act", "fixed"])
def test_train_reports_held_out_segments(cli, tmp_path, mode):
    data = write_examples(tmp_path / "examples", toy_examples(n_train=16, n_heldout=6))
    result = cli("train", data.path, *FAST, "--mode", mode, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    held = [r for r in read_jsonl(tmp_path / "run/metrics.jsonl") if r["split"] == "heldout"]
    assert len(held) == 1
    config = load_checkpoint(tmp_path / "run").config
    if mode == "act":  # each document halts on its own: between one segment and the budget
        assert 1.0 <= held[0]["segments"] <= config.segments
    else:  # a fixed model spends its constant segments, and says so
        assert held[0]["segments"] == config.segments
    assert re.search(r"eval loss \S+ token_acc \S+ segments \d", result.stderr)  # the progress line
    assert re.search(r"heldout segments\s*│?\s*\d", result.stdout)  # the summary
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["stats"]["final_eval"]["segments"] == held[0]["segments"]
