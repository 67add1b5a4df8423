//! Helpers shared by the test binaries: deterministic pseudo-random numbers and content, and
//! a running hash. The Go peer (`interop/go-peer`) makes the same byte sequence.

#![allow(dead_code)]

/// xorshift64* — small, fast, deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Spread the seed (splitmix64 step) and keep the state non-zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// Log-uniform size in `1..=max` (max a power of two): small and large sizes alike.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = max.trailing_zeros() as u64;
        let top = 1usize << self.below(bits + 1);
        1 + self.below(top as u64) as usize
    }
}

/// An endless byte sequence from a seed. Both ends of a stream make the same one, so the
/// reader checks what it receives without the writer's buffers.
pub struct ByteGen {
    rng: Rng,
    word: u64,
    left: u32,
}

impl ByteGen {
    pub fn new(seed: u64) -> Self {
        ByteGen {
            rng: Rng::new(seed ^ 0xC0FF_EE00_D15E_A5E5),
            word: 0,
            left: 0,
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut i = 0;
        // Finish the current word byte by byte, then whole words, then the tail.
        while i < out.len() && self.left > 0 {
            out[i] = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
            i += 1;
        }
        let mut chunks = out[i..].chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        for b in chunks.into_remainder() {
            if self.left == 0 {
                self.word = self.rng.next_u64();
                self.left = 8;
            }
            *b = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
        }
    }
}

/// FNV-1a, 64 bits, fed incrementally.
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// `len` bytes of the [`ByteGen`] sequence for `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ByteGen::new(seed).fill(&mut v);
    v
}

// ---------------------------------------------------------------- runtimes

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
