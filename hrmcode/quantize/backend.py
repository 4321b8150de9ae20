"""The small interface a quantization backend implements, and the spec it is given.

``hrmcode quantize`` talks to a backend only through ``QuantBackend``, so backends can be
swapped without touching the step, the artifact layout or ``load_quantized``. Two exist:
``torch`` (PyTorch's own CPU kernels, ``torch_backend.py``: int8 with dynamic or no activation
quantization, int4) and ``quanto`` (optimum-quanto, ``quanto_backend.py``: also float8 weights
and calibrated int8 activations); ``hrmcode.quantize.get_backend`` picks one by name (``auto``:
``torch`` whenever it can do the spec). This module imports neither: backends build on it.

A backend guarantees:
- ``quantize`` replaces the model's ``nn.Linear`` layers (``quantizable_linears``: minus
  ``spec.exclude`` and the ACT Q head, which stays float) in place and freezes them; ``calibrate`` (when activations are quantized) is called once inside the
  backend's calibration context to run representative forward passes.
- ``serialize`` returns a flat ``{name: tensor}`` state dict that ``safetensors`` can store and a
  JSON-able map; ``restore`` rebuilds the quantized model from exactly those two on a model built
  on the ``meta`` device, so loading never needs the original float weights.
It does not guarantee bit-identical outputs across backends or library versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from typing import Protocol

import torch

from hrmcode.errors import UsageError

WEIGHT_TYPES = ("int8", "int4", "float8")
# Layers every backend keeps in float: the ACT Q head (two outputs per unit that decide halting; rounding
# them would change the segments a request runs, for no measurable size or speed).
ALWAYS_FLOAT = ("q_head",)


def quantizable_linears(model: torch.nn.Module, exclude: tuple[str, ...]) -> list[str]:
    """Names of the ``nn.Linear`` layers a backend quantizes: all but ``exclude`` (fnmatch patterns)
    and ``ALWAYS_FLOAT``."""
    skip = (*exclude, *ALWAYS_FLOAT)
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not any(fnmatch(name, pattern) for pattern in skip)]
# none: weight-only; dynamic: int8, quantized per call (no calibration); int8: static scales from calibration
ACTIVATION_TYPES = ("none", "dynamic", "int8")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class QuantSpec:
    """What to quantize and how; recorded, resolved, in ``quantization.json``.

    Unset ``activations`` means ``dynamic`` for int8 weights (the fast CPU path) and ``none``
    otherwise; unset ``dtype`` means float32 with dynamic activations (what the int8 kernels take) and
    bfloat16 otherwise (what the int8/int4 weight-only CPU kernels take).
    """

    weights: str = "int8"
    activations: str | None = None
    dtype: str | None = None
    group_size: int = 128
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.activations is None:
            object.__setattr__(self, "activations", "dynamic" if self.weights == "int8" else "none")
        if self.dtype is None:
            object.__setattr__(self, "dtype", "float32" if self.activations == "dynamic" else "bfloat16")
        if self.weights not in WEIGHT_TYPES:
            raise UsageError(f"unknown weight type '{self.weights}'", f"use one of: {', '.join(WEIGHT_TYPES)}")
        if self.activations not in ACTIVATION_TYPES:
            raise UsageError(
                f"unknown activation type '{self.activations}'", f"use one of: {', '.join(ACTIVATION_TYPES)}"
            )
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype '{self.dtype}'", f"use one of: {', '.join(DTYPES)}")
        if self.group_size < 32 or self.group_size % 32:
            raise UsageError(f"--group-size {self.group_size} is not a positive multiple of 32", "use 32, 64, 128 ...")
        if self.group_size != 128 and self.weights != "int4":
            raise UsageError("--group-size only applies to --weights int4", "drop --group-size")

    @property
    def calibrated(self) -> bool:
        """Whether activation scales are measured on examples first (static int8); ``dynamic`` needs none."""
        return self.activations == "int8"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["exclude"] = list(self.exclude)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "QuantSpec":
        return cls(**{**data, "exclude": tuple(data.get("exclude", ()))})


class QuantBackend(Protocol):
    name: str

    def check(self, spec: QuantSpec, *, loading: bool = False) -> None:
        """Raise ``ToolchainMissing``/``UsageError`` when ``spec`` cannot work here (before any work is done)."""

    def quantize(
        self, model: torch.nn.Module, spec: QuantSpec, calibrate: Callable[[torch.nn.Module], None] | None
    ) -> torch.nn.Module:
        """Quantize and freeze ``model`` (already cast to ``spec.torch_dtype``) in place; return it."""

    def serialize(self, model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
        """The flat state dict to store as safetensors, and the JSON-able quantization map."""

    def restore(self, meta_model: torch.nn.Module, state, qmap: dict, spec: QuantSpec, device: str) -> torch.nn.Module:
        """Rebuild the quantized model from ``serialize``'s output onto a model built on the meta device.

        ``state`` is a dict of tensors or a ``SafetensorsFile`` (``pop(name)`` reads one tensor,
        ``items()`` reads the rest), so a backend can read layer by layer.
        """
