//! The inspection API agrees with `pickletools`: every opcode of every
//! corpus fixture at the same offset, with the same name and the same
//! argument (compared as Python's `repr`), and the globals a pickle names.

use std::collections::HashMap;

use reduce::inspect;
use reduce_tests::{fixtures, manifest};

#[test]
fn disassembly_matches_pickletools_on_the_corpus() {
    let dir = fixtures().join("corpus");
    let script = r#"
import pickletools, sys, os
d = sys.argv[1]
for line in open(os.path.join(d, 'manifest.tsv')).read().splitlines()[1:]:
    f = line.split('\t')[0]
    print('FILE', f)
    for op, arg, pos in pickletools.genops(open(os.path.join(d, f), 'rb').read()):
        print(pos, op.name, repr(arg).replace('\n', '\\n'))
"#;
    let out = reduce_tests::python3()
        .args(["-c", script])
        .arg(&dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("FILE ") {
            current = f.to_string();
            expected.insert(current.clone(), Vec::new());
        } else {
            expected.get_mut(&current).unwrap().push(line.to_string());
        }
    }
    let rows = manifest(&dir.join("manifest.tsv"));
    assert_eq!(expected.len(), rows.len());
    let mut checked = 0;
    for row in rows {
        let bytes = std::fs::read(dir.join(&row["file"])).unwrap();
        let ops = inspect::disassemble(&bytes).unwrap_or_else(|e| panic!("{}: {e}", row["file"]));
        let ours: Vec<String> = ops
            .iter()
            .map(|i| format!("{} {} {}", i.offset, i.name, i.arg).replace('\n', "\\n"))
            .collect();
        let theirs = &expected[&row["file"]];
        assert_eq!(ours.len(), theirs.len(), "{}: opcode count", row["file"]);
        for (a, b) in ours.iter().zip(theirs) {
            assert!(
                a == b,
                "{}:\n  reduce:      {:.200}\n  pickletools: {:.200}",
                row["file"],
                a,
                b
            );
            checked += 1;
        }
    }
    assert!(checked > 100_000, "{checked} opcodes checked");
}

#[test]
fn globals_lists_what_a_pickle_would_call() {
    // Protocol 4 instances: STACK_GLOBAL operands come through the memo.
    let dir = fixtures().join("corpus");
    let bytes = std::fs::read(dir.join("inst_shared.p4.pickle")).unwrap();
    let names: Vec<String> = inspect::globals(&bytes)
        .unwrap()
        .iter()
        .map(|r| r.named.to_string())
        .collect();
    assert_eq!(names, vec!["fixtures_classes.Plain"]);
    let bytes = std::fs::read(dir.join("complex.p2.pickle")).unwrap();
    let names: Vec<String> = inspect::globals(&bytes)
        .unwrap()
        .iter()
        .map(|r| r.named.to_string())
        .collect();
    assert_eq!(names, vec!["__builtin__.complex"]);
    let bytes = std::fs::read(dir.join("sets.p5.pickle")).unwrap();
    assert!(
        inspect::globals(&bytes).unwrap().is_empty(),
        "plain data at protocol 5 names nothing"
    );
    let bytes = std::fs::read(dir.join("sets.p2.pickle")).unwrap();
    let names: Vec<String> = inspect::globals(&bytes)
        .unwrap()
        .iter()
        .map(|r| r.named.to_string())
        .collect();
    assert_eq!(names, vec!["__builtin__.set"]);
    // Truncated input is an error with its offset, as for loading.
    let err = inspect::disassemble(b"\x80\x04\x8c\x05ab").unwrap_err();
    assert_eq!(err.offset(), Some(2));
}

/// Arguments the corpus never has, shown as `pickletools` shows them:
/// checks that belong to loading (a negative memo key, extension code 0,
/// protocol 7) are not the disassembler's.
#[test]
fn disassembly_shows_odd_arguments_as_pickletools_does() {
    let cases: [&[u8]; 6] = [
        b"g-1\n.",
        b"p-5\n.",
        b"\x82\x00.",
        b"\x80\x07.",
        b"I 12 \n.",
        b"\x84\xff\xff\xff\xff.",
    ];
    let script = r#"
import pickletools, sys
for arg in sys.argv[1:]:
    ops = pickletools.genops(bytes.fromhex(arg))
    print(' | '.join(f'{pos} {op.name} {arg!r}' for op, arg, pos in ops))
"#;
    let out = reduce_tests::python3()
        .args(["-c", script])
        .args(
            cases
                .iter()
                .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        )
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for (case, theirs) in cases.iter().zip(text.lines()) {
        let ours: Vec<String> = inspect::disassemble(case)
            .unwrap_or_else(|e| panic!("{case:?}: {e}"))
            .iter()
            .map(|i| format!("{} {} {}", i.offset, i.name, i.arg))
            .collect();
        assert_eq!(ours.join(" | "), theirs, "{case:?}");
    }
    assert_eq!(text.lines().count(), cases.len());
}
