//! Helpers shared by the test binaries: deterministic content and hashes, and running a
//! scenario on each Tokio runtime (both from `smux-test-support`, shared with the other
//! crates' tests); explicit synchronisation; transports that watch or tap what passes.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use smux_test_support::content::*;
#[allow(unused_imports)]
pub use smux_test_support::runtimes::*;

// ---------------------------------------------------------------- explicit synchronisation

/// Waits until `ready()` holds, re-checking each time `changed` is notified (with
/// `notify_waiters`). Registers before each check, so no notification between the check and
/// the wait is lost.
pub async fn until(changed: &tokio::sync::Notify, mut ready: impl FnMut() -> bool) {
    loop {
        let notified = changed.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if ready() {
            return;
        }
        notified.await;
    }
}

/// What a [`Watched`] transport or a [`WhenPending`] future has seen.
#[derive(Default)]
pub struct Seen {
    /// A read returned `Pending` (reset when one completes).
    pub read_pending: std::sync::atomic::AtomicBool,
    /// A write returned `Pending` (reset when one completes).
    pub write_pending: std::sync::atomic::AtomicBool,
    /// Writes that returned `Pending`, ever.
    pub write_pendings: std::sync::atomic::AtomicU64,
    /// Bytes read and written.
    pub read: std::sync::atomic::AtomicU64,
    pub written: std::sync::atomic::AtomicU64,
    /// Notified (`notify_waiters`) on every change above.
    pub changed: tokio::sync::Notify,
}

impl Seen {
    pub fn new() -> std::sync::Arc<Seen> {
        std::sync::Arc::default()
    }

    /// Until a read is parked (returned `Pending` and has not completed since).
    pub async fn read_parked(&self) {
        until(&self.changed, || {
            self.read_pending.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
    }

    /// Until the future of a [`WhenPending`] is parked (its last poll returned `Pending`).
    pub async fn parked(&self) {
        self.read_parked().await;
    }

    /// Until more than `n` writes have returned `Pending`.
    pub async fn write_pendings_above(&self, n: u64) {
        until(&self.changed, || {
            self.write_pendings
                .load(std::sync::atomic::Ordering::SeqCst)
                > n
        })
        .await;
    }

    /// Writes that have returned `Pending` so far.
    pub fn write_pendings(&self) -> u64 {
        self.write_pendings
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Until a write is parked.
    pub async fn write_parked(&self) {
        until(&self.changed, || {
            self.write_pending.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
    }

    fn on_read<T>(&self, r: &std::task::Poll<std::io::Result<T>>, n: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        match r {
            std::task::Poll::Pending => self.read_pending.store(true, SeqCst),
            std::task::Poll::Ready(_) => {
                self.read_pending.store(false, SeqCst);
                self.read.fetch_add(n as u64, SeqCst);
            }
        }
        self.changed.notify_waiters();
    }

    fn on_write(&self, r: &std::task::Poll<std::io::Result<usize>>) {
        use std::sync::atomic::Ordering::SeqCst;
        match r {
            std::task::Poll::Pending => {
                self.write_pending.store(true, SeqCst);
                self.write_pendings.fetch_add(1, SeqCst);
            }
            std::task::Poll::Ready(r) => {
                self.write_pending.store(false, SeqCst);
                if let Ok(n) = r {
                    self.written.fetch_add(*n as u64, SeqCst);
                }
            }
        }
        self.changed.notify_waiters();
    }
}

/// A transport (or a stream) that reports to a [`Seen`] when its reads and writes park, so a
/// test can wait for "the worker is blocked reading" instead of sleeping.
pub struct Watched<T> {
    pub inner: T,
    pub seen: std::sync::Arc<Seen>,
}

impl<T> Watched<T> {
    pub fn new(inner: T) -> (Watched<T>, std::sync::Arc<Seen>) {
        let seen = Seen::new();
        (
            Watched {
                inner,
                seen: std::sync::Arc::clone(&seen),
            },
            seen,
        )
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.seen.on_read(&r, n);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.seen.on_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.seen.on_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A future that sets `parked` and notifies `seen.changed` each time its inner future returns
/// `Pending`: "the accept (the flush, the close) is waiting" as a state a test can wait for.
pub struct WhenPending<F> {
    inner: std::pin::Pin<Box<F>>,
    seen: std::sync::Arc<Seen>,
}

/// Wraps `fut`; [`Seen::parked`] on the returned `Seen` waits until it has parked.
pub fn when_pending<F: std::future::Future>(fut: F) -> (WhenPending<F>, std::sync::Arc<Seen>) {
    let seen = Seen::new();
    (
        WhenPending {
            inner: Box::pin(fut),
            seen: std::sync::Arc::clone(&seen),
        },
        seen,
    )
}

impl<F: std::future::Future> std::future::Future for WhenPending<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        use std::sync::atomic::Ordering::SeqCst;
        let r = self.inner.as_mut().poll(cx);
        self.seen.read_pending.store(r.is_pending(), SeqCst);
        self.seen.changed.notify_waiters();
        r
    }
}

/// Polls `fut` once and drops it: a cancelled operation that got as far as registering its
/// waker (when it returned `Pending`). Returns its output if it completed at once.
pub async fn poll_once_then_drop<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// A transport that passes everything through and shows `on_write` the bytes each completed
/// write took (as the slices they came in), once per write call: for counting writes or
/// parsing what goes on the wire.
pub struct Tap<T> {
    inner: T,
    on_write: Box<OnWrite>,
}

/// What [`Tap`] calls with the bytes a write took.
type OnWrite = dyn FnMut(&[&[u8]]) + Send;

impl<T> Tap<T> {
    pub fn new(inner: T, on_write: impl FnMut(&[&[u8]]) + Send + 'static) -> Self {
        Tap {
            inner,
            on_write: Box::new(on_write),
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tap<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            (self.on_write)(&[&buf[..n]]);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = r {
            let mut left = n;
            let taken: Vec<&[u8]> = bufs
                .iter()
                .map(|b| {
                    let k = left.min(b.len());
                    left -= k;
                    &b[..k]
                })
                .filter(|b| !b.is_empty())
                .collect();
            (self.on_write)(&taken);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One side of a session built by [`sessions`]: its connector, its acceptor, and its spawned
/// worker.
pub type Side<T> = (
    smux_tokio::MuxConnector<T>,
    smux_tokio::MuxAcceptor<T>,
    tokio::task::JoinHandle<smux_tokio::MuxResult<()>>,
);

/// A client session over `client` and a server session over `server` (the two ends of one
/// transport), with default options and both workers spawned.
pub fn sessions<C, S>(client: C, server: S) -> (Side<C>, Side<S>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (cc, ca, cw) = smux_tokio::MuxBuilder::client()
        .with_connection(client)
        .build();
    let (sc, sa, sw) = smux_tokio::MuxBuilder::server()
        .with_connection(server)
        .build();
    ((cc, ca, tokio::spawn(cw)), (sc, sa, tokio::spawn(sw)))
}
