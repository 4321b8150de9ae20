"""Stub -> reference pairs straight from ../shared/polyglot-benchmark, for tests that need real
exercise text without depending on `hrmcode fetch` (same mapping as the agreed task layout)."""

from __future__ import annotations

import json
from pathlib import Path


def exercise_pairs(root: Path) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(id, solution files as shipped, the same paths with the reference applied) per exercise."""
    pairs = []
    for cfg in sorted(root.glob("*/exercises/practice/*/.meta/config.json")):
        exercise = cfg.parent.parent
        lang = exercise.parts[-4]
        files = json.loads(cfg.read_text())["files"]
        before = {p: (exercise / p).read_text() for p in files["solution"]}
        after = dict(before)
        if lang == "java":
            for ref in sorted((exercise / ".meta/src/reference/java").rglob("*.java")):
                after[f"src/main/java/{ref.name}"] = ref.read_text()
        else:
            for example in files["example"]:
                if example.endswith("Cargo-example.toml"):
                    after["Cargo.toml"] = (exercise / example).read_text()
                    continue
                suffix = Path(example).suffix
                (target,) = [s for s in files["solution"] if Path(s).suffix == suffix]
                after[target] = (exercise / example).read_text()
        pairs.append((f"{lang}/{exercise.name}", before, after))
    return pairs
