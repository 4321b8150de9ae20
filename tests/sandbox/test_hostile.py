"""Hostile programs, each run on every backend: each must be contained and leave nothing behind.

"Contained" is checked from the host side too: after every run no process of the sandbox's uid
(local) or labelled container (docker) may remain, and files it tried to create outside its work
dir must not exist.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hrmcode.sandbox.base import Limits

REPO = Path(__file__).resolve().parents[2]


def survivors(sandbox, uid: int | None) -> list[str]:
    """Processes the run left on the host: by uid (local) or labelled containers (docker)."""
    if sandbox.name == "docker":
        from hrmcode.sandbox import docker_backend

        return docker_backend.labelled_containers(owner_pid=os.getpid())  # other processes' runs may be live
    if uid is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()!r}")
            except OSError:
                pass
    return found


def run_py(sandbox, code: str, **limit_kwargs):
    limits = Limits(**{"timeout_s": 5.0, **limit_kwargs})
    result = sandbox.run(["python3", "-c", code], limits=limits)
    return result


def uid_of(result) -> int | None:
    for line in result.stdout.splitlines():
        if line.startswith("UID="):
            return int(line[4:])
    return None


def test_fork_bomb_is_contained(sandbox):
    code = ("import os,time\nprint(f'UID={os.getuid()}', flush=True)\nn=0\nend=time.time()+30\n"
            "while time.time()<end:\n    try:\n        os.fork(); n+=1\n    except OSError:\n        time.sleep(0.001)\n")
    start = time.monotonic()
    result = run_py(sandbox, code, timeout_s=3.0, processes=64)
    assert result.timed_out and result.killed_signal == 9
    assert time.monotonic() - start < 15
    assert survivors(sandbox, uid_of(result)) == []


def test_memory_bomb_is_refused(sandbox):
    result = run_py(sandbox, "x = bytearray(8 << 30)\nprint('allocated')", memory_mb=512)
    assert result.exit_code not in (0, None) or result.killed_signal is not None
    assert "allocated" not in result.stdout
    assert result.memory_exceeded


def test_infinite_loop_times_out(sandbox):
    result = run_py(sandbox, "import os\nprint(f'UID={os.getuid()}', flush=True)\nwhile True: pass", timeout_s=1.5)
    assert result.timed_out and result.exit_code is None and result.killed_signal == 9
    assert 1.4 < result.wall_s < 6
    assert survivors(sandbox, uid_of(result)) == []


def test_cpu_spin_in_many_threads_is_killed_at_the_deadline(sandbox):
    code = ("import os, multiprocessing as mp\nprint(f'UID={os.getuid()}', flush=True)\n"
            "def spin():\n    while True: pass\n"
            "ps=[mp.Process(target=spin) for _ in range(16)]\n[p.start() for p in ps]\n[p.join() for p in ps]\n")
    result = run_py(sandbox, code, timeout_s=2.0)
    assert result.timed_out
    assert result.wall_s < 8
    assert survivors(sandbox, uid_of(result)) == []


def test_disk_fill_stops_at_the_quota(sandbox):
    code = ("import os\nblock=b'x'*(1<<20)\nwritten=0\n"
            "try:\n    for i in range(100000):\n        with open(f'fill{i}','wb') as f:\n"
            "            for _ in range(16):\n                f.write(block); written+=1\n"
            "except OSError as e:\n    print('stopped', e.errno, flush=True)\nprint('MB', written)\n")
    result = run_py(sandbox, code, timeout_s=20.0, disk_mb=64, file_size_mb=16)
    assert "stopped" in result.stdout, result.stderr
    written = int(result.stdout.split("MB")[-1])
    assert written <= 64 + 16


def test_huge_stdout_is_truncated(sandbox):
    code = "import sys\nchunk='y'*(1<<16)+'\\n'\nfor _ in range(1600): sys.stdout.write(chunk)\n"
    result = run_py(sandbox, code, timeout_s=20.0, output_bytes=1 << 20)
    assert result.stdout_truncated
    assert len(result.stdout.encode()) <= 1 << 20
    assert not result.stderr_truncated


def test_network_is_unreachable(sandbox):
    code = ("import socket\nfor host, port in (('1.1.1.1', 53), ('8.8.8.8', 443), ('93.184.215.14', 80)):\n"
            "    s=socket.socket(); s.settimeout(2)\n"
            "    try:\n        s.connect((host, port)); print('CONNECTED', host)\n"
            "    except OSError as e:\n        print('blocked', host, e.errno)\n"
            "try:\n    print('RESOLVED', socket.getaddrinfo('pypi.org', 443)[0][4])\n"
            "except OSError as e:\n    print('dns failed', e)\n")
    result = run_py(sandbox, code, timeout_s=15.0)
    assert result.exit_code == 0, result.stderr
    assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout
    assert result.stdout.count("blocked") == 3 and "dns failed" in result.stdout


def test_host_files_are_invisible(sandbox):
    targets = ["/etc/shadow", "/root", "/home", str(REPO), str(REPO / "pyproject.toml"), "/var/run/docker.sock"]
    code = ("import os\n"
            f"for path in {targets!r}:\n"
            "    try:\n"
            "        if os.path.isdir(path): print('LISTED', path, os.listdir(path))\n"
            "        else: print('READ', path, len(open(path,'rb').read()))\n"
            "    except OSError as e:\n        print('denied', path, e.errno)\n")
    result = run_py(sandbox, code)
    assert result.exit_code == 0, result.stderr
    leaked = [line for line in result.stdout.splitlines()
              if line.startswith(("READ", "LISTED")) and not line.endswith("[]")]
    assert leaked == []


def test_writes_outside_the_work_dir_fail(sandbox, tmp_path):
    marker = f"hrmcode-hostile-{os.getpid()}"
    targets = [f"/usr/{marker}", f"/etc/{marker}", f"/{marker}", f"/opt/hrmcode/{marker}", f"/usr/bin/{marker}"]
    code = ("import os\n"
            f"for path in {targets!r}:\n"
            "    try:\n        open(path,'w').write('x'); print('WROTE', path)\n"
            "    except OSError as e:\n        print('denied', path, e.errno)\n")
    result = run_py(sandbox, code)
    assert "WROTE /usr" not in result.stdout and "WROTE /opt" not in result.stdout
    # Whatever the sandbox's own (private, throwaway) root allowed, nothing reached the host.
    for path in targets:
        assert not Path(path).exists()


def test_signalling_the_parent_does_not_escape(sandbox):
    """kill(parent), kill(1) and kill(-1) reach at most the run's own processes."""
    parent_of_tests = os.getppid()
    code = ("import os, signal\nprint(f'UID={os.getuid()}', flush=True)\n"
            "for pid in (os.getppid(), 1, -1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL); print('signalled', pid, flush=True)\n"
            "    except OSError as e:\n        print('denied', pid, e.errno, flush=True)\n"
            "print('still here')\n")
    result = run_py(sandbox, code)
    assert "UID=" in result.stdout and not result.timed_out and result.wall_s < 5
    os.kill(parent_of_tests, 0)  # the test runner's parent is alive (raises if not)
    assert os.getppid() == parent_of_tests
    assert survivors(sandbox, uid_of(result)) == []


def test_double_forked_daemon_does_not_outlive_the_run(sandbox):
    code = ("import os, time\nprint(f'UID={os.getuid()}', flush=True)\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        os.closerange(0, 3)\n        time.sleep(60)\n    os._exit(0)\n"
            "time.sleep(0.3)\nprint('parent done')\n")
    result = run_py(sandbox, code)
    assert result.exit_code == 0 and "parent done" in result.stdout, result.stderr
    assert result.wall_s < 20  # returned long before the daemon's 60 s sleep (slack for a loaded host)
    time.sleep(0.2)
    assert survivors(sandbox, uid_of(result)) == []


def test_setuid_attempts_fail(sandbox):
    code = ("import os, subprocess\n"
            "try:\n    os.setuid(0); print('BECAME ROOT')\nexcept OSError as e:\n    print('setuid denied', e.errno)\n"
            "for argv in (['su', '-c', 'id -u'], ['mount', '-t', 'tmpfs', 'x', '/tmp'], ['chroot', '/', 'true'],"
            " ['unshare', '-r', 'id']):\n"
            "    try:\n        p=subprocess.run(argv, capture_output=True, text=True, timeout=5)\n"
            "        print(argv[0], 'rc', p.returncode, p.stdout.strip())\n"
            "    except (OSError, subprocess.TimeoutExpired) as e:\n        print(argv[0], 'failed', e)\n"
            "print('euid', os.geteuid(), 'caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n")
    result = run_py(sandbox, code)
    assert "BECAME ROOT" not in result.stdout
    for tool in ("su", "mount", "chroot", "unshare"):
        assert f"{tool} rc 0" not in result.stdout
    assert "caps 0000000000000000" in result.stdout
    assert "euid 0 " not in result.stdout



SIX_CHILDREN_OF_400_MB = (
    "import os, time\nkids = []\n"
    "for i in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
    "        block = bytearray(400 << 20)\n"
    "        for j in range(0, len(block), 4096): block[j] = 1\n"  # touched: resident, not just reserved
    "        print('held', i, flush=True)\n        time.sleep(2)\n        os._exit(0)\n"
    "    kids.append(pid)\n"
    "print('statuses', [os.waitpid(pid, 0)[1] for pid in kids], flush=True)\n")


def test_memory_is_capped_over_all_processes_of_the_run(sandbox):
    from hrmcode.sandbox import _cgroup

    if sandbox.name == "local" and _cgroup.hierarchy() is None:
        pytest.skip(f"no memory cgroup here: {_cgroup.FALLBACK}")
    result = run_py(sandbox, SIX_CHILDREN_OF_400_MB, timeout_s=30.0, memory_mb=512)
    assert result.memory_exceeded and not result.ok, (result.stdout, result.stderr)
    assert result.stdout.count("held") <= 1  # 6 x 400 MB under a 512 MB cap: at most one at a time
    assert "whole" in result.memory_cap


def test_a_million_file_bomb_stops_at_the_inode_cap(sandbox):
    if os.geteuid() != 0:
        pytest.skip("the per-run tmpfs (and its inode cap) exists only when hrmcode runs as root")
    code = ("import os, time\nstart = time.monotonic()\nmade = 0\n"
            "try:\n    for made in range(1_000_000):\n        open(f'f{made}', 'w').close()\n"
            "except OSError as e:\n    print('stopped', e.errno, flush=True)\n"
            "print('made', made, 'in', round(time.monotonic() - start, 1))\n")
    result = run_py(sandbox, code, timeout_s=60.0)
    assert "stopped 28" in result.stdout, (result.stdout, result.stderr)  # ENOSPC: out of inodes
    made = int(result.stdout.split("made ")[1].split()[0])
    assert made < Limits().inodes
    assert result.wall_s < 30


def test_loopback_servers_work_and_nothing_outside_is_reachable(sandbox):
    import socket

    host_server = socket.socket()  # a service on the HOST's 127.0.0.1: the sandbox must not reach it
    host_server.bind(("127.0.0.1", 0))
    host_server.listen()
    host_port = host_server.getsockname()[1]
    code = ("import socket, threading\n"
            "print('interfaces', sorted(name for _, name in socket.if_nameindex()), flush=True)\n"
            "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()\n"
            "def answer():\n    conn, _ = server.accept(); conn.sendall(conn.recv(100).upper()); conn.close()\n"
            "threading.Thread(target=answer).start()\n"
            "client = socket.create_connection(server.getsockname(), timeout=5); client.sendall(b'ping')\n"
            "print('loopback', client.recv(100).decode(), flush=True)\n"
            f"for host, port in (('169.254.169.254', 80), ('1.1.1.1', 53), ('127.0.0.1', {host_port})):\n"
            "    s = socket.socket(); s.settimeout(2)\n"
            "    try:\n        s.connect((host, port)); print('CONNECTED', host, flush=True)\n"
            "    except OSError as e:\n        print('blocked', host, e.errno, flush=True)\n")
    try:
        result = run_py(sandbox, code, timeout_s=20.0)
    finally:
        host_server.close()
    assert result.exit_code == 0, result.stderr
    assert "interfaces ['lo']" in result.stdout and "loopback PING" in result.stdout
    assert "CONNECTED" not in result.stdout and result.stdout.count("blocked") == 3
