//! The connection's two locks, and their order, enforced by the types.
//!
//! - The **write** lock guards the transport's write side and the output queue
//!   (`write.rs`). Its holder is the only one writing, so a frame's bytes stay together.
//! - The **state** lock guards the protocol state and the waiters (`conn.rs`). Every handle
//!   operation takes it for a bounded amount of work, never during a syscall.
//!
//! The order is write, then state: the holder of the write lock takes the state lock from its
//! guard ([`WriteGuard::state`], [`WriteGuard::parts`]), and nothing takes the write lock under
//! the state lock. Both guards borrow the operation's one key mutably (the connection's key is
//! the list of wakers to run once no lock is held), so the wrong order does not compile:
//!
//! ```compile_fail,E0499
//! use smux_driver::lock::Locks;
//!
//! let locks = Locks::new(0u32, 0u32);
//! let mut key = ();
//! let state = locks.state(&mut key);
//! // error[E0499]: `key` is already borrowed by the state guard.
//! let write = locks.try_write(&mut key);
//! drop(state);
//! ```
//!
//! Nor does taking the state lock twice from one write guard:
//!
//! ```compile_fail,E0499
//! use smux_driver::lock::Locks;
//!
//! let locks = Locks::new(0u32, 0u32);
//! let mut key = ();
//! let mut write = locks.try_write(&mut key).unwrap();
//! let a = write.state();
//! let b = write.state(); // error[E0499]
//! drop(a);
//! ```
//!
//! The right order compiles:
//!
//! ```
//! use smux_driver::lock::Locks;
//!
//! let locks = Locks::new(0u32, 0u32);
//! let mut key = ();
//! let mut write = locks.try_write(&mut key).unwrap();
//! let (queue, mut state) = write.parts();
//! *state += 1;
//! *queue += 1;
//! ```
//!
//! The key is made once per operation, at its entry point, and passed down: two keys in one
//! call path would defeat the check.

use std::ops::{Deref, DerefMut};

use crate::sync::atomic::{fence, AtomicBool, Ordering};
use crate::sync::{Mutex, MutexGuard, TryLockError};

/// What the state does as its lock is released: hands what it collected under the lock to
/// the key (the connection's wakers, to be run once no lock is held).
pub trait Unlock<K> {
    /// Called with the lock still held, just before it is released.
    fn unlock(&mut self, key: &mut K);
    /// Called under the state lock after the write lock was released, when somebody found the
    /// write lock held meanwhile and left its writing to the holder
    /// ([`Locks::try_write_or_hand_off`]): the state sees that it gets done.
    fn handed_off(&mut self) {}
}

impl<K> Unlock<K> for u32 {
    fn unlock(&mut self, _: &mut K) {}
}

/// The two locks of one connection: `S` the state, `W` the write side.
#[derive(Debug)]
pub struct Locks<S, W> {
    state: Mutex<S>,
    write: Mutex<W>,
    /// Someone found the write lock held and left its writing to the holder
    /// ([`Locks::try_write_or_hand_off`]).
    handed_off: AtomicBool,
}

/// A panic in another thread while holding a lock leaves the data as consistent as any single
/// call leaves it: go on rather than poison every handle.
fn relock<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(|e| e.into_inner())
}

impl<S, W> Locks<S, W> {
    /// Two new locks.
    pub fn new(state: S, write: W) -> Self {
        Locks {
            state: Mutex::new(state),
            write: Mutex::new(write),
            handed_off: AtomicBool::new(false),
        }
    }

    fn try_lock_write(&self) -> Option<MutexGuard<'_, W>> {
        match self.write.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl<S, W> Locks<S, W> {
    /// Locks the state alone.
    pub fn state<'a, K>(&'a self, key: &'a mut K) -> StateGuard<'a, S, K>
    where
        S: Unlock<K>,
    {
        StateGuard {
            guard: relock(self.state.lock()),
            key,
        }
    }

    /// The write side, if nobody holds it. Handles never wait for it.
    pub fn try_write<'a, K>(&'a self, key: &'a mut K) -> Option<WriteGuard<'a, S, W, K>>
    where
        S: Unlock<K>,
    {
        let guard = self.try_lock_write()?;
        Some(WriteGuard {
            locks: self,
            guard: Some(guard),
            key,
        })
    }

    /// The write side; if somebody holds it, `None`, and the holder, as it releases the lock,
    /// calls [`Unlock::handed_off`]: the caller's writing is left to it.
    pub fn try_write_or_hand_off<'a, K>(&'a self, key: &'a mut K) -> Option<WriteGuard<'a, S, W, K>>
    where
        S: Unlock<K>,
    {
        let guard = self.try_lock_write().or_else(|| {
            self.handed_off.store(true, Ordering::Relaxed);
            // Either the holder sees the flag after its release, or this sees the release.
            fence(Ordering::SeqCst);
            self.try_lock_write()
        })?;
        Some(WriteGuard {
            locks: self,
            guard: Some(guard),
            key,
        })
    }

    /// The write side, waiting for its holder: for drops only, where no task can wait.
    pub fn write<'a, K>(&'a self, key: &'a mut K) -> WriteGuard<'a, S, W, K>
    where
        S: Unlock<K>,
    {
        WriteGuard {
            locks: self,
            guard: Some(relock(self.write.lock())),
            key,
        }
    }
}

/// The state, locked. On release, [`Unlock::unlock`] hands what it collected to the key.
pub struct StateGuard<'a, S: Unlock<K>, K> {
    guard: MutexGuard<'a, S>,
    key: &'a mut K,
}

impl<S: Unlock<K>, K> Deref for StateGuard<'_, S, K> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.guard
    }
}

impl<S: Unlock<K>, K> DerefMut for StateGuard<'_, S, K> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.guard
    }
}

impl<S: Unlock<K>, K> Drop for StateGuard<'_, S, K> {
    fn drop(&mut self) {
        self.guard.unlock(self.key);
    }
}

/// The write side, locked; the state lock may be taken under it.
pub struct WriteGuard<'a, S: Unlock<K>, W, K> {
    locks: &'a Locks<S, W>,
    /// `Some` until dropped.
    guard: Option<MutexGuard<'a, W>>,
    key: &'a mut K,
}

impl<'a, S: Unlock<K>, W, K> WriteGuard<'a, S, W, K> {
    /// Locks the state too.
    pub fn state(&mut self) -> StateGuard<'_, S, K> {
        StateGuard {
            guard: relock(self.locks.state.lock()),
            key: self.key,
        }
    }

    /// The write side and the state, both locked.
    pub fn parts(&mut self) -> (&mut W, StateGuard<'_, S, K>) {
        let w = self.guard.as_deref_mut().expect("held until dropped");
        let st = StateGuard {
            guard: relock(self.locks.state.lock()),
            key: self.key,
        };
        (w, st)
    }
}

impl<S: Unlock<K>, W, K> Drop for WriteGuard<'_, S, W, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        fence(Ordering::SeqCst);
        let flag = &self.locks.handed_off;
        if flag.load(Ordering::Relaxed) && flag.swap(false, Ordering::Relaxed) {
            self.state().handed_off();
        }
    }
}

impl<S: Unlock<K>, W, K> Deref for WriteGuard<'_, S, W, K> {
    type Target = W;
    fn deref(&self) -> &W {
        self.guard.as_deref().expect("held until dropped")
    }
}

impl<S: Unlock<K>, W, K> DerefMut for WriteGuard<'_, S, W, K> {
    fn deref_mut(&mut self) -> &mut W {
        self.guard.as_deref_mut().expect("held until dropped")
    }
}
