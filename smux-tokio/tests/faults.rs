//! A transport with injected faults under a running echo: reads or writes that fail after N
//! bytes, short reads and writes, `Pending` storms (the transport says `Pending`, wakes itself,
//! and does it again), delays before every operation, and these together.
//!
//! Faults that lose nothing (short I/O, storms, delays) must not change a byte: every stream's
//! echo arrives whole and in order, and both sessions close cleanly. Faults that break the
//! transport must end the session with that error (the worker returns it, naming the injected
//! fault) and complete every pending read, write and accept on both sides: each test allows
//! 5 s in all; the time from the fault to the last completion is printed.
//!
//! Last, keep-alive against a peer that stops sending but keeps the connection open (the
//! paused-clock test in `lifecycle.rs`, `keep_alive_timeout_against_a_silent_peer`, covers a
//! peer silent from the start): its instant on the paused clock over an in-memory pipe, its
//! order of events on every runtime over TCP.
//!
//! Every scenario runs on the current-thread runtime and on the multi-thread runtime with 2
//! and 4 workers (`common::on_runtimes`); the 5 s limit applies to each run.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use smux_tokio::{MuxBuilder, MuxError, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Sleep};

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use common::{on_runtimes, ByteGen, Rng};

/// Each test's time limit, everything included.
const LIMIT: Duration = Duration::from_secs(5);
const STREAMS: u64 = 8;

// ---------------------------------------------------------------- the faulty transport

/// What a [`Faulty`] transport does wrong.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Reads fail (`ConnectionReset`) once this many bytes have been read.
    read_fail_after: Option<usize>,
    /// Writes fail (`ConnectionReset`) once this many bytes have been written.
    write_fail_after: Option<usize>,
    /// A read returns at most this many bytes.
    max_read: Option<usize>,
    /// A write takes at most this many bytes.
    max_write: Option<usize>,
    /// Every operation returns `Pending` (waking its task) this many times before it goes
    /// through.
    storm: u32,
    /// Every read and write waits this long first.
    delay: Option<Duration>,
    /// Whether `poll_write_vectored` writes from more than the first buffer.
    vectored: bool,
}

const READ: usize = 0;
const WRITE: usize = 1;
const FLUSH: usize = 2;
const SHUTDOWN: usize = 3;

/// An in-memory pipe end with [`Faults`].
struct Faulty {
    inner: DuplexStream,
    faults: Faults,
    read: usize,
    written: usize,
    /// `Pending`s left before each kind of operation goes through.
    storms: [u32; 4],
    /// The delay of the read and of the write under way.
    delays: [Option<Pin<Box<Sleep>>>; 2],
    /// When a failure was first injected.
    tripped: Arc<Mutex<Option<Instant>>>,
}

impl Faulty {
    fn new(inner: DuplexStream, faults: Faults) -> (Faulty, Arc<Mutex<Option<Instant>>>) {
        let tripped = Arc::new(Mutex::new(None));
        let f = Faulty {
            inner,
            faults,
            read: 0,
            written: 0,
            storms: [faults.storm; 4],
            delays: [None, None],
            tripped: Arc::clone(&tripped),
        };
        (f, tripped)
    }

    /// The storm and the delay before operation `op`: `Pending` until both are over.
    fn before(&mut self, op: usize, cx: &mut Context<'_>) -> Poll<()> {
        if self.storms[op] > 0 {
            self.storms[op] -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let (Some(d), true) = (self.faults.delay, op <= WRITE) {
            let sleep = self.delays[op].get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            ready!(sleep.as_mut().poll(cx));
        }
        Poll::Ready(())
    }

    /// Operation `op` went through: the next one meets a new storm and delay.
    fn done(&mut self, op: usize) {
        self.storms[op] = self.faults.storm;
        if op <= WRITE {
            self.delays[op] = None;
        }
    }

    fn fail(&mut self, op: usize, what: &str) -> io::Error {
        self.done(op);
        self.tripped
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("injected {what} fault"),
        )
    }

    fn write_from(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.before(WRITE, cx));
        let mut limit = data.len();
        if let Some(m) = self.faults.max_write {
            limit = limit.min(m);
        }
        if let Some(n) = self.faults.write_fail_after {
            if self.written >= n {
                return Poll::Ready(Err(self.fail(WRITE, "write")));
            }
            limit = limit.min(n - self.written);
        }
        let r = ready!(Pin::new(&mut self.inner).poll_write(cx, &data[..limit]));
        if let Ok(k) = &r {
            self.written += k;
        }
        self.done(WRITE);
        Poll::Ready(r)
    }
}

impl AsyncRead for Faulty {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.before(READ, cx));
        let mut limit = buf.remaining();
        if let Some(m) = this.faults.max_read {
            limit = limit.min(m);
        }
        if let Some(n) = this.faults.read_fail_after {
            if this.read >= n {
                return Poll::Ready(Err(this.fail(READ, "read")));
            }
            limit = limit.min(n - this.read);
        }
        let got = {
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(limit));
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
            part.filled().len()
        };
        buf.advance(got);
        this.read += got;
        this.done(READ);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Faulty {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_from(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.faults.vectored {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.write_from(cx, first);
        }
        // Gather the slices (up to what one write may take) and write them as one.
        let cap = self.faults.max_write.unwrap_or(usize::MAX).min(256 * 1024);
        let mut gathered = Vec::new();
        for b in bufs {
            let n = b.len().min(cap - gathered.len());
            gathered.extend_from_slice(&b[..n]);
        }
        self.write_from(cx, &gathered)
    }

    fn is_write_vectored(&self) -> bool {
        self.faults.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.before(FLUSH, cx));
        let r = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        self.done(FLUSH);
        Poll::Ready(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.before(SHUTDOWN, cx));
        let r = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
        self.done(SHUTDOWN);
        Poll::Ready(r)
    }
}

// ---------------------------------------------------------------- the workload

/// Writes `total` bytes of `ByteGen(seed)` in chunks of random size, then FIN.
async fn write_pattern<W: AsyncWrite + Unpin>(mut w: W, seed: u64, total: usize) -> io::Result<()> {
    let mut gen = ByteGen::new(seed);
    let mut sizes = Rng::new(seed ^ 0x77);
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        let n = sizes.range(1, buf.len()).min(total - sent);
        gen.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        sent += n;
    }
    w.shutdown().await
}

/// Reads to the end or to an error, checking every byte against `ByteGen(seed)`; returns the
/// bytes read and how the reading ended (`Ok` for a clean end of stream).
async fn read_pattern<R: AsyncRead + Unpin>(mut r: R, seed: u64) -> (usize, io::Result<()>) {
    let mut gen = ByteGen::new(seed);
    let mut buf = vec![0u8; 8 * 1024];
    let mut expect = vec![0u8; 8 * 1024];
    let mut got = 0;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => {
                gen.fill(&mut expect[..n]);
                assert!(
                    buf[..n] == expect[..n],
                    "stream {seed}: corrupt after {got} bytes"
                );
                got += n;
            }
            Err(e) => return (got, Err(e)),
        }
    }
}

/// Echoes a stream to its end, then FIN.
async fn echo(s: MuxStream<Faulty>) -> io::Result<u64> {
    let (mut r, mut w) = tokio::io::split(s);
    let n = tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await?;
    Ok(n)
}

type Worker = JoinHandle<smux_tokio::MuxResult<()>>;
type Writer = JoinHandle<io::Result<()>>;
type Reader = JoinHandle<(usize, io::Result<()>)>;

/// Everything an echo run has under way.
struct Echo {
    client: smux_tokio::MuxConnector<Faulty>,
    client_worker: Worker,
    server_worker: Worker,
    /// Per client stream: its writer and its reader.
    streams: Vec<(Writer, Reader)>,
    /// The client's accept (the server opens nothing): `true` once it ended with `None`.
    client_accept: JoinHandle<bool>,
    /// The server's accept loop, then the results of its echoes.
    server_app: JoinHandle<Vec<io::Result<u64>>>,
    client_tripped: Arc<Mutex<Option<Instant>>>,
    server_tripped: Arc<Mutex<Option<Instant>>>,
}

/// A client and a server session over a pipe, each end with its faults; the client echoes
/// `per_stream` bytes on each of `STREAMS` streams through the server.
fn start_echo(version: Version, client: Faults, server: Faults, per_stream: usize) -> Echo {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (a, client_tripped) = Faulty::new(a, client);
    let (b, server_tripped) = Faulty::new(b, server);
    let (cc, mut ca, cw) = MuxBuilder::client()
        .with_version(version)
        .with_connection(a)
        .build();
    let (_sc, mut sa, sw) = MuxBuilder::server()
        .with_version(version)
        .with_connection(b)
        .build();
    let client_worker = tokio::spawn(cw);
    let server_worker = tokio::spawn(sw);
    let server_app = tokio::spawn(async move {
        let mut echoes = Vec::new();
        while let Some(s) = sa.accept().await {
            echoes.push(tokio::spawn(echo(s)));
        }
        let mut results = Vec::new();
        for e in echoes {
            results.push(e.await.unwrap());
        }
        results
    });
    let client_accept = tokio::spawn(async move { ca.accept().await.is_none() });
    // Every stream is opened before any writer starts: on a multi-thread runtime the first
    // writers would otherwise move enough data to trip a fault before the last open, which
    // then fails (the session is already gone).
    let opened: Vec<_> = (0..STREAMS).map(|_| cc.connect().unwrap()).collect();
    let streams = opened
        .into_iter()
        .zip(0..STREAMS)
        .map(|(s, seed)| {
            let (r, w) = tokio::io::split(s);
            (
                tokio::spawn(write_pattern(w, seed, per_stream)),
                tokio::spawn(read_pattern(r, seed)),
            )
        })
        .collect();
    Echo {
        client: cc,
        client_worker,
        server_worker,
        streams,
        client_accept,
        server_app,
        client_tripped,
        server_tripped,
    }
}

/// Faults that lose nothing: every echo arrives whole, and both sessions close cleanly.
async fn intact_under(version: Version, client: Faults, server: Faults, per_stream: usize) {
    timeout(LIMIT, async {
        let run = start_echo(version, client, server, per_stream);
        for (i, (writer, reader)) in run.streams.into_iter().enumerate() {
            writer.await.unwrap().unwrap();
            let (got, end) = reader.await.unwrap();
            end.unwrap();
            assert_eq!(got, per_stream, "stream {i}");
        }
        run.client.close().await.unwrap();
        run.client_worker.await.unwrap().unwrap();
        run.server_worker.await.unwrap().unwrap();
        assert!(run.client_accept.await.unwrap());
        for r in run.server_app.await.unwrap() {
            assert_eq!(r.unwrap(), per_stream as u64);
        }
    })
    .await
    .expect("not done in time (hang?)");
}

/// Whether `e` is the stream error a transport failure gives, naming the injected fault.
fn is_injected(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionReset && e.to_string().contains("injected")
}

/// A fault that breaks the transport on `side`: its worker returns the injected error; on
/// both sides every pending read, write and accept completes; every stream of the faulty side
/// that did not finish ends with the error (never a clean end), after correct data.
async fn broken_by(client: Faults, server: Faults, faulty: &str) {
    let per_stream = 128 * 1024;
    let start = Instant::now();
    timeout(LIMIT, async {
        let run = start_echo(Version::V1, client, server, per_stream);
        let (faulty_worker, other_worker) = match faulty {
            "client" => (run.client_worker, run.server_worker),
            _ => (run.server_worker, run.client_worker),
        };
        match faulty_worker.await.unwrap() {
            Err(MuxError::IoError(e)) => assert!(is_injected(&e), "{e}"),
            other => panic!("the {faulty}'s worker ended with {other:?}"),
        }
        // The other side sees the transport end: an orderly end, or the pipe failing under a
        // write.
        match other_worker.await.unwrap() {
            Ok(()) | Err(MuxError::IoError(_)) => {}
            other => panic!("the other worker ended with {other:?}"),
        }
        let mut cut = 0;
        for (i, (writer, reader)) in run.streams.into_iter().enumerate() {
            if let Err(e) = writer.await.unwrap() {
                assert!(faulty != "client" || is_injected(&e), "writer {i}: {e}");
            }
            let (got, end) = reader.await.unwrap();
            match end {
                Ok(()) => assert_eq!(got, per_stream, "stream {i} ended cleanly but short"),
                Err(e) => {
                    assert!(faulty != "client" || is_injected(&e), "reader {i}: {e}");
                    cut += 1;
                }
            }
        }
        assert!(cut > 0, "the fault came after every echo was done");
        assert!(run.client_accept.await.unwrap());
        let echoes = run.server_app.await.unwrap();
        if faulty == "server" {
            let broken = echoes.iter().filter(|r| r.is_err()).count();
            assert!(broken > 0, "no server echo saw the fault");
            for e in echoes.iter().filter_map(|r| r.as_ref().err()) {
                assert!(is_injected(e), "server echo: {e}");
            }
        }
        let tripped = match faulty {
            "client" => *run.client_tripped.lock().unwrap(),
            _ => *run.server_tripped.lock().unwrap(),
        };
        let tripped = tripped.expect("the fault was never injected");
        eprintln!(
            "{faulty} fault {:?} after the start; everything completed {:?} after it",
            tripped - start,
            tripped.elapsed()
        );
        assert!(run.client.connect().is_err());
    })
    .await
    .expect("something still pending after the fault");
}

// ---------------------------------------------------------------- faults that lose nothing

#[test]
fn one_byte_writes_vectored() {
    on_runtimes(|| async {
        let f = Faults {
            max_write: Some(1),
            vectored: true,
            ..Faults::default()
        };
        intact_under(Version::V1, f, f, 16 * 1024).await;
    });
}

#[test]
fn short_writes_without_vectored_io() {
    on_runtimes(|| async {
        let f = Faults {
            max_write: Some(7),
            ..Faults::default()
        };
        intact_under(Version::V1, f, f, 64 * 1024).await;
    });
}

#[test]
fn one_byte_reads() {
    on_runtimes(|| async {
        let f = Faults {
            max_read: Some(1),
            vectored: true,
            ..Faults::default()
        };
        intact_under(Version::V1, f, f, 16 * 1024).await;
    });
}

#[test]
fn pending_storms() {
    on_runtimes(|| async {
        let f = Faults {
            storm: 3,
            vectored: true,
            ..Faults::default()
        };
        intact_under(Version::V1, f, f, 128 * 1024).await;
        intact_under(Version::V2, f, f, 128 * 1024).await;
    });
}

#[test]
fn delays_before_every_operation() {
    on_runtimes(|| async {
        let f = Faults {
            delay: Some(Duration::from_millis(1)),
            max_read: Some(4096),
            max_write: Some(4096),
            vectored: true,
            ..Faults::default()
        };
        intact_under(Version::V1, f, f, 32 * 1024).await;
    });
}

#[test]
fn storms_with_short_reads_and_writes() {
    on_runtimes(|| async {
        let f = Faults {
            storm: 2,
            max_read: Some(100),
            max_write: Some(100),
            vectored: true,
            ..Faults::default()
        };
        intact_under(Version::V1, f, f, 32 * 1024).await;
        let g = Faults {
            vectored: false,
            ..f
        };
        intact_under(Version::V2, g, f, 32 * 1024).await;
    });
}

// ---------------------------------------------------------------- faults that break it

#[test]
fn client_read_fails_mid_transfer() {
    on_runtimes(|| async {
        let f = Faults {
            read_fail_after: Some(100_000),
            vectored: true,
            ..Faults::default()
        };
        broken_by(f, Faults::default(), "client").await;
    });
}

#[test]
fn client_write_fails_mid_transfer() {
    on_runtimes(|| async {
        let f = Faults {
            write_fail_after: Some(100_000),
            vectored: true,
            ..Faults::default()
        };
        broken_by(f, Faults::default(), "client").await;
    });
}

#[test]
fn server_read_fails_mid_transfer() {
    on_runtimes(|| async {
        let f = Faults {
            read_fail_after: Some(100_000),
            vectored: true,
            ..Faults::default()
        };
        broken_by(Faults::default(), f, "server").await;
    });
}

#[test]
fn server_write_fails_mid_transfer() {
    on_runtimes(|| async {
        let f = Faults {
            write_fail_after: Some(100_000),
            vectored: true,
            ..Faults::default()
        };
        broken_by(Faults::default(), f, "server").await;
    });
}

#[test]
fn write_fails_amid_storms_short_writes_and_delays() {
    on_runtimes(|| async {
        let f = Faults {
            write_fail_after: Some(50_000),
            max_write: Some(1000),
            storm: 2,
            delay: Some(Duration::from_millis(1)),
            ..Faults::default()
        };
        broken_by(f, Faults::default(), "client").await;
    });
}

// ---------------------------------------------------------------- a peer that goes quiet

/// A raw peer talks, then stops sending without closing (it still reads). With keep-alive
/// every 1 s and a 2 s timeout, the session ends with `KeepAliveTimeout`; the pending read
/// fails with `TimedOut`, the pending accept ends, and the peer, which got our NOPs meanwhile,
/// sees the connection closed. Returns how long after the peer's last frame the session
/// ended, on the runtime's clock.
async fn quiet_peer<T>(ours: T, theirs: T) -> Duration
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use raw_peer::{frame, FrameReader, NOP, PSH, SYN};
    let (cc, mut ca, cw) = MuxBuilder::client()
        .with_keep_alive_interval(std::num::NonZeroU64::new(1).unwrap())
        .with_keep_alive_timeout(std::num::NonZeroU64::new(2).unwrap())
        .with_connection(ours)
        .build();
    let cw = tokio::spawn(cw);
    let (rd, mut wr) = tokio::io::split(theirs);
    let mut frames = FrameReader::new(rd);
    let mut s = cc.connect().unwrap();
    s.write_all(b"hello").await.unwrap();
    let (h, _) = frames.expect().await;
    assert_eq!((h.cmd, h.id), (SYN, 3));
    let (h, p) = frames.expect().await;
    assert_eq!((h.cmd, h.id, &p[..]), (PSH, 3, &b"hello"[..]));
    let mut reply = frame(1, PSH, 3, b"hi");
    reply.extend(frame(1, NOP, 0, b""));
    wr.write_all(&reply).await.unwrap();
    let last_frame = tokio::time::Instant::now();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");
    let (read, read_parked) = common::when_pending(async move { s.read(&mut [0u8; 8]).await });
    let read = tokio::spawn(read);
    let (accept, accept_parked) = common::when_pending(async move { ca.accept().await.is_none() });
    let accept = tokio::spawn(accept);
    read_parked.parked().await;
    accept_parked.parked().await;
    let listener = tokio::spawn(async move {
        let mut nops = 0;
        while let Some((h, _)) = frames.next().await.unwrap() {
            assert_eq!((h.cmd, h.id), (NOP, 0));
            nops += 1;
        }
        nops
    });
    let result = cw.await.unwrap();
    let waited = last_frame.elapsed();
    assert!(
        matches!(result, Err(MuxError::KeepAliveTimeout)),
        "{result:?}"
    );
    let e = read.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(accept.await.unwrap());
    assert!(listener.await.unwrap() >= 1, "no NOP reached the peer");
    // The peer kept its side open throughout.
    drop(wr);
    waited
}

/// On the paused clock (current-thread, an in-memory pipe): the session ends between 2 s (the
/// timeout) and 3 s (interval + timeout) after the peer's last frame, exactly.
#[test]
fn keep_alive_detects_a_peer_that_stops_sending_but_stays_connected() {
    common::on_paused_clock(async {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let waited = quiet_peer(ours, theirs).await;
        eprintln!("a quiet peer dropped {waited:?} after its last frame (paused clock)");
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_secs(3),
            "dropped {waited:?} after the last frame (interval 1 s, timeout 2 s)"
        );
    });
}

/// On every runtime over TCP, on the real clock: the same events in the same order, and no
/// assertion on when.
#[test]
fn keep_alive_detects_a_peer_that_stops_sending_over_tcp_order() {
    on_runtimes(|| async {
        let (theirs, ours) = smux_test_support::tokio::tcp_pair().await;
        let waited = timeout(Duration::from_secs(60), quiet_peer(ours, theirs))
            .await
            .expect("hang");
        eprintln!(
            "{}: a quiet TCP peer dropped {waited:?} after its last frame",
            common::current_flavor().name()
        );
    });
}
