"""The sandbox protocol every execution in hrmcode goes through.

``Sandbox.run(command, files, limits) -> ExecResult``: write ``files`` into a fresh private
work directory, run ``command`` there under ``limits``, return what happened.
``Sandbox.session(files, limits) -> Session``: the same profile, but one work dir that lives
across many commands (``session.py`` says what a session guarantees). Backends
(``local`` = bubblewrap, ``docker``) live beside this module; see the package docstring for
what each guarantees and what it does not.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from hrmcode.errors import SandboxError, UsageError

NETWORKS = ("loopback", "host")
ENV_MOUNT = "/opt/hrmcode/env"  # where a run sees a PythonEnv's packages (local: a read-only bind; docker: in its image)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run. Units are in the names."""

    timeout_s: float = 30.0  # wall clock; the whole process tree is killed when it passes
    # Memory: of each process (RLIMIT_AS), and summed over the whole run (its cgroup: processes, tmpfs
    # files, kernel memory) where one can be made (``ExecResult.memory_cap`` says) / container memory.
    memory_mb: int = 2048
    processes: int = 256  # concurrent processes/threads of the sandbox uid (RLIMIT_NPROC / pids limit)
    file_size_mb: int = 256  # largest file the command may write (RLIMIT_FSIZE)
    output_bytes: int = 1 << 20  # stdout and stderr are each truncated to this
    # "loopback": a private network namespace whose only interface is loopback (servers on
    # 127.0.0.1 work, nothing outside is reachable). "host": the host's network, every interface, the
    # host's own 127.0.0.1 services, the LAN and link-local metadata addresses; only when a caller needs it.
    network: str = "loopback"
    cpu_s: float | None = None  # CPU seconds (RLIMIT_CPU); default: timeout_s + 1
    disk_mb: int = 2048  # everything the run writes in total (work dir, /tmp, build caches)
    inodes: int = 65536  # files, directories and links the run may create in total (tmpfs nr_inodes)

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise UsageError(f"unknown sandbox network {self.network!r}", f"choose one of: {', '.join(NETWORKS)}")


@dataclass
class ExecResult:
    exit_code: int | None  # None when killed before it exited on its own
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False
    memory_exceeded: bool = False
    killed_signal: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    memory_cap: str = ""  # what capped memory: a cgroup (whole run), the container, or RLIMIT_AS per process
    files: dict[str, str] = field(default_factory=dict)  # files asked back with `collect`
    binary: dict[str, bytes] = field(default_factory=dict, repr=False)  # files asked back with `collect_binary`

    @property
    def ok(self) -> bool:
        """Exited 0 in time, and the kernel killed none of its processes for memory (a cgroup or
        container OOM kill can take a child while the run itself exits 0)."""
        return self.exit_code == 0 and not self.timed_out and not self.memory_exceeded

    def to_dict(self) -> dict:
        """JSON-ready: everything but ``binary`` (whose sizes are listed instead)."""
        record = asdict(self)
        record["binary"] = {name: len(data) for name, data in self.binary.items()}
        return record


@dataclass(frozen=True)
class RunRequest:
    """One ``Sandbox.run`` call, its defaults filled in (see ``Sandbox.run``)."""

    command: list[str] | str
    files: dict[str, str | bytes]
    limits: Limits
    stdin: str | bytes | None
    env: dict[str, str]
    collect: list[str] | None
    worker: int
    collect_binary: list[str] | None

    @property
    def stdin_bytes(self) -> bytes | None:
        return self.stdin.encode() if isinstance(self.stdin, str) else self.stdin


@dataclass(frozen=True)
class PythonEnv:
    """Third-party packages a run's Python may import, installed OUTSIDE the sandbox (it has no
    network) by ``hrmcode.data.bugs.environments``. A run sees them read-only at ``ENV_MOUNT``, on
    ``PYTHONPATH`` after the sandbox's own pytest: ``directory`` (local: a host directory bound
    read-only, so the tested code cannot change it for a later run) or ``image`` (docker: an image built
    from the sandbox image with the packages in its read-only root filesystem). ``work_paths`` are
    work-dir directories put first on ``PYTHONPATH`` (the project's own code, ``.`` or ``src``), so
    the code under test is always the work dir's, never a copy among the packages."""

    directory: Path | None = None
    image: str | None = None
    work_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for path in self.work_paths:
            if path.startswith("/") or ".." in Path(path).parts:
                raise UsageError(f"python path {path!r} leaves the work dir", "give paths relative to the repository root")

    def pythonpath(self, *sandbox_paths: str) -> str:
        """``PYTHONPATH``: the work paths, then ``sandbox_paths`` (the sandbox's pytest), then the packages."""
        entries = [posixpath.normpath(f"/work/{path}") for path in self.work_paths] + list(sandbox_paths)
        if self.directory is not None or self.image is not None:
            entries.append(ENV_MOUNT)
        return ":".join(entry for entry in entries if entry)


class Session(Protocol):
    """A private work dir that lives across commands. Each exec is a fresh process tree inside the
    same sandbox profile as Sandbox.run (local: a new bwrap over the SAME run dir; docker: `docker exec`
    in ONE warm container per session); when exec returns, every process it started is dead.
    Also a context manager: ``with sandbox.session(...) as s:`` closes it."""

    workdir: str  # the work dir as commands see it: "/work" (local, docker) or a host path (unsafe)

    def exec(self, command: str, *, timeout_s: float | None = None,
             env: dict[str, str] | None = None) -> ExecResult:
        """``/bin/bash -c command`` with cwd = ``workdir``; ``timeout_s`` overrides ``Limits.timeout_s``."""
        ...

    def read_files(self, max_file_bytes: int = 1 << 20) -> dict[str, bytes]:
        """Every regular file under the work dir, relative POSIX paths; symlinks, devices and fifos
        are skipped and never followed; ``.git/`` and files over ``max_file_bytes`` are skipped."""
        ...

    def write_files(self, files: dict[str, str | bytes]) -> None:
        """Create or overwrite ``files``, owned by the sandbox uid; names leaving the work dir are a UsageError."""
        ...

    def close(self) -> None:
        """Idempotent: kills everything, removes the run dir / container."""
        ...

    def __enter__(self) -> "Session": ...

    def __exit__(self, *exc_info: object) -> None: ...


class Sandbox(Protocol):
    name: str

    def run(
        self,
        command: list[str] | str,
        files: dict[str, str | bytes] | None = None,
        limits: Limits | None = None,
        *,
        stdin: str | bytes | None = None,
        env: dict[str, str] | None = None,
        collect: list[str] | None = None,
        worker: int = 0,
        collect_binary: list[str] | None = None,
    ) -> ExecResult:
        """Run ``command`` (argv list, or a string run by ``/bin/sh -c``) in a fresh work dir
        holding ``files``. ``worker`` picks the per-worker uid/cache so parallel runs do not
        collide. ``collect`` names work-dir files to read back into ``ExecResult.files`` (text,
        truncated to ``Limits.output_bytes``); ``collect_binary`` into ``ExecResult.binary`` (bytes,
        up to ``Limits.file_size_mb``). Backends subclass ``Sandbox`` and implement ``execute``."""
        return self.execute(RunRequest(command, files or {}, limits or Limits(), stdin, env or {}, collect, worker,
                                       collect_binary))

    def execute(self, request: RunRequest) -> ExecResult:
        """The backend's own run: ``run``'s arguments, their defaults filled in."""
        ...

    def session(self, files: dict[str, str | bytes] | None = None, limits: Limits | None = None, *,
                worker: int = 0, env: dict[str, str] | None = None) -> Session:
        """Open a work dir holding ``files`` that lives across ``Session.exec`` calls, under this
        backend's profile. ``limits.timeout_s`` is each command's default timeout; ``disk_mb`` and
        ``inodes`` cap the whole session; ``memory_mb`` and ``processes`` apply per command;
        ``network`` as for ``run``. ``env`` is added to every command's environment."""
        raise SandboxError(f"the {self.name} sandbox backend has no sessions", "use the local or docker backend")

    def with_python_env(self, env: PythonEnv) -> "Sandbox":
        """This backend with ``env``'s packages visible, read-only, to every run and session (``PythonEnv``)."""
        raise SandboxError(f"the {self.name} sandbox backend cannot mount a Python environment",
                           "use the local or docker backend, or synthesize with --env none")
