//! `reduce scan`: find every pickle in files, directories, torch zip
//! archives, `.npy` files and streams of pickles; list the globals each
//! would resolve, with offsets; judge them against the allow-lists.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::pickles::{self, Target};
use crate::policy::{self, AllowList};

/// What a scan concluded about one pickle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every global it resolves is allowed, and it reads to its `STOP`.
    Safe,
    /// It could not be read (and named nothing unsafe before the fault).
    Unreadable,
    /// It resolves a global outside the allow-list, one that can run code,
    /// an extension code or a computed name.
    Unsafe,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Unsafe => "unsafe",
            Verdict::Unreadable => "unreadable",
        }
    }

    /// The exit status of a scan whose worst finding is `self`.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Safe => 0,
            Verdict::Unsafe => 1,
            Verdict::Unreadable => 2,
        }
    }
}

/// How a global was judged.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Allowed,
    NotAllowed,
    /// Can run code or touch the system: the reason.
    Dangerous(&'static str),
    /// An extension code or a computed name: nothing can check it.
    Unknowable,
    /// Used only to read an attribute with `getattr` (`getattr` itself, or
    /// the class read from): the attribute named, judged in its place.
    OnlyReads(String),
}

/// One global (or extension code) a pickle resolves.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// Offset of the opcode in the file (or archive member).
    pub offset: u64,
    pub opcode: &'static str,
    pub target: Target,
    pub status: Status,
}

/// One pickle, or one input that could not be read as a pickle.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub path: String,
    /// The member of a zip archive the pickle is in.
    pub member: Option<String>,
    /// Offset of the pickle in the file or member; `None` for a finding
    /// about the file, member or directory itself (it cannot be read,
    /// it is compressed, an archive holds two members of one name).
    pub offset: Option<u64>,
    /// Its length in bytes, when it reads to its `STOP`.
    pub length: Option<u64>,
    pub globals: Vec<Found>,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    /// What stopped the reading, and where.
    pub error: Option<String>,
}

impl Record {
    /// A pickle at `offset` that cannot be read to its end.
    fn unreadable(path: &str, member: Option<&str>, offset: u64, error: String) -> Record {
        Record {
            offset: Some(offset),
            ..Record::about(path, member, error)
        }
    }

    /// A finding about a file, member or directory that makes it unsafe:
    /// the scan cannot be sure it reads what the loader reads.
    fn finding(path: &str, member: Option<&str>, reason: String) -> Record {
        Record {
            verdict: Verdict::Unsafe,
            error: None,
            ..Record::about(path, member, reason)
        }
    }

    /// A file, member or directory that cannot be read as a whole, so
    /// that no pickle in it can be found.
    fn about(path: &str, member: Option<&str>, error: String) -> Record {
        Record {
            path: path.to_string(),
            member: member.map(str::to_string),
            offset: None,
            length: None,
            globals: Vec::new(),
            verdict: Verdict::Unreadable,
            reasons: vec![error.clone()],
            error: Some(error),
        }
    }

    /// The record as `--json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        let globals: Vec<_> = self
            .globals
            .iter()
            .map(|g| {
                let mut o = json!({ "offset": g.offset, "opcode": g.opcode });
                let m = o.as_object_mut().expect("an object");
                match &g.target {
                    Target::Global { module, name } => {
                        m.insert("kind".into(), "global".into());
                        m.insert("module".into(), module.as_str().into());
                        m.insert("name".into(), name.as_str().into());
                    }
                    Target::Extension(code) => {
                        m.insert("kind".into(), "extension".into());
                        m.insert("code".into(), (*code).into());
                    }
                    Target::Computed => {
                        m.insert("kind".into(), "computed".into());
                    }
                }
                let (status, reason) = match &g.status {
                    Status::Allowed => ("allowed", None),
                    Status::NotAllowed => ("not allowed", None),
                    Status::Dangerous(r) => ("dangerous", Some(r.to_string())),
                    Status::Unknowable => ("unknowable", None),
                    Status::OnlyReads(name) => (
                        "allowed",
                        Some(format!("used only to read {name}, judged there")),
                    ),
                };
                m.insert("status".into(), status.into());
                if let Some(r) = reason {
                    m.insert("reason".into(), r.into());
                }
                o
            })
            .collect();
        json!({
            "path": self.path,
            "member": self.member,
            "offset": self.offset,
            "length": self.length,
            "verdict": self.verdict.as_str(),
            "globals": globals,
            "reasons": self.reasons,
            "error": self.error,
        })
    }

    /// The record as the text report prints it; names, paths and messages
    /// with characters a terminal would act on are escaped.
    pub fn to_text(&self) -> String {
        use crate::printable;
        let mut out = String::new();
        let place = match &self.member {
            Some(m) => format!("{}:{}", printable(&self.path), printable(m)),
            None => printable(&self.path).into_owned(),
        };
        let length = self
            .length
            .map_or(String::new(), |n| format!(", {n} bytes"));
        match self.offset {
            Some(offset) => out.push_str(&format!(
                "{place}: pickle at offset {offset}{length}: {}\n",
                self.verdict.as_str()
            )),
            None => out.push_str(&format!("{place}: {}\n", self.verdict.as_str())),
        }
        for g in &self.globals {
            let what = match &g.target {
                Target::Global { module, name } => format!("{module}.{name}"),
                Target::Extension(code) => format!("extension code {code}"),
                Target::Computed => "(name computed while loading)".to_string(),
            };
            let status = match &g.status {
                Status::Allowed => "allowed".to_string(),
                Status::NotAllowed => "NOT ALLOWED".to_string(),
                Status::Dangerous(r) => format!("DANGEROUS: {r}"),
                Status::Unknowable => "UNKNOWABLE".to_string(),
                Status::OnlyReads(name) => format!("allowed: used only to read {name}"),
            };
            out.push_str(&format!(
                "  {:>10}  {:<12}  {}  {}\n",
                g.offset,
                g.opcode,
                printable(&what),
                printable(&status)
            ));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("  error: {}\n", printable(e)));
        } else if self.globals.is_empty() {
            // A finding about the container, not a pickle's globals.
            for reason in &self.reasons {
                out.push_str(&format!("  {}\n", printable(reason)));
            }
        }
        out
    }
}

/// Judges every global, attribute read and `BUILD` on a global of a
/// pickle into `record`, in order of offset (`at`: an offset of the pickle
/// as one of the file).
fn judge_all(
    record: &mut Record,
    found: Vec<pickles::Resolution>,
    builds: &[pickles::Build],
    at: impl Fn(u64) -> u64,
    allow: &AllowList,
) {
    for r in found {
        let offset = at(r.offset);
        add_found(record, r, offset, allow);
    }
    for b in builds.iter().filter(|b| b.on_global) {
        // CPython's BUILD on a class or a function sets its attributes
        // (`setattr` for a `(None, slots)` state): a method replaced by
        // any callable the pickle has, for every user of the class.
        let reason = "sets the attributes of a class or function (BUILD on a global)";
        let offset = at(b.offset);
        let shown = match &b.of {
            Target::Global { module, name } => format!("`{module}.{name}`"),
            _ => "a global".to_string(),
        };
        record
            .reasons
            .push(format!("{shown} is changed: {reason} (offset {offset})"));
        record.verdict = Verdict::Unsafe;
        record.globals.push(Found {
            offset,
            opcode: "BUILD",
            target: b.of.clone(),
            status: Status::Dangerous(reason),
        });
    }
    record.globals.sort_by_key(|g| g.offset);
}

/// Judges one global, or an attribute read off one, and adds it to
/// `record` at `offset` (in the file), with the reason it makes the pickle
/// unsafe, if it does.
fn add_found(record: &mut Record, r: pickles::Resolution, offset: u64, allow: &AllowList) {
    let (status, reason) = match r.only_reads {
        Some(name) => (Status::OnlyReads(name), None),
        None => judge(&r.named, allow),
    };
    if let Some(reason) = reason {
        record.reasons.push(format!("{reason} (offset {offset})"));
        record.verdict = Verdict::Unsafe;
    }
    record.globals.push(Found {
        offset,
        opcode: reduce::op::name(r.opcode).unwrap_or("?"),
        target: r.named,
        status,
    });
}

/// Judges one global.
fn judge(target: &Target, allow: &AllowList) -> (Status, Option<String>) {
    match target {
        Target::Global { module, name } => {
            if let Some(reason) = policy::danger(module, name) {
                return (
                    Status::Dangerous(reason),
                    Some(format!("`{module}.{name}` can run code: {reason}")),
                );
            }
            let (m3, n3) = policy::python3_name(module, name);
            if allow.contains(module, name) || allow.contains(&m3, &n3) {
                (Status::Allowed, None)
            } else {
                (
                    Status::NotAllowed,
                    Some(format!("`{module}.{name}` is not in the allow-list")),
                )
            }
        }
        Target::Extension(code) => (
            Status::Unknowable,
            Some(format!(
                "extension code {code} names whatever the loading process registered with copyreg.add_extension"
            )),
        ),
        Target::Computed => (
            Status::Unknowable,
            Some("a global whose name is computed while loading".to_string()),
        ),
    }
}

/// Records one file may make: past these the scan stops reading it. A
/// stream of two-byte pickles (`N.`) makes a record each, and an archive
/// member inflates to many of them; each is kept until the file is done.
const MAX_RECORDS: usize = 1 << 20;

/// Whether the records of a file are as many as it may make; the first
/// time, with a record that says the rest is not read.
fn full(path: &str, out: &mut Vec<Record>) -> bool {
    if out.len() < MAX_RECORDS {
        return false;
    }
    let said = format!(
        "more than {MAX_RECORDS} pickles and findings in this file: the scan reads no further"
    );
    if !out
        .iter()
        .rev()
        .take(8)
        .any(|r| r.error.as_ref() == Some(&said))
    {
        out.push(Record::about(path, None, said));
    }
    true
}

/// The pickles of one stream: several back to back, from `bytes[start..]`.
fn scan_stream(
    path: &str,
    member: Option<&str>,
    bytes: &[u8],
    start: usize,
    allow: &AllowList,
    out: &mut Vec<Record>,
) {
    // A legacy (non-zip) torch checkpoint is five pickles (magic number,
    // protocol, system info, the object, the storage keys) and then raw
    // storage bytes, which are not pickles.
    const TORCH_MAGIC: &[u8] = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
    let max = if bytes[start..].starts_with(TORCH_MAGIC) {
        5
    } else {
        usize::MAX
    };
    let mut pos = start;
    let mut count = 0;
    if bytes.len() == start {
        out.push(Record::about(
            path,
            member,
            "empty input: expected a pickle, found no bytes".into(),
        ));
        return;
    }
    while pos < bytes.len() && count < max && !full(path, out) {
        let (mut record, mut end) = scan_pickle(path, member, bytes, pos, allow);
        let mut arrays = Vec::new();
        if record
            .globals
            .iter()
            .any(|f| names_array_wrapper(&f.target))
        {
            let mut refused = None;
            match scan_joblib(path, member, bytes, pos, allow, &mut refused) {
                Some((joblib, nested, n)) => (record, end, arrays) = (joblib, Some(n), nested),
                None if refused.is_some() => {
                    // joblib would read an array the scan cannot size:
                    // where its bytes end, and what follows, is unknown.
                    let message = format!(
                        "{} (a joblib file, whose arrays are written inside the pickle: the scan steps over an array only after a NumpyArrayWrapper made as joblib writes it)",
                        refused.unwrap_or_default()
                    );
                    if record.error.take().is_some() {
                        record.reasons.pop();
                    }
                    record.reasons.push(message.clone());
                    record.error = Some(message);
                    record.verdict = Verdict::Unsafe;
                    end = None;
                }
                None => {
                    // Also where the walk read to a STOP: joblib reads the
                    // bytes after a wrapper's BUILD otherwise, and what it
                    // would find past them is unknown.
                    let message = match record.error.take() {
                        Some(e) => {
                            record.reasons.pop();
                            format!("{e} (")
                        }
                        None => "(".to_string(),
                    } + "a joblib file, whose arrays are written inside the pickle: \
                         the scan could not step over them all)";
                    record.reasons.push(message.clone());
                    record.error = Some(message);
                    record.verdict = record.verdict.max(Verdict::Unreadable);
                    end = None;
                }
            }
        }
        // A class named like the wrapper elsewhere: whether joblib reads
        // an array after it cannot be told.
        let lookalike = record.globals.iter().find_map(|f| match &f.target {
            Target::Global { module, name }
                if !names_array_wrapper(&f.target)
                    && format!("{module}.{name}").rsplit('.').next()
                        == Some("NumpyArrayWrapper") =>
            {
                Some((f.offset, format!("{module}.{name}")))
            }
            _ => None,
        });
        if let Some((offset, shown)) = lookalike {
            record.reasons.push(format!(
                "`{shown}` is named like joblib's NumpyArrayWrapper, outside joblib.numpy_pickle: whether joblib reads an array's bytes after it cannot be told (offset {offset})"
            ));
            record.verdict = Verdict::Unsafe;
        }
        count += 1;
        match end {
            Some(n) => {
                out.push(record);
                out.extend(arrays);
                pos += n;
            }
            None => {
                if count > 1 && record.globals.is_empty() {
                    let message = format!(
                        "trailing bytes after the pickle before are not a pickle: {}",
                        record.error.take().unwrap_or_default()
                    );
                    record.reasons.pop();
                    record.reasons.push(message.clone());
                    record.error = Some(message);
                }
                out.push(record);
                return;
            }
        }
    }
}

/// What to add to the error of `dis` or `show` on `bytes`, a pickle that
/// cannot be read to its end: if it is a `joblib.dump` file, that joblib
/// writes arrays inside it (where the error is).
pub fn joblib_hint(bytes: &[u8]) -> &'static str {
    let (found, end) = pickles::scan_one(bytes);
    let wrapper = found.iter().any(|r| names_array_wrapper(&r.named));
    if end.is_err() && wrapper {
        " (a joblib.dump file: joblib writes each numpy array's bytes inside the pickle, \
         after its NumpyArrayWrapper; `reduce scan` steps over them, dis and show stop there)"
    } else {
        ""
    }
}

/// Whether `target` is joblib's `NumpyArrayWrapper`, after whose `BUILD`
/// joblib writes an array's bytes into the pickle: in any spelling that
/// resolves to it (`joblib.numpy_pickle` and `NumpyArrayWrapper`, or
/// `joblib` and `numpy_pickle.NumpyArrayWrapper` at protocol 4, or a
/// vendored copy's `...numpy_pickle`), as an allow-list line matches it.
fn names_array_wrapper(target: &Target) -> bool {
    let Target::Global { module, name } = target else {
        return false;
    };
    let full = format!("{module}.{name}");
    let mut parts = full.rsplit('.');
    parts.next() == Some("NumpyArrayWrapper") && parts.next() == Some("numpy_pickle")
}

/// A `joblib.dump` file: one pickle with each numpy array's bytes written
/// right after the `BUILD` of its `NumpyArrayWrapper` (a padding length
/// byte, that much padding, the items), or, for an array of objects, a
/// pickle of the array of its own. joblib's unpickler reads them there.
/// The scan cuts each out and reads on, so no global after an array is
/// missed: the record of the whole pickle, the records of the object
/// arrays' pickles, and the length; `None` when the bytes where the scan
/// stopped are not an array of the size the wrapper says.
fn scan_joblib(
    path: &str,
    member: Option<&str>,
    bytes: &[u8],
    pos: usize,
    allow: &AllowList,
    refused: &mut Option<String>,
) -> Option<(Record, Vec<Record>, usize)> {
    let mut pickle = bytes[pos..].to_vec();
    // (offset in `pickle` as it was then, bytes cut there).
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut nested = Vec::new();
    // Back to an offset in `bytes`.
    let original = |cuts: &[(usize, usize)], mut at: usize| {
        for &(x, n) in cuts.iter().rev() {
            if at >= x {
                at += n;
            }
        }
        pos + at
    };
    // Each array costs a read of the pickle so far: a budget keeps a file
    // of many tiny arrays from taking the scan's time (a forest of 200
    // trees, 800 KB in 400 arrays, takes a quarter of it).
    let mut budget: usize = 1 << 30;
    // Where the pickle goes on past the arrays cut out so far.
    let mut from = 0usize;
    loop {
        budget = budget.checked_sub(pickle.len().max(1 << 10) * 2)?;
        let scanned = pickles::scan(&pickle);
        // joblib's unpickler reads an array's bytes right after the BUILD
        // of each NumpyArrayWrapper, whatever they would be as opcodes: the
        // first such BUILD past the arrays cut so far is where the next
        // array is, even where the walk reads on through its bytes.
        let wrapper = scanned
            .builds
            .iter()
            .find(|b| !b.on_global && b.offset as usize >= from && names_array_wrapper(&b.of));
        let at = match (wrapper, scanned.end) {
            (Some(b), _) => b.offset as usize + 1,
            (None, Ok(n)) => {
                let mut record = Record {
                    path: path.to_string(),
                    member: member.map(str::to_string),
                    offset: Some(pos as u64),
                    length: None,
                    globals: Vec::new(),
                    verdict: Verdict::Safe,
                    reasons: Vec::new(),
                    error: None,
                };
                let at = |offset: u64| original(&cuts, offset as usize) as u64;
                judge_all(&mut record, scanned.found, &scanned.builds, at, allow);
                let len = original(&cuts, n - 1) + 1 - pos;
                record.length = Some(len as u64);
                return Some((record, nested, len));
            }
            (None, Err(_)) => return None,
        };
        let (count, item_size, objects, aligned) = match array_layout(&pickle[..at]) {
            Ok(layout) => layout?,
            Err(reason) => {
                *refused = Some(format!(
                    "{reason} (the BUILD at offset {})",
                    original(&cuts, at - 1)
                ));
                return None;
            }
        };
        let cut = if objects {
            let start = original(&cuts, at);
            let (record, end) = scan_pickle(path, member, bytes, start, allow);
            nested.push(record);
            end?
        } else {
            let data = count.checked_mul(item_size)?;
            let padding = if aligned {
                1 + usize::from(*pickle.get(at)?)
            } else {
                0
            };
            data.checked_add(padding)?
        };
        if cut == 0 || at.checked_add(cut)? > pickle.len() {
            return None;
        }
        pickle.drain(at..at + cut);
        cuts.push((at, cut));
        from = at;
    }
}

/// The array a `NumpyArrayWrapper` just built by the end of `prefix`
/// describes: its number of items, item size, whether it holds objects,
/// and whether a padding length byte comes first. Read by loading the
/// prefix inert: the wrapper is the top of the stack. `Ok(None)` when the
/// prefix cannot be read so; an error when the wrapper is not made as
/// joblib writes it (`copyreg.__newobj__(cls)`, or at protocols 0 and 1
/// `copyreg._reconstructor(cls, object, None)`, then `BUILD` with a dict
/// of its attributes, each once): a wrapper made by calling the class runs
/// its `__init__` (which sets the alignment the state may not name), and
/// of a key given twice Python keeps the last.
#[allow(clippy::type_complexity)]
fn array_layout(prefix: &[u8]) -> Result<Option<(usize, usize, bool, bool)>, String> {
    let mut closed = prefix.to_vec();
    closed.push(reduce::op::STOP);
    let Ok(graph) = reduce::Unpickler::from_slice(&closed)
        .inert(true)
        .load_graph()
    else {
        return Ok(None);
    };
    let Ok(tree) = graph.into_tree(1 << 20) else {
        return Ok(None);
    };
    // The value left on top, past the steps before it.
    let mut top = &tree;
    while let reduce::Value::Seq(seq) = top {
        top = &seq.value;
    }
    let not_as_joblib = |what: &str| {
        Err(format!(
            "a NumpyArrayWrapper {what}, not as joblib writes it"
        ))
    };
    let reduce::Value::Reduce(wrapper) = top else {
        return not_as_joblib("that is not an object made from its class");
    };
    let global = |v: &reduce::Value| match v {
        reduce::Value::Global(g) => Some(policy::python3_name(&g.module, &g.name)),
        _ => None,
    };
    let is_wrapper = |v: &reduce::Value| match v {
        reduce::Value::Global(g) => names_array_wrapper(&Target::Global {
            module: g.module.clone(),
            name: g.name.clone(),
        }),
        _ => false,
    };
    let made = match (global(&wrapper.callable), &wrapper.args) {
        (Some((m, n)), reduce::Value::Tuple(args)) if m == "copyreg" && n == "__newobj__" => {
            matches!(args.as_slice(), [cls] if is_wrapper(cls))
        }
        (Some((m, n)), reduce::Value::Tuple(args)) if m == "copyreg" && n == "_reconstructor" => {
            matches!(args.as_slice(), [cls, base, reduce::Value::None]
                if is_wrapper(cls)
                    && global(base).is_some_and(|(m, n)| m == "builtins" && n == "object"))
        }
        _ => false,
    };
    if !made {
        return not_as_joblib("made by calling its class or another callable");
    }
    if wrapper.state_setter.is_some()
        || !wrapper.list_items.is_empty()
        || !wrapper.dict_items.is_empty()
    {
        return not_as_joblib("with items or a state setter");
    }
    let Some(reduce::Value::Dict(state)) = &wrapper.state else {
        return not_as_joblib("whose BUILD state is not a dict");
    };
    let mut keys = std::collections::BTreeSet::new();
    for (k, _) in state {
        let Some(k) = k.as_str() else {
            return not_as_joblib("whose BUILD state has a key that is not a string");
        };
        if !keys.insert(k) {
            return Err(format!(
                "a NumpyArrayWrapper whose BUILD state names `{k}` twice (Python keeps the last), not as joblib writes it"
            ));
        }
    }
    let field = |key: &str| {
        state
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    };
    Ok((|| {
        let reduce::Value::Tuple(shape) = field("shape")? else {
            return None;
        };
        let mut count = 1usize;
        for d in shape {
            let reduce::Value::Int(d) = d else {
                return None;
            };
            count = count.checked_mul(usize::try_from(*d).ok()?)?;
        }
        let mut registry = reduce::Registry::new();
        reduce::numpy::register(&mut registry).ok()?;
        let dtype_pickle = reduce::to_vec(field("dtype")?).ok()?;
        let dtype: reduce::numpy::DType = reduce::Unpickler::from_slice(&dtype_pickle)
            .registry(registry)
            .load()
            .ok()?;
        let aligned =
            field("numpy_array_alignment_bytes").is_some_and(|v| !matches!(v, reduce::Value::None));
        Some((count, dtype.item_size(), dtype.has_object(), aligned))
    })())
}

/// The record of the pickle at `bytes[pos..]`, and its length when it
/// reads to its `STOP`.
fn scan_pickle(
    path: &str,
    member: Option<&str>,
    bytes: &[u8],
    pos: usize,
    allow: &AllowList,
) -> (Record, Option<usize>) {
    let pickles::Scanned { found, builds, end } = pickles::scan(&bytes[pos..]);
    let mut record = Record {
        path: path.to_string(),
        member: member.map(str::to_string),
        offset: Some(pos as u64),
        length: None,
        globals: Vec::new(),
        verdict: Verdict::Safe,
        reasons: Vec::new(),
        error: None,
    };
    judge_all(&mut record, found, &builds, |at| pos as u64 + at, allow);
    match end {
        Ok(n) => {
            record.length = Some(n as u64);
            (record, Some(n))
        }
        Err(e) => {
            let at = pos as u64 + e.offset().unwrap_or(0);
            let message = match e.opcode_name() {
                Some(op) => format!("{} (at byte {at}, {op})", e.kind()),
                None => format!("{} (at byte {at})", e.kind()),
            };
            record.verdict = record.verdict.max(Verdict::Unreadable);
            record.reasons.push(message.clone());
            record.error = Some(message);
            (record, None)
        }
    }
}

/// The first pickle of a file as `show` and `dis` read it: a zip
/// archive's `data.pkl` as torch finds it (or first `.pkl` member, or an
/// `.npz`'s first array of objects), the member `pickle` of a legacy torch
/// tar archive, an object `.npy`'s pickle, or the file.
pub fn first_pickle(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if bytes.is_empty() {
        // As `scan` says it.
        return Err("empty input: expected a pickle, found no bytes".into());
    }
    if is_npy(bytes) {
        return match npy_pickle(bytes)? {
            Some(start) => Ok(std::borrow::Cow::Borrowed(&bytes[start..])),
            None => Err("this .npy array holds no objects, so no pickle".into()),
        };
    }
    if is_tar(bytes) {
        // torch's tar format: the object is the member `pickle` (the last
        // of that name, as tarfile finds it), or what it links to.
        let (members, _) = crate::tar::members(bytes)?;
        let i = members
            .iter()
            .rposition(|m| m.name.rsplit('/').next() == Some("pickle"))
            .ok_or("expected a member `pickle` in the tar archive (torch's format before 0.4), found none")?;
        let names = crate::tar::Names::new(&members);
        let target = &members[crate::tar::resolve(&members, &names, i)?];
        if !target.is_file() {
            return Err(format!(
                "`{}` is a link to a member that is not a file",
                members[i].name
            ));
        }
        return Ok(std::borrow::Cow::Borrowed(&bytes[target.data.clone()]));
    }
    if let Some(format) = compressed(bytes) {
        return Err(format!(
            "{format}-compressed data (as joblib.dump(..., compress=...) writes), not a pickle: \
             decompress it first; reduce does not decompress"
        ));
    }
    if !is_zip(bytes) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let (dirs, problems) = crate::zipdir::directories(bytes);
    if let Some(problem) = problems.into_iter().next() {
        return Err(format!(
            "{problem}; refusing to show one of them (`reduce scan` reads them all)"
        ));
    }
    let dir = dirs
        .into_iter()
        .next()
        .ok_or("not a readable zip archive: no central directory found")?;
    // The member torch loads, found as reduce::torch finds it (in the
    // first member's folder, whatever its case); without one, another
    // data.pkl, then any `.pkl` member (a TorchScript archive's
    // constants.pkl).
    let names: Vec<&str> = dir.entries.iter().map(|e| e.name.as_str()).collect();
    let name = match reduce::torch::archive_member(&names, "data.pkl") {
        Ok(Some(name)) => name,
        Ok(None) => match names
            .iter()
            .copied()
            .filter(|n| n.to_ascii_lowercase().ends_with(".pkl"))
            // The first `data.pkl` in archive order, else the first `.pkl`
            // (`min_by_key` keeps the first of equals).
            .min_by_key(|n| {
                let lower = n.to_ascii_lowercase();
                !(lower == "data.pkl" || lower.ends_with("/data.pkl"))
            }) {
            Some(name) => name,
            // An .npz: the pickle of its first object array.
            None => return first_npz_pickle(bytes, &dir.entries).map(std::borrow::Cow::Owned),
        },
        Err(e) => return Err(e.to_string()),
    };
    let entry = dir
        .entries
        .iter()
        .rfind(|e| e.name == name)
        .ok_or_else(|| format!("{name}: not in the archive"))?;
    if let Some(u) = entry.unicode_name.as_ref().filter(|u| **u != entry.name) {
        return Err(format!(
            "{name}: a Unicode Path extra field renames it `{u}`, and zip readers differ on which name they use; refusing to show it (`reduce scan` reads it)"
        ));
    }
    crate::zipdir::read(bytes, entry, u64::MAX)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| format!("{name}: {e}"))
}

/// The pickle of the first member of an `.npz` (a zip of `.npy` files, as
/// `numpy.savez` writes) that is an array of objects, in archive order:
/// `numpy.load` reads a member by its content, whatever its name.
fn first_npz_pickle(bytes: &[u8], entries: &[crate::zipdir::Entry]) -> Result<Vec<u8>, String> {
    let mut arrays = 0;
    for e in entries {
        let mut data =
            crate::zipdir::read(bytes, e, u64::MAX).map_err(|err| format!("{}: {err}", e.name))?;
        if !is_npy(&data) {
            continue;
        }
        arrays += 1;
        if let Some(start) = npy_pickle(&data).map_err(|err| format!("{}: {err}", e.name))? {
            data.drain(..start);
            return Ok(data);
        }
    }
    Err(match arrays {
        0 => "expected a .pkl member or an .npy array of objects in the zip archive, found neither"
            .to_string(),
        n => format!("this .npz holds {n} array(s) and none of objects, so no pickle"),
    })
}

/// The pickle inside an `.npy` file, if its array holds objects.
fn npy_pickle(bytes: &[u8]) -> Result<Option<usize>, String> {
    let major = *bytes
        .get(6)
        .ok_or("npy header ends before its version (offset 6)")?;
    let (len, start) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or("npy header ends before its length (offset 8)")?;
            (u16::from_le_bytes([b[0], b[1]]) as usize, 10usize)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or("npy header ends before its length (offset 8)")?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(format!("npy version {v} at offset 6: expected 1, 2 or 3")),
    };
    let header = bytes
        .get(start..start.saturating_add(len))
        .ok_or_else(|| format!("npy header of {len} bytes at offset {start} runs past the end"))?;
    // numpy decodes the header as latin-1 (versions 1 and 2) or UTF-8.
    let header: String = match major {
        1 | 2 => header.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(header).into_owned(),
    };
    Ok(header_has_objects(&header).then_some(start + len))
}

/// Whether an `.npy` header may name a dtype that holds objects, which
/// `numpy.load` reads from a pickle. numpy reads the header with
/// `ast.literal_eval`, so its strings are read as Python reads them
/// (escapes, raw strings, adjacent strings joined, comments skipped), and
/// each string is judged by [`may_be_object_dtype`]: field names and other
/// strings too, as a dtype may be spelled in any of them. A header whose
/// strings cannot all be decoded (a `\N{...}` escape, an f-string, a
/// string that does not end) may name objects: the scan then reads the
/// data as a pickle, and fails if it is not one, which is the safe side.
fn header_has_objects(header: &str) -> bool {
    match python_strings(header) {
        Some(strings) => strings.iter().any(|s| may_be_object_dtype(s)),
        None => true,
    }
}

/// The string (and bytes) literals of a Python expression, decoded as
/// Python decodes them, adjacent literals joined into one; `None` when one
/// cannot be decoded here (an escape `\N{name}`, an f- or t-string, a bad
/// escape, a literal that does not end).
fn python_strings(source: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = source.chars().collect();
    let mut strings: Vec<String> = Vec::new();
    // Whether the last token was a string literal, which the next one joins.
    let mut joins = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\\' if chars.get(i + 1) == Some(&'\r') => i += 2,
            '\'' | '"' => {
                // The prefix: the letters right before the quote.
                let mut p = i;
                while p > 0 && (chars[p - 1].is_alphanumeric() || chars[p - 1] == '_') {
                    p -= 1;
                }
                let prefix: String = chars[p..i].iter().collect::<String>().to_lowercase();
                let (raw, bytes) = match prefix.as_str() {
                    "" | "u" => (false, false),
                    "r" => (true, false),
                    "b" => (false, true),
                    "br" | "rb" => (true, true),
                    // f- and t-strings, which literal_eval refuses; any
                    // other word before a quote is not Python.
                    _ => return None,
                };
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                i += if triple { 3 } else { 1 };
                let mut text = String::new();
                loop {
                    let &d = chars.get(i)?;
                    if d == c
                        && (!triple
                            || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c)))
                    {
                        i += if triple { 3 } else { 1 };
                        break;
                    }
                    if d != '\\' {
                        text.push(d);
                        i += 1;
                        continue;
                    }
                    let &e = chars.get(i + 1)?;
                    if raw {
                        // Kept, backslash and all; the quote does not end it.
                        text.push(d);
                        text.push(e);
                        i += 2;
                        continue;
                    }
                    i += 2;
                    let hex = |from: usize, n: usize| -> Option<u32> {
                        let digits: String = chars.get(from..from + n)?.iter().collect();
                        if digits.chars().all(|h| h.is_ascii_hexdigit()) {
                            u32::from_str_radix(&digits, 16).ok()
                        } else {
                            None
                        }
                    };
                    // A code point Rust cannot hold (a lone surrogate) is
                    // still one character.
                    let push = |text: &mut String, code: u32| {
                        text.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    };
                    match e {
                        '\n' => {}
                        '\r' => {
                            if chars.get(i) == Some(&'\n') {
                                i += 1;
                            }
                        }
                        '\\' | '\'' | '"' => text.push(e),
                        'a' => text.push('\u{7}'),
                        'b' => text.push('\u{8}'),
                        'f' => text.push('\u{c}'),
                        'n' => text.push('\n'),
                        'r' => text.push('\r'),
                        't' => text.push('\t'),
                        'v' => text.push('\u{b}'),
                        '0'..='7' => {
                            let mut code = e.to_digit(8)?;
                            for _ in 0..2 {
                                match chars.get(i).and_then(|o| o.to_digit(8)) {
                                    Some(o) => {
                                        code = code * 8 + o;
                                        i += 1;
                                    }
                                    None => break,
                                }
                            }
                            push(&mut text, if bytes { code & 0xff } else { code });
                        }
                        'x' => {
                            push(&mut text, hex(i, 2)?);
                            i += 2;
                        }
                        'u' | 'U' if !bytes => {
                            let n = if e == 'u' { 4 } else { 8 };
                            push(&mut text, hex(i, n)?);
                            i += n;
                        }
                        // A character by its Unicode name: not decoded here.
                        'N' if !bytes => return None,
                        _ => {
                            text.push(d);
                            text.push(e);
                        }
                    }
                }
                match strings.last_mut() {
                    Some(last) if joins => last.push_str(&text),
                    _ => strings.push(text),
                }
                joins = true;
                continue;
            }
            _ => {
                if !c.is_whitespace() && !c.is_alphanumeric() && c != '_' {
                    joins = false;
                } else if c.is_alphanumeric() || c == '_' {
                    // A word: a string prefix if a quote follows, else a
                    // token between two strings.
                    let mut j = i;
                    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                    if !matches!(chars.get(j), Some('\'' | '"')) {
                        joins = false;
                    }
                    i = j;
                    continue;
                }
            }
        }
        i += 1;
    }
    Some(strings)
}

/// Whether a string of an `.npy` header may be read by numpy as a dtype
/// that holds objects: `'O'`, `'O8'`, `'object'`, `'T'` (numpy 2's
/// `StringDType`), `'\x11'` (the type number of `object`), each after any
/// subarray shape and byte order (`'(2,)O'`, `'2<O'`) and as any field of a
/// comma-separated list (`'i4,O'`); or a string of two or three characters
/// whose second is one of these, which `descr_to_dtype` unpacks as a
/// field's name and dtype when it is an item of a list, set or dict
/// (`['aO']`). Errs on the side of objects: numpy refuses many of the
/// strings this accepts, never one it rejects.
fn may_be_object_dtype(s: &str) -> bool {
    const OBJECT: [&str; 5] = ["object", "O", "T", "\u{11}", "object_"];
    let chars: Vec<char> = s.chars().collect();
    if (2..=3).contains(&chars.len()) && matches!(chars[1], 'O' | 'T' | '\u{11}') {
        return true;
    }
    // Shapes, repeat counts, byte orders and separators.
    let filler = |c: char| c.is_whitespace() || c.is_numeric() || "<>|=(),".contains(c);
    // Commas split the fields of `'i4,O'`, not a shape's `(2,3)`.
    let mut depth = 0i32;
    let parts = s.split(|c| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        c == ',' && depth == 0
    });
    parts.into_iter().any(|part| {
        let t = part.trim_start_matches(filler);
        OBJECT.iter().any(|o| {
            t.strip_prefix(o)
                .is_some_and(|rest| rest.chars().all(filler))
        })
    })
}

fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x93NUMPY")
}

/// The compression format `bytes` start with, if any: none of these
/// magic numbers can start a pickle.
fn compressed(bytes: &[u8]) -> Option<&'static str> {
    let bz2_block = bytes
        .get(4..10)
        .is_some_and(|b| b == b"\x31\x41\x59\x26\x53\x59" || b == b"\x17\x72\x45\x38\x50\x90");
    match bytes {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => Some("zlib"),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] if bz2_block => Some("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some("xz"),
        [0x5d, 0x00, 0x00, ..] => Some("lzma"),
        [0x04, 0x22, 0x4d, 0x18, ..] => Some("lz4"),
        _ => None,
    }
}

fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// The pickles of one file's (or member's) bytes, whatever holds them.
fn scan_bytes(
    path: &str,
    member: Option<&str>,
    bytes: &[u8],
    allow: &AllowList,
    out: &mut Vec<Record>,
) {
    if is_npy(bytes) {
        match npy_pickle(bytes) {
            Ok(Some(start)) => scan_stream(path, member, bytes, start, allow, out),
            Ok(None) => {}
            Err(e) => out.push(Record::about(path, member, e)),
        }
    } else if is_zip(bytes) && member.is_none() {
        scan_zip(path, bytes, allow, out);
    } else if is_tar(bytes) && member.is_none() {
        scan_tar(path, bytes, allow, out);
    } else if let Some(format) = compressed(bytes) {
        out.push(Record::about(
            path,
            member,
            format!(
                "{format}-compressed data (as joblib.dump(..., compress=...) writes), not a pickle: \
                 decompress it and scan the result; reduce does not decompress"
            ),
        ));
    } else {
        scan_stream(path, member, bytes, 0, allow, out);
    }
}

/// A zip archive: every member of every central directory a loader could
/// read (see [`crate::zipdir`]), each member's data read once.
fn scan_zip(path: &str, bytes: &[u8], allow: &AllowList, out: &mut Vec<Record>) {
    use crate::zipdir::{self, Entry};
    let (dirs, problems) = zipdir::directories(bytes);
    for problem in problems {
        out.push(Record::finding(path, None, problem));
    }
    if dirs.is_empty() {
        out.push(Record::about(
            path,
            None,
            "not a readable zip archive: no central directory found".into(),
        ));
        return;
    }
    // A TorchScript archive (torch.jit.save): torch.load finds its
    // `constants.pkl` and hands the archive to torch.jit.load, which runs
    // the code under `code/` (with weights_only too before torch 2.6).
    let torchscript = |n: &str| {
        n.split_once('/')
            .is_some_and(|(_, rest)| rest == "constants.pkl")
    };
    if let Some(marker) = dirs
        .iter()
        .flat_map(|d| &d.entries)
        .find(|e| e.names().any(torchscript))
    {
        let code = dirs[0]
            .entries
            .iter()
            .filter(|e| {
                e.names()
                    .any(|n| n.contains("/code/") && n.ends_with(".py"))
            })
            .count();
        out.push(Record::finding(
            path,
            Some(&marker.shown()),
            format!(
                "a TorchScript archive ({code} code file(s)): torch.load hands it to torch.jit.load, which runs its code; no pickle in it is the whole story"
            ),
        ));
    }
    // Two members of one name: a loader may read either (torch's looks
    // names up by a binary search), so the one not scanned could be the
    // one loaded.
    for dir in &dirs {
        let mut seen = std::collections::BTreeSet::new();
        for name in dir.entries.iter().map(|e| &e.name) {
            if !seen.insert(name) {
                out.push(Record::finding(
                    path,
                    Some(name),
                    format!(
                        "the zip archive holds two members named `{name}`: which one a loader reads depends on the loader, and only one can be scanned"
                    ),
                ));
            }
        }
    }
    let mut entries: Vec<&Entry> = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for e in dirs.iter().flat_map(|d| &d.entries) {
        if listed.insert(e) {
            entries.push(e);
        }
    }
    // Entries whose data overlap: no zip writer makes them (CPython's
    // zipfile refuses them); they make a small file read as a large one.
    let mut spans: Vec<(u64, u64, &Entry)> = entries
        .iter()
        .map(|e| {
            let end =
                zipdir::data_range(bytes, e).map_or(e.local.saturating_add(30), |r| r.end as u64);
            (e.local, end, *e)
        })
        .collect();
    spans.sort_by_key(|s| (s.0, s.1));
    let mut reach: Option<(u64, &Entry)> = None;
    let mut overlaps = 0usize;
    for &(start, end, e) in &spans {
        if let Some((far, before)) = reach {
            if start < far {
                overlaps += 1;
                if overlaps <= 3 {
                    out.push(Record::finding(
                        path,
                        Some(&e.shown()),
                        format!(
                            "its data (local header at offset {start}) overlaps that of `{}`: overlapping zip entries, which no zip writer makes",
                            before.shown()
                        ),
                    ));
                }
            }
        }
        if reach.is_none_or(|(far, _)| end > far) {
            reach = Some((end, e));
        }
    }
    if overlaps > 3 {
        out.push(Record::finding(
            path,
            None,
            format!("{overlaps} zip entries in all overlap others"),
        ));
    }
    // Bytes read (and inflated) for the scan, all members together.
    let mut budget: u64 = ZIP_BUDGET.saturating_add(2 * bytes.len() as u64);
    let mut over_budget = 0usize;
    let mut done = std::collections::HashSet::new();
    for e in entries {
        if full(path, out) {
            break;
        }
        if e.name.ends_with('/') || !done.insert((e.local, e.method, e.compressed, e.size)) {
            continue;
        }
        let shown = e.shown();
        let named = e.names().any(member_is_pickle);
        let read = |limit: u64| zipdir::read(bytes, e, limit);
        let data = if named {
            if e.size > budget {
                over_budget += 1;
                continue;
            }
            read(u64::MAX)
        } else {
            // Any other member is read only when it is an `.npy` array of
            // objects: numpy.load reads an .npz member by its content.
            match read(12) {
                Ok(head) if is_npy(&head) => {
                    let header_end = match head.get(6) {
                        Some(1) => head
                            .get(8..10)
                            .map(|b| 10 + u16::from_le_bytes([b[0], b[1]]) as u64),
                        _ => head
                            .get(8..12)
                            .map(|b| 12 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64),
                    }
                    .unwrap_or(12);
                    match read(header_end).map(|h| npy_pickle(&h)) {
                        Ok(Ok(None)) => continue,
                        Ok(_) if e.size > budget => {
                            over_budget += 1;
                            continue;
                        }
                        Ok(_) => read(u64::MAX),
                        Err(err) => Err(err),
                    }
                }
                Ok(_) => continue,
                Err(err) => Err(err),
            }
        };
        match data {
            Ok(data) => {
                budget = budget.saturating_sub(data.len() as u64);
                scan_bytes(path, Some(&shown), &data, allow, out);
            }
            Err(err) => out.push(Record::about(
                path,
                Some(&shown),
                format!("cannot read the zip member: {err}"),
            )),
        }
    }
    if over_budget > 0 {
        out.push(Record::about(
            path,
            None,
            format!(
                "{over_budget} zip member(s) not scanned: together the members read past the scan's budget of {} bytes for this archive",
                ZIP_BUDGET.saturating_add(2 * bytes.len() as u64)
            ),
        ));
    }
}

/// The bytes a zip archive's members may read (inflated) for a scan, on
/// top of twice the archive's size.
const ZIP_BUDGET: u64 = 1 << 30;

fn is_tar(bytes: &[u8]) -> bool {
    crate::tar::is_tar(bytes)
}

/// A tar archive: torch's format before 0.4 (members `storages`,
/// `tensors` and `pickle`, which `torch.load` still reads), or any tar
/// with pickle members; its members as Python's `tarfile` lists them,
/// links followed to their target. torch reads the file as a stream of
/// pickles when `tarfile` fails on it, so a file that also starts as a
/// pickle is scanned both ways.
fn scan_tar(path: &str, bytes: &[u8], allow: &AllowList, out: &mut Vec<Record>) {
    let (found, end) = pickles::scan_one(bytes);
    let mut stream_too = end.is_ok() || !found.is_empty();
    match crate::tar::members(bytes) {
        Err(e) => {
            out.push(Record::about(
                path,
                None,
                format!("not a readable tar archive: {e}"),
            ));
            stream_too = true;
        }
        Ok((members, odd)) => {
            for problem in odd {
                out.push(Record::finding(path, None, problem));
            }
            let names = crate::tar::Names::new(&members);
            for (i, m) in members.iter().enumerate() {
                if full(path, out) {
                    break;
                }
                let base = m.name.rsplit('/').next().unwrap_or(&m.name);
                let known = matches!(base, "storages" | "tensors" | "pickle" | "sys_info");
                if !(known || member_is_pickle(&m.name)) || !(m.is_file() || m.is_link()) {
                    continue;
                }
                let target = match crate::tar::resolve(&members, &names, i) {
                    Ok(t) => &members[t],
                    Err(e) => {
                        out.push(Record::finding(
                            path,
                            Some(&m.name),
                            format!("{e}: torch.load follows the link, the scan cannot"),
                        ));
                        continue;
                    }
                };
                let shown = if m.is_link() {
                    format!("{} -> {}", m.name, target.name)
                } else {
                    m.name.clone()
                };
                if !target.is_file() {
                    out.push(Record::finding(
                        path,
                        Some(&shown),
                        "a link to a member that is not a file".into(),
                    ));
                    continue;
                }
                if target.sparse {
                    out.push(Record::finding(
                        path,
                        Some(&shown),
                        "a GNU sparse member: its bytes are not stored as tarfile reads them"
                            .into(),
                    ));
                }
                let data = &bytes[target.data.clone()];
                match base {
                    "storages" | "tensors" => scan_torch_tar_member(path, &shown, data, allow, out),
                    "pickle" | "sys_info" => {
                        let (record, _) = scan_pickle(path, Some(&shown), data, 0, allow);
                        out.push(record);
                    }
                    _ => scan_bytes(path, Some(&shown), data, allow, out),
                }
            }
        }
    }
    if stream_too {
        scan_stream(path, None, bytes, 0, allow, out);
    }
}

/// The bytes of one storage of a legacy tar checkpoint's `storages`
/// member: its element size, by the storage type the pickle before names.
fn storage_element_size(record: &Record) -> Option<usize> {
    let name = record.globals.iter().rev().find_map(|g| match &g.target {
        Target::Global { name, .. } if name.ends_with("Storage") => Some(name.as_str()),
        _ => None,
    })?;
    Some(match name.trim_end_matches("Storage") {
        "Double" | "Long" | "ComplexFloat" => 8,
        "Float" | "Int" | "QInt32" => 4,
        "Half" | "Short" | "BFloat16" => 2,
        "Char" | "Byte" | "Bool" | "QUInt8" | "QInt8" | "QUInt4x2" | "QUInt2x4" => 1,
        "ComplexDouble" => 16,
        _ => return None,
    })
}

/// The `storages` or `tensors` member of a legacy tar checkpoint: a count,
/// then for each item a pickle and raw bytes (a storage's data, or a
/// tensor's sizes and strides), then, for storages, one more pickle.
fn scan_torch_tar_member(
    path: &str,
    member: &str,
    data: &[u8],
    allow: &AllowList,
    out: &mut Vec<Record>,
) {
    let storages = member.ends_with("storages");
    let fail = |out: &mut Vec<Record>, at: usize, what: String| {
        out.push(Record::unreadable(path, Some(member), at as u64, what));
    };
    let (record, end) = scan_pickle(path, Some(member), data, 0, allow);
    let Some(mut pos) = end else {
        out.push(record);
        return;
    };
    let count = reduce::from_slice::<u64>(&data[..pos]);
    out.push(record);
    let Ok(count) = count else {
        return fail(
            out,
            0,
            "expected the number of items as the first pickle".into(),
        );
    };
    let u64_at = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    for _ in 0..count {
        if full(path, out) {
            return;
        }
        if pos >= data.len() {
            return fail(out, pos, "the member ends before its last item".into());
        }
        let (record, end) = scan_pickle(path, Some(member), data, pos, allow);
        let size = storage_element_size(&record);
        out.push(record);
        let Some(n) = end else { return };
        pos += n;
        let skip = if storages {
            let Some(size) = size else {
                return fail(
                    out,
                    pos,
                    "a storage of a type whose element size is unknown: cannot find the pickle after it".into(),
                );
            };
            u64_at(pos)
                .and_then(|numel| numel.checked_mul(size as u64))
                .and_then(|b| b.checked_add(8))
        } else {
            // ndim (4 bytes and 4 unused), sizes and strides, offset.
            data.get(pos..pos + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as u64)
                .and_then(|ndim| ndim.checked_mul(16))
                .and_then(|b| b.checked_add(16))
        };
        match skip
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| pos.checked_add(s))
        {
            Some(next) if next <= data.len() => pos = next,
            _ => return fail(out, pos, "raw bytes run past the end of the member".into()),
        }
    }
    if storages {
        let (record, _) = scan_pickle(path, Some(member), data, pos, allow);
        out.push(record);
    }
}

/// Whether a zip member is read as a pickle by its name: `.pkl`,
/// `.pickle` or `.npy`, in any case, as torch finds `data.pkl` (its zip
/// reader compares names without case).
fn member_is_pickle(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [".pkl", ".pickle", ".npy"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Files a directory scan reads: pickle, torch, numpy and joblib
/// extensions (also under a compression extension, `model.pkl.gz`), and
/// any file whose first bytes are a protocol 2-5 pickle, a zip archive or
/// an `.npy` header.
fn looks_scannable(path: &Path) -> bool {
    const EXTS: &[&str] = &[
        "pkl", "pickle", "pck", "p", "pt", "pth", "bin", "ckpt", "npy", "npz", "joblib", "dat",
        "data", "sav",
    ];
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if ext.as_ref().is_some_and(|e| EXTS.contains(&e.as_str())) {
        return true;
    }
    // `model.pkl.gz`, `model.joblib.xz`: joblib compresses by the name's
    // last extension. Listed (as compressed, so unreadable), never skipped.
    const COMPRESSED: &[&str] = &["gz", "z", "bz2", "xz", "lzma", "lz4"];
    let inner = path
        .file_stem()
        .map(Path::new)
        .and_then(|stem| stem.extension())
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if ext.is_some_and(|e| COMPRESSED.contains(&e.as_str()))
        && inner.is_some_and(|e| EXTS.contains(&e.as_str()))
    {
        return true;
    }
    // Enough of the file to tell a protocol 0 or 1 pickle, which has no
    // magic number, by reading it.
    const HEAD: u64 = 64 << 10;
    let mut head = Vec::new();
    let _ = std::fs::File::open(path).and_then(|f| f.take(HEAD).read_to_end(&mut head));
    if (head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]))
        || is_zip(&head)
        || is_npy(&head)
        || is_tar(&head)
    {
        return true;
    }
    starts_as_pickle(&head, head.len() as u64 == HEAD)
}

/// Whether `head`, the start of a file (`cut`: the file goes on past it),
/// is a pickle without a `PROTO` opcode: it reads to its `STOP`, or names a
/// global Python could import before it fails (loading it would resolve
/// that global), or is still a pickle where the head is cut. Text and other
/// data fail at once; a source file's first line (`import os`) read as
/// `INST` names no importable module.
fn starts_as_pickle(head: &[u8], cut: bool) -> bool {
    if head.is_empty() {
        return false;
    }
    let importable = |r: &pickles::Resolution| match &r.named {
        Target::Global { module, name } => dotted_identifier(module) && dotted_identifier(name),
        Target::Extension(_) | Target::Computed => true,
    };
    match pickles::scan_one(head) {
        (_, Ok(_)) => true,
        (found, Err(e)) => {
            found.iter().any(importable) || (cut && matches!(e.kind(), reduce::ErrorKind::Eof))
        }
    }
}

/// `a.b_c.D1`: names Python can import or look up.
fn dotted_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        })
}

/// The files to read: each path given, and the scannable files under each
/// directory given, in name order.
fn collect(paths: &[PathBuf], out: &mut Vec<PathBuf>, errors: &mut Vec<Record>) {
    for path in paths {
        if path.is_dir() {
            let mut dirs = vec![path.clone()];
            while let Some(dir) = dirs.pop() {
                let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                    Err(e) => {
                        let shown = dir.display().to_string();
                        errors.push(Record::about(
                            &shown,
                            None,
                            format!("cannot list the directory: {e}"),
                        ));
                        continue;
                    }
                };
                entries.sort();
                let mut subdirs = Vec::new();
                for entry in entries {
                    if entry.is_dir() {
                        subdirs.push(entry);
                    } else if looks_scannable(&entry) {
                        out.push(entry);
                    }
                }
                dirs.extend(subdirs.into_iter().rev());
            }
        } else {
            out.push(path.clone());
        }
    }
}

/// Options of a scan.
pub struct Options {
    pub allow: AllowList,
    pub json: bool,
}

/// Scans `paths`, prints one record per pickle, and returns the exit
/// status: 0 when every pickle is safe, 1 when one is unsafe, and
/// otherwise 2 when an input could not be read.
pub fn run(paths: &[PathBuf], options: &Options) -> i32 {
    let mut files = Vec::new();
    let mut records = Vec::new();
    collect(paths, &mut files, &mut records);
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let total: u64 = sizes.iter().sum();
    let bar = progress_bar(files.len(), total);
    let mut worst = Verdict::Safe;
    let mut pickles = 0usize;
    // Findings about a file, member or directory as a whole.
    let mut others = 0usize;
    for record in &records {
        worst = worst.max(record.verdict);
        others += 1;
        emit(record, options.json);
    }
    for (file, size) in files.iter().zip(&sizes) {
        let shown = file.display().to_string();
        bar.set_message(crate::printable(&shown).into_owned());
        let mut found = Vec::new();
        match std::fs::read(file) {
            Ok(bytes) => scan_bytes(&shown, None, &bytes, &options.allow, &mut found),
            Err(e) => found.push(Record::about(
                &shown,
                None,
                format!("cannot read the file: {e}"),
            )),
        }
        bar.inc(*size);
        if found.is_empty() && !options.json {
            bar.suspend(|| {
                crate::out(&format!("{}: no pickle inside\n", crate::printable(&shown)))
            });
        }
        for record in &found {
            worst = worst.max(record.verdict);
            match record.offset {
                Some(_) => pickles += 1,
                None => others += 1,
            }
            bar.suspend(|| emit(record, options.json));
        }
    }
    bar.finish_and_clear();
    if !options.json {
        let allow = if options.allow.sources.is_empty() {
            "nothing".to_string()
        } else {
            crate::printable(&options.allow.sources.join(", ")).into_owned()
        };
        let others = match others {
            0 => String::new(),
            n => format!(", {n} file-level finding(s)"),
        };
        crate::out(&format!(
            "{pickles} pickle(s) in {} file(s){others}, allowing {allow}: {}\n",
            files.len(),
            worst.as_str()
        ));
    }
    worst.exit_code()
}

fn emit(record: &Record, json: bool) {
    if json {
        crate::out(&format!(
            "{}\n",
            crate::json_safe(&record.to_json().to_string())
        ));
    } else {
        crate::out(&record.to_text());
    }
}

/// A bar on a terminal for large or many files; nothing otherwise.
fn progress_bar(files: usize, bytes: u64) -> indicatif::ProgressBar {
    const LARGE: u64 = 64 << 20;
    if !std::io::stderr().is_terminal() || (files < 20 && bytes < LARGE) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(bytes);
    let style =
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {eta} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
