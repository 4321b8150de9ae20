"""Repository test environments (``hrmcode.data.bugs.environments``): requirement discovery, stable
ids, a local package installed outside the sandbox and imported by a repository's tests inside it
(read-only), reuse, the task's record used again by validate and eval swe, and the docker image."""

from __future__ import annotations

import base64
import ensurepip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from hrmcode.agent.repo import load_repo_tasks
from hrmcode.data.bugs import environments, read_repo, repo_tasks
from hrmcode.data.bugs.environments import (Requirements, discover, environment_id, environment_sandbox,
                                            from_requirements_file, prepare_environment)
from hrmcode.data.validate.execution import ExecChecker, TaskBook
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.sandbox.base import ENV_MOUNT, Limits
from hrmcode.sandbox.reports.pytest_report import run_suite
from tests._sandboxes import real_sandbox

PYPROJECT = """
[project]
name = "Demo_Pkg"
dependencies = ["attrs >= 22", "NumPy"]

[project.optional-dependencies]
test = ["hypothesis>=6 ;python_version>='3.8'", "demo-pkg[extra]", "pytest>=7", "pluggy"]
extra = ["six"]
docs = ["sphinx"]

[dependency-groups]
dev = [{include-group = "lint"}, "coverage[toml]"]
lint = ["ruff==0.6.0"]
"""


def test_pyproject_requirements_with_own_extras_groups_and_the_sandboxs_pytest_left_out():
    found = discover({"pyproject.toml": PYPROJECT, "demo/__init__.py": ""})
    assert found.requirements == ("attrs>=22", "coverage[toml]", "hypothesis>=6; python_version>='3.8'", "numpy",
                                  "ruff==0.6.0", "six")  # no sphinx (docs), no pytest/pluggy (the sandbox's)
    assert found.sources == ("pyproject.toml",) and found.paths == (".",) and found.pip_options == ()


def test_setup_cfg_setup_py_and_requirements_files_with_includes_and_links(tmp_path):
    files = {
        "setup.cfg": "[metadata]\nname = calc\n[options]\npackage_dir =\n    =lib\ninstall_requires =\n    click>=8\n"
                     "[options.extras_require]\ntesting =\n    calc[fast]\n    freezegun\nfast =\n    ujson\n",
        "setup.py": "from setuptools import setup\nsetup(name='calc', tests_require=['mock'], "
                    "extras_require={'dev': ['tox'], 'docs': ['sphinx']})\n",
        "requirements-test.txt": "-r requirements/base.txt\n--find-links wheels  # local wheels\n--no-index\n"
                                 "Rich  ==13.0 \\\n  ; sys_platform == 'linux'\n-e .\n./vendored\n-c constraints.txt\n",
        "requirements/base.txt": "idna\n",
        "requirements/docs.txt": "sphinx\n",
        "tox.ini": "[testenv]\ndeps = nose\n",
    }
    found = discover(files, tmp_path)
    # calc[fast] expanded to ujson, the project itself never installed, docs and constraints files skipped
    assert found.requirements == ("click>=8", "freezegun", "idna", "mock", "rich==13.0; sys_platform == 'linux'",
                                  "tox", "ujson")
    assert found.pip_options == ("--find-links", str(tmp_path / "wheels"), "--no-index")
    assert found.sources == ("setup.cfg", "setup.py", "requirements-test.txt", "requirements/base.txt")
    assert found.paths == ("lib",)  # package_dir = =lib


def test_tox_deps_only_when_nothing_else_names_test_dependencies():
    tox = "[tox]\nenvlist = py311\n[testenv]\ndeps =\n    py311: attrs\n    -r{toxinidir}/dev.txt\n    {posargs}\n"
    files = {"tox.ini": tox, "dev.txt": "hypothesis\n", "src/calc/__init__.py": ""}
    found = discover(files)
    assert found.requirements == ("attrs", "hypothesis") and found.sources == ("tox.ini",) and found.paths == ("src",)
    assert discover({**files, "pyproject.toml": '[project]\nname="c"\n[project.optional-dependencies]\ntest=["mock"]\n'}
                    ).requirements == ("mock",)


def test_env_file_reads_its_includes_beside_it(tmp_path):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "test.txt").write_text("-r base.txt\n--find-links=../wheels\nhypothesis\npytest>=8\n")
    (tmp_path / "ci" / "base.txt").write_text("attrs\n")
    found = from_requirements_file(tmp_path / "ci" / "test.txt", {"src/pkg/__init__.py": ""})
    assert found.requirements == ("attrs", "hypothesis") and found.paths == ("src",)
    assert found.pip_options == ("--find-links", str(tmp_path / "wheels"))
    assert found.sources == (str(tmp_path / "ci" / "test.txt"),)


def test_env_id_is_stable_over_spelling_and_where_requirements_were_read():
    a = discover({"pyproject.toml": '[project]\nname = "x"\ndependencies = ["Attrs >= 22", "six"]\n'})
    b = discover({"requirements.txt": "six\nattrs>=22\n"})
    assert a.requirements == b.requirements and environment_id(a) == environment_id(b)
    assert environment_id(a) == environment_id(Requirements(a.requirements, paths=("src",)))  # paths are not installed
    assert environment_id(a) != environment_id(Requirements(("attrs>=23", "six")))
    assert len(environment_id(a)) == 16


# --- a local package (no network): installed outside, imported inside, read-only ---------------------

DEP = {"tinydep/__init__.py": "FACTOR = 3\n\n\ndef triple(x):\n    return x * FACTOR\n"}
CALC = ("import tinydep\n\n\ndef scale(x):\n    return tinydep.triple(x)\n\n\ndef add(a, b):\n    return a + b\n\n\n"
        "def clamp(v, lo, hi):\n    if v < lo:\n        return lo\n    if v > hi:\n        return hi\n    return v\n")
TESTS = ("import tinydep\nfrom calc import add, clamp, scale\n\n\ndef test_scale():\n    assert scale(2) == 6\n\n\n"
         "def test_add():\n    assert add(2, 3) == 5\n\n\ndef test_clamp():\n    assert clamp(5, 0, 3) == 3\n"
         "    assert clamp(-1, 0, 3) == 0\n    assert clamp(2, 0, 3) == 2\n\n\n"
         "def test_dep():\n    assert tinydep.FACTOR == 3\n")
TEST_CMD = "python -m pytest -q tests"


def build_wheel(source: dict[str, str], name: str, version: str, dest: Path) -> Path:
    """A pure-Python wheel of ``source`` (PEP 427: the files, METADATA, WHEEL and a RECORD of hashes)."""
    dist = f"{name}-{version}.dist-info"
    files = {**source, f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hrmcode-tests\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip('=')},"
              f"{len(text.encode())}" for path, text in files.items()] + [f"{dist}/RECORD,,"]
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in {**files, f"{dist}/RECORD": "\n".join(record) + "\n"}.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), text)  # same bytes every run
    return wheel


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def dep_repo(tmp_path_factory) -> Path:
    """A git repository whose tests import ``tinydep``, a wheel found only in a local --find-links directory."""
    root = tmp_path_factory.mktemp("envrepo")
    build_wheel(DEP, "tinydep", "1.0", root / "wheels")
    repo = root / "calc"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(CALC)
    (repo / "tests" / "test_calc.py").write_text(TESTS)
    (repo / "pyproject.toml").write_text('[project]\nname = "calc"\ndependencies = ["tinydep==1.0"]\n')
    (repo / "requirements-test.txt").write_text("--no-index\n--find-links ../wheels\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "calc")
    return repo


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ws")


@pytest.mark.integration
def test_local_package_is_importable_in_the_sandbox_and_read_only(dep_repo, workspace):
    info = read_repo(dep_repo)
    env = prepare_environment(info, "python", "local", workspace=workspace)
    assert env.requirements == ("tinydep==1.0",) and env.installed == ("tinydep==1.0",)
    assert env.directory == workspace / "envs" / env.id / "site" and (env.directory / "tinydep").is_dir()
    box = env.sandbox(real_sandbox("local"))
    run = run_suite(box, info.files, TEST_CMD, Limits(timeout_s=60), strict=True)
    assert run.problem is None and len(run.passing()) == 4
    # the tested code cannot change the environment: not as the sandbox uid, not through the mount
    probe = box.run(f"python -c 'import tinydep; print(tinydep.__file__)'; "
                    f"echo 'FACTOR = 1' > {ENV_MOUNT}/tinydep/__init__.py && echo WROTE; "
                    f"touch {ENV_MOUNT}/new && echo TOUCHED; rm -rf {ENV_MOUNT}/tinydep && echo REMOVED; "
                    f"mount -o remount,rw {ENV_MOUNT} 2>/dev/null && echo REMOUNTED; true")
    assert probe.stdout.splitlines()[0] == f"{ENV_MOUNT}/tinydep/__init__.py"
    assert not {"WROTE", "TOUCHED", "REMOVED", "REMOUNTED"} & set(probe.stdout.split()), probe.stdout
    assert (env.directory / "tinydep" / "__init__.py").read_text() == DEP["tinydep/__init__.py"]
    # without the environment the same suite cannot import it
    bare = run_suite(real_sandbox("local"), info.files, TEST_CMD, Limits(timeout_s=60), strict=True)
    assert not bare.passing()


HOSTILE_ENV_WRITES = (  # an agent's session trying to change what the grader's fresh run will import
    f"echo 'FACTOR = 1' > {ENV_MOUNT}/tinydep/__init__.py",
    f"mv {ENV_MOUNT}/tinydep {ENV_MOUNT}/moved",
    f"chmod 777 {ENV_MOUNT}/tinydep",
    f"ln -s /work/evil.py {ENV_MOUNT}/evil.py",
    f"python -c 'import tinydep, pathlib; pathlib.Path(tinydep.__file__).write_text(\"FACTOR = 1\")'",
    f"mkdir -p /tmp/m && mount --bind /tmp/m {ENV_MOUNT}/tinydep",
)


def _poison_then_grade(box) -> tuple[list[str], str]:
    with box.session({"calc.py": CALC}) as session:
        succeeded = [attack for attack in HOSTILE_ENV_WRITES if session.exec(attack).exit_code == 0]
    fresh = box.run("python -c 'import tinydep; print(tinydep.triple(2))'")
    return succeeded, fresh.stdout.strip()


@pytest.mark.integration
def test_a_session_cannot_change_the_environment_a_later_run_imports(dep_repo, tmp_path):
    env = prepare_environment(read_repo(dep_repo), "python", "local", workspace=tmp_path)
    for path in [env.directory, *env.directory.rglob("*")]:  # only the read-only mount stands in the way now
        path.chmod(0o777 if path.is_dir() else 0o666)
    assert _poison_then_grade(env.sandbox(real_sandbox("local"))) == ([], "6")


@pytest.mark.integration
def test_repo_tasks_keeps_bugs_in_its_environment_records_it_and_reuses_it(dep_repo, workspace, tmp_path,
                                                                           monkeypatch):
    with pytest.raises(InputError, match="gives no passing test"):  # the reference run fails without it
        repo_tasks(str(dep_repo), test_cmd=TEST_CMD, max_bugs=4, workspace=workspace, out=tmp_path / "none",
                   sandbox=real_sandbox("local"), env="none")
    result = repo_tasks(str(dep_repo), test_cmd=TEST_CMD, max_bugs=8, workspace=workspace, out=tmp_path / "t",
                        sandbox=real_sandbox("local"))
    instances = list(read_jsonl(result.artifact.path / "instances.jsonl"))
    assert instances and result.stats["reference_passing"] == 4
    record = instances[0]["environment"]
    assert record["kind"] == "python" and record["requirements"] == ["tinydep==1.0"]
    assert record["installed"] == ["tinydep==1.0"] and record["docker_image"] == f"hrmcode-env-{record['id']}"
    assert instances[0]["image_name"].startswith("swebench/swesmith.x86_64.")  # SWE-smith's name stays
    # a second preparation reuses the directory: pip is never run again
    monkeypatch.setattr(environments, "_install", lambda *a: pytest.fail("reinstalled a present environment"))
    again = prepare_environment(read_repo(dep_repo), "python", "local", workspace=workspace)
    assert again.id == record["id"] and str(again.directory.parent) == record["directory"]
    # eval swe's and validate's view of the task: the same environment, from the record
    task = load_repo_tasks(result.artifact.path)[0]
    assert task.environment == record
    box = environment_sandbox(task.environment, real_sandbox("local"))
    assert run_suite(box, task.files, TEST_CMD, Limits(timeout_s=60), strict=True).problem is None
    # validate's execution check: the fix passes in the task's environment; without it nothing can pass
    row = next(read_jsonl(result.artifact.path / "tasks.jsonl"))
    repository = {r["path"]: r["text"] for r in read_jsonl(result.artifact.path / "repository.jsonl")}
    fixed = {path: repository[path] for path in row["editable"]}
    checker = ExecChecker(TaskBook({row["id"]: row}, {row["id"]: repository}),
                          AppendLog(tmp_path / "exec.jsonl", key="id"), sandbox=real_sandbox("local"))
    assert checker._run(row, fixed, stub=False)[0] is True
    metadata = {key: value for key, value in row["metadata"].items() if key != "environment"}
    bare = {**row, "id": row["id"] + "-bare", "metadata": metadata}
    checker = ExecChecker(TaskBook({bare["id"]: bare}, {bare["id"]: repository}),
                          AppendLog(tmp_path / "exec-bare.jsonl", key="id"), sandbox=real_sandbox("local"))
    assert checker._run(bare, fixed, stub=False)[0] is False


@pytest.mark.integration
def test_a_missing_environment_is_prepared_again_from_the_record(dep_repo, workspace, tmp_path):
    env = prepare_environment(read_repo(dep_repo), "python", "local", workspace=workspace)
    record = env.record()
    record["directory"] = str(tmp_path / "gone" / env.id)  # another machine's path
    box = environment_sandbox(record, real_sandbox("local"), workspace=tmp_path / "b")
    assert (tmp_path / "b" / "envs" / env.id / "site" / "tinydep").is_dir()
    assert box.run("python -c 'import tinydep; print(tinydep.triple(2))'").stdout.strip() == "6"


@pytest.mark.integration
def test_a_preparer_that_finished_first_wins_and_nothing_half_made_is_left(dep_repo, tmp_path, monkeypatch):
    requirements = Requirements(("tinydep==1.0",), ("--no-index", "--find-links", str(dep_repo.parent / "wheels")))
    final = tmp_path / "envs" / environment_id(requirements)
    real_install = environments._install

    def racing(wanted: Requirements, target: Path) -> None:  # another process renames its copy while pip runs
        real_install(wanted, target)
        (tmp_path / "theirs").mkdir()
        (tmp_path / "theirs" / "site").mkdir()
        (tmp_path / "theirs" / "environment.json").write_text(json.dumps({"installed": ["tinydep==0.9"]}))
        (tmp_path / "theirs").rename(final)

    monkeypatch.setattr(environments, "_install", racing)
    env = environments._local_environment(requirements, "python", tmp_path / "envs")
    assert env.directory == final / "site" and env.installed == ("tinydep==0.9",)  # theirs, complete
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [final.name]  # our staging copy is gone


def test_an_sdist_dependency_is_never_built_on_this_machine(tmp_path):
    """A repository can name any package: building an sdist would run its setup.py here, unsandboxed."""
    links, marker = tmp_path / "links", tmp_path / "ran-on-the-host"
    links.mkdir()
    # with setuptools at hand, pip would run setup.py to build it (as it would from any index)
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    for wheel in bundled.glob("setuptools-*.whl"):
        shutil.copy(wheel, links)
    setup = f"open({str(marker)!r}, 'w').write('pwned')\nfrom setuptools import setup\nsetup(name='evil', version='1.0')\n"
    with tarfile.open(links / "evil-1.0.tar.gz", "w:gz") as archive:
        for name, text in {"evil-1.0/setup.py": setup,
                           "evil-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    requirements = Requirements(("evil==1.0",), ("--no-index", "--find-links", str(links)), ("pyproject.toml",))
    with pytest.raises(InputError, match="evil") as caught:
        environments._local_environment(requirements, "python", tmp_path / "envs")
    assert "wheel" in caught.value.hint and not marker.exists()


def test_unresolvable_requirements_are_one_line_errors(tmp_path):
    empty = tmp_path / "links"
    empty.mkdir()
    requirements = Requirements(("no-such-package-hrmcode==1.0",), ("--no-index", "--find-links", str(empty)),
                                ("requirements.txt",))
    with pytest.raises(InputError) as caught:
        environments._local_environment(requirements, "python", tmp_path / "envs")
    message = caught.value.message
    assert "\n" not in message and "requirements.txt" in message and "no-such-package-hrmcode" in message
    assert not list((tmp_path / "envs").iterdir())  # nothing half-installed is left
    with pytest.raises(UsageError, match="no such requirements file"):
        from_requirements_file(tmp_path / "missing.txt")


def test_toolchain_languages_install_nothing_and_an_empty_environment_leaves_the_sandbox_alone(tmp_path):
    class Info:
        files = {"go.mod": "module x\n", "x.go": "package x\n"}
        path = tmp_path

    env = prepare_environment(Info(), "go", "local", workspace=tmp_path)
    assert env.kind == "toolchain" and not env.mounts and env.record()["requirements"] == []
    Info.files = {"calc.py": "def f():\n    return 1\n"}
    flat = prepare_environment(Info(), "python", "local", workspace=tmp_path)
    sentinel = object()
    assert not flat.mounts and flat.sandbox(sentinel) is sentinel and not (tmp_path / "envs").exists()


def test_env_option_is_refused_for_other_sources(tmp_path):
    from hrmcode.data.synthesize import synthesize

    with pytest.raises(UsageError, match="--env only applies to --source repo:PATH"):
        synthesize("humaneval", workspace=tmp_path, env="none")


@pytest.mark.docker
@pytest.mark.integration
def test_docker_image_holds_the_environment_read_only(dep_repo, tmp_path):
    base = real_sandbox("docker")
    info = read_repo(dep_repo)
    # also a newer "six" than the image's Debian python3-six: the environment's wins, and the image's
    # own packages (Debian's) are no constraint on it, only the sandbox's pytest and its dependencies
    build_wheel({"six.py": "__version__ = '99.0'\n"}, "six", "99.0", tmp_path / "links")
    build_wheel(DEP, "tinydep", "1.0", tmp_path / "links")
    requirements = Requirements(("six==99.0", "tinydep==1.0"), ("--no-index", "--find-links", str(tmp_path / "links")))
    env = environments._for_backend(environments._local_environment(requirements, "python", tmp_path), "docker")
    assert env.image_name.startswith(f"hrmcode-env-{env.id}:")
    box = env.sandbox(base)
    run = run_suite(box, info.files, TEST_CMD, Limits(timeout_s=120), strict=True)
    assert run.problem is None and len(run.passing()) == 4
    probe = box.run(f"python -c 'import six; print(six.__version__)'; "
                    f"echo x > {ENV_MOUNT}/tinydep/__init__.py && echo WROTE; true")
    assert probe.stdout.split() == ["99.0"]  # and nothing written
    assert _poison_then_grade(box) == ([], "6")
    again = environments._for_backend(environments._local_environment(requirements, "python", tmp_path), "docker")
    assert again.image_name == env.image_name  # reused


@pytest.mark.skipif(os.environ.get("HRMCODE_OFFLINE") == "1", reason="HRMCODE_OFFLINE=1: needs PyPI")
@pytest.mark.integration
def test_a_pypi_dependency(tmp_path):
    env = environments._local_environment(Requirements(("six==1.17.0",), (), ("requirements.txt",)), "python",
                                          tmp_path / "envs")
    assert env.installed == ("six==1.17.0",)
    box = env.sandbox(real_sandbox("local"))
    assert box.run("python -c 'import six; print(six.__version__)'").stdout.strip() == "1.17.0"
    assert json.loads((tmp_path / "envs" / env.id / "environment.json").read_text())["id"] == env.id
