//! Model checks of the wake and lock paths: loom runs each scenario below under every
//! interleaving of the driver's two locks, its atomics and its wakes (up to a preemption
//! bound), against an in-memory transport and a runtime without timers. A lost wake shows as a
//! deadlock: every thread parked in `block_on` with nobody left to wake it.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p smux-driver --release --lib loom_tests`
//! (`.ci/run` does, with its own target directory). `LOOM_MAX_PREEMPTIONS` overrides the bound.

use std::future::poll_fn;
use std::io::{self, IoSlice};
// Outside the model: counters across executions, and the fake wire, which is never held across
// a loom operation.
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc as StdArc, Mutex as StdMutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use loom::future::block_on;
use loom::thread::{self, ThreadId};

use crate::stream::{ReadTarget, StreamHandle};
use crate::{
    Acceptor, Adapter, Bind, Connector, MuxBuilder, Runtime, TransportRead, TransportWrite, Worker,
    WriteMode,
};

const SYN: u8 = 0;
const FIN: u8 = 1;
const PSH: u8 = 2;

/// Both ends of the fake transport, as the test sees them.
#[derive(Debug, Default)]
struct Wire {
    /// What the peer sent and the driver has not read.
    input: Vec<u8>,
    /// What the driver wrote.
    out: Vec<u8>,
    /// `out.len()` at the last flush.
    flushed: usize,
    shut: bool,
    /// Writes made by the thread that built the session, not the worker's thread.
    writes_by_builder: usize,
    /// The peer echoes each PSH frame back, once it is whole on the wire.
    echo: bool,
    /// How much of `out` the echo has looked at.
    echoed: usize,
    /// The worker, waiting for input.
    reader: Option<Waker>,
    /// A test thread waiting for what the driver writes.
    watcher: Option<Waker>,
}

impl Wire {
    /// Queues the echo of each whole PSH frame not echoed yet; returns whether it did.
    fn echo(&mut self) -> bool {
        let mut any = false;
        while self.echo && self.out.len() >= self.echoed + 8 {
            let h = &self.out[self.echoed..self.echoed + 8];
            let (cmd, len) = (h[1], usize::from(u16::from_le_bytes([h[2], h[3]])));
            let sid = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            if self.out.len() < self.echoed + 8 + len {
                break;
            }
            if cmd == PSH {
                let payload = self.out[self.echoed + 8..self.echoed + 8 + len].to_vec();
                self.input.extend(encode(PSH, sid, &payload));
                any = true;
            }
            self.echoed += 8 + len;
        }
        any
    }
}

/// One half of the transport, split as a socket is: the write half takes at most
/// `per_write` bytes per write; the read half returns the peer's input, then stays pending
/// (the peer sends nothing more).
struct Pipe {
    wire: StdArc<StdMutex<Wire>>,
    per_write: usize,
    builder: ThreadId,
}

impl Pipe {
    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.wire.lock().expect("wire")
    }
}

impl TransportRead for Pipe {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        // Cloning a waker is a loom operation: never under the wire's (standard) lock, where a
        // preemption would leave another thread blocked on it outside the model.
        let waker = cx.waker().clone();
        let mut w = self.wire();
        if !w.input.is_empty() {
            let n = buf.len().min(w.input.len());
            buf[..n].copy_from_slice(&w.input[..n]);
            w.input.drain(..n);
            return Poll::Ready(Ok(n));
        }
        let old = w.reader.replace(waker);
        drop(w);
        drop(old);
        Poll::Pending
    }
}

impl TransportWrite for Pipe {
    fn poll_write_vectored(
        &mut self,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let by_builder = thread::current().id() == self.builder;
        let mut w = self.wire();
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.per_write - n);
            w.out.extend_from_slice(&b[..take]);
            n += take;
        }
        w.writes_by_builder += usize::from(by_builder);
        // The peer's reply arrives: the transport is readable.
        let reader = if w.echo() { w.reader.take() } else { None };
        let watcher = w.watcher.take();
        drop(w);
        if let Some(r) = reader {
            r.wake();
        }
        if let Some(w) = watcher {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn write_mode(&self) -> WriteMode {
        WriteMode::Vectored
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut w = self.wire();
        w.flushed = w.out.len();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire().shut = true;
        Poll::Ready(Ok(()))
    }
}

/// A runtime with a fixed clock, timers that never fire (no scenario sets one) and no budget.
struct Rt;

struct NeverSleep;

impl Runtime for Rt {
    type Sleep = NeverSleep;
    type Budget = ();
    type Proceed = ();

    fn now() -> Instant {
        // Fixed, so that every execution of a model takes the same paths.
        static START: OnceLock<Instant> = OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    fn sleep_until(_: Instant) -> NeverSleep {
        NeverSleep
    }

    fn reset(_: &mut NeverSleep, _: Instant) {}

    fn poll_sleep(_: &mut NeverSleep, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }

    fn poll_proceed(_: &(), _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    fn done(_: &(), _: (), _: bool) {}
}

struct Model;

impl Adapter for Model {
    type Read = Pipe;
    type Write = Pipe;
    type Runtime = Rt;
}

struct Fake;

impl Bind<Pipe> for Fake {
    type Adapter = Model;
    fn split(conn: Pipe) -> (Pipe, Pipe) {
        let read = Pipe {
            wire: StdArc::clone(&conn.wire),
            ..conn
        };
        (read, conn)
    }
}

type Parts = (
    Connector<Model>,
    Acceptor<Model>,
    Worker<Model>,
    StdArc<StdMutex<Wire>>,
);

/// A client session on a fresh `Pipe` holding `input` from the peer.
fn session(frame: usize, per_write: usize, input: &[u8]) -> Parts {
    session_with(frame, per_write, input, false)
}

/// The same, with a peer that echoes data frames if `echo`.
fn session_with(frame: usize, per_write: usize, input: &[u8], echo: bool) -> Parts {
    let wire = StdArc::new(StdMutex::new(Wire {
        input: input.to_vec(),
        echo,
        ..Wire::default()
    }));
    let pipe = Pipe {
        wire: StdArc::clone(&wire),
        per_write,
        builder: thread::current().id(),
    };
    let mut b = MuxBuilder::<_, Fake>::client();
    b.with_max_frame_size(frame);
    // The models' peer never closes its side and their clock never advances: a linger after
    // the end would wait for ever. The linger is not what they check.
    b.with_close_linger(std::time::Duration::ZERO);
    let (connector, acceptor, worker) = b.with_connection(pipe).build();
    (connector, acceptor, worker, wire)
}

/// Runs `f` under every interleaving up to `bound` preemptions; prints how many there were.
fn explore(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        b.max_branches = 100_000;
    }
    let runs = StdArc::new(AtomicUsize::new(0));
    let counted = StdArc::clone(&runs);
    let start = Instant::now();
    let progress = std::env::var_os("LOOM_PROGRESS").is_some();
    let label = name.to_string();
    b.check(move || {
        let n = counted.fetch_add(1, Relaxed) + 1;
        if progress && n % 1000 == 0 {
            eprintln!("{label}: {n} executions so far");
        }
        f();
    });
    eprintln!(
        "{name}: {} executions, preemption bound {}, {:.1} s",
        runs.load(Relaxed),
        b.preemption_bound.unwrap_or(0),
        start.elapsed().as_secs_f64()
    );
}

/// Writes all of `buf` to `s`.
fn write_all(s: &StreamHandle<Model>, buf: &[u8]) {
    let mut at = 0;
    while at < buf.len() {
        at += block_on(poll_fn(|cx| s.poll_write(cx, &buf[at..]))).expect("write");
    }
}

struct ReadBuf(Vec<u8>, usize);

impl ReadTarget for ReadBuf {
    fn remaining(&self) -> usize {
        self.1 - self.0.len()
    }
    fn put(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
    }
}

/// A frame as the peer sends it.
fn encode(cmd: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("small");
    let mut f = vec![1, cmd];
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&sid.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// The frames in `bytes`, which must be whole version-1 frames: (cmd, stream id, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a torn header at the end: {rest:?}");
        let (ver, cmd) = (rest[0], rest[1]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        let sid = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        assert!(ver == 1 && cmd <= 4, "not a header: {:?}", &rest[..8]);
        assert!(rest.len() >= 8 + len, "a torn frame: {rest:?}");
        out.push((cmd, sid, rest[8..8 + len].to_vec()));
        rest = &rest[8 + len..];
    }
    out
}

/// Checks that stream `sid` went out as SYN, its data `data` in order, then FIN.
fn assert_stream(all: &[(u8, u32, Vec<u8>)], sid: u32, data: &[u8]) {
    let mine: Vec<_> = all.iter().filter(|f| f.1 == sid).collect();
    assert!(mine.len() >= 2, "stream {sid}: {mine:?}");
    assert_eq!(mine[0].0, SYN, "stream {sid} begins with SYN: {mine:?}");
    assert_eq!(mine[mine.len() - 1].0, FIN, "stream {sid} ends with FIN");
    let middle = &mine[1..mine.len() - 1];
    assert!(middle.iter().all(|f| f.0 == PSH), "stream {sid}: {mine:?}");
    let sent: Vec<u8> = middle.iter().flat_map(|f| f.2.iter().copied()).collect();
    assert_eq!(sent, data, "stream {sid}'s data, once and in order");
}

/// (a) A stream writes a small message and flushes while the worker runs on another thread:
/// the flush completes (its wake is not lost, whoever writes), and the bytes reach the
/// transport once, in order, flushed. It found the wake that `flushed_up_to` skipped when
/// `flush_wanted` was not set yet (see there).
#[test]
fn a_flush_completes_and_its_bytes_go_out_once_in_order() {
    static WAITED: AtomicUsize = AtomicUsize::new(0);
    explore("(a) flush", 4, || {
        let (connector, acceptor, worker, wire) = session(64, usize::MAX, &[]);
        drop(acceptor);
        let stream = connector.connect().expect("connect").inner;
        drop(connector);
        let worker = thread::spawn(move || block_on(worker));

        write_all(&stream, b"hello");
        let mut waited = false;
        block_on(poll_fn(|cx| {
            let r = stream.poll_flush(cx);
            waited |= r.is_pending();
            r
        }))
        .expect("flush");
        if waited {
            WAITED.fetch_add(1, Relaxed);
        }
        {
            let w = wire.lock().expect("wire");
            let flushed = frames(&w.out[..w.flushed]);
            assert_eq!(
                flushed,
                [(SYN, 3, vec![]), (PSH, 3, b"hello".to_vec())],
                "flushed once the flush is done"
            );
        }
        drop(stream);

        worker.join().expect("worker thread").expect("worker");
        let w = wire.lock().expect("wire");
        assert_eq!(
            frames(&w.out),
            [
                (SYN, 3, vec![]),
                (PSH, 3, b"hello".to_vec()),
                (FIN, 3, vec![])
            ]
        );
        assert!(w.shut);
    });
    assert!(
        WAITED.load(Relaxed) > 0,
        "no execution had the flush wait for another writer"
    );
}

/// (b) A stream writes two full frames, each straight to the transport when nothing is queued
/// ahead of it (the transport takes 40 bytes a write, so the rest of a frame may be queued),
/// while another stream queues data on a second thread and the worker writes on a third: the
/// wire holds whole frames, never interleaved, each stream's data once and in order.
#[test]
fn a_direct_write_and_queued_frames_do_not_interleave() {
    static DIRECT: AtomicUsize = AtomicUsize::new(0);
    explore("(b) direct write", 3, || {
        let (connector, acceptor, worker, wire) = session(64, 40, &[]);
        drop(acceptor);
        let s3 = connector.connect().expect("connect").inner;
        let s5 = connector.connect().expect("connect").inner;
        drop(connector);
        let worker = thread::spawn(move || block_on(worker));
        let other = thread::spawn(move || {
            write_all(&s5, b"xyz");
            drop(s5);
        });

        // Two frames: the second may find the rest of the first still queued.
        let big: Vec<u8> = [[b'a'; 64], [b'b'; 64]].concat();
        write_all(&s3, &big[..64]);
        write_all(&s3, &big[64..]);
        drop(s3);

        other.join().expect("other writer");
        worker.join().expect("worker thread").expect("worker");
        let w = wire.lock().expect("wire");
        if w.writes_by_builder > 0 {
            DIRECT.fetch_add(1, Relaxed);
        }
        let all = frames(&w.out);
        assert!(all.iter().all(|f| f.1 == 3 || f.1 == 5), "{all:?}");
        assert_stream(&all, 3, &big);
        assert_stream(&all, 5, b"xyz");
        assert!(w.shut);
    });
    assert!(
        DIRECT.load(Relaxed) > 0,
        "no execution wrote the frame straight to the transport"
    );
}

/// (c) A reader waits on a stream while the worker feeds it the peer's data: it is woken and
/// reads the data.
#[test]
fn a_waiting_reader_is_woken_with_the_data() {
    static WAITED: AtomicUsize = AtomicUsize::new(0);
    explore("(c) reader", 4, || {
        let input = encode(PSH, 3, b"hi");
        let (connector, acceptor, worker, wire) = session(64, usize::MAX, &input);
        drop(acceptor);
        let stream = connector.connect().expect("connect").inner;
        drop(connector);
        let worker = thread::spawn(move || block_on(worker));

        let mut buf = ReadBuf(Vec::new(), 16);
        let mut waited = false;
        block_on(poll_fn(|cx| match stream.poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                assert!(!buf.0.is_empty(), "the end of the stream before its data");
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) => panic!("read: {e}"),
            Poll::Pending => {
                waited = true;
                Poll::Pending
            }
        }));
        if waited {
            WAITED.fetch_add(1, Relaxed);
        }
        assert_eq!(buf.0, b"hi");
        drop(stream);

        worker.join().expect("worker thread").expect("worker");
        let w = wire.lock().expect("wire");
        assert_eq!(frames(&w.out), [(SYN, 3, vec![]), (FIN, 3, vec![])]);
    });
    assert!(WAITED.load(Relaxed) > 0, "no execution had the reader wait");
}

/// (d) `close()` on one thread while a stream writes and flushes on another and the worker
/// runs on a third: all three finish; what the write took reaches the wire, then FIN, then the
/// transport is shut down.
#[test]
fn close_while_a_stream_writes_and_flushes_finishes() {
    explore("(d) close", 3, || {
        let (connector, acceptor, worker, wire) = session(64, usize::MAX, &[]);
        drop(acceptor);
        let stream = connector.connect().expect("connect").inner;
        let writer = thread::spawn(move || {
            let wrote = block_on(poll_fn(|cx| stream.poll_write(cx, b"hello")));
            // Either may fail once the session is closed; neither may hang.
            let _ = block_on(poll_fn(|cx| stream.poll_flush(cx)));
            wrote.ok()
        });
        let worker = thread::spawn(move || block_on(worker));

        block_on(connector.close()).expect("close");
        worker.join().expect("worker thread").expect("worker");
        let wrote = writer.join().expect("writer thread");
        drop(connector);

        let w = wire.lock().expect("wire");
        let all = frames(&w.out);
        let data: &[u8] = match wrote {
            Some(n) => &b"hello"[..n],
            None => b"",
        };
        assert_stream(&all, 3, data);
        assert!(w.shut);
    });
}

/// (e) A stream writes without flushing and waits for the peer's echo while the worker runs
/// on another thread: the write wakes the worker, the worker writes, the transport becomes
/// readable and wakes it, it reads the echo and wakes the reader.
#[test]
fn a_write_reaches_the_peer_and_its_echo_the_reader() {
    explore("(e) echo", 4, || {
        let (connector, acceptor, worker, wire) = session_with(64, usize::MAX, &[], true);
        drop(acceptor);
        let stream = connector.connect().expect("connect").inner;
        drop(connector);
        let worker = thread::spawn(move || block_on(worker));

        write_all(&stream, b"ping");
        let mut buf = ReadBuf(Vec::new(), 4);
        while buf.0.len() < 4 {
            let before = buf.0.len();
            block_on(poll_fn(|cx| stream.poll_read(cx, &mut buf))).expect("read");
            assert!(
                buf.0.len() > before,
                "the end of the stream before the echo"
            );
        }
        assert_eq!(buf.0, b"ping");
        drop(stream);

        worker.join().expect("worker thread").expect("worker");
        let w = wire.lock().expect("wire");
        assert_stream(&frames(&w.out), 3, b"ping");
    });
}

/// `close()` without the worker, while a stream flushes: the flush may hold the transport
/// when `close()` looks, and then wait for its FIN, which `close()` queued. A task that parks
/// while the session closes wakes the closers, and a closer that finds the transport free
/// after registering tries again: both finish. (Before, loom found the deadlock.)
#[test]
fn close_without_the_worker_while_a_stream_flushes() {
    explore("close without the worker", 2, || {
        let (connector, acceptor, worker, wire) = session(64, usize::MAX, &[]);
        drop(acceptor);
        let stream = connector.connect().expect("connect").inner;
        let writer = thread::spawn(move || {
            let wrote = block_on(poll_fn(|cx| stream.poll_write(cx, b"hello")));
            let _ = block_on(poll_fn(|cx| stream.poll_flush(cx)));
            wrote.ok()
        });

        block_on(connector.close()).expect("close");
        let wrote = writer.join().expect("writer thread");
        drop(connector);
        drop(worker);

        let w = wire.lock().expect("wire");
        let data: &[u8] = match wrote {
            Some(n) => &b"hello"[..n],
            None => b"",
        };
        assert_stream(&frames(&w.out), 3, data);
        assert!(w.shut);
    });
}

/// (g) The worker finds the write side held by a flushing stream, with output of its
/// own to write (the FIN refusing a peer's SYN, which arrives meanwhile): it leaves the writing
/// to the holder, which wakes it as it lets go, and the FIN goes out with nobody else acting.
/// Without that wake (`Unlock::handed_off`), an execution deadlocks: the worker sleeps with
/// its FIN queued while the test waits for it.
#[test]
fn a_write_left_to_the_holder_of_the_write_side_goes_out() {
    explore("(g) hand-off", 3, || {
        let (connector, acceptor, worker, wire) = session(64, 1024, &encode(SYN, 2, &[]));
        drop(acceptor);
        let s3 = connector.connect().expect("connect").inner;
        let worker = thread::spawn(move || block_on(worker));
        write_all(&s3, &[b'a'; 64]);
        // The flush writes what is queued from this thread, holding the write side.
        block_on(poll_fn(|cx| s3.poll_flush(cx))).expect("flush");
        // Wait for the refusal of stream 2 on the wire, written by whoever holds the write side.
        block_on(poll_fn(|cx| {
            let waker = cx.waker().clone();
            let mut w = wire.lock().expect("wire");
            if frames(&w.out).iter().any(|f| f.0 == FIN && f.1 == 2) {
                return Poll::Ready(());
            }
            let old = w.watcher.replace(waker);
            drop(w);
            drop(old);
            Poll::Pending
        }));
        drop(s3);
        drop(connector);
        worker.join().expect("worker thread").expect("worker");
        let w = wire.lock().expect("wire");
        assert_stream(&frames(&w.out), 3, &[b'a'; 64]);
    });
}
