"""``hrmcode sandbox doctor``: is every backend and toolchain usable here, and if not, what installs it.

Every check is read-only except ``smoke=True``, which runs one tiny program per toolchain in the
local sandbox (and so builds the one-time caches if they are missing). Besides backends and
toolchains it says which memory cap applies (a cgroup for the whole sandbox, or the per-process
RLIMIT_AS fallback) and whether the sandbox uids are free of accounts and foreign processes. Each row is
``{"component", "status": "ok"|"missing"|"failed", "detail", "fix"}``; ``fix`` is the command to run.
"""

from __future__ import annotations

from hrmcode.errors import HrmcodeError
from hrmcode.sandbox import _cgroup, backend_status, get_sandbox, hostpaths, local, runs, toolchains
from hrmcode.sandbox.base import Sandbox

SETUP = "scripts/setup-toolchains.sh"

# One tiny passing exercise per language: the smoke test of each route.
SMOKE = {
    "python": {"hello.py": "def hello():\n    return 'hi'\n",
               "hello_test.py": "from hello import hello\n\ndef test_hello():\n    assert hello() == 'hi'\n"},
    "go": {"go.mod": "module hello\n\ngo 1.21\n", "hello.go": "package hello\n\nfunc Hello() string { return \"hi\" }\n",
           "hello_test.go": "package hello\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n"
                            "\tif Hello() != \"hi\" {\n\t\tt.Fatal(Hello())\n\t}\n}\n"},
    "rust": {"Cargo.toml": "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
             "src/lib.rs": "pub fn hello() -> &'static str { \"hi\" }\n",
             "tests/hello.rs": "#[test]\n#[ignore]\nfn hello() { assert_eq!(hello::hello(), \"hi\"); }\n"},
    "java": {"src/main/java/Hello.java": "public class Hello { public static String hello() { return \"hi\"; } }\n",
             "src/test/java/HelloTest.java": "import org.junit.jupiter.api.Disabled;\nimport org.junit.jupiter.api.Test;\n"
                                             "import static org.assertj.core.api.Assertions.assertThat;\n"
                                             "public class HelloTest {\n  @Disabled(\"Remove to run test\")\n  @Test\n"
                                             "  public void hello() { assertThat(Hello.hello()).isEqualTo(\"hi\"); }\n}\n"},
    # Laid out as Exercism's exercises are: CommonJS package.json and babel.config.js, ES-module
    # sources and specs (Babel transforms them).
    "javascript": {"package.json": '{"name": "hello", "private": true}\n',
                   "babel.config.js": "module.exports = { presets: ['@exercism/babel-preset-javascript'] };\n",
                   "hello.js": "export const hello = () => 'hi';\n",
                   "hello.spec.js": "import { hello } from './hello';\n\nxtest('hello', () => { expect(hello()).toBe('hi'); });\n"},
    "cpp": {"hello.h": "#pragma once\n#include <string>\nstd::string hello();\n",
            "hello.cpp": "#include \"hello.h\"\nstd::string hello() { return \"hi\"; }\n",
            # No Catch2 header ships with hrmcode, so the smoke test brings its own main.
            "hello_test.cpp": "#include \"hello.h\"\nint main() { return hello() == \"hi\" ? 0 : 1; }\n"},
}


def _row(component: str, ok: bool, detail: str, fix: str = "") -> dict:
    return {"component": component, "status": "ok" if ok else "missing", "detail": detail, "fix": "" if ok else fix}


def diagnose(smoke: bool = False) -> list[dict]:
    rows: list[dict] = []
    for backend, line in backend_status().items():
        fix = "apt-get install bubblewrap" if backend == "local" else f"{SETUP} --docker"
        rows.append(_row(f"backend {backend}", line.startswith("ok"), line, fix))
    versions = {
        "python": hostpaths.python_toolchain() and f"{hostpaths.python_toolchain().prefix} + pytest",
        "go": hostpaths.go_version(),
        "rust": hostpaths.rust_sysroot() and str(hostpaths.rust_sysroot()),
        "java": hostpaths.which("javac"),
        "javascript": hostpaths.which("node") and str(hostpaths.node_modules_dir()),
        "cpp": hostpaths.which("g++"),
    }
    for language in toolchains.LANGUAGES:
        missing = toolchains.missing_toolchain(language)
        if missing is None:
            rows.append(_row(f"toolchain {language}", True, str(versions[language])))
        else:
            rows.append(_row(f"toolchain {language}", False, missing[0], missing[1]))
    rows.append(_row("memory cap", _cgroup.hierarchy() is not None, _cgroup.describe(),
                     "run as root where a memory cgroup (v2 delegated, or v1) is mounted under /sys/fs/cgroup"))
    if runs.is_root():
        rows.append(_uid_row())
    smoke_rows = smoke_test() if smoke and local.bwrap_path() is not None else []
    # After the smoke run, which builds the seed when it is missing.
    seed = local.go_seed_path()
    rows.append(_row("cache go seed", seed is not None and (seed / ".complete").exists(),
                     str(seed) if seed else "no Go", "built on first Go run, or: hrmcode sandbox doctor --smoke"))
    return rows + smoke_rows


def _uid_row() -> dict:
    uids = range(runs.uid_base(), runs.uid_base() + runs.UID_SLOTS)
    taken = runs.unusable_uids()
    detail = f"{uids.start}..{uids.stop - 1}: {len(uids) - len(taken)} of {len(uids)} usable"
    if taken:
        detail += f"; skipped (an account's, or a process runs as it): {', '.join(map(str, taken[:8]))}"
    return _row("sandbox uids", len(taken) < len(uids), detail,
                "set HRMCODE_SANDBOX_UID_BASE to the first of 64 uids nothing on this host uses")


def smoke_test(sandbox: Sandbox | None = None) -> list[dict]:
    """Run one tiny exercise per toolchain through ``run_tests`` (strict mode). Locally, languages
    whose toolchain is missing are left out (the doctor's toolchain rows name them); a docker
    sandbox brings every toolchain, so every language runs."""
    sandbox = sandbox or get_sandbox("local")
    rows = []
    for language, files in SMOKE.items():
        if sandbox.name == "local" and toolchains.missing_toolchain(language) is not None:
            continue
        try:
            run = toolchains.run_tests(language, files, sandbox=sandbox)
        except HrmcodeError as exc:
            rows.append({"component": f"smoke {language}", "status": "failed", "detail": exc.message,
                         "fix": exc.hint or ""})
            continue
        detail = f"{run.result.wall_s:.1f}s" if run.passed else run.result.stdout.strip()[-200:]
        rows.append({"component": f"smoke {language}", "status": "ok" if run.passed else "failed",
                     "detail": detail, "fix": "" if run.passed else "rerun with HRMCODE_DEBUG=1; see the detail"})
    return rows

