//! Typed and serde reads from an `io::Read`: the pickle is read ahead
//! through its `STOP` (never past it) and takes the streaming path, as a
//! slice does. Over every fixture, truncations and mutations of them, a
//! reader that hands out a few bytes per call gives the same value or the
//! same error as the `Graph` path over the slice, and leaves the reader
//! where that path leaves the slice.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{self, Read};

use reduce::{Construct, Unpickler, Value};
use reduce_tests::{fixtures, pickles_in};

/// A reader that returns at most 7 bytes per call, so that every read
/// ahead takes several calls and ends mid-opcode.
struct Trickle<'a> {
    data: &'a [u8],
    calls: usize,
}

impl io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = buf.len().min(7).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `bytes` followed by a marker the reader must not touch.
fn with_tail(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(b"TAIL");
    v
}

/// Loads `bytes` as a `T` from a reader and from the slice without the
/// stream; returns whether the reader's load was streamed.
fn same<T: Construct + PartialEq + Debug>(bytes: &[u8]) -> bool {
    let input = with_tail(bytes);
    let mut fast = Unpickler::new(Trickle {
        data: &input,
        calls: 0,
    });
    let a = fast.load::<T>();
    let streamed = fast.streamed();
    let left = fast.into_inner().data.len();
    let mut slow = Unpickler::from_slice(&input).streaming(false);
    let b = slow.load::<T>();
    match (&a, &b) {
        (Ok(x), Ok(y)) => {
            assert!(
                x == y || format!("{x:?}") == format!("{y:?}"),
                "values differ for {bytes:?}: {x:?} and {y:?}"
            );
            // Just past STOP, as the slice's position says.
            assert_eq!(input.len() - left, slow.position(), "{bytes:?}");
        }
        (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "errors differ for {bytes:?}"),
        _ => panic!(
            "one path failed for {} on {bytes:?}:\nreader: {a:?}\nslice:  {b:?}",
            std::any::type_name::<T>()
        ),
    }
    streamed
}

fn all_types(bytes: &[u8]) -> usize {
    [
        same::<i64>(bytes),
        same::<f64>(bytes),
        same::<String>(bytes),
        same::<Option<String>>(bytes),
        same::<Vec<i64>>(bytes),
        same::<Vec<String>>(bytes),
        same::<Vec<(i64, String, f64, bool, Option<i64>)>>(bytes),
        same::<BTreeMap<String, Vec<i64>>>(bytes),
        same::<reduce::Bytes>(bytes),
        same::<Value>(bytes),
    ]
    .into_iter()
    .filter(|&s| s)
    .count()
}

#[test]
fn a_reader_agrees_with_the_slice_on_every_fixture() {
    let mut files = 0;
    let mut streamed = 0;
    for dir in ["corpus", "pickletester", "fuzz", "attacks"] {
        for bytes in pickles_in(&fixtures().join(dir)) {
            files += 1;
            streamed += all_types(&bytes);
            // Cut short: the read-ahead meets the end, and the error is
            // the one the slice gives.
            for cut in [1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
                if cut < bytes.len() {
                    same::<Vec<i64>>(&bytes[..cut]);
                    same::<Value>(&bytes[..cut]);
                }
            }
        }
    }
    assert!(files > 500, "only {files} fixtures");
    assert!(streamed > 100, "only {streamed} streamed loads");
}

#[test]
fn a_reader_streams_every_protocol_and_stops_at_stop() {
    type Row = (i64, String, f64, bool, Option<i64>);
    let rows: Vec<Row> = (0..300)
        .map(|i| (i, format!("r{i}"), i as f64 / 4.0, i % 3 == 0, Some(i * 7)))
        .collect();
    for proto in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(&rows, proto).unwrap();
        assert!(same::<Vec<Row>>(&bytes), "protocol {proto} not streamed");
        // Two pickles in a row from one reader: each streamed, each read
        // exactly, the tail untouched.
        let mut two = bytes.clone();
        two.extend_from_slice(&reduce::to_vec_with_protocol(&"next", proto).unwrap());
        two.extend_from_slice(b"TAIL");
        let mut u = Unpickler::new(Trickle {
            data: &two,
            calls: 0,
        });
        assert_eq!(u.load::<Vec<Row>>().unwrap(), rows);
        assert!(u.streamed());
        assert_eq!(u.load::<String>().unwrap(), "next");
        assert!(u.streamed());
        let mut rest = Vec::new();
        u.into_inner().read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"TAIL");
    }
}

#[test]
fn a_miss_reads_the_buffered_pickle_again() {
    // A list that holds itself: the stream gives up, and the Graph path
    // reads the bytes already taken from the reader, then says "cycle".
    let cyclic = b"\x80\x02]q\x00h\x00a.";
    let input = with_tail(cyclic);
    let mut u = Unpickler::new(Trickle {
        data: &input,
        calls: 0,
    });
    let err = u.load::<Vec<Vec<i64>>>().unwrap_err();
    assert!(!u.streamed());
    let want = reduce::from_slice::<Vec<Vec<i64>>>(cyclic).unwrap_err();
    assert_eq!(err.to_string(), want.to_string());
    // After the miss, the next load starts where the Graph path stopped.
    let mut two = cyclic.to_vec();
    two.extend_from_slice(&input);
    let mut u = Unpickler::new(Trickle {
        data: &two,
        calls: 0,
    });
    assert!(u.load::<Vec<Vec<i64>>>().is_err());
    let graph = u.load_graph().unwrap();
    assert_eq!(graph, Unpickler::from_slice(cyclic).load_graph().unwrap());
    assert_eq!(u.into_inner().data, b"TAIL");
}

#[test]
fn a_lying_length_costs_no_more_than_the_input() {
    // BINBYTES8 claiming 2**60 bytes, with 3 behind it: the read-ahead
    // stops at the end of the input, and the error is the slice's.
    let bytes = b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10abc";
    assert!(!same::<reduce::Bytes>(bytes));
    assert!(!same::<Value>(bytes));
}

#[test]
fn serde_from_reader_is_from_slice() {
    use serde::Deserialize;
    #[derive(Deserialize, Debug, PartialEq)]
    struct Rec {
        id: u32,
        name: String,
        tags: Vec<String>,
        score: Option<f64>,
    }
    let recs: Vec<BTreeMap<&str, Value>> = (0..50)
        .map(|i| {
            BTreeMap::from([
                ("id", Value::Int(i)),
                ("name", Value::from(format!("n{i}"))),
                ("tags", Value::List(vec!["a".into(), "b".into()])),
                (
                    "score",
                    if i % 2 == 0 {
                        Value::Float(0.5)
                    } else {
                        Value::None
                    },
                ),
            ])
        })
        .collect();
    for proto in 0..=5 {
        let bytes = reduce::serde::to_vec_with_protocol(&recs, proto).unwrap();
        let input = with_tail(&bytes);
        let mut reader = Trickle {
            data: &input,
            calls: 0,
        };
        let got: Vec<Rec> = reduce::serde::from_reader(&mut reader).unwrap();
        let want: Vec<Rec> = reduce::serde::from_slice(&bytes).unwrap();
        assert_eq!(got, want, "protocol {proto}");
        assert_eq!(got.len(), 50);
        assert_eq!(reader.data, b"TAIL", "protocol {proto}");
        // Cut short, the error is from_slice's.
        for cut in [3, bytes.len() / 2, bytes.len() - 1] {
            let a = reduce::serde::from_reader::<Vec<Rec>, _>(&bytes[..cut]).unwrap_err();
            let b = reduce::serde::from_slice::<Vec<Rec>>(&bytes[..cut]).unwrap_err();
            assert_eq!(a.to_string(), b.to_string(), "protocol {proto}, cut {cut}");
        }
    }
    // What the tape does not follow (a shared list) reads through the
    // Graph from the buffered bytes, with the same result as from_slice.
    let shared = b"\x80\x02]q\x00(]q\x01K\x01ah\x01e.";
    let a: Vec<Vec<i64>> = reduce::serde::from_reader(&shared[..]).unwrap();
    let b: Vec<Vec<i64>> = reduce::serde::from_slice(shared).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, vec![vec![1], vec![1]]);
}
