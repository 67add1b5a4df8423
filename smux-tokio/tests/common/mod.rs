//! Helpers shared by the test binaries: deterministic content and hashes (`content.rs`, also
//! used by smux-futures' tests), and running a scenario on each Tokio runtime.

#![allow(dead_code)]

mod content;

#[allow(unused_imports)]
pub use content::*;

/// A Tokio runtime a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    /// The multi-thread scheduler with this many worker threads.
    MultiThread(usize),
}

/// Every scenario runs on these: one thread, and two and four worker threads.
pub const RUNTIMES: [Flavor; 3] = [
    Flavor::CurrentThread,
    Flavor::MultiThread(2),
    Flavor::MultiThread(4),
];

impl Flavor {
    pub fn name(self) -> String {
        match self {
            Flavor::CurrentThread => "current-thread".into(),
            Flavor::MultiThread(n) => format!("multi-thread({n})"),
        }
    }

    /// The runtime, with I/O and time enabled.
    pub fn build(self) -> tokio::runtime::Runtime {
        let mut b = match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread(n) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(n);
                b
            }
        };
        b.enable_all().build().expect("a Tokio runtime")
    }
}

/// The flavour of the runtime the caller runs on (inside a runtime).
pub fn current_flavor() -> Flavor {
    let h = tokio::runtime::Handle::current();
    match h.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Flavor::CurrentThread,
        _ => Flavor::MultiThread(h.metrics().num_workers()),
    }
}

/// How long [`on_runtimes`] lets one run take before it calls it a hang. A guard only: the
/// scenarios finish in seconds, and none asserts anything about how long it took.
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(300);

/// The text of a panic's payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

/// Runs the body `f` makes on each runtime of [`RUNTIMES`] in turn, each on a fresh runtime,
/// under [`HANG_GUARD`]. Every runtime runs even when an earlier one failed; then, if any
/// failed, panics naming each runtime that failed and its panic message.
pub fn on_runtimes<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    on_these_runtimes(&RUNTIMES, f);
}

/// [`on_runtimes`] on the two multi-thread runtimes only.
pub fn on_multi_thread<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    on_these_runtimes(&RUNTIMES[1..], f);
}

/// [`on_runtimes`] on the runtimes given.
pub fn on_these_runtimes<F, Fut>(flavors: &[Flavor], f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut failed = Vec::new();
    for &flavor in flavors {
        let rt = flavor.build();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                if tokio::time::timeout(HANG_GUARD, f()).await.is_err() {
                    panic!("no end within {HANG_GUARD:?} (hang)");
                }
            })
        }));
        // Tasks left behind by a failed run are dropped with the runtime.
        rt.shutdown_timeout(std::time::Duration::from_secs(10));
        if let Err(p) = run {
            failed.push(format!("{}: {}", flavor.name(), panic_message(&*p)));
        }
    }
    if !failed.is_empty() {
        panic!(
            "failed on {} of {} runtimes:\n  {}",
            failed.len(),
            flavors.len(),
            failed.join("\n  ")
        );
    }
}

/// Runs the body on a current-thread runtime whose clock starts paused: Tokio moves a paused
/// clock only when every task is idle, so timers fire in order and at their exact instants,
/// whatever the machine's load.
pub fn on_paused_clock<Fut: std::future::Future<Output = ()>>(body: Fut) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a Tokio runtime")
        .block_on(body);
}

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
            std::task::Poll::Pending => self.write_pending.store(true, SeqCst),
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
