//! A tiny stack-based bytecode VM whose code objects mirror CPython's.
//!
//! This crate knows nothing about pickling. It stands for the third-party
//! code whose types you cannot implement traits for; the `reduce` examples
//! teach the registry about it after the fact, as the Python Cookbook
//! recipe teaches `copy_reg` about `types.CodeType`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

/// The bytecode version this VM executes. Code objects carry the version
/// they were assembled for.
pub const BYTECODE_VERSION: u32 = 2;

/// Opcodes, each followed by a one-byte argument.
pub mod op {
    pub const LOAD_CONST: u8 = 1;
    pub const LOAD_FAST: u8 = 2;
    pub const STORE_FAST: u8 = 3;
    pub const LOAD_GLOBAL: u8 = 4;
    pub const STORE_GLOBAL: u8 = 5;
    /// Cells are `cellvars` then `freevars`.
    pub const LOAD_DEREF: u8 = 6;
    pub const STORE_DEREF: u8 = 7;
    /// Pushes the cell itself, to build a closure.
    pub const LOAD_CLOSURE: u8 = 8;
    /// Pops `arg` cells and a code object; pushes a function.
    pub const MAKE_FUNCTION: u8 = 9;
    pub const CALL_FUNCTION: u8 = 10;
    pub const RETURN_VALUE: u8 = 11;
    pub const POP_TOP: u8 = 12;
    pub const BINARY_ADD: u8 = 13;
    pub const BINARY_SUBTRACT: u8 = 14;
    pub const BINARY_MULTIPLY: u8 = 15;
    pub const COMPARE_LT: u8 = 16;
    pub const POP_JUMP_IF_FALSE: u8 = 17;
    pub const JUMP: u8 = 18;
}

/// A compiled function body, with the fields of CPython's `types.CodeType`.
#[derive(Clone, Debug, PartialEq)]
pub struct Code {
    pub argcount: u32,
    pub nlocals: u32,
    pub stacksize: u32,
    pub flags: u32,
    pub code: Vec<u8>,
    pub consts: Vec<Const>,
    pub names: Vec<String>,
    pub varnames: Vec<String>,
    pub filename: String,
    pub name: String,
    pub firstlineno: u32,
    /// Line deltas per instruction, as CPython's `co_lnotab` did.
    pub lnotab: Vec<u8>,
    pub freevars: Vec<String>,
    pub cellvars: Vec<String>,
    /// The bytecode version `code` was assembled for.
    pub version: u32,
}

/// A constant of a code object.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    None,
    Int(i64),
    Str(String),
    Code(Rc<Code>),
}

/// A runtime value.
#[derive(Clone)]
pub enum Value {
    None,
    Int(i64),
    Str(Rc<str>),
    Function(Rc<Function>),
    Native(Native),
    Cell(Rc<Cell>),
    Code(Rc<Code>),
}

/// A function implemented in Rust, known by name.
#[derive(Clone, Copy)]
pub struct Native {
    pub name: &'static str,
    pub call: fn(&[Value], &mut dyn std::io::Write) -> Result<Value, VmError>,
}

/// A variable captured by a closure.
#[derive(Default)]
pub struct Cell(pub RefCell<Option<Value>>);

/// A module's global variables, shared by the functions defined in it.
pub type Globals = Rc<RefCell<BTreeMap<String, Value>>>;

/// A code object bound to globals and closure cells.
pub struct Function {
    pub code: Rc<Code>,
    pub globals: Globals,
    pub closure: Vec<Rc<Cell>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmError(pub String);

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VmError {}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Function(func) => write!(f, "<function {}>", func.code.name),
            Value::Native(n) => write!(f, "<native {}>", n.name),
            Value::Cell(_) => f.write_str("<cell>"),
            Value::Code(c) => write!(f, "<code {}>", c.name),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Function(a), Value::Function(b)) => Rc::ptr_eq(a, b),
            (Value::Native(a), Value::Native(b)) => a.name == b.name,
            (Value::Cell(a), Value::Cell(b)) => Rc::ptr_eq(a, b),
            (Value::Code(a), Value::Code(b)) => a == b,
            _ => false,
        }
    }
}

fn print(args: &[Value], out: &mut dyn std::io::Write) -> Result<Value, VmError> {
    let text: Vec<String> = args
        .iter()
        .map(|a| match a {
            Value::Str(s) => s.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    writeln!(out, "{}", text.join(" ")).map_err(|e| VmError(e.to_string()))?;
    Ok(Value::None)
}

/// The natives every module sees, by name.
pub fn builtins() -> Vec<Native> {
    vec![Native {
        name: "print",
        call: print,
    }]
}

/// A fresh module namespace with the builtins in it.
pub fn new_globals() -> Globals {
    let mut g = BTreeMap::new();
    for n in builtins() {
        g.insert(n.name.to_string(), Value::Native(n));
    }
    Rc::new(RefCell::new(g))
}

impl Function {
    /// `new.function(code, globals)`: a function without closure.
    pub fn new(code: Rc<Code>, globals: Globals) -> Rc<Function> {
        Rc::new(Function {
            code,
            globals,
            closure: vec![],
        })
    }

    /// Calls the function, writing what it prints to `out`.
    pub fn call(
        self: &Rc<Self>,
        args: Vec<Value>,
        out: &mut dyn std::io::Write,
    ) -> Result<Value, VmError> {
        run(self, args, out, 0)
    }
}

fn run(
    func: &Rc<Function>,
    args: Vec<Value>,
    out: &mut dyn std::io::Write,
    depth: usize,
) -> Result<Value, VmError> {
    let code = &func.code;
    if code.version != BYTECODE_VERSION {
        return Err(VmError(format!(
            "{} was assembled for bytecode version {}, this VM runs version {BYTECODE_VERSION}",
            code.name, code.version
        )));
    }
    if depth > 200 {
        return Err(VmError("maximum recursion depth exceeded".into()));
    }
    if args.len() != code.argcount as usize {
        return Err(VmError(format!(
            "{}() takes {} arguments, {} given",
            code.name,
            code.argcount,
            args.len()
        )));
    }
    let mut locals: Vec<Value> = args;
    locals.resize(code.nlocals as usize, Value::None);
    let mut cells: Vec<Rc<Cell>> = code
        .cellvars
        .iter()
        .map(|_| Rc::new(Cell::default()))
        .collect();
    cells.extend(func.closure.iter().cloned());
    // An argument that is also a cell variable starts in its cell.
    for (i, name) in code.cellvars.iter().enumerate() {
        if let Some(pos) = code.varnames.iter().position(|v| v == name) {
            *cells[i].0.borrow_mut() = locals.get(pos).cloned();
        }
    }
    let mut stack: Vec<Value> = Vec::with_capacity(code.stacksize as usize);
    let err = |m: &str| VmError(format!("{}: {m}", code.name));
    let mut pc = 0;
    while pc + 1 < code.code.len() {
        let (opcode, arg) = (code.code[pc], code.code[pc + 1] as usize);
        pc += 2;
        let mut pop = || stack.pop().ok_or_else(|| err("stack underflow"));
        match opcode {
            op::LOAD_CONST => {
                let c = code.consts.get(arg).ok_or_else(|| err("bad const"))?;
                let v = match c {
                    Const::None => Value::None,
                    Const::Int(i) => Value::Int(*i),
                    Const::Str(s) => Value::Str(s.as_str().into()),
                    Const::Code(c) => Value::Code(c.clone()),
                };
                stack.push(v);
            }
            op::LOAD_FAST => stack.push(locals.get(arg).cloned().ok_or_else(|| err("bad local"))?),
            op::STORE_FAST => {
                let v = pop()?;
                *locals.get_mut(arg).ok_or_else(|| err("bad local"))? = v;
            }
            op::LOAD_GLOBAL => {
                let name = code.names.get(arg).ok_or_else(|| err("bad name"))?;
                let v = func.globals.borrow().get(name).cloned();
                stack.push(v.ok_or_else(|| err(&format!("name '{name}' is not defined")))?);
            }
            op::STORE_GLOBAL => {
                let name = code.names.get(arg).ok_or_else(|| err("bad name"))?.clone();
                let v = pop()?;
                func.globals.borrow_mut().insert(name, v);
            }
            op::LOAD_DEREF => {
                let cell = cells.get(arg).ok_or_else(|| err("bad cell"))?;
                let v = cell.0.borrow().clone();
                stack.push(v.ok_or_else(|| err("free variable referenced before assignment"))?);
            }
            op::STORE_DEREF => {
                let v = pop()?;
                *cells
                    .get(arg)
                    .ok_or_else(|| err("bad cell"))?
                    .0
                    .borrow_mut() = Some(v);
            }
            op::LOAD_CLOSURE => stack.push(Value::Cell(
                cells.get(arg).ok_or_else(|| err("bad cell"))?.clone(),
            )),
            op::MAKE_FUNCTION => {
                let mut closure = Vec::new();
                for _ in 0..arg {
                    match pop()? {
                        Value::Cell(c) => closure.push(c),
                        _ => return Err(err("closure needs cells")),
                    }
                }
                closure.reverse();
                let Value::Code(c) = pop()? else {
                    return Err(err("MAKE_FUNCTION needs a code object"));
                };
                stack.push(Value::Function(Rc::new(Function {
                    code: c,
                    globals: func.globals.clone(),
                    closure,
                })));
            }
            op::CALL_FUNCTION => {
                let mut args = Vec::new();
                for _ in 0..arg {
                    args.push(pop()?);
                }
                args.reverse();
                let result = match pop()? {
                    Value::Function(f) => run(&f, args, out, depth + 1)?,
                    Value::Native(n) => (n.call)(&args, out)?,
                    other => return Err(err(&format!("{other:?} is not callable"))),
                };
                stack.push(result);
            }
            op::RETURN_VALUE => return pop(),
            op::POP_TOP => {
                pop()?;
            }
            op::BINARY_ADD | op::BINARY_SUBTRACT | op::BINARY_MULTIPLY | op::COMPARE_LT => {
                let b = pop()?;
                let a = pop()?;
                let v = match (opcode, a, b) {
                    (op::BINARY_ADD, Value::Int(a), Value::Int(b)) => Value::Int(a.wrapping_add(b)),
                    (op::BINARY_ADD, Value::Str(a), Value::Str(b)) => {
                        Value::Str(format!("{a}{b}").into())
                    }
                    (op::BINARY_SUBTRACT, Value::Int(a), Value::Int(b)) => {
                        Value::Int(a.wrapping_sub(b))
                    }
                    (op::BINARY_MULTIPLY, Value::Int(a), Value::Int(b)) => {
                        Value::Int(a.wrapping_mul(b))
                    }
                    (op::COMPARE_LT, Value::Int(a), Value::Int(b)) => Value::Int((a < b) as i64),
                    (_, a, b) => return Err(err(&format!("unsupported operands {a:?} and {b:?}"))),
                };
                stack.push(v);
            }
            op::POP_JUMP_IF_FALSE => {
                if matches!(pop()?, Value::Int(0) | Value::None) {
                    pc = arg * 2;
                }
            }
            op::JUMP => pc = arg * 2,
            other => return Err(err(&format!("unknown opcode {other}"))),
        }
    }
    Err(err("fell off the end of the code"))
}

/// Assembles `(opcode, arg)` pairs into a code object of the current version.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    name: &str,
    argcount: u32,
    varnames: &[&str],
    cellvars: &[&str],
    freevars: &[&str],
    names: &[&str],
    consts: Vec<Const>,
    ops: &[(u8, u8)],
) -> Code {
    Code {
        argcount,
        nlocals: varnames.len() as u32,
        stacksize: 8,
        flags: if freevars.is_empty() { 0 } else { 0x10 },
        code: ops.iter().flat_map(|&(o, a)| [o, a]).collect(),
        consts,
        names: names.iter().map(|s| s.to_string()).collect(),
        varnames: varnames.iter().map(|s| s.to_string()).collect(),
        filename: "<tinyvm>".into(),
        name: name.into(),
        firstlineno: 1,
        lnotab: vec![0; ops.len()],
        freevars: freevars.iter().map(|s| s.to_string()).collect(),
        cellvars: cellvars.iter().map(|s| s.to_string()).collect(),
        version: BYTECODE_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::op::*;
    use super::*;

    #[test]
    fn factorial_recurses_through_globals() {
        let fact = assemble(
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
                (POP_JUMP_IF_FALSE, 6),
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
        let globals = new_globals();
        let f = Function::new(Rc::new(fact), globals.clone());
        globals
            .borrow_mut()
            .insert("fact".into(), Value::Function(f.clone()));
        assert_eq!(
            f.call(vec![Value::Int(5)], &mut Vec::new()).unwrap(),
            Value::Int(120)
        );
        globals.borrow_mut().clear();
    }
}
