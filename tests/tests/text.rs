//! Strings of every length up to a few hundred bytes, read by each reader.
//!
//! Two thresholds sit in this range: a `str` of up to 24 bytes is held
//! inline in a `Value`, and from 64 bytes the UTF-8 check is vectorized.
//! On both sides of each, a valid string reads back the same, a string
//! with a byte that is not UTF-8 is refused at any position, and a lone
//! surrogate is a `Value`'s (as CPython's `surrogatepass` allows) but not a
//! Rust `String`'s. CPython decides which bytes are a `str`.

use reduce::Value;
use reduce_tests::python_with_input;

/// Text of each byte length from 0 to 300, of one- to four-byte characters.
fn texts() -> Vec<String> {
    let chars = ['a', 'é', '€', '𝄞', 'z', ' '];
    let mut all = vec![String::new()];
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 300 {
        s.push(chars[i % chars.len()]);
        i += 1;
        all.push(s.clone());
    }
    // The lengths the pattern skips, made up with ASCII.
    for n in 0..=300 {
        if !all.iter().any(|t| t.len() == n) {
            let mut t: String = all.iter().rev().find(|t| t.len() < n).unwrap().clone();
            while t.len() < n {
                t.push('x');
            }
            all.push(t);
        }
    }
    all.sort_by_key(String::len);
    all
}

/// A protocol 4 pickle of one `str` holding `data`, as CPython frames it.
fn str_pickle(data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    match u8::try_from(data.len()) {
        Ok(n) => body.extend_from_slice(&[0x8c, n]),
        Err(_) => {
            body.push(b'X');
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
    }
    body.extend_from_slice(data);
    body.extend_from_slice(b"\x94.");
    let mut out = vec![0x80, 4, 0x95];
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn valid_text_of_every_length_reads_back_in_every_reader() {
    let texts = texts();
    assert!((0..=300).all(|n| texts.iter().any(|t| t.len() == n)));
    for s in &texts {
        let bytes = str_pickle(s.as_bytes());
        assert_eq!(
            reduce::to_vec_with_protocol(s, 4).unwrap(),
            bytes,
            "{} bytes",
            s.len()
        );
        let value = reduce::from_slice::<Value>(&bytes).unwrap();
        assert_eq!(value, Value::from(s.as_str()), "{} bytes", s.len());
        let Value::Str(py) = &value else {
            panic!("expected a str, got {value:?}")
        };
        assert_eq!(py.as_str(), Some(s.as_str()));
        assert_eq!(py.as_bytes(), s.as_bytes());
        assert_eq!(py.clone(), reduce::PyStr::from(s.clone()));
        assert_eq!(reduce::from_slice::<String>(&bytes).unwrap(), *s);
        assert_eq!(reduce::serde::from_slice::<String>(&bytes).unwrap(), *s);
        assert_eq!(reduce::serde::from_slice::<&str>(&bytes).unwrap(), s);
    }
}

/// The damaged strings: each text with a byte that UTF-8 never uses put at
/// its start, middle and end, and with a lone surrogate put in at a
/// character boundary there.
fn damaged() -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    for s in texts().iter().filter(|s| !s.is_empty()) {
        let b = s.as_bytes();
        for at in [0, b.len() / 2, b.len() - 1] {
            let mut bad = b.to_vec();
            bad[at] = 0xff;
            out.push((bad, false));
            let cut = (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap();
            let mut lone = b[..cut].to_vec();
            lone.extend_from_slice(&[0xed, 0xa0, 0x80]);
            lone.extend_from_slice(&b[cut..]);
            out.push((lone, true));
        }
    }
    out
}

#[test]
fn bytes_that_are_not_utf8_are_refused_and_a_lone_surrogate_is_only_a_value() {
    let cases = damaged();
    // CPython's verdict on each: does `pickle.loads` give a str?
    let input: String = cases
        .iter()
        .map(|(b, _)| {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            hex + "\n"
        })
        .collect();
    let script = "import sys, pickle\n\
        for line in sys.stdin.read().split():\n\
        \x20   data = bytes.fromhex(line)\n\
        \x20   body = (b'\\x8c' + bytes([len(data)]) if len(data) < 256 else b'X' + len(data).to_bytes(4, 'little')) + data\n\
        \x20   try:\n\
        \x20       s = pickle.loads(b'\\x80\\x04' + body + b'.')\n\
        \x20       print(1 if s.encode('utf-8', 'surrogatepass') == data else 2)\n\
        \x20   except Exception:\n\
        \x20       print(0)\n";
    let verdicts = String::from_utf8(python_with_input(script, input.as_bytes())).unwrap();
    let verdicts: Vec<&str> = verdicts.split_whitespace().collect();
    assert_eq!(verdicts.len(), cases.len());
    let (mut refused, mut kept) = (0, 0);
    for ((data, surrogate), verdict) in cases.iter().zip(verdicts) {
        let bytes = str_pickle(data);
        let what = format!("{} bytes {data:02x?}", data.len());
        let value = reduce::from_slice::<Value>(&bytes);
        match verdict {
            "1" => {
                assert!(surrogate, "CPython read {what}");
                let Ok(Value::Str(py)) = &value else {
                    panic!("{what}: {value:?}")
                };
                assert_eq!((py.as_str(), py.as_bytes()), (None, &data[..]), "{what}");
                kept += 1;
            }
            "0" => {
                assert!(!surrogate, "CPython refused {what}");
                let err = value.expect_err(&what).to_string();
                assert!(err.contains("UTF-8"), "{what}: {err}");
                refused += 1;
            }
            other => panic!("CPython read {what} as other bytes ({other})"),
        }
        // A Rust string holds no lone surrogate, so no typed reader takes
        // either kind.
        assert!(reduce::from_slice::<String>(&bytes).is_err(), "{what}");
        assert!(
            reduce::serde::from_slice::<String>(&bytes).is_err(),
            "{what}"
        );
    }
    assert!(
        refused > 800 && kept > 800,
        "{refused} refused, {kept} kept"
    );
}

/// `Debug` of a `Value` int is Python's repr up to CPython's 4,300-digit
/// limit; past it (about 14,300 bits) hexadecimal, which costs linear time
/// and reads back in Python as the same int.
#[test]
fn huge_ints_debug_in_hexadecimal() {
    use reduce::BigInt;
    let small: BigInt = BigInt::from(7) << 14_000usize;
    assert_eq!(
        format!("{:?}", reduce::Value::BigInt(Box::new(small.clone()))),
        small.to_string()
    );
    let big: BigInt = -(BigInt::from(3) << 1_000_000usize);
    let text = format!("{:?}", reduce::Value::BigInt(Box::new(big.clone())));
    assert!(text.starts_with("-0x3000"), "{}", &text[..20]);
    let back = BigInt::parse_bytes(text.trim_start_matches("-0x").as_bytes(), 16).unwrap();
    assert_eq!(-back, big);
}
