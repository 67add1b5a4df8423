//! The synchronisation primitives the driver shares between the worker and the handles: the
//! standard library's, or loom's models of them when built with `--cfg loom`, so that the
//! model checks (`loom_tests.rs`) explore every interleaving of the locks, atomics and wakes.
//! Loom's `lock` and `try_lock` return the standard library's `LockResult` and
//! `TryLockResult`, so `TryLockError` and `PoisonError` are the standard library's either way.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) use std::sync::TryLockError;

/// Atomics.
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};
}
