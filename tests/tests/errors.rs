//! Bad input ends in a clear, typed error with its offset and opcode: code
//! that a pickle names is never reached, lengths that lie allocate nothing,
//! frames that lie are caught, and the limits stop bombs early.

use reduce::{Error, ErrorKind, Graph, Limits, Unpickler, Value};
use reduce_tests::{assert_limit, Trickle};

fn load(bytes: &[u8]) -> reduce::Result<Graph> {
    reduce::from_slice(bytes)
}

#[test]
fn dangerous_globals_are_refused_by_name_through_every_opcode() {
    let cases: &[(&[u8], &str)] = &[
        (b"cos\nsystem\n(S'echo hi'\ntR.", "os.system"),
        (b"cbuiltins\neval\n(S'1'\ntR.", "builtins.eval"),
        (b"c__builtin__\neval\n(S'1'\ntR.", "builtins.eval"),
        (
            b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02hi\x85R.",
            "os.system",
        ),
        // getattr([], "pop"): getattr is understood only on a global.
        (
            b"\x80\x02cbuiltins\ngetattr\n]X\x03\x00\x00\x00pop\x86R.",
            "builtins.getattr",
        ),
        (b"(S'ls'\nisubprocess\nPopen\n.", "subprocess.Popen"),
        (b"(csubprocess\nPopen\nS'ls'\no.", "subprocess.Popen"),
    ];
    for (bytes, name) in cases {
        let err = load(bytes).unwrap_err();
        let shown = err.to_string();
        if *name != "builtins.getattr" {
            assert!(
                matches!(err.kind(), ErrorKind::UnknownGlobal { .. }),
                "{shown}"
            );
        }
        assert!(shown.contains(name), "{shown}");
    }
    // Through an extension code, too: the code maps to a name, checked the same.
    let err = Unpickler::from_slice(b"\x80\x02\x82\x07)R.")
        .extension(7, "os", "system")
        .load::<Graph>()
        .unwrap_err();
    assert!(err.to_string().contains("os.system"), "{err}");
    // getattr on a global names a nested global, which is checked too.
    let err = load(b"\x80\x02cbuiltins\ngetattr\ncsubprocess\nPopen\nX\x04\x00\x00\x00wait\x86R.")
        .unwrap_err();
    assert!(err.to_string().contains("subprocess.Popen"), "{err}");
}

#[test]
fn errors_carry_offset_and_opcode() {
    // PROTO 2, EMPTY_LIST, BINGET 5 (never stored).
    let err = load(b"\x80\x02]h\x05.").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::MissingMemo(5)));
    assert_eq!(err.offset(), Some(3));
    assert_eq!(err.opcode_name(), Some("BINGET"));
    assert_eq!(err.to_string(), "memo has no entry 5 (at byte 3, BINGET)");
    let err = load(b"\x80\x02\xff").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::UnknownOpcode(0xff)));
    assert_eq!(err.offset(), Some(2));
    let err = load(b"\x80\x06N.").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::UnsupportedProtocol(6)));
}

#[test]
fn lying_lengths_fail_fast_without_allocating() {
    let huge = (1u64 << 63).to_le_bytes();
    for op in [0x8e_u8, 0x8d, 0x96, 0x95] {
        let mut bytes = vec![0x80, 0x05, op];
        bytes.extend_from_slice(&huge);
        bytes.extend_from_slice(b"abc");
        // What they allocate is measured in tests/memory.rs.
        let err = load(&bytes).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Eof),
            "opcode {op:#x}: {err}"
        );
        let err = Unpickler::new(Trickle(&bytes)).load::<Graph>().unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Eof),
            "opcode {op:#x}: {err}"
        );
    }
    // Negative counts.
    assert!(load(b"\x8b\xff\xff\xff\xff.")
        .unwrap_err()
        .to_string()
        .contains("negative byte count"));
    assert!(load(b"T\xff\xff\xff\xff.")
        .unwrap_err()
        .to_string()
        .contains("negative byte count"));
}

#[test]
fn frames_are_read_as_cpythons_c_unpickler_reads_them() {
    // A frame longer than the data is cut short, as in CPython.
    let err = load(b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.").unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    // pickle.loads (the C unpickler) only checks that a frame's bytes exist:
    // a frame inside an unfinished frame, and an argument running past the
    // end of its frame, both load. Editing tools that do not fix frame
    // lengths write such files, and CPython runs them.
    let nested =
        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00N.";
    assert_eq!(load(nested).unwrap(), Graph::from(Value::None));
    let straddling = b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello.";
    assert_eq!(load(straddling).unwrap(), Graph::from(Value::str("hello")));
    // The same from a stream, read three bytes at a time.
    for bytes in [&nested[..], &straddling[..]] {
        let from_stream: Value = Unpickler::new(reduce_tests::Trickle(bytes)).load().unwrap();
        assert_eq!(from_stream, *load(bytes).unwrap().root());
    }
    for (bytes, want) in [(&nested[..], "None"), (&straddling[..], "hello")] {
        let out = reduce_tests::python3()
            .args([
                "-c",
                "import pickle,sys; print(pickle.loads(sys.stdin.buffer.read()))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(bytes)?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
    // FRAME is optional: the same value without frames loads.
    assert!(load(b"\x80\x04N.").is_ok());
}

#[test]
fn huge_decimal_ints_hit_the_digit_limit_as_in_cpython() {
    let digits = "7".repeat(5000);
    for bytes in [
        format!("I{digits}\n.").into_bytes(),
        format!("L{digits}L\n.").into_bytes(),
    ] {
        let err = load(&bytes).unwrap_err();
        assert_limit(&err, "max_int_digits");
        let status = reduce_tests::python3()
            .args([
                "-c",
                "import pickle,sys; pickle.loads(sys.stdin.buffer.read())",
            ])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                std::io::Write::write_all(c.stdin.as_mut().unwrap(), &bytes)?;
                drop(c.stdin.take());
                c.wait()
            })
            .unwrap();
        assert!(!status.success(), "CPython refuses the same bytes");
    }
    let raised: Value = Unpickler::from_slice(format!("L{digits}L\n.").as_bytes())
        .limits(Limits::default().max_int_digits(6000))
        .load()
        .unwrap();
    assert!(matches!(raised, Value::BigInt(_)));
}

#[test]
fn bombs_stop_at_the_limits() {
    let marks = vec![b'('; 1_000_000];
    let err = Unpickler::from_slice(&marks)
        .limits(Limits::default().max_stack(10_000))
        .load::<Graph>()
        .unwrap_err();
    assert_limit(&err, "max_stack");
    let mut memo = b"\x80\x04".to_vec();
    for _ in 0..1_000_000 {
        memo.extend_from_slice(b"N\x94");
    }
    let err = Unpickler::from_slice(&memo)
        .limits(Limits::default().max_memo(1000))
        .load::<Graph>()
        .unwrap_err();
    assert_limit(&err, "max_memo");
    // Without a low limit, a million MARKs end in a clear error too.
    assert!(load(&marks).is_err());
}

#[test]
fn the_error_type_behaves() {
    fn assert_traits<T: Send + Sync + 'static + std::error::Error>() {}
    assert_traits::<Error>();
    let samples = [
        load(b"").unwrap_err(),
        load(b"\x80\x02]h\x05.").unwrap_err(),
        load(b"cos\nsystem\n.").unwrap_err(),
        reduce::from_slice::<u8>(b"\x80\x02M\x00\x10.").unwrap_err(),
    ];
    for e in samples {
        let text = e.to_string();
        assert!(
            text.chars().next().is_some_and(|c| !c.is_uppercase()),
            "{text}"
        );
        assert!(!text.ends_with('.'), "{text}");
    }
}

/// An input that ends where a pickle should begin is `EndOfInput`, as
/// Python's `EOFError: Ran out of input`: a loop over a stream of pickles
/// ends on it, while a pickle cut after its first byte is still `Eof`.
#[test]
fn the_end_of_a_stream_is_not_a_truncated_pickle() {
    let mut stream = Vec::new();
    for i in 0..3i64 {
        stream.extend(reduce::to_vec(&i).unwrap());
    }
    let mut reader = Unpickler::new(std::io::Cursor::new(&stream));
    let mut got = Vec::new();
    let end = loop {
        match reader.load::<i64>() {
            Ok(i) => got.push(i),
            Err(e) => break e,
        }
    };
    assert_eq!(got, [0, 1, 2]);
    assert!(matches!(end.kind(), ErrorKind::EndOfInput), "{end}");
    assert_eq!(end.offset(), Some(stream.len() as u64));
    assert!(end.to_string().starts_with("ran out of input"), "{end}");

    let empty: &[u8] = b"";
    for err in [
        reduce::from_slice::<Value>(empty).unwrap_err(),
        reduce::from_slice::<i64>(empty).unwrap_err(),
        reduce::from_slice::<reduce::Graph>(empty).unwrap_err(),
        reduce::serde::from_slice::<i64>(empty).unwrap_err(),
        Unpickler::from_slice(empty)
            .inert(true)
            .load::<Value>()
            .unwrap_err(),
    ] {
        assert!(matches!(err.kind(), ErrorKind::EndOfInput), "{err}");
    }
    for cut in [&b"\x80"[..], b"\x80\x04", b"K", b"(", b"I1"] {
        let err = reduce::from_slice::<Value>(cut).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Eof), "{cut:?}: {err}");
    }
}

/// Messages name a Python type with its article: "an int", "a list".
#[test]
fn a_found_type_reads_as_english() {
    let err = load(b"K\x01K\x02a.").unwrap_err().to_string();
    assert!(
        err.contains("expected a list to append to, found an int"),
        "{err}"
    );
    let err = load(b"]K\x01\x85R.").unwrap_err().to_string();
    assert!(
        err.contains("expected a global to call, found a list"),
        "{err}"
    );
}

/// A second BUILD on one object is refused by a strict read, which points
/// to inert mode, and inert mode keeps it.
#[test]
fn a_second_build_points_to_inert_mode() {
    // OrderedDict(), BUILD (None, {'__setstate__': Counter}), BUILD 'x'
    let hex = "800263636f6c6c656374696f6e730a4f726465726564446963740a29524e7d8c0c5f5f73657473746174655f5f63636f6c6c656374696f6e730a436f756e7465720a7386628c0178622e";
    let bytes = reduce_tests::unhex(hex);
    let mut registry = reduce::Registry::new();
    registry.add_preset(&reduce::preset::STDLIB).unwrap();
    let err = Unpickler::from_slice(&bytes)
        .registry(registry)
        .load::<Value>()
        .unwrap_err();
    assert!(err.to_string().contains("read it in inert mode"), "{err}");
    let kept: Value = Unpickler::from_slice(&bytes).inert(true).load().unwrap();
    assert!(format!("{kept:?}").contains("Build {"), "{kept:?}");
}

/// A DAG too big to copy into a tree says to load it as a Graph, as a
/// cycle does.
#[test]
fn a_dag_too_big_for_a_tree_points_to_graph() {
    let mut dag = Graph::default();
    let mut v = Value::List(vec![]);
    for _ in 0..40 {
        let below = Value::Ref(dag.insert(v));
        v = Value::List(vec![below.clone(), below]);
    }
    *dag.root_mut() = v;
    let bomb = reduce::to_vec(&dag).unwrap();
    for err in [
        reduce::from_slice::<Value>(&bomb).unwrap_err(),
        reduce::from_slice::<Graph>(&bomb)
            .unwrap()
            .into_tree(1000)
            .unwrap_err(),
    ] {
        assert_limit(&err, "max_tree_nodes");
        assert!(err.to_string().contains("load it as a Graph"), "{err}");
    }
    assert!(reduce::from_slice::<Graph>(&bomb).is_ok());
}
