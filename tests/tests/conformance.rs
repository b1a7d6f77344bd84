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
