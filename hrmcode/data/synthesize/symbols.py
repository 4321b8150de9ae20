"""Which functions and classes a fix touches, for the ``TOUCH path::name`` lines of a plan.

Guarantees:
- Python with the whole file: exact, from ``ast`` (qualified names such as ``Index.get_loc``;
  nested functions included). A file that does not parse falls back to the indentation scan.
- Go, Rust, Java, JavaScript/TypeScript, C/C++ with the whole file: tree-sitter's definitions
  (``hrmcode.data.syntax``): functions, methods and the types around them, qualified
  (``Outer.method``, Go's ``Receiver.Method``), whatever the layout of their signatures. Not
  found: functions tree-sitter cannot parse and what macros expand to.
- Without the whole file (SWE-smith records carry only the diff), names come from the hunk:
  git's section header (the enclosing function or class line) and signature lines in the hunk's
  context above each change, nested by indentation (Python) or braces (others). A line is a
  signature when tree-sitter reads it, closed with a brace, as a definition; braces are counted
  on tree-sitter's tokens, so those in strings and comments do not count. A signature spread
  over up to six lines of a hunk is read as one.
Names are returned in order of first appearance, without duplicates.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass

from hrmcode.data import syntax
from hrmcode.diffs import FileDiff


def language_of(path: str) -> str | None:
    return syntax.language_of(path)


@dataclass(frozen=True)
class Symbol:
    name: str  # qualified: Outer.inner
    start: int  # 1-based first line
    end: int  # 1-based last line


# -- python ----------------------------------------------------------------------------------
def _python_ast_symbols(source: str) -> list[Symbol]:
    tree = ast.parse(source)
    found: list[Symbol] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found.append(Symbol(name, start, child.end_lineno or child.lineno))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


_PY_DEF = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+([A-Za-z_]\w*)")


def _indent_symbols(lines: list[str]) -> list[Symbol]:
    """Python symbols by indentation, for files that do not parse."""
    found: list[Symbol] = []
    stack: list[tuple[int, str, int]] = []  # (indent, qualified name, start)
    last_code = 0

    def close(indent: int) -> None:
        while stack and stack[-1][0] >= indent:
            ind, name, start = stack.pop()
            found.append(Symbol(name, start, max(start, last_code)))

    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        close(indent)
        match = _PY_DEF.match(line)
        if match:
            qual = ".".join([s[1] for s in stack[-1:]] + [match.group(2)]) if stack else match.group(2)
            stack.append((indent, qual, number))
        last_code = number
    close(-1)
    return sorted(found, key=lambda s: s.start)


# -- other languages ---------------------------------------------------------------------------
_SIGNATURE_LINES = 6  # the longest signature looked for across the lines of a hunk
_CLOSERS = ("\n}", "\n};")  # what makes a signature line a whole definition (C++ classes need the ";")
_CLASS_MEMBERS = {"java", "javascript", "typescript", "tsx"}  # a method line reads as one only inside a class


@functools.lru_cache(maxsize=4096)
def _signature(line: str, language: str) -> syntax.Function | None:
    """What a signature line defines (name and kind), or None when the line defines nothing."""
    if language not in syntax.LANGUAGES or not line.strip():
        return None
    stripped = line.strip()
    attempts = [(stripped + closer, "") for closer in _CLOSERS]
    if language in _CLASS_MEMBERS:
        attempts += [(f"class _ {{\n{stripped}{closer}\n}}", "_.") for closer in _CLOSERS]
    for text, prefix in attempts:
        if not syntax.parses(language, text):
            continue
        row = 1 if prefix else 0
        for definition in syntax.definitions(language, text):
            if definition.start_line - 1 == row and definition.name.startswith(prefix):
                return syntax.Function(definition.name[len(prefix):], 0, 0, 0, 0, definition.kind)
        return None  # the line parses, but as a statement (an if, a call, a block)
    return None


def _qualified(name: str, parent: str | None) -> str:
    """``parent.name``, unless the name already says where it lives (Go's ``Recv.M``, C++'s ``A::m``)."""
    return f"{parent}.{name}" if parent and "." not in name and "::" not in name else name


def _brace_balance(line: str, language: str) -> int:
    """Opening minus closing braces among the line's tokens (none in strings or comments)."""
    if language not in syntax.LANGUAGES:
        return 0
    balance = 0
    stack = [syntax.parse_tree(language, line.encode()).root_node]
    while stack:
        node = stack.pop()
        if node.child_count == 0:
            balance += {"{": 1, "}": -1}.get(node.type, 0)
        stack.extend(node.children)
    return balance


def file_symbols(source: str, language: str) -> list[Symbol]:
    """Every function/class (and Go/Rust/C++ type) with its line span."""
    if language == "python":
        try:
            return _python_ast_symbols(source)
        except (SyntaxError, ValueError):
            return _indent_symbols(source.splitlines())
    if language not in syntax.LANGUAGES:
        return []
    return [Symbol(d.name, d.start_line, d.end_line) for d in syntax.definitions(language, source)]


def _innermost(symbols: list[Symbol], line: int) -> Symbol | None:
    best = None
    for symbol in symbols:
        if symbol.start <= line <= symbol.end and (best is None or symbol.start >= best.start):
            best = symbol
    return best


def _dedup(names: list[str]) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))


def touched_in_file(before: str, diff: FileDiff, language: str) -> list[str]:
    """Symbols of ``before`` enclosing each removed line or insertion point of ``diff``."""
    symbols = file_symbols(before, language)
    names: list[str] = []
    for hunk in diff.hunks:
        old_line = hunk.old_start if hunk.old_len else hunk.old_start + 1
        for tag, _text in hunk.lines:
            if tag == "+":
                # an insertion belongs to what encloses the line before it
                symbol = _innermost(symbols, max(1, old_line - 1))
                if symbol is None:
                    symbol = _innermost(symbols, old_line)
            else:
                symbol = _innermost(symbols, old_line) if tag == "-" else None
                old_line += 1
            if symbol is not None:
                names.append(symbol.name)
    return _dedup(names)


def _header_name(section: str, language: str) -> str | None:
    if not section:
        return None
    if language == "python":
        match = _PY_DEF.match(section)
        return match.group(2) if match else None
    signature = _signature(section, language)
    return signature.name if signature is not None else None


def touched_in_hunks(diff: FileDiff, language: str) -> list[str]:
    """Best names from the hunks alone (no whole file): header + signatures above each change."""
    names: list[str] = []
    for hunk in diff.hunks:
        header = _header_name(hunk.section, language)
        section = _signature(hunk.section, language) if language != "python" else None
        header_is_type = section is not None and section.kind == "type"
        enclosing: list[tuple[int, str]] = []  # (indent or brace depth marker, name)
        depth = 0
        pending: list[str] = []  # lines since the last that ended a statement or opened/closed a block
        for tag, text in hunk.lines:
            if tag == "+":
                if enclosing:
                    names.append(enclosing[-1][1])
                elif header:
                    names.append(header)
                continue
            line = text.rstrip("\n")
            if language == "python":
                if line.strip() and not line.lstrip().startswith("#"):
                    indent = len(line) - len(line.lstrip())
                    while enclosing and enclosing[-1][0] >= indent:
                        enclosing.pop()
                    match = _PY_DEF.match(line)
                    if match:
                        parent = enclosing[-1][1] + "." if enclosing else (header + "." if header else "")
                        enclosing.append((indent, parent + match.group(2)))
            else:
                signature = _signature(line, language)
                for k in range(1, len(pending) + 1):  # a signature spread over the lines before this one
                    if signature is not None:
                        break
                    signature = _signature("\n".join(pending[-k:] + [line]), language)
                stripped = line.strip()
                pending = [] if not stripped or stripped[-1] in "{};" else (pending + [line])[-_SIGNATURE_LINES:]
                if signature is not None:
                    # inside a type seen in the hunk, or the header's type while its body is still open
                    parent = enclosing[-1][1] if enclosing else (header if header_is_type and depth >= 0 else None)
                    enclosing.append((depth, _qualified(signature.name, parent)))
                balance = _brace_balance(line, language)
                depth += balance
                while enclosing and depth <= enclosing[-1][0] and balance < 0 and signature is None:
                    enclosing.pop()
            if tag == "-":
                if enclosing:
                    names.append(enclosing[-1][1])
                elif header:
                    names.append(header)
    return _dedup(names)
