//! What production users ask for around the data path: `open()` waiting at the stream limit,
//! `closed()` as the "peer went away" signal, and `MuxError` as an `io::Error`.
//!
//! Every scenario runs on the current-thread runtime and on the multi-thread runtime with 2
//! and with 4 workers; the keep-alive case runs on the paused clock. Order is set by polling
//! futures from the test's own task, never by sleeping.

use std::future::Future;
use std::io;
use std::num::{NonZeroU64, NonZeroUsize};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use smux_tokio::{MuxBuilder, MuxConnector, MuxError, MuxStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

mod common;

use common::{on_paused_clock, on_runtimes};

const LIMIT: Duration = Duration::from_secs(20);

/// Polls `fut` once from the calling task: `Some` if it finished.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *fut).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// A client limited to `max` streams, against a server that reads each stream to its end and
/// then drops it (so the stream leaves both tables).
fn limited_client(max: usize) -> MuxConnector<DuplexStream> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut client = MuxBuilder::client();
    client.with_max_streams(NonZeroUsize::new(max).unwrap());
    let (conn, _, worker) = client.with_connection(a).build();
    let (_, mut acc, server) = MuxBuilder::server().with_connection(b).build();
    tokio::spawn(worker);
    tokio::spawn(server);
    tokio::spawn(async move {
        while let Some(mut s) = acc.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    });
    conn
}

#[test]
fn open_waits_at_the_limit_first_come_first_served_and_a_dropped_waiter_leaks_nothing() {
    on_runtimes(|| async {
        let conn = limited_client(4);
        let mut open: Vec<MuxStream<DuplexStream>> =
            (0..4).map(|_| open_at_once(conn.open())).collect();
        assert!(matches!(conn.connect(), Err(MuxError::TooManyStreams)));
        // Three wait, in this order; the second gives up.
        let mut first = Box::pin(conn.open());
        let mut second = Box::pin(conn.open());
        let mut third = Box::pin(conn.open());
        assert!(poll_once(&mut first).await.is_none());
        assert!(poll_once(&mut second).await.is_none());
        assert!(poll_once(&mut third).await.is_none());
        drop(second);
        // While they wait, connect() does not jump the line.
        assert!(matches!(conn.connect(), Err(MuxError::TooManyStreams)));
        // A stream goes: the first in line gets its place, the third still waits.
        drop(open.pop());
        let s1 = timeout(LIMIT, &mut first)
            .await
            .expect("first served")
            .unwrap();
        assert!(
            poll_once(&mut third).await.is_none(),
            "one place, one stream"
        );
        drop(open.pop());
        let s3 = timeout(LIMIT, &mut third)
            .await
            .expect("third served")
            .unwrap();
        assert!(s3.get_stream_id() > s1.get_stream_id(), "served in order");
        // The dropped waiter took nothing: with two streams gone, one more fits now.
        drop(open.pop());
        let s4 = timeout(LIMIT, conn.open()).await.expect("room").unwrap();
        assert!(matches!(conn.connect(), Err(MuxError::TooManyStreams)));
        drop((s1, s3, s4, open));
    });
}

/// The stream an `open()` gives at once (there is room).
fn open_at_once<F: Future<Output = Result<MuxStream<DuplexStream>, MuxError>>>(
    f: F,
) -> MuxStream<DuplexStream> {
    let mut f = Box::pin(f);
    let waker = std::task::Waker::noop();
    match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        Poll::Ready(r) => r.expect("opened"),
        Poll::Pending => panic!("open() waited with room under the limit"),
    }
}

#[test]
fn a_waiting_open_fails_once_the_session_is_closed() {
    on_runtimes(|| async {
        let conn = limited_client(1);
        let _only = conn.connect().unwrap();
        let mut waiting = Box::pin(conn.open());
        assert!(poll_once(&mut waiting).await.is_none());
        let closer = conn.clone();
        tokio::spawn(async move { closer.close().await });
        let r = timeout(LIMIT, waiting).await.expect("woken by the close");
        assert!(matches!(r, Err(MuxError::ConnectionClosed)), "{r:?}");
        assert!(matches!(conn.open().await, Err(MuxError::ConnectionClosed)));
    });
}

#[test]
fn closed_resolves_for_every_waiter_when_the_peer_closes() {
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ((conn, _, client), (peer, _, _)) = common::sessions(a, b);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = conn.clone();
                tokio::spawn(async move { c.closed().await })
            })
            .collect();
        let mut early = Box::pin(conn.closed());
        assert!(poll_once(&mut early).await.is_none(), "not closed yet");
        peer.close().await.unwrap();
        for w in waiters {
            assert!(matches!(timeout(LIMIT, w).await.unwrap().unwrap(), Ok(())));
        }
        assert!(matches!(timeout(LIMIT, early).await.unwrap(), Ok(())));
        assert!(matches!(client.await.unwrap(), Ok(())));
        // And after the end, at once.
        assert!(matches!(conn.closed().await, Ok(())));
    });
}

#[test]
fn closed_reports_a_protocol_error_like_the_worker() {
    on_runtimes(|| async {
        let (a, mut raw) = tokio::io::duplex(64 * 1024);
        let (conn, _acc, worker) = MuxBuilder::client().with_connection(a).build();
        let worker = tokio::spawn(worker);
        let waiter = {
            let c = conn.clone();
            tokio::spawn(async move { c.closed().await })
        };
        // A frame of version 9.
        raw.write_all(&[9, 3, 0, 0, 0, 0, 0, 0]).await.unwrap();
        let by_worker = worker.await.unwrap();
        let by_waiter = timeout(LIMIT, waiter).await.unwrap().unwrap();
        assert!(
            matches!(by_worker, Err(MuxError::Protocol(_))),
            "{by_worker:?}"
        );
        match (by_worker, by_waiter) {
            (Err(MuxError::Protocol(a)), Err(MuxError::Protocol(b))) => assert_eq!(a, b),
            (w, c) => panic!("worker {w:?}, closed() {c:?}"),
        }
    });
}

#[test]
fn closed_reports_the_keep_alive_timeout_and_a_transport_error() {
    on_paused_clock(async {
        let (a, _silent) = tokio::io::duplex(64 * 1024);
        let mut b = MuxBuilder::client();
        b.with_keep_alive_interval(NonZeroU64::new(1).unwrap())
            .with_keep_alive_timeout(NonZeroU64::new(3).unwrap());
        let (conn, _acc, worker) = b.with_connection(a).build();
        let worker = tokio::spawn(worker);
        let r = timeout(Duration::from_secs(10), conn.closed())
            .await
            .unwrap();
        assert!(matches!(r, Err(MuxError::KeepAliveTimeout)), "{r:?}");
        assert!(matches!(
            worker.await.unwrap(),
            Err(MuxError::KeepAliveTimeout)
        ));
    });
    on_runtimes(|| async {
        let (a, raw) = tokio::io::duplex(64 * 1024);
        let (conn, _acc, worker) = MuxBuilder::client().with_connection(a).build();
        let worker = tokio::spawn(worker);
        let mut s = conn.connect().unwrap();
        // The peer goes away with our data unread: our writes fail.
        drop(raw);
        let _ = s.write_all(b"lost").await;
        let _ = s.flush().await;
        let by_waiter = timeout(LIMIT, conn.closed()).await.unwrap();
        let by_worker = worker.await.unwrap();
        match (&by_worker, &by_waiter) {
            (Err(MuxError::IoError(w)), Err(MuxError::IoError(c))) => {
                assert_eq!(w.kind(), c.kind());
                assert_eq!(w.to_string(), c.to_string());
            }
            (w, c) => panic!("worker {w:?}, closed() {c:?}"),
        }
    });
}

/// `?` on a `MuxError` in a function returning `io::Result`.
async fn open_and_greet(conn: &MuxConnector<DuplexStream>) -> io::Result<()> {
    let mut s = conn.connect()?;
    s.write_all(b"hi").await?;
    Ok(())
}

#[test]
fn mux_errors_convert_to_io_errors() {
    on_runtimes(|| async {
        let conn = limited_client(1);
        let held = conn.connect().unwrap();
        let err = open_and_greet(&conn).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<MuxError>());
        assert!(matches!(inner, Some(MuxError::TooManyStreams)), "{err:?}");
        drop(held);
        conn.close().await.unwrap();
        let err = open_and_greet(&conn).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    });
}

#[test]
fn drain_lets_open_streams_finish_both_ways_and_refuses_new_ones() {
    on_runtimes(|| async {
        const SIZE: usize = 1 << 20;
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ((conn, _ca, client), (peer, mut acc, server)) = common::sessions(a, b);
        // Three streams each way; each side writes half its 1 MiB, waits for the drain to
        // begin, then writes the rest, while reading all of the other side's.
        let halfway = Arc::new(tokio::sync::Barrier::new(7));
        let go = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for i in 0..3u64 {
            let s = conn.connect().unwrap();
            tasks.push(tokio::spawn(exchange(
                s,
                i,
                SIZE,
                halfway.clone(),
                go.clone(),
            )));
        }
        for _ in 0..3 {
            let s = acc.accept().await.unwrap();
            let i = u64::from(s.get_stream_id());
            tasks.push(tokio::spawn(exchange(
                s,
                100 + i,
                SIZE,
                halfway.clone(),
                go.clone(),
            )));
        }
        halfway.wait().await;
        let mut draining = Box::pin(conn.drain());
        assert!(poll_once(&mut draining).await.is_none(), "streams are open");
        assert!(matches!(conn.connect(), Err(MuxError::Draining)));
        assert!(matches!(conn.open().await, Err(MuxError::Draining)));
        let mut refused = peer.connect().unwrap();
        refused.write_all(b"too late").await.unwrap();
        let mut got = Vec::new();
        refused.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "a refused stream reads a clean, empty end");
        // The second halves go out after the drain began; nothing is lost.
        go.notify_waiters();
        for t in tasks {
            timeout(LIMIT, t).await.unwrap().unwrap();
        }
        assert!(matches!(timeout(LIMIT, draining).await.unwrap(), Ok(())));
        assert!(matches!(client.await.unwrap(), Ok(())));
        assert!(matches!(server.await.unwrap(), Ok(())));
        drop(refused);
    });
}

/// Writes half of `size` bytes of pattern `seed`, meets the others `halfway`, waits for `go`,
/// writes the rest and shuts down; meanwhile reads the peer's to the end.
async fn exchange(
    s: MuxStream<DuplexStream>,
    seed: u64,
    size: usize,
    halfway: Arc<tokio::sync::Barrier>,
    go: Arc<tokio::sync::Notify>,
) {
    let (mut r, mut w) = tokio::io::split(s);
    let data = common::pattern(seed, size);
    let writer = async move {
        let (first, rest) = data.split_at(size / 2);
        w.write_all(first).await.unwrap();
        let going = go.notified();
        tokio::pin!(going);
        going.as_mut().enable();
        halfway.wait().await;
        going.await;
        w.write_all(rest).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), size, "all the peer's bytes");
    };
    tokio::join!(writer, reader);
}

#[test]
fn drain_waits_for_an_unfinished_stream_until_the_caller_closes() {
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ((conn, _ca, client), (_peer, mut acc, _server)) = common::sessions(a, b);
        let ours = conn.connect().unwrap();
        // The peer accepts the stream and never finishes it.
        let theirs = acc.accept().await.unwrap();
        let mut draining = Box::pin(conn.drain());
        assert!(poll_once(&mut draining).await.is_none());
        assert!(matches!(conn.connect(), Err(MuxError::Draining)));
        // The stream still works both ways, and the drain still waits.
        let (mut ours, mut theirs) = (ours, theirs);
        ours.write_all(b"ping").await.unwrap();
        ours.flush().await.unwrap();
        let mut buf = [0u8; 4];
        theirs.read_exact(&mut buf).await.unwrap();
        theirs.write_all(b"pong").await.unwrap();
        theirs.flush().await.unwrap();
        ours.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert!(poll_once(&mut draining).await.is_none());
        // The caller's deadline passes: it closes, and the drain ends with the close.
        conn.close().await.unwrap();
        assert!(matches!(timeout(LIMIT, draining).await.unwrap(), Ok(())));
        assert!(matches!(client.await.unwrap(), Ok(())));
        drop((ours, theirs));
    });
}

/// A version-2 pair of sessions with both workers spawned: (client connector, server
/// acceptor).
fn v2_pair() -> (
    MuxConnector<DuplexStream>,
    smux_tokio::MuxAcceptor<DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut client = MuxBuilder::client();
    client.with_version(smux_tokio::Version::V2);
    let mut server = MuxBuilder::server();
    server.with_version(smux_tokio::Version::V2);
    let (conn, _, cw) = client.with_connection(a).build();
    let (_, acc, sw) = server.with_connection(b).build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    (conn, acc)
}

#[test]
fn halves_work_from_two_tasks_and_reunite() {
    on_runtimes(|| async {
        let (conn, mut acc) = v2_pair();
        let s = conn.connect().unwrap();
        let id = s.get_stream_id();
        let (mut r, mut w) = s.into_split();
        let peer = tokio::spawn(async move {
            let mut p = acc.accept().await.unwrap();
            let mut buf = vec![0u8; 300_000];
            p.read_exact(&mut buf).await.unwrap();
            p.write_all(&buf).await.unwrap();
            p.flush().await.unwrap();
            (p, buf)
        });
        let data = common::pattern(9, 300_000);
        let writer = tokio::spawn({
            let data = data.clone();
            async move {
                w.write_all(&data).await.unwrap();
                w.flush().await.unwrap();
                w
            }
        });
        let reader = tokio::spawn(async move {
            let mut back = vec![0u8; 300_000];
            r.read_exact(&mut back).await.unwrap();
            (r, back)
        });
        let w = writer.await.unwrap();
        let (r, back) = reader.await.unwrap();
        assert!(back == data);
        // Halves of different streams are refused, and given back whole.
        let (r2, w2) = conn.connect().unwrap().into_split();
        let err = r.reunite(w2).unwrap_err();
        let (r, w2) = (err.0, err.1);
        assert!(r2.reunite(w2).is_ok());
        let mut s = r.reunite(w).expect("the halves of one stream");
        assert_eq!(s.get_stream_id(), id);
        s.shutdown().await.unwrap();
        let (mut p, _) = peer.await.unwrap();
        let mut rest = Vec::new();
        p.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    });
}

#[test]
fn dropping_the_read_half_first_keeps_the_peer_writing_and_our_half_writing() {
    on_runtimes(|| async {
        const BIG: usize = 4 << 20;
        let (conn, mut acc) = v2_pair();
        let mut s = conn.connect().unwrap();
        s.write_all(b"x").await.unwrap();
        let mut p = acc.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        drop(r);
        // The peer writes 16 times our 256 KiB window; nobody reads it, and it is not stuck.
        let peer_writer = tokio::spawn(async move {
            p.write_all(&vec![7u8; BIG]).await.unwrap();
            p.shutdown().await.unwrap();
            let mut got = Vec::new();
            p.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write_all(b"yz").await.unwrap();
        w.shutdown().await.unwrap();
        let got = timeout(LIMIT, peer_writer)
            .await
            .expect("not stuck")
            .unwrap();
        assert_eq!(got, b"xyz");
        drop(w);
    });
}

#[test]
fn dropping_the_write_half_first_sends_fin_and_the_read_half_goes_on() {
    on_runtimes(|| async {
        let (conn, mut acc) = v2_pair();
        let mut s = conn.connect().unwrap();
        s.write_all(b"request").await.unwrap();
        let (mut r, w) = s.into_split();
        drop(w);
        let mut p = acc.accept().await.unwrap();
        let mut got = Vec::new();
        p.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "FIN after the data");
        p.write_all(b"reply").await.unwrap();
        p.shutdown().await.unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply");
    });
}

#[test]
fn stats_add_up_against_a_transfer_of_known_size() {
    on_runtimes(|| async {
        const SIZE: usize = 3 << 20;
        for version in [smux_tokio::Version::V1, smux_tokio::Version::V2] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let mut cb = MuxBuilder::client();
            cb.with_version(version);
            let mut sb = MuxBuilder::server();
            sb.with_version(version);
            let (conn, _ca, cw) = cb.with_connection(a).build();
            let (peer, mut acc, sw) = sb.with_connection(b).build();
            let (cw, sw) = (tokio::spawn(cw), tokio::spawn(sw));
            let s = conn.connect().unwrap();
            let ours = tokio::spawn(send_and_receive(s, 1, SIZE));
            let p = acc.accept().await.unwrap();
            let theirs = tokio::spawn(send_and_receive(p, 2, SIZE));
            let (ours, n) = timeout(LIMIT, ours).await.unwrap().unwrap();
            assert_eq!(n, SIZE);
            assert_eq!(conn.stats().streams_open, 1, "until the handle goes");
            drop(ours);
            let (p, n) = timeout(LIMIT, theirs).await.unwrap().unwrap();
            assert_eq!(n, SIZE);
            let ps = p.stats();
            assert_eq!(
                (ps.bytes_sent, ps.bytes_received),
                (SIZE as u64, SIZE as u64)
            );
            assert_eq!((ps.unread_bytes, ps.queued_bytes), (0, 0));
            assert_eq!(ps.peer_window.is_some(), version == smux_tokio::Version::V2);
            drop(p);
            conn.close().await.unwrap();
            cw.await.unwrap().unwrap();
            sw.await.unwrap().unwrap();
            let (c, s) = (conn.stats(), peer.stats());
            for x in [&c, &s] {
                assert_eq!(x.payload_bytes_sent, SIZE as u64, "{x:?}");
                assert_eq!(x.payload_bytes_received, SIZE as u64, "{x:?}");
                assert!(x.payload_frames_sent >= (SIZE / (32 * 1024)) as u64);
            }
            assert_eq!(c.wire_bytes_sent, s.wire_bytes_received);
            assert_eq!(s.wire_bytes_sent, c.wire_bytes_received);
            assert_eq!(c.payload_frames_sent, s.payload_frames_received);
            assert_eq!(
                (c.streams_opened, s.streams_accepted, s.streams_refused),
                (1, 1, 0)
            );
            assert_eq!((c.streams_open, c.unread_bytes, c.queued_bytes), (0, 0, 0));
        }
    });
}

/// Writes `size` bytes of pattern `seed` and shuts down, while reading the peer's bytes to
/// the end; gives the stream back with how many bytes it read.
async fn send_and_receive(
    s: MuxStream<DuplexStream>,
    seed: u64,
    size: usize,
) -> (MuxStream<DuplexStream>, usize) {
    let (mut r, mut w) = s.into_split();
    let data = common::pattern(seed, size);
    let writer = async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    };
    let reader = async move {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        (r, got.len())
    };
    let (w, (r, n)) = tokio::join!(writer, reader);
    (r.reunite(w).unwrap(), n)
}

#[test]
fn an_auto_version_server_speaks_the_clients_version() {
    on_runtimes(|| async {
        for version in [smux_tokio::Version::V1, smux_tokio::Version::V2] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let mut cb = MuxBuilder::client();
            cb.with_version(version);
            let mut sb = MuxBuilder::server();
            // The last of the two setters wins.
            sb.with_version(smux_tokio::Version::V2).with_auto_version();
            let (conn, mut ca, cw) = cb.with_connection(a).build();
            let (server, mut sa, sw) = sb.with_connection(b).build();
            tokio::spawn(cw);
            tokio::spawn(sw);
            assert_eq!(conn.version(), Some(version));
            assert_eq!(
                server.version(),
                None,
                "not known before the client's first frame"
            );
            // A stream the server opens before it knows waits for the version.
            let mut early = server.connect().unwrap();
            early.write_all(b"early").await.unwrap();
            let mut s = conn.connect().unwrap();
            s.write_all(b"hello").await.unwrap();
            s.flush().await.unwrap();
            let mut p = sa.accept().await.unwrap();
            assert_eq!(server.version(), Some(version));
            let mut buf = [0u8; 5];
            p.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
            early.flush().await.unwrap();
            let mut e = ca.accept().await.unwrap();
            e.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"early");
            // Past a version-2 window both ways.
            let big = common::pattern(3, 1 << 20);
            let echo = tokio::spawn(async move {
                let mut got = vec![0u8; 1 << 20];
                p.read_exact(&mut got).await.unwrap();
                p.write_all(&got).await.unwrap();
                p.flush().await.unwrap();
                p
            });
            s.write_all(&big).await.unwrap();
            let mut back = vec![0u8; 1 << 20];
            s.read_exact(&mut back).await.unwrap();
            assert!(back == big);
            drop(echo.await.unwrap());
        }
    });
}

#[test]
#[should_panic(expected = "with_auto_version is for a server")]
fn auto_version_on_a_client_builder_panics() {
    MuxBuilder::client().with_auto_version();
}

/// Version 1, a reader that never reads holds input back: after the stalled-stream timeout
/// its stream is reset (its read fails with `ConnectionReset`) and another stream's data,
/// queued behind it, arrives.
async fn a_stalled_reader_is_reset(timeout_secs: u64) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut sb = MuxBuilder::server();
    sb.with_max_rx_queue(std::num::NonZeroUsize::new(2).unwrap())
        .with_stalled_stream_timeout(NonZeroU64::new(timeout_secs).unwrap());
    let (conn, _ca, cw) = MuxBuilder::client().with_connection(a).build();
    let (_server, mut sa, sw) = sb.with_connection(b).build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    let mut slow = conn.connect().unwrap();
    let mut fast = conn.connect().unwrap();
    let writer = tokio::spawn(async move {
        let _ = slow.write_all(&vec![1u8; 300 * 1024]).await;
        slow
    });
    let mut unread = sa.accept().await.unwrap();
    let mut other = sa.accept().await.unwrap();
    // The server's budget holds one 32 KiB frame of `slow`'s data; the next one stops the
    // input, and `fast`'s data waits behind it (or goes first: either way `slow` stalls).
    let held = |s: &MuxStream<DuplexStream>| s.stats().unread_bytes;
    while held(&unread) < 32 * 1024 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fast.write_all(b"behind").await.unwrap();
    fast.flush().await.unwrap();
    let mut buf = [0u8; 6];
    timeout(LIMIT, other.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"behind");
    // Nobody reads `slow`: only the reset empties it.
    while held(&unread) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The reader that never read hears why its data is gone.
    let mut sink = Vec::new();
    let err = unread.read_to_end(&mut sink).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(err.to_string().contains("stalled-stream timeout"), "{err}");
    assert!(sink.is_empty(), "its unread data was dropped");
    drop(writer);
}

#[test]
fn the_stalled_stream_timeout_lets_the_other_streams_go_on() {
    common::on_paused_clock(a_stalled_reader_is_reset(5));
    common::on_multi_thread(|| a_stalled_reader_is_reset(1));
}
