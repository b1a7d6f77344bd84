//! Frames end where CPython ends them: at the start of the first object
//! saved once a frame holds 64 KiB, so that the opcodes closing the
//! objects before it (`TUPLE2`, `APPENDS`, `SETITEMS`, `BUILD`, `STOP`,
//! and the `MARK` of the next batch) stay in the frame. Every writer
//! (typed, serde, `Value`, `Graph`, to a `Vec` or a writer) is compared
//! with CPython's bytes where the 64 KiB mark falls at each place of a
//! few shapes.

use reduce::{Graph, Value};
use reduce_tests::{first_difference, python_pickles};

/// Lengths of the long string that put the end of the first frame at
/// every place around the 64 KiB mark: inside the string, on its
/// `MEMOIZE`, on each closing opcode, and past them.
const NEAR: std::ops::RangeInclusive<usize> = 65_515..=65_545;

fn cpython(protos: &[u8]) -> Vec<Vec<u8>> {
    let script = format!(
        r#"
import pickle, sys
out = sys.stdout.buffer
def dump(obj, proto):
    b = pickle.dumps(obj, protocol=proto)
    out.write(len(b).to_bytes(4, 'little') + b)
for proto in {protos:?}:
    for n in range({lo}, {hi}):
        dump(('ab', 'q' * n), proto)
        dump(['ab', 'q' * n, 'cd'], proto)
        dump({{'k': 'v' * n, 'l': [1, 2]}}, proto)
        dump([['q' * n], ('x' * 3, 'y' * 3)], proto)
    # Batches: 1,500 strings of 50 bytes cross 64 KiB inside the second.
    dump(['%050d' % i for i in range(1500)], proto)
    dump([(i, 'n%d' % i, 0.25) for i in range(5000)], proto)
    dump({{'%06d' % i: '%040d' % i for i in range(1200)}}, proto)
"#,
        lo = NEAR.start(),
        hi = NEAR.end() + 1
    );
    python_pickles(&script)
}

type Tuple = (String, String);
type List = Vec<String>;
type Rows = Vec<(i64, String, f64)>;

fn check(what: &str, ours: &[u8], want: &[u8]) {
    assert!(
        ours == want,
        "{what}: {} bytes against CPython's {}, first difference at {:?}",
        ours.len(),
        want.len(),
        first_difference(want, ours)
    );
}

/// `Value` and `Graph` read from CPython's bytes write them back
/// unchanged.
fn check_trees(what: &str, proto: u8, want: &[u8]) {
    let value: Value = reduce::from_slice(want).unwrap();
    check(
        &format!("{what} Value"),
        &reduce::to_vec_with_protocol(&value, proto).unwrap(),
        want,
    );
    let graph: Graph = reduce::from_slice(want).unwrap();
    check(
        &format!("{what} Graph"),
        &reduce::to_vec_with_protocol(&graph, proto).unwrap(),
        want,
    );
}

#[test]
fn frames_end_where_cpython_ends_them() {
    let protos = [4u8, 5];
    let want = cpython(&protos);
    let per_proto = NEAR.count() * 4 + 3;
    assert_eq!(want.len(), protos.len() * per_proto);
    for (p, cases) in want.chunks(per_proto).enumerate() {
        let proto = protos[p];
        let (near, batches) = cases.split_at(NEAR.count() * 4);
        for (n, four) in NEAR.zip(near.chunks(4)) {
            let at = format!("protocol {proto}, n = {n}");
            let long = |c: &str| c.repeat(n);

            let tuple: Tuple = ("ab".into(), long("q"));
            check(
                &format!("{at}: typed tuple"),
                &reduce::to_vec_with_protocol(&tuple, proto).unwrap(),
                &four[0],
            );
            check(
                &format!("{at}: serde tuple"),
                &reduce::serde::to_vec_with_protocol(&tuple, proto).unwrap(),
                &four[0],
            );
            check_trees(&format!("{at}: tuple"), proto, &four[0]);

            let list: List = vec!["ab".into(), long("q"), "cd".into()];
            check(
                &format!("{at}: typed list"),
                &reduce::to_vec_with_protocol(&list, proto).unwrap(),
                &four[1],
            );
            check(
                &format!("{at}: serde list"),
                &reduce::serde::to_vec_with_protocol(&list, proto).unwrap(),
                &four[1],
            );
            check_trees(&format!("{at}: list"), proto, &four[1]);

            check_trees(&format!("{at}: dict"), proto, &four[2]);
            check_trees(&format!("{at}: nested"), proto, &four[3]);
        }
        let strings: List = (0..1500).map(|i| format!("{i:050}")).collect();
        check(
            &format!("protocol {proto}: typed batches"),
            &reduce::to_vec_with_protocol(&strings, proto).unwrap(),
            &batches[0],
        );
        check(
            &format!("protocol {proto}: serde batches"),
            &reduce::serde::to_vec_with_protocol(&strings, proto).unwrap(),
            &batches[0],
        );
        check_trees(&format!("protocol {proto}: batches"), proto, &batches[0]);
        let rows: Rows = (0..5000).map(|i| (i, format!("n{i}"), 0.25)).collect();
        check(
            &format!("protocol {proto}: typed rows"),
            &reduce::to_vec_with_protocol(&rows, proto).unwrap(),
            &batches[1],
        );
        check(
            &format!("protocol {proto}: serde rows"),
            &reduce::serde::to_vec_with_protocol(&rows, proto).unwrap(),
            &batches[1],
        );
        check_trees(&format!("protocol {proto}: rows"), proto, &batches[1]);
        let dict: std::collections::BTreeMap<String, String> = (0..1200)
            .map(|i| (format!("{i:06}"), format!("{i:040}")))
            .collect();
        check(
            &format!("protocol {proto}: typed dict"),
            &reduce::to_vec_with_protocol(&dict, proto).unwrap(),
            &batches[2],
        );
        check(
            &format!("protocol {proto}: serde dict"),
            &reduce::serde::to_vec_with_protocol(&dict, proto).unwrap(),
            &batches[2],
        );
        check_trees(&format!("protocol {proto}: dict"), proto, &batches[2]);
        if proto == reduce::DEFAULT_PROTOCOL {
            // To a writer, frame by frame: the same bytes.
            let mut sink = Vec::new();
            reduce::to_writer(&mut sink, &rows).unwrap();
            check("to_writer rows", &sink, &batches[1]);
            let mut sink = Vec::new();
            reduce::serde::to_writer(&mut sink, &rows).unwrap();
            check("serde to_writer rows", &sink, &batches[1]);
        }
    }
}
