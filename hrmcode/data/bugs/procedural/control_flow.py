"""SWE-smith's control-flow modifiers (``swesmith/bug_gen/procedural/control_flow.py``).

- ``ctrl_invert_if``: an ``if``/``else`` whose two bodies are exchanged (the condition is left as
  written: no ``not`` is added, so nothing in the diff points at the change); ``if``/``elif`` is
  left alone, as SWE-smith does. Needs an ``if`` with ``else`` and complexity >= 5.
- ``ctrl_shuffle``: the statements of a function's body in another order (a docstring stays first;
  SWE-smith moves it too). Needs a loop and complexity <= 10.
"""

from __future__ import annotations

import libcst as cst

from hrmcode.data.bugs.procedural.base import HAS_IF_ELSE, HAS_LOOP, IS_FUNCTION, Modifier


class ControlInvertIf(Modifier):
    name = "ctrl_invert_if"
    likelihood = 0.25
    conditions = (IS_FUNCTION, HAS_IF_ELSE)
    min_complexity = 5

    def leave_If(self, original_node, updated_node):
        if not self.flip() or not isinstance(updated_node.orelse, cst.Else):
            return updated_node
        return updated_node.with_changes(body=updated_node.orelse.body,
                                         orelse=updated_node.orelse.with_changes(body=updated_node.body))


def _is_docstring(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
        and isinstance(statement.body[0], cst.Expr) \
        and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString))


class ControlShuffle(Modifier):
    name = "ctrl_shuffle"
    likelihood = 0.25
    conditions = (IS_FUNCTION, HAS_LOOP)
    max_complexity = 10

    def leave_FunctionDef(self, original_node, updated_node):
        if not self.flip() or not isinstance(updated_node.body, cst.IndentedBlock):
            return updated_node
        body = list(updated_node.body.body)
        head = body[:1] if body and _is_docstring(body[0]) else []
        rest = body[len(head):]
        if len(rest) < 2:
            return updated_node
        self.rand.shuffle(rest)
        return updated_node.with_changes(body=updated_node.body.with_changes(body=head + rest))
