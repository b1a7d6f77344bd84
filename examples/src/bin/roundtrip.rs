//! Load a pickle that CPython wrote, print it, write it back and show that
//! the bytes are CPython's, byte for byte.
//!
//! Run: `cargo run -p reduce-examples --bin roundtrip` for the pickle built
//! in, or `cargo run -p reduce-examples --bin roundtrip -- FILE` for the
//! first pickle in a file of yours: read in inert mode (nothing it names is
//! called, every object kept as data) and written back at its protocol.
//! The exit status says whether the bytes came back the same.

use reduce::inspect::{self, Arg};
use reduce::{Graph, Unpickler, Value};

/// `pickle.dumps(value, protocol=5)` by CPython 3.11; see
/// `examples/data/make_cpython_pickle.py`.
const CPYTHON: &[u8] = include_bytes!("../../data/cpython.pickle");

fn main() {
    let result = match std::env::args().nth(1) {
        Some(path) => file(&path),
        None => built_in(),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

fn built_in() -> Result<bool, Box<dyn std::error::Error>> {
    // A Graph keeps sharing and cycles: this dict contains itself.
    let graph: Graph = reduce::from_slice(CPYTHON)?;
    println!("loaded {} bytes written by CPython:", CPYTHON.len());
    println!("  {graph:?}");

    let written = reduce::to_vec(&graph)?;
    println!(
        "written back: {} bytes, identical to CPython's: {}",
        written.len(),
        if written == CPYTHON { "yes" } else { "NO" }
    );

    let value = Value::List(vec![Value::Int(1), Value::str("two"), Value::Float(3.0)]);
    let bytes = reduce::to_vec_with_protocol(&value, 2)?;
    println!("[1, 'two', 3.0] at protocol 2: {}", escape(&bytes));
    Ok(written == CPYTHON)
}

/// The first pickle in the file at `path`, read inert and written back.
fn file(path: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let graph = Unpickler::from_slice(&data)
        .inert(true)
        .load_graph()
        .map_err(|e| format!("{path}: {e}"))?;
    let (_, len) = inspect::scan_one(&data)?;
    let original = &data[..len];
    let proto = protocol_of(original)?;
    let written = reduce::to_vec_with_protocol(&graph, proto)?;
    println!("{path}: {len} bytes at protocol {proto}");
    if written == original {
        println!("written back: {} bytes, identical: yes", written.len());
        return Ok(true);
    }
    let at = written
        .iter()
        .zip(original)
        .position(|(a, b)| a != b)
        .unwrap_or(written.len().min(len));
    println!(
        "written back: {} bytes, identical: NO (first difference at byte {at})",
        written.len()
    );
    Ok(false)
}

/// The protocol a pickle was written at: its `PROTO`, or else 1 if it uses
/// protocol 1's binary opcodes, else 0.
fn protocol_of(pickle: &[u8]) -> reduce::Result<u8> {
    let ops = inspect::disassemble(pickle)?;
    if let Some(first) = ops.first() {
        if first.name == "PROTO" {
            if let Arg::Int(n) = &first.arg {
                return Ok(u8::try_from(n).unwrap_or(5));
            }
        }
    }
    let binary = ops
        .iter()
        .any(|i| b"JKMQTUXG]e)uhjqr}o1".contains(&i.opcode));
    Ok(u8::from(binary))
}

fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}
