//! [`KcpGoCodec`]: the [`Codec`] that lays datagrams out as kcp-go 5.6 does, for kcptun.
//!
//! Sending, as kcp-go's `output`: FEC first (the data shard, and after each group's last data
//! shard its parity shards), then each datagram gets a fresh nonce and the CRC32 of what
//! follows, and is encrypted whole. Receiving, as kcp-go's `packetInput` and `kcpInput`:
//! decrypt, check the CRC, then, if the FEC flag says so, FEC-decode.
//!
//! A receiver tells FEC shards from bare KCP packets by the 16 bits after the first 4 of the
//! payload: 0xf1 or 0xf2 there is an FEC flag, which a KCP packet (command 81 to 84 in the
//! low byte) never has. So, like kcp-go, this codec accepts bare KCP packets with FEC on and
//! FEC data shards with FEC off (parity shards are then ignored).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};

use super::crypt::{derive_key, BlockCrypt, Crypt};
use super::fec::{FecDecoder, FecEncoder, FecShapeError, FEC_HEADER_DATA, FLAG_DATA, FLAG_PARITY};
use super::{Codec, DropReason};

/// The nonce at the front of every datagram.
pub const NONCE_LEN: usize = 16;
/// The crypto header: the nonce, then the CRC32 of the rest.
pub const CRYPT_HEADER: usize = NONCE_LEN + 4;
/// The longest datagram kcp-go sends or reads (its `mtuLimit`): longer ones are dropped.
pub const MAX_DATAGRAM: usize = 1500;
/// The shortest KCP packet (one segment header); kcp-go drops anything shorter after the
/// crypto header.
pub const KCP_OVERHEAD: usize = 24;
/// kcptun's default `--key`.
pub const KCPTUN_DEFAULT_KEY: &str = "it's a secrect";

/// What the codec does: the crypt and its key, and the FEC shape.
#[derive(Clone)]
pub struct CodecConfig {
    /// The crypt (kcptun's `--crypt`).
    pub crypt: Crypt,
    /// The key, from [`derive_key`] of kcptun's `--key`.
    pub key: [u8; 32],
    /// Data shards per FEC group (kcptun's `--datashard`). FEC is on only when this and
    /// `parity_shards` are both above 0, as in kcp-go.
    pub data_shards: usize,
    /// Parity shards per FEC group (kcptun's `--parityshard`).
    pub parity_shards: usize,
}

impl CodecConfig {
    /// The configuration for kcptun's flags: derives the key from `passphrase`.
    pub fn new(crypt: Crypt, passphrase: &str, data_shards: usize, parity_shards: usize) -> Self {
        CodecConfig {
            crypt,
            key: derive_key(passphrase),
            data_shards,
            parity_shards,
        }
    }

    /// kcptun's defaults: `--crypt aes --key "it's a secrect" --datashard 10 --parityshard 3`.
    pub fn kcptun_default() -> Self {
        CodecConfig::new(Crypt::Aes, KCPTUN_DEFAULT_KEY, 10, 3)
    }

    /// kcptun's `--crypt none --datashard 0 --parityshard 0`: the nonce and CRC32 only. The
    /// key is unused, so none is derived.
    pub fn plain() -> Self {
        CodecConfig {
            crypt: Crypt::None,
            key: [0; 32],
            data_shards: 0,
            parity_shards: 0,
        }
    }

    /// Whether FEC is on.
    pub fn fec(&self) -> bool {
        self.data_shards > 0 && self.parity_shards > 0
    }
}

impl fmt::Debug for CodecConfig {
    /// Everything but the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecConfig")
            .field("crypt", &self.crypt)
            .field("data_shards", &self.data_shards)
            .field("parity_shards", &self.parity_shards)
            .finish_non_exhaustive()
    }
}

/// The codec's counters, shared: [`KcpGoCodec::counters`] hands out a handle that stays
/// readable after the codec has moved into a session.
#[derive(Debug, Default)]
pub struct CodecCounters {
    truncated: AtomicU64,
    checksum: AtomicU64,
    fec: AtomicU64,
    oversized: AtomicU64,
    recovered: AtomicU64,
    fec_errors: AtomicU64,
    parity_shards: AtomicU64,
    short_shards: AtomicU64,
}

/// A snapshot of [`CodecCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecStats {
    /// Datagrams dropped as [`DropReason::Truncated`].
    pub truncated: u64,
    /// Datagrams dropped as [`DropReason::Checksum`].
    pub checksum: u64,
    /// Datagrams dropped as [`DropReason::Fec`].
    pub fec: u64,
    /// Datagrams dropped as [`DropReason::Oversized`].
    pub oversized: u64,
    /// KCP packets rebuilt by FEC and delivered (kcp-go's `FECRecovered`).
    pub recovered: u64,
    /// Rebuilt shards whose size field made no sense, not delivered (kcp-go's `FECErrs`).
    pub fec_errors: u64,
    /// Parity shards received (kcp-go's `FECParityShards`).
    pub parity_shards: u64,
    /// Data shards that left the FEC queue before their group completed (kcp-go's
    /// `FECShortShards`).
    pub short_shards: u64,
}

impl CodecStats {
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Truncated => self.truncated,
            DropReason::Checksum => self.checksum,
            DropReason::Fec => self.fec,
            DropReason::Oversized => self.oversized,
        }
    }

    /// Datagrams dropped, for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.truncated + self.checksum + self.fec + self.oversized
    }
}

impl CodecCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> CodecStats {
        CodecStats {
            truncated: self.truncated.load(Relaxed),
            checksum: self.checksum.load(Relaxed),
            fec: self.fec.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            recovered: self.recovered.load(Relaxed),
            fec_errors: self.fec_errors.load(Relaxed),
            parity_shards: self.parity_shards.load(Relaxed),
            short_shards: self.short_shards.load(Relaxed),
        }
    }

    fn drop(&self, reason: DropReason) -> DropReason {
        let counter = match reason {
            DropReason::Truncated => &self.truncated,
            DropReason::Checksum => &self.checksum,
            DropReason::Fec => &self.fec,
            DropReason::Oversized => &self.oversized,
        };
        counter.fetch_add(1, Relaxed);
        reason
    }
}

/// Nonces: AES-128 over a 128-bit counter, key and start drawn from the standard library's
/// randomly keyed hasher. AES is a permutation, so a codec never repeats a nonce (the CFB
/// crypts leak the XOR of two plaintexts that share one), and without the key the nonces are
/// unpredictable.
struct Nonces {
    cipher: aes::Aes128,
    counter: u128,
}

impl Nonces {
    fn new() -> Self {
        // `RandomState` keys SipHash from the operating system's randomness; hashing distinct
        // inputs under it gives independent-looking 64-bit words.
        let state = std::collections::hash_map::RandomState::new();
        let word = |i: u64| {
            let mut h = state.build_hasher();
            h.write_u64(i);
            h.finish()
        };
        let mut key = [0; 16];
        key[..8].copy_from_slice(&word(0).to_le_bytes());
        key[8..].copy_from_slice(&word(1).to_le_bytes());
        Nonces {
            cipher: aes::Aes128::new(&key.into()),
            counter: u128::from(word(2)) << 64 | u128::from(word(3)),
        }
    }

    fn fill(&mut self, nonce: &mut [u8]) {
        let mut block = GenericArray::from(self.counter.to_le_bytes());
        self.counter = self.counter.wrapping_add(1);
        self.cipher.encrypt_block(&mut block);
        nonce.copy_from_slice(&block[..nonce.len()]);
    }
}

/// kcp-go's crypto header and FEC, as kcptun uses them: a [`Codec`].
pub struct KcpGoCodec {
    crypt: BlockCrypt,
    fec: Option<(FecEncoder, FecDecoder)>,
    nonces: Nonces,
    counters: Arc<CodecCounters>,
    /// Where a datagram is assembled, or opened: [`MAX_DATAGRAM`] bytes' capacity.
    buf: Vec<u8>,
    /// The FEC decoder's clock starts here.
    epoch: Instant,
}

impl fmt::Debug for KcpGoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KcpGoCodec")
            .field("crypt", &self.crypt.crypt())
            .field("fec", &self.fec.as_ref().map(|(_, d)| d))
            .finish_non_exhaustive()
    }
}

impl KcpGoCodec {
    /// A codec for `config`. Fails only for an FEC shape that Reed-Solomon over GF(2^8)
    /// cannot have (more than 256 shards in all).
    pub fn new(config: &CodecConfig) -> Result<Self, FecShapeError> {
        KcpGoCodec::with_counters(config, Arc::default())
    }

    /// A codec for `config` that counts into `counters`, which several codecs may share (the
    /// sessions of one listener, say).
    pub fn with_counters(
        config: &CodecConfig,
        counters: Arc<CodecCounters>,
    ) -> Result<Self, FecShapeError> {
        let fec = if config.fec() {
            Some((
                FecEncoder::new(config.data_shards, config.parity_shards)?,
                FecDecoder::new(config.data_shards, config.parity_shards)?,
            ))
        } else {
            None
        };
        Ok(KcpGoCodec {
            crypt: config.crypt.new_block(&config.key),
            fec,
            nonces: Nonces::new(),
            counters,
            buf: Vec::with_capacity(MAX_DATAGRAM),
            epoch: tokio::time::Instant::now().into_std(),
        })
    }

    /// The counters, shared with the codec: still readable once it has moved into a session.
    pub fn counters(&self) -> Arc<CodecCounters> {
        Arc::clone(&self.counters)
    }

    /// The FEC decoder, when FEC is on.
    pub fn fec_decoder(&self) -> Option<&FecDecoder> {
        self.fec.as_ref().map(|(_, d)| d)
    }

    /// [`Codec::open`] with the time of arrival given: the FEC decoder forgets shards that
    /// have waited 60 s for their group. `open` itself reads Tokio's clock (which a test may
    /// pause and advance).
    pub fn open_at(
        &mut self,
        datagram: &[u8],
        now: Instant,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DropReason> {
        let counters = &*self.counters;
        if datagram.len() > MAX_DATAGRAM {
            return Err(counters.drop(DropReason::Oversized));
        }
        if datagram.len() < CRYPT_HEADER {
            return Err(counters.drop(DropReason::Truncated));
        }
        self.buf.clear();
        self.buf.extend_from_slice(datagram);
        self.crypt.decrypt(&mut self.buf);
        let (header, payload) = self.buf.split_at(CRYPT_HEADER);
        let crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if crc32fast::hash(payload) != crc {
            return Err(counters.drop(DropReason::Checksum));
        }
        if payload.len() < KCP_OVERHEAD {
            return Err(counters.drop(DropReason::Truncated));
        }

        let flag = u16::from_le_bytes([payload[4], payload[5]]);
        if flag != FLAG_DATA && flag != FLAG_PARITY {
            deliver(payload);
            return Ok(());
        }
        if flag == FLAG_DATA {
            // kcp-go's encoder always writes the size of the rest; anything else is not from
            // kcp-go, and its rebuilt copy would disagree with the packet delivered now.
            let size = u16::from_le_bytes([payload[6], payload[7]]);
            if usize::from(size) != payload.len() - (FEC_HEADER_DATA - 2) {
                return Err(counters.drop(DropReason::Fec));
            }
            deliver(&payload[FEC_HEADER_DATA..]);
        } else {
            counters.parity_shards.fetch_add(1, Relaxed);
        }
        let Some((_, decoder)) = &mut self.fec else {
            return Ok(());
        };

        // Milliseconds on a clock that wraps at 2^32, as kcp-go's `currentMs`.
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        let report = decoder.decode(payload, now_ms, &mut |shard| {
            // A rebuilt shard is `size | packet`, zero-padded.
            let size = shard
                .get(..2)
                .map_or(0, |s| usize::from(u16::from_le_bytes([s[0], s[1]])));
            if (2..=shard.len()).contains(&size) {
                counters.recovered.fetch_add(1, Relaxed);
                deliver(&shard[2..size]);
            } else {
                counters.fec_errors.fetch_add(1, Relaxed);
            }
        });
        if report.short {
            counters.short_shards.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Adds the crypto header to the datagram in `buf` (whose first [`CRYPT_HEADER`] bytes
    /// are reserved for it), encrypts it, and sends it.
    fn finish(
        crypt: &BlockCrypt,
        nonces: &mut Nonces,
        buf: &mut [u8],
        send: &mut dyn FnMut(&[u8]),
    ) {
        let (header, payload) = buf.split_at_mut(CRYPT_HEADER);
        nonces.fill(&mut header[..NONCE_LEN]);
        header[NONCE_LEN..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        crypt.encrypt(buf);
        send(buf);
    }
}

impl Codec for KcpGoCodec {
    /// 20 bytes of crypto header, and 8 of FEC header when FEC is on.
    fn overhead(&self) -> usize {
        CRYPT_HEADER
            + if self.fec.is_some() {
                FEC_HEADER_DATA
            } else {
                0
            }
    }

    /// # Panics
    ///
    /// If `packet` is longer than [`MAX_DATAGRAM`] minus the overhead: KCP's MTU is set from
    /// [`Codec::overhead`] so that it never is.
    fn seal(&mut self, packet: &[u8], send: &mut dyn FnMut(&[u8])) {
        assert!(
            packet.len() + self.overhead() <= MAX_DATAGRAM,
            "a KCP packet of {} bytes does not fit a datagram of {MAX_DATAGRAM} with {} bytes \
             of headers",
            packet.len(),
            self.overhead()
        );
        let KcpGoCodec {
            crypt,
            fec,
            nonces,
            buf,
            ..
        } = self;
        match fec {
            None => {
                buf.clear();
                buf.resize(CRYPT_HEADER, 0);
                buf.extend_from_slice(packet);
                Self::finish(crypt, nonces, buf, send);
            }
            Some((encoder, _)) => encoder.encode(packet, &mut |header, body| {
                buf.clear();
                buf.resize(CRYPT_HEADER, 0);
                buf.extend_from_slice(header);
                buf.extend_from_slice(body);
                Self::finish(crypt, nonces, buf, send);
            }),
        }
    }

    fn open(&mut self, datagram: &[u8], deliver: &mut dyn FnMut(&[u8])) -> Result<(), DropReason> {
        self.open_at(datagram, tokio::time::Instant::now().into_std(), deliver)
    }
}
