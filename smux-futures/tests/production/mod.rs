//! `open()`, `closed()` and `MuxError` as `io::Error` on smux-futures, written once for
//! every runtime the tests run it on: the caller passes its transports and its `spawn`.

use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::Poll;

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use smux_futures::{MuxAcceptor, MuxBuilder, MuxConnector, MuxError, WithConfig};

/// A task to spawn.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Builds both ends (`client` and `server` configured by the caller) and spawns their
/// workers.
fn start<T>(
    mut client: MuxBuilder<WithConfig>,
    mut server: MuxBuilder<WithConfig>,
    transports: (T, T),
    spawn: &impl Fn(Task),
) -> (
    MuxConnector<T>,
    MuxAcceptor<T>,
    MuxConnector<T>,
    MuxAcceptor<T>,
)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, ca, cw) = client.with_connection(transports.0).build();
    let (peer, sa, sw) = server.with_connection(transports.1).build();
    spawn(Box::pin(async move {
        let _ = cw.await;
    }));
    spawn(Box::pin(async move {
        let _ = sw.await;
    }));
    (conn, ca, peer, sa)
}

/// Queues FIN on `s` (`poll_close`), keeping its read side open.
async fn finish<S: AsyncWrite + Unpin>(s: &mut S) {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_close(cx))
        .await
        .unwrap();
}

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

/// Reads `s` to its end.
async fn drain<S: AsyncRead + Unpin>(mut s: S) {
    let mut buf = [0u8; 1024];
    while std::future::poll_fn(|cx| Pin::new(&mut s).poll_read(cx, &mut buf))
        .await
        .is_ok_and(|n| n > 0)
    {}
}

/// At a limit of one stream, `open()` waits for the stream to go; `connect()?` converts its
/// `TooManyStreams`; `closed()` resolves for every waiter when the peer closes.
pub async fn open_closed_and_io_errors<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = MuxBuilder::client();
    b.with_max_streams(NonZeroUsize::new(1).unwrap());
    let (conn, _ca, cw) = b.with_connection(client).build();
    let (peer, mut sa, sw) = MuxBuilder::server().with_connection(server).build();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    spawn(Box::pin(async move {
        let _ = done_tx.send(cw.await.map_err(|e| e.to_string()));
    }));
    spawn(Box::pin(async move {
        let _ = sw.await;
    }));
    let accepting = peer.clone();
    spawn(Box::pin(async move {
        let _keep = accepting;
        while let Some(s) = sa.accept().await {
            drain(s).await;
        }
    }));
    let first = conn.open().await.unwrap();
    let connect = || -> io::Result<()> {
        conn.connect()?;
        Ok(())
    };
    let err = connect().unwrap_err();
    assert!(matches!(
        err.get_ref().and_then(|e| e.downcast_ref::<MuxError>()),
        Some(MuxError::TooManyStreams)
    ));
    let mut waiting = Box::pin(conn.open());
    assert!(poll_once(&mut waiting).await.is_none(), "at the limit");
    drop(first);
    let second = waiting.await.expect("served once the first stream went");
    drop(second);
    let mut closed = Box::pin(conn.closed());
    assert!(poll_once(&mut closed).await.is_none(), "not closed yet");
    let other = conn.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    spawn(Box::pin(async move {
        let _ = tx.send(other.closed().await.is_ok());
    }));
    peer.close().await.unwrap();
    assert!(closed.await.is_ok());
    assert!(conn.closed().await.is_ok());
    assert!(matches!(conn.open().await, Err(MuxError::ConnectionClosed)));
    // The spawned waiter and the worker have finished by now or soon: wait without a
    // runtime-specific timer.
    while rx.try_recv().is_err() {
        yield_now().await;
    }
    loop {
        match done_rx.try_recv() {
            Ok(r) => {
                assert_eq!(r, Ok(()));
                break;
            }
            Err(_) => yield_now().await,
        }
    }
}

/// Lets other tasks run once.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Reads exactly `buf.len()` bytes.
async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) {
    let mut at = 0;
    while at < buf.len() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *s).poll_read(cx, &mut buf[at..]))
            .await
            .unwrap();
        assert!(n > 0, "early end");
        at += n;
    }
}

/// Writes all of `data`, then flushes.
async fn write_all<S: AsyncWrite + Unpin>(s: &mut S, mut data: &[u8]) {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *s).poll_write(cx, data))
            .await
            .unwrap();
        data = &data[n..];
    }
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_flush(cx))
        .await
        .unwrap();
}

/// `drain()`: new streams fail with `Draining`, the open one goes on both ways, and the
/// drain ends with the session once both sides have finished it.
pub async fn drain_lets_the_open_stream_finish<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, _ca, _peer, mut sa) = start(
        MuxBuilder::client(),
        MuxBuilder::server(),
        (client, server),
        &spawn,
    );
    let mut ours = conn.connect().unwrap();
    write_all(&mut ours, b"ping").await;
    let mut theirs = sa.accept().await.unwrap();
    let mut draining = Box::pin(conn.drain());
    assert!(poll_once(&mut draining).await.is_none(), "a stream is open");
    assert!(matches!(conn.connect(), Err(MuxError::Draining)));
    let mut buf = [0u8; 4];
    read_exact(&mut theirs, &mut buf).await;
    write_all(&mut theirs, b"pong").await;
    read_exact(&mut ours, &mut buf).await;
    assert_eq!(&buf, b"pong");
    finish(&mut ours).await;
    finish(&mut theirs).await;
    drain(&mut ours).await;
    drain(&mut theirs).await;
    assert!(draining.await.is_ok());
    assert!(matches!(conn.open().await, Err(MuxError::ConnectionClosed)));
}

/// The halves: written and read from two tasks, reunited; then on a second stream the read
/// half is dropped first and the peer writes far past its version-2 window unhindered.
pub async fn halves<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cb = MuxBuilder::client();
    cb.with_version(smux_futures::Version::V2);
    let mut sb = MuxBuilder::server();
    sb.with_version(smux_futures::Version::V2);
    let (conn, _ca, _peer, mut sa) = start(cb, sb, (client, server), &spawn);
    let s = conn.connect().unwrap();
    let (mut r, mut w) = s.into_split();
    let (wtx, wrx) = std::sync::mpsc::channel();
    spawn(Box::pin(async move {
        write_all(&mut w, b"ping").await;
        let _ = wtx.send(w);
    }));
    let mut p = sa.accept().await.unwrap();
    let mut buf = [0u8; 4];
    read_exact(&mut p, &mut buf).await;
    write_all(&mut p, b"pong").await;
    read_exact(&mut r, &mut buf).await;
    assert_eq!(&buf, b"pong");
    let w = loop {
        match wrx.try_recv() {
            Ok(w) => break w,
            Err(_) => yield_now().await,
        }
    };
    let mut s = r.reunite(w).expect("one stream's halves");
    finish(&mut s).await;
    drain(&mut p).await;

    let mut s = conn.connect().unwrap();
    write_all(&mut s, b"x").await;
    let mut p = sa.accept().await.unwrap();
    let (r, mut w) = s.into_split();
    drop(r);
    let big = vec![7u8; 4 << 20];
    write_all(&mut p, &big).await;
    finish(&mut p).await;
    write_all(&mut w, b"yz").await;
    drop(w);
    let mut got = [0u8; 3];
    read_exact(&mut p, &mut got).await;
    assert_eq!(&got, b"xyz");
}

/// `write_chunk` and `read_chunk` carry a transfer in order; `AsyncBufRead` serves lines and
/// mixes with the other reads.
pub async fn chunks<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, _ca, _peer, mut sa) = start(
        MuxBuilder::client(),
        MuxBuilder::server(),
        (client, server),
        &spawn,
    );
    let data = bytes::Bytes::from((0..(1u32 << 20)).map(|i| i as u8).collect::<Vec<u8>>());
    let mut s = conn.connect().unwrap();
    let mut rest = data.clone();
    while !rest.is_empty() {
        let n = rest.len().min(50_000);
        s.write_chunk(rest.split_to(n)).await.unwrap();
    }
    s.write_chunk(bytes::Bytes::from_static(b"\nline two\n"))
        .await
        .unwrap();
    finish(&mut s).await;
    let mut p = sa.accept().await.unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        let want = (data.len() - got.len()).min(7_000);
        let chunk = p.read_chunk(want).await.unwrap().expect("more to come");
        assert!(chunk.len() <= want);
        got.extend_from_slice(&chunk);
    }
    assert!(got == data[..]);
    // The rest through the buffered-read trait: "\n", then "line two\n", then the end.
    let mut lines = Vec::new();
    loop {
        let buf =
            std::future::poll_fn(|cx| Pin::new(&mut p).poll_fill_buf(cx).map_ok(<[u8]>::to_vec))
                .await
                .unwrap();
        if buf.is_empty() {
            break;
        }
        let n = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        lines.push(buf[..n].to_vec());
        Pin::new(&mut p).consume(n);
    }
    assert_eq!(lines, [b"\n".to_vec(), b"line two\n".to_vec()]);
    assert!(p.read_chunk(10).await.unwrap().is_none());
    // The statistics add up: every byte written was sent and received.
    let total = (data.len() + 10) as u64;
    assert_eq!(s.stats().bytes_sent, total);
    assert_eq!(p.stats().bytes_received, total);
    assert_eq!(p.stats().unread_bytes, 0);
    assert_eq!(conn.stats().payload_bytes_sent, total);
    assert_eq!(conn.stats().streams_opened, 1);
}

/// A server built with `with_auto_version` speaks the version of the client's first frame.
pub async fn auto_version<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cb = MuxBuilder::client();
    cb.with_version(smux_futures::Version::V2);
    let mut sb = MuxBuilder::server();
    sb.with_auto_version();
    let (conn, _ca, peer, mut sa) = start(cb, sb, (client, server), &spawn);
    assert_eq!(peer.version(), None);
    let mut s = conn.connect().unwrap();
    write_all(&mut s, b"hello").await;
    let mut p = sa.accept().await.unwrap();
    assert_eq!(peer.version(), Some(smux_futures::Version::V2));
    let mut buf = [0u8; 5];
    read_exact(&mut p, &mut buf).await;
    write_all(&mut p, &buf).await;
    read_exact(&mut s, &mut buf).await;
    assert_eq!(&buf, b"hello");
}
