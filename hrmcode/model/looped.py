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

from hrmcode.model.base import CausalLM, ModelOutput
from hrmcode.model.config import ModelConfig
from hrmcode.model.kvcache import KVCache
from hrmcode.model.layers import Stack, init_linear


class LoopedTransformer(CausalLM):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.blocks = Stack(config.n_layers, config.hidden_size, config.num_heads, config.mlp_hidden, config.rms_eps)
        for module in self.blocks.modules():
            if isinstance(module, torch.nn.Linear):
                init_linear(module)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        prefix_lens: torch.Tensor | None = None,
        *,
        prefix_mask: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> ModelOutput:
        rope, mask = self.attention_context(input_ids, prefix_lens, prefix_mask, doc_ids, cache)
        h = self.embed_tokens(input_ids)
        for loop in range(self.config.loops):
            h = self.blocks(h, None, rope, mask, cache, ("loop", loop))
        if cache is not None:
            cache.advance(input_ids.shape[1])
        return self.lm_output(self.lm_head(h), labels)
