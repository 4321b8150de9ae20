"""Adaptive compute at inference: one ACT model under several per-request budgets, side by side.

Trains a tiny ``--mode act`` HRM briefly on generated program-output tasks (those of
``hrm_vs_transformer.py``, nothing downloaded), then, for each budget (``max_segments`` 1..4 under
the trained halting rule, and halting thresholds at most ``halt_max_steps`` segments), measures on
the same held-out examples in one process:

- ``segments``: mean segments a request ran (``GenerationResult.segments``: the prompt's decision);
- ``tokens/s``: greedy decode speed, ``--speed-tokens`` tokens (EOS ignored) from each of the first
  ``--speed-prompts`` held-out prompts, prefill included, KV cache on (what ``generate`` and
  ``hrmcode serve`` run);
- ``exact``: greedy generation equals the target (whitespace around it ignored), as
  ``hrmcode quantize`` measures exact match;
- ``tf exact`` / ``tf token acc``: teacher-forced: every target token (or each one) is the argmax,
  with the same budget (the unit is the row, its prompt pooled, as when generating).

    python benchmarks/adaptive_compute.py                 # tiny preset, CPU, a few minutes
    python benchmarks/adaptive_compute.py --steps 600 --thresholds 0.2,0.5,0.8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hrmcode.data.examples import parse_example  # noqa: E402
from hrmcode.jsonl import read_jsonl  # noqa: E402
from hrmcode.model.base import shifted_token_loss  # noqa: E402
from hrmcode.model.generate import GenerationConfig, generate, halt_policy  # noqa: E402
from hrmcode.quantize import load_any  # noqa: E402
from hrmcode.quantize.measure import Encoded, encode_examples  # noqa: E402
from hrmcode.train.loop import train  # noqa: E402
from hrmcode.train.options import resolve_options  # noqa: E402
from hrm_vs_transformer import write_dataset as program_dataset  # noqa: E402


def teacher_forced(model, encoded: list[Encoded], budget) -> tuple[float, float]:
    """(share of examples whose every target token is the argmax, share of target tokens that are)."""
    exact = right = total = 0
    for item in encoded:
        ids = torch.tensor([item.ids])
        labels = ids.clone()
        labels[:, : item.prompt_len] = -100
        out = model(ids, labels=labels, prefix_lens=torch.tensor([item.prompt_len]), halt=budget)
        _, valid, correct = shifted_token_loss(out.logits, labels)
        exact += int(correct.sum()) == int(valid.sum())
        right += int(correct.sum())
        total += int(valid.sum())
    return exact / len(encoded), right / max(total, 1)


def measure(loaded, encoded: list[Encoded], max_segments: int | None, threshold: float | None, speed_prompts: int,
            speed_tokens: int) -> dict:
    model, tok = loaded.model, loaded.tokenizer
    budget = halt_policy(loaded.config, max_segments, threshold)
    with torch.no_grad():
        tf_exact, tf_token = teacher_forced(model, encoded, budget)
    hits, segments = 0, []
    for item in encoded:
        cfg = GenerationConfig(max_new_tokens=len(item.ids) - item.prompt_len + 8, max_segments=max_segments,
                               halt_threshold=threshold)
        result = generate(model, tok, item.ids[: item.prompt_len], cfg)
        hits += result.text.strip() == item.target.strip()
        segments.append(result.segments)
    speed_cfg = GenerationConfig(max_new_tokens=speed_tokens, ignore_eos=True, max_segments=max_segments,
                                 halt_threshold=threshold)
    generate(model, tok, encoded[0].ids[: encoded[0].prompt_len], speed_cfg)  # warm-up
    produced, started = 0, time.perf_counter()
    for item in encoded[:speed_prompts]:
        produced += generate(model, tok, item.ids[: item.prompt_len], speed_cfg).completion_tokens
    seconds = time.perf_counter() - started
    return {"segments": sum(segments) / len(segments), "tokens_s": produced / seconds, "exact": hits / len(encoded),
            "tf_exact": tf_exact, "tf_token": tf_token}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--arch", default="hrm", choices=["hrm", "trm"])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--halt-max-steps", type=int, default=4, help="ACT's most segments (training and budgets)")
    parser.add_argument("--thresholds", default="0.3,0.5,0.7", help="halting thresholds to compare, comma-separated")
    parser.add_argument("--train", type=int, default=2000, help="training examples")
    parser.add_argument("--heldout", type=int, default=64, help="held-out examples (all measured)")
    parser.add_argument("--batch", type=int, default=16, help="rows per step")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per row")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--speed-prompts", type=int, default=8, help="prompts timed for tokens/s")
    parser.add_argument("--speed-tokens", type=int, default=32, help="tokens generated per timed prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--model", type=Path, default=None,
                        help="measure this act model (artifact or checkpoint) instead of training one")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.out or Path(tempfile.mkdtemp(prefix="adaptive-compute-"))
    data = program_dataset(root / "data", args.train, args.heldout, args.seed, kinds=3, staged=False,
                           name="adaptive-bench", rule="benchmarks/adaptive_compute")
    model_dir = args.model
    if model_dir is None:
        options = {"arch": args.arch, "mode": "act", "max_steps": args.steps, "batch_size": args.batch,
                   "seq_len": args.seq_len, "lr": args.lr, "warmup_steps": max(args.steps // 10, 1), "eval_every": 0,
                   "eval_generate": 0, "log_every": max(args.steps // 4, 1), "save_every": args.steps,
                   "vocab_size": 512, "seed": args.seed, "logger": "none",
                   "model": {"halt_max_steps": args.halt_max_steps}}
        started = time.perf_counter()
        train(resolve_options(args.preset, options), str(data), out=root / "act")
        print(f"trained in {time.perf_counter() - started:.0f} s")
        model_dir = root / "act"
    loaded = load_any(model_dir)
    loaded.model.eval()
    examples = [parse_example(record) for record in read_jsonl(data / "accepted.jsonl")]
    heldout = [ex for ex in examples if ex.split == "heldout"]
    encoded = encode_examples(loaded, heldout)
    most = loaded.config.segments
    budgets = [(k, None) for k in range(1, most + 1)] + [(None, float(t)) for t in args.thresholds.split(",")]
    print(f"preset={args.preset} arch={args.arch} steps={args.steps} halt_max_steps={most} train={args.train} "
          f"heldout={len(encoded)} seed={args.seed} threads={args.threads} model={model_dir}")
    print(f"{'max_segments':>12} {'threshold':>9} {'segments':>8} {'tokens/s':>9} {'exact':>6} {'tf exact':>8} "
          f"{'tf token acc':>12}")
    for max_segments, threshold in budgets:
        row = measure(loaded, encoded, max_segments, threshold, args.speed_prompts, args.speed_tokens)
        print(f"{max_segments or most:>12} {threshold if threshold is not None else 'trained':>9} "
              f"{row['segments']:>8.2f} {row['tokens_s']:>9.1f} {row['exact']:>6.3f} {row['tf_exact']:>8.3f} "
              f"{row['tf_token']:>12.3f}")
    print(f"run kept in {root}" if args.out else "")


if __name__ == "__main__":
    main()
