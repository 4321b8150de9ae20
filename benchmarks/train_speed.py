"""Training speed of the HRM (fixed and ACT) against the equal-parameter transformer, side by side.

Each variant runs the same random token batches (same B x T) through forward, backward and an
AdamW step; after warm-up steps, the median step time over the measured steps gives tokens/s.
Model FLOPs per token are counted analytically (matmuls: 2 per weight per token forward, x2
for backward; attention scores 4*T*d per layer forward, the PaLM convention) with the HRM's
truncated backward: every module call costs a forward, only the last ``bp_steps`` calls of
the last segment (ACT: of every supervised segment, plus one no-grad target segment) a
backward. MFU = achieved model FLOP/s / peak (given with --peak-tflops, or known for
H100/H200/A100 bf16 dense).

    python benchmarks/train_speed.py                       # CPU, tiny preset
    python benchmarks/train_speed.py --device cuda --preset 27m --batch 32 --seq-len 1024 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmcode.model import build_model, count_parameters, preset  # noqa: E402
from hrmcode.model.layers import Stack  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def flops_per_token(config, seq_len: int, act_segments: float) -> float:
    """Training FLOPs per token (forward + backward) as described in the module docstring."""
    d, v = config.hidden_size, config.vocab_size
    block = 2 * (4 * d * d + 3 * d * config.mlp_hidden) + 4 * seq_len * d  # one block, forward, per token
    head = 2 * d * v
    if config.arch == "transformer":
        return 3 * (config.n_layers * block + head)
    per_segment_blocks = config.h_cycles * (config.l_cycles * config.l_layers + config.h_layers)
    grad_calls_blocks = _grad_blocks(config)
    if config.mode == "fixed":
        forward = config.segments * per_segment_blocks * block + head
        backward = 2 * (grad_calls_blocks * block + head)
        return forward + backward
    supervised = act_segments
    forward = (supervised + 1) * per_segment_blocks * block + supervised * head
    backward = supervised * 2 * (grad_calls_blocks * block + head)
    return forward + backward


def _grad_blocks(config) -> int:
    """Blocks in the last ``bp_steps`` module calls of a segment."""
    calls = []
    for _ in range(config.h_cycles):
        calls += [config.l_layers] * config.l_cycles + [config.h_layers]
    return sum(calls[-config.bp_steps:])


def run_variant(name, config, args, device, batches) -> dict:
    torch.manual_seed(0)
    model = build_model(config).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    if args.compile:  # as `hrmcode train --compile` does: the block stacks, in place
        for module in model.modules():
            if isinstance(module, Stack):
                module.compile()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    times, act_steps = [], []
    for i in range(args.warmup + args.steps):
        ids = batches[i % len(batches)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = model(ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            act_steps.append(out.metrics.get("act_steps", 0.0))
    step_s = statistics.median(times)
    tokens = args.batch * args.seq_len
    segments = statistics.mean(act_steps) if config.arch == "hrm" and config.mode == "act" else 0.0
    flops = flops_per_token(config, args.seq_len, segments) * tokens / step_s
    return {"variant": name, "params": count_parameters(model)["total"],
            "blocks/token": config.layer_applications_per_token(), "step_ms": step_s * 1000,
            "tokens/s": tokens / step_s, "tflops": flops / 1e12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default=None, help="tiny or 27m (default: tiny on cpu, 27m on cuda)")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default 8 cpu / 32 cuda)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per row (default 256 cpu / 1024 cuda)")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size")
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
    args.preset = args.preset or ("27m" if cuda else "tiny")
    args.batch = args.batch or (32 if cuda else 8)
    args.seq_len = args.seq_len or (1024 if cuda else 256)
    device = torch.device("cuda" if cuda else "cpu")
    peak = args.peak_tflops
    gpu = torch.cuda.get_device_name(0) if cuda else None
    if peak is None and gpu:
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)

    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=generator).to(device)
               for _ in range(4)]
    variants = [
        ("transformer", preset(args.preset, "transformer", vocab_size=args.vocab, max_seq_len=args.seq_len)),
        ("hrm-fixed", preset(args.preset, "hrm", vocab_size=args.vocab, max_seq_len=args.seq_len)),
        ("hrm-act", preset(args.preset, "hrm", vocab_size=args.vocab, max_seq_len=args.seq_len, mode="act")),
    ]
    rows = [run_variant(name, config, args, device, batches) for name, config in variants]
    base = rows[0]
    print(f"device={gpu or 'cpu'} threads={torch.get_num_threads()} preset={args.preset} batch={args.batch} "
          f"seq_len={args.seq_len} vocab={args.vocab} dtype={'bf16 autocast' if cuda else 'fp32'} "
          f"compile={args.compile} steps={args.steps}")
    header = f"{'variant':<12} {'params':>11} {'blocks/tok':>10} {'step ms':>9} {'tokens/s':>10} {'x base':>7} {'TFLOP/s':>8}"
    header += f" {'MFU':>6}" if peak else ""
    print(header)
    for row in rows:
        line = (f"{row['variant']:<12} {row['params']:>11,} {row['blocks/token']:>10} {row['step_ms']:>9.1f} "
                f"{row['tokens/s']:>10,.0f} {row['tokens/s'] / base['tokens/s']:>7.2f} {row['tflops']:>8.3f}")
        if peak:
            line += f" {100 * row['tflops'] / peak:>5.1f}%"
        print(line)
    if not peak:
        print("MFU: not computed (no known peak for this device; pass --peak-tflops)")


if __name__ == "__main__":
    main()
