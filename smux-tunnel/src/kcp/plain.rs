//! [`PlainCodec`]: kcp-go's packet layout with `-crypt none` and no FEC
//! (`-datashard 0 -parityshard 0`): 16 random nonce bytes, a little-endian CRC32 (IEEE) of the
//! KCP packet, then the packet. Nothing is encrypted.

use super::rng::Rng;
use super::{Codec, DropReason};

const NONCE: usize = 16;
const HEADER: usize = NONCE + 4;

/// kcp-go's `-crypt none` without FEC. kcp-go drops a datagram whose CRC is wrong, and so does
/// this.
pub struct PlainCodec {
    rng: Rng,
    scratch: Vec<u8>,
}

impl PlainCodec {
    /// A codec with a freshly seeded nonce generator.
    pub fn new() -> PlainCodec {
        PlainCodec {
            rng: Rng::seeded(),
            scratch: Vec::with_capacity(super::mode::MTU_LIMIT),
        }
    }
}

impl Default for PlainCodec {
    fn default() -> Self {
        PlainCodec::new()
    }
}

impl Codec for PlainCodec {
    fn overhead(&self) -> usize {
        HEADER
    }

    fn seal(&mut self, packet: &[u8], send: &mut dyn FnMut(&[u8])) {
        let buf = &mut self.scratch;
        buf.clear();
        buf.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        buf.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(packet).to_le_bytes());
        buf.extend_from_slice(packet);
        send(buf);
    }

    fn open(&mut self, datagram: &[u8], deliver: &mut dyn FnMut(&[u8])) -> Result<(), DropReason> {
        if datagram.len() < HEADER {
            return Err(DropReason::Truncated);
        }
        let (header, packet) = datagram.split_at(HEADER);
        let crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if crc32fast::hash(packet) != crc {
            return Err(DropReason::Checksum);
        }
        deliver(packet);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(c: &mut PlainCodec, p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.seal(p, &mut |d| out.push(d.to_vec()));
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let mut c = PlainCodec::new();
        let d = seal(&mut c, b"some kcp packet");
        assert_eq!(d.len(), 20 + 15);
        assert_eq!(
            &d[16..20],
            &crc32fast::hash(b"some kcp packet").to_le_bytes()
        );
        assert_eq!(&d[20..], b"some kcp packet");
        let mut got = Vec::new();
        assert_eq!(c.open(&d, &mut |p| got.push(p.to_vec())), Ok(()));
        assert_eq!(got, vec![b"some kcp packet".to_vec()]);
        // The nonce differs from datagram to datagram.
        assert_ne!(&seal(&mut c, b"x")[..16], &seal(&mut c, b"x")[..16]);
    }

    #[test]
    fn bad_datagrams_are_dropped() {
        let mut c = PlainCodec::new();
        let mut none = |_: &[u8]| panic!("delivered");
        assert_eq!(c.open(&[0; 19], &mut none), Err(DropReason::Truncated));
        let mut d = seal(&mut c, b"packet");
        d[22] ^= 1;
        assert_eq!(c.open(&d, &mut none), Err(DropReason::Checksum));
        // A header alone is a valid, empty datagram; KCP's own checks come after.
        let e = seal(&mut c, b"");
        let mut n = 0;
        assert_eq!(c.open(&e, &mut |p| n += p.len() + 1), Ok(()));
        assert_eq!(n, 1);
    }
}
