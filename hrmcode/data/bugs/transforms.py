"""Procedural bug transforms on single Python functions, by ``ast`` (SWE-smith's ``func_pm_*`` family).

Each transform finds the sites in one function where it applies and, for one site, returns the
edited source text. Edits are made on the exact source span of the changed node (from ``ast``
positions), so a bug's diff touches only the lines of that node and keeps comments and layout.

Types (SWE-smith's names where one exists):
- ``op_flip``: a comparison flipped (``<`` <-> ``>=``, ``>`` <-> ``<=``, ``==`` <-> ``!=``,
  ``in`` <-> ``not in``, ``is`` <-> ``is not``);
- ``op_change``: a boolean or arithmetic operator changed (``and`` <-> ``or``, ``+`` <-> ``-``,
  ``*`` <-> ``//`` is not used: it changes types);
- ``loop_off_by_one``: ``range(a)`` -> ``range(a + 1)`` / ``range(a, b)`` -> ``range(a, b - 1)``,
  or a constant subscript index moved by one (``x[0]`` -> ``x[1]``, ``x[-1]`` -> ``x[-2]``);
- ``arg_swap``: the first two positional arguments of a call swapped (when they differ);
- ``remove_assign``: one assignment, augmented assignment or expression statement dropped (never
  the only statement of a block);
- ``op_change_const``: an integer constant changed by one (booleans and 0/1 used as flags excluded
  only when they are arguments of ``range``, which ``loop_off_by_one`` covers);
- ``ctrl_invert_if``: the condition of an ``if`` negated.

Guarantees: a transform returns text that parses, differs from the input and changes exactly one
site. Not guaranteed: that the bug is observable; the test run decides that.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BOOL_CHANGE = {ast.And: ast.Or, ast.Or: ast.And}
BIN_CHANGE = {ast.Add: ast.Sub, ast.Sub: ast.Add}


@dataclass(frozen=True)
class Site:
    kind: str
    node: ast.AST
    detail: str  # which change at the site, for candidates that differ only by it


def _spans(source: str) -> list[int]:
    """Offsets of each line start, so (line, col) positions map to string offsets."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _offset(starts: list[int], source: str, lineno: int, col: int) -> int:
    line_start = starts[lineno - 1]
    line = source[line_start:starts[lineno]] if lineno < len(starts) else source[line_start:]
    return line_start + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def replace_node(source: str, node: ast.AST, text: str) -> str:
    starts = _spans(source)
    begin = _offset(starts, source, node.lineno, node.col_offset)
    end = _offset(starts, source, node.end_lineno, node.end_col_offset)
    return source[:begin] + text + source[end:]


def _walk(function: ast.AST) -> Iterator[ast.AST]:
    """Nodes of ``function``'s body, not descending into nested functions or classes."""
    stack = list(reversed(function.body))
    while stack:
        node = stack.pop()
        yield node
        for child in reversed(list(ast.iter_child_nodes(node))):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                stack.append(child)


def sites(function: ast.AST) -> list[Site]:
    found: list[Site] = []
    for node in _walk(function):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in FLIP:
            found.append(Site("op_flip", node, type(node.ops[0]).__name__))
        elif isinstance(node, ast.BoolOp) and type(node.op) in BOOL_CHANGE:
            found.append(Site("op_change", node, type(node.op).__name__))
        elif isinstance(node, ast.BinOp) and type(node.op) in BIN_CHANGE and not _stringy(node):
            found.append(Site("op_change", node, type(node.op).__name__))
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "range" and 1 <= len(node.args) <= 2 and not node.keywords:
                found.append(Site("loop_off_by_one", node, "range"))
            elif len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2]) \
                    and ast.dump(node.args[0]) != ast.dump(node.args[1]):
                found.append(Site("arg_swap", node, "args"))
        elif isinstance(node, ast.Subscript) and _int_constant(node.slice) is not None:
            found.append(Site("loop_off_by_one", node, "index"))
        elif isinstance(node, ast.Constant) and type(node.value) is int and not _in_range_call(function, node):
            found.append(Site("op_change_const", node, str(node.value)))
        elif isinstance(node, ast.If):
            found.append(Site("ctrl_invert_if", node, "if"))
    for block in _blocks(function):
        if len(block) > 1:
            for statement in block:
                if isinstance(statement, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)) \
                        and not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)):
                    found.append(Site("remove_assign", statement, "stmt"))
    return found


def _blocks(function: ast.AST) -> Iterator[list[ast.stmt]]:
    yield function.body
    for node in _walk(function):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt) and node is not function:
                yield block


def _stringy(node: ast.BinOp) -> bool:
    return any(isinstance(side, (ast.JoinedStr, ast.Constant)) and isinstance(getattr(side, "value", None), str)
               for side in (node.left, node.right)) or isinstance(node.left, ast.JoinedStr)


def _int_constant(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) is int:
        return -node.operand.value
    return None


def _in_range_call(function: ast.AST, constant: ast.Constant) -> bool:
    for node in _walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            if any(arg is constant for arg in node.args):
                return True
        if isinstance(node, ast.Subscript) and node.slice is constant:
            return True
    return False


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.unparse(node)


def apply_site(source: str, site: Site) -> str | None:
    """``source`` with the bug at ``site``; None when the change cannot be made cleanly."""
    node = site.node
    if site.kind == "op_flip":
        new = ast.Compare(left=node.left, ops=[FLIP[type(node.ops[0])]()], comparators=node.comparators)
        return _single_line(source, node, _compare_text(source, node, new))
    if site.kind == "op_change" and isinstance(node, ast.BoolOp):
        joiner = " or " if isinstance(node.op, ast.And) else " and "
        return _single_line(source, node, joiner.join(_wrap(source, v) for v in node.values))
    if site.kind == "op_change":
        symbol = "-" if isinstance(node.op, ast.Add) else "+"
        left = _wrap(source, node.left, (ast.Compare,))
        right = _wrap(source, node.right, (ast.Compare, ast.BinOp))
        return _single_line(source, node, f"{left} {symbol} {right}")
    if site.kind == "loop_off_by_one" and site.detail == "range":
        args = [_segment(source, a) for a in node.args]
        if len(args) == 1:
            args[0] = f"{args[0]} + 1"
        else:
            args[1] = f"{args[1]} - 1"
        return _single_line(source, node, f"{_segment(source, node.func)}({', '.join(args)})")
    if site.kind == "loop_off_by_one":
        value = _int_constant(node.slice)
        moved = value + 1 if value >= 0 else value - 1
        return _single_line(source, node, f"{_segment(source, node.value)}[{moved}]")
    if site.kind == "arg_swap":
        first, second = node.args[0], node.args[1]
        text = _segment(source, node)
        a, b = _segment(source, first), _segment(source, second)
        if node.lineno != node.end_lineno or text.count(a) != 1 or text.count(b) != 1:
            return None
        i, j = text.index(a), text.index(b)
        if j < i:
            return None
        swapped = text[:i] + b + text[i + len(a):j] + a + text[j + len(b):]
        return _single_line(source, node, swapped)
    if site.kind == "op_change_const":
        return _single_line(source, node, str(node.value + 1))
    if site.kind == "ctrl_invert_if":
        test = node.test
        return _single_line(source, test, f"not ({_segment(source, test)})")
    if site.kind == "remove_assign":
        lines = source.splitlines(keepends=True)
        line = lines[node.lineno - 1]
        if line[: node.col_offset].strip() or lines[node.end_lineno - 1][node.end_col_offset:].strip():
            return None  # shares its line with other code
        return "".join(lines[: node.lineno - 1] + lines[node.end_lineno:])
    return None


_LOOSE = (ast.BoolOp, ast.IfExp, ast.Lambda, ast.NamedExpr)


def _wrap(source: str, node: ast.AST, tighter: tuple[type, ...] = ()) -> str:
    """The node's text, parenthesised when it binds more loosely than where it is put back."""
    text = _segment(source, node)
    if isinstance(node, _LOOSE + tighter):
        return f"({text})"
    return text


def _compare_text(source: str, node: ast.Compare, new: ast.Compare) -> str:
    symbols = {ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!=",
               ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
    left = _wrap(source, node.left, (ast.Compare,))
    right = _wrap(source, node.comparators[0], (ast.Compare,))
    return f"{left} {symbols[type(new.ops[0])]} {right}"


def _single_line(source: str, node: ast.AST, text: str) -> str | None:
    if node.lineno != node.end_lineno:
        return None  # keep each bug to one line so its diff stays readable
    return replace_node(source, node, text)


def candidate_bugs(source: str, function: ast.AST) -> Iterator[tuple[Site, str]]:
    """(site, bugged source) for every site of ``function`` whose bug can be made cleanly."""
    for site in sites(function):
        bugged = apply_site(source, site)
        if bugged is None or bugged == source:
            continue
        try:
            ast.parse(bugged)
        except SyntaxError:
            continue
        yield site, bugged
