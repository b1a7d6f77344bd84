//! CPython keeps one object of `""`, of each one-character Latin-1 `str`,
//! of `b""` and of each one-byte `bytes`, however they are made, so a
//! second one in a pickle is a memo reference to the first. Every writer
//! (typed, serde, `Value`) writes them so, at every protocol; a `Graph`
//! writes `bytes` so (its strings as it holds them), and a `Graph` read
//! from CPython's bytes writes them back identical.

use reduce::{ByteArray, Bytes, Graph};
use reduce_tests::{first_difference, python_pickles};

/// CPython's pickles of the same objects, built at run time (so that no
/// two strings of more than one character are one object), at protocols
/// 0-5: strings, bytes, bytearrays, and a str equal to a field name.
fn cpython() -> Vec<Vec<u8>> {
    let script = r#"
import pickle, sys
def s(*cs): return ''.join(cs)
# chr, slicing and decoding give the one object; so does ''.join([]).
strs = [chr(97), 'xa'[1:], s(), s(), chr(233), 'x\xe9'[1:], chr(0x101), 'x\u0101'[1:], s('a', 'b'), s('a', 'b'), chr(0)]
bts = [bytes([120]), bytes([120]), bytes(), bytes(), bytes([120, 121]), bytes([120, 121]), bytes([255])]
arrs = [bytearray(b'x'), bytearray(b'x'), bytearray(b'xy'), bytearray(b'xy')]
chars = [chr(97), chr(98), chr(97)]
out = sys.stdout.buffer
for proto in range(6):
    for obj in (strs, bts, arrs, chars):
        b = pickle.dumps(obj, protocol=proto)
        out.write(len(b).to_bytes(4, 'little') + b)
"#;
    python_pickles(script)
}

fn strs() -> Vec<String> {
    ["a", "a", "", "", "é", "é", "ā", "ā", "ab", "ab", "\0"]
        .map(String::from)
        .to_vec()
}

fn bts() -> Vec<Bytes> {
    [&b"x"[..], b"x", b"", b"", b"xy", b"xy", b"\xff"]
        .map(|b| Bytes(b.to_vec()))
        .to_vec()
}

fn arrs() -> Vec<ByteArray> {
    [&b"x"[..], b"x", b"xy", b"xy"]
        .map(|b| ByteArray(b.to_vec()))
        .to_vec()
}

#[test]
fn every_writer_shares_what_cpython_keeps_one_of() {
    let want = cpython();
    assert_eq!(want.len(), 6 * 4);
    for (i, cases) in want.chunks(4).enumerate() {
        let proto = i as u8;
        let typed = [
            reduce::to_vec_with_protocol(&strs(), proto).unwrap(),
            reduce::to_vec_with_protocol(&bts(), proto).unwrap(),
            reduce::to_vec_with_protocol(&arrs(), proto).unwrap(),
            reduce::to_vec_with_protocol(&vec!['a', 'b', 'a'], proto).unwrap(),
        ];
        for (k, (want, got)) in cases.iter().zip(&typed).enumerate() {
            assert!(
                want == got,
                "typed, case {k}, protocol {proto}: {}",
                first_difference(want, got)
            );
        }
        // serde: strings, chars and bytes (serde_bytes).
        let serde = [
            reduce::serde::to_vec_with_protocol(&strs(), proto).unwrap(),
            reduce::serde::to_vec_with_protocol(
                &bts()
                    .into_iter()
                    .map(|b| serde_bytes::ByteBuf::from(b.0))
                    .collect::<Vec<_>>(),
                proto,
            )
            .unwrap(),
        ];
        for (k, (want, got)) in cases.iter().zip(&serde).enumerate() {
            assert!(
                want == got,
                "serde, case {k}, protocol {proto}: {}",
                first_difference(want, got)
            );
        }
        let chars = reduce::serde::to_vec_with_protocol(&vec!['a', 'b', 'a'], proto).unwrap();
        assert!(
            cases[3] == chars,
            "serde chars, protocol {proto}: {}",
            first_difference(&cases[3], &chars)
        );
        // A Graph read from CPython's bytes writes the bytes, the
        // bytearrays' texts and the chars back, strict and inert. (Its
        // strings are written as the graph holds them: a `'b'` literal and
        // a `'b'` decoded are two objects in CPython.)
        for (k, bytes) in cases.iter().enumerate().skip(1) {
            for inert in [false, true] {
                let graph: Graph = reduce::Unpickler::from_slice(bytes)
                    .inert(inert)
                    .load_graph()
                    .unwrap();
                let again = reduce::to_vec_with_protocol(&graph, proto).unwrap();
                if k == 3 && !inert {
                    // chars: the strict reader copies a fetched string.
                    continue;
                }
                assert!(
                    *bytes == again,
                    "graph, case {k}, protocol {proto}, inert {inert}: {}",
                    first_difference(bytes, &again)
                );
            }
        }
    }
}

/// More distinct single objects than the writer keeps in line (sixteen).
#[test]
fn many_distinct_single_characters_are_each_shared() {
    let script = r#"
import pickle, sys
chars = [chr(c) for c in range(97, 117)] + [bytes([c]) for c in range(20)]
for proto in range(6):
    b = pickle.dumps(chars * 2, protocol=proto)
    sys.stdout.buffer.write(len(b).to_bytes(4, 'little') + b)
"#;
    let one: Vec<reduce::Value> = (97u8..117)
        .map(|c| reduce::Value::from((c as char).to_string()))
        .chain((0u8..20).map(|b| reduce::Value::Bytes(vec![b])))
        .collect();
    let serde_one: Vec<SerdeItem> = (97u8..117)
        .map(|c| SerdeItem::S((c as char).to_string()))
        .chain((0u8..20).map(|b| SerdeItem::B(serde_bytes::ByteBuf::from(vec![b]))))
        .collect();
    for (proto, want) in python_pickles(script).iter().enumerate() {
        let proto = proto as u8;
        let twice: Vec<SerdeItem> = serde_one.iter().chain(&serde_one).cloned().collect();
        let got = reduce::serde::to_vec_with_protocol(&twice, proto).unwrap();
        assert!(
            *want == got,
            "serde, protocol {proto}: {}",
            first_difference(want, &got)
        );
        // A Value is plain data: written as CPython writes the same objects
        // made at run time, strings and bytes shared.
        let value = reduce::Value::List(one.iter().chain(&one).cloned().collect());
        let got = reduce::to_vec_with_protocol(&value, proto).unwrap();
        assert!(
            *want == got,
            "Value, protocol {proto}: {}",
            first_difference(want, &got)
        );
        let back: reduce::Value = reduce::from_slice(&got).unwrap();
        assert_eq!(back, value);
    }
}

#[derive(serde::Serialize, Clone)]
#[serde(untagged)]
enum SerdeItem {
    S(String),
    B(serde_bytes::ByteBuf),
}

/// A field name (an interned identifier) and a value of the same one
/// character are two objects in CPython 3.11: the value is not written as
/// a reference to the name.
#[test]
fn a_one_character_value_is_not_a_field_names_object() {
    #[derive(reduce::Reduce, Clone, Debug, PartialEq)]
    #[reduce(module = "__main__", name = "P", state)]
    struct P {
        x: String,
        y: String,
    }
    let script = r#"
import pickle, sys
class P:
    pass
p = P()
p.x, p.y = chr(121), 'ax'[1:]
for proto in range(6):
    b = pickle.dumps(p, protocol=proto)
    sys.stdout.buffer.write(len(b).to_bytes(4, 'little') + b)
"#;
    let p = P {
        x: "y".into(),
        y: "x".into(),
    };
    for (proto, want) in python_pickles(script).iter().enumerate() {
        let got = reduce::to_vec_with_protocol(&p, proto as u8).unwrap();
        assert!(
            *want == got,
            "protocol {proto}: {}",
            first_difference(want, &got)
        );
        assert_eq!(reduce::from_slice::<P>(&got).unwrap(), p);
    }
}
