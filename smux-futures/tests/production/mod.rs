//! `open()`, `closed()` and `MuxError` as `io::Error` on smux-futures, written once for
//! every runtime the tests run it on: the caller passes its transports and its `spawn`.

use std::future::Future;
use std::io;
use std::num::{NonZeroU64, NonZeroUsize};
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
    assert!(wait_for(&rx).await, "the spawned closed() saw a clean end");
    assert_eq!(wait_for(&done_rx).await, Ok(()));
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

/// `drain()` with a stream mid-transfer both ways: new streams fail with `Draining`, each
/// side writes the second half of its 1 MiB after the drain began, nothing is lost, and the
/// drain ends with the session once both sides have finished.
pub async fn drain_lets_the_open_stream_finish<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    const SIZE: usize = 1 << 20;
    let (conn, _ca, _peer, mut sa) = start(
        MuxBuilder::client(),
        MuxBuilder::server(),
        (client, server),
        &spawn,
    );
    let mut ours = conn.connect().unwrap();
    write_all(&mut ours, b"!").await;
    let theirs = sa.accept().await.unwrap();
    let (ours_r, mut ours_w) = ours.into_split();
    let (theirs_r, mut theirs_w) = theirs.into_split();
    let ours_got = read_to_end_in_task(ours_r, &spawn);
    let theirs_got = read_to_end_in_task(theirs_r, &spawn);
    let (up, down) = (pattern(1, SIZE), pattern(2, SIZE));
    write_all(&mut ours_w, &up[..SIZE / 2]).await;
    write_all(&mut theirs_w, &down[..SIZE / 2]).await;
    let mut draining = Box::pin(conn.drain());
    assert!(poll_once(&mut draining).await.is_none(), "a stream is open");
    assert!(matches!(conn.connect(), Err(MuxError::Draining)));
    assert!(matches!(conn.open().await, Err(MuxError::Draining)));
    write_all(&mut ours_w, &up[SIZE / 2..]).await;
    write_all(&mut theirs_w, &down[SIZE / 2..]).await;
    finish(&mut ours_w).await;
    finish(&mut theirs_w).await;
    assert!(wait_for(&theirs_got).await == [b"!".as_slice(), &up].concat());
    assert!(wait_for(&ours_got).await == down);
    assert!(draining.await.is_ok());
    assert!(matches!(conn.open().await, Err(MuxError::ConnectionClosed)));
}

/// Deterministic bytes: pattern `seed`, `len` long.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Reads `s` to its end on a task of its own; the bytes come through the channel.
fn read_to_end_in_task<S>(mut s: S, spawn: &impl Fn(Task)) -> std::sync::mpsc::Receiver<Vec<u8>>
where
    S: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    spawn(Box::pin(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = std::future::poll_fn(|cx| Pin::new(&mut s).poll_read(cx, &mut buf))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(got);
    }));
    rx
}

/// What another task sends on `rx`, waiting without a runtime-specific timer.
async fn wait_for<V>(rx: &std::sync::mpsc::Receiver<V>) -> V {
    loop {
        match rx.try_recv() {
            Ok(v) => return v,
            Err(std::sync::mpsc::TryRecvError::Empty) => yield_now().await,
            Err(e) => panic!("the task ended without sending: {e}"),
        }
    }
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
    let w = wait_for(&wrx).await;
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

/// At a limit of four streams, `open()` waiters are served in order, a dropped waiter takes
/// no place, and `connect()` does not jump the line.
pub async fn open_first_come_first_served<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cb = MuxBuilder::client();
    cb.with_max_streams(NonZeroUsize::new(4).unwrap());
    let (conn, _ca, _peer, mut sa) = start(cb, MuxBuilder::server(), (client, server), &spawn);
    spawn(Box::pin(async move {
        while let Some(s) = sa.accept().await {
            drain(s).await;
        }
    }));
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(conn.open().await.unwrap());
    }
    assert!(matches!(conn.connect(), Err(MuxError::TooManyStreams)));
    let mut first = Box::pin(conn.open());
    let mut second = Box::pin(conn.open());
    let mut third = Box::pin(conn.open());
    assert!(poll_once(&mut first).await.is_none());
    assert!(poll_once(&mut second).await.is_none());
    assert!(poll_once(&mut third).await.is_none());
    drop(second);
    assert!(matches!(conn.connect(), Err(MuxError::TooManyStreams)));
    drop(open.pop());
    let s1 = first.await.unwrap();
    assert!(
        poll_once(&mut third).await.is_none(),
        "one place, one stream"
    );
    drop(open.pop());
    let s3 = third.await.unwrap();
    assert!(s3.get_stream_id() > s1.get_stream_id(), "served in order");
    // The dropped waiter took nothing: with two more gone, two fit.
    drop(open.pop());
    drop(open.pop());
    let s5 = conn.open().await.unwrap();
    let s6 = conn.open().await.unwrap();
    assert!(matches!(conn.connect(), Err(MuxError::TooManyStreams)));
    drop((s1, s3, s5, s6));
}

/// `closed()` gives every waiter the worker's error: a protocol error (a frame of version 9
/// from a raw peer), then a keep-alive timeout against a silent peer (two seconds).
pub async fn closed_reports_the_workers_error<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, _ca, cw) = MuxBuilder::client().with_connection(client).build();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    spawn(Box::pin(async move {
        let _ = done_tx.send(cw.await);
    }));
    let waiter = read_closed_in_task(&conn, &spawn);
    let mut raw = server;
    write_all(&mut raw, &[9, 3, 0, 0, 0, 0, 0, 0]).await;
    let (by_worker, by_waiter) = (wait_for(&done_rx).await, wait_for(&waiter).await);
    match (by_worker, by_waiter, conn.closed().await) {
        (Err(MuxError::Protocol(a)), Err(MuxError::Protocol(b)), Err(MuxError::Protocol(c))) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
        (w, c, again) => panic!("worker {w:?}, closed() {c:?}, then {again:?}"),
    }
    drop(raw);
}

/// The keep-alive half of [`closed_reports_the_workers_error`], on a transport pair of its
/// own: the server side stays open and silent.
pub async fn closed_reports_the_keep_alive_timeout<T>(client: T, silent: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cb = MuxBuilder::client();
    cb.with_keep_alive_interval(NonZeroU64::new(1).unwrap())
        .with_keep_alive_timeout(NonZeroU64::new(2).unwrap());
    let (conn, _ca, cw) = cb.with_connection(client).build();
    spawn(Box::pin(async move {
        let _ = cw.await;
    }));
    let waiter = read_closed_in_task(&conn, &spawn);
    let r = conn.closed().await;
    assert!(matches!(r, Err(MuxError::KeepAliveTimeout)), "{r:?}");
    let r = wait_for(&waiter).await;
    assert!(matches!(r, Err(MuxError::KeepAliveTimeout)), "{r:?}");
    drop(silent);
}

/// `conn.closed()` awaited on a task of its own; its outcome comes through the channel.
fn read_closed_in_task<T>(
    conn: &MuxConnector<T>,
    spawn: &impl Fn(Task),
) -> std::sync::mpsc::Receiver<smux_futures::MuxResult<()>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let c = conn.clone();
    spawn(Box::pin(async move {
        let _ = tx.send(c.closed().await);
    }));
    rx
}

/// Dropping the write half first sends FIN after the data; the read half goes on.
pub async fn write_half_dropped_first<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, _ca, _peer, mut sa) = start(
        MuxBuilder::client(),
        MuxBuilder::server(),
        (client, server),
        &spawn,
    );
    let mut s = conn.connect().unwrap();
    write_all(&mut s, b"request").await;
    let (mut r, w) = s.into_split();
    drop(w);
    let mut p = sa.accept().await.unwrap();
    let mut got = [0u8; 7];
    read_exact(&mut p, &mut got).await;
    assert_eq!(&got, b"request");
    let mut rest = [0u8; 1];
    let n = std::future::poll_fn(|cx| Pin::new(&mut p).poll_read(cx, &mut rest))
        .await
        .unwrap();
    assert_eq!(n, 0, "FIN after the data");
    write_all(&mut p, b"reply").await;
    finish(&mut p).await;
    let mut back = [0u8; 5];
    read_exact(&mut r, &mut back).await;
    assert_eq!(&back, b"reply");
}

/// Version 1, a reader that never reads holds input back: after the stalled-stream timeout
/// (one second) its stream is reset, its read fails with `ConnectionReset`, and another
/// stream's data, queued behind it, arrives.
pub async fn a_stalled_reader_is_reset<T>(client: T, server: T, spawn: impl Fn(Task))
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut sb = MuxBuilder::server();
    sb.with_max_rx_queue(NonZeroUsize::new(2).unwrap())
        .with_stalled_stream_timeout(NonZeroU64::new(1).unwrap());
    let (conn, _ca, _server, mut sa) = start(MuxBuilder::client(), sb, (client, server), &spawn);
    let mut slow = conn.connect().unwrap();
    let mut fast = conn.connect().unwrap();
    let (kept_tx, _kept_rx) = std::sync::mpsc::channel();
    spawn(Box::pin(async move {
        let big = vec![1u8; 300 * 1024];
        let mut at = 0;
        while at < big.len() {
            match std::future::poll_fn(|cx| Pin::new(&mut slow).poll_write(cx, &big[at..])).await {
                Ok(n) => at += n,
                Err(_) => break,
            }
        }
        let _ = kept_tx.send(slow);
    }));
    let mut unread = sa.accept().await.unwrap();
    let mut other = sa.accept().await.unwrap();
    // The server's budget holds one 32 KiB frame of `slow`'s data; the next one stops the
    // input, and `fast`'s data waits behind it (or goes first: either way `slow` stalls).
    while unread.stats().unread_bytes < 32 * 1024 {
        yield_now().await;
    }
    write_all(&mut fast, b"behind").await;
    let mut buf = [0u8; 6];
    read_exact(&mut other, &mut buf).await;
    assert_eq!(&buf, b"behind");
    // Nobody reads `slow`: only the reset empties it.
    while unread.stats().unread_bytes > 0 {
        yield_now().await;
    }
    let mut sink = [0u8; 16];
    let err = std::future::poll_fn(|cx| Pin::new(&mut unread).poll_read(cx, &mut sink))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert!(err.to_string().contains("stalled-stream timeout"), "{err}");
}
