//! Writing a state dict as `torch.save` does: the same `data.pkl`, byte for
//! byte, in the same zip layout.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use super::dtype::DType;
use super::tensor::{Storage, Tensor};
use crate::base::error::{Error, Result};
use crate::pickler::Pickler;
use crate::value::{Graph, Id, Reduction, Value};

/// torch's `_get_storage_alignment()`: every entry's data starts at a
/// multiple of this, so that a reader can map storages in place.
const ALIGNMENT: u64 = 64;

/// The pickle and the storages of a state dict.
pub(super) struct Pieces {
    pub(super) pickle: Vec<u8>,
    pub(super) storages: Vec<(String, Arc<Storage>)>,
}

/// `torch.save(OrderedDict(tensors), f)`'s `data.pkl`: protocol 2, each
/// tensor a `_rebuild_tensor_v2` call on a persistent id naming its storage.
/// Fails if two tensors have one name: `OrderedDict(tensors)` would keep the
/// last under the first's position, and a pickle that sets a key twice is
/// not what torch writes.
pub(super) fn pieces(tensors: &[(String, Tensor)]) -> Result<Pieces> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(tensors.len());
    for (i, (name, _)) in tensors.iter().enumerate() {
        if let Some(first) = seen.insert(name, i) {
            return Err(Error::new(crate::base::error::ErrorKind::Unpicklable(format!(
                "tensors {first} and {i} are both named '{name}': a state dict holds each name once (OrderedDict(tensors) would keep only the last)"
            ))));
        }
    }
    let mut graph = Graph::new(Value::None);
    // CPython memoizes by identity: the literal 'storage', the device string
    // and each storage's key are one object each in torch, so they are
    // written once and fetched from the memo after.
    let storage_word = graph.insert(Value::str("storage"));
    let mut devices: HashMap<String, Id> = HashMap::new();
    let mut keys: HashMap<*const Storage, (Id, DType)> = HashMap::new();
    let mut storages: Vec<(String, Arc<Storage>)> = Vec::new();
    let mut items = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let dtype = t.dtype();
        let ptr = Arc::as_ptr(t.storage());
        let key = match keys.get(&ptr) {
            Some(&(id, d)) if d == dtype => id,
            Some(&(_, d)) => {
                return Err(Error::new(crate::base::error::ErrorKind::Unpicklable(format!(
                    "tensor '{name}' views a storage as {dtype} that another tensor views as {d}; torch.save refuses that too"
                ))))
            }
            None => {
                let k = storages.len().to_string();
                let id = graph.insert(Value::str(k.as_str()));
                keys.insert(ptr, (id, dtype));
                storages.push((k, t.storage().clone()));
                id
            }
        };
        let device = t.storage().device();
        let device = match devices.get(device) {
            Some(&id) => id,
            None => {
                let id = graph.insert(Value::str(device));
                devices.insert(device.to_owned(), id);
                id
            }
        };
        let nbytes = t.storage().nbytes();
        // Dtypes with a storage class are saved as a typed storage
        // (`torch.FloatStorage`, counted in elements); the newer ones as
        // bytes, with the dtype given to `_rebuild_tensor_v3`.
        let (class, numel) = match dtype.storage_class() {
            Some(c) => (Value::global("torch", c), nbytes / dtype.element_size()),
            None => (Value::global("torch.storage", "UntypedStorage"), nbytes),
        };
        let pid = Value::Tuple(vec![
            Value::Ref(storage_word),
            class,
            Value::Ref(key),
            Value::Ref(device),
            int(numel)?,
        ]);
        let dims = |v: &[usize]| -> Result<Value> {
            Ok(Value::Tuple(
                v.iter().map(|&n| int(n)).collect::<Result<_>>()?,
            ))
        };
        let hooks = Value::Reduce(Box::new(Reduction::new(
            Value::global("collections", "OrderedDict"),
            Value::Tuple(vec![]),
        )));
        let mut args = vec![
            Value::PersistentId(Box::new(pid.into())),
            int(t.offset())?,
            dims(t.shape())?,
            dims(t.strides())?,
            Value::Bool(t.requires_grad() && !t.is_parameter()),
            hooks,
        ];
        let rebuild = if dtype.storage_class().is_some() {
            "_rebuild_tensor_v2"
        } else {
            args.push(Value::global("torch", dtype.name()));
            "_rebuild_tensor_v3"
        };
        let mut value = Value::Reduce(Box::new(Reduction::new(
            Value::global("torch._utils", rebuild),
            Value::Tuple(args),
        )));
        if t.is_parameter() {
            value = Value::Reduce(Box::new(Reduction::new(
                Value::global("torch._utils", "_rebuild_parameter"),
                Value::Tuple(vec![
                    value,
                    Value::Bool(t.requires_grad()),
                    Value::Reduce(Box::new(Reduction::new(
                        Value::global("collections", "OrderedDict"),
                        Value::Tuple(vec![]),
                    ))),
                ]),
            )));
        }
        items.push((Value::str(name.as_str()), value));
    }
    let mut root = Reduction::new(
        Value::global("collections", "OrderedDict"),
        Value::Tuple(vec![]),
    );
    root.dict_items = items;
    *graph.root_mut() = Value::Reduce(Box::new(root));
    let mut pickle = Vec::new();
    // torch.save's default pickle_protocol.
    Pickler::new(&mut pickle).protocol(2).dump(&graph)?;
    Ok(Pieces { pickle, storages })
}

fn int(n: usize) -> Result<Value> {
    i64::try_from(n).map(Value::Int).map_err(|_| {
        Error::new(crate::base::error::ErrorKind::Unpicklable(format!(
            "{n} does not fit in an int64"
        )))
    })
}

/// Writes `tensors`, made into [`pieces`] (which is where a state dict is
/// refused, before anything is written), as `torch.save(OrderedDict(tensors),
/// f)` does, with the archive's folder named `archive` (what torch names it
/// when `f` is a buffer).
pub(super) fn write_state_dict<W: Write>(w: W, archive: &str, pieces: Pieces) -> Result<()> {
    let Pieces { pickle, storages } = pieces;
    let mut zip = ZipOut::new(w);
    zip.entry(&format!("{archive}/data.pkl"), &pickle)?;
    zip.entry(&format!("{archive}/.format_version"), b"1")?;
    zip.entry(
        &format!("{archive}/.storage_alignment"),
        ALIGNMENT.to_string().as_bytes(),
    )?;
    zip.entry(&format!("{archive}/byteorder"), b"little")?;
    for (key, storage) in &storages {
        zip.entry(&format!("{archive}/data/{key}"), storage.data())?;
    }
    zip.entry(&format!("{archive}/version"), b"3\n")?;
    // torch writes a random 40-digit id; ours is the same length, derived
    // from the content (the central directory so far: every name, CRC and
    // size, cheap to hash), so that saving twice gives the same bytes.
    let mut hash = Fnv::new();
    hash.add(&zip.central);
    let id = format!(
        "{:020}{:020}",
        hash.0 % 10u64.pow(19),
        hash.0.rotate_left(32) % 10u64.pow(19)
    );
    zip.entry(&format!("{archive}/.data/serialization_id"), id.as_bytes())?;
    zip.finish()
}

/// 64-bit FNV-1a, for the serialization id.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A zip writer laid out as torch's (miniz, in `PyTorchStreamWriter`):
/// stored entries, sizes and CRC in a data descriptor after the data,
/// each entry's data aligned to 64 bytes by an `FB` extra field of `Z`
/// padding, zero times, and the zip64 end records always.
pub(super) struct ZipOut<W> {
    w: W,
    pos: u64,
    central: Vec<u8>,
    count: u64,
}

const U32_MAX: u64 = 0xffff_ffff;

impl<W: Write> ZipOut<W> {
    pub(super) fn new(w: W) -> Self {
        ZipOut {
            w,
            pos: 0,
            central: Vec::new(),
            count: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub(super) fn entry(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let offset = self.pos;
        let size = data.len() as u64;
        let crc = crc32(data);
        let name_len = u16::try_from(name.len())
            .map_err(|_| Error::invalid(format!("entry name of {} bytes", name.len())))?;
        // Data starts after the 30-byte header, the name and the 4-byte
        // head of the padding field; pad to the alignment.
        let unpadded = offset + 30 + u64::from(name_len) + 4;
        let pad = ((ALIGNMENT - unpadded % ALIGNMENT) % ALIGNMENT) as u16;
        let mut h = Vec::with_capacity(64 + name.len());
        h.extend_from_slice(b"PK\x03\x04");
        h.extend_from_slice(&0u16.to_le_bytes()); // version needed
        h.extend_from_slice(&0x0808u16.to_le_bytes()); // data descriptor, UTF-8 names
        h.extend_from_slice(&[0; 18]); // method, time, date, crc, sizes: after the data
        h.extend_from_slice(&name_len.to_le_bytes());
        h.extend_from_slice(&(pad + 4).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(b"FB");
        h.extend_from_slice(&pad.to_le_bytes());
        h.resize(h.len() + usize::from(pad), b'Z');
        self.put(&h)?;
        self.put(data)?;
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(b"PK\x07\x08");
        d.extend_from_slice(&crc.to_le_bytes());
        if size >= U32_MAX {
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&size.to_le_bytes());
        } else {
            d.extend_from_slice(&(size as u32).to_le_bytes());
            d.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.put(&d)?;
        // The central directory's record, with a zip64 field for whatever
        // does not fit in 32 bits.
        let mut z64 = Vec::new();
        if size >= U32_MAX {
            z64.extend_from_slice(&size.to_le_bytes());
            z64.extend_from_slice(&size.to_le_bytes());
        }
        if offset >= U32_MAX {
            z64.extend_from_slice(&offset.to_le_bytes());
        }
        let c = &mut self.central;
        c.extend_from_slice(b"PK\x01\x02");
        c.extend_from_slice(&0u16.to_le_bytes()); // version made by
        c.extend_from_slice(&0u16.to_le_bytes()); // version needed
        c.extend_from_slice(&0x0808u16.to_le_bytes());
        c.extend_from_slice(&[0; 6]); // method, time, date
        c.extend_from_slice(&crc.to_le_bytes());
        let small = |v: u64| (v.min(U32_MAX) as u32).to_le_bytes();
        c.extend_from_slice(&small(size));
        c.extend_from_slice(&small(size));
        c.extend_from_slice(&name_len.to_le_bytes());
        let extra_len = if z64.is_empty() {
            0
        } else {
            z64.len() as u16 + 4
        };
        c.extend_from_slice(&extra_len.to_le_bytes());
        c.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
        c.extend_from_slice(&[0; 4]); // external attributes
        c.extend_from_slice(&small(offset));
        c.extend_from_slice(name.as_bytes());
        if !z64.is_empty() {
            c.extend_from_slice(&1u16.to_le_bytes());
            c.extend_from_slice(&(z64.len() as u16).to_le_bytes());
            c.extend_from_slice(&z64);
        }
        self.count += 1;
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<()> {
        let cd_offset = self.pos;
        let cd_size = self.central.len() as u64;
        let central = std::mem::take(&mut self.central);
        self.put(&central)?;
        let eocd64 = self.pos;
        let mut e = Vec::with_capacity(98);
        e.extend_from_slice(b"PK\x06\x06");
        e.extend_from_slice(&44u64.to_le_bytes());
        e.extend_from_slice(&0x031eu16.to_le_bytes()); // made by: unix, 3.0
        e.extend_from_slice(&0x002du16.to_le_bytes()); // needed: 4.5, zip64
        e.extend_from_slice(&[0; 8]); // this disk, the directory's disk
        e.extend_from_slice(&self.count.to_le_bytes());
        e.extend_from_slice(&self.count.to_le_bytes());
        e.extend_from_slice(&cd_size.to_le_bytes());
        e.extend_from_slice(&cd_offset.to_le_bytes());
        e.extend_from_slice(b"PK\x06\x07");
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&eocd64.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(b"PK\x05\x06");
        e.extend_from_slice(&[0; 4]);
        let count16 = self.count.min(0xffff) as u16;
        e.extend_from_slice(&count16.to_le_bytes());
        e.extend_from_slice(&count16.to_le_bytes());
        e.extend_from_slice(&(cd_size.min(U32_MAX) as u32).to_le_bytes());
        e.extend_from_slice(&(cd_offset.min(U32_MAX) as u32).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        self.put(&e)?;
        self.w.flush()?;
        Ok(())
    }
}

/// CRC-32 (IEEE), as zip stores it.
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_zlib() {
        // zlib.crc32(b"little") and zlib.crc32(b"123456789")
        assert_eq!(crc32(b"little"), 0x19e3_3d85);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }
}
