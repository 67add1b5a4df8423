//! Held memory is measured, not just counted: a counting allocator checks that what a session
//! really allocates for unread data stays within what it charges to the receive budget.
//!
//! This file is a test binary of its own, and its tests count what their own thread allocates
//! (`thread_live()`): the test harness's other threads allocate meanwhile.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smux_proto::{Cmd, Config, Header, Role, Session, StreamId, Version};
use smux_test_support::alloc::{serial, thread_live, CountingAlloc};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn frames(cmd: Cmd, ids: impl Iterator<Item = u32>, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    for id in ids {
        let h = Header::new(Version::V1, cmd, payload.len() as u16, StreamId(id));
        b.extend_from_slice(&h.encode());
        b.extend_from_slice(payload);
    }
    b.freeze()
}

fn drain(s: &mut Session) {
    while s.poll_event().is_some() {}
}

#[test]
fn ten_thousand_one_byte_payloads_stay_within_the_budget() {
    let _turn = serial();
    const STREAMS: u32 = 10_000;
    let config = {
        let mut c = Config::default();
        c.with_max_streams(20_000)
            .with_max_accept_backlog(20_000)
            .with_max_session_unread(512 * 1024);
        c
    };
    let budget = config.max_session_unread();
    let now = Instant::now();
    let mut s = Session::new(Role::Server, config, now).unwrap();
    let ids = || (0..STREAMS).map(|i| 3 + 2 * i);
    s.handle_input(now, &mut frames(Cmd::Syn, ids(), b""));
    while s.accept().is_some() {}
    drain(&mut s);

    // One input buffer holding all the payloads, as a socket read would give them. It is
    // made and dropped inside the measurement: the session may free it itself.
    let before = thread_live();
    let mut input = frames(Cmd::Psh, ids(), b"x");
    s.handle_input(now, &mut input);
    drain(&mut s);
    assert!(input.is_empty());
    drop(input);
    let held = thread_live() - before;

    assert!(input_is_consumed(&s, STREAMS));
    eprintln!("measured {held} bytes, charged {}", s.unread_held());
    let charged = s.unread_held();
    assert!(
        charged <= budget,
        "charged {charged} over the budget {budget}"
    );
    assert!(
        held >= STREAMS as isize,
        "measured {held} bytes: the payloads must be in there"
    );
    assert!(
        held as usize <= charged,
        "the session allocated {held} bytes for unread data but charged only {charged}"
    );
}

fn input_is_consumed(s: &Session, streams: u32) -> bool {
    (0..streams).all(|i| s.stream_unread(StreamId(3 + 2 * i)) == Some(1))
}

#[test]
fn a_peer_cannot_make_tiny_payloads_exceed_the_budget() {
    let _turn = serial();
    let config = {
        let mut c = Config::default();
        c.with_max_session_unread(256 * 1024);
        c
    };
    let budget = config.max_session_unread();
    let now = Instant::now();
    let mut s = Session::new(Role::Server, config, now).unwrap();
    s.handle_input(now, &mut frames(Cmd::Syn, std::iter::once(3), b""));
    drain(&mut s);
    let before = thread_live();
    // More one-byte payloads than the budget holds, even coalesced.
    let mut input = frames(Cmd::Psh, std::iter::repeat_n(3, 400_000), b"y");
    s.handle_input(now, &mut input);
    drain(&mut s);
    assert!(
        !input.is_empty(),
        "the session stopped taking input at its budget"
    );
    drop(input);
    let held = thread_live() - before;
    assert!(!s.wants_input());
    eprintln!("measured {held} bytes, charged {}", s.unread_held());
    assert!(s.unread_held() <= budget);
    assert!(
        held as usize <= budget,
        "allocated {held} > budget {budget}"
    );
}
