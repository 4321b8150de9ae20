"""SWE-smith's removal modifiers (``swesmith/bug_gen/procedural/remove.py``): each statement of the
kind is deleted with the modifier's likelihood (a block left empty gets ``pass``).

- ``remove_loop``: a ``for``/``while`` loop with its body;
- ``remove_cond``: an ``if`` (or ``elif``) with its branches;
- ``remove_assign``: an assignment or augmented assignment (``x = ...``, ``x += ...``);
- ``remove_wrapper``: a ``with`` or ``try`` statement with everything inside it, as SWE-smith does.
"""

from __future__ import annotations

import libcst as cst

from hrmcode.data.bugs.procedural.base import HAS_ASSIGNMENT, HAS_IF, HAS_LOOP, HAS_WRAPPER, IS_FUNCTION, Modifier


class _Remove(Modifier):
    likelihood = 0.25

    def _maybe_remove(self, node):
        return cst.RemoveFromParent() if self.flip() else node


class RemoveLoop(_Remove):
    name = "remove_loop"
    conditions = (IS_FUNCTION, HAS_LOOP)

    def leave_For(self, original_node, updated_node):
        return self._maybe_remove(updated_node)

    def leave_While(self, original_node, updated_node):
        return self._maybe_remove(updated_node)


class RemoveConditional(_Remove):
    name = "remove_cond"
    conditions = (IS_FUNCTION, HAS_IF)

    def leave_If(self, original_node, updated_node):
        return self._maybe_remove(updated_node)


class RemoveAssign(_Remove):
    name = "remove_assign"
    conditions = (IS_FUNCTION, HAS_ASSIGNMENT)

    def leave_Assign(self, original_node, updated_node):
        return self._maybe_remove(updated_node)

    def leave_AugAssign(self, original_node, updated_node):
        return self._maybe_remove(updated_node)


class RemoveWrapper(_Remove):
    name = "remove_wrapper"
    conditions = (IS_FUNCTION, HAS_WRAPPER)

    def leave_With(self, original_node, updated_node):
        return self._maybe_remove(updated_node)

    def leave_Try(self, original_node, updated_node):
        return self._maybe_remove(updated_node)
