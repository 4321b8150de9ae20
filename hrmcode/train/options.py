"""Training options: presets, config files, command-line overrides, resolved into one record.

Precedence (later wins): the preset's defaults (``tiny`` or ``27m``), a JSON config file
(``{"preset": ..., "model": {...}, "train": {...}}``, see ``examples/configs/``), then options
given on the command line. The resolved options and model config are written to
``hyperparameters.json``; resuming refuses a run whose data-affecting options differ.

Guarantees: unknown keys and out-of-range values are refused with a one-line ``UsageError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hrmcode.errors import UsageError
from hrmcode.presets import PRESETS

if TYPE_CHECKING:
    from hrmcode.model.config import ModelConfig


class TrainOptions(BaseModel):
    """Every training option. ``hrmcode train`` generates its options from these fields (help text,
    range, default), so a field is declared here and nowhere else."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny", description="model size preset: tiny | 27m")
    arch: Literal["hrm", "transformer", "trm", "ut"] = Field(
        "hrm", description="hrm, transformer (the baseline), trm (Tiny Recursive Model: one shared stack) or ut "
                           "(looped transformer: one stack applied as often as the HRM applies blocks; a config "
                           "file's model.loops sets it).")
    depth_match: Literal["params", "flops"] = Field(
        "params", description="Transformer depth: params (the HRM's parameters) or flops (as many layers as the HRM "
                              "applies blocks per token).")
    norm: Literal["post", "pre"] = Field(
        "post", description="Transformer blocks: post (the HRM's) or pre (Llama's: learned RMSNorms before each "
                            "sublayer and the LM head; `hrmcode export model` writes a standard LlamaForCausalLM). "
                            "pre needs --arch transformer.")
    mode: Literal["fixed", "act"] = Field(
        "fixed", description="HRM/TRM training mode: fixed (a fixed number of segments; HRM: gradient through the "
                             "last bp_steps module calls, TRM: through the last recursion) or act (paper: deep "
                             "supervision, Q-learned halting).")
    stage: Literal["sft", "pretrain", "rl"] = Field(
        "sft", description="sft (examples, loss on targets), pretrain (corpus, loss on all tokens) or rl (from "
                           "--from MODEL on a tasks artifact of function tasks: the sandbox verdict is the reward; "
                           "see --rl-method).")
    rl_method: Literal["expert", "grpo"] = Field(
        "expert", description="With --stage rl: expert (expert iteration: fine-tune on every rewarded answer so "
                              "far) or grpo (group relative policy optimization: a clipped policy gradient on each "
                              "round's answers, advantage = reward normalized within the task's group).")
    rl_rounds: int = Field(3, ge=1, description="With --stage rl: rounds of sample, judge, fine-tune.")
    rl_samples: int = Field(8, ge=1, description="With --stage rl: answers sampled per training task each round.")
    rl_temperature: float = Field(0.8, gt=0, description="With --stage rl: sampling temperature.")
    rl_steps: int = Field(20, ge=1, description="With --stage rl: optimizer steps per round (expert: on every "
                                                "rewarded answer so far; grpo: on the round's answers, "
                                                "--batch-size answers a step).")
    rl_kl: float = Field(0.02, ge=0, description="With --rl-method grpo: weight of the KL penalty to the starting "
                                                 "model (k3 estimator per answer token; 0: off).")
    rl_max_new_tokens: int = Field(128, ge=1, description="With --stage rl: most tokens of one answer.")
    pretrain_steps: int = Field(0, ge=0, description="Steps of pretraining before SFT (with --pretrain).")
    vocab_size: int = Field(512, ge=266, description="BPE vocabulary size when training a tokenizer (tokens).")
    seq_len: int = Field(256, ge=8, description="Tokens per packed row and the model's context (tokens).")
    batch_size: int = Field(8, ge=1, description="Rows per micro-batch, summed over all processes.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_steps: int = Field(200, ge=1, description="Optimizer steps in total (the LR schedule ends here).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a fraction of the peak.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps before the cosine decay.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    clip_grad: float = Field(1.0, gt=0, description="Gradient-norm clip.")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="Keep an exponential moving average of the weights with "
                                                         "this decay (0: off); evaluation and the model artifact use it.")
    bp_warmup_steps: int = Field(0, ge=0, description="HRM-Text's back-prop warm-up (--arch hrm): the gradient "
                                                      "flows through the last 2 module calls at step 0, rising "
                                                      "linearly to the model's bp_steps at this step (0: off).")
    qat: Literal["none", "int8", "int4"] = Field(
        "none", description="Quantization-aware training: from --qat-start on, the forward pass sees the weights "
                            "(and, for int8, the activations and embeddings) as `hrmcode quantize --weights` will "
                            "make them, gradients pass straight through; the model artifact stays float.")
    qat_start: int = Field(0, ge=0, description="The step --qat starts at (a float phase first, then QAT fine-tuning).")
    qat_group_size: int = Field(128, ge=32, multiple_of=32, description="With --qat int4: the --group-size "
                                                                         "`hrmcode quantize` will use.")
    curriculum: bool = Field(False, description="Order each epoch by the examples' stage (1..4).")
    reward_weighting: Literal["mask", "weight", "none"] = Field(
        "mask", description="Examples with an episode reward (agent trajectories): mask leaves out failed ones "
                            "(reward < 1), weight scales their loss by --failed-weight + (1 - --failed-weight) * "
                            "reward, none trains on all alike.")
    failed_weight: float = Field(0.1, ge=0, le=1, description="With --reward-weighting weight: the loss factor of a "
                                                              "trajectory of reward 0.")
    eval_every: int = Field(
        50, ge=0, description="Evaluate on the held-out split every N steps (0: only at the end).")
    eval_rows: int = Field(64, ge=1, description="held-out rows scored for loss/accuracy")
    eval_generate: int = Field(4, ge=0, description="Held-out examples checked for exact match by greedy generation.")
    save_every: int = Field(100, ge=1, description="Write a checkpoint every N steps.")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1, description="Progress line and metrics.jsonl record every N steps.")
    logger: Literal["tensorboard", "wandb", "none"] = Field(
        "tensorboard", description="Also log metrics to TensorBoard (<run>/tensorboard), Weights & Biases (wandb "
                                   "installed, WANDB_* settings) or nowhere; metrics.jsonl is always written.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="cpu or cuda.")
    compile: bool = Field(False, description="Run the model through torch.compile.")
    attention: Literal["dense", "flex", "auto"] = Field(
        "auto", description="Attention over packed rows: dense (a [B, T, T] mask and SDPA), flex (FlexAttention with "
                            "a block mask built once per forward; on the CPU only for calls without gradient) or auto "
                            "(flex on CUDA, dense on the CPU).")
    grad_checkpointing: bool = Field(False, description="Recompute the blocks' activations in backward instead of "
                                                        "keeping them: less memory, more compute, the same loss and "
                                                        "gradients.")
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="Under torchrun: ddp (a model replica per process) or fsdp (weights, gradients and "
                           "optimizer state sharded across processes; not with --ema-decay or --qat).")
    seed: int = Field(0, description="Seed for weights, data order and ACT exploration.")
    model: dict[str, Any] = Field(default_factory=dict, description="model-config overrides")


# Options that may change between a run and its resumption (they do not change what is computed).
RESUMABLE_CHANGES = frozenset({"eval_every", "eval_rows", "eval_generate", "save_every", "keep_checkpoints",
                               "log_every", "logger", "device", "compile", "attention", "grad_checkpointing",
                               "rl_rounds"})

# Training schedules per size; the vocabulary and sequence length come from the model presets.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(batch_size=8, max_steps=200, lr=1e-3, warmup_steps=20),
    "27m": dict(batch_size=32, max_steps=20000, lr=3e-4, warmup_steps=1000, eval_every=1000, save_every=1000,
                log_every=50),
}


def preset_defaults(name: str) -> dict[str, Any]:
    """The training options preset ``name`` sets: its model size's vocabulary and context, and its schedule."""
    return {"vocab_size": PRESETS[name]["vocab_size"], "seq_len": PRESETS[name]["max_seq_len"], **TRAIN_PRESETS[name]}


# Options whose default depends on the preset (``--help`` says "Preset default.").
PRESET_OPTIONS = frozenset().union(*(preset_defaults(name) for name in PRESETS))


def _validate(values: dict[str, Any], where: str) -> TrainOptions:
    try:
        return TrainOptions.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "options"
        raise UsageError(f"{where}: {loc}: {first['msg']}", "see `hrmcode train --help` and examples/configs/") from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the training config ({exc})", "pass a preset name or a JSON file") from None
    if not isinstance(data, dict) or set(data) - {"preset", "model", "train"}:
        raise UsageError(f"{path}: a training config has only the keys preset, model, train",
                         "see examples/configs/tiny.json")
    return data


def resolve_options(config: str = "tiny", overrides: dict[str, Any] | None = None) -> TrainOptions:
    """``config`` is a preset name or a JSON file; ``overrides`` are the options given explicitly."""
    values: dict[str, Any]
    if config in PRESETS:
        values = {"preset": config, **preset_defaults(config)}
        where = f"preset {config}"
    else:
        path = Path(config)
        if not path.is_file():
            raise UsageError(f"--config {config!r} is neither a preset ({', '.join(PRESETS)}) nor a file",
                             "pass tiny, 27m or a path to a JSON config")
        data = read_config_file(path)
        base = data.get("preset", "tiny")
        if base not in PRESETS:
            raise UsageError(f"{path}: unknown preset {base!r}", f"use one of {', '.join(PRESETS)}")
        values = {"preset": base, **preset_defaults(base), **data.get("train", {}), "model": data.get("model", {})}
        where = str(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    options = _validate(values, where)
    _check_qat(options)
    _check_parallel(options)
    config = model_config(options, vocab_size=options.vocab_size)  # fail now, not after loading data
    _check_bp_warmup(options, config)
    return options


def _check_bp_warmup(options: TrainOptions, config: ModelConfig) -> None:
    if options.bp_warmup_steps and (config.arch != "hrm" or config.bp_steps <= 2):
        raise UsageError(f"--bp-warmup-steps needs --arch hrm with model bp_steps > 2 (here arch {config.arch}, "
                         f"bp_steps {config.bp_steps}): the warm-up raises the gradient span from 2 to bp_steps",
                         'drop --bp-warmup-steps, or set "bp_steps" (3 or more) in the config file\'s "model"')


def _check_parallel(options: TrainOptions) -> None:
    if options.parallel == "fsdp" and (options.ema_decay or options.qat != "none"):
        raise UsageError("--parallel fsdp shards the weights; --ema-decay and --qat need whole ones",
                         "use --parallel ddp, or drop --ema-decay/--qat")


def _check_qat(options: TrainOptions) -> None:
    if options.qat == "none" and (options.qat_start or options.qat_group_size != 128):
        raise UsageError("--qat-start and --qat-group-size apply only with --qat int8 or int4", "add --qat or drop them")
    if options.qat != "none" and options.qat_start >= options.max_steps:
        raise UsageError(f"--qat-start {options.qat_start} leaves no QAT steps of --max-steps {options.max_steps}",
                         "lower --qat-start or raise --max-steps")
    if options.qat_group_size != 128 and options.qat != "int4":
        raise UsageError("--qat-group-size applies only with --qat int4", "drop --qat-group-size")


def model_config(options: TrainOptions, vocab_size: int) -> ModelConfig:
    # Imported here: hrmcode.model loads torch, and the command line imports this module to build --help.
    from hrmcode.model.config import preset

    overrides = dict(options.model)
    for key in ("arch", "mode", "vocab_size", "max_seq_len", "depth_match", "norm"):
        if key in overrides:
            raise UsageError(f"model override {key!r} is set by the training options",
                             "use --arch, --mode, --depth-match, --norm, --vocab-size/--tokenizer or --seq-len")
    return preset(options.preset, options.arch, options.depth_match, mode=options.mode, norm=options.norm,
                  vocab_size=vocab_size, max_seq_len=options.seq_len, **overrides)
