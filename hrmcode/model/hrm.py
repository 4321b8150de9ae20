"""The Hierarchical Reasoning Model for next-token generation.

Two stacks of blocks, L (fast) and H (slow), each with its own state over all positions.
One segment runs ``h_cycles`` times: ``l_cycles`` L updates ``z_L = L(z_L, z_H + x)``, then one
H update ``z_H = H(z_H, z_L)`` (input injection by addition; x = token embeddings). The
states start from two fixed random vectors (``H_init``/``L_init`` buffers, as in the HRM).
Logits are ``lm_head(z_H)``. Attention is causal (optionally PrefixLM), so every module call
can keep its own KV cache and generation is exact.

Credit assignment: only the last ``bp_steps`` module calls of the last segment run with
gradient (``bp_steps=2`` is the HRM paper's one-step gradient: the final L and H updates);
earlier calls run under ``torch.no_grad()`` and so are absent from the autograd graph.

Training modes (``config.mode``):

- ``fixed``: ``config.training_segments`` segments per training forward (``train_segments``),
  ``config.segments`` at evaluation and inference; fixed compute per token. (HRM-Text's recipe
  differs: z_H starts at x, no x injection in H, a back-prop warm-up and EMA; this is not it.)
  Running more segments than trained iterates past what the model learned: constructing such a
  model warns (``ModelConfig.segment_mismatch``).
- ``act`` (HRM paper): deep supervision inside one forward. Each segment starts from the
  previous segment's detached state and is supervised. The halting unit is a *document*
  (``doc_ids`` of a packed row; ``hrmcode.model.halting.units``; a batch without ``doc_ids`` has
  one unit per row): each document's LM loss is averaged over its own target tokens, and a Q head
  on the mean of ``z_H`` over the document's prompt positions (all of them if it has no prompt)
  predicts (halt, continue) for it. A document halts after ``halt_max_steps`` segments, or when
  ``q_halt > q_continue`` once it has run its exploration minimum (with probability
  ``halt_exploration_prob`` a random minimum in [2, halt_max_steps], drawn per document). Q targets
  are the paper's, per document: q_halt vs "every target token of this document is predicted
  exactly", q_continue vs ``sigmoid`` of the document's next-segment q_halt (at the last step) or
  max(q_halt, q_continue), taken without gradient. The paper gets "next segment" from an extra
  forward; here it is the following loop iteration (the same computation on the same detached
  state), plus one extra no-grad segment at the end. Loss = sum over segments and still-running
  documents of ``lm + q_loss_weight * (bce_halt + bce_continue)``, divided by the number of
  documents with a target token (``loss_units``); padding and prompt-only documents are no unit.
  Documents of one row never see each other (the ``doc_ids`` attention mask), so a document's
  losses and halting do not depend on what is packed beside it. Metrics (``act_steps``, ``exact``,
  ``q_halt_acc``, ...) are means over documents. Why per document: a packed row of several
  documents is almost never exact as a whole, so a per-row q_halt target was nearly always 0 and
  said nothing about any one document, and the Q head read padding and unrelated documents.
  Unlike the paper, the carry does not persist across optimizer steps: a batch is finished (all
  its documents halted) within one forward, which keeps resuming and DDP exact.

At evaluation and inference (``hrmcode.model.halting``) a ``fixed`` model runs ``config.segments``
segments; an ``act`` model runs each unit until its Q head halts it, at most ``config.segments`` (or
the call's ``HaltPolicy``) — the paper's evaluation runs all of them — and reports the segments used
(``out.segments``; the trainer's held-out ``segments``). ``segments=k`` runs exactly k. Granularity:
per document for teacher-forced evaluation (as in training); per request when generating (a KV cache
holds every segment for every position, so a request keeps its prompt's segment count: no holes).

``hrmcode.model.trm.TRM`` reuses this recurrence and ACT loop with its own stacks
(``build_stacks``, ``l_stack``/``h_stack``: one shared stack), gradient span (``grad_calls``)
and halting rule (``learns_continue = False``: halt on q_halt alone, no q_continue loss).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from hrmcode.model.base import IGNORE, CausalLM, ModelOutput, shifted_token_loss
from hrmcode.model.config import ModelConfig
from hrmcode.model.halting import HaltPolicy, Units, check_budget, units, wants_halt
from hrmcode.model.kvcache import KVCache
from hrmcode.model.layers import AttnMask, Stack, init_linear, trunc_normal_


def q_continue_target(next_q_halt: torch.Tensor, next_q_continue: torch.Tensor, is_last: bool) -> torch.Tensor:
    """The paper's bootstrapped target for q_continue (logits of the next segment, no gradient)."""
    next_value = next_q_halt if is_last else torch.maximum(next_q_halt, next_q_continue)
    return torch.sigmoid(next_value)


class HRM(CausalLM):
    # ACT: learn q_continue (bootstrapped) and halt when q_halt > q_continue; False (TRM): halt when q_halt > 0
    learns_continue = True

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.build_stacks()
        self.register_buffer("H_init", trunc_normal_(torch.empty(config.hidden_size), 1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(config.hidden_size), 1.0))
        mismatch = config.segment_mismatch()
        if mismatch:
            warnings.warn(mismatch, stacklevel=2)
        if config.mode == "act":
            self.q_head = nn.Linear(config.hidden_size, 2)
            with torch.no_grad():  # Q ~ 0 at the start: halting is learned, not random
                self.q_head.weight.zero_()
                self.q_head.bias.fill_(-5.0)

    def build_stacks(self) -> None:
        args = (self.config.hidden_size, self.config.num_heads, self.config.mlp_hidden, self.config.rms_eps)
        self.L = Stack(self.config.l_layers, *args)
        self.H = Stack(self.config.h_layers, *args)
        for module in (*self.L.modules(), *self.H.modules()):
            if isinstance(module, nn.Linear):
                init_linear(module)

    @property
    def l_stack(self) -> Stack:
        return self.L

    @property
    def h_stack(self) -> Stack:
        return self.H

    @property
    def grad_calls(self) -> int:
        """Module calls at the end of a supervised segment that run with gradient."""
        return self.config.bp_steps

    # -- recurrence --------------------------------------------------------------------
    def segment(
        self,
        z_h: torch.Tensor,
        z_l: torch.Tensor,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttnMask,
        cache: KVCache | None,
        index: int,
        grad_calls: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment; only its last ``grad_calls`` module calls are recorded for autograd."""
        calls = self.config.calls_per_segment
        call = 0
        grad_allowed = torch.is_grad_enabled()
        for _ in range(self.config.h_cycles):
            for _ in range(self.config.l_cycles):
                with torch.set_grad_enabled(grad_allowed and call >= calls - grad_calls):
                    z_l = self.l_stack(z_l, z_h + x, rope, mask, cache, ("L", index, call))
                call += 1
            with torch.set_grad_enabled(grad_allowed and call >= calls - grad_calls):
                z_h = self.h_stack(z_h, z_l, rope, mask, cache, ("H", index, call))
            call += 1
        return z_h, z_l

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.H_init.to(x.dtype).expand_as(x), self.L_init.to(x.dtype).expand_as(x)

    def q_logits(self, z_h: torch.Tensor, unit: Units) -> torch.Tensor:
        """[U, 2] (halt, continue) from the mean of z_H over each unit's pooled positions, in fp32."""
        pooled = unit.mean(z_h)  # fp32: the mean of many positions
        return self.q_head(pooled.to(z_h.dtype)).float()  # in the activations' dtype: a bf16 model's head is bf16

    def act_units(self, labels: torch.Tensor, doc_ids: torch.Tensor | None,
                  prefix_mask: torch.Tensor | None = None) -> Units:
        """ACT training's halting units: the documents that have a target token (padding and
        prompt-only documents are none), or every row when there are no ``doc_ids``."""
        batch, length = labels.shape
        if doc_ids is None:
            return units(batch, length, labels.device, prefix_mask=prefix_mask)
        return units(batch, length, labels.device, doc_ids=doc_ids, labels=labels, prefix_mask=prefix_mask)

    def loss_units(self, labels: torch.Tensor, doc_ids: torch.Tensor | None = None) -> int:
        if self.training and self.config.mode == "act":
            return self.act_units(labels, doc_ids).count
        return super().loss_units(labels, doc_ids)

    # -- forward -----------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        prefix_lens: torch.Tensor | None = None,
        *,
        prefix_mask: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        trace: bool = False,
        segments: int | None = None,
        halt: HaltPolicy | None = None,
    ) -> ModelOutput:
        """``segments``: run exactly this many at evaluation (no halting). ``halt``: the compute budget
        of an evaluation or generation (``hrmcode.model.halting``); ``out.segments`` says what each
        unit (document, or row) used."""
        rope, mask = self.attention_context(input_ids, prefix_lens, prefix_mask, doc_ids, cache)
        x = self.embed_tokens(input_ids)
        z_h, z_l = self.initial_state(x)
        if self.training and self.config.mode == "act" and labels is not None:
            if cache is not None:
                raise ValueError("ACT training does not use a KV cache")
            return self._act_train(z_h, z_l, x, rope, mask, labels, trace, doc_ids, prefix_mask)
        if self.training:
            count = self.config.training_segments
            for index in range(count):
                grad_calls = self.grad_calls if index == count - 1 else 0
                z_h, z_l = self.segment(z_h, z_l, x, rope, mask, cache, index, grad_calls)
            used = None
        else:
            unit = units(x.shape[0], x.shape[1], x.device, doc_ids=None if cache is not None else doc_ids,
                         labels=labels, prefix_mask=prefix_mask, prefix_lens=prefix_lens)
            z_h, used = self._infer(z_h, z_l, x, rope, mask, cache, unit, segments, halt)
        if cache is not None:
            cache.advance(input_ids.shape[1])
        out = self.lm_output(self.lm_head(z_h), labels)
        out.segments = used
        if used is not None and labels is not None and used.numel():
            out.metrics["segments"] = float(used.float().mean())
        return out

    def _infer(self, z_h: torch.Tensor, z_l: torch.Tensor, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
               mask: AttnMask, cache: KVCache | None, unit: Units, segments: int | None,
               halt: HaltPolicy | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation and inference: z_H after each unit's segments, and how many each unit ran.

        A unit runs ``segments`` if given; else the count its cache row holds (a generation's later
        tokens run what its prompt ran: no holes in the cache); else, in ``act`` mode, until the Q
        head halts it or the budget ends; else the fixed count. A halted unit's state is frozen while
        the others run on."""
        cfg = self.config
        if halt is not None:
            check_budget(cfg, halt.threshold)
        decided = getattr(cache, "row_segments", None) if segments is None else None
        if segments is not None:
            limit = segments
        elif decided is not None:
            decided = decided.to(x.device)
            limit = int(decided.max())
        else:
            limit = halt.max_segments if halt is not None and halt.max_segments else cfg.segments
        adaptive = segments is None and decided is None and cfg.mode == "act"
        used = torch.full((unit.count,), limit, dtype=torch.long, device=x.device) if not adaptive else \
            torch.zeros(unit.count, dtype=torch.long, device=x.device)
        running = torch.ones(unit.count, dtype=torch.bool, device=x.device)
        threshold = halt.threshold if halt is not None else None
        for index in range(limit):
            if decided is not None:
                running = decided > index
            new_h, new_l = self.segment(z_h, z_l, x, rope, mask, cache, index, 0)
            if bool(running.all()):
                z_h, z_l = new_h, new_l
            else:
                keep = unit.spread(running)[..., None]
                z_h, z_l = torch.where(keep, new_h, z_h), torch.where(keep, new_l, z_l)
            if adaptive:
                used += running.long()
                halt_now = wants_halt(self.q_logits(z_h, unit), self.learns_continue, threshold)
                running = running & ~halt_now
                if not bool(running.any()):
                    break
        if cache is not None and decided is None:
            cache.row_segments = used
        return z_h, used

    def _act_train(
        self,
        z_h: torch.Tensor,
        z_l: torch.Tensor,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttnMask,
        labels: torch.Tensor,
        trace: bool,
        doc_ids: torch.Tensor | None,
        prefix_mask: torch.Tensor | None,
    ) -> ModelOutput:
        """Deep supervision with per-unit halting (module docstring): a unit is a document with a
        target token when ``doc_ids`` are given, else a row (``hrmcode.model.halting.units``)."""
        cfg = self.config
        device = x.device
        unit = self.act_units(labels, doc_ids, prefix_mask)
        n = unit.count
        if n == 0:  # nothing to predict anywhere in the batch: a zero loss that still reaches the graph
            z_h, _ = self.segment(z_h, z_l, x, rope, mask, None, 0, self.grad_calls)
            return self.lm_output(self.lm_head(z_h), labels)
        max_steps = cfg.halt_max_steps
        explore = torch.rand(n, device=device) < cfg.halt_exploration_prob
        min_steps = torch.where(explore, torch.randint(2, max_steps + 1, (n,), device=device), 0)
        halted = torch.zeros(n, dtype=torch.bool, device=device)
        steps = torch.zeros(n, dtype=torch.long, device=device)
        final_ce = torch.zeros(n, device=device)
        final_correct = torch.zeros(n, device=device)
        final_q_right = torch.zeros(n, device=device)
        tokens_right = torch.zeros((), device=device)
        total = torch.zeros((), device=device)
        halt_loss_sum = torch.zeros((), device=device)
        continue_loss_sum = torch.zeros((), device=device)
        records: list[dict] = []
        pending: tuple[torch.Tensor, torch.Tensor, bool] | None = None  # (q_continue, was_active, is_last)
        n_valid = unit.per_unit((labels[:, 1:] != IGNORE).float())

        def settle(next_q: torch.Tensor) -> torch.Tensor:
            """q_continue loss of the previous segment, now that the next segment's Q is known."""
            q_continue, was_active, is_last = pending
            target = q_continue_target(next_q[:, 0].detach(), next_q[:, 1].detach(), is_last)
            if trace:
                records[-1]["target_continue"] = target
            bce = F.binary_cross_entropy_with_logits(q_continue, target, reduction="none")
            return (bce * was_active).sum()

        logits = None
        for step in range(1, max_steps + 1):
            z_h, z_l = self.segment(z_h.detach(), z_l.detach(), x, rope, mask, None, step - 1, self.grad_calls)
            logits = self.lm_head(z_h)
            q = self.q_logits(z_h, unit)
            if pending is not None:
                loss_c = settle(q)
                continue_loss_sum = continue_loss_sum + loss_c.detach()
                total = total + cfg.q_loss_weight * loss_c
            active = (~halted).float()
            ce, valid, correct = shifted_token_loss(logits, labels)
            ce_unit = unit.per_unit(ce) / n_valid.clamp(min=1)
            right = unit.per_unit(correct.float())
            exact = (right == n_valid).float()  # q_halt's target: every target token of the unit is exact
            loss_h = (F.binary_cross_entropy_with_logits(q[:, 0], exact, reduction="none") * active).sum()
            total = total + (ce_unit * active).sum() + cfg.q_loss_weight * loss_h
            halt_loss_sum = halt_loss_sum + loss_h.detach()

            is_last = step >= max_steps
            halt_now = (~halted) & (torch.full_like(halted, is_last)
                                    | (wants_halt(q, self.learns_continue, None) & (step >= min_steps)))
            newly = halt_now.float()
            final_ce = final_ce + ce_unit.detach() * newly
            final_correct = final_correct + exact * newly
            final_q_right = final_q_right + ((q[:, 0] > 0).float() == exact).float() * newly
            tokens_right = tokens_right + (right * newly).sum()
            steps = steps + (~halted).long()
            if trace:
                records.append({"step": step, "active": ~halted, "q_halt": q[:, 0].detach(),
                                "q_continue": q[:, 1].detach(), "target_halt": exact, "lm_loss": ce_unit.detach(),
                                "halted": halt_now | halted, "min_steps": min_steps})
            halted = halted | halt_now
            pending = (q[:, 1], active, is_last) if self.learns_continue else None
            if bool(halted.all()):
                if self.learns_continue:
                    with torch.no_grad():
                        next_h, _ = self.segment(z_h.detach(), z_l.detach(), x, rope, mask, None, step, 0)
                        next_q = self.q_logits(next_h, unit)
                    loss_c = settle(next_q)
                    continue_loss_sum = continue_loss_sum + loss_c.detach()
                    total = total + cfg.q_loss_weight * loss_c
                break

        n_tokens = max(int(n_valid.sum()), 1)
        metrics = {
            "lm_loss": float(final_ce.mean()),
            "token_acc": float(tokens_right) / n_tokens,
            "exact": float(final_correct.mean()),
            "act_steps": float(steps.float().mean()),
            "q_halt_acc": float(final_q_right.mean()),
            "q_halt_loss": float(halt_loss_sum) / n,
            "q_continue_loss": float(continue_loss_sum) / n,
        }
        return ModelOutput(logits=logits, loss=total / n, loss_sum=total, loss_count=n, metrics=metrics,
                           trace=records if trace else None)
