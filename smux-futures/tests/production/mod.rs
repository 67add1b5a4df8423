//! `open()`, `closed()` and `MuxError` as `io::Error` on smux-futures, written once for
//! every runtime the tests run it on: the caller passes its transports and its `spawn`.

use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::Poll;

use futures_io::{AsyncRead, AsyncWrite};
use smux_futures::{MuxBuilder, MuxError};

/// A task to spawn.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

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
