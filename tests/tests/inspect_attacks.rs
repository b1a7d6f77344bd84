//! `inspect::globals` cannot be fooled: each pickle of the attack corpus
//! (`tests/fixtures/attacks/`, assembled by `generate.py`) reports exactly
//! the resolutions its manifest lists, and on every fixture of the
//! repository the inspector lists the same globals, in the same order, at
//! the same offsets, as CPython's own unpickler resolves (`trace.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use reduce::inspect::{self, Named, Resolution};
use reduce_tests::{fixtures, manifest};

/// A resolution as `trace.py` prints it.
fn line(r: &Resolution) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('\n', "\\n");
    let op = reduce::op::name(r.opcode).expect("a resolving opcode has a name");
    match &r.named {
        Named::Global(g) => format!(
            "{} {op} {}:{}",
            r.offset,
            escape(&g.module),
            escape(&g.name)
        ),
        Named::Extension(code) => format!("{} {op} #{code}", r.offset),
        Named::Computed => format!("{} {op} ?", r.offset),
        other => panic!("a kind of resolution this test does not know: {other:?}"),
    }
}

fn attacks() -> Vec<(String, Vec<u8>, String)> {
    let dir = fixtures().join("attacks");
    manifest(&dir.join("manifest.tsv"))
        .into_iter()
        .map(|row| {
            let bytes = std::fs::read(dir.join(&row["file"])).expect("read attack");
            (row["file"].clone(), bytes, row["expected"].clone())
        })
        .collect()
}

#[test]
fn each_attack_reports_exactly_its_manifest() {
    let attacks = attacks();
    assert!(attacks.len() >= 24, "the attack corpus is missing");
    let mut computed = 0;
    for (file, bytes, expected) in &attacks {
        let found = inspect::globals(bytes);
        if expected == "error" {
            let err = found.expect_err(file);
            assert!(err.offset().is_some(), "{file}: {err} has no offset");
            continue;
        }
        let found = found.unwrap_or_else(|e| panic!("{file}: {e}"));
        computed += found.iter().filter(|r| r.named == Named::Computed).count();
        let ours: Vec<String> = found.iter().map(line).collect();
        assert_eq!(ours.join("; "), *expected, "{file}");
    }
    assert!(computed >= 5, "{computed} computed names in the corpus");
}

#[test]
fn malformed_attacks_fail_at_the_opcode_that_cannot_run() {
    let dir = fixtures().join("attacks");
    for (file, op) in [
        ("no_module.pickle", reduce::op::STACK_GLOBAL),
        ("mark_fences.pickle", reduce::op::STACK_GLOBAL),
        ("missing_memo.pickle", reduce::op::BINGET),
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let err = inspect::globals(&bytes).unwrap_err();
        let at = bytes.iter().position(|&b| b == op).unwrap() as u64;
        assert_eq!(
            (err.offset(), err.opcode()),
            (Some(at), Some(op)),
            "{file}: {err}"
        );
    }
    // Every strict prefix of every attack is an error, never a panic.
    for (file, bytes, _) in attacks() {
        for end in 0..bytes.len() {
            assert!(
                inspect::scan_one(&bytes[..end]).is_err(),
                "{file}: a prefix of {end} bytes was accepted"
            );
        }
    }
}

#[test]
fn scan_one_walks_a_stream_of_pickles() {
    let good: Vec<_> = attacks()
        .into_iter()
        .filter(|(_, _, expected)| expected != "error")
        .collect();
    let stream: Vec<u8> = good.iter().flat_map(|(_, b, _)| b.clone()).collect();
    let mut at = 0;
    for (file, bytes, _) in &good {
        let (found, len) =
            inspect::scan_one(&stream[at..]).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(len, bytes.len(), "{file}: length");
        assert_eq!(found, inspect::globals(bytes).unwrap(), "{file}");
        at += len;
    }
    assert_eq!(at, stream.len());
}

/// Every pickle under `tests/fixtures/`: the attacks, the corpus,
/// CPython's pickletester vectors (good and bad) and the fuzzers' findings.
fn every_fixture() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "attacks",
        "corpus",
        "pickletester",
        "pickletester/bad",
        "fuzz",
    ] {
        for entry in std::fs::read_dir(fixtures().join(dir)).expect("fixture dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "pickle") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn globals_are_what_cpython_resolves_on_every_fixture() {
    let files = every_fixture();
    let out = reduce_tests::python3()
        .arg(fixtures().join("attacks").join("trace.py"))
        .args(&files)
        .output()
        .expect("run trace.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("trace.py prints UTF-8");
    // File -> (resolutions, CPython loaded it).
    let mut traced: HashMap<String, (Vec<String>, bool)> = HashMap::new();
    let mut current = String::new();
    for l in text.lines() {
        if let Some(f) = l.strip_prefix("FILE ") {
            current = f.to_string();
            traced.insert(current.clone(), (Vec::new(), false));
        } else if l == "OK" {
            traced.get_mut(&current).unwrap().1 = true;
        } else if !l.starts_with("ERROR ") {
            traced.get_mut(&current).unwrap().0.push(l.to_string());
        }
    }
    assert_eq!(traced.len(), files.len(), "trace.py skipped files");
    let (mut agreed, mut both_refused, mut named) = (0, 0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let (theirs, loaded) = &traced[&path.display().to_string()];
        let ours = inspect::globals(&bytes);
        let file = path.display();
        match (ours, loaded) {
            (Ok(found), _) => {
                // Where CPython fails, the inspector may still walk the whole
                // pickle (it does not type-check calls), but it must not
                // report a global CPython never reached.
                let ours: Vec<String> = found.iter().map(line).collect();
                assert_eq!(&ours, theirs, "{file} (CPython loaded it: {loaded})");
                agreed += 1;
                named += usize::from(!ours.is_empty());
            }
            (Err(e), true) => panic!("{file}: CPython loads it, the inspector fails: {e}"),
            (Err(_), false) => both_refused += 1,
        }
    }
    // Lower bounds, so that the comparison cannot pass by checking nothing.
    assert!(agreed >= 500, "{agreed} fixtures agreed");
    assert!(named >= 190, "{named} fixtures name globals");
    assert!(
        both_refused >= 230,
        "{both_refused} fixtures refused by both"
    );
}

/// Damaged pickles: whatever the reader still loads, the inspector walks to
/// the same `STOP` (`fuzz::load_value` checks that), and whatever it
/// refuses is refused with an offset.
#[test]
fn damaged_pickles_are_walked_wherever_they_load() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let (mut walked, mut refused) = (0, 0);
    for path in every_fixture() {
        let bytes = std::fs::read(&path).unwrap();
        if bytes.is_empty() || bytes.len() > 4096 {
            continue;
        }
        for _ in 0..16 {
            let mut damaged = bytes.clone();
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] = next() as u8;
            reduce_tests::fuzz::load_value(&damaged);
            match inspect::scan_one(&damaged) {
                Ok(_) => walked += 1,
                Err(e) => {
                    assert!(e.offset().is_some(), "{}: {e}", path.display());
                    refused += 1;
                }
            }
        }
    }
    assert!(
        walked > 1000 && refused > 1000,
        "{walked} walked, {refused} refused"
    );
}
