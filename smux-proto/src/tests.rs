//! Unit tests of the session: each command, each bad-input case, ids, timers, half-close, the
//! version-2 window on both sides.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::frame::{encode_upd, Cmd, Header, StreamId};
use crate::pair::{Pair, Side};
use crate::{
    Config, Event, OpenError, ProtocolError, Role, Session, SessionEnd, StreamError, Version,
    INITIAL_PEER_WINDOW,
};

/// `base` changed by `change`.
fn cfg(base: Config, change: impl FnOnce(&mut Config)) -> Config {
    let mut c = base;
    change(&mut c);
    c
}

fn v2() -> Config {
    cfg(Config::default(), |c| {
        c.with_version(Version::V2);
    })
}

fn pair(c: Config) -> Pair {
    Pair::new(c.clone(), c, Instant::now()).unwrap()
}

fn wire(v: Version, cmd: Cmd, id: u32, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&Header::new(v, cmd, payload.len() as u16, StreamId(id)).encode());
    b.extend_from_slice(payload);
    b.freeze()
}

fn raw(v: u8, cmd: u8, len: u16, id: u32) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&[v, cmd]);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    b.resize(8 + len as usize, 0);
    b.freeze()
}

fn feed(s: &mut Session, now: Instant, bytes: Bytes) -> Bytes {
    let mut b = bytes;
    s.handle_input(now, &mut b);
    b
}

fn transmits(s: &mut Session, now: Instant) -> Vec<(Header, Bytes)> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now) {
        out.push((
            Header::decode(&t.header, s.config().version()).unwrap(),
            t.payload,
        ));
    }
    out
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn server(c: Config) -> (Session, Instant) {
    let now = Instant::now();
    (Session::new(Role::Server, c, now).unwrap(), now)
}

fn read_all(p: &mut Pair, side: Side, id: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    loop {
        match p.session(side).read(id, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(StreamError::Blocked) => {
                if p.drive() == 0 {
                    return out;
                }
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------- commands

#[test]
fn syn_psh_fin_reach_the_peer_in_order() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    assert_eq!(id, StreamId(3));
    p.client.write(id, b"hello").unwrap();
    p.client.shutdown(id).unwrap();
    let frames = transmits(&mut p.client, p.now);
    let cmds: Vec<_> = frames.iter().map(|(h, _)| h.cmd).collect();
    assert_eq!(cmds, [Cmd::Syn, Cmd::Psh, Cmd::Fin]);
    for (h, payload) in frames {
        let mut b = BytesMut::from(&h.encode()[..]);
        b.extend_from_slice(&payload);
        assert!(feed(&mut p.server, p.now, b.freeze()).is_empty());
    }
    assert_eq!(
        events(&mut p.server),
        [Event::Opened(id), Event::Readable(id), Event::Finished(id)]
    );
    assert_eq!(p.server.accept(), Some(id));
    let mut buf = [0u8; 10];
    assert_eq!(p.server.read(id, &mut buf), Ok(5));
    assert_eq!(p.server.read(id, &mut buf), Ok(0));
}

#[test]
fn ids_follow_the_reference() {
    let now = Instant::now();
    let mut c = Session::new(Role::Client, Config::default(), now).unwrap();
    let mut s = Session::new(Role::Server, Config::default(), now).unwrap();
    assert_eq!((c.open(), c.open()), (Ok(StreamId(3)), Ok(StreamId(5))));
    assert_eq!((s.open(), s.open()), (Ok(StreamId(2)), Ok(StreamId(4))));
}

#[test]
fn id_exhaustion_is_an_error_and_the_session_goes_on() {
    for (role, last) in [(Role::Client, u32::MAX), (Role::Server, u32::MAX - 1)] {
        let mut s = Session::new(role, Config::default(), Instant::now()).unwrap();
        s.last_id = last - 2;
        assert_eq!(s.open(), Ok(StreamId(last)));
        assert_eq!(s.open(), Err(OpenError::IdsExhausted));
        assert_eq!(s.open(), Err(OpenError::IdsExhausted));
        assert!(!s.is_ended());
        // Existing streams still work.
        assert_eq!(s.write(StreamId(last), b"x"), Ok(1));
    }
}

#[test]
fn open_respects_max_streams() {
    let c = cfg(Config::default(), |c| {
        c.with_max_streams(2);
    });
    let mut s = Session::new(Role::Client, c, Instant::now()).unwrap();
    s.open().unwrap();
    s.open().unwrap();
    assert_eq!(s.open(), Err(OpenError::TooManyStreams { limit: 2 }));
}

#[test]
fn data_moves_both_ways_on_one_stream() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, b"ping").unwrap();
    p.drive();
    let sid = p.server.accept().unwrap();
    p.server.write(sid, b"pong").unwrap();
    p.server.shutdown(sid).unwrap();
    p.drive();
    assert_eq!(read_all(&mut p, Side::Client, id), b"pong");
    let mut buf = [0; 8];
    assert_eq!(p.server.read(sid, &mut buf), Ok(4));
}

#[test]
fn server_opened_streams_work() {
    let mut p = pair(Config::default());
    let id = p.server.open().unwrap();
    assert_eq!(id, StreamId(2));
    p.server.write(id, b"from server").unwrap();
    p.server.shutdown(id).unwrap();
    p.drive();
    assert_eq!(p.client.accept(), Some(id));
    assert_eq!(read_all(&mut p, Side::Client, id), b"from server");
}

#[test]
fn large_write_is_split_into_frames_of_max_frame_size() {
    let c = cfg(Config::default(), |c| {
        c.with_max_frame_size(1000);
    });
    let mut p = pair(c);
    let id = p.client.open().unwrap();
    assert_eq!(p.client.write(id, &[1u8; 2500]), Ok(2500));
    let lens: Vec<_> = transmits(&mut p.client, p.now)
        .into_iter()
        .filter(|(h, _)| h.cmd == Cmd::Psh)
        .map(|(h, _)| h.len)
        .collect();
    assert_eq!(lens, [1000, 1000, 500]);
}

#[test]
fn receiver_accepts_full_65535_frames_whatever_its_own_frame_size() {
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_frame_size(100);
    }));
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    let big = vec![7u8; 65_535];
    assert!(feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, &big)).is_empty());
    assert_eq!(s.stream_unread(StreamId(3)), Some(65_535));
}

// ---------------------------------------------------------------- half-close and close

#[test]
fn half_close_from_client_keeps_the_other_direction() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, b"request").unwrap();
    p.client.shutdown(id).unwrap();
    assert_eq!(p.client.write(id, b"more"), Err(StreamError::Finished));
    p.drive();
    let sid = p.server.accept().unwrap();
    assert_eq!(read_all(&mut p, Side::Server, sid), b"request");
    // The server still writes; the client still reads.
    p.server.write(sid, b"response").unwrap();
    p.server.shutdown(sid).unwrap();
    p.drive();
    assert_eq!(read_all(&mut p, Side::Client, id), b"response");
    assert!(p.client_events.contains(&Event::Closed(id)));
    assert!(p.server_events.contains(&Event::Closed(sid)));
}

#[test]
fn half_close_from_server_keeps_the_other_direction() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, b"a").unwrap();
    p.drive();
    let sid = p.server.accept().unwrap();
    p.server.write(sid, b"bye").unwrap();
    p.server.shutdown(sid).unwrap();
    p.drive();
    assert_eq!(read_all(&mut p, Side::Client, id), b"bye");
    p.client.write(id, b"still here").unwrap();
    p.client.shutdown(id).unwrap();
    p.drive();
    assert_eq!(read_all(&mut p, Side::Server, sid), b"astill here");
}

#[test]
fn psh_after_peer_fin_is_dropped() {
    let (mut s, now) = server(Config::default());
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, b"ok"));
    feed(&mut s, now, wire(Version::V1, Cmd::Fin, 3, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, b"late"));
    assert!(!s.is_ended());
    let mut buf = [0u8; 10];
    assert_eq!(s.read(StreamId(3), &mut buf), Ok(2));
    assert_eq!(s.read(StreamId(3), &mut buf), Ok(0));
    assert_eq!(s.unread_held(), 0);
}

#[test]
fn close_stream_drops_unread_data_and_sends_fin_after_queued_data() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, b"x").unwrap();
    p.drive();
    let sid = p.server.accept().unwrap();
    p.server.write(sid, b"unread").unwrap();
    p.drive();
    assert!(p.client.unread_held() > 0);
    p.client.write(id, b"last words").unwrap();
    p.client.close_stream(id);
    assert_eq!(p.client.unread_held(), 0);
    assert_eq!(
        p.client.read(id, &mut [0; 4]),
        Err(StreamError::UnknownStream(id))
    );
    p.drive();
    assert_eq!(read_all(&mut p, Side::Server, sid), b"xlast words");
    assert_eq!(p.client.num_streams(), 0);
    // Data the server sends now is discarded without reply.
    p.server.write(sid, b"nobody listens").unwrap();
    p.drive();
    assert_eq!(p.client.unread_held(), 0);
    assert!(!p.client.is_ended());
}

#[test]
fn session_close_drains_output_then_ends() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, &[5u8; 100_000]).unwrap();
    p.client.close();
    assert_eq!(p.client.open(), Err(OpenError::SessionClosed));
    assert_eq!(p.client.write(id, b"x"), Err(StreamError::Finished));
    p.drive();
    assert!(p
        .client_events
        .contains(&Event::SessionEnded(SessionEnd::Closed)));
    let sid = p.server.accept().unwrap();
    assert_eq!(read_all(&mut p, Side::Server, sid).len(), 100_000);
}

#[test]
fn peer_eof_ends_session_and_reads_return_data_then_error() {
    let (mut s, now) = server(Config::default());
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, b"abc"));
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 5, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 5, b"def"));
    feed(&mut s, now, wire(Version::V1, Cmd::Fin, 5, b""));
    let a = s.accept().unwrap();
    let b = s.accept().unwrap();
    s.handle_eof();
    assert_eq!(s.end_reason(), Some(&SessionEnd::PeerClosed));
    let mut buf = [0u8; 10];
    assert_eq!(s.read(a, &mut buf), Ok(3));
    assert_eq!(s.read(a, &mut buf), Err(StreamError::SessionEnded));
    // A stream the peer finished ends cleanly.
    assert_eq!(s.read(b, &mut buf), Ok(3));
    assert_eq!(s.read(b, &mut buf), Ok(0));
    assert_eq!(s.write(a, b"x"), Err(StreamError::SessionEnded));
    assert!(s.poll_transmit(now).is_none());
}

// ---------------------------------------------------------------- bad input

#[test]
fn malformed_frames_end_the_session_with_a_named_error() {
    let cases: Vec<(Config, Bytes, ProtocolError)> = vec![
        (
            Config::default(),
            raw(2, 0, 0, 3),
            ProtocolError::VersionMismatch { ours: 1, theirs: 2 },
        ),
        (
            v2(),
            raw(1, 0, 0, 3),
            ProtocolError::VersionMismatch { ours: 2, theirs: 1 },
        ),
        (
            Config::default(),
            raw(1, 9, 0, 3),
            ProtocolError::UnknownCommand { cmd: 9 },
        ),
        (
            Config::default(),
            raw(1, 0, 4, 3),
            ProtocolError::UnexpectedPayload {
                cmd: Cmd::Syn,
                len: 4,
            },
        ),
        (
            Config::default(),
            raw(1, 1, 1, 3),
            ProtocolError::UnexpectedPayload {
                cmd: Cmd::Fin,
                len: 1,
            },
        ),
        (
            Config::default(),
            raw(1, 3, 2, 0),
            ProtocolError::UnexpectedPayload {
                cmd: Cmd::Nop,
                len: 2,
            },
        ),
        (
            Config::default(),
            raw(1, 4, 8, 3),
            ProtocolError::UpdInVersion1 {
                stream_id: StreamId(3),
            },
        ),
        (
            v2(),
            raw(2, 4, 4, 3),
            ProtocolError::BadUpdLength { len: 4 },
        ),
        (
            Config::default(),
            raw(1, 0, 0, 0),
            ProtocolError::SynForStreamZero,
        ),
    ];
    for (config, bytes, expected) in cases {
        let (mut s, now) = server(config);
        // An open stream with a pending write: everything must end with the session.
        let mine = s.open().unwrap();
        s.write(mine, b"pending").unwrap();
        let left = feed(&mut s, now, bytes);
        assert!(left.is_empty(), "input after the end is dropped");
        assert_eq!(
            s.end_reason(),
            Some(&SessionEnd::Protocol(expected.clone()))
        );
        assert!(events(&mut s).contains(&Event::SessionEnded(SessionEnd::Protocol(expected))));
        assert!(s.poll_transmit(now).is_none());
        assert_eq!(s.queued_bytes(), 0);
        assert_eq!(s.read(mine, &mut [0; 4]), Err(StreamError::SessionEnded));
        assert_eq!(s.write(mine, b"x"), Err(StreamError::SessionEnded));
        assert!(!s.wants_input());
        assert_eq!(s.poll_timeout(), None);
    }
}

#[test]
fn error_messages_name_what_the_peer_did() {
    let e = SessionEnd::Protocol(ProtocolError::VersionMismatch { ours: 1, theirs: 2 });
    assert_eq!(
        e.to_string(),
        "protocol error: peer sent a version 2 frame to a version 1 session"
    );
}

#[test]
fn frames_for_unknown_streams_are_dropped_without_reply() {
    let (mut s, now) = server(v2());
    let mut input = BytesMut::new();
    for id in 1..200u32 {
        input.extend_from_slice(&wire(Version::V2, Cmd::Psh, id * 2 + 1, &[1; 100]));
        input.extend_from_slice(&wire(Version::V2, Cmd::Fin, id * 2 + 1, b""));
        input.extend_from_slice(&wire(Version::V2, Cmd::Upd, id * 2 + 1, &encode_upd(1, 2)));
    }
    assert!(feed(&mut s, now, input.freeze()).is_empty());
    assert!(!s.is_ended());
    assert!(s.poll_transmit(now).is_none());
    assert!(events(&mut s).is_empty());
    assert_eq!((s.num_streams(), s.unread_held()), (0, 0));
}

#[test]
fn empty_psh_is_ignored() {
    let (mut s, now) = server(Config::default());
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    events(&mut s);
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, b""));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.read(StreamId(3), &mut [0; 4]), Err(StreamError::Blocked));
}

#[test]
fn duplicate_syn_is_ignored() {
    let (mut s, now) = server(Config::default());
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, b"kept"));
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    assert_eq!(s.accept(), Some(StreamId(3)));
    assert_eq!(s.accept(), None);
    assert_eq!(s.stream_unread(StreamId(3)), Some(4));
    assert!(s.poll_transmit(now).is_none());
}

#[test]
fn nop_with_nonzero_id_counts_as_keep_alive() {
    let c = cfg(Config::default(), |c| {
        c.with_keep_alive_timeout(Some(Duration::from_secs(10)));
    });
    let (mut s, now) = server(c);
    feed(
        &mut s,
        now + Duration::from_secs(9),
        wire(Version::V1, Cmd::Nop, 77, b""),
    );
    s.handle_timeout(now + Duration::from_secs(12));
    assert!(!s.is_ended());
    s.handle_timeout(now + Duration::from_secs(19));
    assert_eq!(s.end_reason(), Some(&SessionEnd::KeepAliveTimeout));
}

#[test]
fn syn_with_our_parity_is_refused_with_fin() {
    let (mut s, now) = server(Config::default());
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 2, b""));
    assert_eq!(s.accept(), None);
    let out = transmits(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.cmd, out[0].0.stream_id), (Cmd::Fin, StreamId(2)));
    // Our own first stream still gets id 2 and works.
    assert_eq!(s.open(), Ok(StreamId(2)));
    assert!(!s.is_ended());
}

#[test]
fn syn_over_backlog_or_stream_limit_is_refused_and_session_goes_on() {
    for (backlog, streams) in [(2, 100), (100, 2)] {
        let (mut s, now) = server(cfg(Config::default(), |c| {
            c.with_max_accept_backlog(backlog).with_max_streams(streams);
        }));
        for id in [3, 5, 7, 9] {
            feed(&mut s, now, wire(Version::V1, Cmd::Syn, id, b""));
        }
        let fins: Vec<_> = transmits(&mut s, now)
            .into_iter()
            .map(|(h, _)| (h.cmd, h.stream_id.0))
            .collect();
        assert_eq!(fins, [(Cmd::Fin, 7), (Cmd::Fin, 9)]);
        // Data for refused streams is dropped; accepted ones work.
        feed(&mut s, now, wire(Version::V1, Cmd::Psh, 7, b"dropped"));
        feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, b"kept"));
        assert_eq!(s.stream_unread(StreamId(3)), Some(4));
        assert_eq!(s.unread_held(), 4 + crate::stream::SLOT);
    }
}

#[test]
fn refusals_of_ids_in_order_never_stop_input() {
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_accept_backlog(1).with_max_streams(2);
    }));
    let mut input = BytesMut::new();
    for id in (3u32..20_003).step_by(2) {
        input.extend_from_slice(&wire(Version::V1, Cmd::Syn, id, b""));
    }
    assert!(feed(&mut s, now, input.freeze()).is_empty());
    assert!(s.wants_input());
    let fins = transmits(&mut s, now);
    assert_eq!(fins.len(), 9_999, "every SYN but the first is refused");
    assert!(fins.iter().all(|(h, _)| h.cmd == Cmd::Fin));
    assert_eq!(fins[0].0.stream_id, StreamId(5));
    assert_eq!(fins[9_998].0.stream_id, StreamId(20_001));
}

#[test]
fn refusals_out_of_order_stop_input_instead_of_growing() {
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_accept_backlog(1).with_max_streams(2);
    }));
    let mut input = BytesMut::new();
    // 3 is admitted; 9, 5 and 13 are refused as three runs, more than a peer opening its ids
    // in order could cause with two streams: the fifth SYN waits.
    for id in [3u32, 9, 5, 13, 7] {
        input.extend_from_slice(&wire(Version::V1, Cmd::Syn, id, b""));
    }
    let left = feed(&mut s, now, input.freeze());
    assert_eq!(left.len(), 0, "the fifth header is held by the session");
    assert!(!s.wants_input());
    assert_eq!(transmits(&mut s, now).len(), 3);
    assert!(s.wants_input());
    // The held header is taken on the next call, even with no new bytes.
    assert!(feed(&mut s, now, Bytes::new()).is_empty());
    let fins = transmits(&mut s, now);
    assert_eq!(fins.len(), 1);
    assert_eq!(fins[0].0.stream_id, StreamId(7));
}

#[test]
fn held_opens_wait_for_the_backlog_instead_of_being_refused() {
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_accept_backlog(2).with_max_streams(4);
    }));
    s.set_hold_opens(true);
    let mut input = BytesMut::new();
    for id in [3u32, 5, 7, 9, 11] {
        input.extend_from_slice(&wire(Version::V1, Cmd::Syn, id, b""));
    }
    let left = feed(&mut s, now, input.freeze());
    assert_eq!(
        left.len(),
        16,
        "the last two SYNs wait in the caller's buffer"
    );
    assert!(!s.wants_input());
    assert!(transmits(&mut s, now).is_empty(), "nothing refused");
    // Accepting makes room for one more.
    assert_eq!(s.accept(), Some(StreamId(3)));
    assert!(s.wants_input());
    let left = feed(&mut s, now, left);
    assert_eq!(left.len(), 8);
    assert!(!s.wants_input());
    // Once opens are no longer held, the waiting SYNs are refused as usual, and so is one past
    // `max_streams` even while held.
    s.set_hold_opens(false);
    assert!(s.wants_input());
    assert!(feed(&mut s, now, left).is_empty());
    let fins: Vec<_> = transmits(&mut s, now)
        .into_iter()
        .map(|(h, _)| (h.cmd, h.stream_id.0))
        .collect();
    assert_eq!(fins, [(Cmd::Fin, 9), (Cmd::Fin, 11)]);
    s.set_hold_opens(true);
    assert_eq!(s.accept(), Some(StreamId(5)));
    assert_eq!(s.accept(), Some(StreamId(7)));
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 13, b""));
    assert_eq!(s.accept(), Some(StreamId(13)));
    assert!(feed(&mut s, now, wire(Version::V1, Cmd::Syn, 15, b"")).is_empty());
    let fins: Vec<_> = transmits(&mut s, now)
        .into_iter()
        .map(|(h, _)| (h.cmd, h.stream_id.0))
        .collect();
    assert_eq!(
        fins,
        [(Cmd::Fin, 15)],
        "past max_streams: refused while held"
    );
}

// ---------------------------------------------------------------- chunking and memory

#[test]
fn one_byte_chunks_and_one_big_chunk_give_the_same_result() {
    let mut input = BytesMut::new();
    input.extend_from_slice(&wire(Version::V1, Cmd::Syn, 3, b""));
    for i in 0..50u8 {
        input.extend_from_slice(&wire(Version::V1, Cmd::Psh, 3, &[i; 1000]));
        input.extend_from_slice(&wire(Version::V1, Cmd::Nop, 0, b""));
    }
    input.extend_from_slice(&wire(Version::V1, Cmd::Fin, 3, b""));
    let input = input.freeze();
    let run = |chunk: usize| {
        let (mut s, now) = server(Config::default());
        for piece in input.chunks(chunk) {
            assert!(feed(&mut s, now, Bytes::copy_from_slice(piece)).is_empty());
        }
        let mut out = vec![0u8; 60_000];
        let mut n = 0;
        while let Ok(k) = s.read(StreamId(3), &mut out[n..]) {
            if k == 0 {
                break;
            }
            n += k;
        }
        out.truncate(n);
        (out, events(&mut s))
    };
    let whole = run(input.len());
    assert_eq!(whole.0.len(), 50_000);
    assert_eq!(run(1), whole);
    assert_eq!(run(7), whole);
}

#[test]
fn v1_session_budget_stops_input_until_the_application_reads() {
    let c = cfg(Config::default(), |c| {
        c.with_max_session_unread(100_000)
            .with_max_stream_unread(65_535);
    });
    let (mut s, now) = server(c);
    let mut input = BytesMut::new();
    for id in [3u32, 5] {
        input.extend_from_slice(&wire(Version::V1, Cmd::Syn, id, b""));
    }
    for _ in 0..4 {
        input.extend_from_slice(&wire(Version::V1, Cmd::Psh, 3, &[1; 30_000]));
        input.extend_from_slice(&wire(Version::V1, Cmd::Psh, 5, &[2; 30_000]));
    }
    let left = feed(&mut s, now, input.freeze());
    assert!(!left.is_empty());
    assert!(!s.wants_input());
    assert!(s.unread_held() <= 100_000);
    // Reading stream 3 does not free room for stream 3's next frame alone: the per-stream
    // limit holds while stream 5 is full as well.
    let mut buf = vec![0u8; 200_000];
    let n = s.read(StreamId(3), &mut buf).unwrap();
    assert_eq!(n, 60_000);
    assert!(s.wants_input());
    let left = feed(&mut s, now, left);
    assert!(s.unread_held() <= 100_000);
    assert!(!left.is_empty());
}

#[test]
fn trickled_payload_allocates_only_the_frame_and_still_times_out() {
    let c = cfg(Config::default(), |c| {
        c.with_keep_alive_timeout(Some(Duration::from_secs(30)));
    });
    let (mut s, now) = server(c);
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    feed(&mut s, now, raw(1, 2, 65_535, 3).slice(..8));
    for sec in 1..40u64 {
        let t = now + Duration::from_secs(sec);
        feed(&mut s, t, Bytes::from_static(b"z"));
        s.handle_timeout(t);
    }
    assert_eq!(s.end_reason(), Some(&SessionEnd::KeepAliveTimeout));
}

// ---------------------------------------------------------------- timers

#[test]
fn keep_alive_sends_nop_every_interval() {
    let c = cfg(Config::default(), |c| {
        c.with_keep_alive_interval(Some(Duration::from_secs(10)));
    });
    let (mut s, now) = server(c);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    s.handle_timeout(now + Duration::from_secs(5));
    assert!(s.poll_transmit(now).is_none());
    for k in 1..=3u64 {
        let t = now + Duration::from_secs(10 * k);
        s.handle_timeout(t);
        let out = transmits(&mut s, t);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.cmd, out[0].0.stream_id), (Cmd::Nop, StreamId(0)));
    }
}

#[test]
fn keep_alive_timeout_counts_from_the_last_header() {
    let c = cfg(Config::default(), |c| {
        c.with_keep_alive_timeout(Some(Duration::from_secs(30)));
    });
    let (mut s, now) = server(c);
    feed(
        &mut s,
        now + Duration::from_secs(20),
        wire(Version::V1, Cmd::Nop, 0, b""),
    );
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(50)));
    s.handle_timeout(now + Duration::from_secs(49));
    assert!(!s.is_ended());
    s.handle_timeout(now + Duration::from_secs(50));
    assert_eq!(s.end_reason(), Some(&SessionEnd::KeepAliveTimeout));
    assert!(events(&mut s).contains(&Event::SessionEnded(SessionEnd::KeepAliveTimeout)));
}

#[test]
fn keep_alive_timeout_is_not_blamed_on_the_peer_while_we_stopped_reading() {
    let c = cfg(Config::default(), |c| {
        c.with_keep_alive_timeout(Some(Duration::from_secs(30)))
            .with_max_session_unread(70_000);
    });
    let (mut s, now) = server(c);
    let mut input = BytesMut::new();
    input.extend_from_slice(&wire(Version::V1, Cmd::Syn, 3, b""));
    input.extend_from_slice(&wire(Version::V1, Cmd::Psh, 3, &[0; 60_000]));
    input.extend_from_slice(&wire(Version::V1, Cmd::Psh, 3, &[0; 60_000]));
    feed(&mut s, now, input.freeze());
    assert!(!s.wants_input());
    s.handle_timeout(now + Duration::from_secs(100));
    assert!(!s.is_ended());
}

#[test]
fn idle_timeout_closes_a_quiet_stream_and_spares_a_busy_one() {
    let c = cfg(Config::default(), |c| {
        c.with_idle_timeout(Some(Duration::from_secs(60)));
    });
    let mut p = pair(c);
    let quiet = p.client.open().unwrap();
    let busy = p.client.open().unwrap();
    p.client.write(quiet, b"hi").unwrap();
    p.drive();
    for _ in 0..10 {
        p.advance(Duration::from_secs(20));
        p.client.write(busy, b"tick").unwrap();
        p.drive();
    }
    assert!(p.client_events.contains(&Event::Closed(quiet)));
    assert!(!p.client_events.contains(&Event::Closed(busy)));
    // Reads end, writes fail; the peer saw FIN.
    assert_eq!(p.client.read(quiet, &mut [0; 4]), Ok(0));
    assert_eq!(p.client.write(quiet, b"x"), Err(StreamError::Finished));
    assert!(p.server_events.contains(&Event::Finished(quiet)));
    assert_eq!(p.client.write(busy, b"x"), Ok(1));
}

#[test]
fn idle_timeout_fires_between_one_and_two_periods() {
    let c = cfg(Config::default(), |c| {
        c.with_idle_timeout(Some(Duration::from_secs(10)));
    });
    let mut p = pair(c);
    let id = p.client.open().unwrap();
    p.drive();
    let mut fired_at = None;
    for s in 1..=30u64 {
        p.advance(Duration::from_secs(1));
        if fired_at.is_none() && p.client_events.contains(&Event::Closed(id)) {
            fired_at = Some(s);
        }
    }
    let s = fired_at.expect("idle timeout fired");
    assert!((10..=20).contains(&s), "fired after {s} s");
}

#[test]
fn timers_are_off_by_default() {
    let (s, _) = server(Config::default());
    assert_eq!(s.poll_timeout(), None);
}

// ---------------------------------------------------------------- version 2 windows

#[test]
fn v2_sender_stays_within_the_initial_window_then_the_advertised_one() {
    let mut p = pair(v2());
    let id = p.client.open().unwrap();
    let big = vec![3u8; 1024 * 1024];
    let n = p.client.write(id, &big).unwrap();
    assert_eq!(n, INITIAL_PEER_WINDOW as usize);
    assert_eq!(p.client.write(id, &big), Err(StreamError::Blocked));
    p.drive();
    let sid = p.server.accept().unwrap();
    let mut buf = vec![0u8; 1000];
    p.server.read(sid, &mut buf).unwrap();
    p.drive();
    // The first read sent UPD(1000, 256 KiB): 1000 bytes of room.
    assert!(p.client_events.contains(&Event::Writable(id)));
    assert_eq!(p.client.send_window(id), Some(1000));
}

#[test]
fn v2_receiver_moves_the_edge_right_every_half_window_and_never_left() {
    let c = cfg(v2(), |c| {
        c.with_stream_window(100_000);
    });
    let (mut s, now) = server(c);
    feed(&mut s, now, wire(Version::V2, Cmd::Syn, 3, b""));
    for _ in 0..4 {
        feed(&mut s, now, wire(Version::V2, Cmd::Psh, 3, &[0; 60_000]));
    }
    let mut buf = vec![0u8; 10_000];
    let mut upds = Vec::new();
    for _ in 0..24 {
        s.read(StreamId(3), &mut buf).unwrap();
        for (h, p) in transmits(&mut s, now) {
            assert_eq!(h.cmd, Cmd::Upd);
            upds.push(crate::frame::decode_upd(&p[..].try_into().unwrap()));
        }
    }
    // The peer may send 262,144 bytes before it hears from us: no UPD until our window
    // reaches past that edge, then one every half window read.
    assert_eq!(upds, [(170_000, 100_000), (220_000, 100_000)]);
    let edges: Vec<u64> = upds
        .iter()
        .map(|(c, w)| u64::from(*c) + u64::from(*w))
        .collect();
    assert!(edges[0] >= 262_144 && edges[1] > edges[0]);
}

#[test]
fn v2_receiver_sends_upd_on_first_read_with_the_default_window() {
    let (mut s, now) = server(v2());
    feed(&mut s, now, wire(Version::V2, Cmd::Syn, 3, b""));
    feed(&mut s, now, wire(Version::V2, Cmd::Psh, 3, &[0; 60_000]));
    let mut buf = vec![0u8; 10_000];
    s.read(StreamId(3), &mut buf).unwrap();
    let t = transmits(&mut s, now);
    assert_eq!(t.len(), 1);
    let upd = crate::frame::decode_upd(&t[0].1[..].try_into().unwrap());
    assert_eq!(upd, (10_000, 262_144));
}

#[test]
fn v2_accepts_the_initial_window_before_the_peer_heard_ours_but_not_more() {
    let c = cfg(v2(), |c| {
        c.with_stream_window(65_536);
    });
    let (mut s, now) = server(c);
    feed(&mut s, now, wire(Version::V2, Cmd::Syn, 3, b""));
    for _ in 0..8 {
        feed(&mut s, now, wire(Version::V2, Cmd::Psh, 3, &[0; 32_768]));
    }
    assert!(!s.is_ended());
    assert_eq!(s.stream_unread(StreamId(3)), Some(262_144));
    feed(&mut s, now, wire(Version::V2, Cmd::Psh, 3, &[0; 1]));
    assert_eq!(
        s.end_reason(),
        Some(&SessionEnd::Protocol(ProtocolError::WindowExceeded {
            stream_id: StreamId(3),
            unread: 262_145,
            allowed: 262_144
        }))
    );
}

#[test]
fn v2_upd_frames_are_not_stuck_behind_bulk_data() {
    let mut p = pair(v2());
    let bulk = p.client.open().unwrap();
    let other = p.client.open().unwrap();
    p.drive();
    p.server.accept().unwrap();
    p.server.accept().unwrap();
    let sother = other;
    p.server.write(sother, b"data for client").unwrap();
    p.drive();
    p.client.write(bulk, &vec![0u8; 200_000]).unwrap();
    p.client.read(other, &mut [0u8; 4]).unwrap();
    let out = transmits(&mut p.client, p.now);
    assert_eq!(out[0].0.cmd, Cmd::Upd, "UPD goes ahead of queued bulk data");
}

#[test]
fn v2_a_blocked_reader_does_not_stop_another_stream() {
    let mut p = pair(v2());
    let stuck = p.client.open().unwrap();
    let moving = p.client.open().unwrap();
    p.client.write(stuck, &vec![1u8; 300_000]).unwrap_or(0);
    p.drive();
    let mut sent = 0usize;
    let mut got = 0usize;
    let chunk = vec![2u8; 65_536];
    let mut buf = vec![0u8; 65_536];
    while got < 8 * 1024 * 1024 {
        if sent < 8 * 1024 * 1024 {
            if let Ok(n) = p.client.write(moving, &chunk) {
                sent += n;
            }
        }
        p.drive();
        while let Ok(n) = p.server.read(moving, &mut buf) {
            got += n;
        }
        p.drive();
    }
    assert_eq!(got, 8 * 1024 * 1024);
    assert!(p.server.stream_unread(stuck).unwrap() <= INITIAL_PEER_WINDOW as usize);
}

#[test]
fn writable_follows_blocked_writes_on_full_queue() {
    let c = cfg(Config::default(), |c| {
        c.with_max_stream_queued(100_000)
            .with_max_session_queued(150_000);
    });
    let mut p = pair(c);
    let a = p.client.open().unwrap();
    let b = p.client.open().unwrap();
    assert_eq!(p.client.write(a, &[0u8; 120_000]), Ok(100_000));
    assert_eq!(p.client.write(a, b"x"), Err(StreamError::Blocked));
    assert_eq!(p.client.write(b, &[0u8; 120_000]), Ok(50_000));
    assert_eq!(p.client.write(b, b"x"), Err(StreamError::Blocked));
    p.drive();
    assert!(p.client_events.contains(&Event::Writable(a)));
    assert!(p.client_events.contains(&Event::Writable(b)));
}

#[test]
fn round_robin_interleaves_streams() {
    let c = cfg(Config::default(), |c| {
        c.with_max_frame_size(1000);
    });
    let (mut s, now) = server(c);
    let a = s.open().unwrap();
    let b = s.open().unwrap();
    s.write(a, &[0u8; 3000]).unwrap();
    s.write(b, &[0u8; 3000]).unwrap();
    s.shutdown(a).unwrap();
    let order: Vec<_> = transmits(&mut s, now)
        .into_iter()
        .map(|(h, _)| (h.cmd, h.stream_id.0))
        .collect();
    assert_eq!(
        order,
        [
            (Cmd::Syn, 2),
            (Cmd::Syn, 4),
            (Cmd::Psh, 2),
            (Cmd::Psh, 4),
            (Cmd::Psh, 2),
            (Cmd::Psh, 4),
            (Cmd::Psh, 2),
            (Cmd::Fin, 2),
            (Cmd::Psh, 4),
        ]
    );
}

// ---------------------------------------------------------------- found in review

#[test]
fn v2_window_blocked_writer_is_woken_even_when_the_session_queue_was_full() {
    let c = cfg(v2(), |c| {
        c.with_max_stream_queued(300_000)
            .with_max_session_queued(300_000);
    });
    let (mut s, now) = server(c);
    let a = s.open().unwrap();
    let b = s.open().unwrap();
    let cc = s.open().unwrap();
    assert_eq!(s.write(a, &vec![0; 262_144]), Ok(262_144));
    let _ = transmits(&mut s, now);
    assert_eq!(s.write(a, b"x"), Err(StreamError::Blocked));
    assert_eq!(s.write(b, &vec![0; 262_144]), Ok(262_144));
    assert_eq!(s.write(cc, &vec![0; 37_856]), Ok(37_856));
    feed(
        &mut s,
        now,
        wire(Version::V2, Cmd::Upd, a.0, &encode_upd(262_144, 65_536)),
    );
    assert!(!events(&mut s).contains(&Event::Writable(a)));
    let _ = transmits(&mut s, now);
    assert!(events(&mut s).contains(&Event::Writable(a)));
    assert_eq!(s.send_window(a), Some(65_536));
}

#[test]
fn idle_timeout_never_cuts_off_unread_or_queued_data() {
    let c = cfg(Config::default(), |c| {
        c.with_idle_timeout(Some(Duration::from_secs(10)));
    });
    let (mut s, now) = server(c);
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, &[1; 30_000]));
    let id = s.accept().unwrap();
    let mut got = 0;
    let mut buf = [0u8; 1000];
    for sec in 1..=60u64 {
        s.handle_timeout(now + Duration::from_secs(sec));
        match s.read(id, &mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(StreamError::Blocked) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 30_000, "all data read before the stream expired");
    assert!(events(&mut s).contains(&Event::Closed(id)));
}

#[test]
fn idle_timeout_never_cuts_off_a_frame_that_is_arriving() {
    let c = cfg(Config::default(), |c| {
        c.with_idle_timeout(Some(Duration::from_secs(10)));
    });
    let (mut s, now) = server(c);
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    let id = s.accept().unwrap();
    // The header and one byte, then a byte a second for a minute: six idle periods.
    let frame = wire(Version::V1, Cmd::Psh, 3, &[7; 1000]);
    feed(&mut s, now, frame.slice(..9));
    for sec in 1..=60u64 {
        let at = now + Duration::from_secs(sec);
        s.handle_timeout(at);
        let i = 8 + sec as usize;
        feed(&mut s, at, frame.slice(i..i + 1));
    }
    s.handle_timeout(now + Duration::from_secs(61));
    feed(&mut s, now + Duration::from_secs(61), frame.slice(69..));
    assert!(!events(&mut s).contains(&Event::Closed(id)));
    let mut buf = [0u8; 2000];
    assert_eq!(s.read(id, &mut buf), Ok(1000), "the whole frame is read");
    assert!(buf[..1000].iter().all(|b| *b == 7));
}

#[test]
fn accept_never_returns_a_stream_released_before_it_was_accepted() {
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_accept_backlog(1);
    }));
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    s.close_stream(StreamId(3));
    let _ = transmits(&mut s, now);
    assert_eq!(s.num_streams(), 0);
    assert_eq!(s.accept(), None);
    // The backlog is free again.
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 5, b""));
    assert_eq!(s.accept(), Some(StreamId(5)));
}

#[test]
fn no_finished_event_after_closed() {
    let c = cfg(Config::default(), |c| {
        c.with_idle_timeout(Some(Duration::from_secs(1)));
    });
    let (mut s, now) = server(c);
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    s.handle_timeout(now + Duration::from_secs(5));
    assert!(events(&mut s).contains(&Event::Closed(StreamId(3))));
    feed(&mut s, now, wire(Version::V1, Cmd::Fin, 3, b""));
    assert!(events(&mut s).is_empty());
}

#[test]
fn idle_deadlines_stay_bounded_under_stream_turnover() {
    let c = cfg(Config::default(), |c| {
        c.with_idle_timeout(Some(Duration::from_secs(3600)));
    });
    let (mut s, now) = server(c);
    for i in 0..10_000u32 {
        let id = 3 + 2 * i;
        feed(&mut s, now, wire(Version::V1, Cmd::Syn, id, b""));
        feed(&mut s, now, wire(Version::V1, Cmd::Fin, id, b""));
        let got = s.accept().unwrap();
        s.close_stream(got);
        let _ = transmits(&mut s, now);
    }
    assert_eq!(s.num_streams(), 0);
    assert!(s.idle.len() < 200, "{} idle deadlines kept", s.idle.len());
}

#[test]
fn shutdown_again_after_the_session_ended_is_ok_once_fin_was_asked_for() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.client.shutdown(id).unwrap();
    p.drive();
    p.client.handle_eof();
    assert_eq!(p.client.shutdown(id), Ok(()));
    let other = p.server.open().unwrap();
    p.server.handle_eof();
    assert_eq!(p.server.shutdown(other), Err(StreamError::SessionEnded));
}

#[test]
fn close_with_a_full_accept_queue_costs_linear_time() {
    const N: u32 = 65_536;
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_streams(N as usize)
            .with_max_accept_backlog(N as usize);
    }));
    let mut input = BytesMut::new();
    for i in 0..N {
        input.extend_from_slice(&wire(Version::V1, Cmd::Syn, 3 + 2 * i, b""));
    }
    feed(&mut s, now, input.freeze());
    assert_eq!(s.num_streams(), N as usize);
    let before = s.queue_visits();
    s.close();
    let fins = transmits(&mut s, now);
    assert_eq!(fins.len(), N as usize);
    let visits = s.queue_visits() - before;
    assert!(visits <= 4 * u64::from(N), "{visits} queue visits");
}

#[test]
fn releasing_writers_blocked_on_the_session_queue_costs_linear_time() {
    const N: usize = 65_536;
    let p_cfg = cfg(Config::default(), |c| {
        c.with_max_streams(N + 1)
            .with_max_stream_queued(1)
            .with_max_session_queued(1);
    });
    let mut s = Session::new(Role::Client, p_cfg, Instant::now()).unwrap();
    let first = s.open().unwrap();
    assert_eq!(s.write(first, b"x"), Ok(1));
    let ids: Vec<StreamId> = (0..N).map(|_| s.open().unwrap()).collect();
    for id in &ids {
        assert_eq!(s.write(*id, b"y"), Err(StreamError::Blocked));
    }
    let before = s.queue_visits();
    for id in &ids {
        s.close_stream(*id);
    }
    let visits = s.queue_visits() - before;
    assert!(visits <= 4 * N as u64, "{visits} queue visits");
}

#[test]
fn the_stream_table_shrinks_after_a_burst() {
    const N: u32 = 65_536;
    let mut p = pair(cfg(Config::default(), |c| {
        c.with_max_accept_backlog(N as usize);
    }));
    let idle = p.client.table_capacity();
    let ids: Vec<StreamId> = (0..N).map(|_| p.client.open().unwrap()).collect();
    p.drive();
    while p.server.accept().is_some() {}
    assert!(p.client.table_capacity() >= N as usize);
    for id in ids {
        p.client.close_stream(id);
        p.server.close_stream(id);
    }
    p.drive();
    assert_eq!((p.client.num_streams(), p.server.num_streams()), (0, 0));
    for s in [&p.client, &p.server] {
        assert!(
            s.table_capacity() <= 2 * idle.max(64),
            "{} entries kept",
            s.table_capacity()
        );
    }
}

#[test]
fn an_empty_zero_copy_write_leaves_the_fin_due() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    assert_eq!(p.client.write_bytes(id, &mut Bytes::new()), Ok(0));
    assert_eq!(p.client.write(id, b""), Ok(0));
    p.client.shutdown(id).unwrap();
    p.drive();
    let got = p.server.accept().unwrap();
    assert_eq!(p.server.read(got, &mut [0u8; 4]), Ok(0), "FIN arrived");
}

#[test]
fn read_chunk_of_zero_takes_nothing() {
    let mut p = pair(Config::default());
    let id = p.client.open().unwrap();
    p.drive();
    let got = p.server.accept().unwrap();
    assert_eq!(p.server.read_chunk(got, 0), Err(StreamError::Blocked));
    p.client.write(id, b"abc").unwrap();
    p.drive();
    assert_eq!(p.server.read_chunk(got, 0), Ok(Some(Bytes::new())));
    assert_eq!(p.server.stream_unread(got), Some(3));
    assert_eq!(
        p.server.read_chunk(got, 2),
        Ok(Some(Bytes::from_static(b"ab")))
    );
    p.client.shutdown(id).unwrap();
    p.drive();
    assert_eq!(
        p.server.read_chunk(got, 9),
        Ok(Some(Bytes::from_static(b"c")))
    );
    assert_eq!(p.server.read_chunk(got, 0), Ok(Some(Bytes::new())));
    assert_eq!(p.server.read_chunk(got, 9), Ok(None));
}

#[test]
fn a_held_syn_is_refused_once_nothing_was_accepted_for_the_stall_timeout() {
    let stall = Duration::from_millis(500);
    let (mut s, now) = server(cfg(Config::default(), |c| {
        c.with_max_accept_backlog(1)
            .with_accept_stall_timeout(stall);
    }));
    s.set_hold_opens(true);
    let mut input = BytesMut::new();
    for id in [3u32, 5, 7] {
        input.extend_from_slice(&wire(Version::V1, Cmd::Syn, id, b""));
    }
    let left = feed(&mut s, now, input.freeze());
    assert!(s.is_holding_open() && !s.wants_input());
    assert_eq!(s.poll_timeout(), Some(now + stall));
    // An accept in time makes room: the held SYN is taken, the next one held, the timer
    // starts again from the next hold.
    let later = now + Duration::from_millis(400);
    assert_eq!(s.accept(), Some(StreamId(3)));
    assert_eq!(s.poll_timeout(), None);
    let left = feed(&mut s, later, left);
    assert!(s.is_holding_open());
    assert_eq!(s.poll_timeout(), Some(later + stall));
    // Nothing accepted for the timeout: the held SYN and those after it are refused.
    s.handle_timeout(later + stall);
    assert!(s.wants_input() && !s.is_holding_open());
    assert!(feed(&mut s, later + stall, left).is_empty());
    let out = transmits(&mut s, later + stall);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.cmd, out[0].0.stream_id), (Cmd::Fin, StreamId(7)));
    // Accepting again brings holding back.
    assert_eq!(s.accept(), Some(StreamId(5)));
    feed(&mut s, later + stall, wire(Version::V1, Cmd::Syn, 9, b""));
    feed(&mut s, later + stall, wire(Version::V1, Cmd::Syn, 11, b""));
    assert!(s.is_holding_open());
}

// ---------------------------------------------------------------- frames straddling reads

/// A version-2 server with stream 3 accepted, and a PSH of 40,000 bytes for it cut after
/// `cut` bytes of its payload: the first part is readable before the second arrives, without
/// a copy, and reads the same sizes give the same windows, UPDs and memory as the frame fed
/// whole.
#[test]
fn a_frame_straddling_two_reads_is_delivered_as_two_pieces() {
    const LEN: usize = 40_000;
    let payload: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    let frame = wire(Version::V2, Cmd::Psh, 3, &payload);
    let cut = 25_000;
    let id = StreamId(3);
    // What each step leaves: the bytes read, the windows, the memory held, the frames out.
    type Step = (Bytes, usize, usize, Vec<(Header, Bytes)>);
    let run = |chunks: Vec<Bytes>| -> Vec<Step> {
        let (mut s, now) = server(v2());
        feed(&mut s, now, wire(Version::V2, Cmd::Syn, 3, b""));
        assert_eq!(s.accept(), Some(id));
        let mut steps = Vec::new();
        let mut chunks = chunks.into_iter();
        for max in [cut, LEN] {
            if let Some(c) = chunks.next() {
                assert!(feed(&mut s, now, c).is_empty());
                assert!(events(&mut s).contains(&Event::Readable(id)));
            }
            let got = s.read_chunk(id, max).unwrap().unwrap();
            steps.push((
                got,
                s.credit_owed(),
                s.unread_held(),
                transmits(&mut s, now),
            ));
        }
        assert_eq!(s.read_chunk(id, LEN), Err(StreamError::Blocked));
        steps
    };
    let whole = run(vec![frame.clone()]);
    let (first, second) = (frame.slice(..8 + cut), frame.slice(8 + cut..));
    let split = run(vec![first.clone(), second]);
    assert_eq!(split, whole);
    assert_eq!(&split[0].0[..], &payload[..cut]);
    assert_eq!(&split[1].0[..], &payload[cut..]);
    assert_eq!(
        split[0].0.as_ptr(),
        first[8..].as_ptr(),
        "the first piece is the input itself"
    );
    // The first read was the stream's first: its UPD went out while the rest was arriving.
    assert_eq!(split[0].3.len(), 1);
    assert_eq!(split[0].3[0].0.cmd, Cmd::Upd);
    // Nothing is held once all is read; what the first step held was the reservation for the
    // rest of the frame, as much as the rest of the whole frame held.
    assert_eq!(split[1].2, 0);
    // The rest may be kept without copying: it is charged the read buffer it may pin.
    let pin = 1 + crate::stream::PIN_EXTRA;
    assert_eq!(split[0].2, pin * (LEN - cut) + crate::stream::SLOT);
}

/// Version 1 checks its budget at the header for the frame in one queue slot: with the
/// smallest budget, a full frame's first piece cannot have a slot of its own and is kept back
/// until the rest arrives; with room to spare it goes at once.
#[test]
fn v1_a_piece_goes_early_only_if_the_budget_has_room_for_its_slot() {
    let frame = wire(Version::V1, Cmd::Psh, 3, &[4; 65_535]);
    let smallest = 65_535 + 64;
    for (budget, early) in [(smallest, false), (smallest + 1024, true)] {
        let (mut s, now) = server(cfg(Config::default(), |c| {
            c.with_max_session_unread(budget);
        }));
        feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
        let id = s.accept().unwrap();
        assert!(feed(&mut s, now, frame.slice(..30_000)).is_empty());
        assert!(s.unread_held() <= budget);
        assert_eq!(s.stream_unread(id), Some(if early { 29_992 } else { 0 }));
        assert!(feed(&mut s, now, frame.slice(30_000..)).is_empty());
        assert!(s.unread_held() <= budget);
        assert_eq!(s.stream_unread(id), Some(65_535));
        let mut buf = vec![0u8; 70_000];
        assert_eq!(s.read(id, &mut buf), Ok(65_535));
        assert_eq!(s.unread_held(), 0);
    }
}

/// A stream released while a frame for it is half received: the memory it held and the room
/// reserved for the rest are given back at once, and the rest is read and dropped.
#[test]
fn a_stream_released_mid_frame_drops_the_rest_of_the_frame() {
    let (mut s, now) = server(Config::default());
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 5, b""));
    let frame = wire(Version::V1, Cmd::Psh, 3, &[1; 50_000]);
    assert!(feed(&mut s, now, frame.slice(..20_000)).is_empty());
    assert_eq!(s.stream_unread(StreamId(3)), Some(19_992));
    s.close_stream(StreamId(3));
    assert_eq!(s.unread_held(), 0);
    let mut rest = BytesMut::from(&frame[20_000..]);
    rest.extend_from_slice(&wire(Version::V1, Cmd::Psh, 5, b"next"));
    assert!(feed(&mut s, now, rest.freeze()).is_empty());
    assert!(!s.is_ended());
    assert_eq!(s.stream_unread(StreamId(5)), Some(4));
    assert_eq!(s.unread_held(), 4 + crate::stream::SLOT);
}

#[test]
fn a_draining_session_refuses_new_streams_both_ways_and_lets_open_ones_finish() {
    let mut p = pair(Config::default());
    let ours = p.client.open().unwrap();
    p.client.write(ours, b"request").unwrap();
    p.drive();
    let theirs = p.server.accept().unwrap();
    p.client.drain();
    assert!(p.client.is_draining());
    assert_eq!(p.client.open(), Err(OpenError::Draining));
    // The peer's new stream gets a FIN: a clean end, no data.
    let late = p.server.open().unwrap();
    p.server.write(late, b"too late").unwrap();
    p.drive();
    assert_eq!(p.client.accept(), None);
    let mut buf = [0u8; 16];
    assert_eq!(p.server.read(late, &mut buf), Ok(0));
    // The open stream goes on both ways, and the session is drained once it is over and read.
    p.server.write(theirs, b"reply").unwrap();
    p.server.shutdown(theirs).unwrap();
    p.client.shutdown(ours).unwrap();
    p.drive();
    assert!(!p.client.is_drained(), "the reply is unread");
    assert_eq!(read_all(&mut p, Side::Client, ours), b"reply");
    assert!(p.client.is_drained());
    assert!(!p.client.is_closing());
}

#[test]
fn a_stream_that_stops_reading_drops_what_arrives_and_keeps_the_window_moving() {
    for c in [Config::default(), v2()] {
        let mut p = pair(c);
        let id = p.client.open().unwrap();
        p.client.write(id, b"hello").unwrap();
        p.drive();
        let sid = p.server.accept().unwrap();
        p.server.write(sid, &[1u8; 1000]).unwrap();
        p.drive();
        p.client.stop_reading(id).unwrap();
        assert_eq!(p.client.stream_unread(id), Some(0));
        // Far more than a version-2 window (and a version-1 stream's unread limit): all of it
        // goes through, and nothing is held.
        let mut sent = 0;
        for _ in 0..4000 {
            match p.server.write(sid, &[2u8; 4096]) {
                Ok(n) => sent += n,
                Err(StreamError::Blocked) => {}
                Err(e) => panic!("{e:?}"),
            }
            p.drive();
            if sent >= 4 << 20 {
                break;
            }
        }
        assert!(sent >= 4 << 20, "the writer got stuck after {sent} bytes");
        assert_eq!(p.client.stream_unread(id), Some(0));
        assert_eq!(p.client.unread_held(), 0);
        // Our direction still works.
        p.client.write(id, b" world").unwrap();
        p.client.shutdown(id).unwrap();
        p.drive();
        assert_eq!(read_all(&mut p, Side::Server, sid), b"hello world");
    }
}

#[test]
fn stats_add_up_against_a_transfer_of_known_size() {
    const SIZE: usize = 1 << 20;
    let mut p = pair(v2());
    let id = p.client.open().unwrap();
    let data = vec![3u8; SIZE];
    let mut written = 0;
    let mut waited = false;
    let mut received = 0;
    while written < SIZE {
        match p.client.write(id, &data[written..]) {
            Ok(n) => written += n,
            Err(StreamError::Blocked) => {
                // The window is shut: a second passes before the reader makes room.
                if p.client.stream_stats(id).unwrap().peer_window == Some(0) {
                    p.advance(Duration::from_secs(1));
                    waited = true;
                }
                p.drive();
                if let Some(sid) = p.server.accept() {
                    assert_eq!(sid, id);
                }
                let mut sink = vec![0u8; SIZE];
                while let Ok(n @ 1..) = p.server.read(id, &mut sink) {
                    received += n;
                }
                p.drive();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    p.client.shutdown(id).unwrap();
    p.drive();
    received += read_all(&mut p, Side::Server, id).len();
    assert_eq!(received, SIZE);
    p.drive();
    let (c, s) = (p.client.stats(), p.server.stats());
    let frame = Config::default().max_frame_size();
    assert_eq!(c.payload_bytes_sent, SIZE as u64);
    assert_eq!(c.payload_frames_sent, SIZE.div_ceil(frame) as u64);
    assert_eq!(s.payload_bytes_received, SIZE as u64);
    assert_eq!(s.payload_frames_received, c.payload_frames_sent);
    // Everything sent arrived: the wire counts agree both ways, and the client's is its
    // payload, its data frames' headers, its SYN and FIN.
    assert_eq!(c.wire_bytes_sent, s.wire_bytes_received);
    assert_eq!(s.wire_bytes_sent, c.wire_bytes_received);
    assert_eq!(
        c.wire_bytes_sent,
        (SIZE + crate::frame::HEADER_LEN * (SIZE.div_ceil(frame) + 2)) as u64
    );
    assert!(s.wire_bytes_sent > 0, "the server's UPDs");
    assert_eq!(
        (c.streams_opened, s.streams_accepted, s.streams_refused),
        (1, 1, 0)
    );
    assert_eq!(c.keep_alives_sent, 0);
    // The server has not finished the stream: both ends still know it.
    let cs = p.client.stream_stats(id).unwrap();
    let ss = p.server.stream_stats(id).unwrap();
    assert_eq!(cs.bytes_sent, SIZE as u64);
    assert!(waited, "the transfer never waited for the window");
    assert!(cs.window_wait >= Duration::from_secs(1), "{cs:?}");
    assert_eq!(ss.bytes_received, SIZE as u64);
    assert_eq!(ss.unread_bytes, 0);
    assert_eq!(ss.peer_window, Some(u64::from(crate::INITIAL_PEER_WINDOW)));
}

#[test]
fn an_auto_version_server_speaks_the_version_of_the_clients_first_frame() {
    for v in [Version::V1, Version::V2] {
        let client = cfg(Config::default(), |c| {
            c.with_version(v);
        });
        let server = cfg(Config::default(), |c| {
            c.with_auto_version(true)
                .with_keep_alive_interval(Some(Duration::from_secs(1)));
        });
        let mut p = Pair::new(client, server, Instant::now()).unwrap();
        assert_eq!(p.client.version(), Some(v));
        assert_eq!(p.server.version(), None);
        // Before the client's first frame the server sends nothing: not its keep-alive, not
        // the SYN of a stream it opens.
        let early = p.server.open().unwrap();
        p.server.write(early, b"early").unwrap();
        p.advance(Duration::from_secs(3));
        assert!(!p.server.has_output());
        assert_eq!(p.transmit(Side::Server), 0);
        let id = p.client.open().unwrap();
        p.client.write(id, b"hello").unwrap();
        p.drive();
        assert_eq!(p.server.version(), Some(v));
        assert_eq!(p.server.accept(), Some(id));
        assert_eq!(p.client.accept(), Some(early));
        assert_eq!(read_all_now(&mut p, Side::Client, early), b"early");
        let mut buf = [0u8; 5];
        assert_eq!(p.server.read(id, &mut buf), Ok(5));
        assert_eq!(&buf, b"hello");
    }
    // A client cannot wait for a version: it sends the first frame.
    let auto = cfg(Config::default(), |c| {
        c.with_auto_version(true);
    });
    assert!(Session::new(Role::Client, auto, Instant::now()).is_err());
}

/// What `side` can read of `id` now, without waiting for its end.
fn read_all_now(p: &mut Pair, side: Side, id: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = p.session(side).read(id, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn the_stalled_stream_timeout_resets_the_stream_that_holds_input_back() {
    let c = cfg(Config::default(), |c| {
        c.with_max_stream_unread(64 * 1024)
            .with_max_session_unread(1 << 20)
            .with_stalled_stream_timeout(Some(Duration::from_secs(5)));
    });
    let mut p = pair(c);
    let slow = p.client.open().unwrap();
    let fast = p.client.open().unwrap();
    // The server never reads `slow`: its frames stop the input at its 64 KiB limit, and
    // `fast`'s data behind them waits too.
    p.client.write(slow, &[1u8; 200 * 1024]).unwrap();
    p.drive();
    p.client.write(fast, b"behind").unwrap();
    p.drive();
    assert_eq!(p.server.accept(), Some(slow));
    assert!(!p.server.wants_input());
    p.advance(Duration::from_secs(4));
    p.drive();
    assert!(!p.server.wants_input(), "not before the timeout");
    p.advance(Duration::from_secs(1));
    p.drive();
    // `slow` is reset: its reader hears so, its data is dropped, and input goes on.
    let mut buf = [0u8; 16];
    assert_eq!(
        p.server.read(slow, &mut buf),
        Err(StreamError::Reset(crate::ResetReason::StalledReader))
    );
    assert_eq!(p.server.accept(), Some(fast));
    assert_eq!(p.server.read(fast, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"behind");
    // The client sees the FIN of the reset stream.
    p.client.shutdown(slow).ok();
    assert_eq!(read_all(&mut p, Side::Client, slow), b"");
    // Without the setting, input waits for the reader however long.
    let mut q = pair(cfg(Config::default(), |c| {
        c.with_max_stream_unread(64 * 1024);
    }));
    let s = q.client.open().unwrap();
    q.client.write(s, &[1u8; 200 * 1024]).unwrap();
    q.drive();
    q.advance(Duration::from_secs(3600));
    q.drive();
    assert!(!q.server.wants_input());
}

#[test]
fn at_the_session_limit_the_stalled_stream_timeout_resets_the_largest_holder() {
    let c = cfg(Config::default(), |c| {
        c.with_max_stream_unread(1 << 20)
            .with_max_session_unread(160 * 1024)
            .with_stalled_stream_timeout(Some(Duration::from_secs(1)));
    });
    let mut p = pair(c);
    let (big, small, late) = (
        p.client.open().unwrap(),
        p.client.open().unwrap(),
        p.client.open().unwrap(),
    );
    p.client.write(big, &[1u8; 100 * 1024]).unwrap();
    p.client.write(small, &[2u8; 40 * 1024]).unwrap();
    p.drive();
    p.client.write(late, &[3u8; 64 * 1024]).unwrap();
    p.drive();
    assert!(!p.server.wants_input());
    p.advance(Duration::from_secs(1));
    p.drive();
    let mut buf = vec![0u8; 128 * 1024];
    assert_eq!(
        p.server.read(big, &mut buf),
        Err(StreamError::Reset(crate::ResetReason::StalledReader))
    );
    assert_eq!(p.server.read(small, &mut buf), Ok(40 * 1024));
    assert_eq!(p.server.read(late, &mut buf), Ok(64 * 1024));
}

#[test]
fn a_small_payload_merged_into_a_kept_tail_lowers_the_memory_held() {
    // A kept (pinned) payload read down to a small tail, then a small payload: the two merge
    // into one copied chunk, and the stream holds less than before the second arrived.
    let (mut s, now) = server(Config::default());
    let id = StreamId(3);
    feed(&mut s, now, wire(Version::V1, Cmd::Syn, 3, b""));
    assert_eq!(s.accept(), Some(id));
    let big: Vec<u8> = (0..20_000).map(|i| (i % 251) as u8).collect();
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, &big));
    let pinned_held = s.unread_held();
    assert!(
        pinned_held > 20_000,
        "the payload is kept, its page charged"
    );
    assert_eq!(s.read_chunk(id, 19_900).unwrap().unwrap().len(), 19_900);
    let tail_held = s.unread_held();
    feed(&mut s, now, wire(Version::V1, Cmd::Psh, 3, &[7u8; 50]));
    assert!(s.unread_held() < tail_held, "merging unpins the tail");
    let mut rest = Vec::new();
    while let Ok(Some(c)) = s.read_chunk(id, 1000) {
        rest.extend_from_slice(&c);
    }
    assert_eq!(&rest[..100], &big[19_900..]);
    assert_eq!(&rest[100..], &[7u8; 50]);
    assert_eq!(s.unread_held(), 0);
}
