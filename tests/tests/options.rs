//! The reader's and writer's options, each against CPython: Python 2
//! strings, the old object opcodes, several pickles in one stream,
//! persistent ids, out-of-band buffers and extension codes.

use std::io::Cursor;

use reduce::{ErrorKind, Graph, PickleBuffer, Pickler, StringDecoding, Unpickler, Value};

fn python(script: &str, stdin: &[u8]) -> Vec<u8> {
    reduce_tests::python_with_input(script, stdin)
}

#[test]
fn python2_strings_decode_as_asked() {
    // STRING, BINSTRING and SHORT_BINSTRING holding b"caf\xe9".
    let pickles: [&[u8]; 3] = [
        b"S'caf\\xe9'\n.",
        b"T\x04\x00\x00\x00caf\xe9.",
        b"U\x04caf\xe9.",
    ];
    for bytes in pickles {
        let err = reduce::from_slice::<Value>(bytes).unwrap_err();
        assert!(err.to_string().contains("is not ASCII"), "{err}");
        let latin1: Value = Unpickler::from_slice(bytes)
            .strings(StringDecoding::Latin1)
            .load()
            .unwrap();
        assert_eq!(latin1.as_str(), Some("café"));
        let raw: Value = Unpickler::from_slice(bytes)
            .strings(StringDecoding::Bytes)
            .load()
            .unwrap();
        assert_eq!(raw, Value::Bytes(b"caf\xe9".to_vec()));
    }
    let ascii: Value = reduce::from_slice(b"S'abc'\n.").unwrap();
    assert_eq!(ascii.as_str(), Some("abc"));
}

#[test]
fn inst_obj_and_dup() {
    // INST: (I1\nI2\nimod\nCls\n.  and OBJ: (cmod\nCls\nI1\no.
    let inst: Value = Unpickler::from_slice(b"(I1\nI2\nimod\nCls\n.")
        .inert(true)
        .load()
        .unwrap();
    assert_eq!(format!("{inst:?}"), "<reduce mod.Cls, (1, 2)>");
    let obj: Value = Unpickler::from_slice(b"(cmod\nCls\nI1\no.")
        .inert(true)
        .load()
        .unwrap();
    assert_eq!(format!("{obj:?}"), "<reduce mod.Cls, (1,)>");
    assert!(
        reduce::from_slice::<Value>(b"(I1\nimod\nCls\n.").is_err(),
        "INST needs inert mode"
    );
    // DUP: one list, twice.
    let g: Graph = reduce::from_slice(b"]2\x86.").unwrap();
    let Value::Tuple(items) = g.root() else {
        panic!("{g:?}")
    };
    assert!(matches!((&items[0], &items[1]), (Value::Ref(a), Value::Ref(b)) if a == b));
}

#[test]
fn bytes_after_stop_are_left_for_the_next_load() {
    let first = reduce::to_vec(&Value::Int(1)).unwrap();
    let second = reduce::to_vec_with_protocol(&Value::str("two"), 0).unwrap();
    let stream = [first.clone(), second.clone()].concat();
    let mut u = Unpickler::from_slice(&stream);
    assert_eq!(u.load::<Value>().unwrap(), Value::Int(1));
    assert_eq!(u.position(), first.len());
    assert_eq!(u.load::<Value>().unwrap().as_str(), Some("two"));
    let mut cursor = Cursor::new(stream);
    let mut u = Unpickler::new(&mut cursor);
    assert_eq!(u.load::<Value>().unwrap(), Value::Int(1));
    drop(u);
    assert_eq!(cursor.position() as usize, first.len());
    // pickle.dump called twice on one file, protocols 2 and 5.
    let file = python(
        "import pickle, sys, io\nb = io.BytesIO()\npickle.dump([1], b, 2)\npickle.dump({'a': b'x'}, b, 5)\nsys.stdout.buffer.write(b.getvalue())",
        b"",
    );
    let mut u = Unpickler::new(Cursor::new(file));
    assert_eq!(format!("{:?}", u.load::<Value>().unwrap()), "[1]");
    assert_eq!(format!("{:?}", u.load::<Value>().unwrap()), "{'a': b'x'}");
    assert!(matches!(
        u.load::<Value>().unwrap_err().kind(),
        ErrorKind::EndOfInput
    ));
}

#[test]
fn persistent_ids_through_hooks() {
    let script = "import pickle, sys, io\n\
        class P(pickle.Pickler):\n    def persistent_id(self, obj):\n        return 'ext-' + obj if isinstance(obj, str) and obj.startswith('@') else None\n\
        for proto in (0, 2):\n    b = io.BytesIO(); P(b, proto).dump(['@a', 1]); v = b.getvalue()\n    sys.stdout.buffer.write(len(v).to_bytes(4, 'little') + v)";
    let out = python(script, b"");
    let mut rest = &out[..];
    for _ in 0..2 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let bytes = &rest[4..4 + n];
        rest = &rest[4 + n..];
        let err = reduce::from_slice::<Value>(bytes).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::NoPersistentLoad), "{err}");
        let mut seen = Vec::new();
        let v: Value = Unpickler::from_slice(bytes)
            .persistent_load(|pid| {
                seen.push(pid.root().as_str().unwrap_or_default().to_owned());
                Ok(Value::Int(99))
            })
            .load()
            .unwrap();
        assert_eq!(format!("{v:?}"), "[99, 1]");
        assert_eq!(seen, vec!["ext-@a"]);
    }
    // Rust writes persistent ids that CPython resolves.
    let v = Value::List(vec![
        Value::PersistentId(Box::new(Value::str("k").into())),
        Value::Int(2),
    ]);
    for proto in [0u8, 1, 2, 5] {
        let bytes = reduce::to_vec_with_protocol(&v, proto).unwrap();
        let printed = python(
            "import pickle, sys\nclass U(pickle.Unpickler):\n    def persistent_load(self, pid):\n        return 'resolved ' + pid\n\
             print(U(sys.stdin.buffer).load())",
            &bytes,
        );
        assert_eq!(
            String::from_utf8_lossy(&printed).trim(),
            "['resolved k', 2]",
            "protocol {proto}"
        );
    }
}

#[test]
fn out_of_band_buffers_both_ways() {
    let script = "import pickle, sys\n\
        bufs = []\n\
        data = pickle.dumps([pickle.PickleBuffer(b'ro'), pickle.PickleBuffer(bytearray(b'rw'))], protocol=5, buffer_callback=bufs.append)\n\
        sys.stdout.buffer.write(data)";
    let bytes = python(script, b"");
    assert!(matches!(
        reduce::from_slice::<Value>(&bytes).unwrap_err().kind(),
        ErrorKind::NoBuffer
    ));
    let v: Value = Unpickler::from_slice(&bytes)
        .buffers(vec![b"ro".to_vec(), b"rw".to_vec()])
        .load()
        .unwrap();
    let Value::List(items) = &v else {
        panic!("{v:?}")
    };
    assert!(matches!(&items[0], Value::Buffer(b) if b.data == b"ro" && b.readonly));
    assert!(matches!(&items[1], Value::Buffer(b) if b.data == b"rw" && !b.readonly));

    // Rust writes them out of band, and CPython takes the buffers back.
    let value = Value::List(vec![
        Value::Buffer(Box::new(PickleBuffer {
            data: b"ro".to_vec(),
            readonly: true,
        })),
        Value::Buffer(Box::new(PickleBuffer {
            data: b"rw".to_vec(),
            readonly: false,
        })),
    ]);
    let mut kept = Vec::new();
    let mut out = Vec::new();
    Pickler::new(&mut out)
        .buffer_callback(|b| {
            kept.push(b.data.clone());
            false
        })
        .dump(&value)
        .unwrap();
    assert_eq!(kept, vec![b"ro".to_vec(), b"rw".to_vec()]);
    assert!(
        out.windows(2).any(|w| w == [0x97, 0x98]),
        "NEXT_BUFFER READONLY_BUFFER"
    );
    let printed = python(
        "import pickle, sys\nv = pickle.loads(sys.stdin.buffer.read(), buffers=[b'ro', bytearray(b'rw')])\n\
         print([bytes(m) for m in v], [memoryview(m).readonly for m in v])",
        &out,
    );
    assert_eq!(
        String::from_utf8_lossy(&printed).trim(),
        "[b'ro', b'rw'] [True, False]"
    );
    // Without a callback, in band: bytes when read-only, bytearray otherwise.
    let in_band = reduce::to_vec(&value).unwrap();
    let printed = python(
        "import pickle, sys\nprint(pickle.loads(sys.stdin.buffer.read()))",
        &in_band,
    );
    assert_eq!(
        String::from_utf8_lossy(&printed).trim(),
        "[b'ro', bytearray(b'rw')]"
    );
}

#[test]
fn extension_codes_match_cpython() {
    for code in [1u32, 300, 70_000] {
        let want = python(
            &format!(
                "import pickle, sys, copyreg, collections\ncopyreg.add_extension('collections', 'OrderedDict', {code})\n\
                 sys.stdout.buffer.write(pickle.dumps(collections.OrderedDict, 2))"
            ),
            b"",
        );
        let mut out = Vec::new();
        Pickler::new(&mut out)
            .protocol(2)
            .extension(code, "collections", "OrderedDict")
            .dump(&Value::global("collections", "OrderedDict"))
            .unwrap();
        assert_eq!(out, want, "extension code {code}");
        let back: Value = Unpickler::from_slice(&out)
            .inert(true)
            .extension(code, "collections", "OrderedDict")
            .load()
            .unwrap();
        assert_eq!(back, Value::global("collections", "OrderedDict"));
        let err = Unpickler::from_slice(&out)
            .inert(true)
            .load::<Value>()
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::UnknownExtension(c) if *c == code),
            "{err}"
        );
    }
}

/// The test virtualenv has the packages the ecosystem tests need.
#[test]
fn python_env_has_the_test_packages() {
    let out = reduce_tests::python_env()
        .args([
            "-c",
            "import numpy, pandas, dill, cloudpickle, fickling, sklearn; print(numpy.__version__)",
        ])
        .output()
        .expect("run the virtualenv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("2."));
}

/// `Unpickler`, `Pickler` and `Reduction` print what they hold: the
/// options, and whether each hook is set.
#[test]
fn picklers_unpicklers_and_reductions_print_their_settings() {
    let u = Unpickler::from_slice(b"N.")
        .inert(true)
        .persistent_load(|_| Ok(Value::None));
    let shown = format!("{u:?}");
    for part in [
        "Unpickler",
        "inert: true",
        "persistent_load: true",
        "limits: Limits",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    let p = Pickler::new(Vec::new()).protocol(2);
    let shown = format!("{p:?}");
    for part in ["Pickler", "protocol: 2", "reducer_override: false"] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    let r = reduce::Reduction::new(Value::str("f"), Value::Tuple(vec![Value::Int(1)]));
    let shown = format!("{r:?}");
    assert!(
        shown.contains("callable: 'f'") && shown.contains("args: (1,)"),
        "{shown}"
    );
}

/// `max_depth` counts as its docs say: the root at depth 0.
#[test]
fn max_depth_counts_from_the_root_at_zero() {
    let nested = |n: usize| {
        let mut v = Value::List(vec![]);
        for _ in 1..n {
            v = Value::List(vec![v]);
        }
        reduce::to_vec(&v).unwrap()
    };
    let load = |bytes: &[u8], max: usize, graph: bool| {
        let limits = reduce::Limits::default().max_depth(max);
        let mut u = Unpickler::from_slice(bytes).limits(limits);
        if graph {
            u.load::<Graph>().map(|_| ())
        } else {
            u.load::<Value>().map(|_| ())
        }
    };
    for graph in [false, true] {
        assert!(load(&nested(1), 0, graph).is_ok());
        assert!(load(&nested(2), 0, graph).is_err());
        assert!(load(&nested(2), 1, graph).is_ok());
        assert!(load(&nested(50), 49, graph).is_ok());
        let err = load(&nested(50), 48, graph).unwrap_err();
        reduce_tests::assert_limit(&err, "max_depth");
    }
}
