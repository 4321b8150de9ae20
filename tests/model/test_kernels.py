"""The fused decode kernels: built here, the same numbers as the PyTorch path, and the fallback without them."""

from __future__ import annotations

import gc
import platform
import subprocess
import weakref

import pytest
import torch
from torch import nn

from hrmcode.model import build_model, fastpath, kernels, preset
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.model.kvcache import BatchKVCache, KVCache, LayerKV
from hrmcode.quantize.torch_backend import (DynamicInt8Linear, dynamic_int8_reference, int8_per_channel, pack_int8,
                                            unpack_int8)


def _model(arch: str, vocab: int, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(preset("tiny", arch, vocab_size=vocab, max_seq_len=128, **overrides)).eval()


def _int8(model: nn.Module) -> nn.Module:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, DynamicInt8Linear(*int8_per_channel(child.weight)))
    model.kv_dtype = torch.float16  # as the torch backend sets it
    return model


def _decode_logits(model: nn.Module, ids: torch.Tensor, prompt: int, kv_dtype: torch.dtype | None = None
                   ) -> torch.Tensor:
    """Prefill ``prompt`` tokens, then decode the rest one at a time; the logits of every position."""
    cache = KVCache(dtype=kv_dtype)
    with torch.no_grad():
        steps = [model(ids[:, :prompt], cache=cache).logits]
        for t in range(prompt, ids.shape[1]):
            steps.append(model(ids[:, t:t + 1], cache=cache).logits)
    return torch.cat(steps, dim=1)


def test_kernels_build_on_this_machine():
    """CI machines have a C compiler: the fast path must be there, not silently replaced by the fallback."""
    assert kernels.load() is not None


def test_disabled_by_environment_and_status_says_why(monkeypatch, tmp_path):
    assert kernels.status().startswith("ok (")
    monkeypatch.setenv("HRMCODE_KERNELS", "0")
    kernels.reset()
    try:
        assert kernels.load() is None
        assert "turned off by HRMCODE_KERNELS=0" in kernels.status()
    finally:
        monkeypatch.delenv("HRMCODE_KERNELS")
        kernels.reset()


def test_build_into_a_fresh_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path))
    kernels.reset()
    try:
        loaded = kernels.load()
        assert loaded is not None and loaded.path.parent == tmp_path / "kernels"
        assert [p.suffix for p in (tmp_path / "kernels").iterdir()] == [".so"]  # no temporary left behind
    finally:
        monkeypatch.delenv("HRMCODE_CACHE")
        kernels.reset()


@pytest.mark.parametrize("arch,overrides", [("hrm", {}), ("hrm", {"mode": "act", "halt_max_steps": 2}),
                                            ("transformer", {})])
def test_float32_decode_matches_the_pytorch_path(arch, overrides, monkeypatch):
    model = _model(arch, 300, **overrides)
    ids = torch.randint(0, 300, (1, 80))  # crosses the KV buffers' first growth (64 positions)
    fused = _decode_logits(model, ids, prompt=9)
    monkeypatch.setattr(kernels, "load", lambda: None)
    plain = _decode_logits(model, ids, prompt=9)
    assert torch.allclose(fused, plain, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, plain, atol=1e-5)


def test_int8_stack_kernel_matches_the_layer_by_layer_path(monkeypatch):
    model = _int8(_model("hrm", 320))
    ids = torch.randint(0, 320, (1, 40))
    whole = _decode_logits(model, ids, prompt=5)  # hrm_stack_q8: one C call per stack, float16 cache
    monkeypatch.setattr(fastpath, "q8_block", lambda block: None)
    by_layer = _decode_logits(model, ids, prompt=5, kv_dtype=torch.float16)  # PyTorch ops, same float16 cache
    # Float rounding differs (summation order); where it moves an activation across an int8 rounding boundary the
    # two paths part by about one quantization step, never more. A wrong kernel is off by the logits' own size.
    assert (whole - by_layer).abs().max() < 0.1 * by_layer.abs().max()
    assert torch.allclose(whole[:, :12], by_layer[:, :12], atol=1e-4, rtol=1e-4)  # before the first such step
    assert (whole.argmax(-1) == by_layer.argmax(-1)).float().mean() >= 0.9


def test_int8_greedy_tokens_are_the_same_with_and_without_kernels(tok):
    with pytest.MonkeyPatch.context() as patch:  # as on a machine without a C compiler
        patch.setattr(kernels, "load", lambda: None)
        fallback = _int8(_model("hrm", tok.vocab_size, seed=3))
        assert not fallback.L.layers[0].attn.qkv.packed
        expected = generate(fallback, tok, "def add(a, b):", GenerationConfig(max_new_tokens=20)).token_ids
    fused = _int8(_model("hrm", tok.vocab_size, seed=3))
    assert fused.L.layers[0].attn.qkv.packed
    assert generate(fused, tok, "def add(a, b):", GenerationConfig(max_new_tokens=20)).token_ids == expected


@pytest.mark.parametrize("n,k,m", [(96, 64, 1), (1536, 512, 1), (512, 1536, 33), (100, 68, 5), (20, 64, 9),
                                   (300, 128, 130), *((200, 128, m) for m in range(2, 9)), (520, 64, 8)])
def test_qlinear_is_bit_identical_to_the_reference(n, k, m):
    torch.manual_seed(n + k + m)
    codes, scale = int8_per_channel(torch.randn(n, k))
    layer = DynamicInt8Linear(codes, scale)
    assert layer.packed
    x = torch.randn(1, m, k) * 3
    if m > 1:
        x[0, 0] = 0.0  # an all-zero row
    assert torch.equal(layer(x), dynamic_int8_reference(x, codes, scale, codes.int().sum(1)))
    exact = x @ (codes.float() * scale[:, None]).T
    assert ((layer(x) - exact).norm() / exact.norm()).item() < 0.02  # activation rounding only


def _qlinear(lib: kernels.Kernels, x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``hrm_qlinear`` of library ``lib`` called directly: x [m, k] times the int8 weights ``codes`` [n, k]."""
    (n, k), m = codes.shape, x.shape[0]
    packed, row_sums = torch.empty((n + 15) // 16 * k * 16, dtype=torch.int8), torch.empty(n, dtype=torch.int32)
    lib.pack_q8(codes.contiguous().data_ptr(), n, k, packed.data_ptr(), row_sums.data_ptr())
    y, codes_x = torch.empty(m, n), torch.empty(min(m, 64) * k, dtype=torch.uint8)
    lib.qlinear(x.data_ptr(), m, k, packed.data_ptr(), scale.data_ptr(), row_sums.data_ptr(), n, y.data_ptr(),
                codes_x.data_ptr())
    return y


def test_qlinear_gives_the_same_numbers_on_one_and_two_threads():
    """The second thread claims chunks of row blocks as it comes free: whoever computes a chunk, same numbers."""
    fused = kernels.load()
    torch.manual_seed(1)
    codes, scale = int8_per_channel(torch.randn(1000, 256))
    before = fused.threads
    try:
        for rows in (1, 3, 8, 20):
            x = torch.randn(rows, 256)
            expected = dynamic_int8_reference(x, codes, scale, codes.int().sum(1))
            for threads in (1, 2):
                fused.set_threads(threads)
                assert all(torch.equal(_qlinear(fused, x, codes, scale), expected) for _ in range(20))
    finally:
        fused.set_threads(before)


def _cpu_has(*flags: str) -> bool:
    return set(flags) <= set(kernels._cpu_flags().split())


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="builds x86-64 variants")
@pytest.mark.parametrize("march", ["x86-64", "haswell"])
def test_every_cpu_variant_gives_the_same_numbers(march, tmp_path, monkeypatch):
    """The build is -march=native, so which paths compile depends on the CPU: AVX-512 VNNI, AVX2 + FMA + F16C
    (haswell), or portable C (the x86-64 baseline). Each variant built here gives the reference's int8 matmuls
    exactly, at every tile shape, and the native kernels' decode."""
    if march == "haswell" and not _cpu_has("avx2", "fma", "f16c"):
        pytest.skip("this CPU cannot run the AVX2 variant")
    target = tmp_path / f"{march}.so"
    done = subprocess.run([kernels._compiler(), "-O2", f"-march={march}", "-fPIC", "-shared", "-pthread", "-o",
                           str(target), str(kernels.SOURCE), "-lm"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    variant = kernels.Kernels(target)
    variant.set_threads(2)
    torch.manual_seed(2)
    for n, k, rows in ((200, 128, 1), (200, 128, 2), (200, 128, 7), (520, 64, 9), (48, 1536, 5)):
        codes, scale = int8_per_channel(torch.randn(n, k))
        x = torch.randn(rows, k)
        assert torch.equal(_qlinear(variant, x, codes, scale), dynamic_int8_reference(x, codes, scale,
                                                                                       codes.int().sum(1)))
    gate_up = torch.cat([torch.linspace(-120, 120, 203), torch.randn(203)])  # e^x past the float range, both ways
    gated = torch.empty(203)
    variant.silu_mul(gate_up.data_ptr(), gated.data_ptr(), 203)
    expected = torch.nn.functional.silu(gate_up[:203]) * gate_up[203:]
    assert torch.allclose(gated, expected, rtol=1e-5, atol=1e-30)
    model = _int8(_model("hrm", 320))
    ids = torch.randint(0, 320, (1, 30))
    native = _decode_logits(model, ids, prompt=5)
    monkeypatch.setattr(kernels, "load", lambda: variant)
    plain = _decode_logits(model, ids, prompt=5)
    assert torch.allclose(native[:, :12], plain[:, :12], atol=1e-4, rtol=1e-4)  # float16 dot products: sum order
    assert (native.argmax(-1) == plain.argmax(-1)).float().mean() >= 0.9


def test_packed_layout_round_trips_and_state_dict_is_plain():
    codes, scale = int8_per_channel(torch.randn(100, 64))
    assert torch.equal(unpack_int8(pack_int8(codes), 100), codes)
    layer = DynamicInt8Linear(codes, scale)
    state = layer.state_dict()
    assert set(state) == {"weight_int8", "scale"} and torch.equal(state["weight_int8"], codes)
    other = DynamicInt8Linear(torch.zeros_like(codes), torch.ones(100))
    other.load_state_dict(state)
    x = torch.randn(3, 64)
    assert torch.equal(other(x), layer(x))


def test_kv_buffers_grow_geometrically_and_keep_their_contents():
    kv = LayerKV()
    first = torch.randn(1, 2, 5, 4)
    kv.update(first, first + 1)
    assert kv.capacity == 64 and kv.length == 5
    more = torch.randn(1, 2, 70, 4)
    keys, values = kv.update(more, more + 1)
    assert kv.capacity == 128 and kv.length == 75
    assert torch.equal(keys, torch.cat((first, more), 2)) and torch.equal(values, torch.cat((first, more), 2) + 1)


def test_a_generation_frees_its_kv_cache_without_the_cycle_collector(tok, monkeypatch):
    """A reference cycle through the cache would keep every request's KV buffers until gc happens to run."""
    model = _int8(_model("hrm", tok.vocab_size))
    caches = []
    init = KVCache.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        caches.append(weakref.ref(self))

    monkeypatch.setattr(KVCache, "__init__", recording_init)
    gc.disable()
    try:
        generate(model, tok, "def add(a, b):", GenerationConfig(max_new_tokens=8))
        assert len(caches) == 1 and caches[0]() is None
    finally:
        gc.enable()


def test_a_dropped_batch_cache_is_freed_without_the_cycle_collector(tok):
    """A batch's layer slots refer to their cache weakly: a server dropping a batch cache frees its buffers at once."""
    model = _int8(_model("hrm", tok.vocab_size))
    batch = BatchKVCache(2, getattr(model, "kv_dtype", None))
    for text in ("def a():", "x = 1"):
        single = KVCache(64, getattr(model, "kv_dtype", None))
        ids = torch.tensor([tok.encode(text)])
        model(ids, prefix_lens=torch.tensor([ids.shape[1]]), cache=single)
        batch.add_row(single)
    model(torch.tensor([[1], [2]]), cache=batch)
    assert any(slot.k_buffer is not None for slot in batch.slots.values())
    dropped = weakref.ref(batch)
    gc.disable()
    try:
        del batch
        assert dropped() is None
    finally:
        gc.enable()


def test_int8_model_with_a_float_layer_decodes_through_the_pytorch_path(tok):
    """``--exclude`` can leave a float projection in an int8 model: its float16 cache must not reach the float32
    decode kernel, and the result must be the PyTorch path's."""
    def build():
        model = _int8(_model("hrm", tok.vocab_size, seed=5))
        torch.manual_seed(6)
        model.L.layers[0].attn.qkv = nn.Linear(64, 192, bias=False)
        return model.eval()

    for prompt in ("def add(a, b):", [tok.encode("def")[0]]):  # a one-token prompt starts with a decode step
        got = generate(build(), tok, prompt, GenerationConfig(max_new_tokens=12)).token_ids
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(kernels, "load", lambda: None)
            expected = generate(build(), tok, prompt, GenerationConfig(max_new_tokens=12)).token_ids
        assert got == expected


def test_a_row_holding_nan_or_inf_gives_nan_outputs_as_the_reference():
    torch.manual_seed(4)
    codes, scale = int8_per_channel(torch.randn(40, 32))
    layer = DynamicInt8Linear(codes, scale)
    x = torch.randn(3, 32)
    x[0, 5], x[2, 0] = float("nan"), float("inf")
    got = layer(x)
    assert layer.packed and got[0].isnan().all() and got[2].isnan().all()
    assert torch.equal(got[1], dynamic_int8_reference(x[1:2], codes, scale, codes.int().sum(1))[0])
    assert torch.equal(got[0].isnan(), dynamic_int8_reference(x, codes, scale, codes.int().sum(1))[0].isnan())
