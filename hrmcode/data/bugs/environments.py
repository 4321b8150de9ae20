"""A repository's test environment: its test dependencies, installed once OUTSIDE the sandbox (which
has no network) and shown to every run of its tests read-only, as SWE-smith builds one image per
repository.

``discover(files)`` reads a Python repository's test dependencies from its tracked files, in this
order: ``pyproject.toml`` (``[project] dependencies``, the ``test``/``tests``/``testing``/``dev``
extras of ``[project.optional-dependencies]`` and groups of ``[dependency-groups]``, with the
project's own extras, ``name[test]``, expanded), ``setup.cfg`` (``install_requires`` and those
extras), ``setup.py`` (literal ``install_requires``/``tests_require``/``extras_require`` lists),
every ``requirements*.txt``, ``requirements/*.txt`` and ``test-requirements.txt`` but documentation
ones (``-r`` includes followed; ``--find-links``/``--no-index``/index URLs kept as pip options), and
``tox.ini``'s ``[testenv] deps`` only when none of those named a test dependency. The project itself
is never installed: it is a path entry (``.``, or ``src`` and the like for a src layout) put first on
``PYTHONPATH``, so the tested code is always the work dir's (a released copy that a dependency pulls in,
as freezegun pulls in python-dateutil, is shadowed by it). What the sandbox already provides
(pytest and its dependencies, ``hostpaths.sandbox_python_packages``) is left out and pinned to the
sandbox's versions (a pip constraints file), so the environment never replaces the sandbox's pytest.

``prepare_environment(info, language, backend)`` installs them with the host's pip (the sandbox runs
the host's interpreter), wheels only (installing a wheel runs none of its code; building an sdist would
run build scripts the repository chose on this machine, outside any sandbox), into ``<workspace>/envs/<id>/site``, where ``id`` hashes the requirement
list, the pip options (and the files of local ``--find-links`` directories), the constraints, the
Python version and the platform. The directory is written through ``atomic.staged`` (a complete
environment or none; concurrent preparers each stage their own and the first rename wins) and reused
when present. For the docker backend an image ``hrmcode-env-<id>:<sandbox tag>-<recipe>`` is built FROM the
sandbox image with the versions the local install resolved (``docker_backend.build_python_env_image``)
and reused when present. ``Environment.sandbox(base)`` is ``base`` with the packages mounted read-only
(``Sandbox.with_python_env``); a repository with no dependencies and a flat layout leaves ``base``
as it is. JavaScript, Go and Rust repositories get a ``toolchain`` environment: the sandbox's
toolchains, nothing installed.

The task records ``Environment.record()`` (``environment`` beside SWE-smith's ``image_name``);
``environment_sandbox(record, sandbox)`` is how every later consumer of the task (validate's
execution checks, ``eval swe``'s agent sessions and grading) runs its tests in the same environment,
preparing it again from the recorded requirements when this machine lacks it.

Not guaranteed: that the declared dependencies are all the tests need (an undeclared import still
fails in the sandbox, as it should), the same resolution on another day (the index moves; the
recorded ``installed`` pins say what was used), or ``importlib.metadata`` entries for the project
itself (it is not installed).
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import platform
import posixpath
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hrmcode.artifacts import workspace_root
from hrmcode.atomic import staged
from hrmcode.errors import InputError, UsageError
from hrmcode.reporting import reporter
from hrmcode.sandbox import docker_backend, hostpaths
from hrmcode.sandbox.base import ENV_MOUNT, PythonEnv, Sandbox

RECIPE = 2  # bump when how an environment is installed changes: environments of another recipe are not reused
ENVS = "envs"  # <workspace>/envs/<id>/{site/, environment.json}
TEST_GROUPS = ("test", "tests", "testing", "dev")
TOOLCHAIN_LANGUAGES = ("javascript", "typescript", "go", "rust", "java", "cpp")
SPECS = ("auto", "none")  # --env: or the path of a requirements file
INSTALL_TIMEOUT_S = 1800
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?")
_PIP_OPTIONS = ("--find-links", "-f", "--no-index", "--index-url", "-i", "--extra-index-url")


def canonical(name: str) -> str:
    """PEP 503's normalized project name (``Foo.Bar_baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> tuple[str, list[str]]:
    """(canonical name, extras) of a PEP 508 requirement string; ``("", [])`` when it names no project."""
    match = _NAME.match(requirement)
    if match is None:
        return "", []
    extras = [canonical(e.strip()) for e in (match.group(2) or "").split(",") if e.strip()]
    return canonical(match.group(1)), extras


def normalize(requirement: str) -> str:
    """One spelling per requirement: canonical name and extras, the version part without spaces, the
    marker's spaces made single (``Foo_Bar [X] >= 1.0 ;python_version<'3.12'`` ->
    ``foo-bar[x]>=1.0; python_version<'3.12'``)."""
    spec, _, marker = requirement.partition(";")
    name, extras = requirement_name(spec)
    match = _NAME.match(spec)
    text = name + (f"[{','.join(sorted(extras))}]" if extras else "") + "".join(spec[match.end():].split())
    marker = " ".join(marker.split())
    return f"{text}; {marker}" if marker else text


def option_pairs(options: tuple[str, ...] | list[str]) -> list[tuple[str, str | None]]:
    """A flat pip option list as (flag, value or None for ``--no-index``) pairs."""
    pairs: list[tuple[str, str | None]] = []
    items = list(options)
    while items:
        flag = items.pop(0)
        pairs.append((flag, None) if flag == "--no-index" or not items else (flag, items.pop(0)))
    return pairs


@dataclass(frozen=True)
class Requirements:
    """What a repository's tests need installed, and where that was read."""

    requirements: tuple[str, ...] = ()  # PEP 508 strings, normalized, sorted, without the sandbox's own packages
    pip_options: tuple[str, ...] = ()  # --find-links DIR (absolute), --no-index, index URLs, in the order read
    sources: tuple[str, ...] = ()  # the files they came from
    paths: tuple[str, ...] = (".",)  # the project's own import roots, relative to the repository


@dataclass(frozen=True)
class Environment:
    """One repository's test environment (module docstring); ``record()`` is what a task carries."""

    id: str
    language: str
    kind: str  # "python" (packages installed, or none needed) | "toolchain" (the sandbox's toolchains only)
    requirements: tuple[str, ...] = ()
    pip_options: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    paths: tuple[str, ...] = (".",)
    python: str = ""
    platform: str = ""
    installed: tuple[str, ...] = ()  # name==version of every package installed (what pip resolved)
    directory: Path | None = None  # local: <workspace>/envs/<id>/site
    image_name: str | None = None  # docker: hrmcode-env-<id>:<sandbox tag>-<recipe>

    @property
    def mounts(self) -> bool:
        """Whether runs need anything beyond the plain sandbox: packages, or a project root other than ``.``."""
        return self.kind == "python" and (bool(self.requirements) or self.paths != (".",))

    @property
    def recorded(self) -> bool:
        """Whether a task records it: when its tests need more than the plain sandbox, or other toolchains."""
        return self.mounts or self.kind == "toolchain"

    def sandbox(self, base: Sandbox) -> Sandbox:
        """``base`` with this environment's packages mounted read-only (``base`` itself when none are needed)."""
        if not self.mounts:
            return base
        if self.requirements and base.name == "docker" and self.image_name is None:
            raise InputError(f"environment {self.id} has no docker image", "prepare it with backend='docker'")
        if self.requirements and base.name != "docker" and self.directory is None:
            raise InputError(f"environment {self.id} has no directory here", "prepare it with backend='local'")
        if base.name == "docker":
            return base.with_python_env(PythonEnv(image=self.image_name, work_paths=self.paths))
        return base.with_python_env(PythonEnv(directory=self.directory, work_paths=self.paths))

    def record(self) -> dict:
        """What a task records: enough to prepare the same environment again (``environment_sandbox``)."""
        record = {"id": self.id, "language": self.language, "kind": self.kind, "python": self.python,
                  "platform": self.platform, "requirements": list(self.requirements),
                  "pip_options": list(self.pip_options), "sources": list(self.sources), "paths": list(self.paths),
                  "installed": list(self.installed)}
        if self.directory is not None:  # where it lies on the machine that made it: reused there
            record["directory"] = str(self.directory.parent)
        if self.kind == "python" and self.requirements:
            record["docker_image"] = f"hrmcode-env-{self.id}"
        return record


# --- discovery ------------------------------------------------------------------------------------


def _expand(requirements: list, groups: dict[str, list], own: str, seen: set[str]) -> list[str]:
    """Requirements with the project's own extras (``own[test]``) and PEP 735 ``{include-group}`` expanded."""
    out: list[str] = []
    for item in requirements:
        if isinstance(item, dict):  # [dependency-groups]: {include-group = "name"}
            included = canonical(str(item.get("include-group", "")))
            if included and included not in seen:
                seen.add(included)
                out += _expand(groups.get(included, []), groups, own, seen)
            continue
        if not isinstance(item, str):
            continue
        name, extras = requirement_name(item)
        if not name:
            continue
        if own and name == own:
            for extra in extras:
                if extra not in seen:
                    seen.add(extra)
                    out += _expand(groups.get(extra, []), groups, own, seen)
            continue
        out.append(item)
    return out


def _pyproject(text: str) -> tuple[str, list[str], bool, tuple[str, ...] | None]:
    """(project name, requirements, whether a test group was found, import roots if it says)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"pyproject.toml is not valid TOML: {exc}",
                         "fix it, or pass --env none or --env FILE") from None
    project = data.get("project") or {}
    own = canonical(str(project.get("name", "")))
    extras = {canonical(k): v for k, v in (project.get("optional-dependencies") or {}).items() if isinstance(v, list)}
    groups = {canonical(k): v for k, v in (data.get("dependency-groups") or {}).items() if isinstance(v, list)}
    found = [g for g in TEST_GROUPS if g in extras or g in groups]
    wanted = list(project.get("dependencies") or [])
    for group in found:
        wanted += extras.get(group, []) + groups.get(group, [])
    requirements = _expand(wanted, {**groups, **extras}, own, set(found))
    package_dir = ((data.get("tool") or {}).get("setuptools") or {}).get("package-dir") or {}
    roots = (package_dir[""],) if isinstance(package_dir.get(""), str) else None
    return own, requirements, bool(found), roots


def _setup_cfg(text: str) -> tuple[str, list[str], bool, tuple[str, ...] | None]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise InputError(f"setup.cfg cannot be read: {str(exc).splitlines()[0]}",
                         "fix it, or pass --env none or --env FILE") from None
    own = canonical(parser.get("metadata", "name", fallback=""))
    def lines(value: str) -> list[str]:
        return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]

    wanted = lines(parser.get("options", "install_requires", fallback=""))
    extras = ({canonical(k): lines(v) for k, v in parser.items("options.extras_require")}
              if parser.has_section("options.extras_require") else {})
    found = [g for g in TEST_GROUPS if g in extras]
    for group in found:
        wanted += extras[group]
    package_dir = parser.get("options", "package_dir", fallback="").strip()
    match = re.match(r"^=\s*(\S+)$", package_dir)
    return own, _expand(wanted, extras, own, set(found)), bool(found), (match.group(1),) if match else None


def _setup_py(text: str) -> tuple[list[str], bool]:
    """Literal ``install_requires``, ``tests_require`` and test extras of a ``setup(...)`` call."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return [], False
    wanted: list[str] = []
    tests = False
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "setup"):
            continue
        for keyword in node.keywords:
            try:
                value = ast.literal_eval(keyword.value)
            except ValueError:
                continue
            if keyword.arg == "install_requires" and isinstance(value, (list, tuple)):
                wanted += [v for v in value if isinstance(v, str)]
            elif keyword.arg == "tests_require" and isinstance(value, (list, tuple)):
                wanted += [v for v in value if isinstance(v, str)]
                tests = True
            elif keyword.arg == "extras_require" and isinstance(value, dict):
                for group, items in value.items():
                    if canonical(str(group)) in TEST_GROUPS and isinstance(items, (list, tuple)):
                        wanted += [v for v in items if isinstance(v, str)]
                        tests = True
    return wanted, tests


def _requirements_file(text: str, where: str, read, seen: set[str], base: str) -> tuple[list[str], list[str]]:
    """(requirements, pip options) of a pip requirements file; ``read(path)`` gives an included file's
    text (None when absent); relative ``--find-links`` directories are made absolute against ``base``."""
    requirements: list[str] = []
    options: list[str] = []
    text = re.sub(r"\\\n", " ", text)  # continuation lines
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        attached = re.match(r"^(-[rcfie])([^\s=-].*)$", line)  # "-rdev.txt", as tox writes it
        if attached:
            flag, value = attached.groups()
        else:
            flag, _, value = line.replace("=", " ", 1).partition(" ") if line.startswith("-") else (line, "", "")
        value = value.strip()
        if flag in ("-r", "--requirement", "-c", "--constraint"):
            if flag in ("-c", "--constraint"):
                continue  # constraints pin, never add: the sandbox's own constraints are applied instead
            included = posixpath.normpath(posixpath.join(posixpath.dirname(where), value))
            if included not in seen:
                seen.add(included)
                text_of = read(included)
                if text_of is not None:
                    more, more_options = _requirements_file(text_of, included, read, seen, base)
                    requirements += more
                    options += more_options
        elif flag in ("-f", "--find-links"):
            link = value if "://" in value else str((Path(base) / posixpath.dirname(where) / value).resolve())
            options += ["--find-links", link]
        elif flag == "--no-index":
            options.append("--no-index")
        elif flag in ("-i", "--index-url", "--extra-index-url"):
            options += ["--index-url" if flag == "-i" else flag, value]
        elif line.startswith("-"):
            continue  # -e (the project itself, editable) and pip options that do not choose packages
        elif line.startswith((".", "/")) or ("/" in line.split(";")[0] and "://" not in line and "@" not in line):
            continue  # a local path: the project itself, which is a path entry instead
        else:
            requirements.append(line)
    return requirements, options


def _requirement_files(files: dict[str, str]) -> list[str]:
    names = []
    for path in sorted(files):
        directory, name = posixpath.split(path)
        if "doc" in name.lower():
            continue  # documentation builds are not test dependencies
        if (directory == "" and re.fullmatch(r"(requirements.*|test-requirements)\.txt", name)) or \
                (directory == "requirements" and name.endswith(".txt")):
            names.append(path)
    return names


def _tox(text: str, read) -> tuple[list[str], list[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return [], []
    deps = parser.get("testenv", "deps", fallback="")
    lines = []
    for line in deps.splitlines():
        line = re.sub(r"^[\w,{}.-]+:\s+", "", line.strip())  # factor-conditional: "py38: dep"
        line = line.replace("{toxinidir}/", "").replace("{toxinidir}", ".")
        if line and "{" not in line:
            lines.append(line)
    return _requirements_file("\n".join(lines), "tox.ini", read, set(), ".")


def _import_roots(files: dict[str, str]) -> tuple[str, ...]:
    """``src`` for a src layout (a package or module directly under ``src/``), else ``.``."""
    if any(re.fullmatch(r"src/[^/]+/__init__\.py|src/[^/]+\.py", path) for path in files):
        return ("src",)
    return (".",)


def discover(files: dict[str, str], root: Path | str = ".") -> Requirements:
    """A Python repository's test requirements from its files (path -> text; module docstring);
    ``root`` is where it lies on disk, for relative ``--find-links`` directories."""
    wanted: list[str] = []
    options: list[str] = []
    sources: list[str] = []
    own = ""
    tests = False
    roots: tuple[str, ...] | None = None
    read = files.get
    if "pyproject.toml" in files:
        own, found, tests, roots = _pyproject(files["pyproject.toml"])
        wanted += found
        sources.append("pyproject.toml")
    if "setup.cfg" in files:
        name, found, has_tests, cfg_roots = _setup_cfg(files["setup.cfg"])
        own, roots = own or name, roots or cfg_roots
        if found:
            wanted += found
            sources.append("setup.cfg")
        tests = tests or has_tests
    if "setup.py" in files:
        found, has_tests = _setup_py(files["setup.py"])
        if found:
            wanted += found
            sources.append("setup.py")
        tests = tests or has_tests
    for path in _requirement_files(files):
        found, found_options = _requirements_file(files[path], path, read, {path}, str(root))
        wanted += found
        options += found_options
        sources.append(path)
        tests = True
    if not tests and "tox.ini" in files:
        found, found_options = _tox(files["tox.ini"], read)
        if found:
            wanted += found
            options += found_options
            sources.append("tox.ini")
    return _finish(wanted, options, sources, own, roots or _import_roots(files))


def _finish(wanted: list[str], options: list[str], sources: list[str], own: str,
            roots: tuple[str, ...]) -> Requirements:
    provided = {canonical(name) for name in hostpaths.sandbox_python_packages()}
    kept = sorted({normalize(r) for r in wanted
                   if requirement_name(r)[0] and requirement_name(r)[0] != own
                   and requirement_name(r)[0] not in provided})
    unique_options: list[str] = []
    for flag, value in dict.fromkeys(option_pairs(options)):  # the first of repeated options, in order
        unique_options += [flag] if value is None else [flag, value]
    return Requirements(tuple(kept), tuple(unique_options), tuple(sources), roots)


def from_requirements_file(path: Path | str, files: dict[str, str] | None = None) -> Requirements:
    """``--env FILE``: the requirements of a pip requirements file (its ``-r`` includes beside it),
    with the repository's own import roots from ``files``."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise UsageError(f"--env {path}: no such requirements file",
                         "give auto, none or the path of a requirements file")

    def read(included: str) -> str | None:
        target = file.parent / included
        return target.read_text(encoding="utf-8") if target.is_file() else None

    text = file.read_text(encoding="utf-8")
    found, options = _requirements_file(text, file.name, read, {file.name}, str(file.parent))
    return _finish(found, options, [str(file)], "", _import_roots(files or {}))


# --- preparation ----------------------------------------------------------------------------------


def python_tag() -> str:
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"


def platform_tag() -> str:
    libc = "-".join(part for part in platform.libc_ver() if part)
    return f"{sysconfig.get_platform()}{'-' + libc if libc else ''}"


def _links_digest(options: tuple[str, ...]) -> list[str]:
    """Each local ``--find-links`` directory's files (name and content hash): new wheels, a new environment."""
    digests = []
    for flag, value in option_pairs(options):
        if flag == "--find-links" and value and "://" not in value and Path(value).is_dir():
            for file in sorted(Path(value).iterdir()):
                if file.is_file():
                    digests.append(f"{file.name}:{hashlib.sha256(file.read_bytes()).hexdigest()[:16]}")
    return digests


def environment_id(requirements: Requirements) -> str:
    """A stable hash of what would be installed and for which interpreter (not of where it was read)."""
    constraints = sorted(f"{canonical(n)}=={v}" for n, v in hostpaths.sandbox_python_packages().items())
    payload = [RECIPE, list(requirements.requirements), list(requirements.pip_options),
               _links_digest(requirements.pip_options), constraints, python_tag(), platform_tag()]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def envs_root(workspace: Path | str | None = None) -> Path:
    return workspace_root(workspace) / ENVS


def _pip_error(stderr: str, sources: tuple[str, ...]) -> InputError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    why = (errors[-1] if errors else (lines[-1] if lines else "pip failed"))[:300]
    where = ", ".join(sources) or "the requirements"
    return InputError(f"cannot install the test dependencies read from {where}: {why}",
                      "check the names and versions there, that each has a wheel (sdists are not built here) and "
                      "that the package index is reachable from this machine; --env FILE gives the requirements "
                      "yourself (--find-links DIR for wheels you built), --env none runs without")


def _installed(site: Path) -> tuple[str, ...]:
    pins = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        fields = dict(re.findall(r"^(Name|Version): (.+)$", meta.read_text(encoding="utf-8", errors="replace"), re.M))
        if "Name" in fields and "Version" in fields:
            pins.append(f"{canonical(fields['Name'])}=={fields['Version'].strip()}")
    return tuple(sorted(pins))


def _install(requirements: Requirements, target: Path) -> None:
    """pip install into ``target/site`` with the sandbox's own packages as constraints."""
    site = target / "site"
    site.mkdir(parents=True)
    (target / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements.requirements))
    (target / "constraints.txt").write_text(
        "".join(f"{canonical(n)}=={v}\n" for n, v in sorted(hostpaths.sandbox_python_packages().items())))
    # wheels only: installing one runs none of its code here, while building an sdist would run the build
    # scripts of whatever the repository names on this machine, outside any sandbox
    argv = [sys.executable, "-m", "pip", "install", "--target", str(site), "--only-binary", ":all:", "--no-input",
            "--disable-pip-version-check", "--no-warn-script-location", "-r", str(target / "requirements.txt"),
            "-c", str(target / "constraints.txt"), *requirements.pip_options]
    reporter().log(f"installing {len(requirements.requirements)} test dependencies into {target.parent.name}/"
                   f"{target.name} (pip, outside the sandbox)")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"pip took over {INSTALL_TIMEOUT_S} s installing the test dependencies",
                         "check network access to the package index; --env none runs without them") from None
    if proc.returncode != 0:
        raise _pip_error(proc.stderr or proc.stdout, requirements.sources)


def _local_environment(requirements: Requirements, language: str, root: Path,
                       known: Path | None = None) -> Environment:
    """Installed into ``root/<id>`` (``envs_root``) unless there (or at ``known``, a recorded directory) already."""
    env_id = environment_id(requirements)
    base = Environment(env_id, language, "python", requirements.requirements, requirements.pip_options,
                       requirements.sources, requirements.paths, python_tag(), platform_tag())
    if not requirements.requirements:
        return base
    final = root / env_id
    if known is not None and known.name == env_id and (known / "environment.json").is_file():
        final = known
    if not (final / "environment.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging: list[Path] = []
        try:
            with staged(final, unique=True) as tmp:
                staging.append(tmp)
                tmp.unlink()  # staged made a file to claim the name; the environment is a directory
                _install(requirements, tmp)
                (tmp / "environment.json").write_text(json.dumps(
                    {**base.record(), "installed": list(_installed(tmp / "site"))}, indent=2) + "\n")
                tmp.chmod(0o755)
        except BaseException as exc:
            for tmp in staging:  # this process's own half-made copy (never another's in progress)
                shutil.rmtree(tmp, ignore_errors=True)
            # another process renamed its complete copy first (the rename fails on a full directory): use it
            if not isinstance(exc, OSError) or not (final / "environment.json").is_file():
                if isinstance(exc, OSError):
                    raise InputError(f"cannot store the environment at {final}: {exc}",
                                     "check that the workspace is writable") from None
                raise
    installed = tuple(json.loads((final / "environment.json").read_text()).get("installed", []))
    return Environment(**{**base.__dict__, "installed": installed, "directory": final / "site"})


def _docker_image(env: Environment) -> str:
    """The environment's docker image, with the versions the local install resolved."""
    if docker_backend.image_present(docker_backend.python_env_image_tag(env.id)):
        return docker_backend.python_env_image_tag(env.id)
    with tempfile.TemporaryDirectory(prefix="hrmcode-env-context-") as tmp:
        context = Path(tmp)
        options: list[str] = []
        links = 0
        for flag, value in option_pairs(env.pip_options):
            if flag == "--find-links" and value and "://" not in value:  # a local directory: into the context
                shutil.copytree(value, context / "links" / str(links))
                options.append(f"--find-links /tmp/hrmcode-env/links/{links}")
                links += 1
            else:
                options.append(flag if value is None else f"{flag} {value}")
        provided = {canonical(name) for name in hostpaths.sandbox_python_packages()}
        pins = [pin for pin in env.installed if pin.split("==")[0] not in provided]
        (context / "requirements.txt").write_text("".join(f"{line}\n" for line in options + pins))
        return docker_backend.build_python_env_image(env.id, context)


def prepare_environment(info, language: str, backend: str = "local", *, spec: str | None = "auto",
                        workspace: Path | str | None = None) -> Environment:
    """The test environment of the repository ``info`` (a ``RepoInfo``: ``files``, ``path``) for
    ``backend``: ``spec`` ``auto`` discovers its requirements (``discover``), ``none`` installs
    nothing, any other value is the path of a requirements file. Installs what is missing (module docstring)."""
    spec = spec or "auto"
    files: dict[str, str] = info.files
    if language in TOOLCHAIN_LANGUAGES:
        env_id = hashlib.sha256(json.dumps([RECIPE, language, "toolchain"]).encode()).hexdigest()[:16]
        return Environment(env_id, language, "toolchain", python=python_tag(), platform=platform_tag())
    if spec == "none":
        requirements = Requirements(paths=_import_roots(files))
    elif spec == "auto":
        requirements = discover(files, info.path)
    else:
        requirements = from_requirements_file(spec, files)
    return _for_backend(_local_environment(requirements, language, envs_root(workspace)), backend)


def _for_backend(env: Environment, backend: str) -> Environment:
    if backend == "docker" and env.requirements:
        return Environment(**{**env.__dict__, "image_name": _docker_image(env)})
    return env


_SUBSTITUTED: set[tuple[str | None, str]] = set()


def environment_sandbox(record: dict | None, sandbox: Sandbox, workspace: Path | str | None = None) -> Sandbox:
    """``sandbox`` as a task's recorded environment (``Environment.record``) needs it: its packages
    mounted read-only, prepared again from the recorded requirements when this machine lacks them
    (a task without a record, or with a toolchain environment, runs in ``sandbox`` as it is)."""
    if not record or record.get("kind") != "python":
        return sandbox
    paths = tuple(record.get("paths") or (".",))
    requirements = Requirements(tuple(record.get("requirements") or ()), tuple(record.get("pip_options") or ()),
                                tuple(record.get("sources") or ()), paths)
    if not requirements.requirements and paths == (".",):
        return sandbox
    known = Path(record["directory"]) if record.get("directory") else None
    # beside the recorded one when it lies on this machine (its workspace), unless a workspace is given
    root = known.parent if workspace is None and known is not None and known.parent.is_dir() else envs_root(workspace)
    env = _local_environment(requirements, record.get("language", "python"), root, known)
    if env.id != record.get("id") and (record.get("id"), env.id) not in _SUBSTITUTED:
        _SUBSTITUTED.add((record.get("id"), env.id))  # said once per run, not per task
        reporter().log(f"environment {record.get('id')} ({record.get('python')}, {record.get('platform')}) is not "
                       f"what its requirements make here (another install recipe, Python or platform): using {env.id}")
    return _for_backend(env, sandbox.name).sandbox(sandbox)


__all__ = ["Environment", "Requirements", "discover", "environment_id", "environment_sandbox", "prepare_environment",
           "from_requirements_file", "ENV_MOUNT"]
