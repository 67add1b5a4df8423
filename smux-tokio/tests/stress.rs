//! Stress: many streams moving a lot of data both ways over a TCP connection with small socket
//! buffers (version 1 and 2), version-2 flow control isolating a stream whose reader stalls,
//! and a stream split into a read half and a write half driven from two tasks.
//!
//! Every test body runs under a timeout, so a hang (a lost wake-up, a flow-control deadlock)
//! fails the test instead of blocking CI. On a timeout the message lists how far each stream
//! got.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_test_support::tokio::tcp_pair_with_buffers;
use smux_tokio::{MuxAcceptor, MuxBuilder, MuxConnector, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::timeout;

mod common;

use common::on_runtimes;

// ---------------------------------------------------------------- helpers

/// xorshift64: deterministic data and sizes without extra crates.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Never zero (xorshift's fixed point); mix the seed a little.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// An endless pseudo-random byte sequence; the writer and the verifier of a stream each run one
/// with the same seed, so the content does not depend on how it is chunked.
struct ByteGen {
    rng: Rng,
    word: [u8; 8],
    pos: usize,
}

impl ByteGen {
    fn new(seed: u64) -> ByteGen {
        ByteGen {
            rng: Rng::new(seed),
            word: [0; 8],
            pos: 8,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut i = 0;
        // Finish the current word.
        while i < out.len() && self.pos < 8 {
            out[i] = self.word[self.pos];
            self.pos += 1;
            i += 1;
        }
        // Whole words.
        let mut chunks = out[i..].chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.rng.next().to_le_bytes());
        }
        // The tail starts a new word.
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            self.word = self.rng.next().to_le_bytes();
            let n = tail.len();
            tail.copy_from_slice(&self.word[..n]);
            self.pos = n;
        }
    }
}

/// Checks `got` against the next bytes of `gen`; `offset` is where `got` starts in the stream.
fn verify(what: &str, gen: &mut ByteGen, scratch: &mut Vec<u8>, got: &[u8], offset: u64) {
    scratch.resize(got.len(), 0);
    gen.fill(scratch);
    if got != &scratch[..] {
        let i = got
            .iter()
            .zip(scratch.iter())
            .position(|(a, b)| a != b)
            .unwrap();
        panic!(
            "{what}: corrupt data at byte {} (got {:#04x}, expected {:#04x})",
            offset + i as u64,
            got[i],
            scratch[i]
        );
    }
}

/// A task's output, or its panic re-raised with its own message.
fn task_result<T>(r: Result<T, JoinError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task failed: {e}"),
    }
}

/// Awaits a task, re-raising its panic.
async fn join<T>(h: JoinHandle<T>) -> T {
    task_result(h.await)
}

/// Awaits two tasks; the first panic is re-raised at once (not after the other task, which
/// may wait forever for the one that failed).
async fn join2<A, B>(a: JoinHandle<A>, b: JoinHandle<B>) -> (A, B) {
    task_result(tokio::try_join!(a, b))
}

/// Awaits all tasks, in whatever order they end; the first panic is re-raised at once.
async fn join_all<T: Send + 'static>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut set = JoinSet::new();
    let n = handles.len();
    for (i, h) in handles.into_iter().enumerate() {
        set.spawn(async move { (i, h.await) });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = task_result(r);
        out[i] = Some(task_result(r));
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// Per-stream byte counters, printed when a test times out.
#[derive(Default)]
struct Progress {
    entries: std::sync::Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl Progress {
    fn counter(&self, name: String) -> Arc<AtomicU64> {
        let c = Arc::new(AtomicU64::new(0));
        self.entries.lock().unwrap().push((name, Arc::clone(&c)));
        c
    }

    fn report(&self) -> String {
        let mut e: Vec<String> = self
            .entries
            .lock()
            .unwrap()
            .iter()
            .map(|(n, c)| format!("{n}={}", c.load(Ordering::Relaxed)))
            .collect();
        e.sort();
        e.join(", ")
    }
}

/// Runs `body` with a time limit; on timeout panics with the progress report.
async fn limited<F: Future<Output = ()>>(
    what: &str,
    limit: Duration,
    progress: &Progress,
    body: F,
) {
    let start = Instant::now();
    if timeout(limit, body).await.is_err() {
        panic!(
            "{what}: no completion within {limit:?} (hang?). Progress: [{}]",
            progress.report()
        );
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

type Worker = JoinHandle<smux_tokio::MuxResult<()>>;
type Side = (MuxConnector<TcpStream>, MuxAcceptor<TcpStream>, Worker);

/// A client and a server session over a TCP pair, workers spawned.
async fn mux_pair(version: Version, buf: Option<u32>) -> (Side, Side) {
    let (c, s) = tcp_pair_with_buffers(buf).await;
    let (cc, ca, cw) = MuxBuilder::client()
        .with_version(version)
        .with_connection(c)
        .build();
    let (sc, sa, sw) = MuxBuilder::server()
        .with_version(version)
        .with_connection(s)
        .build();
    ((cc, ca, tokio::spawn(cw)), (sc, sa, tokio::spawn(sw)))
}

/// Closes both sessions and checks that both workers end cleanly.
async fn close_both(
    client: (MuxConnector<TcpStream>, Worker),
    server: (MuxConnector<TcpStream>, Worker),
) {
    let (cc, cw) = client;
    let (sc, sw) = server;
    cc.close().await.unwrap();
    sc.close().await.unwrap();
    join(cw).await.expect("client worker result");
    join(sw).await.expect("server worker result");
}

// ---------------------------------------------------------------- 1. echo both ways

const ECHO_TOTAL: u64 = 64 * 1024 * 1024;
const ECHO_STREAMS_PER_SIDE: usize = 8;
const ECHO_SHARE: u64 = ECHO_TOTAL / (2 * ECHO_STREAMS_PER_SIDE as u64);
const SMALL_SOCKET_BUF: u32 = 16 * 1024;

/// Writes `total` bytes of `ByteGen(seed)` in chunks of random size, then FIN.
async fn write_pattern<W: AsyncWrite + Unpin>(
    mut w: W,
    seed: u64,
    total: u64,
    counter: Arc<AtomicU64>,
) -> W {
    let mut gen = ByteGen::new(seed);
    let mut sizes = Rng::new(seed ^ 0x5151);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = (sizes.range(1, buf.len()) as u64).min(total - sent) as usize;
        gen.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        sent += n as u64;
        counter.store(sent, Ordering::Relaxed);
    }
    w.shutdown().await.unwrap();
    w
}

/// Reads to the end with reads of random size, checking the content against `ByteGen(seed)`;
/// returns the byte count.
async fn read_pattern<R: AsyncRead + Unpin>(
    what: &str,
    mut r: R,
    seed: u64,
    counter: Arc<AtomicU64>,
) -> (R, u64) {
    let mut gen = ByteGen::new(seed);
    let mut sizes = Rng::new(seed ^ 0xA3A3);
    let mut buf = vec![0u8; 64 * 1024];
    let mut scratch = Vec::new();
    let mut got = 0u64;
    loop {
        let want = sizes.range(1, buf.len());
        let n = r.read(&mut buf[..want]).await.unwrap();
        if n == 0 {
            break;
        }
        verify(what, &mut gen, &mut scratch, &buf[..n], got);
        got += n as u64;
        counter.store(got, Ordering::Relaxed);
    }
    (r, got)
}

/// How the accepting side echoes.
#[derive(Clone, Copy, Debug)]
enum Echo {
    /// One task: read a chunk, write it back, repeat. Reading waits on writing, so in version
    /// 1 (one receive budget per session, no per-stream windows) the data waiting for these
    /// echoers can fill both sessions' budgets while the echoers wait for room to send: a
    /// deadlock of the protocol, not of the implementation (Go's smux has it too).
    Direct,
    /// A reader task hands chunks to a writer task through an unbounded channel: reading never
    /// waits on writing, so the receive budget always drains.
    Buffered,
}

/// Echoes everything back until EOF, then FIN; returns the byte count.
async fn echo(s: MuxStream<TcpStream>, mode: Echo, counter: Arc<AtomicU64>) -> u64 {
    match mode {
        Echo::Direct => echo_direct(s, counter).await,
        Echo::Buffered => echo_buffered(s, counter).await,
    }
}

async fn echo_direct(mut s: MuxStream<TcpStream>, counter: Arc<AtomicU64>) -> u64 {
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await.unwrap();
        total += n as u64;
        counter.store(total, Ordering::Relaxed);
    }
    s.shutdown().await.unwrap();
    total
}

async fn echo_buffered(s: MuxStream<TcpStream>, counter: Arc<AtomicU64>) -> u64 {
    let (mut r, mut w) = tokio::io::split(s);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; 32 * 1024];
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                return r;
            }
            buf.truncate(n);
            tx.send(buf).unwrap();
        }
    });
    let mut total = 0u64;
    while let Some(chunk) = rx.recv().await {
        w.write_all(&chunk).await.unwrap();
        total += chunk.len() as u64;
        counter.store(total, Ordering::Relaxed);
    }
    w.shutdown().await.unwrap();
    drop(join(reader).await.unsplit(w));
    total
}

/// Opens `ECHO_STREAMS_PER_SIDE` streams; on each, one task writes the share while another
/// reads the echo back and verifies it.
fn spawn_openers(
    side: &'static str,
    connector: &MuxConnector<TcpStream>,
    progress: &Progress,
    seed_base: u64,
) -> Vec<JoinHandle<()>> {
    (0..ECHO_STREAMS_PER_SIDE)
        .map(|i| {
            let s = connector.connect().unwrap();
            let id = s.get_stream_id();
            let seed = seed_base + i as u64;
            let (r, w) = tokio::io::split(s);
            let wc = progress.counter(format!("{side}#{id}.sent"));
            let rc = progress.counter(format!("{side}#{id}.echoed"));
            let writer = tokio::spawn(write_pattern(w, seed, ECHO_SHARE, wc));
            let what = format!("{side} stream {id} echo");
            let reader = tokio::spawn(async move { read_pattern(&what, r, seed, rc).await });
            tokio::spawn(async move {
                let ((r, got), w) = join2(reader, writer).await;
                assert_eq!(got, ECHO_SHARE, "{side} stream {id}: echoed byte count");
                drop(r.unsplit(w));
            })
        })
        .collect()
}

/// Accepts `ECHO_STREAMS_PER_SIDE` streams and echoes each.
fn spawn_echoers(
    side: &'static str,
    mut acceptor: MuxAcceptor<TcpStream>,
    mode: Echo,
    progress: Arc<Progress>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut echoers = Vec::new();
        for _ in 0..ECHO_STREAMS_PER_SIDE {
            let s = acceptor.accept().await.expect("peer stream");
            let id = s.get_stream_id();
            let c = progress.counter(format!("{side}#{id}.echo"));
            ids.push(id);
            echoers.push(tokio::spawn(echo(s, mode, c)));
        }
        for (id, n) in ids.into_iter().zip(join_all(echoers).await) {
            assert_eq!(n, ECHO_SHARE, "{side}: echo of stream {id}");
        }
        drop(acceptor);
    })
}

async fn echo_both_ways(version: Version, mode: Echo) {
    let progress = Arc::new(Progress::default());
    let (client, server) = mux_pair(version, Some(SMALL_SOCKET_BUF)).await;
    let (cc, ca, cw) = client;
    let (sc, sa, sw) = server;
    let what = format!("echo_both_ways({version:?}, {mode:?})");
    limited(&what, Duration::from_secs(120), &progress, async {
        let mut tasks = vec![
            spawn_echoers("client", ca, mode, Arc::clone(&progress)),
            spawn_echoers("server", sa, mode, Arc::clone(&progress)),
        ];
        tasks.extend(spawn_openers("client", &cc, &progress, 1000));
        tasks.extend(spawn_openers("server", &sc, &progress, 2000));
        join_all(tasks).await;
        assert_eq!(cc.get_num_streams(), 0, "client streams all released");
        assert_eq!(sc.get_num_streams(), 0, "server streams all released");
        close_both((cc, cw), (sc, sw)).await;
    })
    .await;
}

#[test]
fn echo_64mib_16_streams_both_ways_v2() {
    on_runtimes(|| async {
        echo_both_ways(Version::V2, Echo::Direct).await;
    });
}

/// Version 1 with an echoer whose reading does not wait on its writing.
#[test]
fn echo_64mib_16_streams_both_ways_v1_buffered_echo() {
    on_runtimes(|| async {
        echo_both_ways(Version::V1, Echo::Buffered).await;
    });
}

// ---------------------------------------------------------------- 2. v2: a stalled reader

/// What a version-2 sender may write before the peer's first window update (Go's
/// `initialPeerWindow`); the receiver here never reads, so never sends one.
const INITIAL_PEER_WINDOW: usize = 262_144;
const STALLED_TOTAL: usize = 1024 * 1024;
const BULK_TOTAL: u64 = 64 * 1024 * 1024;

#[test]
fn v2_unread_stream_does_not_stall_others() {
    on_runtimes(|| async {
        let progress = Arc::new(Progress::default());
        let (client, server) = mux_pair(Version::V2, Some(SMALL_SOCKET_BUF)).await;
        let (cc, ca, cw) = client;
        let (sc, mut sa, sw) = server;
        limited(
            "v2_unread_stream_does_not_stall_others",
            Duration::from_secs(60),
            &progress,
            async {
                // Stream A: the server accepts it and does not read it until the end.
                let a = cc.connect().unwrap();
                let a_id = a.get_stream_id();
                let mut a_data = vec![0u8; STALLED_TOTAL];
                ByteGen::new(77).fill(&mut a_data);
                let a_data = Arc::new(a_data);
                let (blocked_tx, blocked_rx) = tokio::sync::oneshot::channel();
                let a_counter = progress.counter("A.sent".into());
                let (mut a, a_seen) = common::Watched::new(a);
                let a_writer = tokio::spawn({
                    let a_data = Arc::clone(&a_data);
                    async move {
                        // Write until a write parks. Nobody reads A, so no window update comes:
                        // once parked, it stays parked until the reader reads.
                        let mut sent = 0;
                        loop {
                            assert!(
                                sent < a_data.len(),
                                "stream A wrote {sent} bytes to a reader that never reads \
                                 without being blocked"
                            );
                            let end = (sent + 16 * 1024).min(a_data.len());
                            let (write, parked) = common::when_pending(a.write(&a_data[sent..end]));
                            let mut write = std::pin::pin!(write);
                            tokio::select! {
                                biased;
                                n = &mut write => {
                                    sent += n.unwrap();
                                    a_counter.store(sent as u64, Ordering::Relaxed);
                                }
                                _ = parked.parked() => break,
                            }
                        }
                        blocked_tx.send(sent).unwrap();
                        // The rest goes once the reader reads.
                        a.write_all(&a_data[sent..]).await.unwrap();
                        a_counter.store(a_data.len() as u64, Ordering::Relaxed);
                        a.shutdown().await.unwrap();
                        a
                    }
                });
                let mut a_peer = sa.accept().await.expect("stream A");
                assert_eq!(a_peer.get_stream_id(), a_id);

                let blocked_at = match blocked_rx.await {
                    Ok(n) => n,
                    // The writer failed: report why.
                    Err(_) => {
                        join(a_writer).await;
                        unreachable!("A's writer ended without reporting")
                    }
                };
                eprintln!("stream A's writer blocked after {blocked_at} bytes");
                assert!(
                    (65_535..=INITIAL_PEER_WINDOW).contains(&blocked_at),
                    "A's writer blocked after {blocked_at} bytes; expected after at most one \
                     window ({INITIAL_PEER_WINDOW})"
                );

                // Stream B moves 64 MiB meanwhile.
                let b = cc.connect().unwrap();
                let b_writer = tokio::spawn(write_pattern(
                    b,
                    88,
                    BULK_TOTAL,
                    progress.counter("B.sent".into()),
                ));
                let b_peer = sa.accept().await.expect("stream B");
                let b_counter = progress.counter("B.read".into());
                let b_reader =
                    tokio::spawn(
                        async move { read_pattern("stream B", b_peer, 88, b_counter).await },
                    );
                let ((b_peer, got), b) = join2(b_reader, b_writer).await;
                assert_eq!(got, BULK_TOTAL, "stream B byte count");
                drop((b_peer, b));

                // A is still blocked: nobody read it, and its writer took nothing more.
                assert!(
                    !a_writer.is_finished(),
                    "A's writer finished although its reader never read"
                );
                assert_eq!(
                    a_seen.written.load(Ordering::SeqCst),
                    blocked_at as u64,
                    "A's writer wrote more although its reader never read"
                );

                // Now read A: all of it arrives, in order, and its writer finishes.
                let mut got = Vec::with_capacity(STALLED_TOTAL);
                a_peer.read_to_end(&mut got).await.unwrap();
                assert!(
                    got == *a_data,
                    "stream A's content ({} bytes read)",
                    got.len()
                );
                drop(join(a_writer).await);
                drop((a_peer, ca, sa));
                close_both((cc, cw), (sc, sw)).await;
            },
        )
        .await;
    });
}

// ---------------------------------------------------------------- 3. split streams

const MESSAGES: u32 = 100_000;

/// Message `i` of a sequence: a 4-byte little-endian length, then that many bytes.
fn message(rng: &mut Rng, i: u32, out: &mut Vec<u8>) {
    let len = rng.range(0, 100);
    out.clear();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let tag = i.to_le_bytes();
    for k in 0..len {
        out.push(tag[k % 4] ^ (k as u8).wrapping_mul(31));
    }
}

async fn send_messages<W: AsyncWrite + Unpin>(mut w: W, seed: u64, counter: Arc<AtomicU64>) -> W {
    let mut rng = Rng::new(seed);
    let mut msg = Vec::new();
    for i in 0..MESSAGES {
        message(&mut rng, i, &mut msg);
        w.write_all(&msg).await.unwrap();
        counter.store(u64::from(i) + 1, Ordering::Relaxed);
    }
    w.shutdown().await.unwrap();
    w
}

async fn recv_messages<R: AsyncRead + Unpin>(
    what: String,
    mut r: R,
    seed: u64,
    counter: Arc<AtomicU64>,
) -> R {
    let mut rng = Rng::new(seed);
    let mut want = Vec::new();
    let mut got = [0u8; 4 + 100];
    for i in 0..MESSAGES {
        message(&mut rng, i, &mut want);
        r.read_exact(&mut got[..4]).await.unwrap();
        let len = u32::from_le_bytes(got[..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, want.len(), "{what}: length of message {i}");
        r.read_exact(&mut got[4..4 + len]).await.unwrap();
        assert!(got[..4 + len] == want[..], "{what}: content of message {i}");
        counter.store(u64::from(i) + 1, Ordering::Relaxed);
    }
    let mut extra = [0u8; 1];
    assert_eq!(
        r.read(&mut extra).await.unwrap(),
        0,
        "{what}: EOF after the last message"
    );
    r
}

/// Splits `s` and runs the sender and the receiver on two tasks.
fn run_split(
    side: &'static str,
    s: MuxStream<TcpStream>,
    send_seed: u64,
    recv_seed: u64,
    progress: &Progress,
) -> JoinHandle<MuxStream<TcpStream>> {
    let (r, w) = tokio::io::split(s);
    let writer = tokio::spawn(send_messages(
        w,
        send_seed,
        progress.counter(format!("{side}.sent")),
    ));
    let reader = tokio::spawn(recv_messages(
        format!("{side} receiver"),
        r,
        recv_seed,
        progress.counter(format!("{side}.received")),
    ));
    tokio::spawn(async move {
        let (r, w) = join2(reader, writer).await;
        r.unsplit(w)
    })
}

async fn split_streams(what: &str, version: Version) {
    let progress = Arc::new(Progress::default());
    let (client, server) = mux_pair(version, None).await;
    let (cc, ca, cw) = client;
    let (sc, mut sa, sw) = server;
    limited(what, Duration::from_secs(60), &progress, async {
        let c = cc.connect().unwrap();
        let c = run_split("client", c, 1, 2, &progress);
        let s = sa.accept().await.expect("client's stream");
        let s = run_split("server", s, 2, 1, &progress);
        let (c, s) = join2(c, s).await;
        assert!(c.is_closed() && s.is_closed(), "both sides sent FIN");
        drop((c, s, ca, sa));
        close_both((cc, cw), (sc, sw)).await;
    })
    .await;
}

#[test]
fn split_stream_100k_messages_each_way() {
    on_runtimes(|| split_streams("split v2", Version::V2));
}

#[test]
fn split_stream_100k_messages_each_way_v1() {
    on_runtimes(|| split_streams("split v1", Version::V1));
}
