//! Loads a CPython code object pickled by `examples/python/code_objects.py`
//! (the recipe ported to Python 3.11) into a Rust struct, shows it, and
//! writes it back for Python to run.
//!
//! ```text
//! python3 examples/python/code_objects.py dump 4 > f.pickle
//! cargo run -p reduce-examples --bin python_code -- f.pickle f2.pickle
//! python3 examples/python/code_objects.py call 20 < f2.pickle    # prints 41
//! ```

use reduce_examples::python::PyCode;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: python_code IN.pickle OUT.pickle".into());
    };
    let code: PyCode = reduce::from_slice(&std::fs::read(input)?)?;
    println!(
        "code object {} ({}:{})",
        code.qualname, code.filename, code.firstlineno
    );
    println!("  names:    {:?}", code.names);
    println!("  varnames: {:?}", code.varnames);
    println!("  consts:   {:?}", code.consts);
    println!("  bytecode: {} bytes", code.code.len());
    std::fs::write(output, reduce::to_vec(&code)?)?;
    println!("written back to {output}");
    Ok(())
}
