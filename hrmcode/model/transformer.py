"""The baseline: a plain decoder-only transformer built from the same blocks as the HRM.

With ``n_layers = h_layers + l_layers`` it has the HRM's parameters (minus the ACT Q head)
and spends one pass through its blocks per token, where the HRM spends
``segments x h_cycles x (l_cycles + 1)`` module calls. With ``norm="pre"`` its blocks are Llama's
(``layers.PreNormBlock``) and a learned-weight RMSNorm precedes the LM head; the embedding keeps
hrmcode's sqrt(hidden) scale (an export folds it into the embedding matrix).
"""

from __future__ import annotations

import torch

from hrmcode.model.base import CausalLM, ModelOutput
from hrmcode.model.config import ModelConfig
from hrmcode.model.kvcache import KVCache
from hrmcode.model.layers import AttnMask, RMSNorm, Stack, init_linear


class Transformer(CausalLM):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        pre_norm = config.norm == "pre"
        self.blocks = Stack(config.n_layers, config.hidden_size, config.num_heads, config.mlp_hidden, config.rms_eps,
                            pre_norm=pre_norm)
        self.norm = RMSNorm(config.hidden_size, config.rms_eps) if pre_norm else None
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
        h = self.run_blocks(self.embed_tokens(input_ids), rope, mask, cache)
        if self.norm is not None:
            h = self.norm(h)
        if cache is not None:
            cache.advance(input_ids.shape[1])
        return self.lm_output(self.lm_head(h), labels)

    def run_blocks(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: AttnMask,
                   cache: KVCache | None) -> torch.Tensor:
        """One pass through the blocks (the looped transformer overrides this)."""
        return self.blocks(h, None, rope, mask, cache, ("blocks",))
