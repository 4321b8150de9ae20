"""Plumbing every isolating backend shares: uid slots, per-run directories, killing a uid's
processes, turning a finished process into an ``ExecResult``, and cleaning up after a crash.

Both the bubblewrap (``local.py``) and the docker (``docker_backend.py``) backend run a command as
a sandbox uid in a fresh run directory on this host; what differs is only how they launch it.

Guarantees:

- ``uid_slot``: a uid no other hrmcode sandbox on this host is using (a flock under
  ``/run/hrmcode-sandbox``, host-wide whatever cache root each process uses); when the slot is
  released every process of that uid has been killed and is gone, so the next run of the uid
  starts with none left over.
- ``run_dir``: a fresh directory per run (work dir, ``/tmp`` and Go cache), removed afterwards.
  When hrmcode runs as root they live in one tmpfs of ``Limits.disk_mb`` (so a disk-filling run
  fills only that), the work dir and ``/tmp`` belong to the run's uid, and the Go cache is a
  copy-on-write overlay over the read-only seed (writes vanish with the run). As a normal user the
  work dir is a plain directory with no total size cap and the Go cache a persistent per-worker
  directory.
- ``clean_stale_runs``: removes only run directories whose hrmcode process is gone.
- ``interpret``: a run past its deadline reports ``timed_out`` and SIGKILL, never an exit code.

Not guaranteed: ``memory_exceeded`` is recognised from what each runtime prints when an allocation
fails under RLIMIT_AS (a program printing the same words is read the same way; the docker backend
also reads the container's OOM flag); ``kill_uid`` waits at most ``wait_s`` for processes to die.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hrmcode.errors import SandboxError
from hrmcode.sandbox import _fs, hostpaths
from hrmcode.sandbox._proc import Finished
from hrmcode.sandbox.base import ExecResult, Limits

UID_SLOTS = 64  # concurrent sandboxes on one host, each with its own uid
NOFILE = 4096  # open files per process (RLIMIT_NOFILE), the same in every backend
UID_LOCK_DIR = Path("/run/hrmcode-sandbox")
_MEMORY_PATTERNS = re.compile(
    r"MemoryError|std::bad_alloc|out of memory|Cannot allocate memory|memory allocation of \d+ bytes failed"
    r"|OutOfMemoryError|Could not reserve enough space|heap out of memory|failed to reserve memory|ENOMEM"
)


def uid_base() -> int:
    return int(os.environ.get("HRMCODE_SANDBOX_UID_BASE", "61000"))


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


def kill_uid(uid: int, wait_s: float = 10.0) -> None:
    """SIGKILL every process of a sandbox uid and wait until they are gone.

    The PID namespace already dies with bwrap, but its teardown is asynchronous; the slot is only
    handed to the next run (and ``run`` only returns) once nothing of this uid is left."""
    deadline = time.monotonic() + wait_s
    while True:
        pids = pids_of(uid)
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


@contextlib.contextmanager
def run_dir(limits: Limits, uid: int, go_seed: Path | None) -> Iterator[RunDir]:
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
            seed = _ready_seed(go_seed)
            if seed is not None:  # copy-on-write over the trusted seed; writes land in this run's tmpfs
                (root / "go-upper").mkdir()
                (root / "go-work").mkdir()
                os.chown(root / "go-upper", uid, uid)
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
