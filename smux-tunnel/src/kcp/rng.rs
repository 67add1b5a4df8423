//! A small pseudo-random generator for conversation ids and nonces.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A small, fast pseudo-random generator (xorshift64*), seeded from the standard library's
/// per-process random hash keys: conversation ids and nonces need to differ, not to be secret.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Rng(h.finish() | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
