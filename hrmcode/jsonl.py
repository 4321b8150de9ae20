"""JSON Lines reading and writing with errors that name the file and line.

Writing is atomic (``<name>.tmp`` then rename) and byte-stable: the same records give the
same bytes (UTF-8, no ASCII escaping, compact separators, key order as given).

A record (one line) is at most ``max_record_bytes()`` bytes: 16 MiB (``MAX_RECORD_BYTES``), or
``$HRMCODE_MAX_RECORD_BYTES``. ``read_jsonl`` refuses a longer line after reading at most that
many bytes of it, and ``write_jsonl`` refuses to write one, so an artifact's JSONL never holds a
record that a reader (polars included) would have to load whole. Not bounded: ``iter_chunk_lines``
(its caller already holds the chunk) and ``AppendLog`` (it writes records the step made itself).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hrmcode import atomic
from hrmcode.errors import InputError, UsageError

MAX_RECORD_BYTES = 16 << 20
MAX_RECORD_ENV = "HRMCODE_MAX_RECORD_BYTES"


def max_record_bytes() -> int:
    """The bound on one JSONL record: ``$HRMCODE_MAX_RECORD_BYTES`` if set, else ``MAX_RECORD_BYTES``."""
    value = os.environ.get(MAX_RECORD_ENV)
    if not value:
        return MAX_RECORD_BYTES
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"${MAX_RECORD_ENV}={value!r} is not a positive number of bytes",
                         f"unset it for the default of {MAX_RECORD_BYTES}")
    return int(value)


def _too_long(path: Path | str, lineno: int, limit: int) -> InputError:
    return InputError(f"{path}:{lineno}: a record longer than {limit:,} bytes",
                      f"split or shorten it, or raise ${MAX_RECORD_ENV}")


def dumps(record: Any) -> str:
    """One JSON line for a dict or a pydantic model (no trailing newline)."""
    if hasattr(record, "model_dump"):
        record = record.model_dump(mode="json")
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (legal in JSON text, not in UTF-8): escaped, it reads back the same
            return json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    return line


def loads_line(line: str | bytes, path: Path | str, lineno: int, hint: str = "fix or remove that line") -> Any:
    """Parse one JSON line; a bad one is an ``InputError`` naming ``path:lineno``."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})", hint) from None


def iter_chunk_lines(
    raw: bytes, first_line: int, path: Path | str, hint: str = "fix or remove that line"
) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a byte range of a JSONL file starting at
    line ``first_line`` (how parallel workers read their share of a big file)."""
    for offset, line in enumerate(raw.split(b"\n")):
        if line.strip():
            lineno = first_line + offset
            yield lineno, loads_line(line, path, lineno, hint)


def read_jsonl_numbered(path: Path | str, max_bytes: int | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(1-based line number, dict)`` for each non-blank line of a .jsonl or .jsonl.gz file.

    Raises ``InputError`` naming the file and line number for a line that is not a JSON
    object, or longer than ``max_bytes`` (default ``max_record_bytes()``), so a user can find and
    fix it.
    """
    path = Path(path)
    limit = max_bytes or max_record_bytes()
    if not path.is_file():
        raise InputError(f"{path}: no such file", "check the path")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            lineno = 0
            while raw := fh.readline(limit + 1):  # never more than the bound in memory
                lineno += 1
                if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
                    raise _too_long(path, lineno, limit)
                if not raw.strip():
                    continue
                line = raw.decode("utf-8")
                record = loads_line(line, path, lineno)
                if not isinstance(record, dict):
                    raise InputError(
                        f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}",
                        "each line must be one object",
                    )
                yield lineno, record
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})", "is it a UTF-8 JSONL file?") from None


def read_jsonl(path: Path | str, max_bytes: int | None = None) -> Iterator[dict]:
    """Yield each non-blank line of ``path`` as a dict (see ``read_jsonl_numbered``)."""
    for _, record in read_jsonl_numbered(path, max_bytes):
        yield record


def write_jsonl(path: Path | str, records: Iterable[Any], max_bytes: int | None = None) -> int:
    """Write records atomically; return how many were written. A record longer than ``max_bytes``
    (default ``max_record_bytes()``) is an ``InputError`` naming its line, and nothing is written."""
    path = Path(path)
    limit = max_bytes or max_record_bytes()
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for record in records:
                line = dumps(record)
                if len(line) * 4 > limit and len(line.encode("utf-8")) > limit:  # a char is at most 4 bytes
                    raise InputError(f"record {count + 1} of {path.name} is longer than {limit:,} bytes",
                                     f"drop or shorten it at its source, or raise ${MAX_RECORD_ENV}")
                fh.write(line)
                fh.write("\n")
                count += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return count


def count_lines(path: Path | str) -> int:
    """Number of non-blank lines (records) in a JSONL file."""
    with Path(path).open("rb") as fh:
        return sum(1 for line in fh if line.strip())


class AppendLog:
    """Per-item results appended as they finish, so that a rerun skips finished work.

    Each line is written whole, flushed and fsynced, so a process killed at any point leaves every
    appended record plus at most one torn last line (no newline, possibly cut inside a multi-byte
    character). Reopening drops that torn line, keeps one record per key (the last), and rewrites
    the file that way (through ``hrmcode.atomic``), so a crash never poisons a resume and a record
    is never counted twice. A malformed line that is not the last was not torn by a crash: it is
    an ``InputError`` naming the line, and the file is left as it is.
    """

    def __init__(self, path: Path | str, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.records: dict[str, dict] = {}
        if self.path.exists():
            self._load()
        self._fh = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        lines: dict[str, bytes] = {}
        raw = self.path.read_bytes()
        torn_tail = not raw.endswith(b"\n")  # the last line was cut mid-write (or the file is empty)
        numbered = list(enumerate(raw.split(b"\n"), 1))
        for lineno, line in numbered:
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                if torn_tail and lineno == len(numbered):
                    continue  # torn write from a crash
                raise InputError(f"{self.path}:{lineno}: malformed record ({type(exc).__name__})",
                                 "remove that line to keep the other results, or start over") from None
            if isinstance(record, dict) and self.key in record:
                key = str(record[self.key])
                lines.pop(key, None)  # a repeated key: the last record wins, in its own place
                lines[key] = line + b"\n"
                self.records.pop(key, None)
                self.records[key] = record
        atomic.write_bytes(self.path, b"".join(lines.values()), durable=True)

    def done(self, item_id: str) -> bool:
        return str(item_id) in self.records

    def append(self, record: Any) -> None:
        self.extend([record])

    def extend(self, records: Iterable[Any]) -> None:
        """Append records with one write and one fsync (a batch that finished together)."""
        records = [r.model_dump(mode="json") if hasattr(r, "model_dump") else r for r in records]
        if not records:
            return
        self._fh.write("".join(dumps(record) + "\n" for record in records))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for record in records:
            self.records[str(record[self.key])] = record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
