#!/usr/bin/env python3
"""Module-level import cycles in the crate (issue 9, issue 23).

Usage: module_cycles.py SRC_DIR      the crate's own source, read directly (tests/run.sh)
       module_cycles.py GRAPH.dot    a cargo-modules graph (tests/module-graph.sh)

From the source it sees every path a module names another by: `use` declarations (nested
braces included, and a `pub use` re-export followed to the module that defines the name) and
inline paths anywhere in the code (`crate::a::b(..)`, `super::x::Y`, `$crate::` in a macro).
cargo-modules sees only the first kind, so `super::local::token_document(..)` in a function
body made a cycle it did not report. Comments, string literals and `#[cfg(test)]` items are
left out: a unit test may use what it likes.

A module's use of its parent's item, or a parent's of its child's, is the module's own
structure, not a dependency between nouns; every other edge is kept, lifted to modules. The
strongly connected components of that graph, and of the top-level modules' graph, must all be
single modules. Exit status 1 when one is not; the cycles are named.
"""
import collections
import os
import re
import sys

CRATE = "crate"


def strip(text):
    """The code without comments, string and char literals (a path in a doc or a message is
    not a dependency)."""
    out = []
    i, n = 0, len(text)
    raw = re.compile(r'b?r(#*)"')
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := raw.match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find('"' + m.group(1), m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and (m := re.compile(r"'(\\.[^']*|[^'\\])'").match(text, i)):
            i = m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(code):
    """The code without the items marked `#[cfg(test)]`."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        if m.start() < i:
            continue
        out.append(code[i:m.start()])
        j = m.end()
        while j < len(code) and code[j] not in "{;":
            j += 1
        if j < len(code) and code[j] == "{":
            depth = 0
            while j < len(code):
                depth += {"{": 1, "}": -1}.get(code[j], 0)
                j += 1
                if depth == 0:
                    break
        else:
            j += 1
        i = j
    out.append(code[i:])
    return "".join(out)


class Crate:
    """The module tree of a crate, from its files, and the code of each module."""

    def __init__(self, src):
        self.code = {}  # module path ("crate::a::b") -> its code, child modules' files apart
        self.children = collections.defaultdict(set)
        root = os.path.join(src, "lib.rs")
        if not os.path.exists(root):
            root = os.path.join(src, "main.rs")
        self._load(CRATE, root, os.path.dirname(root))

    def _load(self, module, path, child_dir):
        code = drop_test_items(strip(open(path, encoding="utf-8").read()))
        self._module(module, code, child_dir)

    def _module(self, module, code, child_dir):
        # Inline modules (`mod x { .. }`) are modules of their own.
        rest, i = [], 0
        for m in re.finditer(r"\bmod\s+(\w+)\s*([;{])", code):
            if m.start() < i:
                continue
            name = m.group(1)
            child = f"{module}::{name}"
            self.children[module].add(name)
            rest.append(code[i:m.start()])
            if m.group(2) == ";":
                i = m.end()
                for candidate in (os.path.join(child_dir, name + ".rs"),
                                  os.path.join(child_dir, name, "mod.rs")):
                    if os.path.exists(candidate):
                        self._load(child, candidate, os.path.join(child_dir, name))
                        break
            else:
                j, depth = m.end() - 1, 0
                while j < len(code):
                    depth += {"{": 1, "}": -1}.get(code[j], 0)
                    j += 1
                    if depth == 0:
                        break
                self._module(child, code[m.end():j - 1], os.path.join(child_dir, name))
                i = j
        rest.append(code[i:])
        self.code[module] = "".join(rest)

    def is_module(self, path):
        return path in self.code


def use_trees(code):
    """Every path a `use` declaration brings in, as lists of segments, and whether it is a
    re-export (`pub` or `pub(..) use`)."""
    for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]*);", code):
        public = m.group(1) is not None
        tree = re.sub(r"\s*([{},]|::)\s*", r"\1", re.sub(r"\s+", " ", m.group(2))).strip()
        for path, alias in expand(tree):
            yield path, alias, public


def expand(tree, prefix=()):
    """`a::{b,c::{d,e}}` -> [a,b], [a,c,d], [a,c,e] (with the name each is known by)."""
    i = tree.find("{")
    if i < 0:
        alias = None
        renamed = re.fullmatch(r"(.*\S)\s+as\s+(\w+)", tree)
        if renamed:
            tree, alias = renamed.groups()
        parts = [p for p in tree.split("::") if p]
        path = list(prefix) + parts
        yield path, alias or (path[-1] if path else None)
        return
    head = [p for p in tree[:i].split("::") if p]
    inner = tree[i + 1:tree.rfind("}")]
    depth, start = 0, 0
    pieces = []
    for j, c in enumerate(inner):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            pieces.append(inner[start:j])
            start = j + 1
    pieces.append(inner[start:])
    for piece in pieces:
        if piece:
            yield from expand(piece, tuple(prefix) + tuple(head))


INLINE = re.compile(r"(?<![\w:])(\$?crate|super|self)((?:::\w+)+)")


class Graph:
    def __init__(self, crate):
        self.crate = crate
        # Re-exports: module -> name -> the path it stands for (absolute segments).
        self.exports = collections.defaultdict(dict)
        for module, code in crate.code.items():
            for path, alias, public in use_trees(code):
                if public and path and path[-1] not in ("*", "self"):
                    absolute = self.absolute(module, path)
                    if absolute:
                        self.exports[module][alias] = absolute

    def absolute(self, module, path):
        """`path` as named in `module`, from the crate root; None for another crate's."""
        first, rest = path[0], path[1:]
        if first in ("crate", "$crate"):
            segments = [CRATE]
        elif first == "super":
            segments = module.split("::")[:-1]
            while rest and rest[0] == "super":
                segments, rest = segments[:-1], rest[1:]
        elif first == "self":
            segments = module.split("::")
        elif first in self.crate.children[module]:
            segments, rest = module.split("::"), path
        elif module == CRATE or first not in self.crate.children[CRATE]:
            return None  # another crate (std, serde, ...)
        else:
            return None
        return segments + list(rest)

    def target(self, segments, seen=0):
        """The module that defines what `segments` names: the longest module prefix, and a
        re-exported name followed to where it comes from."""
        module = CRATE
        for k in range(1, len(segments) + 1):
            candidate = "::".join(segments[:k])
            if self.crate.is_module(candidate):
                module = candidate
                continue
            name = segments[k - 1]
            again = self.exports.get(module, {}).get(name)
            if again and seen < 8:
                return self.target(again + segments[k:], seen + 1)
            break
        return module

    def edges(self):
        edges = collections.defaultdict(set)
        for module, code in self.crate.code.items():
            paths = [p for p, _, _ in use_trees(code)]
            body = re.sub(r"\buse\s+[^;]*;", "", code)
            for m in INLINE.finditer(body):
                paths.append([m.group(1)] + [s for s in m.group(2).split("::") if s])
            for path in paths:
                absolute = self.absolute(module, path)
                if not absolute:
                    continue
                to = self.target(absolute)
                if to == module or to.startswith(module + "::") or module.startswith(to + "::"):
                    continue
                edges[module].add(to)
        return edges


def components(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(10000)
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            found.append(comp)

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            strong(v)
    return [sorted(c) for c in found if len(c) > 1]


def top_level(edges, root):
    top = collections.defaultdict(set)
    depth = len(root.split("::")) + 1
    for a, bs in edges.items():
        for b in bs:
            ta, tb = "::".join(a.split("::")[:depth]), "::".join(b.split("::")[:depth])
            if ta != tb:
                top[ta].add(tb)
    return top


def report(modules, edges, root):
    """The report lines, and whether there is a cycle."""
    lines = []
    cycles = components(edges)
    lines.append(f"modules: {modules}, module-level use edges: "
                 f"{sum(len(s) for s in edges.values())}, cycles: {len(cycles)}")
    for c in cycles:
        lines.append("cycle: " + " <-> ".join(c) + "   (" + witness(edges, c) + ")")
    top = top_level(edges, root)
    for a in sorted(top):
        lines.append(f"{a.replace(root + '::', '')} -> "
                     + ", ".join(sorted(x.replace(root + '::', '') for x in top[a])))
    top_cycles = components(top)
    lines.append(f"top-level cycles: {len(top_cycles)}")
    for c in top_cycles:
        lines.append("top-level cycle: " + " <-> ".join(c))
    return lines, bool(cycles or top_cycles)


def witness(edges, comp):
    """The edges inside one cycle, so that the line says which use to cut."""
    inside = set(comp)
    return ", ".join(f"{a} -> {b}" for a in comp for b in sorted(edges.get(a, ())) if b in inside)


def from_source(src):
    crate = Crate(src)
    edges = Graph(crate).edges()
    return report(len(crate.code), edges, CRATE)


def from_dot(path):
    text = open(path, encoding="utf-8").read()
    nodes = {}
    for m in re.finditer(r'^\s*"([^"]+)" \[label="([^|"]*)\|', text, re.M):
        nodes[m.group(1)] = m.group(2).split()[-1]
    mods = {n for n, k in nodes.items() if k in ("mod", "crate")}

    def module_of(n):
        while n not in mods and "::" in n:
            n = n.rsplit("::", 1)[0]
        return n

    edges = collections.defaultdict(set)
    for a, b in re.findall(r'^\s*"([^"]+)" -> "([^"]+)" \[label="uses"', text, re.M):
        if not b.startswith("fleetcert"):
            continue
        ma, mb = module_of(a), module_of(b)
        if ma == mb or ma.startswith(mb + "::") or mb.startswith(ma + "::"):
            continue
        edges[ma].add(mb)
    return report(len(mods), edges, "fleetcert")


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    lines, cyclic = (from_source if os.path.isdir(argv[1]) else from_dot)(argv[1])
    print("\n".join(lines))
    return 1 if cyclic else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
