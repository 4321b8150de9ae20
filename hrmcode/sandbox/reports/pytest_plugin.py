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
"""

import json
import os

import pytest

_PATH = os.environ.pop("HRMCODE_PYTEST_REPORT", None)
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


def pytest_sessionstart(session):
    _emit({"kind": "start"})


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


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _emit({"kind": "end", "exitstatus": int(session.exitstatus)})  # what pytest will exit with
