"""Procedural bugs for JavaScript, TypeScript, Go, Rust, Java and C++, on tree-sitter trees.

SWE-smith's language adapters (``swesmith/bug_gen/procedural/<language>/``) rewrite one function
at a time on its tree-sitter tree; this module does the same with SWE-smith's strategy names:

- ``op_change``: an arithmetic, logical, bitwise or shift operator changed (``+`` -> ``-``,
  ``*`` -> ``/``, ``&&`` -> ``||``, ``&`` -> ``|``, ``<<`` -> ``>>``, ``??`` -> ``||``); never a
  ``+`` with a string literal operand (a concatenation);
- ``op_flip``: a comparison flipped (``<`` <-> ``>=``, ``>`` <-> ``<=``, ``==`` <-> ``!=``,
  ``===`` <-> ``!==``);
- ``op_swap``: the operands of a non-commutative binary expression swapped (``a - b`` ->
  ``b - a``, ``x != nil && x.ok`` -> ``x.ok && x != nil``, string concatenation), an operand that
  is itself a binary expression parenthesised so the tree keeps its shape;
- ``op_change_const``: a decimal integer literal moved by one (its type suffix kept; never in a
  type, an array declarator, a ``case`` label or a preprocessor line);
- ``remove_assign``: one assignment statement dropped (``x = ...``, ``x += ...``; declarations are
  kept: dropping one is a compile error in four of the five languages, not a bug);
- ``remove_cond``: one ``if`` statement dropped with its branches;
- ``remove_loop``: one loop statement dropped (``for``, ``for ... in/of``, range-``for``, ``while``,
  ``do``, Rust's ``loop``);
- ``ctrl_invert_if``: the two branches of an ``if``/``else`` swapped, the condition kept (an
  ``else if`` chain is not an ``if``/``else``);
- ``ctrl_shuffle``: a run of consecutive simple statements in one block (calls, assignments,
  increments; never a declaration, a return or a compound statement, whose moves would not compile)
  reordered: rotated by one, or shuffled by ``rng``.

A removed statement takes its whole line(s) when nothing else is on them.

Guarantees: every bug is one edit inside one named function (``syntax.functions``; code outside
every function is never touched, nor Rust's ``#[test]`` functions and ``#[cfg(test)]`` modules), its whole-file text parses without ERROR or MISSING nodes, and
it differs from the source in its tokens (an edit that would change only whitespace or comments,
such as swapping two equal branches, is not made). The order is deterministic: functions in source
order, then strategies in the order above, then sites in source order. ``rng``, when given, picks
among several replacements where SWE-smith has several (``+`` -> ``-``, ``*`` or ``/``; a constant
up or down); without it the first is taken.

Not guaranteed: that a bug compiles (Go's unused-variable rule, Rust's borrow checker, C++
templates are the compiler's business) or is observable; the test run decides both.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node, Tree

from hrmcode.data.syntax import Function, functions, parse_tree

KINDS = ("op_change", "op_flip", "op_swap", "op_change_const", "remove_assign", "remove_cond", "remove_loop",
         "ctrl_invert_if", "ctrl_shuffle")


@dataclass(frozen=True)
class _Grammar:
    blocks: frozenset[str]  # nodes whose children are statements
    ifs: frozenset[str]
    loops: frozenset[str]
    assignments: frozenset[str]
    integers: frozenset[str]
    strings: frozenset[str]
    branch_blocks: frozenset[str]  # what an if's branches must be for ctrl_invert_if
    literal_parents_skipped: frozenset[str]  # where a constant is a type, a size or a label
    simple_statements: frozenset[str] = frozenset({"expression_statement"})  # what ctrl_shuffle moves


_JS = _Grammar(
    blocks=frozenset({"statement_block", "switch_case", "switch_default"}),
    ifs=frozenset({"if_statement"}),
    loops=frozenset({"for_statement", "for_in_statement", "while_statement", "do_statement"}),
    assignments=frozenset({"assignment_expression", "augmented_assignment_expression"}),
    integers=frozenset({"number"}),
    strings=frozenset({"string", "template_string"}),
    branch_blocks=frozenset({"statement_block"}),
    literal_parents_skipped=frozenset({"switch_case", "literal_type"}),
)
GRAMMARS: dict[str, _Grammar] = {
    "javascript": _JS,
    "typescript": _JS,
    "tsx": _JS,
    "go": _Grammar(
        blocks=frozenset({"statement_list"}),
        ifs=frozenset({"if_statement"}),
        loops=frozenset({"for_statement"}),
        assignments=frozenset({"assignment_statement"}),
        integers=frozenset({"int_literal"}),
        strings=frozenset({"interpreted_string_literal", "raw_string_literal"}),
        branch_blocks=frozenset({"block"}),
        literal_parents_skipped=frozenset({"array_type", "expression_case", "implicit_length_array_type"}),
        simple_statements=frozenset({"expression_statement", "assignment_statement", "inc_statement",
                                     "dec_statement", "send_statement"}),
    ),
    "rust": _Grammar(
        blocks=frozenset({"block"}),
        ifs=frozenset({"if_expression"}),
        loops=frozenset({"for_expression", "while_expression", "loop_expression"}),
        assignments=frozenset({"assignment_expression", "compound_assignment_expr"}),
        integers=frozenset({"integer_literal"}),
        strings=frozenset({"string_literal", "raw_string_literal"}),
        branch_blocks=frozenset({"block"}),
        literal_parents_skipped=frozenset({"array_type", "type_arguments", "match_pattern", "range_pattern"}),
    ),
    "java": _Grammar(
        blocks=frozenset({"block", "switch_block_statement_group"}),
        ifs=frozenset({"if_statement"}),
        loops=frozenset({"for_statement", "enhanced_for_statement", "while_statement", "do_statement"}),
        assignments=frozenset({"assignment_expression"}),
        integers=frozenset({"decimal_integer_literal"}),
        strings=frozenset({"string_literal", "text_block"}),
        branch_blocks=frozenset({"block"}),
        literal_parents_skipped=frozenset({"switch_label", "dimensions_expr"}),
    ),
    "cpp": _Grammar(
        blocks=frozenset({"compound_statement", "case_statement"}),
        ifs=frozenset({"if_statement"}),
        loops=frozenset({"for_statement", "for_range_loop", "while_statement", "do_statement"}),
        assignments=frozenset({"assignment_expression"}),
        integers=frozenset({"number_literal"}),
        strings=frozenset({"string_literal", "raw_string_literal", "concatenated_string", "char_literal"}),
        branch_blocks=frozenset({"compound_statement"}),
        literal_parents_skipped=frozenset({"case_statement", "array_declarator", "template_argument_list",
                                           "enumerator", "bitfield_clause"}),
    ),
}
LANGUAGES = frozenset(GRAMMARS)

# The first replacement is the default; rng picks among all of them (SWE-smith's aggressive sets).
OP_CHANGE = {
    "+": ("-", "*"), "-": ("+", "*"), "*": ("/", "+"), "/": ("*", "-"), "%": ("/",),
    "&&": ("||",), "||": ("&&",), "??": ("||",),
    "&": ("|",), "|": ("&",), "^": ("&",), "<<": (">>",), ">>": ("<<",), ">>>": ("<<",),
}
OP_FLIP = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "==": "!=", "!=": "==", "===": "!==", "!==": "==="}
NON_COMMUTATIVE = {"-", "/", "%", "<", ">", "<=", ">=", "<<", ">>", ">>>", "&&", "||", "??"}

def _levels(*groups: str) -> dict[str, int]:
    return {op: level for level, group in enumerate(groups) for op in group.split()}


# Binding strength of binary operators (higher binds tighter), so a changed or moved operand keeps
# the tree's shape: parentheses are added exactly where the new text would otherwise regroup.
_C_LIKE = _levels("|| ??", "&&", "|", "^", "&", "== != === !==", "< <= > >= instanceof in", "<< >> >>>",
                  "+ -", "* / %", "**")
PRECEDENCE = {
    "javascript": _C_LIKE, "typescript": _C_LIKE, "tsx": _C_LIKE, "java": _C_LIKE, "cpp": _C_LIKE,
    "go": _levels("||", "&&", "== != < <= > >=", "+ - | ^", "* / % << >> & &^"),
    "rust": _levels("||", "&&", "== != < <= > >=", "|", "^", "&", "<< >>", "+ -", "* / %"),
}
_INTEGER = re.compile(r"(0|[1-9][0-9]*)([uUlLn]{0,3}|_?[ui](?:8|16|32|64|128|size))")
_COMMENTS = {"comment", "line_comment", "block_comment"}


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: bytes


@dataclass(frozen=True)
class _Bug:
    kind: str
    edits: tuple[_Edit, ...]  # non-overlapping

    @property
    def start(self) -> int:
        return min(e.start for e in self.edits)

    @property
    def end(self) -> int:
        return max(e.end for e in self.edits)


def _text_of(node: Node, data: bytes) -> str:
    return data[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.named_children))


def _operator(node: Node) -> Node | None:
    operator = node.child_by_field_name("operator")
    if operator is None and node.child_count == 3:
        operator = node.children[1]
    return operator


def _pick(options: tuple[str, ...], rng: random.Random | None) -> str:
    return options[0] if rng is None or len(options) == 1 else rng.choice(options)


def _statement(node: Node, grammar: _Grammar, language: str) -> Node | None:
    """The statement to drop for ``node`` (itself or its expression statement), if it sits in a block."""
    statement = node.parent if node.parent is not None and node.parent.type == "expression_statement" else node
    if statement.parent is None or statement.parent.type not in grammar.blocks:
        return None
    if language == "rust":
        if statement.type != "expression_statement":
            return None
        code = [c for c in statement.parent.named_children if c.type not in _COMMENTS]
        if code[-1] == statement and statement.children[-1].type != ";":
            return None  # the block's tail expression: its value
    return statement


def _removal(data: bytes, node: Node) -> _Edit:
    """Drop ``node``; with its line(s) when nothing else is on them."""
    start, end = node.start_byte, node.end_byte
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", end)
    line_end = len(data) if line_end < 0 else line_end
    if not data[line_start:start].strip() and not data[end:line_end].strip():
        return _Edit(line_start, min(len(data), line_end + 1), b"")
    if start > 0 and data[start - 1:start] in (b" ", b"\t"):
        while end < line_end and data[end:end + 1] in (b" ", b"\t"):
            end += 1  # "{ a = 1; }" -> "{ }", not "{  }"
    return _Edit(start, end, b"")


def _is_string(node: Node | None, grammar: _Grammar, data: bytes) -> bool:
    """A string literal, or a concatenation with one (``"n=" + n + ", m="``)."""
    if node is None:
        return False
    if node.type in grammar.strings:
        return True
    if node.type == "parenthesized_expression":
        return any(_is_string(child, grammar, data) for child in node.named_children)
    if node.type == "binary_expression" and _operator_text(node, data) == "+":
        return _is_string(node.child_by_field_name("left"), grammar, data) or _is_string(
            node.child_by_field_name("right"), grammar, data)
    return False


def _operator_text(node: Node, data: bytes) -> str | None:
    operator = _operator(node) if node.type == "binary_expression" else None
    return data[operator.start_byte:operator.end_byte].decode() if operator is not None else None


def _wrapped(operand: Node, data: bytes, op: str, table: dict[str, int], right: bool) -> bytes:
    """``operand``'s text as the left or right operand of ``op``, parenthesised if it would regroup."""
    text = data[operand.start_byte:operand.end_byte]
    inner = _operator_text(operand, data)
    if inner is None:
        return text
    if inner in table and op in table and (table[inner] > table[op] or (table[inner] == table[op] and not right)):
        return text
    return b"(" + text + b")"


def _binary_bugs(node: Node, data: bytes, language: str, grammar: _Grammar, rng: random.Random | None) -> Iterator[_Bug]:
    operator = _operator(node)
    left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
    if operator is None or left is None or right is None:
        return
    table = PRECEDENCE[language]
    op = data[operator.start_byte:operator.end_byte].decode()
    stringy = _is_string(left, grammar, data) or _is_string(right, grammar, data)
    if op in OP_CHANGE and not (stringy and op == "+"):
        new = _pick(OP_CHANGE[op], rng)
        text = (_wrapped(left, data, new, table, right=False) + data[left.end_byte:operator.start_byte] + new.encode()
                + data[operator.end_byte:right.start_byte] + _wrapped(right, data, new, table, right=True))
        parent_op = _operator_text(node.parent, data) if node.parent is not None else None
        if parent_op is not None:
            is_right = node.parent.child_by_field_name("right") == node
            if not (new in table and parent_op in table and
                    (table[new] > table[parent_op] or (table[new] == table[parent_op] and not is_right))):
                text = b"(" + text + b")"
        yield _Bug("op_change", (_Edit(node.start_byte, node.end_byte, text),))
    if op in OP_FLIP:
        yield _Bug("op_flip", (_Edit(operator.start_byte, operator.end_byte, OP_FLIP[op].encode()),))
    if (op in NON_COMMUTATIVE or (op == "+" and stringy)) and data[left.start_byte:left.end_byte] != data[right.start_byte:right.end_byte]:
        middle = data[left.end_byte:right.start_byte]
        yield _Bug("op_swap", (_Edit(left.start_byte, right.end_byte, _wrapped(right, data, op, table, right=False)
                                     + middle + _wrapped(left, data, op, table, right=True)),))


def _constant_bug(node: Node, data: bytes, grammar: _Grammar, rng: random.Random | None) -> _Bug | None:
    parent = node.parent
    if parent is None:
        return None
    around = {parent.type, parent.parent.type if parent.parent is not None else ""}  # Go: case -> list -> literal
    if around & grammar.literal_parents_skipped or parent.type.startswith("preproc"):
        return None
    match = _INTEGER.fullmatch(data[node.start_byte:node.end_byte].decode())
    if match is None:
        return None
    value = int(match.group(1))
    new = value + 1 if value == 0 else value + int(_pick(("1", "-1"), rng))
    return _Bug("op_change_const", (_Edit(node.start_byte, node.end_byte, f"{new}{match.group(2)}".encode()),))


def _branches(node: Node, grammar: _Grammar) -> tuple[Node, Node] | None:
    """The two block branches of an if/else (not an else-if chain)."""
    consequence = node.child_by_field_name("consequence")
    alternative = node.child_by_field_name("alternative")
    if alternative is not None and alternative.type == "else_clause":
        alternative = alternative.named_children[-1] if alternative.named_children else None
    if consequence is None or alternative is None:
        return None
    if consequence.type not in grammar.branch_blocks or alternative.type not in grammar.branch_blocks:
        return None
    return consequence, alternative


def _tokens(node: Node) -> list[bytes]:
    """The node's tokens in order, comments left out (what a whitespace-or-comment edit keeps)."""
    found: list[bytes] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in _COMMENTS:
            continue
        if current.child_count == 0:
            found.append(current.text or b"")
        stack.extend(reversed(current.children))
    return found


def _simple(node: Node, grammar: _Grammar, language: str) -> bool:
    if node.type not in grammar.simple_statements:
        return False
    if language == "rust":  # an expression statement there may be an if, a loop or a block's value
        return node.children[-1].type == ";" and node.named_children[0].type not in grammar.ifs | grammar.loops
    return True


def _shuffle_bugs(block: Node, data: bytes, grammar: _Grammar, language: str, rng: random.Random | None) -> Iterator[_Bug]:
    """One bug per run of two or more consecutive simple statements in ``block``."""
    runs: list[list[Node]] = [[]]
    for child in block.named_children:
        if _simple(child, grammar, language):
            runs[-1].append(child)
        elif runs[-1]:
            runs.append([])
    for run in runs:
        texts = [data[n.start_byte:n.end_byte] for n in run]
        if len(set(texts)) < 2:
            continue
        order = texts[1:] + texts[:1]
        if rng is not None:
            order = texts[:]
            while order == texts:
                rng.shuffle(order)
        yield _Bug("ctrl_shuffle", tuple(_Edit(n.start_byte, n.end_byte, text) for n, text in zip(run, order)))


def _is_else_if(node: Node, grammar: _Grammar) -> bool:
    parent = node.parent
    if parent is None:
        return False
    if parent.type == "else_clause":  # javascript, rust, c++
        return True
    return parent.type in grammar.ifs and parent.child_by_field_name("alternative") == node  # go, java


def _sites(language: str, root: Node, data: bytes, rng: random.Random | None) -> Iterator[_Bug]:
    grammar = GRAMMARS[language]
    for node in _walk(root):
        kind = node.type
        if kind in grammar.blocks:
            yield from _shuffle_bugs(node, data, grammar, language, rng)
        if kind == "binary_expression":
            yield from _binary_bugs(node, data, language, grammar, rng)
        elif kind in grammar.integers:
            bug = _constant_bug(node, data, grammar, rng)
            if bug is not None:
                yield bug
        elif kind in grammar.assignments or kind in grammar.loops:
            statement = _statement(node, grammar, language)
            left = node.child_by_field_name("left")
            if left is not None and set(_text_of(left, data).replace(",", " ").split()) == {"_"}:
                continue  # Go's "_ = x" only keeps x used: dropping it is a compile error, not a bug
            if statement is not None:
                kind_name = "remove_assign" if kind in grammar.assignments else "remove_loop"
                yield _Bug(kind_name, (_removal(data, statement),))
        elif kind in grammar.ifs and not _is_else_if(node, grammar):
            statement = _statement(node, grammar, language)
            if statement is not None:
                yield _Bug("remove_cond", (_removal(data, statement),))
            branches = _branches(node, grammar)
            if branches is not None and _tokens(branches[0]) != _tokens(branches[1]):
                first, second = branches
                yield _Bug("ctrl_invert_if", (
                    _Edit(first.start_byte, first.end_byte, data[second.start_byte:second.end_byte]),
                    _Edit(second.start_byte, second.end_byte, data[first.start_byte:first.end_byte]),
                ))


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _apply(language: str, tree: Tree, data: bytes, edits: tuple[_Edit, ...]) -> tuple[bytes, bool]:
    """The edited bytes and whether they parse, re-parsed incrementally from ``tree``."""
    edited = tree.copy()
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):  # later edits first: earlier offsets hold
        new = data[:edit.start] + edit.text + data[edit.end:]
        new_end = edit.start + len(edit.text)
        edited.edit(start_byte=edit.start, old_end_byte=edit.end, new_end_byte=new_end,
                    start_point=_point(data, edit.start), old_end_point=_point(data, edit.end),
                    new_end_point=_point(new, new_end))
        data = new
    return data, not parse_tree(language, data, edited).root_node.has_error


_RUST_TEST_ATTRIBUTES = re.compile(rb"#\[\s*(?:cfg\s*\(\s*test\s*\)|(?:\w+::)*test\b)")


def _rust_test_spans(root: Node) -> list[tuple[int, int]]:
    """Byte spans of Rust items marked ``#[cfg(test)]`` or ``#[test]``: the crate's tests, not its code."""
    spans = []
    for node in _walk(root):
        if node.type not in ("mod_item", "function_item"):
            continue
        sibling = node.prev_named_sibling
        while sibling is not None and sibling.type in ("attribute_item", "line_comment", "block_comment"):
            if sibling.type == "attribute_item" and _RUST_TEST_ATTRIBUTES.match(sibling.text or b""):
                spans.append((node.start_byte, node.end_byte))
                break
            sibling = sibling.prev_named_sibling
    return spans


def _owner(found: list[Function], starts: list[int], start: int, end: int) -> int | None:
    """Index of the innermost function holding every byte in ``start..end`` (``found`` in source order,
    nested functions after their parents: the first holder going back from ``start`` is the innermost)."""
    index = bisect.bisect_right(starts, start) - 1
    while index >= 0:
        if found[index].end_byte >= end:
            return index
        index -= 1
    return None


def candidate_bugs(language: str, source: str, rng: random.Random | None = None) -> Iterator[tuple[str, str, str]]:
    """``(function name, kind, whole bugged file)`` for every single-site bug in ``source``."""
    if language not in GRAMMARS:
        raise ValueError(f"no procedural modifiers for {language!r} (known: {', '.join(sorted(GRAMMARS))})")
    data = source.encode()
    tree = parse_tree(language, data)
    if tree.root_node.has_error:
        return  # a bug must parse; a file that does not cannot be checked
    found = functions(language, source)
    if language == "rust":  # tests live beside the code; a bug there breaks a test, not the code
        tests = _rust_test_spans(tree.root_node)
        found = [f for f in found if not any(start <= f.start_byte and f.end_byte <= end for start, end in tests)]
    if not found:
        return
    order = {kind: i for i, kind in enumerate(KINDS)}
    found.sort(key=lambda f: f.start_byte)  # stable: a parent stays before a child that starts with it
    starts = [f.start_byte for f in found]
    placed: list[tuple[int, int, int, _Bug]] = []
    for bug in _sites(language, tree.root_node, data, rng):
        start, end = bug.start, bug.end
        owner = _owner(found, starts, start, end)
        if owner is not None:
            placed.append((owner, order[bug.kind], start, bug))
    placed.sort(key=lambda item: item[:3])
    seen: set[bytes] = set()  # digests: a large file's bugged copies are not all kept in memory
    for owner, _, _, bug in placed:
        bugged, ok = _apply(language, tree, data, bug.edits)
        digest = hashlib.blake2b(bugged, digest_size=16).digest()
        if not ok or bugged == data or digest in seen:
            continue
        seen.add(digest)
        yield found[owner].name, bug.kind, bugged.decode()
