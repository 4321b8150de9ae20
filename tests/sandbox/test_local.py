"""The local (bubblewrap) backend and the sandbox protocol: behaviour a caller relies on."""

from __future__ import annotations

import os
import time

import pytest

from hrmcode.errors import InputError, SandboxError, ToolchainMissing, UsageError
from hrmcode.sandbox import get_sandbox, local, run_many, runs
from hrmcode.sandbox.base import Limits


def test_files_in_output_out_and_collect(local_sandbox):
    result = local_sandbox.run(
        ["python3", "-c", "import sys; print(open('pkg/a.txt').read()); sys.stderr.write('err\\n');"
                          "open('out.txt','w').write('made'); sys.exit(3)"],
        {"pkg/a.txt": "hello"}, Limits(timeout_s=10), collect=["out.txt", "missing.txt"])
    assert result.exit_code == 3 and not result.ok
    assert result.stdout == "hello\n" and result.stderr == "err\n"
    assert result.files == {"out.txt": "made"}
    assert not result.timed_out and result.killed_signal is None


def test_string_command_runs_in_sh_and_stdin_is_fed(local_sandbox):
    result = local_sandbox.run("read x; echo got-$x; pwd", stdin="abc\n")
    assert result.stdout.splitlines() == ["got-abc", "/work"]


def test_environment_is_cleared_and_minimal(local_sandbox, monkeypatch):
    monkeypatch.setenv("HRMCODE_SECRET_TOKEN", "s3cret")
    result = local_sandbox.run(["/usr/bin/env"], env={"EXTRA": "1"})
    assert "s3cret" not in result.stdout and "HRMCODE_SECRET_TOKEN" not in result.stdout
    assert "EXTRA=1" in result.stdout and "HOME=/tmp" in result.stdout


def test_collect_does_not_follow_planted_symlinks(local_sandbox):
    result = local_sandbox.run("ln -s /etc/passwd leak; mkdir d; ln -s /etc d/up; echo ok",
                               collect=["leak", "d/up/passwd"], collect_binary=["leak"])
    assert result.stdout == "ok\n"
    assert result.files == {} and result.binary == {}


def test_killed_by_signal_is_reported(local_sandbox):
    result = local_sandbox.run("kill -SEGV $$")
    assert result.exit_code is None and result.killed_signal == 11


def test_output_caps_apply_to_both_streams(local_sandbox):
    result = local_sandbox.run("head -c 5000 /dev/zero; head -c 5000 /dev/zero >&2", limits=Limits(output_bytes=1000))
    assert len(result.stdout) == 1000 and len(result.stderr) == 1000
    assert result.stdout_truncated and result.stderr_truncated


def test_file_size_limit(local_sandbox):
    result = local_sandbox.run(["python3", "-c", "open('big','wb').write(b'x' * (3 << 20))"], limits=Limits(file_size_mb=1))
    assert result.exit_code != 0


def test_bad_file_names_are_refused(local_sandbox):
    for name in ("../escape", "/abs", "a/../../b", "dir/", ""):
        with pytest.raises(InputError):
            local_sandbox.run(["true"], {name: "x"})


def test_parallel_workers_get_distinct_uids(local_sandbox):
    jobs = [lambda worker: local_sandbox.run("sleep 0.3; id -u", worker=worker) for _ in range(4)]
    results = run_many(jobs, n_workers=2)
    assert all(r.ok for r in results)
    if os.geteuid() == 0:
        uids = {int(r.stdout) for r in results}
        assert len(uids) >= 2 and all(uid >= runs.uid_base() for uid in uids)


@pytest.mark.skipif(os.geteuid() != 0, reason="per-worker uids exist only when hrmcode runs as root")
def test_uid_slots_are_exclusive_across_cache_roots(tmp_path, monkeypatch):
    # Two installs with different $HRMCODE_CACHE must not share a uid: a run ends by killing its uid.
    monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path / "first"))
    with runs.uid_slot(0) as first:
        monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path / "second"))
        with runs.uid_slot(0) as second:
            assert first != second


def test_run_many_keeps_input_order():
    seen = []
    results = run_many([lambda w, i=i: i * 10 for i in range(5)], n_workers=3, on_done=lambda i, r: seen.append(i))
    assert results == [0, 10, 20, 30, 40] and sorted(seen) == [0, 1, 2, 3, 4]


def test_missing_bwrap_refuses_unless_unsafe(monkeypatch):
    monkeypatch.setattr(local, "bwrap_path", lambda: None)
    with pytest.raises(ToolchainMissing, match="bubblewrap"):
        get_sandbox("local")
    unsafe = get_sandbox("local", unsafe_no_sandbox=True)
    assert unsafe.name == "unsafe"
    result = unsafe.run(["python3", "-c", "import os; print(os.environ['HRMCODE_SANDBOX'])"], limits=Limits(timeout_s=10))
    assert result.stdout.strip() == "unsafe"
    assert unsafe.run("sleep 5", limits=Limits(timeout_s=0.5)).timed_out


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError):
        get_sandbox("podman")


def test_work_dirs_are_removed_after_the_run(local_sandbox):
    from hrmcode.sandbox import hostpaths

    local_sandbox.run(["true"], {"a": "b"})
    runs = hostpaths.cache_root() / "runs"
    mine = [p for p in runs.iterdir() if p.name.startswith(f"{os.getpid()}-")] if runs.exists() else []
    assert mine == []


def test_nested_namespaces_are_refused(local_sandbox):
    result = local_sandbox.run("unshare -r true && echo NESTED; unshare -n true && echo NET; echo done")
    assert "NESTED" not in result.stdout and "NET" not in result.stdout and "done" in result.stdout


def _bystander(uid: int):
    """A host process running as ``uid`` that hrmcode did not start."""
    import subprocess

    proc = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "60"])
    deadline = time.monotonic() + 5
    while not runs.pids_of(uid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runs.pids_of(uid), "the bystander did not start"
    return proc


@pytest.mark.skipif(os.geteuid() != 0, reason="per-worker uids exist only when hrmcode runs as root")
def test_a_host_process_running_as_a_sandbox_uid_is_left_alone(local_sandbox, monkeypatch):
    monkeypatch.setenv("HRMCODE_SANDBOX_UID_BASE", "3100000")  # a range no concurrent test run uses
    worker = 5
    foreign_uid = runs.uid_base() + worker  # the uid this worker's run would take first
    bystander = _bystander(foreign_uid)
    try:
        assert runs.unusable_uids() == [foreign_uid]
        results = [local_sandbox.run("id -u", worker=worker) for _ in range(3)]
        assert all(r.ok for r in results)
        assert foreign_uid not in {int(r.stdout) for r in results}
        assert bystander.poll() is None, "the sandbox killed a process it did not start"
        # one that starts as a uid while a run holds it is not the run's either
        with runs.uid_slot(7) as held:
            late = _bystander(held)
        assert late.poll() is None, "releasing a uid killed a process no sandbox started"
        late.kill()
        late.wait()
    finally:
        bystander.kill()
        bystander.wait()


def test_account_and_subordinate_uids_are_never_sandbox_uids(tmp_path):
    passwd, subuid = tmp_path / "passwd", tmp_path / "subuid"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nsvc:x:2000003:2000003::/:/bin/false\nbroken line\n")
    subuid.write_text("alice:2000010:5\n#comment\n")
    is_account = runs.account_uids(passwd, subuid)
    assert [uid for uid in range(2_000_000, 2_000_020) if is_account(uid)] == [2000003, *range(2000010, 2000015)]
    assert not runs.account_uids(tmp_path / "none", tmp_path / "none")(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="per-worker uids exist only when hrmcode runs as root")
def test_no_usable_uid_is_a_one_line_sandbox_error(monkeypatch):
    monkeypatch.setattr(runs, "account_uids", lambda: lambda uid: True)
    with pytest.raises(SandboxError, match="no free sandbox uid") as caught:
        with runs.uid_slot(0):
            pass
    assert "HRMCODE_SANDBOX_UID_BASE" in caught.value.hint


def test_network_is_loopback_or_host():
    assert Limits().network == "loopback"
    for wrong in (True, "none", "bridge"):
        with pytest.raises(UsageError, match="network"):
            Limits(network=wrong)


def test_cgroup_v2_is_preferred_when_its_memory_controller_can_be_delegated(tmp_path):
    from hrmcode.sandbox import _cgroup

    if os.geteuid() != 0:
        pytest.skip("cgroups are only tried as root")
    v2, v1 = tmp_path / "unified", tmp_path / "memory"
    own2, own1 = v2 / "svc", v1 / "svc"
    for directory in (own2 / _cgroup.SUBDIR, own1):
        directory.mkdir(parents=True)
    (own2 / "cgroup.controllers").write_text("cpu memory pids\n")
    (own2 / "cgroup.subtree_control").write_text("memory\n")
    (own2 / _cgroup.SUBDIR / "cgroup.subtree_control").write_text("memory\n")
    mounts, cgroup = tmp_path / "mounts", tmp_path / "cgroup"
    mounts.write_text(f"cgroup {v1} cgroup rw,memory 0 0\ncgroup2 {v2} cgroup2 rw 0 0\n")
    cgroup.write_text("4:memory:/svc\n0::/svc\n")
    found = _cgroup.find_hierarchy(mounts, cgroup)
    assert found == _cgroup.Hierarchy(2, own2 / _cgroup.SUBDIR)
    run = _cgroup.RunCgroup(found, "123-456-abc", 512)
    assert (run.path / "memory.max").read_text() == str(512 << 20)
    assert run.join_argv(["bwrap"])[-2:] == [str(run.path / "cgroup.procs"), "bwrap"]
    (run.path / "memory.events").write_text("low 0\noom 1\noom_kill 2\n")
    assert run.oom_kills() == 2
    # without a delegable memory controller in v2, v1 is taken; with neither, None (RLIMIT_AS)
    (own2 / "cgroup.controllers").write_text("cpu pids\n")
    assert _cgroup.find_hierarchy(mounts, cgroup) is None  # the fake v1 dir has no memory.limit_in_bytes
    (own1 / _cgroup.SUBDIR).mkdir(exist_ok=True)
    (own1 / _cgroup.SUBDIR / "memory.limit_in_bytes").write_text("0")
    assert _cgroup.find_hierarchy(mounts, cgroup) == _cgroup.Hierarchy(1, own1 / _cgroup.SUBDIR)
