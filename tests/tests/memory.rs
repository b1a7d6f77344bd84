//! Hostile inputs allocate no more than their length justifies: each bomb
//! is loaded under a counting allocator and its peak heap use is checked
//! against a bound in the input's length.
//!
//! One test function, so that no other test allocates while one is
//! measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use reduce::{ErrorKind, Graph, Unpickler, Value};
use reduce_tests::{assert_limit, Trickle};

/// The system allocator, counting the bytes live and the most live since
/// the last [`reset_peak`].
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds `GlobalAlloc`'s contract, and returns what `System` returned; the
// counters are plain atomics updated after the call and never touch the
// memory itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every
        // allocation here goes through `System`).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test while it counts, so that no other allocates meanwhile.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The most bytes `f` had allocated at once, beyond what was live before.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let r = f();
    (r, PEAK.load(Relaxed) - before)
}

fn kind_of(r: &reduce::Result<Graph>) -> String {
    match r {
        Ok(_) => "loaded".into(),
        Err(e) => match e.kind() {
            ErrorKind::Limit { limit, .. } => format!("limit {limit}"),
            other => format!("{other:?}").chars().take(30).collect(),
        },
    }
}

#[test]
fn bombs_allocate_in_proportion_to_their_length() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // Bytes of heap one input byte may justify: a one-byte opcode can make
    // one value (32 bytes) plus its place on the stack and in a container,
    // with vectors growing by doubling.
    const PER_BYTE: usize = 128;
    const SLACK: usize = 1 << 20;

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, op) in [
        ("BINBYTES8", 0x8e_u8),
        ("BINUNICODE8", 0x8d),
        ("BYTEARRAY8", 0x96),
        ("FRAME", 0x95),
    ] {
        let mut b = vec![0x80, 0x05, op];
        b.extend_from_slice(&(u64::MAX >> 1).to_le_bytes());
        b.extend_from_slice(b"abc");
        cases.push((name, b));
    }
    cases.push(("a million MARKs", vec![b'('; 1_000_000]));
    let mut nested = vec![b'('; 1_000_000];
    nested.extend(std::iter::repeat_n(b'l', 1_000_000));
    nested.push(b'.');
    cases.push(("a million nested lists", nested));
    let mut dag = b"\x80\x02]q\x00".to_vec();
    for i in 1..=60u8 {
        dag.extend_from_slice(&[b'h', i - 1, b'h', i - 1, 0x86, b'q', i]);
    }
    dag.push(b'.');
    cases.push(("a DAG that doubles 60 times", dag));
    cases.push((
        "LONG_BINPUT 2**32-1",
        b"\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xff.".to_vec(),
    ));
    // One 1 MiB string, then a million memo reads of it in a list.
    let mut gets = b"\x80\x04]\x94(\x8e\x00\x00\x10\x00\x00\x00\x00\x00".to_vec();
    gets.extend(std::iter::repeat_n(b'x', 1 << 20));
    gets.push(0x94);
    for _ in 0..1_000_000 {
        gets.extend_from_slice(b"h\x01");
    }
    gets.extend_from_slice(b"e.");
    cases.push(("a million GETs of a 1 MiB bytes", gets));
    // One 4,000-digit int, duplicated a million times.
    let mut dups = b"\x80\x02](\x8b\xd0\x07\x00\x00".to_vec();
    dups.extend(std::iter::repeat_n(0x5a, 2000));
    dups.extend(std::iter::repeat_n(b'2', 1_000_000));
    dups.extend_from_slice(b"e.");
    cases.push(("a million DUPs of a big int", dups));
    // For the inspector: a million memo entries.
    let mut memoize = b"\x80\x04\x8c\x01a".to_vec();
    memoize.extend(std::iter::repeat_n(0x94, 1_000_000));
    memoize.push(b'.');
    cases.push(("a million MEMOIZEs", memoize));

    let mut report = String::new();
    for (name, bytes) in &cases {
        let (slice, from_slice) =
            peak_of(|| Unpickler::from_slice(bytes).inert(true).load::<Graph>());
        let (stream, from_stream) =
            peak_of(|| Unpickler::new(Trickle(bytes)).inert(true).load::<Graph>());
        assert_eq!(kind_of(&slice), kind_of(&stream), "{name}");
        let (scan, from_inspect) = peak_of(|| reduce::inspect::scan_one(bytes));
        let bound = PER_BYTE * bytes.len() + SLACK;
        report.push_str(&format!(
            "{name}: {} input bytes, peak {from_slice} (slice) / {from_stream} (stream) / \
             {from_inspect} (inspect), {}\n",
            bytes.len(),
            kind_of(&slice)
        ));
        assert!(
            from_slice <= bound && from_stream <= bound && from_inspect <= bound,
            "{name}: peak {from_slice} / {from_stream} / {from_inspect} bytes for {} input bytes\n{report}",
            bytes.len()
        );
        drop((slice, stream, scan));
    }

    // A 4 KiB module name fetched from the memo for 100,000 STACK_GLOBALs:
    // each resolution would copy it (400 MB); the inspector and the reader
    // (in inert mode, where any name loads) refuse to copy names out of
    // proportion to the input.
    let mut names = b"\x80\x04\x8d\x00\x10\x00\x00\x00\x00\x00\x00".to_vec();
    names.extend(std::iter::repeat_n(b'm', 1 << 12));
    names.extend_from_slice(b"q\x00\x8c\x01nq\x01(");
    for _ in 0..100_000 {
        names.extend_from_slice(b"h\x00h\x01\x93");
    }
    names.extend_from_slice(b"l.");
    let (scan, peak) = peak_of(|| reduce::inspect::scan_one(&names));
    let err = scan.expect_err("names out of proportion");
    assert!(err.to_string().contains("in proportion"), "{err}");
    assert!(
        peak <= PER_BYTE * names.len() + SLACK,
        "inspecting names: {peak}"
    );
    let (read, peak) = peak_of(|| Unpickler::from_slice(&names).inert(true).load::<Graph>());
    let err = read.expect_err("names out of proportion");
    assert_limit(&err, "global names");
    assert!(
        peak <= PER_BYTE * names.len() + SLACK,
        "reading names: {peak}"
    );

    // A tree copy of the DAG stops at its node limit, also without
    // allocating the tree.
    let dag = &cases
        .iter()
        .find(|(n, _)| n.starts_with("a DAG"))
        .unwrap()
        .1;
    let (tree, peak) = peak_of(|| reduce::from_slice::<Value>(dag));
    assert!(tree.is_err());
    assert!(peak <= PER_BYTE * dag.len() + SLACK, "tree copy: {peak}");
    println!("{report}");
}

/// A typed list whose items cannot be counted ahead (tuples, objects) is
/// sized once its first batch is read, from the bytes left: a long list
/// gets about the room it needs rather than the next power of two, a
/// guess too large (the list is followed by other data) is given back, and
/// a hostile guess (a batch of one-byte items, then a megabyte where an
/// item should be) reserves at most four times the input, however large
/// each item is.
#[test]
fn a_long_typed_list_is_sized_from_its_first_batch() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // Items of one size (BININT2 twice, TUPLE2, MEMOIZE): the guess made
    // after the first 1,000 is exact.
    let pairs: Vec<(i64, i64)> = (1000..6000).map(|i| (i, i)).collect();
    let bytes = reduce::to_vec(&pairs).unwrap();
    let back: Vec<(i64, i64)> = reduce::from_slice(&bytes).unwrap();
    assert_eq!(back, pairs);
    // Doubling from the first batch would leave 8,192.
    assert!(back.capacity() <= 5100, "capacity {}", back.capacity());

    let tail = "x".repeat(1 << 20);
    let bytes = reduce::to_vec(&(pairs.clone(), tail.clone())).unwrap();
    let back: (Vec<(i64, i64)>, String) = reduce::from_slice(&bytes).unwrap();
    assert_eq!(back, (pairs.clone(), tail));
    assert!(
        back.0.capacity() < 2 * pairs.len(),
        "capacity {} kept for 5,000 items",
        back.0.capacity()
    );

    let mut hostile = b"\x80\x04]\x94(".to_vec();
    hostile.extend(std::iter::repeat_n(b'N', 1000));
    hostile.extend_from_slice(b"e(B");
    hostile.extend_from_slice(&(1u32 << 20).to_le_bytes());
    hostile.extend(std::iter::repeat_n(0, 1 << 20));
    hostile.extend_from_slice(b"e.");
    // Each item is 520 bytes: a guess of one item per byte left would be
    // half a gigabyte.
    let (read, peak) = peak_of(|| reduce::from_slice::<Vec<Option<[u64; 64]>>>(&hostile));
    let err = read.expect_err("bytes are not an item");
    assert!(
        peak <= 8 * hostile.len() + (1 << 20),
        "peak {peak} for {} input bytes ({err})",
        hostile.len()
    );
}

/// Dropping a value frees every byte it holds, whatever its items are
/// (the drop skips the items that own nothing, and must skip no other),
/// at every depth, the deep-tree walk included.
#[test]
fn a_dropped_value_frees_all_it_holds() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let leaf = || {
        Value::List(vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::None,
            Value::Bool(true),
            Value::from("a str that owns its bytes"),
            Value::Bytes(vec![7; 40]),
            Value::BigInt(Box::new(reduce::BigInt::from(u128::MAX))),
            Value::Tuple(vec![Value::from("x"), Value::Int(3)]),
            Value::Dict(vec![(Value::from("k"), Value::List(vec![Value::Int(1)]))]),
            Value::List(vec![]),
        ])
    };
    // Other tests' threads may allocate meanwhile (the harness reporting
    // one that finished): a leak shows as growth over many drops.
    for depth in [2, 70, 200] {
        let before = LIVE.load(Relaxed);
        for _ in 0..50 {
            let mut v = leaf();
            for _ in 0..depth {
                v = Value::List(vec![leaf(), v, Value::Int(9)]);
            }
            drop(v);
        }
        let grown = LIVE.load(Relaxed).saturating_sub(before);
        assert!(grown < 64 << 10, "depth {depth}: {grown} bytes not freed");
    }
}

/// pyperformance's `bm_pickle` record, as the comparison benchmark writes
/// it (`benches/compare.rs`): an instance whose state is a dict of 36
/// attributes, strs put and never fetched.
#[derive(reduce::Reduce, Clone, Debug, PartialEq)]
#[reduce(module = "reduce_bench", name = "Record", state)]
struct Profile {
    ads_flags: i64,
    age: i64,
    birthday: (u16, u8, u8),
    bulletin_count: i64,
    comment_count: i64,
    country: String,
    encrypted_id: String,
    favorite_count: i64,
    first_name: String,
    flags: i64,
    friend_count: i64,
    gender: String,
    gender_for_display: String,
    id: i64,
    is_custom_profile_icon: i64,
    last_name: String,
    locale_preference: String,
    member: i64,
    tags: Vec<String>,
    profile_foo_id: i64,
    secure_encrypted_id: String,
    session_number: i64,
    signup_id: String,
    status: String,
    theme: i64,
    time_created: i64,
    time_updated: i64,
    unread_message_count: i64,
    user_group: String,
    username: String,
    play_count: i64,
    view_count: i64,
    zip: String,
}

fn profile() -> Profile {
    let int = |v: i64| v;
    let text = |s: &str| s.to_owned();
    Profile {
        ads_flags: int(0),
        age: int(18),
        birthday: (1980, 5, 7),
        bulletin_count: int(0),
        comment_count: int(0),
        country: text("BR"),
        encrypted_id: text("G9urXXAJwjE"),
        favorite_count: int(9),
        first_name: text(""),
        flags: int(412317970704),
        friend_count: int(0),
        gender: text("m"),
        gender_for_display: text("Male"),
        id: int(302935349),
        is_custom_profile_icon: int(0),
        last_name: text(""),
        locale_preference: text("pt_BR"),
        member: int(0),
        tags: ["a", "b", "c", "d", "e", "f", "g"].map(&text).to_vec(),
        profile_foo_id: int(827119638),
        secure_encrypted_id: text("Z_xxx2dYx3t4YAdnmfgyKw"),
        session_number: int(2),
        signup_id: text("201-19225-223"),
        status: text("A"),
        theme: int(1),
        time_created: int(1225237014),
        time_updated: int(1233134493),
        unread_message_count: int(0),
        user_group: text("0"),
        username: text("collinwinter"),
        play_count: int(9),
        view_count: int(7),
        zip: text(""),
    }
}

/// A small read as a tree holds at most twice its input and its result at
/// once (the comparison benchmark's peak ratio): a tuple of three atoms,
/// 29 bytes, and the record above, 693, whose puts are fetched by nothing.
/// The benchmark's DAG read as a Graph (60 levels, each a list holding the
/// level below twice) too: the machine's stack, marks and memo are freed
/// before the compaction allocates, and its memo names each object a `GET`
/// shares by its id (2.47x when the tables outlived the compaction and
/// each shared key held a 32-byte reference).
#[test]
fn a_small_read_holds_at_most_twice_its_input_and_result() {
    let tuple3 = reduce::to_vec(&(1i64, 2.5f64, "x".to_owned())).unwrap();
    let record = reduce::to_vec(&profile()).unwrap();
    let mut graph = Graph::default();
    let mut v = Value::List(vec![]);
    for _ in 0..60 {
        let below = Value::Ref(graph.insert(v));
        v = Value::List(vec![below.clone(), below]);
    }
    *graph.root_mut() = v;
    let dag = reduce::to_vec(&graph).unwrap();
    drop(graph);
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // (name, pickle, read as a Graph, the most its ratio may be)
    let cases: [(&str, &[u8], bool, f64); 3] = [
        ("tuple3", &tuple3, false, 2.0),
        ("record", &record, false, 2.0),
        ("dag60", &dag, true, 2.0),
    ];
    for (name, bytes, as_graph, most) in cases {
        // The counters are the process's: the harness's other threads may
        // allocate or free meanwhile, so the best of a few reads counts.
        let mut best = f64::MAX;
        for _ in 0..5 {
            let before = LIVE.load(Relaxed);
            let (read, peak) = peak_of(|| match as_graph {
                true => Err(reduce::from_slice::<Graph>(bytes).unwrap()),
                false => Ok(reduce::from_slice::<Value>(bytes).unwrap()),
            });
            let held = LIVE.load(Relaxed).saturating_sub(before);
            drop(read);
            best = best.min((bytes.len() + peak) as f64 / (bytes.len() + held) as f64);
        }
        assert!(best <= most, "{name}: {best:.3}x");
    }
}

/// A `str` of up to 24 bytes is held inline in its `Value`: a list of
/// short strings read as a `Value` holds the list's items and nothing else
/// (each string was one allocation of its own before). Words of 4 to 24
/// bytes; on 32-bit targets only 12 bytes are inline.
#[test]
#[cfg(target_pointer_width = "64")]
fn short_strings_read_into_a_value_allocate_nothing_of_their_own() {
    let words: Vec<String> = (0..100)
        .map(|i| format!("key_{i:0>width$}", width = i % 21))
        .collect();
    let bytes = reduce::to_vec(&words).unwrap();
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // The counters are the process's: another thread may allocate or free
    // during a read, so most reads, not all, must hold exactly the slots.
    let slots = 100 * std::mem::size_of::<Value>();
    let held: Vec<usize> = (0..5)
        .map(|_| {
            let before = LIVE.load(Relaxed);
            let read = reduce::from_slice::<Value>(&bytes).unwrap();
            let held = LIVE.load(Relaxed).wrapping_sub(before);
            let Value::List(items) = &read else {
                panic!("expected a list, got {read:?}")
            };
            assert_eq!(items.len(), 100);
            assert!(items
                .iter()
                .zip(&words)
                .all(|(v, w)| v == &Value::from(w.as_str())));
            held
        })
        .collect();
    assert!(
        held.iter().filter(|&&h| h == slots).count() >= 3,
        "held {held:?}, where the list's slots are {slots} bytes"
    );
}
