//! Incremental frame assembly from input of any chunking.
//!
//! The decoder collects a header, lets the session decide what the body is for (a stream's
//! data, an UPD, or bytes to discard), then collects the body. A stream's payload is not
//! assembled: the part of it in each input chunk is handed over as that chunk arrives, so a
//! frame that straddles two reads reaches its stream as two pieces, and the first can be read
//! before the second is here. A piece is split off without copying when the session allows it
//! for the frame and it is at least [`ZERO_COPY_MIN`] bytes and at least a quarter of its
//! input chunk: a kept slice shares the caller's buffer, so it should not be much smaller than
//! that buffer's allocation (the adapters read into 64 KiB buffers, so a slice pins at most
//! four times its size, which the session charges it). Other pieces are copied into an
//! allocation of exactly their size. The session can have a piece
//! kept back (copied) and handed over with the next one, when it cannot afford the piece a
//! queue slot of its own.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::frame::Header;
use crate::wire::{StreamId, Version, HEADER_LEN, UPD_PAYLOAD_LEN};

/// Payload pieces shorter than this are always copied out of the input.
pub const ZERO_COPY_MIN: usize = 16 * 1024;

/// What the session decided a frame body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// Payload for a stream; its pieces may be kept without copying if `keep`.
    Data {
        id: StreamId,
        len: usize,
        keep: bool,
    },
    /// An UPD's eight bytes.
    Upd { id: StreamId },
    /// Bytes to read and drop.
    Discard { len: usize },
}

/// What the decoder hands out of a body.
#[derive(Debug)]
pub(crate) enum Complete {
    /// A piece of a stream's payload; `rest` more bytes of the frame are still to come (0 for
    /// the last piece). `pinned`: a slice of the input, not a copy.
    Data {
        id: StreamId,
        data: Bytes,
        rest: usize,
        pinned: bool,
    },
    Upd {
        id: StreamId,
        payload: [u8; UPD_PAYLOAD_LEN],
    },
    Discarded,
}

impl Complete {
    /// Whether this is the end of the body: everything but a payload piece with more to come.
    fn ends_body(&self) -> bool {
        !matches!(self, Complete::Data { rest, .. } if *rest > 0)
    }
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
    /// A stream's payload: `left` bytes are still to be read from the input; `held` is what
    /// was read but kept back, to be handed over with the next piece; pieces may be kept
    /// without copying if `keep`.
    Data {
        id: StreamId,
        left: usize,
        held: BytesMut,
        keep: bool,
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
            Body::Data { id, len, keep } => State::Data {
                id,
                left: len,
                held: BytesMut::new(),
                keep,
            },
            Body::Upd { id } => State::Upd {
                id,
                buf: [0; UPD_PAYLOAD_LEN],
                have: 0,
            },
            Body::Discard { len } => State::Discard { left: len },
        };
    }

    /// The stream whose payload is being received, if any, and how many bytes of that payload
    /// it has yet to be handed.
    pub fn receiving(&self) -> Option<(StreamId, usize)> {
        match &self.state {
            State::Data { id, left, held, .. } => Some((*id, held.len() + *left)),
            _ => None,
        }
    }

    /// Whether the payload being received may be kept without copying.
    pub fn keeps(&self) -> bool {
        matches!(self.state, State::Data { keep: true, .. })
    }

    /// The stream being received takes no more data: the rest of its payload is read and
    /// dropped, with what was kept back of it.
    pub fn discard_rest(&mut self) {
        if let State::Data { left, .. } = self.state {
            self.state = State::Discard { left };
        }
    }

    /// Whether a body is being collected.
    pub fn in_body(&self) -> bool {
        !matches!(self.state, State::Header { .. } | State::Pending(_))
    }

    /// Feeds `input` to the body being collected. A payload comes out piece by piece, the part
    /// of it in `input` at once; unless `early` is false and more of the frame is to come: then
    /// the piece is kept back until a call that allows it or the end of the frame. An UPD or
    /// discarded body comes out once complete. `chunk_len` is the length of the caller's input
    /// chunk, for the zero-copy rule.
    pub fn body(&mut self, input: &mut Bytes, chunk_len: usize, early: bool) -> Option<Complete> {
        let out = match &mut self.state {
            State::Header { .. } | State::Pending(_) => None,
            State::Data {
                id,
                left,
                held,
                keep,
            } => data_piece(*id, left, held, input, chunk_len, early, *keep),
            State::Upd { id, buf, have } => {
                let n = (UPD_PAYLOAD_LEN - *have).min(input.len());
                buf[*have..*have + n].copy_from_slice(&input[..n]);
                input.advance(n);
                *have += n;
                (*have == UPD_PAYLOAD_LEN).then_some(Complete::Upd {
                    id: *id,
                    payload: *buf,
                })
            }
            State::Discard { left } => {
                let n = (*left).min(input.len());
                input.advance(n);
                *left -= n;
                (*left == 0).then_some(Complete::Discarded)
            }
        };
        if out.as_ref().is_some_and(Complete::ends_body) {
            *self = Decoder::default();
        }
        out
    }
}

/// The part of a payload of stream `id` in `input` (`left` bytes of it are still to be read;
/// `held` was kept back), as a piece to hand over now, if any: see [`Decoder::body`].
fn data_piece(
    id: StreamId,
    left: &mut usize,
    held: &mut BytesMut,
    input: &mut Bytes,
    chunk_len: usize,
    early: bool,
    keep: bool,
) -> Option<Complete> {
    let n = (*left).min(input.len());
    if n == 0 {
        return None;
    }
    *left -= n;
    let rest = *left;
    let now = early || rest == 0;
    let (data, pinned) = if held.is_empty() && now {
        take_piece(input, n, chunk_len, keep)
    } else {
        if held.capacity() == 0 {
            // Room for all that can still be kept back, allocated once.
            *held = BytesMut::with_capacity(n + rest);
        }
        held.extend_from_slice(&input[..n]);
        input.advance(n);
        if !now {
            return None;
        }
        (std::mem::take(held).freeze(), false)
    };
    Some(Complete::Data {
        id,
        data,
        rest,
        pinned,
    })
}

/// Takes the first `n` bytes of `input`, from a chunk of `chunk_len` bytes: split off without
/// copying when allowed (`keep`) and big enough to keep (see the module docs), copied
/// otherwise. Returns whether it was kept.
fn take_piece(input: &mut Bytes, n: usize, chunk_len: usize, keep: bool) -> (Bytes, bool) {
    let data = input.split_to(n);
    if keep && data.len() >= ZERO_COPY_MIN && data.len() * 4 >= chunk_len {
        (data, true)
    } else {
        (Bytes::copy_from_slice(&data), false)
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

    /// The payload bytes of `c`, a piece of a stream's payload, and the bytes still to come.
    fn piece(c: Option<Complete>) -> (Bytes, usize) {
        match c {
            Some(Complete::Data { data, rest, .. }) => (data, rest),
            other => panic!("expected a payload piece, got {other:?}"),
        }
    }

    /// Whether `data` lies inside the buffer of `len` bytes at `base`.
    fn shares(data: &Bytes, base: *const u8, len: usize) -> bool {
        let (p, b) = (data.as_ptr() as usize, base as usize);
        p >= b && p < b + len
    }

    #[test]
    fn big_payload_is_split_without_copy_small_one_is_copied() {
        let input = Bytes::from(vec![9u8; 60_000]);
        let base = input.as_ptr();
        let mut d = Decoder::default();
        d.begin_body(Body::Data {
            id: StreamId(3),
            len: 40_000,
            keep: true,
        });
        let mut i = input.clone();
        let (data, rest) = piece(d.body(&mut i, 60_000, true));
        assert_eq!(
            (data.as_ptr(), rest),
            (base, 0),
            "a large payload is not copied"
        );
        // What is left of the buffer is small, but the allocation behind it is not: a small
        // payload from it is copied even though it is most of the remaining input.
        for len in [10, 16_000] {
            d.begin_body(Body::Data {
                id: StreamId(3),
                len,
                keep: true,
            });
            let mut rest = i.slice(..len);
            let (data, _) = piece(d.body(&mut rest, len, true));
            assert!(
                !shares(&data, base, 60_000),
                "a small payload is copied out"
            );
            assert_eq!(data.len(), len);
        }
    }

    #[test]
    fn a_payload_straddling_two_chunks_comes_out_as_two_pieces() {
        const LEN: usize = 40_000;
        // The payload, then the next frame's header: the second chunk carries both.
        let wire: Vec<u8> = (0..LEN + HEADER_LEN).map(|i| (i % 251) as u8).collect();
        let wire = Bytes::from(wire);
        let base = wire.as_ptr();
        let mut d = Decoder::default();
        for cut in 1..LEN {
            d.begin_body(Body::Data {
                id: StreamId(5),
                len: LEN,
                keep: true,
            });
            let mut first = wire.slice(..cut);
            let (a, rest) = piece(d.body(&mut first, cut, true));
            assert!(first.is_empty());
            assert_eq!((&a[..], rest), (&wire[..cut], LEN - cut), "cut at {cut}");
            assert_eq!(d.receiving(), Some((StreamId(5), LEN - cut)));
            let mut second = wire.slice(cut..);
            let len = second.len();
            let (b, rest) = piece(d.body(&mut second, len, true));
            assert_eq!((&b[..], rest), (&wire[cut..LEN], 0), "cut at {cut}");
            assert_eq!(&second[..], &wire[LEN..], "the next frame is left");
            assert!(!d.in_body());
            // Each piece is a whole chunk but the header: big ones are kept as they are.
            for (p, at) in [(&a, 0), (&b, cut)] {
                let zero_copy = p.len() >= ZERO_COPY_MIN;
                assert_eq!(shares(p, base, wire.len()), zero_copy, "cut at {cut}");
                if zero_copy {
                    assert_eq!(p.as_ptr(), wire[at..].as_ptr());
                }
            }
        }
    }

    #[test]
    fn a_piece_kept_back_is_handed_over_with_the_next() {
        let mut d = Decoder::default();
        d.begin_body(Body::Data {
            id: StreamId(2),
            len: 7,
            keep: true,
        });
        assert!(d.body(&mut Bytes::from_static(b"ab"), 2, false).is_none());
        assert_eq!(d.receiving(), Some((StreamId(2), 7)));
        assert!(d.body(&mut Bytes::from_static(b"c"), 1, false).is_none());
        let (data, rest) = piece(d.body(&mut Bytes::from_static(b"d"), 1, true));
        assert_eq!((&data[..], rest), (&b"abcd"[..], 3));
        // The end of the frame comes out whatever `early` says.
        let mut last = Bytes::from_static(b"efgh");
        let (data, rest) = piece(d.body(&mut last, 4, false));
        assert_eq!((&data[..], rest), (&b"efg"[..], 0));
        assert_eq!(&last[..], b"h");
        assert!(!d.in_body());
    }

    #[test]
    fn the_rest_of_a_payload_can_be_discarded() {
        let mut d = Decoder::default();
        d.begin_body(Body::Data {
            id: StreamId(2),
            len: 6,
            keep: true,
        });
        assert!(d.body(&mut Bytes::from_static(b"ab"), 2, false).is_none());
        d.discard_rest();
        assert_eq!(d.receiving(), None);
        let mut input = Bytes::from_static(b"cdefgh");
        assert!(matches!(
            d.body(&mut input, 6, true),
            Some(Complete::Discarded)
        ));
        assert_eq!(&input[..], b"gh");
        assert!(!d.in_body());
    }

    #[test]
    fn discard_and_upd() {
        let mut d = Decoder::default();
        d.begin_body(Body::Discard { len: 3 });
        assert!(matches!(
            d.body(&mut Bytes::from_static(b"abc"), 3, true),
            Some(Complete::Discarded)
        ));
        d.begin_body(Body::Upd { id: StreamId(2) });
        assert!(d.body(&mut Bytes::from_static(b"1234"), 4, true).is_none());
        assert!(matches!(
            d.body(&mut Bytes::from_static(b"5678"), 4, true),
            Some(Complete::Upd { payload, .. }) if &payload == b"12345678"
        ));
    }
}
