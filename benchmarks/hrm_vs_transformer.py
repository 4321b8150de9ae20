"""Smoke / learning-speed check (HRM-act, HRM-fixed, transformer); NOT an answer to "does HRM help?".

The three variants (the transformer with the HRM's parameters) see the same data, tokens and seed.
It measures how fast each variant's loss falls per step on small program-output tasks (print a
sorted list, a reversed list, a sum, a string method) that a 4-layer transformer already saturates
(a 12-layer one scores the same), with one seed and one learning rate, at unequal compute. It
therefore says nothing about depth, extrapolation or equal-FLOPs quality: that question is
answered by ``benchmarks/model_science.py`` (pre-registered in docs/model-science.md: tasks of
controlled depth, equal training FLOPs, a learning-rate grid, 3 seeds, and a decision rule).

The data is generated here (nothing is downloaded, no benchmark is trained on), with the answer
as the target. Every variant trains with ``hrmcode.train.loop.train`` on the same packed rows for
the same number of steps, then is scored on the same held-out examples: loss and token accuracy on
the targets, and exact match of greedy generations. ``write_dataset`` is also the data of
benchmarks/qat.py.

    python benchmarks/hrm_vs_transformer.py                 # tiny preset, CPU, a few minutes
    python benchmarks/hrm_vs_transformer.py --steps 600 --train 4000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmcode.artifacts import ArtifactWriter  # noqa: E402
from hrmcode.model.config import preset  # noqa: E402
from hrmcode.train.loop import train  # noqa: E402
from hrmcode.train.options import resolve_options  # noqa: E402

WORDS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "yak"]


def make_task(rng: random.Random, kinds: int = 4) -> tuple[str, str, int]:
    """(prompt, target, stage): the program, what it prints, a difficulty stage 1-4; the first
    ``kinds`` kinds of program (sorting, reversing, adding, slicing an upper-cased word)."""
    kind = rng.randrange(kinds)
    if kind == 0:
        xs = [rng.randint(0, 9) for _ in range(rng.randint(3, 6))]
        return f"xs = {xs}\nprint(sorted(xs))", str(sorted(xs)), 2
    if kind == 1:
        xs = rng.sample(WORDS, rng.randint(2, 4))
        return f"xs = {xs}\nprint(xs[::-1])", str(xs[::-1]), 1
    if kind == 2:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return f"a = {a}\nb = {b}\nprint(a + b)", str(a + b), 3
    word = rng.choice(WORDS) + rng.choice(WORDS)
    return f"s = {word!r}\nprint(s.upper()[1:])", word.upper()[1:], 4


def write_dataset(path: Path, n_train: int, n_heldout: int, seed: int, *, kinds: int = 4, staged: bool = True,
                  name: str = "bench", rule: str = "benchmarks/program-output") -> Path:
    """A validated-examples artifact of program-output tasks (``make_task``); ``staged`` False puts
    every example in stage 1 (no curriculum)."""
    rng = random.Random(seed)
    seen, records = set(), []
    prefix = name.split("-")[0]
    while len(records) < n_train + n_heldout:
        prompt, target, stage = make_task(rng, kinds)
        if prompt in seen:  # held-out programs never appear in training
            continue
        seen.add(prompt)
        records.append({
            "id": f"{prefix}/{len(records)}", "task_id": f"{prefix}/{len(records)}", "source": "bench-synthetic",
            "level": "solve", "input": {"text": prompt, "context": {}}, "target": target, "language": "python",
            "stage": stage if staged else 1, "split": "train" if len(records) < n_train else "heldout",
            "provenance": {"inputs": [], "rule": rule, "model_written": False},
        })
    with ArtifactWriter(path, "validated-examples", name=name, update_latest=False) as writer:
        writer.write_jsonl("accepted.jsonl", records)
        writer.finish({"count": len(records)})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per variant")
    parser.add_argument("--train", type=int, default=3000, help="training examples")
    parser.add_argument("--heldout", type=int, default=100, help="held-out examples (all scored)")
    parser.add_argument("--batch", type=int, default=16, help="rows per step")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per row")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.out or Path(tempfile.mkdtemp(prefix="hrm-vs-transformer-"))
    data = write_dataset(root / "data", args.train, args.heldout, args.seed)
    common = {"max_steps": args.steps, "batch_size": args.batch, "seq_len": args.seq_len, "lr": args.lr,
              "warmup_steps": max(args.steps // 10, 1), "eval_every": 0, "eval_rows": 10_000,
              "eval_generate": args.heldout, "log_every": max(args.steps // 5, 1), "save_every": args.steps,
              "vocab_size": 512, "seed": args.seed, "device": args.device}
    variants = [("transformer", {"arch": "transformer"}), ("hrm-fixed", {"arch": "hrm", "mode": "fixed"}),
                ("hrm-act", {"arch": "hrm", "mode": "act"})]
    rows = []
    tokenizer = None
    for name, change in variants:
        options = resolve_options(args.preset, {**common, **change})
        start = time.perf_counter()
        result = train(options, str(data), out=root / name, tokenizer_path=tokenizer)
        tokenizer = root / name / "tokenizer.json"  # every variant uses the first one's tokenizer
        config = preset(args.preset, change["arch"], mode=change.get("mode", "fixed"))
        rows.append((name, result.params["total"], config.layer_applications_per_token(),
                     time.perf_counter() - start, result.last_train["lm_loss"], result.last_eval["loss"],
                     result.last_eval["token_acc"], result.last_eval["exact_match"]))
    print("hrm_vs_transformer: a smoke / per-step learning-speed check on tasks a 4-layer transformer saturates; "
          "it answers nothing about depth (see benchmarks/model_science.py)")
    print(f"preset={args.preset} steps={args.steps} batch={args.batch} seq_len={args.seq_len} "
          f"train={args.train} heldout={args.heldout} seed={args.seed} threads={args.threads} device={args.device}")
    print(f"{'variant':<12} {'params':>9} {'blocks/tok':>10} {'train s':>8} {'train lm':>10} "
          f"{'heldout loss':>12} {'token acc':>9} {'exact':>6}")
    for name, params, blocks, secs, tl, hl, acc, em in rows:
        print(f"{name:<12} {params:>9,} {blocks:>10} {secs:>8.1f} {tl:>10.4f} {hl:>12.4f} {acc:>9.3f} {em:>6.2f}")
    print(f"runs kept in {root}" if args.out else "")


if __name__ == "__main__":
    main()
