//! Tar archives as Python's `tarfile` reads them, which is what
//! `torch.load` uses for torch's format before 0.4: a header is one by its
//! checksum alone (no `ustar` magic needed), pax records are parsed by
//! their length, global pax headers apply to every member after them, a
//! pax `size` overrides the header's, links are followed to their target.

use std::ops::Range;

/// One member, as `tarfile` lists it.
#[derive(Clone, Debug)]
pub struct Member {
    /// Offset of its (first) header in the archive.
    pub header: usize,
    pub name: String,
    /// The type flag (`b'0'`, `b'1'`, ...).
    pub kind: u8,
    pub linkname: String,
    /// Where `extractfile` reads its bytes (for a file).
    pub data: Range<usize>,
    /// A GNU sparse member: its bytes are not stored as they read.
    pub sparse: bool,
}

impl Member {
    /// A member `extractfile` reads bytes of: a regular file, or any type
    /// `tarfile` does not know.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, b'0' | 0 | b'7' | b'S') || !SUPPORTED.contains(&self.kind)
    }

    pub fn is_link(&self) -> bool {
        matches!(self.kind, b'1' | b'2')
    }
}

/// `tarfile.SUPPORTED_TYPES`.
const SUPPORTED: &[u8] = b"0\x0071S123456LKxgX";

const BLOCK: usize = 512;

/// Extended headers in a row before a member: past this, `tarfile` hits
/// Python's recursion limit (and the scan its stack).
const MAX_EXTENDED: usize = 1000;

/// Python's `str.strip()` of ASCII whitespace.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f".contains(c))
}

/// Python's `int(s, base)` for the spellings it accepts: whitespace
/// around, a sign, a `0o`/`0x` prefix for its base, one underscore
/// between digits.
fn py_int(s: &str, base: u32) -> Option<i128> {
    let s = py_strip(s);
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = s.to_ascii_lowercase();
    let s = match (base, lower.get(..2)) {
        (8, Some("0o")) | (16, Some("0x")) => s[2..].strip_prefix('_').unwrap_or(&s[2..]),
        _ => s,
    };
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    let mut n: i128 = 0;
    for c in s.chars().filter(|&c| c != '_') {
        n = n
            .checked_mul(base as i128)?
            .checked_add(c.to_digit(base)? as i128)?;
    }
    Some(if neg { -n } else { n })
}

/// `tarfile.nts`: the text up to the first NUL.
fn nts(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// `tarfile.nti`: a number field, octal text or base-256.
fn nti(field: &[u8]) -> Option<i128> {
    match field.first() {
        Some(0x80) | Some(0xff) => {
            let mut n: i128 = 0;
            for &b in &field[1..] {
                n = n.checked_mul(256)?.checked_add(b as i128)?;
            }
            if field[0] == 0xff {
                n = n.checked_sub(1i128.checked_shl(8 * (field.len() as u32 - 1))?)?;
            }
            Some(n)
        }
        _ => {
            let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
            let text = std::str::from_utf8(&field[..end]).ok()?;
            if !text.is_ascii() {
                return None;
            }
            let text = py_strip(text);
            if text.is_empty() {
                Some(0)
            } else {
                py_int(text, 8)
            }
        }
    }
}

/// Whether `header` (512 bytes) is a tar header to `tarfile`: not all
/// zeros, and its checksum field holds the sum of its bytes (the field
/// counted as spaces), unsigned or signed.
fn checksum_ok(header: &[u8]) -> bool {
    if header.len() != BLOCK || header.iter().all(|&b| b == 0) {
        return false;
    }
    let Some(sum) = nti(&header[148..156]) else {
        return false;
    };
    let unsigned: i128 = 256
        + header[..148]
            .iter()
            .chain(&header[156..])
            .map(|&b| b as i128)
            .sum::<i128>();
    let signed: i128 = 256
        + header[..148]
            .iter()
            .chain(&header[156..])
            .map(|&b| b as i8 as i128)
            .sum::<i128>();
    sum == unsigned || sum == signed
}

/// Whether `bytes` start as a tar archive to `tarfile` (and so to
/// `torch.load`): a first header with a valid checksum, with or without
/// the `ustar` magic.
pub fn is_tar(bytes: &[u8]) -> bool {
    bytes.get(..BLOCK).is_some_and(checksum_ok)
}

/// Why reading a header stopped: the end of the archive as `tarfile` sees
/// it (zeros, nothing, a bad header after the first), or an error that
/// makes `tarfile` refuse the archive.
enum Stop {
    End(String),
    Fatal(String),
}

/// The pax records `tarfile` keeps (`dict`: one value per key, in order),
/// those that change a member as [`apply_pax`] reads it: a handful, however
/// many records a header holds, so that neither setting nor copying them
/// grows with a hostile header.
type Pax = Vec<(String, String)>;

/// The one key that stands for every `GNU.sparse.*` record but the name:
/// they only mark a member sparse.
const SPARSE: &str = "GNU.sparse.";

fn pax_set(pax: &mut Pax, key: String, value: String) {
    let key = match key.as_str() {
        "path" | "GNU.sparse.name" | "linkpath" | "size" => key,
        k if k.starts_with(SPARSE) => SPARSE.to_string(),
        _ => return,
    };
    match pax.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => pax.push((key, value)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// Extended headers (long names, pax) read so far before the member
    /// they stand for: `tarfile` reads each by a recursive call.
    depth: usize,
    /// Global pax records (`tarfile.pax_headers`).
    global: Pax,
    /// Findings about headers two versions of `tarfile` read differently.
    odd: Vec<String>,
}

/// A member as read so far, and the offset of the next header.
struct Read {
    member: Member,
    size: i128,
    next: usize,
}

impl Reader<'_> {
    /// `TarInfo.fromtarfile`: the header at `offset` and what it stands for.
    fn read_header(&mut self, offset: usize) -> Result<Read, Stop> {
        let header = match self.bytes.get(offset..) {
            None | Some([]) => return Err(Stop::End("no more headers".into())),
            Some(rest) if rest.len() < BLOCK => {
                return Err(Stop::End(format!("truncated header at offset {offset}")))
            }
            Some(rest) => &rest[..BLOCK],
        };
        if header.iter().all(|&b| b == 0) {
            return Err(Stop::End("end of archive".into()));
        }
        if self.depth > MAX_EXTENDED {
            // tarfile reads each with three nested calls: Python's
            // recursion limit stops it long before this.
            return Err(Stop::Fatal(format!(
                "more than {MAX_EXTENDED} extended headers (long names, pax) in a row at offset {offset}"
            )));
        }
        if !checksum_ok(header) {
            return Err(Stop::End(format!("bad header checksum at offset {offset}")));
        }
        let size = nti(&header[124..136])
            .ok_or_else(|| Stop::End(format!("bad size field in the header at offset {offset}")))?;
        let mut kind = header[156];
        let mut name = nts(&header[..100]);
        if kind == 0 && name.ends_with('/') {
            kind = b'5';
        }
        if kind == b'5' {
            name = name.trim_end_matches('/').to_string();
        }
        let prefix = nts(&header[345..500]);
        if !prefix.is_empty() && !b"LKS".contains(&kind) {
            name = format!("{prefix}/{name}");
        }
        let member = Member {
            header: offset,
            name,
            kind,
            linkname: nts(&header[157..257]),
            data: 0..0,
            sparse: kind == b'S',
        };
        self.proc_member(member, size, offset + BLOCK)
    }

    /// `_block`: a size rounded up to whole blocks.
    fn block(size: i128) -> Result<usize, Stop> {
        usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_next_multiple_of(BLOCK))
            .ok_or_else(|| Stop::Fatal(format!("a member size of {size}")))
    }

    /// Where the header after `size` bytes of data from `start` is.
    fn after(start: usize, size: i128) -> Result<usize, Stop> {
        start
            .checked_add(Self::block(size)?)
            .ok_or_else(|| Stop::Fatal(format!("a member size of {size}")))
    }

    /// The header at `offset`, read for the extended header before it.
    fn read_nested(&mut self, offset: usize) -> Result<Read, Stop> {
        self.depth += 1;
        let read = self.read_header(offset);
        self.depth -= 1;
        read
    }

    /// The bytes of a header's own data (a long name, pax records).
    fn own_data(&self, start: usize, size: i128) -> Result<&[u8], Stop> {
        let n = usize::try_from(size).map_err(|_| Stop::Fatal(format!("a size of {size}")))?;
        let end = start.saturating_add(n).min(self.bytes.len());
        Ok(self.bytes.get(start..end).unwrap_or_default())
    }

    fn proc_member(&mut self, mut member: Member, size: i128, start: usize) -> Result<Read, Stop> {
        match member.kind {
            b'L' | b'K' => {
                let text = nts(self.own_data(start, size)?);
                let mut next = self.read_nested(Self::after(start, size)?)?;
                next.member.header = member.header;
                if member.kind == b'L' {
                    next.member.name = text;
                } else {
                    next.member.linkname = text;
                }
                Ok(next)
            }
            b'x' | b'g' | b'X' => {
                let records = self.own_data(start, size)?.to_vec();
                let parsed = parse_pax(&records, member.header).map_err(Stop::End)?;
                for problem in parsed.1 {
                    self.odd.push(problem);
                }
                let mut pax = if member.kind == b'g' {
                    for (k, v) in parsed.0 {
                        pax_set(&mut self.global, k, v);
                    }
                    Vec::new()
                } else {
                    let mut pax = self.global.clone();
                    for (k, v) in parsed.0 {
                        pax_set(&mut pax, k, v);
                    }
                    pax
                };
                let mut next = match self.read_nested(Self::after(start, size)?) {
                    Ok(next) => next,
                    // An error from further in is passed on as it is,
                    // not wrapped once per header before it.
                    Err(Stop::Fatal(e)) => return Err(Stop::Fatal(e)),
                    Err(Stop::End(e)) => {
                        return Err(Stop::Fatal(format!(
                            "the header after the pax header at offset {}: {e}",
                            member.header
                        )))
                    }
                };
                if member.kind != b'g' {
                    apply_pax(&mut next, &pax);
                    next.member.header = member.header;
                    if pax.iter().any(|(k, _)| k == "size") {
                        let data = next.member.data.start;
                        next.next = data;
                        if next.member.is_file() {
                            next.next = Self::after(data, next.size)?;
                        }
                    }
                }
                pax.clear();
                Ok(next)
            }
            _ => {
                // The data of a file (or of a type tarfile does not
                // know) is skipped by the header's size; a link, folder
                // or device has none, whatever its size field says.
                let next = if member.is_file() {
                    Self::after(start, size)?
                } else {
                    start
                };
                member.data = start..start;
                let mut read = Read { member, size, next };
                let global = self.global.clone();
                apply_pax(&mut read, &global);
                if read.member.kind == b'5' {
                    read.member.name = read.member.name.trim_end_matches('/').to_string();
                }
                Ok(read)
            }
        }
    }
}

/// `TarInfo._apply_pax_info`: the records that replace header fields.
fn apply_pax(read: &mut Read, pax: &Pax) {
    for (key, value) in pax {
        match key.as_str() {
            "path" | "GNU.sparse.name" => {
                read.member.name = if key == "path" {
                    value.trim_end_matches('/').to_string()
                } else {
                    value.clone()
                }
            }
            "linkpath" => read.member.linkname = value.clone(),
            "size" => read.size = py_int(value, 10).unwrap_or(0),
            _ => {}
        }
        if key.starts_with("GNU.sparse.") {
            read.member.sparse = true;
        }
    }
}

/// The records of a pax header (`"%d %s=%s\n"`, the length counting the
/// whole record), as `tarfile` reads them; and the records a stricter
/// `tarfile` (3.12.4 and later) refuses, which older ones read.
#[allow(clippy::type_complexity)]
fn parse_pax(buf: &[u8], at: usize) -> Result<(Pax, Vec<String>), String> {
    let mut records = Vec::new();
    let mut odd = Vec::new();
    let mut pos = 0;
    while pos < buf.len() && buf[pos] != 0 {
        let digits = buf[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        // Python's int(): a length past usize is past the buffer too.
        let length: usize = std::str::from_utf8(&buf[pos..pos + digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(usize::MAX);
        let key_start = pos + digits + 1;
        let key_len = buf
            .get(key_start..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b != b'=')
            .count();
        if digits > 0 && length == 0 {
            // Every tarfile refuses it: the archive ends here.
            return Err(format!(
                "invalid pax header at offset {at} (record at byte {pos})"
            ));
        }
        if digits == 0
            || buf.get(pos + digits) != Some(&b' ')
            || key_len == 0
            || key_start + key_len >= buf.len()
        {
            // Not `%d %s=`: tarfile 3.12.4 and later end the archive at
            // this header, older ones keep the records before it and read
            // on (the members after it are scanned as they read them).
            odd.push(format!(
                "an invalid pax record at offset {}: tarfile 3.12.4 and later end the archive there, older versions read on",
                at + BLOCK + pos
            ));
            break;
        }
        let value_start = key_start + key_len + 1;
        // A length past the buffer (up to usize::MAX) ends the records.
        let end = pos.saturating_add(length);
        let value_end = (end - 1).min(buf.len());
        let value = buf.get(value_start..value_end).unwrap_or_default();
        if length < 5 || end > buf.len() || buf[end - 1] != b'\n' {
            odd.push(format!(
                "a pax record at offset {} that Python versions read differently (length {length})",
                at + BLOCK + pos
            ));
        }
        let key = String::from_utf8_lossy(&buf[key_start..key_start + key_len]).into_owned();
        records.push((key, String::from_utf8_lossy(value).into_owned()));
        pos = end;
    }
    Ok((records, odd))
}

/// Every member, in order, as `tarfile` lists them; and findings about
/// headers `tarfile` versions read differently. An error where `tarfile`
/// refuses the archive (`torch.load` then reads the file as a stream).
pub fn members(bytes: &[u8]) -> Result<(Vec<Member>, Vec<String>), String> {
    let mut reader = Reader {
        bytes,
        depth: 0,
        global: Vec::new(),
        odd: Vec::new(),
    };
    let mut members = Vec::new();
    let mut offset = 0usize;
    loop {
        if offset > bytes.len() {
            return Err(format!(
                "unexpected end of data: a member runs past the end of the file (offset {offset})"
            ));
        }
        match reader.read_header(offset) {
            Ok(read) => {
                let mut member = read.member;
                if member.is_file() {
                    let n = usize::try_from(read.size)
                        .map_err(|_| format!("a member size of {}", read.size))?;
                    let start = member.data.start;
                    member.data = start..start.saturating_add(n);
                    if member.data.end > bytes.len() {
                        return Err(format!(
                            "tar member `{}` at offset {}: {n} bytes run past the end of the file",
                            member.name, member.header
                        ));
                    }
                }
                offset = read.next;
                members.push(member);
            }
            Err(Stop::End(e)) if offset == 0 => return Err(e),
            Err(Stop::End(_)) => break,
            Err(Stop::Fatal(e)) => return Err(e),
        }
    }
    Ok((members, reader.odd))
}

/// `posixpath.normpath`.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if initial == 0 && parts.last().is_none_or(|&p| p == "..") => parts.push(".."),
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined = format!("{}{}", "/".repeat(initial), parts.join("/"));
    if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// The members by their names as `_getmember` compares them
/// (`normpath`ed), each name's in archive order: built once, so that
/// following every link of an archive takes linear time, not quadratic.
pub struct Names(std::collections::HashMap<String, Vec<usize>>);

impl Names {
    pub fn new(members: &[Member]) -> Names {
        let mut map: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, m) in members.iter().enumerate() {
            map.entry(normpath(&m.name)).or_default().push(i);
        }
        Names(map)
    }

    /// The last member named `name` (normalized) before `limit`.
    fn last_before(&self, name: &str, limit: usize) -> Option<usize> {
        let all = self.0.get(name)?;
        let before = all.partition_point(|&j| j < limit);
        Some(all[before.checked_sub(1)?])
    }
}

/// The member whose bytes `extractfile` returns for `members[i]`:
/// itself, or for a link its target (`_find_link_target`: a hard link's
/// among the members before it, a symbolic link's relative to its folder,
/// anywhere), followed as far as links go; an error when a link cannot be
/// resolved in the archive.
pub fn resolve(members: &[Member], names: &Names, mut i: usize) -> Result<usize, String> {
    for _ in 0..64 {
        let m = &members[i];
        if !m.is_link() {
            return Ok(i);
        }
        let (target, limit) = if m.kind == b'2' {
            let dir = m.name.rsplit_once('/').map_or("", |(d, _)| d);
            let joined: Vec<&str> = [dir, m.linkname.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            (joined.join("/"), members.len())
        } else {
            (m.linkname.clone(), i)
        };
        i = names
            .last_before(&normpath(&target), limit)
            .ok_or_else(|| {
                format!(
                    "`{}` is a link to `{}`, which is not in the archive before it",
                    m.name, m.linkname
                )
            })?;
    }
    Err(format!(
        "`{}`: links that lead to links past 64 steps",
        members[i].name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_ints() {
        assert_eq!(py_int(" 0o1_7 ", 8), Some(15));
        assert_eq!(py_int("1__7", 8), None);
        assert_eq!(py_int("-12", 10), Some(-12));
        assert_eq!(py_int("8", 8), None);
    }

    #[test]
    fn normpaths() {
        assert_eq!(normpath("a/./b//../c"), "a/c");
        assert_eq!(normpath("../x"), "../x");
        assert_eq!(normpath("/../x"), "/x");
        assert_eq!(normpath("//x"), "//x");
        assert_eq!(normpath(""), ".");
    }
}
