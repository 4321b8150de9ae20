"""The real SWE-smith sample and polyglot benchmark from ../shared through synthesize and validate."""

from __future__ import annotations

import json

import pytest

from hrmcode.data.sources import fetch
from hrmcode.data.synthesize import synthesize
from hrmcode.data.validate import validate
from hrmcode.edits import apply_edits, parse_edits


@pytest.mark.shared
def test_swe_smith_sample_and_trajectories(shared_dir):
    fetch("swe-smith", from_path=shared_dir / "swe-smith-sample" / "instances.jsonl")
    fetch("swe-smith-trajectories", from_path=shared_dir / "swe-smith-sample" / "trajectories.jsonl")
    examples = synthesize("swe-smith")
    by_level = {}
    for line in (examples.artifact.path / "examples.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_level.setdefault(record["level"], []).append(record)
    plan = by_level["plan"][0]["target"].splitlines()
    assert plan[0] == "FILE pandas/core/indexes/base.py" and "TOUCH pandas/core/indexes/base.py::Index" in plan
    edit = by_level["edit"][0]
    got = apply_edits(edit["input"]["context"]["files"], parse_edits(edit["target"], "diff", edit["input"]["context"]["paths"]))
    assert 'if lib.is_np_dtype(keyarr.dtype, "mM") or isinstance(' in got["pandas/core/indexes/base.py"]
    trajectories = synthesize("swe-smith-trajectories", levels=("tool",))
    assert trajectories.stats["by_level"] == {"tool": sum(1 for _ in range(trajectories.stats["examples"]))}
    assert trajectories.stats["tasks"] == 3 and trajectories.stats["examples"] > 90
    report = validate("swe-smith", exec_checks=False).report
    assert report["accepted"] == report["examples"] == 4


@pytest.mark.shared
@pytest.mark.integration
def test_polyglot_examples_are_flagged_as_contaminated(shared_dir):
    fetch("polyglot", from_path=shared_dir / "polyglot-benchmark")
    result = synthesize("polyglot", levels=("edit", "solve"), jobs=2)
    assert result.stats["tasks_with_examples"] == 225
    report = validate("polyglot", exec_checks=False).report
    assert report["accepted"] == 0 and report["gates"]["contaminated"] == report["examples"]
