//! Hard limits against a hostile peer, measured with a counting allocator.
//!
//! A raw peer (frames encoded by hand, no smux code) floods our session with SYNs, with PSH
//! frames for streams that do not exist, stops reading while we write, or sends one frame
//! header and trickles its payload. Memory is measured for the whole process by the global
//! allocator `smux_test_support::alloc::CountingAlloc`, so the tests of this binary run one at
//! a time (each holds `serial()`), and the peer's own buffers are allocated before a
//! measurement starts.
//!
//! Every scenario runs on the current-thread runtime and on the multi-thread runtime with 2
//! and 4 workers. Those that assert timers (keep-alive, the idle timeout) or a settled state
//! (writers parked against a peer that never reads) also run on a current-thread runtime whose
//! clock is paused, over an in-memory pipe: the timers fire at their exact instants whatever
//! the machine's load. Their versions on every runtime wait for events (a frame, a parked
//! write) and assert the order of events only, never a duration on the real clock.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_tokio::MuxBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use raw_peer::{frame, put_frame, FrameReader, Probe, FIN, PSH, SYN};
use smux_test_support::alloc::{kib, live, peak, reset_peak, serial, CountingAlloc};
use smux_test_support::tokio::tcp_pair;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const V1: u8 = 1;

/// Runs the body `f` makes alone in the binary (see the module docs) on each runtime of
/// `common::RUNTIMES` (current-thread, multi-thread with 2 and 4 workers), each run under
/// `limit`.
fn run<F, Fut>(name: &str, limit: Duration, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let _serial = serial();
    common::on_runtimes(|| async {
        let rt = common::current_flavor().name();
        let start = Instant::now();
        if timeout(limit, f()).await.is_err() {
            panic!("{name}: not done within {limit:?} (hang?)");
        }
        eprintln!("{name} on {rt}: {:?}", start.elapsed());
    });
}

// ---------------------------------------------------------------- SYN flood

/// The default `max_accept_backlog` and `max_streams`.
const BACKLOG: u32 = 1024;
const MAX_STREAMS: u32 = 65_536;
/// SYNs in a flood.
const FLOOD: u32 = 1_000_000;
/// What one stream may cost us, for the bounds below: its state in the session and the
/// driver, and its share of their tables.
const STREAM_ALLOWANCE: usize = 1024;
/// What the driver's buffers may hold on top: the read buffer and the output pulled from the
/// session (up to 256 KiB of frames, each 8-byte header held as its own slice).
const DRIVER_ALLOWANCE: usize = 1536 * 1024;
/// What the driver may allocate for reading: its 64 KiB read buffer, a second one while the
/// first is still referenced, and a frame being assembled.
const READ_ALLOWANCE: usize = 256 * 1024;
/// Allocation noise between two quiescent points of a test that should hold nothing more.
const NOISE: usize = 16 * 1024;
/// How much the heap may move between two quiescent points of a flood (table and queue
/// capacities that grow in steps) without counting as growth with the flood.
const GROWTH_SLACK: usize = 128 * 1024 + READ_PAGES;
/// The worker's read pages it keeps for reuse (4 of 64 KiB): how many are held varies
/// with timing.
const READ_PAGES: usize = 4 * 64 * 1024;

type Tcp = tokio::net::TcpStream;
type Side = (
    smux_tokio::MuxConnector<Tcp>,
    smux_tokio::MuxAcceptor<Tcp>,
    smux_tokio::MuxWorker<Tcp>,
);

/// Client ids of the flood: 3 is the warm-up stream, the flood starts at 5.
fn flood_id(i: u32) -> u32 {
    5 + 2 * i
}

/// The session under test (over `T`) and the raw peer's two halves (`W` and `R`).
struct Peered<T: smux_tokio::TokioConn, R, W> {
    connector: smux_tokio::MuxConnector<T>,
    acceptor: smux_tokio::MuxAcceptor<T>,
    worker: tokio::task::JoinHandle<smux_tokio::MuxResult<()>>,
    wr: W,
    frames: FrameReader<R>,
}

/// Over TCP.
type Flooded = Peered<Tcp, tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf>;

/// Our server (built by `build`) and a raw client peer, warmed up by one echo on stream 3 so
/// that the buffers every connection has are allocated before a measurement starts.
async fn flooded(build: impl FnOnce(Tcp) -> Side) -> Flooded {
    let (theirs, ours) = tcp_pair().await;
    let (connector, mut acceptor, worker) = build(ours);
    let worker = tokio::spawn(worker);
    let (rd, mut wr) = theirs.into_split();
    let mut frames = FrameReader::new(rd);
    let mut warm = frame(V1, SYN, 3, b"");
    put_frame(&mut warm, V1, PSH, 3, b"warm");
    wr.write_all(&warm).await.unwrap();
    let mut s = acceptor.accept().await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    s.write_all(&buf).await.unwrap();
    drop(s);
    let (h, p) = frames.expect().await;
    assert_eq!((h.cmd, h.id, &p[..]), (PSH, 3, &b"warm"[..]));
    let (h, _) = frames.expect().await;
    assert_eq!((h.cmd, h.id), (FIN, 3));
    Flooded {
        connector,
        acceptor,
        worker,
        wr,
        frames,
    }
}

/// Sends SYNs for flood ids `from..to` and, at the same time, reads what comes back: a FIN for
/// each of flood ids `fin_from..to`, in order, and nothing else. `batch` is the peer's write
/// buffer (allocated before the measurement).
async fn syn_phase(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    frames: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    batch: &mut Vec<u8>,
    (from, to): (u32, u32),
    fin_from: u32,
) {
    let send = async {
        let mut i = from;
        while i < to {
            batch.clear();
            while batch.len() < 64 * 1024 && i < to {
                put_frame(batch, V1, SYN, flood_id(i), b"");
                i += 1;
            }
            wr.write_all(batch).await.unwrap();
        }
    };
    let receive = async {
        for i in fin_from..to {
            let (h, _) = frames.next().await.unwrap().expect("connection ended");
            assert_eq!(
                (h.ver, h.cmd, h.len, h.id),
                (V1, FIN, 0, flood_id(i)),
                "the reply to SYN {i} of the flood"
            );
        }
    };
    tokio::join!(send, receive);
}

/// Drops `streams` (flood ids `0..streams.len()`, in order); the peer gets their FINs in
/// that order.
async fn release_in_order(f: &mut Flooded, streams: Vec<smux_tokio::MuxStream<Tcp>>) {
    let n = streams.len() as u32;
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(s.get_stream_id(), flood_id(i as u32));
    }
    drop(streams);
    for i in 0..n {
        let (h, _) = f.frames.expect().await;
        assert_eq!((h.cmd, h.id), (FIN, flood_id(i)));
    }
}

/// After the flood, a new stream from the same peer echoes, and the session closes in order.
async fn legit_echo_then_close<T, R, W>(mut f: Peered<T, R, W>, legit: u32)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut open = frame(V1, SYN, legit, b"");
    put_frame(&mut open, V1, PSH, legit, b"ping");
    f.wr.write_all(&open).await.unwrap();
    let mut s = f.acceptor.accept().await.unwrap();
    assert_eq!(s.get_stream_id(), legit);
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    s.write_all(b"pong").await.unwrap();
    let (h, p) = f.frames.expect().await;
    assert_eq!((h.cmd, h.id, &p[..]), (PSH, legit, &b"pong"[..]));
    f.connector.close().await.unwrap();
    f.worker.await.unwrap().unwrap();
    let (h, _) = f.frames.expect().await;
    assert_eq!((h.cmd, h.id), (FIN, legit));
    assert!(f.frames.next().await.unwrap().is_none());
}

/// A million SYNs never followed by data, to a server whose application does not accept
/// during the flood. The first 1,024 (`max_accept_backlog`) wait in the accept backlog; every
/// later one is answered with a FIN, in order, and nothing else is sent. Memory held stays
/// under a bound made of the backlog and the driver's buffers, and stops growing once the
/// backlog is full: the last nine tenths of the flood add nothing. Afterwards the backlog is
/// accepted (in order) and a new stream from the same peer echoes.
#[test]
fn syn_flood_is_refused_beyond_the_accept_backlog() {
    run("syn_flood_backlog", Duration::from_secs(60), || async {
        let mut f = flooded(|io| MuxBuilder::server().with_connection(io).build()).await;
        let mut batch = Vec::with_capacity(64 * 1024 + 8);
        let base = live();
        reset_peak();
        let (wr, frames) = (&mut f.wr, &mut f.frames);
        syn_phase(wr, frames, &mut batch, (0, FLOOD / 10), BACKLOG).await;
        let tenth = live() - base;
        syn_phase(wr, frames, &mut batch, (FLOOD / 10, FLOOD), FLOOD / 10).await;
        let end = live() - base;
        let held = peak() - base;
        eprintln!(
            "SYN flood of {FLOOD}, backlog {BACKLOG}: peak held {}, after a tenth {}, at the \
             end {}",
            kib(held),
            kib(tenth),
            kib(end)
        );
        let bound = BACKLOG as usize * STREAM_ALLOWANCE + DRIVER_ALLOWANCE;
        assert!(held <= bound, "held {} > bound {}", kib(held), kib(bound));
        assert!(
            end <= tenth + GROWTH_SLACK,
            "900,000 refused SYNs grew the heap from {} to {}",
            kib(tenth),
            kib(end)
        );

        let mut backlog = Vec::new();
        for _ in 0..BACKLOG {
            backlog.push(f.acceptor.accept().await.unwrap());
        }
        release_in_order(&mut f, backlog).await;
        legit_echo_then_close(f, flood_id(FLOOD)).await;
    });
}

/// A million SYNs to a server whose application accepts every stream at once and holds it
/// (as a server that spawns a handler per stream does), with a backlog as large as
/// `max_streams` so that only `max_streams` (65,536) refuses: the first 65,536 are accepted,
/// every later one gets a FIN, in order. Memory held stays under the bound for 65,536 streams
/// and stops growing at the limit; once the application drops the streams each gets its FIN,
/// and a new stream echoes.
#[test]
fn syn_flood_is_refused_beyond_max_streams() {
    run("syn_flood_max_streams", Duration::from_secs(60), || async {
        let f = flooded(|io| {
            MuxBuilder::server()
                .with_max_accept_backlog(std::num::NonZeroUsize::new(MAX_STREAMS as usize).unwrap())
                .with_connection(io)
                .build()
        })
        .await;
        let Flooded {
            connector,
            mut acceptor,
            worker,
            mut wr,
            mut frames,
        } = f;
        let mut batch = Vec::with_capacity(64 * 1024 + 8);
        let mut held_streams = Vec::with_capacity(MAX_STREAMS as usize);
        let base = live();
        reset_peak();
        let app = tokio::spawn(async move {
            while held_streams.len() < MAX_STREAMS as usize {
                held_streams.push(acceptor.accept().await.unwrap());
            }
            (acceptor, held_streams)
        });
        syn_phase(
            &mut wr,
            &mut frames,
            &mut batch,
            (0, FLOOD / 10),
            MAX_STREAMS,
        )
        .await;
        let (acceptor, held_streams) = app.await.unwrap();
        let tenth = live() - base;
        syn_phase(
            &mut wr,
            &mut frames,
            &mut batch,
            (FLOOD / 10, FLOOD),
            FLOOD / 10,
        )
        .await;
        let end = live() - base;
        let held = peak() - base;
        let mut f = Flooded {
            connector,
            acceptor,
            worker,
            wr,
            frames,
        };
        release_in_order(&mut f, held_streams).await;
        let released = live().saturating_sub(base);
        eprintln!(
            "SYN flood of {FLOOD}, {MAX_STREAMS} streams held: peak held {}, after a tenth {}, \
             at the end {}, after the streams were dropped {}",
            kib(held),
            kib(tenth),
            kib(end),
            kib(released)
        );
        let bound = MAX_STREAMS as usize * STREAM_ALLOWANCE + DRIVER_ALLOWANCE;
        assert!(held <= bound, "held {} > bound {}", kib(held), kib(bound));
        assert!(
            end <= tenth + GROWTH_SLACK,
            "900,000 refused SYNs grew the heap from {} to {}",
            kib(tenth),
            kib(end)
        );
        // The stream tables give their memory back once the streams are gone.
        assert!(
            released <= tenth / 16,
            "{} still held after the streams were dropped ({} with them)",
            kib(released),
            kib(tenth)
        );
        legit_echo_then_close(f, flood_id(FLOOD)).await;
    });
}

// ---------------------------------------------------------------- PSH flood

/// A million PSH frames (most of 1 to 16 bytes, some empty, some up to 65,535) for streams that do not exist: ids never
/// opened, the reserved id 0, ids of our own parity, a stream we released, and a stream the
/// peer has finished. None gets a reply: the first frame the peer receives afterwards is the
/// echo of a new stream opened after the flood (which also shows every flood byte was read).
/// Nothing of the flood is kept: the heap is where it was, and at its peak held no more than
/// the driver's read buffers.
#[test]
fn psh_flood_to_unknown_streams_gets_no_reply_and_holds_nothing() {
    run("psh_flood", Duration::from_secs(60), || async {
        let mut f = flooded(|io| MuxBuilder::server().with_connection(io).build()).await;
        // Stream 5: the peer opens it, writes, finishes it; the application reads to the end
        // and keeps it.
        let mut w = frame(V1, SYN, 5, b"");
        put_frame(&mut w, V1, PSH, 5, b"before fin");
        put_frame(&mut w, V1, FIN, 5, b"");
        f.wr.write_all(&w).await.unwrap();
        let mut finished = f.acceptor.accept().await.unwrap();
        let mut got = Vec::new();
        finished.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"before fin");

        const FRAMES: u32 = 1_000_000;
        let payload = common::pattern(1, 65_535);
        let mut batch = Vec::with_capacity(256 * 1024);
        let mut rng = common::Rng::new(7);
        let base = live();
        reset_peak();
        let mut sent = 0;
        let mut frames_sent = 0u32;
        while frames_sent < FRAMES {
            batch.clear();
            while batch.len() < 128 * 1024 && frames_sent < FRAMES {
                let len = match rng.below(256) {
                    0 => 65_535,
                    1 => rng.size(1 << 16).min(65_535),
                    2..=9 => 0,
                    _ => rng.range(1, 16),
                };
                let id = match rng.below(6) {
                    0 => 0,
                    1 => 3,                                // released by us after the warm-up
                    2 => 5,                                // finished by the peer
                    3 => 2 * rng.range(1, 1 << 20) as u32, // our parity, never opened
                    4 => u32::MAX,
                    _ => flood_id(1000 + rng.below(1 << 20) as u32), // never opened
                };
                put_frame(&mut batch, V1, PSH, id, &payload[..len]);
                frames_sent += 1;
            }
            f.wr.write_all(&batch).await.unwrap();
            sent += batch.len();
        }
        let legit = 7;
        let mut open = frame(V1, SYN, legit, b"");
        put_frame(&mut open, V1, PSH, legit, b"ping");
        f.wr.write_all(&open).await.unwrap();
        let mut s = f.acceptor.accept().await.unwrap();
        assert_eq!(s.get_stream_id(), legit);
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        s.write_all(b"pong").await.unwrap();
        let (h, p) = f.frames.expect().await;
        assert_eq!(
            (h.cmd, h.id, &p[..]),
            (PSH, legit, &b"pong"[..]),
            "the first frame after a flood of {frames_sent} PSH frames"
        );
        let end = live() as isize - base as isize;
        let held = peak() - base;
        eprintln!(
            "PSH flood of {frames_sent} frames, {} MiB: peak held {}, held at the end {end} B",
            sent >> 20,
            kib(held)
        );
        assert!(held <= READ_ALLOWANCE, "held {}", kib(held));
        assert!(end <= NOISE as isize, "the flood left {end} bytes behind");
        // The finished stream saw nothing after its FIN.
        assert_eq!(finished.read(&mut buf).await.unwrap(), 0);
        drop(finished);
        let (h, _) = f.frames.expect().await;
        assert_eq!((h.cmd, h.id), (FIN, 5));
        drop(s);
        let (h, _) = f.frames.expect().await;
        assert_eq!((h.cmd, h.id), (FIN, legit));
        f.connector.close().await.unwrap();
        f.worker.await.unwrap().unwrap();
        assert!(f.frames.next().await.unwrap().is_none());
    });
}

// ---------------------------------------------------------------- a peer that never reads

/// Runs `body` alone in the binary on a current-thread runtime whose clock is paused. Tokio
/// moves a paused clock forward only when every task is idle, so a `sleep` that returns
/// proves that nothing else can move: the settled state these tests inspect.
fn run_paused<F: Future<Output = ()>>(name: &str, body: F) {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        // On the paused clock this fires only if everything is stuck: a hang.
        if timeout(Duration::from_secs(3600), body).await.is_err() {
            panic!("{name}: every task is stuck (hang)");
        }
    });
    eprintln!("{name}: {:?}", start.elapsed());
}

/// Waits until every task is idle (see [`run_paused`]).
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

const WRITERS: usize = 8;
/// Each writer's total: far more than every buffer between it and the peer together.
const PER_WRITER: usize = 4 * 1024 * 1024;
/// The driver's output buffer (frames pulled from the session, not yet written).
const OUT_ALLOWANCE: usize = 256 * 1024 + 64 * 1024;
/// The in-memory pipe between us and the peer.
const PIPE: usize = 64 * 1024;

/// Our client writes on `WRITERS` streams to a raw peer that reads nothing. Once everything
/// has settled: every writer is parked in `poll_write` (none finished), the bytes taken fill
/// the queue limit (`queue_limit` in total, so the limit, not something before it, stopped
/// them), and the heap holds no more than that limit plus the driver's output buffer, the pipe,
/// and the sent part of each stream's oldest write. Then the peer reads: every byte of every stream arrives, in order, then FIN.
///
/// `settled` waits for the state: a paused sleep (on the paused clock: every task is idle), or,
/// on any runtime, until the worker's read is parked (after the warm-up) and until every
/// writer and the worker's write are parked (after the writers start). Nothing the peer does
/// not read can unpark them, and the bounds checked then hold at any moment after: each
/// writer parked on a full queue, and the bytes taken only grow.
fn never_reading_peer(name: &str, tx_frames: Option<usize>, queue_limit: usize) {
    run_paused(
        name,
        never_reading_body(name, tx_frames, queue_limit, false),
    );
}

/// [`never_reading_peer`] on every runtime, synchronised.
fn never_reading_peer_synced(name: &str, tx_frames: Option<usize>, queue_limit: usize) {
    let _serial = serial();
    common::on_runtimes(|| async {
        let rt = common::current_flavor().name();
        let name = format!("{name} on {rt}");
        timeout(
            Duration::from_secs(60),
            never_reading_body(&name, tx_frames, queue_limit, true),
        )
        .await
        .expect("hang");
    });
}

async fn never_reading_body(
    name: &str,
    tx_frames: Option<usize>,
    queue_limit: usize,
    synced: bool,
) {
    {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let (ours, seen) = common::Watched::new(ours);
        let mut b = MuxBuilder::client();
        if let Some(n) = tx_frames {
            b.with_max_tx_queue(std::num::NonZeroUsize::new(n).unwrap());
        }
        let (connector, _acceptor, worker) = b.with_connection(ours).build();
        let worker = tokio::spawn(worker);
        let mut frames = FrameReader::new(theirs);
        // Warm-up: one stream, read by the peer.
        let mut warm = connector.connect().unwrap();
        warm.write_all(b"warm").await.unwrap();
        drop(warm);
        for cmd in [SYN, PSH, FIN] {
            assert_eq!(frames.expect().await.0.cmd, cmd);
        }
        let mut bufs: Vec<Vec<u8>> = (0..WRITERS).map(|_| vec![0u8; 64 * 1024]).collect();
        let parked: Vec<_> = (0..WRITERS)
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        let accepted: Vec<_> = (0..WRITERS)
            .map(|_| Arc::new(AtomicUsize::new(0)))
            .collect();
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut writers = Vec::new();
        if synced {
            seen.read_parked().await;
        } else {
            settle().await;
        }
        let base = live();
        reset_peak();
        let mut ids = Vec::new();
        for i in 0..WRITERS {
            let s = connector.connect().unwrap();
            ids.push(s.get_stream_id());
            let mut w = Probe {
                inner: s,
                parked: Arc::clone(&parked[i]),
                accepted: Arc::clone(&accepted[i]),
                changed: Arc::clone(&changed),
            };
            let mut buf = bufs.pop().unwrap();
            writers.push(tokio::spawn(async move {
                let mut gen = common::ByteGen::new(i as u64);
                let mut sent = 0;
                while sent < PER_WRITER {
                    gen.fill(&mut buf);
                    w.write_all(&buf).await?;
                    sent += buf.len();
                }
                w.shutdown().await
            }));
        }
        let all_parked = || parked.iter().all(|p| p.load(Ordering::SeqCst));
        if synced {
            common::until(&changed, all_parked).await;
            seen.write_parked().await;
            // Until the transport filled, the worker kept pulling frames, which woke writers
            // to queue more: they park again once the output queue is full too.
            common::until(&changed, all_parked).await;
        } else {
            settle().await;
        }
        let held = peak() - base;
        let taken: Vec<usize> = accepted.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let total: usize = taken.iter().sum();
        eprintln!(
            "{name}: writers took {total} bytes ({taken:?}), peak held {}, queue limit {}",
            kib(held),
            kib(queue_limit)
        );
        for (i, w) in writers.iter().enumerate() {
            assert!(
                !w.is_finished(),
                "writer {i} finished against a peer that reads nothing"
            );
            // (On the multi-thread runtimes a writer woken by room it then finds gone may be
            // between two polls at any instant: there `until` above is the check.)
            assert!(
                synced || parked[i].load(Ordering::SeqCst),
                "writer {i} is not parked in poll_write"
            );
        }
        // One writer may have found nothing queued ahead and be waiting on the full transport
        // itself (as a socket write would), holding nothing in the queue.
        assert!(
            total + queue_limit / WRITERS >= queue_limit,
            "the writers stopped before the queue limit"
        );
        assert!(
            total <= queue_limit + OUT_ALLOWANCE + PIPE,
            "the writers got {total} bytes past a peer that reads nothing"
        );
        // A write is copied into one buffer, which stays whole until its last frame is sent:
        // per stream, the part of it already sent (at most a frame) is held too.
        let bound = queue_limit + OUT_ALLOWANCE + PIPE + WRITERS * 32 * 1024 + NOISE;
        assert!(held <= bound, "held {} > bound {}", kib(held), kib(bound));

        // The peer reads: every byte arrives, in order, then FIN.
        let mut gens: Vec<_> = (0..WRITERS)
            .map(|i| common::ByteGen::new(i as u64))
            .collect();
        let mut got = [0usize; WRITERS];
        let mut open = [false; WRITERS];
        let mut fins = 0;
        let mut expect = vec![0u8; 65_535];
        while fins < WRITERS {
            let (h, p) = frames.next().await.unwrap().expect("connection ended");
            let i = ids
                .iter()
                .position(|id| *id == h.id)
                .expect("a stream we opened");
            match h.cmd {
                SYN => {
                    assert!(!open[i] && got[i] == 0, "stream {} opened twice", h.id);
                    open[i] = true;
                }
                PSH => {
                    assert!(open[i], "data before SYN on {}", h.id);
                    gens[i].fill(&mut expect[..p.len()]);
                    assert!(
                        p == &expect[..p.len()],
                        "stream {} corrupt after {}",
                        h.id,
                        got[i]
                    );
                    got[i] += p.len();
                }
                FIN => {
                    assert_eq!(got[i], PER_WRITER, "stream {} ended early", h.id);
                    fins += 1;
                }
                c => panic!("unexpected command {c}"),
            }
        }
        for w in writers {
            w.await.unwrap().unwrap();
        }
        connector.close().await.unwrap();
        worker.await.unwrap().unwrap();
        assert!(frames.next().await.unwrap().is_none());
    }
}

#[test]
fn a_peer_that_never_reads_parks_writers_at_the_session_queue_limit() {
    // Through the builder, one stream may queue the whole session limit (2 MiB).
    never_reading_peer("never_reads_session_limit", None, 2 * 1024 * 1024);
}

#[test]
fn a_peer_that_never_reads_parks_writers_at_the_stream_queue_limit() {
    // Two frames of 32 KiB per stream: 8 x 64 KiB, under the session's 2 MiB.
    never_reading_peer("never_reads_stream_limit", Some(2), WRITERS * 2 * 32 * 1024);
}

#[test]
fn a_peer_that_never_reads_parks_writers_at_the_session_queue_limit_synced() {
    never_reading_peer_synced("never_reads_session_limit", None, 2 * 1024 * 1024);
}

#[test]
fn a_peer_that_never_reads_parks_writers_at_the_stream_queue_limit_synced() {
    never_reading_peer_synced("never_reads_stream_limit", Some(2), WRITERS * 2 * 32 * 1024);
}

// ---------------------------------------------------------------- one frame, trickled
//
// Each scenario twice: on a current-thread runtime with the clock paused, over an in-memory
// pipe, where the timer assertions hold exactly; and on every runtime over TCP on the real
// clock, asserting the order of events only.

/// A connected pair for a trickle test, `(ours, theirs)`.
trait PeerPair: Sized {
    type Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    type R: tokio::io::AsyncRead + Unpin + Send + 'static;
    type W: tokio::io::AsyncWrite + Unpin + Send + 'static;
    async fn pair() -> (Self::Conn, Self::R, Self::W);
}

/// Loopback TCP.
struct OverTcp;

impl PeerPair for OverTcp {
    type Conn = Tcp;
    type R = tokio::net::tcp::OwnedReadHalf;
    type W = tokio::net::tcp::OwnedWriteHalf;
    async fn pair() -> (Tcp, Self::R, Self::W) {
        let (theirs, ours) = tcp_pair().await;
        let (rd, wr) = theirs.into_split();
        (ours, rd, wr)
    }
}

/// An in-memory pipe (for the paused clock: nothing in it waits on the kernel).
struct OverPipe;

type Pipe = tokio::io::DuplexStream;

impl PeerPair for OverPipe {
    type Conn = Pipe;
    type R = tokio::io::ReadHalf<Pipe>;
    type W = tokio::io::WriteHalf<Pipe>;
    async fn pair() -> (Pipe, Self::R, Self::W) {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (rd, wr) = tokio::io::split(theirs);
        (ours, rd, wr)
    }
}

type Trickled<P> = Peered<<P as PeerPair>::Conn, <P as PeerPair>::R, <P as PeerPair>::W>;

/// Our server with keep-alive (a NOP every second; dropped after `timeout_secs` without a
/// frame) and a raw client peer that has opened streams 5 and 7, both accepted.
async fn keep_alive_server<P: PeerPair>(
    timeout_secs: u64,
) -> (
    Trickled<P>,
    smux_tokio::MuxStream<P::Conn>,
    smux_tokio::MuxStream<P::Conn>,
) {
    let (ours, rd, mut wr) = P::pair().await;
    let (connector, mut acceptor, worker) = MuxBuilder::server()
        .with_keep_alive_interval(std::num::NonZeroU64::new(1).unwrap())
        .with_keep_alive_timeout(std::num::NonZeroU64::new(timeout_secs).unwrap())
        .with_connection(ours)
        .build();
    let worker = tokio::spawn(worker);
    let mut open = frame(V1, SYN, 5, b"");
    put_frame(&mut open, V1, SYN, 7, b"");
    wr.write_all(&open).await.unwrap();
    let a = acceptor.accept().await.unwrap();
    let b = acceptor.accept().await.unwrap();
    assert_eq!((a.get_stream_id(), b.get_stream_id()), (5, 7));
    let f = Peered {
        connector,
        acceptor,
        worker,
        wr,
        frames: FrameReader::new(rd),
    };
    (f, a, b)
}

/// The next frame that is not a NOP; counts the NOPs passed.
async fn next_not_nop<R: tokio::io::AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
    nops: &mut u32,
) -> (raw_peer::Head, Vec<u8>) {
    loop {
        let (h, p) = frames.expect().await;
        if h.cmd == raw_peer::NOP {
            assert_eq!((h.id, h.len), (0, 0));
            *nops += 1;
        } else {
            return (h, p);
        }
    }
}

/// Trickles the first `n` bytes of a 65,535-byte PSH for `id` (its header already sent), one
/// byte at a time, waiting `pause` after each when it is given (on the paused clock). After
/// each byte our application writes a tick on stream `b` and the peer waits for it: our output
/// is served while the frame is incomplete. Returns the heap held above `base` after the 8th
/// and after the last byte.
async fn trickle<P: PeerPair>(
    f: &mut Trickled<P>,
    b: &mut smux_tokio::MuxStream<P::Conn>,
    payload: &[u8],
    (n, pause): (usize, Option<Duration>),
    base: usize,
    nops: &mut u32,
) -> (isize, isize) {
    let mut early = 0;
    for (i, byte) in payload[..n].iter().enumerate() {
        f.wr.write_all(std::slice::from_ref(byte)).await.unwrap();
        if let Some(d) = pause {
            tokio::time::sleep(d).await;
        }
        let tick = (i as u32).to_le_bytes();
        b.write_all(&tick).await.unwrap();
        let (h, p) = next_not_nop(&mut f.frames, nops).await;
        assert_eq!((h.cmd, h.id, &p[..]), (PSH, 7, &tick[..]), "tick {i}");
        if i == 7 {
            early = live() as isize - base as isize;
        }
    }
    (early, live() as isize - base as isize)
}

/// A peer sends the header of a 65,535-byte frame and trickles its payload. Meanwhile: the heap
/// holds that one frame and nothing more per byte; our writes on another stream go out after
/// every byte; keep-alive NOPs still go out. The frame then arrives whole. The same trickle for
/// a stream that does not exist holds nothing at all.
///
/// With `pause` (the paused clock) a byte goes every 20 ms, for two seconds: NOPs go out
/// meanwhile. Without, the bytes go as fast as the ticks come back, then the peer waits for a
/// NOP before it sends the rest of the frame.
async fn trickled_frame<P: PeerPair>(pause: Option<Duration>) {
    let (mut f, mut a, mut b) = keep_alive_server::<P>(30).await;
    let payload = common::pattern(5, 65_535);
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 65_535];
        a.read_exact(&mut got).await.unwrap();
        (a, got)
    });
    const TRICKLED: usize = 100;
    let mut nops = 0;
    // Settle the buffers the ticks use.
    b.write_all(b"warm").await.unwrap();
    next_not_nop(&mut f.frames, &mut nops).await;
    let base = live();
    reset_peak();
    f.wr.write_all(&raw_peer::header(V1, PSH, 65_535, 5))
        .await
        .unwrap();
    let (early, late) =
        trickle::<P>(&mut f, &mut b, &payload, (TRICKLED, pause), base, &mut nops).await;
    if pause.is_none() && nops == 0 {
        // The frame is still incomplete: the next frame from us must be a NOP.
        let (h, _) = f.frames.expect().await;
        assert_eq!((h.cmd, h.id, h.len), (raw_peer::NOP, 0, 0));
        nops += 1;
    }
    let held = peak() - base;
    let nops_during = nops;
    eprintln!(
        "trickle to a stream: held {early} B after 8 bytes, {late} B after {TRICKLED}, \
         peak {held} B, {nops_during} NOPs"
    );
    assert!(
        early <= (65_535 + NOISE) as isize,
        "{early} B held for one frame"
    );
    assert!(
        late <= early + NOISE as isize,
        "held {early} B, then {late} B"
    );
    assert!(held <= 65_535 + READ_ALLOWANCE, "peak held {held} B");
    assert!(
        nops_during >= 1,
        "no keep-alive NOP while the frame trickled"
    );
    f.wr.write_all(&payload[TRICKLED..]).await.unwrap();
    let (a, got) = reader.await.unwrap();
    assert!(got == payload, "the trickled frame arrived corrupt");

    // The same for a stream that does not exist: nothing is kept for it.
    let base = live();
    f.wr.write_all(&raw_peer::header(V1, PSH, 65_535, 999))
        .await
        .unwrap();
    let (early, late) =
        trickle::<P>(&mut f, &mut b, &payload, (TRICKLED, pause), base, &mut nops).await;
    eprintln!("trickle to no stream: held {early} B after 8 bytes, {late} B after {TRICKLED}");
    assert!(
        early.max(late) <= NOISE as isize,
        "held {early} B, then {late} B"
    );
    f.wr.write_all(&payload[TRICKLED..]).await.unwrap();
    b.write_all(b"end").await.unwrap();
    let (h, p) = next_not_nop(&mut f.frames, &mut nops).await;
    assert_eq!((h.cmd, h.id, &p[..]), (PSH, 7, &b"end"[..]));
    drop((a, b));
    f.connector.close().await.unwrap();
    f.worker.await.unwrap().unwrap();
}

#[test]
fn a_trickled_frame_holds_one_frame_and_stops_nothing_else() {
    run_paused(
        "trickle",
        trickled_frame::<OverPipe>(Some(Duration::from_millis(20))),
    );
}

#[test]
fn a_trickled_frame_holds_one_frame_and_stops_nothing_else_over_tcp() {
    run("trickle_tcp", Duration::from_secs(60), || {
        trickled_frame::<OverTcp>(None)
    });
}

/// Keep-alive counts frames, not bytes (as Go's does): a peer that trickles one frame's
/// payload sends no frame header while it does, and is dropped once the keep-alive timeout
/// (2 s) has passed since that header. A NOP still went out before, the worker ends with
/// `KeepAliveTimeout`, the pending read fails with `TimedOut`, and the peer sees the
/// connection end. Returns how long after the header the session ended (on the runtime's
/// clock).
///
/// With `pause` (the paused clock) the peer sends a byte every `pause`; without, a byte each
/// time it receives a NOP.
async fn trickle_dropped_by_keep_alive<P: PeerPair>(pause: Option<Duration>) -> Duration {
    let (f, mut a, b) = keep_alive_server::<P>(2).await;
    let Peered {
        connector,
        mut acceptor,
        worker,
        mut wr,
        mut frames,
    } = f;
    // Reads until the read fails: the trickled bytes may be handed over as they come (or
    // only whole frames); either way the read waiting when the session ends fails.
    let (reader, read_parked) = common::when_pending(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            match a.read(&mut buf).await {
                Ok(0) => return Ok(0),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    });
    let reader = tokio::spawn(reader);
    read_parked.parked().await;
    wr.write_all(&raw_peer::header(V1, PSH, 65_535, 5))
        .await
        .unwrap();
    let sent = tokio::time::Instant::now();
    let (nop_tx, mut nop_rx) = tokio::sync::mpsc::unbounded_channel();
    let trickler = tokio::spawn(async move {
        // Until the connection is gone.
        loop {
            match pause {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    if nop_rx.recv().await.is_none() {
                        break;
                    }
                }
            }
            if wr.write_all(&[0x55]).await.is_err() {
                break;
            }
        }
    });
    let listener = tokio::spawn(async move {
        let mut nops = 0;
        loop {
            match frames.next().await {
                Ok(Some((h, _))) => {
                    assert_eq!((h.cmd, h.id), (raw_peer::NOP, 0));
                    nops += 1;
                    let _ = nop_tx.send(());
                }
                // The end, or a reset if a trickled byte was still unread.
                Ok(None) | Err(_) => return nops,
            }
        }
    });
    let result = worker.await.unwrap();
    let waited = sent.elapsed();
    eprintln!("dropped {waited:?} after the frame header: {result:?}");
    assert!(
        matches!(result, Err(smux_tokio::MuxError::KeepAliveTimeout)),
        "{result:?}"
    );
    let e = reader.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(listener.await.unwrap() >= 1, "no NOP before the drop");
    trickler.await.unwrap();
    assert!(acceptor.accept().await.is_none());
    assert!(connector.connect().is_err());
    drop(b);
    waited
}

/// On the paused clock: dropped within interval (1 s) + timeout (2 s) of the header, exactly.
#[test]
fn keep_alive_drops_a_peer_that_trickles_a_frame() {
    run_paused("trickle_keep_alive", async {
        let waited =
            trickle_dropped_by_keep_alive::<OverPipe>(Some(Duration::from_millis(100))).await;
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_secs(3),
            "dropped {waited:?} after the last frame header (timeout 2 s, interval 1 s)"
        );
    });
}

/// Over TCP on every runtime: the same events, in order; no assertion on when.
#[test]
fn keep_alive_drops_a_peer_that_trickles_a_frame_over_tcp() {
    run(
        "trickle_keep_alive_tcp",
        Duration::from_secs(60),
        || async {
            trickle_dropped_by_keep_alive::<OverTcp>(None).await;
        },
    );
}

/// The idle timeout (1 s) still fires while a frame trickles in: a quiet stream (7) is closed
/// and the peer gets its FIN. The stream whose frame is arriving (5) is not idle: it is not
/// closed under the frame, which arrives whole.
///
/// With `paused` (the paused clock): a byte every 20 ms for three seconds (three idle periods),
/// then the FIN is there. Without (the real clock): a byte every 20 ms until the FIN has
/// arrived, however long that takes (the pace is the load, not a state to reach: the test waits
/// for the FIN itself).
async fn idle_during_trickle<P: PeerPair>(paused: bool) {
    let (ours, rd, mut wr) = P::pair().await;
    let (connector, mut acceptor, worker) = MuxBuilder::server()
        .with_idle_timeout(std::num::NonZeroU64::new(1).unwrap())
        .with_connection(ours)
        .build();
    let worker = tokio::spawn(worker);
    let mut frames = FrameReader::new(rd);
    let mut open = frame(V1, SYN, 5, b"");
    put_frame(&mut open, V1, SYN, 7, b"");
    wr.write_all(&open).await.unwrap();
    let mut arriving = acceptor.accept().await.unwrap();
    let mut quiet = acceptor.accept().await.unwrap();
    let payload = common::pattern(5, 65_535);
    wr.write_all(&raw_peer::header(V1, PSH, 65_535, 5))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    // The first frame we send after the header.
    let first = tokio::spawn(async move {
        let (h, _) = frames.expect().await;
        (h, frames)
    });
    let mut sent = 0;
    while if paused {
        sent < 150
    } else {
        !first.is_finished()
    } {
        assert!(sent < 60_000, "no FIN for the quiet stream");
        wr.write_all(&payload[sent..sent + 1]).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if paused {
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
    let (h, _frames) = first.await.unwrap();
    assert_eq!(
        (h.cmd, h.id),
        (FIN, 7),
        "the quiet stream's FIN comes first"
    );
    assert_eq!(quiet.read(&mut [0u8; 8]).await.unwrap(), 0);
    wr.write_all(&payload[sent..]).await.unwrap();
    let mut got = vec![0u8; 65_535];
    arriving.read_exact(&mut got).await.unwrap();
    assert!(got == payload, "the trickled frame arrived corrupt");
    drop((arriving, quiet));
    connector.close().await.unwrap();
    worker.await.unwrap().unwrap();
}

#[test]
fn idle_timeout_fires_during_a_trickle_but_spares_the_arriving_frame() {
    run_paused("idle_trickle", idle_during_trickle::<OverPipe>(true));
}

#[test]
fn idle_timeout_fires_during_a_trickle_but_spares_the_arriving_frame_over_tcp() {
    run("idle_trickle_tcp", Duration::from_secs(60), || {
        idle_during_trickle::<OverTcp>(false)
    });
}
