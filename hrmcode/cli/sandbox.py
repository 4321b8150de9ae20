"""``hrmcode sandbox run|test|doctor|build|clean``: the sandbox from the command line.

``run`` exits with 0 when the command exited 0, 1 when it failed, timed out, was killed, or had a
process killed for going over its memory cap (its own exit code is in the output and in ``--json``),
2 on a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hrmcode.cli._common import examples_epilog
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out
from hrmcode.errors import InputError, UsageError

BackendOpt = Annotated[str, typer.Option("--backend", help="Sandbox backend: local (bubblewrap) or docker.")]
UnsafeOpt = Annotated[bool, typer.Option(
    "--unsafe-no-sandbox", help="If bubblewrap is missing, run WITHOUT isolation instead of refusing (local backend).")]
TimeoutOpt = Annotated[Optional[float], typer.Option(
    "--timeout", min=0.1, help="Wall-clock limit in seconds; the whole process tree is killed after it. "
    "[default: 30 for run, 180 for test]")]
MemoryOpt = Annotated[Optional[int], typer.Option(
    "--memory", min=16, help="Memory limit in MB: of each process, and of the whole sandbox summed over its "
    "processes and files (a cgroup locally, where one can be made: `hrmcode sandbox doctor` says; the container "
    "in docker). [default: 2048 for run; per language for test]")]


def _read_dir(directory: Path) -> dict[str, str | bytes]:
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory", "pass the directory whose files the command needs")
    files: dict[str, str | bytes] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            try:
                files[path.relative_to(directory).as_posix()] = data.decode("utf-8")
            except UnicodeDecodeError:
                files[path.relative_to(directory).as_posix()] = data
    return files


def _summary(result) -> str:
    if result.timed_out:
        what = "timed out (killed)"
    elif result.killed_signal is not None:
        what = f"killed by signal {result.killed_signal}"
    else:
        what = f"exit {result.exit_code}"
    flags = [name for name, on in (("memory exceeded", result.memory_exceeded),
                                   ("stdout truncated", result.stdout_truncated),
                                   ("stderr truncated", result.stderr_truncated)) if on]
    return f"{what} in {result.wall_s:.3f} s" + (f" ({', '.join(flags)})" if flags else "")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Run untrusted code in the sandbox; check and prepare the sandbox toolchains.",
                        no_args_is_help=True)
    app.add_typer(group, name="sandbox")

    @group.command("run", help="Run a command in a fresh sandbox and show its exit code, timing and output. "
                   "hrmcode exits 0 if the command exited 0 and none of its processes was killed for "
                   "memory, else 1.",
                   epilog=examples_epilog("hrmcode sandbox run -- python3 -c 'print(1)'",
                                          "hrmcode sandbox run --timeout 5 --memory 512 --files ./ex -- pytest -q",
                                          "hrmcode --json sandbox run --backend docker -- sh -c 'id; ls /'"))
    @handle_errors
    def run(
        command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
        backend: BackendOpt = "local",
        timeout: TimeoutOpt = None,
        memory: MemoryOpt = None,
        network: Annotated[bool, typer.Option("--network", help=(
            "Give the command the HOST's network: every interface, services listening on the host's own "
            "127.0.0.1, the LAN, and link-local cloud metadata addresses (169.254.169.254). Without it the "
            "command gets a private network namespace whose only interface is loopback: servers it starts on "
            "127.0.0.1 work, nothing outside the sandbox is reachable."))] = False,
        files: Annotated[Optional[Path], typer.Option(
            "--files", help="Copy this directory's files into the sandbox's work dir first.")] = None,
        unsafe_no_sandbox: UnsafeOpt = False,
    ) -> None:
        from hrmcode.sandbox import get_sandbox
        from hrmcode.sandbox.base import Limits

        tree = _read_dir(files) if files is not None else {}
        limits = Limits(timeout_s=timeout or 30.0, memory_mb=memory or 2048, network="host" if network else "loopback")
        sandbox = get_sandbox(backend, unsafe_no_sandbox=unsafe_no_sandbox)
        result = sandbox.run(command, tree, limits)

        def render() -> None:
            if result.stdout:
                typer.echo(result.stdout, nl=not result.stdout.endswith("\n"))
            if result.stderr:
                typer.echo(result.stderr, nl=not result.stderr.endswith("\n"), err=True)
            out.log(f"[{sandbox.name}] {_summary(result)}")

        out.result({"backend": sandbox.name, "command": command, **result.to_dict()}, render)
        if not result.ok:
            raise typer.Exit(1)

    @group.command("test", help="Build and test an exercise directory in one language (polyglot layout), "
                   "with every skipped test un-skipped. Exits 0 if the tests pass, else 1.",
                   epilog=examples_epilog("hrmcode sandbox test ./forth --language python",
                                          "hrmcode sandbox test ./bowling --language java --mode aider-compat"))
    @handle_errors
    def test(
        directory: Annotated[Path, typer.Argument(help="The exercise's working tree (stubs or answer + tests).")],
        language: Annotated[str, typer.Option("--language", "-l", help="python, go, rust, java, javascript or cpp.")],
        mode: Annotated[str, typer.Option("--mode", help="strict (run every test) or aider-compat "
                                          "(un-skip exactly as Aider's harness).")] = "strict",
        backend: BackendOpt = "local",
        timeout: TimeoutOpt = None,
        memory: MemoryOpt = None,
        unsafe_no_sandbox: UnsafeOpt = False,
    ) -> None:
        import dataclasses

        from hrmcode.sandbox import get_sandbox
        from hrmcode.sandbox.toolchains import DEFAULT_LIMITS, LANGUAGES, run_tests

        if language not in LANGUAGES:
            raise UsageError(f"unknown language {language!r}", f"choose one of: {', '.join(LANGUAGES)}")
        tree = {k: v for k, v in _read_dir(directory).items() if isinstance(v, str)}
        limits = DEFAULT_LIMITS[language]
        limits = dataclasses.replace(limits, timeout_s=timeout or limits.timeout_s, memory_mb=memory or limits.memory_mb)
        sandbox = get_sandbox(backend, unsafe_no_sandbox=unsafe_no_sandbox)
        run = run_tests(language, tree, mode=mode, sandbox=sandbox, limits=limits)

        def render() -> None:
            typer.echo(run.result.stdout, nl=not run.result.stdout.endswith("\n"))
            out.log(f"[{sandbox.name}] {language} ({mode}, {run.unskipped} un-skipped): "
                    f"{'PASSED' if run.passed else 'FAILED'}, {_summary(run.result)}")

        out.result(run.to_dict(), render)
        if not run.passed:
            raise typer.Exit(1)

    @group.command("doctor", help="Check every sandbox backend and toolchain; for each missing piece print "
                   "the command that installs it. Exits 1 if the local backend or a toolchain is missing.",
                   epilog=examples_epilog("hrmcode sandbox doctor", "hrmcode sandbox doctor --smoke"))
    @handle_errors
    def doctor(
        smoke: Annotated[bool, typer.Option("--smoke", help="Also run one tiny test per toolchain in the sandbox "
                                            "(builds the one-time caches; about a minute the first time).")] = False,
    ) -> None:
        from hrmcode.sandbox.doctor import diagnose

        rows = diagnose(smoke=smoke)

        def render() -> None:
            out.table("sandbox doctor", ["component", "status", "detail", "fix"],
                      [[r["component"], r["status"], r["detail"], r["fix"]] for r in rows])

        out.result(rows, render)
        optional = ("backend docker", "cache", "memory cap")  # each has a documented fallback
        essential = [r for r in rows if r["status"] != "ok" and not r["component"].startswith(optional)]
        if essential:
            raise typer.Exit(1)

    @group.command("build", help="Build the docker backend's images (base image, then the toolchain image).",
                   epilog=examples_epilog("hrmcode sandbox build", "hrmcode sandbox build --rebuild"))
    @handle_errors
    def build(
        rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild even if the images exist.")] = False,
    ) -> None:
        from hrmcode.sandbox.docker_backend import build_images

        done = build_images(rebuild=rebuild)
        out.result(done, lambda: out.table("docker images", ["image", "result"], list(done.items())))

    @group.command("clean", help="Remove what a crashed run left behind: labelled docker containers, local "
                   "run directories (unmounting their tmpfs) and cgroups whose hrmcode process is gone. Every "
                   "new sandbox run does this too; this command does it now.",
                   epilog=examples_epilog("hrmcode sandbox clean"))
    @handle_errors
    def clean(
        env_images: Annotated[bool, typer.Option(
            "--env-images", help="Also remove every Python environment image (hrmcode-env-*); runs that need "
                                 "one build it again. Without it only env images no current sandbox can use go.")] = False,
    ) -> None:
        from hrmcode.errors import ToolchainMissing
        from hrmcode.sandbox import docker_backend, runs

        removed = {"runs": runs.clean_stale_runs(), "containers": [], "env_images": []}
        try:
            removed["containers"] = docker_backend.clean()
            removed["env_images"] = docker_backend.clean_env_images(every=env_images)
        except ToolchainMissing as exc:
            out.log(f"docker: {exc.message}; no containers or images to check")

        def render() -> None:
            out.log(f"removed {len(removed['runs'])} run dirs and cgroups, {len(removed['containers'])} containers, "
                    f"{len(removed['env_images'])} environment images")
            for name in removed["runs"] + removed["containers"] + removed["env_images"]:
                out.data(name)

        out.result(removed, render)
