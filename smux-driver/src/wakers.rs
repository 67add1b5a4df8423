//! Wakers: what each handle waits for, who wakes it, and waking only once every lock is
//! released (a waker may run a task in place, and that task may need a lock).

use std::task::{Context, Waker};

use smux_proto::StreamId;

use crate::conn::{Conn, State, WriterWait};
use crate::sync::atomic::Ordering;

/// What one stream handle waits for.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub reader: Option<Waker>,
    pub writer: Option<Waker>,
    /// The wire position after this stream's last frame handed to the transport queue; its
    /// data is flushed once the transport has taken and flushed up to it.
    pub flush_target: u64,
    /// In the flush waiters' list.
    pub waiting_flush: bool,
    /// In the room waiters' list.
    pub waiting_room: bool,
}

/// Wakers to wake, and replaced wakers to drop, once no lock is held. Dropping it does both,
/// so declare it before the lock guards it outlives.
#[derive(Debug, Default)]
pub(crate) struct Wakes {
    wake: List,
    dropped: List,
}

/// Wakers, the first one inline: most operations wake or replace one waker at most, and then
/// allocate nothing (a `Vec` allocated once per waking operation, twice per ping-pong message).
#[derive(Debug, Default)]
struct List {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl List {
    fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    fn append(&mut self, other: &mut List) {
        if let Some(w) = other.first.take() {
            self.push(w);
        }
        self.rest.append(&mut other.rest);
    }

    fn drain(&mut self) -> impl Iterator<Item = Waker> + '_ {
        self.first.take().into_iter().chain(self.rest.drain(..))
    }
}

impl Wakes {
    /// Queues the waker in `slot`, if any.
    pub fn take(&mut self, slot: &mut Option<Waker>) {
        if let Some(w) = slot.take() {
            self.wake.push(w);
        }
    }

    /// Drops the waker in `slot` later, without waking it.
    pub fn discard(&mut self, slot: &mut Option<Waker>) {
        if let Some(w) = slot.take() {
            self.dropped.push(w);
        }
    }

    /// Queues `waker`.
    pub fn push(&mut self, waker: Waker) {
        self.wake.push(waker);
    }

    /// Stores `cx`'s waker in `slot`, unless it is already there; the one it replaces is
    /// dropped later.
    pub fn register(&mut self, slot: &mut Option<Waker>, cx: &Context<'_>) {
        match slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => {
                if let Some(old) = slot.replace(cx.waker().clone()) {
                    self.dropped.push(old);
                }
            }
        }
    }

    /// Moves everything of `other` here.
    pub fn append(&mut self, other: &mut Wakes) {
        self.wake.append(&mut other.wake);
        self.dropped.append(&mut other.dropped);
    }

    /// Drops replaced wakers and wakes the others, now.
    pub fn run(&mut self) {
        self.dropped.drain().for_each(drop);
        for w in self.wake.drain() {
            w.wake();
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.run();
    }
}

// ---------------------------------------------------------------- who waits, who wakes

impl<T> Conn<T> {
    /// Whether stream `id` has everything it wrote (and its FIN, if asked) flushed to the
    /// transport. Call under the state lock.
    pub fn flush_done(&self, st: &State, id: StreamId) -> bool {
        let target = st.slots.get(&id.0).map_or(0, |s| s.flush_target);
        !st.session.has_pending_output(id) && self.flushed.load(Ordering::Acquire) >= target
    }

    /// Wakes the streams whose flush is complete. Call under the state lock, after storing
    /// `flushed`.
    pub fn wake_flushed(&self, st: &mut State) {
        if st.flush_waiters.is_empty() {
            return;
        }
        let flushed = self.flushed.load(Ordering::Acquire);
        let State {
            session,
            slots,
            wakes,
            flush_waiters,
            ..
        } = st;
        flush_waiters.retain(|id| {
            let Some(slot) = slots.get_mut(&id.0) else {
                return false;
            };
            if session.has_pending_output(*id) || flushed < slot.flush_target {
                return true;
            }
            slot.waiting_flush = false;
            wakes.take(&mut slot.writer);
            false
        });
        if flush_waiters.is_empty() {
            self.flush_wanted.store(false, Ordering::Release);
        }
    }

    /// Parks the writer of `id` until `what` it waits for happens: its flush completing
    /// (woken by `wake_flushed`; the worker is told, as it may be the one to write), or room
    /// in the transport after its direct write found it full (woken by `wake_room`, on the
    /// progress of whoever writes; the transport holds the writer's waker too, unless a
    /// later write replaced it).
    pub fn park_writer(&self, st: &mut State, id: StreamId, what: WriterWait, cx: &Context<'_>) {
        let State {
            slots,
            wakes,
            flush_waiters,
            room_waiters,
            ..
        } = st;
        let Some(slot) = slots.get_mut(&id.0) else {
            return;
        };
        wakes.register(&mut slot.writer, cx);
        let (flagged, waiters, wanted) = match what {
            WriterWait::Flush => (&mut slot.waiting_flush, flush_waiters, &self.flush_wanted),
            WriterWait::Room => (&mut slot.waiting_room, room_waiters, &self.room_wanted),
        };
        if !*flagged {
            *flagged = true;
            waiters.push(id);
        }
        wanted.store(true, Ordering::Release);
        if what == WriterWait::Flush {
            st.notify_worker();
        }
        st.wake_closers();
    }

    /// The transport took bytes: wake the writers that found it full.
    pub fn wake_room(&self, st: &mut State) {
        self.room_wanted.store(false, Ordering::Release);
        let State {
            slots,
            wakes,
            room_waiters,
            ..
        } = st;
        for id in room_waiters.drain(..) {
            if let Some(slot) = slots.get_mut(&id.0) {
                slot.waiting_room = false;
                wakes.take(&mut slot.writer);
            }
        }
    }
}

impl State {
    pub fn register_worker(&mut self, cx: &Context<'_>) {
        self.worker_notified = false;
        self.wakes.register(&mut self.worker_waker, cx);
    }

    /// Wakes the worker (once per poll of it).
    pub fn notify_worker(&mut self) {
        if !self.worker_notified {
            self.worker_notified = true;
            if let Some(w) = &self.worker_waker {
                self.wakes.push(w.clone());
            }
        }
    }

    /// A task held the transport that a `close()` found busy, and now waits itself: let
    /// `close()` try again, since it must not depend on the worker being polled.
    pub fn wake_closers(&mut self) {
        if self.session.is_closing() {
            for w in self.close_wakers.drain(..) {
                self.wakes.push(w);
            }
        }
    }

    pub fn wake_writers(&mut self) {
        for slot in self.slots.values_mut() {
            self.wakes.take(&mut slot.writer);
        }
    }

    pub fn wake_all(&mut self) {
        for slot in self.slots.values_mut() {
            self.wakes.take(&mut slot.reader);
            self.wakes.take(&mut slot.writer);
        }
        self.wakes.take(&mut self.accept_waker);
        for w in self.close_wakers.drain(..) {
            self.wakes.push(w);
        }
        for (_, w) in &mut self.open_waiters {
            self.wakes.take(w);
        }
    }

    /// Registers a task waiting in `close()` or `closed()`.
    pub fn register_closer(&mut self, cx: &Context<'_>) {
        if self.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            return;
        }
        if self.close_wakers.len() >= 64 {
            // Waiters that gave up leave their wakers here: let the live ones register
            // again rather than keep them all.
            for w in self.close_wakers.drain(..) {
                self.wakes.push(w);
            }
        }
        self.close_wakers.push(cx.waker().clone());
    }

    /// While draining, wakes `drain()` (among the closers) to look again.
    pub fn wake_drainer(&mut self) {
        if self.session.is_draining() {
            for w in self.close_wakers.drain(..) {
                self.wakes.push(w);
            }
        }
    }

    /// Wakes the first `open()` waiter if the stream limit leaves room.
    pub fn wake_opener(&mut self) {
        if self.session.num_streams() < self.session.config().max_streams() {
            if let Some((_, w)) = self.open_waiters.front_mut() {
                self.wakes.take(w);
            }
        }
    }
}
