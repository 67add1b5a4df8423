//! The state shared by the worker and the handles: the session, the transport, the output not
//! yet written, and the wakers of everyone waiting.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use smux_proto::{Config, Event, OpenError, Role, Session, SessionEnd, StreamError, StreamId};

use crate::error::{stream_error, worker_result, StreamOp};
use crate::{MuxError, MuxResult, Transport};

/// Bytes asked of the transport per read. Payloads of at least a quarter of this are kept
/// without copying (see `smux_proto`'s decoder), so a kept slice pins at most four times its
/// size.
const READ_SIZE: usize = 64 * 1024;
/// A read buffer with less room left than this is replaced by a fresh one.
const MIN_READ_ROOM: usize = 16 * 1024;
/// Reads per worker round, so that one busy connection cannot starve the runtime.
const MAX_READS: usize = 4;
/// Output pulled from the session and not yet written, at most.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Segments pulled from the session and not yet written, at most: a flood of 8-byte frames
/// (refusals of a SYN flood) must not cost a queue slot per frame up to `OUT_HIGH_WATER`.
const OUT_MAX_SEGMENTS: usize = 4096;
/// Bytes written per worker round.
const MAX_WRITE: usize = 1024 * 1024;
/// Segments handed to one vectored write.
const MAX_IOV: usize = 64;
/// A transport without vectored writes gets frames gathered into buffers of this size.
const GATHER: usize = 64 * 1024;

/// Where a stream read puts its bytes: Tokio's `ReadBuf` or a plain slice.
pub trait ReadTarget {
    /// Bytes that still fit.
    fn remaining(&self) -> usize;
    /// Appends `data` (at most `remaining()` bytes).
    fn put(&mut self, data: &[u8]);
}

/// What a stream handle waits for.
#[derive(Debug, Default)]
struct Slot {
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The wire position after this stream's last frame handed out by the session; its data
    /// has reached the transport once `written` passes it.
    flush_target: u64,
    waiting_flush: bool,
}

/// The shared state of one connection, behind one mutex.
#[derive(Debug)]
pub struct Shared<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
pub(crate) struct State<T> {
    pub(crate) session: Session,
    /// The transport; dropped (closing it) once nothing more can move on it.
    io: Option<T>,
    /// The front of `out` is a buffer `gather` made: do not copy it again.
    front_gathered: bool,
    /// Wakers to wake, and replaced wakers to drop, once the lock is released: a waker may
    /// run or drop a task in place, and that task may need the lock.
    wakes: Vec<Waker>,
    dropped_wakers: Vec<Waker>,
    /// Frame segments (headers and payloads) pulled from the session, not yet written.
    out: VecDeque<Bytes>,
    out_bytes: usize,
    headers: BytesMut,
    /// Wire bytes pulled from the session and written to the transport, since the start.
    pulled: u64,
    written: u64,
    needs_flush: bool,
    /// Input read from the transport and not yet taken by the session.
    input: Bytes,
    /// Zeroed room for the next read; each read's bytes are split off its front.
    read_buf: BytesMut,
    /// The session stopped taking input; a read on a stream may let it go on.
    read_paused: bool,
    eof: bool,
    slots: HashMap<u32, Slot>,
    flush_waiters: Vec<StreamId>,
    accept_waker: Option<Waker>,
    worker_waker: Option<Waker>,
    worker_notified: bool,
    close_wakers: Vec<Waker>,
    /// Connectors, acceptors and streams alive.
    handles: usize,
    acceptor_alive: bool,
    transport_error: Option<io::Error>,
    transport_error_msg: Option<String>,
    /// The transport is shut down (or failed): nothing more will move.
    pub(crate) finished: bool,
    /// The worker was dropped before the end.
    abandoned: bool,
    result_taken: bool,
    /// The latest time the worker saw.
    last_now: Instant,
}

impl<T: Transport> Shared<T> {
    /// Shared state for a session over `io`. `handles` is the number of handles the adapter
    /// creates with it (a connector and an acceptor).
    pub fn new(io: T, role: Role, config: Config, now: Instant, handles: usize) -> Arc<Self> {
        let mut session =
            Session::new(role, config, now).expect("the builder validated the config");
        // SYNs past the accept backlog wait while the acceptor lives and accepts (the
        // session refuses them after `accept_stall_timeout` without an accept).
        session.set_hold_opens(true);
        Arc::new(Shared {
            state: Mutex::new(State {
                session,
                io: Some(io),
                front_gathered: false,
                wakes: Vec::new(),
                dropped_wakers: Vec::new(),
                out: VecDeque::new(),
                out_bytes: 0,
                headers: BytesMut::new(),
                pulled: 0,
                written: 0,
                needs_flush: false,
                input: Bytes::new(),
                read_buf: BytesMut::new(),
                read_paused: false,
                eof: false,
                slots: HashMap::new(),
                flush_waiters: Vec::new(),
                accept_waker: None,
                worker_waker: None,
                worker_notified: false,
                close_wakers: Vec::new(),
                handles,
                acceptor_alive: true,
                transport_error: None,
                transport_error_msg: None,
                finished: false,
                abandoned: false,
                result_taken: false,
                last_now: now,
            }),
        })
    }

    /// Locks the state. Wakers woken while it is held run when the returned guard is dropped,
    /// after the lock is released.
    pub(crate) fn lock(&self) -> Locked<'_, T> {
        // A panic in another thread while holding the lock leaves the state as consistent as
        // any single call leaves it: go on rather than poison every handle.
        Locked {
            guard: Some(self.state.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    /// Opens a stream.
    pub fn connect(&self) -> MuxResult<StreamId> {
        let mut st = self.lock();
        let id = st.session.open().map_err(|e| match e {
            OpenError::IdsExhausted => MuxError::StreamIdsExhausted,
            OpenError::TooManyStreams { .. } => MuxError::TooManyStreams,
            _ => MuxError::ConnectionClosed,
        })?;
        st.slots.insert(id.0, Slot::default());
        st.handles += 1;
        st.notify_worker();
        Ok(id)
    }

    /// Takes the next peer-opened stream; `None` once the session is closing or over and no
    /// stream that arrived before waits.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<StreamId>> {
        let mut st = self.lock();
        match st.session.accept() {
            Some(id) => {
                st.slots.insert(id.0, Slot::default());
                st.handles += 1;
                // A SYN held for room in the backlog can be taken now.
                if st.paused_input_can_go_on() {
                    st.notify_worker();
                }
                Poll::Ready(Some(id))
            }
            None if st.session.is_closing() || st.finished => Poll::Ready(None),
            None => {
                let old = set_waker(&mut st.accept_waker, cx);
                st.dropped_wakers.extend(old);
                Poll::Pending
            }
        }
    }

    /// Reads from stream `id` into `dst`. Nothing put and `Ok` is the end of the stream.
    pub fn poll_read(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        let mut any = false;
        let result = loop {
            let max = dst.remaining();
            if max == 0 {
                break Poll::Ready(Ok(()));
            }
            match st.session.read_chunk(id, max) {
                Ok(Some(chunk)) => {
                    dst.put(&chunk);
                    any = true;
                }
                Ok(None) => break Poll::Ready(Ok(())),
                Err(_) if any => break Poll::Ready(Ok(())),
                Err(StreamError::Blocked) => {
                    let st = &mut *st;
                    if let Some(slot) = st.slots.get_mut(&id.0) {
                        st.dropped_wakers.extend(set_waker(&mut slot.reader, cx));
                    }
                    break Poll::Pending;
                }
                Err(e) => break Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Read))),
            }
        };
        if any {
            st.after_read();
        }
        result
    }

    /// Writes to stream `id`; what is taken reaches the wire in order.
    pub fn poll_write(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.lock();
        match st.session.write(id, buf) {
            Ok(n) => {
                if n > 0 {
                    st.notify_worker();
                }
                Poll::Ready(Ok(n))
            }
            Err(StreamError::Blocked) => {
                let st = &mut *st;
                if let Some(slot) = st.slots.get_mut(&id.0) {
                    st.dropped_wakers.extend(set_waker(&mut slot.writer, cx));
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write))),
        }
    }

    /// Ready once everything written to `id` (and its FIN, if shut down) has been handed to
    /// the transport.
    pub fn poll_flush(&self, id: StreamId, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        st.poll_stream_flushed(id, cx)
    }

    /// Queues FIN on `id` after its data, as TCP's `shutdown` queues its FIN: it does not wait
    /// for the worker to write it, so that the FIN can share a write with what the task does
    /// next. The read side stays open.
    pub fn poll_shutdown(&self, id: StreamId) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        if let Err(e) = st.session.shutdown(id) {
            return Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write)));
        }
        st.notify_worker();
        Poll::Ready(Ok(()))
    }

    /// The stream handle is gone: data it wrote still goes out, then FIN; unread data is
    /// dropped.
    pub fn release_stream(&self, id: StreamId) {
        let mut st = self.lock();
        st.session.close_stream(id);
        if let Some(slot) = st.slots.remove(&id.0) {
            if slot.waiting_flush {
                st.flush_waiters.retain(|w| *w != id);
            }
        }
        // After a burst, give the table's memory back (amortised: once per halving).
        let cap = st.slots.capacity();
        if cap > 64 && st.slots.len() * 4 < cap {
            let len = st.slots.len();
            st.slots.shrink_to(len * 2);
        }
        // Its FIN (and data it wrote) is to be sent.
        st.notify_worker();
        st.release_handle();
    }

    /// A connector is gone.
    pub fn release_connector(&self) {
        self.lock().release_handle();
    }

    /// The acceptor is gone: streams the peer opens from now on are closed at once.
    pub fn release_acceptor(&self) {
        let mut st = self.lock();
        st.acceptor_alive = false;
        // A SYN waiting for the backlog is refused now: nobody will make room.
        st.session.set_hold_opens(false);
        let w = st.accept_waker.take();
        st.dropped_wakers.extend(w);
        while let Some(id) = st.session.accept() {
            st.session.close_stream(id);
        }
        st.notify_worker();
        st.release_handle();
    }

    /// One more connector.
    pub fn add_connector(&self) {
        self.lock().handles += 1;
    }

    /// Stream handles alive.
    pub fn num_streams(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether `id` can carry no more data either way.
    pub fn is_stream_closed(&self, id: StreamId) -> bool {
        let st = self.lock();
        st.finished || st.session.is_stream_closed(id)
    }

    /// Closes the session in order: data already taken by writes reaches the wire, every open
    /// stream gets FIN, then the transport is shut down. Works without the worker. `Ok` once
    /// that is done (or was done before); an error if the session had ended otherwise, or the
    /// transport failed before all of it was written.
    pub fn poll_close(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        let mut st = self.lock();
        if st.finished {
            return Poll::Ready(st.close_result());
        }
        if !st.session.is_closing() {
            st.session.close();
            // Accepts end and writes fail now: let their tasks see it.
            let w = st.accept_waker.take();
            st.wakes.extend(w);
            st.wake_writers();
        }
        st.dispatch_events();
        let now = st.session_now();
        let more = match st.drive_output(cx, now) {
            Ok(budget_spent) => budget_spent,
            Err(e) => {
                st.fail(e);
                false
            }
        };
        st.dispatch_events();
        // The transport now holds this task's waker: hand it back to the worker, which would
        // otherwise wait on readiness reported to a close() that may be gone.
        st.notify_worker();
        match st.poll_finish(cx) {
            Poll::Ready(()) => Poll::Ready(st.close_result()),
            Poll::Pending => {
                if more {
                    // Stopped for the write budget, not for the transport: go on soon.
                    cx.waker().wake_by_ref();
                } else if !st.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    if st.close_wakers.len() >= 64 {
                        // Closers that gave up leave their wakers here: let the live ones
                        // register again rather than keep them all.
                        let old = std::mem::take(&mut st.close_wakers);
                        st.wakes.extend(old);
                    }
                    st.close_wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The state, locked. Dropping it releases the lock, then wakes the wakers woken meanwhile and
/// drops the ones replaced.
pub(crate) struct Locked<'a, T> {
    guard: Option<MutexGuard<'a, State<T>>>,
}

impl<T> Deref for Locked<'_, T> {
    type Target = State<T>;

    fn deref(&self) -> &State<T> {
        self.guard.as_ref().expect("locked until dropped")
    }
}

impl<T> DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        self.guard.as_mut().expect("locked until dropped")
    }
}

impl<T> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        let wakes = std::mem::take(&mut guard.wakes);
        let dropped = std::mem::take(&mut guard.dropped_wakers);
        drop(guard);
        for w in wakes {
            w.wake();
        }
        drop(dropped);
    }
}

/// Stores `cx`'s waker in `slot`; returns the one it replaces, to be dropped after the lock.
fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) -> Option<Waker> {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => None,
        _ => slot.replace(cx.waker().clone()),
    }
}

impl<T: Transport> State<T> {
    /// The time to hand the session for output: output carries no timers of its own, so the
    /// latest time the session knows is as good as any.
    fn session_now(&self) -> Instant {
        self.last_now
    }

    pub(crate) fn register_worker(&mut self, cx: &Context<'_>) {
        self.worker_notified = false;
        let old = set_waker(&mut self.worker_waker, cx);
        self.dropped_wakers.extend(old);
    }

    fn notify_worker(&mut self) {
        if !self.worker_notified {
            self.worker_notified = true;
            if let Some(w) = &self.worker_waker {
                self.wakes.push(w.clone());
            }
        }
    }

    /// Queues the waker in `slot` to be woken once the lock is released.
    fn wake(wakes: &mut Vec<Waker>, slot: &mut Option<Waker>) {
        wakes.extend(slot.take());
    }

    fn wake_writers(&mut self) {
        for slot in self.slots.values_mut() {
            Self::wake(&mut self.wakes, &mut slot.writer);
        }
    }

    fn release_handle(&mut self) {
        self.handles -= 1;
        if self.handles == 0 {
            self.notify_worker();
        }
    }

    /// Output the worker could write now: pulled and unwritten, or still in the session.
    pub(crate) fn has_output(&self) -> bool {
        self.io.is_some() && (!self.out.is_empty() || self.session.has_output())
    }

    pub(crate) fn all_handles_gone(&self) -> bool {
        self.handles == 0
    }

    /// Input stopped because the session could not take it, and now it can.
    pub(crate) fn paused_input_can_go_on(&self) -> bool {
        self.read_paused && self.session.wants_input()
    }

    /// A read freed room: the session may send an UPD or take input again.
    fn after_read(&mut self) {
        if self.session.has_output() || (self.read_paused && self.session.wants_input()) {
            self.notify_worker();
        }
    }

    fn stream_io_error(&self, e: &StreamError, op: StreamOp) -> io::Error {
        match e {
            StreamError::Finished => {
                io::Error::new(io::ErrorKind::BrokenPipe, "stream is shut down for writing")
            }
            StreamError::UnknownStream(id) => {
                io::Error::new(io::ErrorKind::NotConnected, format!("unknown stream {id}"))
            }
            _ => self.end_error(op),
        }
    }

    /// What an operation on a stream meets once the session has ended.
    fn end_error(&self, op: StreamOp) -> io::Error {
        stream_error(
            self.session.end_reason(),
            self.transport_error_msg.as_deref(),
            op,
        )
    }

    fn poll_stream_flushed(&mut self, id: StreamId, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let pending = self.session.has_pending_output(id);
        // After an orderly end the last frames may still be on their way to the transport.
        let lost = self.finished || (self.session.is_ended() && !self.ended_orderly());
        let ended = self.session.is_ended();
        let Some(slot) = self.slots.get_mut(&id.0) else {
            return Poll::Ready(Ok(()));
        };
        if !pending && self.written >= slot.flush_target {
            return Poll::Ready(Ok(()));
        }
        if lost || (pending && ended) {
            return Poll::Ready(Err(self.end_error(StreamOp::Write)));
        }
        let old = set_waker(&mut slot.writer, cx);
        self.dropped_wakers.extend(old);
        if !slot.waiting_flush {
            slot.waiting_flush = true;
            self.flush_waiters.push(id);
        }
        self.notify_worker();
        Poll::Pending
    }

    /// Wakes the streams whose flush is now complete.
    fn wake_flushed(&mut self) {
        let written = self.written;
        let session = &self.session;
        let slots = &mut self.slots;
        let wakes = &mut self.wakes;
        self.flush_waiters.retain(|id| {
            let Some(slot) = slots.get_mut(&id.0) else {
                return false;
            };
            if session.has_pending_output(*id) || written < slot.flush_target {
                return true;
            }
            slot.waiting_flush = false;
            wakes.extend(slot.writer.take());
            false
        });
    }

    /// Wakes the tasks waiting on what the session reported.
    pub(crate) fn dispatch_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Opened(_) => {
                    if self.acceptor_alive {
                        Self::wake(&mut self.wakes, &mut self.accept_waker);
                    } else {
                        while let Some(id) = self.session.accept() {
                            self.session.close_stream(id);
                        }
                    }
                }
                Event::Readable(id) | Event::Finished(id) => {
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        Self::wake(&mut self.wakes, &mut slot.reader);
                    }
                }
                Event::Writable(id) => {
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        Self::wake(&mut self.wakes, &mut slot.writer);
                    }
                }
                Event::Closed(id) => {
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        Self::wake(&mut self.wakes, &mut slot.reader);
                        Self::wake(&mut self.wakes, &mut slot.writer);
                    }
                }
                _ => self.wake_all(),
            }
        }
    }

    fn wake_all(&mut self) {
        for slot in self.slots.values_mut() {
            Self::wake(&mut self.wakes, &mut slot.reader);
            Self::wake(&mut self.wakes, &mut slot.writer);
        }
        Self::wake(&mut self.wakes, &mut self.accept_waker);
        self.wakes.append(&mut self.close_wakers);
    }

    fn ended_orderly(&self) -> bool {
        matches!(
            self.session.end_reason(),
            Some(SessionEnd::Closed | SessionEnd::PeerClosed)
        )
    }

    /// Records a transport failure; the session ends.
    pub(crate) fn fail(&mut self, e: io::Error) {
        self.record_error(e);
        self.session.handle_transport_error();
        self.out.clear();
        self.out_bytes = 0;
        self.dispatch_events();
    }

    /// Reads from the transport and feeds the session, while it takes input. Returns whether
    /// it stopped for its budget with the transport perhaps still readable: otherwise the
    /// transport, a stream read or an accept wakes the worker when there is more to do.
    pub(crate) fn drive_input(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        self.last_now = now;
        let mut reads = 0;
        let mut budget_spent = false;
        loop {
            if reads == MAX_READS {
                budget_spent = true;
                break;
            }
            if self.session.is_ended() {
                break;
            }
            if !self.session.wants_input() {
                self.read_paused = true;
                break;
            }
            if self.read_paused || !self.input.is_empty() {
                // Resume a held-back frame, then what is left of the last read.
                self.read_paused = false;
                self.session.handle_input(now, &mut self.input);
                self.dispatch_events();
                if !self.input.is_empty() {
                    self.read_paused = true;
                    break;
                }
                continue;
            }
            let (false, Some(io)) = (self.eof, self.io.as_mut()) else {
                break;
            };
            reads += 1;
            // Reads land in the zeroed room of one buffer, and each read's bytes are split off
            // its front: every byte is zeroed once, not once per read (a 64 KiB memset per
            // read was a quarter of a small-message round trip).
            if self.read_buf.len() < MIN_READ_ROOM {
                self.read_buf = BytesMut::zeroed(READ_SIZE);
            }
            match io.poll_read(cx, &mut self.read_buf[..]) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    self.session.handle_eof();
                    self.dispatch_events();
                    break;
                }
                Poll::Ready(Ok(n)) => {
                    self.input = self.read_buf.split_to(n).freeze();
                    self.session.handle_input(now, &mut self.input);
                    self.dispatch_events();
                    if !self.input.is_empty() {
                        self.read_paused = true;
                        break;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => reads -= 1,
                Poll::Ready(Err(e)) => {
                    self.read_buf.clear();
                    self.fail(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        budget_spent
    }

    /// Moves frames from the session to the transport, vectored. Returns whether it stopped
    /// for its budget with more to write.
    pub(crate) fn drive_output(&mut self, cx: &mut Context<'_>, now: Instant) -> io::Result<bool> {
        let mut budget = MAX_WRITE;
        loop {
            self.pull(now);
            let Some(io) = self.io.as_mut() else {
                break;
            };
            if self.out.is_empty() {
                if self.needs_flush {
                    if let Poll::Ready(r) = io.poll_flush(cx) {
                        r?;
                        self.needs_flush = false;
                    }
                }
                break;
            }
            if budget == 0 {
                return Ok(true);
            }
            let n = match self.write_some(cx) {
                Poll::Ready(Ok(0)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "transport accepted no bytes",
                    ))
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            };
            self.advance_out(n);
            budget = budget.saturating_sub(n);
            self.needs_flush = true;
            self.wake_flushed();
        }
        Ok(false)
    }

    /// Pulls frames from the session until enough output is waiting.
    fn pull(&mut self, now: Instant) {
        while self.out_bytes < OUT_HIGH_WATER && self.out.len() < OUT_MAX_SEGMENTS {
            let Some(t) = self.session.poll_transmit(now) else {
                break;
            };
            self.pulled += t.wire_len() as u64;
            self.out_bytes += t.wire_len();
            if let Some(slot) = self.slots.get_mut(&t.stream_id.0) {
                slot.flush_target = self.pulled;
            }
            if self.headers.capacity() < t.header.len() {
                self.headers.reserve(4096);
            }
            self.headers.extend_from_slice(&t.header);
            self.out.push_back(self.headers.split().freeze());
            if !t.payload.is_empty() {
                self.out.push_back(t.payload);
            }
        }
    }

    fn write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let vectored = self.io.as_ref().is_some_and(|io| io.is_write_vectored());
        if !vectored {
            self.gather();
        }
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        // On the stack: no allocation per write.
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, seg) in slices.iter_mut().zip(&self.out) {
            *slot = IoSlice::new(seg);
            n += 1;
        }
        io.poll_write_vectored(cx, &slices[..n])
    }

    /// For transports that write one buffer at a time: copies the first segments into one
    /// buffer, so a header and its payload (and small frames) go out in one write.
    fn gather(&mut self) {
        if self.out.len() < 2 || self.out[0].len() >= GATHER || self.front_gathered {
            return;
        }
        let mut buf = BytesMut::with_capacity(GATHER);
        while let Some(front) = self.out.front() {
            if !buf.is_empty() && buf.len() + front.len() > GATHER {
                break;
            }
            buf.extend_from_slice(front);
            self.out.pop_front();
        }
        self.out.push_front(buf.freeze());
        self.front_gathered = true;
    }

    fn advance_out(&mut self, mut n: usize) {
        self.written += n as u64;
        self.out_bytes -= n;
        while n > 0 {
            let front = self.out.front_mut().expect("wrote bytes that were queued");
            if n >= front.len() {
                n -= front.len();
                self.out.pop_front();
                self.front_gathered = false;
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Once the session has ended and its output is written: flushes and shuts down the
    /// transport (after an orderly end), drops it, and wakes everyone.
    pub(crate) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished {
            return Poll::Ready(());
        }
        if !self.session.is_ended() {
            return Poll::Pending;
        }
        if self.ended_orderly() && self.transport_error.is_none() {
            if !self.out.is_empty() {
                return Poll::Pending;
            }
            if let Some(io) = self.io.as_mut() {
                let flushed = match io.poll_flush(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                let shut = match flushed {
                    Ok(()) => match io.poll_shutdown(cx) {
                        Poll::Pending => return Poll::Pending,
                        // The peer may have closed first; shutting down is then moot.
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                        Poll::Ready(r) => r,
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = shut {
                    self.record_error(e);
                }
            }
        }
        self.finish();
        Poll::Ready(())
    }

    /// Nothing more will move: drop the transport (closing it), wake everyone, the worker too.
    fn finish(&mut self) {
        self.finished = true;
        self.out.clear();
        self.out_bytes = 0;
        self.io = None;
        self.wake_all();
        let w = self.worker_waker.take();
        self.wakes.extend(w);
    }

    fn record_error(&mut self, e: io::Error) {
        if self.transport_error_msg.is_none() {
            self.transport_error_msg = Some(e.to_string());
            self.transport_error = Some(e);
        }
    }

    /// What `close()` reports once the session is over.
    fn close_result(&self) -> MuxResult<()> {
        if self.abandoned {
            return Err(MuxError::ConnectionClosed);
        }
        if let Some(e) = &self.transport_error {
            return Err(MuxError::IoError(io::Error::new(e.kind(), e.to_string())));
        }
        match self.session.end_reason() {
            Some(SessionEnd::Closed | SessionEnd::PeerClosed) | None => Ok(()),
            Some(end) => worker_result(end, None),
        }
    }

    /// The worker's result, once.
    pub(crate) fn take_result(&mut self) -> MuxResult<()> {
        if self.result_taken {
            return Ok(());
        }
        self.result_taken = true;
        match (self.session.end_reason(), self.transport_error.take()) {
            // Data was lost on the way out: an orderly end is not one.
            (_, Some(e)) => Err(MuxError::IoError(e)),
            (Some(end), None) => worker_result(&end.clone(), None),
            (None, None) => Ok(()),
        }
    }

    /// The worker is gone without finishing: nothing will move again.
    pub(crate) fn abandon(&mut self) {
        if self.finished {
            return;
        }
        self.abandoned = true;
        self.transport_error_msg = Some("the worker was dropped".into());
        self.session.handle_transport_error();
        self.dispatch_events();
        self.finish();
    }
}
