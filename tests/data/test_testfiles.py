"""Every rule of ``hrmcode.data.testfiles``: which paths are tests per language, and what
``discard_test_changes`` puts back (whole files, forging places, test sections of shared config)."""

from __future__ import annotations

import json
import tomllib

import pytest

from hrmcode.data.testfiles import discard_test_changes, is_test_path

TESTS = {
    "python": ["test_x.py", "pkg/test_x.py", "pkg/x_test.py", "tests/helpers.py", "test/data.json", "testing/util.py",
               "conftest.py", "pkg/sub/conftest.py", "pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml",
               "sub/tox.ini", "noxfile.py"],
    "go": ["x_test.go", "pkg/x_test.go", "testdata/in.txt", "pkg/testdata/golden.json"],
    "rust": ["tests/it.rs", "crate/tests/it.rs", "benches/b.rs"],
    "java": ["src/test/java/FooTest.java", "module/src/test/resources/x.txt"],
    "javascript": ["a.test.js", "src/a.spec.ts", "b.test.tsx", "c.spec.mjs", "src/__tests__/a.js", "test/a.js",
                   "tests/b.js", "spec/toWordsSpec.js", "jest.config.js", "jest.config.ts", "vitest.config.mts", ".mocharc.yml"],
    "cpp": ["test/main.cpp", "tests/CMakeLists.txt", "src/x_test.cpp", "test_y.cc", "z_test.c"],
}
CODE = {
    "python": ["pkg/x.py", "pkg/testament.py", "contest.py", "setup.py", "src/pkg/testing_tools.py", "README.md"],
    "go": ["x.go", "pkg/test.go"],
    "rust": ["src/lib.rs", "src/tests.rs"],
    "java": ["src/main/java/Foo.java", "src/main/java/FooTest.java.txt"],
    "javascript": ["src/a.js", "src/test.js", "package.json"],
    "cpp": ["src/x.cpp", "src/testing.cpp"],
}


@pytest.mark.parametrize("language", sorted(TESTS))
def test_is_test_path_by_language(language):
    for path in TESTS[language]:
        assert is_test_path(path, language), (language, path)
    for path in CODE[language]:
        assert not is_test_path(path, language), (language, path)


def test_typescript_uses_javascripts_rules_and_an_unknown_language_all_rules():
    assert is_test_path("src/a.spec.ts", "typescript") and not is_test_path("src/a.ts", "typescript")
    for paths in TESTS.values():
        for path in paths:
            assert is_test_path(path, "cobol"), path
    assert not is_test_path("x_test.go", "python")  # a python repo's rules say nothing about go files


def _discard(base, final, language="python"):
    return discard_test_changes(base, final, language)


def test_test_files_are_put_back_restored_and_removed():
    base = {"pkg/a.py": "a\n", "tests/test_a.py": "t\n", "tests/test_gone.py": "g\n"}
    final = {"pkg/a.py": "A\n", "tests/test_a.py": "T\n", "tests/test_new.py": "n\n", "pkg/test_b.py": "b\n"}
    tree, discarded = _discard(base, final)
    assert tree == {"pkg/a.py": "A\n", "tests/test_a.py": "t\n", "tests/test_gone.py": "g\n"}
    assert discarded == ["pkg/test_b.py", "tests/test_a.py", "tests/test_gone.py", "tests/test_new.py"]
    assert _discard(base, dict(base)) == (base, [])


@pytest.mark.parametrize("path", ["conftest.py", "pkg/conftest.py", "pytest.ini", "sub/pytest.ini", ".pytest.ini",
                                  "pytest.toml", "tox.ini", "noxfile.py"])
def test_new_and_changed_test_configuration_is_put_back(path):
    tree, discarded = _discard({"a.py": ""}, {"a.py": "", path: "[pytest]\naddopts = -k nothing\n"})
    assert tree == {"a.py": ""} and discarded == [path]
    tree, discarded = _discard({path: "old\n"}, {path: "new\n"})
    assert tree == {path: "old\n"} and discarded == [path]


@pytest.mark.parametrize("path", ["sitecustomize.py", "pkg/sitecustomize.py", "usercustomize.py", "x.pth",
                                  "pkg/deep/y.pth", "forge-1.0.dist-info/entry_points.txt",
                                  "lib/forge.egg-info/entry_points.txt", ".hrmcode-pytest/sitecustomize.py",
                                  ".hrmcode-pytest/report.jsonl"])
def test_startup_hooks_plugin_metadata_and_the_reporters_directory_are_put_back(path):
    for language in ("python", "go", "javascript"):
        tree, discarded = _discard({"a.py": ""}, {"a.py": "", path: "import os; os._exit(0)\n"}, language)
        assert tree == {"a.py": ""} and discarded == [path], (language, path)
    tree, discarded = _discard({path: "base\n"}, {path: "changed\n"})
    assert tree == {path: "base\n"} and discarded == [path]


@pytest.mark.parametrize("path", ["pytest.py", "_pytest/__init__.py", "pluggy.py", "json.py", "argparse/__init__.py",
                                  "src/types.py", "scripts/inspect.py", "py.py"])
def test_a_new_module_that_shadows_the_stdlib_or_pytest_is_put_back(path):
    tree, discarded = _discard({"a.py": ""}, {"a.py": "", path: "import os\n"})
    assert path not in tree and discarded == [path]


@pytest.mark.parametrize("path", ["pkg/json.py", "pkg/types.py", "pkg/sub/inspect.py", "helpers.py", "html/index.html",
                                  "json/data.txt"])
def test_modules_inside_packages_and_other_new_files_are_kept(path):
    base = {"pkg/__init__.py": "", "pkg/sub/__init__.py": ""}
    tree, discarded = _discard(base, {**base, path: "x = 1\n"})
    assert tree[path] == "x = 1\n" and discarded == []


def test_an_existing_module_named_like_the_stdlib_may_change():
    tree, discarded = _discard({"types.py": "a\n"}, {"types.py": "b\n"})
    assert tree == {"types.py": "b\n"} and discarded == []


SETUP_CFG = """[metadata]
name = toolkit

[tool:pytest]
testpaths = tests

[coverage:run]
branch = true

[options.entry_points]
console_scripts =
    toolkit = toolkit:main

[flake8]
max-line-length = 100
"""


def test_setup_cfg_keeps_the_agents_change_and_gets_its_test_sections_back():
    final = (SETUP_CFG.replace("name = toolkit", "name = toolkit2")
             .replace("testpaths = tests", "testpaths = tests\naddopts = -k 'not merge'")
             .replace("branch = true", "branch = false")
             .replace("toolkit = toolkit:main", "toolkit = toolkit:main\npytest11 =\n    forge = forge_plugin")
             .replace("max-line-length = 100", "max-line-length = 120"))
    final += "[coverage:report]\nfail_under = 0\n"
    tree, discarded = _discard({"setup.cfg": SETUP_CFG}, {"setup.cfg": final})
    assert tree["setup.cfg"] == SETUP_CFG.replace("name = toolkit", "name = toolkit2").replace("= 100", "= 120")
    assert discarded == ["setup.cfg"]


def test_setup_cfg_header_rules_follow_pytests_reader():
    """iniconfig: a header starts at column 0 and may carry a comment; an indented one is a value."""
    base = "[metadata]\nname = x\n"
    sneaky = base + "[tool:pytest] ; comment\naddopts = -x\n"
    tree, discarded = _discard({"setup.cfg": base}, {"setup.cfg": sneaky})
    assert tree["setup.cfg"] == base and discarded == ["setup.cfg"]
    indented = base + "  [tool:pytest]\n"  # a continuation of `name`, not a section
    assert _discard({"setup.cfg": base}, {"setup.cfg": indented}) == ({"setup.cfg": indented}, [])


def test_a_new_setup_cfg_loses_only_its_test_sections_and_a_test_only_one_is_removed():
    tree, discarded = _discard({}, {"setup.cfg": "[metadata]\nname = x\n\n[tool:pytest]\naddopts = -x\n"})
    assert tree == {"setup.cfg": "[metadata]\nname = x\n\n"} and discarded == ["setup.cfg"]
    tree, discarded = _discard({}, {"setup.cfg": "[tool:pytest]\naddopts = -x\n"})
    assert tree == {} and discarded == ["setup.cfg"]


PYPROJECT = """[project]
name = "toolkit"
version = "1.0"

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 100

[tool.coverage.run]
branch = true
"""


def test_pyproject_keeps_the_agents_change_and_gets_its_test_tables_back():
    final = (PYPROJECT.replace('"1.0"', '"1.1"').replace('["tests"]', '["tests"]\naddopts = "--deselect x"')
             .replace("line-length = 100", "line-length = 120"))
    final += '\n[tool.pytest.markers]\nslow = "x"\n\n[project.entry-points.pytest11]\nforge = "forge"\n'
    final += '\n[tool."coverage".report]\nfail_under = 0\n'
    tree, discarded = _discard({"pyproject.toml": PYPROJECT}, {"pyproject.toml": final})
    text = tree["pyproject.toml"]
    assert discarded == ["pyproject.toml"]
    data = tomllib.loads(text)
    assert data["project"]["version"] == "1.1" and data["tool"]["ruff"]["line-length"] == 120
    assert data["tool"]["pytest"] == {"ini_options": {"testpaths": ["tests"]}}
    assert data["tool"]["coverage"] == {"run": {"branch": True}} and "entry-points" not in data["project"]


@pytest.mark.parametrize("sneaky", [
    '[tool]\npytest.ini_options.addopts = "-x"\n',
    'tool.pytest.ini_options.addopts = "-x"\n',
    '[tool.ruff]\nx = 1\n[tool]\ncoverage = {run = {branch = false}}\n',
    'notes = """\n[tool.pytest.ini_options]\n"""\n',
    "this is not toml [",
])
def test_pyproject_that_hides_test_options_from_the_textual_split_is_put_back_whole(sneaky):
    final = (sneaky + "\n" + PYPROJECT) if not sneaky.startswith("[tool") else PYPROJECT + "\n" + sneaky
    tree, discarded = _discard({"pyproject.toml": PYPROJECT}, {"pyproject.toml": final})
    if tree["pyproject.toml"] != PYPROJECT:  # the split held: the test tables are the base's
        assert _tables(tree["pyproject.toml"]) == _tables(PYPROJECT)
    assert discarded == ["pyproject.toml"]


def _tables(text):
    tool = tomllib.loads(text).get("tool", {})
    return tool.get("pytest"), tool.get("coverage")


def test_pyproject_with_dotted_pytest_keys_goes_back_whole():
    final = PYPROJECT.replace("[tool.ruff]", '[tool.ruff]\n[tool]\npytest.ini_options.addopts = "-x"\n[tool.black]')
    tree, discarded = _discard({"pyproject.toml": PYPROJECT}, {"pyproject.toml": final})
    assert tree["pyproject.toml"] == PYPROJECT and discarded == ["pyproject.toml"]


def test_deleting_a_shared_config_file_brings_back_its_test_sections_only_when_it_had_some():
    tree, discarded = _discard({"pyproject.toml": PYPROJECT, "a.py": ""}, {"a.py": ""})
    assert tree["pyproject.toml"] == PYPROJECT and discarded == ["pyproject.toml"]
    plain = '[project]\nname = "x"\n'
    assert _discard({"pyproject.toml": plain, "a.py": ""}, {"a.py": ""}) == ({"a.py": ""}, [])


def test_package_json_gets_its_test_keys_back_and_keeps_the_rest():
    base = {"name": "x", "version": "1.0.0", "scripts": {"test": "jest", "build": "tsc"},
            "jest": {"testMatch": ["**/*.test.js"]}}
    final = {"name": "x", "version": "1.1.0", "scripts": {"test": "echo ok", "build": "tsc -p ."},
             "jest": {"testMatch": []}, "mocha": {"spec": "none"}}
    tree, discarded = _discard({"package.json": json.dumps(base, indent=2) + "\n"},
                               {"package.json": json.dumps(final, indent=4) + "\n"}, "javascript")
    got = json.loads(tree["package.json"])
    assert got == {"name": "x", "version": "1.1.0", "scripts": {"test": "jest", "build": "tsc -p ."},
                   "jest": {"testMatch": ["**/*.test.js"]}}
    assert tree["package.json"].startswith('{\n    "name"') and discarded == ["package.json"]
    untouched = json.dumps({**base, "version": "2.0.0"}, indent=2)
    kept = _discard({"package.json": json.dumps(base)}, {"package.json": untouched})
    assert kept == ({"package.json": untouched}, [])
    broken = _discard({"package.json": json.dumps(base)}, {"package.json": "{not json"})
    assert broken == ({"package.json": json.dumps(base)}, ["package.json"])
