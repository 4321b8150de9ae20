"""Training speed of the HRM (fixed and ACT), TRM and looped transformer against the transformer, side by side.

Each variant runs the same random token batches (same B x T) through forward, backward and an
AdamW step, as ``hrmcode train`` does (bf16 autocast on CUDA, ``--attention``,
``--grad-checkpointing``); after warm-up steps, the median step time over the measured steps
gives tokens/s.

Model FLOPs per token are counted analytically, per arch, from its config: matmuls 2 per weight
per token forward, attention scores 4*T*d per block forward (the PaLM convention, no causal
discount), backward 2x forward. Every module call costs a forward, with or without gradient; only
the calls with gradient cost a backward: the last ``bp_steps`` HRM calls (TRM: the last recursion,
``l_cycles + 1`` calls) of each supervised segment; ACT adds one no-grad target segment (HRM).
The matmul part equals what ``torch.utils.flop_counter.FlopCounterMode`` counts over a training
forward and backward (transformer, hrm-fixed, trm, ut; checked on the tiny preset at T=64, where
the counter does not see the CPU's SDPA).
Recomputation under ``--grad-checkpointing`` is not model FLOPs (the MFU convention), so MFU drops
with it. MFU = model FLOP/s / peak: the device's dense bf16 peak from a table of known GPUs, or
``--peak-tflops``; on the CPU an estimate (threads x clock x fp32 FLOPs per cycle of the vector
unit), printed with its basis.

``--memory`` adds each variant's peak memory: on CUDA ``max_memory_allocated``; on the CPU the
growth of the peak resident set over the resident set before the first step, each variant in a
fresh process (glibc keeps freed memory, so a shared process would carry one variant's peak into
the next).

    python benchmarks/train_speed.py                       # CPU, tiny preset
    python benchmarks/train_speed.py --preset 27m --batch 4 --seq-len 256 --memory --grad-checkpointing both
    python benchmarks/train_speed.py --device cuda --preset 27m --batch 32 --seq-len 1024 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmcode.model import build_model, count_parameters, preset  # noqa: E402
from hrmcode.model.attention import resolve_kernel  # noqa: E402
from hrmcode.model.layers import Stack, set_grad_checkpointing  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched as substrings of torch.cuda.get_device_name.
# First match wins: longer names first where one contains another.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H200": 989.0, "H100": 989.0, "H800": 989.0,
                    "B200": 2250.0, "A100": 312.0, "A800": 312.0, "A10": 125.0, "L40S": 362.0, "L40": 181.0,
                    "L4": 121.0}
VARIANTS = {"transformer": ("transformer", "fixed"), "hrm-fixed": ("hrm", "fixed"), "hrm-act": ("hrm", "act"),
            "trm": ("trm", "fixed"), "ut": ("ut", "fixed")}


def call_blocks(config) -> list[int]:
    """Blocks applied by each module call of one segment of a recurrent arch, in order."""
    low, high = (config.n_layers, config.n_layers) if config.arch == "trm" else (config.l_layers, config.h_layers)
    return ([low] * config.l_cycles + [high]) * config.h_cycles


def flops_per_token(config, seq_len: int, act_segments: float) -> float:
    """Training model FLOPs per token (forward + backward), as described in the module docstring."""
    d, v = config.hidden_size, config.vocab_size
    block = 2 * (4 * d * d + 3 * d * config.mlp_hidden) + 4 * seq_len * d  # one block, forward, per token
    head = 2 * d * v
    if config.arch in ("transformer", "ut"):
        return 3 * (config.layer_applications_per_token() * block + head)
    calls = call_blocks(config)
    grad_calls = config.l_cycles + 1 if config.arch == "trm" else config.bp_steps
    segment, grad = sum(calls) * block, sum(calls[-grad_calls:]) * block
    if config.mode == "fixed":
        return config.training_segments * segment + head + 2 * (grad + head)
    target_segment = 1 if config.arch == "hrm" else 0  # the HRM's extra no-grad segment for q_continue's target
    return (act_segments + target_segment) * segment + act_segments * head + act_segments * 2 * (grad + head)


def cpu_peak_tflops(threads: int) -> tuple[float, str]:
    """An estimate of the CPU's fp32 peak for ``threads`` cores, and what it rests on."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    mhz = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    amd = "AuthenticAMD" in info
    if "avx512f" in flags and not amd:
        per_cycle, unit = 64, "2 AVX-512 FMA"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, unit = 32, "2 256-bit FMA"  # also AMD's AVX-512, which runs on 256-bit units
    else:
        per_cycle, unit = 16, "SSE"
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    return threads * ghz * per_cycle / 1000, f"{threads} thread(s) x {ghz:.2f} GHz x {per_cycle} fp32 FLOP/cycle ({unit}), estimated"


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_variant(name: str, config, args, device: torch.device, kernel: str = "dense") -> dict:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=generator).to(device)
               for _ in range(4)]
    doc_ids = (torch.arange(args.seq_len) * args.docs // args.seq_len).expand(args.batch, -1).to(device)
    model = build_model(config).to(device)
    model.train()
    model.attention_kernel = kernel
    set_grad_checkpointing(model, name.endswith("+ckpt"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    if args.compile:  # as `hrmcode train --compile` does: the block stacks, in place
        for module in model.modules():
            if isinstance(module, Stack):
                module.compile()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _rss_bytes()
    times, act_steps = [], []
    for i in range(args.warmup + args.steps):
        ids = batches[i % len(batches)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = model(ids, labels=ids, doc_ids=doc_ids if args.docs > 1 else None)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            act_steps.append(out.metrics.get("act_steps", 0.0))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    step_s = statistics.median(times)
    tokens = args.batch * args.seq_len
    segments = statistics.mean(act_steps) if config.mode == "act" else 0.0
    flops = flops_per_token(config, args.seq_len, segments) * tokens / step_s
    return {"variant": name, "params": count_parameters(model)["total"],
            "blocks/token": config.layer_applications_per_token(), "step_ms": step_s * 1000,
            "tokens/s": tokens / step_s, "tflops": flops / 1e12, "peak_mib": peak / 2 ** 20}


def _in_fresh_process(name: str, config, args, kernel: str) -> dict:
    """``run_variant`` on the CPU in a spawned process (its own peak resident set)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, (name, config, args, kernel))


def _child(name: str, config, args, kernel: str) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_variant(name, config, args, torch.device("cpu"), kernel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default=None, help="tiny or 27m (default: tiny on cpu, 27m on cuda)")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default 8 cpu / 32 cuda)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per row (default 256 cpu / 1024 cuda)")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size")
    parser.add_argument("--variants", default="transformer,hrm-fixed,hrm-act",
                        help=f"comma-separated, of {', '.join(VARIANTS)}; the first is the x-base row")
    parser.add_argument("--docs", type=int, default=1, help="packed documents per row (>1: doc_ids masks, as in training)")
    parser.add_argument("--attention", default="auto",
                        help="packed-row attention, as `train --attention` (matters with --docs > 1); "
                             "dense,flex: each variant with each (+dense/+flex)")
    parser.add_argument("--grad-checkpointing", default="off", choices=["off", "on", "both"],
                        help="as `train --grad-checkpointing`; both: each variant without and with (+ckpt)")
    parser.add_argument("--memory", action="store_true", help="report peak memory (CPU: one process per variant)")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first (compile, allocator)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s (TFLOP/s) for MFU")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda but no CUDA device is available")
    device = torch.device("cuda" if cuda else "cpu")
    kernels = [resolve_kernel(k, device) for k in args.attention.split(",")]
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}: use {', '.join(VARIANTS)}")
    args.preset = args.preset or ("27m" if cuda else "tiny")
    args.batch = args.batch or (32 if cuda else 8)
    args.seq_len = args.seq_len or (1024 if cuda else 256)
    gpu = torch.cuda.get_device_name(0) if cuda else None
    peak, peak_basis = args.peak_tflops, "--peak-tflops"
    if peak is None and gpu:
        match = next((k for k in PEAK_BF16_TFLOPS if k in gpu), None)
        peak, peak_basis = (PEAK_BF16_TFLOPS[match], f"{match} dense bf16") if match else (None, None)
    elif peak is None:
        peak, peak_basis = cpu_peak_tflops(torch.get_num_threads())

    rows = []
    for name in args.variants.split(","):
        arch, mode = VARIANTS[name]
        config = preset(args.preset, arch, vocab_size=args.vocab, max_seq_len=args.seq_len, mode=mode)
        for kernel in kernels:
            for ckpt in {"off": [False], "on": [True], "both": [False, True]}[args.grad_checkpointing]:
                label = name + (f"+{kernel}" if len(kernels) > 1 else "") + ("+ckpt" if ckpt else "")
                fresh = args.memory and not cuda
                rows.append(_in_fresh_process(label, config, args, kernel) if fresh
                            else run_variant(label, config, args, device, kernel))
    base = rows[0]
    print(f"device={gpu or 'cpu'} threads={torch.get_num_threads()} preset={args.preset} batch={args.batch} "
          f"seq_len={args.seq_len} docs/row={args.docs} attention={','.join(kernels)} "
          f"vocab={args.vocab} dtype={'bf16 autocast' if cuda else 'fp32'} compile={args.compile} steps={args.steps}")
    header = f"{'variant':<23} {'params':>11} {'blocks/tok':>10} {'step ms':>9} {'tokens/s':>10} {'x base':>7} {'TFLOP/s':>8}"
    header += f" {'MFU':>6}" if peak else ""
    header += f" {'peak MiB':>9}" if args.memory else ""
    print(header)
    for row in rows:
        line = (f"{row['variant']:<23} {row['params']:>11,} {row['blocks/token']:>10} {row['step_ms']:>9.1f} "
                f"{row['tokens/s']:>10,.0f} {row['tokens/s'] / base['tokens/s']:>7.2f} {row['tflops']:>8.3f}")
        if peak:
            line += f" {100 * row['tflops'] / peak:>5.1f}%"
        if args.memory:
            line += f" {row['peak_mib']:>9.0f}"
        print(line)
    if peak:
        print(f"MFU against {peak:g} TFLOP/s ({peak_basis}); model FLOPs only (no recomputation)")
    else:
        print(f"MFU: not computed ({gpu} is not in the table of known peaks; pass --peak-tflops)")
    if args.memory:
        print("peak MiB: " + ("torch.cuda.max_memory_allocated" if cuda else
                              "peak resident set growth over the set before the first step, one process per variant"))


if __name__ == "__main__":
    main()
