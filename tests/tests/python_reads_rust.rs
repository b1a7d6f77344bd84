//! Values built in Rust (not loaded from fixtures), written at every
//! protocol: CPython reads each as the equal object, and for plain data the
//! bytes are exactly `pickle.dumps(obj, protocol=P)`.

use std::io::Write as _;
use std::process::Stdio;

use reduce::{BigInt, Graph, PyStr, Value};
use reduce_tests::{first_difference, python_check, Expect};

fn cases() -> Vec<(Value, &'static str)> {
    let big = |s: &str| Value::int(s.parse::<BigInt>().unwrap());
    let list = Value::List;
    let tuple = Value::Tuple;
    vec![
        (
            list(vec![
                0.into(),
                255.into(),
                256.into(),
                65535.into(),
                65536.into(),
                (-1).into(),
            ]),
            "[0, 255, 256, 65535, 65536, -1]",
        ),
        (
            list(vec![
                2147483647.into(),
                2147483648i64.into(),
                (-2147483649i64).into(),
            ]),
            "[2**31-1, 2**31, -2**31-1]",
        ),
        (
            list(vec![
                big("9223372036854775808"),
                big("18446744073709551616"),
                big("-18446744073709551616"),
            ]),
            "[2**63, 2**64, -2**64]",
        ),
        (big(&(BigInt::from(2).pow(2100)).to_string()), "2**2100"),
        (big(&(-BigInt::from(2).pow(2100)).to_string()), "-2**2100"),
        (
            list(vec![
                0.0.into(),
                (-0.0).into(),
                1e16.into(),
                5e-324.into(),
                f64::INFINITY.into(),
                f64::NEG_INFINITY.into(),
            ]),
            "[0.0, -0.0, 1e16, 5e-324, float('inf'), float('-inf')]",
        ),
        (Value::Float(f64::NAN), "float('nan')"),
        (
            list(vec![
                "héllo".into(),
                "😀".into(),
                "a\nb".into(),
                "back\\slash".into(),
                "nul\0".into(),
            ]),
            "['héllo', '😀', 'a\\nb', 'back\\\\slash', 'nul\\x00']",
        ),
        (
            Value::Str(PyStr::from_code_points([0x61, 0xD800, 0x62]).unwrap()),
            "'a\\ud800b'",
        ),
        (Value::str("x".repeat(70 * 1024)), "'x' * (70 * 1024)"),
        (
            list(vec![
                Value::Bytes(vec![]),
                Value::Bytes(b"ab".to_vec()),
                Value::ByteArray(vec![]),
                Value::ByteArray(b"cd".to_vec()),
            ]),
            "[b'', b'ab', bytearray(), bytearray(b'cd')]",
        ),
        (Value::Bytes(vec![7; 70 * 1024]), "b'\\x07' * (70 * 1024)"),
        (
            list(vec![
                tuple(vec![]),
                tuple(vec![1.into()]),
                tuple(vec![1.into(), 2.into()]),
                tuple(vec![1.into(), 2.into(), 3.into()]),
                tuple(vec![1.into(), 2.into(), 3.into(), 4.into()]),
            ]),
            "[(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)]",
        ),
        (
            Value::Dict(vec![
                (Value::None, 1.into()),
                (7.into(), list(vec![])),
                ("k".into(), Value::Dict(vec![])),
                (tuple(vec![1.into(), 2.into()]), 2.5.into()),
                (Value::FrozenSet(vec![3.into()]), Value::Bool(true)),
                (Value::Bytes(b"b".to_vec()), Value::Bool(false)),
                (1.5.into(), Value::None),
            ]),
            "{None: 1, 7: [], 'k': {}, (1, 2): 2.5, frozenset({3}): True, b'b': False, 1.5: None}",
        ),
        (
            list(vec![
                Value::Set(vec![]),
                Value::Set(vec![1.into(), 2.into()]),
                Value::FrozenSet(vec![]),
                Value::FrozenSet(vec![5.into()]),
            ]),
            "[set(), {1, 2}, frozenset(), frozenset({5})]",
        ),
        (
            Value::List((0..2500).map(Value::from).collect()),
            "list(range(2500))",
        ),
        (Value::global("builtins", "len"), "len"),
    ]
}

#[test]
fn cpython_reads_values_built_in_rust() {
    let mut checks = Vec::new();
    for proto in 0..=5 {
        for (value, expr) in cases() {
            checks.push((
                reduce::to_vec_with_protocol(&value, proto).unwrap(),
                Expect::Expr(expr.to_string()),
            ));
        }
        let mut g = Graph::new(Value::None);
        let me = g.insert(Value::List(vec![1.into()]));
        if let Value::List(items) = g.get_mut(me) {
            items.push(Value::Ref(me));
        }
        *g.root_mut() = Value::Ref(me);
        checks.push((
            reduce::to_vec_with_protocol(&g, proto).unwrap(),
            Expect::Expr("(lambda l: (l.append(l), l)[1])([1])".into()),
        ));
    }
    python_check(&checks);
}

#[test]
fn plain_data_is_byte_identical_to_cpython() {
    // One python3 run: each line is an expression; it answers with the hex
    // of pickle.dumps at each protocol.
    let exprs: Vec<&str> = cases()
        .iter()
        .map(|(_, e)| *e)
        .filter(|e| *e != "len")
        .collect();
    let script = "import sys, pickle\nfor line in sys.stdin.read().splitlines():\n    v = eval(line)\n    print(' '.join(pickle.dumps(v, protocol=p).hex() for p in range(6)))";
    let mut child = reduce_tests::python3()
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exprs.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let answers = String::from_utf8(out.stdout).unwrap();
    let values: Vec<Value> = cases()
        .into_iter()
        .filter(|(_, e)| *e != "len")
        .map(|(v, _)| v)
        .collect();
    for ((value, expr), line) in values.iter().zip(&exprs).zip(answers.lines()) {
        for (proto, hex) in line.split(' ').enumerate() {
            let want: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let got = reduce::to_vec_with_protocol(value, proto as u8).unwrap();
            assert!(
                got == want,
                "{expr} at protocol {proto}: {}",
                first_difference(&want, &got)
            );
        }
    }
}
