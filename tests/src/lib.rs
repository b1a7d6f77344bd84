//! Helpers shared by the integration tests: fixture paths, manifests, and
//! running CPython (`python3`) to check what Rust wrote.

pub mod fuzz;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let out = Command::new("python3")
        .arg(fixtures().join("check.py"))
        .arg(&cases_path)
        .output()
        .expect("python3 must be installed to run the CPython checks");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "CPython disagrees:\n{report}");
    let _ = std::fs::remove_dir_all(&dir);
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
