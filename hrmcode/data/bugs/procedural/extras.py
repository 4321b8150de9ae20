"""hrmcode's own modifiers, beside SWE-smith's 13 (SWE-smith has same-named ones for other languages).

- ``op_flip``: a comparison replaced by its negation (``<`` <-> ``>=``, ``>`` <-> ``<=``, ``==`` <->
  ``!=``, ``in`` <-> ``not in``, ``is`` <-> ``is not``), each single comparison with likelihood 0.4.
- ``loop_off_by_one``: ``range(n)`` -> ``range(n + 1)``, ``range(a, b)`` -> ``range(a, b - 1)``, or a
  constant index moved away from the end it counts from (``x[0]`` -> ``x[1]``, ``x[-1]`` -> ``x[-2]``),
  each with likelihood 0.4.
- ``arg_swap``: the first two positional arguments of a call exchanged, with likelihood 0.25, only
  where the swap plausibly type-checks: both are plain names or attributes (not ``self``/``cls``,
  not CapWords names, which are usually classes, not builtins such as ``iter``), or both are literals
  of the same type; never in ``isinstance``/``issubclass``/``getattr``-like calls or in
  ``map``/``filter``/``partial``, whose first argument is a callable: there a swap is an instant
  TypeError nobody writes.
"""

from __future__ import annotations

import builtins

import libcst as cst

from hrmcode.data.bugs.procedural.base import HAS_CALL, HAS_COMPARE, HAS_OFF_BY_ONE, IS_FUNCTION, Modifier, code

FLIP: dict[type, type] = {cst.LessThan: cst.GreaterThanEqual, cst.GreaterThanEqual: cst.LessThan,
                          cst.GreaterThan: cst.LessThanEqual, cst.LessThanEqual: cst.GreaterThan,
                          cst.Equal: cst.NotEqual, cst.NotEqual: cst.Equal, cst.In: cst.NotIn, cst.NotIn: cst.In,
                          cst.Is: cst.IsNot, cst.IsNot: cst.Is}
# calls whose arguments differ in kind (a type, a callable, an attribute name): a swap is an instant TypeError
TYPE_CALLS = {"isinstance", "issubclass", "getattr", "setattr", "hasattr", "delattr", "super", "cast", "map", "filter",
              "reduce", "partial", "starmap"}
BUILTIN_NAMES = set(dir(builtins))  # iter, len, str, ...: functions and types, never plain values
LOOSE = (cst.BooleanOperation, cst.IfExp, cst.Lambda, cst.NamedExpr, cst.Comparison, cst.UnaryOperation)


class OperationFlip(Modifier):
    name = "op_flip"
    likelihood = 0.4
    conditions = (IS_FUNCTION, HAS_COMPARE)

    def leave_Comparison(self, original_node, updated_node):
        if len(updated_node.comparisons) != 1 or not self.flip():
            return updated_node
        target = updated_node.comparisons[0]
        new_type = FLIP.get(type(target.operator))
        if new_type is None:
            return updated_node
        old = target.operator
        operator = new_type(whitespace_before=old.whitespace_before, whitespace_after=old.whitespace_after)
        return updated_node.with_changes(comparisons=[target.with_changes(operator=operator)])


def _shifted(node: cst.BaseExpression, delta: str) -> cst.BaseExpression:
    text = code(node)
    return cst.parse_expression(f"({text}) {delta}" if isinstance(node, LOOSE) else f"{text} {delta}")


def _int_index(node: cst.BaseSlice) -> int | None:
    if not isinstance(node, cst.Index):
        return None
    value = node.value
    if isinstance(value, cst.Integer) and value.value.isdigit():
        return int(value.value)
    if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Minus) \
            and isinstance(value.expression, cst.Integer) and value.expression.value.isdigit():
        return -int(value.expression.value)
    return None


class LoopOffByOne(Modifier):
    name = "loop_off_by_one"
    likelihood = 0.4
    conditions = (IS_FUNCTION, HAS_OFF_BY_ONE)

    def leave_Call(self, original_node, updated_node):
        args = list(updated_node.args)
        if not (isinstance(updated_node.func, cst.Name) and updated_node.func.value == "range") \
                or not 1 <= len(args) <= 2 or any(a.keyword or a.star for a in args) or not self.flip():
            return updated_node
        if len(args) == 1:
            args[0] = args[0].with_changes(value=_shifted(args[0].value, "+ 1"))
        else:
            args[1] = args[1].with_changes(value=_shifted(args[1].value, "- 1"))
        return updated_node.with_changes(args=args)

    def leave_Subscript(self, original_node, updated_node):
        if len(updated_node.slice) != 1:
            return updated_node
        index = _int_index(updated_node.slice[0].slice)
        if index is None or not self.flip():
            return updated_node
        moved = index + 1 if index >= 0 else index - 1
        element = updated_node.slice[0].with_changes(slice=cst.Index(cst.parse_expression(str(moved))))
        return updated_node.with_changes(slice=[element])


def _swappable(a: cst.BaseExpression, b: cst.BaseExpression) -> bool:
    """Whether exchanging ``a`` and ``b`` plausibly still type-checks."""
    if isinstance(a, (cst.Name, cst.Attribute)) and isinstance(b, (cst.Name, cst.Attribute)):
        names = [n.value if isinstance(n, cst.Name) else n.attr.value for n in (a, b)]
        return all(name not in ("self", "cls") and not name[:1].isupper() for name in names) \
            and not any(isinstance(n, cst.Name) and n.value in BUILTIN_NAMES for n in (a, b))
    literal = (cst.Integer, cst.Float, cst.SimpleString)
    return isinstance(a, literal) and type(a) is type(b) and code(a) != code(b)


class ArgSwap(Modifier):
    name = "arg_swap"
    likelihood = 0.25
    conditions = (IS_FUNCTION, HAS_CALL)

    def leave_Call(self, original_node, updated_node):
        args = list(updated_node.args)
        func = updated_node.func
        called = func.value if isinstance(func, cst.Name) else func.attr.value if isinstance(func, cst.Attribute) \
            else ""
        if len(args) < 2 or called in TYPE_CALLS or any(a.keyword or a.star for a in args[:2]):
            return updated_node
        first, second = args[0].value, args[1].value
        if code(first) == code(second) or not _swappable(first, second) or not self.flip():
            return updated_node
        args[0], args[1] = args[0].with_changes(value=second), args[1].with_changes(value=first)
        return updated_node.with_changes(args=args)
