"""Aider's polyglot benchmark: 225 Exercism exercises in C++, Go, Java, JavaScript, Python, Rust.

Read from ``--from DIR`` (a checkout: ``<lang>/exercises/practice/<slug>/``) or cloned with
``git clone --depth 1`` from ``--from URL`` (default ``https://github.com/Aider-AI/polyglot-benchmark``);
the commit is recorded. The task layout (agreed with the sandbox and eval code, see docs/tasks.md):

- ``id`` ``polyglot/<lang>/<slug>``, kind ``exercise``.
- ``prompt`` = ``.docs/introduction.md`` + ``.docs/instructions.md`` + ``.docs/instructions.append.md``
  (those present, in that order, concatenated as Aider's harness does). The harness's file-list
  addendum is not in the prompt; the list is ``editable``.
- ``files`` = every text file of the exercise except tests, ``.meta/``, ``.docs/``, ``.approaches/``,
  ``.articles/`` and binaries (listed in ``metadata.skipped_binaries``); ``metadata.executables``
  lists files that had an executable bit (``gradlew``).
- ``tests.files`` = ``files.test``, editor files that are tests (Go ``cases_test.go``) and
  unlisted files that the language's test layout marks as tests (Rust ``tests/**``, Go
  ``*_test.go``, Java ``src/test/**``, JS ``*.spec.js``, Python ``*_test.py``, C++ ``*_test.cpp``).
- ``solution.files`` = the reference mapped onto the paths it replaces (see ``_solution_files``).
- ``editable`` = ``files.solution`` minus ``Cargo.toml`` and ``CMakeLists.txt`` (Aider's rule).
- ``tests.command`` = the Aider harness command for the language (informational).

Not guaranteed: that the references pass offline (some need crates or Maven artifacts).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from hrmcode.data.schema import LANGUAGES, Solution, Task, Tests
from hrmcode.data.sources._common import (
    Fetched,
    FetchRequest,
    SourceSpec,
    git_commit_of,
    looks_like_git_url,
    require_path,
    shallow_clone,
)
from hrmcode.errors import InputError, UsageError
from hrmcode.sandbox.toolchains import placed_reference

DEFAULT_URL = "https://github.com/Aider-AI/polyglot-benchmark"
PROSE_DIRS = (".meta", ".docs", ".approaches", ".articles")
PROMPT_PARTS = (".docs/introduction.md", ".docs/instructions.md", ".docs/instructions.append.md")
NEVER_EDITABLE = ("Cargo.toml", "CMakeLists.txt")

# The Aider harness's test command per language (benchmark/benchmark.py, npm-test.sh, cpp-test.sh).
TEST_COMMANDS = {
    "python": "pytest",
    "rust": "cargo test -- --include-ignored",
    "go": "go test ./...",
    "javascript": "sed -i 's/\\bxtest(/test(/g' *.spec.js && npm run test",
    "cpp": 'mkdir -p build && cd build && cmake -DEXERCISM_RUN_ALL_TESTS=1 -G "Unix Makefiles" .. && make',
    "java": "sed -i -E '/^\\s*@Disabled\\(.*\\)/d' src/test/java/*.java && ./gradlew test",
}


def is_test_path(language: str, path: str) -> bool:
    """Whether the language's test layout makes ``path`` a test file."""
    p = PurePosixPath(path)
    name = p.name
    if language == "go":
        return name.endswith("_test.go")
    if language == "rust":
        return p.parts[0] == "tests"
    if language == "java":
        return path.startswith("src/test/")
    if language == "javascript":
        return name.endswith((".spec.js", ".test.js"))
    if language == "python":
        return name.endswith("_test.py") or name.startswith("test_")
    if language == "cpp":
        return name.endswith("_test.cpp")
    return False


def exercise_dirs(root: Path, languages: tuple[str, ...]) -> list[tuple[str, str, Path]]:
    """``(language, slug, directory)`` of every exercise under ``root``, sorted."""
    found = []
    for language in languages:
        practice = root / language / "exercises" / "practice"
        if not practice.is_dir():
            continue
        for exercise in sorted(practice.iterdir()):
            if (exercise / ".meta" / "config.json").is_file():
                found.append((language, exercise.name, exercise))
    return found


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it is binary (NUL bytes or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _walk(exercise: Path) -> list[str]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(exercise):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(exercise)
        for filename in sorted(filenames):
            paths.append((rel_dir / filename).as_posix())
    return sorted(paths)


def _solution_files(language: str, slug: str, exercise: Path, config_files: dict) -> dict[str, str]:
    """The reference solution mapped onto the paths it replaces.

    java: every file in ``.meta/src/reference/java/`` -> ``src/main/java/<name>``;
    rust: ``.meta/example.rs`` -> ``src/lib.rs`` (+ ``.meta/Cargo-example.toml`` -> ``Cargo.toml``);
    others: each ``files.example`` -> the one ``files.solution`` entry with the same extension
    (JavaScript's imports rewritten as Exercism's CI does: ``toolchains.placed_reference``).
    """
    where = f"{language}/{slug}"
    solution_paths = config_files["solution"]
    mapped: dict[str, str] = {}
    if language == "java":
        reference = exercise / ".meta" / "src" / "reference" / "java"
        sources = sorted(reference.glob("*.java")) if reference.is_dir() else []
        if not sources:
            raise InputError(f"polyglot {where}: no .meta/src/reference/java/*.java", "the exercise has no reference solution")
        for source in sources:
            mapped[f"src/main/java/{source.name}"] = source.read_text(encoding="utf-8")
        return mapped
    for example in config_files["example"]:
        source = exercise / example
        suffix = PurePosixPath(example).suffix
        if language == "rust" and suffix == ".rs":
            target = "src/lib.rs"
        else:
            candidates = [p for p in solution_paths if PurePosixPath(p).suffix == suffix]
            if len(candidates) != 1:
                raise InputError(
                    f"polyglot {where}: cannot map reference {example} onto the solution files {solution_paths}",
                    "check .meta/config.json",
                )
            target = candidates[0]
        if not source.is_file():
            raise InputError(f"polyglot {where}: reference {example} is listed but missing", "check .meta/config.json")
        mapped[target] = placed_reference(language, source.read_text(encoding="utf-8"))
    cargo_example = exercise / ".meta" / "Cargo-example.toml"
    if language == "rust" and cargo_example.is_file():
        mapped["Cargo.toml"] = cargo_example.read_text(encoding="utf-8")
    return mapped


def to_task(language: str, slug: str, exercise: Path) -> Task:
    where = f"{exercise / '.meta' / 'config.json'}"
    try:
        config = json.loads((exercise / ".meta" / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON ({exc.msg} at line {exc.lineno})", "fix the exercise config") from None
    config_files = config.get("files") if isinstance(config, dict) else None
    if not isinstance(config_files, dict) or not all(isinstance(config_files.get(k), list) for k in ("solution", "test", "example")):
        raise InputError(f"{where}: no files.solution/test/example lists", "not an Exercism exercise config")

    listed_tests = set(config_files["test"])
    editor_tests = {p for p in config_files.get("editor", []) if is_test_path(language, p)}
    files: dict[str, str] = {}
    tests: dict[str, str] = {}
    skipped_binaries: list[str] = []
    executables: list[str] = []
    for rel in _walk(exercise):
        if rel.split("/", 1)[0] in PROSE_DIRS:
            continue
        path = exercise / rel
        text = _read_text(path)
        if text is None:
            skipped_binaries.append(rel)
            continue
        if rel in listed_tests or rel in editor_tests or is_test_path(language, rel):
            tests[rel] = text
        else:
            files[rel] = text
            if os.access(path, os.X_OK) or path.stat().st_mode & 0o111:
                executables.append(rel)
    missing = [p for p in [*config_files["solution"], *config_files["test"]] if p not in files and p not in tests]
    if missing:
        raise InputError(f"polyglot {language}/{slug}: files listed in .meta/config.json are missing: {missing}", "check the checkout")

    prompt = "".join(
        (exercise / part).read_text(encoding="utf-8") for part in PROMPT_PARTS if (exercise / part).is_file()
    )
    if not prompt.strip():
        raise InputError(f"polyglot {language}/{slug}: no .docs/instructions.md", "check the checkout")
    editable = [p for p in config_files["solution"] if PurePosixPath(p).name not in NEVER_EDITABLE]
    return Task(
        id=f"polyglot/{language}/{slug}",
        source="polyglot",
        language=language,
        kind="exercise",
        title=slug,
        prompt=prompt,
        files=files,
        editable=editable,
        solution=Solution(files=_solution_files(language, slug, exercise, config_files)),
        tests=Tests(files=tests, command=TEST_COMMANDS[language]),
        metadata={
            "slug": slug,
            "path": f"{language}/exercises/practice/{slug}",
            "config": config,
            "has_tests_toml": (exercise / ".meta" / "tests.toml").is_file(),
            "skipped_binaries": skipped_binaries,
            "executables": executables,
        },
    )


def parse_languages(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if not value:
        return LANGUAGES
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen = tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
    unknown = [lang for lang in chosen if lang not in LANGUAGES]
    if unknown:
        raise UsageError(f"unknown language(s) {', '.join(unknown)}", f"choose from {', '.join(LANGUAGES)}")
    return chosen


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    languages = parse_languages(request.options.get("languages"))
    target = request.from_paths[0] if request.from_paths else DEFAULT_URL
    with contextlib.ExitStack() as stack:
        if looks_like_git_url(target) and not Path(target).is_dir():
            root, commit = stack.enter_context(shallow_clone(target))
            origin = target
        else:
            root = require_path(target, "directory")
            if not root.is_dir():
                raise InputError(f"--from {target} is not a directory", "point --from at a polyglot-benchmark checkout")
            commit, origin = git_commit_of(root), str(root)
        exercises = exercise_dirs(root, languages)
        if not exercises:
            raise InputError(
                f"{origin}: no <language>/exercises/practice/<slug>/.meta/config.json found",
                "point --from at the root of a polyglot-benchmark checkout",
            )
        stats = {"languages_selected": list(languages), "binary_files_skipped": 0}

        def records() -> Iterator[Task]:
            for language, slug, exercise in exercises:
                task = to_task(language, slug, exercise)
                stats["binary_files_skipped"] += len(task.metadata["skipped_binaries"])
                yield task

        yield Fetched(records=records(), origin=origin, revision=commit, total=len(exercises), stats=stats)


SPEC = SourceSpec(
    name="polyglot",
    summary="Aider's polyglot benchmark: 225 exercises in 6 languages (git clone or --from DIR)",
    remote=DEFAULT_URL,
    open=_open,
    options={"languages": None},
)
