//! The stream table's hasher: a keyed multiply-and-fold, a fraction of the cost of SipHash per
//! frame. The key is random per session, and the fold brings every input bit into the bucket
//! bits, so a peer cannot pick ids that pile into one bucket without knowing the key.

use std::hash::BuildHasher;

/// Builds [`IdHash`]ers with a key drawn at random: for maps keyed by stream id (the driver's
/// table of waiters uses it too).
#[derive(Debug, Clone)]
pub struct IdHasher {
    key: u64,
}

impl Default for IdHasher {
    fn default() -> Self {
        IdHasher::new()
    }
}

impl IdHasher {
    /// A hasher builder with a fresh random key.
    pub fn new() -> IdHasher {
        IdHasher {
            key: std::collections::hash_map::RandomState::new().hash_one(0x736d_7578_u64),
        }
    }
}

impl BuildHasher for IdHasher {
    type Hasher = IdHash;

    fn build_hasher(&self) -> IdHash {
        IdHash { h: self.key }
    }
}

/// The hasher of one key: a keyed multiply-and-fold of `u32` stream ids.
#[derive(Debug)]
pub struct IdHash {
    h: u64,
}

impl std::hash::Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u32(u32::from(*b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        let x = (self.h ^ u64::from(id)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.h = x ^ (x >> 29) ^ (x >> 47);
    }

    fn finish(&self) -> u64 {
        let x = self.h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^ (x >> 31)
    }
}
