//! Wakers: what each handle waits for, and waking only once every lock is released (a waker
//! may run a task in place, and that task may need a lock).

use std::task::{Context, Waker};

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
    wake: Vec<Waker>,
    dropped: Vec<Waker>,
}

impl Wakes {
    /// Queues the waker in `slot`, if any.
    pub fn take(&mut self, slot: &mut Option<Waker>) {
        self.wake.extend(slot.take());
    }

    /// Drops the waker in `slot` later, without waking it.
    pub fn discard(&mut self, slot: &mut Option<Waker>) {
        self.dropped.extend(slot.take());
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
            _ => self.dropped.extend(slot.replace(cx.waker().clone())),
        }
    }

    /// Moves everything of `other` here.
    pub fn append(&mut self, other: &mut Wakes) {
        self.wake.append(&mut other.wake);
        self.dropped.append(&mut other.dropped);
    }

    /// Drops replaced wakers and wakes the others, now.
    pub fn run(&mut self) {
        self.dropped.clear();
        for w in self.wake.drain(..) {
            w.wake();
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.run();
    }
}
