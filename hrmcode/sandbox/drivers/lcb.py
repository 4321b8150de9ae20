"""The trusted LiveCodeBench driver: tests and comparisons run here, each candidate in its own process.

Usage (inside the sandbox): ``python3 -I lcb.py job.json [--sweep]``. The job is ``{"nonce",
"strict", "comparator", "timeout", "problems": {key: {"kind": "stdin"|"functional", "func_name",
"tests": [{"input", "output"}]}}, "samples": [{"problem": key, "code"}]}``; it is read and deleted
before any candidate runs. Prints ``HRMCODE-RESULTS <nonce> <json>`` with ``{"samples": [{"results":
[1 | -2 | -3 | -4 ...], "error": {...}}], "hardened": bool}`` (LiveCodeBench's codes: 1 pass, -2
wrong answer, -3 time limit exceeded, -4 runtime error, -5 test runner error). Like lcb_runner, a
sample stops at its first failing test.

stdin problems: one candidate process per sample (forked from the pre-imported fork server) runs
the program as ``__main__``, in fresh globals after LiveCodeBench's import prelude, once per test,
each time on new stdin/stdout/stderr pipes it receives from here (so ``for line in sys.stdin`` and
repeated ``sys.stdin.buffer.readline()`` behave as on a judge); a run that ends the process
(``os._exit``, a signal) gets a new process for the next test. The output comes back on the pipe and
is compared here; a nonzero exit status or a death by signal is a runtime error. Output beyond 64
MiB is a wrong answer. The exit status of a run that returns normally is reported by the
candidate's process itself: a program can make a crash after printing the right output look like a
clean exit, never make a wrong output pass. What one test's run leaves in the process (imported
modules, changed module state) is seen by the next test's run, as in lcb_runner, and processes a
run starts live until its sample ends (then they are killed with it, before the next sample).

functional problems: one candidate process per sample imports the program as a module named
``solution`` (so an ``if __name__ == "__main__":`` block does not run, as in lcb_runner), after
the prelude; each test calls ``Solution().<func_name>(*args)`` on a FRESH ``Solution`` (or the
module-level function when there is no ``Solution`` class, as lcb_runner) in that process, and the
value comes back as data (``isolate.encode``) to be compared here (``lcb_compare``).

Guarantees: the expected outputs, the other tests and samples and the nonce never enter a
candidate's process; a candidate cannot change a comparison (it only ever sends bytes or data),
so printing a verdict line, exiting early, patching builtins or returning an object whose ``__eq__``
lies cannot make a test pass. Per-test timeout: ``timeout`` seconds (6 by default, as lcb_runner).

Standard library only; never imports hrmcode.
"""

import json
import os
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # python -I leaves the script's dir out
import isolate  # noqa: E402
import lcb_compare  # noqa: E402

del sys.path[0]  # nothing is imported from the writable work dir after this point

OUTPUT_CAP = 64 << 20
MODULE = "solution"


def _short(text):
    return text if len(text) <= 300 else text[:150] + "...(truncated) ..." + text[-150:]


def _judge_tests(tests, judge):
    """``judge(test)`` -> (result, message, output) on each test in turn; the first failing test ends the
    sample. (results, the failure's error record or None)."""
    results = []
    for index, test in enumerate(tests):
        result, message, output = judge(test)
        results.append(result)
        if result != 1:
            return results, {"test": index, "code": result, "message": message, "input": _short(test["input"]),
                             "expected": _short(test["output"]), "output": _short(output)}
    return results, None


def _run_test(ctl, data, deadline):
    """One run of the program on ``data``: feed stdin, read stdout/stderr, and wait for the run's
    status on ``ctl``. Returns (stdout, stderr, status, overflow); status is None when the process
    ended without reporting one (it left by os._exit or was killed), TIMED_OUT at the deadline."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.set_blocking(in_w, False)
    sent = 0
    try:
        sent = os.write(in_w, data) if data else 0  # most inputs fit in the pipe before the run starts
    except BlockingIOError:
        pass
    try:
        socket.send_fds(ctl, [b"T"], [in_r, out_w, err_w])
        dead = False
    except OSError:
        dead = True
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    if sent >= len(data):
        os.close(in_w)
        in_w = None
    selector = selectors.DefaultSelector()
    out, err, sizes = [], [], {out_r: 0, err_r: 0}
    selector.register(out_r, selectors.EVENT_READ, out)
    selector.register(err_r, selectors.EVENT_READ, err)
    if in_w is not None:
        selector.register(in_w, selectors.EVENT_WRITE, "stdin")
    if not dead:
        selector.register(ctl, selectors.EVENT_READ, "status")
    status, overflow, open_pipes = None, False, 2
    try:
        while open_pipes or (status is None and not dead):
            left = deadline - time.monotonic()
            if left <= 0:
                if status is None:  # else: the run ended, something it left holds the pipes open
                    status = isolate.TIMED_OUT
                break
            events = selector.select(left)
            for key, _ in events:
                if key.data == "stdin":
                    try:
                        sent += os.write(in_w, data[sent:sent + 65536])
                    except BlockingIOError:
                        continue
                    except OSError:
                        sent = len(data)
                    if sent >= len(data):
                        selector.unregister(in_w)
                        os.close(in_w)
                        in_w = None
                elif key.data == "status":
                    selector.unregister(ctl)
                    try:
                        reply = ctl.recv(4)
                    except OSError:
                        reply = b""
                    if len(reply) == 4:
                        status = struct.unpack("!i", reply)[0]
                    else:
                        dead = True
                else:
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fd)
                        open_pipes -= 1
                        continue
                    sizes[key.fd] += len(chunk)
                    if sizes[key.fd] > OUTPUT_CAP:
                        overflow = True
                    else:
                        key.data.append(chunk)
            if overflow:
                break
            if status is not None and open_pipes:
                # the run reported its end after closing its stdio: what is left is already in the pipes
                deadline = min(deadline, time.monotonic() + 0.5)
    finally:
        selector.close()
        for fd in (in_w, out_r, err_r):
            if fd is not None:
                os.close(fd)
    return b"".join(out), b"".join(err), status, overflow


def run_stdin(zygote, code, tests, comparator, timeout):
    """Every test runs the program afresh as ``__main__`` in the sample's own process (a new one
    when a run ended it); the first failing test ends the sample."""
    spawned = ctl = None

    def judge(test):
        nonlocal spawned, ctl
        if ctl is None:
            spawned, ctl = zygote.runner(code)
        deadline = time.monotonic() + timeout
        out, err, status, overflow = _run_test(ctl, test["input"].encode("utf-8"), deadline)
        if status is None or status == isolate.TIMED_OUT or overflow:
            ctl.close()
            ctl = None
            if status is None:  # it ended itself: its real exit status, from its parent
                status = zygote.wait(spawned, max(0.0, deadline - time.monotonic()))
            zygote.finish(spawned)
        output = out.decode("utf-8", "replace")
        if overflow:
            result, message = -2, f"Wrong Answer: more than {OUTPUT_CAP >> 20} MiB of output"
        elif status == isolate.TIMED_OUT:
            result, message = -3, "Time Limit Exceeded"
        elif status is None:
            result, message = -4, "Runtime Error: the program stopped the fork server"
        elif status != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else (f"killed by signal {-status}" if status < 0 else f"exit status {status}")
            result, message = -4, "Runtime Error: " + reason[:300]
        elif lcb_compare.compare_stdout(output, test["output"], comparator):
            result, message = 1, ""
        else:
            result, message = -2, "Wrong Answer"
        return result, message, output

    try:
        return _judge_tests(tests, judge)
    finally:
        if ctl is not None:
            ctl.close()
            zygote.finish(spawned)


def run_functional(zygote, code, func_name, tests, comparator, timeout, strict):
    setup = isolate.encode({"program": code, "filename": "solution.py", "module": MODULE, "prelude": True,
                            "strict": strict})
    spawned, channel = zygote.call(setup)
    load_budget = timeout  # the first test's deadline also covers importing the program, as lcb_runner's

    def judge(test):
        nonlocal load_budget
        got_text = ""
        try:
            args = [json.loads(line) for line in test["input"].split("\n") if line.strip()]
            expected = json.loads(test["output"])
        except ValueError as exc:
            result, message = -5, f"Test Runner Error: the test is not JSON ({exc})"
        else:
            deadline = time.monotonic() + timeout + load_budget
            load_budget = 0
            try:
                channel.send(["call", func_name, isolate.encode(args), {"d": []}, True])
                reply = channel.recv(deadline)
            except isolate.Timeout:
                reply, result, message = None, -3, "Time Limit Exceeded"
            except (isolate.ProtocolError, OSError) as exc:
                reply, result, message = None, -4, f"Runtime Error: {exc}"
            if reply is None:
                pass
            elif isinstance(reply, list) and len(reply) == 2 and reply[0] == "return":
                got_text = repr(reply[1])
                if lcb_compare.compare_value(reply[1], expected, comparator, strict):
                    result, message = 1, ""
                else:
                    result, message = -2, "Wrong Answer: got " + _short(got_text)
            elif isinstance(reply, list) and len(reply) == 3 and reply[0] in ("raised", "load-raised"):
                result, message = -4, f"Runtime Error: {reply[1]}: {reply[2]}"[:300]
            elif isinstance(reply, list) and len(reply) == 2 and reply[0] == "unencodable":
                result, message = -2, f"Wrong Answer: returned {reply[1]}"[:300]
            else:
                result, message = -4, "Runtime Error: the program sent a reply that is not one"
        return result, message, got_text

    try:
        return _judge_tests(tests, judge)
    finally:
        channel.close()
        zygote.finish(spawned)


def main():
    hardened = isolate.harden()
    zygote = isolate.Zygote(sweep="--sweep" in sys.argv[2:], prelude=True)
    job = isolate.take_job(sys.argv[1])
    strict, comparator, timeout = bool(job.get("strict")), job.get("comparator", "lcb-exact"), float(job.get("timeout", 6))
    graded = []
    for sample in job["samples"]:
        problem = job["problems"][sample["problem"]]
        if problem["kind"] == "functional":
            results, error = run_functional(zygote, sample["code"], problem["func_name"], problem["tests"], comparator,
                                            timeout, strict)
        else:
            results, error = run_stdin(zygote, sample["code"], problem["tests"], comparator, timeout)
        graded.append({"results": results, "error": error})
    zygote.close()
    isolate.report(job["nonce"], {"samples": graded, "hardened": hardened})


if __name__ == "__main__":
    main()
