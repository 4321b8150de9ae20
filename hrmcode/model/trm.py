"""The Tiny Recursive Model (TRM, Jolicoeur-Martineau 2025) for next-token generation.

One network, a stack of ``n_layers`` blocks, does both updates of the HRM's recurrence. One
segment runs ``h_cycles`` recursions, each ``l_cycles`` latent updates ``z_L = net(z_L, z_H + x)``
then one answer update ``z_H = net(z_H, z_L)`` (no x). Logits are ``lm_head(z_H)``.

Credit assignment (TRM's "full recursion" gradient): the whole last recursion of a supervised
segment, ``l_cycles + 1`` calls of the network, runs with gradient; the ``h_cycles - 1``
recursions before it run under ``torch.no_grad()``.

Modes are the HRM's (``hrmcode.model.hrm``): ``fixed`` or ``act`` (deep supervision over
segments from the detached previous state, halting per document of a packed row in training and
teacher-forced evaluation, per request when generating). TRM halts on q_halt alone: a document
stops when ``q_halt > 0`` (after its exploration minimum) and there is no q_continue target, loss,
or extra target segment (the official code's ``no_ACT_continue``). EMA of weights, part of TRM's recipe,
is the trainer's ``--ema-decay`` (``hrmcode.train.loop``), open to every arch.

Differences from the official code: causal attention over a token sequence (so the KV cache
keeps one slot per network call and generation is exact) instead of bidirectional attention over
a puzzle grid; the Q head reads the mean of ``z_H`` over positions, not a puzzle-embedding
position; the carry does not persist across optimizer steps (as in our HRM).
"""

from __future__ import annotations

from torch import nn

from hrmcode.model.hrm import HRM
from hrmcode.model.layers import Stack, init_linear


class TRM(HRM):
    learns_continue = False

    def build_stacks(self) -> None:
        cfg = self.config
        self.net = Stack(cfg.n_layers, cfg.hidden_size, cfg.num_heads, cfg.mlp_hidden, cfg.rms_eps)
        for module in self.net.modules():
            if isinstance(module, nn.Linear):
                init_linear(module)

    @property
    def l_stack(self) -> Stack:
        return self.net

    @property
    def h_stack(self) -> Stack:
        return self.net

    @property
    def grad_calls(self) -> int:
        return self.config.l_cycles + 1  # the whole last recursion
