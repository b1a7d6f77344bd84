//! A hasher for maps whose keys are addresses the program itself holds (an
//! `Rc`'s target, a `Value` in a recursive tuple) or the indexes of a
//! graph's shared objects (handed out in order by the reader), never bytes
//! an attacker chose. SipHash's flood resistance buys
//! nothing there and costs a few dozen instructions per lookup; maps keyed
//! by names or by anything read from a pickle keep the standard hasher.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map from an address to what the writer remembers of it (or from the
/// index of a shared object, which the reader hands out in order).
pub(crate) type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

/// A set of addresses or object indexes.
pub(crate) type AddrSet<K> = HashSet<K, BuildHasherDefault<AddrHasher>>;

/// One multiplication per word, folded so that the low bits (the table
/// index) depend on every bit of the address, aligned or not.
#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_the_low_bits() {
        // Addresses 16 bytes apart, as a run of heap objects sits: the
        // low 6 bits of their hashes (a 64-bucket table) take many values.
        let mut buckets = std::collections::HashSet::new();
        for i in 0..64u64 {
            let mut h = AddrHasher::default();
            h.write_usize((0x7f00_0000_1000 + 16 * i) as usize);
            buckets.insert(h.finish() & 63);
        }
        assert!(buckets.len() > 32, "{} buckets of 64", buckets.len());
    }

    #[test]
    fn a_map_keyed_by_addresses_finds_what_it_holds() {
        let values: Vec<Box<u32>> = (0..1000).map(Box::new).collect();
        let mut map: AddrMap<*const u32, u32> = AddrMap::default();
        for v in &values {
            map.insert(&**v as *const u32, **v);
        }
        for v in &values {
            assert_eq!(map.get(&(&**v as *const u32)), Some(&**v));
        }
        assert_eq!(map.len(), 1000);
    }
}
