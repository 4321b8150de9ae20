"""optimum-quanto (0.2.7) behind ``QuantBackend``.

What this backend does beyond calling quanto:
- Only ``nn.Linear`` layers are quantized (quanto would also swap LayerNorm/Conv2d).
- ``--group-size`` for int4: quanto always starts its grouping at 128; we apply the same
  reduction rule (subtract 32 until it divides ``in_features``, not below 32; no grouping when
  ``in_features`` is not larger than the group) from the requested size, and record the size of
  every layer in the map so reloading rebuilds the same layout.
- Calibration's "streamline" pass silently disables output quantization of some layers; quanto's
  own map does not record that, so a reloaded W8A8 model differed from the calibrated one. We
  record it per layer and re-apply it on load.
- Buffers that are not part of the state dict (``persistent=False``, e.g. rotary tables) are
  stored too, so a model rebuilt on the meta device is complete.

Known limits (see docs/serve.md): on CPU only bf16 + int8 (``_weight_int8pack_mm``) and bf16 +
int4 with group 128 (TinyGemm) are faster than float; everything else dequantizes on the fly.
int4 needs quanto's C++ extension, JIT-built with the system C++ compiler into the installed
package the first time (about 1-2 minutes; redone when the torch version changes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import torch

from hrmcode.errors import CheckpointError, ToolchainMissing, UsageError
from hrmcode.quantize.backend import QuantSpec, quantizable_linears
from hrmcode.reporting import reporter

# Non-persistent buffers are stored under this prefix (no module name starts with it).
BUFFER_PREFIX = "__buffer__."
_QTYPES = {"int8": "qint8", "int4": "qint4", "float8": "qfloat8", "none": None}


def _group_size(in_features: int, requested: int) -> int | None:
    """quanto's reduction rule, started from ``requested`` instead of a fixed 128."""
    if in_features <= requested:
        return None
    size = requested
    while in_features % size != 0 and size > 32:
        size -= 32
    return size if in_features % size == 0 else None


def _output_quantized(module: torch.nn.Module) -> bool:
    handle = getattr(module, "_quantize_hooks", {}).get("output")
    return handle is not None and handle.id in module._forward_hooks


def int4_extension_ready() -> bool:
    """True when quanto's C++ extension is already built for this torch version."""
    from optimum.quanto.library.extensions import get_extension

    build = get_extension("quanto_cpp").build_directory
    version_file = os.path.join(build, "pytorch_version.txt")
    if not os.path.isfile(version_file):
        return False
    with open(version_file, encoding="utf-8") as fh:
        return fh.read().strip() == torch.__version__


def ensure_int4_extension() -> None:
    """Build quanto's C++ extension now (once), or say exactly why it cannot be built."""
    from optimum.quanto.library.extensions import get_extension

    if int4_extension_ready():
        get_extension("quanto_cpp").lib  # noqa: B018 - loads the built library
        return
    extension = get_extension("quanto_cpp")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise ToolchainMissing(
            f"int4 needs optimum-quanto's C++ extension, and the C++ compiler '{compiler}' was not found",
            "install g++ (apt-get install g++) or use --weights int8",
        )
    parent = os.path.dirname(extension.build_directory)
    if not os.access(parent, os.W_OK):
        raise ToolchainMissing(
            f"int4 needs optimum-quanto's C++ extension, which is built into {parent}, and that is not writable",
            "use a virtual environment you own, or --weights int8",
        )
    reporter().log("building optimum-quanto's C++ extension for int4 (once per torch version, 1-2 minutes) ...")
    try:
        extension.lib  # noqa: B018 - triggers the JIT build
    except Exception as exc:  # noqa: BLE001 - a compiler failure has many types
        raise ToolchainMissing(
            f"building optimum-quanto's C++ extension failed: {' '.join(str(exc).split())[:300]}",
            "check that g++ and the Python headers (python3-dev) are installed, or use --weights int8",
        ) from None


class QuantoBackend:
    name = "quanto"

    def check(self, spec: QuantSpec, *, loading: bool = False) -> None:
        if spec.activations == "dynamic":
            raise UsageError("the quanto backend does not quantize activations dynamically",
                             "pass --activations none (weight-only) or int8 (calibrated), or use --backend torch")
        if spec.weights == "int4":
            ensure_int4_extension()

    def quantize(
        self, model: torch.nn.Module, spec: QuantSpec, calibrate: Callable[[torch.nn.Module], None] | None
    ) -> torch.nn.Module:
        from optimum.quanto import Calibration, freeze, quantize

        names = quantizable_linears(model, spec.exclude)
        if not names:
            raise CheckpointError("the model has no nn.Linear layer left to quantize", "check --exclude")
        quantize(model, weights=_QTYPES[spec.weights], activations=_QTYPES[spec.activations], include=names)
        if spec.weights == "int4":
            for name in names:
                module = model.get_submodule(name)
                module.weight_group_size = _group_size(module.in_features, spec.group_size)
        if spec.calibrated:
            if calibrate is None:
                raise ValueError("activation quantization needs a calibration function")
            with torch.no_grad(), Calibration(momentum=0.9):
                calibrate(model)
        freeze(model)
        return model

    def serialize(self, model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
        from optimum.quanto import quantization_map

        state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
        persistent = set(state)
        for name, buffer in model.named_buffers():
            if name not in persistent:
                state[BUFFER_PREFIX + name] = buffer.detach().contiguous()
        layers = {}
        for name, entry in quantization_map(model).items():
            module = model.get_submodule(name)
            layers[name] = {
                **entry,
                "group_size": module.weight_group_size,
                "output_quantized": _output_quantized(module),
            }
        return state, {"library": "optimum-quanto", "layers": layers}

    def restore(self, meta_model: torch.nn.Module, state, qmap: dict, spec: QuantSpec, device: str) -> torch.nn.Module:
        from optimum.quanto import quantize

        layers: dict[str, dict] = qmap.get("layers", {})
        model = meta_model.to(spec.torch_dtype)
        by_config: dict[tuple[str, str], list[str]] = {}
        for name, entry in layers.items():
            by_config.setdefault((entry["weights"], entry["activations"]), []).append(name)
        for (weights, activations), names in sorted(by_config.items()):
            quantize(model, weights=None if weights == "none" else weights,
                     activations=None if activations == "none" else activations, include=names)
        for name, entry in layers.items():
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise CheckpointError(f"quantization map names layer '{name}', which the model config lacks",
                                      "the config.json and quantization.json do not belong together") from None
            module.weight_group_size = entry.get("group_size")
            if not entry.get("output_quantized", True):
                module.disable_output_quantization()
        model = model.to_empty(device="cpu")
        # Tensors mapped from a safetensors file sit at arbitrary offsets; torch's int8pack/int4 CPU kernels
        # assume aligned memory and crash (SIGSEGV) otherwise, so unaligned ones get their own copy.
        state = {k: v.clone() if v.data_ptr() % 64 else v for k, v in state.items()}
        buffers = {k[len(BUFFER_PREFIX):]: v for k, v in state.items() if k.startswith(BUFFER_PREFIX)}
        weights = {k: v for k, v in state.items() if not k.startswith(BUFFER_PREFIX)}
        result = model.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            what = result.missing_keys[:3] if result.missing_keys else result.unexpected_keys[:3]
            label = "lacks" if result.missing_keys else "has unexpected"
            raise CheckpointError(f"the quantized weights {label} tensors {', '.join(what)}",
                                  "the weights and config.json do not belong together; rerun `hrmcode quantize`")
        for name, value in buffers.items():
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner) if owner else model
            module._buffers[attr] = value  # keeps the buffer non-persistent, as in the original model
        return model.to(device).eval()
