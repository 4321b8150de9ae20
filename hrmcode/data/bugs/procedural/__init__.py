"""Procedural bugs in Python code: SWE-smith's 13 ``MODIFIERS_PYTHON`` and three of hrmcode's own.

SWE-smith's procedure (``swesmith/bug_gen/procedural/``), rewritten here on ``libcst``:

- Entities are the functions (sync and async, nested and methods included) and classes of a
  module. Each has SWE-smith's tags (``has_loop``, ``has_if_else``, ``has_parent``, ...) and its
  cyclomatic complexity (1, plus one per ``if``/``for``/``while``, per extra operand of
  ``and``/``or``, per ``except`` handler and per comparison operator).
- A modifier applies to an entity when the entity has every tag the modifier needs and its
  complexity lies within the modifier's bounds (``min_complexity`` 3 unless the modifier says
  otherwise; ``ctrl_invert_if`` 5, ``ctrl_shuffle`` at most 10, ``class_*`` 10).
- A modifier visits the entity's syntax tree and changes each node it can change with its
  ``likelihood`` (one seeded ``random.Random`` per entity and modifier), so one bug may change
  several places of one entity. A visit that changes nothing is repeated, up to five times.
- One bug per entity and modifier; the bugged file differs from the original only inside the
  entity (``libcst`` keeps the rest byte for byte: comments, layout, quotes).

Which modifiers (``MODIFIERS``, SWE-smith's names; ``func_pm_`` is added to instance ids):
``class_rm_base``, ``class_rm_funcs``, ``class_shuffle_funcs``, ``ctrl_invert_if``,
``ctrl_shuffle``, ``remove_assign``, ``remove_cond``, ``remove_loop``, ``remove_wrapper``,
``op_break_chains``, ``op_change_const``, ``op_change``, ``op_swap`` (SWE-smith's 13), and
hrmcode's ``op_flip``, ``loop_off_by_one``, ``arg_swap``. Each module below says what its
modifiers do and where they differ from SWE-smith's.

Guarantees: deterministic for a given source, seed and path; every bug parses (``ast``) and
differs from the original's syntax tree. Not guaranteed: that a bug is observable (the test run
decides), or that it type-checks (``arg_swap`` only avoids the obvious cases).
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from hrmcode.data.bugs.procedural.base import ATTEMPTS, Entity, Modifier, entities
from hrmcode.data.bugs.procedural.classes import ClassRemoveBases, ClassRemoveFuncs, ClassShuffleFuncs
from hrmcode.data.bugs.procedural.control_flow import ControlInvertIf, ControlShuffle
from hrmcode.data.bugs.procedural.extras import ArgSwap, LoopOffByOne, OperationFlip
from hrmcode.data.bugs.procedural.operations import (OperationBreakChains, OperationChange, OperationChangeConstants,
                                                     OperationSwap)
from hrmcode.data.bugs.procedural.remove import RemoveAssign, RemoveConditional, RemoveLoop, RemoveWrapper


@dataclass(frozen=True)
class Bug:
    entity: str  # the changed function's or class's name
    kind: str
    bugged: str  # the whole bugged module
    in_bounds: bool  # the entity's complexity is within the modifier's bounds (SWE-smith tries only these)


class _Definitions(cst.CSTVisitor):
    """The module's functions and classes in source order, as ``entities`` lists them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[cst.FunctionDef | cst.ClassDef] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.found.append(node)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.found.append(node)


def _entity_seed(seed: int | str, path: str, index: int, entity: Entity, kind: str) -> str:
    return f"{seed}\0{path}\0{index}\0{entity.name}\0{kind}"


def candidate_bugs(source: str, seed: int | str = 0, path: str = "",
                   modifiers: tuple[type[Modifier], ...] | None = None) -> Iterator[Bug]:
    """Every modifier's bug of every entity of ``source`` it applies to (by tags), in entity order.

    ``seed`` and ``path`` seed each entity's random choices, so a file's bugs do not depend on
    the other files of the repository. A module that ``ast`` or ``libcst`` cannot parse has none."""
    try:
        tree = ast.parse(source)
        module = cst.parse_module(source)
    except (SyntaxError, cst.ParserSyntaxError, ValueError):
        return
    found = entities(tree)
    tops = _top_level(module)
    if not tops or source[tops[-1][0]:tops[-1][1]] != module.code_for_node(tops[-1][2]):
        return  # the statements' text does not line up with the source: leave the module alone
    nodes: list[tuple[int, cst.CSTNode]] = []  # (top-level statement, definition) in source order
    for top, (_, _, statement) in enumerate(tops):
        visitor = _Definitions()
        statement.visit(visitor)
        nodes += [(top, node) for node in visitor.found]
    if [e.name for e in found] != [n.name.value for _, n in nodes]:
        return  # the two parsers disagree on this module: leave it alone
    before: dict[int, str] = {}  # each top-level statement's syntax tree, as ast dumps it
    for index, (entity, (top, node)) in enumerate(zip(found, nodes)):
        start, end, statement = tops[top]
        for modifier in modifiers or MODIFIERS:
            if not modifier.can_change(entity):
                continue
            rng = random.Random(_entity_seed(seed, path, index, entity, modifier.name))
            text = _apply(statement, node, modifier(rng))
            if text is None:
                continue
            # a top-level statement parses alone exactly when it parses in its module
            try:
                after = ast.dump(ast.parse(text))
            except SyntaxError:
                continue
            if top not in before:
                before[top] = ast.dump(ast.parse(source[start:end]))
            if after == before[top]:
                continue  # only layout changed
            yield Bug(entity.name, modifier.name, source[:start] + text + source[end:], modifier.in_bounds(entity))


def _top_level(module: cst.Module) -> list[tuple[int, int, cst.CSTNode]]:
    """(start, end, statement) of each top-level statement in the module's text."""
    offset = sum(len(module.code_for_node(line)) for line in module.header)
    spans = []
    for statement in module.body:
        text = module.code_for_node(statement)
        spans.append((offset, offset + len(text), statement))
        offset += len(text)
    return spans


def _apply(statement: cst.CSTNode, node: cst.CSTNode, modifier: Modifier) -> str | None:
    """The text of top-level ``statement`` with ``modifier`` run over ``node`` inside it; None when
    five visits change nothing (SWE-smith's retry)."""
    original = None
    for _ in range(ATTEMPTS):
        modifier.touched = False
        changed = node.visit(modifier)
        if not modifier.touched:
            continue
        if isinstance(changed, cst.RemovalSentinel):
            return None
        text = cst.Module([]).code_for_node(statement.deep_replace(node, changed))
        original = original if original is not None else cst.Module([]).code_for_node(statement)
        if text != original:
            return text
    return None


def modifier_named(kind: str) -> type[Modifier]:
    for modifier in MODIFIERS:
        if modifier.name == kind:
            return modifier
    raise KeyError(kind)


# SWE-smith's MODIFIERS_PYTHON (swesmith/bug_gen/procedural/generate.py PM_TECHNIQUES), its likelihoods
MODIFIERS_PYTHON: tuple[type[Modifier], ...] = (
    ClassRemoveBases, ClassRemoveFuncs, ClassShuffleFuncs, ControlInvertIf, ControlShuffle, RemoveAssign,
    RemoveConditional, RemoveLoop, RemoveWrapper, OperationBreakChains, OperationChangeConstants, OperationChange,
    OperationSwap,
)
EXTRAS: tuple[type[Modifier], ...] = (OperationFlip, LoopOffByOne, ArgSwap)
MODIFIERS = MODIFIERS_PYTHON + EXTRAS
