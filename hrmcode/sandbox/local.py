"""The ``local`` backend: bubblewrap with a profile hrmcode owns, plus the explicit unsafe fallback.

Profile (root, the normal case on CI and in containers): ``bwrap`` runs as root only to build the
mounts, then ``setpriv`` drops to a per-worker unprivileged uid with every capability cleared
(inheritable, ambient and bounding set) and ``no_new_privs`` set, and ``prlimit`` applies the
rlimits before the command is exec'd. New PID, network, IPC, UTS and cgroup namespaces; the root
filesystem is a fresh tmpfs holding only: ``/usr`` (read-only), a handful of ``/etc`` entries the
toolchains need (no ``/etc/shadow``; a generated ``/etc/passwd``), the toolchains under
``/opt/hrmcode`` (read-only), ``/work`` (the private work dir), ``/tmp`` and ``/cache/go``. On the
host the work dir, ``/tmp`` and the Go cache's writable layer live in one tmpfs mounted per run with
a size of ``Limits.disk_mb``, so a disk-filling program fills only that; the Go build cache is an
overlay whose lower layer is a read-only seed built from trusted input (see ``toolchains``), so what
one run writes there is gone when it ends and cannot change another run's verdict.

Run as a normal user, bwrap makes a user namespace instead: the command keeps the caller's uid (no
per-worker uids; RLIMIT_NPROC is set to the caller's current process count plus
``Limits.processes``), nested user namespaces are disabled, the work dir is a plain directory with
no total size cap (RLIMIT_FSIZE still caps each file), and the Go cache is a persistent per-worker
directory a hostile run could poison for later runs of that worker.

Both modes install a seccomp filter (``_seccomp.py``, x86_64) refusing namespace creation, mounts,
keyrings, bpf, io_uring and similar kernel surface. Not guaranteed by either: protection against
kernel bugs beyond that, a cap on memory summed over processes (RLIMIT_AS is per process), CPU
shares between parallel runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hrmcode.errors import SandboxError, ToolchainMissing
from hrmcode.sandbox import _fs, _seccomp, hostpaths
from hrmcode.sandbox._proc import supervise
from hrmcode.sandbox.base import ExecResult, Limits

OPT = hostpaths.SANDBOX_OPT
UID_SLOTS = 64  # concurrent sandboxes on one host, each with its own uid
NOFILE = 4096
_MEMORY_PATTERNS = re.compile(
    r"MemoryError|std::bad_alloc|out of memory|Cannot allocate memory|memory allocation of \d+ bytes failed"
    r"|OutOfMemoryError|Could not reserve enough space|heap out of memory|failed to reserve memory|ENOMEM"
)
# /etc entries the toolchains read (java's config lives in /etc/java-*, /usr/bin/java goes through
# /etc/alternatives). Everything else in the host's /etc stays invisible.
_ETC_ALWAYS = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime")
_ETC_NETWORK = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates", "/etc/nsswitch.conf")


def uid_base() -> int:
    return int(os.environ.get("HRMCODE_SANDBOX_UID_BASE", "61000"))


def is_root() -> bool:
    return os.geteuid() == 0


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
    return hostpaths.cache_root() / "toolchains" / "go-seed" / f"{version}-{install}"


def ready_seed(seed: Path | None) -> Path | None:
    return seed if seed is not None and (seed / ".complete").exists() else None


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
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(path)
    return etc


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
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(program)
        tmp.replace(path)
    return path


UID_LOCK_DIR = Path("/run/hrmcode-sandbox")


def uid_lock_dir() -> Path:
    """Host-wide, not per cache root: two hrmcode installs (or $HRMCODE_CACHE values) on one host
    draw from the same uids."""
    try:
        UID_LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        return UID_LOCK_DIR
    except OSError:  # no writable /run: the cache root is the best shared place left
        fallback = hostpaths.cache_root() / "locks"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


@contextlib.contextmanager
def uid_slot(worker: int) -> Iterator[int]:
    """A uid no other hrmcode sandbox is using now: ``base + worker`` if free, else the next free one.

    RLIMIT_NPROC counts every process of a uid, and a run ends by killing every process of its uid,
    so two sandboxes sharing one would starve or kill each other; the flock makes uids exclusive
    across every process on this host, whatever cache root each uses."""
    locks = uid_lock_dir()
    order = [(worker + i) % UID_SLOTS for i in range(UID_SLOTS)]
    for blocking in (False, True):
        for slot in order if not blocking else order[:1]:
            fd = os.open(locks / f"uid-{uid_base() + slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield uid_base() + slot
            finally:
                try:
                    kill_uid(uid_base() + slot)
                finally:
                    os.close(fd)
            return


@dataclass
class _RunDir:
    root: Path
    work: Path
    tmp: Path | None  # host dir bound at /tmp (None: bwrap makes a size-capped tmpfs)
    gocache: Path


def _mounts_enabled() -> bool:
    return is_root() and not os.environ.get("HRMCODE_SANDBOX_NO_MOUNT")


@contextlib.contextmanager
def run_dir(limits: Limits, uid: int, go_seed: Path | None) -> Iterator[_RunDir]:
    """A fresh per-run directory: work dir, /tmp and Go cache, in one size-capped tmpfs when root."""
    runs = hostpaths.cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    root = runs / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # the pid lets `clean_stale_runs` spot leftovers
    root.mkdir(mode=0o700)
    mounted = False
    try:
        if _mounts_enabled():
            _fs.mount("hrmcode-sandbox", root, "tmpfs", f"size={limits.disk_mb}m,mode=0700")
            mounted = True
            work, tmp = root / "work", root / "tmp"
            work.mkdir()
            tmp.mkdir()
            os.chown(work, uid, uid)
            os.chown(tmp, uid, uid)
            gocache = root / "go"
            gocache.mkdir()
            seed = ready_seed(go_seed)
            if seed is not None:  # copy-on-write over the trusted seed; writes land in this run's tmpfs
                (root / "go-upper").mkdir()
                (root / "go-work").mkdir()
                os.chown(root / "go-upper", uid, uid)
                _fs.mount("hrmcode-go-cache", gocache, "overlay",
                          f"lowerdir={seed},upperdir={root / 'go-upper'},workdir={root / 'go-work'}")
            else:
                os.chown(gocache, uid, uid)
            yield _RunDir(root, work, tmp, gocache)
        else:
            work = root / "work"
            work.mkdir()
            gocache = hostpaths.cache_root() / "workers" / str(uid) / "go"
            gocache.mkdir(parents=True, exist_ok=True)
            yield _RunDir(root, work, None, gocache)
    finally:
        if mounted:
            for point in _fs.mounted_under(root):
                _fs.unmount(point)
        shutil.rmtree(root, ignore_errors=True)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def kill_uid(uid: int, wait_s: float = 10.0) -> None:
    """SIGKILL every process of a sandbox uid and wait until they are gone.

    The PID namespace already dies with bwrap, but its teardown is asynchronous; the slot is only
    handed to the next run (and ``run`` only returns) once nothing of this uid is left."""
    deadline = time.monotonic() + wait_s
    while True:
        pids = _pids_of(uid)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def clean_stale_runs() -> list[str]:
    """Unmount and delete run dirs whose hrmcode process is gone (a crash or SIGKILL mid-run)."""
    runs = hostpaths.cache_root() / "runs"
    removed = []
    for entry in sorted(runs.iterdir()) if runs.is_dir() else []:
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        for point in _fs.mounted_under(entry):
            _fs.unmount(point)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    return removed


def _prlimit_args(limits: Limits, nproc: int) -> list[str]:
    cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s + 1)
    return [
        "/usr/bin/prlimit", f"--as={limits.memory_mb << 20}", f"--cpu={cpu}:{cpu + 1}", f"--nproc={nproc}",
        f"--fsize={limits.file_size_mb << 20}", f"--nofile={NOFILE}", "--core=0", "--",
    ]


def _as_argv(command: list[str] | str) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    if not command:
        raise SandboxError("empty command", "pass the program to run, e.g. ['python3', '-c', 'print(1)']")
    return list(command)


def interpret(finished, limits: Limits, *, signal_offset: bool) -> ExecResult:
    """Turn a finished process into an ExecResult. ``signal_offset``: the launcher reports a child
    killed by signal N as exit code 128+N (bubblewrap does)."""
    code: int | None = finished.returncode
    killed = None
    if code is not None and code < 0:
        killed, code = -code, None
    elif signal_offset and code is not None and 128 < code <= 128 + 64:
        killed, code = code - 128, None
    stderr = finished.stderr.decode("utf-8", errors="replace")
    # RLIMIT_AS makes allocations fail rather than killing, so each runtime reports it its own way.
    memory = not finished.timed_out and code != 0 and bool(_MEMORY_PATTERNS.search(stderr))
    return ExecResult(
        exit_code=None if finished.timed_out else code,
        stdout=finished.stdout.decode("utf-8", errors="replace"),
        stderr=stderr,
        wall_s=round(finished.wall_s, 4),
        timed_out=finished.timed_out,
        memory_exceeded=memory,
        killed_signal=signal.SIGKILL.value if finished.timed_out else killed,
        stdout_truncated=finished.stdout_truncated,
        stderr_truncated=finished.stderr_truncated,
    )


def collect_files(result: ExecResult, root: Path, collect: list[str] | None, collect_binary: list[str] | None,
             limits: Limits) -> None:
    for name in collect or []:
        text = _fs.read_back(root, name, limits.output_bytes)
        if text is not None:
            result.files[name] = text
    for name in collect_binary or []:
        data = _fs.read_back_bytes(root, name, limits.file_size_mb << 20)
        if data is not None:
            result.binary[name] = data


class BubblewrapSandbox:
    """Runs commands under bubblewrap; see the module docstring for the exact profile."""

    name = "local"

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

    def bwrap_argv(self, argv: list[str], run: _RunDir, limits: Limits, uid: int, env: dict[str, str],
                   seccomp_fd: int | None = None) -> list[str]:
        args = [self.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--die-with-parent", "--new-session"]
        if not limits.network:
            args.append("--unshare-net")
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
        if limits.network:
            etc_entries += list(_ETC_NETWORK)
        else:
            args += ["--ro-bind", str(etc / "hosts"), "/etc/hosts"]
        for entry in etc_entries:
            args += ["--ro-bind-try", entry, entry]
        args += toolchain_binds()
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
            nproc = len(_pids_of(uid)) + limits.processes
        return args + _prlimit_args(limits, nproc) + argv

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
        limits = limits or Limits()
        argv = _as_argv(command)
        full_env = {**base_env(), **(env or {})}
        with contextlib.ExitStack() as stack:
            uid = stack.enter_context(uid_slot(worker)) if is_root() else os.getuid()
            run = stack.enter_context(run_dir(limits, uid, go_seed_path()))
            _fs.write_tree(run.work, files or {}, uid if is_root() else None, uid if is_root() else None)
            seccomp = _seccomp_file()
            seccomp_fd = os.open(seccomp, os.O_RDONLY) if seccomp is not None else None
            if seccomp_fd is not None:
                stack.callback(os.close, seccomp_fd)
            finished = supervise(
                self.bwrap_argv(argv, run, limits, uid, full_env, seccomp_fd), timeout_s=limits.timeout_s,
                output_bytes=limits.output_bytes, stdin=stdin.encode() if isinstance(stdin, str) else stdin,
                pass_fds=(seccomp_fd,) if seccomp_fd is not None else (),
            )
            result = interpret(finished, limits, signal_offset=True)
            collect_files(result, run.work, collect, collect_binary, limits)
        return result


class UnsafeSandbox:
    """No isolation at all: a plain subprocess in a temporary directory with rlimits.

    Only for machines without bubblewrap, when the user asked for it explicitly
    (``--unsafe-no-sandbox``). The command can read and write everything the caller can, reach the
    network, and leave daemons behind (only its process group is killed)."""

    name = "unsafe"

    def describe(self) -> str:
        return "no sandbox (plain subprocess with rlimits)"

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
        import resource
        import tempfile

        limits = limits or Limits()
        argv = _as_argv(command)
        cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s + 1)

        def apply_limits() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb << 20,) * 2)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        with tempfile.TemporaryDirectory(prefix="hrmcode-unsafe-") as tmp:
            _fs.write_tree(Path(tmp), files or {})
            process_env = {**os.environ, "HRMCODE_SANDBOX": "unsafe", **(env or {})}
            finished = supervise(argv, timeout_s=limits.timeout_s, output_bytes=limits.output_bytes, env=process_env,
                                 cwd=tmp, stdin=stdin.encode() if isinstance(stdin, str) else stdin,
                                 preexec_fn=apply_limits)
            result = interpret(finished, limits, signal_offset=False)
            collect_files(result, Path(tmp), collect, collect_binary, limits)
        return result
