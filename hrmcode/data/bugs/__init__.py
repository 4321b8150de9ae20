"""Offline SWE-smith: bug-fix tasks made from any local git repository (``--source repo:PATH``).

Procedure (SWE-smith's procedural ``func_pm_*`` generation plus its ``valid``/``gather`` steps):

1. Read the repository's tracked files at HEAD (``git ls-files``; text files only). Candidate
   code is that of tracked source files that are not tests (``testfiles.is_test_path`` for the
   file's language: ``test_*.py``, ``tests/``, ``conftest.py``, ``*_test.go``, ...).
2. Candidate bugs: one per function or class and modifier of ``procedural`` (Python: SWE-smith's
   13 modifiers and three of hrmcode's, each node changed with the modifier's likelihood) or
   ``tsmodifiers`` (JavaScript, Go, Rust, Java, C++), seeded per file; those within their
   modifier's complexity bounds first, each group drawn round-robin across strategies with
   ``seed``; the first ``max_bugs`` are tried. With ``combine``, kept bugs of one file are then
   merged in pairs (SWE-smith's ``combine_file``) and tried too.
3. Run the test command on the clean tree once (the reference run), then on each bugged tree, in
   the sandbox (``hrmcode.sandbox``, no network), with strict verdicts
   (``hrmcode.sandbox.reports.pytest_report.run_suite``, its strict checks on, as ``validate``
   runs them later): per-test outcomes come only from hrmcode's pytest reporter (full node ids,
   subtests), never from the output the tested code prints; a run whose report is missing, torn
   or disagrees with the exit status gives no verdict. The bugged tree differs from HEAD in the bugged file only
   (tests, ``conftest.py`` and config are HEAD's). Candidates run on ``jobs`` workers (each its own
   sandbox slot); each verdict, and the reference run, is appended to ``bug-verdicts.jsonl`` beside
   the output (``verdict_log_path``; ``jsonl.AppendLog``, so a kill -9 loses at most the run in
   flight) under a key of the tree, the candidate, the test command, the timeout and the verdict
   rules, and a rerun tests only candidates without one. Verdicts are gathered in candidate order,
   so the kept bugs and the bytes written do not depend on ``jobs`` or on resuming.
4. Keep a bug only when at least one of the reference's passing tests does not pass on the bugged
   tree (FAIL_TO_PASS; a test missing from the report has not passed) and at least one still
   passes (PASS_TO_PASS), and the run gave a verdict (not timed out, report complete).
5. Emit SWE-smith task instances (the 9-field schema: ``instance_id`` =
   ``<owner>__<repo>.<commit8>.func_pm_<type>__<hash8>`` with no dot in owner or repo
   (``swe_smith_repo_name``), ``repo``, ``patch`` = the bug-introducing
   diff, FAIL_TO_PASS, PASS_TO_PASS, ``created_at`` = the commit's date (so reruns give the same
   bytes), ``image_name`` = the image SWE-smith's harness would run it in (``swe_smith_image_name``;
   hrmcode neither builds nor needs it: the tree is run from the host's files),
   ``base_commit`` = HEAD, ``problem_statement`` = an issue text written from the failing tests and
   the first one's failure, by an LM with ``llm``, else from SWE-smith's templates (``issues``: it
   never holds the instance id, a strategy name or a line of the fix)), and, when its tests need more
   than the plain sandbox, ``environment`` (``environments``: the repository's test dependencies,
   installed outside the sandbox and mounted read-only; their id and requirements),
   normalised by the ``swe-smith`` source into a ``tasks`` artifact whose tasks also carry the
   bugged files (``files``/``editable``) so edit examples can show whole files. ``instances.jsonl``
   is kept beside ``tasks.jsonl``, and ``repository.jsonl`` holds the repository's files at HEAD
   (``path``, ``text``), so ``validate`` can run an example's FAIL_TO_PASS / PASS_TO_PASS tests.

Not guaranteed: that every candidate is tried within a time budget (each costs one test run);
that test ids are stable across runs of flaky suites (a resumed run reuses the verdicts a flaky
suite gave before).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hrmcode.artifacts import Artifact, ArtifactWriter, output_location, workspace_root
from hrmcode.data.bugs.environments import prepare_environment
from hrmcode.data.bugs import suites
from hrmcode.data.bugs.issues import ChatModel, Statement, evidence, problem_statement, secrets, statement_stats
from hrmcode.data.bugs.lm import lm_modify_bugs
from hrmcode.data.bugs import tsmodifiers
from hrmcode.data import syntax
from hrmcode.data.gitread import git_output
from hrmcode.data.testfiles import is_test_path
from hrmcode.diffs import apply_file_diff, content_diffs, tree_patch
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import AppendLog
from hrmcode.reporting import reporter
from hrmcode.sandbox import get_sandbox, run_many
from hrmcode.sandbox.base import Limits
from hrmcode.sandbox.reports.pytest_report import STRICT_RULES, SuiteRun

STATUS = re.compile(r"^(?:(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b|"
                    r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+::\S+))")
MAX_FILE_BYTES = 1 << 20
REPOSITORY = "repository.jsonl"  # the repository's files at HEAD, beside tasks.jsonl
BUG_PREFIX = {"lm_modify": ""}  # instance-id prefix of LM-written bug kinds (SWE-smith's "<repo>.lm_modify__<hash>")
MAX_BUGS = 50  # candidates tried by default
BUG_TIMEOUT_S = 120.0  # seconds per test run of one candidate, by default
VERDICTS = "bug-verdicts.jsonl"  # each tested candidate's verdict, beside the output: a rerun skips it


def parse_pytest_log(log: str) -> dict[str, str]:
    """``{test id: status}`` from verbose (``id STATUS``) and ``-rA`` summary (``STATUS id``) lines:
    SWE-smith's parser, for reading the logs of SWE-smith's own runs. Never a verdict here: the
    tested code writes that output, ids with spaces are cut and subtests are lost."""
    results: dict[str, str] = {}
    for line in log.splitlines():
        match = STATUS.match(line.strip())
        if not match:
            continue
        test, status = (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
        test = test.split(" - ", 1)[0]
        # a test that errors in teardown after passing is reported twice; the failure wins
        if results.get(test) in ("FAILED", "ERROR") and status == "PASSED":
            continue
        results[test] = status
    return results


def _git(repo: Path, *args: str) -> str:
    return git_output(repo, *args, hint="repo:PATH must be a git repository with at least one commit").decode()


# SWE-smith's defaults (swesmith/constants.py ORG_NAME_DH; profiles/base.py arch): its images are
# x86_64 only, and a fixed arch keeps reruns on any machine byte-identical
SWE_SMITH_IMAGE_ORG = "swebench"
SWE_SMITH_ARCH = "x86_64"


def swe_smith_repo_name(owner: str, name: str, commit: str) -> str:
    """``<owner>__<repo>.<commit8>`` (SWE-smith's ``RepoProfile.repo_name``, the part of an instance id
    before ``.<bug>``) with each dot of owner and repo made ``_``: SWE-smith finds the repository
    by cutting an instance id at dots (``rsplit(".", 1)[0]`` in its registry, ``split(".")[0]`` in
    users of its datasets), so ``toolz-1.0.0`` becomes ``toolz-1_0_0`` and the id splits into
    exactly repository, commit and bug."""
    return f"{owner.replace('.', '_')}__{name.replace('.', '_')}.{commit[:8]}"


def swe_smith_image_name(owner: str, name: str, commit: str) -> str:
    """The Docker image SWE-smith's harness runs the repository's tasks in (``RepoProfile.image_name``:
    ``<org>/swesmith.<arch>.<owner>_1776_<repo>.<commit8>``, lower-cased), from the same dot-free
    names as ``swe_smith_repo_name``. hrmcode does not build or push it: it runs the tests from
    the host's files; the name says where SWE-smith would look for the environment."""
    owner, name = owner.replace(".", "_"), name.replace(".", "_")
    return f"{SWE_SMITH_IMAGE_ORG}/swesmith.{SWE_SMITH_ARCH}.{owner}_1776_{name}.{commit[:8]}".lower()


@dataclass
class RepoInfo:
    path: Path
    owner: str
    name: str
    commit: str
    created_at: str
    files: dict[str, str]

    @property
    def repo_name(self) -> str:
        return swe_smith_repo_name(self.owner, self.name, self.commit)

    @property
    def image_name(self) -> str:
        return swe_smith_image_name(self.owner, self.name, self.commit)


def read_repo(path: str | Path) -> RepoInfo:
    repo = Path(path).expanduser().resolve()
    if not repo.is_dir():
        raise InputError(f"repo:{path}: no such directory", "give the path of a local git repository")
    if not (repo / ".git").exists():
        raise InputError(f"repo:{path} is not a git repository", "run `git init && git add -A && git commit` there first")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    created = _git(repo, "log", "-1", "--format=%cI").strip()
    owner, name = "local", repo.name
    try:
        url = _git(repo, "remote", "get-url", "origin").strip()
        match = re.search(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?$", url)
        if match:
            owner, name = match.group(1), match.group(2)
    except InputError:
        pass  # no remote: a local-only repository
    files: dict[str, str] = {}
    for rel in _git(repo, "ls-files", "-z").split("\0"):
        if not rel:
            continue
        full = repo / rel
        if not full.is_file() or full.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            files[rel] = full.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary files are not needed to run Python tests here
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return RepoInfo(repo, re.sub(r"[^A-Za-z0-9_.-]", "_", owner), clean, commit, created, files)


@dataclass
class Candidate:
    path: str
    function: str
    kind: str
    bugged: str  # the whole bugged file
    language: str = "python"
    in_bounds: bool = True  # within its modifier's complexity bounds (tried before those that are not)


def candidates(info: RepoInfo, seed: int) -> list[Candidate]:
    """Every procedural bug of every non-test source file, in the order they are tried: those within
    their modifier's complexity bounds first, then the others; within each, round-robin across
    strategies (each strategy's bugs and the order of the strategies shuffled with ``seed``), so no
    strategy crowds the others out of the first ``max_bugs``."""
    from hrmcode.data.bugs.procedural import candidate_bugs  # libcst: loaded when bugs are made, not at start-up

    found: list[Candidate] = []
    for path in sorted(info.files):
        language = "python" if path.endswith(".py") else syntax.language_of(path)
        if language is None or is_test_path(path, language):
            continue
        if language == "python":
            for bug in candidate_bugs(info.files[path], seed, path):
                found.append(Candidate(path, bug.entity, bug.kind, bug.bugged, "python", bug.in_bounds))
        elif language in tsmodifiers.GRAMMARS:  # javascript, go, rust, java, cpp: tree-sitter modifiers
            rng = random.Random(f"{seed}\0{path}")
            for function, kind, bugged in tsmodifiers.candidate_bugs(language, info.files[path], rng):
                if suites.tests_untouched(language, info.files[path], bugged):  # not in Rust's #[cfg(test)] code
                    found.append(Candidate(path, function, kind, bugged, language))
    unique = {(c.path, c.bugged): c for c in found}  # two modifiers giving the same text are one bug
    rng = random.Random(seed)
    ordered: list[Candidate] = []
    for in_bounds in (True, False):
        by_kind: dict[str, list[Candidate]] = {}
        for candidate in sorted(unique.values(), key=lambda c: (c.kind, c.path, c.function, c.bugged)):
            if candidate.in_bounds is in_bounds:
                by_kind.setdefault(candidate.kind, []).append(candidate)
        kinds = sorted(by_kind)
        rng.shuffle(kinds)
        for kind in kinds:
            rng.shuffle(by_kind[kind])
        ordered += round_robin([by_kind[kind] for kind in kinds])
    return ordered


def combined_candidates(info: RepoInfo, kept: list[Candidate]) -> list[Candidate]:
    """SWE-smith's ``combine_file`` candidates: kept bugs of each file merged in pairs (``file_combos``)."""
    from hrmcode.data.bugs.procedural.combine import COMBINE_FILE, file_combos  # libcst, as in candidates()

    by_path: dict[str, list[Candidate]] = {}
    for candidate in kept:
        by_path.setdefault(candidate.path, []).append(candidate)
    combos: list[Candidate] = []
    for path, bugs in sorted(by_path.items()):
        for members, merged in file_combos(path, info.files[path], [c.bugged for c in bugs]):
            functions = ",".join(dict.fromkeys(bugs[i].function for i in members))
            combos.append(Candidate(path, functions, COMBINE_FILE, merged, bugs[members[0]].language))
    return combos


def round_robin(queues: list[list[Candidate]]) -> list[Candidate]:
    """The first of each queue, then the second of each, and so on."""
    merged: list[Candidate] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        merged += [q[depth] for q in queues if depth < len(q)]
    return merged


def bug_patch(path: str, before: str, after: str) -> str:
    """A git-style unified diff of one file (the bug-introducing ``patch``)."""
    return tree_patch({path: before}, {path: after})


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def pytest_command(test_cmd: str) -> str:
    if "pytest" in test_cmd and not re.search(r"(^|\s)-r\w*A", test_cmd):
        return f"{test_cmd} -rA"
    return test_cmd


def tree_digest(info: RepoInfo) -> str:
    """The repository as tested: its commit and the files read (the working tree may differ from HEAD)."""
    files = hashlib.sha256(json.dumps(sorted(info.files.items())).encode("utf-8")).hexdigest()
    return f"{info.commit}:{files}"


def candidate_hash(candidate: Candidate) -> str:
    return hashlib.sha256(f"{candidate.path}\0{candidate.bugged}".encode("utf-8")).hexdigest()


def verdict_key(tree: str, item: str, command: str, timeout_s: float) -> str:
    """What a logged verdict stands for: the tree, the candidate (or "reference"), the test command,
    the per-run timeout and the verdict rules; a change to any of them tests the candidate again."""
    return hashlib.sha256(json.dumps([STRICT_RULES, tree, item, command, timeout_s]).encode("utf-8")).hexdigest()


def verdict_log_path(info: RepoInfo, workspace: Path | str | None, out: Path | str | None) -> Path:
    """``<out>.bug-verdicts.jsonl`` beside ``-o DIR``, else ``bug-verdicts.jsonl`` beside the
    workspace's versions of ``fetch/repo-<name>`` (each run writes a new version; the log outlives them)."""
    if out is not None:
        out = Path(out)
        return out.parent / f"{out.name}.{VERDICTS}"
    return workspace_root(workspace) / "fetch" / f"repo-{info.name}" / VERDICTS


def _reference_run(log: AppendLog, sandbox, info: RepoInfo, tree: str, command: str, limits: Limits) -> dict:
    """The clean tree's run: how many tests it ran and which passed (logged like a candidate's
    verdict, so a resumed run judges against the same reference)."""
    key = verdict_key(tree, "reference", command, limits.timeout_s)
    if log.done(key):
        return log.records[key]
    # strict, as validate runs these tests later: both see the same reporter checks
    language = suites.suite_language(command, info.files)
    reference = suites.run_tests(sandbox, language, info.files, command, limits)
    passing = reference.passing()
    if not passing:
        why = reference.problem or f"{len(reference.outcomes)} tests, none passed"
        printed = " ".join((reference.result.stdout + reference.result.stderr).split()[-40:])
        why += f"; its output ends: {printed}" if printed and language != "python" else ""  # the build's error
        runner = {"python": "pytest", "go": "go test", "rust": "cargo test", "javascript": "jest"}[language]
        raise InputError(f"the reference run of `{command}` gives no passing test: {why}",
                         f"check --test-cmd; it must run {runner} over the repository's tests, which must pass at HEAD")
    log.append({"key": key, "reference": True, "tests": len(reference.outcomes), "passing": sorted(passing)})
    return log.records[key]


def _validate(sandbox, info: RepoInfo, candidate: Candidate, command: str, limits: Limits, passing: set[str],
              worker: int) -> dict:
    """One candidate's verdict: kept with its FAIL_TO_PASS / PASS_TO_PASS, or rejected with the reason."""
    # only the bugged file is the candidate's: tests, conftest and config stay as at HEAD
    language = suites.suite_language(command, info.files)
    if not suites.tests_untouched(language, info.files[candidate.path], candidate.bugged):
        return {"verdict": "rejected", "reason": "changed_tests"}  # Rust unit tests live in the bugged file
    files = {**info.files, candidate.path: candidate.bugged}
    run = suites.run_tests(sandbox, language, files, command, limits, changed=[candidate.path], worker=worker)
    if suites.holds_tests_of(language, candidate.path, run):
        return {"verdict": "rejected", "reason": "changed_tests"}  # the bugged file holds tests the run ran
    verdict = judge_candidate(run, passing)
    if verdict["verdict"] == "kept":  # kept for the issue text: the first failing test's failure, bounded
        failing = next((t for t in verdict["FAIL_TO_PASS"] if run.outcomes.get(t) == "failed"), verdict["FAIL_TO_PASS"][0])
        verdict["failure"] = suites.failure_excerpt(language, run, failing)  # a test that ran and failed, not one cut short
    return verdict


def judge_candidate(run: SuiteRun, passing: set[str]) -> dict:
    if run.problem is not None:  # a compiled language's tests that never ran because the bug does not compile
        reason = "timed_out" if run.result.timed_out else "does_not_build" if "the build failed" in run.problem \
            else "no_complete_report"
        return {"verdict": "rejected", "reason": reason}
    # counted against the reference's passing tests: a test missing from the report did not pass
    fail_to_pass = run.not_passed(passing)
    pass_to_pass = sorted(passing - set(fail_to_pass))
    if not fail_to_pass:
        return {"verdict": "rejected", "reason": "no_test_broke"}
    if not pass_to_pass:
        return {"verdict": "rejected", "reason": "no_test_kept_passing"}
    return {"verdict": "kept", "FAIL_TO_PASS": fail_to_pass, "PASS_TO_PASS": pass_to_pass}


@dataclass
class BugResult:
    artifact: Artifact | None
    stats: dict = field(default_factory=dict)


def repo_tasks(
    path: str,
    *,
    test_cmd: str | None,
    seed: int = 0,
    max_bugs: int = MAX_BUGS,
    timeout_s: float = BUG_TIMEOUT_S,
    workspace: Path | str | None = None,
    out: Path | str | None = None,
    dry_run: bool = False,
    jobs: int = 1,
    redo: bool = False,
    sandbox=None,
    llm: ChatModel | None = None,
    lm_bugs: int = 0,
    combine: bool = False,
    env: str | None = "auto",
) -> BugResult:
    """Inject, validate and gather bugs of the repository at ``path`` into a ``tasks`` artifact;
    ``llm`` writes the problem statements (``issues.problem_statement``; templates without it) and,
    with ``lm_bugs``, that many functions with a bug of its own (``lm.lm_modify_bugs``), tried first;
    ``combine`` also tries SWE-smith's ``combine_file`` tasks: kept procedural bugs of one file merged
    in pairs (``procedural.combine.file_combos``) and validated like any candidate."""
    from hrmcode.data.bugs.procedural.combine import COMBINE_FILE  # libcst, as in candidates()

    info = read_repo(path)
    # the suite's language decides how tests run and are read (``suites``); go, rust and jest have a default command
    language = suites.suite_language(test_cmd, info.files)
    if language not in suites.LANGUAGES:
        raise UsageError(f"repo:{path} is a {language} repository: hrmcode validates bugs in "
                         f"{', '.join(suites.LANGUAGES)} (jest) repositories",
                         "a Python project with other code in it: give --test-cmd running pytest")
    test_cmd = test_cmd or suites.default_test_command(language, info.files)
    if not test_cmd:
        example = "python -m pytest tests" if language == "python" else "jest" if language == "javascript" else ""
        raise UsageError(f"--source repo:PATH ({language}) needs --test-cmd", f"e.g. --test-cmd '{example}'")
    pool = candidates(info, seed)
    lm_stats: dict = {}
    if lm_bugs and llm is not None and not dry_run:  # asked for, so tried first (within max_bugs)
        code = [p for p in info.files if p.endswith(".py") and not is_test_path(p, "python")]
        lm_refused: Counter = Counter()
        written = lm_modify_bugs(info.files, code, llm, lm_bugs, seed, lm_refused)
        pool = [Candidate(p, function, "lm_modify", bugged) for p, function, bugged in written] + pool
        lm_stats = {"lm_bugs": {"asked": lm_bugs, "written": len(written), "refused": dict(sorted(lm_refused.items()))}}
    tried = pool[:max_bugs]
    stats: dict = {"repo": str(info.path), "commit": info.commit, **lm_stats, "candidates": len(pool), "tried": len(tried),
                   "outside_complexity": sum(not c.in_bounds for c in pool),
                   "by_type_candidates": dict(sorted(Counter(c.kind for c in pool).items())),
                   "by_type_tried": dict(sorted(Counter(c.kind for c in tried).items()))}
    if dry_run:
        return BugResult(None, stats)
    if not tried:
        raise InputError(f"repo:{path} has no Python function a bug can be injected into",
                         "repo:PATH needs non-test Python code")
    # the repository's test dependencies, installed outside the sandbox, mounted read-only (``environments``)
    environment = prepare_environment(info, language, getattr(sandbox, "name", "local"), spec=env, workspace=workspace)
    sandbox = environment.sandbox(sandbox if sandbox is not None else get_sandbox())
    command = pytest_command(test_cmd)
    limits = Limits(timeout_s=timeout_s, memory_mb=4096)
    tree = tree_digest(info) + (f":env-{environment.id}" if environment.mounts else "")
    log_path = verdict_log_path(info, workspace, out)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if redo:  # test every candidate again
        log_path.unlink(missing_ok=True)
    with AppendLog(log_path, key="key") as log:
        reference = _reference_run(log, sandbox, info, tree, command, limits)
        passing = set(reference["passing"])
        stats["reference_tests"] = reference["tests"]
        stats["reference_passing"] = len(passing)
        lock = threading.Lock()

        def judged(batch: list[Candidate], label: str) -> tuple[list[dict], int]:
            """Each candidate's verdict, from the log or tested now; and how many came from the log."""
            keys = [verdict_key(tree, candidate_hash(c), command, timeout_s) for c in batch]
            todo = [i for i, key in enumerate(keys) if not log.done(key)]
            if len(batch) - len(todo):
                reporter().log(f"resuming: {len(batch) - len(todo)} of {len(batch)} {label} already tested ({log_path})")
            with reporter().task(f"validate {label}", total=len(batch)) as bar:
                bar.advance(len(batch) - len(todo))

                def record(index: int, verdict: dict) -> None:  # called from the worker threads
                    candidate = batch[todo[index]]
                    with lock:
                        log.append({"key": keys[todo[index]], "path": candidate.path, "kind": candidate.kind, **verdict})
                        bar.advance()

                run_many([functools.partial(_validate, sandbox, info, batch[i], command, limits, passing) for i in todo],
                         n_workers=jobs, on_done=record)
            return [log.records[key] for key in keys], len(batch) - len(todo)

        verdicts, stats["resumed"] = judged(tried, "bugs")
        if combine:  # SWE-smith's combine step runs over validated bugs only
            kept = [c for c, v in zip(tried, verdicts) if v["verdict"] == "kept" and c.kind not in BUG_PREFIX]
            combos = combined_candidates(info, kept)
            combo_verdicts, resumed = judged(combos, "combined bugs")
            tried, verdicts = tried + combos, verdicts + combo_verdicts
            stats["resumed"] += resumed
            stats["tried"] = len(tried)
            stats["by_type_tried"] = dict(sorted(Counter(c.kind for c in tried).items()))
            stats["by_type_candidates"] = dict(sorted({**stats["by_type_candidates"], COMBINE_FILE: len(combos)}.items()))
    instances: list[dict] = []
    statements: dict[str, Statement] = {}
    rejected: Counter = Counter()
    rejected_by_type: Counter = Counter()
    for candidate, verdict in zip(tried, verdicts):
        if verdict["verdict"] != "kept":
            rejected[verdict["reason"]] += 1
            rejected_by_type[candidate.kind] += 1
            continue
        fail_to_pass, pass_to_pass = verdict["FAIL_TO_PASS"], verdict["PASS_TO_PASS"]
        patch = bug_patch(candidate.path, info.files[candidate.path], candidate.bugged)
        prefix = BUG_PREFIX.get(candidate.kind, "" if candidate.kind == COMBINE_FILE else "func_pm_")
        instances.append({
            "instance_id": f"{info.repo_name}.{prefix}{candidate.kind}__{short_hash(patch)}",
            "repo": info.repo_name,
            "patch": patch,
            "FAIL_TO_PASS": fail_to_pass,
            "PASS_TO_PASS": pass_to_pass,
            "created_at": info.created_at,
            "image_name": info.image_name,
            "base_commit": info.commit,
            "problem_statement": "",
            **({"model_written": True} if candidate.kind in BUG_PREFIX else {}),  # an LM wrote the bug
            # what its tests ran with beyond the plain sandbox (``environments.environment_sandbox``)
            **({"environment": environment.record()} if environment.recorded else {}),
        })
        instance_id, bugged_tree = instances[-1]["instance_id"], {**info.files, candidate.path: candidate.bugged}
        found = evidence(bugged_tree, patch, fail_to_pass, verdict.get("failure", ""), candidate.function.split(","))
        statements[instance_id] = problem_statement(found, secrets(instance_id, patch, bugged_tree), instance_id, llm)
        instances[-1]["problem_statement"] = statements[instance_id].text
    stats["kept"] = len(instances)
    stats["problem_statements"] = statement_stats(statements)
    stats["rejected"] = dict(sorted(rejected.items()))
    stats["by_type_kept"] = dict(sorted(Counter(c.kind for c, v in zip(tried, verdicts) if v["verdict"] == "kept").items()))
    stats["by_type_rejected"] = dict(sorted(rejected_by_type.items()))
    if not instances:
        raise InputError(f"none of the {len(tried)} candidate bugs in repo:{path} broke a test while others kept passing",
                         "raise --max-bugs, or check that --test-cmd runs the tests of the code")
    resumed = stats.pop("resumed")  # how this run went, not what it made: kept out of the manifest
    artifact = _write_tasks(info, instances, command, stats, seed, workspace, out)
    return BugResult(artifact, {**stats, "resumed": resumed, "verdict_log": str(log_path)})


def _write_tasks(info: RepoInfo, instances: list[dict], command: str, stats: dict, seed: int,
                 workspace: Path | str | None, out: Path | str | None) -> Artifact:
    from hrmcode.data.sources.swe_smith import to_task

    name = f"repo-{info.name}"
    params = {"source": "swe-smith", "repo": str(info.path), "commit": info.commit, "test_cmd": command, "seed": seed}
    out_dir, update_latest = output_location("fetch", name, out, workspace, params)
    tasks = []
    for instance in sorted(instances, key=lambda i: i["instance_id"]):
        task = to_task(instance, instance["instance_id"])
        changed = [p for p in task.metadata.get("changed_files", []) if p in info.files]
        bugged = {}
        for diff in content_diffs(instance["patch"]):
            if diff.path in changed:
                bugged[diff.path] = apply_file_diff(info.files[diff.path], diff)
        tests = task.tests.model_copy(update={"command": command})
        tasks.append(task.model_copy(update={"files": bugged, "editable": sorted(bugged), "tests": tests}))
    by_language = Counter(t.language for t in tasks)
    with ArtifactWriter(out_dir, "tasks", name=name, params=params, seed=seed, update_latest=update_latest) as writer:
        writer.write_jsonl("instances.jsonl", sorted(instances, key=lambda i: i["instance_id"]))
        writer.write_jsonl("tasks.jsonl", tasks)
        writer.write_jsonl(REPOSITORY, [{"path": p, "text": t} for p, t in sorted(info.files.items())])
        artifact = writer.finish({**stats, "source": "swe-smith", "origin": f"repo:{info.path}",
                                  "records": len(tasks), "languages": dict(by_language)})
    reporter().log(f"{len(tasks)} bug tasks from {info.path} -> {artifact.path}")
    return artifact

