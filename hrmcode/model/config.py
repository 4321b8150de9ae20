"""Model configuration: one dataclass for every architecture, serialised to ``config.json``.

``preset("tiny" | "27m", arch=...)`` gives the shipped sizes. Architectures (``ARCHS``): ``hrm``;
``transformer`` (the baseline); ``trm`` (Tiny Recursive Model: one shared stack of ``n_layers``
blocks for both updates); ``ut`` (a looped transformer: one stack of ``n_layers`` blocks applied
``loops`` times). A preset gives every non-HRM arch ``n_layers = h_layers + l_layers``, so it has
the HRM's parameters (minus the HRM's 2-output Q head in ``act`` mode); ``depth_match="flops"``
gives the transformer instead ``n_layers`` = the HRM's block applications per token (equal compute,
more parameters). A ``ut`` preset loops its stack as often as that takes to spend the HRM's compute
(rounded, at least once), so it matches the HRM in both parameters and compute.

``norm``: ``post`` (every arch; the HRM paper's block, a parameterless RMSNorm of each residual sum)
or ``pre`` (the transformer only: Llama's block, a learned-weight RMSNorm before each sublayer and
before the LM head, so ``hrmcode export model`` writes a standard ``LlamaForCausalLM``). Configs
written before the key load as ``post``.

Guarantees: ``validate()`` rejects inconsistent settings with a one-line ``UsageError``;
``from_dict(to_dict(c)) == c``; unknown keys in a ``config.json`` are refused, not ignored, and
so is an unknown ``prompt_format`` (the checkpoint's prompt renderer, ``config.prompt``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hrmcode.errors import UsageError
from hrmcode.model.prompt import DEFAULT_FORMAT, PromptFormat, prompt_format
from hrmcode.presets import PRESETS

ARCHS = ("hrm", "transformer", "trm", "ut")
RECURRENT = ("hrm", "trm")  # archs with segments, modes and ACT halting
MODES = ("fixed", "act")
DEPTH_MATCHES = ("params", "flops")
NORMS = ("post", "pre")


@dataclass
class ModelConfig:
    arch: str = "hrm"
    vocab_size: int = 512
    hidden_size: int = 64
    num_heads: int = 2
    expansion: float = 4.0
    h_layers: int = 2
    l_layers: int = 2
    n_layers: int = 4  # transformer, trm, ut: blocks in the (one) stack
    loops: int = 3  # ut only: times its stack is applied
    h_cycles: int = 2
    l_cycles: int = 2
    max_seq_len: int = 256
    mode: str = "fixed"  # hrm and trm: fixed (a fixed number of segments) | act (HRM paper)
    halt_max_steps: int = 2  # act: most segments per sequence in training
    halt_exploration_prob: float = 0.1  # act: chance that a sequence gets a random minimum of segments
    bp_steps: int = 2  # hrm: gradient flows through the last bp_steps module calls of a segment (2 = HRM's 1-step)
    inference_segments: int | None = None  # segments at eval/inference; None = halt_max_steps (act) or train_segments
    train_segments: int | None = None  # fixed: segments per training forward; None = inference_segments or 1 (older configs)
    prefix_bidirectional: bool = False  # PrefixLM: the prompt attends to itself both ways
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    q_loss_weight: float = 0.5  # act: weight of the Q-halt/Q-continue losses
    mlp_multiple: int = 256  # SwiGLU inner size is rounded up to this (HRM: 256)
    norm: str = "post"  # post (the HRM's blocks) | pre (Llama's: learned-weight RMSNorms, transformer only)
    prompt_format: str = DEFAULT_FORMAT  # hrmcode.model.prompt's name; configs written before it get the default

    # -- derived -----------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        inner = round(self.expansion * self.hidden_size * 2 / 3)
        return int(math.ceil(inner / self.mlp_multiple) * self.mlp_multiple)

    @property
    def calls_per_segment(self) -> int:
        return self.h_cycles * (self.l_cycles + 1)

    @property
    def segments(self) -> int:
        """Segments run at evaluation/inference (fixed compute per token)."""
        if self.arch not in RECURRENT:
            return 1
        if self.inference_segments is not None:
            return self.inference_segments
        return self.halt_max_steps if self.mode == "act" else self.training_segments

    @property
    def training_segments(self) -> int:
        """Most segments one training forward runs (``act`` halts sooner, per sequence)."""
        if self.arch not in RECURRENT:
            return 1
        if self.mode == "act":
            return self.halt_max_steps
        if self.train_segments is not None:
            return self.train_segments
        # configs written before train_segments trained with inference_segments segments
        return self.inference_segments if self.inference_segments is not None else 1

    def segment_mismatch(self) -> str | None:
        """Why this config's inference is out of its training distribution, or None: a ``fixed``
        model run with more segments than it was trained with iterates past the fixed point it
        learned."""
        if self.arch in RECURRENT and self.mode == "fixed" and self.segments > self.training_segments:
            return (f"fixed-mode {self.arch.upper()} trained with {self.training_segments} segment(s) runs "
                    f"{self.segments} at inference; "
                    f"its outputs degrade past the trained depth (use mode=act to vary segments)")
        return None

    def layer_applications_per_token(self) -> int:
        """Transformer blocks applied per token at inference (the compute unit of every arch)."""
        if self.arch == "transformer":
            return self.n_layers
        if self.arch == "ut":
            return self.loops * self.n_layers
        if self.arch == "trm":
            return self.segments * self.calls_per_segment * self.n_layers
        per_segment = self.h_cycles * (self.l_cycles * self.l_layers + self.h_layers)
        return self.segments * per_segment

    @property
    def label(self) -> str:
        """``arch (mode)`` for a looped model, ``arch (baseline)`` otherwise: how logs and plot titles name it."""
        return f"{self.arch} ({self.mode if self.arch in RECURRENT else 'baseline'})"

    @property
    def prompt(self) -> PromptFormat:
        """The renderer every caller prompting this model uses (train, quantize, eval, serve)."""
        return prompt_format(self.prompt_format)

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown model config key(s): {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}")
        config = cls(**data)
        config.validate()
        return config

    def replace(self, **changes: Any) -> "ModelConfig":
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        def bad(message: str, hint: str = "fix the model config") -> None:
            raise UsageError(message, hint)

        if self.arch not in ARCHS:
            bad(f"unknown arch {self.arch!r}", f"use one of {', '.join(ARCHS)}")
        if self.mode not in MODES:
            bad(f"unknown mode {self.mode!r}", f"use one of {', '.join(MODES)}")
        if self.norm not in NORMS:
            bad(f"unknown norm {self.norm!r}", f"use one of {', '.join(NORMS)}")
        if self.norm == "pre" and self.arch != "transformer":
            bad(f"norm pre is for arch transformer, not {self.arch}", "drop --norm pre or use --arch transformer")
        for name in ("vocab_size", "hidden_size", "num_heads", "h_layers", "l_layers", "n_layers", "h_cycles",
                     "l_cycles", "max_seq_len", "halt_max_steps", "bp_steps", "mlp_multiple", "loops"):
            if int(getattr(self, name)) < 1:
                bad(f"model config {name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            bad(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            bad(f"head size {self.head_dim} must be even for rotary embeddings")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            bad(f"halt_exploration_prob must be in [0, 1], got {self.halt_exploration_prob}")
        if self.arch == "hrm" and not 2 <= self.bp_steps <= self.calls_per_segment:
            bad(f"bp_steps must be in [2, {self.calls_per_segment}] (the last H call and at least one L call), "
                f"got {self.bp_steps}")
        for name in ("inference_segments", "train_segments"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.arch in RECURRENT and self.mode == "act" and self.halt_max_steps < 2:
            bad(f"mode=act needs halt_max_steps >= 2, got {self.halt_max_steps} (one segment leaves nothing to halt)",
                "raise halt_max_steps, or use mode=fixed for one segment per forward")
        prompt_format(self.prompt_format)


def preset(name: str, arch: str = "hrm", depth_match: str = "params", **overrides: Any) -> ModelConfig:
    """A shipped size for ``arch``; ``overrides`` replace single fields (e.g. ``vocab_size``).

    ``depth_match`` (transformer only): ``params`` gives it the HRM's parameters, ``flops`` as many
    layers as the HRM of this preset (with the same overrides) applies blocks per token."""
    if name not in PRESETS:
        raise UsageError(f"unknown model preset {name!r}", f"use one of {', '.join(PRESETS)} or a config file")
    if depth_match not in DEPTH_MATCHES:
        raise UsageError(f"unknown depth_match {depth_match!r}", f"use one of {', '.join(DEPTH_MATCHES)}")
    if depth_match == "flops" and arch != "transformer":
        raise UsageError(f"depth_match flops is for the transformer, not arch {arch}",
                         "drop --depth-match flops or use --arch transformer")
    values = dict(PRESETS[name], arch=arch)
    values["n_layers"] = values["h_layers"] + values["l_layers"]
    if arch in ("transformer", "ut"):
        reference = {k: v for k, v in overrides.items() if k not in ("n_layers", "loops", "norm")}
        applications = ModelConfig.from_dict({**values, **reference, "arch": "hrm"}).layer_applications_per_token()
        if depth_match == "flops":
            values["n_layers"] = applications
        values.update(overrides)
        if arch == "ut" and "loops" not in overrides:
            values["loops"] = max(1, round(applications / values["n_layers"]))
    else:
        values.update(overrides)
    return ModelConfig.from_dict(values)


def count_parameters(model: Any) -> dict[str, int]:
    """Trainable parameters: total, in the token embedding + LM head, and the rest."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedding = sum(
        p.numel() for name, p in model.named_parameters() if p.requires_grad and name.split(".")[0] in ("embed", "lm_head")
    )
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}
