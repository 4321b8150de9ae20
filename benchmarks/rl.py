"""RL from execution at tiny scale on the CPU: does the held-out pass rate rise over rounds?

Fetches the function tasks hrmcode generates (``hrmcode fetch function-tasks``: 10 families x 8
constants, 20 of the 80 held out by synthesize's seeded split of the task id), fine-tunes a tiny HRM
briefly (SFT) on the reference solutions of every ``--sft-every``-th training task (synthesize's
``solve`` examples), then runs ``train --stage rl`` from that model (``--method expert``: expert
iteration, or ``grpo``: group relative policy optimization; the sandbox verdict as the reward) and
prints one row per round: answers sampled, answers rewarded, training tasks whose group of samples
had signal (rewards not all equal), mean reward, held-out tasks passed by one greedy answer each, and
wall time. Round 0 is the SFT model. "rewarded" counts distinct answers that earned reward 1,
"training tasks rewarded" the training tasks with at least one.

    python benchmarks/rl.py                      # 3 minutes on 2 idle cores, 10-40 shared with other work
    python benchmarks/rl.py --method grpo --lr 1e-4 --seed 1
    python benchmarks/rl.py --rounds 2 --sft-steps 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hrmcode.data.function_tasks import function_tasks  # noqa: E402
from hrmcode.data.sources import fetch  # noqa: E402
from hrmcode.data.synthesize import synthesize  # noqa: E402
from hrmcode.eval.rewards import FunctionTaskReward  # noqa: E402
from hrmcode.sandbox import get_sandbox  # noqa: E402
from hrmcode.train.loop import train  # noqa: E402
from hrmcode.train.options import resolve_options  # noqa: E402
from hrmcode.train.rl import train_rl  # noqa: E402


def _tasks_artifact(tasks, path: Path, out: Path):
    """``tasks`` as a tasks artifact, through `hrmcode fetch tasks --from FILE`."""
    path.write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    return fetch("tasks", from_path=path, out=out, force=True).artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of SFT and RL (the tasks are fetch's, seed 0)")
    parser.add_argument("--sft-every", type=int, default=2, help="SFT on every N-th training task's reference")
    parser.add_argument("--sft-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--rl-steps", type=int, default=20)
    parser.add_argument("--method", choices=("expert", "grpo"), default="expert")
    parser.add_argument("--lr", type=float, default=1e-3, help="the RL stage's peak learning rate")
    parser.add_argument("--kl", type=float, default=0.02, help="GRPO's KL penalty weight (--rl-kl)")
    parser.add_argument("--keep", type=Path, default=None, help="write the artifacts here (default: a temporary dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hrmcode-rl-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        tasks_art = fetch("function-tasks", out=root / "tasks", force=True).artifact
        train_tasks = [t for t in function_tasks(seed=0) if t.metadata["split"] == "train"]
        sft_art = _tasks_artifact(train_tasks[::args.sft_every], root / "sft-tasks.jsonl", root / "sft-tasks")
        examples = synthesize(str(sft_art.path), out=root / "sft-examples", levels=("solve",), heldout_fraction=0.0,
                              workspace=root / "workspace", redo=True)
        started = time.perf_counter()
        sft_options = resolve_options("tiny", {"max_steps": args.sft_steps, "seq_len": 128, "lr": 3e-3,
                                               "warmup_steps": 10, "eval_every": 0, "logger": "none",
                                               "seed": args.seed})
        sft = train(sft_options, str(examples.artifact.path), out=root / "sft-model", redo=True,
                    workspace=root / "workspace")
        sft_s = time.perf_counter() - started
        rl_options = resolve_options("tiny", {"stage": "rl", "rl_rounds": args.rounds, "rl_samples": args.samples,
                                              "rl_temperature": args.temperature, "rl_steps": args.rl_steps,
                                              "rl_max_new_tokens": 64, "lr": args.lr, "seed": args.seed,
                                              "rl_method": args.method,
                                              **({"rl_kl": args.kl} if args.method == "grpo" else {})})
        result = train_rl(rl_options, str(tasks_art.path), init_from=str(sft.out_dir),
                          reward=FunctionTaskReward(get_sandbox()), out=root / "rl-model",
                          redo=True, workspace=root / "workspace")
        print(f"\nfunction tasks: {result.train_tasks} training, {result.heldout_tasks} held-out; "
              f"SFT on {len(train_tasks[::args.sft_every])} references, {args.sft_steps} steps ({sft_s:.0f} s); "
              f"RL ({args.method}{f', KL {args.kl}' if args.method == 'grpo' else ''}, lr {args.lr}): "
              f"{args.samples} samples per task at temperature {args.temperature}, {args.rl_steps} steps per round\n")
        print("| round | samples | rewarded | training tasks rewarded | groups with signal | mean reward "
              "| held-out passed | held-out pass rate | wall s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in result.rounds:
            rate = r["heldout_passed"] / r["heldout_tasks"]
            tasks_rewarded = len({k["task_id"] for k in r["kept"]})
            mean = "—" if r["mean_reward"] is None else f"{r['mean_reward']:.3f}"
            print(f"| {r['round']} | {r['samples']} | {r['rewarded']} | {tasks_rewarded}/{result.train_tasks} "
                  f"| {r['groups_with_signal']} | {mean} | {r['heldout_passed']}/{r['heldout_tasks']} | {rate:.2f} "
                  f"| {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
