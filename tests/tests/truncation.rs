//! Damaged fixtures: every strict prefix of every committed pickle is an
//! "input ended" error at or before the cut, and random byte flips end in a
//! value or a typed error with its offset, never a panic.

use std::path::{Path, PathBuf};

use reduce::{ErrorKind, Graph, Unpickler};
use reduce_tests::{fixtures, fuzz};

/// The committed pickles written by CPython: the conformance corpus and
/// CPython's test vectors.
fn all_fixtures() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["corpus", "pickletester"] {
        for entry in std::fs::read_dir(fixtures().join(dir)).expect("fixture dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "pickle") {
                let bytes = std::fs::read(&path).expect("read fixture");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    assert!(out.len() > 450, "fixtures missing: {}", out.len());
    out
}

fn load(bytes: &[u8]) -> reduce::Result<Graph> {
    Unpickler::from_slice(bytes)
        .inert(true)
        .limits(fuzz::limits())
        .load::<Graph>()
}

/// The cuts checked for one fixture. Every strict prefix costs time
/// quadratic in the fixture's length (each prefix is read from its start),
/// about two minutes for the whole corpus in a release build: CI runs that
/// with `REDUCE_THOROUGH=1`. Without it, fixtures up to 1 KiB get every
/// cut, and larger ones every cut in their first 256 and last 64 bytes and
/// 128 more spread evenly between.
fn cuts(len: usize) -> Vec<usize> {
    if reduce_tests::thorough() || len <= 1024 {
        return (0..len).collect();
    }
    let mut cuts: Vec<usize> = (0..256).chain(len - 64..len).collect();
    cuts.extend((0..128).map(|i| 256 + i * (len - 320) / 128));
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Checks the given cuts of one fixture, returning how many it checked.
fn check_prefixes(path: &Path, bytes: &[u8]) -> u64 {
    let mut checked = 0;
    for cut in cuts(bytes.len()) {
        let err = match load(&bytes[..cut]) {
            Ok(v) => panic!("{}[..{cut}] loaded: {v:?}", path.display()),
            Err(e) => e,
        };
        // No byte at all is no pickle, not a truncated one.
        let want_eof = cut > 0;
        assert!(
            matches!(err.kind(), ErrorKind::Eof) == want_eof
                && matches!(err.kind(), ErrorKind::EndOfInput) != want_eof,
            "{}[..{cut}]: {err}",
            path.display()
        );
        let at = err.offset().expect("an offset");
        assert!(at <= cut as u64, "{}[..{cut}]: offset {at}", path.display());
        checked += 1;
    }
    checked
}

#[test]
fn strict_prefixes_of_every_fixture_are_truncation_errors() {
    let fixtures = all_fixtures();
    let total: usize = fixtures.iter().map(|(_, b)| b.len()).sum();
    // Two threads, each taking every other fixture by size.
    let mut by_size: Vec<_> = fixtures.iter().collect();
    by_size.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
    let checked: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let mine: Vec<_> = by_size.iter().skip(w).step_by(2).collect();
                s.spawn(move || mine.iter().map(|(p, b)| check_prefixes(p, b)).sum::<u64>())
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let every = cuts(total).len() == total;
    assert!(
        checked > 50_000 && (!every || checked == total as u64),
        "{checked} prefixes of {total} bytes"
    );
}

/// A small deterministic generator (xorshift64*), so that a failure names
/// a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One to four random changes: a flipped bit, a random byte, a byte
/// dropped or a byte repeated.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(4) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => {
                out.remove(at);
            }
            _ => out.insert(at, out[at]),
        }
    }
    out
}

#[test]
fn random_byte_flips_end_in_a_value_or_a_located_error() {
    let (mut loaded, mut refused) = (0u32, 0u32);
    for (i, (path, bytes)) in all_fixtures().iter().enumerate() {
        // Small fixtures get more tries: their every byte matters. A
        // quarter of them unless the run is thorough.
        let tries = match (bytes.len() <= 4096, reduce_tests::thorough()) {
            (true, true) => 64,
            (true, false) => 16,
            (false, true) => 8,
            (false, false) => 2,
        };
        for t in 0..tries {
            let seed = ((i as u64) << 32 | t) + 1;
            let damaged = mutate(bytes, &mut Rng(seed));
            for inert in [false, true] {
                let result = Unpickler::from_slice(&damaged)
                    .inert(inert)
                    .limits(fuzz::limits())
                    .load::<Graph>();
                match result {
                    Ok(_) => loaded += 1,
                    Err(e) => {
                        refused += 1;
                        // Errors from the reader say where; limits met after
                        // reading (the depth of the finished graph) need not.
                        let located = e.offset().is_some_and(|at| at <= damaged.len() as u64);
                        assert!(
                            located || matches!(e.kind(), ErrorKind::Limit { .. }),
                            "{} seed {seed}: {e}",
                            path.display()
                        );
                    }
                }
            }
            // The fuzz targets' own checks, round trips included (on the
            // small fixtures: a round trip writes six pickles).
            fuzz::load_typed(&damaged);
            if bytes.len() <= 4096 {
                fuzz::round_trip(&damaged);
            }
        }
    }
    // Damage sometimes lands in a string's body, so some still load.
    assert!(
        loaded > 100 && refused > 1000,
        "{loaded} loaded, {refused} refused"
    );
}
