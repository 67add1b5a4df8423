//! Behaviours of Go smux 1.5.57 that the live peer in the interop tests (Debian's 1.5.16)
//! lacks, replayed as the byte sequences 1.5.57 puts on the wire or insists on.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smux_proto::frame::{decode_upd, encode_upd};
use smux_proto::{Cmd, Config, Event, Header, Role, Session, StreamId, Version};

fn frame(v: Version, cmd: Cmd, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Header::new(v, cmd, payload.len() as u16, StreamId(id))
        .encode()
        .to_vec();
    b.extend_from_slice(payload);
    b
}

/// Everything `s` sends, as wire bytes.
fn wire(s: &mut Session, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now) {
        out.extend_from_slice(&t.header);
        out.extend_from_slice(&t.payload);
    }
    out
}

/// Checks a frame sequence the way 1.5.57's receiver does: version, known command, SYN, FIN
/// and NOP without payload, UPD with exactly 8 bytes and only in version 2.
fn strict_1_5_57(v: Version, mut bytes: &[u8]) -> usize {
    let mut frames = 0;
    while !bytes.is_empty() {
        assert!(bytes.len() >= 8, "truncated header");
        let h: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(h[0], v as u8, "version");
        let len = u16::from_le_bytes([h[2], h[3]]) as usize;
        match h[1] {
            0 | 1 | 3 => assert_eq!(len, 0, "SYN/FIN/NOP carry no payload"),
            2 => {}
            4 => {
                assert_eq!(v, Version::V2, "UPD only in version 2");
                assert_eq!(len, 8, "UPD carries 8 bytes");
            }
            c => panic!("unknown command {c}"),
        }
        bytes = &bytes[8 + len..];
        frames += 1;
    }
    frames
}

#[test]
fn half_close_from_a_1_5_57_peer_keeps_our_direction_open() {
    for v in [Version::V1, Version::V2] {
        let now = Instant::now();
        let config = {
            let mut c = Config::default();
            c.with_version(v);
            c
        };
        let mut us = Session::new(Role::Server, config, now).unwrap();
        // 1.5.57's client: OpenStream, Write("request"), CloseWrite() -- a FIN, then it keeps
        // reading.
        let mut input = BytesMut::new();
        input.extend_from_slice(&frame(v, Cmd::Syn, 3, b""));
        input.extend_from_slice(&frame(v, Cmd::Psh, 3, b"request"));
        input.extend_from_slice(&frame(v, Cmd::Fin, 3, b""));
        us.handle_input(now, &mut input.freeze());
        let id = us.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = us.read(id, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"request");
        assert_eq!(us.read(id, &mut buf), Ok(0));
        assert!(std::iter::from_fn(|| us.poll_event()).any(|e| e == Event::Finished(id)));
        // We answer after its FIN, then finish too.
        assert_eq!(us.write(id, b"response"), Ok(8));
        us.shutdown(id).unwrap();
        let out = wire(&mut us, now);
        // No window update: the peer has finished sending on this stream.
        let mut expected = frame(v, Cmd::Psh, 3, b"response");
        expected.extend(frame(v, Cmd::Fin, 3, b""));
        assert_eq!(out, expected);
        assert!(us.is_stream_closed(id));
    }
}

#[test]
fn every_frame_we_send_passes_1_5_57_length_checks() {
    for v in [Version::V1, Version::V2] {
        let now = Instant::now();
        let config = {
            let mut c = Config::default();
            c.with_version(v)
                .with_keep_alive_interval(Some(Duration::from_secs(1)))
                .with_max_frame_size(1000);
            c
        };
        let mut us = Session::new(Role::Client, config, now).unwrap();
        let a = us.open().unwrap();
        us.write(a, &[9u8; 2500]).unwrap();
        us.shutdown(a).unwrap();
        let later = now + Duration::from_secs(1);
        us.handle_timeout(later);
        // A peer stream we read from (UPD in version 2) and refuse (FIN for our parity).
        let mut input = BytesMut::new();
        input.extend_from_slice(&frame(v, Cmd::Syn, 2, b""));
        input.extend_from_slice(&frame(v, Cmd::Psh, 2, b"data"));
        input.extend_from_slice(&frame(v, Cmd::Syn, 5, b""));
        us.handle_input(later, &mut input.freeze());
        let b = us.accept().unwrap();
        us.read(b, &mut [0u8; 16]).unwrap();
        us.close_stream(b);
        let out = wire(&mut us, later);
        let frames = strict_1_5_57(v, &out);
        // SYN, 3 PSH, FIN, NOP, refusal FIN, FIN of the released stream, and in version 2 the
        // UPD the read made due: a released stream's window keeps moving until the peer's FIN.
        let upd = usize::from(v == Version::V2);
        assert_eq!(frames, 8 + upd, "{v:?}");
    }
}

#[test]
fn upd_from_a_1_5_57_peer_with_a_wrapped_consumed_counter_is_understood() {
    // After 4 GiB on one stream, 1.5.57's `consumed` wraps around; in-flight arithmetic must
    // wrap with it.
    let now = Instant::now();
    let config = {
        let mut c = Config::default();
        c.with_version(Version::V2);
        c
    };
    let mut us = Session::new(Role::Client, config, now).unwrap();
    let id = us.open().unwrap();
    assert_eq!(us.write(id, &vec![0u8; 262_144]), Ok(262_144));
    let _ = wire(&mut us, now);
    let upd = encode_upd(262_144, 65_536);
    assert_eq!(decode_upd(&upd), (262_144, 65_536));
    us.handle_input(
        now,
        &mut Bytes::from(frame(Version::V2, Cmd::Upd, id.0, &upd)),
    );
    assert_eq!(us.send_window(id), Some(65_536));
}
