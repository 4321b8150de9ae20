"""hrmcode/data/syntax.py: languages by path, functions (nested, methods, multi-line signatures) in
real-looking sources of every language, and parses() on broken code."""

from __future__ import annotations

import threading

import pytest

from hrmcode.data import syntax
from hrmcode.data.synthesize.symbols import Symbol, file_symbols, touched_in_file, touched_in_hunks
from hrmcode.diffs import diff_texts, parse_patch


def names(language: str, source: str) -> list[tuple[str, int, int]]:
    return [(f.name, f.start_line, f.end_line) for f in syntax.functions(language, source)]


@pytest.mark.parametrize("path,language", [
    ("a/b.py", "python"), ("x.pyi", "python"), ("index.js", "javascript"), ("m.mjs", "javascript"),
    ("c.cjs", "javascript"), ("App.jsx", "javascript"), ("t.ts", "typescript"), ("v.tsx", "tsx"),
    ("main.go", "go"), ("lib.rs", "rust"), ("A.java", "java"), ("a.cc", "cpp"), ("a.CPP", "cpp"),
    ("a.cxx", "cpp"), ("a.hpp", "cpp"), ("a.hh", "cpp"), ("a.h", "cpp"), ("a.c", "cpp"),
    ("README.md", None), ("Makefile", None), ("x.rb", None),
])
def test_language_of(path, language):
    assert syntax.language_of(path) == language


GO = '''package difflib

import "strings"

// SequenceMatcher compares sequences.
type SequenceMatcher struct {
	a, b []string
}

type Matcher interface {
	Ratio() float64
}

func (m *SequenceMatcher) SetSeqs(a,
	b []string) {
	m.a = a
	m.b = b
}

func (m SequenceMatcher) Ratio() float64 {
	total := func(xs []string) int { return len(xs) }
	return float64(total(m.a)) / 2
}

func max[T int | float64](x, y T) T {
	if x > y {
		return x
	}
	return y
}

func asm(x int) int
'''


def test_go_functions_methods_generics_multiline():
    assert names("go", GO) == [
        ("SequenceMatcher.SetSeqs", 14, 18),
        ("SequenceMatcher.Ratio", 20, 23),
        ("max", 25, 30),
    ]
    types = [f.name for f in syntax.definitions("go", GO) if f.kind == "type"]
    assert types == ["SequenceMatcher", "Matcher"]


RUST = '''use std::fmt;

/// A pair.
pub struct Pair<T> {
    left: T,
}

impl<T: fmt::Debug> fmt::Debug for Pair<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.left)
    }
}

pub trait Shape {
    fn area(&self) -> f64;
    fn double(&self) -> f64 {
        self.area() * 2.0
    }
}

mod inner {
    pub(crate) async unsafe fn helper(
        x: u32,
        y: u32,
    ) -> u32 {
        fn nested(z: u32) -> u32 { z }
        nested(x + y)
    }
}

macro_rules! square {
    ($x:expr) => { $x * $x };
}
'''


def test_rust_impl_trait_mod_nested():
    assert names("rust", RUST) == [
        ("Pair.fmt", 9, 11),
        ("Shape.double", 16, 18),
        ("inner.helper", 22, 28),
        ("inner.helper.nested", 26, 26),
    ]
    kinds = {f.name: f.kind for f in syntax.definitions("rust", RUST)}
    assert kinds["Pair"] == "type" and kinds["Shape"] == "type" and kinds["inner"] == "type"


JAVA = '''package org.example;

import java.util.List;

public class Stack<T> {
    private final List<T> items;

    public Stack(List<T> items) {
        this.items = items;
    }

    @Override
    public synchronized <R extends Comparable<R>> R peek(
            int depth,
            boolean strict) throws IllegalStateException {
        return null;
    }

    public abstract static class Node {
        abstract int size();
        int twice() { return size() * 2; }
    }

    interface Visitor { void visit(Node n); }

    enum Color { RED; int code() { return 1; } }
}
'''


def test_java_constructor_annotations_nested_classes():
    assert names("java", JAVA) == [
        ("Stack.Stack", 8, 10),
        ("Stack.peek", 12, 17),
        ("Stack.Node.twice", 21, 21),
        ("Stack.Color.code", 26, 26),
    ]


CPP = '''#include <vector>
#define DECLARE_GETTER(name) int get_##name() const { return name; }

namespace geo {

template <typename T>
class Box {
public:
    explicit Box(T w) : w_(w) {}
    ~Box() {}
    T area() const noexcept { return w_ * w_; }
    void resize(T w);
    DECLARE_GETTER(w_)
private:
    T w_;
};

template <typename T>
void Box<T>::resize(
    T w)
{
    w_ = w;
}

static const char *
name_of(int code) {
    return code ? "yes" : "no";
}

}  // namespace geo

int main() { return 0; }
'''


def test_cpp_classes_templates_out_of_class_and_pointer_return():
    found = names("cpp", CPP)
    assert ("geo.Box.Box", 9, 9) in found
    assert ("geo.Box.~Box", 10, 10) in found
    assert ("geo.Box.area", 11, 11) in found
    assert ("geo.Box<T>::resize", 18, 23) in found  # the template header is part of the definition
    assert ("geo.name_of", 25, 28) in found
    assert ("main", 32, 32) == found[-1]
    assert "geo.Box.resize" not in [n for n, _, _ in found]  # a declaration has no body


JS = '''"use strict";
const MAX = 10;

class Range {
  constructor(raw, options) {
    this.raw = raw;
  }

  static get [Symbol.species]() { return Range; }

  test(version) {
    const check = (v) => v > 0;
    return check(version);
  }
}

function* ids(
  start,
  end,
) {
  yield start;
}

const inc = async (version, release) => {
  return version + 1;
};

exports.compare = function compare(a, b) {
  return a - b;
};

module.exports = {
  parse: function (s) { return s; },
  clean(s) { return s.trim(); },
};

export default function main() {}
'''


def test_javascript_classes_arrows_exports():
    assert names("javascript", JS) == [
        ("Range.constructor", 5, 7),
        ("Range.[Symbol.species]", 9, 9),
        ("Range.test", 11, 14),
        ("Range.test.check", 12, 12),
        ("ids", 17, 22),
        ("inc", 24, 26),
        ("exports.compare", 28, 30),
        ("parse", 33, 33),
        ("clean", 34, 34),
        ("main", 37, 37),
    ]


def test_typescript_and_tsx():
    ts = "export abstract class Repo<T> {\n  abstract find(id: string): T;\n  count(xs: T[]): number {\n    return xs.length;\n  }\n}\n"
    assert names("typescript", ts) == [("Repo.count", 3, 5)]
    tsx = "export function App(props: {n: number}) {\n  return <div>{props.n}</div>;\n}\n"
    assert names("tsx", tsx) == [("App", 1, 3)]


PY = '''import functools


@functools.cache
def outer(x):
    def inner(y):
        return y
    return inner(x)


class Index:
    def get_loc(
        self,
        key,
    ):
        return key

    async def fetch(self):
        pass
'''


def test_python_decorators_nested_methods():
    assert names("python", PY) == [("outer", 4, 8), ("outer.inner", 6, 7), ("Index.get_loc", 12, 16),
                                   ("Index.fetch", 18, 19)]


def test_byte_offsets_index_the_utf8_source():
    source = "// héllo wörld\nfunction f() { return 'ü'; }\n"
    (function,) = syntax.functions("javascript", source)
    assert source.encode()[function.start_byte:function.end_byte] == "function f() { return 'ü'; }".encode()


@pytest.mark.parametrize("language,good,broken", [
    ("python", "def f():\n    return 1\n", "def f(:\n    return 1\n"),
    ("javascript", "function f() { return 1; }", "function f() { return 1; "),  # MISSING "}"
    ("typescript", "let x: number = 1;", "let x: = 1;"),
    ("go", "package p\nfunc f() int { return 1 }\n", "package p\nfunc f() int { return 1 +  }\n"),
    ("rust", "fn f() -> u32 { 1 }", "fn f() -> u32 { let = 1; }"),
    ("java", "class A { int f() { return 1; } }", "class A { int f() { return 1 } }"),
    ("cpp", "int f() { return 1; }", "int f() { return 1 }"),
])
def test_parses(language, good, broken):
    assert syntax.parses(language, good)
    assert not syntax.parses(language, broken)


def test_a_broken_function_is_left_out_and_the_rest_found():
    source = "class A {\n  int ok() { return 1; }\n  int bad() { return 1 }\n  int fine() { return 2; }\n}\n"
    found = [f.name for f in syntax.functions("java", source)]
    assert "A.ok" in found and "A.fine" in found
    assert not any(name.endswith("bad") for name in found)


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="no tree-sitter grammar for 'cobol'"):
        syntax.functions("cobol", "IDENTIFICATION DIVISION.")


def test_threads_share_nothing_mutable():
    expected = names("go", GO)
    results: list[list] = []

    def work():
        for _ in range(20):
            results.append(names("go", GO))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and all(r == expected for r in results)


# -- synthesize's symbol finder on top of syntax -------------------------------------------------

MULTILINE_JS = """export const inc = async (
  version,
  release,
) => {
  return version + 1;
};

function plain() { return 1; }
"""

MACRO_CPP = """#define LOCKED(body) { lock(); body; unlock(); }
#define OPEN_NS namespace util {

static const char *
name_of(int code) {
    return code ? "{" : "}";
}

int add(int a, int b) { return a + b; }
"""


def test_symbols_the_regex_finder_missed():
    # the old line finder saw only "plain" (the arrow's parameters span lines), lost "add" after a
    # macro that opens a brace, and started name_of on its second line
    assert file_symbols(MULTILINE_JS, "javascript") == [Symbol("inc", 1, 6), Symbol("plain", 8, 8)]
    assert file_symbols(MACRO_CPP, "cpp") == [Symbol("name_of", 4, 7), Symbol("add", 9, 9)]
    assert file_symbols("x = 1\n", "cobol") == []


def test_touched_in_file_with_tree_sitter():
    after = MACRO_CPP.replace("return a + b;", "return a - b;")
    diff = diff_texts("u.cc", "u.cc", MACRO_CPP, after)
    assert touched_in_file(MACRO_CPP, diff, "cpp") == ["add"]


HUNKS_GO = """diff --git a/s.go b/s.go
--- a/s.go
+++ b/s.go
@@ -10,6 +10,6 @@ func (s *Server) Serve(l net.Listener) error {
 	defer l.Close()
 	for {
-		conn, err := l.Accept()
+		conn, err := l.Accept2()
 		if err != nil {
 			return err
 		}
@@ -40,5 +40,6 @@ type Server struct {
 }
 
 func (s *Server) Close() error {
 	s.mu.Lock() // {
+	s.closed = "}"
 	return nil
"""


def test_touched_in_hunks_reads_headers_and_signatures_with_tree_sitter():
    (diff,) = parse_patch(HUNKS_GO)
    assert touched_in_hunks(diff, "go") == ["Server.Serve", "Server.Close"]
    java = """diff --git a/A.java b/A.java
--- a/A.java
+++ b/A.java
@@ -3,4 +3,4 @@ public class Stack<T> {
     public static <T> List<T> of(T x) {
         if (x == null) {
-            return null;
+            return List.of();
         }
"""
    (diff,) = parse_patch(java)
    assert touched_in_hunks(diff, "java") == ["Stack.of"]


def test_touched_in_hunks_reads_a_signature_over_several_lines():
    patch = """diff --git a/s.go b/s.go
--- a/s.go
+++ b/s.go
@@ -3,8 +3,8 @@ import "net"
 
 // Serve accepts connections.
 func (s *Server) Serve(
 	l net.Listener,
 	opts Options,
 ) error {
-	return nil
+	return s.loop(l)
 }
"""
    (diff,) = parse_patch(patch)
    assert touched_in_hunks(diff, "go") == ["Server.Serve"]
    rust = """diff --git a/src/lib.rs b/src/lib.rs
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -10,6 +10,6 @@ impl Parser {
     pub fn parse<'a>(
         &self,
         input: &'a str,
     ) -> Result<Tree<'a>, Error> {
-        self.inner(input)
+        self.inner(input.trim())
     }
"""
    (diff,) = parse_patch(rust)
    assert touched_in_hunks(diff, "rust") == ["Parser.parse"]
