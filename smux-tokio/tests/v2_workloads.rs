//! Version-2 workloads that must keep working at the default receive budget, which resets the
//! stream holding the most unread data once a frame would take what is held past it: readers
//! that keep up never meet it.
//!
//! - A burst of 1,000 streams, each carrying its whole initial window (256 KiB, which the
//!   protocol lets the peer send before it hears from us: 250 MiB in all) to readers that keep
//!   up: no stream is reset and every byte arrives.
//! - 10,000 idle streams: all stay open with no reset, and once both sides drop them, neither
//!   session holds a stream (the tombstones of dropped streams end with the peer's FIN).
//!
//! Each runs on the current-thread runtime and on the multi-thread runtime with 2 and 4
//! workers (`common::on_runtimes`).

use smux_test_support::tokio::tcp_pair;
use smux_tokio::{MuxAcceptor, MuxBuilder, MuxConnector, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

const WINDOW: usize = 262_144;

type Ends = (
    MuxConnector<TcpStream>,
    MuxAcceptor<TcpStream>,
    MuxConnector<TcpStream>,
    MuxAcceptor<TcpStream>,
);

/// A version-2 session pair with default settings: client connector and acceptor, then the
/// server's.
async fn v2_pair() -> Ends {
    let (c, s) = tcp_pair().await;
    let (cc, ca, cw) = MuxBuilder::client()
        .with_version(Version::V2)
        .with_connection(c)
        .build();
    let (sc, sa, sw) = MuxBuilder::server()
        .with_version(Version::V2)
        .with_connection(s)
        .build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    (cc, ca, sc, sa)
}

async fn burst_of_1000() {
    const STREAMS: usize = 1_000;
    let (connector, _ca, server_connector, mut acceptor) = v2_pair().await;
    let server = tokio::spawn(async move {
        let mut readers = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let mut s = acceptor.accept().await.expect("a stream");
            readers.push(tokio::spawn(async move {
                let mut got = Vec::with_capacity(WINDOW);
                s.read_to_end(&mut got).await.expect("no reset");
                assert!(got.iter().all(|&b| b == got[0]), "data mixed up");
                got.len()
            }));
        }
        let mut lens = Vec::with_capacity(STREAMS);
        for r in readers {
            lens.push(r.await.unwrap());
        }
        lens
    });
    let mut writers = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        let mut s = connector.connect().unwrap();
        writers.push(tokio::spawn(async move {
            s.write_all(&vec![i as u8; WINDOW]).await.unwrap();
            s.shutdown().await.unwrap();
            // Held until the server has read it all.
            let mut end = Vec::new();
            s.read_to_end(&mut end).await.unwrap();
        }));
    }
    let lens = server.await.unwrap();
    assert!(lens.iter().all(|&n| n == WINDOW), "a stream lost data");
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(server_connector.stats().streams_reset, 0);
}

#[test]
fn a_burst_of_1000_full_initial_windows_to_readers_that_keep_up_resets_nothing() {
    common::on_runtimes(burst_of_1000);
}

async fn idle_10000() {
    const STREAMS: usize = 10_000;
    let (connector, _ca, server_connector, mut acceptor) = v2_pair().await;
    // The accept loop runs while the client opens (past the backlog, opens wait for it).
    let server = tokio::spawn(async move {
        let mut theirs = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            theirs.push(acceptor.accept().await.expect("a stream"));
        }
        for s in &mut theirs {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
        }
        theirs
    });
    let mut ours = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut s = connector.connect().unwrap();
        s.write_all(b"x").await.unwrap();
        ours.push(s);
    }
    let mut theirs = server.await.unwrap();
    for c in [&connector, &server_connector] {
        let stats = c.stats();
        assert_eq!(stats.streams_open, STREAMS);
        assert_eq!(stats.streams_reset, 0);
    }
    // Streams still work after all that.
    let (a, b) = (&mut ours[STREAMS - 1], &mut theirs[STREAMS - 1]);
    b.write_all(b"pong").await.unwrap();
    let mut got = [0u8; 4];
    a.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
    drop(ours);
    drop(theirs);
    // Each side's FIN ends the other's tombstones: both tables empty out.
    for c in [&connector, &server_connector] {
        while c.stats().streams_open > 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[test]
fn ten_thousand_idle_streams_stay_open_and_leave_nothing_behind() {
    common::on_runtimes(idle_10000);
}
