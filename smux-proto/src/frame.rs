//! The frame header: `VERSION(1) | CMD(1) | LENGTH(2, LE) | STREAM_ID(4, LE)`.
//!
//! This layer knows nothing of streams or sessions: it turns eight bytes into a [`Header`] and
//! back, and says which headers are malformed on their own (wrong version, unknown command,
//! a length that command cannot have).

use crate::error::ProtocolError;
pub use crate::wire::{Cmd, StreamId, Version, HEADER_LEN, MAX_PAYLOAD, UPD_PAYLOAD_LEN};

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version the frame claims.
    pub version: Version,
    /// What the frame does.
    pub cmd: Cmd,
    /// Payload length that follows the header.
    pub len: u16,
    /// Stream the frame belongs to.
    pub stream_id: StreamId,
}

impl Header {
    /// A header for `cmd` on stream `id` with a payload of `len` bytes.
    pub fn new(version: Version, cmd: Cmd, len: u16, id: StreamId) -> Header {
        Header {
            version,
            cmd,
            len,
            stream_id: id,
        }
    }

    /// The eight wire bytes of this header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.len.to_le_bytes();
        let id = self.stream_id.0.to_le_bytes();
        [
            self.version as u8,
            self.cmd as u8,
            len[0],
            len[1],
            id[0],
            id[1],
            id[2],
            id[3],
        ]
    }

    /// Decodes and checks a header received in a session of version `expected`.
    ///
    /// Rejects what the Go reference (1.5.57) rejects: a version other than the session's, an
    /// unknown command, SYN/FIN/NOP with a payload, and UPD in version 1 or with a length other
    /// than 8. Stream-level checks (SYN on stream 0, unknown streams) belong to the session.
    pub fn decode(bytes: &[u8; HEADER_LEN], expected: Version) -> Result<Header, ProtocolError> {
        if bytes[0] != expected as u8 {
            return Err(ProtocolError::VersionMismatch {
                ours: expected as u8,
                theirs: bytes[0],
            });
        }
        let cmd = Cmd::from_u8(bytes[1]).ok_or(ProtocolError::UnknownCommand { cmd: bytes[1] })?;
        let len = u16::from_le_bytes([bytes[2], bytes[3]]);
        let stream_id = StreamId(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        match cmd {
            Cmd::Syn | Cmd::Fin | Cmd::Nop if len != 0 => {
                return Err(ProtocolError::UnexpectedPayload { cmd, len });
            }
            Cmd::Upd if expected == Version::V1 => {
                return Err(ProtocolError::UpdInVersion1 { stream_id });
            }
            Cmd::Upd if len as usize != UPD_PAYLOAD_LEN => {
                return Err(ProtocolError::BadUpdLength { len });
            }
            _ => {}
        }
        Ok(Header {
            version: expected,
            cmd,
            len,
            stream_id,
        })
    }
}

/// Encodes an UPD payload.
pub fn encode_upd(consumed: u32, window: u32) -> [u8; UPD_PAYLOAD_LEN] {
    let mut p = [0u8; UPD_PAYLOAD_LEN];
    p[..4].copy_from_slice(&consumed.to_le_bytes());
    p[4..].copy_from_slice(&window.to_le_bytes());
    p
}

/// Decodes an UPD payload into `(consumed, window)`.
pub fn decode_upd(p: &[u8; UPD_PAYLOAD_LEN]) -> (u32, u32) {
    (
        u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
        u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(v: u8, cmd: u8, len: u16, id: u32) -> [u8; 8] {
        let l = len.to_le_bytes();
        let i = id.to_le_bytes();
        [v, cmd, l[0], l[1], i[0], i[1], i[2], i[3]]
    }

    #[test]
    fn each_command_round_trips_in_both_versions() {
        for v in [Version::V1, Version::V2] {
            for (cmd, len) in [
                (Cmd::Syn, 0),
                (Cmd::Fin, 0),
                (Cmd::Psh, 1234),
                (Cmd::Nop, 0),
                (Cmd::Upd, 8),
            ] {
                if cmd == Cmd::Upd && v == Version::V1 {
                    continue;
                }
                let h = Header::new(v, cmd, len, StreamId(0xdead_beef));
                let bytes = h.encode();
                assert_eq!(bytes[0], v as u8);
                assert_eq!(bytes[1], cmd as u8);
                assert_eq!(Header::decode(&bytes, v), Ok(h));
            }
        }
    }

    #[test]
    fn wire_layout_is_little_endian() {
        let h = Header::new(Version::V2, Cmd::Psh, 0x0102, StreamId(0x0304_0506));
        assert_eq!(h.encode(), [2, 2, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03]);
    }

    #[test]
    fn version_mismatch_names_both() {
        assert_eq!(
            Header::decode(&hdr(2, 0, 0, 3), Version::V1),
            Err(ProtocolError::VersionMismatch { ours: 1, theirs: 2 })
        );
    }

    #[test]
    fn unknown_command() {
        assert_eq!(
            Header::decode(&hdr(1, 5, 0, 3), Version::V1),
            Err(ProtocolError::UnknownCommand { cmd: 5 })
        );
    }

    #[test]
    fn control_frames_with_payload_are_rejected() {
        for cmd in [Cmd::Syn, Cmd::Fin, Cmd::Nop] {
            assert_eq!(
                Header::decode(&hdr(1, cmd as u8, 1, 3), Version::V1),
                Err(ProtocolError::UnexpectedPayload { cmd, len: 1 })
            );
        }
    }

    #[test]
    fn upd_checks() {
        assert_eq!(
            Header::decode(&hdr(1, 4, 8, 3), Version::V1),
            Err(ProtocolError::UpdInVersion1 {
                stream_id: StreamId(3)
            })
        );
        assert_eq!(
            Header::decode(&hdr(2, 4, 7, 3), Version::V2),
            Err(ProtocolError::BadUpdLength { len: 7 })
        );
        assert!(Header::decode(&hdr(2, 4, 8, 3), Version::V2).is_ok());
    }

    #[test]
    fn upd_payload_round_trips() {
        assert_eq!(decode_upd(&encode_upd(7, 65536)), (7, 65536));
    }
}
