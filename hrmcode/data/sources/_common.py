"""Helpers shared by the source modules: the source description, record readers with line
numbers, language detection by extension, and the two remote transports (git, Hugging Face).

Record files: JSONL (``.jsonl``, ``.jsonl.gz``), parquet, arrow (``datasets``' own files), and
whole JSON documents (``.json``, SWE-agent's ``.traj``): a JSON array of objects (SWE-smith's
``harness.gather`` output), one object, pretty-printed or not (SWE-smith's instance files, a
``.traj``), or JSON Lines under a ``.json`` name. A JSON document is read whole into memory;
JSONL and parquet are streamed, arrow is memory-mapped.

What users have on disk from ``datasets`` is read through it (``hrmcode/datasets_io.py``): a
``save_to_disk`` directory (of a ``DatasetDict``: the source's ``--split``) and a local snapshot
of a hub repository (a folder whose README.md is a dataset card: its ``--split`` as the card's
``configs`` say). The hub itself is read with ``datasets.load_dataset`` at a pinned revision,
streamed, after one short request (``HubDataset``) that checks the hub answers and resolves the
revision: offline (``HF_HUB_OFFLINE=1``) or unreachable, that request fails at once.

Guarantees: every reader error names the file and 1-based line (or parquet/arrow/dataset row) it
came from; every remote failure becomes one ``SourceUnavailable`` line that names ``--from``.
Nothing here writes an artifact; ``hrmcode.data.sources.fetch`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hrmcode.datasets_io import (
    arrow_rows,
    hub_rows,
    is_hub_snapshot,
    is_saved_dataset,
    refuse_lfs_pointer,
    saved_rows,
    snapshot_rows,
)
from hrmcode.errors import InputError, SourceUnavailable
from hrmcode.jsonl import read_jsonl_numbered

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
HUB_TIMEOUT_S = 10  # the one request that checks the hub answers; the data is streamed afterwards

# File extension -> language. ``.h`` counts as C++ (the polyglot and SWE-smith C++ repos use it).
EXTENSION_LANGUAGE: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript",
    ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".h": "cpp",
    ".c": "c",
    ".cs": "csharp",
    ".php": "php",
    ".rb": "ruby",
    ".kt": "kotlin",
    ".scala": "scala",
    ".swift": "swift",
}


def language_of(path: str) -> str | None:
    """The language a file's extension says, or None for non-code files."""
    return EXTENSION_LANGUAGE.get(PurePosixPath(path).suffix.lower())


@dataclass
class FetchRequest:
    """What the user asked for: ``--from`` paths (empty: use the remote) and the source's options."""

    from_paths: list[str]
    options: dict[str, Any]
    workspace: Path | str | None = None


@dataclass
class Fetched:
    """An opened source: a lazy stream of records plus where it came from.

    ``records`` yields ``Task`` objects (tasks sources) or dicts (the ``code`` corpus).
    ``stats`` may be filled while ``records`` is consumed (skips, decode failures).
    """

    records: Iterator[Any]
    origin: str
    revision: str | None = None
    total: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """One fetchable source. ``options`` maps each accepted option name to its default."""

    name: str
    summary: str
    remote: str | None
    open: Callable[[FetchRequest], contextlib.AbstractContextManager[Fetched]]
    options: dict[str, Any] = field(default_factory=dict)
    artifact_kind: str = "tasks"
    needs_from: bool = False
    many_from: bool = False


# -- local readers -----------------------------------------------------------------------------

def require_path(path: str | Path, what: str = "path") -> Path:
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise InputError(f"--from {path}: no such {what}", "check the path")
    return resolved


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a .jsonl or .jsonl.gz file."""
    return read_jsonl_numbered(path)


def iter_parquet_rows(path: Path, batch_size: int = 1024) -> Iterator[tuple[int, dict]]:
    """``(row number, dict)`` for each row of a parquet file, read one batch at a time."""
    import pyarrow.parquet as pq

    refuse_lfs_pointer(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise InputError(f"{path}: not a readable parquet file ({' '.join(str(exc).split())[:160]})", "check the file") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for record in batch.to_pylist():
            row += 1
            yield row, record


JSON_DOCUMENT_SUFFIXES = (".json", ".traj")
RECORD_FILE_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.parquet", "*.arrow")


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _malformed(path: Path, text: str, at: int, what: str) -> InputError:
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    return InputError(f"{path}:{line}: malformed JSON ({what} at column {column})", "fix the file at that line")


def iter_json_document(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line, object)`` for each object of a JSON document: the elements of a top-level array, or
    the one top-level object (``line`` is where each starts). A file of several top-level objects
    one after another is JSON Lines under another name and is read as such. Every error names the
    file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})", "is it a UTF-8 JSON file?") from None
    decoder = json.JSONDecoder()

    def value_at(at: int) -> tuple[Any, int]:
        try:
            return decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise _malformed(path, text, exc.pos, exc.msg) from None

    def an_object(value: Any, at: int) -> tuple[int, dict]:
        line = text.count("\n", 0, at) + 1
        if not isinstance(value, dict):
            raise InputError(f"{path}:{line}: expected a JSON object, got {type(value).__name__}",
                             "the file must hold one object, an array of objects, or one object per line")
        return line, value

    at = _skip_space(text, 0)
    if at == len(text):
        return
    if text[at] != "[":
        value, end = value_at(at)
        rest = _skip_space(text, end)
        if rest < len(text):
            if text[rest] == "{" and "\n" in text[end:rest]:
                yield from iter_jsonl_lines(path)  # JSON Lines named .json
                return
            raise _malformed(path, text, rest, "extra data after the top-level value")
        yield an_object(value, at)
        return
    at = _skip_space(text, at + 1)
    while at >= len(text) or text[at] != "]":
        value, end = value_at(at)
        yield an_object(value, at)
        at = _skip_space(text, end)
        if at < len(text) and text[at] == ",":
            at = _skip_space(text, at + 1)
        elif at >= len(text) or text[at] != "]":
            raise _malformed(path, text, at, "expected ',' or ']' in the array")
    if _skip_space(text, at + 1) < len(text):
        raise _malformed(path, text, _skip_space(text, at + 1), "extra data after the array")


def iter_records(path: Path) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` for a JSONL, parquet, arrow or JSON-document (``.json``/``.traj``) file;
    ``where`` is ``file:line`` (``file:row N`` for parquet and arrow). A Git LFS pointer is refused."""
    refuse_lfs_pointer(path)
    if path.suffix == ".parquet":
        for row, record in iter_parquet_rows(path):
            yield f"{path}:row {row}", record
    elif path.suffix == ".arrow":
        yield from arrow_rows(path)
    elif path.suffix in JSON_DOCUMENT_SUFFIXES:
        for lineno, record in iter_json_document(path):
            yield f"{path}:{lineno}", record
    else:
        for lineno, record in iter_jsonl_lines(path):
            yield f"{path}:{lineno}", record


def data_files(path: Path, patterns: tuple[str, ...] = RECORD_FILE_PATTERNS) -> list[Path]:
    """The data files ``--from`` names: the file itself, or the matching files in a directory (sorted)."""
    if path.is_file():
        return [path]
    found = sorted({p for pattern in patterns for p in path.rglob(pattern) if p.is_file()})
    if not found:
        raise InputError(f"--from {path}: no {'/'.join(patterns)} files in that directory", "point --from at a data file")
    return found


def local_rows(from_path: str, patterns: tuple[str, ...], split: str | None) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` of ``--from``: a ``save_to_disk`` directory (its ``split`` when it holds
    several), a hub snapshot (its ``split``), a record file, or a directory of record files
    matching ``patterns``."""
    path = require_path(from_path)
    if is_saved_dataset(path):
        return saved_rows(path, split)
    if is_hub_snapshot(path):
        return snapshot_rows(path, split or "train")
    files = data_files(path, patterns)
    return (row for file in files for row in iter_records(file))


# -- git -----------------------------------------------------------------------------------------

def looks_like_git_url(text: str) -> bool:
    return "://" in text or text.startswith("git@") or text.endswith(".git")


@contextlib.contextmanager
def shallow_clone(url: str, timeout_s: float = 600) -> Iterator[tuple[Path, str]]:
    """``git clone --depth 1`` into a temporary directory; yields ``(checkout, commit sha)``.

    The directory is removed afterwards. Failure (no git, unreachable host, no such repo) is one
    ``SourceUnavailable`` line naming ``--from DIR``.
    """
    git = shutil.which("git")
    if git is None:
        raise SourceUnavailable(f"cannot clone {url}: git is not installed", "install git, or pass --from DIR with a local copy")
    tmp = Path(tempfile.mkdtemp(prefix="hrmcode-clone-"))
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        checkout = tmp / "repo"
        try:
            done = subprocess.run(
                [git, "clone", "--quiet", "--depth", "1", url, str(checkout)],
                capture_output=True, text=True, timeout=timeout_s, env=env,
            )
        except subprocess.TimeoutExpired:
            raise SourceUnavailable(f"cannot clone {url}: no answer in {timeout_s:.0f} s", "pass --from DIR with a local copy") from None
        if done.returncode != 0:
            lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"git exited with {done.returncode}"
            raise SourceUnavailable(f"cannot clone {url}: {reason}", "pass --from DIR with a local copy")
        head = subprocess.run([git, "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, env=env)
        yield checkout, head.stdout.strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def git_commit_of(path: Path) -> str | None:
    """The HEAD commit when ``path`` is the top of a git checkout (for the manifest), else None."""
    git = shutil.which("git")
    if git is None:
        return None
    top = subprocess.run([git, "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != path.resolve():
        return None  # not a checkout of its own (maybe a folder inside an unrelated repository)
    done = subprocess.run([git, "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


# -- Hugging Face hub ----------------------------------------------------------------------------

def hf_endpoint() -> str:
    """``$HF_ENDPOINT`` (read at call time, so a mirror or a test can redirect it) or huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT


def _unavailable(dataset: str, exc: BaseException) -> SourceUnavailable:
    reason = " ".join(str(exc).split())
    reason = reason.split(". ", 1)[0][:200] or type(exc).__name__  # the first sentence says it
    return SourceUnavailable(
        f"cannot reach Hugging Face dataset {dataset} at {hf_endpoint()}: {reason}",
        "pass --from PATH with a local copy of its files",
    )


class HubDataset:
    """One dataset repository on the hub at one revision: ``revision`` (a pinned commit, a tag or a
    branch; None: the newest) is resolved to its commit by one short request, which is also the
    check that the hub answers; ``rows`` streams the data at that commit through ``datasets``."""

    def __init__(self, dataset: str, revision: str | None = None):
        self.dataset = dataset
        try:
            from huggingface_hub import HfApi
        except ImportError as exc:
            raise SourceUnavailable(
                f"cannot fetch {dataset}: huggingface_hub is not installed", "pip install huggingface-hub, or pass --from PATH"
            ) from exc
        self.api = HfApi(endpoint=hf_endpoint())
        try:
            info = self.api.dataset_info(dataset, revision=revision, timeout=HUB_TIMEOUT_S, files_metadata=False)
        except Exception as exc:  # noqa: BLE001 - transport, HTTP and offline-mode errors all mean "not reachable"
            raise _unavailable(dataset, exc) from None
        self.revision: str = getattr(info, "sha", None) or revision or "main"
        self.files = sorted(sibling.rfilename for sibling in (info.siblings or []))

    def rows(self, split: str | None = None, files: tuple[str, ...] = ()) -> Iterator[tuple[str, dict]]:
        """``(where, row)`` of ``split`` (or of the JSON Lines ``files``) at the resolved revision."""
        return hub_rows(self.dataset, self.revision, split=split, files=files)
