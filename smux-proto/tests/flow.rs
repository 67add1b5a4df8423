//! Head-of-line behaviour of the two versions, in the in-memory pair: a stream whose reader
//! never reads beside a stream moving 64 MiB.

use std::time::Instant;

use smux_proto::pair::{Pair, Side};
use smux_proto::{Config, StreamError, StreamId, Version};

const TOTAL: usize = 64 * 1024 * 1024;

/// Writes to a stream nobody reads, then moves up to `TOTAL` bytes on another stream; returns
/// the bytes that arrived before no more progress was possible.
fn run(config: Config) -> (Pair, StreamId, usize) {
    let mut p = Pair::new(config.clone(), config, Instant::now()).unwrap();
    let stuck = p.client.open().unwrap();
    let moving = p.client.open().unwrap();
    let chunk = vec![7u8; 65_536];
    let mut stuck_sent = 0;
    let (mut sent, mut got) = (0usize, 0usize);
    let mut buf = vec![0u8; 65_536];
    loop {
        // The stuck stream gets all the data it can take, ahead of the other.
        while stuck_sent < 8 * 1024 * 1024 {
            match p.client.write(stuck, &chunk) {
                Ok(n) => stuck_sent += n,
                Err(_) => break,
            }
        }
        while sent < TOTAL {
            match p
                .client
                .write(moving, &chunk[..(TOTAL - sent).min(chunk.len())])
            {
                Ok(n) => sent += n,
                Err(StreamError::Blocked) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut progress = p.drive();
        while let Ok(n) = p.server.read(moving, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
            progress += n;
        }
        p.client_events.clear();
        p.server_events.clear();
        if got == TOTAL || progress == 0 {
            return (p, stuck, got);
        }
    }
}

#[test]
fn v2_a_reader_that_never_reads_does_not_stop_another_stream() {
    let (p, stuck, got) = run({
        let mut c = Config::default();
        c.with_version(Version::V2);
        c
    });
    assert_eq!(got, TOTAL);
    let held = p.server.stream_unread(stuck).unwrap();
    assert!(held > 0 && held <= 256 * 1024, "stuck stream holds {held}");
    assert!(!p.server.is_ended());
}

#[test]
fn v1_the_same_scenario_stalls_with_memory_held_at_the_budget() {
    let config = Config::default();
    let budget = config.max_session_unread();
    let (p, stuck, got) = run(config);
    assert!(
        got < TOTAL,
        "version 1 has no per-stream flow control: it must stall"
    );
    assert!(
        !p.server.wants_input(),
        "the receiver stopped reading input"
    );
    assert!(p.server.unread_held() <= budget);
    // Held at the budget: not one more full frame would fit.
    assert!(p.server.unread_held() + 2 * 65_535 > budget);
    assert!(p.server.stream_unread(stuck).unwrap() > 0);
    assert!(!p.server.is_ended() && !p.client.is_ended());
    let _ = Side::Client;
}
