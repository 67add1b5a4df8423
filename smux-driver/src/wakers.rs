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
