//! The code-objects recipe, point by point: the recipe itself, then
//! closures, recursion through globals and through a cell, shared code
//! objects, two processes, bytecode versions and deterministic bytes.

use std::process::Command;
use std::rc::Rc;

use reduce::Registered;
use reduce_examples::{break_cycles, programs, teach};
use tinyvm::{Cell, Code, Function, Value};

fn setup() {
    // Each test binary has its own process-wide registry; tests share it.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| reduce::registry().update(teach).expect("teach tinyvm"));
}

fn round_trip<T: std::any::Any + Clone>(value: &T) -> T {
    let bytes = reduce::to_vec(&Registered(value.clone())).unwrap();
    reduce::from_slice::<Registered<T>>(&bytes).unwrap().0
}

fn call(f: &Rc<Function>, args: Vec<Value>) -> (Value, String) {
    let mut out = Vec::new();
    let v = f.call(args, &mut out).unwrap();
    (v, String::from_utf8(out).unwrap())
}

#[test]
fn the_recipe_says_hello_world() {
    setup();
    let code = Rc::new(programs::hello());
    let recovered: Rc<Code> = round_trip(&code);
    assert_eq!(*recovered, *code, "an equal code object");
    let g = Function::new(recovered, tinyvm::new_globals());
    let (_, printed) = call(&g, vec![Value::Str("world".into())]);
    assert_eq!(printed, "Hello, world\n");
}

#[test]
fn a_closure_travels_with_its_cell() {
    setup();
    let add5 = programs::adder(5);
    let loaded: Rc<Function> = round_trip(&add5);
    assert_eq!(loaded.code.freevars, vec!["n"]);
    assert_eq!(*loaded.closure[0].0.borrow(), Some(Value::Int(5)));
    assert_eq!(call(&loaded, vec![Value::Int(10)]).0, Value::Int(15));
}

#[test]
fn recursion_through_globals_is_a_cycle_kept() {
    setup();
    let fact = programs::fact_function();
    let loaded: Rc<Function> = round_trip(&fact);
    let me = loaded.globals.borrow().get("fact").cloned();
    assert!(
        matches!(me, Some(Value::Function(f)) if Rc::ptr_eq(&f, &loaded)),
        "fact's globals hold fact itself"
    );
    assert_eq!(call(&loaded, vec![Value::Int(10)]).0, Value::Int(3_628_800));
    break_cycles(&loaded);
    break_cycles(&fact);
}

#[test]
fn recursion_through_its_own_cell() {
    setup();
    // fact, but finding itself through a closure cell instead of globals.
    let mut code = programs::fact(tinyvm::BYTECODE_VERSION);
    code.freevars = vec!["fact".into()];
    for pair in code.code.chunks_mut(2) {
        if pair[0] == tinyvm::op::LOAD_GLOBAL {
            pair[0] = tinyvm::op::LOAD_DEREF;
        }
    }
    let cell = Rc::new(Cell::default());
    let f = Rc::new(Function {
        code: Rc::new(code),
        globals: tinyvm::new_globals(),
        closure: vec![cell.clone()],
    });
    *cell.0.borrow_mut() = Some(Value::Function(f.clone()));
    let loaded: Rc<Function> = round_trip(&f);
    let inner = loaded.closure[0].0.borrow().clone();
    assert!(matches!(inner, Some(Value::Function(g)) if Rc::ptr_eq(&g, &loaded)));
    assert_eq!(call(&loaded, vec![Value::Int(6)]).0, Value::Int(720));
    break_cycles(&loaded);
    break_cycles(&f);
}

#[test]
fn shared_code_objects_and_cells_stay_shared() {
    setup();
    let code = Rc::new(programs::hello());
    let cell = Rc::new(Cell::default());
    let make = || {
        Rc::new(Function {
            code: code.clone(),
            globals: tinyvm::new_globals(),
            closure: vec![cell.clone()],
        })
    };
    let pair = vec![Registered(make()), Registered(make())];
    let bytes = reduce::to_vec(&pair).unwrap();
    let occurrences = bytes
        .windows(code.code.len())
        .filter(|w| *w == code.code.as_slice())
        .count();
    assert_eq!(occurrences, 1, "the code object is written once");
    let loaded: Vec<Registered<Rc<Function>>> = reduce::from_slice(&bytes).unwrap();
    assert!(Rc::ptr_eq(&loaded[0].0.code, &loaded[1].0.code));
    assert!(Rc::ptr_eq(&loaded[0].0.closure[0], &loaded[1].0.closure[0]));
    assert_eq!(
        call(&loaded[1].0, vec![Value::Str("twice".into())]).1,
        "Hello, twice\n"
    );
}

#[test]
fn two_processes_dump_and_load() {
    let dir = std::env::temp_dir().join(format!("reduce-recipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fact.pickle");
    let exe = env!("CARGO_BIN_EXE_reduce-examples");
    let dump = Command::new(exe)
        .args(["dump"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let first = std::fs::read(&file).unwrap();
    let load = Command::new(exe)
        .args(["load"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&load.stdout),
        "fact(10) = 3628800\n"
    );
    // A second process writes the same bytes.
    Command::new(exe)
        .args(["dump"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bytecode_versions_migrate_or_are_refused() {
    setup();
    let old = Rc::new(programs::fact(1));
    let migrated: Rc<Code> = round_trip(&old);
    assert_eq!(migrated.version, tinyvm::BYTECODE_VERSION);
    assert_eq!(
        *migrated,
        programs::fact(tinyvm::BYTECODE_VERSION),
        "version 1 jumps migrated"
    );
    // The unmigrated version 1 code would jump to the wrong place.
    let globals = tinyvm::new_globals();
    let f = Function::new(migrated, globals.clone());
    globals
        .borrow_mut()
        .insert("fact".into(), Value::Function(f.clone()));
    assert_eq!(call(&f, vec![Value::Int(5)]).0, Value::Int(120));
    break_cycles(&f);

    let mut future = programs::fact(1);
    future.version = 3;
    let bytes = reduce::to_vec(&Registered(Rc::new(future))).unwrap();
    let err = reduce::from_slice::<Registered<Rc<Code>>>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "this code object was written by tinyvm bytecode version 3; this VM reads versions 1 to 2"
    );
}

#[test]
fn the_same_function_pickles_to_the_same_bytes() {
    setup();
    let a = programs::fact_function();
    let b = programs::fact_function();
    let first = reduce::to_vec(&Registered(a.clone())).unwrap();
    assert_eq!(first, reduce::to_vec(&Registered(b.clone())).unwrap());
    assert_eq!(first, reduce::to_vec(&Registered(a.clone())).unwrap());
    let add = programs::adder(3);
    assert_eq!(
        reduce::to_vec(&Registered(add)).unwrap(),
        reduce::to_vec(&Registered(programs::adder(3))).unwrap()
    );
    break_cycles(&a);
    break_cycles(&b);
}
