"""A looped (universal) transformer: one stack of ``n_layers`` blocks applied ``loops`` times.

The control for the HRM and TRM: depth from reusing weights, without their two-level state,
input injection, truncated gradient or halting. ``h = stack(h)`` ``loops`` times from the token
embeddings, then ``lm_head(h)``; the gradient flows through every loop. Each loop keeps its own
KV cache slots, so cached generation equals the full forward.

Not implemented: the Universal Transformer's per-step timestep embedding and its ACT halting (the
HRM/TRM arms cover halting).
"""

from __future__ import annotations

import torch

from hrmcode.model.kvcache import KVCache
from hrmcode.model.layers import AttnMask
from hrmcode.model.transformer import Transformer


class LoopedTransformer(Transformer):
    """The transformer's blocks and forward, its one pass through the blocks run ``loops`` times."""

    def run_blocks(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: AttnMask,
                   cache: KVCache | None) -> torch.Tensor:
        for loop in range(self.config.loops):
            h = self.blocks(h, None, rope, mask, cache, ("loop", loop))
        return h
