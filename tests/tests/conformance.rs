//! The conformance corpus: every pickle CPython 3.11 wrote in
//! `tests/fixtures/corpus` loads, and writing it back at its protocol gives
//! exactly CPython's bytes.

use std::path::PathBuf;

use reduce::{Graph, Pickler, Unpickler};
use reduce_tests::{first_difference, fixtures, manifest};

fn corpus_dir() -> PathBuf {
    std::env::var_os("REDUCE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| fixtures().join("corpus"))
}

fn load(bytes: &[u8], inert: bool) -> reduce::Result<Graph> {
    Unpickler::from_slice(bytes).inert(inert).load()
}

fn dump(graph: &Graph, proto: u8) -> reduce::Result<Vec<u8>> {
    let mut out = Vec::new();
    Pickler::new(&mut out).protocol(proto).dump(graph)?;
    Ok(out)
}

#[test]
fn every_fixture_loads_and_writes_back_byte_identical() {
    let dir = corpus_dir();
    let rows = manifest(&dir.join("manifest.tsv"));
    assert!(
        rows.len() > 100,
        "the corpus looks empty: {} fixtures",
        rows.len()
    );
    let mut failures = Vec::new();
    for row in &rows {
        let file = &row["file"];
        let proto: u8 = row["protocol"].parse().expect("protocol column");
        let inert = row["mode"] == "inert";
        let bytes = std::fs::read(dir.join(file)).expect("read fixture");
        let graph = match load(&bytes, inert) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{file}: load failed: {e}"));
                continue;
            }
        };
        match dump(&graph, proto) {
            Ok(out) if out == bytes => {}
            Ok(out) => failures.push(format!("{file}: {}", first_difference(&bytes, &out))),
            Err(e) => failures.push(format!("{file}: dump failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn plain_data_fixtures_load_without_inert_mode() {
    let dir = corpus_dir();
    for row in manifest(&dir.join("manifest.tsv")) {
        if row["mode"] != "strict" {
            continue;
        }
        let bytes = std::fs::read(dir.join(&row["file"])).expect("read fixture");
        if let Err(e) = load(&bytes, false) {
            panic!("{}: {e}", row["file"]);
        }
    }
}

#[test]
fn instances_need_inert_mode() {
    let dir = corpus_dir();
    let mut refused = 0;
    for row in manifest(&dir.join("manifest.tsv")) {
        if row["mode"] != "inert" {
            continue;
        }
        let bytes = std::fs::read(dir.join(&row["file"])).expect("read fixture");
        match load(&bytes, false) {
            Err(e) => {
                assert!(
                    matches!(e.kind(), reduce::ErrorKind::UnknownGlobal { .. }),
                    "{}: expected an unknown-global error, got {e}",
                    row["file"]
                );
                refused += 1;
            }
            Ok(_) => panic!("{}: loaded an instance without inert mode", row["file"]),
        }
    }
    assert!(refused > 0, "the corpus has no inert fixtures");
}

/// Protocol 0 spells numbers as text, and CPython reads more spellings
/// than `pickle.dumps` writes: `INT` through C's `strtol` with base 0 and
/// then `int(text, 0)` (`010` is 8, `0x10` is 16, `1_0` is 10), `LONG`
/// through `int(text, 0)`, and memo keys through `int(text)`. Each line
/// here loads as CPython loads it, or fails where CPython fails: a scanner
/// that read them otherwise would lose track of what follows.
#[test]
fn protocol_0_numbers_read_as_cpython_reads_them() {
    let lines: &[&str] = &[
        "0",
        "1",
        "00",
        "01",
        "010",
        "0x10",
        "0X1f",
        "0x",
        "0x_1",
        "1_0",
        "1__0",
        "_1",
        "1_",
        " 5",
        "5 ",
        "\t7",
        "+1",
        "-0",
        "+0",
        "-1",
        "08",
        "0o17",
        "0b101",
        "0_0",
        "00_0",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "0777777777777777777777777",
        "99999999999999999999999",
        "1\x005",
        "",
        " ",
        "-",
        "1e3",
        "1.0",
        "١٢",
    ];
    let mut pickles: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        pickles.push(format!("I{line}\n.").into_bytes());
        pickles.push(format!("L{line}\n.").into_bytes());
        pickles.push(format!("L{line}L\n.").into_bytes());
        if line.len() < 8 {
            // (A memo key near 2**63 is a MemoryError in CPython, whose
            // memo is an array.)
            pickles.push(format!("I7\np{line}\n0g{line}\n.").into_bytes());
        }
    }
    let script = "import pickle, sys\n\
        for line in sys.stdin.buffer.read().split(b'\\n--\\n'):\n\
        \x20   try:\n\
        \x20       print(repr(pickle.loads(bytes.fromhex(line.decode()))))\n\
        \x20   except Exception:\n\
        \x20       print('error')\n";
    let input: Vec<String> = pickles.iter().map(|p| hex(p)).collect();
    let cpython = reduce_tests::python_with_input(script, input.join("\n--\n").as_bytes());
    let cpython = String::from_utf8(cpython).unwrap();
    let cpython: Vec<&str> = cpython.lines().collect();
    assert_eq!(cpython.len(), pickles.len());
    for (pickle, want) in pickles.iter().zip(cpython) {
        let got = match reduce::from_slice::<reduce::Value>(pickle) {
            Ok(v) => format!("{v:?}"),
            Err(_) => "error".to_owned(),
        };
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(pickle));
        // The inspector reads the same lines, so a scan sees what CPython
        // loads.
        if want != "error" {
            reduce::inspect::globals(pickle)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(pickle)));
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Protocol 0 writes a float as its repr: the fewest digits that read back,
/// and where the value lies exactly halfway between two such strings, the
/// even one (CPython's), not the one above. Every float that an `f32`
/// widens to, over a sweep that holds many such ties, against CPython.
#[test]
fn protocol_0_floats_are_cpythons_repr_ties_included() {
    let values: Vec<f64> = (0..4000u32)
        .map(|i| f64::from(f32::from_bits(0x4000_0000 + i * 0x0001_3579)))
        // Every power of two, where the floats below are closer together.
        .chain((1..2047u64).map(|e| f64::from_bits(e << 52)))
        .chain([
            750.348_693_847_656_2,
            2.000_099_182_128_906_2,
            0.1,
            1e22,
            5e-324,
            // A power of two: its nearest 16-digit string belongs to the
            // float below, and its repr is the shortest string above.
            5.282_945_311_356_653e269,
        ])
        .collect();
    let ours = reduce::to_vec_with_protocol(&values, 0).unwrap();
    let script = "import pickle, sys, struct\n\
                  data = sys.stdin.buffer.read()\n\
                  vals = struct.unpack('<%dd' % (len(data) // 8), data)\n\
                  sys.stdout.buffer.write(pickle.dumps(list(vals), protocol=0))\n";
    let input: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let want = reduce_tests::python_with_input(script, &input);
    assert!(
        ours == want,
        "{}",
        reduce_tests::first_difference(&want, &ours)
    );
}
