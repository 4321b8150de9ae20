"""Hugging Face ``datasets`` in hrmcode: the one home for everything that touches that library.

- ``open_dataset(path, split=None)``: a JSONL (``.jsonl``, ``.jsonl.gz``), parquet or arrow file, an
  hrmcode artifact (its directory or its name in the workspace: its main data file), or a
  ``save_to_disk`` directory, as a ``datasets.Dataset`` in one call, for notebooks and users' own
  training code.
- ``saved_rows`` / ``snapshot_rows`` / ``arrow_rows``: the rows of what users have on disk from
  ``datasets`` (a ``save_to_disk`` directory, a local snapshot of a hub repository, an arrow
  file), for ``fetch --from``. ``hub_rows``: a hub dataset's rows at a pinned revision, streamed.
- ``export_examples(artifact, out)``: an ``examples``/``validated-examples`` artifact as an
  ``hf-dataset`` artifact: a ``DatasetDict`` directory (one split per value of the records'
  ``split``: ``train``, ``heldout``) that ``datasets.load_from_disk`` opens and ``push_to_hub``
  publishes, with a README dataset card that carries the examples' provenance.

Guarantees:
- A JSONL record's values come back unchanged (``ds[i][key] == record[key]``): a column whose
  values are objects, lists of objects or of mixed types is a ``datasets.Json`` column (decoded
  back to the same Python value, floats exactly: ``exact_json_floats``); strings, numbers, booleans
  and lists of strings keep their type. A key some records lack reads as None in those rows.
- An artifact's file is checked against its manifest before it is read (``Artifact.file``). The
  Arrow cache ``datasets`` keeps of a JSONL file is keyed by the file's sha256, so an edited file
  is never answered from a stale cache.
- Every failure is one ``hrmcode.errors`` line: a path that does not exist or holds no data, a
  directory ``datasets`` cannot load, a split that is not there (the line lists the splits), an
  unreachable hub (``SourceUnavailable``, naming ``--from``).
- ``export_examples`` stages the directory and renames it into place when complete (the
  ``ArtifactWriter`` contract): a failure leaves no partial directory and an earlier export intact.

Not guaranteed: pushing (``push_to_hub`` is the user's command, with their token), and that a
row is a valid hrmcode record (the readers of each kind check that).

``datasets`` takes half a second to import, so it is imported inside the functions that use it:
``import hrmcode`` and ``hrmcode --help`` do not pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrmcode.artifacts import (
    KINDS,
    Artifact,
    ArtifactWriter,
    latest_in_workspace,
    load_artifact,
    output_location,
    sha256_file,
)
from hrmcode.errors import ArtifactError, HrmcodeError, InputError, SourceUnavailable, UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.options import option

if TYPE_CHECKING:  # only for annotations: importing datasets is slow
    import datasets

# The data file ``open_dataset`` reads from an artifact of each kind (the first one its manifest lists).
MAIN_FILES: dict[str, tuple[str, ...]] = {
    "tasks": ("tasks.jsonl",),
    "corpus": ("corpus.jsonl",),
    "analysis": ("analysis.parquet",),
    "examples": ("examples.jsonl",),
    "validated-examples": ("accepted.jsonl",),
    "eval-run": ("results.jsonl", "trajectories.jsonl"),
    "model": ("metrics.jsonl",),
}
EXAMPLE_KINDS = ("validated-examples", "examples")  # a name finds the validated set first
EXPORT_KIND = "hf-dataset"
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
# Bumped when the JSONL -> Arrow conversion changes, so a cached conversion of the old kind is not reused.
CONVERSION_VERSION = "1"


# -- reading files -----------------------------------------------------------------------------

def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "list[str]"
    return "json"


def jsonl_features(path: Path) -> "datasets.Features":
    """The features of a JSONL file's records, from every record (see the module docstring)."""
    from datasets import Features, Json, List, Value

    kinds: dict[str, set[str]] = {}
    for record in read_jsonl(path):
        for key, value in record.items():
            seen = kinds.setdefault(key, set())
            if value is not None:
                seen.add(_kind_of(value))
    scalar = {"str": Value("string"), "bool": Value("bool"), "int": Value("int64"), "list[str]": List(Value("string"))}
    features: dict[str, Any] = {}
    for key, seen in kinds.items():
        if not seen:
            features[key] = Value("string")  # null in every record
        elif len(seen) == 1 and next(iter(seen)) in scalar:
            features[key] = scalar[next(iter(seen))]
        elif seen <= {"int", "float"}:
            features[key] = Value("float64")
        else:
            features[key] = Json()
    return Features(features)


def _jsonl_records(path: str, digest: str, json_columns: tuple[str, ...]) -> Iterator[dict]:
    """The generator ``Dataset.from_generator`` runs (``digest`` keys its cache to the file's bytes).
    A ``Json`` column's values are handed over encoded: given a str, ``datasets.Json`` would keep a
    string that parses as JSON (``"[1]"``) as that JSON, and it would come back as a list."""
    for record in read_jsonl(Path(path)):
        yield {key: json.dumps(value) if key in json_columns and value is not None else value
               for key, value in record.items()}


def exact_json_floats() -> None:
    """Make ``datasets.Json`` decode floats exactly, in this process. It decodes with pandas' ujson,
    whose default float parser is not correctly rounded (``0.9953`` reads back as
    ``0.9953000000000001``); pandas' ``precise_float=True`` gives what ``json.loads`` gives. The
    stored JSON text is exact either way: a ``datasets.load_from_disk`` in a process that has not
    opened a dataset through hrmcode decodes it with ``datasets``' default."""
    from datasets.features import features as module

    loads = module.ujson_loads
    if getattr(loads, "hrmcode_exact", False):
        return

    def exact_loads(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("precise_float", True)
        return loads(*args, **kwargs)

    exact_loads.hrmcode_exact = True  # type: ignore[attr-defined]
    module.ujson_loads = exact_loads


def _datasets() -> Any:
    """``datasets``, imported on first use (it is slow), with ``exact_json_floats`` installed: every function here
    that reads or writes through ``datasets`` takes it from this one place."""
    import datasets

    exact_json_floats()
    return datasets


def _dataset_of_file(path: Path, digest: str | None = None) -> "datasets.Dataset":
    datasets = _datasets()

    name = path.name
    refuse_lfs_pointer(path)
    try:
        if name.endswith(JSONL_SUFFIXES):
            if next(iter(read_jsonl(path)), None) is None:
                raise InputError(f"{path}: no records", "a dataset needs at least one record")
            digest = digest or sha256_file(path)
            features = jsonl_features(path)
            json_columns = tuple(key for key, feature in features.items() if isinstance(feature, datasets.Json))
            return datasets.Dataset.from_generator(
                _jsonl_records, features=features,
                gen_kwargs={"path": str(path), "digest": digest, "json_columns": json_columns},
                fingerprint=hashlib.sha256(f"{CONVERSION_VERSION}:{digest}".encode()).hexdigest()[:32],
            )
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            if pq.ParquetFile(path).metadata.num_rows == 0:
                raise InputError(f"{path}: no records", "a dataset needs at least one record")
            with _quiet_datasets(bars=True):
                return datasets.Dataset.from_parquet(str(path))
        if name.endswith(".arrow"):
            return _arrow_dataset(path)
    except HrmcodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets and pyarrow raise many types for an unreadable file
        raise InputError(f"{path}: cannot load as a dataset ({_reason(exc)})", "check the file") from None
    raise UsageError(f"{path}: not a JSONL, parquet or arrow file", "pass a .jsonl, .jsonl.gz, .parquet or .arrow file")


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def refuse_lfs_pointer(path: Path) -> None:
    """Refuse a Git LFS pointer standing where a data file should be (a clone of a hub repository made
    without git-lfs holds only these), naming the file."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(LFS_POINTER))
    except OSError:
        return  # the reader says what is wrong with it
    if head == LFS_POINTER:
        raise InputError(f"{path}: a Git LFS pointer, not the data file (the repository was cloned without git-lfs)",
                         "run git lfs pull in the clone, or download it with hf download REPO --repo-type dataset "
                         "--local-dir DIR")


def _arrow_dataset(path: Path) -> "datasets.Dataset":
    """An arrow file as ``datasets`` writes it (IPC stream: ``save_to_disk``'s shards, its cache files),
    or an Arrow IPC file (``pyarrow.feather``/``ipc.new_file``)."""
    datasets = _datasets()
    import pyarrow as pa

    try:
        return datasets.Dataset.from_file(str(path))
    except Exception:  # noqa: BLE001 - not the stream format: try the file format
        with pa.memory_map(str(path)) as source:
            return datasets.Dataset(pa.ipc.open_file(source).read_all())


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# -- save_to_disk directories and hub snapshots -------------------------------------------------

def is_saved_dataset(path: Path) -> bool:
    """A ``save_to_disk`` directory: a ``DatasetDict`` (``dataset_dict.json``) or a ``Dataset``
    (``state.json`` + ``dataset_info.json``)."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file()
                              or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file()))


def is_hub_snapshot(path: Path) -> bool:
    """A local copy of a hub dataset repository (``snapshot_download``, ``hf download --local-dir``, a
    git clone): a directory whose README.md is a dataset card, i.e. starts with a YAML header."""
    card = path / "README.md"
    if not (path.is_dir() and card.is_file()):
        return False
    with card.open(encoding="utf-8", errors="replace") as fh:
        return fh.readline().strip() == "---"


def saved_splits(path: Path) -> list[str]:
    """The splits of a ``save_to_disk`` directory of a ``DatasetDict`` (``[]`` for a ``Dataset`` or an
    unreadable listing, which ``load_saved`` then reports)."""
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(split) for split in splits] if isinstance(splits, list) else []


def load_saved(path: Path, split: str | None = None) -> "datasets.Dataset":
    """The ``Dataset`` of a ``save_to_disk`` directory (of a ``DatasetDict``: its ``split``, or its only
    split when ``split`` is None)."""
    datasets = _datasets()

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable save_to_disk directory ({_reason(exc)})",
                         "save it again with Dataset.save_to_disk") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) == 1:
            return next(iter(loaded.values()))
        if split not in loaded:
            raise UsageError(f"{path} has no split '{split}'" if split else f"{path} holds several splits",
                             f"choose one of {', '.join(loaded)}")
        return loaded[split]
    return loaded


def saved_rows(path: Path, split: str | None = None) -> Iterator[tuple[str, dict]]:
    """``(where, row)`` of a ``save_to_disk`` directory; ``where`` is ``DIR[/split]:row N``."""
    dataset = load_saved(path, split)
    label = f"{path}/{dataset.split}" if (path / "dataset_dict.json").is_file() and dataset.split else str(path)
    for row_number, row in enumerate(dataset, 1):
        yield f"{label}:row {row_number}", row


def arrow_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """``(where, row)`` of an arrow file."""
    refuse_lfs_pointer(path)
    try:
        dataset = _arrow_dataset(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable arrow file ({_reason(exc)})", "check the file") from None
    for row_number, row in enumerate(dataset, 1):
        yield f"{path}:row {row_number}", row


def snapshot_rows(path: Path, split: str) -> Iterator[tuple[str, dict]]:
    """``(where, row)`` of ``split`` of a local hub snapshot, read as the hub reads it (the card's
    ``configs``, else the file names), streamed; ``where`` is ``DIR (split):row N``."""
    datasets = _datasets()

    try:
        with _quiet_datasets():
            stream = datasets.load_dataset(str(path), split=split, streaming=True)
            for row_number, row in enumerate(stream, 1):
                yield f"{path} ({split}):row {row_number}", row
    except HrmcodeError:
        raise
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise UsageError(f"{path}: no split '{split}' in that dataset ({_reason(exc)})", "check --split") from None
        raise _snapshot_error(path, exc) from None
    except Exception as exc:  # noqa: BLE001
        raise _snapshot_error(path, exc) from None


def _snapshot_error(path: Path, exc: BaseException) -> InputError:
    for data in sorted(path.rglob("*")):
        if data.is_file() and data.suffix in (".parquet", ".arrow", ".jsonl", ".json", ".csv") \
                and ".git" not in data.relative_to(path).parts[:-1]:
            try:
                refuse_lfs_pointer(data)
            except InputError as pointer:
                return pointer
    text = str(exc)
    if "column names don't match" in text or "Couldn't cast" in text:
        card = (path / "README.md").read_text(encoding="utf-8", errors="replace").split("\n---", 1)[0]
        if "dataset_info:" not in card:
            return InputError(f"{path}: its data files do not all have the same columns",
                              "pass --from one of its data files")
        return InputError(f"{path}: its data files' columns do not match the features its README.md declares "
                          "(dataset_info)", "fix or remove dataset_info in README.md, or pass --from one of its "
                          "data files")
    return InputError(f"{path}: cannot read it as a hub dataset ({_reason(exc)})",
                      "check the folder, or pass --from one of its data files")


# -- the hub -------------------------------------------------------------------------------------

def hub_rows(repo: str, revision: str, *, split: str | None = None,
             files: Iterable[str] = ()) -> Iterator[tuple[str, dict]]:
    """``(where, row)`` of a hub dataset at ``revision`` (a commit), streamed: ``split`` of the
    repository as its card declares it, or the JSON Lines ``files`` named (for repositories whose
    card points at a loading script, which ``datasets`` no longer runs). Any failure to read is
    one ``SourceUnavailable`` line naming ``--from``."""
    datasets = _datasets()

    short = revision[:12]
    try:
        if files:
            for name in files:
                with _quiet_datasets():
                    stream = datasets.load_dataset("json", data_files=f"hf://datasets/{repo}@{revision}/{name}",
                                                   split="train", streaming=True)
                    for row_number, row in enumerate(stream, 1):
                        yield f"hf:{repo}@{short}/{name}:row {row_number}", row
            return
        with _quiet_datasets():
            stream = datasets.load_dataset(repo, split=split, revision=revision, streaming=True)
            for row_number, row in enumerate(stream, 1):
                yield f"hf:{repo}@{short} ({split}):row {row_number}", row
    except HrmcodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - transport, HTTP and format errors alike
        raise SourceUnavailable(f"cannot read Hugging Face dataset {repo}@{short}: {_reason(exc)}",
                                "pass --from PATH with a local copy of its files") from None


# -- opening any artifact ----------------------------------------------------------------------

def _output_sha256(artifact: Artifact, name: str) -> str | None:
    """The sha256 the artifact's manifest records for its output ``name`` (None: not listed)."""
    return next((o.get("sha256") for o in artifact.manifest.get("outputs", []) if o.get("name") == name), None)


def _output_records(artifact: Artifact, name: str) -> int | None:
    """The record count the artifact's manifest gives its output ``name`` (None: not given)."""
    return next((o.get("records") for o in artifact.manifest.get("outputs", []) if o.get("name") == name), None)


def _artifact_main_file(artifact: Artifact) -> str:
    listed = [str(o.get("name")) for o in artifact.manifest.get("outputs", [])]
    for name in MAIN_FILES.get(artifact.kind, ()):
        if name in listed:
            return name
    data = [n for n in listed if n.endswith((*JSONL_SUFFIXES, ".parquet", ".arrow"))]
    if artifact.kind == EXPORT_KIND or not data:
        raise UsageError(f"{artifact.path}: a '{artifact.kind}' artifact has no JSONL or parquet file to open",
                         "pass one of its data files, or datasets.load_from_disk for an exported dataset")
    return data[0]


def _step_name(given: Path, workspace: str | Path | None) -> Path:
    """``STEP/NAME`` (``synthesize/humaneval``) as the newest such artifact in the workspace, when no
    such path exists here; any other path unchanged."""
    steps = {step for step, _ in KINDS.values()}
    if given.exists() or given.is_absolute() or len(given.parts) != 2 or given.parts[0] not in steps:
        return given
    found = latest_in_workspace(given.parts[0], given.parts[1], workspace)
    if found is None:
        raise ArtifactError(f"no {given.parts[0]} artifact named '{given.parts[1]}' in the workspace",
                            "list them with ls under the workspace, or pass a directory")
    return found


def open_dataset(path: str | Path, split: str | None = None, *,
                 workspace: str | Path | None = None) -> "datasets.Dataset":
    """Any hrmcode data as a ``datasets.Dataset``, in one call.

    ``path``: a ``.jsonl``/``.jsonl.gz``/``.parquet``/``.arrow`` file (one inside an artifact is
    checked against its manifest first); an artifact directory, or an artifact in the workspace
    as ``STEP/NAME`` (``synthesize/humaneval``: its newest version) or ``NAME`` (the first step,
    in pipeline order, that has one of that name), whose main file is read (``tasks.jsonl``,
    ``examples.jsonl``, ``accepted.jsonl``, ``analysis.parquet``, ``results.jsonl`` ...); or a
    ``save_to_disk`` directory (what ``hrmcode export dataset`` writes). ``split``: the rows whose
    ``split`` column has that value (``train``/``heldout`` of examples), or that split of a saved
    ``DatasetDict``.
    """
    given = _step_name(Path(path).expanduser(), workspace)
    if not given.exists() and (given.is_absolute() or len(given.parts) > 1):
        raise InputError(f"{path}: no such file or directory", "check the path")
    if is_saved_dataset(given):
        return load_saved(given, split)
    if given.is_file():
        try:
            owner: Artifact | None = load_artifact(given.parent, tuple(KINDS))
        except HrmcodeError:
            owner = None  # a file of the user's own, not inside an artifact
        listed = owner is not None and _output_sha256(owner, given.name) is not None
        if listed:
            owner.file(given.name)  # refuses a file that no longer matches its manifest
        dataset = _dataset_of_file(given, _output_sha256(owner, given.name) if listed else None)
    else:
        artifact = load_artifact(given if given.is_dir() else str(path), tuple(KINDS), workspace)
        if artifact.kind == EXPORT_KIND:
            return load_saved(artifact.path, split)
        name = _artifact_main_file(artifact)
        dataset = _dataset_of_file(artifact.file(name), _output_sha256(artifact, name))
    if split is None:
        return dataset
    if "split" not in dataset.column_names:
        raise UsageError(f"{path}: its records have no 'split' field to choose '{split}' from",
                         "omit split, or open an examples artifact")
    return dataset.filter(lambda value: value == split, input_columns="split")


# -- exporting examples ------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetExportOptions:
    """``hrmcode export dataset``'s own options (``-o`` and ``--force`` are every writer's)."""

    name: str | None = option(None, "Artifact name in the workspace (default: the examples artifact's name).")


@dataclass
class ExportResult:
    """What ``export_examples`` wrote: the artifact and the rows per split."""

    artifact: Artifact
    splits: dict[str, int]
    source: Artifact

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact.path), "kind": self.artifact.kind, "splits": self.splits,
                "source": str(self.source.path), "source_kind": self.source.kind}


def dataset_card(source: Artifact, splits: dict[str, int], features: Iterable[str]) -> str:
    """The README.md of an export: a YAML header the hub reads (the splits' files as ``push_to_hub``
    names them) and the examples' provenance from their manifest."""
    header = ["---", "tags:", "- code", "- hrmcode", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        header += [f"  - split: {split}", f"    path: data/{split}-*"]
    header.append("---")
    manifest = source.manifest
    inputs = manifest.get("inputs", [])
    lines = [
        "",
        f"# {source.name}",
        "",
        f"Training examples written by hrmcode {manifest.get('hrmcode_version', '?')} "
        f"(`{source.kind}` artifact, schema {manifest.get('schema_version')}), exported with `hrmcode export dataset`.",
        "",
        "| split | rows |",
        "|---|---|",
        *[f"| {split} | {rows} |" for split, rows in splits.items()],
        "",
        f"Columns: {', '.join(f'`{name}`' for name in features)}. The record format is hrmcode's "
        "`docs/examples.md`; `input`, `provenance` and `messages` are JSON values.",
        "",
        "## Provenance",
        "",
        f"- created: {manifest.get('created')}",
        f"- command: `{' '.join(str(part) for part in manifest.get('command', []))}`",
        f"- seed: {manifest.get('seed')}",
        f"- parameters: `{json.dumps(manifest.get('params', {}), sort_keys=True, default=str)}`",
        f"- manifest sha256: `{source.manifest_sha256()}`",
        *[f"- input: {ref.get('kind')} `{ref.get('name')}` (manifest sha256 `{ref.get('manifest_sha256')}`)"
          for ref in inputs],
        "",
        "## Load it",
        "",
        "```python",
        "import datasets",
        "examples = datasets.load_from_disk(\"THIS_DIRECTORY\")",
        "examples.push_to_hub(\"OWNER/NAME\")  # then upload this README.md as the dataset card",
        "```",
        "",
    ]
    return "\n".join(header + lines)


@contextlib.contextmanager
def _quiet_datasets(bars: bool = False) -> Iterator[None]:
    """No ``datasets`` progress bars while hrmcode writes (hrmcode reports its own progress), and none of
    its log records: a file it fails to read is logged with the whole schema, twenty lines on stderr,
    before the exception that hrmcode turns into its one line."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    verbosity = datasets_logging.get_verbosity()
    if not bars:  # bars=True: the logs only (open_dataset in a notebook keeps datasets' progress bars)
        datasets_logging.disable_progress_bar()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL + 10)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)
        if was_enabled and not bars:
            datasets_logging.enable_progress_bar()


def export_examples(
    artifact: str | Path,
    out: str | Path | None = None,
    *,
    workspace: str | Path | None = None,
    name: str | None = DatasetExportOptions.name,
    force: bool = False,
) -> ExportResult:
    """Write an ``examples``/``validated-examples`` artifact as an ``hf-dataset`` artifact (see the
    module docstring): ``out``, else a new workspace version ``export/<name>/<version>``."""
    datasets = _datasets()

    given = _step_name(Path(artifact).expanduser(), workspace)  # also STEP/NAME, as open_dataset takes it
    source = load_artifact(given if given.is_dir() else artifact, EXAMPLE_KINDS, workspace)
    data_name = MAIN_FILES[source.kind][0]
    data = source.file(data_name)
    if source.kind == "validated-examples" and _output_records(source, data_name) == 0:
        rejected = _output_records(source, "rejected.jsonl")
        raise InputError(f"{source.path}: validate accepted none of its examples ({rejected} rejected), so there is "
                         "nothing to export", "see why in its rejected.jsonl, or export the unvalidated ones: "
                         f"hrmcode export dataset synthesize/{source.name}")
    with _quiet_datasets():
        rows = _dataset_of_file(data, _output_sha256(source, data_name))
        if "split" not in rows.column_names:
            raise InputError(f"{data}: records without a 'split' field", "regenerate it with hrmcode synthesize")
        order = [s for s in ("train", "heldout") if s in set(rows["split"])]
        order += sorted(set(rows["split"]) - set(order))
        splits = datasets.DatasetDict({
            split: rows.filter(lambda value, wanted=split: value == wanted, input_columns="split")
            for split in order
        })
        counts = {split: len(part) for split, part in splits.items()}
        artifact_name = name or source.name
        params = {"artifact": str(source.path), "kind": source.kind}
        out_dir, update_latest = output_location("export", artifact_name, out, workspace, params, replace=force)
        with ArtifactWriter(out_dir, EXPORT_KIND, name=artifact_name, params=params, inputs=[source],
                            update_latest=update_latest, replace=force) as writer:
            splits.save_to_disk(str(writer.stage))
            for file in sorted(p for p in writer.stage.rglob("*") if p.is_file()):
                writer.add(file.relative_to(writer.stage).as_posix())
            writer.write_text("README.md", dataset_card(source, counts, rows.column_names))
            written = writer.finish({"splits": counts, "rows": sum(counts.values()), "source": str(source.path)})
    return ExportResult(artifact=written, splits=counts, source=source)
