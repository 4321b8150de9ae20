"""PyTorch's own CPU kernels behind ``QuantBackend`` (the default backend).

Three layer types replace ``nn.Linear``:

- ``DynamicInt8Linear`` (``--weights int8 --activations dynamic``, the default): int8 weights,
  symmetric per output channel; each call quantizes every float32 input row to uint8
  (asymmetric, per row) and multiplies in int8 with ``hrm_qlinear`` from the decode kernels
  (AVX512-VNNI, else AVX2, else portable C: ``kernels.isa()``). The fastest path on CPU for both
  prefill and decode, and the one ``hrmcode serve`` is tuned for; without a C compiler it falls back to the same
  arithmetic in PyTorch ops (identical numbers, several times slower than float32).
- ``Int8Linear`` (``--activations none``): int8 weights, per output channel, bfloat16
  activations, ``torch._weight_int8pack_mm`` (the kernel optimum-quanto uses for the same spec).
- ``Int8Embedding``: with dynamic activations, embedding tables too (int8 per row).
- ``Int4Linear`` (``--weights int4``): 4-bit weights, asymmetric per group of input features
  (``--group-size`` 32/64/128/256; smaller where the layer's width needs it), bfloat16
  activations, ``torch._weight_int4pack_mm_for_cpu`` (TinyGemm). No C++ extension is built.

Guarantees: quantizing is deterministic (the same weights give the same bytes); a restored model
computes exactly what the quantized one did; tensors are stored unpacked (int8, or two int4 per
byte) and packed for the kernel at load, so files do not depend on the CPU.
Not guaranteed: GPU speed. On a non-CPU device the layers compute in PyTorch ops (correct, slow). ``float8`` weights and statically
calibrated int8 activations are the ``quanto`` backend's (``--backend quanto``).
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch

import torch
import torch.nn.functional as F
from torch import nn

from hrmcode.errors import CheckpointError, UsageError
from hrmcode.model import kernels
from hrmcode.model.quantization import (int4_dequantize, int4_group_size, int4_layer_group,  # noqa: F401 (re-exported)
                                        int4_per_group, int8_per_channel, int8_rows)
from hrmcode.quantize.backend import QuantSpec, quantizable_linears

_INT4_INNER_K_TILES = 2


def _embedding_names(model: nn.Module, exclude: tuple[str, ...]) -> list[str]:
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Embedding) and not any(fnmatch(name, pattern) for pattern in exclude)]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(model.get_submodule(owner) if owner else model, attr, module)


def dynamic_int8_reference(x: torch.Tensor, weight_int8: torch.Tensor, scale: torch.Tensor,
                           row_sums: torch.Tensor) -> torch.Tensor:
    """What ``hrm_qlinear`` (``hrmcode/model/kernels.c``) computes, in PyTorch ops (the path without a C compiler).

    Each input row is quantized to uint8 over [min(x, 0), max(x, 0)]; the integer products are summed exactly
    (float64 holds them), then scaled back: y = (xscale * wscale) * (sum q_x q_w - zero * rowsum).
    """
    codes, xscale, zero = int8_rows(x)  # the grid's one home: hrmcode.model.quantization
    products = codes.double() @ weight_int8.double().T - zero.double() * row_sums.double()[None, :]
    y = (xscale * scale[None, :]) * products.float()
    return y.view(*x.shape[:-1], weight_int8.shape[0])


def pack_int8(weight_int8: torch.Tensor) -> torch.Tensor:
    """[N, K] -> the kernels' layout [ceil(N / 16), K / 4, 16, 4] (16 output rows x 4 inputs per 64 bytes)."""
    n, k = weight_int8.shape
    blocks = -(-n // 16)
    padded = weight_int8.new_zeros(blocks * 16, k)
    padded[:n] = weight_int8
    return padded.view(blocks, 16, k // 4, 4).permute(0, 2, 1, 3).contiguous()


def unpack_int8(packed: torch.Tensor, out_features: int) -> torch.Tensor:
    """The inverse of ``pack_int8``."""
    blocks, k4 = packed.shape[:2]
    return packed.permute(0, 2, 1, 3).reshape(blocks * 16, k4 * 4)[:out_features].contiguous()


class DynamicInt8Linear(nn.Module):
    """int8 weights x int8 activations quantized per row on every call; float32 in and out.

    With the decode kernels (``hrmcode.model.kernels``) the weights are held only in their packed
    layout and ``hrm_qlinear`` runs the layer (AVX512-VNNI, else AVX2, else portable C:
    ``kernels.isa()``); without them, ``dynamic_int8_reference`` (the same numbers, much slower).
    ``state_dict`` holds the plain ``weight_int8`` either way.
    """

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.register_buffer("scale", scale.float().contiguous())
        self._set_weight(weight_int8)

    def _set_weight(self, weight_int8: torch.Tensor) -> None:
        fused = kernels.load() if weight_int8.device.type == "cpu" and self.in_features % 4 == 0 else None
        self.packed = fused is not None
        if fused is None:
            self.register_buffer("weight_int8", weight_int8.contiguous())
            self.register_buffer("row_sums", weight_int8.to(torch.int32).sum(1, dtype=torch.int32), persistent=False)
            return
        plain = weight_int8.contiguous()
        packed = torch.empty(-(-self.out_features // 16), self.in_features // 4, 16, 4, dtype=torch.int8)
        row_sums = torch.empty(self.out_features, dtype=torch.int32)
        fused.pack_q8(plain.data_ptr(), self.out_features, self.in_features, packed.data_ptr(), row_sums.data_ptr())
        self.register_buffer("weight_packed", packed, persistent=False)
        self.register_buffer("row_sums", row_sums, persistent=False)

    @property
    def plain_weight(self) -> torch.Tensor:
        return unpack_int8(self.weight_packed, self.out_features) if self.packed else self.weight_int8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = kernels.load() if self.packed and x.device.type == "cpu" and x.dtype == torch.float32 else None
        if fused is None:
            return dynamic_int8_reference(x, self.plain_weight, self.scale, self.row_sums).to(x.dtype)
        flat = x.reshape(-1, self.in_features).contiguous()
        rows = flat.shape[0]
        y = flat.new_empty(*x.shape[:-1], self.out_features)
        codes = torch.empty(min(rows, 64) * self.in_features, dtype=torch.uint8)
        fused.qlinear(flat.data_ptr(), rows, self.in_features, self.weight_packed.data_ptr(), self.scale.data_ptr(),
                      self.row_sums.data_ptr(), self.out_features, y.data_ptr(), codes.data_ptr())
        return y

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.packed:
            destination[prefix + "weight_int8"] = self.plain_weight

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "weight_int8"
        if self.packed and key in state_dict:  # stored plain, held packed
            self._set_weight(state_dict[key])
            state_dict = {k: v for k, v in state_dict.items() if k != key}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def unpacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.plain_weight, self.scale

    def q8_linear(self) -> kernels.Q8Linear | None:
        """This layer's tensors by address, for the fused kernels (``hrm_stack_q8``); None when not packed for them."""
        if not self.packed or self.weight_packed.device.type != "cpu" or self.scale.dtype != torch.float32:
            return None
        return kernels.Q8Linear(self.weight_packed.data_ptr(), self.scale.data_ptr(), self.row_sums.data_ptr(),
                                self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 x dynamic int8"


class Int8Linear(nn.Module):
    """int8 weights (per output channel) x bfloat16 activations."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype):
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.register_buffer("weight_int8", weight_int8.contiguous())
        self.register_buffer("scale", scale.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.bfloat16:
            flat = torch._weight_int8pack_mm(x.reshape(-1, self.in_features), self.weight_int8, self.scale)
            return flat.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight_int8.to(x.dtype)) * self.scale.to(x.dtype)

    def unpacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight_int8, self.scale.float()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 x {self.scale.dtype}"


class Int4Linear(nn.Module):
    """4-bit weights, asymmetric per group: w = (q - 8) * scale + zero; bfloat16 activations."""

    def __init__(self, nibbles: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int):
        super().__init__()
        self.out_features, half = nibbles.shape
        self.in_features = 2 * half
        self.group_size = group_size
        # [N, K/2] uint8: element 2i in the high nibble, 2i+1 in the low one (what the file stores)
        self.register_buffer("nibbles", nibbles.contiguous())
        self.register_buffer("scales_and_zeros", scales_and_zeros.contiguous())
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(self.codes(), _INT4_INNER_K_TILES),
                             persistent=False)

    @classmethod
    def quantize(cls, weight: torch.Tensor, group_size: int, dtype: torch.dtype) -> "Int4Linear":
        codes, scales_and_zeros = int4_per_group(weight, group_size, dtype)
        return cls((codes[:, 0::2] << 4) | codes[:, 1::2], scales_and_zeros, group_size)

    def codes(self) -> torch.Tensor:
        """[N, K] int32 in 0..15."""
        return torch.stack((self.nibbles >> 4, self.nibbles & 15), -1).view(self.out_features, -1).to(torch.int32)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        return int4_dequantize(self.codes(), self.scales_and_zeros, self.group_size, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.bfloat16:
            flat = torch._weight_int4pack_mm_for_cpu(x.reshape(-1, self.in_features), self.packed, self.group_size,
                                                     self.scales_and_zeros)
            return flat.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.dequantized(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 group {self.group_size}"


class Int8Embedding(nn.Module):
    """An embedding table in int8, symmetric per row: a looked-up row is ``q * scale`` in float32.

    With dynamic int8 activations the model runs in float32, so its float32 table would be the
    largest tensor left (8 MB of the 27M HRM's 38): this keeps it at a quarter.
    """

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight_int8.shape
        self.register_buffer("weight_int8", weight_int8.contiguous())
        self.register_buffer("scale", scale.float().contiguous())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight_int8[ids].float() * self.scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


def _set_kv_dtype(model: nn.Module) -> None:
    """A model with dynamic int8 layers keeps float16 KV caches (see ``CausalLM.kv_dtype``)."""
    if any(isinstance(m, DynamicInt8Linear) for m in model.modules()):
        model.kv_dtype = torch.float16


class TorchBackend:
    name = "torch"

    def check(self, spec: QuantSpec, *, loading: bool = False) -> None:
        if spec.weights == "float8" or spec.activations == "int8":
            raise UsageError(f"the torch backend does not do --weights {spec.weights} --activations {spec.activations}",
                             "use --backend quanto for float8 weights or calibrated int8 activations")
        if spec.activations == "dynamic" and (spec.weights != "int8" or spec.dtype != "float32"):
            raise UsageError("--activations dynamic needs --weights int8 and --dtype float32",
                             "drop --dtype, or use --activations none")
        if spec.activations == "none" and spec.dtype != "bfloat16":
            raise UsageError(f"--weights {spec.weights} --activations none runs with --dtype bfloat16 on this backend",
                             "drop --dtype, or use --backend quanto")

    def quantize(
        self, model: nn.Module, spec: QuantSpec, calibrate: Callable[[nn.Module], None] | None
    ) -> nn.Module:
        names = quantizable_linears(model, spec.exclude)
        if not names:
            raise CheckpointError("the model has no nn.Linear layer left to quantize", "check --exclude")
        for name in names:
            linear = model.get_submodule(name)
            if linear.bias is not None:
                raise CheckpointError(f"layer {name} has a bias, which the torch backend does not quantize",
                                      f"add --exclude {name} or use --backend quanto")
            layer = self._quantized(linear.weight, spec)
            if layer is not None:
                _replace(model, name, layer)
        if spec.activations == "dynamic":
            for name in _embedding_names(model, spec.exclude):
                _replace(model, name, Int8Embedding(*int8_per_channel(model.get_submodule(name).weight)))
        _set_kv_dtype(model)
        return model

    def _quantized(self, weight: torch.Tensor, spec: QuantSpec) -> nn.Module | None:
        if spec.weights == "int4":
            group = int4_layer_group(weight.shape[0], weight.shape[1], spec.group_size)
            if group is None:
                return None  # stays in float: TinyGemm cannot take this shape
            return Int4Linear.quantize(weight, group, spec.torch_dtype)
        codes, scale = int8_per_channel(weight)
        if spec.activations == "dynamic":
            return DynamicInt8Linear(codes, scale)
        return Int8Linear(codes, scale, spec.torch_dtype)

    def serialize(self, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
        state: dict[str, torch.Tensor] = {}
        layers: dict[str, dict] = {}
        quantized = {name: m for name, m in model.named_modules()
                     if isinstance(m, (DynamicInt8Linear, Int8Linear, Int4Linear, Int8Embedding))}
        for name, module in quantized.items():
            if isinstance(module, Int8Embedding):
                layers[name] = {"weights": "int8", "activations": "none", "group_size": None, "kind": "embedding"}
            elif isinstance(module, Int4Linear):
                layers[name] = {"weights": "int4", "activations": "none", "group_size": module.group_size}
            else:
                codes, scale = module.unpacked()
                state[f"{name}.weight_int8"] = codes.contiguous()
                state[f"{name}.scale"] = scale.contiguous()
                dynamic = isinstance(module, DynamicInt8Linear)
                layers[name] = {"weights": "int8", "activations": "dynamic" if dynamic else "none", "group_size": None}
        for name, tensor in model.state_dict().items():
            if name not in state:
                state[name] = tensor.detach().contiguous()
        return state, {"library": f"torch {torch.__version__.split('+')[0]}", "layers": layers}

    def restore(self, meta_model: nn.Module, state, qmap: dict, spec: QuantSpec, device: str) -> nn.Module:
        layers: dict[str, dict] = qmap.get("layers", {})
        model = meta_model.to(spec.torch_dtype)
        for name, entry in layers.items():
            try:
                linear = model.get_submodule(name)
                if entry.get("kind") == "embedding":
                    table = Int8Embedding(state.pop(f"{name}.weight_int8"), state.pop(f"{name}.scale"))
                    if (table.num_embeddings, table.embedding_dim) != (linear.num_embeddings, linear.embedding_dim):
                        raise CheckpointError(f"embedding '{name}' does not match config.json",
                                              "the weights and config.json do not belong together; rerun "
                                              "`hrmcode quantize`")
                    _replace(model, name, table)
                    continue
                if entry["weights"] == "int4":
                    layer = Int4Linear(state.pop(f"{name}.nibbles"), state.pop(f"{name}.scales_and_zeros"),
                                       int(entry["group_size"]))
                else:
                    codes, scale = state.pop(f"{name}.weight_int8"), state.pop(f"{name}.scale")
                    if entry["activations"] == "dynamic":
                        layer = DynamicInt8Linear(codes, scale)
                    else:
                        layer = Int8Linear(codes, scale, spec.torch_dtype)
            except (AttributeError, KeyError) as exc:
                raise CheckpointError(f"the quantized weights and map disagree on layer '{name}' ({exc})",
                                      "the artifact is corrupt; rerun `hrmcode quantize`") from None
            if (linear.out_features, linear.in_features) != (layer.out_features, layer.in_features):
                raise CheckpointError(f"layer '{name}' is {layer.out_features}x{layer.in_features} in the weights and "
                                      f"{linear.out_features}x{linear.in_features} in config.json",
                                      "the weights and config.json do not belong together; rerun `hrmcode quantize`")
            _replace(model, name, layer)
        _set_kv_dtype(model)
        # The float tensors (embeddings, unquantized layers) are still on the meta device: take them from the file
        # as they are (assign), never allocating a float copy of the quantized layers.
        result = model.load_state_dict(dict(state.items()), strict=False, assign=True)
        left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
        if left or result.unexpected_keys:
            what = left[:3] if left else result.unexpected_keys[:3]
            label = "lacks" if left else "has unexpected"
            raise CheckpointError(f"the quantized weights {label} tensors {', '.join(what)}",
                                  "the weights and config.json do not belong together; rerun `hrmcode quantize`")
        return model.to(device).eval()
