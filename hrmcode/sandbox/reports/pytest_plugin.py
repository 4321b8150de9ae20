"""hrmcode's pytest reporter, shipped as a file into the sandbox and loaded with ``-p`` (never
imported by hrmcode itself): one JSON record per line, each tagged with the run's nonce.

Records: ``start`` (session start), ``collect`` (a collector that failed), ``origin`` (the file
that defines a test's function, just before it is called), ``phase`` (setup / call / teardown
outcome of a test, full node id), ``subtest`` (a subtest's outcome and its label, from pytest's
``subtests`` fixture or unittest's ``subTest``), ``end`` (pytest's exit status).

When pytest loads it, before any conftest or test module: it reads the nonce from
``$HRMCODE_PYTEST_REPORT.nonce`` and deletes that file, removes the variable from the
environment, and opens the report (``$HRMCODE_PYTEST_REPORT``) append-only and close-on-exec. The
reader (``pytest_report.py``) accepts a report only when every line carries the nonce. Without
``HRMCODE_PYTEST_REPORT`` it does nothing.

Strict checks (``HRMCODE_PYTEST_STRICT=1``, also removed from the environment at load):
``unittest``'s equality assertions refuse to compare a plain value (number, string, list, tuple,
dict, set, None) with an object whose ``__eq__`` is Python code (the program's: one that always
says yes), at any depth of lists, tuples and
dicts, and so do the ``==`` / ``!=`` comparisons pytest rewrites in plain ``assert`` statements
(test modules, conftest files; not those inside a comprehension or lambda, nor other operators:
an object whose ``__sub__`` lies still passes ``assert abs(f() - x) < 1e-6``); and every
function and class attribute of pytest, pluggy, unittest and this plugin is recorded at session start and compared after each test: a change is a ``tampered`` record, and
the reader fails that test.
"""

import ast
import json
import os
import sys
import types
import unittest

import _pytest.assertion.rewrite as _rewrite
import pytest

_PATH = os.environ.pop("HRMCODE_PYTEST_REPORT", None)
_STRICT = os.environ.pop("HRMCODE_PYTEST_STRICT", None) == "1"
_FRAMEWORK = ("_pytest", "pytest", "pluggy", "unittest")
_SNAPSHOT: dict = {}
_FD = None
_TAG = None
_ROOT = None
if _PATH:
    with open(_PATH + ".nonce", encoding="ascii") as _fh:
        _TAG = _fh.read().strip()
    os.unlink(_PATH + ".nonce")
    _FD = os.open(_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(_PATH)))  # the tree: <root>/<report dir>/<report>


def _emit(record):
    if _FD is not None:
        os.write(_FD, (json.dumps({"nonce": _TAG, **record}) + "\n").encode("utf-8"))


_PLAIN = (int, float, complex, bool, str, bytes, list, tuple, dict, set, frozenset, type(None))


def _plain_mismatch(first, second, depth=0):
    """Where a plain value meets an object of the program's own type posing as one, or None."""
    kinds = [next((p for p in _PLAIN if isinstance(v, p) and type(v).__eq__ is p.__eq__), None) for v in (first, second)]
    for odd, plain in ((first, kinds[1]), (second, kinds[0])):
        if plain is not None and isinstance(getattr(type(odd), "__eq__", None), types.FunctionType):
            return f"{type(odd).__qualname__} (its own __eq__) compared with a {plain.__name__}"
    if depth < 40 and kinds[0] in (list, tuple) and kinds[1] in (list, tuple) and len(first) == len(second):
        return next((m for m in map(_plain_mismatch, first, second, [depth + 1] * len(first)) if m), None)
    if depth < 40 and kinds[0] is dict and kinds[1] is dict:
        return next((m for k in first.keys() & second.keys() if (m := _plain_mismatch(first[k], second[k], depth + 1))), None)
    return None


def _strict_assertion(original):
    def check(self, first, second, *args, **kwargs):
        mismatch = _plain_mismatch(first, second)
        if mismatch is not None:
            raise self.failureException(f"hrmcode strict mode: {mismatch}")
        return original(self, first, second, *args, **kwargs)
    check.__name__ = original.__name__
    return check


def _framework_state():
    """The identity of every function and class attribute of the framework's modules and this plugin."""
    state = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name.split(".")[0] in _FRAMEWORK or name == __name__):
            continue
        for attr, value in list(vars(module).items()):
            if callable(value):
                state[(name, attr)] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                # classmethod, staticmethod and property objects are not callable themselves, but swapping one is tampering
                state.update({(name, attr, key): id(item) for key, item in list(vars(value).items())
                              if callable(item) or isinstance(item, (classmethod, staticmethod, property))})
    return state


def _tampered(nodeid):
    now = _framework_state()
    changed = sorted(".".join(key) for key, ident in _SNAPSHOT.items() if now.get(key, ident) != ident)
    if changed:
        _emit({"kind": "tampered", "nodeid": nodeid, "what": changed[:20]})


def _strict_compare(left, right, equal):
    """``left == right`` (``equal``) or ``left != right`` as an assert wrote it, refusing first what
    ``_plain_mismatch`` refuses."""
    mismatch = _plain_mismatch(left, right)
    if mismatch is not None:
        raise AssertionError(f"hrmcode strict mode: {mismatch}")
    return left == right if equal else left != right


def _guarded_visit_compare(original):
    """pytest's rewriting of a comparison in an assert, with each ``x == y`` / ``x != y`` it stores
    evaluated by ``_strict_compare`` (pytest's own explanation of a failure is kept)."""
    def visit_Compare(self, comp):
        first = len(self.statements)
        result = original(self, comp)
        for statement in self.statements[first:]:
            value = statement.value if isinstance(statement, ast.Assign) else None
            if isinstance(value, ast.Compare) and len(value.ops) == 1 and isinstance(value.ops[0], (ast.Eq, ast.NotEq)):
                equal = ast.Constant(isinstance(value.ops[0], ast.Eq))
                statement.value = ast.copy_location(
                    self.helper("_hrmcode_compare", value.left, value.comparators[0], equal), value)
        return result
    return visit_Compare


if _STRICT:
    for _name in ("assertEqual", "assertNotEqual", "assertCountEqual"):
        setattr(unittest.TestCase, _name, _strict_assertion(getattr(unittest.TestCase, _name)))
    # pytest's plain asserts in test modules too (`assert add(1, 2) == 3`), as pytest rewrites them
    _rewrite.AssertionRewriter.visit_Compare = _guarded_visit_compare(_rewrite.AssertionRewriter.visit_Compare)
    _rewrite._hrmcode_compare = _strict_compare


def pytest_sessionstart(session):
    _emit({"kind": "start"})
    if _STRICT:
        _SNAPSHOT.update(_framework_state())  # before any test module (or the code it imports) runs


def pytest_collectreport(report):
    if report.failed:
        _emit({"kind": "collect", "nodeid": report.nodeid, "outcome": "failed"})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    code = getattr(getattr(item, "obj", None), "__code__", None)
    if code is not None and _ROOT is not None:
        _emit({"kind": "origin", "nodeid": item.nodeid, "file": os.path.relpath(code.co_filename, _ROOT)})


def pytest_runtest_logreport(report):
    context = getattr(report, "context", None)
    if context is not None and hasattr(context, "kwargs"):  # a SubtestReport
        words = [f"[{context.msg}]"] if context.msg is not None else []
        words += [f"{key}={value!r}" for key, value in context.kwargs.items()]
        _emit({"kind": "subtest", "nodeid": report.nodeid, "outcome": report.outcome, "label": " ".join(words)})
    else:
        _emit({"kind": "phase", "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome})
        if _STRICT and report.when == "teardown":
            _tampered(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _emit({"kind": "end", "exitstatus": int(session.exitstatus)})  # what pytest will exit with
