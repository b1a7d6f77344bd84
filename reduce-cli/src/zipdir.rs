//! Zip archives as the loaders read them: torch's (miniz) and Python's
//! `zipfile` (`numpy.load`, `joblib`) take the last end-of-central-directory
//! record in the file, whatever its comment length says, and name a
//! member by the bytes of its name (miniz ignores the Unicode Path extra
//! field). Read here by hand, so that the scan sees every directory and
//! member one of them could read, not the one another zip reader prefers.

use std::io::Read as _;

/// One entry of a central directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The name's bytes, as miniz compares them (shown lossily as UTF-8).
    pub name: String,
    /// The name an Info-ZIP Unicode Path extra field (0x7075) gives it,
    /// which some zip readers show instead.
    pub unicode_name: Option<String>,
    pub flags: u16,
    pub method: u16,
    pub compressed: u64,
    pub size: u64,
    /// Offset of its local header.
    pub local: u64,
}

impl Entry {
    /// Every name a reader may know the entry by.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.unicode_name.as_deref())
    }

    /// The entry as a scan record names it.
    pub fn shown(&self) -> String {
        match &self.unicode_name {
            Some(u) if *u != self.name => format!("{} (Unicode Path: {u})", self.name),
            _ => self.name.clone(),
        }
    }
}

/// A central directory one of the loaders could read.
#[derive(Clone, Debug)]
pub struct Directory {
    /// Offset of its end-of-central-directory record.
    pub eocd: usize,
    pub entries: Vec<Entry>,
}

/// The directories of a zip archive: every one a loader could read, the
/// one torch and `zipfile` read (the last end record's) first; and
/// findings about what makes readers disagree on which.
pub fn directories(bytes: &[u8]) -> (Vec<Directory>, Vec<String>) {
    let tail = bytes.len().saturating_sub(65_557);
    let mut candidates: Vec<usize> = bytes[tail..]
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"PK\x05\x06")
        .map(|(i, _)| tail + i)
        .filter(|&at| at + 22 <= bytes.len())
        .collect();
    candidates.reverse();
    let mut problems = Vec::new();
    if let Some(&last) = candidates.first() {
        let comment = u16_at(bytes, last + 20).unwrap_or(0) as usize;
        let after = bytes.len() - last - 22;
        if comment != after {
            problems.push(format!(
                "the last end-of-central-directory record (offset {last}) claims a comment of {comment} bytes where {after} follow: zip readers differ on which directory they read"
            ));
        }
    }
    let mut dirs: Vec<Directory> = Vec::new();
    // Each directory's hash, to find the same one again in linear time.
    let mut hashes: Vec<u64> = Vec::new();
    let mut read = Budget {
        seen: Default::default(),
        entries: MAX_ENTRIES,
        exhausted: false,
    };
    let mut last_unread = None;
    for (k, eocd) in candidates.into_iter().enumerate() {
        let found = read_directory(bytes, eocd, &mut read);
        if k == 0 && found.is_empty() {
            last_unread = Some(eocd);
        }
        for entries in found {
            let hash = {
                use std::hash::{BuildHasher as _, RandomState};
                thread_local!(static STATE: RandomState = RandomState::new());
                STATE.with(|s| s.hash_one(&entries))
            };
            if !hashes
                .iter()
                .zip(&dirs)
                .any(|(&h, d)| h == hash && d.entries == entries)
            {
                hashes.push(hash);
                dirs.push(Directory { eocd, entries });
            }
        }
    }
    if let Some(last) = last_unread.filter(|_| !dirs.is_empty()) {
        // Python's zipfile reads a directory more leniently (by its size,
        // whatever its count says): the one it reads may not be scanned.
        problems.push(format!(
            "the central directory of the last end-of-central-directory record (offset {last}) cannot be read, and another one can: zip readers differ on which directory they read"
        ));
    }
    if read.exhausted {
        problems.push(format!(
            "the zip archive's end records describe more than {MAX_ENTRIES} central directory entries in all: the scan reads no more of them, a loader may"
        ));
    }
    if dirs.len() > 1 {
        let at: Vec<String> = dirs.iter().map(|d| d.eocd.to_string()).collect();
        problems.push(format!(
            "the zip archive holds {} different central directories (end records at offsets {}): zip readers differ on which they read; all are scanned",
            dirs.len(),
            at.join(", ")
        ));
    }
    (dirs, problems)
}

/// The `n` bytes at `at`, if the file holds them (`at` may be any offset
/// a header states).
fn span(bytes: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    bytes.get(at..at.checked_add(n)?)
}

/// Central directory entries read for one archive, all its directories
/// together: each is at least 46 bytes, and end records (up to 65536
/// bytes of them) may all describe large ones.
const MAX_ENTRIES: usize = 1 << 20;

/// What reading an archive's directories may still cost.
struct Budget {
    /// Directories read already: (start, size, count, shift).
    seen: std::collections::HashSet<(u64, u64, u64, u64)>,
    /// Entries that may still be read.
    entries: usize,
    /// Whether a directory was left unread for want of them.
    exhausted: bool,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(span(bytes, at, 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(span(bytes, at, 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(span(bytes, at, 8)?.try_into().ok()?))
}

/// The entries of the directory the end record at `eocd` describes, each
/// way a reader could find it: at the offset it states (miniz), and
/// shifted by the bytes before the archive (`zipfile`), when these differ.
fn read_directory(bytes: &[u8], eocd: usize, budget: &mut Budget) -> Vec<Vec<Entry>> {
    let mut count = u16_at(bytes, eocd + 10).unwrap_or(0) as u64;
    let mut size = u32_at(bytes, eocd + 12).unwrap_or(0) as u64;
    let mut offset = u32_at(bytes, eocd + 16).unwrap_or(0) as u64;
    // Where the records end: the zip64 record's offset when there is one.
    let mut location = eocd as u64;
    if let Some(locator) = eocd.checked_sub(20) {
        if bytes.get(locator..locator + 4) == Some(b"PK\x06\x07") {
            // zipfile reads the zip64 record right before the locator;
            // miniz where the locator says. Both are tried.
            let stated = u64_at(bytes, locator + 8).and_then(|o| usize::try_from(o).ok());
            let before = locator.checked_sub(56);
            let record = [before, stated]
                .into_iter()
                .flatten()
                .find(|&r| span(bytes, r, 4) == Some(b"PK\x06\x06"));
            if let Some(r) = record {
                count = u64_at(bytes, r + 32).unwrap_or(count);
                size = u64_at(bytes, r + 40).unwrap_or(size);
                offset = u64_at(bytes, r + 48).unwrap_or(offset);
                location = r as u64;
            }
        }
    }
    let concat = location
        .checked_sub(size)
        .and_then(|l| l.checked_sub(offset));
    let mut out = Vec::new();
    for shift in [Some(0), concat].into_iter().flatten() {
        // The same directory, as another end record describes it: read.
        if !budget.seen.insert((offset + shift, size, count, shift)) {
            continue;
        }
        if let Some(entries) = read_entries(bytes, offset + shift, size, count, shift, budget) {
            if !out.contains(&entries) {
                out.push(entries);
            }
        }
    }
    out
}

/// The central directory entries at `start`: as many as `count` says or
/// `size` holds, whichever is more (miniz reads the one, `zipfile` the
/// other); `None` when the directory is not there.
fn read_entries(
    bytes: &[u8],
    start: u64,
    size: u64,
    count: u64,
    shift: u64,
    budget: &mut Budget,
) -> Option<Vec<Entry>> {
    let mut at = usize::try_from(start).ok()?;
    let end = start.checked_add(size)?;
    let mut entries = Vec::new();
    while (entries.len() as u64) < count || (at as u64) < end {
        if span(bytes, at, 4) != Some(b"PK\x01\x02") {
            if entries.len() as u64 >= count {
                break;
            }
            return None;
        }
        let Some(left) = budget.entries.checked_sub(1) else {
            budget.exhausted = true;
            return None;
        };
        budget.entries = left;
        let flags = u16_at(bytes, at + 8)?;
        let method = u16_at(bytes, at + 10)?;
        let mut compressed = u32_at(bytes, at + 20)? as u64;
        let mut usize_ = u32_at(bytes, at + 24)? as u64;
        let n = u16_at(bytes, at + 28)? as usize;
        let e = u16_at(bytes, at + 30)? as usize;
        let c = u16_at(bytes, at + 32)? as usize;
        let mut local = u32_at(bytes, at + 42)? as u64;
        let name = bytes.get(at + 46..at + 46 + n)?;
        let extra = bytes.get(at + 46 + n..at + 46 + n + e)?;
        let mut unicode_name = None;
        let mut x = 0;
        while x + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[x], extra[x + 1]]);
            let len = u16::from_le_bytes([extra[x + 2], extra[x + 3]]) as usize;
            let field = &extra[x + 4..(x + 4 + len).min(extra.len())];
            match id {
                0x0001 => {
                    let mut values = field
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
                    if usize_ == 0xFFFF_FFFF {
                        usize_ = values.next().unwrap_or(usize_);
                    }
                    if compressed == 0xFFFF_FFFF {
                        compressed = values.next().unwrap_or(compressed);
                    }
                    if local == 0xFFFF_FFFF {
                        local = values.next().unwrap_or(local);
                    }
                }
                0x7075 if field.len() >= 5 => {
                    unicode_name = Some(String::from_utf8_lossy(&field[5..]).into_owned());
                }
                _ => {}
            }
            x += 4 + len;
        }
        entries.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            unicode_name,
            flags,
            method,
            compressed,
            size: usize_,
            local: local.checked_add(shift)?,
        });
        at += 46 + n + e + c;
    }
    Some(entries)
}

/// Where an entry's data starts (past its local header) and ends.
pub fn data_range(bytes: &[u8], entry: &Entry) -> Result<std::ops::Range<usize>, String> {
    let at = usize::try_from(entry.local).map_err(|_| "a local header past the end".to_string())?;
    if span(bytes, at, 4) != Some(b"PK\x03\x04") {
        return Err(format!("no local header at offset {at}"));
    }
    let n = u16_at(bytes, at + 26).unwrap_or(0) as usize;
    let e = u16_at(bytes, at + 28).unwrap_or(0) as usize;
    let start = at + 30 + n + e;
    let end = usize::try_from(entry.compressed)
        .ok()
        .and_then(|c| start.checked_add(c))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            format!(
                "its {} bytes run past the end of the file",
                entry.compressed
            )
        })?;
    Ok(start..end)
}

/// At most `limit` bytes of an entry's data, inflated when deflated; never
/// more than its stated size, nor than [`reduce::torch::inflate_cap`]
/// allows for a compressed one (a zip bomb, refused).
pub fn read(bytes: &[u8], entry: &Entry, limit: u64) -> Result<Vec<u8>, String> {
    if entry.flags & 1 != 0 {
        return Err("an encrypted member".into());
    }
    let range = data_range(bytes, entry)?;
    let data = &bytes[range];
    let want = limit.min(entry.size);
    match entry.method {
        0 => Ok(data[..(want as usize).min(data.len())].to_vec()),
        8 => {
            if entry.size > reduce::torch::inflate_cap(entry.compressed) {
                return Err(format!(
                    "inflates to {} bytes from {}, more than reduce::torch::inflate_cap allows: refused as a zip bomb",
                    entry.size, entry.compressed
                ));
            }
            let mut out = Vec::with_capacity(want.min(data.len() as u64 * 4) as usize);
            flate2::read::DeflateDecoder::new(data)
                .take(want)
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot inflate the zip member: {e}"))?;
            Ok(out)
        }
        m => Err(format!(
            "compression method {m}, which the scan does not read"
        )),
    }
}
