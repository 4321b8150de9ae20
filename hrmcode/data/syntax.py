"""Source files as tree-sitter sees them: which language a path is, its functions, whether it parses.

One parser for every language hrmcode handles beyond Python's own ``ast``: python, javascript,
typescript (and tsx), go, rust, java and cpp (C++; C files parse with the same grammar), from the
``tree-sitter`` and ``tree-sitter-language-pack`` wheels (the grammars are compiled into the wheel,
so nothing is downloaded at run time).

Guarantees:
- ``functions`` returns every function and method tree-sitter recognises, in source order, with
  its 1-based line span and its byte span into ``source.encode()``: nested functions, class,
  impl, trait and interface methods, constructors, Go methods (named ``Receiver.Method``),
  JavaScript arrow functions and function expressions bound to a name (``const f = () => ...``,
  ``exports.f = function ...``, ``{f: function ...}``), signatures over several lines.
  Names are qualified by what encloses them (``Outer.Inner.method``); a C++ out-of-class
  definition keeps the name it is written with (``Foo::bar``). Declarations without a body
  (abstract and interface methods, prototypes, Go assembly stubs) are not functions.
- ``definitions`` adds the types that enclose code (classes, structs, enums, interfaces, traits,
  impls, namespaces, Rust modules), for callers that name the symbols a change touches.
- ``parses`` is true exactly when tree-sitter's tree has no ERROR and no MISSING node.
- Parsers are cached per thread and language, so every function here may be called from threads.

Not guaranteed:
- Code that tree-sitter cannot parse: a function that contains a syntax error is left out (the
  others in the file are still found), and text that error recovery did not turn into a
  definition node yields nothing.
  C/C++ macros that expand to declarations or open braces are seen as written, not as expanded,
  so a function defined through a macro may be missed or named after the macro.
- Anonymous functions (lambdas, closures, callbacks passed inline) are not functions here; their
  code belongs to the named function around them.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Language, Node, Parser, Tree
from tree_sitter_language_pack import get_language

EXTENSIONS = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".h": "cpp", ".c": "cpp",
}
LANGUAGES = frozenset(EXTENSIONS.values())


def language_of(path: str) -> str | None:
    """The language of a file by its extension, or None for a language hrmcode does not parse."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


@dataclass(frozen=True)
class Function:
    name: str  # qualified by what encloses it: Outer.inner, Receiver.Method
    start_line: int  # 1-based, first line (decorators and C++ template headers included)
    end_line: int  # 1-based, last line
    start_byte: int  # offsets into source.encode()
    end_byte: int
    kind: str = "function"  # or "type" (only from ``definitions``)


@functools.cache
def _language(language: str) -> Language:
    if language not in LANGUAGES:
        raise ValueError(f"no tree-sitter grammar for {language!r} (known: {', '.join(sorted(LANGUAGES))})")
    return get_language(language)  # type: ignore[arg-type]


_parsers = threading.local()  # a Parser is not safe to share between threads


def parse_tree(language: str, data: bytes, old: Tree | None = None) -> Tree:
    """The tree-sitter tree of ``data`` (UTF-8 bytes) in ``language``; ``old``, a tree of an earlier
    version already told of the edits (``Tree.edit``), makes the parse incremental."""
    cache = _parsers.__dict__.setdefault("by_language", {})
    parser = cache.get(language)
    if parser is None:
        parser = cache[language] = Parser(_language(language))
    return parser.parse(data, old) if old is not None else parser.parse(data)


def parses(language: str, source: str) -> bool:
    """True when ``source`` parses in ``language`` without ERROR or MISSING nodes."""
    return not parse_tree(language, source.encode()).root_node.has_error


# -- definitions ----------------------------------------------------------------------------
# Per language: node type -> "function" or "type". Names come from _name below.
_KINDS: dict[str, dict[str, str]] = {
    "python": {"function_definition": "function", "class_definition": "type"},
    "javascript": {
        "function_declaration": "function", "generator_function_declaration": "function",
        "method_definition": "function", "variable_declarator": "function", "assignment_expression": "function",
        "pair": "function", "class_declaration": "type",
    },
    "go": {"function_declaration": "function", "method_declaration": "function", "type_spec": "type"},
    "rust": {
        "function_item": "function", "impl_item": "type", "trait_item": "type", "struct_item": "type",
        "enum_item": "type", "mod_item": "type",
    },
    "java": {
        "method_declaration": "function", "constructor_declaration": "function",
        "compact_constructor_declaration": "function", "class_declaration": "type",
        "interface_declaration": "type", "enum_declaration": "type", "record_declaration": "type",
        "annotation_type_declaration": "type",
    },
    "cpp": {
        "function_definition": "function", "class_specifier": "type", "struct_specifier": "type",
        "union_specifier": "type", "namespace_definition": "type",
    },
}
_KINDS["typescript"] = _KINDS["tsx"] = {
    **_KINDS["javascript"], "abstract_class_declaration": "type", "interface_declaration": "type",
    "internal_module": "type",
}
_JS_FUNCTION_VALUES = {"function_expression", "function", "arrow_function", "generator_function"}
# Wrappers whose span is the definition's span (decorators, exports, template headers).
_WRAPPERS = {"decorated_definition", "template_declaration", "export_statement"}
_JS_STATEMENTS = {"lexical_declaration", "variable_declaration", "expression_statement"}


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _cpp_declarator_name(node: Node | None) -> str:
    """The name inside a C++ declarator chain (pointer/reference declarators around a function_declarator)."""
    while node is not None:
        if node.type == "function_declarator":
            inner = node.child_by_field_name("declarator")
            return _text(inner) if inner is not None else ""
        node = node.child_by_field_name("declarator") or next(
            (c for c in node.named_children if c.type.endswith("declarator")), None)
    return ""


def _go_receiver(node: Node) -> str:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return ""
    for declaration in receiver.named_children:
        kind = declaration.child_by_field_name("type")
        while kind is not None and kind.type in ("pointer_type", "generic_type", "parenthesized_type"):
            kind = kind.child_by_field_name("type") or (kind.named_children[0] if kind.named_children else None)
        if kind is not None:
            return _text(kind)
    return ""


def _rust_impl_name(node: Node) -> str:
    kind = node.child_by_field_name("type")
    while kind is not None and kind.type in ("generic_type", "reference_type", "scoped_type_identifier"):
        kind = kind.child_by_field_name("type") or kind.child_by_field_name("name")
    return _text(kind)


def _name(language: str, node: Node) -> str | None:
    """The definition's name, or None when ``node`` is not a named definition with a body."""
    kind = node.type
    if language in ("javascript", "typescript", "tsx"):
        if kind == "variable_declarator":
            value = node.child_by_field_name("value")
            return _text(node.child_by_field_name("name")) if value is not None and value.type in _JS_FUNCTION_VALUES else None
        if kind == "assignment_expression":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if right is None or right.type not in _JS_FUNCTION_VALUES or left is None:
                return None
            return _text(left) if left.type in ("identifier", "member_expression") else None
        if kind == "pair":
            value = node.child_by_field_name("value")
            key = node.child_by_field_name("key")
            if value is None or value.type not in _JS_FUNCTION_VALUES or key is None:
                return None
            return _text(key).strip("'\"`")
        if kind == "method_definition" and node.child_by_field_name("body") is None:
            return None
        return _text(node.child_by_field_name("name")) or None
    if language == "go":
        if kind == "type_spec":
            body = node.child_by_field_name("type")
            return _text(node.child_by_field_name("name")) if body is not None and body.type in ("struct_type", "interface_type") else None
        if node.child_by_field_name("body") is None:
            return None
        name = _text(node.child_by_field_name("name"))
        receiver = _go_receiver(node) if kind == "method_declaration" else ""
        return f"{receiver}.{name}" if receiver else name
    if language == "rust":
        if kind == "impl_item":
            return _rust_impl_name(node) or None
        if kind in ("function_item", "mod_item") and node.child_by_field_name("body") is None:
            return None
        return _text(node.child_by_field_name("name")) or None
    if language == "cpp":
        if kind == "function_definition":
            return _cpp_declarator_name(node.child_by_field_name("declarator")) or None
        if node.child_by_field_name("body") is None:
            return None  # a forward declaration
        return _text(node.child_by_field_name("name")) or None  # an anonymous namespace names nothing
    if language == "java" and kind in ("method_declaration", "constructor_declaration") and node.child_by_field_name("body") is None:
        return None
    return _text(node.child_by_field_name("name")) or None


def _span_node(language: str, node: Node) -> Node:
    """The node whose span is the definition's: its wrapper (decorators, template header,
    ``export``) or, for a JavaScript function bound by a declaration, the whole statement."""
    span = node
    if language in ("javascript", "typescript", "tsx") and node.type in ("variable_declarator", "assignment_expression"):
        parent = node.parent
        if parent is not None and parent.type in _JS_STATEMENTS and parent.named_child_count == 1:
            span = parent
    while span.parent is not None and span.parent.type in _WRAPPERS:
        span = span.parent
    return span


def _walk(language: str, root: Node) -> Iterator[tuple[str, str, Node]]:
    """(kind, qualified name, span node) for every definition, in source order."""
    kinds = _KINDS[language]
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, prefix = stack.pop()
        name = None
        kind = kinds.get(node.type)
        # a function with a syntax error inside is left out; a type around one still names what it holds
        if kind is not None and not (kind == "function" and node.has_error):
            name = _name(language, node)
        if name:
            qualified = f"{prefix}.{name}" if prefix else name
            yield kind, qualified, _span_node(language, node)
            prefix = qualified
        stack.extend((child, prefix) for child in reversed(node.named_children))


def definitions(language: str, source: str) -> list[Function]:
    """Functions, methods and the types that enclose code, in source order."""
    data = source.encode()
    root = parse_tree(language, data).root_node
    found: list[Function] = []
    for kind, name, node in _walk(language, root):
        # a node that ends at column 0 ends with the newline of the line before
        end_line = node.end_point[0] + (1 if node.end_point[1] > 0 else 0)
        found.append(Function(name, node.start_point[0] + 1, max(node.start_point[0] + 1, end_line),
                              node.start_byte, node.end_byte, kind))
    return found


def functions(language: str, source: str) -> list[Function]:
    """Every function and method with a body, in source order (see the module docstring)."""
    return [f for f in definitions(language, source) if f.kind == "function"]
