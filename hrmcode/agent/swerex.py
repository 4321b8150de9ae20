"""The agent's session on a SWE-ReX deployment: the same ``Session`` (``hrmcode.sandbox.base``) that
``run_agent`` drives, carried out by SWE-ReX (``swe-rex``, the runtime behind SWE-agent) instead of
an hrmcode sandbox backend.

Contract (what ``eval swe --runtime`` and any other caller rely on)::

    open_swerex_session(spec, files=None, limits=None, *, worker=0, env=None) -> Session
    is_swerex_spec(spec) -> bool          # spec.startswith("swerex:")

``spec`` names the deployment; ``files`` are written into the work dir before the session is
returned; ``limits`` (``Limits``) give each command's default timeout, output cap, CPU seconds and,
where the deployment can apply them, memory, processes and disk; ``env`` is added to every
command's environment. A spec that is not one of the forms below is a ``UsageError``; a deployment
that cannot start is a ``SandboxError`` or ``ToolchainMissing`` (one line, with a hint).

Specs and what each isolates:

- ``swerex:docker`` / ``swerex:docker:IMAGE`` — SWE-ReX's ``DockerDeployment``, one container per
  session, never pulled from a registry (``pull="never"``). Without ``IMAGE``: ``hrmcode-swerex:<hash>``,
  built offline by ``swerex_image()`` as one ``pip install swe-rex`` layer on top of hrmcode's own
  sandbox image (``hrmcode sandbox build``: a debootstrap'ed or pulled Debian base). ``IMAGE`` must
  have ``swerex-remote`` on its PATH. The container runs as uid 1000 with every capability dropped,
  ``no-new-privileges``, a read-only root, ``/work`` and ``/tmp`` as tmpfs capped at
  ``Limits.disk_mb``/``inodes``, the memory and pids limits of ``Limits``, ``--init``, and hrmcode's
  owner labels (so ``hrmcode sandbox clean`` removes what a SIGKILLed run left). NOT isolated like
  hrmcode's docker backend: SWE-ReX reaches its server through a published port, so the container
  is on Docker's default bridge network (the agent can reach the network) and the server's port is
  published on every host interface, guarded only by its random token.
- ``swerex:bwrap`` — ``swerex-remote`` started by hrmcode inside its bubblewrap profile
  (``hrmcode.sandbox.local``: private root of ``/usr`` and the toolchains, a per-worker uid,
  seccomp, PID/IPC/UTS namespaces, the run dir capped at ``disk_mb``/``inodes``, a memory cgroup),
  reached by a ``RemoteDeployment`` on 127.0.0.1. To be reachable the server must share the HOST's
  network namespace, so the agent's commands do too: they can connect to every service listening
  on the host's loopback (a model server, a database, other sessions' SWE-ReX servers, whose
  tokens they cannot read) and to the LAN and the internet. Use it where that is acceptable;
  hrmcode's own ``local`` backend keeps the network to a private loopback. The hrmcode venv's
  site-packages is visible read-only at ``/opt/hrmcode/swerex-site`` (the server runs from it);
  commands get hrmcode's sandbox environment, without it on their ``PYTHONPATH``.
- ``swerex:remote:URL`` — an ``swerex-remote`` someone else started (token in
  ``$HRMCODE_SWEREX_TOKEN``). Isolation is whatever that server's host gives; the work dir is a
  fresh ``mktemp -d`` there, removed at ``close``.
- ``swerex:local-unsafe`` — SWE-ReX's ``LocalDeployment``: NO isolation. Commands run as the
  calling user on this host's filesystem and network, in a temporary directory. For tests only.

Every command is ``/bin/bash -c command`` started by SWE-ReX's ``execute`` (a fresh subprocess,
not SWE-ReX's stateful pexpect shell, as Seam 1 asks: only files persist) in the work dir, under a
wrapper that applies the timeout (``timeout -s KILL``; SWE-ReX's own timeout is a backstop
``_BACKSTOP_S`` later), the CPU seconds (``ulimit -t``) and the output cap (``Limits.output_bytes``
of each stream, counted in bytes before decoding; the rest is drained, not kept), and then kills
the command's process group. In ``docker`` and ``bwrap``, whose PID namespace belongs to the
session, it also kills every other process that is not the server or its ancestors, so a
``setsid`` daemon does not outlive its command either. In ``remote`` and ``local-unsafe`` a daemon
that left the process group survives, and one that keeps the command's output open makes the
command run until its timeout.

``read_files`` never follows a symlink: ``find -type f`` (which does not follow links) lists the
regular files up to ``max_file_bytes`` outside ``.git`` directories, ``tar`` archives them (tar's
default: links are stored as links, never followed; hard links stored as content), the archive
comes back base64 over the command channel, and only regular-file members with a clean relative
name are kept. ``write_files`` checks names here (``UsageError`` for one leaving the work dir),
uploads one tar, and unpacks it inside the runtime without following links: a planted link on the
way is refused (``SandboxError``), a planted link, fifo or hard link at the name is replaced.

The async SWE-ReX API is bridged to this synchronous protocol by one event loop per session on its
own thread (``benchmarks/swerex_step.py`` compares it with ``asyncio.run`` per call). Not
guaranteed: ``ExecResult.memory_exceeded`` is read from the command's stderr only; commands longer
than aiohttp's default 300 s client timeout end as timed out whatever ``timeout_s`` says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import logging
import os
import secrets
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import swerex.runtime.remote
from swerex.deployment.abstract import AbstractDeployment
from swerex.deployment.docker import DockerDeployment
from swerex.deployment.local import LocalDeployment
from swerex.deployment.remote import RemoteDeployment
from swerex.exceptions import CommandTimeoutError
from swerex.runtime.abstract import Command, UploadRequest

from hrmcode.errors import HrmcodeError, SandboxError, UsageError
from hrmcode.sandbox import _cgroup, docker_backend, local, runs
from hrmcode.sandbox._proc import Finished
from hrmcode.sandbox.base import ExecResult, Limits
from hrmcode.sandbox.session import MAX_DEPTH, command_limits, session_relpath

PREFIX = "swerex:"
SPEC_FORMS = ("swerex:docker", "swerex:docker:IMAGE", "swerex:bwrap", "swerex:remote:URL", "swerex:local-unsafe")
SWEREX_REQUIREMENTS = ("swe-rex==1.4.0", "aiohttp==3.14.5")  # aiohttp: swe-rex imports it without declaring it
TOKEN_ENV = "HRMCODE_SWEREX_TOKEN"
_BACKSTOP_S = 10.0  # SWE-ReX's own timeout and this side's wait, past the wrapper's kill
_START_TIMEOUT_S = 60.0
_DOCKER_UID = 1000  # the image's "sandbox" user
_SITE_MOUNT = f"{local.OPT}/swerex-site"
_TIMEOUTS = (CommandTimeoutError, TimeoutError, asyncio.TimeoutError)
# swe-rex 1.4.0's RemoteRuntime prints "module ExceptionName" on stdout for every exception its server
# sends back (a command that outlived SWE-ReX's timeout); hrmcode's stdout carries results (--json).
swerex.runtime.remote.print = lambda *args, **kwargs: None
_LOG = logging.getLogger("hrmcode.swerex")
_LOG.addHandler(logging.NullHandler())  # SWE-ReX logs a server's traceback as critical; not the terminal's business

# $1 command, $2 timeout s, $3 output cap + 1, $4 "-i" to clear the environment or "", $5 work dir,
# $6 "1" to sweep the PID namespace afterwards, $7 CPU seconds, then NAME=VALUE environment pairs.
_WRAPPER = r'''
cmd=$1 limit=$2 cap=$3 clear=$4 work=$5 sweep=$6 cpu=$7
shift 7
cd -- "$work" || exit 125
exec 3> >(head -c "$cap"; exec cat >/dev/null) 4> >(head -c "$cap" >&2; exec cat >/dev/null) 2>/dev/null
(ulimit -t "$cpu"; exec timeout -s KILL "$limit" env $clear "$@" /bin/bash -c "$cmd") </dev/null >&3 2>&4 3>&- 4>&- &
t=$!
wait "$t"
rc=$?
kill -9 -- "-$t" 2>/dev/null
exec 3>&- 4>&-
parent() {  # P = the parent of $1; false when $1 is gone or a zombie
  local s
  read -r s < "/proc/$1/stat" 2>/dev/null || return 1
  s=${s##*) }
  set -- $s
  [ "$1" != Z ] && P=$2
}
if [ "$sweep" = 1 ]; then
  keep=" 1 " p=$$
  while [ "$p" -gt 1 ] && parent "$p"; do keep="$keep$p "; p=$P; done
  for ((pass = 0; pass < 200; pass++)); do  # no fork: a fork bomb's leftovers may hold every pid
    killed=0
    for q in /proc/[0-9]*; do
      q=${q#/proc/}
      case "$keep" in *" $q "*) continue ;; esac
      p=$q mine=0
      while parent "$p" && [ "$P" -gt 1 ]; do
        if [ "$P" = $$ ]; then mine=1; break; fi
        p=$P
      done
      [ "$mine" = 1 ] && continue
      parent "$q" || continue
      kill -9 "$q" 2>/dev/null && killed=1
    done
    [ "$killed" = 0 ] && break
  done
fi
exit "$rc"
'''

# find lists regular files without following links; tar stores what it is given without following.
_READ = r'''
set -o pipefail
cd -- "$1" || exit 125
find . -mindepth 1 -maxdepth "$3" \( -name .git -type d -prune \) -o -type f -size "-$2c" -print0 \
  | tar --null --no-recursion --hard-dereference -T - -cf - | base64 -w0
'''

# Unpacks the tar $1 into $2 without following any link: every directory is opened with
# O_NOFOLLOW relative to its parent; exit 3 with the reason on stderr when a name cannot be written.
_UNPACK = r'''
import os, stat, sys, tarfile
D = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
def fail(message):
    sys.stderr.write(message)
    sys.exit(3)
with tarfile.open(sys.argv[1], "r:") as archive:
    for member in archive:
        parts = member.name.split("/")
        if not member.isreg() or member.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            fail("bad member %r" % member.name)
        fd = os.open(sys.argv[2], D)
        try:
            for index, part in enumerate(parts[:-1]):
                try:
                    try:
                        child = os.open(part, D, dir_fd=fd)
                    except FileNotFoundError:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        child = os.open(part, D, dir_fd=fd)
                except OSError as exc:
                    fail("cannot write under %r in the session: %s" % ("/".join(parts[:index + 1]), exc.strerror))
                os.close(fd)
                fd = child
            leaf = parts[-1]
            try:
                info = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None and stat.S_ISDIR(info.st_mode):
                fail("cannot write %r in the session: it is a directory" % member.name)
            if info is not None and (not stat.S_ISREG(info.st_mode) or info.st_nlink > 1):
                os.unlink(leaf, dir_fd=fd)
            data = archive.extractfile(member).read()
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            out = os.open(leaf, flags, 0o755 if data.startswith(b"#!") else 0o644, dir_fd=fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
            finally:
                os.close(out)
        finally:
            os.close(fd)
'''

# The bwrap deployment's server: the token comes from the environment, never the command line
# (another user on the host can read a command line); it listens on 127.0.0.1 only.
_SERVE = r'''
import os, sys, uvicorn, swerex.server as server
server.AUTH_TOKEN = os.environ.pop("HRMCODE_SWEREX_TOKEN")
uvicorn.run(server.app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


@dataclass(frozen=True)
class SwerexSpec:
    kind: str  # "docker" | "bwrap" | "remote" | "local-unsafe"
    target: str = ""  # docker: the image ("" = hrmcode's); remote: the URL


def is_swerex_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse_spec(spec: str) -> SwerexSpec:
    """``spec`` as a ``SwerexSpec``, or a ``UsageError`` naming the forms."""
    kind, _, target = spec.removeprefix(PREFIX).partition(":")
    valid = is_swerex_spec(spec) and (
        (kind == "docker") or (kind == "remote" and target.startswith(("http://", "https://")))
        or (kind in ("bwrap", "local-unsafe") and not target))
    if not valid:
        raise UsageError(f"unknown SWE-ReX deployment {spec!r}", f"use one of: {', '.join(SPEC_FORMS)}")
    return SwerexSpec(kind, target)


def open_swerex_session(spec: str, files: dict[str, str | bytes] | None = None, limits: Limits | None = None, *,
                        worker: int = 0, env: dict[str, str] | None = None) -> SwerexSession:
    """Start the deployment ``spec`` names (see the module docstring), write ``files`` into its work
    dir and return the session; the caller closes it (or uses ``with``)."""
    parsed = parse_spec(spec)
    limits = limits or Limits()
    starter = {"docker": _DockerStarter, "bwrap": _BwrapStarter, "remote": _RemoteStarter,
               "local-unsafe": _LocalStarter}[parsed.kind](parsed, limits, worker)
    session = SwerexSession(spec, starter, limits, env)
    try:
        session.write_files(files or {})
    except BaseException:
        session.close()
        raise
    return session


class _EventLoop:
    """One asyncio loop on a daemon thread: SWE-ReX's coroutines run there, callers wait here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hrmcode-swerex", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout_s: float | None = None):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class SwerexSession:
    """A ``Session`` over a started SWE-ReX deployment; see the module docstring."""

    def __init__(self, spec: str, starter: _Starter, limits: Limits, env: dict[str, str] | None) -> None:
        self.spec = spec
        self.limits = limits
        self.env = dict(env or {})
        self.closed = False
        self._starter = starter
        self._lock = threading.Lock()  # one command or file transfer at a time
        self._closing = threading.Lock()
        self._loop = _EventLoop()
        try:
            self.deployment = starter.deployment()
            self._loop.run(self.deployment.start(), _START_TIMEOUT_S + _BACKSTOP_S)
            self.runtime = self.deployment.runtime
            self.runtime.logger = _LOG  # SWE-ReX's own loggers print DEBUG lines to the terminal
            self.workdir = starter.workdir(self._raw)
        except BaseException as exc:
            self._teardown()
            if not isinstance(exc, Exception) or isinstance(exc, HrmcodeError):
                raise
            raise SandboxError(f"the SWE-ReX deployment {spec!r} did not start: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:300]}", starter.hint) from None

    def describe(self) -> str:
        return f"SWE-ReX {self._starter.describe()}"

    # -- Session ---------------------------------------------------------------------------

    def exec(self, command: str, *, timeout_s: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        """``/bin/bash -c command`` in the work dir under the wrapper of the module docstring."""
        limits = command_limits(self.limits, timeout_s)
        with self._lock:
            self._check_open()
            return self._exec(command, limits, {**self._starter.base_env, **self.env, **(env or {})})

    def read_files(self, max_file_bytes: int = 1 << 20) -> dict[str, bytes]:
        with self._lock:
            self._check_open()
            response = self._raw(["/bin/bash", "-c", _READ, "read", self.workdir, str(max_file_bytes + 1),
                                  str(MAX_DEPTH + 1)], timeout_s=self.limits.timeout_s + 60)
            if response.exit_code != 0:
                raise SandboxError(f"reading the session's files failed (exit {response.exit_code}): "
                                   f"{response.stderr.strip()[-300:]}", "the work dir may have been removed")
            return _members(base64.b64decode(response.stdout), max_file_bytes)

    def write_files(self, files: dict[str, str | bytes]) -> None:
        checked = {name: session_relpath(name) for name in files}
        if not files:
            return
        with self._lock:
            self._check_open()
            with tempfile.TemporaryDirectory(prefix="hrmcode-swerex-") as tmp:
                archive = Path(tmp) / "files.tar"
                with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
                    for name in sorted(files):
                        data = files[name]
                        raw = data.encode() if isinstance(data, str) else data
                        info = tarfile.TarInfo(checked[name].as_posix())
                        info.size = len(raw)
                        tar.addfile(info, io.BytesIO(raw))
                stage = f"{self._starter.stage_dir}/hrmcode-files-{secrets.token_hex(8)}.tar"
                self._call(self.runtime.upload(UploadRequest(source_path=str(archive), target_path=stage)),
                           self.limits.timeout_s + 60)
            response = self._raw(["/bin/sh", "-c", 'python3 -c "$0" "$1" "$2"; rc=$?; rm -f -- "$1"; exit $rc',
                                  _UNPACK, stage, self.workdir], timeout_s=self.limits.timeout_s + 60)
            if response.exit_code == 3:
                raise SandboxError(response.stderr.strip()[-300:], "the commands put a symlink or a file there; "
                                   "it is never followed")
            if response.exit_code != 0:
                raise SandboxError(f"writing files into the session failed (exit {response.exit_code}): "
                                   f"{response.stderr.strip()[-300:]}", "the work dir may have been removed")

    def close(self) -> None:
        """Idempotent: stop the deployment (its container, server and every process under it) and
        remove the work dir. From another thread while a command runs, that command ends with a
        ``SandboxError``."""
        with self._closing:
            if self.closed:
                return
            self.closed = True
        self._teardown()

    def __enter__(self) -> SwerexSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxError("the SWE-ReX session is closed", "open a new one with open_swerex_session()")

    def _raw(self, argv: list[str], *, timeout_s: float):
        """One SWE-ReX ``execute`` of ``argv`` (no shell), its ``CommandResponse``; timeouts pass
        through, any other failure of the runtime is a ``SandboxError``."""
        return self._call(self.runtime.execute(Command(command=argv, timeout=timeout_s)), timeout_s + _BACKSTOP_S)

    def _call(self, coroutine, timeout_s: float):
        try:
            return self._loop.run(coroutine, timeout_s)
        except _TIMEOUTS:
            raise
        except Exception as exc:
            raise SandboxError(f"the SWE-ReX runtime failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                               "a command may have killed its server; open a new session") from None

    def _exec(self, command: str, limits: Limits, env: dict[str, str]) -> ExecResult:
        argv = ["/bin/bash", "-c", _WRAPPER, "hrmcode-swerex", command, f"{limits.timeout_s:g}",
                str(limits.output_bytes + 1), "-i" if self._starter.clear_env else "", self.workdir,
                "1" if self._starter.sweeps else "0", str(runs.cpu_seconds(limits)),
                *(f"{key}={value}" for key, value in env.items())]
        start = time.monotonic()
        try:
            response = self._raw(argv, timeout_s=limits.timeout_s + _BACKSTOP_S)
        except _TIMEOUTS:
            self._sweep()  # the wrapper never got to its own
            finished = Finished(-9, b"", b"", False, False, time.monotonic() - start, True)
            return self._result(finished, limits)
        wall = time.monotonic() - start
        if response.exit_code is None or response.exit_code < 0:  # the command killed its wrapper
            self._sweep()
        stdout, stderr = response.stdout.encode(), response.stderr.encode()
        code = response.exit_code if response.exit_code is not None else -9
        timed_out = code == 128 + 9 and wall >= limits.timeout_s  # `timeout -s KILL` fired
        finished = Finished(code, stdout[:limits.output_bytes], stderr[:limits.output_bytes],
                            len(stdout) > limits.output_bytes, len(stderr) > limits.output_bytes, wall, timed_out)
        return self._result(finished, limits)

    def _sweep(self) -> None:
        """The wrapper's sweep on its own, for when the wrapper itself did not finish."""
        if self._starter.sweeps:
            with contextlib.suppress(Exception):
                self._raw(["/bin/bash", "-c", _WRAPPER, "sweep", "true", "5", "1", "", "/", "1", "5"], timeout_s=30)

    def _result(self, finished: Finished, limits: Limits) -> ExecResult:
        result = runs.interpret(finished, limits, signal_offset=True)
        result.memory_cap = self._starter.memory_cap
        return result

    def _teardown(self) -> None:
        deployment = getattr(self, "deployment", None)
        try:
            if deployment is not None and getattr(self, "workdir", None):
                with contextlib.suppress(Exception):
                    self._starter.remove_workdir(self._raw, self.workdir)
        finally:
            try:
                self._starter.stop()  # first: a server that is gone answers the deployment's stop at once
                if deployment is not None:
                    with contextlib.suppress(Exception):
                        self._loop.run(deployment.stop(), 30)
            finally:
                self._loop.close()


def _members(archive: bytes, max_file_bytes: int) -> dict[str, bytes]:
    """The regular files of a tar made in the runtime; links, devices, names leaving the work dir,
    ``.git`` paths and files over ``max_file_bytes`` are skipped."""
    files: dict[str, bytes] = {}
    if not archive:
        return files
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if not member.isreg() or member.size > max_file_bytes:
                continue
            path = PurePosixPath(member.name)
            parts = [part for part in path.parts if part != "."]
            if path.is_absolute() or not parts or ".." in parts or ".git" in parts[:-1]:
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                files["/".join(parts)] = handle.read()
    return files


# -- deployments ----------------------------------------------------------------------------------

class _Starter:
    """What differs between deployments: how to make it, its work dir, what the wrapper does."""

    hint = "check the SWE-ReX deployment"
    clear_env = False  # the wrapper starts commands with only base_env + the session's env
    sweeps = False  # the session owns the PID namespace: kill whatever a command left
    base_env: dict[str, str] = {}
    stage_dir = "/tmp"
    memory_cap = "none (SWE-ReX deployment without a memory cap)"

    def __init__(self, spec: SwerexSpec, limits: Limits, worker: int) -> None:
        self.spec, self.limits, self.worker = spec, limits, worker

    def deployment(self) -> AbstractDeployment:
        raise NotImplementedError

    def describe(self) -> str:
        return self.spec.kind

    def workdir(self, raw) -> str:
        response = raw(["mktemp", "-d", "/tmp/hrmcode-swerex-XXXXXXXX"], timeout_s=30)
        if response.exit_code != 0:
            raise SandboxError(f"could not make a work dir in the SWE-ReX runtime: {response.stderr.strip()[-200:]}",
                               self.hint)
        return response.stdout.strip()

    def remove_workdir(self, raw, workdir: str) -> None:
        raw(["rm", "-rf", "--", workdir], timeout_s=60)

    def stop(self) -> None:
        """Release what the deployment's own ``stop`` does not (a server process, a run dir)."""


class _LocalStarter(_Starter):
    hint = "the local-unsafe deployment needs bash and coreutils on this host"

    def deployment(self) -> AbstractDeployment:
        return LocalDeployment(logger=_LOG)

    def describe(self) -> str:
        return "local-unsafe (no isolation)"


class _RemoteStarter(_Starter):
    hint = f"start swerex-remote there and put its token in ${TOKEN_ENV}"

    def deployment(self) -> AbstractDeployment:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise UsageError(f"{self.spec.target} needs the swerex-remote server's token", f"set ${TOKEN_ENV}")
        return RemoteDeployment(logger=_LOG, host=self.spec.target, auth_token=token, timeout=5.0)

    def describe(self) -> str:
        return f"remote {self.spec.target}"


class _DockerStarter(_Starter):
    hint = "hrmcode sandbox build makes the base images; `docker info` shows whether the engine runs"
    clear_env = True
    sweeps = True
    base_env = docker_backend.ENV

    def __init__(self, spec: SwerexSpec, limits: Limits, worker: int) -> None:
        super().__init__(spec, limits, worker)
        self.memory_cap = "docker (whole container)"
        self.image = spec.target or swerex_image()

    def deployment(self) -> AbstractDeployment:
        limits = self.limits
        pid = os.getpid()
        docker_args = [
            "--init", "--user", f"{_DOCKER_UID}:{_DOCKER_UID}", "--hostname", "sandbox", "--workdir", "/work",
            "--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m",
            "--pids-limit", str(limits.processes), "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--read-only", "--tmpfs", f"/tmp:size={limits.disk_mb}m,nr_inodes={limits.inodes},exec,mode=1777",
            "--tmpfs", f"/work:size={limits.disk_mb}m,nr_inodes={limits.inodes},exec,mode=1777",
            "--ulimit", f"fsize={limits.file_size_mb << 20}", "--ulimit", f"nofile={runs.NOFILE}",
            "--ulimit", "core=0",
            "--label", f"{docker_backend.LABEL}=1", "--label", f"{docker_backend.OWNER_LABEL}={pid}",
            "--label", f"{docker_backend.OWNER_START_LABEL}={runs.process_start_time(pid)}",
        ]
        return DockerDeployment(logger=_LOG, image=self.image, pull="never", docker_args=docker_args,
                                startup_timeout=_START_TIMEOUT_S)

    def describe(self) -> str:
        return f"docker ({self.image})"

    def workdir(self, raw) -> str:
        return "/work"

    def remove_workdir(self, raw, workdir: str) -> None:
        """The container and its tmpfs go with it."""


class _BwrapStarter(_Starter):
    hint = "the bwrap deployment needs bubblewrap (apt-get install bubblewrap) and swe-rex in hrmcode's venv"
    clear_env = True
    sweeps = True

    def __init__(self, spec: SwerexSpec, limits: Limits, worker: int) -> None:
        super().__init__(spec, limits, worker)
        self.sandbox = local.BubblewrapSandbox()
        self.base_env = local.base_env()
        self._stack = contextlib.ExitStack()
        self._server: subprocess.Popen | None = None

    def deployment(self) -> AbstractDeployment:
        # The server lives as long as the session: it gets the session's limits but no CPU-seconds
        # cap of its own (each command gets one from the wrapper), and the host's network.
        server_limits = replace(self.limits, network="host", cpu_s=float(1 << 30))
        uid, run, seccomp_fd, cgroup = self.sandbox.enter_run(self._stack, server_limits, self.worker)
        self.memory_cap = _cgroup.describe() if cgroup is not None else _cgroup.FALLBACK
        token, port = secrets.token_urlsafe(24), _free_port()
        site = sysconfig.get_paths()["purelib"]
        python = f"{local.OPT}/python/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        env = {**self.base_env, "PYTHONPATH": _SITE_MOUNT, TOKEN_ENV: token}
        argv = self.sandbox.bwrap_argv([python, "-c", _SERVE, str(port)], run, server_limits, uid, env, seccomp_fd)
        cut = argv.index("--")  # bwrap's own options end here
        argv[cut:cut] = ["--ro-bind", site, _SITE_MOUNT]
        if seccomp_fd is not None:
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
        self._server = subprocess.Popen(cgroup.join_argv(argv) if cgroup is not None else argv,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True,
                                        pass_fds=(seccomp_fd,) if seccomp_fd is not None else ())
        return _BwrapDeployment(self._server, token, port)

    def describe(self) -> str:
        return "bwrap (" + self.sandbox.describe() + ", host network)"

    def workdir(self, raw) -> str:
        return "/work"

    def remove_workdir(self, raw, workdir: str) -> None:
        """The run dir goes with the run (``stop``)."""

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._server.pid, 9)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(timeout=10)
            if self._server.stderr is not None:
                self._server.stderr.close()
        self._stack.close()  # kills what is left in the cgroup, removes the run dir, frees the uid


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _BwrapDeployment(RemoteDeployment):
    """A ``RemoteDeployment`` whose ``start`` waits for the server hrmcode launched in bubblewrap."""

    def __init__(self, server: subprocess.Popen, token: str, port: int) -> None:
        super().__init__(logger=_LOG, host="http://127.0.0.1", port=port, auth_token=token, timeout=5.0)
        self._process = server

    async def start(self) -> None:
        await super().start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not await self.runtime.is_alive(timeout=1.0):
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise SandboxError(f"swerex-remote in bubblewrap exited ({self._process.returncode}): "
                                   f"{' '.join(stderr.split())[-300:]}", _BwrapStarter.hint)
            if time.monotonic() > deadline:
                raise SandboxError(f"swerex-remote in bubblewrap did not answer within {_START_TIMEOUT_S:g} s",
                                   _BwrapStarter.hint)
            await asyncio.sleep(0.05)


# -- the offline image ------------------------------------------------------------------------------

def _swerex_dockerfile() -> str:
    # swe-rex goes into its own directory, on the server's PYTHONPATH only: the agent's python3 keeps
    # the sandbox image's packages (commands start with the docker backend's environment).
    return (f"FROM {docker_backend.image_tag()}\n"
            "USER root\n"
            f"RUN pip install --no-cache-dir --break-system-packages --target /opt/swerex "
            f"{' '.join(SWEREX_REQUIREMENTS)} \\\n"
            " && printf '#!/bin/sh\\nPYTHONPATH=/opt/swerex exec python3 -m swerex.server \"$@\"\\n'"
            " > /usr/local/bin/swerex-remote \\\n"
            " && chmod 755 /usr/local/bin/swerex-remote && swerex-remote --version\n"
            "LABEL hrmcode.swerex.image=1\n"
            "WORKDIR /work\n")


def swerex_image_tag() -> str:
    return f"hrmcode-swerex:{hashlib.sha256(_swerex_dockerfile().encode()).hexdigest()[:12]}"


def swerex_image(rebuild: bool = False) -> str:
    """The tag of hrmcode's SWE-ReX image, building it when missing: hrmcode's sandbox image
    (``docker_backend.build_images``: no registry needed) plus one layer installing swe-rex from
    PyPI. Returns the tag."""
    client = docker_backend._client(timeout=600)
    tag = swerex_image_tag()
    if not rebuild and docker_backend._has_image(client, tag):
        return tag
    docker_backend.build_images()
    try:
        client.images.build(fileobj=io.BytesIO(_swerex_dockerfile().encode()), tag=tag, rm=True, forcerm=True,
                            pull=False)
    except Exception as exc:  # noqa: BLE001 - BuildError and APIError carry the reason
        raise SandboxError(f"docker build of {tag} failed: {' '.join(str(exc).split())[:300]}",
                           "check network access to PyPI from docker builds") from None
    return tag
