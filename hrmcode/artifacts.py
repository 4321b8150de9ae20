"""The artifact contract: one directory per step, ``manifest.json`` written last.

Guarantees:
- A directory with a ``manifest.json`` is a completed step. The manifest records the kind,
  schema version, hrmcode version, creation time, command, resolved parameters, seed, every
  input artifact (path, kind, sha256 of its manifest) and every output file (name, sha256,
  bytes, record count for JSONL).
- Non-resumable steps (fetch, analyze, quantize) are staged in a hidden sibling directory and
  renamed into place only when complete, so a failed or killed step leaves no manifest and never
  destroys an earlier artifact at the same path. Their output path must be absent, an empty
  directory, or an earlier artifact of the same kind holding only the files its manifest lists;
  anything else (a user's files, a file, another kind of artifact) is refused unless the caller
  passes ``replace=True`` (the CLI's ``--force``). Resumable steps (synthesize, validate, train,
  eval) write in place; their per-item logs let a rerun skip finished work.
- A write that fails because the disk is full, the directory is read-only or a path component is
  a file raises a one-line ``OutputError`` naming the path and the cause; the staging directory is
  removed and no manifest is written.
- ``load_artifact`` refuses a directory without a manifest, of the wrong kind, or of an
  incompatible schema version, with a one-line error that says what to run.
- ``Artifact.file`` refuses a file that no longer matches its manifest: its size is always
  compared; its sha256 is computed when the file is at most ``HASH_ALWAYS_UP_TO`` bytes, or when
  its mtime is later than the manifest's, or when the manifest's mtime is more than
  ``MANIFEST_EDIT_SLACK_S`` after its ``created`` time (the manifest was edited). So a changed
  byte is always caught in a small file, and in a big file when the change shows in its size or
  mtime; a forger who edits a big file, restores its mtime and keeps its size is not caught. Each
  file is hashed at most once per process (until its size or mtime changes). Not verified: files
  a manifest does not list, and a consistent forgery of both a file and its manifest (a
  downstream manifest records the input manifest's sha256 for that).

Workspace layout (default ``./hrmcode-artifacts``, ``--workspace`` or ``HRMCODE_HOME``)::

    <root>/<step>/<name>/<version-id>/...   one version per run
    <root>/<step>/<name>/LATEST             the newest version id (a text file)

so ``hrmcode analyze swe-smith`` finds the newest fetched SWE-smith tasks by name.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrmcode import atomic
from hrmcode.errors import ArtifactError, UsageError, is_write_failure, output_error
from hrmcode.jsonl import count_lines, write_jsonl
from hrmcode.version import __version__

MANIFEST = "manifest.json"
LATEST = "LATEST"

# kind -> (step that writes it, schema version). A reader accepts the same major version.
KINDS: dict[str, tuple[str, int]] = {
    "tasks": ("fetch", 1),
    "corpus": ("fetch", 1),
    "analysis": ("analyze", 1),
    "examples": ("synthesize", 1),
    "validated-examples": ("validate", 1),
    "model": ("train", 1),
    "quantized-model": ("quantize", 1),
    "eval-run": ("eval", 1),
    "hf-model": ("export", 1),
    "hf-dataset": ("export", 1),
}

# Steps that write in place and resume (no staging, no replacement of their output directory).
RESUMABLE_STEPS = frozenset({"synthesize", "validate", "train", "eval"})

# Reading an artifact's file hashes it when it is at most this big (under a second); a bigger one is
# hashed only when its mtime or the manifest's says it may have changed (see the module docstring).
HASH_ALWAYS_UP_TO = 64 << 20
# A manifest whose mtime is this much later than its ``created`` time was edited after its step.
MANIFEST_EDIT_SLACK_S = 120

# What to run to produce each kind, for error messages.
PRODUCER_HINT = {
    "tasks": "run `hrmcode fetch SOURCE` first",
    "corpus": "run `hrmcode fetch code --from DIR` first",
    "analysis": "run `hrmcode analyze TASKS` first",
    "examples": "run `hrmcode synthesize --source NAME` first",
    "validated-examples": "run `hrmcode validate EXAMPLES` first",
    "model": "run `hrmcode train EXAMPLES` first",
    "quantized-model": "run `hrmcode quantize CHECKPOINT` first",
    "eval-run": "run `hrmcode eval BENCH` first",
    "hf-model": "run `hrmcode export model MODEL` first",
    "hf-dataset": "run `hrmcode export dataset EXAMPLES` first",
}


def workspace_root(explicit: Path | str | None = None) -> Path:
    """``--workspace``, else ``$HRMCODE_HOME``, else ``./hrmcode-artifacts``.

    The one place ``$HRMCODE_HOME`` is read: callers pass the workspace they were given (the CLI
    its ``--workspace``) as ``explicit`` and never set the variable themselves.
    """
    if explicit:
        root, origin = Path(explicit), "--workspace"
    else:
        env = os.environ.get("HRMCODE_HOME")
        root, origin = (Path(env), "$HRMCODE_HOME") if env else (Path("hrmcode-artifacts"), "the default workspace")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{origin} {root} is not a directory", "pass a directory; it is created if missing")
    return root


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _sha256_of_version(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of one version of a file (the key changes when the file does): each is hashed once."""
    return sha256_file(Path(path))


def _manifest_edited(manifest_path: Path, created: object) -> bool:
    """Whether the manifest was written well after the ``created`` time it records (so edited later)."""
    try:
        made = _dt.datetime.fromisoformat(str(created)).timestamp()
    except ValueError:
        return True
    return manifest_path.stat().st_mtime > made + MANIFEST_EDIT_SLACK_S


@dataclass(frozen=True)
class Artifact:
    """A completed step directory and its parsed manifest."""

    path: Path
    manifest: dict

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.name

    @property
    def params(self) -> dict:
        return self.manifest.get("params", {})

    @property
    def stats(self) -> dict:
        return self.manifest.get("stats", {})

    def file(self, name: str) -> Path:
        """The path of output ``name``, after checking it against the manifest (see the module docstring)."""
        path = self.path / name
        if not path.exists():
            raise ArtifactError(
                f"{self.path} has no {name}", f"the artifact is incomplete; {PRODUCER_HINT.get(self.kind, 'rerun its step')}"
            )
        self._verify(name, path)
        return path

    def verify(self) -> None:
        """Check every output the manifest lists, as ``file`` does (for readers that open files by path)."""
        for entry in self.manifest.get("outputs", []):
            self.file(str(entry.get("name")))

    def _verify(self, name: str, path: Path) -> None:
        entry = next((o for o in self.manifest.get("outputs", []) if o.get("name") == name), None)
        if entry is None:
            return
        hint = f"it changed after its step wrote it; regenerate it: {PRODUCER_HINT.get(self.kind, 'rerun its step')}"
        stat = path.stat()
        if entry.get("bytes") is not None and stat.st_size != entry["bytes"]:
            raise ArtifactError(f"{path} has {stat.st_size} bytes, its manifest records {entry['bytes']}", hint)
        manifest_path = self.path / MANIFEST
        if (stat.st_size <= HASH_ALWAYS_UP_TO or stat.st_mtime > manifest_path.stat().st_mtime
                or _manifest_edited(manifest_path, self.manifest.get("created"))):
            digest = _sha256_of_version(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if digest != entry.get("sha256"):
                raise ArtifactError(f"{path} does not match the sha256 its manifest records", hint)

    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST)

    def ref(self) -> dict:
        """How a downstream manifest records this artifact as an input."""
        return {"path": str(self.path), "kind": self.kind, "name": self.name, "manifest_sha256": self.manifest_sha256()}


def read_manifest(path: Path) -> dict:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{path} has no {MANIFEST}: it is not an hrmcode artifact, or its step did not finish",
            "rerun the step that writes it",
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc.msg})", "rerun the step that wrote it") from None
    if not isinstance(manifest, dict) or "kind" not in manifest or "schema_version" not in manifest:
        raise ArtifactError(f"{manifest_path} lacks kind/schema_version", "rerun the step that wrote it")
    return manifest


def _latest_dir(base: Path) -> Path | None:
    pointer = base / LATEST
    if pointer.is_file():
        candidate = base / pointer.read_text(encoding="utf-8").strip()
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def load_artifact(
    ref: Path | str,
    kinds: str | Sequence[str],
    workspace: Path | str | None = None,
) -> Artifact:
    """Resolve ``ref`` (a directory, or a name in the workspace) to an artifact of one of ``kinds``.

    A name is looked up as ``<workspace>/<step>/<name>/LATEST`` for each accepted kind's step.
    """
    accepted = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    path = Path(ref)
    if not path.is_dir():
        root = workspace_root(workspace)
        found = None
        for kind in accepted:
            step = KINDS[kind][0]
            found = _latest_dir(root / step / str(ref))
            if found is not None:
                break
        if found is None:
            hint = PRODUCER_HINT[accepted[0]]
            raise ArtifactError(f"no artifact '{ref}': not a directory, and no {'/'.join(accepted)} of that name in {root}", hint)
        path = found
    manifest = read_manifest(path)
    kind = manifest["kind"]
    if kind not in accepted:
        raise ArtifactError(
            f"{path} is a '{kind}' artifact, expected {' or '.join(repr(k) for k in accepted)}",
            PRODUCER_HINT[accepted[0]],
        )
    expected_version = KINDS[kind][1]
    if int(manifest["schema_version"]) != expected_version:
        raise ArtifactError(
            f"{path} has schema_version {manifest['schema_version']}, this hrmcode ({__version__}) reads {expected_version}",
            "regenerate it with this version",
        )
    return Artifact(path=path, manifest=manifest)


def default_output_dir(step: str, name: str, workspace: Path | str | None, params: dict | None = None) -> Path:
    """A fresh ``<workspace>/<step>/<name>/<version-id>`` path (not created)."""
    base = workspace_root(workspace) / step / name
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(json.dumps(params or {}, sort_keys=True, default=str).encode()).hexdigest()[:6]
    candidate = base / f"{stamp}-{digest}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{stamp}-{digest}-{n}"
    return candidate


def output_location(
    step: str, name: str, out: Path | str | None, workspace: Path | str | None, params: dict | None = None,
    *, replace: bool = False,
) -> tuple[Path, bool]:
    """Where a step writes: ``-o DIR`` exactly, else a new workspace version.

    Returns ``(directory, update_latest)``: only workspace versions move the LATEST pointer. For a
    non-resumable step, ``-o DIR`` holding anything but an earlier artifact of that step is refused
    here, before any work, unless ``replace`` (``check_replaceable``).
    """
    if out is not None:
        if step not in RESUMABLE_STEPS:
            check_replaceable(Path(out), [kind for kind, (writer, _) in KINDS.items() if writer == step], replace)
        return Path(out), False
    return default_output_dir(step, name, workspace, params), True


def _unreplaceable_reason(path: Path, kinds: Collection[str]) -> str | None:
    """Why replacing ``path`` with a new artifact of one of ``kinds`` would destroy data, or None."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir():
        return "is a file"
    if next(path.iterdir(), None) is None:
        return None
    try:
        manifest = read_manifest(path)
    except ArtifactError:
        return "holds files and is not an hrmcode artifact"
    if manifest["kind"] not in kinds:
        return f"holds a '{manifest['kind']}' artifact"
    listed = {MANIFEST} | {str(o.get("name")) for o in manifest.get("outputs", [])}
    for entry in path.rglob("*"):
        relative = entry.relative_to(path).as_posix()
        if not entry.is_dir() and relative not in listed:
            return f"holds {relative}, which its manifest does not list"
    return None


def check_replaceable(path: Path, kinds: Collection[str], replace: bool = False) -> None:
    """Refuse (``UsageError``) to write an artifact of ``kinds`` over anything but an earlier one of them.

    Absent paths, empty directories and earlier artifacts of the same kind that hold only their
    listed files may be replaced; a user's files, a file, or another kind of artifact only with
    ``replace``.
    """
    reason = None if replace else _unreplaceable_reason(path, kinds)
    if reason is not None:
        raise UsageError(f"-o {path} {reason}; writing {' or '.join(kinds)} output there would delete it",
                         "choose another -o, or pass --force to replace it")


def latest_in_workspace(step: str, name: str, workspace: Path | str | None = None) -> Path | None:
    """The newest completed version of ``<step>/<name>``, or None."""
    return _latest_dir(workspace_root(workspace) / step / name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArtifactWriter:
    """Writes one step's directory; ``finish()`` writes the manifest last.

    Use as a context manager: an exception before ``finish()`` removes the staging
    directory of a non-resumable step, so no partial artifact is left behind.
    """

    def __init__(
        self,
        out_dir: Path | str,
        kind: str,
        *,
        name: str | None = None,
        params: dict | None = None,
        seed: int | None = None,
        inputs: Iterable[Artifact] = (),
        command: Sequence[str] | None = None,
        resumable: bool = False,
        update_latest: bool = True,
        replace: bool = False,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        self.out_dir = Path(out_dir)
        if self.out_dir.name in ("", ".."):  # `-o .`: stage beside the directory, not inside it
            self.out_dir = self.out_dir.resolve()
        self.kind = kind
        self.name = name or self.out_dir.name
        self.params = dict(params or {})
        self.seed = seed
        self.inputs = [a.ref() for a in inputs]
        self.command = list(command) if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
        self.resumable = resumable
        self.update_latest = update_latest
        self.replace = replace
        self._outputs: dict[str, int | None] = {}
        self._finished = False
        self.stage = self.out_dir if resumable else self.out_dir.parent / f".{self.out_dir.name}.tmp-{os.getpid()}"
        try:
            if resumable:
                self.stage.mkdir(parents=True, exist_ok=True)
                # A rerun of a completed resumable step starts a new completion: drop the old marker.
                (self.stage / MANIFEST).unlink(missing_ok=True)
            else:
                check_replaceable(self.out_dir, [kind], replace)
                self.out_dir.parent.mkdir(parents=True, exist_ok=True)
                self._remove_stale_stages()
                if self.stage.exists():
                    shutil.rmtree(self.stage)
                self.stage.mkdir()
        except OSError as exc:
            if self._writing_failed(exc):
                raise self._output_error(exc) from exc
            raise

    # -- files ---------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Where to write output file ``name`` (inside the staging directory)."""
        path = self.stage / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, name: str, records: int | None = None) -> Path:
        """Register a file written by other means; JSONL record counts are computed if omitted."""
        self._outputs[name] = records
        return self.stage / name

    def write_jsonl(self, name: str, records: Iterable[Any]) -> int:
        count = write_jsonl(self.path(name), records)
        self._outputs[name] = count
        return count

    def write_json(self, name: str, obj: Any) -> Path:
        path = atomic.write_text(self.path(name), json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n")
        self._outputs[name] = None
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = atomic.write_text(self.path(name), text)
        self._outputs[name] = None
        return path

    # -- completion ----------------------------------------------------------------------
    def finish(self, stats: dict | None = None) -> Artifact:
        outputs = []
        for name in sorted(self._outputs):
            path = self.stage / name
            if not path.exists():
                raise ArtifactError(f"output {name} was registered but not written", "this is a bug in hrmcode")
            records = self._outputs[name]
            if records is None and name.endswith(".jsonl"):
                records = count_lines(path)
            entry: dict[str, Any] = {"name": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            if records is not None:
                entry["records"] = records
            outputs.append(entry)
        manifest = {
            "kind": self.kind,
            "schema_version": KINDS[self.kind][1],
            "name": self.name,
            "hrmcode_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "params": _jsonable(self.params),
            "seed": self.seed,
            "inputs": self.inputs,
            "outputs": outputs,
            "stats": _jsonable(stats or {}),
        }
        atomic.write_text(self.stage / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        if not self.resumable:
            self._swap_into_place()
        self._finished = True
        if self.update_latest:
            atomic.write_text(self.out_dir.parent / LATEST, self.out_dir.name + "\n")
        return Artifact(path=self.out_dir, manifest=manifest)

    def _swap_into_place(self) -> None:
        # Checked again: something may have been put there while the step ran.
        check_replaceable(self.out_dir, [self.kind], self.replace)
        if not (self.out_dir.exists() or self.out_dir.is_symlink()):
            os.replace(self.stage, self.out_dir)
            return
        if self.out_dir.is_dir() and not self.out_dir.is_symlink() and atomic.exchange(self.stage, self.out_dir):
            shutil.rmtree(self.stage, ignore_errors=True)  # now the old artifact
            return
        # No atomic exchange here (or a file/link to replace): a kill between the two renames leaves
        # the old artifact in the .old- directory.
        trash = self.out_dir.parent / f".{self.out_dir.name}.old-{os.getpid()}"
        os.replace(self.out_dir, trash)
        os.replace(self.stage, self.out_dir)
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink()

    def _remove_stale_stages(self) -> None:
        """Staging directories of this output left by killed runs (their process is gone)."""
        for stale in self.out_dir.parent.glob(f".{self.out_dir.name}.tmp-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)

    def abort(self) -> None:
        if not self.resumable and self.stage.exists():
            shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> "ArtifactWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._finished:
            self.abort()
        if self._writing_failed(exc):
            raise self._output_error(exc) from exc

    def _output_error(self, exc: OSError) -> Exception:
        """The one-line error for a failed write, naming the output path rather than the staging one."""
        filename = Path(os.fsdecode(exc.filename)) if exc.filename is not None else None
        if filename is not None and self.stage != self.out_dir and filename.is_relative_to(self.stage):
            exc = OSError(exc.errno, exc.strerror, str(self.out_dir / filename.relative_to(self.stage)))
        return output_error(exc, self.out_dir)

    def _writing_failed(self, exc: BaseException | None) -> bool:
        """A write failure (full, read-only...) of this output, not of some input the step was reading."""
        if exc is None or not is_write_failure(exc):
            return False
        filename = getattr(exc, "filename", None)
        return filename is None or Path(os.fsdecode(filename)).absolute().is_relative_to(self.out_dir.parent.absolute())
