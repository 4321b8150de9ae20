"""Sandbox sessions: one work dir across many commands, each command a fresh process tree.

Every test runs on each backend that is here (bubblewrap; docker where an engine is up); the
behaviour tests also run on the unsafe backend, the hostile ones never do (it isolates nothing).
What a session must not leak is checked from the host: ``/proc``, a canary file outside the sandbox,
the mount table, the Docker engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrmcode.errors import SandboxError, UsageError
from hrmcode.sandbox import docker_backend, local, runs
from hrmcode.sandbox.base import Limits, Sandbox
from tests._sandboxes import BACKENDS, real_sandbox

REPO = Path(__file__).resolve().parents[2]
FAST = Limits(timeout_s=10, processes=64, memory_mb=512, disk_mb=64, inodes=4096)


def _unsafe():
    return local.UnsafeSandbox()


@pytest.fixture(scope="module", params=[*BACKENDS, "unsafe"])
def any_sandbox(request):
    """Every backend, the unsafe one included: for what a session does, not what it contains."""
    return _unsafe() if request.param == "unsafe" else real_sandbox(request.param)


@pytest.fixture(scope="module", params=BACKENDS)
def isolating(request):
    return real_sandbox(request.param)


def host_processes_with(marker: str) -> list[str]:
    """Command lines of every process on this host (containers' included) that mention ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_files_persist_across_commands_and_the_directory_resets(any_sandbox):
    with any_sandbox.session({"src/a.txt": "hello\n"}, FAST) as session:
        first = session.exec("cat src/a.txt; echo made > b.txt; mkdir -p deep/er && cd deep/er && pwd")
        assert first.ok and first.stdout.startswith("hello\n"), first
        second = session.exec("cat b.txt; pwd")
        assert second.ok and second.stdout == f"made\n{session.workdir}\n", second
        assert session.read_files() == {"src/a.txt": b"hello\n", "b.txt": b"made\n"}


def test_tmp_and_home_persist_across_commands_too(isolating):
    with isolating.session({}, FAST) as session:
        assert session.exec("echo kept > /tmp/t && echo home > ~/h").ok
        assert session.exec("cat /tmp/t ~/h").stdout == "kept\nhome\n"


def test_environment_and_exit_codes_are_per_command(any_sandbox):
    with any_sandbox.session({}, FAST, env={"SESSION_VAR": "s"}) as session:
        result = session.exec('export LEAK=1; echo "$SESSION_VAR-$CMD_VAR"; exit 7', env={"CMD_VAR": "c"})
        assert result.exit_code == 7 and result.stdout == "s-c\n" and not result.ok
        assert session.exec('echo "[$LEAK][$CMD_VAR]"').stdout == "[][]\n"


def test_a_command_past_its_timeout_is_killed_and_the_session_goes_on(any_sandbox):
    with any_sandbox.session({}, FAST) as session:
        start = time.monotonic()
        result = session.exec("echo before; sleep 100", timeout_s=1.0)
        assert result.timed_out and result.killed_signal == 9 and result.exit_code is None
        assert result.stdout == "before\n" and time.monotonic() - start < 10
        assert session.exec("echo after").stdout == "after\n"


def test_output_is_truncated_as_in_a_run(any_sandbox):
    limits = Limits(timeout_s=10, output_bytes=100)
    with any_sandbox.session({}, limits) as session:
        result = session.exec("head -c 5000 /dev/zero | tr '\\0' a; head -c 300 /dev/zero | tr '\\0' b >&2")
        assert result.stdout == "a" * 100 and result.stdout_truncated
        assert result.stderr == "b" * 100 and result.stderr_truncated


def test_background_processes_die_with_their_command(any_sandbox):
    with any_sandbox.session({}, FAST) as session:
        result = session.exec("sleep 987.25 & echo started")
        assert result.ok and result.stdout == "started\n"
        assert host_processes_with("sleep 987.25") == []


def test_daemons_that_leave_the_session_die_with_their_command(isolating):
    with isolating.session({}, FAST) as session:
        result = session.exec("setsid sh -c 'sleep 987.5' </dev/null >/dev/null 2>&1 & "
                              "(nohup sleep 987.75 </dev/null >/dev/null 2>&1 &) ; echo started")
        assert result.ok, result
        assert host_processes_with("sleep 987.5") == [] and host_processes_with("sleep 987.75") == []
        assert session.exec("echo still here").stdout == "still here\n"


def test_a_command_that_kills_what_runs_it_still_leaves_nothing_behind(isolating):
    """The grandparent of the command's shell is what would sweep after it (docker: the exec's
    wrapper); killing it must not let a background process survive the command."""
    with isolating.session({}, FAST) as session:
        session.exec("sleep 987.875 </dev/null >/dev/null 2>&1 & read -r _ _ _ up _ < /proc/$PPID/stat; "
                     '[ "$up" -gt 1 ] && kill -9 "$up"; sleep 0.2; echo done')
        assert host_processes_with("sleep 987.875") == []
        assert session.exec("echo still here").stdout == "still here\n"


def test_an_oom_killed_child_marks_only_its_own_command(isolating):
    """Three 150 MB children pass RLIMIT_AS (256 MB each) but not the 256 MB cap summed over the
    command (local: the session's cgroup; docker: the container); the command itself exits 0."""
    if isolating.name == "local" and local._cgroup.hierarchy() is None:
        pytest.skip("no memory cgroup here: only the per-process cap applies")
    hog = "python3 -c 'import time; b = bytearray(150 << 20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(3)'"
    with isolating.session({}, Limits(timeout_s=30, memory_mb=256, processes=64, disk_mb=64)) as session:
        result = session.exec(f"for i in 1 2 3; do {hog} & done; wait; echo done")
        assert result.exit_code == 0 and result.stdout == "done\n" and result.memory_exceeded, result
        after = session.exec("echo fine")
        assert after.ok and not after.memory_exceeded


def test_read_files_never_follows_links_and_skips_what_is_not_a_plain_file(any_sandbox):
    with any_sandbox.session({"keep.py": "x = 1\n"}, FAST) as session:
        result = session.exec("ln -s /etc/passwd leak; ln -s / root; mkdir sub; ln -s /etc sub/etc; mkfifo pipe; "
                              "mkdir -p .git/objects && echo ref > .git/HEAD; head -c 2000 /dev/zero > big; "
                              "echo hi > sub/ok.txt")
        assert result.ok, result
        assert session.read_files(max_file_bytes=1000) == {"keep.py": b"x = 1\n", "sub/ok.txt": b"hi\n"}
        assert session.read_files()["big"] == b"\0" * 2000


def test_read_files_skips_what_is_nested_too_deep_and_keeps_the_rest(any_sandbox):
    from hrmcode.sandbox.session import MAX_DEPTH

    deep = "/".join(["d"] * (MAX_DEPTH + 5))
    with any_sandbox.session({}, FAST) as session:
        assert session.exec(f"mkdir -p {deep} && echo lost > {deep}/f && echo kept > d/d/f && echo top > z").ok
        assert session.read_files() == {"d/d/f": b"kept\n", "z": b"top\n"}


def test_write_files_refuses_names_outside_the_work_dir_and_writes_nothing_then(any_sandbox):
    with any_sandbox.session({}, FAST) as session:
        for bad in ("../x", "/etc/x", "a/../../x", ""):
            with pytest.raises(UsageError):
                session.write_files({"fine.txt": "no", bad: "evil"})
        assert session.read_files() == {}


def test_write_files_never_writes_through_a_planted_link(any_sandbox, tmp_path):
    target = tmp_path / "host-file"
    target.write_text("host\n")
    with any_sandbox.session({}, FAST) as session:
        assert session.exec(f"ln -s {target} evil; ln {target} hard 2>/dev/null; mkdir d; ln -s {tmp_path} d/up; "
                            "mkfifo fifo; true").ok
        session.write_files({"evil": "agent\n", "hard": "agent\n", "fifo": "agent\n", "new/dir/file.txt": "made\n"})
        with pytest.raises(SandboxError):
            session.write_files({"d/up/planted": "agent\n"})
        assert target.read_text() == "host\n" and not (tmp_path / "planted").exists()
        files = session.read_files()
        assert files["evil"] == b"agent\n" and files["fifo"] == b"agent\n" and files["new/dir/file.txt"] == b"made\n"
        # what write_files made belongs to the sandbox uid: the commands can change it
        assert session.exec("echo more >> new/dir/file.txt && touch new/dir/other && cat evil").stdout == "agent\n"


def test_close_is_idempotent_and_ends_the_session(any_sandbox):
    session = any_sandbox.session({"a": "1"}, FAST)
    work = session.host_work
    assert work.is_dir()
    session.close()
    session.close()
    assert not work.exists()
    with pytest.raises(SandboxError):
        session.exec("true")
    with pytest.raises(SandboxError):
        session.read_files()


def test_a_backend_without_sessions_says_so():
    class Plain(Sandbox):
        name = "plain"

    with pytest.raises(SandboxError, match="no sessions"):
        Plain().session()


# -- hostile commands: contained, and the session still reports -------------------------------

def _assert_isolated(session, canary: Path) -> None:
    """Refuse to run a destructive command unless the sandbox demonstrably hides the host."""
    probe = session.exec(f"test -e {canary} && echo VISIBLE; id -u")
    assert probe.ok and "VISIBLE" not in probe.stdout and probe.stdout.strip() != "0", probe


def test_deleting_everything_stays_inside(isolating, tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("alive\n")
    with isolating.session({"repo/x.py": "x = 1\n"}, FAST) as session:
        _assert_isolated(session, canary)
        result = session.exec("rm -rf / --no-preserve-root 2>/dev/null; rm -rf ~ /work/.. 2>/dev/null; echo done")
        assert result.stdout == "done\n"
        assert session.exec("echo alive; ls -A").stdout == "alive\n"
        assert canary.read_text() == "alive\n" and (REPO / "pyproject.toml").is_file()


def test_a_fork_bomb_is_contained_and_the_next_command_works(isolating):
    with isolating.session({}, Limits(timeout_s=3, processes=48, memory_mb=512, disk_mb=64, inodes=4096)) as session:
        start = time.monotonic()
        result = session.exec(":(){ :|:& };:; sleep 1; echo bombed")
        assert time.monotonic() - start < 30, result
        assert session.exec("echo works").stdout == "works\n"
        assert host_processes_with(":|:") == []


def test_no_network_outside_the_sandbox(isolating):
    with isolating.session({}, FAST) as session:
        result = session.exec("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\"")
        assert result.exit_code not in (0, None), result
        assert "Error" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the session's disk cap is a tmpfs mounted only as root")
def test_filling_the_disk_fails_inside_the_session_only(isolating):
    limits = Limits(timeout_s=20, processes=64, memory_mb=512, disk_mb=16, inodes=4096)
    with isolating.session({}, limits) as session:
        result = session.exec("head -c 40000000 /dev/zero > big; echo rc=$?")
        assert "rc=0" not in result.stdout and "No space left" in result.stderr, result
        assert session.exec("rm big && echo ok > small && cat small").stdout == "ok\n"
        files = session.exec("for i in $(seq 1 5000); do : > f$i || break; done; echo made $i")
        assert "made 5000" not in files.stdout, files
        with pytest.raises(SandboxError, match="cannot write 'more.txt'"):
            session.write_files({"more.txt": "x"})


def test_host_files_stay_out_of_reach(isolating):
    with isolating.session({}, FAST) as session:
        for command in ("cat /etc/shadow", "ls /root", f"cat {REPO}/pyproject.toml", f"ls {REPO}"):
            result = session.exec(command)
            assert result.exit_code not in (0, None) and result.stdout == "", (command, result)


def test_commands_run_as_the_sessions_unprivileged_uid(isolating):
    with isolating.session({}, FAST) as session:
        uid = session.exec("id -u").stdout.strip()
        assert uid == str(session.uid) and uid != "0"
        assert os.stat(session.host_work).st_uid == (session.uid if os.geteuid() == 0 else os.getuid())


# -- a SIGKILLed owner ---------------------------------------------------------------------------

_OWNER = """
import json, sys
from hrmcode.sandbox import get_sandbox
from hrmcode.sandbox.base import Limits
session = get_sandbox(sys.argv[1]).session({"a": "1"}, Limits(timeout_s=600))
name = getattr(getattr(session, "container", None), "name", None)
print(json.dumps({"root": str(session.run.root), "container": name}), flush=True)
session.exec("sleep 600")
"""


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigkilled_owners_session_is_swept_by_the_next_start(backend, tmp_path, monkeypatch):
    sandbox = real_sandbox(backend)
    monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, backend], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env={**os.environ, "HRMCODE_CACHE": str(tmp_path / "cache")}, text=True)
    try:
        opened = json.loads(proc.stdout.readline() or "{}")
        assert opened, proc.stderr.read() if proc.poll() is not None else "no session opened"
        time.sleep(0.5)  # the `sleep 600` command is running
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    root = Path(opened["root"])
    assert root.exists(), "the killed owner's run dir is expected to outlive it"
    if backend == "docker":
        assert opened["container"] in docker_backend.labelled_containers()
        sandbox = docker_backend.DockerSandbox()  # a new docker sandbox sweeps the container
        assert opened["container"] not in docker_backend.labelled_containers()
    assert sandbox.run(["true"], limits=Limits(timeout_s=30)).ok  # the next run sweeps the run dir
    assert not root.exists()
    assert [m for m in Path("/proc/self/mounts").read_text().splitlines() if str(root) in m] == []
    assert runs.owner_gone(root.name)


@pytest.mark.docker
def test_a_docker_session_whose_container_is_gone_says_so_in_one_line():
    sandbox = real_sandbox("docker")
    session = sandbox.session({}, FAST)
    try:
        session.container.remove(force=True)
        with pytest.raises(SandboxError, match="cannot run commands"):
            session.exec("true")
    finally:
        session.close()


def test_closing_from_another_thread_ends_a_running_command(any_sandbox):
    import threading

    session = any_sandbox.session({}, FAST)
    closer = threading.Timer(0.5, session.close)
    closer.start()
    start = time.monotonic()
    try:
        result = session.exec("sleep 987.625; echo finished", timeout_s=30)
        assert "finished" not in result.stdout and not result.ok
    except SandboxError:
        pass  # the session went away under the command: also an acceptable end
    finally:
        closer.join()
    assert time.monotonic() - start < 15
    assert host_processes_with("sleep 987.625") == [] and not session.host_work.exists()
