//! Incremental frame assembly from input of any chunking.
//!
//! The decoder collects a header, lets the session decide what the body is for (a stream's
//! data, an UPD, or bytes to discard), then collects the body. A payload that arrives whole in
//! one input chunk is split off without copying when it is at least [`ZERO_COPY_MIN`] bytes and
//! at least a quarter of that chunk: a kept slice shares the caller's buffer, so it should not
//! be much smaller than that buffer's allocation (the adapters read into 64 KiB buffers, so a
//! slice pins at most four times its size). Smaller payloads, and payloads spread over several
//! chunks, are copied into an allocation of exactly their size.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::frame::Header;
use crate::wire::{StreamId, Version, HEADER_LEN, UPD_PAYLOAD_LEN};

/// Payloads shorter than this are always copied out of the input.
pub const ZERO_COPY_MIN: usize = 16 * 1024;

/// What the session decided a frame body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// Payload for a stream.
    Data { id: StreamId, len: usize },
    /// An UPD's eight bytes.
    Upd { id: StreamId },
    /// Bytes to read and drop.
    Discard { len: usize },
}

/// A complete body.
#[derive(Debug)]
pub(crate) enum Complete {
    Data {
        id: StreamId,
        data: Bytes,
    },
    Upd {
        id: StreamId,
        payload: [u8; UPD_PAYLOAD_LEN],
    },
    Discarded,
}

#[derive(Debug)]
enum State {
    /// Collecting a header.
    Header {
        buf: [u8; HEADER_LEN],
        have: usize,
    },
    /// A decoded header waits for the session to take it.
    Pending(Header),
    Data {
        id: StreamId,
        len: usize,
        acc: BytesMut,
    },
    Upd {
        id: StreamId,
        buf: [u8; UPD_PAYLOAD_LEN],
        have: usize,
    },
    Discard {
        left: usize,
    },
}

#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
        }
    }
}

impl Decoder {
    /// Collects header bytes from `input` and decodes them for a session of `version` once all
    /// eight are here. A good header stays pending (returned again by the next call) until
    /// [`Decoder::take_header`] or [`Decoder::begin_body`]; a malformed one is returned as its
    /// error, and the session ends.
    pub fn header(
        &mut self,
        input: &mut Bytes,
        version: Version,
    ) -> Option<Result<Header, ProtocolError>> {
        let (buf, have) = match &mut self.state {
            State::Pending(h) => return Some(Ok(*h)),
            State::Header { buf, have } => (buf, have),
            _ => return None,
        };
        let n = (HEADER_LEN - *have).min(input.len());
        buf[*have..*have + n].copy_from_slice(&input[..n]);
        input.advance(n);
        *have += n;
        if *have < HEADER_LEN {
            return None;
        }
        let decoded = Header::decode(buf, version);
        if let Ok(h) = decoded {
            self.state = State::Pending(h);
        }
        Some(decoded)
    }

    /// The header waiting for the session to take it, if any.
    pub fn pending_header(&self) -> Option<Header> {
        match &self.state {
            State::Pending(h) => Some(*h),
            _ => None,
        }
    }

    /// Consumes the pending header of a frame without a body.
    pub fn take_header(&mut self) {
        *self = Decoder::default();
    }

    /// Consumes the pending header and starts collecting its body.
    pub fn begin_body(&mut self, body: Body) {
        self.state = match body {
            Body::Data { id, len } => State::Data {
                id,
                len,
                acc: BytesMut::new(),
            },
            Body::Upd { id } => State::Upd {
                id,
                buf: [0; UPD_PAYLOAD_LEN],
                have: 0,
            },
            Body::Discard { len } => State::Discard { left: len },
        };
    }

    /// The stream whose payload is being collected, if any.
    pub fn receiving(&self) -> Option<StreamId> {
        match &self.state {
            State::Data { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// Whether a body is being collected.
    pub fn in_body(&self) -> bool {
        !matches!(self.state, State::Header { .. } | State::Pending(_))
    }

    /// Feeds `input` to the body being collected; returns it once complete. `chunk_len` is the
    /// length of the caller's input chunk, for the zero-copy rule.
    pub fn body(&mut self, input: &mut Bytes, chunk_len: usize) -> Option<Complete> {
        let done = match &mut self.state {
            State::Header { .. } | State::Pending(_) => return None,
            State::Data { id, len, acc } => {
                if acc.is_empty() && input.len() >= *len {
                    let data = input.split_to(*len);
                    let data = if data.len() >= ZERO_COPY_MIN && data.len() * 4 >= chunk_len {
                        data
                    } else {
                        Bytes::copy_from_slice(&data)
                    };
                    Complete::Data { id: *id, data }
                } else {
                    if acc.capacity() == 0 {
                        *acc = BytesMut::with_capacity(*len);
                    }
                    let n = (*len - acc.len()).min(input.len());
                    acc.extend_from_slice(&input[..n]);
                    input.advance(n);
                    if acc.len() < *len {
                        return None;
                    }
                    Complete::Data {
                        id: *id,
                        data: std::mem::take(acc).freeze(),
                    }
                }
            }
            State::Upd { id, buf, have } => {
                let n = (UPD_PAYLOAD_LEN - *have).min(input.len());
                buf[*have..*have + n].copy_from_slice(&input[..n]);
                input.advance(n);
                *have += n;
                if *have < UPD_PAYLOAD_LEN {
                    return None;
                }
                Complete::Upd {
                    id: *id,
                    payload: *buf,
                }
            }
            State::Discard { left } => {
                let n = (*left).min(input.len());
                input.advance(n);
                *left -= n;
                if *left > 0 {
                    return None;
                }
                Complete::Discarded
            }
        };
        *self = Decoder::default();
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_assembles_from_single_bytes() {
        let mut d = Decoder::default();
        let wire = [1u8, 2, 3, 0, 5, 0, 0, 0];
        let expected = Header::decode(&wire, Version::V1).unwrap();
        for (i, b) in wire.iter().enumerate() {
            let mut input = Bytes::copy_from_slice(&[*b]);
            let got = d.header(&mut input, Version::V1);
            assert!(input.is_empty());
            assert_eq!(got.is_some(), i == 7);
        }
        assert_eq!(d.pending_header(), Some(expected));
        // Pending until taken, and decoded once.
        let mut more = Bytes::from_static(b"xyz");
        assert_eq!(d.header(&mut more, Version::V1), Some(Ok(expected)));
        assert_eq!(more.len(), 3);
        d.take_header();
        assert_eq!(d.pending_header(), None);
    }

    #[test]
    fn malformed_header_is_an_error() {
        let mut d = Decoder::default();
        let mut input = Bytes::from_static(&[2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(
            d.header(&mut input, Version::V1),
            Some(Err(ProtocolError::VersionMismatch { ours: 1, theirs: 2 }))
        );
    }

    #[test]
    fn big_payload_is_split_without_copy_small_one_is_copied() {
        let input = Bytes::from(vec![9u8; 60_000]);
        let base = input.as_ptr();
        let mut d = Decoder::default();
        d.begin_body(Body::Data {
            id: StreamId(3),
            len: 40_000,
        });
        let mut i = input.clone();
        let Some(Complete::Data { data, .. }) = d.body(&mut i, 60_000) else {
            panic!("payload not complete");
        };
        assert_eq!(data.as_ptr(), base, "a large payload must not be copied");
        // What is left of the buffer is small, but the allocation behind it is not: a small
        // payload from it is copied even though it is most of the remaining input.
        for len in [10, 16_000] {
            d.begin_body(Body::Data {
                id: StreamId(3),
                len,
            });
            let mut rest = i.slice(..len);
            let Some(Complete::Data { data, .. }) = d.body(&mut rest, len) else {
                panic!("payload not complete");
            };
            let (p, b) = (data.as_ptr() as usize, base as usize);
            assert!(
                p < b || p >= b + 60_000,
                "a small payload must be copied out"
            );
            assert_eq!(data.len(), len);
        }
    }

    #[test]
    fn payload_split_over_chunks_is_assembled() {
        let mut d = Decoder::default();
        d.begin_body(Body::Data {
            id: StreamId(2),
            len: 5,
        });
        assert!(d.body(&mut Bytes::from_static(b"ab"), 2).is_none());
        let mut rest = Bytes::from_static(b"cdefg");
        let Some(Complete::Data { data, .. }) = d.body(&mut rest, 5) else {
            panic!("payload not complete");
        };
        assert_eq!(&data[..], b"abcde");
        assert_eq!(&rest[..], b"fg");
        assert!(!d.in_body());
    }

    #[test]
    fn discard_and_upd() {
        let mut d = Decoder::default();
        d.begin_body(Body::Discard { len: 3 });
        assert!(matches!(
            d.body(&mut Bytes::from_static(b"abc"), 3),
            Some(Complete::Discarded)
        ));
        d.begin_body(Body::Upd { id: StreamId(2) });
        assert!(d.body(&mut Bytes::from_static(b"1234"), 4).is_none());
        assert!(matches!(
            d.body(&mut Bytes::from_static(b"5678"), 4),
            Some(Complete::Upd { payload, .. }) if &payload == b"12345678"
        ));
    }
}
