"""Run one process group under a wall-clock deadline, capturing capped stdout/stderr.

Guarantees: the child starts in its own session (process group); at the deadline the whole group
gets SIGKILL; stdout and stderr are drained to the end (so the child never blocks on a full pipe)
but only the first ``output_bytes`` of each are kept. Not guaranteed here: killing processes that
left the group (the bubblewrap backend's PID namespace does that; the unsafe backend cannot).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# After the child exits, keep reading its pipes this long for output still in flight; a
# daemonised grandchild that holds them open must not hold the caller.
_DRAIN_GRACE_S = 0.2


@dataclass
class Finished:
    returncode: int  # negative: killed by that signal (Popen's convention)
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    wall_s: float
    timed_out: bool


class CappedOutput:
    """One output stream: everything fed is counted, only the first ``cap`` bytes are kept."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        room = self.cap - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        if data:
            self.chunks.append(data)
            self.kept += len(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError):
        pass  # the child stopped reading: that is its business
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def supervise(
    argv: list[str],
    *,
    timeout_s: float,
    output_bytes: int,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdin: bytes | None = None,
    preexec_fn: Callable[[], None] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Finished:
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, close_fds=True,
        start_new_session=True, preexec_fn=preexec_fn, pass_fds=pass_fds,
    )
    feeder = None
    if stdin is not None:
        feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
        feeder.start()
    captured = {proc.stdout: CappedOutput(output_bytes), proc.stderr: CappedOutput(output_bytes)}
    selector = selectors.DefaultSelector()
    for pipe in captured:
        os.set_blocking(pipe.fileno(), False)
        selector.register(pipe, selectors.EVENT_READ)
    deadline = start + timeout_s
    timed_out = False
    exited_at: float | None = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _DRAIN_GRACE_S:
                break
            if exited_at is None and now >= deadline:
                timed_out = True
                kill_group(proc.pid)
                proc.wait()
                exited_at = time.monotonic()
                continue
            wait = min(deadline - now, 0.05) if exited_at is None else _DRAIN_GRACE_S
            for key, _ in selector.select(timeout=max(wait, 0.001)):
                try:
                    data = os.read(key.fileobj.fileno(), 1 << 16)
                except BlockingIOError:
                    continue
                if data:
                    captured[key.fileobj].add(data)
                else:
                    selector.unregister(key.fileobj)
        remaining = deadline - time.monotonic()
        if proc.poll() is None:
            try:
                proc.wait(timeout=max(remaining, 0))
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(proc.pid)
                proc.wait()
    finally:
        selector.close()
        for pipe in captured:
            pipe.close()
        if proc.poll() is None:  # an exception on our side: never leave the group running
            kill_group(proc.pid)
            proc.wait()
        if feeder is not None:
            feeder.join(timeout=1)
    out, err = captured[proc.stdout], captured[proc.stderr]
    return Finished(proc.returncode, out.value(), err.value(), out.truncated, err.truncated,
                    time.monotonic() - start, timed_out)
