//! The protocol's vocabulary: versions, commands, stream ids and the sizes the wire fixes.
//!
//! This is the bottom layer: it imports nothing from the crate, and everything else (errors,
//! the frame codec, configuration, the session) builds on it.

/// Size of a frame header on the wire.
pub const HEADER_LEN: usize = 8;

/// Largest payload one frame can carry (the LENGTH field is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Payload length of an UPD frame: `consumed u32 LE`, `window u32 LE`.
pub const UPD_PAYLOAD_LEN: usize = 8;

/// The window a version-2 sender assumes before the peer's first UPD arrives (Go's
/// `initialPeerWindow`).
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// The largest window Go can read: it computes `int32(window) - inflight`.
pub const MAX_WINDOW: u32 = i32::MAX as u32;

/// The smux protocol version. There is no negotiation: both sides must be configured alike,
/// or the server told to take the client's ([`Config::auto_version`](crate::Config::auto_version)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Version {
    /// Version 1: no per-stream flow control, one receive budget per session.
    #[default]
    V1 = 1,
    /// Version 2: adds per-stream windows (UPD frames).
    V2 = 2,
}

impl Version {
    /// The version a frame's first byte names, if any.
    pub(crate) fn from_byte(b: u8) -> Option<Version> {
        match b {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            _ => None,
        }
    }
}

/// A stream identifier. Client-opened streams are odd, server-opened streams even; 0 is reserved
/// for NOP frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A frame command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Opens a stream. No payload.
    Syn = 0,
    /// Ends the sender's direction of a stream, ordered after its earlier data. No payload.
    Fin = 1,
    /// Stream data.
    Psh = 2,
    /// Keep-alive, on stream 0. No payload.
    Nop = 3,
    /// Version 2 flow-control update: `consumed u32 LE`, `window u32 LE`.
    Upd = 4,
}

impl Cmd {
    /// The command for a wire byte, if it is one of the five.
    pub fn from_u8(b: u8) -> Option<Cmd> {
        Some(match b {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            4 => Cmd::Upd,
            _ => return None,
        })
    }
}
