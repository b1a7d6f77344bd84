//! A shared `str` or `bytes` read by value (into a `Value` tree, a typed
//! value or a serde type) is copied into every place that refers to it.
//! `Limits::max_tree_nodes` counts each copy one value more per 32 bytes,
//! so that a few kilobytes of memo references to one long string are
//! refused, as a doubling DAG of containers is, instead of filling memory.

use reduce::{Bytes, Graph, Limits, Unpickler, Value};
use reduce_tests::{assert_limit, cpython_dumps};

/// `n` `DUP`s of one string of `len` bytes, in a list (protocol 0):
/// `len + n` bytes of pickle, `len * n` bytes by value.
fn dups(len: usize, n: usize) -> Vec<u8> {
    let mut p = b"(V".to_vec();
    p.extend(std::iter::repeat_n(b'z', len));
    p.push(b'\n');
    p.extend(std::iter::repeat_n(b'2', n));
    p.extend_from_slice(b"l.");
    p
}

/// A tuple that doubles `levels` times over one `BINBYTES8` of `len`
/// bytes (protocol 4).
fn doubling(len: usize, levels: u8) -> Vec<u8> {
    let mut p = b"\x80\x04\x8e".to_vec();
    p.extend_from_slice(&(len as u64).to_le_bytes());
    p.extend(std::iter::repeat_n(b'x', len));
    p.push(0x94);
    for i in 0..levels {
        p.extend_from_slice(&[b'h', i, b'h', i, 0x86, 0x94]);
    }
    p.push(b'.');
    p
}

fn limited(n: usize) -> Limits {
    Limits::default().max_tree_nodes(n)
}

#[test]
fn copies_of_a_long_string_count_by_its_length() {
    // 101 copies of 3,200 bytes: about 100 values as nodes, 10,201 by
    // weight (each 1 + 3,200 / 32).
    let pickle = dups(3200, 100);
    for max in [10_150, 10_300] {
        let fits = max > 10_201;
        let value = Unpickler::from_slice(&pickle)
            .limits(limited(max))
            .load::<Value>();
        // A typed read counts against the default, at the least (its
        // stream and Graph paths agree under any limits): read whole here.
        let typed = Unpickler::from_slice(&pickle)
            .limits(limited(max))
            .load::<Vec<String>>();
        assert_eq!(typed.unwrap().len(), 101);
        let serde: reduce::Result<Vec<String>> =
            reduce::serde::from_unpickler(&mut Unpickler::from_slice(&pickle).limits(limited(max)));
        if fits {
            let value = value.unwrap();
            assert!(matches!(&value, Value::List(items) if items.len() == 101));
            assert_eq!(serde.unwrap().len(), 101);
        } else {
            assert_limit(&value.unwrap_err(), "max_tree_nodes");
            assert_limit(&serde.unwrap_err(), "max_tree_nodes");
        }
        // As a Graph the string stays one object, whatever the limit.
        let graph: Graph = Unpickler::from_slice(&pickle)
            .limits(limited(max))
            .load()
            .unwrap();
        assert_eq!(graph.objects().len(), 1);
    }
}

#[test]
fn a_few_kilobytes_cannot_copy_gigabytes() {
    // 50,000 copies of 50 KB (2.5 GB by value) from 100 KB, and a tuple
    // doubling 21 times over 1 KB (2 GB) from 1 KB: refused at the
    // default limit, without building the copies first where the whole
    // is sized before it is copied.
    let dup = dups(50_000, 50_000);
    let tree = doubling(1000, 21);
    for pickle in [&dup, &tree] {
        assert_limit(
            &reduce::from_slice::<Value>(pickle).unwrap_err(),
            "max_tree_nodes",
        );
        let graph: Graph = reduce::from_slice(pickle).unwrap();
        assert_limit(
            &graph
                .into_tree(Limits::default().max_tree_nodes)
                .unwrap_err(),
            "max_tree_nodes",
        );
    }
    assert_limit(
        &reduce::from_slice::<Vec<String>>(&dup).unwrap_err(),
        "max_tree_nodes",
    );
    assert_limit(
        &reduce::serde::from_slice::<Vec<String>>(&dup).unwrap_err(),
        "max_tree_nodes",
    );
    let bytes = {
        let mut p = b"\x80\x04(\x8e".to_vec();
        p.extend_from_slice(&50_000u64.to_le_bytes());
        p.extend(std::iter::repeat_n(b'z', 50_000));
        p.extend(std::iter::repeat_n(b'2', 50_000));
        p.extend_from_slice(b"l.");
        p
    };
    assert_limit(
        &reduce::from_slice::<Vec<Bytes>>(&bytes).unwrap_err(),
        "max_tree_nodes",
    );
}

/// What CPython writes for a list that holds one string many times reads
/// as before while it is within the limit.
#[test]
fn cpython_repeated_strings_within_the_limit_read_as_before() {
    let pickle = cpython_dumps("['z' * 1000] * 3000", 4);
    let v: Vec<String> = reduce::from_slice(&pickle).unwrap();
    assert_eq!(v.len(), 3000);
    assert!(v.iter().all(|s| s.len() == 1000));
    let value: Value = reduce::from_slice(&pickle).unwrap();
    assert!(matches!(value, Value::List(ref items) if items.len() == 3000));
}
