"""Quantization-aware training against post-training quantization, side by side in one table.

One float run trains ``--steps`` steps; the float control then trains ``--extra`` steps more (one
run of ``--steps + --extra`` steps: the same data order and LR schedule), and each QAT run trains
the same ``--steps + --extra`` steps with ``--qat int8`` / ``--qat int4 --qat-start --steps``, so
its first ``--steps`` steps are the float run's exactly and only the last ``--extra`` are
quantization-aware. Every model is then quantized by ``hrmcode quantize``'s library function
(``quantize_checkpoint``: default backend and spec for the weights) and its held-out loss is
measured before (float) and after (the reloaded quantized artifact), on the same held-out
examples. PTQ rows quantize the float control; QAT rows quantize their own run. ``delta %`` is
quantize's own number (after against that model's float loss); ``vs float control %`` compares
every quantized model with the float control's float loss, the comparison that decides whether
QAT paid off (a QAT model's float weights are not what it was trained to compute with).

The data is generated here (small program-output tasks, nothing downloaded).

    python benchmarks/qat.py                  # tiny preset, CPU, a few minutes
    python benchmarks/qat.py --steps 600 --extra 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hrmcode.quantize import QuantSpec, quantize_checkpoint  # noqa: E402
from hrmcode.train.loop import train  # noqa: E402
from hrmcode.train.options import resolve_options  # noqa: E402
from hrm_vs_transformer import write_dataset as program_dataset  # noqa: E402

def write_dataset(path: Path, n_train: int, n_heldout: int, seed: int) -> Path:
    """hrm_vs_transformer's program-output tasks, its first three kinds, all in one stage."""
    return program_dataset(path, n_train, n_heldout, seed, kinds=3, staged=False, name="qat-bench",
                           rule="benchmarks/qat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--arch", default="hrm", choices=["hrm", "transformer", "trm", "ut"])
    parser.add_argument("--steps", type=int, default=300, help="float steps before the extra phase")
    parser.add_argument("--extra", type=int, default=100, help="extra steps: float control or QAT fine-tuning")
    parser.add_argument("--train", type=int, default=2000, help="training examples")
    parser.add_argument("--heldout", type=int, default=64, help="held-out examples (all measured)")
    parser.add_argument("--batch", type=int, default=16, help="rows per step")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per row")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--group-size", type=int, default=128, help="int4 group size (QAT and quantize alike)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.out or Path(tempfile.mkdtemp(prefix="qat-"))
    data = write_dataset(root / "data", args.train, args.heldout, args.seed)
    total = args.steps + args.extra
    common = {"arch": args.arch, "max_steps": total, "batch_size": args.batch, "seq_len": args.seq_len,
              "lr": args.lr, "warmup_steps": max(total // 10, 1), "eval_every": 0, "eval_generate": 0,
              "log_every": max(total // 4, 1), "save_every": total, "vocab_size": 512, "seed": args.seed,
              "logger": "none"}
    runs = {"float": {}, "qat-int8": {"qat": "int8", "qat_start": args.steps},
            "qat-int4": {"qat": "int4", "qat_start": args.steps, "qat_group_size": args.group_size}}
    tokenizer = None
    for name, change in runs.items():
        train(resolve_options(args.preset, {**common, **change}), str(data), out=root / name,
              tokenizer_path=tokenizer)
        tokenizer = root / "float" / "tokenizer.json"  # every run uses the first one's tokenizer
    specs = {"int8": QuantSpec(weights="int8"), "int4": QuantSpec(weights="int4", group_size=args.group_size)}
    variants = [("PTQ int8", "float", "int8"), ("QAT int8", "qat-int8", "int8"),
                ("PTQ int4", "float", "int4"), ("QAT int4", "qat-int4", "int4")]
    rows, control = [], None
    for label, run, weights in variants:
        result = quantize_checkpoint(root / run, specs[weights], out=root / f"{run}-{weights}",
                                     limit=args.heldout, exact_match_limit=0, latency_tokens=1)
        report = result.report
        if run == "float":
            control = report["before"]["heldout_loss"]
        rows.append((label, run, report["before"]["heldout_loss"], report["after"]["heldout_loss"],
                     report["loss_increase_pct"]))
    print(f"preset={args.preset} arch={args.arch} steps={args.steps}+{args.extra} batch={args.batch} "
          f"seq_len={args.seq_len} train={args.train} heldout={args.heldout} group_size={args.group_size} "
          f"seed={args.seed} threads={args.threads}")
    print(f"{'variant':<9} {'model':<9} {'float loss':>11} {'quantized loss':>15} {'delta %':>8} "
          f"{'vs float control %':>19}")
    for label, run, before, after, delta in rows:
        print(f"{label:<9} {run:<9} {before:>11.4f} {after:>15.4f} {delta:>+8.2f} "
              f"{(after - control) / control * 100:>+19.2f}")
    print(f"runs kept in {root}" if args.out else "")


if __name__ == "__main__":
    main()
