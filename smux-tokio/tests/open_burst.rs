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
