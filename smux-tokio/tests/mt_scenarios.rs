//! Scenarios that need more than one thread to mean anything, run on the current-thread
//! runtime and on the multi-thread runtime with 2 and 4 workers (`common::on_runtimes`):
//!
//! - a stream split in two halves, read and written by two tasks (on two threads, when the
//!   scheduler puts them there), 8 MiB each way with the content checked;
//! - `close()` racing with eight writers on other tasks: everything ends, and the peer reads
//!   on each stream a prefix of what was written, then a clean end or an error;
//! - fairness among eight writers: each gets 1/8 ± 25 % of the data bytes on the wire over
//!   every 4 MiB while all eight are writing.
//!
//! No test sleeps: states are reached by waiting for them (barriers, `Notify`, task ends).

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use smux_test_support::tokio::tcp_pair;
use smux_tokio::{MuxBuilder, MuxStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod common;

use common::{on_runtimes, ByteGen};

/// A hang guard for each run: none of these asserts anything about time.
const LIMIT: Duration = Duration::from_secs(120);

/// Checks what a reader got against the writer's sequence; panics at the first wrong byte.
struct Check {
    what: String,
    gen: ByteGen,
    expect: Vec<u8>,
    got: u64,
}

impl Check {
    fn new(what: String, seed: u64) -> Check {
        Check {
            what,
            gen: ByteGen::new(seed),
            expect: Vec::new(),
            got: 0,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.expect.resize(data.len(), 0);
        self.gen.fill(&mut self.expect);
        if let Some(i) = data.iter().zip(&self.expect).position(|(a, b)| a != b) {
            panic!(
                "{}: corrupt byte at offset {} (got {:#04x}, expected {:#04x})",
                self.what,
                self.got + i as u64,
                data[i],
                self.expect[i]
            );
        }
        self.got += data.len() as u64;
    }
}

/// A future that records the threads it is polled on.
struct OnThreads<F> {
    inner: Pin<Box<F>>,
    threads: Arc<Mutex<HashSet<std::thread::ThreadId>>>,
}

fn on_threads<F: std::future::Future>(
    f: F,
) -> (OnThreads<F>, Arc<Mutex<HashSet<std::thread::ThreadId>>>) {
    let threads = Arc::default();
    (
        OnThreads {
            inner: Box::pin(f),
            threads: Arc::clone(&threads),
        },
        threads,
    )
}

impl<F: std::future::Future> std::future::Future for OnThreads<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.threads
            .lock()
            .unwrap()
            .insert(std::thread::current().id());
        self.inner.as_mut().poll(cx)
    }
}

// ---------------------------------------------------------------- a split stream

const SPLIT_TOTAL: u64 = 8 * 1024 * 1024;

/// Writes `SPLIT_TOTAL` bytes of `ByteGen(seed)` in 32 KiB writes, then FIN.
async fn write_all_of<W: AsyncWrite + Unpin>(mut w: W, seed: u64) -> W {
    let mut gen = ByteGen::new(seed);
    let mut buf = vec![0u8; 32 * 1024];
    let mut sent = 0;
    while sent < SPLIT_TOTAL {
        let n = (buf.len() as u64).min(SPLIT_TOTAL - sent) as usize;
        gen.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        sent += n as u64;
    }
    w.shutdown().await.unwrap();
    w
}

/// Reads to the end, checking every byte against `ByteGen(seed)`.
async fn read_all_of<R: AsyncRead + Unpin>(mut r: R, what: String, seed: u64) -> R {
    let mut check = Check::new(what, seed);
    let mut buf = vec![0u8; 48 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        check.feed(&buf[..n]);
    }
    assert_eq!(check.got, SPLIT_TOTAL, "{}: bytes read", check.what);
    r
}

/// Splits `s` (`tokio::io::split`) and runs its two halves as two tasks: one writes
/// `ByteGen(send_seed)`, the other reads and checks `ByteGen(recv_seed)`. Returns the stream
/// and how many threads each half ran on.
fn run_halves(
    side: &'static str,
    s: MuxStream<TcpStream>,
    send_seed: u64,
    recv_seed: u64,
) -> JoinHandle<(MuxStream<TcpStream>, usize, usize, bool)> {
    let (r, w) = tokio::io::split(s);
    let (writer, wt) = on_threads(write_all_of(w, send_seed));
    let (reader, rt) = on_threads(read_all_of(r, format!("{side} reader"), recv_seed));
    let writer = tokio::spawn(writer);
    let reader = tokio::spawn(reader);
    tokio::spawn(async move {
        let (r, w) = tokio::try_join!(reader, writer).unwrap();
        let (wt, rt) = (wt.lock().unwrap().clone(), rt.lock().unwrap().clone());
        // Whether the two halves ran on different threads at least once.
        let apart = wt.union(&rt).count() > 1;
        (r.unsplit(w), rt.len(), wt.len(), apart)
    })
}

/// Both ends of one stream split; 8 MiB each way, every byte checked, both FINs seen.
#[test]
fn split_stream_8_mib_each_way_from_two_tasks() {
    on_runtimes(|| async {
        let rt = common::current_flavor().name();
        let (c, s) = tcp_pair().await;
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(c).build();
        let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(s).build();
        let cw = tokio::spawn(cw);
        let sw = tokio::spawn(sw);
        timeout(LIMIT, async {
            let c = run_halves("client", cc.connect().unwrap(), 1, 2);
            let s = run_halves("server", sa.accept().await.unwrap(), 2, 1);
            let (c, s) = tokio::try_join!(c, s).unwrap();
            eprintln!(
                "{rt}: client halves on {}+{} threads (apart: {}), server halves on {}+{} \
                 threads (apart: {})",
                c.1, c.2, c.3, s.1, s.2, s.3
            );
            assert!(c.0.is_closed() && s.0.is_closed(), "both FINs seen");
            drop((c, s, sa));
            cc.close().await.unwrap();
            cw.await.unwrap().unwrap();
            sw.await.unwrap().unwrap();
        })
        .await
        .expect("hang");
    });
}

// ---------------------------------------------------------------- close() against writers

const RACERS: usize = 8;
/// A writer that is never stopped stops here (with FIN); `close()` comes long before.
const RACER_CAP: u64 = 256 * 1024 * 1024;

/// Eight tasks write to eight streams continuously; once each has written at least one chunk,
/// another task calls `close()`. Every writer ends (`Ok` or an error), `close()` returns `Ok`,
/// the worker ends `Ok`, and the peer reads on each stream a prefix of what its writer wrote,
/// then a clean end or an error. `close()` sends what writes had taken, then FIN: a stream that
/// ends cleanly has every byte its writer's `poll_write` took.
#[test]
fn close_races_with_writers_on_other_tasks() {
    on_runtimes(|| async {
        let rt = common::current_flavor().name();
        let (c, s) = tcp_pair().await;
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(c).build();
        let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(s).build();
        let cw = tokio::spawn(cw);
        let sw = tokio::spawn(sw);
        timeout(LIMIT, async {
            // The peer: reads every stream to its end, checking it against its writer's bytes.
            let peer = tokio::spawn(async move {
                let mut readers = Vec::new();
                while let Some(mut s) = sa.accept().await {
                    let id = s.get_stream_id();
                    readers.push(tokio::spawn(async move {
                        let mut check = Check::new(format!("stream {id}"), u64::from(id));
                        let mut buf = vec![0u8; 64 * 1024];
                        let end = loop {
                            match s.read(&mut buf).await {
                                Ok(0) => break Ok(()),
                                Ok(n) => check.feed(&buf[..n]),
                                Err(e) => break Err(e),
                            }
                        };
                        (id, check.got, end)
                    }));
                }
                let mut out = Vec::new();
                for r in readers {
                    out.push(r.await.unwrap());
                }
                out
            });
            let started = Arc::new(AtomicUsize::new(0));
            let changed = Arc::new(tokio::sync::Notify::new());
            let mut writers = Vec::new();
            let mut taken = HashMap::new();
            for _ in 0..RACERS {
                let s = cc.connect().unwrap();
                let id = s.get_stream_id();
                let (mut s, seen) = common::Watched::new(s);
                taken.insert(id, seen);
                let (started, changed) = (Arc::clone(&started), Arc::clone(&changed));
                writers.push(tokio::spawn(async move {
                    let mut gen = ByteGen::new(u64::from(id));
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut sent = 0u64;
                    while sent < RACER_CAP {
                        gen.fill(&mut buf);
                        s.write_all(&buf).await?;
                        if sent == 0 {
                            started.fetch_add(1, Ordering::SeqCst);
                            changed.notify_waiters();
                        }
                        sent += buf.len() as u64;
                    }
                    s.shutdown().await
                }));
            }
            common::until(&changed, || started.load(Ordering::SeqCst) == RACERS).await;
            let closer = {
                let cc = cc.clone();
                tokio::spawn(async move { cc.close().await })
            };
            let mut ended = Vec::new();
            for w in writers {
                ended.push(w.await.expect("a writer panicked"));
            }
            let closed = closer.await.unwrap();
            let worker = cw.await.unwrap();
            let server_worker = sw.await.unwrap();
            let read = peer.await.unwrap();
            let kinds: Vec<String> = ended
                .iter()
                .map(|r| match r {
                    Ok(()) => "Ok".to_string(),
                    Err(e) => format!("{:?}", e.kind()),
                })
                .collect();
            eprintln!(
                "{rt}: writers ended {kinds:?}; close() {closed:?}; worker {worker:?}; server \
                 worker {server_worker:?}"
            );
            assert!(closed.is_ok(), "close(): {closed:?}");
            assert!(worker.is_ok(), "the worker: {worker:?}");
            assert_eq!(read.len(), RACERS, "streams the peer accepted");
            for (id, got, end) in read {
                let took = taken[&id].written.load(Ordering::SeqCst);
                eprintln!("{rt}: stream {id}: writes took {took}, the peer read {got}, {end:?}");
                assert!(got <= took, "stream {id}: read {got} of {took} bytes taken");
                if end.is_ok() {
                    assert_eq!(got, took, "stream {id} ended cleanly before its data");
                }
            }
        })
        .await
        .expect("hang");
    });
}

// ---------------------------------------------------------------- fairness

const FAIR_WRITERS: usize = 8;
/// Each writer's total.
const FAIR_TOTAL: u64 = 16 * 1024 * 1024;
/// A measurement window: this many data (PSH payload) bytes on the wire.
const WINDOW: u64 = 4 * 1024 * 1024;

/// What [`FrameMeter`] has measured: the data bytes per stream id in each full window.
#[derive(Default)]
struct Meter {
    /// Set when the first writer has finished: later windows are not measured.
    stop: AtomicBool,
    state: Mutex<MeterState>,
}

#[derive(Default)]
struct MeterState {
    /// The frame header being assembled.
    header: Vec<u8>,
    /// Payload bytes left of the current frame, and its stream id if it is a PSH.
    left: usize,
    psh: Option<u32>,
    /// The window being filled.
    current: HashMap<u32, u64>,
    filled: u64,
    windows: Vec<HashMap<u32, u64>>,
}

impl MeterState {
    fn feed(&mut self, mut data: &[u8], stop: bool) {
        while !data.is_empty() {
            if self.left == 0 && self.header.len() < 8 {
                let n = (8 - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.header.len() == 8 {
                    let h = &self.header;
                    let len = u16::from_le_bytes([h[2], h[3]]) as usize;
                    let sid = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                    self.psh = (h[1] == 2).then_some(sid);
                    self.left = len;
                    self.header.clear();
                }
                continue;
            }
            let n = self.left.min(data.len());
            data = &data[n..];
            self.left -= n;
            if let Some(sid) = self.psh {
                let mut n = n as u64;
                while n > 0 {
                    let k = n.min(WINDOW - self.filled);
                    *self.current.entry(sid).or_default() += k;
                    self.filled += k;
                    n -= k;
                    if self.filled == WINDOW {
                        let w = std::mem::take(&mut self.current);
                        if !stop {
                            self.windows.push(w);
                        }
                        self.filled = 0;
                    }
                }
            }
        }
    }
}

/// The client's transport: counts, per 4 MiB window of data bytes written, each stream's share.
struct FrameMeter<T> {
    inner: T,
    meter: Arc<Meter>,
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameMeter<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameMeter<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            let stop = self.meter.stop.load(Ordering::SeqCst);
            self.meter.state.lock().unwrap().feed(&buf[..n], stop);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let stop = self.meter.stop.load(Ordering::SeqCst);
            let mut st = self.meter.state.lock().unwrap();
            let mut left = n;
            for b in bufs {
                let k = left.min(b.len());
                st.feed(&b[..k], stop);
                left -= k;
                if left == 0 {
                    break;
                }
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Eight streams write 64 KiB buffers at once, as fast as they can; the peer reads all eight
/// concurrently (in 256 KiB reads, nothing else to do). Over every full 4 MiB window of data
/// bytes on the wire until the first writer finishes, each stream's share is within
/// 1/8 ± 25 %.
#[test]
fn eight_writers_share_the_wire_fairly() {
    on_runtimes(|| async {
        let rt = common::current_flavor().name();
        let (a, b) = tokio::io::duplex(256 * 1024);
        let meter = Arc::new(Meter::default());
        let a = FrameMeter {
            inner: a,
            meter: Arc::clone(&meter),
        };
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(b).build();
        let cw = tokio::spawn(cw);
        let sw = tokio::spawn(sw);
        timeout(LIMIT, async {
            let peer = tokio::spawn(async move {
                let mut readers = Vec::new();
                for _ in 0..FAIR_WRITERS {
                    let mut s = sa.accept().await.unwrap();
                    readers.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut got = 0u64;
                        loop {
                            let n = s.read(&mut buf).await.unwrap();
                            if n == 0 {
                                return got;
                            }
                            got += n as u64;
                        }
                    }));
                }
                let mut total = Vec::new();
                for r in readers {
                    total.push(r.await.unwrap());
                }
                total
            });
            let barrier = Arc::new(tokio::sync::Barrier::new(FAIR_WRITERS));
            let mut writers = Vec::new();
            let mut ids = Vec::new();
            for i in 0..FAIR_WRITERS {
                let mut s = cc.connect().unwrap();
                ids.push(s.get_stream_id());
                let (barrier, meter) = (Arc::clone(&barrier), Arc::clone(&meter));
                writers.push(tokio::spawn(async move {
                    let buf = common::pattern(i as u64, 64 * 1024);
                    // All eight start together.
                    barrier.wait().await;
                    let mut sent = 0;
                    while sent < FAIR_TOTAL {
                        s.write_all(&buf).await.unwrap();
                        sent += buf.len() as u64;
                    }
                    meter.stop.store(true, Ordering::SeqCst);
                    s.shutdown().await.unwrap();
                }));
            }
            for w in writers {
                w.await.unwrap();
            }
            let got = peer.await.unwrap();
            assert!(got.iter().all(|g| *g == FAIR_TOTAL), "bytes read {got:?}");
            let windows = std::mem::take(&mut meter.state.lock().unwrap().windows);
            let (lo, hi) = (WINDOW as f64 / 8.0 * 0.75, WINDOW as f64 / 8.0 * 1.25);
            let mut unfair = Vec::new();
            let mut min_share = f64::MAX;
            let mut max_share = 0f64;
            for (k, w) in windows.iter().enumerate() {
                for id in &ids {
                    let b = w.get(id).copied().unwrap_or(0) as f64;
                    min_share = min_share.min(b / WINDOW as f64);
                    max_share = max_share.max(b / WINDOW as f64);
                    if b < lo || b > hi {
                        unfair.push(format!(
                            "window {k}: stream {id} {:.1} %",
                            100.0 * b / WINDOW as f64
                        ));
                    }
                }
            }
            eprintln!(
                "{rt}: {} windows of 4 MiB while all 8 wrote; shares from {:.1} % to {:.1} % \
                 (bounds 9.4 %-15.6 %); {} out of bounds",
                windows.len(),
                100.0 * min_share,
                100.0 * max_share,
                unfair.len()
            );
            assert!(!windows.is_empty(), "no full window measured");
            assert!(
                unfair.is_empty(),
                "{} of {} shares outside 1/8 ± 25 %: {}",
                unfair.len(),
                windows.len() * FAIR_WRITERS,
                unfair
                    .iter()
                    .take(12)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            cc.close().await.unwrap();
            cw.await.unwrap().unwrap();
            sw.await.unwrap().unwrap();
        })
        .await
        .expect("hang");
    });
}
