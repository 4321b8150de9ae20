"""Plumbing every isolating backend shares: uid slots, per-run directories, killing a uid's
processes, turning a finished process into an ``ExecResult``, and cleaning up after a crash.

Both the bubblewrap (``local.py``) and the docker (``docker_backend.py``) backend run a command as
a sandbox uid in a fresh run directory on this host; what differs is only how they launch it.

Guarantees:

- ``uid_slot``: a uid no other hrmcode sandbox on this host is using (a flock under
  ``/run/hrmcode-sandbox``, host-wide whatever cache root each process uses), that no account in
  ``/etc/passwd`` or subordinate range in ``/etc/subuid`` names, and that no process hrmcode did not
  start is running as when the run begins (such a slot is skipped, its process left alone; when
  every slot is taken that way the run is refused). The uids are ``HRMCODE_SANDBOX_UID_BASE``
  (default 2 000 000, above what login.defs and systemd hand to accounts and dynamic users) plus
  0..63. When the slot is released every sandboxed process of that uid (one in a PID namespace
  other than hrmcode's) has been killed and is gone, so the next run of the uid starts with none
  left over; a process of the uid in hrmcode's own PID namespace (no sandbox started it) is never
  killed, even one that began during the run.
- ``run_dir``: a fresh directory per run (work dir, ``/tmp`` and Go cache), removed afterwards.
  When hrmcode runs as root they live in one tmpfs of ``Limits.disk_mb`` and ``Limits.inodes``
  files (so a disk-filling or file-creating run fills only that, and its inodes cannot pin
  unbounded kernel memory), the work dir and ``/tmp`` belong to the run's uid, and the Go cache is a
  copy-on-write overlay over the read-only seed (writes vanish with the run). As a normal user the
  work dir is a plain directory with no total size or file-count cap and the Go cache a persistent
  per-worker directory.
- Crash cleanup: a run directory (and its cgroup, ``run_cgroup``) is named after its owner, the
  hrmcode process's pid and start time (from ``/proc/PID/stat``, so a reused pid is not taken for
  the owner). Each new ``run_dir`` first sweeps (``clean_stale_runs``) the run directories and
  cgroups whose owner is gone — a SIGKILLed ``validate`` or ``eval`` leaves its tmpfs mounted only
  until the next sandbox run on this host — and never touches a live owner's.
- ``run_cgroup``: the run's memory cgroup (``_cgroup.py``: v2, else v1, else none), capping memory
  summed over all its processes at ``Limits.memory_mb``; ``memory_cap`` says which applied.
- ``interpret``: a run past its deadline reports ``timed_out`` and SIGKILL, never an exit code.

Not guaranteed: ``memory_exceeded`` is recognised from what each runtime prints when an allocation
fails under RLIMIT_AS (a program printing the same words is read the same way), and from the kernel's
OOM kills in the run's cgroup or container; ``kill_uid`` waits at most ``wait_s`` for processes to
die; owners are judged by this host's ``/proc`` (a cache directory shared with another PID namespace
is not supported).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hrmcode.errors import SandboxError
from hrmcode.sandbox import _cgroup, _fs, hostpaths
from hrmcode.sandbox._proc import Finished
from hrmcode.sandbox.base import ExecResult, Limits

UID_SLOTS = 64  # concurrent sandboxes on one host, each with its own uid
DEFAULT_UID_BASE = 2_000_000  # no account range; <= 2097151 so ustar archives still hold these uids
NOFILE = 4096  # open files per process (RLIMIT_NOFILE), the same in every backend
UID_LOCK_DIR = Path("/run/hrmcode-sandbox")
_MEMORY_PATTERNS = re.compile(
    r"MemoryError|std::bad_alloc|out of memory|Cannot allocate memory|memory allocation of \d+ bytes failed"
    r"|OutOfMemoryError|Could not reserve enough space|heap out of memory|failed to reserve memory|ENOMEM"
)


def uid_base() -> int:
    return int(os.environ.get("HRMCODE_SANDBOX_UID_BASE", str(DEFAULT_UID_BASE)))


def is_root() -> bool:
    return os.geteuid() == 0


def cpu_seconds(limits: Limits) -> int:
    """RLIMIT_CPU's soft limit for a run: ``Limits.cpu_s``, by default one second past the wall timeout."""
    return int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s + 1)


def as_argv(command: list[str] | str) -> list[str]:
    """An argv list: a string runs under ``/bin/sh -c``; an empty list is refused."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    if not command:
        raise SandboxError("empty command", "pass the program to run, e.g. ['python3', '-c', 'print(1)']")
    return list(command)


def _ready_seed(seed: Path | None) -> Path | None:
    return seed if seed is not None and (seed / ".complete").exists() else None


# -- uids ------------------------------------------------------------------------------------

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


def account_uids(passwd: Path = Path("/etc/passwd"), subuid: Path = Path("/etc/subuid")) -> Callable[[int], bool]:
    """Whether a uid belongs to an account (``passwd``) or a subordinate range (``subuid``)."""
    named: set[int] = set()
    ranges: list[range] = []
    with contextlib.suppress(OSError):
        for line in passwd.read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                named.add(int(fields[2]))
    with contextlib.suppress(OSError):
        for line in subuid.read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                ranges.append(range(int(fields[1]), int(fields[1]) + int(fields[2])))
    return lambda uid: uid in named or any(uid in r for r in ranges)


@contextlib.contextmanager
def uid_slot(worker: int) -> Iterator[int]:
    """A uid no other hrmcode sandbox is using now: ``base + worker`` if free, else the next free one.

    RLIMIT_NPROC counts every process of a uid, and a run ends by killing every process of its uid,
    so two sandboxes sharing one would starve or kill each other; the flock makes uids exclusive
    across every process on this host, whatever cache root each uses. A uid an account names, or
    that a process runs as while no hrmcode holds its lock (hrmcode did not start it), is skipped:
    killing the run's uid at the end must never kill someone else's process."""
    locks = uid_lock_dir()
    is_account = account_uids()
    order = [uid_base() + (worker + i) % UID_SLOTS for i in range(UID_SLOTS)]
    candidates = [uid for uid in order if not is_account(uid)]
    for blocking in (False, True):
        for uid in candidates if not blocking else candidates[:1]:
            fd = os.open(locks / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                continue
            if pids_of(uid):  # locked by no hrmcode, yet running: not ours to use, nor to kill
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                try:
                    kill_uid(uid)
                finally:
                    os.close(fd)
            return
    raise SandboxError(f"no free sandbox uid in {uid_base()}..{uid_base() + UID_SLOTS - 1}: each is an account's, "
                       "or processes hrmcode did not start run as it",
                       "set HRMCODE_SANDBOX_UID_BASE to the first of 64 uids nothing on this host uses")


def unusable_uids() -> list[int]:
    """The sandbox uids ``uid_slot`` would skip now: an account's, or run as by a process while no
    hrmcode holds the uid (a uid a live sandbox holds is hrmcode's, so usable)."""
    is_account = account_uids()
    unusable = []
    for uid in range(uid_base(), uid_base() + UID_SLOTS):
        if is_account(uid):
            unusable.append(uid)
            continue
        fd = os.open(uid_lock_dir() / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if pids_of(uid):
                unusable.append(uid)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return unusable


def pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def sandboxed_pids_of(uid: int) -> list[int]:
    """Processes of ``uid`` in a PID namespace other than hrmcode's own. Every sandbox runs in one
    of its own (bwrap ``--unshare-pid``, a container); a process of the uid in hrmcode's namespace
    was not started by a sandbox."""
    try:
        own = os.readlink("/proc/self/ns/pid")
    except OSError:
        return pids_of(uid)
    found = []
    for pid in pids_of(uid):
        try:
            namespace = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:  # gone, or a zombie (no namespace left): waited for like the rest of the run
            namespace = None
        if namespace != own:
            found.append(pid)
    return found


def kill_uid(uid: int, wait_s: float = 10.0) -> None:
    """SIGKILL every sandboxed process of a sandbox uid (``sandboxed_pids_of``) and wait until they
    are gone; a process of the uid that no sandbox started (one that began as the uid during the run)
    is left alone.

    The PID namespace already dies with bwrap, but its teardown is asynchronous; the slot is only
    handed to the next run (and ``run`` only returns) once nothing sandboxed of this uid is left."""
    deadline = time.monotonic() + wait_s
    while True:
        pids = sandboxed_pids_of(uid)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


# -- run directories ---------------------------------------------------------------------------

@dataclass
class RunDir:
    root: Path
    work: Path
    tmp: Path | None  # host dir bound at /tmp (None: the backend makes a size-capped tmpfs)
    gocache: Path


def _mounts_enabled() -> bool:
    return is_root() and not os.environ.get("HRMCODE_SANDBOX_NO_MOUNT")


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, field 22 of /proc/PID/stat); None if it is gone.
    A pid and its start time name one process: a reused pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name in (...) may hold spaces
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def owner_tag() -> str:
    """``<pid>-<start time>`` of this process: the prefix of its run directories and cgroups."""
    return f"{os.getpid()}-{process_start_time(os.getpid())}"


def owner_gone(name: str) -> bool:
    """Whether the hrmcode process named by a run directory's name (``owner_tag()-<id>``) is gone.

    A name without a start time (earlier versions wrote ``<pid>-<id>``) is judged by the pid alone;
    a name that names no pid is left alone."""
    parts = name.split("-")
    if not parts[0].isdigit():
        return False
    start = process_start_time(int(parts[0]))
    if start is None:
        return True
    return len(parts) == 3 and parts[1].isdigit() and int(parts[1]) != start


@contextlib.contextmanager
def run_dir(limits: Limits, uid: int, go_seed: Path | None) -> Iterator[RunDir]:
    """A fresh per-run directory: work dir, /tmp and Go cache, in one size- and inode-capped tmpfs
    when root. Leftovers of crashed hrmcode processes are swept first."""
    clean_stale_runs()
    runs = hostpaths.cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    root = runs / f"{owner_tag()}-{uuid.uuid4().hex[:12]}"  # the owner lets `clean_stale_runs` spot leftovers
    root.mkdir(mode=0o700)
    mounted = False
    try:
        if _mounts_enabled():
            _fs.mount("hrmcode-sandbox", root, "tmpfs", f"size={limits.disk_mb}m,nr_inodes={limits.inodes},mode=0700")
            mounted = True
            work, tmp = root / "work", root / "tmp"
            work.mkdir()
            tmp.mkdir()
            os.chown(work, uid, uid)
            os.chown(tmp, uid, uid)
            gocache = root / "go"
            gocache.mkdir()
            seed = _ready_seed(go_seed)
            if seed is not None:  # copy-on-write over the trusted seed; writes land in this run's tmpfs
                (root / "go-upper").mkdir()
                (root / "go-work").mkdir()
                os.chown(root / "go-upper", uid, uid)
                for entry in os.scandir(seed):  # the seed's dirs are root's 0555: the run's uid owns its view of them
                    if entry.is_dir(follow_symlinks=False):
                        (root / "go-upper" / entry.name).mkdir()
                        os.chown(root / "go-upper" / entry.name, uid, uid)
                _fs.mount("hrmcode-go-cache", gocache, "overlay",
                          f"lowerdir={seed},upperdir={root / 'go-upper'},workdir={root / 'go-work'}")
            else:
                os.chown(gocache, uid, uid)
            yield RunDir(root, work, tmp, gocache)
        else:
            work = root / "work"
            work.mkdir()
            gocache = hostpaths.cache_root() / "workers" / str(uid) / "go"
            gocache.mkdir(parents=True, exist_ok=True)
            yield RunDir(root, work, None, gocache)
    finally:
        if mounted:
            for point in _fs.mounted_under(root):
                _fs.unmount(point)
        shutil.rmtree(root, ignore_errors=True)


def clean_stale_runs() -> list[str]:
    """Unmount and delete the run dirs, and remove the run cgroups, whose hrmcode process is gone (a
    crash or SIGKILL mid-run); returns their paths. A live owner's are never touched."""
    runs = hostpaths.cache_root() / "runs"
    removed = []
    for entry in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not owner_gone(entry.name):
            continue
        for point in _fs.mounted_under(entry):
            _fs.unmount(point)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    return removed + _cgroup.sweep(owner_gone)


@contextlib.contextmanager
def run_cgroup(limits: Limits, run: RunDir) -> Iterator[_cgroup.RunCgroup | None]:
    """The run's memory cgroup, capped at ``Limits.memory_mb`` and named as its run dir; None where
    no cgroup can be made (``_cgroup.describe()`` says which). Closing it kills what is left in it."""
    found = _cgroup.hierarchy()
    if found is None:
        yield None
        return
    cgroup = _cgroup.RunCgroup(found, run.root.name, limits.memory_mb)
    try:
        yield cgroup
    finally:
        cgroup.close()


# -- results -----------------------------------------------------------------------------------

def interpret(finished: Finished, limits: Limits, *, signal_offset: bool) -> ExecResult:
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
    """Read the files a caller asked back into ``result`` (``_fs``: never through a planted symlink)."""
    for name in collect or []:
        text = _fs.read_back(root, name, limits.output_bytes)
        if text is not None:
            result.files[name] = text
    for name in collect_binary or []:
        data = _fs.read_back_bytes(root, name, limits.file_size_mb << 20)
        if data is not None:
            result.binary[name] = data
