//! The `worker` fuzz target: `smux-futures`' worker and handles over an in-memory transport
//! whose every answer comes from the fuzz input (peer bytes, raw or as frames, in any chunking;
//! `Pending`, read errors, end of input; partial writes, `Pending`, write errors, a flush that
//! waits), polled by hand with counting wakers: no runtime, no threads, no clock (keep-alive
//! and the idle timeout stay off, as `async-io`'s timer needs a reactor; the `session` and
//! `pair` targets cover the timers).
//!
//! Plain Rust over the public API, so that `smux-futures/tests/fuzz_corpus_worker.rs` replays
//! the corpus on stable.
//!
//! Checked:
//! - no panic, whatever the peer or the transport does;
//! - what the worker writes is well-formed smux of our version: known commands, lengths they
//!   may have, payloads within our frame size, UPD only in version 2, ids of our parity opened
//!   in order, no data after our FIN; each stream's bytes on the wire are exactly what its
//!   handle wrote, in order;
//! - data read from a stream is what the peer sent on that stream (when the peer spoke only
//!   well-formed frames), never more;
//! - the transport is never written after it was shut down; when the worker ends the transport
//!   is dropped, and an `Ok` end shut it down first;
//! - once the input runs out and the transport reports end of input (and accepts writes), the
//!   worker completes within a bounded number of polls, polling only tasks that were woken,
//!   and so does every pending read, write, flush, shutdown, accept and close; after the end,
//!   every new operation completes at once;
//! - memory: what the thread holds stays within a bound derived from the configured limits,
//!   and everything is freed once the handles and the worker are dropped.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use arbitrary::{Arbitrary, Unstructured};
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use smux_futures::{
    MuxAcceptor, MuxBuilder, MuxConnector, MuxResult, MuxStream, MuxWorker, Version,
};
use smux_test_support::alloc::{thread_live as live, CountingAlloc};

// ------------------------------------------------------------------------- memory

// The bytes this thread holds (the fuzz loop and each replaying test run on one thread; other
// threads' allocations do not disturb the count).
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

// ------------------------------------------------------------------------- input

/// Operations per input, at most.
const MAX_OPS: usize = 2048;
/// Stream handles alive at once, at most (beyond it `Connect` and `Accept` wait).
const MAX_HANDLES: usize = 16;
/// Peer bytes the transport holds for the worker, at most (beyond it peer operations are
/// skipped, as a peer blocked by TCP would be).
const MAX_WIRE_INPUT: usize = 256 * 1024;
/// Polls of the final phase before the worker and every pending operation must be done.
const MAX_FINAL_POLLS: usize = 100_000;

#[derive(Arbitrary, Debug)]
struct Setup {
    server: bool,
    v2: bool,
    frame: u16,
    tx_frames: u8,
    rx_frames: u8,
    streams: u8,
    backlog: u8,
    window: u16,
    read_max: u16,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ErrKind {
    Interrupted,
    WouldBlock,
    ConnectionReset,
    BrokenPipe,
    NotConnected,
    Other,
}

impl ErrKind {
    fn kind(self) -> io::ErrorKind {
        match self {
            ErrKind::Interrupted => io::ErrorKind::Interrupted,
            ErrKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrKind::ConnectionReset => io::ErrorKind::ConnectionReset,
            ErrKind::BrokenPipe => io::ErrorKind::BrokenPipe,
            ErrKind::NotConnected => io::ErrorKind::NotConnected,
            ErrKind::Other => io::ErrorKind::Other,
        }
    }
}

/// What the peer sends.
#[derive(Arbitrary, Debug)]
enum PeerFrame {
    Syn(u8),
    Fin(u8),
    Psh {
        id: u8,
        len: u16,
    },
    Nop,
    Upd {
        id: u8,
        consumed: u32,
        window: u32,
    },
    /// Any header, then `len` bytes: malformed more often than not.
    Header {
        version: u8,
        cmd: u8,
        len: u8,
        id: u32,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Peer(PeerFrame),
    /// Bytes per transport read, from now on.
    ReadMax(u16),
    /// The next transport read fails.
    ReadError(ErrKind),
    /// The transport reports end of input once what it holds is read.
    Eof,
    /// Transport writes take at most this many bytes (0: they return `Pending`).
    WriteMax(u16),
    /// The next transport write fails (`None`: returns `Ok(0)`).
    WriteError(Option<ErrKind>),
    FlushPending(bool),
    Connect,
    Accept,
    Read {
        h: u8,
        max: u16,
    },
    Write {
        h: u8,
        len: u16,
    },
    Flush(u8),
    Shutdown(u8),
    DropStream(u8),
    DropConnector,
    DropAcceptor,
    Close,
    DropWorker,
    /// Polls every task that was woken.
    Run,
    /// Polls the worker whether or not it was woken (a spurious poll).
    PollWorker,
}

// ------------------------------------------------------------------------- wakers

/// A task's waker: counts wake-ups.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    wakes: AtomicUsize,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        self.wakes.fetch_add(1, Ordering::Relaxed);
    }
}

/// A task: its flag and waker.
struct Task {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Task {
    fn new() -> Task {
        let flag = Arc::new(Flag::default());
        Task {
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }

    /// Takes the wake-up, if any.
    fn take(&self) -> bool {
        self.flag.woken.swap(false, Ordering::Relaxed)
    }

    fn cx(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

// ------------------------------------------------------------------------- transport

/// The byte at `offset` of what stream `id` carries from `sender` (0: us, 1: the peer).
fn pattern(id: u32, sender: u8, offset: u64) -> u8 {
    let x = offset ^ (u64::from(id) << 40) ^ (u64::from(sender) << 63);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// Checks the frames we write, as they come.
#[derive(Debug)]
struct FrameCheck {
    version: u8,
    client: bool,
    max_frame: usize,
    header: [u8; 8],
    filled: usize,
    /// The PSH being received: stream, bytes left.
    body: Option<(u32, usize)>,
    upd_left: usize,
    last_syn: u32,
    /// Our streams whose FIN went.
    fins: std::collections::BTreeSet<u32>,
    /// Per id, the bytes each stream on it wrote (set by the harness), oldest first: a peer id
    /// is opened again once we released it, and a stream is released only after its data and
    /// FIN are out, so the data on the wire is what they wrote, one after the other.
    written: BTreeMap<u32, Vec<u64>>,
    /// Per id, where the wire is: which stream, and how far into what it wrote.
    wire_pos: BTreeMap<u32, (usize, u64)>,
    /// Ids the peer sent SYN for.
    peer_syns: std::collections::BTreeSet<u32>,
    /// The peer sent bytes that are not well-formed frames: it may have sent anything.
    lenient: bool,
}

impl FrameCheck {
    fn ours(&self, id: u32) -> bool {
        (id % 2 == 1) == self.client
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Some((id, left)) = self.body {
                let n = left.min(data.len());
                let written = self.written.get(&id).map(Vec::as_slice).unwrap_or(&[]);
                let (k, off) = self.wire_pos.entry(id).or_default();
                for b in &data[..n] {
                    while *k + 1 < written.len() && *off == written[*k] {
                        *k += 1;
                        *off = 0;
                    }
                    assert!(
                        written.get(*k).is_some_and(|w| *off < *w),
                        "stream {id}: more data on the wire than written"
                    );
                    assert_eq!(
                        *b,
                        pattern(id, 0, *off),
                        "stream {id}: byte {off} on the wire"
                    );
                    *off += 1;
                }
                data = &data[n..];
                self.body = (left > n).then_some((id, left - n));
                continue;
            }
            if self.upd_left > 0 {
                let n = self.upd_left.min(data.len());
                self.upd_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (8 - self.filled).min(data.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == 8 {
                self.filled = 0;
                self.header();
            }
        }
    }

    fn header(&mut self) {
        let h = self.header;
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        let id = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        assert_eq!(h[0], self.version, "frame of the wrong version");
        match h[1] {
            // SYN: ours, in order, no payload.
            0 => {
                assert_eq!(len, 0, "SYN with payload");
                assert!(self.ours(id), "SYN for a peer id");
                assert_eq!(id, self.last_syn + 2, "SYN ids in order");
                self.last_syn = id;
                // A FIN refusing a peer's SYN for this id may have gone before.
                self.fins.remove(&id);
            }
            // FIN: no payload; on our streams, once.
            1 => {
                assert_eq!(len, 0, "FIN with payload");
                assert_ne!(id, 0, "FIN on stream 0");
                if self.ours(id) {
                    // Beyond our last SYN: refusing a peer's SYN for an id of ours. Before
                    // it: our FIN, once, unless the peer sent a SYN for the id, which gets a
                    // FIN once the stream is gone.
                    let peer_syn = self.lenient || self.peer_syns.contains(&id);
                    assert!(id <= self.last_syn || peer_syn, "FIN before SYN");
                    let first = self.fins.insert(id);
                    assert!(first || peer_syn, "second FIN on {id}");
                }
            }
            2 => {
                assert!(len > 0, "empty PSH");
                assert!(len <= self.max_frame, "PSH of {len} over our frame size");
                assert_ne!(id, 0, "PSH on stream 0");
                if self.ours(id) {
                    assert!(id <= self.last_syn, "PSH before SYN");
                }
                assert!(
                    !(self.ours(id) && self.fins.contains(&id)),
                    "PSH on {id} after our FIN"
                );
                self.body = Some((id, len));
            }
            3 => {
                assert_eq!(len, 0, "NOP with payload");
                assert_eq!(id, 0, "NOP on a stream");
            }
            4 => {
                assert_eq!(self.version, 2, "UPD in version 1");
                assert_eq!(len, 8, "UPD of {len} bytes");
                self.upd_left = 8;
            }
            c => panic!("unknown command {c} written"),
        }
    }
}

/// The transport's state, shared by the harness and the transport given to the worker.
struct Wire {
    /// Peer bytes not yet read: chunks, and how far the first one has been read.
    input: VecDeque<Vec<u8>>,
    input_pos: usize,
    input_bytes: usize,
    eof: bool,
    read_max: usize,
    read_error: Option<io::ErrorKind>,
    read_waker: Option<Waker>,
    write_max: usize,
    write_error: Option<Option<io::ErrorKind>>,
    flush_pending: bool,
    write_waker: Option<Waker>,
    shut_down: bool,
    dropped: bool,
    check: FrameCheck,
}

impl Wire {
    fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

struct Conn(Arc<Mutex<Wire>>);

impl Conn {
    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.wire().dropped = true;
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = self.wire();
        if let Some(kind) = w.read_error.take() {
            return Poll::Ready(Err(kind.into()));
        }
        let max = w.read_max.min(buf.len());
        let pos = w.input_pos;
        if let Some(front) = w.input.front() {
            let n = max.min(front.len() - pos);
            buf[..n].copy_from_slice(&front[pos..pos + n]);
            if pos + n == front.len() {
                w.input.pop_front();
                w.input_pos = 0;
            } else {
                w.input_pos += n;
            }
            w.input_bytes -= n;
            return Poll::Ready(Ok(n));
        }
        if w.eof {
            return Poll::Ready(Ok(0));
        }
        w.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = self.wire();
        assert!(!w.shut_down, "written after shutdown");
        if let Some(e) = w.write_error.take() {
            return Poll::Ready(match e {
                Some(kind) => Err(kind.into()),
                None => Ok(0),
            });
        }
        if w.write_max == 0 {
            w.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = w.write_max.min(buf.len());
        w.check.feed(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut w = self.wire();
        if w.flush_pending {
            w.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut w = self.wire();
        w.shut_down = true;
        Poll::Ready(Ok(()))
    }
}

// ------------------------------------------------------------------------- harness

/// Checks what one stream reads against the peer's PSH frames on its id: each payload is
/// `pattern(id, 1, 0..len)`, and the session passes whole frames or drops whole frames (before
/// the stream exists, after its FIN), so what is read is a run of such payloads. The check
/// follows every position in a frame that the bytes so far allow.
#[derive(Debug, Default)]
struct ReadCheck {
    /// Offsets into the current frame consistent with what was read.
    states: Vec<usize>,
}

impl ReadCheck {
    fn feed(&mut self, id: u32, lens: &std::collections::BTreeSet<usize>, data: &[u8]) {
        if self.states.is_empty() {
            self.states.push(0);
        }
        let longest = lens.last().copied().unwrap_or(0);
        for (i, &b) in data.iter().enumerate() {
            let mut next = Vec::new();
            for &j in &self.states {
                if j < longest && b == pattern(id, 1, j as u64) {
                    next.push(j + 1);
                }
                if j > 0 && lens.contains(&j) && b == pattern(id, 1, 0) {
                    next.push(1);
                }
            }
            next.sort_unstable();
            next.dedup();
            assert!(
                !next.is_empty(),
                "stream {id}: byte {i} of a read ({b:#04x}) is not in what the peer sent"
            );
            self.states = next;
        }
    }
}

/// One stream handle and what is pending on it.
struct Handle {
    stream: MuxStream<Conn>,
    id: u32,
    /// Which of the streams on this id it is (see `FrameCheck::written`).
    instance: usize,
    /// Bytes this handle's writes took.
    written: u64,
    /// Bytes read from it.
    received: u64,
    check: ReadCheck,
    eof: bool,
    read: Option<(Task, usize)>,
    /// In the final phase: read again after each read, to the end.
    drain: bool,
    /// The write-side operation waiting (a write, flush or shutdown): one at a time, as
    /// `AsyncWrite` takes `&mut self`; starting another drops it, as dropping its future would.
    wop: Option<(Task, WriteOp)>,
}

/// A write-side operation on a stream.
#[derive(Debug)]
enum WriteOp {
    Write(Vec<u8>),
    Flush,
    Shutdown,
}

impl Handle {
    fn pending(&self) -> bool {
        self.read.is_some() || self.wop.is_some()
    }
}

/// `MuxConnector::close()`, on a clone of the connector.
type CloseFuture = Pin<Box<dyn Future<Output = MuxResult<()>>>>;

struct Harness {
    wire: Arc<Mutex<Wire>>,
    version: Version,
    worker: Option<(Task, MuxWorker<Conn>)>,
    worker_result: Option<MuxResult<()>>,
    connector: Option<MuxConnector<Conn>>,
    acceptor: Option<MuxAcceptor<Conn>>,
    accept: Option<Task>,
    /// In the final phase: accept until `None`, and drain what is accepted.
    draining: bool,
    close: Option<(Task, CloseFuture)>,
    handles: Vec<Option<Handle>>,
    /// Bytes the peer sent per stream id in PSH frames, and the frame lengths.
    peer_sent: BTreeMap<u32, u64>,
    peer_lens: BTreeMap<u32, std::collections::BTreeSet<usize>>,
    /// Only well-formed frames were sent: reads can be checked against them.
    well_formed: bool,
    /// Live bytes may not exceed this.
    memory_bound: isize,
}

impl Harness {
    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.wire.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker has completed or was dropped: nothing may wait any more.
    fn ended(&self) -> bool {
        self.worker_result.is_some() || self.worker.is_none()
    }

    fn index(&self, h: u8) -> Option<usize> {
        let n = self.handles.len();
        let i = usize::from(h) % n.max(1);
        (n > 0 && self.handles[i].is_some()).then_some(i)
    }

    fn hd(&mut self, i: usize) -> &mut Handle {
        self.handles[i].as_mut().expect("a live handle")
    }

    fn live_handles(&self) -> usize {
        self.handles.iter().flatten().count()
    }

    fn add_handle(&mut self, stream: MuxStream<Conn>) -> usize {
        let id = stream.get_stream_id();
        let instance = {
            let mut w = self.wire();
            let v = w.check.written.entry(id).or_default();
            v.push(0);
            v.len() - 1
        };
        self.handles.push(Some(Handle {
            stream,
            id,
            instance,
            written: 0,
            received: 0,
            check: ReadCheck::default(),
            eof: false,
            read: None,
            drain: self.draining,
            wop: None,
        }));
        let i = self.handles.len() - 1;
        if self.draining {
            self.start_read(i, 4096);
        }
        i
    }

    fn peer(&mut self, f: PeerFrame) {
        let v = self.version as u8;
        let header = |cmd: u8, len: usize, id: u32| {
            let mut h = vec![v, cmd];
            h.extend_from_slice(&(len as u16).to_le_bytes());
            h.extend_from_slice(&id.to_le_bytes());
            h
        };
        // The frame, and for a PSH its stream and length.
        let (frame, psh) = match f {
            PeerFrame::Syn(id) => (header(0, 0, u32::from(id)), None),
            PeerFrame::Fin(id) => (header(1, 0, u32::from(id)), None),
            PeerFrame::Psh { id, len } => {
                let id = u32::from(id);
                let len = usize::from(len);
                let mut frame = header(2, len, id);
                frame.extend((0..len as u64).map(|i| pattern(id, 1, i)));
                (frame, (len > 0).then_some((id, len)))
            }
            PeerFrame::Nop => (header(3, 0, 0), None),
            PeerFrame::Upd {
                id,
                consumed,
                window,
            } => {
                let mut frame = header(4, 8, u32::from(id));
                frame.extend_from_slice(&consumed.to_le_bytes());
                frame.extend_from_slice(&window.to_le_bytes());
                (frame, None)
            }
            PeerFrame::Header {
                version,
                cmd,
                len,
                id,
            } => {
                self.well_formed = false;
                let mut frame = vec![version, cmd, len, 0];
                frame.extend_from_slice(&id.to_le_bytes());
                frame.resize(8 + usize::from(len), 0x5a);
                (frame, None)
            }
            PeerFrame::Raw(bytes) => {
                self.well_formed = false;
                (bytes, None)
            }
        };
        let mut w = self.wire.lock().unwrap_or_else(|e| e.into_inner());
        if frame.is_empty() || w.eof || w.input_bytes + frame.len() > MAX_WIRE_INPUT {
            return;
        }
        if frame.len() >= 8 && frame[1] == 0 {
            w.check
                .peer_syns
                .insert(u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]));
        }
        w.check.lenient |= !self.well_formed;
        w.input_bytes += frame.len();
        w.input.push_back(frame);
        w.wake_reader();
        if let Some((id, len)) = psh {
            *self.peer_sent.entry(id).or_default() += len as u64;
            self.peer_lens.entry(id).or_default().insert(len);
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Peer(f) => self.peer(f),
            Op::ReadMax(n) => self.wire().read_max = usize::from(n).max(1),
            Op::ReadError(k) => {
                let mut w = self.wire();
                w.read_error = Some(k.kind());
                w.wake_reader();
            }
            Op::Eof => {
                let mut w = self.wire();
                w.eof = true;
                w.wake_reader();
            }
            Op::WriteMax(n) => {
                let mut w = self.wire();
                w.write_max = usize::from(n);
                if n > 0 {
                    w.wake_writer();
                }
            }
            Op::WriteError(k) => {
                let mut w = self.wire();
                w.write_error = Some(k.map(ErrKind::kind));
                w.wake_writer();
            }
            Op::FlushPending(on) => {
                let mut w = self.wire();
                w.flush_pending = on;
                if !on {
                    w.wake_writer();
                }
            }
            Op::Connect => self.connect(),
            Op::Accept => {
                if self.accept.is_none() && self.acceptor.is_some() {
                    self.accept = Some(Task::new());
                    self.poll_accept();
                }
            }
            Op::Read { h, max } => {
                if let Some(i) = self.index(h) {
                    if self.hd(i).read.is_none() {
                        self.start_read(i, usize::from(max).max(1));
                    }
                }
            }
            Op::Write { h, len } => {
                if let Some(i) = self.index(h) {
                    let hd = self.hd(i);
                    let len = u64::from(len) % 8192;
                    let data = (hd.written..hd.written + len)
                        .map(|o| pattern(hd.id, 0, o))
                        .collect();
                    self.start_write_op(i, WriteOp::Write(data));
                }
            }
            Op::Flush(h) => {
                if let Some(i) = self.index(h) {
                    self.start_write_op(i, WriteOp::Flush);
                }
            }
            Op::Shutdown(h) => {
                if let Some(i) = self.index(h) {
                    self.start_write_op(i, WriteOp::Shutdown);
                }
            }
            Op::DropStream(h) => {
                if let Some(i) = self.index(h) {
                    self.handles[i] = None;
                }
            }
            Op::DropConnector => self.connector = None,
            Op::DropAcceptor => {
                self.acceptor = None;
                self.accept = None;
            }
            Op::Close => self.start_close(),
            Op::DropWorker => {
                if self.worker_result.is_none() {
                    self.worker = None;
                }
            }
            Op::Run => {
                self.run_woken();
            }
            Op::PollWorker => self.poll_worker(),
        }
        self.check_memory();
    }

    fn check_memory(&self) {
        let held = live();
        assert!(
            held <= self.memory_bound,
            "holding {held} bytes, over the bound of {}",
            self.memory_bound
        );
    }

    fn connect(&mut self) {
        if self.live_handles() >= MAX_HANDLES {
            return;
        }
        let Some(c) = &self.connector else {
            return;
        };
        if let Ok(s) = c.connect() {
            assert!(!self.ended(), "connect after the end");
            self.add_handle(s);
        }
    }

    fn start_close(&mut self) {
        if self.close.is_some() {
            return;
        }
        if let Some(c) = &self.connector {
            let c = c.clone();
            self.close = Some((Task::new(), Box::pin(async move { c.close().await })));
            self.poll_close();
        }
    }

    fn start_read(&mut self, i: usize, max: usize) {
        self.hd(i).read = Some((Task::new(), max));
        self.poll_read(i);
    }

    fn poll_worker(&mut self) {
        if self.worker_result.is_some() {
            return;
        }
        let Some((task, worker)) = &mut self.worker else {
            return;
        };
        if let Poll::Ready(r) = Pin::new(worker).poll(&mut task.cx()) {
            let w = self.wire();
            assert!(w.dropped, "the worker ended with the transport still open");
            if r.is_ok() {
                assert!(w.shut_down, "an Ok end without shutting the transport down");
            }
            drop(w);
            self.worker_result = Some(r);
        }
    }

    fn poll_accept(&mut self) {
        let ended = self.ended();
        if !self.draining && self.live_handles() >= MAX_HANDLES {
            // Waits for room here, as an application would; the final phase makes room.
            return;
        }
        let (Some(task), Some(acceptor)) = (&self.accept, &mut self.acceptor) else {
            return;
        };
        match Pin::new(acceptor).poll_next(&mut task.cx()) {
            Poll::Ready(Some(s)) => {
                self.accept = None;
                self.add_handle(s);
                if self.draining {
                    self.accept = Some(Task::new());
                    self.poll_accept();
                }
            }
            Poll::Ready(None) => self.accept = None,
            Poll::Pending => assert!(!ended, "accept waits after the end"),
        }
    }

    fn poll_read(&mut self, i: usize) {
        let ended = self.ended();
        let well_formed = self.well_formed;
        let id = self.hd(i).id;
        let peer_sent = self.peer_sent.get(&id).copied().unwrap_or(0);
        let lens = self.peer_lens.remove(&id).unwrap_or_default();
        let hd = self.handles[i].as_mut().expect("a live handle");
        while let Some((task, max)) = &hd.read {
            let max = *max;
            let mut buf = vec![0u8; max];
            match Pin::new(&mut hd.stream).poll_read(&mut task.cx(), &mut buf) {
                Poll::Pending => {
                    assert!(!ended, "read waits after the end");
                    break;
                }
                Poll::Ready(Ok(0)) => {
                    hd.eof = true;
                    hd.read = None;
                }
                Poll::Ready(Ok(n)) => {
                    assert!(n <= max, "read {n} into {max}");
                    assert!(!hd.eof, "stream {id}: data after the end of stream");
                    hd.received += n as u64;
                    if well_formed {
                        assert!(
                            hd.received <= peer_sent,
                            "stream {id}: read more than the peer sent"
                        );
                        hd.check.feed(id, &lens, &buf[..n]);
                    }
                    hd.read = hd.drain.then(|| (Task::new(), max));
                }
                Poll::Ready(Err(_)) => hd.read = None,
            }
        }
        self.peer_lens.insert(id, lens);
    }

    fn start_write_op(&mut self, i: usize, op: WriteOp) {
        self.hd(i).wop = Some((Task::new(), op));
        self.poll_write_op(i);
    }

    fn poll_write_op(&mut self, i: usize) {
        let ended = self.ended();
        let wire = Arc::clone(&self.wire);
        let hd = self.hd(i);
        let Some((task, op)) = &hd.wop else {
            return;
        };
        let stream = Pin::new(&mut hd.stream);
        let mut cx = task.cx();
        // A write may reach the wire before it returns: the check allows all of it meanwhile,
        // then what it took, and no more may be on the wire.
        let set_written = |len: u64| {
            let mut w = wire.lock().unwrap_or_else(|e| e.into_inner());
            w.check.written.get_mut(&hd.id).expect("added")[hd.instance] = len;
            if let Some(&(k, off)) = w.check.wire_pos.get(&hd.id) {
                assert!(
                    k != hd.instance || off <= len,
                    "stream {}: more data on the wire than written",
                    hd.id
                );
            }
        };
        let done = match op {
            WriteOp::Write(data) => {
                set_written(hd.written + data.len() as u64);
                let r = stream.poll_write(&mut cx, data);
                let n = match r {
                    Poll::Ready(Ok(n)) => {
                        assert!(n <= data.len() && (n > 0 || data.is_empty()), "wrote {n}");
                        n
                    }
                    _ => 0,
                };
                hd.written += n as u64;
                set_written(hd.written);
                r.is_ready()
            }
            WriteOp::Flush => stream.poll_flush(&mut cx).is_ready(),
            WriteOp::Shutdown => stream.poll_close(&mut cx).is_ready(),
        };
        if done {
            hd.wop = None;
        } else {
            assert!(!ended, "{op:?} waits after the end");
        }
    }

    fn poll_close(&mut self) {
        let ended = self.ended();
        let Some((task, fut)) = &mut self.close else {
            return;
        };
        match fut.as_mut().poll(&mut task.cx()) {
            Poll::Pending => assert!(!ended, "close waits after the end"),
            Poll::Ready(_) => self.close = None,
        }
    }

    /// Polls every task that was woken, once. Returns how many were polled.
    fn run_woken(&mut self) -> usize {
        let mut polled = 0;
        if self.worker.as_ref().is_some_and(|(t, _)| t.take()) {
            self.poll_worker();
            polled += 1;
        }
        if self.accept.as_ref().is_some_and(Task::take) {
            self.poll_accept();
            polled += 1;
        }
        if self.close.as_ref().is_some_and(|(t, _)| t.take()) {
            self.poll_close();
            polled += 1;
        }
        for i in 0..self.handles.len() {
            let Some(hd) = self.handles[i].as_ref() else {
                continue;
            };
            let r = hd.read.as_ref().is_some_and(|(t, _)| t.take());
            let w = hd.wop.as_ref().is_some_and(|(t, _)| t.take());
            if r {
                self.poll_read(i);
            }
            if w {
                self.poll_write_op(i);
            }
            polled += usize::from(r) + usize::from(w);
        }
        polled
    }

    /// The input runs out: the transport reports end of input and takes writes again. Every
    /// stream is read to its end, every accept taken; then, polling only what was woken, the
    /// worker and every pending operation must complete.
    fn finish(&mut self) {
        {
            let mut w = self.wire();
            w.eof = true;
            w.write_max = w.write_max.max(512);
            w.flush_pending = false;
            w.wake_reader();
            w.wake_writer();
        }
        self.draining = true;
        for i in 0..self.handles.len() {
            if let Some(hd) = self.handles[i].as_mut() {
                hd.drain = true;
                if hd.read.is_none() && !hd.eof {
                    self.start_read(i, 4096);
                }
            }
        }
        // Accepted streams count against the handle limit: let the accept go on.
        if self.acceptor.is_some() && self.accept.is_none() {
            self.accept = Some(Task::new());
        }
        self.poll_accept();
        let mut polls = 0;
        loop {
            let n = self.run_woken();
            if n == 0 {
                break;
            }
            polls += n;
            self.check_memory();
            assert!(
                polls <= MAX_FINAL_POLLS,
                "still polling after {MAX_FINAL_POLLS} polls: a task wakes itself forever"
            );
        }
        if let Some((task, _)) = &self.worker {
            assert!(
                self.worker_result.is_some(),
                "the worker never completed after end of input (woken {} times)",
                task.flag.wakes.load(Ordering::Relaxed)
            );
        }
        assert!(self.accept.is_none(), "an accept never completed");
        assert!(self.close.is_none(), "close() never completed");
        for hd in self.handles.iter().flatten() {
            assert!(
                !hd.pending(),
                "stream {}: an operation never completed (read: {}, write side: {:?})",
                hd.id,
                hd.read.is_some(),
                hd.wop.as_ref().map(|(_, op)| op)
            );
        }
        // After the end, everything answers at once.
        self.connect();
        for i in 0..self.handles.len() {
            if self.handles[i].is_some() {
                self.hd(i).drain = false;
                self.start_read(i, 16);
                assert!(self.hd(i).read.is_none(), "a read waits after the end");
                self.start_write_op(i, WriteOp::Write(vec![0]));
                assert!(self.hd(i).wop.is_none(), "a write waits after the end");
            }
        }
    }
}

/// What the driver may hold beyond the configured limits: the read buffer, the output
/// pulled from the session (segments of up to 256 KiB of frames, a slot each) and the
/// gathering buffer, the stream tables; and what this harness holds (input, handles, the
/// check of the output).
const DRIVER_OVERHEAD: usize = 4 << 20;

/// What `async-io`'s reactor may keep of a timer that was armed and dropped (its queue of timer
/// operations allocates on the thread that arms a timer and may free on another). A leaked
/// session, stream or buffer is far larger.
const TIMER_SLACK: isize = 256;

/// `async-io` builds its timer reactor on first use and keeps it for the life of the process:
/// build it before counting, so that a first timer (the accept-stall timeout of a SYN held
/// for the backlog) is not taken for a leak.
fn start_timer_reactor() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let mut timer = async_io::Timer::after(std::time::Duration::from_secs(3600));
        let _ = Pin::new(&mut timer).poll(&mut Context::from_waker(Waker::noop()));
    });
}

/// The `worker` target body.
pub fn worker(data: &[u8]) {
    start_timer_reactor();
    let start = live();
    run(data);
    let leaked = live() - start;
    assert!(
        leaked <= TIMER_SLACK,
        "{leaked} bytes still held after everything was dropped"
    );
}

fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let version = if setup.v2 { Version::V2 } else { Version::V1 };
    let frame = 1 + usize::from(setup.frame % 4096);
    let tx_frames = 1 + usize::from(setup.tx_frames % 4);
    let rx_frames = 1 + usize::from(setup.rx_frames % 4);
    let max_streams = 1 + usize::from(setup.streams % 8);
    let nz = |n: usize| NonZeroUsize::new(n).expect("not zero");
    let wire = Arc::new(Mutex::new(Wire {
        input: VecDeque::new(),
        input_pos: 0,
        input_bytes: 0,
        eof: false,
        read_max: 1 + usize::from(setup.read_max),
        read_error: None,
        read_waker: None,
        write_max: usize::MAX,
        write_error: None,
        flush_pending: false,
        write_waker: None,
        shut_down: false,
        dropped: false,
        check: FrameCheck {
            version: version as u8,
            client: !setup.server,
            max_frame: frame,
            header: [0; 8],
            filled: 0,
            body: None,
            upd_left: 0,
            last_syn: if setup.server { 0 } else { 1 },
            fins: std::collections::BTreeSet::new(),
            written: BTreeMap::new(),
            wire_pos: BTreeMap::new(),
            peer_syns: std::collections::BTreeSet::new(),
            lenient: false,
        },
    }));
    let mut builder = if setup.server {
        MuxBuilder::server()
    } else {
        MuxBuilder::client()
    };
    builder
        .with_version(version)
        .with_max_frame_size(frame)
        .with_max_tx_queue(nz(tx_frames))
        .with_max_rx_queue(nz(rx_frames))
        .with_max_streams(nz(max_streams))
        .with_max_accept_backlog(nz(1 + usize::from(setup.backlog % 4)))
        .with_stream_window(65_535 + u32::from(setup.window));
    let before = live();
    let (connector, acceptor, worker) = builder.with_connection(Conn(Arc::clone(&wire))).build();
    // The receive budget (a kept payload may pin a read buffer four times its size), the
    // output queues, and the fixed overhead.
    let rx = (rx_frames * frame).max(65_535 + 64);
    let tx = max_streams * tx_frames * frame;
    let bound = 4 * rx + tx + MAX_WIRE_INPUT + DRIVER_OVERHEAD;
    let mut h = Harness {
        wire,
        version,
        worker: Some((Task::new(), worker)),
        worker_result: None,
        connector: Some(connector),
        acceptor: Some(acceptor),
        accept: None,
        draining: false,
        close: None,
        handles: Vec::new(),
        peer_sent: BTreeMap::new(),
        peer_lens: BTreeMap::new(),
        well_formed: true,
        memory_bound: before + bound as isize + data.len() as isize,
    };
    h.poll_worker();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        h.apply(op);
    }
    h.finish();
}
