"""``hrmcode train``: examples (and/or a corpus) -> a ``model`` artifact.

What it guarantees:

- Packed rows, loss on targets only, AdamW with linear warmup then cosine decay to
  ``min_lr_ratio``, gradient clipping and accumulation; bf16 autocast on CUDA; optional
  ``torch.compile``; DDP or FSDP (``--parallel``) under ``torchrun`` (see ``distributed.py``);
  ``--attention`` (packed rows through FlexAttention or a dense mask, ``hrmcode.model.attention``)
  and ``--grad-checkpointing`` (``hrmcode.model.layers``) change how, not what, is computed.
- The loss of a step is normalised over the whole global batch (all micro-batches, all
  processes): by target tokens, or for ACT by halting units (documents with a target token, or
  rows without ``doc_ids``: the model's ``loss_units``).
- Checkpoints ``checkpoints/step-XXXXXXXX/`` hold the weights, config, tokenizer, resolved
  hyperparameters and ``training_state.pt`` (optimizer, scheduler, RNG states, data position,
  step); ``--resume`` continues so that the following steps compute exactly what an
  uninterrupted run computes (same losses, same weights, on the same device and process count).
- ``--ema-decay d`` keeps ``ema = d * ema + (1 - d) * weights`` after every optimizer step,
  starting from the initial weights (``WeightEMA``); held-out evaluation and the final model
  artifact use the EMA weights, checkpoints hold the raw weights and (in ``training_state.pt``)
  the EMA, so resuming stays exact.
- ``--bp-warmup-steps n`` (HRM): the gradient span of step s is ``bp_steps_at(s, n, bp_steps)``, from
  2 module calls up to the config's ``bp_steps`` (HRM-Text's back-prop warm-up); a function of the
  step, so resuming stays exact; the config written keeps the final ``bp_steps``.
- ``metrics.jsonl`` has one record per logged training step and per evaluation, without wall
  times, so it is byte-stable; speed goes to the progress line and the manifest stats.
- The artifact root gets the final ``model.safetensors``/``config.json``/``tokenizer.json``/
  ``hyperparameters.json``, ``curves.png`` (loss and accuracy against step, drawn from
  ``metrics.jsonl``) and the manifest last. ``--logger`` mirrors the metrics to TensorBoard or
  Weights & Biases (``loggers.py``).

Not guaranteed: identical numbers across devices, dtypes, torch versions or process counts.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hrmcode import atomic
from hrmcode.artifacts import MANIFEST, Artifact, ArtifactWriter, load_artifact, output_location, workspace_root
from hrmcode.errors import CheckpointError, InputError, UsageError
from hrmcode.jsonl import dumps, read_jsonl
from hrmcode.model import build_model, count_parameters
from hrmcode.model.prompt import PromptFormat
from hrmcode.model.quantization import QuantAware
from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.model.checkpoint import (
    HYPERPARAMETERS, TRAINING_STATE, WEIGHTS, load_weights, save_checkpoint,
)
from hrmcode.model.config import ModelConfig
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.model.attention import kernel_used, resolve_kernel
from hrmcode.model.layers import Stack, set_grad_checkpointing
from hrmcode.reporting import reporter
from hrmcode.train import data as D
from hrmcode.train.distributed import (
    Dist, accumulating, full_optimizer_state, full_weights, load_full_state, plain_value, setup, teardown, wrap,
)
from hrmcode.train.loggers import CURVES, METRICS, TENSORBOARD_DIR, NoLogger, check_logger, open_logger, plot_curves
from hrmcode.train.options import RESUMABLE_CHANGES, TrainOptions, model_config

CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    out_dir: Path | None
    completed: bool
    step: int
    params: dict[str, int]
    last_train: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)
    artifact: Artifact | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def payload(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir) if self.out_dir else None, "completed": self.completed, "step": self.step,
            "params": self.params, "train": self.last_train, "eval": self.last_eval, "plan": self.plan,
            "elapsed_s": round(self.elapsed_s, 2),
        }


# -- data -----------------------------------------------------------------------------------
@dataclass
class Phase:
    """One data source of the run: pretraining (corpus) or SFT (examples)."""

    name: str
    train: D.EncodedSet
    heldout: D.EncodedSet
    generate_examples: list = field(default_factory=list)  # held-out examples for exact match


@dataclass
class Inputs:
    artifacts: list[Artifact]
    examples: list | None = None
    corpus: list[dict] | None = None

    def tokenizer_texts(self) -> list[str]:
        texts: list[str] = []
        if self.corpus is not None:
            texts += [r["text"] for r in self.corpus if not D.corpus_is_heldout(r)]
        if self.examples is not None:
            texts += D.example_texts([ex for ex in self.examples if ex.split == "train"])
        return texts


def load_inputs(data_ref: str, options: TrainOptions, pretrain_ref: str | None, workspace: Path | None) -> Inputs:
    if options.stage == "pretrain":
        if pretrain_ref:
            raise UsageError("--pretrain is for `--stage sft` (pretrain then fine-tune)", "drop --pretrain or use --stage sft")
        corpus = load_artifact(data_ref, "corpus", workspace)
        return Inputs([corpus], corpus=D.read_corpus(corpus))
    examples_art = load_artifact(data_ref, ("validated-examples", "examples"), workspace)
    if examples_art.kind == "examples":
        reporter().warn(f"{examples_art.path} is not validated; training on unchecked examples "
                        "(run `hrmcode validate` to keep only examples that pass)")
    inputs = Inputs([examples_art], examples=D.read_examples(examples_art))
    if pretrain_ref:
        corpus = load_artifact(pretrain_ref, "corpus", workspace)
        inputs.artifacts.append(corpus)
        inputs.corpus = D.read_corpus(corpus)
    if options.reward_weighting == "weight" and options.mode == "act":
        raise UsageError("--reward-weighting weight scales token losses; ACT training's loss is per sequence",
                         "use --reward-weighting mask or --mode fixed")
    if options.pretrain_steps and inputs.corpus is None:
        raise UsageError("--pretrain-steps needs --pretrain CORPUS", "name a corpus artifact with --pretrain")
    if options.pretrain_steps >= options.max_steps:
        raise UsageError(f"--pretrain-steps {options.pretrain_steps} leaves no SFT steps of --max-steps {options.max_steps}",
                         "raise --max-steps or lower --pretrain-steps")
    return inputs


def build_phases(inputs: Inputs, tok: CodeTokenizer, prompt: PromptFormat, options: TrainOptions) -> list[Phase]:
    phases = []
    if inputs.corpus is not None:
        train = [r for r in inputs.corpus if not D.corpus_is_heldout(r)]
        held = [r for r in inputs.corpus if D.corpus_is_heldout(r)]
        phases.append(Phase("pretrain", D.encode_corpus(train, tok, options.seq_len),
                            D.encode_corpus(held, tok, options.seq_len)))
    if inputs.examples is not None:
        train_ex = [ex for ex in inputs.examples if ex.split == "train"]
        held_ex = [ex for ex in inputs.examples if ex.split == "heldout"]
        by_reward = {"reward_weighting": options.reward_weighting, "failed_weight": options.failed_weight}
        train_set = D.encode_examples(train_ex, tok, options.seq_len, prompt, **by_reward)
        held_set = D.encode_examples(held_ex, tok, options.seq_len, prompt, **by_reward)
        D.log_masked("training", train_set.masked_by_reward, len(train_ex))
        D.log_skipped("training", train_set.skipped_too_long, len(train_ex), options.seq_len)
        if not held_ex:
            reporter().warn("no held-out examples (split == 'heldout'): evaluation is skipped")
        fits = [ex for ex in held_ex if ex.messages is None
                and len(prompt.encode_example(tok, ex.input.text, ex.target, ex.level)[0]) <= options.seq_len]
        phases.append(Phase("sft", train_set, held_set, fits[:options.eval_generate]))
    for phase in phases:
        if not phase.train.docs:
            raise InputError(f"no {phase.name} training documents fit --seq-len {options.seq_len}",
                             "raise --seq-len or check the split fields of the data")
    return phases


# -- schedule -------------------------------------------------------------------------------
def lr_factor(step: int, options: TrainOptions) -> float:
    """Linear warmup to 1, then cosine to ``min_lr_ratio`` at ``max_steps`` (step counts from 0)."""
    if options.warmup_steps and step < options.warmup_steps:
        return (step + 1) / options.warmup_steps
    span = max(options.max_steps - options.warmup_steps, 1)
    progress = min(max(step - options.warmup_steps, 0) / span, 1.0)
    return options.min_lr_ratio + (1 - options.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def bp_steps_at(step: int, warmup_steps: int, final: int) -> int:
    """HRM-Text's back-prop warm-up: the HRM's gradient span (module calls) at step ``step``, rising
    linearly from 2 at step 0 to ``final`` at ``warmup_steps`` and staying there (0: always ``final``)."""
    if not warmup_steps or step >= warmup_steps:
        return final
    return 2 + (final - 2) * step // warmup_steps


@contextlib.contextmanager
def gradient_span(model: torch.nn.Module, bp_steps: int):
    """The HRM runs with gradient through its last ``bp_steps`` module calls inside the block, and
    with its configured span again after it (so checkpoints and the artifact keep the final value)."""
    config = model.config
    saved, config.bp_steps = config.bp_steps, bp_steps
    try:
        yield
    finally:
        config.bp_steps = saved


def make_optimizer(model: torch.nn.Module, options: TrainOptions, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.lr, betas=(options.beta1, options.beta2),
                             fused=device.type == "cuda")


# -- output directory and resume ------------------------------------------------------------
def checkpoint_dirs(run_dir: Path) -> list[Path]:
    base = run_dir / CHECKPOINTS
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob("step-*") if (p / TRAINING_STATE).is_file())


def find_resume_dir(resume: str, out: Path | None, name: str, workspace: Path | None) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None)."""
    if resume != "auto":
        path = Path(resume)
        if (path / TRAINING_STATE).is_file():
            return path.parent.parent, path
        found = checkpoint_dirs(path)
        if not found:
            raise CheckpointError(f"{path} has no checkpoint with {TRAINING_STATE}",
                                  "pass a run directory or its checkpoints/step-* directory")
        return path, found[-1]
    if out is not None:
        found = checkpoint_dirs(out)
        return out, (found[-1] if found else None)
    base = workspace_root(workspace) / "train" / name
    runs = sorted((p for p in base.glob("*") if p.is_dir() and checkpoint_dirs(p)), key=lambda p: p.stat().st_mtime)
    if runs:
        return runs[-1], checkpoint_dirs(runs[-1])[-1]
    return output_location("train", name, None, workspace)[0], None


def check_compatible(saved: dict, options: TrainOptions, where: Path) -> None:
    current = options.model_dump(mode="json")
    for key, value in saved.get("train", {}).items():
        if key not in RESUMABLE_CHANGES and current.get(key) != value:
            raise UsageError(f"cannot resume {where}: option {key} was {value!r}, now {current.get(key)!r}",
                             "resume with the same options, or start over with --redo")


# -- the loop -------------------------------------------------------------------------------
class WeightEMA:
    """An exponential moving average of a model's trainable parameters (TRM's recipe, for every arch)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.weights:
                self.weights[name].lerp_(p.detach(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """The model holds the EMA weights inside the block and exactly its own weights again after it."""
        params = dict(model.named_parameters())
        raw = {name: params[name].detach().clone() for name in self.weights}
        with torch.no_grad():
            for name, value in self.weights.items():
                params[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in raw.items():
                    params[name].copy_(value)


class Trainer:
    def __init__(self, options: TrainOptions, dist: Dist, device: torch.device, model: torch.nn.Module,
                 tok: CodeTokenizer, phases: list[Phase], hyper: dict):
        self.options, self.dist, self.device, self.tok, self.phases, self.hyper = options, dist, device, tok, phases, hyper
        self.raw = model
        self.streams = {p.name: D.RowStream(p.train.docs, options.seq_len, tok.pad_id, options.seed + i,
                                            options.curriculum) for i, p in enumerate(phases)}
        self.step = 0
        self.ema = WeightEMA(model, options.ema_decay) if options.ema_decay else None
        # --qat: fake quantization on the layers (before compiling, which traces their forward); on from --qat-start
        self.qat = QuantAware(model, options.qat, options.qat_group_size) if options.qat != "none" else None
        model.attention_kernel = resolve_kernel(options.attention, device)
        set_grad_checkpointing(model, options.grad_checkpointing)
        # DDP or FSDP; FSDP replaces the parameters, so the optimizer comes after
        self.model, self.replica = wrap(model, dist, device, options.parallel)
        self.sharded = dist.enabled and options.parallel == "fsdp"
        self.optimizer = make_optimizer(model, options, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, options))
        if options.compile:
            # The block stacks hold nearly all the compute; compiling them in place keeps the
            # Python-level recurrence, ACT control flow and metrics out of the traced graphs.
            for module in model.modules():
                if isinstance(module, Stack):
                    module.compile()
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                         else contextlib.nullcontext())

    @property
    def plain(self) -> torch.nn.Module:
        """The unsharded model evaluation and saving use (under FSDP rank 0's replica, after ``sync_replica``)."""
        return self.replica if self.replica is not None else self.raw

    def sync_replica(self) -> None:
        """FSDP: gather the full weights into rank 0's replica. A collective: every rank calls it."""
        if self.sharded:
            weights = full_weights(self.raw)
            if self.replica is not None:
                self.replica.load_state_dict(weights)

    def weights_for_use(self) -> contextlib.AbstractContextManager:
        """The weights evaluation and the model artifact see: the EMA when on, else the raw ones."""
        return self.ema.applied(self.raw) if self.ema is not None else contextlib.nullcontext()

    def phase_at(self, step: int) -> Phase:
        if len(self.phases) == 2 and step >= self.options.pretrain_steps:
            return self.phases[1]
        return self.phases[0]

    # -- state -----------------------------------------------------------------------------
    def state(self, optimizer: dict | None = None) -> dict:
        """The training state; ``optimizer``: the optimizer's (under FSDP the full one), else read here."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        optimizer = self.optimizer.state_dict() if optimizer is None else optimizer
        state = {"step": self.step, "optimizer": optimizer, "scheduler": self.scheduler.state_dict(),
                 "rng": rng, "data": {k: s.state() for k, s in self.streams.items()}, "world_size": self.dist.world}
        if self.ema is not None:
            state["ema"] = self.ema.weights
        if self.sharded:  # keyed by parameter name (FSDP's full optimizer state), not by position
            state["optimizer_by_name"] = True
        return state

    def checkpoint_payload(self) -> tuple[torch.nn.Module, dict] | None:
        """(the model to save, the training state) on rank 0, None elsewhere; under FSDP a collective."""
        if not self.sharded:
            return (self.raw, self.state()) if self.dist.main else None
        self.sync_replica()
        optimizer = full_optimizer_state(self.raw, self.optimizer)
        return (self.replica, self.state(optimizer)) if self.dist.main else None

    def restore(self, checkpoint: Path) -> None:
        if not self.sharded:
            load_weights(self.raw, checkpoint / WEIGHTS)
        else:  # only rank 0 reads the weights: every rank hears how that went before the collectives below
            problem = None
            if self.replica is not None:
                try:
                    load_weights(self.replica, checkpoint / WEIGHTS)
                except CheckpointError as exc:
                    problem = (exc.message, exc.hint)
            problem = self.dist.broadcast(problem)
            if problem is not None:
                raise CheckpointError(*problem)
        try:
            state = torch.load(checkpoint / TRAINING_STATE, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file
            raise CheckpointError(f"{checkpoint / TRAINING_STATE} is unreadable ({type(exc).__name__})",
                                  "resume from an earlier checkpoint or start over with --redo") from None
        if bool(state.get("optimizer_by_name")) != self.sharded:
            written = f"--parallel fsdp over {state['world_size']} processes" if state.get("optimizer_by_name") \
                else "without FSDP"
            raise CheckpointError(f"{checkpoint} was written {written}; this run differs",
                                  "resume with the --parallel and torchrun --nproc-per-node of the run that wrote it")
        if self.sharded:  # rank 0's full weights and optimizer state, sharded onto every rank
            weights = self.replica.state_dict() if self.replica is not None else {}
            load_full_state(self.raw, self.optimizer, weights, state["optimizer"] if self.dist.main else {})
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        for key, stream_state in state["data"].items():
            self.streams[key].restore(stream_state)
        self.step = int(state["step"])
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(f"{checkpoint} was trained without --ema-decay; it has no EMA to resume",
                                      "resume without --ema-decay, or start over with --redo")
            for name, value in state["ema"].items():
                self.ema.weights[name].copy_(value)

    # -- one step --------------------------------------------------------------------------
    def warmup_span(self) -> contextlib.AbstractContextManager:
        """--bp-warmup-steps: the HRM's gradient span of this step; otherwise the configured one."""
        if not self.options.bp_warmup_steps:
            return contextlib.nullcontext()
        return gradient_span(self.raw, bp_steps_at(self.step, self.options.bp_warmup_steps, self.raw.config.bp_steps))

    def train_step(self) -> dict[str, float]:
        opts, dist = self.options, self.dist
        self.model.train()
        self.use_qat_from(self.step)
        stream = self.streams[self.phase_at(self.step).name]
        micro = [stream.next_batch(opts.batch_size).shard(dist.rank, dist.world).to(self.device)
                 for _ in range(opts.grad_accum)]
        units = dist.all_sum(torch.tensor(float(sum(self.raw.loss_units(b.labels, b.doc_ids) for b in micro)),
                                            device=self.device))
        scale = dist.world / max(float(units), 1.0)  # DDP averages gradients over processes
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, float] = {}
        for i, batch in enumerate(micro):
            sync = (i == len(micro) - 1) or not dist.enabled
            with accumulating(self.model, sync), self.autocast, self.warmup_span():
                out = self.model(batch.input_ids, labels=batch.labels, prefix_mask=batch.prefix_mask,
                                 doc_ids=batch.doc_ids)
            step_loss = D.step_loss_sum(out, batch)
            (step_loss * scale).backward()
            loss_sum += step_loss.detach().float()
            for key, value in out.metrics.items():
                metric_sums[key] = metric_sums.get(key, 0.0) + value
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), opts.clip_grad)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.raw)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        keys = sorted(metric_sums)
        reduced = dist.all_sum(torch.tensor([loss_sum.item()] + [metric_sums[k] for k in keys],
                                            dtype=torch.float64, device=self.device))
        n = len(micro) * dist.world
        record = {"step": self.step, "split": "train", "phase": self.phase_at(self.step - 1).name,
                  "loss": float(reduced[0]) / max(float(units), 1.0), "lr": lr, "grad_norm": float(plain_value(grad_norm)),
                  "tokens": opts.batch_size * opts.grad_accum * opts.seq_len}
        record.update({k: float(reduced[i + 1]) / n for i, k in enumerate(keys)})
        return record

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        # Eager: evaluation shapes (and the growing KV cache) would only trigger recompiles. So the dense
        # mask: eager flex_attention is the unfused path that materializes the scores.
        self.use_qat_from(max(self.step - 1, 0))  # as the last step trained
        with torch.no_grad(), torch.compiler.set_stance("force_eager"), self.weights_for_use(), \
                kernel_used(self.plain, "dense"):
            return self._evaluate()

    def use_qat_from(self, step: int) -> None:
        """Fake quantization on for step ``step`` when --qat is on and ``step`` >= --qat-start."""
        if self.qat is not None:
            self.qat.enabled = step >= self.options.qat_start

    def _evaluate(self) -> dict[str, float]:
        phase = self.phase_at(max(self.step - 1, 0))
        model, opts = self.plain, self.options
        if not phase.heldout.docs:
            return {}
        was_training = model.training
        model.eval()
        loss_sum, count, right = 0.0, 0, 0.0
        segments, docs = 0, 0  # hrm/trm: segments each held-out document ran (its halting decision)
        for batch in D.eval_batches(phase.heldout.docs, opts.seq_len, self.tok.pad_id, opts.eval_rows, opts.batch_size):
            batch = batch.to(self.device)
            with self.autocast:
                out = model(batch.input_ids, labels=batch.labels, prefix_mask=batch.prefix_mask, doc_ids=batch.doc_ids)
            loss_sum += float(out.loss_sum)
            count += out.loss_count
            right += out.metrics["token_acc"] * out.loss_count
            if out.segments is not None:
                segments += int(out.segments.sum())
                docs += out.segments.numel()
        record = {"step": self.step, "split": "heldout", "phase": phase.name,
                  "loss": loss_sum / max(count, 1), "token_acc": right / max(count, 1)}
        if docs:
            record["segments"] = segments / docs
        if phase.generate_examples:
            exact = 0
            for ex in phase.generate_examples:
                target_ids = self.tok.encode(ex.target)
                cfg = GenerationConfig(max_new_tokens=len(target_ids) + 1)
                with self.autocast:
                    prompt_ids = model.config.prompt.encode(self.tok, ex.input.text, ex.level)
                    result = generate(model, self.tok, prompt_ids, cfg)
                exact += int(result.text == ex.target and result.finish_reason == "stop")
            record["exact_match"] = exact / len(phase.generate_examples)
            record["n_generate"] = len(phase.generate_examples)
        model.train(was_training)
        return record


def _append_metrics(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past ``step`` (written after the checkpoint a resumed run starts from)."""
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
    atomic.write_text(path, "".join(dumps(r) + "\n" for r in kept))


def _save(trainer: Trainer, run_dir: Path) -> Path | None:
    """Rank 0 writes a checkpoint (every rank calls this: under FSDP it gathers the shards)."""
    payload = trainer.checkpoint_payload()
    if payload is None:
        return None
    directory = run_dir / CHECKPOINTS / f"step-{trainer.step:08d}"
    model, state = payload
    save_checkpoint(directory, model, trainer.tok, trainer.hyper, state)
    for old in checkpoint_dirs(run_dir)[:-trainer.options.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def train(
    options: TrainOptions,
    data_ref: str,
    *,
    pretrain_ref: str | None = None,
    tokenizer_path: Path | None = None,
    out: Path | None = None,
    name: str | None = None,
    resume: str | None = None,
    redo: bool = False,
    stop_after: int | None = None,
    dry_run: bool = False,
    workspace: Path | None = None,
) -> TrainResult:
    """Train per ``options`` on ``data_ref``; see the module docstring for what is guaranteed."""
    started = time.perf_counter()
    dist, device = setup(options.device)
    try:
        return _train(options, data_ref, dist, device, started, pretrain_ref=pretrain_ref,
                      tokenizer_path=tokenizer_path, out=out, name=name, resume=resume, redo=redo,
                      stop_after=stop_after, dry_run=dry_run, workspace=workspace)
    finally:
        teardown(dist)


def _train(options, data_ref, dist: Dist, device, started, *, pretrain_ref, tokenizer_path, out, name, resume, redo,
           stop_after, dry_run, workspace) -> TrainResult:
    if options.batch_size % dist.world:
        raise UsageError(f"--batch-size {options.batch_size} is not divisible by {dist.world} processes",
                         "make the global batch a multiple of the process count")
    if resume and redo:
        raise UsageError("--resume and --redo contradict each other", "pass one of them")
    if dist.main:
        check_logger(options.logger)  # before the run directory exists
    inputs = load_inputs(data_ref, options, pretrain_ref, workspace)
    name = name or inputs.artifacts[0].name
    params = options.model_dump(mode="json")
    run_dir, checkpoint = _run_location(options, dist, params, name=name, out=out, resume=resume, redo=redo,
                                        dry_run=dry_run, workspace=workspace)
    tok = _tokenizer(checkpoint, tokenizer_path, inputs, options)
    config = model_config(options, vocab_size=tok.vocab_size)
    phases = build_phases(inputs, tok, config.prompt, options)
    torch.manual_seed(options.seed)
    model = build_model(config)
    counts = count_parameters(model)
    plan = _plan(options, config, tok, phases, counts, run_dir, checkpoint)
    if dry_run:
        return TrainResult(out_dir=None, completed=False, step=0, params=counts, plan=plan,
                           elapsed_s=time.perf_counter() - started)

    model.to(device)
    hyper = {"train": params, "model": config.to_dict(), "data": [a.ref() for a in inputs.artifacts],
             "world_size": dist.world}
    trainer = Trainer(options, dist, device, model, tok, phases, hyper)
    if checkpoint is not None:
        trainer.restore(checkpoint)
    writer = None
    if dist.main:
        writer = ArtifactWriter(run_dir, "model", name=name, params=params, seed=options.seed, inputs=inputs.artifacts,
                                resumable=True, update_latest=out is None)
        _truncate_metrics(run_dir / METRICS, trainer.step)
        reporter().log(f"training {config.label}: "
                       f"{counts['total']:,} parameters ({counts['non_embedding']:,} without embeddings), "
                       f"{config.layer_applications_per_token()} block applications per token -> {run_dir}")
        if checkpoint is not None:
            reporter().log(f"resuming from {checkpoint} at step {trainer.step}")

    end = options.max_steps if stop_after is None else min(options.max_steps, trainer.step + stop_after)
    logger = open_logger(options.logger, run_dir, params) if dist.main else NoLogger()
    try:
        last_train, last_eval = _run_steps(trainer, run_dir, end, plan["tokens_per_step"], logger)
    finally:
        logger.close()
    result = TrainResult(out_dir=run_dir, completed=trainer.step >= options.max_steps, step=trainer.step,
                         params=counts, last_train=last_train, last_eval=last_eval, plan=plan)
    if result.completed:
        trainer.sync_replica()
    if dist.main and result.completed:
        result.artifact = _write_model(trainer, writer, run_dir, result, started)
    elif dist.main:
        reporter().log(f"stopped at step {trainer.step} of {options.max_steps}; continue with --resume auto")
    result.elapsed_s = time.perf_counter() - started
    return result


def _run_location(options: TrainOptions, dist: Dist, params: dict, *, name: str, out: Path | None,
                  resume: str | None, redo: bool, dry_run: bool, workspace: Path | None) -> tuple[Path, Path | None]:
    """Where to write, and the checkpoint to resume from: rank 0 decides, everyone follows."""
    checkpoint = None
    if dist.main:
        if resume:
            run_dir, checkpoint = find_resume_dir(resume, out, name, workspace)
        else:
            run_dir, _ = output_location("train", name, out, workspace, params)
            if checkpoint_dirs(run_dir) or (run_dir / WEIGHTS).exists():
                if not redo:
                    raise UsageError(f"{run_dir} already holds a training run",
                                     "continue it with --resume auto, or start over with --redo")
                if not dry_run:
                    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
                    shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
                    for stale in (METRICS, WEIGHTS, CURVES, MANIFEST):
                        (run_dir / stale).unlink(missing_ok=True)
        if checkpoint is not None:
            check_compatible(json.loads((checkpoint / HYPERPARAMETERS).read_text(encoding="utf-8")), options, checkpoint)
    return dist.broadcast((run_dir if dist.main else None, checkpoint if dist.main else None))


def _tokenizer(checkpoint: Path | None, tokenizer_path: Path | None, inputs: Inputs,
               options: TrainOptions) -> CodeTokenizer:
    """The checkpoint's tokenizer, the given one, or a new one trained on the training texts."""
    if checkpoint is not None:
        return CodeTokenizer.load(checkpoint / "tokenizer.json")
    if tokenizer_path is not None:
        return CodeTokenizer.load(tokenizer_path)
    return CodeTokenizer.train(inputs.tokenizer_texts(), vocab_size=options.vocab_size)


def _plan(options: TrainOptions, config: ModelConfig, tok: CodeTokenizer, phases: list[Phase], counts: dict[str, int],
          run_dir: Path, checkpoint: Path | None) -> dict[str, Any]:
    """What the run will do (``--dry-run`` prints it; ``TrainResult.plan``)."""
    return {
        "out": str(run_dir), "resume_from": str(checkpoint) if checkpoint else None, "arch": config.arch,
        "mode": config.mode, "params": counts, "vocab_size": tok.vocab_size,
        "layer_applications_per_token": config.layer_applications_per_token(),
        "tokens_per_step": options.batch_size * options.grad_accum * options.seq_len,
        "max_steps": options.max_steps,
        **{f"{p.name}_train_docs": len(p.train.docs) for p in phases},
        **{f"{p.name}_heldout_docs": len(p.heldout.docs) for p in phases},
    }


def _run_steps(trainer: Trainer, run_dir: Path, end: int, tokens_per_step: int, logger) -> tuple[dict, dict]:
    """Train up to step ``end``, logging, evaluating and checkpointing on schedule; the last metrics."""
    options, dist, log = trainer.options, trainer.dist, reporter()
    metrics_path = run_dir / METRICS
    last_train: dict = {}
    last_eval: dict = {}
    window_start, window_steps = time.perf_counter(), 0
    with log.task("train", total=end - trainer.step) as bar:
        while trainer.step < end:
            last_train = trainer.train_step()
            window_steps += 1
            bar.advance()
            at_end = trainer.step == end
            if dist.main and (trainer.step % options.log_every == 0 or at_end):
                _append_metrics(metrics_path, last_train)
                logger.log(last_train)
                elapsed = time.perf_counter() - window_start
                log.log(f"step {trainer.step}/{options.max_steps} loss {last_train['loss']:.4f} "
                        f"lr {last_train['lr']:.2e} {tokens_per_step * window_steps / max(elapsed, 1e-9):,.0f} tok/s")
                window_start, window_steps = time.perf_counter(), 0
            if (options.eval_every and trainer.step % options.eval_every == 0) or trainer.step == options.max_steps:
                trainer.sync_replica()
                if dist.main:
                    last_eval = trainer.evaluate()
                    if last_eval:
                        _append_metrics(metrics_path, last_eval)
                        logger.log(last_eval)
                        log.log("eval " + " ".join(f"{k} {v:.4g}" for k, v in last_eval.items()
                                                   if isinstance(v, float)))
                dist.barrier()
            if trainer.step % options.save_every == 0 or at_end:
                _save(trainer, run_dir)
            dist.barrier()
    return last_train, last_eval


def _write_model(trainer: Trainer, writer: ArtifactWriter, run_dir: Path, result: TrainResult,
                 started: float) -> Artifact:
    """The finished run: final weights, config and tokenizer at the artifact root, then the manifest."""
    with trainer.weights_for_use():
        for file_name in save_checkpoint(run_dir, trainer.plain, trainer.tok, trainer.hyper):
            writer.add(file_name)
    writer.add(METRICS)
    config = trainer.raw.config
    title = f"{config.label}, {trainer.step} steps"
    if plot_curves(list(read_jsonl(run_dir / METRICS)), run_dir / CURVES, title) is not None:
        writer.add(CURVES)
    result.elapsed_s = time.perf_counter() - started
    tokens_per_step = result.plan["tokens_per_step"]
    stats = {"steps": trainer.step, "params": result.params, "final_train": result.last_train,
             "final_eval": result.last_eval, "tokens_seen": trainer.step * tokens_per_step,
             "elapsed_s": round(result.elapsed_s, 2), "world_size": trainer.dist.world, "device": str(trainer.device)}
    return writer.finish(stats)
