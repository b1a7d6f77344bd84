//! Every input a fuzzer found a bug with (`tests/fixtures/fuzz/`), replayed
//! through the fuzz targets' own code, plus the committed fixtures, which
//! seed the fuzzers.

use reduce::{Graph, Pickler, Unpickler};
use reduce_tests::{fixtures, fuzz};

fn found_inputs() -> Vec<(String, Vec<u8>)> {
    let dir = fixtures().join("fuzz");
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/fuzz")
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read input"))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_input_the_fuzzers_found_passes_every_target() {
    let inputs = found_inputs();
    assert!(inputs.len() >= 3, "the found inputs are missing");
    for (name, data) in &inputs {
        let run = |f: fn(&[u8])| {
            if std::panic::catch_unwind(|| f(data)).is_err() {
                panic!("{name} fails again");
            }
        };
        run(fuzz::load_value);
        run(fuzz::load_typed);
        run(fuzz::round_trip);
        run(fuzz::load_torch);
    }
}

/// The first round-trip finding: a protocol 3 pickle naming `__builtin__`
/// keeps that name, and writing it at protocol 0 with `fix_imports` on
/// (the default, as in CPython) writes it unchanged, so a default reader
/// maps it to `builtins`. Both sides agree with CPython; turning the option
/// off keeps the name.
#[test]
fn python2_names_in_a_protocol_3_pickle() {
    let data = b"\x80\x03c__builtin__\nobject\nq\x00.";
    let graph: Graph = Unpickler::from_slice(data).inert(true).load().unwrap();
    assert_eq!(format!("{graph:?}"), "__builtin__.object");

    let bytes = reduce::to_vec_with_protocol(&graph, 0).unwrap();
    assert_eq!(bytes, b"c__builtin__\nobject\np0\n.");
    let mapped: Graph = Unpickler::from_slice(&bytes).inert(true).load().unwrap();
    assert_eq!(format!("{mapped:?}"), "builtins.object");
    let kept: Graph = Unpickler::from_slice(&bytes)
        .inert(true)
        .fix_imports(false)
        .load()
        .unwrap();
    assert!(kept == graph);

    let mut pickler = Pickler::new(Vec::new()).protocol(0).fix_imports(false);
    pickler.dump(&graph).unwrap();
    assert_eq!(pickler.into_inner(), bytes, "no Python 3 name to map");
}

/// A memoized empty tuple met twice is one object in the loaded graph only
/// as far as Python can tell: CPython never memoizes `()`, and neither does
/// reduce, so it loads inline and compares by value.
#[test]
fn a_shared_empty_tuple_is_just_an_empty_tuple() {
    // [(), ()] where the second is a memo reference to the first.
    let data = b"\x80\x02]q\x00()q\x01h\x01e.";
    let graph: Graph = Unpickler::from_slice(data).load().unwrap();
    assert_eq!(graph.objects().len(), 0, "{graph:?}");
    assert_eq!(format!("{graph:?}"), "[(), ()]");
    let python = b"\x80\x02]q\x00())e.";
    assert_eq!(reduce::to_vec_with_protocol(&graph, 2).unwrap(), python);
}

/// Two separate GLOBAL opcodes for one name load as two inline globals;
/// written back, the second is a memo reference, and the graphs still
/// compare equal (a global is one object per name).
#[test]
fn a_global_named_twice_is_one_global() {
    let data = b"cbuiltins\nobject\ncbuiltins\nobject\n\x86.";
    let graph: Graph = Unpickler::from_slice(data).inert(true).load().unwrap();
    for proto in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(&graph, proto).unwrap();
        let again: Graph = Unpickler::from_slice(&bytes).inert(true).load().unwrap();
        assert!(again == graph, "protocol {proto}: {again:?}");
    }
    fuzz::round_trip(data);
}
