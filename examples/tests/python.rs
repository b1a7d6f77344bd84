//! CPython's own functions through Rust: a real code object pickled by the
//! recipe ported to Python 3.11 loads into a Rust struct and back, and
//! functions pickled by value by cloudpickle survive Rust's inert mode, both
//! callable in Python afterwards with the same result.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use reduce::{Graph, Unpickler, Value};
use reduce_examples::python::PyCode;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/code_objects.py")
}

/// Runs python3 with `args`, feeding `stdin`; returns stdout.
fn python(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn cpython_code_objects_load_into_rust_and_back() {
    let script = script();
    let script = script.to_str().unwrap();
    for proto in 2..=5u8 {
        let pickled = python(&[script, "dump", &proto.to_string()], b"");
        let code: PyCode =
            reduce::from_slice(&pickled).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        assert_eq!(code.name, "f");
        assert_eq!(code.argcount, 1);
        assert_eq!(code.varnames, vec!["x", "double"]);
        assert!(!code.code.is_empty(), "bytecode");
        let nested = code
            .consts
            .iter()
            .filter(|c| matches!(c, Value::Reduce(r) if format!("{:?}", r.callable) == "code_objects.code_ctor"))
            .count();
        assert_eq!(
            nested, 1,
            "the inner function's code object is a nested const: {:?}",
            code.consts
        );
        // Rust writes it back; Python builds a function from it and calls it.
        let written = reduce::to_vec_with_protocol(&code, proto).unwrap();
        let printed = python(&[script, "call", "20"], &written);
        assert_eq!(
            String::from_utf8_lossy(&printed).trim(),
            "41",
            "f(20) = 2 * 20 + 1"
        );
        // And the same function pickles to the same bytes from Rust each time.
        assert_eq!(
            written,
            reduce::to_vec_with_protocol(&code.clone(), proto).unwrap()
        );
    }
}

/// Installs cloudpickle for the current user if it is missing.
fn ensure_cloudpickle() {
    let have = Command::new("python3")
        .args(["-c", "import cloudpickle"])
        .status()
        .unwrap();
    if !have.success() {
        let install = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "cloudpickle",
            ])
            .status()
            .expect("pip");
        assert!(install.success(), "pip install cloudpickle failed");
    }
}

#[test]
fn cloudpickled_functions_survive_inert_mode() {
    ensure_cloudpickle();
    let make = r#"
import sys, cloudpickle
def make_adder(n):
    def add(x):
        return x + n
    return add
which = sys.argv[1]
f = (lambda x: x * 3 + 1) if which == "lambda" else make_adder(5)
sys.stdout.buffer.write(cloudpickle.dumps(f))
"#;
    let call = "import sys, pickle; f = pickle.loads(sys.stdin.buffer.read()); print(f(10))";
    for (which, want) in [("lambda", "31"), ("closure", "15")] {
        let original = python(&["-c", make, which], b"");
        let graph: Graph = Unpickler::from_slice(&original).inert(true).load().unwrap();
        let written = reduce::to_vec(&graph).unwrap();
        assert_eq!(
            written, original,
            "{which}: inert round trip is byte-identical"
        );
        let printed = python(&["-c", call], &written);
        assert_eq!(
            String::from_utf8_lossy(&printed).trim(),
            want,
            "{which}(10)"
        );
        // Strict mode refuses to build what cloudpickle's globals would run.
        assert!(reduce::from_slice::<Graph>(&original).is_err());
    }
}
