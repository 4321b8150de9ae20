"""SWE-smith's Python procedural modifiers (hrmcode/data/bugs/procedural): each one's exact output,
per-node likelihood, determinism, complexity bounds, the arg_swap restriction, even sampling across
strategies and combine_file, plus one end-to-end CLI run with --combine on the minipkg fixture."""

from __future__ import annotations

import ast
import difflib
import json
import textwrap
from pathlib import Path

import pytest

from hrmcode.data.bugs import Candidate, RepoInfo, candidates, read_repo
from hrmcode.data.bugs.procedural import MODIFIERS, MODIFIERS_PYTHON, candidate_bugs, modifier_named
from hrmcode.data.bugs.procedural.base import complexity
from hrmcode.data.bugs.procedural.combine import file_combos, merge_edits

FUNCTION = '''def f(xs, lo, hi):
    total = 0
    for i in range(len(xs)):
        if xs[i] < lo and xs[0] != hi:
            total += xs[-1] * 2
        else:
            total -= 1
        pick(lo, hi)
    while total > 100:
        total = total // 2 - lo + hi
    with lock:
        log(total)
    return total
'''
CLASS = '''class Stack(Base, Sized):
    """A stack."""
    limit = 3

    def push(self, item):
        if len(self.items) >= self.limit or item is None:
            raise ValueError(item)
        self.items.append(item)
        self.check()

    def pop(self):
        if not self.items:
            raise IndexError("empty")
        return self.items.pop()

    def check(self):
        for item in self.items:
            if item is None or item == 0 or item == 1:
                raise ValueError(item)
'''


def forced(kind: str, source: str, seed: int = 0) -> list[str]:
    """The modifier's bugs with every node it can change changed (likelihood 1)."""
    modifier = modifier_named(kind)
    always = type(f"Always{modifier.__name__}", (modifier,), {"likelihood": 1.0})
    return [bug.bugged for bug in candidate_bugs(source, seed, modifiers=(always,))]


def changed(before: str, after: str) -> list[tuple[str, str]]:
    matcher = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines())
    return [("\n".join(before.splitlines()[i1:i2]), "\n".join(after.splitlines()[j1:j2]))
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def test_thirteen_swe_smith_modifiers_and_three_extras():
    assert sorted(m.name for m in MODIFIERS_PYTHON) == sorted([
        "class_rm_base", "class_rm_funcs", "class_shuffle_funcs", "ctrl_invert_if", "ctrl_shuffle", "remove_assign",
        "remove_cond", "remove_loop", "remove_wrapper", "op_break_chains", "op_change_const", "op_change", "op_swap"])
    assert [m.name for m in MODIFIERS[len(MODIFIERS_PYTHON):]] == ["op_flip", "loop_off_by_one", "arg_swap"]
    # SWE-smith's likelihoods (generate.py PM_TECHNIQUES)
    assert {m.name: m.likelihood for m in MODIFIERS_PYTHON} == {
        "class_rm_base": 0.25, "class_rm_funcs": 0.15, "class_shuffle_funcs": 0.25, "ctrl_invert_if": 0.25,
        "ctrl_shuffle": 0.25, "remove_assign": 0.25, "remove_cond": 0.25, "remove_loop": 0.25, "remove_wrapper": 0.25,
        "op_break_chains": 0.4, "op_change_const": 0.4, "op_change": 0.4, "op_swap": 0.4}


@pytest.mark.parametrize("kind, expected", [
    ("op_change", [("        if xs[i] < lo and xs[0] != hi:", "        if xs[i] < lo or xs[0] != hi:"),
                   ("            total += xs[-1] * 2", "            total += xs[-1] / 2"),
                   ("        total = total // 2 - lo + hi", "        total = total * 2 + lo - hi")]),
    ("op_swap", [("        if xs[i] < lo and xs[0] != hi:", "        if xs[0] != hi and xs[i] < lo:"),
                 ("            total += xs[-1] * 2", "            total += 2 * xs[-1]"),
                 ("        total = total // 2 - lo + hi", "        total = hi + (lo - 2 // total)")]),
    ("op_break_chains", [("        total = total // 2 - lo + hi", "        total = total + hi")]),
    ("op_change_const", [("            total += xs[-1] * 2", "            total += xs[-1] * 3"),
                         ("        total = total // 2 - lo + hi", "        total = total // 3 - lo + hi")]),
    ("ctrl_invert_if", [("            total += xs[-1] * 2\n        else:\n            total -= 1",
                         "            total -= 1\n        else:\n            total += xs[-1] * 2")]),
    ("remove_loop", [("    for i in range(len(xs)):\n        if xs[i] < lo and xs[0] != hi:\n"
                      "            total += xs[-1] * 2\n        else:\n            total -= 1\n        pick(lo, hi)\n"
                      "    while total > 100:\n        total = total // 2 - lo + hi", "")]),
    ("remove_cond", [("        if xs[i] < lo and xs[0] != hi:\n            total += xs[-1] * 2\n        else:\n"
                      "            total -= 1", "")]),
    ("remove_wrapper", [("    with lock:\n        log(total)", "")]),
    ("op_flip", [("        if xs[i] < lo and xs[0] != hi:", "        if xs[i] >= lo and xs[0] == hi:"),
                 ("    while total > 100:", "    while total <= 100:")]),
    ("loop_off_by_one", [("    for i in range(len(xs)):\n        if xs[i] < lo and xs[0] != hi:\n"
                          "            total += xs[-1] * 2",
                          "    for i in range(len(xs) + 1):\n        if xs[i] < lo and xs[1] != hi:\n"
                          "            total += xs[-2] * 2")]),
    ("arg_swap", [("        pick(lo, hi)", "        pick(hi, lo)")]),
])
def test_each_function_modifier_changes_every_node_it_may(kind, expected):
    [bugged] = forced(kind, FUNCTION)
    want = FUNCTION
    for old, new in expected:  # each (lines before, lines after; "" for removed lines) in FUNCTION
        assert want.count(old + "\n") == 1
        want = want.replace(old + "\n", new + "\n" if new else "")
    assert bugged == want


def test_op_change_leaves_string_operations_alone():
    source = ("def label(prefix, value, n):\n    if n > 1 and value:\n        n = n - 1\n"
              "    return prefix + str(value) + ' '.join([prefix] * n) + f'{n}' % n\n")
    [bugged] = forced("op_change", source)
    assert bugged == source.replace("n > 1 and value", "n > 1 or value").replace("n = n - 1", "n = n + 1")


def test_remove_assign_leaves_pass_where_a_block_would_be_empty():
    [bugged] = forced("remove_assign", FUNCTION)
    assert "total = 0" not in bugged and "total -= 1" not in bugged and "total = total //" not in bugged
    assert "        else:\n            pass\n" in bugged and "    while total > 100:\n        pass\n" in bugged


def test_ctrl_shuffle_keeps_the_docstring_first_and_every_statement():
    source = 'def g(xs):\n    """Doc."""\n    a = 1\n    for x in xs:\n        a += x\n    b = a * 2\n    return b\n'
    [bugged] = forced("ctrl_shuffle", source, seed=3)
    lines = bugged.splitlines()
    assert lines[:2] == source.splitlines()[:2] and sorted(lines) == sorted(source.splitlines()) and bugged != source


def test_class_modifiers():
    assert complexity(ast.parse(CLASS).body[0]) >= 10
    [no_base] = forced("class_rm_base", CLASS)
    assert no_base.splitlines()[0] in ("class Stack(Sized):", "class Stack(Base):")
    [removed] = forced("class_rm_funcs", CLASS)
    assert "def " not in removed and '    """A stack."""\n    limit = 3\n' in removed
    # a method removed with likelihood 0.15: some seed removes check() alone, and its call becomes None
    only_check = [b for s in range(60) for b in forced_at("class_rm_funcs", CLASS, s)
                  if "def check" not in b and "def push" in b and "def pop" in b]
    assert only_check and "        None\n" in only_check[0] and "self.check()" not in only_check[0]
    [shuffled] = forced("class_shuffle_funcs", CLASS)
    order = [line.split("(")[0] for line in shuffled.splitlines() if line.startswith("    def ")]
    assert sorted(order) == ["    def check", "    def pop", "    def push"] and order != ["    def push", "    def pop", "    def check"]
    assert shuffled.startswith('class Stack(Base, Sized):\n    """A stack."""\n    limit = 3\n')


def forced_at(kind: str, source: str, seed: int) -> list[str]:
    """The modifier's bugs at its own likelihood, for one seed."""
    return [b.bugged for b in candidate_bugs(source, seed, modifiers=(modifier_named(kind),))]


def test_one_bug_may_change_several_nodes_and_seeds_decide_which():
    sites = [len(changed(FUNCTION, b)) for s in range(40) for b in forced_at("op_change", FUNCTION, s)]
    assert 1 in sites and max(sites) >= 2
    assert [b.bugged for b in candidate_bugs(FUNCTION, 7, "a.py")] == [b.bugged for b in candidate_bugs(FUNCTION, 7, "a.py")]
    assert [b.bugged for b in candidate_bugs(FUNCTION, 7, "a.py")] != [b.bugged for b in candidate_bugs(FUNCTION, 8, "a.py")]


def test_no_give_away_negation_is_ever_written():
    source = textwrap.dedent('''\
        def pick(key, default, items):
            if not callable(key):
                found = items.get(key, default)
            else:
                found = [k for k in items if key(k)]
            if found is None or not found:
                return default
            return found
        ''')
    bugs = [b.bugged for s in range(30) for b in candidate_bugs(source, s)]
    assert bugs and not any("not (not" in b or "not (" in b or "not not" in b for b in bugs)
    [inverted] = forced("ctrl_invert_if", source)
    assert "    if not callable(key):\n        found = [k for k in items if key(k)]\n    else:\n" \
           "        found = items.get(key, default)\n" in inverted


def test_arg_swap_only_swaps_what_plausibly_type_checks():
    source = textwrap.dedent('''\
        def f(self, other, first, second, path):
            if isinstance(other, Compose) or issubclass(first, second):
                return getattr(other, first)
            g(1, "a")
            h(Compose, other)
            k(self, other)
            m("x", "y")
            n(first, second.name)
            cycle(map(iter, first), partial(first, second), sorted(len, first))
            return f(*first, second)
        ''')
    [bugged] = forced("arg_swap", source)
    assert changed(source, bugged) == [('    m("x", "y")\n    n(first, second.name)',
                                        '    m("y", "x")\n    n(second.name, first)')]


def test_complexity_bounds():
    simple = "def inc(values):\n    total = 0\n    total += 1\n    return total\n"
    bugs = list(candidate_bugs(simple, 0))
    assert bugs and {b.kind for b in bugs} == {"remove_assign"} and not any(b.in_bounds for b in bugs)
    branchy = "def g(x):\n" + "".join(f"    if x == {i}:\n        x += {i}\n" for i in range(12)) + \
        "    for y in x:\n        pass\n    return x\n"
    kinds = {b.kind: b.in_bounds for b in candidate_bugs(branchy, 0)}
    assert kinds["ctrl_shuffle"] is False and kinds["remove_cond"] is True  # ctrl_shuffle: at most 10
    small_class = "class A(B):\n    def f(self):\n        return 1\n"
    assert all(not b.in_bounds for b in candidate_bugs(small_class, 0) if b.kind.startswith("class_"))


def test_candidates_round_robin_across_strategies_in_bounds_first(minirepo):
    pool = candidates(read_repo(minirepo), 0)
    kinds = {c.kind for c in pool}
    head = [c.kind for c in pool[:len(kinds)]]
    in_bounds = [c for c in pool if c.in_bounds]
    assert pool[:len(in_bounds)] == in_bounds  # those within bounds first
    first_round = len({c.kind for c in in_bounds})
    assert len(set(head[:first_round])) == first_round  # one of each strategy before any second
    counts = {k: sum(c.kind == k for c in pool[:12]) for k in kinds}
    assert max(counts.values()) <= 2


def test_merge_edits_and_file_combos():
    original = "a\nb\nc\nd\ne\nf\n"
    assert merge_edits(original, ["A\nb\nc\nd\ne\nf\n", "a\nb\nc\nd\ne\nF\n"]) == "A\nb\nc\nd\ne\nF\n"
    assert merge_edits(original, ["A\nb\nc\nd\ne\nf\n", "a\nB\nc\nd\ne\nf\n"]) is None  # adjacent lines
    assert merge_edits(original, ["a\nb\nc\nd\ne\nf\n"]) == original
    bugged = ["x = 2\ny = 1\nz = 1\nw = 1\n", "x = 1\ny = 1\nz = 1\nw = 2\n", "x = 3\ny = 1\nz = 1\nw = 1\n",
              "x = 1\ny = 1\nz = 3\nw = 1\n"]
    combos = file_combos("m.py", "x = 1\ny = 1\nz = 1\nw = 1\n", bugged)
    # pairs in order; a pair that merges uses up both bugs; (0, 2) and (0, 3)... never reuse one
    assert [members for members, _ in combos] == [(0, 1), (2, 3)]
    assert combos[0][1] == "x = 2\ny = 1\nz = 1\nw = 2\n"


@pytest.mark.integration
def test_cli_end_to_end_with_combined_tasks(cli, minirepo, workspace):
    args = ["--json", "synthesize", "--source", f"repo:{minirepo}", "--test-cmd", "python3 -m pytest -q tests",
            "--max-bugs", "8", "--levels", "plan", "--combine", "-j", "2"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["bugs"]
    assert report["by_type_tried"].get("combine_file", 0) >= 1
    assert sum(report["by_type_tried"].values()) == report["tried"] == 8 + report["by_type_tried"]["combine_file"]
    assert set(report["by_type_tried"]) - {"combine_file"} <= {m.name for m in MODIFIERS}
    instances = [json.loads(line) for path in (workspace / "fetch" / "repo-minipkg").glob("*/instances.jsonl")
                 for line in path.read_text().splitlines()]
    assert len(instances) == report["kept"] >= 2
    combined = [i for i in instances if ".combine_file__" in i["instance_id"]]
    assert len(combined) == report["by_type_kept"].get("combine_file", 0)
    for instance in combined:
        assert instance["instance_id"].startswith("local__minipkg.") and change_runs(instance["patch"]) >= 2
        assert instance["FAIL_TO_PASS"] and instance["PASS_TO_PASS"]
    # --combine with another source is refused
    refused = cli("synthesize", "--source", "swe-smith", "--combine")
    assert refused.exit_code == 2 and "--combine" in refused.stderr


def change_runs(patch: str) -> int:
    """Runs of changed lines in a diff, separated by context lines or hunk headers."""
    runs, inside = 0, False
    for line in patch.splitlines():
        changed_line = line[:1] in "+-" and not line.startswith(("+++", "---"))
        runs += changed_line and not inside
        inside = changed_line
    return runs


def test_candidate_defaults_keep_old_constructors_working():
    assert Candidate("a.py", "f", "op_flip", "x = 1\n").language == "python"


def test_candidates_dispatch_by_language_and_skip_tests():
    files = {"lib/add.js": "function add(a, b) {\n  if (a > b) { return a - b; }\n  return a + b;\n}\n",
             "test/add.test.js": "test('add', () => { expect(add(1, 2)).toBe(3); });\n",
             "calc.go": "package calc\n\nfunc F(a int) int {\n\tif a > 1 {\n\t\treturn a + 1\n\t}\n\treturn a\n}\n",
             "calc_test.go": "package calc\n\nfunc helper(a int) int {\n\tif a > 1 {\n\t\treturn a + 1\n\t}\n\treturn a\n}\n",
             "README.md": "# x\n"}
    pool = candidates(RepoInfo(Path("."), "o", "n", "0" * 40, "", files), 0)
    assert {c.path for c in pool} == {"lib/add.js", "calc.go"}
    assert {c.language for c in pool if c.path == "calc.go"} == {"go"}
    assert all(c.bugged != files[c.path] for c in pool) and pool == candidates(RepoInfo(Path("."), "o", "n", "0" * 40,
                                                                                         "", files), 0)
