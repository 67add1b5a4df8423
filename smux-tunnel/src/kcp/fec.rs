//! kcp-go's forward error correction: Reed-Solomon parity over groups of datagrams, with
//! kcp-go 5.6's header, grouping, padding, sequence wrap, and receive queue.
//!
//! Every datagram of an FEC session carries, after the crypto header:
//!
//! ```text
//! | seqid u32 LE | flag u16 LE | size u16 LE | KCP packet |     data shard   (flag 0xf1)
//! | seqid u32 LE | flag u16 LE | parity bytes            |     parity shard (flag 0xf2)
//! ```
//!
//! The size field counts itself: it is the KCP packet's length plus 2. Sequence ids run
//! through groups of `data + parity` consecutive ids: `data` data shards, then `parity` parity
//! shards. A shard's place in its group is its seqid modulo the group size. The Reed-Solomon
//! code (klauspost/reedsolomon's default: the systematic Vandermonde matrix over GF(2^8) with
//! the polynomial 0x11d) encodes the data shards' `size | packet` bytes, each zero-padded to
//! the longest in the group; a receiver pads the same way, and a recovered shard's size field
//! tells where its packet ends.

use std::collections::VecDeque;
use std::fmt;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// The FEC header: seqid and flag.
pub const FEC_HEADER: usize = 6;
/// The FEC header of a data shard: seqid, flag, and size.
pub const FEC_HEADER_DATA: usize = FEC_HEADER + 2;
/// The flag of a data shard.
pub const FLAG_DATA: u16 = 0xf1;
/// The flag of a parity shard.
pub const FLAG_PARITY: u16 = 0xf2;
/// How long kcp-go keeps a received shard waiting for the rest of its group, in milliseconds.
pub const FEC_EXPIRE_MS: u32 = 60_000;
/// kcp-go keeps at most this many groups' worth of shards waiting (`rxFECMulti`).
pub const RX_GROUPS: usize = 3;
/// The most shards in a group: GF(2^8) has 256 elements.
pub const MAX_SHARDS: usize = 256;
/// How many of the last released groups the decoder remembers, to ignore their late shards.
const DONE_MEMORY: usize = 16;

/// Data and parity shard counts that no Reed-Solomon code over GF(2^8) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("FEC needs 1 or more data and parity shards, 256 at most in all: got {data} + {parity}")]
pub struct FecShapeError {
    /// The data shards asked for.
    pub data: usize,
    /// The parity shards asked for.
    pub parity: usize,
}

fn reed_solomon(data: usize, parity: usize) -> Result<ReedSolomon, FecShapeError> {
    if data == 0 || parity == 0 || data + parity > MAX_SHARDS {
        return Err(FecShapeError { data, parity });
    }
    ReedSolomon::new(data, parity).map_err(|_| FecShapeError { data, parity })
}

/// `a - b` as kcp-go's `_itimediff`: the signed distance on the 32-bit circle.
fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Numbers the outgoing packets into groups, and adds the parity shards after each group's
/// last data shard.
pub struct FecEncoder {
    data: usize,
    parity: usize,
    /// Sequence ids wrap to 0 here: the largest multiple of the group size that fits in a
    /// u32, so that a group never straddles the wrap.
    paws: u32,
    next: u32,
    rs: ReedSolomon,
    /// The group's data shards (`size | packet`), then its parity shards. Only the first
    /// `count` data shards are current.
    shards: Vec<Vec<u8>>,
    count: usize,
    /// The longest data shard of the group so far.
    max_len: usize,
}

impl fmt::Debug for FecEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FecEncoder")
            .field("data", &self.data)
            .field("parity", &self.parity)
            .field("next", &self.next)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl FecEncoder {
    /// An encoder of `data` data shards and `parity` parity shards per group.
    pub fn new(data: usize, parity: usize) -> Result<Self, FecShapeError> {
        let rs = reed_solomon(data, parity)?;
        let group = (data + parity) as u32;
        Ok(FecEncoder {
            data,
            parity,
            paws: u32::MAX / group * group,
            next: 0,
            rs,
            shards: vec![Vec::new(); data + parity],
            count: 0,
            max_len: 0,
        })
    }

    /// Encodes one KCP packet: hands `out` the data shard's header and the packet, then, if
    /// the packet completes its group, each parity shard's header and bytes.
    ///
    /// # Panics
    ///
    /// If the packet is longer than 65533 bytes: its size field could not hold it. KCP's MTU
    /// keeps packets far shorter.
    pub fn encode(&mut self, packet: &[u8], out: &mut dyn FnMut(&[u8], &[u8])) {
        let size = u16::try_from(packet.len() + 2).expect("a KCP packet no longer than 65533");
        let mut header = [0; FEC_HEADER_DATA];
        header[..4].copy_from_slice(&self.next.to_le_bytes());
        header[4..6].copy_from_slice(&FLAG_DATA.to_le_bytes());
        header[6..].copy_from_slice(&size.to_le_bytes());
        // Data ids never reach `paws`: it is a multiple of the group size, and parity ids
        // come last in a group.
        self.next = self.next.wrapping_add(1);

        let shard = &mut self.shards[self.count];
        shard.clear();
        shard.extend_from_slice(&header[6..]);
        shard.extend_from_slice(packet);
        self.max_len = self.max_len.max(shard.len());
        self.count += 1;
        out(&header, packet);

        if self.count < self.data {
            return;
        }
        for shard in &mut self.shards {
            shard.resize(self.max_len, 0);
        }
        // Cannot fail: the shard count is the codec's and the shards are all max_len long,
        // and max_len is at least 2 (the size field).
        let encoded = self.rs.encode(&mut self.shards);
        debug_assert!(encoded.is_ok(), "{encoded:?}");
        if encoded.is_ok() {
            for shard in &self.shards[self.data..] {
                let mut header = [0; FEC_HEADER];
                header[..4].copy_from_slice(&self.next.to_le_bytes());
                header[4..].copy_from_slice(&FLAG_PARITY.to_le_bytes());
                self.next = self.next.wrapping_add(1) % self.paws;
                out(&header, shard);
            }
        }
        self.count = 0;
        self.max_len = 0;
    }
}

/// A received shard waiting for the rest of its group.
struct Waiting {
    seqid: u32,
    flag: u16,
    /// When it arrived, in the decoder's milliseconds.
    arrived: u32,
    /// What follows the 6-byte header: `size | packet` for data, the parity bytes for parity.
    body: Vec<u8>,
}

/// What one call of [`FecDecoder::decode`] did, for the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Shards rebuilt from parity (each handed to `recovered`).
    pub recovered: usize,
    /// A data shard left the queue without its group completing (kcp-go's `FECShortShards`).
    pub short: bool,
}

/// Keeps the shards of incomplete groups, and rebuilds a group's lost data shards once enough
/// of its shards are in, as kcp-go's `fecDecoder` does.
///
/// It holds at most `RX_GROUPS * (data + parity)` shards, each no longer than the longest
/// shard given to it, whatever sequence ids a peer sends; a shard waits at most
/// [`FEC_EXPIRE_MS`] (counted when a later shard arrives).
///
/// Unlike kcp-go, it remembers the last few groups it released (complete, rebuilt, or beyond
/// repair) and ignores their late shards. kcp-go queues them again, and when a group has at
/// least as many parity as data shards (1 + 1, say), its parity shards alone "rebuild" data
/// shards that were already delivered: KCP drops such duplicates, but the work and the
/// recovery count are wasted.
///
/// It does not retune itself to a peer whose group shape differs (kcp-go's autotune): both
/// ends must be configured alike, as kcptun's documentation asks.
pub struct FecDecoder {
    data: usize,
    group: usize,
    limit: usize,
    rs: ReedSolomon,
    /// Ordered by seqid on the 32-bit circle (as far as the ids of a queue this short can
    /// be ordered): kcp-go's `rx`.
    rx: Vec<Waiting>,
    /// Bodies of shards that left the queue, for reuse; never more than `limit`.
    spare: Vec<Vec<u8>>,
    /// The first seqids of the last [`DONE_MEMORY`] groups released, oldest first.
    done: VecDeque<u32>,
}

impl fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FecDecoder")
            .field("data", &self.data)
            .field("parity", &(self.group - self.data))
            .field("waiting", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl FecDecoder {
    /// A decoder of groups of `data` data shards and `parity` parity shards.
    pub fn new(data: usize, parity: usize) -> Result<Self, FecShapeError> {
        let rs = reed_solomon(data, parity)?;
        let group = data + parity;
        Ok(FecDecoder {
            data,
            group,
            limit: RX_GROUPS * group,
            rs,
            rx: Vec::new(),
            spare: Vec::new(),
            done: VecDeque::with_capacity(DONE_MEMORY),
        })
    }

    /// Shards waiting for the rest of their group.
    pub fn waiting(&self) -> usize {
        self.rx.len()
    }

    /// The most shards that ever wait.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes one received shard, `shard` from its FEC header on (at least [`FEC_HEADER`]
    /// bytes, a flag of [`FLAG_DATA`] or [`FLAG_PARITY`]; other input is ignored), received at
    /// `now_ms` (milliseconds on any clock that wraps at 2^32, as kcp-go's). Hands each data
    /// shard of its group that this rebuilds, `size | packet` zero-padded, to `recovered`.
    ///
    /// The caller delivers a data shard's own packet itself: this only keeps a copy.
    pub fn decode(
        &mut self,
        shard: &[u8],
        now_ms: u32,
        recovered: &mut dyn FnMut(&[u8]),
    ) -> DecodeReport {
        let mut report = DecodeReport::default();
        let Some((header, body)) = shard.split_first_chunk::<FEC_HEADER>() else {
            return report;
        };
        let seqid = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let flag = u16::from_le_bytes([header[4], header[5]]);
        if flag != FLAG_DATA && flag != FLAG_PARITY {
            return report;
        }
        let group = self.group as u32;
        let first_id = seqid - seqid % group;
        if self.done.contains(&first_id) {
            return report;
        }

        // Insert in order, from the back, where new shards usually go; a seqid already
        // waiting is a duplicate, dropped.
        let mut at = 0;
        for i in (0..self.rx.len()).rev() {
            let other = self.rx[i].seqid;
            if other == seqid {
                return report;
            }
            if diff(seqid, other) > 0 {
                at = i + 1;
                break;
            }
        }
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(body);
        self.rx.insert(
            at,
            Waiting {
                seqid,
                flag,
                arrived: now_ms,
                body: copy,
            },
        );

        let last_id = first_id.wrapping_add(group - 1);
        // The group's other shards can only be this close in the queue.
        let from = at.saturating_sub((seqid % group) as usize);
        let to = (from + self.group - 1).min(self.rx.len() - 1);
        if to + 1 - from >= self.data {
            self.try_group(from, to, first_id, last_id, recovered, &mut report);
        }

        // At most `limit` wait: this call added one.
        if self.rx.len() > self.limit {
            report.short = self.rx[0].flag == FLAG_DATA;
            self.release(0, 1);
        }
        let expired = self
            .rx
            .iter()
            .take_while(|w| diff(now_ms, w.arrived) > FEC_EXPIRE_MS as i32)
            .count();
        self.release(0, expired);
        report
    }

    /// Looks at the shards of the group `first_id..=last_id` among `rx[from..=to]`: releases
    /// the group when all its data shards are in, or when enough of its shards are in to
    /// rebuild the missing data shards, which it then hands to `recovered`.
    fn try_group(
        &mut self,
        from: usize,
        to: usize,
        first_id: u32,
        last_id: u32,
        recovered: &mut dyn FnMut(&[u8]),
        report: &mut DecodeReport,
    ) {
        // Position in the group of each shard found -> its index in rx.
        let mut found: Vec<Option<usize>> = vec![None; self.group];
        let (mut shards, mut data_shards, mut first, mut max_len) = (0, 0, 0, 0);
        for i in from..=to {
            let w = &self.rx[i];
            if diff(w.seqid, last_id) > 0 {
                break;
            }
            if diff(w.seqid, first_id) >= 0 {
                found[(w.seqid % self.group as u32) as usize] = Some(i);
                shards += 1;
                if w.flag == FLAG_DATA {
                    data_shards += 1;
                }
                if shards == 1 {
                    first = i;
                }
                max_len = max_len.max(w.body.len());
            }
        }

        if data_shards == self.data {
            // Nothing lost.
            self.release(first, shards);
            self.remember(first_id);
        } else if shards >= self.data {
            // Some data lost, and enough in to rebuild it. Each shard goes in padded with
            // zeros to the group's longest, as the sender padded them.
            let mut work: Vec<Option<Vec<u8>>> = found
                .iter()
                .map(|f| {
                    f.map(|i| {
                        let mut v = Vec::with_capacity(max_len);
                        v.extend_from_slice(&self.rx[i].body);
                        v.resize(max_len, 0);
                        v
                    })
                })
                .collect();
            // Fails only on input no kcp-go sender makes (empty shards, or ids that collide
            // on the circle), and then nothing is rebuilt.
            if self.rs.reconstruct_data(&mut work).is_ok() {
                for (k, shard) in work.iter().enumerate().take(self.data) {
                    if found[k].is_none() {
                        if let Some(shard) = shard {
                            report.recovered += 1;
                            recovered(shard);
                        }
                    }
                }
            }
            self.release(first, shards);
            self.remember(first_id);
        }
    }

    fn remember(&mut self, first_id: u32) {
        if self.done.len() == DONE_MEMORY {
            self.done.pop_front();
        }
        self.done.push_back(first_id);
    }

    /// Removes `rx[first..first + n]`, keeping their buffers for reuse.
    fn release(&mut self, first: usize, n: usize) {
        for w in self.rx.drain(first..first + n) {
            if self.spare.len() < self.limit {
                self.spare.push(w.body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(FecEncoder::new(10, 3).is_ok());
        assert!(FecEncoder::new(128, 128).is_ok());
        for (d, p) in [(0, 3), (10, 0), (200, 57), (0, 0)] {
            assert_eq!(
                FecEncoder::new(d, p).unwrap_err(),
                FecShapeError { data: d, parity: p }
            );
            assert!(FecDecoder::new(d, p).is_err());
        }
    }

    #[test]
    fn sequence_ids_wrap_at_a_group_boundary() {
        let mut enc = FecEncoder::new(3, 2).unwrap();
        let paws = u32::MAX / 5 * 5;
        enc.next = paws - 5;
        let mut ids = Vec::new();
        for _ in 0..6 {
            enc.encode(b"packet", &mut |h, _| {
                ids.push(u32::from_le_bytes(h[..4].try_into().unwrap()))
            });
        }
        assert_eq!(
            ids,
            [
                paws - 5,
                paws - 4,
                paws - 3,
                paws - 2,
                paws - 1,
                0,
                1,
                2,
                3,
                4
            ]
        );
    }
}
