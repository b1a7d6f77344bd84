//! The writer's output through an `io::Write`: the same bytes as
//! `to_vec` and as CPython's `pickle.dumps`, frames committed where
//! CPython commits them, large payloads handed to the writer as they are
//! (not copied into a frame first), and a failing writer an error.

use std::io::{self, Write as _};

use reduce::{Bytes, Pickler};

/// Every `write` call a pickler made, in order.
#[derive(Default)]
struct Calls {
    writes: Vec<Vec<u8>>,
}

impl io::Write for Calls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `['a', b'\x07' * 100000, 'b', 'é' * 40000, list(range(30000))]`: small
/// objects around payloads of 64 KiB or more, then enough ints to fill
/// more than one frame.
type Mixed = (String, Bytes, String, String, Vec<i64>);

fn mixed() -> Mixed {
    (
        "a".to_owned(),
        Bytes(vec![7; 100_000]),
        "b".to_owned(),
        "é".repeat(40_000),
        (0..30_000).collect(),
    )
}

const MIXED_PY: &str = "('a', b'\\x07' * 100000, 'b', '\u{e9}' * 40000, list(range(30000)))";

#[test]
fn a_writer_gets_the_bytes_cpython_writes() {
    let value = mixed();
    for proto in 0..=5u8 {
        let mut calls = Calls::default();
        Pickler::new(&mut calls)
            .protocol(proto)
            .dump(&value)
            .unwrap();
        let streamed: Vec<u8> = calls.writes.concat();
        let whole = reduce::to_vec_with_protocol(&value, proto).unwrap();
        assert_eq!(
            streamed,
            whole,
            "protocol {proto}: {}",
            reduce_tests::first_difference(&whole, &streamed)
        );
        let want = reduce_tests::cpython_dumps(MIXED_PY, proto);
        assert_eq!(
            whole,
            want,
            "protocol {proto}: {}",
            reduce_tests::first_difference(&want, &whole)
        );
    }
}

#[test]
fn large_payloads_reach_the_writer_unbuffered() {
    let value = mixed();
    let payload = vec![7u8; 100_000];
    let text = "é".repeat(40_000);
    for proto in 3..=5u8 {
        let mut calls = Calls::default();
        Pickler::new(&mut calls)
            .protocol(proto)
            .dump(&value)
            .unwrap();
        // The bytes and the str arrive as calls of their own, exactly the
        // payload: nothing was copied around them into a buffer.
        assert!(
            calls.writes.iter().any(|w| w[..] == payload[..]),
            "protocol {proto}: the bytes payload was buffered"
        );
        assert!(
            calls.writes.iter().any(|w| w[..] == *text.as_bytes()),
            "protocol {proto}: the str payload was buffered"
        );
        // Everything else is written in pieces no larger than a frame and
        // its header (plus the last object that crossed 64 KiB).
        for w in &calls.writes {
            assert!(
                w.len() <= 100_000,
                "protocol {proto}: a write of {} bytes",
                w.len()
            );
        }
    }
}

#[test]
fn frames_are_committed_where_cpython_commits_them() {
    // Many frames of small objects: each commit point must match.
    let value: Vec<String> = (0..60_000).map(|i| format!("s{i}")).collect();
    let want = reduce_tests::cpython_dumps("[f's{i}' for i in range(60000)]", 5);
    let mut calls = Calls::default();
    Pickler::new(&mut calls).protocol(5).dump(&value).unwrap();
    let got = calls.writes.concat();
    assert_eq!(got, want, "{}", reduce_tests::first_difference(&want, &got));
    // More than one frame, handed over as each one is done.
    assert!(calls.writes.len() > 2, "{} writes", calls.writes.len());
}

/// A writer that fails after `ok` bytes.
struct Fails {
    ok: usize,
}

impl io::Write for Fails {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.ok {
            return Err(io::Error::other("disk full"));
        }
        self.ok -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_an_error() {
    let value = mixed();
    for ok in [0, 10, 70_000, 150_000] {
        let err = Pickler::new(Fails { ok })
            .protocol(5)
            .dump(&value)
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{ok}: {err}");
    }
    // The same value goes through when the writer has room.
    let mut sink = Fails { ok: usize::MAX };
    Pickler::new(&mut sink).protocol(5).dump(&value).unwrap();
    let _ = sink.flush();
}

/// Strings of every length up to 300 bytes (the writer copies those up to
/// 128 without a `memcpy` call, in rooms of a fixed size), ints of every
/// width and sign, and floats, many enough that the output grows several
/// times at every kind of atom: the bytes CPython writes.
#[test]
fn atoms_of_every_size_are_written_as_cpython_writes_them() {
    let strings: Vec<String> = (0..300)
        .map(|n| "x".repeat(n))
        .chain((1..150).map(|n| "é".repeat(n)))
        .collect();
    let ints: Vec<i64> = (0..63)
        .flat_map(|b| {
            let p = 1i64 << b;
            [p - 1, p, p + 1, -p - 1, -p, 1 - p]
        })
        .chain([i64::MIN, i64::MAX])
        .collect();
    let floats: Vec<f64> = (0..200).map(|i| f64::from(i) * 1.25 - 7.0).collect();
    let value = (strings, ints, floats);
    let script = "import pickle, sys\n\
        s = ['x' * n for n in range(300)] + ['\\u00e9' * n for n in range(1, 150)]\n\
        i = [v for b in range(63) for p in [1 << b] for v in (p - 1, p, p + 1, -p - 1, -p, 1 - p)]\n\
        i += [-(1 << 63), (1 << 63) - 1]\n\
        f = [i * 1.25 - 7.0 for i in range(200)]\n\
        for proto in range(6):\n\
        \x20   d = pickle.dumps((s, i, f), protocol=proto)\n\
        \x20   sys.stdout.buffer.write(len(d).to_bytes(4, 'little') + d)\n";
    let want = reduce_tests::python_pickles(script);
    assert_eq!(want.len(), 6);
    for (proto, want) in want.iter().enumerate() {
        let got = reduce::to_vec_with_protocol(&value, proto as u8).unwrap();
        assert!(
            &got == want,
            "protocol {proto}: {}",
            reduce_tests::first_difference(want, &got)
        );
    }
}

/// The atoms' fast paths leave protocols 0 and 1 to their own encodings
/// (`I01`, `I255`, text floats at 0; `BININT`, `I01` at 1): every atom at
/// every protocol, typed and serde, against CPython.
#[test]
fn atoms_at_every_protocol_are_cpythons() {
    let value = (
        (true, false, 0i64, 255i64, 256i64, 65_535i64, 65_536i64),
        (-1i64, i64::MAX, i64::MIN, 1.5f64, -0.0f64, None::<i64>),
        ("", "x", "short", "é".repeat(20), "y".repeat(300)),
    );
    let expr = "((True, False, 0, 255, 256, 65535, 65536), \
                (-1, 2**63 - 1, -2**63, 1.5, -0.0, None), \
                ('', 'x', 'short', 'é' * 20, 'y' * 300))";
    for proto in 0..=5u8 {
        let want = reduce_tests::cpython_dumps(expr, proto);
        let typed = reduce::to_vec_with_protocol(&value, proto).unwrap();
        assert_eq!(
            typed,
            want,
            "typed, protocol {proto}: {}",
            reduce_tests::first_difference(&want, &typed)
        );
        let serde = reduce::serde::to_vec_with_protocol(&value, proto);
        assert_eq!(serde.unwrap(), want, "serde, protocol {proto}");
    }
}
