"""HRM and transformer-baseline models for code generation (see docs/model-api.md, docs/model.md).

``build_model(config)`` returns an ``HRM``, a ``Transformer``, a ``TRM`` or a ``LoopedTransformer``
for ``config.arch`` (hrm, transformer, trm, ut); the
weights come from the torch RNG, so seed it first for reproducible initialisation.
"""

from __future__ import annotations

from torch import nn

from hrmcode.model.config import ModelConfig, count_parameters, preset


def build_model(config: ModelConfig) -> nn.Module:
    from hrmcode.model.hrm import HRM
    from hrmcode.model.looped import LoopedTransformer
    from hrmcode.model.transformer import Transformer
    from hrmcode.model.trm import TRM

    config.validate()
    return {"hrm": HRM, "transformer": Transformer, "trm": TRM, "ut": LoopedTransformer}[config.arch](config)


__all__ = ["ModelConfig", "build_model", "count_parameters", "preset"]
