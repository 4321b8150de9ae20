"""A memory cgroup per sandbox run: the cap on memory summed over every process of the run.

RLIMIT_AS caps each process alone (six children of 400 MB each pass ``--memory 512``); a cgroup caps
them together, together with what the run keeps in its tmpfs and the kernel memory of its inodes.
Which mechanism applies is found once per process (``find_hierarchy``) and reported on each run
(``ExecResult.memory_cap``) and by ``hrmcode sandbox doctor``:

- ``cgroup v2``: a child of hrmcode's own cgroup (``<own>/hrmcode-sandbox/<run>``), when the unified
  hierarchy's memory controller can be delegated to it; ``memory.max`` = the cap, no swap,
  ``memory.oom.group`` (an OOM kill takes the whole run).
- ``cgroup v1``: the same path in the v1 memory hierarchy (machines whose memory controller is still
  mounted under v1): ``memory.limit_in_bytes`` and, where swap accounting exists,
  ``memory.memsw.limit_in_bytes``. The OOM killer takes the largest process of the run, not all.
- neither (not root, no memory controller, a read-only ``/sys/fs/cgroup``): no cgroup; each process
  keeps only its RLIMIT_AS, which the backends set in every case.

Guarantees: a run's cgroup lives under hrmcode's own, so limits set on hrmcode still apply to it; a
run that went over its cap says so (``oom_kills``); ``RunCgroup.close`` kills whatever is left in
the cgroup and removes it. The directory is named after the run's directory (owner pid and start
time), so ``sweep`` removes the cgroups a killed hrmcode left, and only those.
Not guaranteed: CPU or I/O shares; cgroups of another hrmcode whose own cgroup differs from this
one's (that process sweeps its own).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hrmcode.errors import SandboxError

SUBDIR = "hrmcode-sandbox"
FALLBACK = "rlimit-as (per process; no memory cgroup available)"


@dataclass(frozen=True)
class Hierarchy:
    """Where this process creates run cgroups: ``parent`` (``<own cgroup>/hrmcode-sandbox``)."""

    version: int  # 1 or 2
    parent: Path

    def describe(self) -> str:
        return f"cgroup v{self.version} (whole sandbox, {self.parent})"


def _mounts(mounts_file: Path) -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, options) of every line of a mounts table."""
    rows = []
    for line in mounts_file.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            rows.append((fields[1].replace("\\040", " "), fields[2], set(fields[3].split(","))))
    return rows


def _own_paths(cgroup_file: Path) -> dict[str, str]:
    """Controller (or '' for the unified hierarchy) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in cgroup_file.read_text().splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not number:
            continue
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _prepare_v2(own: Path) -> Path | None:
    """``own/hrmcode-sandbox`` with the memory controller enabled for its children, or None."""
    if "memory" not in (own / "cgroup.controllers").read_text().split():
        return None
    if "memory" not in (own / "cgroup.subtree_control").read_text().split():
        # Refused (EBUSY) while ``own`` holds processes and is not the root: then v2 is not ours to use.
        (own / "cgroup.subtree_control").write_text("+memory")
    parent = own / SUBDIR
    parent.mkdir(exist_ok=True)
    if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
        (parent / "cgroup.subtree_control").write_text("+memory")
    return parent


def _prepare_v1(own: Path) -> Path | None:
    parent = own / SUBDIR
    parent.mkdir(exist_ok=True)
    return parent if (parent / "memory.limit_in_bytes").exists() else None


def find_hierarchy(mounts_file: Path = Path("/proc/self/mounts"),
                   cgroup_file: Path = Path("/proc/self/cgroup")) -> Hierarchy | None:
    """The hierarchy run cgroups go in: v2 where its memory controller can be delegated, else v1,
    else None (the RLIMIT_AS fallback). Needs root; tries, and keeps the first that works."""
    if os.geteuid() != 0:
        return None
    try:
        mounts, own = _mounts(mounts_file), _own_paths(cgroup_file)
    except OSError:
        return None
    candidates: list[tuple[int, Path, Callable[[Path], Path | None]]] = []
    for point, fstype, options in mounts:
        if fstype == "cgroup2" and "" in own:
            candidates.insert(0, (2, Path(point + own[""].rstrip("/")), _prepare_v2))
        elif fstype == "cgroup" and "memory" in options and "memory" in own:
            candidates.append((1, Path(point + own["memory"].rstrip("/")), _prepare_v1))
    for version, own_dir, prepare in candidates:
        try:
            parent = prepare(own_dir)
        except OSError:
            continue
        if parent is not None:
            return Hierarchy(version, parent)
    return None


@functools.cache
def hierarchy() -> Hierarchy | None:
    """``find_hierarchy`` for this process, found once."""
    return find_hierarchy()


def describe() -> str:
    """The memory cap a run gets here, in words (for ``ExecResult.memory_cap`` and the doctor)."""
    found = hierarchy()
    return found.describe() if found is not None else FALLBACK


class RunCgroup:
    """One run's cgroup: made with its limit set, joined by the launcher, killed and removed at close."""

    def __init__(self, found: Hierarchy, name: str, memory_mb: int) -> None:
        self.hierarchy = found
        self.path = found.parent / name
        self.path.mkdir()
        limit = str(memory_mb << 20)
        try:
            if found.version == 2:
                (self.path / "memory.max").write_text(limit)
                for knob, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if (self.path / knob).exists():
                        (self.path / knob).write_text(value)
            else:
                (self.path / "memory.limit_in_bytes").write_text(limit)
                if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: no swap either
                    (self.path / "memory.memsw.limit_in_bytes").write_text(limit)
        except OSError as exc:
            self.close()
            raise SandboxError(f"cannot set the memory cap of cgroup {self.path}: {exc.strerror}",
                               "check /sys/fs/cgroup, or run hrmcode without root to use per-process limits") from None

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def join_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run by a shell that first moves itself into this cgroup, so every process the run
        starts is in it from the first instruction (a Python ``preexec_fn`` is unsafe with threads)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" || exit 125; exec "$@"', str(self.procs_file), *argv]

    def oom_kills(self) -> int:
        """How many processes of the run the kernel killed for going over the cap."""
        events = self.path / ("memory.events" if self.hierarchy.version == 2 else "memory.oom_control")
        try:
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def close(self, wait_s: float = 10.0) -> None:
        remove(self.path, wait_s)


def _pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def remove(path: Path, wait_s: float = 10.0) -> bool:
    """SIGKILL every process in the cgroup at ``path``, wait for them to go, remove it. False when
    something outlived ``wait_s`` (the next sweep tries again)."""
    if (path / "cgroup.kill").exists():  # v2, Linux 5.14+: the whole cgroup at once
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + wait_s
    while True:
        for pid in _pids(path):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:  # EBUSY while a killed process is still exiting
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def sweep(is_stale: Callable[[str], bool]) -> list[str]:
    """Remove the run cgroups under this process's hierarchy whose name ``is_stale`` says belongs to
    a dead hrmcode; returns their paths."""
    found = hierarchy()
    if found is None:
        return []
    removed = []
    with contextlib.suppress(OSError):
        for entry in sorted(found.parent.iterdir()):
            if entry.is_dir() and is_stale(entry.name) and remove(entry, wait_s=2.0):
                removed.append(str(entry))
    return removed
