//! `decimal.Decimal`, `fractions.Fraction` and `complex`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use num_bigint::BigInt;

use super::{args_of, call_of, no_extras};
use crate::base::error::{Error, ErrorKind, Result};
use crate::typed::construct::{Construct, Node};
use crate::typed::registry::Registry;
use crate::typed::save::{Reduce, Saver};

pub(super) fn install(r: &mut Registry) -> Result<()> {
    r.register_constructor("decimal", "Decimal", Decimal::construct)?;
    #[cfg(feature = "num-rational")]
    r.register_constructor(
        "fractions",
        "Fraction",
        num_rational::BigRational::construct,
    )?;
    #[cfg(feature = "num-complex")]
    r.register_constructor(
        "builtins",
        "complex",
        num_complex::Complex::<f64>::construct,
    )?;
    Ok(())
}

// ---- decimal ----------------------------------------------------------------

/// A `decimal.Decimal`, exactly: its string form, as CPython pickles it
/// (`Decimal('-1.50')`, `Decimal('sNaN12')`, `Decimal('-Infinity')`).
///
/// Nothing is lost: the digits, the exponent, trailing zeros, the sign of
/// zero, NaN payloads and signalling NaNs all stay as written. Equality is
/// of that form, as Python's `repr` sees it: `1.0` and `1.00` are equal
/// numbers in Python but different `Decimal`s here. The order is Python's
/// `Decimal.compare_total`: by value, then (between equal values) by
/// exponent, `-NaN < -sNaN < -Infinity <` the numbers `< Infinity < sNaN <
/// NaN`, with `-0 < 0`; two spellings of one value and exponent (`1e1` and
/// `1E+1`, which Python reads alike) are ordered by their text, so that the
/// order agrees with `==`. Arithmetic is not this
/// type's business; parse [`as_str`](Decimal::as_str) with the decimal
/// crate of your choice (`rust_decimal` holds 28 digits and no NaN or
/// infinity, so it cannot take every Python value).
///
/// ```
/// use reduce::stdlib::Decimal;
///
/// let d: Decimal = "-0.00".parse()?;
/// assert_eq!(d.as_str(), "-0.00");
/// assert!("1e999999999999999999999".parse::<Decimal>().is_ok());
/// assert!("sNaN".parse::<Decimal>()?.is_nan());
/// assert!("1.2.3".parse::<Decimal>().is_err());
///
/// // Ordered by value, as Python's compare_total orders them.
/// let mut v: Vec<Decimal> = ["10", "9.5", "-1", "NaN", "1.0", "1"]
///     .iter()
///     .map(|s| s.parse())
///     .collect::<Result<_, _>>()?;
/// v.sort();
/// assert_eq!(v.iter().map(Decimal::as_str).collect::<Vec<_>>(), ["-1", "1.0", "1", "9.5", "10", "NaN"]);
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (Total::of(&self.0), Total::of(&other.0));
        let by_value = match (a.negative, b.negative) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => a.cmp_unsigned(&b),
            (true, true) => b.cmp_unsigned(&a),
        };
        by_value.then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A decimal's parts, as `compare_total` orders them: a string that
/// [`is_decimal`] accepted.
struct Total {
    negative: bool,
    /// 0 for a number, 1 an infinity, 2 a signalling NaN, 3 a quiet NaN.
    class: u8,
    /// The coefficient's digits (a NaN's payload) without leading zeros:
    /// empty for zero.
    digits: String,
    /// The exponent of the last digit (0 but for a number).
    exponent: BigInt,
}

impl Total {
    fn of(s: &str) -> Total {
        let negative = s.starts_with('-');
        let lower = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
        let strip = |t: &str| t.trim_start_matches('0').to_owned();
        let (class, digits, exponent) = if lower.starts_with("inf") {
            (1, String::new(), BigInt::ZERO)
        } else if let Some(payload) = lower.strip_prefix("snan") {
            (2, strip(payload), BigInt::ZERO)
        } else if let Some(payload) = lower.strip_prefix("nan") {
            (3, strip(payload), BigInt::ZERO)
        } else {
            let (mantissa, exp) = lower.split_once('e').unwrap_or((&lower, "0"));
            let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            let exp: BigInt = exp.parse().unwrap_or_default();
            (0, strip(&[int, frac].concat()), exp - frac.len())
        };
        Total {
            negative,
            class,
            digits,
            exponent,
        }
    }

    /// The order of two decimals of the same sign, taken as positive.
    fn cmp_unsigned(&self, other: &Total) -> Ordering {
        let by_class = self.class.cmp(&other.class);
        if by_class != Ordering::Equal {
            return by_class;
        }
        let (a, b) = (&self.digits, &other.digits);
        match self.class {
            // An infinity equals another.
            1 => Ordering::Equal,
            // NaNs by payload.
            2 | 3 => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            _ => {
                let value = match (a.is_empty(), b.is_empty()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    // The exponent of the first digit, then the digits
                    // (the shorter padded with zeros).
                    (false, false) => (&self.exponent + a.len())
                        .cmp(&(&other.exponent + b.len()))
                        .then_with(|| {
                            let n = a.len().max(b.len());
                            let pad = |d: &str| format!("{d:0<n$}");
                            pad(a).cmp(&pad(b))
                        }),
                };
                // Equal values: the smaller exponent first.
                value.then_with(|| self.exponent.cmp(&other.exponent))
            }
        }
    }
}

impl Decimal {
    /// Checks `s` against Python's decimal syntax (surrounding whitespace
    /// and `_` separators, which `Decimal()` also takes, are refused: write
    /// the canonical form).
    pub fn new(s: &str) -> Result<Decimal> {
        if is_decimal(s) {
            Ok(Decimal(s.to_owned()))
        } else {
            Err(Error::new(ErrorKind::Invalid(format!(
                "expected a decimal number, found {s:?}"
            ))))
        }
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is a NaN, quiet or signalling.
    pub fn is_nan(&self) -> bool {
        self.0.to_ascii_lowercase().contains("nan")
    }

    /// Whether it is a signalling NaN (`sNaN`).
    pub fn is_snan(&self) -> bool {
        self.0.to_ascii_lowercase().contains("snan")
    }

    /// Whether it is an infinity.
    pub fn is_infinite(&self) -> bool {
        self.0.to_ascii_lowercase().contains("inf")
    }

    /// The nearest `f64` (NaNs of both kinds as NaN).
    pub fn to_f64(&self) -> f64 {
        let lower = self.0.to_ascii_lowercase();
        if lower.contains("nan") {
            return f64::NAN;
        }
        // Rust's float syntax is Python's decimal syntax for everything
        // else ("inf", "infinity" and exponents included).
        lower.parse().unwrap_or(f64::NAN)
    }
}

/// Python's decimal syntax: `[sign] (digits [. [digits]] | . digits) [e
/// [sign] digits]`, or `Inf`, `Infinity`, `NaN` and `sNaN` with a payload,
/// case-insensitive.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = s.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return true;
    }
    for nan in ["snan", "nan"] {
        if let Some(payload) = lower.strip_prefix(nan) {
            return payload.bytes().all(|b| b.is_ascii_digit());
        }
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => digits(a) && digits(b) && !(a.is_empty() && b.is_empty()),
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

impl FromStr for Decimal {
    type Err = Error;

    fn from_str(s: &str) -> Result<Decimal> {
        Decimal::new(s)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `decimal.Decimal('...')`, CPython's own reduction.
impl Reduce for Decimal {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.reduction("decimal", "Decimal")
            .args(&(self.0.as_str(),))
            .save()
    }
}

impl Construct for Decimal {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("decimal", "Decimal")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 1)?;
        let s: String = args.item(0, &items[0])?;
        Decimal::new(&s).map_err(|e| args.error_msg(e.to_string()))
    }
}

// ---- fractions --------------------------------------------------------------

/// `fractions.Fraction(numerator, denominator)`, as CPython writes it.
#[cfg(feature = "num-rational")]
impl Reduce for num_rational::BigRational {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.reduction("fractions", "Fraction")
            .args(&(self.numer(), self.denom()))
            .save()
    }
}

/// The most digits in a numerator or a denominator of `Fraction('3/4')`:
/// CPython's `sys.get_int_max_str_digits()`, as its `int()` refuses more
/// (and parsing them is quadratic).
#[cfg(feature = "num-rational")]
const FRACTION_DIGITS: usize = 4300;

/// From `Fraction(numerator, denominator)`, or `Fraction('3/4')` as older
/// Pythons wrote it (at most 4,300 digits each, as CPython's `int()`).
#[cfg(feature = "num-rational")]
impl Construct for num_rational::BigRational {
    fn construct(node: Node<'_>) -> Result<Self> {
        use num_bigint::BigInt;
        let call = call_of(&node, &[("fractions", "Fraction")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 2)?;
        let (n, d): (BigInt, BigInt) = if items.len() == 2 {
            (args.item(0, &items[0])?, args.item(1, &items[1])?)
        } else {
            let s: String = args.item(0, &items[0])?;
            let (n, d) = s.trim().split_once('/').unwrap_or((s.trim(), "1"));
            // Parsing decimal digits is quadratic: CPython's limit.
            let digits = |t: &str| t.bytes().filter(u8::is_ascii_digit).count();
            if digits(n) > FRACTION_DIGITS || digits(d) > FRACTION_DIGITS {
                return Err(args.error_msg(format!(
                    "a Fraction's text has more than {FRACTION_DIGITS} digits in its numerator or denominator, the limit of CPython's int('...')"
                )));
            }
            match (n.trim().parse(), d.trim().parse()) {
                (Ok(n), Ok(d)) => (n, d),
                _ => {
                    return Err(
                        args.error_msg(format!("expected a fraction like '3/4', found {s:?}"))
                    )
                }
            }
        };
        if d == BigInt::from(0) {
            return Err(args.error_msg("the denominator of a Fraction is zero"));
        }
        Ok(num_rational::BigRational::new(n, d))
    }
}

// ---- complex ----------------------------------------------------------------

/// `complex(real, imag)`, as CPython writes it.
#[cfg(feature = "num-complex")]
impl Reduce for num_complex::Complex<f64> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.reduction("builtins", "complex")
            .args(&(self.re, self.im))
            .save()
    }
}

#[cfg(feature = "num-complex")]
impl Construct for num_complex::Complex<f64> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("builtins", "complex")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 0, 2)?;
        let part = |i: usize| -> Result<f64> {
            match items.get(i) {
                Some(v) => args.item(i, v),
                None => Ok(0.0),
            }
        };
        Ok(num_complex::Complex::new(part(0)?, part(1)?))
    }
}

/// As `Complex<f64>`; reading rounds each part to `f32`.
#[cfg(feature = "num-complex")]
impl Reduce for num_complex::Complex<f32> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        num_complex::Complex::<f64>::new(self.re.into(), self.im.into()).reduce(s)
    }
}

#[cfg(feature = "num-complex")]
impl Construct for num_complex::Complex<f32> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let c = num_complex::Complex::<f64>::construct(node)?;
        Ok(num_complex::Complex::new(c.re as f32, c.im as f32))
    }
}
