"""Generates reduce-core/src/text/compat.rs from CPython's `_compat_pickle`.

Run: python3 scripts/gen_compat.py
The tables are what `fix_imports=True` uses: protocol 0-2 pickles name Python 2
modules (`__builtin__`, `copy_reg`, ...) and readers map them to Python 3 names;
writers map them back at those protocols.
"""
import _compat_pickle as c
import os
import sys

out = os.path.join(os.path.dirname(__file__), "..", "reduce-core", "src", "text", "compat.rs")


def s(x):
    return '"' + x + '"'


lines = [
    "//! Python 2 <-> 3 names for `fix_imports`, generated from CPython "
    f"{sys.version_info.major}.{sys.version_info.minor}'s `_compat_pickle`",
    "//! by `scripts/gen_compat.py`. Do not edit by hand.",
    "",
    "/// A global's `(module, name)`.",
    "type Name = (&'static str, &'static str);",
    "",
    "/// `(module, name)` pairs renamed from Python 2 to Python 3 (`NAME_MAPPING`).",
    "pub(crate) static NAME_MAPPING: &[(Name, Name)] = &[",
]
for (m, n), (m3, n3) in sorted(c.NAME_MAPPING.items()):
    lines.append(f"    (({s(m)}, {s(n)}), ({s(m3)}, {s(n3)})),")
lines += ["];", "", "/// Modules renamed from Python 2 to Python 3 (`IMPORT_MAPPING`).",
          "pub(crate) static IMPORT_MAPPING: &[(&str, &str)] = &["]
for m, m3 in sorted(c.IMPORT_MAPPING.items()):
    lines.append(f"    ({s(m)}, {s(m3)}),")
lines += ["];", "", "/// `(module, name)` pairs written back under their Python 2 names (`REVERSE_NAME_MAPPING`).",
          "pub(crate) static REVERSE_NAME_MAPPING: &[(Name, Name)] = &["]
for (m, n), (m2, n2) in sorted(c.REVERSE_NAME_MAPPING.items()):
    lines.append(f"    (({s(m)}, {s(n)}), ({s(m2)}, {s(n2)})),")
lines += ["];", "", "/// Modules written back under their Python 2 names (`REVERSE_IMPORT_MAPPING`).",
          "pub(crate) static REVERSE_IMPORT_MAPPING: &[(&str, &str)] = &["]
for m, m2 in sorted(c.REVERSE_IMPORT_MAPPING.items()):
    lines.append(f"    ({s(m)}, {s(m2)}),")
lines += ["];", ""]
lines += [
    "/// The Python 3 name of a global read from a protocol 0-2 pickle.",
    "pub(crate) fn to_python3<'a>(module: &'a str, name: &'a str) -> (&'a str, &'a str) {",
    "    if let Ok(i) = NAME_MAPPING.binary_search_by(|(k, _)| k.cmp(&(module, name))) {",
    "        return NAME_MAPPING[i].1;",
    "    }",
    "    match IMPORT_MAPPING.binary_search_by(|(k, _)| k.cmp(&module)) {",
    "        Ok(i) => (IMPORT_MAPPING[i].1, name),",
    "        Err(_) => (module, name),",
    "    }",
    "}",
    "",
    "/// The Python 2 name under which a protocol 0-2 pickle writes a global.",
    "pub(crate) fn to_python2<'a>(module: &'a str, name: &'a str) -> (&'a str, &'a str) {",
    "    if let Ok(i) = REVERSE_NAME_MAPPING.binary_search_by(|(k, _)| k.cmp(&(module, name))) {",
    "        return REVERSE_NAME_MAPPING[i].1;",
    "    }",
    "    match REVERSE_IMPORT_MAPPING.binary_search_by(|(k, _)| k.cmp(&module)) {",
    "        Ok(i) => (REVERSE_IMPORT_MAPPING[i].1, name),",
    "        Err(_) => (module, name),",
    "    }",
    "}",
    "",
    "#[cfg(test)]",
    "mod tests {",
    "    use super::*;",
    "",
    "    #[test]",
    "    fn tables_are_sorted_for_binary_search() {",
    "        assert!(NAME_MAPPING.windows(2).all(|w| w[0].0 < w[1].0));",
    "        assert!(IMPORT_MAPPING.windows(2).all(|w| w[0].0 < w[1].0));",
    "        assert!(REVERSE_NAME_MAPPING.windows(2).all(|w| w[0].0 < w[1].0));",
    "        assert!(REVERSE_IMPORT_MAPPING.windows(2).all(|w| w[0].0 < w[1].0));",
    "    }",
    "",
    "    #[test]",
    "    fn builtins_map_both_ways() {",
    "        assert_eq!(to_python3(\"__builtin__\", \"set\"), (\"builtins\", \"set\"));",
    "        assert_eq!(to_python3(\"__builtin__\", \"xrange\"), (\"builtins\", \"range\"));",
    "        assert_eq!(to_python2(\"builtins\", \"set\"), (\"__builtin__\", \"set\"));",
    "        assert_eq!(to_python2(\"copyreg\", \"_reconstructor\"), (\"copy_reg\", \"_reconstructor\"));",
    "        assert_eq!(to_python2(\"_codecs\", \"encode\"), (\"_codecs\", \"encode\"));",
    "    }",
    "}",
]
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")

import subprocess  # noqa: E402  (format the output as `cargo fmt` would)

subprocess.run(["rustfmt", "--edition", "2021", out], check=True)
