//! `reduce`: read, audit and convert Python pickles without Python.
//!
//! ```text
//! reduce dis FILE...              pickletools' disassembly, line for line
//! reduce show FILE                the value, loaded inert (nothing is called)
//! reduce scan PATH...             the globals every pickle would resolve, judged
//! reduce convert CKPT OUT         a torch checkpoint as safetensors
//! ```
//!
//! Exit status: 0 on success (and for `scan`, when every pickle is safe), 1
//! when `scan` finds an unsafe pickle, 2 when an input cannot be read (or
//! the command line is wrong).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod convert;
mod dis;
mod pickles;
mod policy;
mod scan;
mod show;
mod tar;
mod zipdir;

/// Read, audit and convert Python pickles, without Python: nothing a
/// pickle names is ever imported or called.
#[derive(Parser, Debug)]
#[command(name = "reduce", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Disassemble pickles, as `python3 -m pickletools FILE` does: offsets,
    /// opcodes, arguments, memo indices and MARK nesting.
    Dis {
        /// Pickle files; each shows its first pickle (in a zip archive such
        /// as a torch checkpoint, the `data.pkl` torch loads, else the first
        /// `data.pkl` or `.pkl` member in archive order; in an .npz, its
        /// first array of objects; in an .npy file of objects, the pickle
        /// after the header).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// End each line with a short description of its opcode.
        #[arg(short, long)]
        annotate: bool,
        /// Blanks by which each MARK level indents.
        #[arg(short = 'l', long, default_value_t = 4)]
        indentlevel: usize,
        /// Printed before each disassembly when there are several files;
        /// `{name}` is the file's name.
        #[arg(short, long, default_value = "==> {name} <==")]
        preamble: String,
    },
    /// Show the value of a pickle, loaded inert: unknown globals and
    /// reductions are kept as data, nothing is called. Shared objects are
    /// labelled <#n> (strings, bytes and ints only when longer than 64
    /// bytes and shown more than once, globals 256), cycles shown as
    /// <#n>[...].
    Show {
        /// The pickle file (its first pickle; in a zip archive such as a torch
        /// checkpoint, the `data.pkl` torch loads, else the first `data.pkl`
        /// or `.pkl` member in archive order; in an .npz, its first array of
        /// objects; in an .npy file, its pickle).
        file: PathBuf,
        /// Print the value as JSON (the mapping is in README).
        #[arg(long, conflicts_with = "python")]
        json: bool,
        /// Print a Python program that rebuilds the value, one statement per
        /// call loading would make.
        #[arg(long)]
        python: bool,
    },
    /// Scan files, directories, torch zip and legacy tar archives, .npy and
    /// .npz files, joblib files and streams of pickles: list every global
    /// each pickle would resolve, and judge it against allow-lists. Zip
    /// and tar archives are read as torch and numpy read them; where
    /// readers could disagree (two zip directories, overlapping entries,
    /// a link that cannot be followed, a joblib array wrapper not made as
    /// joblib writes it) the file is unsafe. Exit status: 0 all safe, 1 an
    /// unsafe pickle or finding, 2 an input that could not be read (and
    /// nothing unsafe).
    Scan {
        /// Files or directories (read recursively: files with pickle, torch,
        /// numpy or joblib extensions, or that start like a pickle, zip, tar
        /// or .npy file).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A preset (stdlib, numpy, torch) or a file of `module.name` lines;
        /// repeatable, and the lists add up. Without any, `stdlib`.
        #[arg(long, value_name = "PRESET|FILE")]
        allow: Vec<String>,
        /// One JSON record a line per pickle: path, member, offset, length,
        /// globals with offsets, verdict, reasons, error (offset null for a
        /// finding about a whole file, member or directory).
        #[arg(long)]
        json: bool,
    },
    /// Convert a torch checkpoint (zip, or the legacy format) to a
    /// safetensors file, refusing any global outside torch's weights_only
    /// allow-list. Tensors in dicts, lists and tuples are named by their
    /// keys and indices joined with `.` (`model.fc.weight`, `lst.0`); two
    /// tensors of one name are refused.
    Convert {
        /// The checkpoint (`torch.save` output).
        checkpoint: PathBuf,
        /// The safetensors file to write: whole, or not at all.
        out: PathBuf,
    },
}

/// Set once standard output cannot be written to (its reader went away).
static CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Standard output, buffered. Once a reader stops reading (`reduce dis
/// big.pkl | head`), the rest of the output is dropped quietly, as Unix
/// tools do, instead of the panic `print!` would raise; the exit status is
/// still the command's own. Writes never fail.
pub struct Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Default for Stdout {
    fn default() -> Stdout {
        Stdout(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stdout().lock(),
        ))
    }
}

impl Stdout {
    fn failed(e: std::io::Error) {
        use std::sync::atomic::Ordering;
        if !CLOSED.swap(true, Ordering::Relaxed) && e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("reduce: cannot write the output: {e}");
        }
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = self.0.write_all(buf) {
                Stdout::failed(e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = self.0.flush() {
                Stdout::failed(e);
            }
        }
        Ok(())
    }
}

impl Drop for Stdout {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// Writes `text` to standard output, as [`Stdout`] does, and flushes it.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = Stdout::default();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// `text` safe to print on a terminal: every character Python's
/// `str.isprintable` rejects (controls such as ESC, which start terminal
/// escape sequences, line breaks, bidirectional overrides, format
/// characters) written as `repr` writes it, `\x1b`, `\u202e`. Names and
/// strings from a pickle, and messages quoting them, go through this
/// before they are printed as text.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| matches!(c, ' '..='~');
    if text.chars().all(plain) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if plain(c) {
            out.push(c);
            continue;
        }
        if !c.is_ascii() && is_printable(c) {
            out.push(c);
        } else {
            use std::fmt::Write as _;
            let _ = match u32::from(c) {
                n @ 0..=0xff => write!(out, "\\x{n:02x}"),
                n @ 0x100..=0xffff => write!(out, "\\u{n:04x}"),
                n => write!(out, "\\U{n:08x}"),
            };
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether Python's `str.isprintable` accepts `c`: `repr` shows it as
/// itself.
pub fn is_printable(c: char) -> bool {
    if matches!(c, ' '..='~') {
        return true;
    }
    let repr = format!("{:?}", reduce::Value::Str(c.to_string().into()));
    !c.is_ascii() && repr[1..repr.len() - 1].chars().eq([c])
}

/// JSON text (from `serde_json`) safe to print on a terminal: every
/// character [`printable`] would escape, written as a JSON escape,
/// `\u202e` (an astral one as its two UTF-16 halves). serde_json escapes
/// only what JSON requires (the C0 controls, quotes, backslashes); the
/// rest (DEL, the C1 controls, bidirectional overrides, line and paragraph
/// separators, format characters) would reach the terminal raw. The same
/// string to a JSON reader. Outside strings JSON is ASCII, and the line
/// breaks and spaces that lay it out stay as they are.
pub fn json_safe(json: &str) -> std::borrow::Cow<'_, str> {
    let keep = |c: char| matches!(c, ' '..='~' | '\n');
    if json.chars().all(keep) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if keep(c) || (!c.is_ascii() && is_printable(c)) {
            out.push(c);
        } else {
            use std::fmt::Write as _;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{:04x}", u);
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<u8, String> {
    match cli.command {
        Command::Dis {
            files,
            annotate,
            indentlevel,
            preamble,
        } => {
            let options = dis::Options {
                indent: indentlevel,
                annotate,
            };
            for file in &files {
                let bytes = read(file)?;
                let bytes =
                    scan::first_pickle(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
                let mut out = Stdout::default();
                if files.len() > 1 {
                    let preamble = preamble.replace("{name}", &file.display().to_string());
                    let _ = std::io::Write::write_all(&mut out, format!("{preamble}\n").as_bytes());
                }
                let result = dis::dis(&bytes, &options, &mut out);
                drop(out);
                result
                    .map_err(|e| format!("{}: {e}{}", file.display(), scan::joblib_hint(&bytes)))?;
            }
            Ok(0)
        }
        Command::Show { file, json, python } => {
            let bytes = read(&file)?;
            let bytes =
                scan::first_pickle(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let graph: reduce::Graph = reduce::Unpickler::from_slice(&bytes)
                .inert(true)
                .load()
                .map_err(|e| {
                    let hint = match e.kind() {
                        reduce::ErrorKind::NoBuffer => {
                            " (the pickle was written with protocol 5's buffer_callback: its \
                             out-of-band buffers were handed to the writer, not stored in the file)"
                        }
                        _ => scan::joblib_hint(&bytes),
                    };
                    format!("{}: {e}{hint}", file.display())
                })?;
            // Stdout drops what its reader no longer takes: writes never fail.
            if json {
                let _ = show::json(&graph, &mut Stdout::default());
            } else if python {
                out(&show::python(&graph).map_err(|e| format!("{}: {e}", file.display()))?);
            } else {
                let _ = show::repr(&graph, &mut Stdout::default());
            }
            Ok(0)
        }
        Command::Scan { paths, allow, json } => {
            let mut list = policy::AllowList::default();
            let specs = if allow.is_empty() {
                vec!["stdlib".to_string()]
            } else {
                allow
            };
            for spec in &specs {
                list.add(spec)?;
            }
            let code = scan::run(&paths, &scan::Options { allow: list, json });
            Ok(code as u8)
        }
        Command::Convert { checkpoint, out } => {
            let bytes = read(&checkpoint)?;
            let mut skipped = Vec::new();
            let tensors = convert::load(&bytes, &checkpoint, &mut skipped)
                .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
            if tensors.is_empty() {
                return Err(format!("{}: no tensors found", checkpoint.display()));
            }
            convert::write(&tensors, &out)?;
            let bytes: usize = tensors.iter().map(convert::Tensor::len).sum();
            eprintln!(
                "wrote {} tensors ({bytes} bytes) to {}{}",
                tensors.len(),
                out.display(),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; left out what is not a tensor: {}",
                        printable(&skipped.join(", "))
                    )
                }
            );
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("reduce: {}", printable(&e));
            ExitCode::from(2)
        }
    }
}
