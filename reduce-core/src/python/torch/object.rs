//! What a checkpoint holds: plain data with tensors typed.

use std::collections::HashMap;
use std::sync::Arc;

use num_bigint::BigInt;

use super::dtype::DType;
use super::tensor::{Storage, Tensor};
use crate::base::error::{Error, Result};

/// One object of a checkpoint: the Python data `torch.load(weights_only=True)`
/// can return, with tensors, dtypes, devices and sizes typed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Object {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An `int` that fits in an `i64`.
    Int(i64),
    /// An `int` outside the `i64` range.
    BigInt(BigInt),
    /// A `float`.
    Float(f64),
    /// A `complex`: real and imaginary parts.
    Complex(f64, f64),
    /// A `str`.
    Str(String),
    /// A `bytes` (or `bytearray`) object.
    Bytes(Vec<u8>),
    /// A `tuple`.
    Tuple(Vec<Object>),
    /// A `list`.
    List(Vec<Object>),
    /// A `set`, in the order its items were pickled.
    Set(Vec<Object>),
    /// A `dict`, in insertion order: the items as the pickle sets them. A
    /// pickle that sets one key twice (torch never writes one) has it
    /// twice here; Python would keep the key at its first position with the
    /// last value, and so do [`Object::get`] and [`Checkpoint::state_dict`].
    Dict(Vec<(Object, Object)>),
    /// A `collections.OrderedDict`, as `nn.Module.state_dict()` returns.
    OrderedDict {
        /// The items, in order, as the pickle sets them (a key set twice is
        /// here twice, as in [`Object::Dict`]).
        items: Vec<(Object, Object)>,
        /// The attributes pickled with it (a state dict's `_metadata`), as
        /// a dict, if any.
        attrs: Option<Box<Object>>,
    },
    /// A tensor (or `nn.Parameter`, see [`Tensor::is_parameter`]).
    Tensor(Tensor),
    /// A `torch.Size`.
    Size(Vec<i64>),
    /// A dtype such as `torch.float32`.
    DType(DType),
    /// A `torch.device`, as torch prints it: `"cpu"`, `"cuda:0"`.
    Device(String),
}

impl Object {
    /// The value of `key` if this is a dict or `OrderedDict` with a `str`
    /// key `key`: the last one set, as in Python, if the pickle sets it
    /// twice.
    pub fn get(&self, key: &str) -> Option<&Object> {
        self.items()?
            .iter()
            .rfind(|(k, _)| matches!(k, Object::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    /// The items of a dict or `OrderedDict`.
    pub fn items(&self) -> Option<&[(Object, Object)]> {
        match self {
            Object::Dict(items) | Object::OrderedDict { items, .. } => Some(items),
            _ => None,
        }
    }

    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Object::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Every tensor inside, depth first, with its path written as Python
    /// would index it: `['model']['fc.weight']`, `['param_groups'][0]`.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, &Object)> = vec![(String::new(), self)];
        while let Some((path, obj)) = stack.pop() {
            match obj {
                Object::Tensor(t) => out.push((path, t)),
                Object::Tuple(v) | Object::List(v) | Object::Set(v) => {
                    for (i, o) in v.iter().enumerate().rev() {
                        stack.push((format!("{path}[{i}]"), o));
                    }
                }
                Object::Dict(items) | Object::OrderedDict { items, .. } => {
                    for (k, v) in items.iter().rev() {
                        stack.push((format!("{path}[{}]", key_repr(k)), v));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The Python type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::None => "NoneType",
            Object::Bool(_) => "bool",
            Object::Int(_) | Object::BigInt(_) => "int",
            Object::Float(_) => "float",
            Object::Complex(..) => "complex",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Set(_) => "set",
            Object::Dict(_) => "dict",
            Object::OrderedDict { .. } => "collections.OrderedDict",
            Object::Tensor(_) => "torch.Tensor",
            Object::Size(_) => "torch.Size",
            Object::DType(_) => "torch.dtype",
            Object::Device(_) => "torch.device",
        }
    }
}

/// A dict key as Python's `repr` would show it in an index.
fn key_repr(k: &Object) -> String {
    match k {
        Object::Str(s) => format!("'{s}'"),
        Object::Int(i) => i.to_string(),
        Object::BigInt(i) => i.to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

/// How a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// The zip archive `torch.save` writes since torch 1.6.
    Zip,
    /// The stream of pickles and raw storages torch wrote before 1.6
    /// (`_use_new_zipfile_serialization=False`).
    Legacy,
}

/// A loaded `torch.save` file: its object, with every storage read.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub(crate) root: Object,
    pub(crate) format: Format,
    pub(crate) storages: Vec<Arc<Storage>>,
}

impl Checkpoint {
    /// The saved object.
    pub fn root(&self) -> &Object {
        &self.root
    }

    /// The saved object, taken out.
    pub fn into_root(self) -> Object {
        self.root
    }

    /// Which format the file was in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Every storage, in the order the pickle first named them.
    pub fn storages(&self) -> &[Arc<Storage>] {
        &self.storages
    }

    /// The state dict: name to tensor, in the saved order, each name once.
    ///
    /// That is the saved object itself when it maps `str` names to tensors
    /// (what `torch.save(model.state_dict(), f)` writes), or else the one
    /// entry of a dict under `"state_dict"`, `"model_state_dict"` or
    /// `"model"` that does (common training checkpoints).
    ///
    /// A pickle that sets a name twice (torch never writes one, but a
    /// hand-made file can) gives what `torch.load` gives: the name once, at
    /// its first position, with the last value set.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        if let Some(sd) = as_state_dict(&self.root) {
            return Ok(sd);
        }
        for key in ["state_dict", "model_state_dict", "model"] {
            if let Some(sd) = self.root.get(key).and_then(as_state_dict) {
                return Ok(sd);
            }
        }
        let found = match self.root.items() {
            Some(items) => {
                let keys: Vec<String> = items.iter().map(|(k, _)| key_repr(k)).collect();
                format!(
                    "{} with keys [{}]",
                    crate::text::a(self.root.type_name()),
                    keys.join(", ")
                )
            }
            None => match &self.root {
                Object::Tuple(v) | Object::List(v) | Object::Set(v) => format!(
                    "{} of {} items",
                    crate::text::a(self.root.type_name()),
                    v.len()
                ),
                other => crate::text::a(other.type_name()),
            },
        };
        Err(Error::invalid(format!(
            "expected a state dict (str names to tensors) at the root or under 'state_dict', 'model_state_dict' or 'model', found {found}"
        )))
    }
}

/// The items of a dict of `str` names to tensors, each name once as
/// Python's dict keeps it: at its first position, with its last value.
fn as_state_dict(obj: &Object) -> Option<Vec<(String, Tensor)>> {
    let items = obj.items()?;
    let mut out: Vec<(String, &Object)> = Vec::with_capacity(items.len());
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (k, v) in items {
        let Object::Str(k) = k else {
            return None;
        };
        match position.get(k.as_str()) {
            Some(&i) => out[i].1 = v,
            None => {
                position.insert(k, out.len());
                out.push((k.clone(), v));
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| v.as_tensor().map(|t| (k, t.clone())))
        .collect()
}
