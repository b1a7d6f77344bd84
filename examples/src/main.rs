//! The Python Cookbook recipe "Pickling Code Objects", done fully, in Rust.
//!
//! Run: `cargo run -p reduce-examples` for the whole walk-through, or in two
//! processes, as the recipe's two scripts:
//!
//! ```text
//! cargo run -p reduce-examples -- dump fact.pickle
//! cargo run -p reduce-examples -- load fact.pickle
//! ```

use std::rc::Rc;

use reduce::Registered;
use reduce_examples::{break_cycles, programs, teach};
use tinyvm::{Code, Function, Value};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // copy_reg.pickle(types.CodeType, reduce_code): teach the process-wide
    // registry about a crate that knows nothing about pickling.
    reduce::registry().update(teach)?;

    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dump", path] => dump(path),
        ["load", path] => load(path),
        [] => walk_through(),
        _ => Err("usage: reduce-examples [dump FILE | load FILE]".into()),
    }
}

fn walk_through() -> Result<(), Box<dyn std::error::Error>> {
    let out = &mut std::io::stdout();

    // The recipe: pickle a function's code object, recover an equal one,
    // build a new function around it with our globals, and call it.
    let code = Rc::new(programs::hello());
    let pickled = reduce::to_vec(&Registered(code.clone()))?;
    let recovered: Registered<Rc<Code>> = reduce::from_slice(&pickled)?;
    assert_eq!(
        *recovered.0, *code,
        "the recovered code object equals the original"
    );
    println!(
        "recipe: code object of f, {} bytes pickled, recovered equal",
        pickled.len()
    );
    let g = Function::new(recovered.0, tinyvm::new_globals());
    g.call(vec![Value::Str("world".into())], out)?;

    // Where the recipe gave up: a closure, pickled by value with its cell.
    let add5 = programs::adder(5);
    let pickled = reduce::to_vec(&Registered(add5.clone()))?;
    let loaded: Registered<Rc<Function>> = reduce::from_slice(&pickled)?;
    let sum = loaded.0.call(vec![Value::Int(10)], out)?;
    println!("closure: add = make_adder(5), pickled by value, add(10) = {sum:?}");

    // Recursion: fact finds itself through its globals, a cycle in the pickle.
    let fact = programs::fact_function();
    let pickled = reduce::to_vec(&Registered(fact.clone()))?;
    let loaded: Registered<Rc<Function>> = reduce::from_slice(&pickled)?;
    let result = loaded.0.call(vec![Value::Int(10)], out)?;
    println!(
        "recursion: fact(10) = {result:?} after a round trip through {} bytes",
        pickled.len()
    );
    break_cycles(&loaded.0);

    // Two functions sharing one code object: shared in the pickle, not copied.
    let shared = Rc::new(programs::hello());
    let pair = vec![
        Registered(Function::new(shared.clone(), tinyvm::new_globals())),
        Registered(Function::new(shared, tinyvm::new_globals())),
    ];
    let pickled = reduce::to_vec(&pair)?;
    let loaded: Vec<Registered<Rc<Function>>> = reduce::from_slice(&pickled)?;
    println!(
        "sharing: two functions, one code object after loading: {}",
        Rc::ptr_eq(&loaded[0].0.code, &loaded[1].0.code)
    );
    loaded[1].0.call(vec![Value::Str("again".into())], out)?;

    // Versions: a code object from an older VM is migrated, one from a newer
    // VM is refused with a clear error.
    let old = reduce::to_vec(&Registered(Rc::new(programs::fact(1))))?;
    let migrated: Registered<Rc<Code>> = reduce::from_slice(&old)?;
    println!(
        "versions: a version 1 code object loads as version {}",
        migrated.0.version
    );
    let mut future = programs::fact(1);
    future.version = 99;
    let err =
        reduce::from_slice::<Registered<Rc<Code>>>(&reduce::to_vec(&Registered(Rc::new(future)))?)
            .err()
            .ok_or("a future version loaded")?;
    println!("versions: {err}");
    break_cycles(&fact);
    Ok(())
}

/// The recipe's first script: pickle a function to a file.
fn dump(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let fact = programs::fact_function();
    std::fs::write(path, reduce::to_vec(&Registered(fact.clone()))?)
        .map_err(|e| format!("{path}: {e}"))?;
    println!("wrote fact to {path}");
    break_cycles(&fact);
    Ok(())
}

/// The recipe's second script: load it in another process and call it.
fn load(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let fact: Registered<Rc<Function>> =
        reduce::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let result = fact.0.call(vec![Value::Int(10)], &mut std::io::stdout())?;
    println!("fact(10) = {result:?}");
    break_cycles(&fact.0);
    Ok(())
}
