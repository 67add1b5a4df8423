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

/// Memory a pair of sessions holds, measured on this thread.
fn held_by(f: impl FnOnce() -> smux_proto::pair::Pair) -> (smux_proto::pair::Pair, isize) {
    let before = thread_live();
    let p = f();
    (p, thread_live() - before)
}

#[test]
fn memory_falls_back_after_a_burst_of_65536_streams() {
    let _turn = serial();
    const N: u32 = 65_536;
    let config = {
        let mut c = Config::default();
        c.with_max_accept_backlog(N as usize);
        c
    };
    let (mut p, idle) = held_by(|| {
        let mut p =
            smux_proto::pair::Pair::new(config.clone(), config.clone(), Instant::now()).unwrap();
        let id = p.client.open().unwrap();
        p.drive();
        let got = p.server.accept().unwrap();
        p.client.close_stream(id);
        p.server.close_stream(got);
        p.drive();
        p
    });
    let before = thread_live();
    let ids: Vec<StreamId> = (0..N).map(|_| p.client.open().unwrap()).collect();
    p.drive();
    let mut accepted = Vec::new();
    while let Some(id) = p.server.accept() {
        accepted.push(id);
    }
    assert_eq!(accepted.len(), N as usize);
    let at_peak = thread_live() - before;
    for (a, b) in ids.iter().zip(&accepted) {
        p.client.close_stream(*a);
        p.server.close_stream(*b);
    }
    p.drive();
    drop((ids, accepted));
    p.client_events = Default::default();
    p.server_events = Default::default();
    let after = thread_live() - before + idle;
    eprintln!("idle pair {idle} bytes, {at_peak} more at the peak, {after} after the burst");
    assert_eq!((p.client.num_streams(), p.server.num_streams()), (0, 0));
    assert!(
        after <= 2 * idle + 64 * 1024,
        "{after} bytes held after the burst, idle {idle}"
    );
}

#[test]
fn unsent_data_holds_no_more_than_the_limit_and_a_frame() {
    let _turn = serial();
    let limit = 2 * 1024 * 1024;
    let config = {
        let mut c = Config::default();
        c.with_max_stream_queued(limit)
            .with_max_session_queued(limit);
        c
    };
    let frame = config.max_frame_size();
    let now = Instant::now();
    let mut s = Session::new(Role::Client, config, now).unwrap();
    let id = s.open().unwrap();
    let _ = s.poll_transmit(now);
    let data = vec![3u8; limit];
    let before = thread_live();
    assert_eq!(s.write(id, &data), Ok(limit));
    // Half of it goes out (and is dropped, as a transport that wrote it would).
    let mut sent = 0;
    while sent < limit / 2 {
        sent += s.poll_transmit(now).unwrap().payload.len();
    }
    let held = (thread_live() - before) as usize;
    let queued = s.queued_bytes();
    eprintln!("{held} bytes held for {queued} queued");
    assert!(
        held <= queued + frame + 4096,
        "{held} bytes held for {queued} queued"
    );
    // Many small writes do not cost a piece each.
    let small = s.open().unwrap();
    let before = thread_live();
    for _ in 0..10_000 {
        assert_eq!(s.write(small, b"z"), Ok(1));
    }
    let held = (thread_live() - before) as usize;
    assert!(
        held <= 2 * 10_000 + 4096,
        "{held} bytes for 10,000 one-byte writes"
    );
}

/// Version 2 with window tuning: 64 streams read at full speed across a 50 ms round trip
/// until their windows grew, then their readers stop while the peer keeps writing. What the
/// receiving session then holds (measured as what dropping it frees, against an idle session
/// with as many streams) stays within its receive budget and one minimum window.
#[test]
fn grown_windows_whose_readers_stop_hold_the_budget_and_no_more() {
    use smux_proto::pair::Pair;
    use smux_proto::{Event, StreamError};
    use std::time::Duration;
    let _turn = serial();
    const STREAMS: usize = 64;
    let config = {
        let mut c = Config::default();
        c.with_version(Version::V2).with_window_tuning(true);
        c
    };
    let budget = config.max_session_unread();
    let pair = || {
        let mut p = Pair::new(config.clone(), config.clone(), Instant::now()).unwrap();
        p.delay = Duration::from_millis(25);
        p.link_capacity = usize::MAX;
        let ours: Vec<StreamId> = (0..STREAMS).map(|_| p.client.open().unwrap()).collect();
        let mut theirs = Vec::new();
        while theirs.len() < STREAMS {
            p.drive();
            p.advance(Duration::from_millis(1));
            while let Some(e) = p.server_events.pop_front() {
                if let Event::Opened(_) = e {
                    theirs.push(p.server.accept().unwrap());
                }
            }
        }
        p.client_events.clear();
        (p, ours, theirs)
    };
    // What a session with 64 idle streams frees when dropped.
    let (idle, _, _) = pair();
    let before = thread_live();
    drop(idle.server);
    let idle_held = before - thread_live();

    let (mut p, ours, theirs) = pair();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let starting = config.stream_window() as u64;
    for step in 0..2000 {
        let reading = step < 1000;
        // The writers keep their queues full.
        for id in &ours {
            loop {
                match p.client.write(*id, &chunk) {
                    Ok(_) => {}
                    Err(StreamError::Blocked) => break,
                    Err(e) => panic!("write: {e}"),
                }
            }
        }
        p.drive();
        if reading {
            for id in &theirs {
                while p.server.read(*id, &mut buf).is_ok_and(|n| n > 0) {}
            }
            p.drive();
        }
        p.server_events.clear();
        p.client_events.clear();
        p.advance(Duration::from_millis(1));
        if step == 999 {
            let grown = theirs
                .iter()
                .filter(|id| p.server.stream_stats(**id).unwrap().receive_window > Some(starting))
                .count();
            assert!(grown > 0, "no window grew");
            eprintln!("{grown} of {STREAMS} windows grew");
        }
    }
    let unread: usize = theirs
        .iter()
        .map(|id| p.server.stream_unread(*id).unwrap())
        .sum();
    let before = thread_live();
    drop(p.server);
    let held = (before - thread_live() - idle_held) as usize;
    eprintln!("{held} bytes held for {unread} unread; budget {budget}");
    assert!(unread > 0);
    assert!(
        held <= budget + 64 * 1024,
        "{held} bytes held, budget {budget}"
    );
}
