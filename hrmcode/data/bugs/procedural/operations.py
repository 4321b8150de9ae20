"""SWE-smith's operator modifiers (``swesmith/bug_gen/procedural/operations.py``), per node with their likelihood.

- ``op_change``: a binary operator replaced by another of its group: ``+ -``; ``* / // %``;
  ``& | ^``; ``<< >>``; ``** *`` (SWE-smith's table). Unlike SWE-smith, the new operator always
  differs from the old one (SWE-smith may draw the same), an operand that is a string, list or tuple literal,
  an f-string, a string-valued call (``str(x)``, ``"".join(...)``, ``.format(...)``) or an operation on
  one leaves the node alone (``"a" - b`` is an instant TypeError, not a bug anyone writes), and
  ``and``/``or`` are exchanged too (hrmcode's op_change always did).
- ``op_swap``: the two operands of a binary or boolean operation exchanged (``a - b`` -> ``b - a``).
- ``op_break_chains``: a chained operation loses a link: ``a + b + c`` -> ``a + c`` (the left
  operand, when it is itself an operation, is replaced by its own left operand; else the right one
  by its right operand).
- ``op_change_const``: an integer operand of a binary operation moved by one, up or down (never
  below zero; hexadecimal literals stay hexadecimal).
"""

from __future__ import annotations

import libcst as cst

from hrmcode.data.bugs.procedural.base import HAS_BINARY_OP, IS_FUNCTION, Modifier, stringy

OPERATOR_GROUPS: tuple[tuple[type[cst.BaseBinaryOp], ...], ...] = (
    (cst.Add, cst.Subtract),
    (cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo),
    (cst.BitAnd, cst.BitOr, cst.BitXor),
    (cst.LeftShift, cst.RightShift),
    (cst.Power, cst.Multiply),
)
BOOLEAN_CHANGE = {cst.And: cst.Or, cst.Or: cst.And}


def _same_spacing(old: cst.CSTNode, new_type: type) -> cst.CSTNode:
    return new_type(whitespace_before=old.whitespace_before, whitespace_after=old.whitespace_after)


class OperationChange(Modifier):
    name = "op_change"
    likelihood = 0.4
    conditions = (IS_FUNCTION, HAS_BINARY_OP)

    def leave_BinaryOperation(self, original_node, updated_node):
        if stringy(updated_node.left) or stringy(updated_node.right) or not self.flip():
            return updated_node
        current = type(updated_node.operator)
        for group in OPERATOR_GROUPS:  # the first group holding the operator, as SWE-smith checks them in order
            if current in group:
                choice = self.rand.choice([op for op in group if op is not current])
                return updated_node.with_changes(operator=_same_spacing(updated_node.operator, choice))
        return updated_node

    def leave_BooleanOperation(self, original_node, updated_node):
        if not self.flip():
            return updated_node
        new = BOOLEAN_CHANGE[type(updated_node.operator)]
        return updated_node.with_changes(operator=_same_spacing(updated_node.operator, new))


# binding strength of binary and boolean operators, loosest first (Python's precedence table)
PRECEDENCE = {cst.Or: 0, cst.And: 1, cst.BitOr: 2, cst.BitXor: 3, cst.BitAnd: 4, cst.LeftShift: 5, cst.RightShift: 5,
              cst.Add: 6, cst.Subtract: 6, cst.Multiply: 7, cst.MatrixMultiply: 7, cst.Divide: 7, cst.FloorDivide: 7,
              cst.Modulo: 7, cst.Power: 9}


def _strength(node: cst.CSTNode) -> int | None:
    if isinstance(node, (cst.BinaryOperation, cst.BooleanOperation)) and not node.lpar:
        return PRECEDENCE.get(type(node.operator))
    return None


def _swapped(node):
    """``node`` with its operands exchanged, the new right one parenthesised where it binds no
    tighter than the operator (``a - b + c`` -> ``c + (a - b)``, not ``c + a - b``)."""
    left, right = node.right, node.left
    inner, outer = _strength(right), PRECEDENCE.get(type(node.operator))
    if inner is not None and outer is not None and inner <= outer:
        right = right.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return node.with_changes(left=left, right=right)


class OperationSwap(Modifier):
    name = "op_swap"
    likelihood = 0.4
    conditions = (IS_FUNCTION, HAS_BINARY_OP)

    def leave_BinaryOperation(self, original_node, updated_node):
        return _swapped(updated_node) if self.flip() else updated_node

    def leave_BooleanOperation(self, original_node, updated_node):
        return _swapped(updated_node) if self.flip() else updated_node


class OperationBreakChains(Modifier):
    name = "op_break_chains"
    likelihood = 0.4
    conditions = (IS_FUNCTION, HAS_BINARY_OP)

    def leave_BinaryOperation(self, original_node, updated_node):
        if not self.flip():
            return updated_node
        if isinstance(updated_node.left, cst.BinaryOperation):
            return updated_node.with_changes(left=updated_node.left.left)
        if isinstance(updated_node.right, cst.BinaryOperation):
            return updated_node.with_changes(right=updated_node.right.right)
        return updated_node


class OperationChangeConstants(Modifier):
    name = "op_change_const"
    likelihood = 0.4
    conditions = (IS_FUNCTION, HAS_BINARY_OP)

    def _moved(self, node: cst.BaseExpression) -> cst.BaseExpression:
        if not isinstance(node, cst.Integer):
            return node
        text = node.value.replace("_", "")
        base = 16 if text[:2].lower() == "0x" else 8 if text[:2].lower() == "0o" else 2 if text[:2].lower() == "0b" \
            else 10
        value = int(text, base) if base != 10 else int(text)
        step = self.rand.choice([-1, 1])
        moved = value + step if value + step >= 0 else value + 1
        return node.with_changes(value=hex(moved) if base == 16 else str(moved))

    def leave_BinaryOperation(self, original_node, updated_node):
        if self.flip():
            return updated_node.with_changes(left=self._moved(updated_node.left), right=self._moved(updated_node.right))
        return updated_node
