"""``hrmcode validate``: quality gates over an ``examples`` artifact -> a ``validated-examples`` artifact.

Gates, in order, each with its score in ``scores.jsonl`` and its reason in ``rejected.jsonl``:

1. schema: the record parses as an ``Example`` (hard gate; ``checks.py``).
2. completeness: level-specific checks, each a hard gate; the score is the fraction passed
   (``checks.py``).
3. exact duplicates: same level, input text and target as an earlier example (hard gate).
4. near duplicates: MinHash with datasketch's LSH banding per level (``neardup.py``); an
   example whose target AND input both reach ``dedup_threshold`` estimated Jaccard with an
   earlier kept example is rejected (hard gate). Earlier = input order, so the result is
   deterministic.
5. contamination: overlap with HumanEval (always) and the polyglot / LiveCodeBench / HumanEval
   tasks fetched into the workspace (``hrmcode.data.contamination``); at or above the threshold
   the example is flagged and rejected, or kept with the flag under ``allow_contaminated``.
6. execution (unless ``exec_checks=False``): an edit/solve target must pass its task's tests in
   the sandbox and the starting files alone must fail (hard gate when it runs; ``skipped`` with
   the reason otherwise; ``execution.py``).

Quality score = completeness x (1 - contamination overlap) (just completeness under
``allow_contaminated``); an example is accepted when it passes every hard gate and its score
reaches ``min_score``. ``accepted.jsonl`` holds the accepted records byte-for-byte as they were
in ``examples.jsonl``; ``rejected.jsonl`` each rejected record with its reasons; ``report.json``
the gate counts and the balance by language / level / stage / split (of all examples and of the
accepted ones).

The modules: ``checks`` (per-example schema and completeness), ``neardup`` (MinHash and the
near-duplicate index), ``scoring`` (a worker scoring one chunk into part files), ``execution``
(sandbox checks) and ``run`` (the resumable run and its decision pass; ``ValidateOptions`` holds
the gates' options).
"""

from hrmcode.data.validate.checks import checked_example, completeness
from hrmcode.data.validate.neardup import NUM_PERM, SAMPLE, NearDuplicates, signatures
from hrmcode.data.validate.run import ValidateOptions, ValidationResult, validate

__all__ = ["NUM_PERM", "SAMPLE", "NearDuplicates", "ValidateOptions", "ValidationResult", "checked_example",
           "completeness", "signatures", "validate"]
