//! Every task waiting on the connection, and the rule that wakes each kind: [`Waiters`]. It
//! lives in the state (under the state lock) and collects the wakers to run, which go to the
//! operation's key ([`Wakes`]) as the lock is released.

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Waker};

pub(crate) use crate::wakes::Wakes;

use smux_proto::{IdHasher, Session, StreamId};

use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What one stream handle waits for.
#[derive(Debug, Default)]
struct Slot {
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The wire position after this stream's last frame handed to the output queue; its data
    /// is flushed once the transport has taken and flushed up to it.
    flush_target: u64,
    /// In the flush waiters' list.
    waiting_flush: bool,
    /// In the room waiters' list.
    waiting_room: bool,
}

/// What a parked writer waits for ([`Waiters::park_writer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterWait {
    /// Its flush to complete: woken by [`Waiters::flushed_to`].
    Flush,
    /// Room in the transport, which its direct write found full: woken by
    /// [`Waiters::wake_room`] as whoever writes makes progress.
    Room,
}

/// What writers tell each other without the state lock: read by the write lock's holder to
/// decide whether to flush at once, or to wake parked writers.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Some stream waits for its flush: writers flush the transport as they go.
    pub flush_wanted: AtomicBool,
    /// Some stream waits for room in the transport: writers wake it as they make progress.
    pub room_wanted: AtomicBool,
    /// Streams whose last write returned `Pending`: while any waits, a writer yields its task
    /// after each turn (`stream.rs`).
    pub waiting_writers: AtomicUsize,
    /// The write side had work (bytes queued, or written and not flushed) when its last writer
    /// let go: the worker writes even if the session has nothing new.
    pub queued: AtomicBool,
}

/// Every waiter of one connection.
#[derive(Debug)]
pub(crate) struct Waiters {
    /// Wakers queued under the lock, handed to the operation's key as it is released.
    pending: Wakes,
    slots: HashMap<u32, Slot, IdHasher>,
    /// Streams waiting for their flush.
    flush: Vec<StreamId>,
    /// Streams whose direct write found the transport full.
    room: Vec<StreamId>,
    /// The output queue's done position as of the transport's last completed flush: every
    /// frame that ends at or below it is flushed.
    flushed: u64,
    accept: Option<Waker>,
    worker: Option<Waker>,
    /// The worker was woken since its last poll.
    worker_notified: bool,
    /// Tasks in `close()`, `closed()` or `drain()`: each looks again when woken.
    closers: Vec<Waker>,
    /// `open()` calls waiting for room under the stream limit, first come first served: their
    /// tickets and wakers.
    openers: VecDeque<(u64, Option<Waker>)>,
    next_ticket: u64,
}

impl Waiters {
    pub fn new() -> Waiters {
        Waiters {
            pending: Wakes::default(),
            slots: HashMap::with_hasher(IdHasher::new()),
            flush: Vec::new(),
            room: Vec::new(),
            flushed: 0,
            accept: None,
            worker: None,
            worker_notified: false,
            closers: Vec::new(),
            openers: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// Hands the wakers queued under the lock to `key`.
    pub fn unlock(&mut self, key: &mut Wakes) {
        if !self.pending.is_empty() {
            key.append(&mut self.pending);
        }
    }

    // ------------------------------------------------------------ streams' readers and writers

    pub fn add_stream(&mut self, id: StreamId) {
        self.slots.insert(id.0, Slot::default());
    }

    /// The handle of `id` is gone: forgets what it waited for.
    pub fn remove_stream(&mut self, id: StreamId) {
        if let Some(slot) = self.slots.remove(&id.0) {
            self.pending.discard(&mut { slot.reader });
            self.pending.discard(&mut { slot.writer });
            if slot.waiting_flush {
                self.flush.retain(|w| *w != id);
            }
            if slot.waiting_room {
                self.room.retain(|w| *w != id);
            }
        }
        // After a burst, give the table's memory back (amortised: once per halving).
        let cap = self.slots.capacity();
        if cap > 64 && self.slots.len() * 4 < cap {
            self.slots.shrink_to(self.slots.len() * 2);
        }
    }

    /// Stream handles alive.
    pub fn streams(&self) -> usize {
        self.slots.len()
    }

    pub fn has_stream(&self, id: StreamId) -> bool {
        self.slots.contains_key(&id.0)
    }

    pub fn register_reader(&mut self, id: StreamId, cx: &Context<'_>) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            self.pending.register(&mut slot.reader, cx);
        }
    }

    pub fn register_writer(&mut self, id: StreamId, cx: &Context<'_>) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            self.pending.register(&mut slot.writer, cx);
        }
    }

    /// The reader of `id` is gone (its read half was dropped).
    pub fn forget_reader(&mut self, id: StreamId) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            self.pending.discard(&mut slot.reader);
        }
    }

    pub fn wake_reader(&mut self, id: StreamId) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            self.pending.take(&mut slot.reader);
        }
    }

    pub fn wake_writer(&mut self, id: StreamId) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            self.pending.take(&mut slot.writer);
        }
    }

    /// Wakes both sides of `id`.
    pub fn wake_stream(&mut self, id: StreamId) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            self.pending.take(&mut slot.reader);
            self.pending.take(&mut slot.writer);
        }
    }

    pub fn wake_writers(&mut self) {
        for slot in self.slots.values_mut() {
            self.pending.take(&mut slot.writer);
        }
    }

    /// Wakes every task: the session is over, or changed for all.
    pub fn wake_all(&mut self) {
        for slot in self.slots.values_mut() {
            self.pending.take(&mut slot.reader);
            self.pending.take(&mut slot.writer);
        }
        self.pending.take(&mut self.accept);
        self.wake_closers();
        for (_, w) in &mut self.openers {
            self.pending.take(w);
        }
    }

    // ------------------------------------------------------------------------------ flushes

    /// `id`'s last frame handed to the output queue ends at `end`.
    pub fn set_flush_target(&mut self, id: StreamId, end: u64) {
        if let Some(slot) = self.slots.get_mut(&id.0) {
            slot.flush_target = end;
        }
    }

    /// Whether `id` has everything it wrote (and its FIN, if asked) flushed to the transport.
    pub fn flush_done(&self, session: &Session, id: StreamId) -> bool {
        let target = self.slots.get(&id.0).map_or(0, |s| s.flush_target);
        !session.has_pending_output(id) && self.flushed >= target
    }

    /// The transport has flushed every frame that ends at or below `done`: wakes the flushes
    /// it completes.
    pub fn flushed_to(&mut self, done: u64, session: &Session, signals: &Signals) {
        self.flushed = self.flushed.max(done);
        if self.flush.is_empty() {
            return;
        }
        let Waiters {
            pending,
            slots,
            flush,
            flushed,
            ..
        } = self;
        flush.retain(|id| {
            let Some(slot) = slots.get_mut(&id.0) else {
                return false;
            };
            if session.has_pending_output(*id) || *flushed < slot.flush_target {
                return true;
            }
            slot.waiting_flush = false;
            pending.take(&mut slot.writer);
            false
        });
        if flush.is_empty() {
            signals.flush_wanted.store(false, Ordering::Release);
        }
    }

    /// Parks the writer of `id` until `what` it waits for happens. A flush waiter needs the
    /// worker (it may be the one to write): it is woken. While the session is `closing`,
    /// closers look again: the task parking may have held the write lock that a `close()`
    /// found busy, and `close()` must not depend on the worker.
    pub fn park_writer(
        &mut self,
        id: StreamId,
        what: WriterWait,
        closing: bool,
        cx: &Context<'_>,
        signals: &Signals,
    ) {
        let Some(slot) = self.slots.get_mut(&id.0) else {
            return;
        };
        self.pending.register(&mut slot.writer, cx);
        let (flagged, list, wanted) = match what {
            WriterWait::Flush => (
                &mut slot.waiting_flush,
                &mut self.flush,
                &signals.flush_wanted,
            ),
            WriterWait::Room => (&mut slot.waiting_room, &mut self.room, &signals.room_wanted),
        };
        if !*flagged {
            *flagged = true;
            list.push(id);
        }
        wanted.store(true, Ordering::Release);
        if what == WriterWait::Flush {
            self.notify_worker();
        }
        self.wake_closers_if(closing);
    }

    /// Whether writers other than `id` wait for room in the transport.
    pub fn others_wait_room(&self, id: StreamId) -> bool {
        let ours = self.slots.get(&id.0).is_some_and(|s| s.waiting_room);
        self.room.len() > usize::from(ours)
    }

    /// The transport took bytes: wakes the writers that found it full.
    pub fn wake_room(&mut self, signals: &Signals) {
        signals.room_wanted.store(false, Ordering::Release);
        for id in self.room.drain(..) {
            if let Some(slot) = self.slots.get_mut(&id.0) {
                slot.waiting_room = false;
                self.pending.take(&mut slot.writer);
            }
        }
    }

    // ------------------------------------------------------------------------------ worker

    pub fn register_worker(&mut self, cx: &Context<'_>) {
        self.worker_notified = false;
        self.pending.register(&mut self.worker, cx);
    }

    /// Wakes the worker (once per poll of it).
    pub fn notify_worker(&mut self) {
        if !self.worker_notified {
            self.worker_notified = true;
            if let Some(w) = &self.worker {
                self.pending.wake.push(w.clone());
            }
        }
    }

    /// Wakes the worker for good: the end.
    pub fn release_worker(&mut self) {
        self.pending.take(&mut self.worker);
    }

    // ------------------------------------------------------------------------------ accepts

    pub fn register_acceptor(&mut self, cx: &Context<'_>) {
        self.pending.register(&mut self.accept, cx);
    }

    pub fn wake_acceptor(&mut self) {
        self.pending.take(&mut self.accept);
    }

    pub fn forget_acceptor(&mut self) {
        self.pending.discard(&mut self.accept);
    }

    // --------------------------------------------------------------------------- closers

    /// Registers a task waiting in `close()`, `closed()` or `drain()`.
    pub fn register_closer(&mut self, cx: &Context<'_>) {
        if self.closers.iter().any(|w| w.will_wake(cx.waker())) {
            return;
        }
        if self.closers.len() >= 64 {
            // Waiters that gave up leave their wakers here: let the live ones register
            // again rather than keep them all.
            self.wake_closers();
        }
        self.closers.push(cx.waker().clone());
    }

    pub fn wake_closers(&mut self) {
        for w in self.closers.drain(..) {
            self.pending.wake.push(w);
        }
    }

    /// Wakes the closers if `cond` (the session is closing, or draining).
    pub fn wake_closers_if(&mut self, cond: bool) {
        if cond && !self.closers.is_empty() {
            self.wake_closers();
        }
    }

    // --------------------------------------------------------------------------- openers

    pub fn has_openers(&self) -> bool {
        !self.openers.is_empty()
    }

    /// The ticket of the `open()` first in line.
    pub fn first_opener(&self) -> Option<u64> {
        self.openers.front().map(|w| w.0)
    }

    /// Takes `ticket`'s place in line (a new ticket if `None`), with `cx`'s waker.
    pub fn wait_open(&mut self, ticket: &mut Option<u64>, cx: &Context<'_>) {
        let t = *ticket.get_or_insert_with(|| {
            self.next_ticket += 1;
            self.next_ticket
        });
        match self.openers.iter_mut().find(|w| w.0 == t) {
            Some((_, w)) => self.pending.register(w, cx),
            None => self.openers.push_back((t, Some(cx.waker().clone()))),
        }
    }

    /// `ticket` leaves the line; returns whether it was first.
    pub fn leave_open(&mut self, ticket: u64) -> bool {
        match self.openers.iter().position(|w| w.0 == ticket) {
            Some(i) => {
                let _ = self.openers.remove(i);
                i == 0
            }
            None => false,
        }
    }

    /// Wakes the first `open()` waiter if the stream limit leaves room.
    pub fn wake_opener(&mut self, session: &Session) {
        if session.num_streams() < session.config().max_streams() {
            if let Some((_, w)) = self.openers.front_mut() {
                self.pending.take(w);
            }
        }
    }

    /// Wakes every `open()` waiter (they fail now).
    pub fn wake_openers(&mut self) {
        for (_, w) in &mut self.openers {
            self.pending.take(w);
        }
    }
}
