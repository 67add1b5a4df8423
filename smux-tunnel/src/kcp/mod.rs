//! kcptun's transport: smux over KCP over UDP, with kcp-go's packet layout.
//!
//! A datagram, as kcp-go 5.6 lays it out, is, front to back:
//! - the crypto header: 16 nonce bytes, then a little-endian CRC32 (IEEE) of what follows,
//!   all of it encrypted with the chosen block cipher (present even with `none`);
//! - the FEC header and shard, when forward error correction is on;
//! - KCP segments.
//!
//! [`Codec`] is the layer between KCP and the UDP socket: the crypto header and FEC.
//! [`KcpGoCodec`] implements it as kcp-go does ([`crypt`] and [`fec`] are its parts), and
//! [`CompStream`] is kcptun's snappy compression over the KCP stream.
//!
//! Over a codec, [`KcpStream`] is one KCP session, a client's ([`KcpStream::connect`]) or
//! one a [`KcpListener`] accepted, configured by [`KcpSettings`] as kcptun configures kcp-go's
//! sessions.

pub mod codec;
pub mod comp;
pub mod crypt;
pub mod fec;

pub use codec::{CodecConfig, CodecCounters, CodecStats, KcpGoCodec};
pub use comp::CompStream;
pub use crypt::{derive_key, Crypt, UnknownCrypt};
pub use fec::FecShapeError;

/// Why a received datagram was dropped. Each is counted; none ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than the headers it must carry.
    Truncated,
    /// Its CRC32 does not match: corrupt, forged, or sealed with another key or cipher.
    Checksum,
    /// Its FEC header or shard is malformed.
    Fec,
    /// Longer than any datagram kcp-go sends (1500 bytes, its `mtuLimit`).
    Oversized,
}

/// The layer between KCP and UDP: kcp-go's crypto header and FEC.
pub trait Codec: Send + 'static {
    /// Bytes this layer puts in front of each KCP packet. KCP's MTU is the datagram MTU
    /// minus this.
    fn overhead(&self) -> usize;

    /// Turns one packet of KCP's output into datagrams, handed to `send` one at a time. With
    /// FEC on, parity datagrams follow every `data_shards` packets.
    fn seal(&mut self, packet: &[u8], send: &mut dyn FnMut(&[u8]));

    /// Opens one received datagram, and hands each KCP packet it holds, or FEC recovers, to
    /// `deliver`. A datagram that fails a check is dropped, and the reason returned.
    fn open(&mut self, datagram: &[u8], deliver: &mut dyn FnMut(&[u8])) -> Result<(), DropReason>;
}

mod listener;
mod mode;
mod rng;
mod session;
mod stats;
mod stream;

pub use listener::{KcpListener, ListenerLimits};
pub use mode::{KcpSettings, Mode, NoDelay, MTU_LIMIT};
pub use stats::{KcpStats, KcpStatsHandle};
pub use stream::KcpStream;
