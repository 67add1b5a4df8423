//! Version-2 windows that tune themselves (`Config::window_tuning`), in the deterministic pair
//! with virtual time and a one-way delay of 25 ms (a 50 ms round trip). The links have no rate
//! limit: a stream's rate is its window per round trip, so a window that grows shows as
//! bytes per round trip.
//!
//! Each step of 1 ms: the writers refill their queues, frames move, the readers read (all of
//! it, or a slow reader's ration), and time moves on.

use std::time::{Duration, Instant};

use smux_proto::pair::Pair;
use smux_proto::{Config, Event, StreamError, StreamId, Version};

const STEP: Duration = Duration::from_millis(1);
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn v2(tuning: bool) -> Config {
    let mut c = Config::default();
    c.with_version(Version::V2).with_window_tuning(tuning);
    c
}

/// A pair with a 25 ms one-way delay and links that hold anything.
fn delayed(c: Config) -> Pair {
    let mut p = Pair::new(c.clone(), c, Instant::now()).unwrap();
    p.delay = Duration::from_millis(25);
    p.link_capacity = usize::MAX;
    p
}

/// `n` client streams, accepted by the server.
fn open(p: &mut Pair, n: usize) -> Vec<(StreamId, StreamId)> {
    let ours: Vec<StreamId> = (0..n).map(|_| p.client.open().unwrap()).collect();
    let mut theirs = Vec::new();
    while theirs.len() < n {
        p.drive();
        p.advance(STEP);
        while let Some(e) = p.server_events.pop_front() {
            if let Event::Opened(_) = e {
                theirs.push(p.server.accept().unwrap());
            }
        }
    }
    p.client_events.clear();
    ours.into_iter().zip(theirs).collect()
}

/// One step: the client keeps every stream's queue full, frames move, the server reads up to
/// `ration` bytes of each stream. Returns the bytes the server read.
fn step(p: &mut Pair, streams: &[(StreamId, StreamId)], ration: usize) -> usize {
    let chunk = vec![0x5au8; 64 * KIB];
    for (ours, _) in streams {
        loop {
            match p.client.write(*ours, &chunk) {
                Ok(_) => {}
                Err(StreamError::Blocked) => break,
                Err(e) => panic!("write: {e}"),
            }
        }
    }
    p.drive();
    let mut read = 0;
    let mut buf = vec![0u8; 64 * KIB];
    for (_, theirs) in streams {
        let mut left = ration;
        while left > 0 {
            match p.server.read(*theirs, &mut buf[..left.min(64 * KIB)]) {
                Ok(n) if n > 0 => {
                    read += n;
                    left -= n;
                }
                _ => break,
            }
        }
    }
    p.drive();
    p.server_events.clear();
    p.client_events.clear();
    p.advance(STEP);
    read
}

fn window(p: &Pair, id: StreamId) -> usize {
    p.server.stream_stats(id).unwrap().receive_window.unwrap() as usize
}

/// Our edge on `id`: what the peer may have sent in all.
fn edge(p: &Pair, id: StreamId) -> u64 {
    let s = p.server.stream_stats(id).unwrap();
    s.bytes_received + s.advertised_window.unwrap()
}

#[test]
fn a_window_that_holds_the_peer_back_grows_and_the_stream_speeds_up() {
    let mut p = delayed(v2(true));
    let streams = open(&mut p, 1);
    let id = streams[0].1;
    let start = window(&p, id);
    assert_eq!(start, 256 * KIB);
    // The first second: the window grows; the last 200 ms of the second: bytes per RTT.
    let mut read = Vec::new();
    for _ in 0..1000 {
        read.push(step(&mut p, &streams, usize::MAX));
    }
    let grown = window(&p, id);
    assert!(grown >= 2 * MIB, "the window grew from 256 KiB to {grown}");
    let rtt = p
        .server
        .stats()
        .round_trip
        .expect("a round trip was measured");
    assert!(
        rtt >= Duration::from_millis(50) && rtt <= Duration::from_millis(52),
        "{rtt:?}"
    );
    let late: usize = read[800..].iter().sum::<usize>() / 4;
    assert!(
        late >= 4 * start,
        "{late} bytes per round trip late, against {start} for the starting window"
    );
    // The budget (32 MiB by default in version 2) bounds what is owed to the peer.
    assert!(p.server.credit_owed() <= p.server.config().max_session_unread());
}

#[test]
fn without_tuning_the_window_stays_at_its_start() {
    let mut p = delayed(v2(false));
    let streams = open(&mut p, 1);
    for _ in 0..1000 {
        step(&mut p, &streams, usize::MAX);
    }
    assert_eq!(window(&p, streams[0].1), 256 * KIB);
    assert_eq!(p.server.stats().round_trip, None);
}

#[test]
fn a_slow_reader_keeps_its_window() {
    // 16 KiB per 10 ms: far below what the starting window carries per round trip.
    let mut p = delayed(v2(true));
    let streams = open(&mut p, 1);
    for i in 0..2000 {
        let ration = if i % 10 == 0 { 16 * KIB } else { 0 };
        step(&mut p, &streams, ration);
    }
    assert_eq!(window(&p, streams[0].1), 256 * KIB);
}

#[test]
fn the_edge_never_moves_left_and_stays_within_what_go_reads() {
    let mut c = v2(true);
    c.with_max_stream_window(1 << 30)
        .with_max_session_unread(1 << 30);
    let mut p = delayed(c);
    let streams = open(&mut p, 2);
    let mut last = vec![0u64; streams.len()];
    for i in 0..1500 {
        // Reading stops for a while in the middle: the edge must hold, not retreat.
        let ration = if (500..700).contains(&i) {
            0
        } else {
            usize::MAX
        };
        step(&mut p, &streams, ration);
        for (k, (_, theirs)) in streams.iter().enumerate() {
            let e = edge(&p, *theirs);
            assert!(e >= last[k], "the edge moved left: {} -> {e}", last[k]);
            last[k] = e;
            let s = p.server.stream_stats(*theirs).unwrap();
            assert!(s.advertised_window.unwrap() <= i32::MAX as u64);
            assert!(s.receive_window.unwrap() <= 1 << 30);
        }
    }
    assert!(window(&p, streams[0].1) > 256 * KIB, "it did grow");
}

#[test]
fn sixty_four_streams_share_the_budget() {
    let mut c = v2(true);
    c.with_max_session_unread(8 * MIB);
    let mut p = delayed(c);
    let streams = open(&mut p, 64);
    let mut read = 0;
    for i in 0..1500 {
        read += step(&mut p, &streams, usize::MAX);
        // What is owed stays within the budget, beyond the initial windows the protocol gives
        // every fresh stream (256 KiB each) and, once those are used, beyond each stream's
        // minimum window (64 KiB).
        let owed = p.server.credit_owed();
        assert!(owed <= 8 * MIB + 64 * 256 * KIB, "{owed} owed");
        if i >= 500 {
            assert!(owed <= 8 * MIB + 64 * 64 * KIB, "{owed} owed at step {i}");
        }
    }
    // The budget, not the windows, is what limits 64 streams: about 8 MiB per round trip.
    let per_rtt = read / 30;
    assert!(per_rtt >= 4 * MIB, "{per_rtt} bytes per round trip");
    for (_, theirs) in &streams {
        let w = window(&p, *theirs);
        assert!(w <= Config::default().max_stream_window() as usize, "{w}");
    }
}

#[test]
fn a_fresh_stream_on_a_warm_connection_starts_from_the_tuned_window() {
    let mut p = delayed(v2(true));
    let first = open(&mut p, 1);
    for _ in 0..1000 {
        step(&mut p, &first, usize::MAX);
    }
    let tuned = window(&p, first[0].1);
    assert!(tuned > 256 * KIB);
    let fresh = open(&mut p, 1);
    assert_eq!(window(&p, fresh[0].1), tuned);
}
