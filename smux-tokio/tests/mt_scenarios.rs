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
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use smux_test_support::tokio::tcp_pair;
use smux_tokio::MuxStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
        let ((cc, _ca, cw), (_sc, mut sa, sw)) = common::sessions(c, s);
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
        let ((cc, _ca, cw), (_sc, mut sa, sw)) = common::sessions(c, s);
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
                // The closing side lingers until the peer closes, so the peer's kernel is not
                // reset with data still unread: every stream ends cleanly with all of it.
                assert!(
                    end.is_ok(),
                    "stream {id}: {end:?} after {got} of {took} bytes"
                );
                assert_eq!(got, took, "stream {id} ended cleanly before its data");
            }
        })
        .await
        .expect("hang");
    });
}
