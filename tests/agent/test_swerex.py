"""The agent on SWE-ReX deployments (``hrmcode.agent.swerex``): a scripted agent edits, runs and
submits; files round-trip without following planted links; timeouts, output caps, leftovers.

``local-unsafe`` (SWE-ReX's LocalDeployment) runs everywhere; ``bwrap`` (swerex-remote in
hrmcode's bubblewrap profile, reached over loopback) where bubblewrap is installed; ``docker`` on the
image ``swerex_image()`` builds offline, where a Docker engine runs (HRMCODE_REQUIRE_DOCKER=1 makes
its absence fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hrmcode.agent.grading import grade, model_patch
from hrmcode.agent.loop import AgentLimits, PolicyReply, run_agent
from hrmcode.agent.protocol import SUBMIT_SENTINEL
from hrmcode.agent.swerex import (SPEC_FORMS, TOKEN_ENV, SwerexSpec, _DockerStarter, _free_port, is_swerex_spec,
                                  open_swerex_session, parse_spec)
from hrmcode.errors import SandboxError, UsageError
from hrmcode.sandbox import docker_backend, local
from hrmcode.sandbox.base import Limits
from tests._sandboxes import real_sandbox
from tests.agent.fake_server import correct_script, wrong_script

DEPLOYMENTS = ["local-unsafe", "remote", "bwrap", pytest.param("docker", marks=pytest.mark.docker)]
ISOLATED = ["bwrap", pytest.param("docker", marks=pytest.mark.docker)]  # they own their PID namespace

CALC = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\nassert add(2, 3) == 5, add(2, 3)\nprint('ok')\n"


@pytest.fixture(scope="session")
def docker_image():
    reason = docker_backend.unavailable_reason()
    if reason is not None:
        if os.environ.get("HRMCODE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"docker required (HRMCODE_REQUIRE_DOCKER=1) but unavailable: {reason}")
        pytest.skip(f"docker unavailable: {reason}")
    from hrmcode.agent.swerex import swerex_image

    return swerex_image()


@pytest.fixture(scope="module")
def remote_server():
    """An unsandboxed swerex-remote on 127.0.0.1 (this venv's), as someone else would start one: (url, token)."""
    token, port = "test-token-" + os.urandom(8).hex(), _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "swerex-remote"), "--host", "127.0.0.1", "--port",
                               str(port), "--auth-token", token], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            request = urllib.request.Request(f"{url}/is_alive", headers={"X-API-Key": token})
            with urllib.request.urlopen(request, timeout=1):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"swerex-remote did not start: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.1)
    yield url, token
    server.kill()
    server.wait()
    server.stderr.close()


@pytest.fixture
def spec(request, monkeypatch):
    """The deployment's spec, skipping when it cannot run here."""
    kind = request.param
    if kind == "bwrap" and local.bwrap_path() is None:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")
    if kind == "docker":
        return f"swerex:docker:{request.getfixturevalue('docker_image')}"
    if kind == "remote":
        url, token = request.getfixturevalue("remote_server")
        monkeypatch.setenv(TOKEN_ENV, token)
        return f"swerex:remote:{url}"
    return f"swerex:{kind}"


def open_session(spec, files=None, **limits):
    return open_swerex_session(spec, files or {}, Limits(**{"timeout_s": 20.0, **limits}))


class Scripted:
    name = "scripted"

    def __init__(self, *replies: str):
        self.replies = list(replies)

    def act(self, messages):
        return PolicyReply(text=self.replies.pop(0))


def bash(command: str) -> str:
    return f"THOUGHT: next.\n\n```bash\n{command}\n```\n"


FIX = ("I fix the sign.\n\ncalc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
       ">>>>>>> REPLACE\n```\n")


def test_specs():
    assert parse_spec("swerex:docker").kind == "docker" and parse_spec("swerex:docker").target == ""
    assert parse_spec("swerex:docker:hrmcode-swerex:abc").target == "hrmcode-swerex:abc"
    assert parse_spec("swerex:remote:http://10.0.0.2:8000").target == "http://10.0.0.2:8000"
    assert parse_spec("swerex:bwrap").kind == "bwrap" and parse_spec("swerex:local-unsafe").kind == "local-unsafe"
    assert is_swerex_spec("swerex:bwrap") and not is_swerex_spec("local")
    for bad in ("swerex:", "swerex:modal", "swerex:remote:10.0.0.2", "swerex:bwrap:x", "docker"):
        with pytest.raises(UsageError) as caught:
            parse_spec(bad)
        assert all(form in caught.value.hint for form in SPEC_FORMS)


def test_remote_without_token_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("HRMCODE_SWEREX_TOKEN", raising=False)
    with pytest.raises(UsageError, match="token"):
        open_swerex_session("swerex:remote:http://127.0.0.1:9")


def test_unreachable_remote_is_a_sandbox_error(monkeypatch):
    monkeypatch.setenv("HRMCODE_SWEREX_TOKEN", "t")
    with pytest.raises(SandboxError, match="did not start|Cannot connect|onnect"):
        open_swerex_session("swerex:remote:http://127.0.0.1:9")


@pytest.mark.parametrize("spec", DEPLOYMENTS, indirect=True)
def test_scripted_agent_edits_runs_and_submits(spec):
    policy = Scripted(bash("grep -n 'return' calc.py"), FIX, bash("python3 test_calc.py"), bash(SUBMIT_SENTINEL))
    with open_session(spec, {"calc.py": CALC, "test_calc.py": TEST}) as session:
        trajectory = run_agent("add() subtracts", session, policy, AgentLimits(command_timeout_s=30))
        final = session.read_files()
    assert trajectory.exit_status == "submitted", trajectory.error
    grep, edit, test = trajectory.steps[:3]
    assert "2:    return a - b" in grep.observation and grep.exit_code == 0
    assert edit.state["files_modified"] == ["calc.py"]
    assert "ok" in test.observation and test.exit_code == 0
    assert final == {"calc.py": b"def add(a, b):\n    return a + b\n", "test_calc.py": TEST.encode()}


@pytest.mark.parametrize("spec", ISOLATED, indirect=True)
def test_demo_tasks_resolve_exactly_when_the_script_is_correct(spec, demo_task_set):
    """Tasks made from the demo repository: the fake server's realistic trajectories (search, read,
    run the tests, edit, diff, submit) played on SWE-ReX, the model patch taken from the session's
    files and graded in a fresh hrmcode sandbox."""
    grader = real_sandbox("local")
    right, wrong = demo_task_set.tasks[:2]
    for task, script, resolved in ((right, correct_script(right), True), (wrong, wrong_script(wrong), False)):
        policy = Scripted(*(step.reply for step in script))
        with open_session(spec, task.files) as session:
            trajectory = run_agent(task.problem, session, policy, AgentLimits(command_timeout_s=60))
            patch, _ = model_patch(task.files, session.read_files())
        assert trajectory.exit_status == "submitted", (task.id, trajectory.error)
        assert patch.strip(), task.id
        graded = grade(task, patch, grader, timeout_s=120)
        assert graded.resolved is resolved, (task.id, graded)


@pytest.mark.parametrize("spec", DEPLOYMENTS, indirect=True)
def test_files_round_trip_without_following_links(spec, tmp_path):
    secret = tmp_path / "secret.txt"  # on this host: only local-unsafe could see it at all
    secret.write_text("host secret")
    files = {"pkg/mod.py": "x = 1\n", "bin/run.sh": "#!/bin/sh\necho ran\n", "data.bin": bytes(range(256)),
             "deep/" * 20 + "leaf.txt": "deep"}
    with open_session(spec, files) as session:
        assert session.read_files() == {name: data if isinstance(data, bytes) else data.encode()
                                        for name, data in files.items()}
        assert session.exec("bin/run.sh").stdout == "ran\n"  # a #! file is executable
        plant = session.exec(f"ln -s {secret} link.txt && ln -s / rootlink && ln -s /etc etcdir && mkfifo fifo"
                             " && ln data.bin hard.bin && mkdir -p .git sub/.git && echo g > .git/config"
                             " && echo s > sub/.git/HEAD && echo g > .gitignore && head -c 5000 /dev/zero > big")
        assert plant.exit_code == 0, plant.stderr
        seen = session.read_files(max_file_bytes=4096)
        assert set(seen) == set(files) | {"hard.bin", ".gitignore"}
        assert seen["hard.bin"] == bytes(range(256))
        assert "big" in session.read_files(max_file_bytes=5000)
        with pytest.raises(SandboxError, match="etcdir"):
            session.write_files({"etcdir/passwd": "pwned"})
        session.write_files({"link.txt": "replaced", "pkg/mod.py": "x = 2\n", "new/dir/f.txt": "new"})
        after = session.read_files()
        assert after["link.txt"] == b"replaced" and after["pkg/mod.py"] == b"x = 2\n"
        assert after["new/dir/f.txt"] == b"new"
        assert session.exec("test -L link.txt || echo regular").stdout == "regular\n"
        for bad in ("../escape.txt", "/abs.txt", ""):
            with pytest.raises(UsageError):
                session.write_files({bad: "x"})
    assert secret.read_text() == "host secret"


@pytest.mark.parametrize("spec", DEPLOYMENTS, indirect=True)
def test_exec_results_timeouts_and_output_cap(spec):
    with open_session(spec, output_bytes=1000, timeout_s=5.0) as session:
        result = session.exec("echo out; echo err >&2; exit 7")
        assert (result.exit_code, result.stdout, result.stderr, result.timed_out) == (7, "out\n", "err\n", False)
        assert session.exec("pwd").stdout.strip() == session.workdir
        assert session.exec('echo "$GREETING"', env={"GREETING": "hi there"}).stdout == "hi there\n"
        slow = session.exec("echo started; sleep 60", timeout_s=1.0)
        assert slow.timed_out and slow.exit_code is None and slow.killed_signal == 9
        assert slow.wall_s < 8, slow.wall_s
        flood = session.exec("yes | head -c 100000; yes e | head -c 5000 >&2")
        assert flood.exit_code == 0 and flood.stdout_truncated and flood.stderr_truncated
        assert len(flood.stdout) == 1000 and len(flood.stderr) == 1000
        noisy = session.exec("timeout 2 yes")  # output goes on being drained, not the writer cut off
        assert noisy.exit_code == 124 and noisy.stdout_truncated
        killed = session.exec("kill -9 $$")
        assert killed.exit_code is None and killed.killed_signal == 9 and not killed.timed_out
        assert session.exec("true").exit_code == 0  # and the session goes on


@pytest.mark.parametrize("spec", ISOLATED, indirect=True)
def test_no_process_outlives_its_command(spec):
    with open_session(spec) as session:
        start = session.exec("sleep 300 & (setsid sleep 301 &) ; nohup sleep 302 >/dev/null 2>&1 & echo started")
        assert start.stdout == "started\n" and start.wall_s < 10
        left = session.exec("for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done")
        assert "sleep 30" not in left.stdout, left.stdout
        # A command that kills its own wrapper still leaves nothing behind.
        session.exec("(setsid sleep 303 &); kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)", timeout_s=2.0)
        left = session.exec("for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done")
        assert "sleep 303" not in left.stdout, left.stdout


@pytest.mark.parametrize("spec", ISOLATED, indirect=True)
def test_hostile_commands_are_contained(spec):
    with open_session(spec, {"a.py": "a"}, processes=64) as session:
        bomb = session.exec("bomb() { bomb | bomb & }; bomb", timeout_s=5.0)
        assert bomb.wall_s < 15
        assert session.exec("echo alive").stdout == "alive\n"
        session.exec("rm -rf / /work 2>/dev/null; rm -rf ./* ./.[!.]* 2>/dev/null")
        assert session.read_files() == {}
        session.write_files({"b.py": "b"})
        assert session.read_files() == {"b.py": b"b"}
        # the command's parent is `timeout`, whose parent is the wrapper, whose parent is the server
        server = "$(cut -d' ' -f4 /proc/$(cut -d' ' -f4 /proc/$PPID/stat)/stat)"
        with pytest.raises(SandboxError, match="SWE-ReX runtime failed"):
            session.exec(f"kill -9 {server}")
    assert session.closed


@pytest.mark.parametrize("spec", ISOLATED, indirect=True)
def test_isolated_profile(spec):
    with open_session(spec) as session:
        assert session.exec("id -u").stdout.strip() != "0"
        assert session.exec("touch /usr/hrmcode-probe").exit_code != 0
        assert session.exec("cat /etc/shadow").exit_code != 0
        assert session.exec("echo hi > /tmp/x && cat /tmp/x").stdout == "hi\n"
        assert session.exec("env | grep -c HRMCODE_SWEREX_TOKEN || true").stdout.strip() == "0"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_cli_accepts_the_deployment_arguments():
    """Without an engine, the CLI still parses every flag and value before it fails to connect."""
    deployment = _DockerStarter(SwerexSpec("docker", "hrmcode-swerex:probe"), Limits(memory_mb=512), 0).deployment()
    config = deployment._config
    assert config.pull == "never" and config.image == "hrmcode-swerex:probe"
    for flag in ("--read-only", "--init", "--memory", "--pids-limit", "--cap-drop", "--label"):
        assert flag in config.docker_args
    probe = subprocess.run(["docker", "run", "--rm", "--pull", "never", "-p", "1:8000", *config.docker_args,
                            "--name", "probe", config.image, "true"], capture_output=True, text=True, timeout=60)
    assert "unknown flag" not in probe.stderr and "invalid argument" not in probe.stderr, probe.stderr
    assert probe.returncode == 0 or "daemon" in probe.stderr.lower() or "No such image" in probe.stderr


def test_close_is_idempotent_and_final():
    session = open_session("swerex:local-unsafe", {"a.txt": "a"})
    workdir = session.workdir
    assert os.path.isdir(workdir)
    session.close()
    session.close()
    assert not os.path.exists(workdir)
    for call in (lambda: session.exec("true"), session.read_files, lambda: session.write_files({"b": "b"})):
        with pytest.raises(SandboxError, match="closed"):
            call()
