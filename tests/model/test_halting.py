"""Halting at evaluation and inference (``hrmcode.model.halting``): units halt on their own Q head,
a halted unit's output is what it would be alone, generation keeps its prompt's segment count
(cached == uncached, single and batched rows), and the compute budget is honoured."""

from __future__ import annotations

import pytest
import torch

from hrmcode.errors import UsageError
from hrmcode.model import build_model, preset
from hrmcode.model.halting import HaltPolicy, units
from hrmcode.model.kvcache import BatchKVCache, KVCache

VOCAB = 97


def _act(arch="hrm", seed=0, **overrides):
    torch.manual_seed(seed)
    model = build_model(preset("tiny", arch, vocab_size=VOCAB, max_seq_len=64, mode="act", halt_max_steps=4,
                               **overrides)).eval()
    with torch.no_grad():  # a Q head whose decisions differ between inputs
        model.q_head.weight.normal_(0, 0.5)
        model.q_head.bias.zero_()
    return model


def _ids(seed, n):
    return torch.randint(3, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def _mixed_rows(model):
    """Two prompts of one length that halt after different numbers of segments."""
    for seed in range(200):
        a, b = _ids(seed, 9), _ids(seed + 1000, 9)
        used = model(torch.cat([a, b])).segments.tolist()
        if used[0] != used[1]:
            return a, b, used
    pytest.fail("no two prompts halted differently")


@pytest.mark.parametrize("arch", ["hrm", "trm"])
def test_a_halted_row_is_frozen_at_its_own_segment_count(arch):
    model = _act(arch)
    a, b, used = _mixed_rows(model)
    with torch.no_grad():
        both = model(torch.cat([a, b]))
        for row, ids in enumerate((a, b)):
            alone = model(ids, segments=used[row])
            torch.testing.assert_close(both.logits[row], alone.logits[0], rtol=1e-5, atol=1e-5)
            assert model(ids).segments.tolist() == [used[row]]


def test_segments_override_and_budget():
    model = _act()
    ids = torch.cat([_ids(1, 8), _ids(2, 8)])
    assert model(ids, segments=3).segments.tolist() == [3, 3]
    assert model(ids, halt=HaltPolicy(max_segments=1)).segments.tolist() == [1, 1]
    eager = model(ids, halt=HaltPolicy(threshold=1e-6)).segments.tolist()
    assert eager == [1, 1]  # every Q head's halt probability clears a threshold near zero
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([-20.0, 20.0]))
    assert model(ids).segments.tolist() == [4, 4]  # never halts: runs to the config's maximum
    assert model(ids, halt=HaltPolicy(max_segments=6)).segments.tolist() == [6, 6]


def test_budget_errors_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="max_segments must be >= 1"):
        HaltPolicy(max_segments=0)
    with pytest.raises(UsageError, match=r"threshold must be in \(0, 1\)"):
        HaltPolicy(threshold=1.5)
    torch.manual_seed(0)
    fixed = build_model(preset("tiny", "hrm", vocab_size=VOCAB, max_seq_len=64)).eval()
    with pytest.raises(UsageError, match="needs a model trained with mode=act"):
        fixed(_ids(0, 5), halt=HaltPolicy(threshold=0.5))
    assert fixed(_ids(0, 5), halt=HaltPolicy(max_segments=2)).segments.tolist() == [2]


def test_documents_of_a_packed_row_halt_apart_and_pool_their_prompts():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 0]])
    doc_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 2]])
    labels = torch.tensor([[-100, -100, 7, 8, -100, 10, 11, -100]])  # doc 2 is padding: no target
    prefix = torch.tensor([[True, True, False, False, False, False, False, False]])
    unit = units(1, 8, torch.device("cpu"), doc_ids=doc_ids, labels=labels, prefix_mask=prefix)
    assert unit.count == 2 and unit.index.tolist() == [[0, 0, 0, 0, 1, 1, 1, -1]]
    # document 0 is read on its prompt; document 1 has none and is read whole
    assert unit.pool.tolist() == [[True, True, False, False, True, True, True, False]]
    z = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
    assert unit.mean(z).view(-1).tolist() == [0.5, 5.0]
    model = _act()
    out = model(ids, labels=labels, doc_ids=doc_ids, prefix_mask=prefix)
    assert out.segments.shape == (2,) and out.metrics["segments"] == float(out.segments.float().mean())


def _decode(model, ids, steps, cache):
    out = model(ids, cache=cache)
    tokens = []
    for _ in range(steps):
        token = int(out.logits[0, -1].argmax())
        tokens.append(token)
        out = model(torch.tensor([[token]]), cache=cache)
    return tokens


def test_cached_generation_keeps_its_prompts_segments_and_equals_uncached():
    model = _act()
    a, b, used = _mixed_rows(model)
    with torch.no_grad():
        for row, ids in enumerate((a, b)):
            cache = KVCache()
            cached = _decode(model, ids, 5, cache)
            assert cache.row_segments.tolist() == [used[row]]
            full = ids
            uncached = []
            for _ in range(5):
                out = model(full, prefix_lens=torch.tensor([ids.shape[1]]))
                token = int(out.logits[0, -1].argmax())
                uncached.append(token)
                full = torch.cat([full, torch.tensor([[token]])], dim=1)
            assert cached == uncached


def test_batched_rows_of_different_segment_counts_decode_as_alone():
    model = _act()
    a, b, used = _mixed_rows(model)
    with torch.no_grad():
        alone = [_decode(model, ids, 4, KVCache()) for ids in (a, b)]
        batch = BatchKVCache(2)
        logits = []
        for ids in (a, b):
            single = KVCache()
            logits.append(model(ids, cache=single).logits[0, -1])
            batch.add_row(single)
        assert batch.row_segments.tolist() == used
        tokens = [[int(row.argmax())] for row in logits]
        for _ in range(3):
            out = model(torch.tensor([[t[-1]] for t in tokens]), cache=batch)
            for row in range(2):
                tokens[row].append(int(out.logits[row, -1].argmax()))
        assert tokens == alone


@pytest.mark.parametrize("arch", ["hrm", "trm"])
def test_a_bfloat16_act_model_halts_and_generates(arch):
    """``serve --dtype bfloat16`` and ``load_any(dtype=bfloat16)``: the pooled fp32 state meets a bf16 Q head."""
    from hrmcode.model.generate import GenerationConfig, next_tokens

    model = _act(arch).to(torch.bfloat16)
    with torch.no_grad():
        out = model(_ids(0, 9), prefix_lens=torch.tensor([9]), halt=HaltPolicy(max_segments=3))
    assert out.logits.dtype == torch.bfloat16 and 1 <= int(out.segments[0]) <= 3
    seen = []
    with torch.no_grad():
        source = next_tokens(model, _ids(1, 6)[0].tolist(), GenerationConfig(max_new_tokens=3, max_segments=2),
                             seen.append)
        tokens = [next(source) for _ in range(3)]
    assert len(tokens) == 3 and len(seen) == 1 and 1 <= seen[0] <= 2
