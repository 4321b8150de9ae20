"""Fault injection on the artifact contract: nothing a user had is lost, nothing half-written is
taken for finished, and every failure is one line that names the path and the cause.

Faults: ``-o`` over a user's files, edited data files and manifests, a full disk (a 1 MiB tmpfs),
a read-only directory (a read-only tmpfs, or permission bits when not root), ``--workspace``
naming a file, SIGKILL at random points of fetch and analyze, a hostile 200 MB JSONL line, and
bad command-line values. The mount-based tests need root and skip with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrmcode import artifacts
from hrmcode.artifacts import MANIFEST, ArtifactWriter, load_artifact, read_manifest
from hrmcode.errors import ArtifactError, InputError, OutputError, UsageError
from hrmcode.jsonl import MAX_RECORD_BYTES, read_jsonl, write_jsonl

# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def tasks_jsonl(cli, tmp_path) -> Path:
    """A JSONL of 5 valid hrmcode tasks (fetched from the offline HumanEval fixture)."""
    result = cli("fetch", "humaneval", "--limit", "5", "-o", tmp_path / "he")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "he" / "tasks.jsonl"


def _many_tasks(source: Path, path: Path, n: int) -> Path:
    first = json.loads(source.read_text().splitlines()[0])
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps(first | {"id": f"humaneval/copy{i}"}) + "\n")
    return path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def _hrmcode(*args: object, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrmcode", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def _no_leftovers(parent: Path) -> None:
    """No staging directory or manifest-less output is left in ``parent``."""
    leftovers = [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


def _mount_tmpfs(where: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB filesystem: anything bigger fills it."""
    where = tmp_path / "full"
    _mount_tmpfs(where, "size=1m")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory no one can write: a read-only tmpfs as root (root ignores permission bits), else mode 0555."""
    where = tmp_path / "ro"
    if os.geteuid() == 0:
        _mount_tmpfs(where, "size=1m,ro")
        yield where
        subprocess.run(["umount", "-l", str(where)], check=False)
    else:
        where.mkdir()
        where.chmod(0o555)
        yield where
        where.chmod(0o755)


# -- -o never deletes a user's data ---------------------------------------------------------------
def test_out_refuses_a_directory_of_user_files(cli, tasks_jsonl, tmp_path):
    mine = tmp_path / "p"
    mine.mkdir()
    (mine / "important.txt").write_text("keep\n")
    result = cli("fetch", "tasks", "--from", tasks_jsonl, "-o", mine)
    assert result.exit_code == 2
    line = _one_line(result.stderr)
    assert str(mine) in line and "--force" in line and "not an hrmcode artifact" in line
    assert (mine / "important.txt").read_text() == "keep\n" and sorted(os.listdir(mine)) == ["important.txt"]
    _no_leftovers(tmp_path)


def test_out_refuses_a_file(cli, tasks_jsonl, tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("keep\n")
    for command in (["fetch", "tasks", "--from", tasks_jsonl], ["analyze", tasks_jsonl.parent]):
        result = cli(*command, "-o", mine)
        assert result.exit_code == 2 and "is a file" in _one_line(result.stderr)
        assert mine.read_text() == "keep\n"


def test_out_replaces_only_an_earlier_artifact_of_the_same_kind(cli, tasks_jsonl, tmp_path):
    out = tmp_path / "tasks"
    assert cli("fetch", "tasks", "--from", tasks_jsonl, "-o", out).exit_code == 0
    first = read_manifest(out)["created"]
    assert cli("fetch", "tasks", "--from", tasks_jsonl, "-o", out).exit_code == 0  # same kind: replaced
    assert read_manifest(out)["kind"] == "tasks" and read_manifest(out)["created"] >= first
    # analysis over a tasks artifact: another kind, refused
    result = cli("analyze", out, "-o", out)
    assert result.exit_code == 2 and "holds a 'tasks' artifact" in _one_line(result.stderr)
    # a file the manifest does not list: the user's, refused
    (out / "my-notes.md").write_text("mine\n")
    result = cli("fetch", "tasks", "--from", tasks_jsonl, "-o", out)
    assert result.exit_code == 2 and "my-notes.md" in _one_line(result.stderr)
    assert (out / "my-notes.md").read_text() == "mine\n"
    # --force: the user said so
    result = cli("fetch", "tasks", "--from", tasks_jsonl, "-o", out, "--force")
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(out)) == ["manifest.json", "tasks.jsonl"]
    _no_leftovers(tmp_path)


def test_out_may_be_an_empty_directory(cli, tasks_jsonl, tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli("fetch", "tasks", "--from", tasks_jsonl, "-o", tmp_path / "empty").exit_code == 0
    assert load_artifact(tmp_path / "empty", "tasks").file("tasks.jsonl").is_file()


def test_writer_rechecks_at_swap_time(tmp_path):
    """Files put into the output while the step ran are not swept away by the swap."""
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="--force"):
        with ArtifactWriter(out, "tasks", update_latest=False) as writer:
            writer.write_jsonl("tasks.jsonl", [{"id": "x/1"}])
            out.mkdir()
            (out / "arrived.txt").write_text("mine")
            writer.finish()
    assert (out / "arrived.txt").read_text() == "mine"
    _no_leftovers(tmp_path)


def test_replacing_an_artifact_is_one_atomic_exchange(tmp_path, monkeypatch):
    out = tmp_path / "out"
    for ids in (["x/1"], ["x/2"]):
        with ArtifactWriter(out, "tasks", update_latest=False) as writer:
            writer.write_jsonl("tasks.jsonl", [{"id": i} for i in ids])
            writer.finish()
    assert [r["id"] for r in read_jsonl(out / "tasks.jsonl")] == ["x/2"]
    swaps = []
    real = artifacts.atomic.exchange
    monkeypatch.setattr(artifacts.atomic, "exchange", lambda a, b: swaps.append((a, b)) or real(a, b))
    with ArtifactWriter(out, "tasks", update_latest=False) as writer:
        writer.write_jsonl("tasks.jsonl", [{"id": "x/3"}])
        writer.finish()
    assert len(swaps) == 1 and [r["id"] for r in read_jsonl(out / "tasks.jsonl")] == ["x/3"]
    _no_leftovers(tmp_path)


# -- inputs checked against their manifest ---------------------------------------------------------
def test_edited_tasks_file_is_refused(cli, tasks_jsonl, tmp_path):
    out = tmp_path / "tasks"
    assert cli("fetch", "tasks", "--from", tasks_jsonl, "-o", out).exit_code == 0
    data = out / "tasks.jsonl"
    data.write_text(data.read_text().replace('"python"', '"pythoN"', 1))  # same size, other bytes
    result = cli("analyze", out, "-o", tmp_path / "an")
    assert result.exit_code == 1
    assert f"{data} does not match the sha256 its manifest records" in _one_line(result.stderr)
    with data.open("a") as fh:
        fh.write("\n")  # one byte more
    result = cli("analyze", out, "-o", tmp_path / "an")
    assert result.exit_code == 1 and "bytes, its manifest records" in _one_line(result.stderr)
    assert not (tmp_path / "an").exists()


def test_edited_manifest_sha256_is_refused(cli, tasks_jsonl, tmp_path):
    out = tmp_path / "tasks"
    assert cli("fetch", "tasks", "--from", tasks_jsonl, "-o", out).exit_code == 0
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["outputs"][0]["sha256"] = "0" * 64
    (out / MANIFEST).write_text(json.dumps(manifest))
    result = cli("analyze", out, "-o", tmp_path / "an")
    assert result.exit_code == 1 and "does not match the sha256" in _one_line(result.stderr)


def _big_file_artifact(tmp_path: Path, monkeypatch) -> tuple:
    """An artifact whose file counts as big (over HASH_ALWAYS_UP_TO) and a counter of hashes made."""
    monkeypatch.setattr(artifacts, "HASH_ALWAYS_UP_TO", 0)
    with ArtifactWriter(tmp_path / "big", "tasks", update_latest=False) as writer:
        writer.write_jsonl("tasks.jsonl", [{"id": f"x/{i}"} for i in range(100)])
        art = writer.finish()
    hashed = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: hashed.append(p) or real(p))
    artifacts._sha256_of_version.cache_clear()
    return art, hashed


def _stamp_and_expect_a_mismatch(art, hashed, path, later):
    """Give ``path`` the mtime ``later``: loading must hash the big file (once) and find it does not match."""
    os.utime(path, (later, later))
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load_artifact(art.path, "tasks").file("tasks.jsonl")
    assert len(hashed) == 1


def test_big_unchanged_file_is_checked_by_size_only(tmp_path, monkeypatch):
    art, hashed = _big_file_artifact(tmp_path, monkeypatch)
    load_artifact(art.path, "tasks").file("tasks.jsonl")
    assert hashed == []


def test_big_file_is_hashed_when_newer_than_its_manifest(tmp_path, monkeypatch):
    art, hashed = _big_file_artifact(tmp_path, monkeypatch)
    data = art.path / "tasks.jsonl"
    data.write_text(data.read_text().replace("x/1", "y/1", 1))
    _stamp_and_expect_a_mismatch(art, hashed, data, (art.path / MANIFEST).stat().st_mtime + 5)


def test_big_file_is_hashed_when_its_manifest_was_edited_later(tmp_path, monkeypatch):
    art, hashed = _big_file_artifact(tmp_path, monkeypatch)
    manifest_path = art.path / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["outputs"][0]["sha256"] = "f" * 64
    manifest_path.write_text(json.dumps(manifest))
    # edited well after `created`
    _stamp_and_expect_a_mismatch(art, hashed, manifest_path, time.time() + artifacts.MANIFEST_EDIT_SLACK_S + 60)


def test_a_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    art, hashed = _big_file_artifact(tmp_path, monkeypatch)
    monkeypatch.setattr(artifacts, "HASH_ALWAYS_UP_TO", 1 << 30)
    for _ in range(3):
        load_artifact(art.path, "tasks").file("tasks.jsonl")
    assert len(hashed) == 1


def test_model_weights_read_by_path_are_checked_too(tmp_path):
    from hrmcode.errors import CheckpointError
    from hrmcode.quantize import load_any

    with ArtifactWriter(tmp_path / "model", "model", update_latest=False) as writer:
        writer.write_text("model.safetensors", "weights")
        art = writer.finish()
    (art.path / "model.safetensors").write_text("WEIGHTS")
    with pytest.raises(CheckpointError, match="model.safetensors does not match the sha256"):
        load_any(art.path)


# -- full disk, read-only directory, --workspace naming a file -------------------------------------
def test_full_disk_is_one_line_and_leaves_no_manifest(cli, tasks_jsonl, tmp_path, full_disk):
    many = _many_tasks(tasks_jsonl, tmp_path / "many.jsonl", 600)  # ~2 MB of tasks
    result = cli("fetch", "tasks", "--from", many, "-o", full_disk / "out")
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert f"cannot write {full_disk / 'out'}" in line and "No space left on device" in line
    assert list(full_disk.iterdir()) == []  # no manifest, no staging directory
    # and into the workspace: no version is left behind
    result = cli("--workspace", full_disk, "fetch", "tasks", "--from", many)
    assert result.exit_code == 1 and "No space left on device" in _one_line(result.stderr)
    assert not list(full_disk.rglob(MANIFEST)) and not list(full_disk.rglob("*.tmp-*"))
    # the step works once there is room
    assert cli("fetch", "tasks", "--from", tasks_jsonl, "-o", full_disk / "out").exit_code == 0
    assert load_artifact(full_disk / "out", "tasks").file("tasks.jsonl").is_file()


def test_resumable_step_on_a_full_disk_names_its_output(cli, full_disk):
    assert cli("fetch", "humaneval").exit_code == 0
    result = cli("synthesize", "--source", "humaneval", "-o", full_disk / "syn")  # ~2.7 MB of examples
    assert result.exit_code == 1
    line = _one_line([ln for ln in result.stderr.splitlines() if ln.startswith("error: ")][0])
    assert f"cannot write {full_disk / 'syn'}: No space left on device" in line, result.stderr
    assert not list(full_disk.rglob(MANIFEST))


def test_read_only_directory_is_one_line(cli, tasks_jsonl, read_only_dir):
    result = cli("fetch", "tasks", "--from", tasks_jsonl, "-o", read_only_dir / "out")
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert f"cannot write {read_only_dir / 'out'}" in line
    assert "Read-only file system" in line or "Permission denied" in line
    result = cli("--workspace", read_only_dir, "fetch", "tasks", "--from", tasks_jsonl)
    assert result.exit_code == 1 and "cannot write" in _one_line(result.stderr)
    assert list(read_only_dir.iterdir()) == []


def test_workspace_naming_a_file_is_a_usage_error(cli, tasks_jsonl, tmp_path):
    afile = tmp_path / "ws.txt"
    afile.write_text("not a directory\n")
    for command in (["fetch", "tasks", "--from", tasks_jsonl], ["analyze", "humaneval"]):
        result = cli("--workspace", afile, *command)
        assert result.exit_code == 2
        assert f"--workspace {afile} is not a directory" in _one_line(result.stderr)
    assert afile.read_text() == "not a directory\n"


def test_writer_maps_every_write_failure_to_output_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot write .*afile"):
        ArtifactWriter(tmp_path / "afile" / "out", "tasks", update_latest=False)
    with pytest.raises(OutputError, match=r"cannot write .*out: No space left on device \(free some space"):
        with ArtifactWriter(tmp_path / "out", "tasks", update_latest=False):
            raise OSError(28, "No space left on device")
    _no_leftovers(tmp_path)


@pytest.mark.integration
def test_train_on_a_full_disk_is_one_line(cli, tmp_path, full_disk):
    from tests.train.conftest import toy_examples, write_examples

    examples = write_examples(tmp_path / "examples", toy_examples())
    fast = ["--seq-len", "64", "--batch-size", "4", "--max-steps", "3", "--vocab-size", "300", "--eval-generate", "1"]
    proc = _hrmcode("train", examples.path, *fast, "-o", full_disk / "run")
    assert proc.returncode == 1
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and "No space left on device" in line[0] and str(full_disk / "run") in line[0], proc.stderr
    assert "Traceback" not in proc.stderr and "enforce fail" not in proc.stderr
    assert not list(full_disk.rglob(MANIFEST)) and not list(full_disk.rglob("*.tmp"))


# -- SIGKILL at random points ----------------------------------------------------------------------
def _check_complete_or_absent(out: Path, records: int) -> bool:
    """A manifest means a whole artifact that verifies; otherwise the path does not exist."""
    if not out.exists():
        return False
    art = load_artifact(out, ("tasks", "analysis"))
    name = "tasks.jsonl" if art.kind == "tasks" else "analysis.parquet"
    art.file(name)  # size and sha256 against the manifest
    assert next(o for o in art.manifest["outputs"] if o["name"] == name)["records"] == records
    return True


@pytest.mark.integration
def test_sigkill_at_random_points_leaves_whole_artifacts_only(tasks_jsonl, tmp_path):
    rng = random.Random(13)
    many = _many_tasks(tasks_jsonl, tmp_path / "many.jsonl", 6000)
    out, fresh, analysis = tmp_path / "out", tmp_path / "fresh", tmp_path / "analysis"
    steps = {"fetch over an earlier artifact": ["fetch", "tasks", "--from", many, "-o", out],
             "fetch to a new path": ["fetch", "tasks", "--from", many, "-o", fresh],
             "analyze over an earlier artifact": ["analyze", out, "-o", analysis]}
    durations = {}
    for name, step in steps.items():  # one whole run of each, timed, so that the kills land inside a run
        started = time.monotonic()
        assert _hrmcode(*step).returncode == 0
        durations[name] = time.monotonic() - started
    seen = {"killed": 0, "complete": 0}
    for attempt in range(9):
        name = list(steps)[attempt % 3]
        if name == "fetch to a new path":
            shutil.rmtree(fresh, ignore_errors=True)
        proc = subprocess.Popen([sys.executable, "-m", "hrmcode", *map(str, steps[name])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.95) * durations[name])
        proc.send_signal(signal.SIGKILL)
        seen["killed" if proc.wait() == -signal.SIGKILL else "complete"] += 1
        for path in (out, fresh, analysis):
            _check_complete_or_absent(path, 6000)
    assert seen["killed"] >= 5, seen
    # a rerun works, and sweeps the staging directories the killed runs left
    for step in steps.values():
        proc = _hrmcode(*step)
        assert proc.returncode == 0, proc.stderr
    assert all(_check_complete_or_absent(path, 6000) for path in (out, fresh, analysis))
    _no_leftovers(tmp_path)


# -- hostile record sizes --------------------------------------------------------------------------
@pytest.mark.integration
def test_a_200_mb_line_is_refused_without_reading_it_whole(tasks_jsonl, tmp_path):
    huge = tmp_path / "huge.jsonl"
    chunk = "a" * (1 << 20)
    with huge.open("w") as fh:  # streamed: the test never holds the line either
        fh.write(tasks_jsonl.read_text().splitlines()[0] + "\n")
        fh.write('{"id": "humaneval/huge", "prompt": "')
        for _ in range(200):
            fh.write(chunk)
        fh.write('"}\n')
    try:
        def peak_rss_kib(*args) -> tuple[int, str]:
            proc = subprocess.Popen([sys.executable, "-m", "hrmcode", *map(str, args)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            stderr = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss, stderr

        code, rss, stderr = peak_rss_kib("fetch", "tasks", "--from", huge, "-o", tmp_path / "out")
        assert code == 1
        line = _one_line(stderr)
        assert f"{huge}:2: a record longer than {MAX_RECORD_BYTES:,} bytes" in line and "HRMCODE_MAX_RECORD_BYTES" in line
        assert not (tmp_path / "out").exists()
        base_code, base_rss, _ = peak_rss_kib("fetch", "tasks", "--from", tasks_jsonl, "-o", tmp_path / "small")
        assert base_code == 0
        assert rss < base_rss + 2 * MAX_RECORD_BYTES // 1024 + 32 * 1024, (rss, base_rss)  # KiB: far below 200 MB
    finally:
        huge.unlink()


def test_record_bound_on_read_and_write(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "x/1"}\n' + json.dumps({"id": "x/2", "text": "b" * 100}) + "\n")
    with pytest.raises(InputError, match=r"a\.jsonl:2: a record longer than 50 bytes"):
        list(read_jsonl(path, max_bytes=50))
    assert len(list(read_jsonl(path))) == 2
    monkeypatch.setenv("HRMCODE_MAX_RECORD_BYTES", "60")
    with pytest.raises(InputError, match=":2: a record longer than 60 bytes"):
        list(read_jsonl(path))
    exactly = json.dumps({"id": "x/3", "t": "c" * 40}, separators=(",", ":"))
    assert len(list(read_jsonl(_write_lines(tmp_path / "b.jsonl", [exactly]), max_bytes=len(exactly)))) == 1
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="record 2 of out.jsonl is longer than 60 bytes"):
        write_jsonl(out, [{"id": "ok"}, {"id": "x", "text": "é" * 40}])
    assert not out.exists() and not (tmp_path / "out.jsonl.tmp").exists()
    monkeypatch.setenv("HRMCODE_MAX_RECORD_BYTES", "lots")
    with pytest.raises(UsageError, match="HRMCODE_MAX_RECORD_BYTES"):
        list(read_jsonl(path))


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# -- usage errors are one line ---------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["fetch", "tasks", "--limit", "0"],
    ["fetch"],
    ["fetch", "tasks", "--no-such-option"],
    ["frobnicate"],
    ["train", "x", "--lr", "abc"],
    ["sandbox", "run", "--memory", "-5", "--", "true"],
    ["eval", "humaneval", "--no-such-option"],
], ids=lambda a: " ".join(a))
def test_usage_errors_are_one_line_exit_2(args):
    proc = _hrmcode(*args)
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert line.startswith("error: usage: ") and "--help" in line
    assert "╭" not in proc.stderr and "Traceback" not in proc.stderr
