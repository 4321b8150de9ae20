"""The shipped model sizes: the one table ``hrmcode.model.config.preset()``, ``hrmcode train --config``
(its vocabulary and sequence length) and benchmarks/serve_speed.py read.

Plain data with no imports, so the command line can show preset defaults without loading torch.
A preset's values are ``ModelConfig`` fields; ``preset()`` checks them.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests and the pipeline demo: seconds per hundred steps.
    "tiny": dict(vocab_size=512, hidden_size=64, num_heads=2, expansion=4.0, h_layers=2, l_layers=2, h_cycles=2,
                 l_cycles=2, max_seq_len=256, halt_max_steps=2, mlp_multiple=64),
    # The HRM paper's size: 8 blocks of 3,407,872 parameters (27.3M) plus the embeddings
    # (2 x 4096 x 512 = 4.2M; docs/serve.md's sizes and speeds are measured at this vocabulary).
    # halt_max_steps is 4, not the paper's 16: inference runs every segment, and 16 would mean
    # 384 block applications per generated token.
    "27m": dict(vocab_size=4096, hidden_size=512, num_heads=8, expansion=4.0, h_layers=4, l_layers=4, h_cycles=2,
                l_cycles=2, max_seq_len=1024, halt_max_steps=4, mlp_multiple=256),
}
