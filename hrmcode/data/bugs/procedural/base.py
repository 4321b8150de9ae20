"""What every procedural modifier shares: entities (functions and classes) with SWE-smith's tags
and cyclomatic complexity, and the ``Modifier`` base class (per-node likelihood, complexity bounds).

Guarantees: ``entities`` lists definitions in source order, a definition before those nested in
it, so its order matches a ``libcst`` visit of the same module.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass

import libcst as cst

# SWE-smith's CodeProperty tags, as its Python adapter computes them (plus three for the extras)
IS_FUNCTION, IS_CLASS = "is_function", "is_class"
HAS_LOOP, HAS_IF, HAS_IF_ELSE = "has_loop", "has_if", "has_if_else"
HAS_BINARY_OP, HAS_ASSIGNMENT, HAS_WRAPPER, HAS_PARENT = "has_binary_op", "has_assignment", "has_wrapper", "has_parent"
HAS_COMPARE, HAS_CALL, HAS_OFF_BY_ONE = "has_compare", "has_call", "has_off_by_one"
ATTEMPTS = 5  # SWE-smith visits an entity up to five times until something changes


@dataclass(frozen=True)
class Entity:
    name: str
    node: ast.AST  # FunctionDef, AsyncFunctionDef or ClassDef
    tags: frozenset[str]
    complexity: int


def _tags(node: ast.AST) -> frozenset[str]:
    nodes = list(ast.walk(node))
    tags = {IS_CLASS if isinstance(node, ast.ClassDef) else IS_FUNCTION}
    checks = {
        HAS_LOOP: lambda n: isinstance(n, (ast.For, ast.AsyncFor, ast.While)),
        HAS_IF: lambda n: isinstance(n, ast.If),
        HAS_IF_ELSE: lambda n: isinstance(n, ast.If) and bool(n.orelse),
        HAS_BINARY_OP: lambda n: isinstance(n, ast.BinOp),
        HAS_ASSIGNMENT: lambda n: isinstance(n, (ast.Assign, ast.AugAssign)),
        HAS_WRAPPER: lambda n: isinstance(n, (ast.Try, ast.With, ast.AsyncWith)),
        HAS_PARENT: lambda n: isinstance(n, ast.ClassDef) and bool(n.bases),
        HAS_COMPARE: lambda n: isinstance(n, ast.Compare),
        HAS_CALL: lambda n: isinstance(n, ast.Call),
        HAS_OFF_BY_ONE: lambda n: (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "range")
        or (isinstance(n, ast.Subscript) and _int_value(n.slice) is not None),
    }
    tags.update(tag for tag, check in checks.items() if any(check(n) for n in nodes))
    return frozenset(tags)


def _int_value(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_value(node.operand)
        return None if inner is None else -inner
    return None


def complexity(node: ast.AST) -> int:
    """SWE-smith's cyclomatic complexity of an entity (its ``PythonEntity.complexity``)."""
    total = 1
    for n in ast.walk(node):
        if isinstance(n, (ast.If, ast.While, ast.For, ast.AsyncFor)):
            total += 1
        elif isinstance(n, ast.BoolOp):
            total += len(n.values) - 1
        elif isinstance(n, ast.Try):
            total += len(n.handlers)
        elif isinstance(n, ast.Compare):
            total += len(n.ops)
    return total


def entities(tree: ast.Module) -> list[Entity]:
    """Functions and classes in source order (a definition before the ones nested in it)."""
    found: list[Entity] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.append(Entity(child.name, child, _tags(child), complexity(child)))
            visit(child)

    visit(tree)
    return found


class Modifier(cst.CSTTransformer):
    """One procedural bug type: which entities it applies to and how it changes their nodes."""

    name: str = ""
    likelihood: float = 0.25  # chance that each node the modifier can change is changed
    conditions: tuple[str, ...] = (IS_FUNCTION,)
    min_complexity: int = 3
    max_complexity: float = float("inf")

    def __init__(self, rng: random.Random):
        super().__init__()
        self.rand = rng
        self.touched = False  # a node was picked for change in this visit (else the visit changed nothing)

    def flip(self) -> bool:
        picked = self.rand.random() < self.likelihood
        self.touched |= picked
        return picked

    @classmethod
    def can_change(cls, entity: Entity) -> bool:
        """The entity has every tag the modifier needs (complexity is checked apart: ``in_bounds``)."""
        return all(tag in entity.tags for tag in cls.conditions)

    @classmethod
    def in_bounds(cls, entity: Entity) -> bool:
        return cls.min_complexity <= entity.complexity <= cls.max_complexity


def code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


STRING_CALLS = {"str", "repr", "format"}  # calls that return a string
STRING_METHODS = {"format", "join"}


def stringy(node: cst.CSTNode) -> bool:
    """A string or sequence operand: a string, list or tuple literal, an f-string, an obviously
    string-valued call (``str(x)``, ``"".join(...)``), or an operation on one (``"a" + b``)."""
    if isinstance(node, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString, cst.List, cst.Tuple,
                         cst.ListComp)):
        return True
    if isinstance(node, cst.BinaryOperation):
        return stringy(node.left) or stringy(node.right)
    if isinstance(node, cst.Call):
        func = node.func
        return (isinstance(func, cst.Name) and func.value in STRING_CALLS) or \
            (isinstance(func, cst.Attribute) and func.attr.value in STRING_METHODS)
    return False
