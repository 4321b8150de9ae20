"""The ``local`` backend: bubblewrap with a profile hrmcode owns, plus the explicit unsafe fallback.

Profile (root, the normal case on CI and in containers): ``bwrap`` runs as root only to build the
mounts, then ``setpriv`` drops to a per-worker unprivileged uid with every capability cleared
(inheritable, ambient and bounding set) and ``no_new_privs`` set, and ``prlimit`` applies the
rlimits before the command is exec'd. New PID, network (only loopback, brought up by bwrap; the
host's network only with ``Limits.network="host"``), IPC, UTS and cgroup namespaces; the root
filesystem is a fresh tmpfs holding only: ``/usr`` (read-only), a handful of ``/etc`` entries the
toolchains need (no ``/etc/shadow``; a generated ``/etc/passwd``), the toolchains under
``/opt/hrmcode`` (read-only; with ``with_python_env``, a repository's test dependencies at
``/opt/hrmcode/env``, read-only too), ``/work`` (the private work dir), ``/tmp`` and ``/cache/go``. On the
host the work dir, ``/tmp`` and the Go cache's writable layer live in one tmpfs mounted per run with
a size of ``Limits.disk_mb`` and ``Limits.inodes`` files (``runs.run_dir``, as for the docker
backend), so a disk-filling or file-creating program fills only that. The whole run (bwrap and every
process under it, from before the first exec) is in its own memory cgroup capped at
``Limits.memory_mb`` (``runs.run_cgroup``: v2, else v1; ``ExecResult.memory_cap`` says which, or that
neither could be made and only the per-process RLIMIT_AS applies); the Go build cache is an overlay
whose lower layer is a read-only seed built from trusted input (see ``toolchains``), so what one
run writes there is gone when it ends and cannot change another run's verdict.

Run as a normal user, bwrap makes a user namespace instead: the command keeps the caller's uid (no
per-worker uids; RLIMIT_NPROC is set to the caller's current process count plus
``Limits.processes``), nested user namespaces are disabled, the work dir is a plain directory with
no total size or file-count cap (RLIMIT_FSIZE still caps each file), no memory cgroup (RLIMIT_AS
per process only), and the Go cache is a persistent per-worker directory a hostile run could poison
for later runs of that worker.

A session (``Sandbox.session``; ``session.py``) holds one uid slot, run dir and memory cgroup
for its whole life and runs each command as a new bubblewrap over that run dir, with the profile
above; after each command every process left in the session's cgroup (without one, of its uid, as
root) is killed before ``exec`` returns. As a normal user (no cgroup, no uid of its own) what a
command left dies with bubblewrap's PID namespace, whose teardown the kernel finishes just after.

Both modes install a seccomp filter (``_seccomp.py``, x86_64) refusing namespace creation, mounts,
keyrings, bpf, io_uring and similar kernel surface. Not guaranteed by either: protection against
kernel bugs beyond that, CPU shares between parallel runs; under cgroup v1 an OOM kill takes the
run's largest process, not the whole run (the run still reports ``memory_exceeded``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from hrmcode.atomic import staged
from hrmcode.errors import SandboxError, ToolchainMissing
from hrmcode.sandbox import _cgroup, _fs, _seccomp, hostpaths
from hrmcode.sandbox._proc import supervise
from hrmcode.sandbox.base import ENV_MOUNT, ExecResult, Limits, PythonEnv, RunRequest, Sandbox
from hrmcode.sandbox.runs import (NOFILE, UID_SLOTS, RunDir, as_argv, collect_files, cpu_seconds, interpret, is_root,
                                  kill_uid, pids_of, run_cgroup, run_dir, uid_base, uid_slot)
from hrmcode.sandbox.session import WorkDirSession

OPT = hostpaths.SANDBOX_OPT
# /etc entries the toolchains read (java's config lives in /etc/java-*, /usr/bin/java goes through
# /etc/alternatives). Everything else in the host's /etc stays invisible.
_ETC_ALWAYS = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime")
_ETC_NETWORK = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates", "/etc/nsswitch.conf")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def go_seed_path() -> Path | None:
    """Where the read-only Go build-cache seed for the host's Go installation lives (built or not).

    One seed per installation, not per version: the cache records facts about GOROOT's files, and a
    seed built from another install of the same version (a second virtualenv sharing this cache)
    makes ``go test`` fail with "package testing is not in std"."""
    root, version = hostpaths.go_root(), hostpaths.go_version()
    if root is None or version is None:
        return None
    src = (root / "src").stat()
    install = hashlib.sha256(f"{root.resolve()}\0{src.st_ino}\0{src.st_mtime_ns}".encode()).hexdigest()[:12]
    return hostpaths.go_seed_dir(f"{version}-{install}")


@functools.cache
def _generated_etc() -> Path:
    """A passwd/group/hosts naming the sandbox uids, so tools that look the user up find one."""
    etc = hostpaths.cache_root() / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    base = uid_base()
    contents = {
        "passwd": "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        + "".join(f"sandbox{i}:x:{base + i}:{base + i}:sandbox:/tmp:/bin/sh\n" for i in range(UID_SLOTS))
        + "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": "root:x:0:\n" + "".join(f"sandbox{i}:x:{base + i}:\n" for i in range(UID_SLOTS))
        + "nogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
    }
    for name, text in contents.items():
        path = etc / name
        if not path.exists() or path.read_text() != text:
            _write_shared(path, text.encode(), mode=0o644)
    return etc


def _write_shared(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace a cache file that several hrmcode processes may write at the same moment."""
    with staged(path, unique=True) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            tmp.chmod(mode)


def toolchain_binds() -> list[str]:
    """Read-only bwrap arguments exposing every installed toolchain under /opt/hrmcode."""
    args: list[str] = []
    python = hostpaths.python_toolchain()
    if python is not None:
        args += ["--ro-bind", str(python.prefix), f"{OPT}/python"]
        site = python.prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        if site.is_dir():  # hide the interpreter's own third-party packages: stdlib + pytest only
            args += ["--tmpfs", f"{OPT}/python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"]
        for path in python.pytest_paths:
            args += ["--ro-bind", str(path), f"{OPT}/pylib/{path.name}"]
    go = hostpaths.go_root()
    if go is not None:
        args += ["--ro-bind", str(go), f"{OPT}/go"]
    rust = hostpaths.rust_sysroot()
    if rust is not None:
        args += ["--ro-bind", str(rust), f"{OPT}/rust"]
    node_modules = hostpaths.node_modules_dir()
    if node_modules.is_dir():
        # At the filesystem root so Node's and Babel's upward module lookup from /work finds it.
        args += ["--ro-bind", str(node_modules), "/node_modules"]
    catch = hostpaths.cache_root() / "toolchains" / "catch"
    if catch.is_dir():
        args += ["--ro-bind", str(catch), f"{OPT}/catch"]
    return args


def base_env() -> dict[str, str]:
    return {
        "PATH": f"{OPT}/python/bin:{OPT}/go/bin:{OPT}/rust/bin:/node_modules/.bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp", "TMPDIR": "/tmp", "USER": "sandbox", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "LD_LIBRARY_PATH": f"{OPT}/python/lib",  # the host interpreter's libpython (its RUNPATH is a host path)
        "PYTHONPATH": f"{OPT}/pylib", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        "HRMCODE_SANDBOX": "1",
        "GOROOT": f"{OPT}/go", "GOCACHE": "/cache/go", "GOPATH": "/tmp/go", "GOPROXY": "off", "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0", "GOTELEMETRY": "off",
        "CARGO_HOME": "/tmp/cargo-home", "CARGO_TARGET_DIR": "/tmp/target", "CARGO_INCREMENTAL": "0",
        "CARGO_TERM_COLOR": "never", "NO_COLOR": "1", "FORCE_COLOR": "0",
    }


@functools.cache
def _seccomp_file() -> Path | None:
    program = _seccomp.filter_bytes()
    if program is None:
        return None
    path = hostpaths.cache_root() / "seccomp" / f"filter-{hashlib.sha256(program).hexdigest()[:16]}.bpf"
    if not path.exists() or path.read_bytes() != program:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_shared(path, program)
    return path


def _prlimit_args(limits: Limits, nproc: int) -> list[str]:
    cpu = cpu_seconds(limits)
    return [
        "/usr/bin/prlimit", f"--as={limits.memory_mb << 20}", f"--cpu={cpu}:{cpu + 1}", f"--nproc={nproc}",
        f"--fsize={limits.file_size_mb << 20}", f"--nofile={NOFILE}", "--core=0", "--",
    ]


class BubblewrapSandbox(Sandbox):
    """Runs commands under bubblewrap; see the module docstring for the exact profile."""

    name = "local"
    python_env: PythonEnv | None = None  # packages bound read-only at ENV_MOUNT (``with_python_env``)

    def __init__(self, bwrap: str | None = None) -> None:
        found = bwrap or bwrap_path()
        if found is None:
            raise ToolchainMissing("bubblewrap (bwrap) is not installed; the local sandbox needs it",
                                   "apt-get install bubblewrap, or pass --unsafe-no-sandbox to run without isolation")
        self.bwrap = found

    def describe(self) -> str:
        return "bubblewrap" + (" (root: per-worker uid)" if is_root() else " (user namespace)")

    def go_seed_path(self) -> Path | None:
        return go_seed_path()

    def with_python_env(self, env: PythonEnv) -> BubblewrapSandbox:
        if env.image is not None and env.directory is None:
            raise SandboxError("this Python environment was prepared for docker (an image)",
                               "prepare it for the local backend: a directory")
        view = copy.copy(self)
        view.python_env = env
        return view

    def run_env(self) -> dict[str, str]:
        """Every command's environment: ``base_env``, with the Python environment's ``PYTHONPATH``."""
        env = base_env()
        if self.python_env is not None:
            env["PYTHONPATH"] = self.python_env.pythonpath(env["PYTHONPATH"])
        return env

    def bwrap_argv(self, argv: list[str], run: RunDir, limits: Limits, uid: int, env: dict[str, str],
                   seccomp_fd: int | None = None) -> list[str]:
        args = [self.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--die-with-parent", "--new-session"]
        if limits.network != "host":
            args.append("--unshare-net")  # bwrap brings the new namespace's loopback up: lo only
        if not is_root():
            args += ["--unshare-user", "--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
                 "--symlink", "usr/lib", "/lib"]
        if os.path.isdir("/usr/lib64"):
            args += ["--symlink", "usr/lib64", "/lib64"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for directory in ("/etc", "/opt", OPT, f"{OPT}/pylib", "/cache"):  # bwrap's default for new dirs is 0700
            args += ["--perms", "0755", "--dir", directory]
        etc = _generated_etc()
        args += ["--ro-bind", str(etc / "passwd"), "/etc/passwd", "--ro-bind", str(etc / "group"), "/etc/group"]
        etc_entries = list(_ETC_ALWAYS) + [str(p) for p in sorted(Path("/etc").glob("java-*"))]
        if limits.network == "host":
            etc_entries += list(_ETC_NETWORK)
        else:
            args += ["--ro-bind", str(etc / "hosts"), "/etc/hosts"]
        for entry in etc_entries:
            args += ["--ro-bind-try", entry, entry]
        args += toolchain_binds()
        if self.python_env is not None and self.python_env.directory is not None:
            args += ["--ro-bind", str(self.python_env.directory), ENV_MOUNT]  # read-only even to root inside
        if run.tmp is not None:
            args += ["--bind", str(run.tmp), "/tmp"]
        else:
            args += ["--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp"]
        args += ["--bind", str(run.work), "/work", "--bind", str(run.gocache), "/cache/go", "--chdir", "/work",
                 "--clearenv"]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        for key, value in env.items():
            args += ["--setenv", key, value]
        if is_root():
            args += ["--", "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            nproc = limits.processes
        else:
            args.append("--")
            nproc = len(pids_of(uid)) + limits.processes
        return args + _prlimit_args(limits, nproc) + argv

    def execute(self, request: RunRequest) -> ExecResult:
        limits = request.limits
        with contextlib.ExitStack() as stack:
            uid, run, seccomp_fd, cgroup = self.enter_run(stack, limits, request.worker)
            _fs.write_tree(run.work, request.files, uid if is_root() else None, uid if is_root() else None)
            result = self.launch(as_argv(request.command), run, limits, uid, {**self.run_env(), **request.env}, seccomp_fd,
                                 cgroup, stdin=request.stdin_bytes)
            collect_files(result, run.work, request.collect, request.collect_binary, limits)
        return result

    def session(self, files: dict[str, str | bytes] | None = None, limits: Limits | None = None, *,
                worker: int = 0, env: dict[str, str] | None = None) -> BubblewrapSession:
        return BubblewrapSession(self, files or {}, limits or Limits(), worker, env)

    def enter_run(self, stack: contextlib.ExitStack, limits: Limits,
                  worker: int) -> tuple[int, RunDir, int | None, _cgroup.RunCgroup | None]:
        """What a run (or a session) holds until ``stack`` closes: its uid, run dir, seccomp filter fd
        and memory cgroup. Closing kills what is left in the cgroup, removes the run dir and frees the uid."""
        uid = stack.enter_context(uid_slot(worker)) if is_root() else os.getuid()
        run = stack.enter_context(run_dir(limits, uid, go_seed_path()))
        seccomp = _seccomp_file()
        seccomp_fd = os.open(seccomp, os.O_RDONLY) if seccomp is not None else None
        if seccomp_fd is not None:
            stack.callback(os.close, seccomp_fd)
        cgroup = stack.enter_context(run_cgroup(limits, run))
        return uid, run, seccomp_fd, cgroup

    def launch(self, argv: list[str], run: RunDir, limits: Limits, uid: int, env: dict[str, str],
               seccomp_fd: int | None, cgroup: _cgroup.RunCgroup | None, *, stdin: bytes | None = None) -> ExecResult:
        """One bubblewrap over ``run``'s directories, supervised under ``limits``; ``memory_exceeded``
        counts only the cgroup's OOM kills during this launch."""
        oom_before = cgroup.oom_kills() if cgroup is not None else 0
        if seccomp_fd is not None:
            os.lseek(seccomp_fd, 0, os.SEEK_SET)  # bwrap reads the filter to its end; a session's next launch rereads
        command = self.bwrap_argv(argv, run, limits, uid, env, seccomp_fd)
        finished = supervise(
            cgroup.join_argv(command) if cgroup is not None else command, timeout_s=limits.timeout_s,
            output_bytes=limits.output_bytes, stdin=stdin, pass_fds=(seccomp_fd,) if seccomp_fd is not None else (),
        )
        result = interpret(finished, limits, signal_offset=True)
        result.memory_cap = _cgroup.describe() if cgroup is not None else _cgroup.FALLBACK
        result.memory_exceeded = result.memory_exceeded or (cgroup is not None and cgroup.oom_kills() > oom_before)
        return result


class BubblewrapSession(WorkDirSession):
    """A run dir, uid slot and memory cgroup held across commands; each command is a new bubblewrap."""

    def __init__(self, sandbox: BubblewrapSandbox, files: dict[str, str | bytes], limits: Limits, worker: int,
                 env: dict[str, str] | None) -> None:
        stack = contextlib.ExitStack()
        try:
            self.sandbox = sandbox
            self.uid, self.run, self.seccomp_fd, self.cgroup = sandbox.enter_run(stack, limits, worker)
            super().__init__("/work", self.run.work, self.uid if is_root() else None, limits, env, stack)
            self.write_files(files)
        except BaseException:
            stack.close()
            raise

    def _exec(self, command: str, limits: Limits, env: dict[str, str]) -> ExecResult:
        try:
            return self.sandbox.launch(["/bin/bash", "-c", command], self.run, limits, self.uid, {**self.sandbox.run_env(), **env},
                                       self.seccomp_fd, self.cgroup)
        finally:
            self._kill_leftovers()

    def _kill_leftovers(self, wait_s: float = 10.0) -> None:
        """Every process the command started is dead before ``exec`` returns. bwrap's PID namespace
        already dies with it, asynchronously; the cgroup (one small file, no /proc scan) says when."""
        if self.cgroup is None:
            if is_root():
                kill_uid(self.uid, wait_s)
            return
        deadline = time.monotonic() + wait_s
        while True:
            try:
                pids = [int(line) for line in self.cgroup.procs_file.read_text().split()]
            except (OSError, ValueError):
                return
            if not pids or time.monotonic() > deadline:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)


class UnsafeSandbox(Sandbox):
    """No isolation at all: a plain subprocess in a temporary directory with rlimits.

    Only for machines without bubblewrap, when the user asked for it explicitly
    (``--unsafe-no-sandbox``). The command can read and write everything the caller can, reach the
    network, and leave daemons behind (only its process group is killed)."""

    name = "unsafe"

    def describe(self) -> str:
        return "no sandbox (plain subprocess with rlimits)"

    def execute(self, request: RunRequest) -> ExecResult:
        limits = request.limits
        argv = as_argv(request.command)
        with tempfile.TemporaryDirectory(prefix="hrmcode-unsafe-") as tmp:
            _fs.write_tree(Path(tmp), request.files)
            process_env = {**os.environ, "HRMCODE_SANDBOX": "unsafe", **request.env}
            finished = supervise(argv, timeout_s=limits.timeout_s, output_bytes=limits.output_bytes, env=process_env,
                                 cwd=tmp, stdin=request.stdin_bytes, preexec_fn=_rlimits_setter(limits))
            result = interpret(finished, limits, signal_offset=False)
            result.memory_cap = UNSAFE_MEMORY_CAP
            collect_files(result, Path(tmp), request.collect, request.collect_binary, limits)
        return result

    def session(self, files: dict[str, str | bytes] | None = None, limits: Limits | None = None, *,
                worker: int = 0, env: dict[str, str] | None = None) -> UnsafeSession:
        return UnsafeSession(files or {}, limits or Limits(), env)


UNSAFE_MEMORY_CAP = "rlimit-as (per process; unsafe mode)"


def _rlimits_setter(limits: Limits):
    """The unsafe backend's rlimits, applied in the child before it execs the command."""
    cpu = cpu_seconds(limits)

    def apply_limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb << 20,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply_limits


class UnsafeSession(WorkDirSession):
    """A plain temporary directory; each command's process group is killed after it (nothing else is)."""

    def __init__(self, files: dict[str, str | bytes], limits: Limits, env: dict[str, str] | None) -> None:
        stack = contextlib.ExitStack()
        try:
            root = Path(tempfile.mkdtemp(prefix="hrmcode-unsafe-session-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            work = root / "work"
            work.mkdir()
            self._group_file = root / "pgid"  # the command's process group, written by its first process
            stack.callback(self._kill_group)  # before the directory goes: a command still running ends
            super().__init__(str(work), work, None, limits, env, stack)
            self.write_files(files)
        except BaseException:
            stack.close()
            raise

    def _exec(self, command: str, limits: Limits, env: dict[str, str]) -> ExecResult:
        argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec /bin/bash -c "$1"', str(self._group_file), command]
        finished = supervise(argv, timeout_s=limits.timeout_s, output_bytes=limits.output_bytes,
                             env={**os.environ, "HRMCODE_SANDBOX": "unsafe", **env}, cwd=self.workdir,
                             preexec_fn=_rlimits_setter(limits))
        self._kill_group()  # its background jobs: the group outlives its leader
        result = interpret(finished, limits, signal_offset=False)
        result.memory_cap = UNSAFE_MEMORY_CAP
        return result

    def _kill_group(self) -> None:
        """Kill the running (or just finished) command's process group, then forget it: a group id
        kept after its group is gone could be reused by a stranger's."""
        try:
            group = int(self._group_file.read_text())
            os.killpg(group, signal.SIGKILL)
        except (OSError, ValueError):  # no group left (ProcessLookupError), or no command ran
            group = None
        self._group_file.unlink(missing_ok=True)
        deadline = time.monotonic() + 2.0
        while group is not None and _live_members(group) and time.monotonic() < deadline:
            time.sleep(0.002)  # SIGKILL is delivered asynchronously: wait until they are gone (or zombies)


def _live_members(group: int) -> bool:
    """Whether any process of process group ``group`` is still running (not yet dead or a zombie)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, pgrp, ...
            if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
                return True
    return False
