"""Persistent sandbox sessions: one private work dir that lives across many commands.

``Sandbox.session(files, limits)`` opens a ``Session``; ``session.exec(command)`` runs
``/bin/bash -c command`` in the work dir, as often as the caller likes; ``read_files`` and
``write_files`` move files in and out between commands; ``close`` (or leaving the ``with`` block)
kills everything and removes the work dir. An agent acting in a repository is one session.

What a session guarantees, in every isolating backend (``local`` bubblewrap, ``docker``):

- Files persist: what one command writes under the work dir (or ``/tmp``, ``$HOME``), the next one
  sees. Nothing else persists: each command is a fresh process tree under the same profile as ``Sandbox.run`` (same
  uid, namespaces, seccomp, rlimits, network), starting in the work dir with the same environment,
  and when ``exec`` returns every process it started is dead — a ``sleep 1000 &`` or a
  double-forked daemon does not outlive its command. Local: a new bubblewrap over the same run dir,
  its processes killed through the session's cgroup (else its uid); docker: ``docker exec`` in one
  warm container per session, then every process of the session's uid in it is killed.
- The work dir (with ``/tmp`` and the Go cache) is one tmpfs capped at ``Limits.disk_mb`` and
  ``Limits.inodes`` for the whole session when hrmcode runs as root, as for a run.
  ``Limits.timeout_s`` is each command's default wall-clock limit (``exec(timeout_s=)`` overrides
  it, CPU seconds follow); ``memory_mb`` caps each command (local: the session's memory cgroup,
  which also counts the files the session keeps in its tmpfs; docker: the container);
  ``processes`` caps each command's processes.
- ``read_files`` never follows a symlink (every component is opened with ``O_NOFOLLOW`` relative to
  its parent): a planted ``ln -s /etc/shadow x`` or ``ln -s / root`` is skipped, as are fifos,
  devices, sockets, ``.git`` directories, files over ``max_file_bytes`` and directories nested
  deeper than ``MAX_DEPTH``. ``write_files`` refuses names that leave the work dir (``UsageError``),
  never writes through a symlink the commands planted (a planted link, fifo or hard link at the
  name is replaced by a fresh file; a planted link on the way is refused with ``SandboxError``), and
  hands what it creates to the sandbox uid. Files move on this host's side of the work dir (docker
  bind-mounts it, as for a run), never through the container.
- A session left open by a SIGKILLed hrmcode is reclaimed like a run: its run dir and cgroup carry
  the owner's pid and start time and the next sandbox start sweeps them (``runs.clean_stale_runs``),
  its container is labelled with the owner and removed by the next docker sandbox start
  (``docker_backend.clean``); bubblewrap dies with its parent.

A command's ``memory_exceeded`` is set by an OOM kill during that command (local: the session
cgroup's count; docker: the engine's ``oom`` events for the container), even of a child when the
command itself exits 0, or by a runtime's out-of-memory message on a failing exit, as for a run.

Not guaranteed: one session is used by one thread at a time (``exec`` calls are serialised); the total that
``read_files`` returns is bounded only by the disk cap. The ``unsafe`` backend's session is a plain
temporary directory: commands can read and write anything the caller can, reach the network, and
only their process group is killed after each command (a daemon that calls ``setsid`` survives).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import threading
from pathlib import Path, PurePosixPath

from hrmcode.errors import InputError, SandboxError, UsageError
from hrmcode.sandbox import _fs
from hrmcode.sandbox.base import ExecResult, Limits

MAX_DEPTH = 128  # read_files skips what lies deeper: it holds one open directory per level
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def command_limits(limits: Limits, timeout_s: float | None) -> Limits:
    """The session's limits for one command: ``timeout_s`` (with the CPU seconds following it,
    unless the session set them) when given."""
    if timeout_s is None:
        return limits
    if timeout_s <= 0:
        raise UsageError(f"command timeout {timeout_s} s is not positive", "pass a timeout_s above 0")
    return dataclasses.replace(limits, timeout_s=timeout_s)


def session_relpath(name: str) -> PurePosixPath:
    """``name`` as a path inside the work dir, or a ``UsageError`` (``..``, absolute, empty)."""
    try:
        return _fs.checked_relpath(name)
    except InputError as exc:
        raise UsageError(exc.message, exc.hint) from None


def read_tree(root: Path, max_file_bytes: int) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative POSIX paths), never following a symlink: see the
    module docstring for what is skipped."""
    files: dict[str, bytes] = {}
    top = os.open(root, _DIR_FLAGS)
    stack: list[tuple[int, str, list[str]]] = []  # open directories, each with its names still to visit (last first)
    try:
        stack.append((top, "", sorted(os.listdir(top), reverse=True)))
        while stack:
            dir_fd, prefix, names = stack[-1]
            if not names:
                stack.pop()
                os.close(dir_fd)
                continue
            name = names.pop()
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if name == ".git" or len(stack) >= MAX_DEPTH:
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:  # replaced by a link between the lstat and the open: skipped
                    continue
                try:
                    stack.append((child, f"{prefix}{name}/", sorted(os.listdir(child), reverse=True)))
                except OSError:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode) and info.st_size <= max_file_bytes:
                data = _read_regular(dir_fd, name, max_file_bytes)
                if data is not None:
                    files[prefix + name] = data
    finally:
        for dir_fd, _, _ in stack:
            os.close(dir_fd)
    return files


def _read_regular(dir_fd: int, name: str, max_bytes: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > max_bytes else b"".join(chunks)
    finally:
        os.close(fd)


def write_into(root: Path, files: dict[str, str | bytes], uid: int | None) -> None:
    """Create or overwrite ``files`` under ``root`` without following any symlink; what is created
    belongs to ``uid`` when given. A file starting with ``#!`` is made executable."""
    checked = {name: session_relpath(name) for name in files}
    for name in sorted(files):
        rel = checked[name]
        dir_fd = os.open(root, _DIR_FLAGS)
        try:
            for index, part in enumerate(rel.parts[:-1]):
                child = _enter_dir(dir_fd, part, uid, "/".join(rel.parts[:index + 1]))
                os.close(dir_fd)
                dir_fd = child
            data = files[name]
            _write_file(dir_fd, rel.parts[-1], data.encode() if isinstance(data, str) else data, uid, name)
        except OSError as exc:  # ENOSPC / EDQUOT: the session's disk or inode cap is spent
            raise SandboxError(f"cannot write {name!r} in the session: {exc.strerror}",
                               "the session's disk cap (Limits.disk_mb, Limits.inodes) may be full; "
                               "files written before this one were kept") from None
        finally:
            os.close(dir_fd)


def _enter_dir(dir_fd: int, part: str, uid: int | None, shown: str) -> int:
    """Open (making it if missing) the directory ``part`` under ``dir_fd``."""
    try:
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            os.mkdir(part, 0o755, dir_fd=dir_fd)
            if uid is not None:
                os.chown(part, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
            child = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:  # ELOOP / ENOTDIR: a link or a file where a directory should be
        raise SandboxError(f"cannot write under {shown!r} in the session: {exc.strerror}",
                           "the commands put a symlink or a file there; it is never followed") from None
    return child


def _write_file(dir_fd: int, leaf: str, raw: bytes, uid: int | None, shown: str) -> None:
    try:
        info = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise SandboxError(f"cannot write {shown!r} in the session: it is a directory",
                           "write a file path, not a directory")
    if info is not None and (not stat.S_ISREG(info.st_mode) or info.st_nlink > 1):
        os.unlink(leaf, dir_fd=dir_fd)  # a planted link, fifo or hard link is replaced, never written through
    mode = 0o755 if raw.startswith(b"#!") else 0o644
    fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode,
                 dir_fd=dir_fd)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        if uid is not None:
            os.fchown(fd, uid, uid)
    finally:
        os.close(fd)


class WorkDirSession:
    """What every backend's session shares: the work dir on this host, the limits, the cleanup.

    A backend passes the ``ExitStack`` that holds its resources (uid slot, run dir, cgroup,
    container) and implements ``_exec``; ``close`` unwinds the stack once."""

    def __init__(self, workdir: str, host_work: Path, owner_uid: int | None, limits: Limits,
                 env: dict[str, str] | None, stack: contextlib.ExitStack) -> None:
        self.workdir = workdir
        self.host_work = host_work
        self.owner_uid = owner_uid
        self.limits = limits
        self.env = dict(env or {})
        self._stack = stack
        self._lock = threading.Lock()  # one command or file transfer at a time
        self._closing = threading.Lock()  # not ``_lock``: closing must not wait for a running command
        self.closed = False

    def exec(self, command: str, *, timeout_s: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        """Run ``/bin/bash -c command`` in the work dir; every process it started is dead on return."""
        limits = command_limits(self.limits, timeout_s)
        with self._lock:
            if self.closed:
                raise SandboxError("the sandbox session is closed", "open a new one with sandbox.session()")
            return self._exec(command, limits, {**self.env, **(env or {})})

    def _exec(self, command: str, limits: Limits, env: dict[str, str]) -> ExecResult:
        raise NotImplementedError

    def read_files(self, max_file_bytes: int = 1 << 20) -> dict[str, bytes]:
        with self._lock:
            if self.closed:
                raise SandboxError("the sandbox session is closed", "read its files before closing it")
            return read_tree(self.host_work, max_file_bytes)

    def write_files(self, files: dict[str, str | bytes]) -> None:
        with self._lock:
            if self.closed:
                raise SandboxError("the sandbox session is closed", "open a new one with sandbox.session()")
            write_into(self.host_work, files, self.owner_uid)

    def close(self) -> None:
        """Kill everything the session runs and remove its work dir (or container); idempotent, and
        callable from another thread while a command runs (that command then ends killed)."""
        with self._closing:
            if self.closed:
                return
            self.closed = True
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
