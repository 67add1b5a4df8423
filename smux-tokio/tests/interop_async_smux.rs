//! Interop with `async_smux` 0.4 (version 1), both roles: many streams echoing length-prefixed
//! messages, then each side's shutdown reaching the other as end of stream.
//!
//! `async_smux` closes both directions of a stream when a FIN arrives, so these tests do not
//! rely on writing after the peer's FIN: every reply is read before the requester finishes.

use std::time::Duration;

use smux_test_support::tokio::tcp_pair;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

const STREAMS: usize = 100;
const MESSAGES: usize = 20;
const LIMIT: Duration = Duration::from_secs(60);

/// A deterministic message for stream `s`, message `i`: 1 byte to 64 KiB.
fn message(s: usize, i: usize) -> Vec<u8> {
    let mut x = (s as u64 + 1) * 0x9e37_79b9 + i as u64 * 0x85eb_ca6b + 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 1 + (next() % 65_536) as usize;
    (0..len).map(|_| next() as u8).collect()
}

/// Sends the messages of stream `s`, checks each echo, then finishes and expects the peer's
/// end of stream.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(mut st: S, s: usize) {
    for i in 0..MESSAGES {
        let m = message(s, i);
        st.write_all(&(m.len() as u32).to_le_bytes()).await.unwrap();
        st.write_all(&m).await.unwrap();
        let mut back = vec![0u8; m.len()];
        st.read_exact(&mut back).await.unwrap();
        assert!(back == m, "stream {s}, message {i}: echo differs");
    }
    st.shutdown().await.unwrap();
    let mut rest = Vec::new();
    st.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// Echoes length-prefixed messages until the peer's end of stream, then finishes.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut st: S) -> usize {
    let mut count = 0;
    loop {
        let mut len = [0u8; 4];
        match st.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{e}"),
        }
        let mut m = vec![0u8; u32::from_le_bytes(len) as usize];
        st.read_exact(&mut m).await.unwrap();
        st.write_all(&m).await.unwrap();
        count += 1;
    }
    st.shutdown().await.ok();
    count
}

/// Accepts `STREAMS` streams from either implementation's acceptor and echoes each.
async fn serve<A, S>(mut acceptor: A)
where
    A: futures_core::Stream<Item = S> + Unpin,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut echoers = Vec::new();
    for _ in 0..STREAMS {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut acceptor).poll_next(cx));
        let st = next.await.expect("a stream from the peer");
        echoers.push(tokio::spawn(respond(st)));
    }
    for e in echoers {
        assert_eq!(e.await.unwrap(), MESSAGES);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_async_smux_server() {
    let (a, b) = tcp_pair().await;
    let (cc, _ca, cw) = smux_tokio::MuxBuilder::client().with_connection(a).build();
    let (_sc, sa, sw) = async_smux::MuxBuilder::server().with_connection(b).build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    timeout(LIMIT, async {
        let server = tokio::spawn(serve(sa));
        let clients: Vec<_> = (0..STREAMS)
            .map(|s| tokio::spawn(request(cc.connect().unwrap(), s)))
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
        assert_eq!(cc.get_num_streams(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_smux_client_and_our_server() {
    let (a, b) = tcp_pair().await;
    let (cc, _ca, cw) = async_smux::MuxBuilder::client().with_connection(a).build();
    let (_sc, sa, sw) = smux_tokio::MuxBuilder::server().with_connection(b).build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    timeout(LIMIT, async {
        let server = tokio::spawn(serve(sa));
        let clients: Vec<_> = (0..STREAMS)
            .map(|s| tokio::spawn(request(cc.connect().unwrap(), s)))
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn streams_opened_by_our_server_work_with_an_async_smux_client() {
    let (a, b) = tcp_pair().await;
    let (_cc, mut ca, cw) = async_smux::MuxBuilder::client().with_connection(a).build();
    let (sc, _sa, sw) = smux_tokio::MuxBuilder::server().with_connection(b).build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    timeout(LIMIT, async {
        let echo = tokio::spawn(async move {
            let st = ca.accept().await.expect("a stream from our server");
            respond(st).await
        });
        let st = sc.connect().unwrap();
        assert_eq!(st.get_stream_id() % 2, 0, "server ids are even");
        request(st, 7).await;
        assert_eq!(echo.await.unwrap(), MESSAGES);
    })
    .await
    .unwrap();
}
