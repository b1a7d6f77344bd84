//! What `scan` judges a global by: the allow-lists chosen with `--allow`
//! (presets or files), and the globals known to run code, which are named
//! with a reason whatever the lists say.

use std::collections::BTreeSet;
use std::path::Path;

/// The globals of the preset `name` (`reduce::preset::by_name`: "stdlib",
/// "numpy", "torch"), as `(module, name)`. This is the one function
/// `--allow NAME` goes through.
pub fn preset(name: &str) -> Option<Vec<(String, String)>> {
    let preset = reduce::preset::by_name(name)?;
    Some(
        preset
            .globals()
            .map(|(m, n)| (m.to_string(), n.to_string()))
            .collect(),
    )
}

/// Globals CPython's pickler writes for builtin values, which reduce's
/// reader reads as plain data with no preset installed: `bytes` at
/// protocols 0-2 (`_codecs.encode`), `bytearray`, `set` and `frozenset` at
/// protocols 0-1, and instances through `copyreg` (whose class is a global
/// judged on its own). Allowed whatever `--allow` says.
pub const PLAIN_DATA: &[(&str, &str)] = &[
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
    ("builtins", "bytes"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"),
];

/// The names of the presets, for messages.
fn preset_names() -> String {
    let names: Vec<&str> = reduce::preset::all().iter().map(|p| p.name()).collect();
    names.join(", ")
}

/// The allow-list a scan judges by: the union of every `--allow`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllowList {
    globals: BTreeSet<(String, String)>,
    /// What it was made of, for the report.
    pub sources: Vec<String>,
}

impl AllowList {
    /// Adds a preset by name, or the `module.name` lines of a file.
    ///
    /// A file has one global a line, `module.name`, or `module:qualname`
    /// where the module ends before a dotted (nested) name; `#` starts a
    /// comment, on a line of its own or after the name, and blank lines are
    /// skipped. A line with two words is an error.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        if let Some(list) = preset(spec) {
            self.globals.extend(list);
            self.sources.push(spec.to_string());
            return Ok(());
        }
        let path = Path::new(spec);
        if !path.is_file() {
            return Err(format!(
                "--allow {spec}: expected a preset ({}) or a file of module.name lines, found neither",
                preset_names()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--allow {spec}: cannot read the file: {e}"))?;
        for (n, line) in text.lines().enumerate() {
            // A comment may end a line too: `numpy.dtype  # for arrays`.
            let line = line.split_once('#').map_or(line, |(before, _)| before);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let split = line.split_once(':').or_else(|| line.rsplit_once('.'));
            match split {
                Some((m, name))
                    if !m.is_empty() && !name.is_empty() && !line.contains(char::is_whitespace) =>
                {
                    self.globals.insert((m.to_string(), name.to_string()));
                }
                _ => {
                    return Err(format!(
                        "{spec}:{}: expected `module.name` or `module:qualname`, found `{line}`",
                        n + 1
                    ))
                }
            }
        }
        self.sources.push(spec.to_string());
        Ok(())
    }

    /// Whether `module.name` is allowed: in [`PLAIN_DATA`], or listed. A line `module.Outer.Inner` of a
    /// file is read as module `module.Outer`, name `Inner`; it matches the
    /// global `module` / `Outer.Inner` too.
    pub fn contains(&self, module: &str, name: &str) -> bool {
        if PLAIN_DATA.contains(&(module, name))
            || self
                .globals
                .contains(&(module.to_string(), name.to_string()))
        {
            return true;
        }
        let full = format!("{module}.{name}");
        full.rsplit_once('.')
            .is_some_and(|(m, n)| self.globals.contains(&(m.to_string(), n.to_string())))
    }
}

/// The name CPython 3 looks up for a Python 2 spelling (`fix_imports`):
/// `_compat_pickle`'s tables (`__builtin__.xrange` is `builtins.range`),
/// and whatever spelling of a module through which code can be run they
/// leave out.
pub fn python3_name(module: &str, name: &str) -> (String, String) {
    let (module, name) = reduce::security::python3_name(module, name);
    let module = match module {
        "__builtin__" | "exceptions" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "commands" => "subprocess",
        "urllib2" => "urllib.request",
        other => other,
    };
    (module.to_string(), name.to_string())
}

/// Why `module.name` can run code or touch the system, if it can.
///
/// A dotted name (protocol 4 resolves `os.system` inside module `shutil`
/// by attribute lookups) is judged as the module path it walks through
/// and its last part, and any step through a module that runs code is
/// named.
pub fn danger(module: &str, name: &str) -> Option<&'static str> {
    if name.split('.').any(special) {
        return Some("reaches the interpreter's internals through a special attribute");
    }
    if let Some((path, last)) = name.rsplit_once('.') {
        // Each tail of the walked path may be the module the attribute
        // really lives in: shutil.os.system is os.system.
        let walked = format!("{module}.{path}");
        let mut tail = walked.as_str();
        loop {
            // A module imported under a private alias (`import shutil as
            // _shutil` in tempfile) is the module.
            let unaliased = tail.trim_start_matches('_');
            if let Some(reason) = direct_danger(tail, last).or(direct_danger(unaliased, last)) {
                return Some(reason);
            }
            match tail.split_once('.') {
                Some((_, rest)) => tail = rest,
                None => break,
            }
        }
        let through = |m: &str| {
            matches!(
                m,
                "os" | "_os"
                    | "posix"
                    | "nt"
                    | "subprocess"
                    | "builtins"
                    | "__builtins__"
                    | "sys"
                    | "_sys"
                    | "importlib"
                    | "marshal"
                    | "pickle"
                    | "_pickle"
                    | "runpy"
            )
        };
        if path.split('.').any(through) {
            return Some("reaches a module that runs code through attribute lookups");
        }
    }
    direct_danger(module, name)
}

/// The special attributes through which any object reaches the modules,
/// classes, functions and namespaces behind it (`f.__globals__`,
/// `C.__subclasses__()`, `m.__builtins__`): what sandbox escapes walk. No
/// pickle CPython writes names one.
fn special(part: &str) -> bool {
    matches!(
        part,
        "__globals__"
            | "__builtins__"
            | "__subclasses__"
            | "__class__"
            | "__base__"
            | "__bases__"
            | "__mro__"
            | "__dict__"
            | "__code__"
            | "__closure__"
            | "__func__"
            | "__self__"
            | "__getattribute__"
            | "__loader__"
            | "__spec__"
    )
}

fn direct_danger(module: &str, name: &str) -> Option<&'static str> {
    let (module, name) = python3_name(module, name);
    let (module, name) = (module.as_str(), name.as_str());
    let top = module.split('.').next().unwrap_or(module);
    let first = name.split('.').next().unwrap_or(name);
    let shell = "runs a shell command or another program";
    let reason = match (module, first) {
        ("os" | "posix" | "nt", n)
            if n == "system"
                || n == "popen"
                || n.starts_with("exec")
                || n.starts_with("spawn")
                || n.starts_with("posix_spawn")
                || n == "startfile" =>
        {
            shell
        }
        (
            "os" | "posix" | "nt",
            "remove" | "unlink" | "rmdir" | "removedirs" | "rename" | "open" | "fdopen" | "kill"
            | "putenv" | "chmod",
        ) => "changes files or processes",
        ("builtins", "eval" | "exec" | "compile") => "evaluates Python source",
        ("builtins", "__import__")
        | ("importlib", "import_module" | "__import__" | "reload")
        | ("pydoc", "locate")
        | ("pkgutil", "resolve_name") => "imports any module",
        ("importlib.machinery" | "importlib.util" | "imp" | "zipimport", _) => {
            "loads Python code from a file"
        }
        ("builtins", "vars" | "globals" | "locals") => "reaches the interpreter's namespaces",
        ("builtins", "getattr" | "setattr" | "delattr") => "reaches any attribute of any object",
        ("builtins", "open")
        | ("io" | "_io", "open" | "FileIO" | "open_code")
        | ("codecs", "open") => "opens a file",
        ("builtins", "breakpoint" | "input") => "interacts with the terminal",
        ("marshal", "loads" | "load") => "loads code objects (marshal)",
        (
            "pickle" | "_pickle" | "dill" | "cloudpickle" | "joblib",
            "loads" | "load" | "Unpickler" | "_loads" | "_load" | "_Unpickler",
        ) => "loads a nested pickle, unchecked",
        ("yaml", "load" | "load_all" | "unsafe_load" | "unsafe_load_all" | "full_load")
        | ("jsonpickle", "decode" | "loads") => "loads serialized objects that can run code",
        ("timeit", _)
        | ("cProfile" | "profile" | "pdb" | "bdb" | "trace", _)
        | ("torch.jit.unsupported_tensor_ops", "execWrapper") => "evaluates Python source",
        ("pydoc", "pipepager" | "tempfilepager" | "pager" | "getpager")
        | ("uuid", "_get_command_stdout")
        | ("platform", "_syscmd_file" | "_syscmd_ver" | "popen")
        | ("imaplib", "IMAP4_stream") => shell,
        (
            "importlib._bootstrap"
            | "importlib._bootstrap_external"
            | "_frozen_importlib"
            | "_frozen_importlib_external",
            _,
        ) => "imports any module",
        ("operator" | "_operator", "call") | ("functools", "reduce") => "calls any callable",
        ("logging.config", "fileConfig" | "dictConfig" | "listen") => {
            "imports and calls what its configuration names"
        }
        ("shelve", _) => "loads pickles from a file",
        ("torch.hub", _) => "downloads and runs code (torch.hub)",
        ("torch.utils.cpp_extension", _) => "compiles and loads native code",
        ("torch.fx.experimental.symbolic_shapes", "ShapeEnv")
            if name.starts_with("ShapeEnv.evaluate_guards") =>
        {
            "evaluates Python source"
        }
        (
            "asyncio" | "asyncio.subprocess",
            "create_subprocess_shell" | "create_subprocess_exec",
        )
        | ("multiprocessing.util", "spawnv_passfds")
        | ("distutils.spawn", _) => "runs a shell command or another program",
        ("numpy" | "numpy.lib.npyio" | "numpy.lib._npyio_impl", "load") => {
            "loads a file that may hold a pickle (numpy.load)"
        }
        ("numpy.testing._private.utils", "runstring") => "evaluates Python source",
        ("pandas" | "pandas.io.pickle", "read_pickle") => {
            "loads a pickle file (pandas.read_pickle)"
        }
        ("torch" | "torch.serialization", "load") | ("torch.storage", "_load_from_bytes") => {
            "loads a nested torch checkpoint, unchecked"
        }
        ("torch.jit" | "torch.jit._serialization", "load") => "loads TorchScript code",
        ("types", "FunctionType" | "CodeType" | "LambdaType")
        | (
            "cloudpickle.cloudpickle" | "cloudpickle",
            "_make_function" | "_builtin_type" | "_make_code",
        )
        | ("dill._dill", "_create_function" | "_create_code" | "_load_type") => {
            "builds a function from code, which runs when called"
        }
        ("operator" | "_operator", "attrgetter" | "methodcaller") => {
            "reaches any attribute of any object"
        }
        ("code", _) | ("codeop", _) => "evaluates Python source",
        ("ctypes", _) | ("_ctypes", _) => "calls native code (ctypes)",
        ("shutil", _) => "changes files",
        _ => match top {
            "subprocess" | "pty" | "_posixsubprocess" => shell,
            "runpy" => "runs a Python module or file",
            "pip" | "ensurepip" => "installs packages (pip)",
            "idlelib" => "evaluates Python source (IDLE's shell)",
            "setuptools" | "distutils" => "runs build scripts and commands",
            "webbrowser" => "opens a web browser",
            "socket" | "urllib" | "http" | "requests" | "ftplib" | "smtplib" | "poplib"
            | "nntplib" | "telnetlib" | "xmlrpc" | "imaplib" => "reaches the network",
            "sys" if matches!(first, "exit" | "modules" | "settrace" | "setprofile") => {
                "changes the interpreter"
            }
            _ => return None,
        },
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_runners_are_named() {
        assert_eq!(
            danger("os", "system"),
            Some("runs a shell command or another program")
        );
        assert_eq!(danger("posix", "system"), danger("nt", "system"));
        assert!(danger("subprocess", "Popen").is_some());
        assert!(danger("commands", "getoutput").is_some());
        assert_eq!(
            danger("__builtin__", "eval"),
            Some("evaluates Python source")
        );
        assert!(danger("pip._internal", "main").is_some());
        assert!(danger("collections", "OrderedDict").is_none());
        assert!(danger("ossature", "system").is_none());
        assert_eq!(danger("shutil", "os.system"), danger("os", "system"));
        assert!(danger("pickle", "sys.modules.get").is_some());
        assert!(danger("collections", "OrderedDict.fromkeys").is_none());
        // Names known to get past other scanners.
        assert_eq!(danger("pydoc", "locate"), Some("imports any module"));
        assert!(danger("random", "_os.system").is_some());
        assert_eq!(
            danger("tempfile", "_shutil.rmtree"),
            danger("tarfile", "shutil.rmtree")
        );
        assert!(danger("tempfile", "_shutil.rmtree").is_some());
        assert_eq!(danger("_io", "FileIO"), Some("opens a file"));
        assert!(danger("pickle", "_Unpickler").is_some());
        assert!(danger("timeit", "timeit").is_some());
        assert!(danger("asyncio", "create_subprocess_shell").is_some());
        assert!(danger("torch.jit.unsupported_tensor_ops", "execWrapper").is_some());
        assert!(danger(
            "torch.fx.experimental.symbolic_shapes",
            "ShapeEnv.evaluate_guards_expression"
        )
        .is_some());
        assert!(danger("builtins", "vars").is_some());
        assert!(danger("yaml", "unsafe_load").is_some());
        assert!(danger("datetime", "datetime").is_none());
        assert!(danger("random", "Random").is_none());
        // Gadgets known from scanner bypasses.
        for (module, name) in [
            ("pydoc", "pipepager"),
            ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
            ("operator", "call"),
            ("_operator", "methodcaller"),
            ("importlib._bootstrap", "_gcd_import"),
            ("torch.hub", "load"),
            ("uuid", "_get_command_stdout"),
            ("profile", "Profile.runctx"),
            ("bdb", "Bdb.run"),
            ("logging.config", "fileConfig"),
            ("ensurepip", "_run_pip"),
            ("setuptools.sandbox", "run_setup"),
            ("imaplib", "IMAP4_stream"),
        ] {
            assert!(danger(module, name).is_some(), "{module}.{name}");
        }
        assert!(danger("uuid", "UUID").is_none());
        assert!(danger("logging", "getLogger").is_none());
        // Special attributes, named or read with getattr.
        let special = Some("reaches the interpreter's internals through a special attribute");
        assert_eq!(danger("builtins", "object.__subclasses__"), special);
        assert_eq!(danger("os", "__builtins__"), special);
        assert_eq!(danger("json", "dumps.__globals__.get"), special);
        assert!(danger("copyreg", "__newobj__").is_none());
        assert!(danger("zoneinfo", "ZoneInfo._unpickle").is_none());
    }

    #[test]
    fn lines_and_nested_names() {
        let mut allow = AllowList::default();
        allow.add("stdlib").unwrap();
        assert!(allow.contains("collections", "OrderedDict"));
        assert!(!allow.contains("os", "system"));
        assert!(allow.add("no-such-preset-or-file").is_err());
        assert!(!allow.contains("array", "array"));
        // Plain data needs no list.
        let none = AllowList::default();
        assert!(none.contains("_codecs", "encode"));
        assert!(none.contains("copyreg", "_reconstructor"));
        assert!(!none.contains("collections", "OrderedDict"));

        let file = std::env::temp_dir().join(format!("reduce-allow-{}.txt", std::process::id()));
        std::fs::write(
            &file,
            "# mine\nmypkg.models.Net\n\nmypkg.layers:Block.Inner  # nested\n",
        )
        .unwrap();
        let mut mine = AllowList::default();
        mine.add(file.to_str().unwrap()).unwrap();
        assert!(mine.contains("mypkg.models", "Net"));
        assert!(mine.contains("mypkg.layers", "Block.Inner"));
        assert!(!mine.contains("mypkg.layers", "Block"));
        // Two names on a line are a mistake, not a name with a space.
        std::fs::write(&file, "numpy.dtype numpy.ndarray\n").unwrap();
        let err = AllowList::default()
            .add(file.to_str().unwrap())
            .unwrap_err();
        assert!(err.ends_with("found `numpy.dtype numpy.ndarray`"), "{err}");
        std::fs::write(&file, "no_dot_here\n").unwrap();
        let err = AllowList::default()
            .add(file.to_str().unwrap())
            .unwrap_err();
        assert!(
            err.ends_with(":1: expected `module.name` or `module:qualname`, found `no_dot_here`"),
            "{err}"
        );
        let _ = std::fs::remove_file(&file);
    }
}
