//! `tokio_util::codec::Framed` over a `MuxStream`, as the README shows it: `feed` each
//! message, then one `flush`, so that a burst of messages shares writes; 10,000
//! length-delimited messages each way on all three Tokio runtimes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use smux_tokio::MuxStream;
use tokio::io::DuplexStream;
use tokio::time::timeout;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

mod common;

use common::on_runtimes;

const MESSAGES: usize = 10_000;

/// Sends `MESSAGES` messages (fed, then flushed once per 100) while receiving as many.
async fn talk(s: MuxStream<DuplexStream>, seed: u8) -> Vec<Bytes> {
    let (mut sink, mut stream) = Framed::new(s, LengthDelimitedCodec::new()).split();
    let send = async move {
        for batch in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
            for &i in batch {
                let len = i % 300;
                sink.feed(Bytes::from(vec![seed.wrapping_add(i as u8); len]))
                    .await
                    .unwrap();
            }
            sink.flush().await.unwrap();
        }
        sink.close().await.unwrap();
    };
    let receive = async move {
        let mut got = Vec::with_capacity(MESSAGES);
        while let Some(m) = stream.next().await {
            got.push(m.unwrap().freeze());
        }
        got
    };
    tokio::join!(send, receive).1
}

fn check(got: &[Bytes], seed: u8) {
    assert_eq!(got.len(), MESSAGES);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.len(), i % 300, "message {i}");
        assert!(
            m.iter().all(|&b| b == seed.wrapping_add(i as u8)),
            "message {i}"
        );
    }
}

#[test]
fn ten_thousand_length_delimited_messages_each_way() {
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ((conn, _, _), (_, mut acc, _)) = common::sessions(a, b);
        let ours = tokio::spawn(talk(conn.connect().unwrap(), 1));
        let p = acc.accept().await.unwrap();
        let theirs = tokio::spawn(talk(p, 101));
        let limit = Duration::from_secs(60);
        check(&timeout(limit, ours).await.unwrap().unwrap(), 101);
        check(&timeout(limit, theirs).await.unwrap().unwrap(), 1);
    });
}
