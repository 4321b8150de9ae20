"""The registry of task sources and ``fetch``: turn one source into a ``tasks`` (or ``corpus``) artifact.

Sources (one module each): ``humaneval``, ``polyglot``, ``swe-smith``, ``swe-smith-trajectories``,
``eval-swe`` (trajectories recorded by ``hrmcode eval swe``), ``livecodebench``, ``tasks`` (a JSONL already in hrmcode's schema), ``function-tasks`` (generated, for ``train --stage rl``) and ``code`` (a pretraining
corpus of source files). Each keeps its real remote location in code and reads a local copy
given with ``--from``.

Guarantees:
- Unknown source or option: ``UsageError`` listing what exists. Bad input: ``InputError`` naming
  the file and line. Unreachable remote: one ``SourceUnavailable`` line naming ``--from``.
- A failed fetch leaves no partial artifact (the writer stages and renames); ``dry_run`` reads
  and converts everything but writes nothing.
- Records are written in the source's own deterministic order, so the same input and options
  give the same ``tasks.jsonl`` bytes. Task ids must be unique within one fetch.
- The manifest's stats record the source, origin (URL or path), ``--from``, revision/commit when
  known, record count and counts per language, plus the source's own counters.

Not guaranteed: that a task's tests pass with its reference solution (``hrmcode validate`` checks).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from hrmcode.artifacts import Artifact, ArtifactWriter, output_location
from hrmcode.data.sources._common import FetchRequest, SourceSpec
from hrmcode.errors import InputError, UsageError
from hrmcode.reporting import reporter

# source name -> module under hrmcode.data.sources that defines ``SPEC``
_MODULES = {
    "humaneval": "humaneval",
    "polyglot": "polyglot",
    "swe-smith": "swe_smith",
    "swe-smith-trajectories": "swe_smith_trajectories",
    "eval-swe": "eval_swe",
    "livecodebench": "livecodebench",
    "tasks": "tasks_file",
    "function-tasks": "function_tasks",
    "code": "code",
}

SOURCE_NAMES = tuple(_MODULES)


def get_source(name: str) -> SourceSpec:
    """The ``SourceSpec`` of ``name``; ``UsageError`` listing the known sources otherwise."""
    module = _MODULES.get(name)
    if module is None:
        raise UsageError(f"unknown source '{name}'", f"known sources: {', '.join(SOURCE_NAMES)}")
    return importlib.import_module(f"hrmcode.data.sources.{module}").SPEC


@dataclass
class FetchResult:
    """What a fetch produced (``artifact`` is None for a dry run)."""

    source: str
    records: int
    languages: dict[str, int]
    origin: str
    revision: str | None
    dry_run: bool
    artifact: Artifact | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "languages": self.languages,
            "origin": self.origin,
            "revision": self.revision,
            "dry_run": self.dry_run,
            "artifact": str(self.artifact.path) if self.artifact else None,
            "kind": self.artifact.kind if self.artifact else None,
            "stats": self.stats,
        }


def _resolve_options(spec: SourceSpec, given: dict[str, Any]) -> dict[str, Any]:
    options = dict(spec.options)
    for key, value in given.items():
        if value is None:
            continue
        if key not in spec.options:
            accepted = ", ".join(f"--{k.replace('_', '-')}" for k in spec.options if k != "exclude") or "none"
            raise UsageError(
                f"source '{spec.name}' takes no --{key.replace('_', '-')} option", f"its options: {accepted}"
            )
        options[key] = value
    return options


def _from_list(from_path: Any) -> list[str]:
    if from_path is None:
        return []
    if isinstance(from_path, (str, Path)):
        return [str(from_path)]
    return [str(p) for p in from_path]


def _unique_ids(records: Iterator[Any], key: str, froms: list[str] | None = None) -> Iterator[Any]:
    folders = [f for f in froms or [] if Path(f).is_dir()]
    hint = "each record must have its own id"
    if folders:  # a folder holding the same rows twice: a JSONL and its parquet, a datasets cache beside its source
        hint += f"; --from {folders[0]} may hold the same rows in two files: point --from at one of them"
    seen: set[str] = set()
    for record in records:
        ident = getattr(record, key) if hasattr(record, key) else record[key]
        if ident in seen:
            raise InputError(f"duplicate task id '{ident}'", hint)
        seen.add(ident)
        yield record


def fetch(
    source: str,
    from_path: str | Path | list[str | Path] | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    out: Path | str | None = None,
    workspace: Path | str | None = None,
    name: str | None = None,
    force: bool = False,
    **source_opts: Any,
) -> FetchResult:
    """Fetch ``source`` into a new artifact (``out``, else a new workspace version named ``name``).

    ``out`` holding anything but an earlier artifact of fetch is refused unless ``force``.

    ``source_opts`` are the source's own options (``split``, ``release``, ``since`` ...); an
    option the source does not take is a ``UsageError``. ``limit`` keeps the first N records.
    """
    spec = get_source(source)
    froms = _from_list(from_path)
    if spec.needs_from and not froms:
        raise UsageError(f"source '{source}' needs --from PATH", f"e.g. hrmcode fetch {source} --from PATH")
    if len(froms) > 1 and not spec.many_from:
        raise UsageError(f"source '{source}' takes one --from, got {len(froms)}", "pass a single --from PATH")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}", "omit --limit to take every record")
    options = _resolve_options(spec, source_opts)
    artifact_name = name or source
    params = {"source": source, "from": froms, "limit": limit,
              **{k: v for k, v in options.items() if k != "exclude" and not callable(v)}}
    request = FetchRequest(from_paths=froms, options=options, workspace=workspace)
    id_key = "id"
    with spec.open(request) as fetched:
        records = _unique_ids(fetched.records if limit is None else islice(fetched.records, limit), id_key,
                              [str(f) for f in froms])
        total = fetched.total if limit is None or fetched.total is None else min(limit, fetched.total)
        languages: Counter[str] = Counter()

        def counted() -> Iterator[Any]:
            with reporter().task(f"fetch {source}", total) as bar:
                for record in records:
                    languages[record.language if hasattr(record, "language") else record["language"]] += 1
                    bar.advance()
                    yield record

        artifact = None
        if dry_run:
            count = sum(1 for _ in counted())
        else:
            out_dir, update_latest = output_location("fetch", artifact_name, out, workspace, params, replace=force)
            with ArtifactWriter(out_dir, spec.artifact_kind, name=artifact_name, params=params,
                                update_latest=update_latest, replace=force) as writer:
                data_file = "tasks.jsonl" if spec.artifact_kind == "tasks" else "corpus.jsonl"
                count = writer.write_jsonl(data_file, counted())
                if count == 0:
                    raise InputError(f"{fetched.origin}: no records to fetch", "check --from and the filters given")
                stats = _stats(source, froms, fetched, count, languages)
                artifact = writer.finish(stats)
        stats = _stats(source, froms, fetched, count, languages)
    return FetchResult(
        source=source, records=count, languages=stats["languages"], origin=fetched.origin,
        revision=fetched.revision, dry_run=dry_run, artifact=artifact, stats=stats,
    )


def _stats(source: str, froms: list[str], fetched: Any, count: int, languages: Counter[str]) -> dict[str, Any]:
    return {
        "source": source,
        "origin": fetched.origin,
        "from": froms[0] if len(froms) == 1 else (froms or None),
        "revision": fetched.revision,
        "records": count,
        "languages": dict(sorted(languages.items())),
        **fetched.stats,
    }
