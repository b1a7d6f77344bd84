"""Generates reduce-core/src/text/printable.rs from CPython's `str.isprintable`.

Run: python3 scripts/gen_printable.py
Python's repr() escapes every code point that is not printable (controls,
separators, format characters, surrogates, private use, unassigned); the
table lets Value's Debug print strings exactly as repr() does.
"""
import os
import subprocess
import sys
import unicodedata

ranges = []
start = None
for cp in range(0x110000):
    printable = chr(cp).isprintable()
    if not printable and start is None:
        start = cp
    elif printable and start is not None:
        ranges.append((start, cp - 1))
        start = None
if start is not None:
    ranges.append((start, 0x10FFFF))

out = os.path.join(os.path.dirname(__file__), "..", "reduce-core", "src", "text", "printable.rs")
with open(out, "w") as f:
    f.write(f"//! Code points Python's `repr` escapes (not `str.isprintable()`), as\n")
    f.write(f"//! inclusive ranges, from CPython {sys.version_info.major}.{sys.version_info.minor} "
            f"(Unicode {unicodedata.unidata_version}) by `scripts/gen_printable.py`.\n\n")
    f.write("static NOT_PRINTABLE: &[(u32, u32)] = &[\n")
    for a, b in ranges:
        f.write(f"    (0x{a:X}, 0x{b:X}),\n")
    f.write("];\n\n")
    f.write("/// Whether Python's `repr` shows this code point as itself.\n")
    f.write("pub(crate) fn is_printable(cp: u32) -> bool {\n")
    f.write("    NOT_PRINTABLE\n        .binary_search_by(|&(a, b)| {\n")
    f.write("        if cp < a {\n            std::cmp::Ordering::Greater\n")
    f.write("        } else if cp > b {\n            std::cmp::Ordering::Less\n")
    f.write("        } else {\n            std::cmp::Ordering::Equal\n        }\n    })\n        .is_err()\n}\n\n")
    f.write("#[cfg(test)]\nmod tests {\n    #[test]\n    fn matches_python_on_samples() {\n")
    f.write("        for (cp, want) in [(0x41, true), (0xA0, false), (0xAD, false), (0xFF, true), (0xD800, false), (0x1F600, true), (0x378, false)] {\n")
    f.write("            assert_eq!(super::is_printable(cp), want, \"{cp:#x}\");\n        }\n    }\n}\n")
subprocess.run(["rustfmt", "--edition", "2021", out], check=True)
print(len(ranges), "ranges")
