//! Version 2 against peers that keep to the protocol and still press on memory or on our
//! writers: the receive budget bounds what is held whatever the number of fresh streams, a
//! stream the application dropped keeps the peer's writer going, and a writer the peer strands
//! is reset after the stalled-stream timeout.

use std::time::{Duration, Instant};

use smux_proto::pair::Pair;
use smux_proto::{Config, Event, ResetReason, StreamError, StreamId, Version, INITIAL_PEER_WINDOW};

fn v2() -> Config {
    let mut c = Config::default();
    c.with_version(Version::V2);
    c
}

/// Opens `n` client streams and writes `per_stream` bytes on each, as far as the windows let;
/// the server accepts them all and reads nothing. Returns the streams.
fn flood(p: &mut Pair, n: usize, per_stream: usize) -> Vec<StreamId> {
    let data = vec![1u8; per_stream];
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = p.client.open().unwrap();
        let mut sent = 0;
        while sent < per_stream {
            match p.client.write(id, &data[sent..]) {
                Ok(k) => sent += k,
                Err(StreamError::Blocked) => break,
                Err(e) => panic!("{e}"),
            }
        }
        ids.push(id);
        // Deliver as we go, so the client's output queue does not cap the flood.
        p.drive();
        while p.server.accept().is_some() {}
    }
    ids
}

/// The client writes `total` bytes on `id`, driving the pair between writes; fails if its
/// writer stops getting room (10,000 rounds move far more than `total`).
fn client_writes_through(p: &mut Pair, id: StreamId, total: usize) {
    let chunk = vec![2u8; 64 * 1024];
    let mut sent = 0;
    for _ in 0..10_000 {
        if sent >= total {
            return;
        }
        match p.client.write(id, &chunk[..chunk.len().min(total - sent)]) {
            Ok(n) => sent += n,
            Err(StreamError::Blocked) => {}
            Err(e) => panic!("{e}"),
        }
        p.drive();
    }
    panic!("the writer is stranded at {sent} of {total}");
}

/// The client writes on `id`, driving the pair between writes, until the peer's window shuts;
/// returns the bytes it wrote.
fn client_writes_until_blocked(p: &mut Pair, id: StreamId) -> usize {
    let chunk = vec![4u8; 64 * 1024];
    let mut sent = 0;
    loop {
        match p.client.write(id, &chunk) {
            Ok(n) => sent += n,
            Err(StreamError::Blocked) => return sent,
            Err(e) => panic!("{e}"),
        }
        p.drive();
    }
}

#[test]
fn fresh_streams_cannot_make_the_server_hold_more_than_the_budget() {
    let budget = 4 * 1024 * 1024;
    let mut server = v2();
    server.with_max_session_unread(budget);
    let mut p = Pair::new(v2(), server, Instant::now()).unwrap();
    // 64 streams' initial windows: 16 MiB the protocol lets the client send unasked.
    let ids = flood(&mut p, 64, INITIAL_PEER_WINDOW as usize);
    let held = p.server.unread_held();
    assert!(held <= budget, "held {held} > budget {budget}");
    let stats = p.server.stats();
    assert!(stats.streams_reset >= 40, "{} resets", stats.streams_reset);
    assert!(!p.server.is_ended() && !p.client.is_ended());
    // Every stream either holds all its data, or was reset: its reads fail with the reason,
    // and the client got a FIN on it.
    let (mut kept, mut reset) = (0, 0);
    let mut buf = vec![0u8; 1 << 20];
    for id in &ids {
        match p.server.read(*id, &mut buf) {
            Ok(n) => {
                kept += 1;
                assert!(n > 0);
            }
            Err(StreamError::Reset(ResetReason::ReceiveBudget)) => {
                reset += 1;
                assert_eq!(p.client.read(*id, &mut buf), Ok(0), "FIN on a reset stream");
                assert!(
                    matches!(
                        p.server.write(*id, b"x"),
                        Err(StreamError::Reset(ResetReason::ReceiveBudget))
                    ),
                    "writes fail too"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(reset as u64, stats.streams_reset);
    assert!(kept >= 8, "only {kept} streams kept");
    let resets = p
        .server_events
        .iter()
        .filter(|e| matches!(e, Event::Reset { .. }))
        .count();
    assert_eq!(resets, reset);
}

#[test]
fn a_reset_stream_keeps_the_peer_writer_going_until_its_fin() {
    let mut server = v2();
    server.with_max_session_unread(1024 * 1024);
    let mut p = Pair::new(v2(), server, Instant::now()).unwrap();
    let ids = flood(&mut p, 8, INITIAL_PEER_WINDOW as usize);
    let victim = *ids
        .iter()
        .find(|id| p.server.read(**id, &mut [0u8; 1]).is_err())
        .expect("one stream was reset");
    // The client keeps writing on the reset stream (it has not read our FIN yet): 8 MiB, far
    // more than any window, all counted as read on our side and dropped.
    client_writes_through(&mut p, victim, 8 * 1024 * 1024);
    assert!(p.server.unread_held() <= 1024 * 1024);
    p.client.shutdown(victim).unwrap();
    p.drive();
    // Both FINs: the stream is gone from the server once it is released.
    p.server.close_stream(victim);
    p.drive();
    assert_eq!(p.server.stream_unread(victim), None);
}

#[test]
fn a_dropped_stream_keeps_crediting_the_peer_writer_until_its_fin() {
    let mut p = Pair::new(v2(), v2(), Instant::now()).unwrap();
    let id = p.client.open().unwrap();
    p.client.write(id, b"hello").unwrap();
    p.drive();
    let accepted = p.server.accept().unwrap();
    // The server application drops the stream before the client is done (a cancelled
    // request): our FIN goes out, and the stream stays as a tombstone.
    p.server.close_stream(accepted);
    p.drive();
    assert_eq!(
        p.server.num_streams(),
        1,
        "a tombstone until the peer's FIN"
    );
    // Nothing of it is left for us: it does not hold a drain up.
    p.server.drain();
    assert!(p.server.is_drained());
    // The client never reads, so it never sees the FIN: its writer goes on, 4 MiB, far more
    // than the window, and never waits for good.
    client_writes_through(&mut p, id, 4 * 1024 * 1024);
    assert_eq!(p.server.unread_held(), 0);
    assert_eq!(
        p.server.credit_owed(),
        0,
        "a tombstone owes the budget nothing"
    );
    p.client.shutdown(id).unwrap();
    p.drive();
    assert_eq!(
        p.server.num_streams(),
        0,
        "the peer's FIN ends the tombstone"
    );
}

#[test]
fn a_writer_the_peer_strands_is_reset_after_the_stalled_stream_timeout() {
    let mut client = v2();
    client.with_stalled_stream_timeout(Some(Duration::from_secs(5)));
    let mut p = Pair::new(client, v2(), Instant::now()).unwrap();
    let id = p.client.open().unwrap();
    p.drive();
    let accepted = p.server.accept().unwrap();
    // The server never reads: the client's window shuts after the initial window.
    let mut sent = client_writes_until_blocked(&mut p, id);
    assert_eq!(sent, INITIAL_PEER_WINDOW as usize);
    // A slow reader is back-pressure: reading opens the window, and the wait starts over.
    p.advance(Duration::from_secs(4));
    let mut buf = vec![0u8; 1 << 20];
    let n = p.server.read(accepted, &mut buf).unwrap();
    assert_eq!(n, sent);
    p.drive();
    sent += client_writes_until_blocked(&mut p, id);
    p.advance(Duration::from_secs(4));
    assert!(matches!(
        p.client.write(id, b"x"),
        Err(StreamError::Blocked)
    ));
    // A gone reader: the window stays shut past the timeout.
    p.advance(Duration::from_secs(2));
    assert_eq!(
        p.client.write(id, b"x"),
        Err(StreamError::Reset(ResetReason::StalledWriter))
    );
    assert_eq!(p.client.stats().streams_reset, 1);
    p.drive();
    // The server reads what was sent, then the FIN.
    let mut got = 0;
    loop {
        match p.server.read(accepted, &mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("{e}"),
        }
        p.drive();
    }
    assert_eq!(got + n, sent);
}
