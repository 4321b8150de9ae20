"""The attention seam: FlexAttention's block mask against the dense mask, the flex kernel against SDPA
(on the CPU: calls without gradient; torch 2.13 has no CPU FlexAttention backward, so calls with
gradient take the dense mask), one block mask per forward, and gradient checkpointing.

The flex tests run ``flex_attention`` eagerly (the same BlockMask and mask_mod, scores materialized):
compiling it on the CPU takes ~17 s, past this suite's time budget. The compiled kernel is what
``--attention flex`` runs; ``benchmarks/train_speed.py --attention flex`` exercises it."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

from hrmcode.errors import UsageError
from hrmcode.model import attention, build_model, preset
from hrmcode.model.attention import build_attention_mask, dense_mask, packed_mask_mod, resolve_kernel
from hrmcode.model.layers import Block, set_grad_checkpointing


def _packed(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """doc_ids of documents of random lengths, and a prompt prefix at the start of each document."""
    g = torch.Generator().manual_seed(seed)
    doc_ids = torch.zeros(batch, length, dtype=torch.long)
    prefix = torch.zeros(batch, length, dtype=torch.bool)
    for row in range(batch):
        pos, doc = 0, 0
        while pos < length:
            size = int(torch.randint(5, 150, (1,), generator=g))
            doc_ids[row, pos:pos + size] = doc
            prefix[row, pos:pos + int(torch.randint(1, size + 1, (1,), generator=g))] = True
            pos, doc = pos + size, doc + 1
    return doc_ids, prefix


def test_the_block_mask_holds_exactly_the_dense_masks_allowed_pairs_and_skips_empty_blocks():
    batch, length = 2, 384
    doc_ids, prefix = _packed(batch, length)
    dense = dense_mask(batch, length, 0, torch.device("cpu"), None, prefix, doc_ids)[:, 0]
    b, q, k = torch.meshgrid(torch.arange(batch), torch.arange(length), torch.arange(length), indexing="ij")
    assert torch.equal(packed_mask_mod(doc_ids, prefix)(b, 0, q, k), dense)
    block = build_attention_mask(batch, length, 0, torch.device("cpu"), prefix_mask=prefix, doc_ids=doc_ids,
                                 kernel="flex").block
    size = block.BLOCK_SIZE[0]
    per_block = dense.view(batch, length // size, size, length // size, size).any(4).any(2)
    assert torch.equal(block.to_dense()[:, 0].bool(), per_block)
    assert not bool(per_block.all())  # documents make some blocks empty: flex skips them


def test_kernel_choice():
    assert resolve_kernel("auto", torch.device("cpu")) == "dense"
    assert resolve_kernel("auto", torch.device("cuda")) == "flex"
    assert resolve_kernel("flex", torch.device("cpu")) == "flex"
    with pytest.raises(UsageError, match="unknown attention kernel"):
        resolve_kernel("varlen", torch.device("cpu"))
    unpacked = build_attention_mask(2, 16, 0, torch.device("cpu"), kernel="flex")
    assert unpacked.block is None and unpacked.is_causal  # plain causal rows keep SDPA's causal path


@pytest.fixture(autouse=True)
def eager_flex(monkeypatch, request):
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(attention, "_compiled_flex", lambda: flex_attention)


pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


@pytest.fixture(scope="module")
def packed_batch():
    torch.manual_seed(1)
    ids = torch.randint(0, 97, (2, 40))
    doc_ids = torch.tensor([[0] * 12 + [1] * 20 + [2] * 8, [0] * 30 + [1] * 10])
    prefix = torch.zeros(2, 40, dtype=torch.bool)
    prefix[0, :5] = prefix[0, 12:20] = prefix[1, :9] = True
    return ids, doc_ids, prefix


def _model(arch: str, kernel: str = "dense"):
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch, vocab_size=97, prefix_bidirectional=True, max_seq_len=64))
    model.attention_kernel = kernel
    return model


@pytest.mark.parametrize("arch", ["hrm", "transformer"])
def test_flex_equals_dense_in_a_forward_without_gradient(arch, packed_batch):
    ids, doc_ids, prefix = packed_batch
    with torch.no_grad():
        dense = _model(arch).eval()(ids, labels=ids, doc_ids=doc_ids, prefix_mask=prefix)
        flex = _model(arch, "flex").eval()(ids, labels=ids, doc_ids=doc_ids, prefix_mask=prefix)
    assert torch.allclose(flex.logits, dense.logits, atol=2e-4)
    assert abs(float(flex.loss) - float(dense.loss)) < 1e-4


def test_hrm_training_with_flex_on_the_cpu_equals_dense_and_builds_one_block_mask(packed_batch, monkeypatch):
    ids, doc_ids, prefix = packed_batch
    built, kernels = [], []
    create, runs = attention.create_block_mask, attention.flex_runs
    monkeypatch.setattr(attention, "create_block_mask", lambda *a, **k: built.append(1) or create(*a, **k))
    monkeypatch.setattr(attention, "flex_runs", lambda q, mask: kernels.append(runs(q, mask)) or kernels[-1])
    results = []
    for kernel in ("dense", "flex"):
        model = _model("hrm", kernel).train()
        out = model(ids, labels=ids, doc_ids=doc_ids, prefix_mask=prefix)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert len(built) == 1  # one block mask for the flex forward's many attention calls
    flex_calls = kernels[len(kernels) // 2:]
    assert any(flex_calls) and not all(flex_calls)  # no-grad calls ran flex, the gradient calls dense
    (dense_loss, dense_grads), (flex_loss, flex_grads) = results
    assert abs(float(flex_loss) - float(dense_loss)) < 1e-4
    assert len(flex_grads) == len(dense_grads)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(flex_grads, dense_grads))


@pytest.mark.parametrize("arch", ["hrm", "transformer", "trm"])
def test_gradient_checkpointing_recomputes_blocks_with_the_same_loss_and_gradients(arch, packed_batch, monkeypatch):
    ids, doc_ids, prefix = packed_batch
    calls = []
    block_forward = Block.forward
    monkeypatch.setattr(Block, "forward", lambda self, *args: calls.append(1) or block_forward(self, *args))
    results = []
    for enabled in (False, True):
        model = _model(arch).train()
        set_grad_checkpointing(model, enabled)
        calls.clear()
        out = model(ids, labels=ids, doc_ids=doc_ids, prefix_mask=prefix)
        forward_calls = len(calls)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad for p in model.parameters()], len(calls) - forward_calls))
    (loss, grads, recomputed_off), (loss_ckpt, grads_ckpt, recomputed_on) = results
    assert recomputed_off == 0 and recomputed_on > 0  # blocks with gradient ran again in backward
    assert recomputed_on < forward_calls or arch == "transformer"  # the HRM's no-grad calls are not recomputed
    assert torch.equal(loss, loss_ckpt)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, grads_ckpt))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_compiled_flex_trains_like_dense_on_cuda(packed_batch):
    """On CUDA every call, with gradient too, runs the compiled flex kernel."""
    ids, doc_ids, prefix = (t.cuda() for t in packed_batch)
    results = []
    for kernel in ("dense", "flex"):
        model = _model("hrm", kernel).cuda().train()
        out = model(ids, labels=ids, doc_ids=doc_ids, prefix_mask=prefix)
        out.loss.backward()
        results.append((float(out.loss), [p.grad for p in model.parameters() if p.grad is not None]))
    (dense_loss, dense_grads), (flex_loss, flex_grads) = results
    assert abs(flex_loss - dense_loss) < 1e-4 and len(flex_grads) == len(dense_grads)
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(flex_grads, dense_grads))
