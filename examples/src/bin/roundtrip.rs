//! Load a pickle that CPython wrote, print it, write it back and show that
//! the bytes are CPython's, byte for byte.
//!
//! Run: `cargo run -p reduce-examples --bin roundtrip`

use reduce::{Graph, Value};

/// `pickle.dumps(value, protocol=5)` by CPython 3.11; see
/// `examples/data/make_cpython_pickle.py`.
const CPYTHON: &[u8] = include_bytes!("../../data/cpython.pickle");

fn main() -> Result<(), reduce::Error> {
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
    assert_eq!(written, CPYTHON, "round trip changed the bytes");

    let value = Value::List(vec![Value::Int(1), Value::str("two"), Value::Float(3.0)]);
    let bytes = reduce::to_vec_with_protocol(&value, 2)?;
    println!("[1, 'two', 3.0] at protocol 2: {}", escape(&bytes));
    Ok(())
}

fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}
