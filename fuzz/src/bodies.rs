//! The `decode` and `session` fuzz target bodies, over the public API of `smux-proto`. Each
//! panics only on a real bug: a crash here is a bug in the core, never expected.
//!
//! Plain Rust with no libFuzzer in it, so the stable test `smux-proto/tests/fuzz_corpus.rs`
//! includes this file and replays the corpus.

use std::time::{Duration, Instant};

use bytes::Bytes;
use smux_proto::{Config, Header, Role, Session, StreamId, Version, INITIAL_PEER_WINDOW};

// A module of the crate that includes this file (see input.rs).
use crate::input::Input;

/// Every 8-byte window of `data` decoded as a header of either version: decoding never
/// panics, and a header that decodes encodes back to the same bytes.
pub fn decode(data: &[u8]) {
    for w in data.windows(8) {
        let raw: [u8; 8] = w.try_into().expect("window of 8");
        for v in [Version::V1, Version::V2] {
            if let Ok(h) = Header::decode(&raw, v) {
                assert_eq!(h.encode(), raw, "decode/encode round trip");
                assert_eq!(h.version, v);
            }
        }
    }
}

/// Small limits, so that a short input reaches them.
fn small_config(version: Version, timers: bool) -> Config {
    {
        let mut c = Config::default();
        c.with_version(version)
            .with_max_frame_size(1024)
            .with_stream_window(65_535)
            .with_max_stream_unread(65_535)
            .with_max_session_unread(100_000)
            .with_max_accept_backlog(4)
            .with_max_streams(8)
            .with_max_stream_queued(4096)
            .with_max_session_queued(16_384)
            .with_keep_alive_interval(timers.then(|| Duration::from_secs(1)))
            .with_keep_alive_timeout(timers.then(|| Duration::from_secs(3)))
            .with_idle_timeout(timers.then(|| Duration::from_secs(2)));
        c
    }
}

/// One session, either role and version, fed arbitrary bytes (in arbitrary chunks), timer
/// ticks and application commands. Checks after every step that it holds no more than its
/// limits say and that output and events drain.
pub fn session(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(setup) = input.byte() else { return };
    let role = if setup & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let version = if setup & 2 == 0 {
        Version::V1
    } else {
        Version::V2
    };
    let config = small_config(version, setup & 4 != 0);
    let mut now = Instant::now();
    let mut s = Session::new(role, config.clone(), now).expect("valid config");
    let mut known: Vec<StreamId> = Vec::new();
    let mut pending = Bytes::new();
    let mut buf = [0u8; 2048];

    while let Some(op) = input.byte() {
        let arg = input.byte().unwrap_or(0) as usize;
        let pick = |known: &Vec<StreamId>| known.get(arg % known.len().max(1)).copied();
        match op % 10 {
            // Peer bytes, in a chunk of up to 255 bytes.
            0..=3 => {
                if pending.is_empty() {
                    pending = Bytes::copy_from_slice(input.take(arg));
                }
                if s.wants_input() || s.is_ended() {
                    s.handle_input(now, &mut pending);
                }
            }
            4 => {
                now += Duration::from_millis(arg as u64 * 20);
                s.handle_timeout(now);
            }
            5 => {
                if let Ok(id) = s.open() {
                    known.push(id);
                }
            }
            6 => {
                if let Some(id) = pick(&known) {
                    let _ = s.write(id, &buf[..arg * 8]);
                }
            }
            7 => {
                if let Some(id) = pick(&known) {
                    let _ = s.read(id, &mut buf[..arg.max(1) * 8]);
                }
            }
            8 => match arg % 4 {
                0 => {
                    if let Some(id) = pick(&known) {
                        let _ = s.shutdown(id);
                    }
                }
                1 => {
                    if let Some(id) = pick(&known) {
                        s.close_stream(id);
                    }
                }
                2 => s.close(),
                _ => s.handle_eof(),
            },
            // Accept everything waiting, or only switch holding SYNs past the backlog.
            _ => {
                s.set_hold_opens(arg & 1 == 1);
                if arg & 2 == 0 {
                    while let Some(id) = s.accept() {
                        known.push(id);
                    }
                }
            }
        }
        // Drain, as the contract says, but hand out output only on some steps so that queues
        // fill up too.
        if op & 0x80 == 0 {
            while let Some(t) = s.poll_transmit(now) {
                assert!(t.payload.len() <= config.max_frame_size().max(8));
            }
        }
        while s.poll_event().is_some() {}
        match config.version() {
            Version::V1 => assert!(s.unread_held() <= config.max_session_unread()),
            _ => assert!(
                s.credit_owed()
                    <= config.max_session_unread() + s.num_streams() * INITIAL_PEER_WINDOW as usize
            ),
        }
        assert!(s.queued_bytes() <= config.max_session_queued());
        assert!(s.num_streams() <= config.max_streams());
        assert!(
            !(s.is_holding_open() && s.wants_input()),
            "a held SYN stops input"
        );
        if s.is_ended() {
            assert_eq!(s.poll_timeout(), None, "no timers after the end");
        }
    }
}
