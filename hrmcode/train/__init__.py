"""Training: data packing (``data``), options and presets (``options``), the loop with
checkpoints and resume (``loop``), and torchrun DDP (``distributed``). See docs/model.md."""
