//! numpy arrays, scalars and dtypes: read from what numpy 1.26 and numpy 2
//! wrote (committed fixtures, `tests/fixtures/numpy/generate.py`), written
//! back as numpy 1.26 writes them, and loaded by numpy 2 live.

use std::collections::BTreeMap;
use std::path::PathBuf;

use half::f16;
use ndarray::{Array1, Array2, ArrayD, ShapeBuilder};
use num_complex::Complex;
use reduce::numpy::{self, Array, ByteOrder, DType, Element, Kind, Order, Scalar};
use reduce::{Construct, Node, Registry, Unpickler, Value};
use reduce_tests::{first_difference, fixtures, manifest, python_env, scratch_dir, Row};

fn numpy_registry() -> Registry {
    let mut r = Registry::new();
    numpy::register(&mut r).expect("register the numpy globals");
    r
}

fn dir(major: u8) -> PathBuf {
    fixtures().join("numpy").join(format!("numpy{major}"))
}

/// A fixture's pickle and its out-of-band buffers.
fn fixture(major: u8, row: &Row) -> (Vec<u8>, Vec<Vec<u8>>) {
    let d = dir(major);
    let file = &row["file"];
    let bytes = std::fs::read(d.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let n: usize = row["buffers"].parse().unwrap();
    let stem = file.trim_end_matches(".pickle");
    let buffers = (0..n)
        .map(|i| std::fs::read(d.join(format!("{stem}.buf{i}"))).unwrap())
        .collect();
    (bytes, buffers)
}

fn load<T: Construct>(bytes: &[u8], buffers: Vec<Vec<u8>>) -> reduce::Result<T> {
    Unpickler::from_slice(bytes)
        .registry(numpy_registry())
        .buffers(buffers)
        .load()
}

fn rows(major: u8) -> Vec<Row> {
    manifest(&dir(major).join("manifest.tsv"))
}

fn shape_of(row: &Row) -> Vec<usize> {
    row["shape"]
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The array's item bytes in C order (as numpy's `tobytes(order="C")`).
fn c_bytes(a: &Array) -> Vec<u8> {
    let bytes = a.bytes().expect("not an object array");
    let size = a.dtype().item_size();
    if a.order() == Order::C || size == 0 {
        return bytes.to_vec();
    }
    // Item i (C order) is at the Fortran offset of its index.
    let shape = a.shape();
    let mut out = Vec::with_capacity(bytes.len());
    for i in 0..a.len() {
        let (mut rest, mut at, mut stride) = (i, 0, 1);
        let mut index = vec![0; shape.len()];
        for k in (0..shape.len()).rev() {
            index[k] = rest % shape[k];
            rest /= shape[k];
        }
        for k in 0..shape.len() {
            at += index[k] * stride;
            stride *= shape[k];
        }
        out.extend_from_slice(&bytes[at * size..(at + 1) * size]);
    }
    out
}

/// The values column, parsed as `T` and compared with `to_vec` and the
/// ndarray conversion.
fn check_typed<T: Element + std::str::FromStr>(a: &Array, values: &str, what: &str)
where
    T::Err: std::fmt::Debug,
{
    let want: Vec<T> = values.split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(a.to_vec::<T>().unwrap(), want, "{what}");
    let nd: ArrayD<T> = a.to_ndarray().unwrap();
    assert_eq!(
        nd.iter().copied().collect::<Vec<T>>(),
        want,
        "{what}: ndarray"
    );
    assert_eq!(nd.shape(), a.shape(), "{what}: ndarray shape");
}

fn check_values(a: &Array, dtype: &str, values: &str, what: &str) {
    if values.is_empty() {
        return;
    }
    match &dtype[1..] {
        "b1" => {
            let want: Vec<bool> = values.split(' ').map(|v| v == "True").collect();
            assert_eq!(a.to_vec::<bool>().unwrap(), want, "{what}");
        }
        "i1" => check_typed::<i8>(a, values, what),
        "i2" => check_typed::<i16>(a, values, what),
        "i4" => check_typed::<i32>(a, values, what),
        "i8" => check_typed::<i64>(a, values, what),
        "u1" => check_typed::<u8>(a, values, what),
        "u2" => check_typed::<u16>(a, values, what),
        "u4" => check_typed::<u32>(a, values, what),
        "u8" => check_typed::<u64>(a, values, what),
        "f8" => check_typed::<f64>(a, values, what),
        "f4" => {
            let want: Vec<u32> = values
                .split(' ')
                .map(|v| (v.parse::<f64>().unwrap() as f32).to_bits())
                .collect();
            let got: Vec<u32> = a
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(got, want, "{what}");
        }
        "f2" => {
            let want: Vec<u16> = values
                .split(' ')
                .map(|v| f16::from_f64(v.parse().unwrap()).to_bits())
                .collect();
            let got: Vec<u16> = a
                .to_vec::<f16>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(got, want, "{what}");
        }
        "c8" | "c16" => {
            let want: Vec<Complex<f64>> = values
                .split(' ')
                .map(|v| {
                    let (re, im) = v.split_once(',').unwrap();
                    Complex::new(re.parse().unwrap(), im.parse().unwrap())
                })
                .collect();
            let got: Vec<Complex<f64>> = if dtype.ends_with("c8") {
                let c = a.to_vec::<Complex<f32>>().unwrap();
                c.iter()
                    .map(|c| Complex::new(c.re as f64, c.im as f64))
                    .collect()
            } else {
                a.to_vec::<Complex<f64>>().unwrap()
            };
            assert_eq!(got, want, "{what}");
        }
        other => panic!("{what}: no typed check for {other}"),
    }
}

/// Every fixture of numpy 1.26 and numpy 2, every protocol, in band and
/// out of band: the dtype, shape, order and C-order bytes numpy recorded,
/// and the items typed.
#[test]
fn reads_what_numpy_1_and_2_write() {
    let mut seen = 0;
    for major in [1, 2] {
        for row in rows(major) {
            let what = format!("numpy{major}/{}", row["file"]);
            let (bytes, buffers) = fixture(major, &row);
            // A strict Value load works once the globals are registered.
            let value: reduce::Result<Value> = load(&bytes, buffers.clone());
            assert!(value.is_ok(), "{what}: {:?}", value.err());
            match row["kind"].as_str() {
                "array" => {
                    let a: Array = load(&bytes, buffers).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(a.dtype().str(), row["dtype"], "{what}");
                    assert_eq!(a.shape(), shape_of(&row), "{what}");
                    let fortran = a.order() == Order::Fortran
                        && a.shape().iter().filter(|&&d| d > 1).count() > 1;
                    assert_eq!(fortran, row["fortran"] == "1", "{what}");
                    if a.dtype().kind() != Kind::Object {
                        assert_eq!(c_bytes(&a), reduce_tests::unhex(&row["c_hex"]), "{what}");
                    }
                    check_values(&a, &row["dtype"], &row["values"], &what);
                }
                "scalar" => {
                    let s: Scalar = load(&bytes, buffers).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(s.dtype().str(), row["dtype"], "{what}");
                    assert_eq!(
                        s.bytes().map(<[u8]>::to_vec),
                        Some(reduce_tests::unhex(&row["c_hex"])),
                        "{what}"
                    );
                }
                "dtype" => {
                    let d: DType = load(&bytes, buffers).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(d.str(), row["dtype"], "{what}");
                }
                "dict" => {
                    let m: Model = load(&bytes, buffers).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        m.w,
                        Array2::from_shape_vec((2, 3), vec![0., 1., 2., 3., 4., 5.]).unwrap()
                    );
                    assert_eq!(m.b.get::<f64>().unwrap(), 0.25);
                    assert_eq!(m.n, 3);
                }
                other => panic!("{what}: unknown kind {other}"),
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 2 * 213);
}

/// A dict as scikit-learn-like code pickles it: arrays and scalars among
/// plain values, read typed.
struct Model {
    w: Array2<f32>,
    b: Scalar,
    n: i64,
}

impl Construct for Model {
    fn construct(node: Node<'_>) -> reduce::Result<Self> {
        let field = |name| node.error_msg(format!("missing {name}"));
        Ok(Model {
            w: node.state_field("w")?.ok_or_else(|| field("w"))?,
            b: node.state_field("b")?.ok_or_else(|| field("b"))?,
            n: node.state_field("n")?.ok_or_else(|| field("n"))?,
        })
    }
}

/// numpy 1.26 and numpy 2 write different module paths (and protocol 5
/// different forms for some arrays); the arrays read are the same.
#[test]
fn numpy_1_and_2_read_the_same() {
    let two: BTreeMap<String, Row> = rows(2)
        .into_iter()
        .map(|r| (r["file"].clone(), r))
        .collect();
    let mut compared = 0;
    for row in rows(1) {
        let other = &two[&row["file"]];
        let (b1, buf1) = fixture(1, &row);
        let (b2, buf2) = fixture(2, other);
        match row["kind"].as_str() {
            "array" => {
                let a1: Array = load(&b1, buf1).unwrap();
                let a2: Array = load(&b2, buf2).unwrap();
                assert_eq!(a1, a2, "{}", row["file"]);
            }
            "scalar" => {
                let s1: Scalar = load(&b1, buf1).unwrap();
                let s2: Scalar = load(&b2, buf2).unwrap();
                assert_eq!(s1, s2, "{}", row["file"]);
            }
            "dtype" => {
                let d1: DType = load(&b1, buf1).unwrap();
                let d2: DType = load(&b2, buf2).unwrap();
                assert_eq!(d1, d2, "{}", row["file"]);
            }
            _ => continue,
        }
        compared += 1;
    }
    assert!(compared > 150, "{compared}");
}

/// What reduce writes at protocols 2 to 4 is what numpy 1.26 writes, byte
/// for byte: arrays, scalars and dtypes read from numpy 1.26's fixtures and
/// written back.
#[test]
fn writes_numpy_1_26_bytes() {
    let mut same = 0;
    for row in rows(1) {
        let proto: u8 = row["protocol"].parse().unwrap();
        if proto == 5 {
            continue; // numpy writes _frombuffer there; see the module docs
        }
        let (bytes, buffers) = fixture(1, &row);
        let ours = match row["kind"].as_str() {
            "array" => {
                reduce::to_vec_with_protocol(&load::<Array>(&bytes, buffers).unwrap(), proto)
            }
            "scalar" => {
                reduce::to_vec_with_protocol(&load::<Scalar>(&bytes, buffers).unwrap(), proto)
            }
            // A scalar type named as a value reads as its dtype, and is
            // written as one: not numpy's bytes.
            "dtype" if row["case"].starts_with("dt_type") => continue,
            "dtype" => {
                reduce::to_vec_with_protocol(&load::<DType>(&bytes, buffers).unwrap(), proto)
            }
            _ => continue,
        }
        .unwrap();
        assert!(
            ours == bytes,
            "{}: {}",
            row["file"],
            first_difference(&bytes, &ours)
        );
        same += 1;
    }
    assert!(same > 100, "{same}");
}

/// An out-of-band buffer becomes the array's bytes: moved, not copied.
#[test]
fn out_of_band_buffer_is_moved_not_copied() {
    let row = rows(2)
        .into_iter()
        .find(|r| r["file"] == "f8_2d.p5oob.pickle")
        .unwrap();
    let (bytes, buffers) = fixture(2, &row);
    assert_eq!(buffers.len(), 1);
    let at = buffers[0].as_ptr();
    let a: Array = load(&bytes, buffers).unwrap();
    assert_eq!(a.to_vec::<f64>().unwrap()[1], -1.5);
    let data = a.into_bytes().unwrap();
    assert_eq!(data.as_ptr(), at);
}

/// Strict loading refuses numpy's globals by name until they are
/// registered; a Value load then keeps arrays as reduced objects.
#[test]
fn strict_loading_needs_the_numpy_globals() {
    let (bytes, _) = fixture(
        2,
        &rows(2)
            .into_iter()
            .find(|r| r["file"] == "f4_2d.p2.pickle")
            .unwrap(),
    );
    let err = reduce::from_slice::<Value>(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("global `numpy._core.multiarray._reconstruct` is not allowed"),
        "{err}"
    );
    let value: Value = load(&bytes, vec![]).unwrap();
    let Value::Reduce(r) = &value else {
        panic!("{value:?}")
    };
    assert_eq!(
        r.callable,
        Value::global("numpy._core.multiarray", "_reconstruct")
    );
    // Inert mode reads the same array.
    let inert: Array = Unpickler::from_slice(&bytes)
        .inert(true)
        .registry(numpy_registry())
        .load()
        .unwrap();
    assert_eq!(inert, load::<Array>(&bytes, vec![]).unwrap());
    // Dynamic builds whatever the registry says the global builds.
    let d: reduce::Dynamic = load(&bytes, vec![]).unwrap();
    assert_eq!(d.downcast_ref::<Array>().unwrap().shape(), &[2, 3]);
    // Registering twice is refused, naming the global.
    let mut r = numpy_registry();
    let err = numpy::register(&mut r).unwrap_err();
    assert!(
        err.to_string()
            .contains("`numpy.core.multiarray._reconstruct` is already registered"),
        "{err}"
    );
}

#[test]
fn typed_reads_check_the_dtype_and_dimensions() {
    let find = |f: &str| rows(2).into_iter().find(|r| r["file"] == f).unwrap();
    let (bytes, _) = fixture(2, &find("f4_2d.p4.pickle"));
    let a: Array = load(&bytes, vec![]).unwrap();
    let err = a.to_vec::<f64>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a numpy array of f64 (<f8), found another dtype (its dtype is <f4)"
    );
    let err = load::<Array1<f32>>(&bytes, vec![]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a 1-dimensional array, found 2 dimensions"
    );
    let err =
        load::<Vec<Array2<i32>>>(&reduce::to_vec(&vec![a.clone()]).unwrap(), vec![]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("[0]: expected a numpy array of i32"),
        "{err}"
    );
    assert!(load::<ArrayD<f32>>(&bytes, vec![]).is_ok());

    // Big-endian items convert; viewing them in place is refused.
    let (bytes, _) = fixture(2, &find("be_f8.p3.pickle"));
    let a: Array = load(&bytes, vec![]).unwrap();
    assert_eq!(a.dtype().byte_order(), ByteOrder::Big);
    assert_eq!(a.to_vec::<f64>().unwrap(), [1.5, -2.0, 1e300]);
    assert!(a
        .as_slice::<f64>()
        .unwrap_err()
        .to_string()
        .contains("byte order"));
    let nd: Array1<f64> = load(&bytes, vec![]).unwrap();
    assert_eq!(nd.to_vec(), [1.5, -2.0, 1e300]);
}

#[test]
fn as_slice_views_aligned_native_items() {
    let a = Array::from_vec(vec![1u16, 2, 3, 4], &[4]).unwrap();
    // A Vec<u8> of 8 bytes is aligned for u16 with every allocator in use.
    assert_eq!(a.as_slice::<u16>().unwrap(), [1, 2, 3, 4]);
    assert!(a.as_slice::<i16>().is_err());
    let b = Array::from_vec(vec![true, false], &[2]).unwrap();
    assert!(b.as_slice::<bool>().is_err());
    assert_eq!(b.to_vec::<bool>().unwrap(), [true, false]);
}

/// Fortran order is kept: the ndarray is column-major, and written back
/// numpy's is_fortran flag is set.
#[test]
fn fortran_order_is_honoured() {
    let row = rows(1)
        .into_iter()
        .find(|r| r["file"] == "fortran.p2.pickle")
        .unwrap();
    let (bytes, _) = fixture(1, &row);
    let a: Array = load(&bytes, vec![]).unwrap();
    assert_eq!(a.order(), Order::Fortran);
    let nd: Array2<f64> = load(&bytes, vec![]).unwrap();
    assert!(nd.t().is_standard_layout());
    assert_eq!(nd[[1, 2]], 6.0);
    assert_eq!(nd.row(2).to_vec(), [8.0, 9.0, 10.0, 11.0]);
    let back = reduce::to_vec_with_protocol(&nd, 2).unwrap();
    assert!(back == bytes, "{}", first_difference(&bytes, &back));
    // From ndarray to the dtype-erased array, the order is kept too.
    let erased = Array::from_ndarray(&nd);
    assert_eq!(erased, a);
    assert_eq!(erased.to_vec::<f64>().unwrap()[..4], [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(Array::from_ndarray(&nd.t()).order(), Order::C);
}

#[test]
fn object_arrays_hold_values() {
    let row = rows(1)
        .into_iter()
        .find(|r| r["file"] == "object.p4.pickle")
        .unwrap();
    let (bytes, _) = fixture(1, &row);
    let a: Array = load(&bytes, vec![]).unwrap();
    assert_eq!(
        a.objects().unwrap(),
        [
            Value::Int(1),
            "a".into(),
            Value::None,
            Value::List(vec![Value::Float(2.5)])
        ]
    );
    assert!(a.bytes().is_none());
    assert!(a.to_vec::<i64>().is_err());
    assert!(load::<ArrayD<i64>>(&bytes, vec![]).is_err());
    // In Fortran order numpy lists the items in C order; they are kept in
    // memory order, as bytes are.
    let row = rows(2)
        .into_iter()
        .find(|r| r["file"] == "object_2d_fortran.p3.pickle")
        .unwrap();
    let (bytes, _) = fixture(2, &row);
    let a: Array = load(&bytes, vec![]).unwrap();
    assert_eq!(a.order(), Order::Fortran);
    assert_eq!(
        a.objects().unwrap(),
        [Value::Int(1), Value::None, "b".into(), Value::Float(2.0)]
    );
}

#[test]
fn structured_dtypes_are_described() {
    let row = rows(2)
        .into_iter()
        .find(|r| r["file"] == "structured_titles.p2.pickle")
        .unwrap();
    let (bytes, _) = fixture(2, &row);
    let a: Array = load(&bytes, vec![]).unwrap();
    let fields = a.dtype().fields().unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(
        (
            fields[0].name.as_str(),
            fields[0].offset,
            fields[0].title.as_deref()
        ),
        ("a", 0, Some("Alpha"))
    );
    assert_eq!(
        (
            fields[1].name.as_str(),
            fields[1].offset,
            fields[1].dtype.str()
        ),
        ("b", 4, "<i4".to_owned())
    );
    assert_eq!(a.dtype().item_size(), 8);

    let row = rows(1)
        .into_iter()
        .find(|r| r["file"] == "structured.p3.pickle")
        .unwrap();
    let (bytes, _) = fixture(1, &row);
    let a: Array = load(&bytes, vec![]).unwrap();
    let y = &a.dtype().fields().unwrap()[1];
    let (base, shape) = y.dtype.subdtype().unwrap();
    assert_eq!((base.str(), shape), (">f8".to_owned(), &[2][..]));
    assert_eq!(y.offset, 2);
    assert_eq!(a.dtype().item_size(), 18);
}

#[test]
fn structured_dtypes_are_checked_when_built() {
    let field = |name: &str, offset| reduce::numpy::Field {
        name: name.to_owned(),
        dtype: DType::of::<i32>(),
        offset,
        title: None,
    };
    let ok = DType::structured(vec![field("a", 0), field("b", 4)], 8).unwrap();
    assert_eq!(
        (ok.kind(), ok.item_size(), ok.str()),
        (Kind::Void, 8, "|V8".to_owned())
    );
    let err = DType::structured(vec![field("a", 0), field("a", 4)], 8).unwrap_err();
    assert_eq!(err.to_string(), "two fields are named `a`");
    let err = DType::structured(vec![field("a", 6)], 8).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `a` (4 bytes at offset 6) does not fit in 8-byte items"
    );
    // Written and read back, the description survives.
    let a = Array::from_bytes(ok.clone(), &[2], Order::C, vec![0; 16]).unwrap();
    let back: Array = load(&reduce::to_vec(&a).unwrap(), vec![]).unwrap();
    assert_eq!(back, a);
}

/// numpy 1 under Python 2 wrote its codes and data as Python 2 `str`
/// (`SHORT_BINSTRING`, `BINSTRING`) and the dtype's flags as ints; read
/// with latin-1 strings, as Python 3 reads them (`encoding="latin1"`).
#[test]
fn reads_python_2_numpy_pickles() {
    let data: Vec<u8> = [1.0f64, -2.5]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let py2 = [
        &b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02U\x01bq\x03\x87q\x04Rq\x05"[..],
        b"(K\x01K\x02\x85q\x06cnumpy\ndtype\nq\x07U\x02f8q\x08K\x00K\x01\x87q\tRq\n",
        b"(K\x03U\x01<q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89T\x10\x00\x00\x00",
        &data,
        b"q\rtq\x0eb.",
    ]
    .concat();
    // Python 3's default (ASCII) refuses the data, as it does in CPython.
    assert!(load::<Array>(&py2, vec![]).is_err());
    let a: Array = Unpickler::from_slice(&py2)
        .strings(reduce::StringDecoding::Latin1)
        .registry(numpy_registry())
        .load()
        .unwrap();
    assert_eq!(a.to_vec::<f64>().unwrap(), [1.0, -2.5]);
    // And what CPython 3 with numpy 2 makes of the same bytes.
    let out = python_env()
        .arg("-c")
        .arg("import pickle, sys; a = pickle.loads(sys.stdin.buffer.read(), encoding='latin1'); print(a.dtype.str, a.tolist())")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(&py2)?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "<f8 [1.0, -2.5]"
    );
}

#[test]
fn datetime_units_are_kept() {
    let row = rows(1)
        .into_iter()
        .find(|r| r["file"] == "timedelta_10s.p2.pickle")
        .unwrap();
    let (bytes, _) = fixture(1, &row);
    let a: Array = load(&bytes, vec![]).unwrap();
    assert_eq!(a.dtype().kind(), Kind::TimeDelta);
    assert_eq!(a.dtype().time_unit(), Some(("s", 10)));
    // The items are i64 counts of the unit, as numpy's .view('i8').
    assert_eq!(a.to_vec::<i64>().unwrap(), [1, -2]);
    assert!(a.to_vec::<u64>().is_err());
    // Dates (days since 1970-01-01) and NaT, as CPython with numpy writes them.
    let out = python_env()
        .arg("-c")
        .arg("import pickle, sys, numpy as np; sys.stdout.buffer.write(pickle.dumps(np.array(['2024-01-02', 'NaT'], dtype='M8[D]'), protocol=2))")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Array = load(&out.stdout, vec![]).unwrap();
    assert_eq!(a.dtype().kind(), Kind::DateTime);
    assert_eq!(a.to_vec::<i64>().unwrap(), [19724, i64::MIN]);
}

/// `dtype.metadata` (`numpy.dtype('f8', metadata={...})`, h5py's string
/// types) is kept and written back: the bytes numpy wrote come back, and
/// numpy finds the metadata in what Rust writes.
#[test]
fn dtype_metadata_is_kept() {
    let script = "import pickle, sys, numpy as np\n\
        f = np.dtype('f8', metadata={'unit': 'm'})\n\
        t = np.dtype('M8[ns]', metadata={'a': 1})\n\
        e = np.dtype('i4', metadata={})\n\
        for obj in [np.zeros(3, dtype=f), f, np.array([1, 2], dtype=t), t, e]:\n\
        \x20   for proto in (2, 3, 4):\n\
        \x20       b = pickle.dumps(obj, protocol=proto)\n\
        \x20       sys.stdout.buffer.write(len(b).to_bytes(4, 'little') + b)\n";
    let out = python_env().arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pickles = reduce_tests::split_pickles(&out.stdout);
    assert_eq!(pickles.len(), 15);
    let dict = |k: &str, v: Value| Value::Dict(vec![(Value::from(k), v)]);
    let want = [
        Some(dict("unit", Value::from("m"))),
        Some(dict("a", Value::Int(1.into()))),
        Some(Value::Dict(vec![])),
    ];
    let mut rewrites = Vec::new();
    for (i, bytes) in pickles.iter().enumerate() {
        let proto = [2u8, 3, 4][i % 3];
        let obj = i / 3;
        let (dtype, back) = if obj % 2 == 0 && obj < 4 {
            let a: Array = load(bytes, vec![]).unwrap();
            let back = reduce::to_vec_with_protocol(&a, proto).unwrap();
            (a.dtype().clone(), back)
        } else {
            // A dtype alone: numpy 1 and 2 write the same bytes.
            let d: DType = load(bytes, vec![]).unwrap();
            let back = reduce::to_vec_with_protocol(&d, proto).unwrap();
            assert_eq!(
                back,
                *bytes,
                "pickle {i}: {}",
                first_difference(bytes, &back)
            );
            (d, back)
        };
        let meta = &want[(obj / 2).min(2)];
        assert_eq!(dtype.metadata(), meta.as_ref(), "pickle {i}");
        rewrites.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        rewrites.extend_from_slice(bytes);
        rewrites.extend_from_slice(&(back.len() as u32).to_le_bytes());
        rewrites.extend_from_slice(&back);
    }
    // numpy loads each rewrite as the original: equal, metadata included.
    let dir = scratch_dir("dtype-metadata");
    let path = dir.join("pairs.bin");
    std::fs::write(&path, &rewrites).unwrap();
    let check = "import pickle, sys, numpy as np\n\
        data = open(sys.argv[1], 'rb').read()\n\
        i = n = 0\n\
        while i < len(data):\n\
        \x20   pair = []\n\
        \x20   for _ in (0, 1):\n\
        \x20       k = int.from_bytes(data[i:i + 4], 'little'); i += 4\n\
        \x20       pair.append(pickle.loads(data[i:i + k])); i += k\n\
        \x20   a, b = pair\n\
        \x20   da, db = (a.dtype, b.dtype) if isinstance(a, np.ndarray) else (a, b)\n\
        \x20   assert da == db and da.metadata == db.metadata, (n, da.metadata, db.metadata)\n\
        \x20   if isinstance(a, np.ndarray): assert (a == b).all(), n\n\
        \x20   n += 1\n\
        print(n)\n";
    let out = python_env()
        .arg("-c")
        .arg(check)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "15");
}

// ---- bad input ----------------------------------------------------------

/// A dtype state, an array state or a shape that does not fit its data is
/// an error that says so, never a panic or an allocation of the claimed
/// size.
#[test]
fn bad_arrays_are_clear_errors() {
    let good =
        reduce::to_vec_with_protocol(&Array::from_vec(vec![1i32, 2, 3], &[3]).unwrap(), 2).unwrap();
    // The shape (3,) is written as K\x03\x85; claim 2**40 items instead.
    let huge = replace(&good, b"K\x03\x85", b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85");
    let err = load::<Array>(&huge, vec![]).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs 4398046511104 bytes, found 12"),
        "{err}"
    );
    let neg = replace(&good, b"K\x03\x85", b"J\xff\xff\xff\xff\x85");
    let err = load::<Array>(&neg, vec![]).unwrap_err();
    assert!(err.to_string().starts_with("shape[0]: "), "{err}");
    let code = replace(&good, b"X\x02\x00\x00\x00i4", b"X\x02\x00\x00\x00z4");
    let err = load::<Array>(&code, vec![]).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported numpy dtype code `z4`"),
        "{err}"
    );
    let size = replace(&good, b"X\x02\x00\x00\x00i4", b"X\x02\x00\x00\x00i3");
    let err = load::<Array>(&size, vec![]).unwrap_err();
    assert!(
        err.to_string().contains("cannot have 3-byte items"),
        "{err}"
    );
    // Every prefix of a real pickle is an error, never a panic.
    for n in 0..good.len() {
        assert!(load::<Array>(&good[..n], vec![]).is_err());
    }
    // A subclass is refused by name.
    let sub = replace(&good, b"cnumpy\nndarray\n", b"cnumpy\nmatrix\n");
    let mut r = numpy_registry();
    r.register_constructor("numpy", "matrix", |_| Ok(()))
        .unwrap();
    let err = Unpickler::from_slice(&sub)
        .registry(r)
        .load::<Array>()
        .unwrap_err();
    assert!(
        err.to_string().contains("not the subclass numpy.matrix"),
        "{err}"
    );
    // A scalar type is allowed as a value, not called.
    let call = b"\x80\x02cnumpy\nfloat64\nG?\xf8\x00\x00\x00\x00\x00\x00\x85R.";
    let err = load::<reduce::Dynamic>(call, vec![]).unwrap_err();
    assert!(
        err.to_string()
            .contains("numpy.float64 is allowed as a type (read it as a DType), not called"),
        "{err}"
    );
    // Not an array at all.
    let err = load::<Array>(b"\x80\x02K\x01.", vec![]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected an object built by a constructor, found int"
    );
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    [&hay[..at], to, &hay[at + from.len()..]].concat()
}

// ---- written by Rust, loaded by numpy 2 ---------------------------------

/// Arrays, scalars and dtypes built in Rust, at every protocol: numpy 2
/// loads each as an array equal to the expected one, with its dtype and
/// shape (and Fortran flag where set).
#[test]
fn numpy_2_loads_what_rust_writes() {
    let fortran =
        ndarray::Array2::from_shape_vec((2, 3).f(), vec![1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    for proto in 0..=5 {
        let mut add =
            |bytes: reduce::Result<Vec<u8>>, expr: &'static str| cases.push((bytes.unwrap(), expr));
        add(
            reduce::to_vec_with_protocol(
                &Array::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 1e-3, 7.0], &[2, 3]).unwrap(),
                proto,
            ),
            "np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, 7.0]], dtype='<f4')",
        );
        add(
            reduce::to_vec_with_protocol(
                &Array::from_vec(vec![i64::MIN, 0, i64::MAX], &[3]).unwrap(),
                proto,
            ),
            "np.array([-2**63, 0, 2**63-1], dtype='<i8')",
        );
        add(
            reduce::to_vec_with_protocol(&Array::from_vec(vec![true, false], &[2]).unwrap(), proto),
            "np.array([True, False])",
        );
        add(
            reduce::to_vec_with_protocol(&Array::from_vec(vec![7u8], &[]).unwrap(), proto),
            "np.array(7, dtype='u1')",
        );
        add(
            reduce::to_vec_with_protocol(
                &Array::from_vec(Vec::<u16>::new(), &[0, 4]).unwrap(),
                proto,
            ),
            "np.zeros((0, 4), dtype='<u2')",
        );
        add(
            reduce::to_vec_with_protocol(
                &Array::from_vec(vec![f16::from_f32(0.5), f16::from_f32(-2.0)], &[2]).unwrap(),
                proto,
            ),
            "np.array([0.5, -2.0], dtype='<f2')",
        );
        add(
            reduce::to_vec_with_protocol(
                &Array::from_vec(vec![Complex::new(1.0f64, -2.0)], &[1]).unwrap(),
                proto,
            ),
            "np.array([1-2j], dtype='<c16')",
        );
        add(
            reduce::to_vec_with_protocol(
                &Array::from_vec(vec![Complex::new(0.5f32, 3.0)], &[1, 1]).unwrap(),
                proto,
            ),
            "np.array([[0.5+3j]], dtype='<c8')",
        );
        add(
            reduce::to_vec_with_protocol(&fortran, proto),
            "np.asfortranarray(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))",
        );
        add(
            reduce::to_vec_with_protocol(&fortran.t(), proto),
            "np.array([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])",
        );
        add(
            reduce::to_vec_with_protocol(
                &ndarray::arr3(&[[[1i32, 2], [3, 4]], [[5, 6], [7, 8]]]).slice(ndarray::s![
                    ..,
                    ..,
                    1
                ]),
                proto,
            ),
            "np.array([[2, 4], [6, 8]], dtype='<i4')",
        );
        add(
            reduce::to_vec_with_protocol(
                &Array::from_objects(vec![Value::Int(1), "a".into(), Value::None], &[3], Order::C)
                    .unwrap(),
                proto,
            ),
            "np.array([1, 'a', None], dtype=object)",
        );
        add(
            reduce::to_vec_with_protocol(&Scalar::new(2.5f64), proto),
            "np.float64(2.5)",
        );
        add(
            reduce::to_vec_with_protocol(&Scalar::new(-3i16), proto),
            "np.int16(-3)",
        );
        add(
            reduce::to_vec_with_protocol(&DType::of::<u32>(), proto),
            "np.dtype('<u4')",
        );
        add(
            reduce::to_vec_with_protocol(
                &DType::datetime(Kind::DateTime, "ns", 1, ByteOrder::Little).unwrap(),
                proto,
            ),
            "np.dtype('<M8[ns]')",
        );
    }
    // A structured dtype built in Rust.
    let field = |name: &str, offset| reduce::numpy::Field {
        name: name.to_owned(),
        dtype: DType::of::<i32>(),
        offset,
        title: None,
    };
    let record = DType::structured(vec![field("a", 0), field("b", 4)], 8).unwrap();
    let bytes: Vec<u8> = [1i32, 2, 3, 4]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let records = Array::from_bytes(record, &[2], Order::C, bytes).unwrap();
    for proto in [2, 5] {
        cases.push((
            reduce::to_vec_with_protocol(&records, proto).unwrap(),
            "np.array([(1, 2), (3, 4)], dtype=[('a', '<i4'), ('b', '<i4')])",
        ));
    }
    // What numpy 1.26 wrote, read and written again: big-endian,
    // structured, subarray, datetime, str.
    for file in [
        "be_c16",
        "structured",
        "structured_aligned",
        "structured_titles",
        "subarray_field",
        "datetime_ns",
        "str_u",
        "bytes_s",
        "object_2d_fortran",
    ] {
        let row = rows(1)
            .into_iter()
            .find(|r| r["file"] == format!("{file}.p2.pickle"))
            .unwrap();
        let (bytes, _) = fixture(1, &row);
        let a: Array = load(&bytes, vec![]).unwrap();
        for proto in [0, 3, 5] {
            let path = dir(1).join(&row["file"]).display().to_string();
            cases.push((
                reduce::to_vec_with_protocol(&a, proto).unwrap(),
                Box::leak(format!("load({path:?})").into_boxed_str()),
            ));
        }
    }
    numpy_check(&cases);
}

/// Has numpy 2 load each pickle and compare it with `eval(expr)`.
///
/// CI has numpy 2 only. To check numpy 1.26 by hand, point
/// `REDUCE_NUMPY_PYTHON` at a Python that has it:
///
/// ```sh
/// python3 -m venv /tmp/np1 && /tmp/np1/bin/pip install numpy==1.26.4
/// REDUCE_NUMPY_PYTHON=/tmp/np1/bin/python cargo test -p reduce-tests --test numpy numpy_2_loads
/// ```
///
/// (It passes: everything is written under `numpy.core.multiarray`, which
/// numpy 1.26 defines and numpy 2 keeps for old pickles without a warning;
/// the script turns warnings into errors.)
fn numpy_check(cases: &[(Vec<u8>, &str)]) {
    let scratch = scratch_dir("numpy");
    let mut script = String::from(
        "import pickle, warnings, numpy as np\nwarnings.simplefilter('error')\nbad = []\n",
    );
    for (i, (bytes, expr)) in cases.iter().enumerate() {
        let path = scratch.join(format!("case{i}.pickle"));
        std::fs::write(&path, bytes).unwrap();
        script.push_str(&format!(
            "got = load({:?})\nwant = {expr}\nif not same(got, want): bad.append(({:?}, repr(got), repr(want)))\n",
            path.display().to_string(),
            path.display().to_string(),
        ));
    }
    script.push_str("for b in bad: print(*b)\nprint(len(bad), 'of', COUNT, 'differ')\nraise SystemExit(1 if bad else 0)\n");
    let script = script.replace("COUNT", &cases.len().to_string());
    let header = r#"
def load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)

def same(got, want):
    if isinstance(want, np.dtype):
        return isinstance(got, np.dtype) and got == want and got.str == want.str
    if type(got) is not type(want):
        return False
    if isinstance(want, np.ndarray):
        if got.dtype != want.dtype or got.dtype.str != want.dtype.str or got.shape != want.shape:
            return False
        if want.flags.f_contiguous != got.flags.f_contiguous or want.flags.c_contiguous != got.flags.c_contiguous:
            return False
        if want.dtype.hasobject:
            return got.tolist() == want.tolist()
        return got.tobytes() == want.tobytes()
    return got == want and got.dtype == want.dtype
"#;
    let path = scratch.join("check.py");
    std::fs::write(
        &path,
        format!("import pickle, warnings, numpy as np\nprint('numpy', np.__version__)\n{header}\n{script}"),
    )
    .unwrap();
    let mut python = match std::env::var_os("REDUCE_NUMPY_PYTHON") {
        Some(p) => std::process::Command::new(p),
        None => python_env(),
    };
    let out = python.arg(&path).output().expect("run the numpy check");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "numpy disagrees:\n{report}");
    assert!(
        report.contains(&format!("0 of {} differ", cases.len())),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

// ---- a real scikit-learn model ------------------------------------------

/// What a user reads out of a fitted scikit-learn `LinearRegression`: its
/// arrays and numpy scalars, typed, with the class registered by hand.
struct LinearModel {
    coef: Array1<f64>,
    intercept: f64,
    n_features: i64,
}

impl Construct for LinearModel {
    fn construct(node: Node<'_>) -> reduce::Result<Self> {
        let call = node.reduction("sklearn.linear_model._base", "LinearRegression")?;
        let state = call
            .state()
            .ok_or_else(|| node.error_msg("a fitted model has state"))?;
        state.with(|st| {
            let missing = |name| st.error_msg(format!("missing {name}"));
            let intercept: Scalar = st
                .state_field("intercept_")?
                .ok_or_else(|| missing("intercept_"))?;
            Ok(LinearModel {
                coef: st.state_field("coef_")?.ok_or_else(|| missing("coef_"))?,
                intercept: intercept.get()?,
                n_features: st
                    .state_field("n_features_in_")?
                    .ok_or_else(|| missing("n_features_in_"))?,
            })
        })
    }
}

#[test]
fn reads_a_fitted_scikit_learn_model() {
    let scratch = scratch_dir("sklearn");
    let script = r#"
import pickle, sys, numpy as np
from sklearn.linear_model import LinearRegression
m = LinearRegression().fit(np.array([[0., 1.], [1., 0.], [2., 2.], [3., 1.]]), np.array([1., 2., 5., 5.5]))
for p in (2, 5):
    with open(f"{sys.argv[1]}/model.p{p}.pickle", "wb") as f:
        pickle.dump(m, f, protocol=p)
print(" ".join(repr(float(c)) for c in m.coef_), repr(float(m.intercept_)))
"#;
    let out = python_env()
        .arg("-c")
        .arg(script)
        .arg(&scratch)
        .output()
        .expect("run scikit-learn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let mut registry = numpy_registry();
    registry
        .register_constructor(
            "sklearn.linear_model._base",
            "LinearRegression",
            LinearModel::construct,
        )
        .unwrap();
    for p in [2, 5] {
        let bytes = std::fs::read(scratch.join(format!("model.p{p}.pickle"))).unwrap();
        let m: LinearModel = Unpickler::from_slice(&bytes)
            .registry(registry.clone())
            .load()
            .unwrap();
        assert_eq!(m.coef.to_vec(), printed[..2]);
        assert_eq!(m.intercept, printed[2]);
        assert_eq!(m.n_features, 2);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Every prefix of numpy's pickles is an error, never a panic.
#[test]
fn every_prefix_of_a_numpy_pickle_is_an_error() {
    let mut checked = 0;
    for major in [1, 2] {
        for row in rows(major) {
            if !matches!(row["protocol"].as_str(), "2" | "5") {
                continue;
            }
            let (bytes, buffers) = fixture(major, &row);
            for n in 0..bytes.len() {
                assert!(load::<Value>(&bytes[..n], buffers.clone()).is_err());
                assert!(load::<Array>(&bytes[..n], buffers.clone()).is_err());
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
}
