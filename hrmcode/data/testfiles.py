"""Which files of a repository are its tests, and putting an agent's changes to them back before grading.

As in SWE-bench, an agent sees the repository with its tests and may change anything; before its
patch is graded, every change to the tests, to the test configuration and to the places a test run
can be forged from is put back to the task's base tree (``discard_test_changes``). Grading then
runs the task's pristine tests against what is left: the agent's change to the code. The same rules
keep test code out of the functions ``synthesize --source repo:`` injects bugs into (``data/bugs``).

``is_test_path(path, language)`` — a test file or a whole test-configuration file. The rules, by
``language`` (``typescript`` uses javascript's; an unknown language uses all of them):

- python: ``test_*.py``, ``*_test.py``, anything under a ``tests/``, ``test/`` or ``testing/``
  directory, and anywhere: ``conftest.py``, ``pytest.ini``, ``.pytest.ini``, ``pytest.toml``,
  ``.pytest.toml``, ``tox.ini``, ``noxfile.py``.
- go: ``*_test.go``, anything under ``testdata/``.
- rust: anything under ``tests/`` or ``benches/`` (unit tests inside ``src`` files, ``#[cfg(test)]``,
  are code and are not told apart).
- java: anything under ``src/test/`` (at any depth, for multi-module builds).
- javascript: ``*.test.*`` and ``*.spec.*`` (``js``, ``jsx``, ``ts``, ``tsx``, ``mjs``, ``cjs``),
  anything under ``__tests__/``, ``test/``, ``tests/`` or ``spec/``; ``jest.config.*``, ``vitest.config.*``,
  ``.mocharc.*``.
- cpp: anything under ``test/`` or ``tests/``; ``*_test.<ext>`` and ``test_*.<ext>`` for ``cpp``,
  ``cc``, ``cxx``, ``c``.

``discard_test_changes(base, final, language)`` returns ``final`` with these put back to ``base``
(a changed file gets its base text, a deleted one comes back, an added one is removed), and the
sorted paths whose change was dropped:

1. every test file and whole test-configuration file above;
2. every language: ``sitecustomize.py`` and ``usercustomize.py`` anywhere, any ``*.pth`` file,
   anything inside a ``*.dist-info/`` or ``*.egg-info/`` directory (an ``entry_points.txt`` there
   registers a pytest plugin when the directory is on ``sys.path``), and anything under the
   reporter's own directory (``.hrmcode-pytest/``, on ``PYTHONPATH`` during a graded run);
3. a NEW module whose name is a standard-library module or one of pytest's own (``pytest``,
   ``_pytest``, ``pluggy``, ``py``, ``iniconfig``, ``packaging`` ...) in a directory that is not a
   package (no ``__init__.py``: the root, ``src/``, a scripts folder: directories that end up on
   ``sys.path``): under ``python -m pytest`` the root comes first on ``sys.path``, so such a module
   would run before the reporter loads and could forge its report;
4. only their test sections, textually, keeping the rest of the agent's change to the file:
   ``setup.cfg``: the ``[tool:pytest]``, ``[pytest]``, ``[coverage:*]`` and
   ``[options.entry_points]`` sections (split the way pytest's ``iniconfig`` reads them: a header
   is a line starting with ``[``); ``pyproject.toml``: the ``[tool.pytest*]``, ``[tool.coverage*]``,
   ``[tool.tox*]``, ``[project.entry-points.pytest11]`` and ``[tool.poetry.plugins.pytest11]``
   tables, after which the file is parsed with ``tomllib`` and those tables must equal the base's
   (dotted keys, inline tables or a header inside a string make the textual split wrong: then the
   whole file is put back); ``package.json``: the ``jest``, ``mocha``, ``ava`` and ``vitest`` keys
   and ``scripts.test`` (parsed as JSON; the file is re-serialised with its indent only when one of
   them changed). A base section comes back where the agent's copy of it stands, or at the end; a
   deleted file whose base had such sections comes back whole; one that does not parse is put back
   whole.

Not guaranteed: that every way a language's tooling finds tests is covered (custom test paths set
in a build file, test helpers outside these directories), nor that a change the agent made to code
the tests import is not itself an attack on the run: that is what the reporter's strict checks
are for (``hrmcode.sandbox.reports.pytest_report``).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import PurePosixPath

from hrmcode.sandbox.reports.pytest_report import REPORT_DIR

LANGUAGES = ("python", "go", "rust", "java", "javascript", "cpp")
_ALIASES = {"typescript": "javascript"}

_TEST_DIRS = {
    "python": {"tests", "test", "testing"},
    "go": {"testdata"},
    "rust": {"tests", "benches"},
    "java": set(),
    "javascript": {"__tests__", "test", "tests", "spec"},  # spec/: jasmine's default spec_dir
    "cpp": {"test", "tests"},
}
_TEST_NAMES = {
    "python": re.compile(r"^(test_.*\.py|.*_test\.py|conftest\.py|\.?pytest\.(ini|toml)|tox\.ini|noxfile\.py)$"),
    "go": re.compile(r"^.*_test\.go$"),
    "rust": None,
    "java": None,
    "javascript": re.compile(r"^(.*\.(test|spec)\.[cm]?[jt]sx?|(jest|vitest)\.config\..*|\.mocharc(\..*)?)$"),
    "cpp": re.compile(r"^(.*_test|test_.*)\.(cpp|cc|cxx|c)$"),
}
_STARTUP = re.compile(r"^(sitecustomize\.py|usercustomize\.py|.*\.pth)$")
_FRAMEWORK_MODULES = {"pytest", "_pytest", "pluggy", "py", "iniconfig", "packaging", "exceptiongroup", "tomli",
                      "pygments", "colorama"}
SHADOWED_MODULES = frozenset(sys.stdlib_module_names) | _FRAMEWORK_MODULES


def _rule_sets(language: str) -> list[str]:
    language = _ALIASES.get(language, language)
    return [language] if language in LANGUAGES else list(LANGUAGES)


def is_test_path(path: str, language: str = "python") -> bool:
    """True for a test file or a whole test-configuration file of ``language`` (module docstring)."""
    parts = PurePosixPath(path).parts
    if not parts:
        return False
    dirs, name = parts[:-1], parts[-1]
    for rules in _rule_sets(language):
        if any(d in _TEST_DIRS[rules] for d in dirs):
            return True
        names = _TEST_NAMES[rules]
        if names is not None and names.match(name):
            return True
        if rules == "java" and any(dirs[i:i + 2] == ("src", "test") for i in range(len(dirs))):
            return True
    return False


def _is_forge_path(path: str) -> bool:
    """Startup hooks, installed-distribution metadata and the reporter's directory (rule 2)."""
    parts = PurePosixPath(path).parts
    return (bool(_STARTUP.match(parts[-1])) or parts[0] == REPORT_DIR
            or any(p.endswith((".dist-info", ".egg-info")) for p in parts[:-1]))


def _shadows_module(path: str, tree: dict[str, str]) -> bool:
    """A file that makes a module named like a standard-library or pytest module importable from
    a directory that is not a package (rule 3)."""
    parts = PurePosixPath(path).parts
    for depth, part in enumerate(parts):
        folder = "/".join(parts[:depth])
        if folder and f"{folder}/__init__.py" in tree:
            continue  # inside a package: imported as pkg.name, shadows nothing
        if depth == len(parts) - 1:
            module = part[:-3] if part.endswith(".py") else None
        else:  # a folder shadows only as a regular package (a namespace portion loses to the real module)
            module = part if "/".join(parts[:depth + 1]) + "/__init__.py" in tree else None
        if module in SHADOWED_MODULES:
            return True
    return False


# -- test sections of shared configuration files (rule 4) ------------------------------------------

Blocks = list[tuple[str | None, str]]  # (section name or None for the text before the first header, its text)


def _split(text: str, header: Callable[[str], str | None]) -> Blocks:
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.splitlines(keepends=True):
        name = header(line)
        if name is not None:
            blocks.append((name, [line]))
        else:
            blocks[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in blocks]


def _merge(base: Blocks, final: Blocks, protected: Callable[[str], bool]) -> str:
    """``final``'s blocks with each protected one replaced by the base's blocks of that name (all
    of them, at its first occurrence); the base's protected blocks it lacks go at the end."""
    restore: dict[str, list[str]] = {}
    for name, text in base:
        if name is not None and protected(name):
            restore.setdefault(name, []).append(text)
    out: list[str] = []
    for name, text in final:
        if name is not None and protected(name):
            out.extend(restore.pop(name, []))
        else:
            out.append(text)
    rest = [text for texts in restore.values() for text in texts]
    if rest:
        body = "".join(out)
        if body and not body.endswith("\n"):
            out.append("\n")
        if body.strip():
            out.append("\n")
        out.extend(rest)
    return "".join(out)


def _ini_header(line: str) -> str | None:
    """The section a line opens, as ``iniconfig`` (pytest's reader) parses it."""
    if line[:1] != "[":
        return None
    line = line.rstrip()
    for char in "#;":
        line = line.split(char)[0].rstrip()
    return line[1:-1] if line.endswith("]") else None


def _setup_cfg_protected(name: str) -> bool:
    return name in ("tool:pytest", "pytest", "options.entry_points") or name.startswith("coverage:")


def _restore_setup_cfg(base: str | None, final: str) -> str | None:
    return _merge(_split(base or "", _ini_header), _split(final, _ini_header), _setup_cfg_protected)


_TOML_HEADER = re.compile(r"^\s*\[\[?(.+?)\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^.]+')
_TOML_PROTECTED = (("tool", "pytest"), ("tool", "coverage"), ("tool", "tox"), ("project", "entry-points", "pytest11"),
                   ("tool", "poetry", "plugins", "pytest11"))


def _toml_header(line: str) -> str | None:
    match = _TOML_HEADER.match(line)
    if match is None:
        return None
    return ".".join(part.strip().strip("\"'") for part in _TOML_KEY.findall(match.group(1).strip()))


def _toml_protected(name: str) -> bool:
    key = tuple(name.split("."))
    return any(key[:len(prefix)] == prefix for prefix in _TOML_PROTECTED)


def _toml_tables(text: str) -> list:
    """The protected tables' values as ``tomllib`` reads them (what pytest reads)."""
    data = tomllib.loads(text)
    values = []
    for prefix in _TOML_PROTECTED:
        value = data
        for key in prefix:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return values


def _restore_pyproject(base: str | None, final: str) -> str | None:
    merged = _merge(_split(base or "", _toml_header), _split(final, _toml_header), _toml_protected)
    try:
        if _toml_tables(merged) == _toml_tables(base or ""):
            return merged
    except tomllib.TOMLDecodeError:
        pass
    return base  # the textual split cannot be trusted here: the whole file goes back


_PACKAGE_KEYS = ("jest", "mocha", "ava", "vitest")


def _restore_package_json(base: str | None, final: str) -> str | None:
    try:
        old, new = json.loads(base or "{}"), json.loads(final)
    except json.JSONDecodeError:
        return base
    if not isinstance(old, dict) or not isinstance(new, dict):
        return base
    old_test = old.get("scripts", {}).get("test") if isinstance(old.get("scripts"), dict) else None
    new_scripts = new.get("scripts")
    new_test = new_scripts.get("test") if isinstance(new_scripts, dict) else None
    if all(old.get(k) == new.get(k) for k in _PACKAGE_KEYS) and old_test == new_test:
        return final
    for key in _PACKAGE_KEYS:
        if key in old:
            new[key] = old[key]
        else:
            new.pop(key, None)
    if old_test != new_test:
        if not isinstance(new_scripts, dict):
            new["scripts"] = new_scripts = {}
        if old_test is None:
            new_scripts.pop("test", None)
        else:
            new_scripts["test"] = old_test
    indent = re.search(r'^([ \t]+)"', final, re.MULTILINE)
    text = json.dumps(new, indent=indent.group(1) if indent else 2, ensure_ascii=False)
    return text + "\n" if final.endswith("\n") else text


_SECTIONED = {"setup.cfg": _restore_setup_cfg, "pyproject.toml": _restore_pyproject,
              "package.json": _restore_package_json}


def discard_test_changes(base: dict[str, str], final: dict[str, str],
                         language: str = "python") -> tuple[dict[str, str], list[str]]:
    """``final`` with every test file and test-configuration change put back to ``base`` (the rules
    of the module docstring), and the sorted paths whose change was dropped in whole or in part."""
    tree = dict(final)
    discarded: list[str] = []
    for path in sorted(set(base) | set(final)):
        old, new = base.get(path), final.get(path)
        if old == new:
            continue
        if (is_test_path(path, language) or _is_forge_path(path)
                or (old is None and _shadows_module(path, final))):
            restored = old
        elif (restore := _SECTIONED.get(PurePosixPath(path).name)) is not None:
            if new is None:  # deleted: it comes back when its base held test sections
                restored = old if restore(None, old) != old else None
            else:
                restored = restore(old, new)
                if old is None and restored is not None and not restored.strip() and new.strip():
                    restored = None  # a new file that held only test sections
        else:
            continue
        if restored == new:
            continue
        if restored is None:
            tree.pop(path, None)
        else:
            tree[path] = restored
        discarded.append(path)
    return tree, discarded
