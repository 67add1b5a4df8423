//! Chaos over an echo server: 64 client tasks each run a seeded random mix of exchanges that
//! finish, exchanges cancelled midway, streams written and dropped unread, and streams whose
//! read half is dropped first. Once every client task is done and the client holds no stream,
//! both sessions must come back to holding nothing: no stream in their tables and no unread
//! byte. In version 2 a stream dropped on one side used to strand the other side's writer (the
//! data arriving for it was dropped without a window update), so the echo of a cancelled
//! request never finished and its stream stayed on the server for good.
//!
//! Every run uses the default options (no stalled-stream timeout: nothing may be stranded
//! without it), in versions 1 and 2, on the current-thread runtime and on the multi-thread
//! runtime with 2 and 4 workers. Nothing depends on the clock: cancellations are decided by
//! the bytes read, and the end state is waited for by polling `stats()`; a timeout only turns
//! a hang into a failure that says what was left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smux_test_support::tokio::tcp_pair;
use smux_tokio::{MuxBuilder, MuxConnector, MuxStats, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::{on_runtimes, pattern, poll_once_then_drop, Flavor, Rng};

/// Client tasks running at once.
const TASKS: u64 = 64;
/// Operations each client task runs.
const OPS: u64 = 20;
/// The largest payload of an operation.
const MAX_PAYLOAD: usize = 512 * 1024;
/// What an operation that writes and drops its stream unread writes waiting (see
/// [`write_and_drop`]); the rest of its payload is written only as far as the stream takes
/// it without waiting.
const WAITED_PART: usize = 32 * 1024;
/// A hang guard only: a run takes seconds, and no assertion depends on how long it took.
const GUARD: Duration = Duration::from_secs(90);

type Stream = MuxStream<TcpStream>;

/// What the client tasks did, for the failure messages.
#[derive(Default)]
struct Tally {
    done_tasks: AtomicUsize,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
    dropped_unread: AtomicUsize,
    read_half_dropped: AtomicUsize,
}

impl Tally {
    fn show(&self) -> String {
        format!(
            "{}/{TASKS} client tasks done; operations: {} completed, {} cancelled, {} written \
             and dropped unread, {} with the read half dropped first",
            self.done_tasks.load(Ordering::SeqCst),
            self.completed.load(Ordering::SeqCst),
            self.cancelled.load(Ordering::SeqCst),
            self.dropped_unread.load(Ordering::SeqCst),
            self.read_half_dropped.load(Ordering::SeqCst),
        )
    }
}

fn held(s: &MuxStats) -> String {
    format!(
        "streams_open {}, unread_bytes {}, queued_bytes {}, streams_reset {}",
        s.streams_open, s.unread_bytes, s.queued_bytes, s.streams_reset
    )
}

/// A payload size up to [`MAX_PAYLOAD`]: uniform half the time, log-uniform the other half
/// (small sizes as well as large ones).
fn payload_size(rng: &mut Rng) -> usize {
    if rng.below(2) == 0 {
        rng.range(1, MAX_PAYLOAD)
    } else {
        rng.size(MAX_PAYLOAD)
    }
}

/// Writes `data` in writes of random sizes, then shuts down.
async fn write_all_then_shutdown<W: AsyncWrite + Unpin>(mut w: W, data: &[u8], seed: u64) {
    let mut rng = Rng::new(seed);
    let mut at = 0;
    while at < data.len() {
        let n = rng.size(64 * 1024).min(data.len() - at);
        w.write_all(&data[at..at + n]).await.expect("write");
        at += n;
    }
    w.shutdown().await.expect("shutdown");
}

/// Reads into `got` with reads of random sizes until the end of the stream, or, with
/// `stop_after`, until that many bytes have arrived: it then calls `reached` and waits for good
/// (the caller drops it). Panics at the first byte that differs from `expect`.
async fn read_echo<R: AsyncRead + Unpin>(
    mut r: R,
    expect: &[u8],
    seed: u64,
    stop_after: Option<usize>,
    reached: impl FnOnce(),
    what: &str,
) {
    let mut rng = Rng::new(seed);
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut reached = Some(reached);
    loop {
        let want = rng.size(64 * 1024);
        let n = r.read(&mut buf[..want]).await.expect("read");
        if n == 0 {
            break;
        }
        assert!(
            got + n <= expect.len(),
            "{what}: the echo is longer than the {} bytes written",
            expect.len()
        );
        if let Some(i) = (0..n).find(|&i| buf[i] != expect[got + i]) {
            panic!(
                "{what}: corrupt echo at offset {} of {} (got {:#04x}, expected {:#04x})",
                got + i,
                expect.len(),
                buf[i],
                expect[got + i]
            );
        }
        got += n;
        if stop_after.is_some_and(|k| got >= k) {
            (reached.take().expect("reached once"))();
            std::future::pending::<()>().await;
        }
    }
    assert_eq!(got, expect.len(), "{what}: the echo ended short");
}

/// 1. Open, write the payload and shut down while reading the echo to its end; the echo must
///    be the payload exactly. (Writing and reading go together: an echo written in full before
///    anything is read waits for good once the windows and buffers in between are full, as it
///    would over TCP.)
async fn complete(s: Stream, data: &[u8], seed: u64, what: &str) {
    let (r, w) = s.into_split();
    tokio::join!(
        write_all_then_shutdown(w, data, seed),
        read_echo(r, data, seed ^ 1, None, || (), what),
    );
}

/// 2. As [`complete`], but the exchange is dropped once `stop_after` bytes of the echo (fewer
///    than the payload) have been read and checked: the writer may be anywhere in its payload,
///    the reader is midway.
async fn cancel(s: Stream, data: &[u8], seed: u64, stop_after: usize, what: &str) {
    let (r, w) = s.into_split();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let exchange = async {
        tokio::join!(
            write_all_then_shutdown(w, data, seed),
            read_echo(
                r,
                data,
                seed ^ 1,
                Some(stop_after),
                move || {
                    let _ = tx.send(());
                },
                what
            ),
        )
    };
    tokio::select! {
        biased;
        _ = rx => {}
        _ = exchange => unreachable!("{what}: the reader stops after {stop_after} bytes"),
    }
}

/// 3. Writes part of the payload and drops the stream without reading or shutting down. The
///    first [`WAITED_PART`] bytes are written waiting as needed; the rest only as far as the
///    stream takes it without waiting. A writer that nobody reads waits for good once the echo
///    has filled our window and the echo's own window is full (as over TCP), and in version 1
///    the data such streams hold counts against the session's budget: [`WAITED_PART`] per task
///    keeps all of them within it.
async fn write_and_drop(mut s: Stream, data: &[u8]) {
    let waited = data.len().min(WAITED_PART);
    s.write_all(&data[..waited]).await.expect("write");
    if waited < data.len() {
        if let Some(r) = poll_once_then_drop(s.write_all(&data[waited..])).await {
            r.expect("write");
        }
    }
    drop(s);
}

/// 4. Splits the stream, drops the read half, writes the whole payload, shuts down and drops
///    the write half.
async fn drop_read_half_first(s: Stream, data: &[u8], seed: u64) {
    let (r, w) = s.into_split();
    drop(r);
    write_all_then_shutdown(w, data, seed).await;
}

async fn client_task(
    cc: MuxConnector<TcpStream>,
    seed: u64,
    task: u64,
    tally: Arc<Tally>,
    run: String,
) {
    let mut rng = Rng::new(seed);
    for op in 0..OPS {
        let len = payload_size(&mut rng);
        // Distinct content for each operation of each task.
        let data = pattern(seed ^ (op << 32) ^ 0xDA7A, len);
        let what = format!("{run}: task {task} op {op} ({len} bytes)");
        let s = cc.connect().expect("connect");
        let op_seed = rng.next_u64();
        match rng.below(4) {
            0 => {
                complete(s, &data, op_seed, &what).await;
                tally.completed.fetch_add(1, Ordering::SeqCst);
            }
            1 if len >= 2 => {
                let stop_after = rng.range(1, len - 1);
                cancel(s, &data, op_seed, stop_after, &what).await;
                tally.cancelled.fetch_add(1, Ordering::SeqCst);
            }
            1 => {
                complete(s, &data, op_seed, &what).await;
                tally.completed.fetch_add(1, Ordering::SeqCst);
            }
            2 => {
                let part = payload_size(&mut rng);
                write_and_drop(s, &data[..part.min(len)]).await;
                tally.dropped_unread.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                drop_read_half_first(s, &data, op_seed).await;
                tally.read_half_dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    tally.done_tasks.fetch_add(1, Ordering::SeqCst);
}

/// Waits, polling, until `stats()` of both sessions shows no stream and no unread byte.
async fn until_nothing_held(client: &MuxConnector<TcpStream>, server: &MuxConnector<TcpStream>) {
    loop {
        let (c, s) = (client.stats(), server.stats());
        if c.streams_open == 0 && c.unread_bytes == 0 && s.streams_open == 0 && s.unread_bytes == 0
        {
            return;
        }
        tokio::task::yield_now().await;
    }
}

async fn chaos(version: Version, seed: u64) {
    let run = format!("{version:?} on {}", common::current_flavor().name());
    let (a, b) = tcp_pair().await;
    let (cc, mut ca, cw) = MuxBuilder::client()
        .with_version(version)
        .with_connection(a)
        .build();
    let (sc, mut sa, sw) = MuxBuilder::server()
        .with_version(version)
        .with_connection(b)
        .build();
    let cw = tokio::spawn(cw);
    let sw = tokio::spawn(sw);
    // The echo: each stream's read half copied into its write half; errors end it quietly.
    let server = tokio::spawn(async move {
        while let Some(s) = sa.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    let tally = Arc::new(Tally::default());
    let work = async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                tokio::spawn(client_task(
                    cc.clone(),
                    seed.wrapping_mul(1000).wrapping_add(t),
                    t,
                    Arc::clone(&tally),
                    run.clone(),
                ))
            })
            .collect();
        for t in tasks {
            if let Err(e) = t.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        // Every client stream is dropped now: both sides must come back to holding nothing.
        until_nothing_held(&cc, &sc).await;
    };
    if tokio::time::timeout(GUARD, work).await.is_err() {
        panic!(
            "{run}: not done within {GUARD:?} (hang): {}\n  server: {}\n  client: {}",
            tally.show(),
            held(&sc.stats()),
            held(&cc.stats()),
        );
    }
    let (c, s) = (cc.stats(), sc.stats());
    assert_eq!(c.streams_reset + s.streams_reset, 0, "{run}: streams reset");
    eprintln!("{run}: {}", tally.show());
    for (kind, n) in [
        ("completed", &tally.completed),
        ("cancelled", &tally.cancelled),
        ("dropped unread", &tally.dropped_unread),
        ("read half dropped", &tally.read_half_dropped),
    ] {
        assert!(n.load(Ordering::SeqCst) > 0, "{run}: no operation {kind}");
    }
    // The end: the client closes, both workers end cleanly and so does the accept loop.
    let end = async {
        cc.close().await.expect("close");
        cw.await.unwrap().expect("client worker");
        sw.await.unwrap().expect("server worker");
        server.await.unwrap();
        assert!(ca.accept().await.is_none());
    };
    tokio::time::timeout(GUARD, end)
        .await
        .unwrap_or_else(|_| panic!("{run}: the sessions did not end (hang)"));
}

fn on_all_runtimes(version: Version) {
    on_runtimes(|| {
        let seed = match common::current_flavor() {
            Flavor::CurrentThread => 1,
            Flavor::MultiThread(n) => 1 + n as u64,
        };
        chaos(version, seed)
    });
}

#[test]
fn chaos_v1_leaves_nothing_held() {
    on_all_runtimes(Version::V1);
}

#[test]
fn chaos_v2_leaves_nothing_held() {
    on_all_runtimes(Version::V2);
}
