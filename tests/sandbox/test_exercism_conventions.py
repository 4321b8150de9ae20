"""Exercism conventions outside Aider's 225 that the toolchains honour: JavaScript references placed
beside the exercise's helpers (``from '../x'`` -> ``'./x'``), ``xdescribe`` un-skipped in strict mode,
and Rust tests built in release mode when the exercise asks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hrmcode.data.sources.polyglot import to_task
from hrmcode.sandbox import toolchains
from hrmcode.sandbox.toolchains import placed_reference, release_requested, run_tests, unskip

SPEC = """import { greet } from './greeter';

describe('Greeter', () => {
  test('greets', () => {
    expect(greet('Ada')).toEqual('Hello, Ada!');
  });

  xdescribe('more names', () => {
    test('Bob', () => {
      expect(greet('Bob')).toEqual('Hello, Bob!');
    });
    xtest('empty', () => {
      expect(greet('')).toEqual('Hello, !');
    });
    it('Eve', () => {
      expect(greet('Eve')).toEqual('Hello, Eve!');
    });
  });
});
"""
REFERENCE = "import { PREFIX } from '../helper';\n\nexport const greet = (name) => `${PREFIX}${name}!`;\n"


def test_xdescribe_is_unskipped_in_strict_mode_only():
    kept = "describe.skip('slow', () => {\n  test('never', () => {});\n});\n"
    strict, n = unskip("javascript", {"greeter.spec.js": SPEC + kept}, "strict")
    assert n == 2 and "xdescribe(" not in strict["greeter.spec.js"] and "xtest(" not in strict["greeter.spec.js"]
    assert strict["greeter.spec.js"].endswith(kept)  # Exercism's always-skipped blocks stay
    compat, n = unskip("javascript", {"greeter.spec.js": SPEC}, "aider-compat")
    assert n == 1 and "xdescribe('more names'" in compat["greeter.spec.js"]  # Aider's sed: xtest only


def test_placed_reference_rewrites_parent_imports_as_exercisms_ci():
    text = "import { a } from '../a';\nimport b from '../lib/b'; // from '../c'\nconst x = require('../x');\n"
    assert placed_reference("javascript", text) == (
        "import { a } from './a';\nimport b from './lib/b'; // from '../c'\nconst x = require('../x');\n")
    assert placed_reference("python", "from '../a'") == "from '../a'"


def _greeter_exercise(root: Path, shared_dir: Path) -> Path:
    exercise = root / "javascript" / "exercises" / "practice" / "greeter"
    (exercise / ".meta").mkdir(parents=True)
    (exercise / ".docs").mkdir()
    forth = shared_dir / "polyglot-benchmark" / "javascript" / "exercises" / "practice" / "forth"
    for name in ("package.json", "babel.config.js"):
        shutil.copy(forth / name, exercise / name)
    (exercise / ".docs" / "instructions.md").write_text("# Greeter\n\nGreet someone with PREFIX.\n")
    (exercise / ".meta" / "config.json").write_text(json.dumps({"files": {
        "solution": ["greeter.js"], "test": ["greeter.spec.js"], "example": [".meta/proof.ci.js"]}}))
    (exercise / ".meta" / "proof.ci.js").write_text(REFERENCE)
    (exercise / "helper.js").write_text("export const PREFIX = 'Hello, ';\n")
    (exercise / "greeter.js").write_text("export const greet = () => {\n  throw new Error('Remove this line');\n};\n")
    (exercise / "greeter.spec.js").write_text(SPEC)
    return exercise


@pytest.mark.shared
@pytest.mark.integration
def test_a_javascript_reference_importing_a_helper_passes_all_its_tests(shared_dir, local_sandbox, tmp_path):
    if toolchains.missing_toolchain("javascript") is not None:
        pytest.skip("node or the shared node_modules is missing")
    task = to_task("javascript", "greeter", _greeter_exercise(tmp_path, shared_dir))
    assert "from './helper'" in task.solution.files["greeter.js"]
    tree = {**task.files, **task.tests.files, **task.solution.files}
    strict = run_tests("javascript", tree, sandbox=local_sandbox)
    output = strict.result.stdout + strict.result.stderr
    assert strict.passed, output[-3000:]
    assert strict.expected == 4 and strict.reason is None  # the xdescribe block's 3 tests ran and passed too
    compat = run_tests("javascript", tree, mode="aider-compat", sandbox=local_sandbox)
    assert compat.passed and re.search(r"Tests:\s+3 skipped, 1 passed", compat.output), compat.output[-2000:]
    # the reference as Exercism ships it cannot import its helper from the solution's place
    raw = {**tree, "greeter.js": REFERENCE}
    assert not run_tests("javascript", raw, sandbox=local_sandbox).passed


RELEASE_ONLY = {
    "Cargo.toml": '[package]\nedition = "2021"\nname = "fast"\nversion = "0.1.0"\n',
    "src/lib.rs": "pub fn optimised() -> bool {\n    !cfg!(debug_assertions)\n}\n",
    "tests/fast.rs": "#[test]\nfn built_for_release() {\n    assert!(fast::optimised());\n}\n",
}


def test_release_mode_is_read_from_the_exercise_config():
    assert release_requested({"custom": {"test-in-release-mode": True}})
    assert not release_requested({"custom": {"test-in-release-mode": "yes"}})
    assert not release_requested({"custom": {"allowed-to-not-compile": "x"}})
    assert not release_requested(None) and not release_requested({})


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["strict", "aider-compat"])
def test_rust_tests_build_in_release_mode_when_asked(local_sandbox, mode):
    if toolchains.missing_toolchain("rust") is not None:
        pytest.skip("rust is not installed")
    release = run_tests("rust", RELEASE_ONLY, mode=mode, sandbox=local_sandbox, release=True)
    assert "cargo test --release " in release.command
    assert release.passed, release.result.stdout[-2000:] + release.result.stderr[-2000:]
    debug = run_tests("rust", RELEASE_ONLY, mode=mode, sandbox=local_sandbox)
    assert not debug.passed and "--release" not in debug.command


@pytest.mark.shared
def test_the_polyglot_data_marks_release_mode_where_exercism_does(shared_dir):
    practice = shared_dir / "polyglot-benchmark" / "rust" / "exercises" / "practice"
    marked = sorted(d.name for d in practice.iterdir()
                    if release_requested(json.loads((d / ".meta" / "config.json").read_text())))
    assert marked == ["alphametics"]
