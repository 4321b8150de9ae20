"""File plumbing for sandbox work dirs: writing the input tree, reading results back, mounts.

Guarantees: input paths are relative and stay inside the work dir (``..``, absolute paths and
empty names are refused with ``InputError``); reading a result back never follows a symlink a
sandboxed program planted (every path component is opened with ``O_NOFOLLOW`` relative to its
parent), so a run cannot make the host read ``/etc/shadow`` for it; results larger than the output
cap are truncated. Mount helpers call mount(2) directly and need root.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
from pathlib import Path, PurePosixPath

from hrmcode.errors import InputError, SandboxError


def checked_relpath(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(part in ("..", "") for part in path.parts) or name.endswith("/"):
        raise InputError(f"sandbox file name {name!r} is not a relative path inside the work dir",
                         "use paths like 'src/lib.rs', without '..' or a leading '/'")
    return path


def write_tree(root: Path, files: dict[str, str | bytes], uid: int | None = None, gid: int | None = None) -> None:
    """Write ``files`` under ``root``; chown everything created to ``uid:gid`` when given.

    Shell scripts keep working: a file whose content starts with ``#!`` is made executable."""
    made_dirs: set[Path] = set()
    for name in sorted(files):
        rel = checked_relpath(name)
        target = root.joinpath(*rel.parts)
        parent = target.parent
        for directory in reversed([parent, *parent.parents]):
            if directory in made_dirs or not directory.is_relative_to(root) or directory == root:
                continue
            directory.mkdir(exist_ok=True)
            made_dirs.add(directory)
            if uid is not None:
                os.chown(directory, uid, gid)
        data = files[name]
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755 if raw.startswith(b"#!") else 0o644)
        try:
            os.write(fd, raw)
            if uid is not None:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)


def read_back(root: Path, name: str, limit: int) -> str | None:
    """Read ``root/name`` as text without following any symlink; None when absent or not a regular file."""
    data = read_back_bytes(root, name, limit)
    return None if data is None else data.decode("utf-8", errors="replace")


def read_back_bytes(root: Path, name: str, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes of ``root/name`` without following any symlink."""
    rel = checked_relpath(name)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in rel.parts[:-1]:
            try:
                nxt = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nxt
        try:
            file_fd = os.open(rel.parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                return None
            chunks, size = [], 0
            while size < limit:
                chunk = os.read(file_fd, min(1 << 20, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(file_fd)
        return b"".join(chunks)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 2, 4


def mount(source: str, target: Path, fstype: str, options: str, flags: int = MS_NOSUID | MS_NODEV) -> None:
    if _libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot mount {fstype} on {target}: {os.strerror(err)}",
                           "run as root, or set HRMCODE_SANDBOX_NO_MOUNT=1 to use plain directories")


def unmount(target: Path) -> None:
    _libc.umount2(str(target).encode(), _MNT_DETACH)


def mounted_under(prefix: Path) -> list[Path]:
    """Mount points at or below ``prefix`` (deepest first), from /proc/self/mounts."""
    found = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    text_prefix = str(prefix)
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].replace("\\040", " ")
            if point == text_prefix or point.startswith(text_prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
