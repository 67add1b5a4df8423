//! Version 2 must never stop reading a peer that keeps to the windows we advertised: the
//! mutual-write deadlock of an echo server (a version-2 server of ours hung against a Go client
//! opening 100 streams of 256 KiB; here 1 MiB, which hangs the old design in every run of this
//! deterministic pair: it stopped reading with 4 MiB unread and the UPDs behind it).
//!
//! The echo here reads a stream only once what it read before has been written back, as
//! `tokio::io::copy` does, and the client writes everything first and reads the echoes as they
//! come. If the server stops reading its transport while its unread data is at the session
//! budget, the UPDs the client sends for the echoes sit unread behind that data, every echo
//! waits for them, and nothing moves.

use std::time::Instant;

use smux_proto::pair::Pair;
use smux_proto::{Config, Event, StreamError, StreamId, Version, INITIAL_PEER_WINDOW};

const STREAMS: usize = 100;
const SIZE: usize = 1024 * 1024;

/// One echo in progress on the server: bytes read and not yet written back.
#[derive(Default)]
struct Echo {
    pending: Vec<u8>,
    echoed: usize,
}

/// The client stands for the Go peer: Go's default window is 64 KiB.
fn run(config: Config, link: usize) -> (usize, Pair) {
    let mut client = config.clone();
    client.with_stream_window(65_536);
    let mut p = Pair::new(client, config, Instant::now()).unwrap();
    p.link_capacity = link;
    let ids: Vec<StreamId> = (0..STREAMS).map(|_| p.client.open().unwrap()).collect();
    let data = vec![0x5au8; SIZE];
    let mut sent = vec![0usize; STREAMS];
    let mut received = vec![0usize; STREAMS];
    let mut echoes: Vec<(StreamId, Echo)> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    for _round in 0..100_000 {
        let mut progress = 0;
        // The client's writer: every stream, in order, as far as its window lets it.
        for (i, id) in ids.iter().enumerate() {
            while sent[i] < SIZE {
                match p.client.write(*id, &data[sent[i]..]) {
                    Ok(n) => {
                        sent[i] += n;
                        progress += n;
                    }
                    Err(StreamError::Blocked) => break,
                    Err(e) => panic!("client write: {e}"),
                }
            }
        }
        progress += p.drive();
        while let Some(e) = p.server_events.pop_front() {
            if let Event::Opened(_) = e {
                let id = p.server.accept().unwrap();
                echoes.push((id, Echo::default()));
            }
        }
        p.client_events.clear();
        // The server's echo: write back what it read; read more only once that is done.
        for (id, echo) in echoes.iter_mut() {
            loop {
                while !echo.pending.is_empty() {
                    match p.server.write(*id, &echo.pending) {
                        Ok(n) => {
                            echo.pending.drain(..n);
                            echo.echoed += n;
                            progress += n;
                        }
                        Err(StreamError::Blocked) => break,
                        Err(e) => panic!("server write: {e}"),
                    }
                }
                if !echo.pending.is_empty() {
                    break;
                }
                match p.server.read(*id, &mut buf) {
                    Ok(n) if n > 0 => {
                        echo.pending.extend_from_slice(&buf[..n]);
                        progress += n;
                    }
                    _ => break,
                }
            }
        }
        // The client's reader.
        for (i, id) in ids.iter().enumerate() {
            while let Ok(n) = p.client.read(*id, &mut buf) {
                if n == 0 {
                    break;
                }
                received[i] += n;
                progress += n;
            }
        }
        if received.iter().all(|r| *r == SIZE) {
            break;
        }
        if progress == 0 {
            break;
        }
    }
    (received.iter().sum(), p)
}

fn v2() -> Config {
    let mut c = Config::default();
    c.with_version(Version::V2);
    c
}

#[test]
fn v2_echo_of_100_streams_of_1_mib_completes() {
    for link in [64 * 1024, 256 * 1024, 4 * 1024 * 1024] {
        let (total, p) = run(v2(), link);
        assert_eq!(
            total,
            STREAMS * SIZE,
            "link of {link} bytes: the echo stopped; server wants input: {}, unread {}",
            p.server.wants_input(),
            p.server.unread_held()
        );
    }
}

#[test]
fn v2_memory_is_bounded_by_the_windows_advertised() {
    // A small budget: 100 fresh streams are owed their initial windows (25 MiB), which is
    // more; the windows then grow only within the budget, and the echo still completes.
    let mut c = v2();
    c.with_max_session_unread(8 * 1024 * 1024);
    let (total, p) = run(c.clone(), 256 * 1024);
    assert_eq!(total, STREAMS * SIZE);
    for s in [&p.client, &p.server] {
        assert_eq!(s.stats().streams_reset, 0);
        assert!(s.credit_owed() <= c.max_session_unread() + s.num_streams() * 262_144);
    }
}

#[test]
fn v2_windows_grow_only_within_the_budget() {
    // The client writes the initial window on each of 100 streams (25 MiB, more than the
    // budget: the protocol lets a peer send that much unasked), and the server reads each as
    // it comes. The windows it grants back keep what is owed within the budget, plus a
    // minimum window per stream.
    let mut small_budget = v2();
    small_budget.with_max_session_unread(2 * 1024 * 1024);
    let mut small_window = v2();
    small_window.with_max_session_window(1024 * 1024);
    for c in [small_budget, small_window] {
        windows_grow_only_within(c);
    }
}

fn windows_grow_only_within(c: Config) {
    let mut p = Pair::new(c.clone(), c.clone(), Instant::now()).unwrap();
    p.link_capacity = usize::MAX;
    let ids: Vec<StreamId> = (0..STREAMS).map(|_| p.client.open().unwrap()).collect();
    let data = vec![1u8; INITIAL_PEER_WINDOW as usize];
    let mut buf = vec![0u8; 1 << 20];
    let mut accepted = Vec::new();
    for id in &ids {
        assert_eq!(p.client.write(*id, &data), Ok(data.len()));
        p.drive();
        accepted.extend(std::iter::from_fn(|| p.server.accept()));
        for id in &accepted {
            while let Ok(n) = p.server.read(*id, &mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    }
    p.drive();
    assert_eq!(p.server.stats().streams_reset, 0, "readers that keep up");
    // Beyond the budget, each stream keeps the minimum window (64 KiB) that stops idle
    // windows from starving the others.
    let owed = p.server.credit_owed();
    let bound = c.max_session_window() + STREAMS * 64 * 1024;
    assert!(
        owed > 0 && owed <= bound,
        "{owed} owed after everything was read, over {bound}"
    );
    // The client may send exactly what was granted.
    let room: usize = ids
        .iter()
        .map(|id| p.client.send_window(*id).unwrap())
        .sum();
    assert_eq!(room, owed);
}
