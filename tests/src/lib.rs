//! Helpers shared by the integration tests: fixture paths, manifests, and
//! running CPython (`python3`) to check what Rust wrote.

pub mod fuzz;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether the long checks run in full: `REDUCE_THOROUGH=1` in the
/// environment. README's test command (a debug build) runs a spread of
/// each (every prefix of the small fixtures, a quarter of the mutants);
/// CI runs them in full in a release build, where they take a fraction
/// of the time.
pub fn thorough() -> bool {
    std::env::var_os("REDUCE_THOROUGH").is_some_and(|v| v == "1")
}

/// `tests/fixtures/`, where the committed CPython fixtures live.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// One row of a `manifest.tsv`: column name to value.
pub type Row = HashMap<String, String>;

/// Reads a tab-separated manifest whose first line names the columns.
pub fn manifest(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (run tests/fixtures/generate.py)",
            path.display()
        )
    });
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The `python3` on `PATH`, with a clear message when there is none: the
/// CPython checks need it (CI and README say so).
pub fn python3() -> Command {
    which("python3").unwrap_or_else(|| {
        panic!("python3 (3.11) must be on PATH: the tests check what reduce reads and writes against CPython")
    });
    Command::new("python3")
}

/// The pickles a Python `script` writes to its standard output, each
/// after its length as four little-endian bytes
/// (`out.write(len(d).to_bytes(4, 'little') + d)`), in order: many
/// fixtures from one CPython run.
pub fn python_pickles(script: &str) -> Vec<Vec<u8>> {
    let out = python3().args(["-c", script]).output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    split_pickles(&out.stdout)
}

/// Pickles each after its length as four little-endian bytes, as
/// [`python_pickles`] reads them from a script's output.
pub fn split_pickles(mut rest: &[u8]) -> Vec<Vec<u8>> {
    let mut pickles = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let n = u32::from_le_bytes(*len) as usize;
        pickles.push(tail[..n].to_vec());
        rest = &tail[n..];
    }
    assert!(rest.is_empty(), "a cut length prefix: {rest:?}");
    pickles
}

/// CPython's `pickle.dumps(expr, protocol=proto)` of the Python expression
/// `expr`.
pub fn cpython_dumps(expr: &str, proto: u8) -> Vec<u8> {
    let script = format!(
        "import pickle, sys; sys.stdout.buffer.write(pickle.dumps({expr}, protocol={proto}))"
    );
    let out = python3().args(["-c", &script]).output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What `python3 -c script` writes to its standard output, given `input`
/// on its standard input. Panics with CPython's error output if the script
/// fails (a test's assertion written in Python fails the test).
pub fn python_with_input(script: &str, input: &[u8]) -> Vec<u8> {
    let mut child = python3()
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The bytes of every `.pickle` and `.pkl` file under `dir`, recursively.
pub fn pickles_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(pickles_in(&path));
        } else if path
            .extension()
            .is_some_and(|e| e == "pickle" || e == "pkl")
        {
            out.push(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A Python with the packages of `tests/requirements.txt` (numpy, pandas,
/// dill, cloudpickle, fickling, scikit-learn), in a virtualenv the tests make
/// under the target directory on first use and reuse afterwards.
///
/// Creation is safe when several test processes race: each builds in a
/// private directory and renames it into place; the loser uses the winner's.
pub fn python_env() -> Command {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let venv = VENV.get_or_init(make_venv);
    Command::new(venv.join("bin").join("python"))
}

fn make_venv() -> PathBuf {
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("requirements.txt");
    let text = std::fs::read_to_string(&requirements).expect("read tests/requirements.txt");
    // The directory is named after the requirements, so a changed pin makes
    // a new virtualenv instead of reusing a stale one.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash = (hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join(format!("py-venv-{hash:016x}"));
    if venv.join("ready").is_file() {
        return venv;
    }
    std::fs::create_dir_all(&target).expect("create the target directory");
    let building = target.join(format!("py-venv-{hash:016x}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        python3().args(["-m", "venv"]).arg(&building),
        "python3 -m venv",
    );
    run(
        Command::new(building.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/requirements.txt",
    );
    std::fs::write(building.join("ready"), "").expect("mark the virtualenv ready");
    if std::fs::rename(&building, &venv).is_err() {
        // Another process got there first; its virtualenv is as good.
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(
        venv.join("ready").is_file(),
        "no usable virtualenv at {}",
        venv.display()
    );
    venv
}

/// A fresh, empty scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "reduce-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// What CPython must find when it loads a pickle Rust wrote.
pub enum Expect {
    /// `pickle.loads(candidate)` deep-equals `eval(expr)`.
    Expr(String),
    /// `pickle.loads(candidate)` deep-equals `pickle.loads(reference file)`.
    SameAs(PathBuf),
}

/// Has CPython (`tests/fixtures/check.py`) load each pickle and compare it,
/// sharing structure included. Panics with CPython's report on any mismatch.
pub fn python_check(cases: &[(Vec<u8>, Expect)]) {
    let dir = scratch_dir("check");
    let mut tsv = String::new();
    for (i, (bytes, expect)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{i}.pickle"));
        std::fs::write(&path, bytes).expect("write case");
        let (kind, payload) = match expect {
            Expect::Expr(e) => ("expr", e.clone()),
            Expect::SameAs(p) => ("pickle", p.display().to_string()),
        };
        tsv.push_str(&format!("{}\t{kind}\t{payload}\n", path.display()));
    }
    let cases_path = dir.join("cases.tsv");
    std::fs::File::create(&cases_path)
        .and_then(|mut f| f.write_all(tsv.as_bytes()))
        .expect("write cases.tsv");
    let out = python3()
        .arg(fixtures().join("check.py"))
        .arg(&cases_path)
        .output()
        .expect("run tests/fixtures/check.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "CPython disagrees:\n{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bytes a hex string spells (`"8002"` is `[0x80, 0x02]`), for
/// pickles a test gets from CPython or writes out as hex.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The first offset where two byte strings differ, with some context, for
/// assertion messages.
pub fn first_difference(want: &[u8], got: &[u8]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let lo = at.saturating_sub(16);
    format!(
        "lengths {} vs {}, first difference at byte {at}:\n  cpython: {:?}\n  reduce:  {:?}",
        want.len(),
        got.len(),
        String::from_utf8_lossy(&want[lo..(at + 24).min(want.len())]),
        String::from_utf8_lossy(&got[lo..(at + 24).min(got.len())]),
    )
}

/// Asserts that `err` is the [`reduce::ErrorKind::Limit`] named `limit`.
#[track_caller]
pub fn assert_limit(err: &reduce::Error, limit: &str) {
    assert!(
        matches!(err.kind(), reduce::ErrorKind::Limit { limit: l, .. } if *l == limit),
        "expected the {limit} limit, got: {err}"
    );
}

/// A reader that yields its data at most three bytes at a time, as a slow
/// stream would.
pub struct Trickle<'a>(pub &'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(3);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// `torch._utils._rebuild_tensor_v2(('storage', torch.FloatStorage, '0',
/// 'cpu', numel, None), offset, shape, strides, False, OrderedDict())`: a
/// float32 tensor viewing storage '0', as torch pickles it, for the tests
/// of torch checkpoints (library and `convert`).
pub fn torch_tensor(numel: i64, offset: i64, shape: &[i64], strides: &[i64]) -> reduce::Value {
    use reduce::{Reduction, Value};
    let ints = |v: &[i64]| Value::Tuple(v.iter().map(|&i| Value::Int(i)).collect());
    let pid = Value::Tuple(vec![
        Value::str("storage"),
        Value::global("torch", "FloatStorage"),
        Value::str("0"),
        Value::str("cpu"),
        Value::Int(numel),
        Value::None,
    ]);
    let hooks = Value::Reduce(Box::new(Reduction::new(
        Value::global("collections", "OrderedDict"),
        Value::Tuple(vec![]),
    )));
    Value::Reduce(Box::new(Reduction::new(
        Value::global("torch._utils", "_rebuild_tensor_v2"),
        Value::Tuple(vec![
            Value::PersistentId(Box::new(pid.into())),
            Value::Int(offset),
            ints(shape),
            ints(strides),
            Value::Bool(false),
            hooks,
        ]),
    )))
}
