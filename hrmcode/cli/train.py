"""``hrmcode train EXAMPLES``: train an HRM (or the transformer baseline) into a ``model`` artifact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hrmcode.cli._common import DryRunOpt, OutOpt, RedoOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.cli._output import out
from hrmcode.errors import UsageError
from hrmcode.train.options import PRESET_OPTIONS, TrainOptions, resolve_options

EPILOG = examples_epilog(
    "hrmcode train toy-examples --config tiny --max-steps 200",
    "hrmcode train toy-examples --arch transformer --config tiny -o runs/baseline",
    "hrmcode train toy-examples --mode act --config examples/configs/tiny-act.json",
    "hrmcode train my-corpus --stage pretrain --config 27m --device cuda",
    "hrmcode train toy-examples --pretrain my-corpus --pretrain-steps 500 --max-steps 1000",
    "hrmcode train toy-examples -o runs/a --resume auto",
    "hrmcode train function-tasks --stage rl --from runs/a --rl-rounds 4 -o runs/a-rl",
    "torchrun --nproc-per-node 2 -m hrmcode train toy-examples -o runs/ddp --batch-size 16",
)


# Where each option appears in --help. TrainOptions fields named here are generated from the library
# (help, range, default); the others are this command's own parameters.
HELP_ORDER = ("config arch depth_match norm mode stage init_from rl_method rl_rounds rl_samples rl_temperature "
              "rl_steps rl_kl rl_max_new_tokens pretrain pretrain_steps tokenizer vocab_size seq_len batch_size "
              "grad_accum max_steps stop_after lr warmup_steps min_lr_ratio weight_decay clip_grad ema_decay curriculum "
              "bp_warmup_steps qat qat_start qat_group_size "
              "reward_weighting "
              "failed_weight eval_every "
              "eval_generate save_every log_every logger device compile attention grad_checkpointing parallel "
              "resume name seed").split()


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train an HRM (or the transformer baseline) on examples or a corpus; "
                               "writes a `model` artifact (safetensors + config + tokenizer + metrics).",
                 epilog=EPILOG)
    @handle_errors
    @with_options(library_options(TrainOptions, only=HELP_ORDER, overrides=True, preset_defaults=PRESET_OPTIONS),
                  order=HELP_ORDER)
    def train_command(
        ctx: typer.Context,
        examples: Annotated[str, typer.Argument(
            help="A validated-examples (or examples) artifact: a directory or a workspace name. "
                 "With --stage pretrain: a corpus artifact. With --stage rl: a tasks artifact of function tasks.")],
        config: Annotated[str, typer.Option(
            "--config", help="Size preset (tiny, 27m) or a JSON config file (see examples/configs/).")] = "tiny",
        init_from: Annotated[Optional[str], typer.Option(
            "--from", help="With --stage rl: the model artifact to start from; a rerun with the same -o continues "
                           "after the last finished round.")] = None,
        pretrain: Annotated[Optional[str], typer.Option(
            "--pretrain", help="A corpus artifact to pretrain on first (the first --pretrain-steps steps).")] = None,
        tokenizer: Annotated[Optional[Path], typer.Option(
            "--tokenizer", help="Reuse this tokenizer.json (or a checkpoint directory) instead of training one.")] = None,
        stop_after: Annotated[Optional[int], typer.Option(
            "--stop-after", min=1, help="Stop after this many steps of this invocation, with a checkpoint; "
                                        "continue later with --resume auto. With --stage rl: rounds (a rerun "
                                        "continues).")] = None,
        resume: Annotated[Optional[str], typer.Option(
            "--resume", help="auto (the newest checkpoint of --out, or of this name in the workspace) or a "
                             "run/checkpoint directory.")] = None,
        name: Annotated[Optional[str], typer.Option(
            "--name", help="Artifact name in the workspace (default: the input artifact's name).")] = None,
        out_dir: OutOpt = None,
        redo: RedoOpt = False,
        dry_run: DryRunOpt = False,
        **overrides: Any,
    ) -> None:
        options = resolve_options(config, overrides)
        if options.stage == "rl" or init_from is not None:
            _train_rl(ctx, options, examples, init_from, pretrain=pretrain, tokenizer=tokenizer, resume=resume,
                      stop_after=stop_after, name=name, out_dir=out_dir, redo=redo, dry_run=dry_run)
            return
        from hrmcode.train.loop import train

        result = train(options, examples, pretrain_ref=pretrain, tokenizer_path=tokenizer, out=out_dir, name=name,
                       resume=resume, redo=redo, stop_after=stop_after, dry_run=dry_run, workspace=workspace(ctx))
        if int(os.environ.get("RANK", "0")) != 0:
            return  # under torchrun only rank 0 reports

        def render() -> None:
            if dry_run:
                out.table("train (dry run: nothing written)", ["item", "value"],
                          [[k, v] for k, v in result.plan.items() if k != "params"]
                          + [[f"params {k}", f"{v:,}"] for k, v in result.params.items()])
                return
            rows = [["out", str(result.out_dir)], ["completed", str(result.completed)], ["step", result.step],
                    ["params", f"{result.params['total']:,}"]]
            rows += [[f"train {k}", v] for k, v in result.last_train.items() if k in ("loss", "token_acc")]
            held_out = ("loss", "token_acc", "exact_match", "segments")  # segments: mean per held-out document
            rows += [[f"heldout {k}", v] for k, v in result.last_eval.items() if k in held_out]
            rows.append(["elapsed s", round(result.elapsed_s, 1)])
            out.table("train", ["item", "value"], rows)

        out.result(result.payload(), render)


def _train_rl(ctx: typer.Context, options: TrainOptions, tasks: str, init_from: Optional[str], *,
              pretrain: Optional[str], tokenizer: Optional[Path], resume: Optional[str], stop_after: Optional[int],
              name: Optional[str], out_dir: Optional[Path], redo: bool, dry_run: bool) -> None:
    from hrmcode.eval.rewards import FunctionTaskReward
    from hrmcode.sandbox import get_sandbox
    from hrmcode.train.rl import train_rl

    if options.stage != "rl":
        raise UsageError("--from MODEL is for --stage rl", "add --stage rl, or drop --from")
    given = {"--pretrain": pretrain, "--tokenizer": tokenizer, "--resume": resume, "--dry-run": dry_run or None}
    for flag, value in given.items():
        if value is not None:
            raise UsageError(f"{flag} does not apply to --stage rl (a rerun with the same -o continues by itself)",
                             f"drop {flag}")
    result = train_rl(options, tasks, init_from=init_from, reward=FunctionTaskReward(get_sandbox()), out=out_dir,
                      name=name, redo=redo, stop_after=stop_after, workspace=workspace(ctx))

    def render() -> None:
        rows = [[r["round"], r["samples"], r["rewarded"], r.get("groups_with_signal", "-"),
                 "-" if r.get("mean_reward") is None else f"{r['mean_reward']:.3f}",
                 f"{r['heldout_passed']}/{r['heldout_tasks']}", f"{r['seconds']:.1f}"] for r in result.rounds]
        out.table(f"train --stage rl {options.rl_method} ({result.train_tasks} training tasks) -> {result.out_dir}",
                  ["round", "samples", "rewarded", "signal", "reward", "held-out passed", "seconds"],
                  rows)

    out.result(result.payload(), render)
