"""``hrmcode sandbox ...`` commands: exit codes, stdout/stderr split, --json records."""

from __future__ import annotations

import ast
import json
import socket

import pytest

from hrmcode.sandbox import local

pytestmark = pytest.mark.skipif(local.bwrap_path() is None, reason="bubblewrap not installed")


def test_run_passes_output_through_and_exits_zero(cli):
    result = cli("sandbox", "run", "--", "python3", "-c", "print('out'); import sys; sys.stderr.write('err')")
    assert result.exit_code == 0
    assert result.stdout == "out\n"
    assert "err" in result.stderr and "exit 0" in result.stderr


def test_run_failure_exits_one_and_json_has_the_record(cli):
    result = cli("--json", "sandbox", "run", "--", "sh", "-c", "echo x; exit 7")
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["exit_code"] == 7 and record["stdout"] == "x\n" and record["backend"] == "local"


def test_run_timeout_exits_one(cli):
    result = cli("--json", "sandbox", "run", "--timeout", "0.5", "--", "sleep", "10")
    assert result.exit_code == 1 and json.loads(result.stdout)["timed_out"] is True


def test_run_copies_a_directory_in(cli, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.txt").write_text("payload")
    result = cli("sandbox", "run", "--files", str(tmp_path), "--", "cat", "sub/data.txt")
    assert result.exit_code == 0 and result.stdout == "payload\n"


def test_run_unknown_backend_is_usage_error(cli):
    result = cli("sandbox", "run", "--backend", "podman", "--", "true")
    assert result.exit_code == 2 and "unknown sandbox backend" in result.stderr


def test_test_command_runs_an_exercise_dir(cli, tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    return 1\n")
    (tmp_path / "m_test.py").write_text("from m import f\n\ndef test_f():\n    assert f() == 2\n")
    result = cli("sandbox", "test", str(tmp_path), "--language", "python")
    assert result.exit_code == 1 and "FAILED" in result.stderr and "assert 1 == 2" in result.stdout
    (tmp_path / "m.py").write_text("def f():\n    return 2\n")
    assert cli("sandbox", "test", str(tmp_path), "--language", "python").exit_code == 0
    bad = cli("sandbox", "test", str(tmp_path), "--language", "cobol")
    assert bad.exit_code == 2


def test_doctor_json_lists_every_toolchain(cli):
    result = cli("--json", "sandbox", "doctor")
    rows = json.loads(result.stdout)
    components = {row["component"] for row in rows}
    assert {f"toolchain {lang}" for lang in ("python", "go", "rust", "java", "javascript", "cpp")} <= components
    assert all(row["fix"] for row in rows if row["status"] != "ok")
    assert result.exit_code == (1 if any(r["status"] != "ok" and r["component"].startswith("toolchain") for r in rows) else 0)


def test_run_record_and_doctor_say_which_memory_cap_applied(cli):
    from hrmcode.sandbox import _cgroup

    record = json.loads(cli("--json", "sandbox", "run", "--", "true").stdout)
    assert record["memory_cap"] == _cgroup.describe()
    rows = {row["component"]: row for row in json.loads(cli("--json", "sandbox", "doctor").stdout)}
    assert rows["memory cap"]["detail"] == _cgroup.describe()
    assert rows["memory cap"]["status"] == ("ok" if _cgroup.hierarchy() is not None else "missing")


def test_run_network_flag_is_the_hosts_network_and_default_is_loopback_only(cli):
    code = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
    private = cli("sandbox", "run", "--", "python3", "-c", code)
    assert private.exit_code == 0 and private.stdout == "['lo']\n"
    host = cli("sandbox", "run", "--network", "--", "python3", "-c", code)
    assert host.exit_code == 0
    assert ast.literal_eval(host.stdout) == sorted(n for _, n in socket.if_nameindex())  # the host's own list
