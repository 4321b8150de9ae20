"""Runs one LiveCodeBench candidate against its tests inside the sandbox.

Usage: ``python3 lcb.py job.json``; job = ``{"code", "kind": "stdin"|"functional", "func_name",
"tests": [{"input", "output"}], "timeout", "comparator", "stop_on_fail"}``. Prints one line
``HRMCODE-RESULTS <json>`` last: ``{"results": [1 | -2 | -3 | -4 ...], "error": {...}}`` with
LiveCodeBench's codes (1 pass, -2 wrong answer, -3 time limit exceeded, -4 runtime error).

Every test is a real subprocess of the Python running this driver: stdin problems get the test
input on a real pipe (so ``for line in sys.stdin`` and repeated ``sys.stdin.buffer.readline()``
behave as on a judge); functional problems run ``harness.py``, which reads one JSON argument per
input line, calls ``Solution().<func_name>(*args)`` and compares the result with the expected
value in the same process (``lcb_compare``). Both get LiveCodeBench's import prelude, so code
that relies on it (``List`` without importing typing) is not failed for that.

Standard library only; it never imports hrmcode.
"""

import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # python -I leaves the script's dir out
import lcb_compare  # noqa: E402

MARK = "HRMCODE-RESULTS "
PRELUDE = """from string import *
from re import *
from datetime import *
from collections import *
from heapq import *
from bisect import *
from copy import *
from math import *
from random import *
from statistics import *
from itertools import *
from functools import *
from operator import *
from io import *
from sys import *
from json import *
from builtins import *
from typing import *
import string
import re
import datetime
import collections
import heapq
import bisect
import copy
import math
import random
import statistics
import itertools
import functools
import operator
import io
import sys
import json
sys.setrecursionlimit(50000)
"""

HARNESS = '''
def __hrmcode_main():
    import json as _json, sys as _sys
    import lcb_compare as _compare
    _spec = _json.loads(open("case.json", encoding="utf-8").read())
    _args = [_json.loads(line) for line in _sys.stdin.read().split("\\n") if line.strip()]
    _got = getattr(Solution(), _spec["func_name"])(*_args)
    if isinstance(_got, tuple):
        _got = list(_got)
    _ok = _compare.compare_value(_got, _json.loads(_spec["expected"]), _spec["comparator"])
    _sys.stdout.write("\\nHRMCODE-VERDICT " + _json.dumps({"ok": bool(_ok), "got": repr(_got)[:300]}) + "\\n")

__hrmcode_main()
'''


def _run(argv, stdin_text, timeout):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(stdin_text.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, "", ""
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the program left running
        except OSError:
            pass
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def main():
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    comparator = job.get("comparator", "lcb-exact")
    timeout = float(job.get("timeout", 6))
    functional = job["kind"] == "functional"
    program = PRELUDE + job["code"] + ("\n" + HARNESS if functional else "")
    with open("solution.py", "w", encoding="utf-8") as fh:
        fh.write(program)
    results = []
    error = None
    for index, test in enumerate(job["tests"]):
        if functional:
            with open("case.json", "w", encoding="utf-8") as fh:
                json.dump({"func_name": job["func_name"], "expected": test["output"], "comparator": comparator}, fh)
        code, out, err = _run([sys.executable, "solution.py"], test["input"], timeout)
        if code is None:
            result, message = -3, "Time Limit Exceeded"
        elif code != 0:
            result, message = -4, "Runtime Error: " + (err.strip().splitlines() or ["exit status %d" % code])[-1][:300]
        elif functional:
            verdict = None
            for line in reversed(out.splitlines()):
                if line.startswith("HRMCODE-VERDICT "):
                    verdict = json.loads(line[len("HRMCODE-VERDICT "):])
                    break
            if verdict is None:
                result, message = -4, "Runtime Error: the solution produced no result"
            else:
                result, message = (1, "") if verdict["ok"] else (-2, "Wrong Answer: got " + verdict["got"])
        else:
            ok = lcb_compare.compare_stdout(out, test["output"], comparator)
            result, message = (1, "") if ok else (-2, "Wrong Answer")
        results.append(result)
        if result != 1:
            error = {"test": index, "code": result, "message": message, "input": test["input"][:300],
                     "expected": test["output"][:300], "output": out[:300]}
            if job.get("stop_on_fail", True):
                break
    sys.stdout.write("\n" + MARK + json.dumps({"results": results, "error": error}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
