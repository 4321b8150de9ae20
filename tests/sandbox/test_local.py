"""The local (bubblewrap) backend and the sandbox protocol: behaviour a caller relies on."""

from __future__ import annotations

import os

import pytest

from hrmcode.errors import InputError, ToolchainMissing, UsageError
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
