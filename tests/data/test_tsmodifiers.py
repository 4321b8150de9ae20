"""hrmcode/data/bugs/tsmodifiers.py: every modifier in every language on a small function (exact
output), every output parses, determinism, and the edits that must not be made."""

from __future__ import annotations

import difflib
import random

import pytest

from hrmcode.data import syntax
from hrmcode.data.bugs.tsmodifiers import KINDS, candidate_bugs

SOURCES = {
"javascript": """const LIMIT = 3;

function clamp(xs, lo) {
  let total = 0;
  for (const x of xs) {
    total += x;
  }
  if (total > lo) {
    total = lo - 1;
  } else {
    return 'low: ' + total;
  }
  return total;
}
""",
"go": """package clamp

func Clamp(xs []int, lo int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	if total > lo {
		total = lo - 1
	} else {
		return 0
	}
	return total
}
""",
"rust": """pub fn clamp(xs: &[i64], lo: i64) -> i64 {
    let mut total = 0;
    for x in xs {
        total += x;
    }
    if total > lo {
        total = lo - 1;
    } else {
        return 0;
    }
    total
}
""",
"java": """class Clamp {
    static int clamp(int[] xs, int lo) {
        int total = 0;
        for (int x : xs) {
            total += x;
        }
        if (total > lo) {
            total = lo - 1;
        } else {
            return 0;
        }
        return total;
    }
}
""",
"cpp": """#include <vector>

int clamp(const std::vector<int>& xs, int lo) {
    int total = 0;
    for (int x : xs) {
        total += x;
    }
    if (total > lo) {
        total = lo - 1;
    } else {
        return 0;
    }
    return total;
}
""",
}


def changes(before: str, after: str) -> list[str]:
    """The -/+ lines of the diff, without headers."""
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if not line.startswith(("---", "+++", "@@"))]


EXPECTED = {
    'javascript': [
        ('clamp', 'op_change', ['-    total = lo - 1;', '+    total = lo + 1;']),
        ('clamp', 'op_flip', ['-  if (total > lo) {', '+  if (total <= lo) {']),
        ('clamp', 'op_swap', ['-  if (total > lo) {', '+  if (lo > total) {']),
        ('clamp', 'op_swap', ['-    total = lo - 1;', '+    total = 1 - lo;']),
        ('clamp', 'op_swap', ["-    return 'low: ' + total;", "+    return total + 'low: ';"]),
        ('clamp', 'op_change_const', ['-  let total = 0;', '+  let total = 1;']),
        ('clamp', 'op_change_const', ['-    total = lo - 1;', '+    total = lo - 2;']),
        ('clamp', 'remove_assign', ['-    total += x;']),
        ('clamp', 'remove_assign', ['-    total = lo - 1;']),
        ('clamp', 'remove_cond', ['-  if (total > lo) {', '-    total = lo - 1;', '-  } else {', "-    return 'low: ' + total;", '-  }']),
        ('clamp', 'remove_loop', ['-  for (const x of xs) {', '-    total += x;', '-  }']),
        ('clamp', 'ctrl_invert_if', ["+    return 'low: ' + total;", '+  } else {', '-  } else {', "-    return 'low: ' + total;"]),
    ],
    'go': [
        ('Clamp', 'op_change', ['-\t\ttotal = lo - 1', '+\t\ttotal = lo + 1']),
        ('Clamp', 'op_flip', ['-\tif total > lo {', '+\tif total <= lo {']),
        ('Clamp', 'op_swap', ['-\tif total > lo {', '+\tif lo > total {']),
        ('Clamp', 'op_swap', ['-\t\ttotal = lo - 1', '+\t\ttotal = 1 - lo']),
        ('Clamp', 'op_change_const', ['-\ttotal := 0', '+\ttotal := 1']),
        ('Clamp', 'op_change_const', ['-\t\ttotal = lo - 1', '+\t\ttotal = lo - 2']),
        ('Clamp', 'op_change_const', ['-\t\treturn 0', '+\t\treturn 1']),
        ('Clamp', 'remove_assign', ['-\t\ttotal += x']),
        ('Clamp', 'remove_assign', ['-\t\ttotal = lo - 1']),
        ('Clamp', 'remove_cond', ['-\tif total > lo {', '-\t\ttotal = lo - 1', '-\t} else {', '-\t\treturn 0', '-\t}']),
        ('Clamp', 'remove_loop', ['-\tfor _, x := range xs {', '-\t\ttotal += x', '-\t}']),
        ('Clamp', 'ctrl_invert_if', ['+\t\treturn 0', '+\t} else {', '-\t} else {', '-\t\treturn 0']),
    ],
    'rust': [
        ('clamp', 'op_change', ['-        total = lo - 1;', '+        total = lo + 1;']),
        ('clamp', 'op_flip', ['-    if total > lo {', '+    if total <= lo {']),
        ('clamp', 'op_swap', ['-    if total > lo {', '+    if lo > total {']),
        ('clamp', 'op_swap', ['-        total = lo - 1;', '+        total = 1 - lo;']),
        ('clamp', 'op_change_const', ['-    let mut total = 0;', '+    let mut total = 1;']),
        ('clamp', 'op_change_const', ['-        total = lo - 1;', '+        total = lo - 2;']),
        ('clamp', 'op_change_const', ['-        return 0;', '+        return 1;']),
        ('clamp', 'remove_assign', ['-        total += x;']),
        ('clamp', 'remove_assign', ['-        total = lo - 1;']),
        ('clamp', 'remove_cond', ['-    if total > lo {', '-        total = lo - 1;', '-    } else {', '-        return 0;', '-    }']),
        ('clamp', 'remove_loop', ['-    for x in xs {', '-        total += x;', '-    }']),
        ('clamp', 'ctrl_invert_if', ['+        return 0;', '+    } else {', '-    } else {', '-        return 0;']),
    ],
    'java': [
        ('Clamp.clamp', 'op_change', ['-            total = lo - 1;', '+            total = lo + 1;']),
        ('Clamp.clamp', 'op_flip', ['-        if (total > lo) {', '+        if (total <= lo) {']),
        ('Clamp.clamp', 'op_swap', ['-        if (total > lo) {', '+        if (lo > total) {']),
        ('Clamp.clamp', 'op_swap', ['-            total = lo - 1;', '+            total = 1 - lo;']),
        ('Clamp.clamp', 'op_change_const', ['-        int total = 0;', '+        int total = 1;']),
        ('Clamp.clamp', 'op_change_const', ['-            total = lo - 1;', '+            total = lo - 2;']),
        ('Clamp.clamp', 'op_change_const', ['-            return 0;', '+            return 1;']),
        ('Clamp.clamp', 'remove_assign', ['-            total += x;']),
        ('Clamp.clamp', 'remove_assign', ['-            total = lo - 1;']),
        ('Clamp.clamp', 'remove_cond', ['-        if (total > lo) {', '-            total = lo - 1;', '-        } else {', '-            return 0;', '-        }']),
        ('Clamp.clamp', 'remove_loop', ['-        for (int x : xs) {', '-            total += x;', '-        }']),
        ('Clamp.clamp', 'ctrl_invert_if', ['+            return 0;', '+        } else {', '-        } else {', '-            return 0;']),
    ],
    'cpp': [
        ('clamp', 'op_change', ['-        total = lo - 1;', '+        total = lo + 1;']),
        ('clamp', 'op_flip', ['-    if (total > lo) {', '+    if (total <= lo) {']),
        ('clamp', 'op_swap', ['-    if (total > lo) {', '+    if (lo > total) {']),
        ('clamp', 'op_swap', ['-        total = lo - 1;', '+        total = 1 - lo;']),
        ('clamp', 'op_change_const', ['-    int total = 0;', '+    int total = 1;']),
        ('clamp', 'op_change_const', ['-        total = lo - 1;', '+        total = lo - 2;']),
        ('clamp', 'op_change_const', ['-        return 0;', '+        return 1;']),
        ('clamp', 'remove_assign', ['-        total += x;']),
        ('clamp', 'remove_assign', ['-        total = lo - 1;']),
        ('clamp', 'remove_cond', ['-    if (total > lo) {', '-        total = lo - 1;', '-    } else {', '-        return 0;', '-    }']),
        ('clamp', 'remove_loop', ['-    for (int x : xs) {', '-        total += x;', '-    }']),
        ('clamp', 'ctrl_invert_if', ['+        return 0;', '+    } else {', '-    } else {', '-        return 0;']),
    ],
}


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_every_modifier_on_a_small_function(language):
    source = SOURCES[language]
    found = [(name, kind, changes(source, text)) for name, kind, text in candidate_bugs(language, source)]
    assert found == EXPECTED[language]
    assert {kind for _, kind, _ in found} == set(KINDS) - {"ctrl_shuffle"}  # no run of two simple statements


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_every_output_parses_differs_and_is_deterministic(language):
    source = SOURCES[language]
    first = list(candidate_bugs(language, source))
    assert first == list(candidate_bugs(language, source))
    assert list(candidate_bugs(language, source, random.Random(7))) == list(candidate_bugs(language, source, random.Random(7)))
    texts = [text for _, _, text in first]
    assert len(set(texts)) == len(texts)
    for text in texts:
        assert text != source
        assert syntax.parses(language, text)  # a full parse, not the incremental one the module uses


def test_whole_file_text_of_a_branch_swap():
    (text,) = [t for _, kind, t in candidate_bugs("go", SOURCES["go"]) if kind == "ctrl_invert_if"]
    assert text == SOURCES["go"].replace("""	if total > lo {
		total = lo - 1
	} else {
		return 0
	}""", """	if total > lo {
		return 0
	} else {
		total = lo - 1
	}""")


def test_rng_picks_among_swe_smith_alternatives():
    source = "function f(a, b) {\n  return a - b;\n}\n"
    seen = set()
    for seed in range(30):
        for _, kind, text in candidate_bugs("javascript", source, random.Random(seed)):
            if kind == "op_change":
                seen.add(text.splitlines()[1].strip())
    assert seen == {"return a + b;", "return a * b;"}


def test_precedence_keeps_the_tree_shape():
    source = "class A { int f(int a, int b, int c) { return a - b * c; } }"
    bugs = {text.split("return ")[1].split(";")[0] for _, kind, text in candidate_bugs("java", source, random.Random(0))
            if kind in ("op_change", "op_swap")}
    # "b * c" changed to "+" must stay the right operand; moving "b * c" left needs no parentheses
    assert "b * c - a" in bugs
    rng_texts = set()
    for seed in range(20):
        for _, kind, text in candidate_bugs("java", source, random.Random(seed)):
            if kind == "op_change":
                rng_texts.add(text.split("return ")[1].split(";")[0])
    assert "a - (b + c)" in rng_texts and "a - b / c" in rng_texts
    swap = "package p\nfunc f(a, b, c int) int {\n\treturn a - (b - c)\n}\n"
    assert [t.splitlines()[2] for _, k, t in candidate_bugs("go", swap) if k == "op_swap"] == [
        "\treturn (b - c) - a", "\treturn a - (c - b)"]


def test_edits_that_must_not_be_made():
    # equal branches (up to comments and whitespace) are not swapped; an else-if chain is not an if/else
    js = """function f(x) {
  if (x) {
    g(); // one
  } else {
    g();
  }
  if (x > 1) {
    return 1;
  } else if (x > 0) {
    return 2;
  } else {
    return 3;
  }
}
"""
    kinds = [kind for _, kind, _ in candidate_bugs("javascript", js)]
    assert "ctrl_invert_if" not in kinds
    assert kinds.count("remove_cond") == 2  # the two top-level ifs, not the "else if"
    # a string concatenation keeps its "+"
    assert not [k for _, k, _ in candidate_bugs("java", 'class A { String f(int n) { return "n=" + n; } }') if k == "op_change"]
    # Go: case labels and array sizes are not constants to move
    go = "package p\nfunc f(x int) [4]int {\n\tvar a [4]int\n\tswitch x {\n\tcase 1:\n\t\treturn a\n\t}\n\treturn a\n}\n"
    assert [k for _, k, _ in candidate_bugs("go", go) if k == "op_change_const"] == []
    # Rust: an if that is the block's value is not a statement to drop
    rust = "fn f(x: u32) -> u32 {\n    if x > 1 { 2 } else { 3 }\n}\n"
    assert "remove_cond" not in [k for _, k, _ in candidate_bugs("rust", rust)]
    # code outside every function is never touched
    assert all("const LIMIT = 3;" in text for _, _, text in candidate_bugs("javascript", SOURCES["javascript"]))


def test_unparseable_files_and_unknown_languages():
    assert list(candidate_bugs("cpp", "int f() { return 1 + ; }")) == []
    with pytest.raises(ValueError, match="no procedural modifiers for 'python'"):
        list(candidate_bugs("python", "def f(): return 1\n"))


def test_typescript_uses_its_own_grammar():
    source = "export function f(xs: number[]): number {\n  return xs.length - 1;\n}\n"
    found = [(name, kind) for name, kind, _ in candidate_bugs("typescript", source)]
    assert ("f", "op_change") in found and ("f", "op_change_const") in found


def test_a_concatenation_chain_keeps_its_plus():
    source = 'class A { String f(int h, int m) { return "hits=" + h + ", misses=" + m; } }'
    changed = [t for _, k, t in candidate_bugs("java", source) if k == "op_change"]
    assert changed == []  # every "+" here joins strings: "-" would not compile
    swapped = [t.split("return ")[1].split(";")[0] for _, k, t in candidate_bugs("java", source) if k == "op_swap"]
    assert swapped == ['m + ("hits=" + h + ", misses=")', '", misses=" + ("hits=" + h) + m', 'h + "hits=" + ", misses=" + m']


SHUFFLE = {  # source, the run of simple statements, the run rotated by one
    "javascript": ("function f(a) {\n  const b = [];\n  b.push(a);\n  a.x = 1;\n  b.push(2);\n  return b;\n}\n",
                   "  b.push(a);\n  a.x = 1;\n  b.push(2);\n", "  a.x = 1;\n  b.push(2);\n  b.push(a);\n"),
    "go": ("package p\nfunc f(a []int) int {\n\tn := 0\n\tn++\n\ta[0] = n\n\treturn n\n}\n",
           "\tn++\n\ta[0] = n\n", "\ta[0] = n\n\tn++\n"),
    "rust": ("fn f(v: &mut Vec<u32>) -> u32 {\n    v.push(1);\n    v.push(2);\n    if v.is_empty() { v.push(3); }\n"
             "    v.len() as u32\n}\n", "    v.push(1);\n    v.push(2);\n", "    v.push(2);\n    v.push(1);\n"),
    "java": ("class A { void f(StringBuilder b) {\n    int n = 1;\n    b.append(n);\n    n += 2;\n    return;\n} }\n",
             "    b.append(n);\n    n += 2;\n", "    n += 2;\n    b.append(n);\n"),
    "cpp": ("void f(std::vector<int>& v) {\n    v.push_back(1);\n    v.clear();\n}\n",
            "    v.push_back(1);\n    v.clear();\n", "    v.clear();\n    v.push_back(1);\n"),
}


@pytest.mark.parametrize("language", sorted(SHUFFLE))
def test_ctrl_shuffle_moves_only_simple_statements(language):
    source, run, rotated = SHUFFLE[language]
    (text,) = [t for _, kind, t in candidate_bugs(language, source) if kind == "ctrl_shuffle"]
    assert text == source.replace(run, rotated)
    for seed in range(5):
        shuffled = [t for _, k, t in candidate_bugs(language, source, random.Random(seed)) if k == "ctrl_shuffle"]
        assert len(shuffled) == 1 and shuffled[0] != source and syntax.parses(language, shuffled[0])
        assert sorted(shuffled[0].splitlines()) == sorted(source.splitlines())  # the same lines, reordered


def test_rust_tests_beside_the_code_are_not_bugged():
    source = """pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(1, 2), 3);
    }
}

#[tokio::test]
async fn later() {
    let x = 1 + 2;
}
"""
    found = {(name, kind) for name, kind, _ in candidate_bugs("rust", source)}
    assert found == {("add", "op_change")}


def test_go_blank_assignments_stay():
    source = "package p\nfunc f(x int) int {\n\t_ = x\n\t_, _ = x, x\n\ty := 0\n\ty = x\n\treturn y\n}\n"
    removed = [changes(source, t) for _, k, t in candidate_bugs("go", source) if k == "remove_assign"]
    assert removed == [["-\ty = x"]]
