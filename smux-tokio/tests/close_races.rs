//! `close()` against the worker, the transport and other tasks: it drains more than one poll's
//! worth without the worker, it does not steal the worker's wake-ups when cancelled (nor does
//! a stream's write), pending operations see it, and failures while draining are reported,
//! not hidden.
//!
//! The transports are in-memory (`tokio::io::duplex`). Each scenario runs on the
//! current-thread runtime and on the multi-thread runtime with 2 and 4 workers
//! (`common::on_runtimes`). Where a scenario needs a state (the worker blocked on the
//! transport, a flush waiting), it has two versions: one on a current-thread runtime with the
//! clock paused, where a paused sleep returns once every task is idle, and one on every
//! runtime that waits for that state explicitly (`common::Watched` reports a parked read or
//! write, `common::when_pending` a parked future). No test depends on how fast the machine is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smux_tokio::{MuxAcceptor, MuxBuilder, MuxError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::time::timeout;

mod common;

use common::{on_runtimes, poll_once_then_drop, when_pending, Watched};

const LIMIT: Duration = Duration::from_secs(10);

/// Accepts the next stream and reads it to the end; returns the bytes read.
async fn accept_and_count(mut sa: MuxAcceptor<DuplexStream>) -> usize {
    let mut p = sa.accept().await.unwrap();
    let mut got = Vec::new();
    p.read_to_end(&mut got).await.unwrap();
    got.len()
}

/// Writes `n` bytes of `byte` that the session queues without a reader. The writes are
/// smaller than a frame: those are copied into the stream's queue (up to its share, 256 KiB),
/// while a write of a frame or more may go straight to the transport and, finding it full,
/// wait for it as a socket write would.
async fn queue_unread<T>(s: &mut smux_tokio::MuxStream<T>, byte: u8, n: usize)
where
    T: smux_tokio::TokioConn,
{
    let chunk = [byte; 4096];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k]).await.unwrap();
        left -= k;
    }
}

#[tokio::test(start_paused = true)]
async fn the_worker_ends_after_close_even_if_the_peer_keeps_the_transport_open() {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
    let cw = tokio::spawn(cw);
    // A raw peer that reads everything and never closes its side (as Go does after EOF).
    let peer = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = b.read_to_end(&mut v).await;
        b
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    timeout(LIMIT, cc.close()).await.unwrap().unwrap();
    let r = timeout(LIMIT, cw)
        .await
        .expect("worker not woken after close()");
    assert!(r.unwrap().is_ok());
    drop(peer);
}

/// The same, waiting for the worker to block reading instead of a paused sleep.
#[test]
fn the_worker_ends_after_close_even_if_the_peer_keeps_the_transport_open_synced() {
    on_runtimes(|| async {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let (a, seen) = Watched::new(a);
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        let cw = tokio::spawn(cw);
        let peer = tokio::spawn(async move {
            let mut v = Vec::new();
            let _ = b.read_to_end(&mut v).await;
            b
        });
        timeout(LIMIT, seen.read_parked()).await.unwrap();
        timeout(LIMIT, cc.close()).await.unwrap().unwrap();
        let r = timeout(LIMIT, cw)
            .await
            .expect("worker not woken after close()");
        assert!(r.unwrap().is_ok());
        drop(peer);
    });
}

#[test]
fn close_without_the_worker_drains_more_than_one_poll_can_write() {
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(16 * 1024 * 1024);
        let (cc, _ca, _cw) = MuxBuilder::client().with_connection(a).build();
        let (_sc, sa, sw) = MuxBuilder::server().with_connection(b).build();
        tokio::spawn(sw);
        let mut s = cc.connect().unwrap();
        let data = vec![7u8; 1536 * 1024];
        s.write_all(&data).await.unwrap();
        let reader = tokio::spawn(accept_and_count(sa));
        timeout(LIMIT, cc.close())
            .await
            .expect("close() hung")
            .unwrap();
        assert_eq!(timeout(LIMIT, reader).await.unwrap().unwrap(), data.len());
    });
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_close_does_not_steal_the_workers_wake_ups() {
    let (a, b) = tokio::io::duplex(8 * 1024);
    let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
    let (_sc, sa, sw) = MuxBuilder::server().with_connection(b).build();
    tokio::spawn(cw);
    let mut s = cc.connect().unwrap();
    queue_unread(&mut s, 7, 192 * 1024).await;
    // The worker is blocked writing: nobody reads the other end yet.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = timeout(Duration::from_millis(20), cc.close()).await;
    tokio::spawn(sw);
    let got = timeout(LIMIT, accept_and_count(sa))
        .await
        .expect("the worker lost its write wake-up to a cancelled close()");
    assert_eq!(got, 192 * 1024);
    drop(s);
}

/// The same, synchronised: the worker's write is parked on the full pipe, then `close()` is
/// polled once (taking the transport's write readiness) and dropped.
#[test]
fn a_cancelled_close_does_not_steal_the_workers_wake_ups_synced() {
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(8 * 1024);
        let (a, seen) = Watched::new(a);
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        let (_sc, sa, sw) = MuxBuilder::server().with_connection(b).build();
        tokio::spawn(cw);
        let mut s = cc.connect().unwrap();
        queue_unread(&mut s, 7, 192 * 1024).await;
        timeout(LIMIT, seen.write_parked()).await.unwrap();
        assert!(
            poll_once_then_drop(cc.close()).await.is_none(),
            "close() finished although nobody reads the pipe"
        );
        tokio::spawn(sw);
        let got = timeout(LIMIT, accept_and_count(sa))
            .await
            .expect("the worker lost its write wake-up to a cancelled close()");
        assert_eq!(got, 192 * 1024);
        drop(s);
    });
}

/// A stream's write that finds its queue full writes the queue itself (a write of a frame or
/// more, which would go straight to the transport, first writes what is queued ahead of it);
/// on a full transport that leaves the task's waker in the transport (which keeps the last
/// one only), not the worker's. The write is then cancelled: the worker must still learn when
/// the transport drains, and write the rest. Nothing else wakes it here: version 1 sends no
/// window updates, and the keep-alive is an hour away.
#[test]
fn a_cancelled_write_does_not_steal_the_workers_wake_ups() {
    on_runtimes(|| cancelled_write_then_drain(4096));
}

/// The same with writes of 64 KiB: the write that meets the full pipe is a direct write that
/// first writes what is queued ahead of it.
#[test]
fn a_cancelled_large_write_does_not_steal_the_workers_wake_ups() {
    on_runtimes(|| cancelled_write_then_drain(64 * 1024));
}

async fn cancelled_write_then_drain(size: usize) {
    let (a, b) = tokio::io::duplex(8 * 1024);
    let (a, seen) = Watched::new(a);
    let hour = std::num::NonZeroU64::new(3600).unwrap();
    let (cc, _ca, cw) = MuxBuilder::client()
        .with_keep_alive_interval(hour)
        .with_keep_alive_timeout(hour.saturating_mul(hour))
        .with_connection(a)
        .build();
    let (_sc, mut sa, sw) = MuxBuilder::server()
        .with_keep_alive_interval(hour)
        .with_keep_alive_timeout(hour.saturating_mul(hour))
        .with_connection(b)
        .build();
    tokio::spawn(cw);
    let mut s = cc.connect().unwrap();
    // Writes of 4 KiB are queued and left to the worker, which parks on the full pipe.
    queue_unread(&mut s, 7, 64 * 1024).await;
    timeout(LIMIT, seen.write_pendings_above(0)).await.unwrap();
    // Fill the stream's queue with writes that do not touch the transport (each wakes the
    // worker, which parks again on the full pipe). Once it is full (or, for a large
    // write, once the session has handed all it holds to the output queue), a write
    // writes the queue to the full pipe itself, and gives up.
    let chunk = vec![7u8; size];
    let mut queued = 64 * 1024;
    loop {
        let before = seen.write_pendings();
        match poll_once_then_drop(s.write(&chunk)).await {
            Some(n) => {
                queued += n.unwrap();
                timeout(LIMIT, seen.write_pendings_above(before))
                    .await
                    .unwrap();
            }
            // It met the full pipe: the pipe now holds this task's waker.
            None if seen.write_pendings() > before => break,
            // The worker held the write side a moment longer: again.
            None => tokio::task::yield_now().await,
        }
        assert!(queued <= 1024 * 1024, "the stream's queue never filled");
    }
    tokio::spawn(sw);
    let mut p = timeout(LIMIT, sa.accept()).await.unwrap().unwrap();
    let mut got = vec![0u8; queued];
    timeout(LIMIT, p.read_exact(&mut got))
        .await
        .expect("the worker lost its write wake-up to a cancelled write")
        .unwrap();
    assert!(got.iter().all(|&b| b == 7));
    drop(s);
}

#[tokio::test(start_paused = true)]
async fn close_wakes_a_pending_accept_and_blocked_writers() {
    let (a, _b) = tokio::io::duplex(1024);
    let (cc, mut ca, cw) = MuxBuilder::client().with_connection(a).build();
    tokio::spawn(cw);
    let mut s = cc.connect().unwrap();
    // Fill the queues: the peer never reads, so close() cannot finish.
    let writer = tokio::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = s.write_all(&chunk).await {
                return e.kind();
            }
        }
    });
    let accept = tokio::spawn(async move { ca.accept().await.is_none() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = timeout(Duration::from_millis(50), cc.close()).await;
    assert!(timeout(LIMIT, accept)
        .await
        .expect("accept not woken")
        .unwrap());
    let kind = timeout(LIMIT, writer)
        .await
        .expect("writer not woken")
        .unwrap();
    assert_eq!(kind, io::ErrorKind::BrokenPipe);
}

/// The same, synchronised: the writer is parked in `poll_write` and the accept is waiting
/// before `close()` is polled (once; it cannot finish, the peer reads nothing).
#[test]
fn close_wakes_a_pending_accept_and_blocked_writers_synced() {
    on_runtimes(|| async {
        let (a, _b) = tokio::io::duplex(1024);
        let (cc, mut ca, cw) = MuxBuilder::client().with_connection(a).build();
        tokio::spawn(cw);
        let s = cc.connect().unwrap();
        let (mut s, writer_seen) = Watched::new(s);
        let writer = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = s.write_all(&chunk).await {
                    return e.kind();
                }
            }
        });
        let (accept, accept_seen) = when_pending(async move { ca.accept().await.is_none() });
        let accept = tokio::spawn(accept);
        timeout(LIMIT, writer_seen.write_parked()).await.unwrap();
        timeout(LIMIT, accept_seen.parked()).await.unwrap();
        assert!(poll_once_then_drop(cc.close()).await.is_none());
        assert!(timeout(LIMIT, accept)
            .await
            .expect("accept not woken")
            .unwrap());
        let kind = timeout(LIMIT, writer)
            .await
            .expect("writer not woken")
            .unwrap();
        assert_eq!(kind, io::ErrorKind::BrokenPipe);
    });
}

#[tokio::test(start_paused = true)]
async fn a_pending_flush_completes_when_close_delivers_the_data() {
    let (a, b) = tokio::io::duplex(8 * 1024);
    let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
    let (_sc, sa, sw) = MuxBuilder::server().with_connection(b).build();
    tokio::spawn(cw);
    let mut s = cc.connect().unwrap();
    queue_unread(&mut s, 1, 200_000).await;
    let flush = tokio::spawn(async move {
        let r = s.flush().await;
        (r, s)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cc2 = cc.clone();
    let closer = tokio::spawn(async move { cc2.close().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    tokio::spawn(sw);
    let got = timeout(LIMIT, accept_and_count(sa)).await.unwrap();
    assert_eq!(got, 200_000);
    let (r, _s) = timeout(LIMIT, flush).await.unwrap().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(timeout(LIMIT, closer).await.unwrap().unwrap().is_ok());
}

/// The same, synchronised: the flush and the close are both parked before the peer starts.
#[test]
fn a_pending_flush_completes_when_close_delivers_the_data_synced() {
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(8 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        let (_sc, sa, sw) = MuxBuilder::server().with_connection(b).build();
        tokio::spawn(cw);
        let mut s = cc.connect().unwrap();
        queue_unread(&mut s, 1, 200_000).await;
        let (flush, flush_seen) = when_pending(async move {
            let r = s.flush().await;
            (r, s)
        });
        let flush = tokio::spawn(flush);
        timeout(LIMIT, flush_seen.parked()).await.unwrap();
        let cc2 = cc.clone();
        let (closer, close_seen) = when_pending(async move { cc2.close().await });
        let closer = tokio::spawn(closer);
        timeout(LIMIT, close_seen.parked()).await.unwrap();
        tokio::spawn(sw);
        let got = timeout(LIMIT, accept_and_count(sa)).await.unwrap();
        assert_eq!(got, 200_000);
        let (r, _s) = timeout(LIMIT, flush).await.unwrap().unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert!(timeout(LIMIT, closer).await.unwrap().unwrap().is_ok());
    });
}

#[test]
fn a_dropped_worker_closes_the_transport_and_close_says_so() {
    on_runtimes(|| async {
        let (a, mut b) = tokio::io::duplex(1024 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        drop(cw);
        assert!(matches!(cc.connect(), Err(MuxError::ConnectionClosed)));
        assert!(matches!(cc.close().await, Err(MuxError::ConnectionClosed)));
        // The peer sees the connection end instead of waiting on it forever.
        let n = timeout(LIMIT, b.read(&mut [0u8; 64]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    });
}

/// Writes fail after `left` bytes.
struct FailingWriter {
    inner: DuplexStream,
    left: usize,
}

impl AsyncRead for FailingWriter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, b)
    }
}

impl AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let n = b.len().min(self.left);
        let r = Pin::new(&mut self.inner).poll_write(cx, &b[..n]);
        if let Poll::Ready(Ok(k)) = r {
            self.left -= k;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[test]
fn a_transport_failure_while_closing_is_reported() {
    on_runtimes(|| async {
        let (a, _b) = tokio::io::duplex(16 * 1024 * 1024);
        let (cc, _ca, cw) = MuxBuilder::client()
            .with_connection(FailingWriter {
                inner: a,
                left: 500_000,
            })
            .build();
        let mut s = cc.connect().unwrap();
        s.write_all(&vec![1u8; 500_000]).await.unwrap();
        let r = timeout(LIMIT, cc.close()).await.unwrap();
        assert!(
            matches!(r, Err(MuxError::IoError(ref e)) if e.kind() == io::ErrorKind::ConnectionReset),
            "{r:?}"
        );
        let w = timeout(LIMIT, cw).await.unwrap();
        assert!(matches!(w, Err(MuxError::IoError(_))), "{w:?}");
    });
}
