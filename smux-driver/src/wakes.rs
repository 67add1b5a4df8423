//! [`Wakes`]: the wakers one operation collected under its locks, run once it holds none (a
//! waker may run a task in place, and that task may need a lock). It is the operation's key
//! in the lock order (`lock.rs`).

use std::task::{Context, Waker};

/// Wakers to wake, and replaced wakers to drop, once no lock is held: the key of one operation
/// (see `lock.rs`). Dropping it does both, so it is declared before the guards it outlives.
#[derive(Debug, Default)]
pub(crate) struct Wakes {
    pub(crate) wake: List,
    dropped: List,
}

/// Wakers, the first one inline: most operations wake or replace one waker at most, and then
/// allocate nothing.
#[derive(Debug, Default)]
pub(crate) struct List {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl List {
    pub(crate) fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn append(&mut self, other: &mut List) {
        if let Some(w) = other.first.take() {
            self.push(w);
            if !other.rest.is_empty() {
                self.rest.append(&mut other.rest);
            }
        }
    }

    fn run(&mut self, wake: bool) {
        if let Some(w) = self.first.take() {
            if wake {
                w.wake();
            }
            for w in self.rest.drain(..) {
                if wake {
                    w.wake();
                }
            }
        }
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

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.wake.is_empty() && self.dropped.is_empty()
    }
}

impl Drop for Wakes {
    #[inline]
    fn drop(&mut self) {
        if !self.is_empty() {
            self.run();
        }
    }
}

impl Wakes {
    #[inline(never)]
    fn run(&mut self) {
        self.dropped.run(false);
        self.wake.run(true);
    }
}
