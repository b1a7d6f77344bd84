//! reduce-core's layers, checked: every `crate::` path in its source points
//! down to a lower layer or stays inside its own folder, nothing imports
//! through the crate root's re-exports, and the only import loop between
//! files is the registry's (copyreg's plugin loop: the registry stores
//! callbacks typed over `Saver` and `Node`, which look callbacks up in it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import from a lower layer, never
/// from its own layer's other modules or from a higher one.
const LAYERS: &[&[&str]] = &[
    &["base"],
    &["text"],
    &["value"],
    &["read", "write"],
    &["typed"],
    &["unpickler", "pickler", "inspect"],
    &["python", "serde"],
    &["lib", "security"],
];

/// The one loop between files that the design allows.
const ALLOWED_LOOP: &[&str] = &["typed::construct", "typed::registry", "typed::save"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reduce-core/src")
}

fn rank(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// Every `.rs` file under `dir`, with its module path (`read::machine`).
fn files(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
    for entry in std::fs::read_dir(dir).expect("reduce-core/src is readable") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            files(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut p = prefix.to_vec();
            if name != "mod" {
                p.push(name);
            }
            out.push((p, path));
        }
    }
}

/// The module paths a file names: `crate::a::b` and `super::b`, outside
/// comments, cut to `depth` segments.
fn references(module: &[String], text: &str) -> Vec<(usize, Vec<String>)> {
    let mut refs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (prefix, base) in [
            ("crate::", Vec::new()),
            ("super::", module[..module.len().saturating_sub(1)].to_vec()),
        ] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().next_back();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let mut path = base.clone();
                let mut tail = rest;
                loop {
                    let end = tail
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(tail.len());
                    if end == 0 {
                        if tail.starts_with('{') && path.is_empty() {
                            path.push("{".into());
                        }
                        break;
                    }
                    path.push(tail[..end].to_owned());
                    match tail[end..].strip_prefix("::") {
                        Some(t) => tail = t,
                        None => break,
                    }
                }
                refs.push((n + 1, path));
            }
        }
    }
    refs
}

#[test]
fn every_import_points_down_a_layer() {
    let mut all = Vec::new();
    files(&src(), &[], &mut all);
    assert!(
        all.len() > 40,
        "found only {} files under {:?}",
        all.len(),
        src()
    );
    let tops: BTreeSet<String> = all.iter().map(|(m, _)| m[0].clone()).collect();
    let mut wrong = Vec::new();
    // File-level edges, for the loop check.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &all {
        let top = &module[0];
        let Some(mine) = rank(top) else {
            wrong.push(format!(
                "{}: not in any layer; add it to LAYERS",
                module.join("::")
            ));
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let me = module
            .iter()
            .take(2)
            .cloned()
            .collect::<Vec<_>>()
            .join("::");
        for (line, target) in references(module, &text) {
            let Some(first) = target.first() else {
                continue;
            };
            if top == "lib" {
                continue;
            }
            let at = format!("{}:{line}", module.join("::"));
            if !tops.contains(first) || first.starts_with(char::is_uppercase) {
                // `crate::Value`, `crate::{...}`, `crate::from_slice`: the
                // crate root's re-exports, not the defining module.
                if first != "__private" {
                    wrong.push(format!(
                        "{at}: `crate::{}` goes through the crate root",
                        target.join("::")
                    ));
                }
                continue;
            }
            if first == top {
                let them = target
                    .iter()
                    .take(2)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("::");
                if them != me && target.len() >= 2 {
                    edges.entry(me.clone()).or_default().insert(them);
                }
                continue;
            }
            let theirs = rank(first).unwrap_or(usize::MAX);
            if theirs >= mine {
                wrong.push(format!(
                    "{at}: `{top}` may not import `{first}` (same or higher layer)"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));

    // No loop between the files of one folder, except the registry's.
    let loops = strongly_connected(&edges);
    let allowed: BTreeSet<String> = ALLOWED_LOOP.iter().map(|s| s.to_string()).collect();
    for component in loops {
        assert!(
            component == allowed,
            "an import loop between files: {component:?} (only {allowed:?} is allowed)"
        );
    }
}

/// The strongly connected components of more than one node (Tarjan).
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                if !s.index.contains_key(w.as_str()) {
                    visit(s, w);
                    let lw = s.low[w.as_str()];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w.as_str()) {
                    let iw = s.index[w.as_str()];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_checker_sees_a_wrong_import() {
    // The parser the test above relies on: a path through the root, one up
    // a layer, and one inside a folder.
    let module = vec!["read".to_owned(), "machine".to_owned()];
    let refs = references(
        &module,
        "use crate::Value;\n// use crate::typed::save;\nuse crate::typed::save::Saver;\nuse super::decode::{uint1, uint2};",
    );
    let paths: Vec<String> = refs.iter().map(|(_, p)| p.join("::")).collect();
    assert_eq!(paths, ["Value", "typed::save::Saver", "read::decode"]);
    assert!(rank("typed") > rank("read"));
}
