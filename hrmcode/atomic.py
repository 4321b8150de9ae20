"""The one write-temp-then-rename helper: a file written through it is either the old file or
the whole new one, never a part.

Guarantees: the temporary file lives beside the target (same filesystem, so the rename is
atomic), is named ``<name>.tmp`` and is removed when writing fails; with ``durable=True`` the data
is fsynced before the rename. With ``unique=True`` each writer stages under a name of its own
(``<name>.<random>.tmp``), so several processes may replace one shared cache file at the same
moment: the last rename wins and every reader sees one whole file. Not guaranteed: that the
directory entry survives a power loss (the directory itself is not fsynced).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def temp_path(path: Path | str) -> Path:
    """Where ``path`` is staged before the rename."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextlib.contextmanager
def staged(path: Path | str, *, unique: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a path (a compiler, ``torch.save``);
    on a clean exit it is renamed over ``path``, on an error removed."""
    path = Path(path)
    if unique:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (str(tmp), tmp):
            exc.filename, exc.filename2 = str(path), None  # the user knows the path they gave, not its staging twin
        raise


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "w", *, durable: bool = False, unique: bool = False,
                encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path``'s temporary file for writing; on a clean exit rename it over ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode {mode!r}")
    with staged(path, unique=unique) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
        yield fh
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: Path | str, text: str, *, durable: bool = False, unique: bool = False) -> Path:
    with atomic_open(path, "w", durable=durable, unique=unique) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: Path | str, data: bytes, *, durable: bool = False, unique: bool = False) -> Path:
    with atomic_open(path, "wb", durable=durable, unique=unique) as fh:
        fh.write(data)
    return Path(path)


def exchange(a: Path | str, b: Path | str) -> bool:
    """Swap two existing paths (files or directories) in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False, with nothing changed, where the system or filesystem cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
