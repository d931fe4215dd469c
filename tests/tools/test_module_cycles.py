#!/usr/bin/env python3
"""The cycle check finds a cycle through every kind of path, and none where there is none.

Run: python3 -m unittest discover -s tests/tools   (tests/run.sh runs it before the check)
"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import module_cycles  # noqa: E402


def crate(files):
    """A crate's src/ in a temporary directory, from {path: code}."""
    root = tempfile.mkdtemp()
    for path, code in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(code)
    return root


BASE = {
    "lib.rs": "mod a;\nmod b;\nmod shared;\n",
    "a/mod.rs": "mod one;\nmod two;\npub(crate) use two::Two;\n",
    "a/one.rs": "use super::Two;\npub(crate) fn one() -> Two { Two }\n",
    "a/two.rs": "pub(crate) struct Two;\n",
    "b.rs": "use crate::shared::S;\npub(crate) fn b(_: S) {}\n",
    "shared.rs": "pub(crate) struct S;\n",
}


def check(files):
    lines, cyclic = module_cycles.from_source(crate(files))
    return "\n".join(lines), cyclic


class Cycles(unittest.TestCase):
    def test_no_cycle_in_a_layered_crate(self):
        report, cyclic = check(BASE)
        self.assertFalse(cyclic, report)
        self.assertIn("cycles: 0", report)

    def assert_cycle(self, path, text, needle):
        """BASE with `path` holding `text` has a cycle, and the report names it."""
        report, cyclic = check(dict(BASE, **{path: text}))
        self.assertTrue(cyclic, report)
        self.assertIn(needle, report)

    def test_an_inline_super_path_in_a_body_closes_a_cycle(self):
        # one -> two through a re-export in the parent, two -> one by an inline path.
        self.assert_cycle(
            "a/two.rs",
            "pub(crate) struct Two;\nfn f() { super::one::one(); }\n",
            "cycle: crate::a::one <-> crate::a::two",
        )

    def test_an_inline_crate_path_closes_a_top_level_cycle(self):
        self.assert_cycle(
            "shared.rs",
            "pub(crate) struct S;\nfn f() { let _ = crate::b::b; }\n",
            "top-level cycle: crate::b <-> crate::shared",
        )

    def test_a_nested_use_tree_with_a_rename_closes_a_cycle(self):
        self.assert_cycle(
            "shared.rs",
            "use crate::{a::Two as T, b::{self as bee}};\npub(crate) struct S;\n",
            "crate::b <-> crate::shared",
        )

    def test_comments_strings_and_unit_tests_are_not_dependencies(self):
        files = dict(BASE)
        files["shared.rs"] = (
            "//! Used by `crate::b::b`.\npub(crate) struct S;\n"
            "fn f() -> &'static str { \"crate::b::b\" }\n"
            "#[cfg(test)]\nmod tests {\n    use crate::b::b;\n}\n"
        )
        report, cyclic = check(files)
        self.assertFalse(cyclic, report)


if __name__ == "__main__":
    unittest.main()
