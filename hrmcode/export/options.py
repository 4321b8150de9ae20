"""The options of ``hrmcode export model``, declared once (the CLI generates its flags from them).

Kept apart from ``huggingface.py`` so the CLI reads them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from hrmcode.options import option

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class HFExportOptions:
    name: str | None = option(None, "Artifact name in the workspace (default: <model name>-hf).")
    dtype: str = option("float32", f"Dtype of the exported weights: {', '.join(DTYPES)}.")
