"""What the HRM and the transformer share: embeddings, LM head, masks, the LM loss and its output.

Label convention (as in Hugging Face causal LMs): ``labels`` is aligned with ``input_ids``
and shifted inside the model, so position ``t`` predicts ``labels[:, t + 1]``; ``-100`` is
ignored. ``out.loss`` is ``out.loss_sum / out.loss_count``; the trainer uses the sum and
count to normalise over a whole global batch (gradient accumulation, DDP) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hrmcode.model.config import ModelConfig
from hrmcode.model.kvcache import KVCache
from hrmcode.model.layers import AttnMask, Rotary, build_attention_mask, init_linear, trunc_normal_

IGNORE = -100


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None  # what loss averages, before dividing
    loss_count: int = 0  # tokens (LM loss) or halting units: documents, else rows (ACT training loss)
    metrics: dict[str, float] = field(default_factory=dict)
    trace: list[dict] | None = None  # ACT training: per-segment halting/Q values, when asked for
    segments: torch.Tensor | None = None  # hrm/trm at evaluation: segments each unit ran (hrmcode.model.halting)


def model_device(model: nn.Module) -> torch.device:
    """Where a model's tensors live (a quantized model may hold only buffers, no parameters)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def shifted_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position cross entropy [B, T-1] (0 where ignored), the valid mask, and argmax == label."""
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    valid = targets != IGNORE
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="none")
    correct = (logits.argmax(-1) == targets) & valid
    return ce.view(targets.shape), valid, correct


class CausalLM(nn.Module):
    """Token embedding (scaled by sqrt(hidden), as in the HRM), LM head, rotary, masks."""

    # How generation stores keys and values (None: in the activations' dtype). Models whose projections are
    # int8 layers set float16: half the memory of the HRM's many caches, for a rounding far below int8's.
    kv_dtype: torch.dtype | None = None
    # The form packed rows' masks take (hrmcode.model.attention: dense or flex); the trainer sets it.
    attention_kernel: str = "dense"

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        trunc_normal_(self.embed.weight, 1.0 / math.sqrt(config.hidden_size))
        self.embed_scale = math.sqrt(config.hidden_size)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        init_linear(self.lm_head)
        self.rotary = Rotary(config.head_dim, config.rope_theta, config.max_seq_len)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids) * self.embed_scale

    def attention_context(
        self,
        input_ids: torch.Tensor,
        prefix_lens: torch.Tensor | None,
        prefix_mask: torch.Tensor | None,
        doc_ids: torch.Tensor | None,
        cache: KVCache | None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], AttnMask]:
        batch, length = input_ids.shape
        if cache is not None and cache.row_lengths is not None:  # rows of their own lengths (a BatchKVCache)
            return self._batch_context(cache.row_lengths, length, input_ids.device)
        past = cache.length if cache is not None else 0
        if past + length > self.config.max_seq_len:
            raise ValueError(f"sequence of {past + length} tokens exceeds max_seq_len {self.config.max_seq_len}")
        if not self.config.prefix_bidirectional:
            prefix_lens = prefix_mask = None
        if isinstance(prefix_lens, (list, tuple)):
            prefix_lens = torch.tensor(prefix_lens, dtype=torch.long)
        mask = build_attention_mask(batch, length, past, input_ids.device, prefix_lens=prefix_lens,
                                    prefix_mask=prefix_mask, doc_ids=doc_ids,
                                    kernel=self.attention_kernel if cache is None else "dense")
        return self.rotary(past, length, input_ids.device), mask

    def _batch_context(self, lengths: torch.Tensor, length: int,
                       device: torch.device) -> tuple[tuple[torch.Tensor, torch.Tensor], AttnMask]:
        """Rotary angles at each row's own next position, and a mask that lets each row attend to
        its own cached positions and itself only (one new position per row)."""
        if length != 1:
            raise ValueError("a batch of rows decodes one position per row")
        if int(lengths.max()) + 1 > self.config.max_seq_len:
            raise ValueError(f"a row of {int(lengths.max()) + 1} tokens exceeds max_seq_len {self.config.max_seq_len}")
        lengths = lengths.to(device)
        cos, sin = self.rotary.table(device)
        rope = cos[lengths].view(-1, 1, 1, cos.shape[-1]), sin[lengths].view(-1, 1, 1, sin.shape[-1])
        keys = torch.arange(int(lengths.max()) + 1, device=device)
        mask = (keys[None, :] <= lengths[:, None]).view(len(lengths), 1, 1, -1)
        return rope, AttnMask(mask, False)

    def loss_units(self, labels: torch.Tensor, doc_ids: torch.Tensor | None = None) -> int:
        """What ``loss_count`` will be for ``labels`` (and the batch's ``doc_ids``) in the current mode:
        target tokens here; halting units (documents, or rows without ``doc_ids``) for ACT training."""
        return int((labels[:, 1:] != IGNORE).sum())

    def lm_output(self, logits: torch.Tensor, labels: torch.Tensor | None) -> ModelOutput:
        if labels is None:
            return ModelOutput(logits=logits)
        ce, valid, correct = shifted_token_loss(logits, labels)
        count = int(valid.sum())
        loss_sum = ce.sum()
        denom = max(count, 1)
        return ModelOutput(
            logits=logits, loss=loss_sum / denom, loss_sum=loss_sum, loss_count=count,
            metrics={"lm_loss": float(loss_sum.detach()) / denom, "token_acc": float(correct.sum()) / denom},
        )
