"""``hrmcode train EXAMPLES``: train an HRM (or the transformer baseline) into a ``model`` artifact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from hrmcode.cli._common import DryRunOpt, OutOpt, RedoOpt, examples_epilog
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out

EPILOG = examples_epilog(
    "hrmcode train toy-examples --config tiny --max-steps 200",
    "hrmcode train toy-examples --arch transformer --config tiny -o runs/baseline",
    "hrmcode train toy-examples --mode act --config examples/configs/tiny-act.json",
    "hrmcode train my-corpus --stage pretrain --config 27m --device cuda",
    "hrmcode train toy-examples --pretrain my-corpus --pretrain-steps 500 --max-steps 1000",
    "hrmcode train toy-examples -o runs/a --resume auto",
    "torchrun --nproc-per-node 2 -m hrmcode train toy-examples -o runs/ddp --batch-size 16",
)


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train an HRM (or the transformer baseline) on examples or a corpus; "
                               "writes a `model` artifact (safetensors + config + tokenizer + metrics).",
                 epilog=EPILOG)
    @handle_errors
    def train_command(
        examples: Annotated[str, typer.Argument(
            help="A validated-examples (or examples) artifact: a directory or a workspace name. "
                 "With --stage pretrain: a corpus artifact.")],
        config: Annotated[str, typer.Option(
            "--config", help="Size preset (tiny, 27m) or a JSON config file (see examples/configs/).")] = "tiny",
        arch: Annotated[Optional[str], typer.Option(
            "--arch", help="hrm, or transformer (the equal-parameter baseline). Default: hrm.")] = None,
        mode: Annotated[Optional[str], typer.Option(
            "--mode", help="HRM training mode: fixed (fixed cycles, gradient through the last bp_steps module calls) or act "
                           "(paper: deep supervision, Q-learned halting). Default: fixed.")] = None,
        stage: Annotated[Optional[str], typer.Option(
            "--stage", help="sft (examples, loss on targets) or pretrain (corpus, loss on all tokens). Default: sft.")] = None,
        pretrain: Annotated[Optional[str], typer.Option(
            "--pretrain", help="A corpus artifact to pretrain on first (the first --pretrain-steps steps).")] = None,
        pretrain_steps: Annotated[Optional[int], typer.Option(
            "--pretrain-steps", min=0, help="Steps of pretraining before SFT (with --pretrain). Default: 0.")] = None,
        tokenizer: Annotated[Optional[Path], typer.Option(
            "--tokenizer", help="Reuse this tokenizer.json (or a checkpoint directory) instead of training one.")] = None,
        vocab_size: Annotated[Optional[int], typer.Option(
            "--vocab-size", min=266, help="BPE vocabulary size when training a tokenizer (tokens). Preset default.")] = None,
        seq_len: Annotated[Optional[int], typer.Option(
            "--seq-len", min=8, help="Tokens per packed row and the model's context (tokens). Preset default.")] = None,
        batch_size: Annotated[Optional[int], typer.Option(
            "--batch-size", min=1, help="Rows per micro-batch, summed over all processes. Preset default.")] = None,
        grad_accum: Annotated[Optional[int], typer.Option(
            "--grad-accum", min=1, help="Micro-batches per optimizer step. Default: 1.")] = None,
        max_steps: Annotated[Optional[int], typer.Option(
            "--max-steps", min=1, help="Optimizer steps in total (the LR schedule ends here). Preset default.")] = None,
        stop_after: Annotated[Optional[int], typer.Option(
            "--stop-after", min=1, help="Stop after this many steps of this invocation, with a checkpoint; "
                                        "continue later with --resume auto.")] = None,
        lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate. Preset default.")] = None,
        warmup_steps: Annotated[Optional[int], typer.Option(
            "--warmup-steps", min=0, help="Linear warmup steps before the cosine decay. Preset default.")] = None,
        min_lr_ratio: Annotated[Optional[float], typer.Option(
            "--min-lr-ratio", help="Final LR as a fraction of the peak. Default: 0.1.")] = None,
        weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="AdamW weight decay. Default: 0.1.")] = None,
        clip_grad: Annotated[Optional[float], typer.Option("--clip-grad", help="Gradient-norm clip. Default: 1.0.")] = None,
        curriculum: Annotated[Optional[bool], typer.Option(
            "--curriculum/--no-curriculum", help="Order each epoch by the examples' stage (1..4). Default: off.")] = None,
        eval_every: Annotated[Optional[int], typer.Option(
            "--eval-every", min=0, help="Evaluate on the held-out split every N steps (0: only at the end). "
                                        "Preset default.")] = None,
        eval_generate: Annotated[Optional[int], typer.Option(
            "--eval-generate", min=0, help="Held-out examples checked for exact match by greedy generation. "
                                           "Default: 4.")] = None,
        save_every: Annotated[Optional[int], typer.Option(
            "--save-every", min=1, help="Write a checkpoint every N steps. Preset default.")] = None,
        log_every: Annotated[Optional[int], typer.Option(
            "--log-every", min=1, help="Progress line and metrics.jsonl record every N steps. Preset default.")] = None,
        device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda. Default: cpu.")] = None,
        compile_model: Annotated[Optional[bool], typer.Option(
            "--compile/--no-compile", help="Run the model through torch.compile. Default: off.")] = None,
        resume: Annotated[Optional[str], typer.Option(
            "--resume", help="auto (the newest checkpoint of --out, or of this name in the workspace) or a "
                             "run/checkpoint directory.")] = None,
        name: Annotated[Optional[str], typer.Option(
            "--name", help="Artifact name in the workspace (default: the input artifact's name).")] = None,
        seed: Annotated[Optional[int], typer.Option(
            "--seed", help="Seed for weights, data order and ACT exploration. Default: 0.")] = None,
        out_dir: OutOpt = None,
        redo: RedoOpt = False,
        dry_run: DryRunOpt = False,
    ) -> None:
        from hrmcode.train.loop import train
        from hrmcode.train.options import resolve_options

        overrides = dict(arch=arch, mode=mode, stage=stage, pretrain_steps=pretrain_steps, vocab_size=vocab_size,
                         seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, lr=lr,
                         warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio, weight_decay=weight_decay,
                         clip_grad=clip_grad, curriculum=curriculum, eval_every=eval_every,
                         eval_generate=eval_generate, save_every=save_every, log_every=log_every, device=device,
                         compile=compile_model, seed=seed)
        options = resolve_options(config, overrides)
        result = train(options, examples, pretrain_ref=pretrain, tokenizer_path=tokenizer, out=out_dir, name=name,
                       resume=resume, redo=redo, stop_after=stop_after, dry_run=dry_run)
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
            rows += [[f"heldout {k}", v] for k, v in result.last_eval.items() if k in ("loss", "token_acc", "exact_match")]
            rows.append(["elapsed s", round(result.elapsed_s, 1)])
            out.table("train", ["item", "value"], rows)

        out.result(result.payload(), render)
