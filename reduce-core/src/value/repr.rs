//! `Debug` for [`Value`]: Python's `repr`, written without recursion.

use std::fmt;

use crate::text::pystr::write_str_repr;
use crate::value::Value;

/// Ints of more bits than this print in hexadecimal: about CPython's
/// 4,300-digit limit of `int` to `str`.
const BIG_REPR_BITS: u64 = 14_300;

/// Python-like `repr`, written without recursion. Shared objects print as
/// `#n`; [`Graph`](crate::Graph)'s `Debug` prints the table they point into.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        enum Tok<'a> {
            V(&'a Value),
            S(&'static str),
        }
        let mut toks = vec![Tok::V(self)];
        // Children are pushed in reverse so they pop in order.
        fn seq<'a>(
            toks: &mut Vec<Tok<'a>>,
            open: &'static str,
            close: &'static str,
            items: &'a [Value],
        ) {
            toks.push(Tok::S(close));
            if items.len() == 1 && open == "(" {
                toks.push(Tok::S(","));
            }
            for (i, item) in items.iter().enumerate().rev() {
                toks.push(Tok::V(item));
                if i > 0 {
                    toks.push(Tok::S(", "));
                }
            }
            toks.push(Tok::S(open));
        }
        fn pairs<'a>(toks: &mut Vec<Tok<'a>>, items: &'a [(Value, Value)]) {
            toks.push(Tok::S("}"));
            for (i, (k, v)) in items.iter().enumerate().rev() {
                toks.push(Tok::V(v));
                toks.push(Tok::S(": "));
                toks.push(Tok::V(k));
                if i > 0 {
                    toks.push(Tok::S(", "));
                }
            }
            toks.push(Tok::S("{"));
        }
        while let Some(tok) = toks.pop() {
            let v = match tok {
                Tok::S(s) => {
                    f.write_str(s)?;
                    continue;
                }
                Tok::V(v) => v,
            };
            match v {
                Value::None => f.write_str("None")?,
                Value::Bool(true) => f.write_str("True")?,
                Value::Bool(false) => f.write_str("False")?,
                Value::Int(i) => write!(f, "{i}")?,
                // Decimal digits cost time quadratic in the length, and
                // CPython refuses `repr` past 4,300 of them: beyond that
                // (about 14,300 bits), hexadecimal, which is linear and
                // still a Python literal.
                Value::BigInt(i) if i.bits() > BIG_REPR_BITS => {
                    if i.sign() == num_bigint::Sign::Minus {
                        f.write_str("-")?;
                    }
                    write!(f, "0x{:x}", i.magnitude())?
                }
                Value::BigInt(i) => write!(f, "{i}")?,
                Value::Float(x) => f.write_str(&crate::text::float_repr(*x))?,
                Value::Str(s) => write_str_repr(f, s)?,
                Value::Bytes(b) => write_bytes_repr(f, "b", b)?,
                Value::ByteArray(b) => {
                    write_bytes_repr(f, "bytearray(b", b)?;
                    f.write_str(")")?
                }
                Value::Tuple(v) => seq(&mut toks, "(", ")", v),
                Value::List(v) => seq(&mut toks, "[", "]", v),
                Value::Set(v) if v.is_empty() => f.write_str("set()")?,
                Value::Set(v) => seq(&mut toks, "{", "}", v),
                Value::FrozenSet(v) => {
                    toks.push(Tok::S(")"));
                    if !v.is_empty() {
                        seq(&mut toks, "{", "}", v);
                    }
                    f.write_str("frozenset(")?
                }
                Value::Dict(d) => pairs(&mut toks, d),
                Value::Global(g) => write!(f, "{g}")?,
                Value::Reduce(r) => {
                    toks.push(Tok::S(">"));
                    if let Some(s) = &r.state_setter {
                        toks.push(Tok::V(s));
                        toks.push(Tok::S(", state_setter="));
                    }
                    if !r.dict_items.is_empty() {
                        pairs(&mut toks, &r.dict_items);
                        toks.push(Tok::S(", dict_items="));
                    }
                    if !r.list_items.is_empty() {
                        seq(&mut toks, "[", "]", &r.list_items);
                        toks.push(Tok::S(", list_items="));
                    }
                    if let Some(s) = &r.state {
                        toks.push(Tok::V(s));
                        toks.push(Tok::S(", state="));
                    }
                    toks.push(Tok::V(&r.args));
                    toks.push(Tok::S(", "));
                    toks.push(Tok::V(&r.callable));
                    f.write_str("<reduce ")?
                }
                Value::PersistentId(p) => {
                    toks.push(Tok::S(")"));
                    toks.push(Tok::V(&p.pid));
                    f.write_str("persistent_id(")?
                }
                Value::Buffer(b) => write!(f, "{b:?}")?,
                Value::Ref(id) => write!(f, "{id:?}")?,
                Value::Seq(s) => {
                    toks.push(Tok::S(">"));
                    toks.push(Tok::V(&s.value));
                    write!(f, "<seq before={:?} after={:?}: ", s.before, s.after)?
                }
            }
        }
        Ok(())
    }
}

/// `b'...'` as `repr` writes it; `prefix` is `b` or `bytearray(b`, and
/// for a bytearray CPython escapes `'` inside double quotes too
/// (`bytearray(b"\'")`), which a `bytes` repr does not.
pub(super) fn write_bytes_repr(f: &mut fmt::Formatter<'_>, prefix: &str, b: &[u8]) -> fmt::Result {
    let bytearray = prefix.starts_with("bytearray");
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{prefix}{quote}")?;
    for &c in b {
        match c {
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            c if c as char == quote || (bytearray && c == b'\'') => write!(f, "\\{}", c as char)?,
            0x20..=0x7E => write!(f, "{}", c as char)?,
            _ => write!(f, "\\x{c:02x}")?,
        }
    }
    write!(f, "{quote}")
}

macro_rules! from_int {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(i: $t) -> Value {
                Value::Int(i as i64)
            }
        }
    )*};
}
from_int!(i8 i16 i32 i64 u8 u16 u32);

#[cfg(test)]
mod tests {
    use crate::value::Value;

    /// A `Value` is four words: a tag and the largest payload, a `Vec` or
    /// a `PyStr` of three.
    #[test]
    fn a_value_is_four_words() {
        assert_eq!(
            std::mem::size_of::<Value>(),
            4 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn bytearray_escapes_single_quotes_as_cpython_does() {
        // repr(bytearray(b"'")), repr(b"'"), and both quotes in each.
        let shown = |v: Value| format!("{v:?}");
        assert_eq!(
            shown(Value::ByteArray(b"'".to_vec())),
            r#"bytearray(b"\'")"#
        );
        assert_eq!(shown(Value::Bytes(b"'".to_vec())), r#"b"'""#);
        assert_eq!(
            shown(Value::ByteArray(b"'\"".to_vec())),
            r#"bytearray(b'\'"')"#
        );
        assert_eq!(shown(Value::Bytes(b"'\"".to_vec())), r#"b'\'"'"#);
    }
}
