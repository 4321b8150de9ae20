"""Which functions and classes a fix touches, for the ``TOUCH path::name`` lines of a plan.

Guarantees:
- Python with the whole file: exact, from ``ast`` (qualified names such as ``Index.get_loc``;
  nested functions included). A file that does not parse falls back to the indentation scan.
- Go, Rust, Java, JavaScript/TypeScript, C/C++ (tree-sitter is not installed): a line-based
  fallback. Signature lines are found with per-language regular expressions and their bodies by
  counting braces after string literals and ``//`` / ``/* */`` comments are blanked. It misses
  symbols whose signature spans lines in unusual ways, and macros that open braces.
- Without the whole file (SWE-smith records carry only the diff), names come from the hunk:
  git's section header (the enclosing function or class line) and signature lines in the hunk's
  context above each change, nested by indentation (Python) or braces (others).
Names are returned in order of first appearance, without duplicates.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass

from hrmcode.diffs import FileDiff

EXTENSIONS = {
    ".py": "python", ".pyi": "python",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "javascript", ".tsx": "javascript",
    ".c": "cpp", ".h": "cpp", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
}


def language_of(path: str) -> str | None:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


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


# -- brace languages -------------------------------------------------------------------------
_CONTROL = {"if", "for", "while", "switch", "catch", "return", "else", "do", "try", "sizeof", "new", "delete", "case"}
_SIGNATURES = {
    "go": [re.compile(r"^\s*func\s+(?:\(([^)]*)\)\s*)?([A-Za-z_]\w*)"), re.compile(r"^\s*type\s+([A-Za-z_]\w*)\s+(?:struct|interface)")],
    "rust": [
        re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"[^\"]*\"\s+)?fn\s+([A-Za-z_]\w*)"),
        re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+)?impl(?:<[^>{]*>)?\s+(?:[\w:<>, ]+\s+for\s+)?([A-Za-z_]\w*)"),
        re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:struct|enum|trait|mod)\s+([A-Za-z_]\w*)"),
    ],
    "java": [
        re.compile(r"^\s*(?:[\w@]+\s+)*(?:class|interface|enum|record)\s+([A-Za-z_]\w*)"),
        re.compile(r"^\s*(?:(?:public|private|protected|static|final|synchronized|abstract|native|default)\s+)*"
                   r"(?:<[^>]+>\s+)?[\w<>\[\],.? ]+\s+([A-Za-z_]\w*)\s*\([^;]*$"),
        re.compile(r"^\s*(?:public|private|protected)\s+([A-Z]\w*)\s*\([^;]*$"),  # constructors
    ],
    "javascript": [
        re.compile(r"^\s*(?:export\s+)?(?:default\s+)?class\s+([A-Za-z_$][\w$]*)"),
        re.compile(r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)"),
        re.compile(r"^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?(?:function|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)"),
        re.compile(r"^\s*(?:static\s+)?(?:async\s+)?(?:get\s+|set\s+)?\*?([A-Za-z_$][\w$]*)\s*\([^)]*\)\s*\{"),
    ],
    "cpp": [
        re.compile(r"^\s*(?:template\s*<[^>]*>\s*)?(?:class|struct|namespace)\s+([A-Za-z_]\w*)\s*(?:final\s*)?(?::[^{;]*)?\{?\s*$"),
        re.compile(r"^\s*(?:[\w:<>,*&~\s]+?\s+[*&]*)?([A-Za-z_~][\w:~]*)\s*\([^;]*\)\s*(?:const\s*)?(?:noexcept\s*)?(?:override\s*)?(?:->\s*[\w:<>]+\s*)?\{?\s*$"),
    ],
}
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`(?:\\.|[^`\\])*`')


def _signature(line: str, language: str) -> str | None:
    for pattern in _SIGNATURES.get(language, ()):
        match = pattern.match(line)
        if match:
            name = match.group(match.lastindex or 1)
            if language == "go" and match.lastindex == 2 and match.group(1):
                receiver = re.findall(r"[A-Za-z_]\w*", match.group(1).replace("*", " "))
                if receiver:
                    name = f"{receiver[-1]}.{match.group(2)}"
            if name.split("::")[-1] in _CONTROL:
                return None
            return name
    return None


def _code_only(lines: list[str]) -> list[str]:
    """Lines with string literals and comments blanked, so braces can be counted."""
    cleaned: list[str] = []
    in_block = False
    for line in lines:
        text = _STRINGS.sub('""', line)
        out = []
        i = 0
        while i < len(text):
            if in_block:
                end = text.find("*/", i)
                if end < 0:
                    i = len(text)
                    continue
                in_block = False
                i = end + 2
                continue
            if text.startswith("//", i):
                break
            if text.startswith("/*", i):
                in_block = True
                i += 2
                continue
            out.append(text[i])
            i += 1
        cleaned.append("".join(out))
    return cleaned


def _brace_symbols(lines: list[str], language: str) -> list[Symbol]:
    found: list[Symbol] = []
    code = _code_only(lines)
    depth = 0
    pending: tuple[str, int] | None = None  # a signature seen, waiting for its "{"
    stack: list[tuple[str, int, int]] = []  # (name, depth its body opened at, start line)
    for number, (raw, line) in enumerate(zip(lines, code), 1):
        name = _signature(raw, language)
        if name is not None:
            pending = (name, number)
        for ch in line:
            if ch == "{":
                depth += 1
                if pending is not None:
                    qual = ".".join([s[0] for s in stack[-1:]] + [pending[0]]) if stack and "." not in pending[0] else pending[0]
                    stack.append((qual, depth, pending[1]))
                    pending = None
            elif ch == "}":
                if stack and stack[-1][1] == depth:
                    qual, _, start = stack.pop()
                    found.append(Symbol(qual, start, number))
                depth = max(0, depth - 1)
            elif ch == ";" and pending is not None and depth >= 0:
                pending = None  # a declaration without a body
    return sorted(found, key=lambda s: s.start)


def file_symbols(source: str, language: str) -> list[Symbol]:
    """Every function/class (and Go/Rust/C++ type) with its line span."""
    if language == "python":
        try:
            return _python_ast_symbols(source)
        except (SyntaxError, ValueError):
            return _indent_symbols(source.splitlines())
    return _brace_symbols(source.splitlines(), language)


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
    return _signature(section, language)


def touched_in_hunks(diff: FileDiff, language: str) -> list[str]:
    """Best names from the hunks alone (no whole file): header + signatures above each change."""
    names: list[str] = []
    for hunk in diff.hunks:
        header = _header_name(hunk.section, language)
        enclosing: list[tuple[int, str]] = []  # (indent or brace depth marker, name)
        depth = 0
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
                name = _signature(line, language)
                code = _code_only([line])[0]
                if name is not None:
                    enclosing.append((depth, name))
                depth += code.count("{") - code.count("}")
                while enclosing and depth <= enclosing[-1][0] and "}" in code and name is None:
                    enclosing.pop()
            if tag == "-":
                if enclosing:
                    names.append(enclosing[-1][1])
                elif header:
                    names.append(header)
    return _dedup(names)
