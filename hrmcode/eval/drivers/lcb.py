"""The trusted LiveCodeBench driver: tests and comparisons run here, each candidate in its own process.

Usage (inside the sandbox): ``python3 -I lcb.py job.json [--sweep]``. The job is ``{"nonce",
"strict", "comparator", "timeout", "problems": {key: {"kind": "stdin"|"functional", "func_name",
"tests": [{"input", "output"}]}}, "samples": [{"problem": key, "code"}]}``; it is read and deleted
before any candidate runs. Prints ``HRMCODE-RESULTS <nonce> <json>`` with ``{"samples": [{"results":
[1 | -2 | -3 | -4 ...], "error": {...}}], "hardened": bool}`` (LiveCodeBench's codes: 1 pass, -2
wrong answer, -3 time limit exceeded, -4 runtime error, -5 test runner error). Like lcb_runner, a
sample stops at its first failing test.

stdin problems: every test is a fresh candidate process (forked from the pre-imported fork server)
that runs the program as ``__main__`` after LiveCodeBench's import prelude, with the test input
on a real pipe (so ``for line in sys.stdin`` and repeated ``sys.stdin.buffer.readline()`` behave as
on a judge). Its stdout comes back here on a pipe and is compared here; a nonzero exit status or a
death by signal is a runtime error. Output beyond 64 MiB is a wrong answer.

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


def _exchange(pid, stdin_w, stdout_r, stderr_r, data, deadline):
    """Feed ``data`` to the program while reading its output, until both pipes close or the deadline.
    Returns (stdout bytes, stderr bytes, timed_out, overflow)."""
    selector = selectors.DefaultSelector()
    os.set_blocking(stdin_w, False)
    out, err, sent = [], [], 0
    sizes = {stdout_r: 0, stderr_r: 0}
    selector.register(stdout_r, selectors.EVENT_READ, out)
    selector.register(stderr_r, selectors.EVENT_READ, err)
    if data:
        selector.register(stdin_w, selectors.EVENT_WRITE, None)
    else:
        os.close(stdin_w)
        stdin_w = None
    timed_out = overflow = False
    readers = 2
    try:
        while readers:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in selector.select(left):
                if key.data is None:
                    try:
                        sent += os.write(stdin_w, data[sent:sent + 65536])
                    except (BrokenPipeError, OSError):
                        sent = len(data)
                    if sent >= len(data):
                        selector.unregister(stdin_w)
                        os.close(stdin_w)
                        stdin_w = None
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    readers -= 1
                    continue
                sizes[key.fd] += len(chunk)
                if sizes[key.fd] > OUTPUT_CAP:
                    overflow = True
                    break
                key.data.append(chunk)
            if overflow:
                break
    finally:
        selector.close()
        for fd in (stdin_w, stdout_r, stderr_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
    return b"".join(out), b"".join(err), timed_out, overflow


def run_stdin(zygote, code, tests, comparator, timeout, strict):
    results, error = [], None
    for index, test in enumerate(tests):
        pid, stdin_w, stdout_r, stderr_r = zygote.script(code)
        deadline = time.monotonic() + timeout
        out, err, timed_out, overflow = _exchange(pid, stdin_w, stdout_r, stderr_r, test["input"].encode("utf-8"),
                                                  deadline)
        status = isolate.TIMED_OUT if timed_out else zygote.wait(pid, max(0.0, deadline - time.monotonic()))
        zygote.finish(pid)
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
        results.append(result)
        if result != 1:
            error = {"test": index, "code": result, "message": message, "input": _short(test["input"]),
                     "expected": _short(test["output"]), "output": _short(output)}
            break
    return results, error


def run_functional(zygote, code, func_name, tests, comparator, timeout, strict):
    results, error = [], None
    pid, channel = zygote.call()
    try:
        deadline = time.monotonic() + timeout
        try:
            channel.send(isolate.encode({"program": code, "filename": "solution.py", "module": MODULE,
                                         "prelude": True, "strict": strict}))
            loaded = channel.recv(deadline)
        except isolate.Timeout:
            return [-3], {"test": 0, "code": -3, "message": "Time Limit Exceeded (loading the program)"}
        except (isolate.ProtocolError, OSError) as exc:
            return [-4], {"test": 0, "code": -4, "message": f"Runtime Error: {exc}"}
        if loaded != ["ok"]:
            reason = f"{loaded[1]}: {loaded[2]}" if isinstance(loaded, list) and len(loaded) == 3 else "a malformed reply"
            return [-4], {"test": 0, "code": -4, "message": f"Runtime Error: {reason}"[:300]}
        for index, test in enumerate(tests):
            got_text = ""
            try:
                args = [json.loads(line) for line in test["input"].split("\n") if line.strip()]
                expected = json.loads(test["output"])
            except ValueError as exc:
                result, message = -5, f"Test Runner Error: the test is not JSON ({exc})"
            else:
                deadline = time.monotonic() + timeout
                try:
                    channel.send(["call", func_name, isolate.encode(args), {"d": []}, True])
                    reply = channel.recv(deadline)
                except isolate.Timeout:
                    reply = None
                    result, message = -3, "Time Limit Exceeded"
                except (isolate.ProtocolError, OSError) as exc:
                    reply = None
                    result, message = -4, f"Runtime Error: {exc}"
                if reply is None:
                    pass
                elif isinstance(reply, list) and len(reply) == 2 and reply[0] == "return":
                    got = reply[1]
                    got_text = repr(got)
                    if lcb_compare.compare_value(got, expected, comparator, strict):
                        result, message = 1, ""
                    else:
                        result, message = -2, "Wrong Answer: got " + _short(got_text)
                elif isinstance(reply, list) and len(reply) == 3 and reply[0] == "raised":
                    result, message = -4, f"Runtime Error: {reply[1]}: {reply[2]}"[:300]
                elif isinstance(reply, list) and len(reply) == 2 and reply[0] == "unencodable":
                    result, message = -2, f"Wrong Answer: returned {reply[1]}"[:300]
                else:
                    result, message = -4, "Runtime Error: the program sent a reply that is not one"
            results.append(result)
            if result != 1:
                error = {"test": index, "code": result, "message": message, "input": _short(test["input"]),
                         "expected": _short(test["output"]), "output": _short(got_text)}
                break
    finally:
        channel.close()
        zygote.finish(pid)
    return results, error


def main():
    hardened = isolate.harden()
    zygote = isolate.Zygote(sweep="--sweep" in sys.argv[2:])
    job = isolate.take_job(sys.argv[1])
    strict, comparator, timeout = bool(job.get("strict")), job.get("comparator", "lcb-exact"), float(job.get("timeout", 6))
    graded = []
    for sample in job["samples"]:
        problem = job["problems"][sample["problem"]]
        if problem["kind"] == "functional":
            results, error = run_functional(zygote, sample["code"], problem["func_name"], problem["tests"], comparator,
                                            timeout, strict)
        else:
            results, error = run_stdin(zygote, sample["code"], problem["tests"], comparator, timeout, strict)
        graded.append({"results": results, "error": error})
    zygote.close()
    isolate.report(job["nonce"], {"samples": graded, "hardened": hardened})


if __name__ == "__main__":
    main()
