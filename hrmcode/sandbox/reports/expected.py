"""The tests a run must report, read from the PRISTINE test files before anything runs.

``expected_tests(language, test_files) -> list[str]`` lists the test names a language's report
will carry for every test those files define and the run is meant to run, in the report's own
spelling (see ``frameworks``): pytest node ids (``x_test.py::Class::test_m``), Go top-level
``TestX`` functions, libtest paths (``module::test_fn``), ``Class.method`` for JUnit, test titles
for jest, ``TEST_CASE`` names for Catch2. A name may repeat (two jest tests with one title).

Read statically (``ast`` for Python, patterns for the others) from files the candidate never
supplies, so nothing the candidate writes can shorten the list. It counts what the run will run:
Go files whose ``//go:build`` line is false without tags (``bonus``), Rust items behind
``#[cfg(feature = ...)]``, ``test.skip`` in jest and ``@Disabled`` tests left after un-skipping
are not expected; skip markers are removed before this is read (strict mode). Not guaranteed: tests generated at run time (pytest parametrisation, inherited
unittest methods, Go ``t.Run`` subtests, macro-generated Rust tests) are not in the list; a failed
one still fails the run through the report.
"""

from __future__ import annotations

import ast
import re
from pathlib import PurePosixPath

# -- python -------------------------------------------------------------------------------------


def _python(test_files: dict[str, str]) -> list[str]:
    names = []
    for path, text in sorted(test_files.items()):
        name = PurePosixPath(path).name
        if "/" in path or not name.endswith(".py") or not (name.startswith("test_") or name.endswith("_test.py")):
            continue  # pytest's default python_files, collected from the exercise root
        for node in ast.parse(text, filename=path).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                names.append(f"{path}::{node.name}")
            elif isinstance(node, ast.ClassDef) and (node.name.startswith("Test") or _is_testcase(node)):
                names += [f"{path}::{node.name}::{item.name}" for item in node.body
                          if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")]
    return names


def _is_testcase(node: ast.ClassDef) -> bool:
    return any((isinstance(b, ast.Attribute) and b.attr == "TestCase") or (isinstance(b, ast.Name) and b.id == "TestCase")
               for b in node.bases)


# -- go -----------------------------------------------------------------------------------------

_GO_TEST = re.compile(r"^func (Test[A-Z_0-9]\w*|Test)\(\s*\w+\s+\*testing\.T\s*\)", re.MULTILINE)
_GO_BUILD = re.compile(r"^//go:build (.+)$", re.MULTILINE)
_GO_TAGS_ON = re.compile(r"^(linux|unix|amd64|arm64|gc|cgo|go1\.\d+)$")


def go_build_satisfied(expression: str) -> bool:
    """A ``//go:build`` expression evaluated with no ``-tags`` (only the platform's own tags set)."""
    tokens = re.findall(r"[A-Za-z0-9_.]+|&&|\|\||!|\(|\)", expression)
    python = []
    for token in tokens:
        python.append({"&&": "and", "||": "or", "!": "not", "(": "(", ")": ")"}.get(token)
                      or str(bool(_GO_TAGS_ON.match(token))))
    return bool(eval(" ".join(python), {"__builtins__": {}}, {}))  # only True/False/and/or/not/parens


def _go(test_files: dict[str, str]) -> list[str]:
    names = []
    for path, text in sorted(test_files.items()):
        if "/" in path or not path.endswith("_test.go"):
            continue
        constraint = _GO_BUILD.search(text.split("\npackage ", 1)[0])
        if constraint and not go_build_satisfied(constraint.group(1)):
            continue
        names += _GO_TEST.findall(text)
    return names


# -- rust ---------------------------------------------------------------------------------------

_RUST_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'')


def _rust_file(text: str) -> list[str]:
    """``#[test]`` functions with their module path, skipping anything behind ``#[cfg(feature = ...)]``."""
    names = []
    modules: list[tuple[str, int, bool]] = []  # (name, brace depth inside it, gated)
    depth = 0
    attributes: list[str] = []
    for raw in text.splitlines():
        line = _RUST_STRINGS.sub('""', raw.split("//", 1)[0] if not raw.lstrip().startswith("#") else raw).strip()
        gated = any(gate for _, _, gate in modules)
        if line.startswith("#["):
            attributes.append(line)
        else:
            mod = re.match(r"(?:pub\s+)?mod\s+(\w+)\s*\{", line)
            fn = re.match(r"(?:pub\s+)?(?:async\s+)?fn\s+(\w+)", line)
            feature_gated = any(a.startswith("#[cfg(feature") for a in attributes)
            if mod:
                modules.append((mod.group(1), depth + 1, feature_gated))
            elif fn and "#[test]" in attributes and not (gated or feature_gated):
                names.append("::".join([*(m for m, _, _ in modules), fn.group(1)]))
            if line:
                attributes = []
        depth += line.count("{") - line.count("}")
        while modules and depth < modules[-1][1]:
            modules.pop()
    return names


def _rust(test_files: dict[str, str]) -> list[str]:
    names = []
    for path, text in sorted(test_files.items()):
        if re.fullmatch(r"tests/[^/]+\.rs", path):  # cargo's integration-test targets
            names += _rust_file(text)
    return names


# -- java ---------------------------------------------------------------------------------------

_JAVA_CLASS = re.compile(r"^(?:public\s+)?(?:final\s+)?class\s+(\w+)", re.MULTILINE)
_JAVA_TEST = re.compile(r"@Test\b(?:\s*@\w+(?:\([^)]*\))?)*\s+(?:public\s+|protected\s+|private\s+)?(?:static\s+)?void\s+(\w+)\s*\(")


def _java(test_files: dict[str, str]) -> list[str]:
    names = []
    for path, text in sorted(test_files.items()):
        if not (path.startswith("src/test/java/") and path.endswith(".java")):
            continue
        body = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)
        cls = _JAVA_CLASS.search(body)
        if cls:
            names += [f"{cls.group(1)}.{method}" for method in _JAVA_TEST.findall(body)]
    return names


# -- javascript ---------------------------------------------------------------------------------

_JS_TEST = re.compile(r"(?<![.\w])(?:test|it)\(\s*(['\"`])((?:\\.|(?!\1).)*?)\1", re.DOTALL)


def js_unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


def _javascript(test_files: dict[str, str]) -> list[str]:
    names = []
    for path, text in sorted(test_files.items()):
        if path.endswith((".spec.js", ".test.js")):
            names += [js_unescape(m.group(2)) for m in _JS_TEST.finditer(text)]
    return names


# -- cpp ----------------------------------------------------------------------------------------

_CATCH_TEST = re.compile(r"\bTEST_CASE(?:_METHOD)?\(\s*(?:\w+\s*,\s*)?\"((?:\\.|[^\"\\])*)\"")


_CPP_DEFINED = {"EXERCISM_RUN_ALL_TESTS"}  # what the route compiles with


def _cpp_compiled(text: str) -> str:
    """``text`` without the lines an ``#if defined(X)`` / ``#ifdef X`` (negated or not) leaves out
    when only ``EXERCISM_RUN_ALL_TESTS`` is defined (``EXERCISM_INCLUDE_BENCHMARK`` is not); other
    conditions count as true."""
    kept, stack = [], []  # stack of (this branch on, enclosing on)
    for line in text.splitlines(keepends=True):
        directive = re.match(r"\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b(.*)", line)
        on = all(branch for branch, _ in stack)
        if directive is None:
            if on:
                kept.append(line)
            continue
        word, rest = directive.groups()
        if word in ("ifdef", "ifndef", "if"):
            simple = re.fullmatch(r"\s*(!?)\s*(?:defined\s*\(?\s*)?(\w+)\s*\)?\s*", rest) if word == "if" else \
                re.fullmatch(r"\s*()(\w+)\s*", rest)
            value = True
            if simple and (word != "if" or "defined" in rest):
                value = (simple.group(2) in _CPP_DEFINED) != (simple.group(1) == "!" or word == "ifndef")
            stack.append((value, on))
        elif word == "else" and stack:
            stack[-1] = (not stack[-1][0], stack[-1][1])
        elif word == "endif" and stack:
            stack.pop()
    return "".join(kept)


def _cpp(test_files: dict[str, str]) -> list[str]:
    names = []
    for path, text in sorted(test_files.items()):
        if path.endswith(("_test.cpp", "_test.cc")):
            names += [re.sub(r"\\(.)", r"\1", m) for m in _CATCH_TEST.findall(_cpp_compiled(text))]
    return names


_FINDERS = {"python": _python, "go": _go, "rust": _rust, "java": _java, "javascript": _javascript, "cpp": _cpp}


def expected_tests(language: str, test_files: dict[str, str]) -> list[str]:
    """The test names ``language``'s report must show passed, from the pristine ``test_files``
    (already un-skipped the way the run will be)."""
    return _FINDERS[language]({p: t for p, t in test_files.items() if isinstance(t, str)})
