//! The life of a connection: the seed's code, half-close, `close()`, the worker's four exits,
//! keep-alive and idle timeouts, errors when the transport dies, and dropping handles in any
//! order.
//!
//! Every scenario runs on the current-thread runtime and on the multi-thread runtime with 2
//! and with 4 workers (`common::on_runtimes`). The timer tests assert their instants on a
//! current-thread runtime with Tokio's paused clock; their multi-thread variants assert the
//! order of events only. A state a test needs (a read waiting, say) is reached by waiting for
//! it (`common::Watched`, `common::when_pending`), never by sleeping.

use std::io;
use std::num::{NonZeroU64, NonZeroUsize};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use smux_proto::{Cmd, Header, StreamId};
use smux_tokio::{
    MuxAcceptor, MuxBuilder, MuxConnector, MuxError, MuxResult, MuxStream, MuxWorker, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

mod common;

use common::{on_runtimes, when_pending, Watched};

const LIMIT: Duration = Duration::from_secs(20);

fn nz(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap()
}

type Side<T> = (MuxConnector<T>, MuxAcceptor<T>, MuxWorker<T>);

fn pair() -> (Side<DuplexStream>, Side<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (
        MuxBuilder::client().with_connection(a).build(),
        MuxBuilder::server().with_connection(b).build(),
    )
}

fn frame(cmd: Cmd, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::new(Version::V1, cmd, payload.len() as u16, StreamId(id))
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

// ---------------------------------------------------------------- the seed and its shapes

/// The seed's code with only the crate name changed, run against a server on an ephemeral
/// port (the seed connects to a fixed port; that is the one change).
async fn seed_body(addr: std::net::SocketAddr) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (connector, mut acceptor, worker) = MuxBuilder::client().with_connection(tcp).build();
    tokio::spawn(worker);
    // Outgoing
    let mut s = connector.connect().unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    // Incoming
    #[allow(clippy::never_loop, unused_mut)]
    while let Some(mut peer) = acceptor.accept().await {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"from the server");
    }
}

#[test]
fn the_seed_code_runs_against_a_server() {
    on_runtimes(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (connector, mut acceptor, worker) = MuxBuilder::server()
                .with_keep_alive_interval(NonZeroU64::new(15).unwrap())
                .with_keep_alive_timeout(NonZeroU64::new(45).unwrap())
                .with_idle_timeout(NonZeroU64::new(60).unwrap())
                .with_max_tx_queue(NonZeroUsize::new(1024).unwrap())
                .with_max_rx_queue(NonZeroUsize::new(1024).unwrap())
                .with_connection(tcp)
                .build();
            let worker = tokio::spawn(worker);
            let mut s = acceptor.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            let mut mine = connector.connect().unwrap();
            mine.write_all(b"from the server").await.unwrap();
            mine.shutdown().await.unwrap();
            // The client reads it to the end and drops it (FIN); then end the connection, which
            // ends the client's accept loop.
            mine.read_to_end(&mut Vec::new()).await.unwrap();
            drop(s);
            connector.close().await.unwrap();
            worker.await.unwrap()
        });
        timeout(LIMIT, seed_body(addr)).await.unwrap();
        timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    });
}

/// Code written against async_smux 0.4's shapes compiles unchanged.
#[allow(dead_code)]
async fn async_smux_shapes<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: T,
) -> MuxResult<()> {
    let mut builder = MuxBuilder::client();
    builder
        .with_keep_alive_interval(nz(10))
        .with_idle_timeout(nz(60));
    builder.with_max_tx_queue(NonZeroUsize::new(16).unwrap());
    let (connector, acceptor, worker): (MuxConnector<T>, MuxAcceptor<T>, MuxWorker<T>) =
        builder.with_connection(io).build();
    tokio::spawn(worker);
    let stream: MuxStream<T> = connector.connect()?;
    let _id: u32 = stream.get_stream_id();
    let _n: usize = connector.get_num_streams();
    let _closed: bool = stream.is_closed();
    let connector2 = connector.clone();
    drop(acceptor);
    let e: Result<(), MuxError> = connector2.close().await;
    e
}

#[test]
fn handles_and_worker_are_send_and_sync() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<MuxStream<TcpStream>>();
    sync::<MuxStream<TcpStream>>();
    send::<MuxConnector<TcpStream>>();
    sync::<MuxConnector<TcpStream>>();
    send::<MuxAcceptor<TcpStream>>();
    send::<MuxWorker<TcpStream>>();
}

// ---------------------------------------------------------------- half-close

#[test]
fn half_close_both_ways() {
    on_runtimes(|| async {
        let ((cc, _ca, cw), (_sc, mut sa, sw)) = pair();
        tokio::spawn(cw);
        tokio::spawn(sw);
        timeout(LIMIT, async {
            // Client finishes first; server answers after reading to EOF.
            let mut c = cc.connect().unwrap();
            c.write_all(b"question").await.unwrap();
            c.shutdown().await.unwrap();
            let mut s = sa.accept().await.unwrap();
            let mut q = Vec::new();
            s.read_to_end(&mut q).await.unwrap();
            assert_eq!(q, b"question");
            s.write_all(b"answer").await.unwrap();
            s.shutdown().await.unwrap();
            let mut a = Vec::new();
            c.read_to_end(&mut a).await.unwrap();
            assert_eq!(a, b"answer");
            // Writing after shutdown is a broken pipe.
            let e = c.write_all(b"more").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            assert!(c.is_closed() && s.is_closed());

            // Server finishes first; the client keeps writing.
            let mut c = cc.connect().unwrap();
            c.write_all(b"x").await.unwrap();
            let mut s = sa.accept().await.unwrap();
            s.write_all(b"bye").await.unwrap();
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"bye");
            c.write_all(b"still talking").await.unwrap();
            c.shutdown().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"xstill talking");
        })
        .await
        .unwrap();
    });
}

// ---------------------------------------------------------------- close()

#[test]
fn close_drains_without_the_worker_and_is_idempotent() {
    on_runtimes(|| async {
        let ((cc, mut ca, client_worker), (_sc, mut sa, sw)) = pair();
        let server_worker = tokio::spawn(sw);
        timeout(LIMIT, async {
            let mut s = cc.connect().unwrap();
            // 200 KiB: more than the duplex buffer, so close() must keep writing as it drains.
            let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
            // poll_write accepts without the worker (the session queues it).
            s.write_all(&data).await.unwrap();
            // The client worker is never polled.
            let reader = tokio::spawn(async move {
                let mut peer = sa.accept().await.unwrap();
                let mut got = Vec::new();
                peer.read_to_end(&mut got).await.unwrap();
                got
            });
            cc.close().await.unwrap();
            cc.close().await.unwrap();
            assert_eq!(
                reader.await.unwrap(),
                data,
                "the peer read it all, then EOF"
            );
            assert!(matches!(cc.connect(), Err(MuxError::ConnectionClosed)));
            assert!(ca.accept().await.is_none());
            let e = s.read(&mut [0u8; 4]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
            // The server's session saw the transport end and finished in order.
            server_worker.await.unwrap().unwrap();
            drop(client_worker);
        })
        .await
        .unwrap();
    });
}

#[test]
fn reads_after_close_return_what_arrived_then_an_error() {
    on_runtimes(|| async {
        let ((cc, _ca, cw), (sc, mut sa, sw)) = pair();
        let cw = tokio::spawn(cw);
        tokio::spawn(sw);
        timeout(LIMIT, async {
            let mut c = cc.connect().unwrap();
            c.write_all(b"hi").await.unwrap();
            let mut s = sa.accept().await.unwrap();
            s.write_all(b"unread reply").await.unwrap();
            s.flush().await.unwrap();
            // Wait until the reply has arrived on the client.
            let mut first = [0u8; 1];
            c.read_exact(&mut first).await.unwrap();
            cc.close().await.unwrap();
            let mut rest = Vec::new();
            let e = c.read_to_end(&mut rest).await.unwrap_err();
            assert_eq!(rest, b"nread reply");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
            assert!(cw.await.unwrap().is_ok());
            drop(sc);
        })
        .await
        .unwrap();
    });
}

// ---------------------------------------------------------------- the worker's exits

#[test]
fn worker_ends_ok_when_all_handles_are_dropped_and_the_peer_sees_fin() {
    on_runtimes(|| async {
        let ((cc, ca, cw), (_sc, mut sa, sw)) = pair();
        let cw = tokio::spawn(cw);
        tokio::spawn(sw);
        timeout(LIMIT, async {
            let mut c = cc.connect().unwrap();
            c.write_all(b"last words").await.unwrap();
            drop(c);
            drop(ca);
            drop(cc);
            assert!(cw.await.unwrap().is_ok());
            let mut s = sa.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"last words");
        })
        .await
        .unwrap();
    });
}

#[test]
fn worker_ends_ok_on_close() {
    on_runtimes(|| async {
        let ((cc, _ca, cw), (_sc, _sa, sw)) = pair();
        let cw = tokio::spawn(cw);
        let sw = tokio::spawn(sw);
        timeout(LIMIT, async {
            cc.close().await.unwrap();
            assert!(cw.await.unwrap().is_ok());
            // For the server this is the peer closing the transport: also an orderly end.
            assert!(sw.await.unwrap().is_ok());
        })
        .await
        .unwrap();
    });
}

/// After `close()`, the worker keeps the transport open and reads (and drops) what the peer
/// still sends until the peer closes its side: closing a socket with unread input would make
/// the kernel reset the connection, and the peer would lose what it had not read yet. The
/// linger is an hour here, so only the peer's end can stop it.
#[test]
fn close_lingers_until_the_peer_closes_its_side() {
    on_runtimes(|| async {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client()
            .with_close_linger(Duration::from_secs(3600))
            .with_connection(a)
            .build();
        let cw = tokio::spawn(cw);
        timeout(LIMIT, async {
            let mut s = cc.connect().unwrap();
            s.write_all(b"bye").await.unwrap();
            cc.close().await.unwrap();
            // Everything reached the peer, then the end of our side.
            let mut wire = Vec::new();
            b.read_to_end(&mut wire).await.unwrap();
            // (A client's first stream is 3, as in the Go implementation.)
            let mut want = frame(Cmd::Syn, 3, b"");
            want.extend(frame(Cmd::Psh, 3, b"bye"));
            want.extend(frame(Cmd::Fin, 3, b""));
            assert_eq!(wire, want);
            // The peer goes on sending, more than the transport buffers: it is read and
            // dropped, so the peer's writes complete.
            let late = frame(Cmd::Psh, 3, &[7u8; 1000]);
            for _ in 0..200 {
                b.write_all(&late).await.unwrap();
            }
            assert!(!cw.is_finished(), "the worker ended before the peer closed");
            drop(b);
            assert!(cw.await.unwrap().is_ok());
        })
        .await
        .unwrap();
    });
}

/// A peer that never closes its side: the worker drops the transport once the linger is over
/// (2 s by default), and with a linger of zero at once. On the paused clock.
#[test]
fn the_linger_ends_at_its_timeout_or_at_once_when_zero() {
    for (linger, want) in [
        (None, Duration::from_secs(2)),
        (Some(Duration::ZERO), Duration::ZERO),
    ] {
        common::on_paused_clock(async move {
            let (a, mut b) = tokio::io::duplex(64 * 1024);
            let mut builder = MuxBuilder::client();
            if let Some(linger) = linger {
                builder.with_close_linger(linger);
            }
            let (cc, _ca, cw) = builder.with_connection(a).build();
            let cw = tokio::spawn(cw);
            cc.close().await.unwrap();
            let start = tokio::time::Instant::now();
            // Our side ended; the peer keeps its side open.
            let mut rest = Vec::new();
            b.read_to_end(&mut rest).await.unwrap();
            assert!(cw.await.unwrap().is_ok());
            assert_eq!(start.elapsed(), want, "linger {linger:?}");
            // The transport is gone: the peer's writes fail.
            assert!(b.write_all(b"x").await.is_err());
        });
    }
}

/// The same on the multi-thread runtimes, on the real clock, order only: against a peer that
/// never closes, the worker still ends (`Ok`) once a short linger is over, and then the
/// transport is gone.
#[test]
fn the_linger_ends_without_the_peer_order_multi_thread() {
    common::on_multi_thread(|| async {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client()
            .with_close_linger(Duration::from_millis(1))
            .with_connection(a)
            .build();
        let cw = tokio::spawn(cw);
        timeout(LIMIT, async {
            cc.close().await.unwrap();
            let mut rest = Vec::new();
            b.read_to_end(&mut rest).await.unwrap();
            assert!(cw.await.unwrap().is_ok());
            assert!(b.write_all(b"x").await.is_err());
        })
        .await
        .unwrap();
    });
}

#[test]
fn peer_closing_the_transport_ends_the_worker_and_pending_reads() {
    on_runtimes(|| async {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let (_cc, mut ca, cw) = MuxBuilder::client().with_connection(a).build();
        let cw = tokio::spawn(cw);
        timeout(LIMIT, async {
            // A raw peer opens two streams, finishes one, then drops the transport.
            let mut wire = frame(Cmd::Syn, 2, b"");
            wire.extend(frame(Cmd::Psh, 2, b"clean"));
            wire.extend(frame(Cmd::Fin, 2, b""));
            wire.extend(frame(Cmd::Syn, 4, b""));
            wire.extend(frame(Cmd::Psh, 4, b"cut"));
            b.write_all(&wire).await.unwrap();
            let mut clean = ca.accept().await.unwrap();
            let mut cut = ca.accept().await.unwrap();
            // A reader already waiting when the transport goes.
            let mut three = [0u8; 3];
            cut.read_exact(&mut three).await.unwrap();
            let (waiting, parked) = when_pending(async move {
                let mut more = [0u8; 1];
                cut.read(&mut more).await
            });
            let waiting = tokio::spawn(waiting);
            parked.parked().await;
            drop(b);
            assert!(cw.await.unwrap().is_ok());
            // FIN then the transport closing at once: the data, then a clean end.
            let mut got = Vec::new();
            clean.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"clean");
            // No FIN: the waiting reader gets an error, not a clean end.
            let e = waiting.await.unwrap().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            assert!(ca.accept().await.is_none());
        })
        .await
        .unwrap();
    });
}

#[tokio::test(start_paused = true)]
async fn keep_alive_timeout_against_a_silent_peer() {
    let (a, _silent) = tokio::io::duplex(64 * 1024);
    let (cc, mut ca, cw) = MuxBuilder::client()
        .with_keep_alive_interval(nz(1))
        .with_keep_alive_timeout(nz(3))
        .with_connection(a)
        .build();
    let cw = tokio::spawn(cw);
    let mut s = cc.connect().unwrap();
    let start = tokio::time::Instant::now();
    let reader = tokio::spawn(async move { s.read(&mut [0u8; 8]).await });
    let result = timeout(Duration::from_secs(60), cw).await.unwrap().unwrap();
    assert!(
        matches!(result, Err(MuxError::KeepAliveTimeout)),
        "{result:?}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let e = reader.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(ca.accept().await.is_none());
    assert!(cc.connect().is_err());
}

/// The same on the multi-thread runtimes, on the real clock (1 s, the shortest keep-alive):
/// the order only. The read was waiting before the timeout; the worker ends with
/// `KeepAliveTimeout`, then the read fails with `TimedOut`, the accept ends and `connect()`
/// fails.
#[test]
fn keep_alive_timeout_against_a_silent_peer_order_multi_thread() {
    common::on_multi_thread(|| async {
        let (a, _silent) = tokio::io::duplex(64 * 1024);
        let (cc, mut ca, cw) = MuxBuilder::client()
            .with_keep_alive_interval(nz(1))
            .with_keep_alive_timeout(nz(1))
            .with_connection(a)
            .build();
        let cw = tokio::spawn(cw);
        let mut s = cc.connect().unwrap();
        let (reader, parked) = when_pending(async move { s.read(&mut [0u8; 8]).await });
        let reader = tokio::spawn(reader);
        parked.parked().await;
        let result = timeout(LIMIT, cw).await.unwrap().unwrap();
        assert!(
            matches!(result, Err(MuxError::KeepAliveTimeout)),
            "{result:?}"
        );
        let e = timeout(LIMIT, reader).await.unwrap().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(ca.accept().await.is_none());
        assert!(cc.connect().is_err());
    });
}

#[tokio::test(start_paused = true)]
async fn keep_alive_keeps_an_idle_connection_alive() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (cc, _ca, cw) = MuxBuilder::client()
        .with_keep_alive_interval(nz(1))
        .with_connection(a)
        .build();
    let (_sc, _sa, sw) = MuxBuilder::server()
        .with_keep_alive_interval(nz(1))
        .with_connection(b)
        .build();
    let cw = tokio::spawn(cw);
    let sw = tokio::spawn(sw);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!cw.is_finished() && !sw.is_finished());
    cc.close().await.unwrap();
    assert!(cw.await.unwrap().is_ok());
}

/// The same on the multi-thread runtimes, on the real clock, in order: each side receives four
/// keep-alive NOPs (the fourth comes after the 3 s keep-alive timeout has passed once), and
/// neither worker has ended by then; `close()` then ends both in order.
#[test]
fn keep_alive_keeps_an_idle_connection_alive_order_multi_thread() {
    common::on_multi_thread(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (a, client_seen) = Watched::new(a);
        let (b, server_seen) = Watched::new(b);
        let (cc, _ca, cw) = MuxBuilder::client()
            .with_keep_alive_interval(nz(1))
            .with_connection(a)
            .build();
        let (_sc, _sa, sw) = MuxBuilder::server()
            .with_keep_alive_interval(nz(1))
            .with_connection(b)
            .build();
        let cw = tokio::spawn(cw);
        let sw = tokio::spawn(sw);
        // Nothing but NOPs (8 bytes each) crosses this connection.
        for seen in [&client_seen, &server_seen] {
            timeout(
                LIMIT,
                common::until(&seen.changed, || seen.read.load(Ordering::SeqCst) >= 4 * 8),
            )
            .await
            .expect("four NOPs");
        }
        assert!(!cw.is_finished() && !sw.is_finished());
        cc.close().await.unwrap();
        assert!(cw.await.unwrap().is_ok());
        assert!(sw.await.unwrap().is_ok());
    });
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_a_quiet_stream() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (cc, _ca, cw) = MuxBuilder::client()
        .with_idle_timeout(nz(5))
        .with_connection(a)
        .build();
    let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(b).build();
    tokio::spawn(cw);
    tokio::spawn(sw);
    let mut quiet = cc.connect().unwrap();
    quiet.write_all(b"hi").await.unwrap();
    let mut peer = sa.accept().await.unwrap();
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 8];
    assert_eq!(peer.read(&mut buf).await.unwrap(), 2);
    // The client's read ends when the idle timeout closes the stream.
    assert_eq!(
        timeout(Duration::from_secs(60), quiet.read(&mut buf))
            .await
            .unwrap()
            .unwrap(),
        0
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(11),
        "{waited:?}"
    );
    let e = quiet.write_all(b"x").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    // The peer saw FIN.
    assert_eq!(peer.read(&mut buf).await.unwrap(), 0);
    assert!(
        quiet.is_closed(),
        "the idle timeout closed the stream both ways"
    );
}

/// The same on the multi-thread runtimes, on the real clock (1 s idle timeout), in order: the
/// peer reads the data, then the quiet stream's read ends (EOF), its writes fail, the peer
/// reads FIN, and the stream is closed both ways.
#[test]
fn idle_timeout_closes_a_quiet_stream_order_multi_thread() {
    common::on_multi_thread(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client()
            .with_idle_timeout(nz(1))
            .with_connection(a)
            .build();
        let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(b).build();
        tokio::spawn(cw);
        tokio::spawn(sw);
        let mut quiet = cc.connect().unwrap();
        quiet.write_all(b"hi").await.unwrap();
        let mut peer = sa.accept().await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(peer.read(&mut buf).await.unwrap(), 2);
        let n = timeout(LIMIT, quiet.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0);
        let e = quiet.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(
            timeout(LIMIT, peer.read(&mut buf)).await.unwrap().unwrap(),
            0
        );
        assert!(quiet.is_closed());
    });
}

#[test]
fn protocol_error_ends_the_worker_with_a_typed_error() {
    on_runtimes(|| async {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        let cw = tokio::spawn(cw);
        let mut s = cc.connect().unwrap();
        let (reader, parked) = when_pending(async move { s.read(&mut [0u8; 8]).await });
        let reader = tokio::spawn(reader);
        parked.parked().await;
        // A version 2 frame to a version 1 session.
        b.write_all(&[2, 3, 0, 0, 0, 0, 0, 0]).await.unwrap();
        let result = timeout(LIMIT, cw).await.unwrap().unwrap();
        let Err(MuxError::Protocol(e)) = result else {
            panic!("expected a protocol error, got {result:?}")
        };
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = timeout(LIMIT, reader).await.unwrap().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    });
}

// ---------------------------------------------------------------- transport failures

/// A transport whose reads fail once `fail` is set.
struct Failing {
    inner: DuplexStream,
    fail: Arc<AtomicBool>,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.fail.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "boom")));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.fail.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "boom")));
        }
        r
    }
}

impl AsyncWrite for Failing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[test]
fn transport_error_ends_the_worker_and_resets_streams() {
    on_runtimes(|| async {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let fail = Arc::new(AtomicBool::new(false));
        let (cc, _ca, cw) = MuxBuilder::client()
            .with_connection(Failing {
                inner: a,
                fail: Arc::clone(&fail),
            })
            .build();
        let cw = tokio::spawn(cw);
        let mut s = cc.connect().unwrap();
        let (reader, parked) = when_pending(async move { s.read(&mut [0u8; 8]).await });
        let reader = tokio::spawn(reader);
        parked.parked().await;
        fail.store(true, Ordering::SeqCst);
        // Wake the worker's read.
        b.write_all(&frame(Cmd::Nop, 0, b"")).await.unwrap();
        let result = timeout(LIMIT, cw).await.unwrap().unwrap();
        assert!(
            matches!(result, Err(MuxError::IoError(ref e)) if e.kind() == io::ErrorKind::ConnectionReset),
            "{result:?}"
        );
        let e = timeout(LIMIT, reader).await.unwrap().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("boom"), "{e}");
    });
}

// ---------------------------------------------------------------- dropping handles

/// A transport that records being dropped: the shared state holds it, so once it is dropped
/// nothing of the connection is left.
struct Tracked {
    inner: DuplexStream,
    dropped: Arc<AtomicBool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn dropping_handles_in_any_order_hangs_nothing_and_frees_everything() {
    on_runtimes(|| async {
        for order in permutations(4) {
            for spawn_worker in [false, true] {
                let (a, b) = tokio::io::duplex(64 * 1024);
                let dropped = Arc::new(AtomicBool::new(false));
                let (cc, ca, cw) = MuxBuilder::client()
                    .with_connection(Tracked {
                        inner: a,
                        dropped: Arc::clone(&dropped),
                    })
                    .build();
                let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(b).build();
                tokio::spawn(sw);
                let mut s = cc.connect().unwrap();
                s.write_all(b"data").await.unwrap();
                let mut handles: Vec<Option<Box<dyn std::any::Any + Send>>> = vec![
                    Some(Box::new(s)),
                    Some(Box::new(ca)),
                    Some(Box::new(cc)),
                    None,
                ];
                let mut worker = Some(cw);
                let mut join = None;
                if spawn_worker {
                    join = Some(tokio::spawn(worker.take().unwrap()));
                }
                for i in &order {
                    if *i == 3 {
                        drop(worker.take());
                    } else {
                        drop(handles[*i].take());
                    }
                    tokio::task::yield_now().await;
                }
                if let Some(j) = join {
                    let r = timeout(LIMIT, j).await.expect("worker hung").unwrap();
                    assert!(r.is_ok(), "order {order:?}: {r:?}");
                    // The peer got the data and a FIN.
                    let mut peer = timeout(LIMIT, sa.accept()).await.unwrap().unwrap();
                    let mut got = Vec::new();
                    timeout(LIMIT, peer.read_to_end(&mut got))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(got, b"data");
                }
                assert!(
                    dropped.load(Ordering::SeqCst),
                    "order {order:?}, worker spawned {spawn_worker}: the connection state leaked"
                );
            }
        }
    });
}

#[test]
fn dropping_the_worker_fails_pending_and_future_operations() {
    on_runtimes(|| async {
        let ((cc, mut ca, cw), _server) = pair();
        let mut s = cc.connect().unwrap();
        let (reader, parked) = when_pending(async move { s.read(&mut [0u8; 8]).await });
        let reader = tokio::spawn(reader);
        parked.parked().await;
        drop(cw);
        let e = timeout(LIMIT, reader).await.unwrap().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(cc.connect().is_err());
        assert!(ca.accept().await.is_none());
        // Nothing can be sent any more: close() says so rather than claim an orderly end.
        assert!(matches!(cc.close().await, Err(MuxError::ConnectionClosed)));
    });
}
