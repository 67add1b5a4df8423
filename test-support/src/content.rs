//! Deterministic pseudo-random numbers and content, a running hash and a reference CRC, for
//! the tests of every crate (no feature: smux-futures' tests use it too). The Go peer
//! (`interop/go-peer`) makes the same byte sequence as [`ByteGen`].

/// xorshift64* — small, fast, deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Spread the seed (splitmix64 step) and keep the state non-zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// Log-uniform size in `1..=max` (max a power of two): small and large sizes alike.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = max.trailing_zeros() as u64;
        let top = 1usize << self.below(bits + 1);
        1 + self.below(top as u64) as usize
    }
}

/// An endless byte sequence from a seed. Both ends of a stream make the same one, so the
/// reader checks what it receives without the writer's buffers.
pub struct ByteGen {
    rng: Rng,
    word: u64,
    left: u32,
}

impl ByteGen {
    pub fn new(seed: u64) -> Self {
        ByteGen {
            rng: Rng::new(seed ^ 0xC0FF_EE00_D15E_A5E5),
            word: 0,
            left: 0,
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut i = 0;
        // Finish the current word byte by byte, then whole words, then the tail.
        while i < out.len() && self.left > 0 {
            out[i] = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
            i += 1;
        }
        let mut chunks = out[i..].chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        for b in chunks.into_remainder() {
            if self.left == 0 {
                self.word = self.rng.next_u64();
                self.left = 8;
            }
            *b = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
        }
    }
}

/// FNV-1a, 64 bits, fed incrementally.
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl Fnv {
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// `len` bytes of the [`ByteGen`] sequence for `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ByteGen::new(seed).fill(&mut v);
    v
}

// ---------------------------------------------------------------- runtimes

/// A CRC-32 computed bit by bit, from `reflected_poly` (`0xedb8_8320` for IEEE's, as zlib and
/// kcp-go use; `0x82f6_3b78` for Castagnoli's CRC-32C, as snappy's framing uses), all ones in
/// and out: a reference independent of the tables the code under test uses.
pub fn crc32_bitwise(reflected_poly: u32, data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ reflected_poly
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_crcs_give_their_check_values() {
        // The standard check: the CRC of the nine ASCII digits.
        assert_eq!(super::crc32_bitwise(0xedb8_8320, b"123456789"), 0xcbf4_3926);
        assert_eq!(super::crc32_bitwise(0x82f6_3b78, b"123456789"), 0xe306_9283);
    }
}
