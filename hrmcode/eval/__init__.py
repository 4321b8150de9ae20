"""``hrmcode eval``: score a model on polyglot, HumanEval and LiveCodeBench.

- ``api``: the entry points (``eval_polyglot``, ``eval_humaneval``, ``eval_livecodebench``).
- ``runner``: the resumable ``eval-run`` artifact every benchmark writes (``results.jsonl``,
  ``summary.json``), parallel cases, ``--fail-under``.
- ``backends``: where answers come from (oracle, stub, OpenAI-compatible server, samples files,
  hrmcode checkpoints).
- ``polyglot``, ``humaneval``, ``livecodebench``: one module per benchmark (the programs they ship
  into the sandbox are ``hrmcode/sandbox/drivers/``, run by ``sandbox.driving``); ``compare``:
  regressions and improvements between runs.

All model-written code runs in ``hrmcode.sandbox``; the module docstrings say what each part
guarantees and where it deliberately differs from the official harness.
"""
