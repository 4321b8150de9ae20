"""The integer grids ``hrmcode quantize`` puts weights and activations on, and their fake-quantized twins.

One home for the rounding rules, shared by the real quantized layers (``quantize/torch_backend.py``:
``DynamicInt8Linear``, ``Int4Linear``, ``Int8Embedding``) and quantization-aware training
(``hrmcode train --qat``). It lives in ``model/`` because training may not import ``quantize/``
(``docs/architecture.md``) and both need the same numbers: a model trained with ``--qat`` sees
what the quantized model will compute.

- int8 weights: symmetric per output channel (per row of an embedding table), scale = max|w| / 127.
- int4 weights: asymmetric per group of ``group_size`` input features, 16 levels from the group's
  minimum to its maximum, scale and zero point stored in the serving dtype (TinyGemm's layout:
  ``w = (q - 8) * scale + zero``); layers TinyGemm cannot take stay in float.
- dynamic int8 activations: every input row to uint8 over [min(x, 0), max(x, 0)], on every call.

``QuantAware`` fake-quantizes a float model's layers with a straight-through estimator: the
forward computes with the dequantized grid values, the backward passes the gradient to the float
weights (and inputs) unchanged (``w + (q(w) - w).detach()``); the model's parameters, state dict
and names stay as they are, so checkpoints stay float and ``hrmcode quantize`` makes the int model.

Guarantees: a ``QuantAware`` layer computes what the real layer computes up to the float rounding
of the summation order (``tests/train/test_qat.py``), for ``--weights int8`` with dynamic
activations and ``--weights int4`` with its default bfloat16 scales. Not guaranteed: the bfloat16
activations the int4 serving path runs in are not simulated (training stays in float32); layers
with a bias (the ACT Q-head) are left alone, as ``hrmcode quantize`` leaves them to ``--exclude``;
static int8 activations and float8 (the quanto backend's) have no fake-quantized twin. Under
``train --compile`` the fake quantization itself runs eagerly (same numbers), but the compiled layers
around it differ from eager ones in the last float bit, which can move a dynamic int8 activation
across a rounding boundary (as the C kernels and PyTorch ops may differ when serving).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

QAT_WEIGHTS = ("none", "int8", "int4")
INT4_GROUP_SIZES = (256, 128, 64, 32)  # what TinyGemm accepts


# -- the grids -----------------------------------------------------------------------------
def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: (int8 [N, K], float32 scale [N]) with w ~ q * scale."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def int4_group_size(in_features: int, requested: int) -> int | None:
    """The largest TinyGemm group size <= ``requested`` that divides ``in_features``, if any."""
    return next((g for g in INT4_GROUP_SIZES if g <= requested and in_features % g == 0), None)


def int4_layer_group(out_features: int, in_features: int, requested: int) -> int | None:
    """The group size an int4 layer of this shape gets, or None when it stays in float (TinyGemm cannot take it)."""
    group = int4_group_size(in_features, requested)
    return None if group is None or out_features % 16 else group


def int4_per_group(weight: torch.Tensor, group_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 codes [N, K] in 0..15, scales_and_zeros [K / group, N, 2] in ``dtype``): TinyGemm's layout."""
    n, k = weight.shape
    groups = weight.detach().float().view(n, k // group_size, group_size)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = ((high - low) / 15.0).clamp(min=1e-12)
    codes = torch.round((groups - low) / scale).clamp(0, 15).to(torch.uint8).view(n, k)
    zero = low + 8.0 * scale  # TinyGemm's zero point: w = (q - 8) * scale + zero = q * scale + low
    return codes, torch.cat((scale, zero), -1).view(n, k // group_size, 2).transpose(0, 1).to(dtype)


def int4_dequantize(codes: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int,
                    dtype: torch.dtype) -> torch.Tensor:
    """The weights [N, K] that int4 ``codes`` and their ``scales_and_zeros`` stand for, in ``dtype``."""
    n = codes.shape[0]
    scale, zero = scales_and_zeros.float().transpose(0, 1).unbind(-1)  # [N, K/g] each
    groups = codes.float().view(n, -1, group_size)
    return ((groups - 8.0) * scale[..., None] + zero[..., None]).view(n, -1).to(dtype)


def int8_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row of ``x`` [..., K] as uint8 codes over [min(x, 0), max(x, 0)]: (codes [rows, K] as float32,
    scale [rows, 1], zero point [rows, 1]), with x ~ (codes - zero) * scale."""
    flat = x.detach().reshape(-1, x.shape[-1]).float()
    low = flat.amin(-1, keepdim=True).clamp(max=0)
    high = flat.amax(-1, keepdim=True).clamp(min=0)
    xscale = (high - low) / 255.0
    xscale = torch.where(xscale == 0, torch.ones_like(xscale), xscale)
    zero = torch.round(-low / xscale).clamp(0, 255)
    codes = (torch.round(flat * (1.0 / xscale)) + zero).clamp(0, 255)
    return codes, xscale, zero


# -- fake quantization (straight-through) --------------------------------------------------
# Eager even inside a compiled stack (``train --compile``): inductor computes the same formulas with fused
# reciprocals and flips codes that sit on a rounding boundary, so the model would no longer see quantize's numbers.
def _straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    return x + (quantized.to(x.dtype) - x).detach()


@torch.compiler.disable
def fake_int8_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` on its int8 per-channel grid; gradients pass to ``weight`` unchanged."""
    codes, scale = int8_per_channel(weight)
    return _straight_through(weight, codes.float() * scale[:, None])


@torch.compiler.disable
def fake_int4_weight(weight: torch.Tensor, group_size: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """``weight`` on its int4 per-group grid (scales and zeros in ``dtype``); gradients pass unchanged."""
    codes, scales_and_zeros = int4_per_group(weight, group_size, dtype)
    return _straight_through(weight, int4_dequantize(codes, scales_and_zeros, group_size, torch.float32))


@torch.compiler.disable
def fake_int8_activation(x: torch.Tensor) -> torch.Tensor:
    """``x`` quantized per row to uint8 as ``DynamicInt8Linear`` does on every call; gradients pass unchanged."""
    codes, xscale, zero = int8_rows(x)
    return _straight_through(x, ((codes - zero) * xscale).view(x.shape))


class QuantAware:
    """Fake quantization on a float model's ``nn.Linear`` (and, for int8, ``nn.Embedding``) layers.

    ``weights`` is ``int8`` (what ``hrmcode quantize`` does by default: int8 weights x dynamic int8
    activations, embedding tables int8 per row) or ``int4`` (``--weights int4 --group-size
    group_size``). Each chosen layer's ``forward`` is replaced on the instance; ``enabled`` switches
    all of them between the fake-quantized and the plain float computation; ``remove`` restores them.
    """

    def __init__(self, model: nn.Module, weights: str, group_size: int = 128):
        if weights not in QAT_WEIGHTS[1:]:
            raise ValueError(f"fake quantization of {weights!r} weights: use int8 or int4")
        self.weights, self.enabled = weights, True
        self.layers: dict[str, nn.Module] = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and module.bias is None:
                if weights == "int8":
                    module.forward = partial(self._int8_linear, module)
                else:
                    group = int4_layer_group(module.out_features, module.in_features, group_size)
                    if group is None:
                        continue
                    module.forward = partial(self._int4_linear, module, group)
            elif isinstance(module, nn.Embedding) and weights == "int8":
                module.forward = partial(self._int8_embedding, module)
            else:
                continue
            self.layers[name] = module

    def _int8_linear(self, module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return F.linear(x, module.weight)
        return F.linear(fake_int8_activation(x), fake_int8_weight(module.weight))

    def _int4_linear(self, module: nn.Linear, group: int, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_int4_weight(module.weight, group) if self.enabled else module.weight)

    def _int8_embedding(self, module: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        table = fake_int8_weight(module.weight) if self.enabled else module.weight
        return F.embedding(ids, table, module.padding_idx, module.max_norm, module.norm_type,
                           module.scale_grad_by_freq, module.sparse)

    def remove(self) -> None:
        for module in self.layers.values():
            del module.forward
        self.layers = {}
