//! The Python Cookbook's "Pickling Code Objects", done fully, in Rust.
//!
//! The recipe registers a reducer for `types.CodeType` with
//! `copy_reg.pickle` and gives up on closures. [`teach`] registers reducers
//! and constructors for [`tinyvm`]'s code objects, functions, closure cells
//! and globals, a crate that knows nothing about `reduce`, so that functions
//! travel by value: closures, recursion and shared code objects included.
//!
//! | tinyvm | pickled as |
//! |---|---|
//! | `Rc<Code>` | `tinyvm.code_ctor(version, argcount, nlocals, stacksize, flags, code, consts, names, varnames, filename, name, firstlineno, lnotab, freevars, cellvars)` |
//! | `Rc<Function>` | `tinyvm.make_function(code, globals, closure)` |
//! | `Globals` | `tinyvm.Globals()` with the namespace as its state |
//! | `Rc<Cell>` | `tinyvm.Cell()` with `(value,)` (or `()` when empty) as its state |
//! | a native (`print`) | the global `tinyvm.builtins.print`, by name |
//!
//! Shared objects (a code object used by two functions, a cell two closures
//! share) are written once. Globals and cells get their contents as state,
//! after they are made, which is what lets a recursive function refer to
//! itself through its globals or its own cell.

use std::collections::BTreeMap;
use std::rc::Rc;

use reduce::{FnReduce, Interned, Node, Registry, Result, Saver, Value as PyValue};
use tinyvm::{Cell, Code, Const, Function, Globals, Value, BYTECODE_VERSION};

/// The oldest bytecode version [`teach`]'s constructor migrates from.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// `copy_reg.pickle(types.CodeType, reduce_code)`, and the rest of tinyvm:
/// teaches `registry` to write and read tinyvm's values.
pub fn teach(registry: &mut Registry) -> Result<()> {
    registry.register_reducer(|code: &Rc<Code>, s| save_code(code, s))?;
    registry.register_reducer(|func: &Rc<Function>, s| save_function(func, s))?;
    registry.register_reducer(|globals: &Globals, s| save_globals(globals, s))?;
    registry.register_reducer(|cell: &Rc<Cell>, s| save_cell(cell, s))?;
    registry.register_reducer(|value: &Value, s| save_value(value, s))?;

    registry.register_constructor("tinyvm", "code_ctor", |node| {
        node.once(|| code_from_args(node).map(Rc::new), |_, _| Ok(()))
    })?;
    registry.register_constructor("tinyvm", "make_function", |node| {
        node.once(|| function_from_args(node), |_, _| Ok(()))
    })?;
    registry.register_constructor("tinyvm", "Globals", |node| {
        node.once(|| Ok(Globals::default()), fill_globals)
    })?;
    registry.register_constructor("tinyvm", "Cell", |node| {
        node.once(|| Ok(Rc::new(Cell::default())), fill_cell)
    })?;
    // Natives travel by name; registering the path allows the global.
    for native in tinyvm::builtins() {
        registry.register_constructor("tinyvm.builtins", native.name, move |node| {
            Err::<(), _>(node.error_msg(format!(
                "tinyvm.builtins.{} is a name, not a constructor",
                native.name
            )))
        })?;
    }
    Ok(())
}

fn strs(s: &mut Saver<'_, '_>, items: &[String]) -> Result<()> {
    s.tuple(items.len(), |s| items.iter().try_for_each(|i| s.save(i)))
}

fn save_code(code: &Rc<Code>, s: &mut Saver<'_, '_>) -> Result<()> {
    s.shared(Rc::as_ptr(code) as usize, |s| {
        let args = FnReduce(|s: &mut Saver<'_, '_>| {
            s.tuple(15, |s| {
                s.save(&code.version)?;
                s.save(&code.argcount)?;
                s.save(&code.nlocals)?;
                s.save(&code.stacksize)?;
                s.save(&code.flags)?;
                s.bytes(&code.code)?;
                s.tuple(code.consts.len(), |s| {
                    code.consts.iter().try_for_each(|c| save_const(c, s))
                })?;
                strs(s, &code.names)?;
                strs(s, &code.varnames)?;
                s.save(&code.filename)?;
                s.save(&code.name)?;
                s.save(&code.firstlineno)?;
                s.bytes(&code.lnotab)?;
                strs(s, &code.freevars)?;
                strs(s, &code.cellvars)
            })
        });
        s.reduction("tinyvm", "code_ctor").args(&args).save()
    })
}

fn save_const(c: &Const, s: &mut Saver<'_, '_>) -> Result<()> {
    match c {
        Const::None => s.none(),
        Const::Int(i) => s.i64(*i),
        Const::Str(t) => s.str(t),
        Const::Code(code) => save_code(code, s),
    }
}

fn save_function(func: &Rc<Function>, s: &mut Saver<'_, '_>) -> Result<()> {
    s.shared(Rc::as_ptr(func) as usize, |s| {
        let args = FnReduce(|s: &mut Saver<'_, '_>| {
            s.tuple(3, |s| {
                save_code(&func.code, s)?;
                save_globals(&func.globals, s)?;
                s.tuple(func.closure.len(), |s| {
                    func.closure.iter().try_for_each(|c| save_cell(c, s))
                })
            })
        });
        s.reduction("tinyvm", "make_function").args(&args).save()
    })
}

fn save_globals(globals: &Globals, s: &mut Saver<'_, '_>) -> Result<()> {
    s.shared(Rc::as_ptr(globals) as usize, |s| {
        let state = FnReduce(|s: &mut Saver<'_, '_>| {
            let map = globals.borrow();
            let entries: Vec<(Interned<'_>, FnReduce<_>)> = map
                .iter()
                .map(|(k, v)| {
                    (
                        Interned(k),
                        FnReduce(move |s: &mut Saver<'_, '_>| save_value(v, s)),
                    )
                })
                .collect();
            s.dict(entries.iter().map(|(k, v)| (k, v)))
        });
        s.reduction("tinyvm", "Globals").state(&state).save()
    })
}

fn save_cell(cell: &Rc<Cell>, s: &mut Saver<'_, '_>) -> Result<()> {
    s.shared(Rc::as_ptr(cell) as usize, |s| {
        let contents = cell.0.borrow().clone();
        let state = FnReduce(|s: &mut Saver<'_, '_>| match &contents {
            Some(v) => s.tuple(1, |s| save_value(v, s)),
            None => s.tuple(0, |_| Ok(())),
        });
        s.reduction("tinyvm", "Cell").state(&state).save()
    })
}

fn save_value(v: &Value, s: &mut Saver<'_, '_>) -> Result<()> {
    match v {
        Value::None => s.none(),
        Value::Int(i) => s.i64(*i),
        Value::Str(t) => s.str(t),
        Value::Function(f) => save_function(f, s),
        Value::Native(n) => s.global("tinyvm.builtins", n.name),
        Value::Cell(c) => save_cell(c, s),
        Value::Code(c) => save_code(c, s),
    }
}

/// Reads a code object's arguments; refuses versions it cannot run and
/// migrates the ones it can.
fn code_from_args(node: Node<'_>) -> Result<Code> {
    let args = node.reduction("tinyvm", "code_ctor")?.args();
    let items = args.items()?;
    if items.len() != 15 {
        return Err(args.error_msg(format!(
            "tinyvm.code_ctor takes 15 arguments, found {}",
            items.len()
        )));
    }
    let version: u32 = args.field("version", &items[0])?;
    if !(OLDEST_READABLE_VERSION..=BYTECODE_VERSION).contains(&version) {
        return Err(args.error_msg(format!(
            "this code object was written by tinyvm bytecode version {version}; this VM reads versions {OLDEST_READABLE_VERSION} to {BYTECODE_VERSION}"
        )));
    }
    let consts_node = &items[6];
    let consts = args.with_field("consts", consts_node, |n| {
        let list = n.items()?;
        list.iter()
            .enumerate()
            .map(|(i, c)| n.with_field(&i.to_string(), c, const_from))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut code = Code {
        version,
        argcount: args.field("argcount", &items[1])?,
        nlocals: args.field("nlocals", &items[2])?,
        stacksize: args.field("stacksize", &items[3])?,
        flags: args.field("flags", &items[4])?,
        code: args.with_field("code", &items[5], reduce::bytes::construct)?,
        consts,
        names: args.field("names", &items[7])?,
        varnames: args.field("varnames", &items[8])?,
        filename: args.field("filename", &items[9])?,
        name: args.field("name", &items[10])?,
        firstlineno: args.field("firstlineno", &items[11])?,
        lnotab: args.with_field("lnotab", &items[12], reduce::bytes::construct)?,
        freevars: args.field("freevars", &items[13])?,
        cellvars: args.field("cellvars", &items[14])?,
    };
    migrate(&mut code);
    Ok(code)
}

/// Version 1 jumped to byte offsets; version 2 jumps to instruction
/// numbers.
pub fn migrate(code: &mut Code) {
    if code.version == 1 {
        for pair in code.code.chunks_mut(2) {
            if let [op, arg] = pair {
                if *op == tinyvm::op::JUMP || *op == tinyvm::op::POP_JUMP_IF_FALSE {
                    *arg /= 2;
                }
            }
        }
        code.version = 2;
    }
}

fn const_from(node: Node<'_>) -> Result<Const> {
    Ok(match node.value() {
        PyValue::None => Const::None,
        PyValue::Int(i) => Const::Int(*i),
        PyValue::Str(_) => Const::Str(node.construct()?),
        _ => Const::Code(node.registered::<Rc<Code>>()?),
    })
}

fn function_from_args(node: Node<'_>) -> Result<Rc<Function>> {
    let args = node.reduction("tinyvm", "make_function")?.args();
    let items = args.items()?;
    if items.len() != 3 {
        return Err(args.error_msg("tinyvm.make_function takes (code, globals, closure)"));
    }
    let code = args.with_field("code", &items[0], |n| n.registered::<Rc<Code>>())?;
    let globals = args.with_field("globals", &items[1], |n| n.registered::<Globals>())?;
    let closure = args.with_field("closure", &items[2], |n| {
        let cells = n.items()?;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| n.with_field(&i.to_string(), c, |c| c.registered::<Rc<Cell>>()))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(Rc::new(Function {
        code,
        globals,
        closure,
    }))
}

fn fill_globals(globals: &Globals, node: Node<'_>) -> Result<()> {
    let call = node.reduction("tinyvm", "Globals")?;
    let Some(state) = call.state() else {
        return Ok(());
    };
    let entries = state.with(|st| -> Result<BTreeMap<String, Value>> {
        st.pairs()?
            .iter()
            .map(|(k, v)| {
                let name: String = st.sibling(k)?;
                let value = st.with_field(&name, v, value_from)?;
                Ok((name, value))
            })
            .collect()
    })?;
    globals.borrow_mut().extend(entries);
    Ok(())
}

fn fill_cell(cell: &Rc<Cell>, node: Node<'_>) -> Result<()> {
    let call = node.reduction("tinyvm", "Cell")?;
    let Some(state) = call.state() else {
        return Ok(());
    };
    let contents = state.with(|st| -> Result<Option<Value>> {
        let items = st.items()?;
        items
            .first()
            .map(|v| st.with_field("contents", v, value_from))
            .transpose()
    })?;
    *cell.0.borrow_mut() = contents;
    Ok(())
}

fn value_from(node: Node<'_>) -> Result<Value> {
    Ok(match node.value() {
        PyValue::None => Value::None,
        PyValue::Int(i) => Value::Int(*i),
        PyValue::Str(_) => Value::Str(node.construct::<String>()?.into()),
        PyValue::Global(g) if g.module == "tinyvm.builtins" => Value::Native(
            tinyvm::builtins()
                .into_iter()
                .find(|n| n.name == g.name)
                .ok_or_else(|| node.error_msg(format!("no native named {}", g.name)))?,
        ),
        PyValue::Reduce(_) => {
            let global = node.any_reduction()?.global().name.clone();
            match global.as_str() {
                "make_function" => Value::Function(node.registered()?),
                "Cell" => Value::Cell(node.registered()?),
                "code_ctor" => Value::Code(node.registered()?),
                other => return Err(node.error_msg(format!("not a tinyvm value: tinyvm.{other}"))),
            }
        }
        other => return Err(node.expected(&format!("a tinyvm value, not {}", other.type_name()))),
    })
}

/// Breaks the reference cycles of a function's globals and cells, so that
/// dropping it frees it (tinyvm uses `Rc`).
pub fn break_cycles(func: &Rc<Function>) {
    func.globals.borrow_mut().clear();
    for cell in &func.closure {
        cell.0.borrow_mut().take();
    }
}

/// The functions the example pickles, assembled for tinyvm.
pub mod programs {
    use std::rc::Rc;

    use tinyvm::op::*;
    use tinyvm::{assemble, Code, Const, Function, Globals, Value};

    /// `def f(x): print('Hello,', x)`, the recipe's function.
    pub fn hello() -> Code {
        assemble(
            "f",
            1,
            &["x"],
            &[],
            &[],
            &["print"],
            vec![Const::Str("Hello,".into()), Const::None],
            &[
                (LOAD_GLOBAL, 0),
                (LOAD_CONST, 0),
                (LOAD_FAST, 0),
                (CALL_FUNCTION, 2),
                (POP_TOP, 0),
                (LOAD_CONST, 1),
                (RETURN_VALUE, 0),
            ],
        )
    }

    /// `def make_adder(n): def add(x): return x + n; return add`: `n` is a
    /// cell variable of `make_adder` and a free variable of `add`.
    pub fn make_adder() -> Code {
        let add = assemble(
            "add",
            1,
            &["x"],
            &[],
            &["n"],
            &[],
            vec![],
            &[
                (LOAD_FAST, 0),
                (LOAD_DEREF, 0),
                (BINARY_ADD, 0),
                (RETURN_VALUE, 0),
            ],
        );
        assemble(
            "make_adder",
            1,
            &["n"],
            &["n"],
            &[],
            &[],
            vec![Const::Code(Rc::new(add))],
            &[
                (LOAD_CONST, 0),
                (LOAD_CLOSURE, 0),
                (MAKE_FUNCTION, 1),
                (RETURN_VALUE, 0),
            ],
        )
    }

    /// `def fact(n): return 1 if n < 2 else n * fact(n - 1)`, which finds
    /// itself through its globals. `version` 1 jumps to byte offsets.
    pub fn fact(version: u32) -> Code {
        let target = if version == 1 { 12 } else { 6 };
        let mut code = assemble(
            "fact",
            1,
            &["n"],
            &[],
            &[],
            &["fact"],
            vec![Const::Int(2), Const::Int(1)],
            &[
                (LOAD_FAST, 0),
                (LOAD_CONST, 0),
                (COMPARE_LT, 0),
                (POP_JUMP_IF_FALSE, target),
                (LOAD_CONST, 1),
                (RETURN_VALUE, 0),
                (LOAD_FAST, 0),
                (LOAD_GLOBAL, 0),
                (LOAD_FAST, 0),
                (LOAD_CONST, 1),
                (BINARY_SUBTRACT, 0),
                (CALL_FUNCTION, 1),
                (BINARY_MULTIPLY, 0),
                (RETURN_VALUE, 0),
            ],
        );
        code.version = version;
        code
    }

    /// A module defining `fact` in its own globals: a cycle, function ->
    /// globals -> function.
    pub fn fact_function() -> Rc<Function> {
        let globals: Globals = tinyvm::new_globals();
        let f = Function::new(Rc::new(fact(tinyvm::BYTECODE_VERSION)), globals.clone());
        globals
            .borrow_mut()
            .insert("fact".into(), Value::Function(f.clone()));
        f
    }

    /// Calls `make_adder(n)` in the VM and returns the closure it makes.
    pub fn adder(n: i64) -> Rc<Function> {
        let maker = Function::new(Rc::new(make_adder()), tinyvm::new_globals());
        match maker.call(vec![Value::Int(n)], &mut Vec::new()) {
            Ok(Value::Function(add)) => add,
            other => panic!("make_adder returned {other:?}"),
        }
    }
}

/// CPython's own code objects, as `examples/python/code_objects.py` pickles
/// them: `code_objects.code_ctor(*fields)`, the fields of Python 3.11's
/// `types.CodeType` in order.
pub mod python {
    use reduce::{Reduce, Value};

    /// A CPython 3.11 code object. Nested code objects (of inner functions)
    /// stay in `consts` as reduced values.
    #[derive(Reduce, Debug, Clone, PartialEq)]
    #[reduce(module = "code_objects", name = "code_ctor")]
    pub struct PyCode {
        pub argcount: i64,
        pub posonlyargcount: i64,
        pub kwonlyargcount: i64,
        pub nlocals: i64,
        pub stacksize: i64,
        pub flags: i64,
        #[reduce(bytes)]
        pub code: Vec<u8>,
        #[reduce(with = "reduce::tuple")]
        pub consts: Vec<Value>,
        #[reduce(with = "reduce::tuple")]
        pub names: Vec<String>,
        #[reduce(with = "reduce::tuple")]
        pub varnames: Vec<String>,
        pub filename: String,
        pub name: String,
        pub qualname: String,
        pub firstlineno: i64,
        #[reduce(bytes)]
        pub linetable: Vec<u8>,
        #[reduce(bytes)]
        pub exceptiontable: Vec<u8>,
        #[reduce(with = "reduce::tuple")]
        pub freevars: Vec<String>,
        #[reduce(with = "reduce::tuple")]
        pub cellvars: Vec<String>,
    }
}
