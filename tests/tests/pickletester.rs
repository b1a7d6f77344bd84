//! CPython's own test vectors from `test.pickletester`: the `DATA*` pickles
//! load to what they mean, and every bad input of its negative tests is an
//! error, never a panic.

use std::path::PathBuf;

use reduce::{Graph, Pickler, Unpickler};
use reduce_tests::{fixtures, manifest, python_check, Expect};

fn dir() -> PathBuf {
    fixtures().join("pickletester")
}

fn load(bytes: &[u8], inert: bool) -> reduce::Result<Graph> {
    Unpickler::from_slice(bytes).inert(inert).load()
}

/// Each `DATA*` vector loads in inert mode; written back by Rust at every
/// protocol, CPython loads an object equal to the one it loads from the
/// original vector (sharing structure included).
#[test]
fn data_vectors_load_to_what_they_mean() {
    let rows = manifest(&dir().join("manifest.tsv"));
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str()).collect();
    for want in [
        "DATA0",
        "DATA1",
        "DATA2",
        "DATA3",
        "DATA4",
        "DATA_SET",
        "DATA_XRANGE",
        "DATA_COOKIE",
    ] {
        assert!(
            names.contains(&want),
            "missing vector {want}: have {names:?}"
        );
    }
    let mut cases = Vec::new();
    for row in &rows {
        let path = dir().join(&row["file"]);
        let bytes = std::fs::read(&path).expect("read vector");
        let graph = load(&bytes, true).unwrap_or_else(|e| panic!("{}: {e}", row["name"]));
        for proto in 0..=5 {
            let mut out = Vec::new();
            Pickler::new(&mut out)
                .protocol(proto)
                .dump(&graph)
                .unwrap_or_else(|e| panic!("{} at protocol {proto}: {e}", row["name"]));
            cases.push((out, Expect::SameAs(path.clone())));
        }
    }
    python_check(&cases);
}

/// The plain-data part of the vectors reads as the values `pickletester`
/// builds: spot checks that do not go through CPython.
#[test]
fn data0_holds_the_expected_atoms() {
    let bytes = std::fs::read(dir().join("DATA0.pickle")).expect("read DATA0");
    let graph = load(&bytes, true).expect("DATA0 loads inert");
    let text = format!("{graph:?}");
    // create_data() starts its list with 0, 1, 2.0 and a complex.
    assert!(
        text.starts_with("[0, 1, 2.0, <reduce builtins.complex, (3.0, 0.0)>"),
        "{text}"
    );
    for atom in [
        "-1",
        "255",
        "-255",
        "-256",
        "65535",
        "-65535",
        "-65536",
        "2147483647",
        "-2147483647",
        "-2147483648",
    ] {
        assert!(
            text.contains(&format!(" {atom},")),
            "DATA0 lacks {atom}: {text}"
        );
    }
}

/// Every bad input is an error (in strict and in inert mode) whenever
/// CPython's C unpickler refuses it, and no input panics. The exception is a
/// `MemoryError`: that is C `_pickle` running out of memory on a huge memo
/// index it stores densely; pure-Python `pickle` loads those inputs, and so
/// does reduce, whose memo is sparse.
#[test]
fn bad_inputs_are_errors() {
    let bad = dir().join("bad");
    let rows = manifest(&bad.join("manifest.tsv"));
    assert!(rows.len() > 50, "too few bad inputs: {}", rows.len());
    let mut families = std::collections::BTreeMap::<String, usize>::new();
    for row in &rows {
        let bytes = std::fs::read(bad.join(&row["file"])).expect("read bad input");
        *families.entry(row["family"].clone()).or_default() += 1;
        for inert in [false, true] {
            let result = std::panic::catch_unwind(|| load(&bytes, inert));
            let Ok(result) = result else {
                panic!("{} panicked (inert: {inert})", row["file"]);
            };
            if row["python_error"] != "OK" && row["python_error"] != "MemoryError" {
                assert!(
                    result.is_err(),
                    "{} ({}): CPython raises {} but reduce loaded {:?}",
                    row["file"],
                    row["family"],
                    row["python_error"],
                    result.ok()
                );
            }
        }
    }
    for family in ["truncated", "bad_stack", "bad_mark", "badly_quoted_string"] {
        assert!(
            families.keys().any(|k| k.contains(family)),
            "no bad inputs of family {family}: {families:?}"
        );
    }
}
