"""SWE-smith's class modifiers (``swesmith/bug_gen/procedural/classes.py``); their entities are
classes of complexity >= 10 (summed over the methods).

- ``class_rm_base``: one base class dropped from a class's bases (the only one: ``class A(B)`` ->
  ``class A()``), each class with likelihood 0.25; needs a class with a base.
- ``class_rm_funcs``: methods deleted, each with likelihood 0.15, and every ``self.<method>(...)``
  call left in the class replaced by ``None``.
- ``class_shuffle_funcs``: the class body re-ordered: its other statements first, then its methods
  shuffled (always, as SWE-smith does; a visit that gives the same order is repeated).
"""

from __future__ import annotations

import libcst as cst

from hrmcode.data.bugs.procedural.base import HAS_PARENT, IS_CLASS, Modifier


class ClassRemoveBases(Modifier):
    name = "class_rm_base"
    likelihood = 0.25
    conditions = (IS_CLASS, HAS_PARENT)
    min_complexity = 10

    def leave_ClassDef(self, original_node, updated_node):
        bases = list(updated_node.bases)
        if not bases or not self.flip():
            return updated_node
        bases.pop(self.rand.randrange(len(bases)))
        if bases:  # no trailing comma after what is now the last base
            bases[-1] = bases[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(bases=bases)


class _SelfCallsToNone(cst.CSTTransformer):
    def __init__(self, removed: set[str]):
        super().__init__()
        self.removed = removed

    def leave_Call(self, original_node, updated_node):
        func = updated_node.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self" \
                and func.attr.value in self.removed:
            return cst.Name("None")
        return updated_node


class ClassRemoveFuncs(Modifier):
    name = "class_rm_funcs"
    likelihood = 0.15
    conditions = (IS_CLASS,)
    min_complexity = 10

    def leave_ClassDef(self, original_node, updated_node):
        kept, removed = [], set()
        for statement in updated_node.body.body:
            if isinstance(statement, cst.FunctionDef) and self.flip():
                removed.add(statement.name.value)
            else:
                kept.append(statement)
        if not removed:
            return updated_node
        cleaned = [statement.visit(_SelfCallsToNone(removed)) for statement in kept]
        return updated_node.with_changes(body=updated_node.body.with_changes(body=cleaned))


class ClassShuffleFuncs(Modifier):
    name = "class_shuffle_funcs"
    conditions = (IS_CLASS,)
    min_complexity = 10

    def leave_ClassDef(self, original_node, updated_node):
        body = list(updated_node.body.body)
        methods = [s for s in body if isinstance(s, cst.FunctionDef)]
        others = [s for s in body if not isinstance(s, cst.FunctionDef)]
        self.rand.shuffle(methods)
        self.touched = True  # no likelihood: every class is shuffled, as SWE-smith does
        return updated_node.with_changes(body=updated_node.body.with_changes(body=others + methods))
