"""HRM and transformer-baseline models for code generation (see docs/model-api.md, docs/model.md).

``build_model(config)`` returns an ``HRM`` or a ``Transformer`` for ``config.arch``; the
weights come from the torch RNG, so seed it first for reproducible initialisation.
"""

from __future__ import annotations

from torch import nn

from hrmcode.model.config import ModelConfig, count_parameters, preset


def build_model(config: ModelConfig) -> nn.Module:
    from hrmcode.model.hrm import HRM
    from hrmcode.model.transformer import Transformer

    config.validate()
    return HRM(config) if config.arch == "hrm" else Transformer(config)


__all__ = ["ModelConfig", "build_model", "count_parameters", "preset"]
