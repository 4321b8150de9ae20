"""Bug yield: candidates, tried, kept, yield and seconds per kept bug, by strategy and per source.

Each source is a real project nobody here wrote, made into a one-commit git repository in a
temporary directory (Python: the sdist from PyPI, ``pip download --no-binary NAME --no-deps``,
unpacked), then run through ``hrmcode.data.bugs.repo_tasks`` exactly as ``hrmcode synthesize
--source repo:PATH`` runs it: candidates from the procedural modifiers, each tried one validated
in the sandbox (no network) against the project's own tests. Downloads are cached (``--cache``);
the test runs are offline.

Seconds per kept bug are measured, not shared out: each candidate's validation is timed (a wrapper
around ``repo_tasks``' per-candidate step), summed by strategy and divided by that strategy's kept
bugs; the reference run is counted in the source's total only. Kept instances are written under
``--out`` (``<source>/instances.jsonl``), where ``docs/bugs.md`` quotes them from.

Sources are the list ``SOURCES``: append a ``Source`` (a label, a language, a function that
builds the repository in a given directory, a test command or None for the language's default,
and how many candidates to try) to add one, e.g. a JavaScript, Go or Rust project.

    python benchmarks/bug_yield.py [--only inflection,toolz] [--max-bugs N] [-j 2] [--combine] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import hrmcode.data.bugs as bugs  # noqa: E402
from hrmcode.data.bugs import suites  # noqa: E402
from hrmcode.data.bugs.procedural import MODIFIERS_PYTHON  # noqa: E402

GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
           "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}


@dataclass(frozen=True)
class Source:
    name: str
    language: str
    build: Callable[[Path, Path], Path]  # (work dir, download cache) -> the git repository
    test_cmd: str | None  # None: the language's default (``suites.default_test_command``)
    max_bugs: int
    env: str = "auto"  # the test environment (``environments``): auto installs declared test dependencies
    note: str = ""


def commit_tree(repo: Path) -> Path:
    env = {**os.environ, **GIT_ENV}
    # -f: everything the sdist ships is the project, even files its .gitignore names (a generated _version.py)
    for args in (["init", "-q"], ["add", "-A", "-f"], ["commit", "-q", "-m", "sdist"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    return repo


def pypi_sdist(name: str, version: str) -> Callable[[Path, Path], Path]:
    """Builds the repository from ``name==version``'s sdist (downloaded once into the cache)."""

    def build(work: Path, cache: Path) -> Path:
        cache.mkdir(parents=True, exist_ok=True)
        found = sorted(cache.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) \
            + sorted(cache.glob(f"{name}-{version}.tar.gz"))
        if not found:
            # --no-binary NAME: the project as an sdist; its build tools may come as wheels (much faster than :all:)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", name, "--no-deps", "-q",
                            f"{name}=={version}", "-d", str(cache)], check=True)
            found = sorted(cache.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) \
                + sorted(cache.glob(f"{name}-{version}.tar.gz"))
        with tarfile.open(found[0]) as archive:
            archive.extractall(work, filter="data")
        top = next(p for p in work.iterdir() if p.is_dir())
        repo = work / f"{name}-{version}"
        if top != repo:
            top.rename(repo)
        return commit_tree(repo)

    return build


def offline(spec: str) -> Callable[[Path, Path], Path]:
    """Builds the repository from an offline source: Debian's Go library sources and Rust crates, an npm
    tarball (``suites.source_repository``; nothing to cache)."""
    return lambda work, cache: suites.source_repository(spec, work)


SOURCES: list[Source] = [
    Source("inflection", "python", pypi_sdist("inflection", "0.5.1"), "python -m pytest -q test_inflection.py", 60),
    Source("toolz", "python", pypi_sdist("toolz", "1.0.0"), "python -m pytest -q toolz/tests", 60),
    Source("more-itertools", "python", pypi_sdist("more-itertools", "10.5.0"), "python -m pytest -q tests", 40),
    Source("humanize", "python", pypi_sdist("humanize", "4.11.0"), "python -m pytest -q tests", 40,
           note="tests need freezegun: runs in the environment --env auto installs (environments.py)"),
    Source("python-dateutil", "python", pypi_sdist("python-dateutil", "2.9.0.post0"),
           "python -m pytest -q tests/test_easter.py tests/test_relativedelta.py tests/test_utils.py "
           "tests/test_isoparser.py tests/property/test_isoparse_prop.py", 20,
           note="src layout; tests need six, freezegun and hypothesis (--env auto; the reference fails without)"),
    Source("go-difflib", "go", offline("debian-go:github.com/pmezard/go-difflib"), None, 40,
           note="Debian's golang-github-pmezard-go-difflib-dev; go test ./... (per-package test binaries)"),
    Source("heck", "rust", offline("debian-rust:heck-0.4.0"), None, 30,
           note="Debian's librust-heck-dev; cargo test against Debian's crate registry, offline"),
    Source("number-to-words", "javascript", offline("npm:number-to-words@1.2.4"), "jest --testMatch '**/spec/*Spec.js'",
           40, note="npm tarball with jasmine specs, run by jest (3 use jasmine.any, which jest lacks: failing at HEAD)"),
]


class Timings:
    """Seconds spent validating each candidate, by strategy (wraps ``repo_tasks``' per-candidate step)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()
        self.original = bugs._validate

    def __enter__(self) -> Timings:
        def timed(sandbox, info, candidate, *args, **kwargs):
            start = time.perf_counter()
            try:
                return self.original(sandbox, info, candidate, *args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[candidate.kind] += time.perf_counter() - start

        bugs._validate = functools.wraps(self.original)(timed)
        return self

    def __exit__(self, *exc) -> None:
        bugs._validate = self.original


def run_source(source: Source, args: argparse.Namespace, cache: Path, out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bug-yield-{source.name}-") as work:
        repo = source.build(Path(work), cache)
        start = time.perf_counter()
        with Timings() as timings:
            try:
                result = bugs.repo_tasks(str(repo), test_cmd=source.test_cmd, seed=args.seed,
                                         max_bugs=args.max_bugs or source.max_bugs, jobs=args.jobs,
                                         timeout_s=args.timeout,
                                         out=out / source.name / "tasks", workspace=out / "workspace",
                                         combine=args.combine, env=source.env, redo=args.redo)
            except Exception as error:  # one source failing must not hide the others' rows
                return {"name": source.name, "error": f"{type(error).__name__}: {error}".splitlines()[0]}
        elapsed = time.perf_counter() - start
    stats = result.stats
    instances = (result.artifact.path / "instances.jsonl").read_text()
    (out / source.name).mkdir(parents=True, exist_ok=True)
    (out / source.name / "instances.jsonl").write_text(instances)
    return {"name": source.name, "seconds": elapsed, "stats": stats, "timings": dict(timings.seconds)}


def rate(kept: int, tried: int) -> str:
    return f"{100 * kept / tried:.0f}%" if tried else "-"


def per_kept(seconds: float, kept: int) -> str:
    return f"{seconds / kept:.1f}" if kept else "-"


def print_tables(rows: list[dict]) -> None:
    header = f"{'source':<16} {'strategy':<20} {'candidates':>10} {'tried':>6} {'kept':>5} {'yield':>6} {'s/kept':>7}"
    print(header)
    print("-" * len(header))
    totals: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<16} error: {row['error']}")
            continue
        stats, timings = row["stats"], row["timings"]
        kinds = sorted(set(stats["by_type_candidates"]) | set(stats["by_type_tried"]))
        for kind in kinds:
            candidates = stats["by_type_candidates"].get(kind, 0)
            tried = stats["by_type_tried"].get(kind, 0)
            kept = stats["by_type_kept"].get(kind, 0)
            totals[kind].update(candidates=candidates, tried=tried, kept=kept)
            totals[kind]["seconds_x1000"] += int(1000 * timings.get(kind, 0.0))
            print(f"{row['name']:<16} {kind:<20} {candidates:>10} {tried:>6} {kept:>5} {rate(kept, tried):>6} "
                  f"{per_kept(timings.get(kind, 0.0), kept):>7}")
        print(f"{row['name']:<16} {'(all)':<20} {stats['candidates']:>10} {stats['tried']:>6} {stats['kept']:>5} "
              f"{rate(stats['kept'], stats['tried']):>6} {per_kept(row['seconds'], stats['kept']):>7}   "
              f"{stats['reference_passing']} passing tests, {row['seconds']:.0f} s")
        print()
    print(f"{'all sources':<16} {'strategy':<20} {'candidates':>10} {'tried':>6} {'kept':>5} {'yield':>6} {'s/kept':>7}")
    for kind, total in sorted(totals.items()):
        print(f"{'':<16} {kind:<20} {total['candidates']:>10} {total['tried']:>6} {total['kept']:>5} "
              f"{rate(total['kept'], total['tried']):>6} {per_kept(total['seconds_x1000'] / 1000, total['kept']):>7}")
    swe_smith = [m.name for m in MODIFIERS_PYTHON]
    kept = [k for k in swe_smith if totals[k]["kept"]]
    print(f"\nSWE-smith's Python modifiers with kept bugs: {len(kept)} of {len(swe_smith)}"
          f" (none kept: {', '.join(k for k in swe_smith if k not in kept) or '-'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated source names (default: all)")
    parser.add_argument("--max-bugs", type=int, help="candidates tried per source (default: each source's own)")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per test run of one candidate")
    parser.add_argument("--combine", action="store_true", help="also make and validate combine_file tasks")
    parser.add_argument("--redo", action="store_true", help="test every candidate again (ignore the verdict logs)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "hrmcode-bug-yield")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hrmcode-bug-yield-cache")
    parser.add_argument("--rows", type=Path, nargs="+",
                        help="print the table of earlier runs' rows.json files (a later row of a source replaces an "
                             "earlier one) instead of running")
    args = parser.parse_args()
    if args.rows:
        merged = {row["name"]: row for path in args.rows for row in json.loads(path.read_text())}
        print_tables(list(merged.values()))
        return
    wanted = set(args.only.split(",")) if args.only else None
    chosen = [s for s in SOURCES if wanted is None or s.name in wanted]
    if wanted and len(chosen) != len(wanted):
        sys.exit(f"unknown source(s): {', '.join(sorted(wanted - {s.name for s in chosen}))}; "
                 f"known: {', '.join(s.name for s in SOURCES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HRMCODE_NO_PROGRESS", "1")
    rows = [run_source(source, args, args.cache, args.out) for source in chosen]
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    print_tables(rows)
    for source in chosen:
        if source.note:
            print(f"note: {source.name}: {source.note}")
    shutil.rmtree(args.out / "workspace", ignore_errors=True)


if __name__ == "__main__":
    main()
