//! A burst of opens past the accept backlog loses no stream while the application's accept
//! loop keeps accepting, on every runtime: the SYN past the backlog waits for the accept loop
//! (up to the accept-stall timeout without an accept), whichever thread runs first.
//!
//! Before, a SYN past the backlog was refused once a poll of the worker found nothing
//! accepted since it began to wait; on a multi-thread runtime the worker often polled again
//! before the accept loop ran, and of 5,000 opens about 2,000 read a clean end with no data.
//!
//! It runs on the current-thread runtime and on the multi-thread runtime with 2 and 4 workers
//! (`common::on_runtimes`).

use smux_test_support::tokio::tcp_pair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

const OPENS: usize = 20_000;

/// The client opens `OPENS` streams in a loop, shutting each down; the server's accept loop
/// answers each with two bytes and a FIN. Every stream must read those two bytes.
async fn burst() {
    let (c, s) = tcp_pair().await;
    let ((connector, _client_acceptor, _), (_server_connector, mut acceptor, _)) =
        common::sessions(c, s);
    let server = tokio::spawn(async move {
        let mut answered = 0usize;
        while answered < OPENS {
            let Some(mut s) = acceptor.accept().await else {
                break;
            };
            tokio::spawn(async move {
                s.write_all(b"ok").await.unwrap();
                s.shutdown().await.unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.unwrap();
            });
            answered += 1;
        }
        answered
    });
    let mut streams = Vec::with_capacity(OPENS);
    for _ in 0..OPENS {
        let mut s = connector.connect().unwrap();
        s.shutdown().await.unwrap();
        streams.push(s);
    }
    let mut refused = 0;
    for mut s in streams {
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        match &got[..] {
            b"ok" => {}
            b"" => refused += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!(refused, 0, "{refused} of {OPENS} opens were refused");
    assert_eq!(server.await.unwrap(), OPENS);
}

#[test]
fn open_burst() {
    common::on_runtimes(burst);
}

/// A SYN that finds the backlog full as the last bytes of a read waits like any other: the
/// accept that makes room admits it, and with nothing accepted it is refused once the
/// accept-stall timeout has run, with no further input from the peer either way. (It used to
/// stay undecided until the peer sent more: with the input all taken, the worker did not
/// count itself paused, so neither the accept nor the timer resumed it.)
#[test]
fn a_syn_held_at_the_end_of_the_input_is_decided_without_more_input() {
    use smux_tokio::{MuxBuilder, Version};
    use std::time::Duration;
    const BACKLOG: usize = 1024;
    for version in [Version::V1, Version::V2] {
        for accept in [true, false] {
            common::on_paused_clock(async move {
                let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
                let (connector, mut acceptor, worker) = MuxBuilder::server()
                    .with_version(version)
                    .with_connection(ours)
                    .build();
                tokio::spawn(worker);
                // BACKLOG + 1 SYNs in one write: the last one is the end of the input.
                let mut syns = Vec::new();
                for i in 0..=BACKLOG as u32 {
                    let id = (3 + 2 * i).to_le_bytes();
                    syns.extend_from_slice(&[version as u8, 0, 0, 0, id[0], id[1], id[2], id[3]]);
                }
                theirs.write_all(&syns).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let mut held = Vec::new();
                if accept {
                    for _ in 0..=BACKLOG {
                        // The paused clock runs to the guard at once if nothing happens.
                        let next = tokio::time::timeout(Duration::from_secs(60), acceptor.accept());
                        held.push(next.await.expect("decided").expect("admitted"));
                    }
                    assert_eq!(connector.stats().streams_refused, 0);
                } else {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let stats = connector.stats();
                    assert_eq!(stats.streams_refused, 1, "{stats:?}");
                    assert_eq!(stats.streams_waiting_accept, BACKLOG);
                }
                drop(theirs);
            });
        }
    }
}
