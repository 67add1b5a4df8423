//! A global allocator that counts the heap bytes the whole process holds ([`live`]) and the
//! most it held since the last [`reset_peak`] ([`peak`]).
//!
//! A global allocator is declared by the binary, so each test binary (or benchmark) that
//! measures installs it itself:
//!
//! ```
//! use smux_test_support::alloc::{live, CountingAlloc};
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc;
//!
//! fn main() {
//!     let before = live();
//!     let v = vec![0u8; 4096];
//!     assert!(live() >= before + 4096);
//!     drop(v);
//!     assert_eq!(live(), before);
//! }
//! ```
//!
//! In a binary that does not install it, every figure stays 0. The figures are for the whole
//! process, every thread included: tests that measure hold [`serial`] for their whole run, so
//! that no other test of the binary allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The system allocator, counted: every call goes to [`System`] unchanged, and the sizes of
/// the successful ones are added to or taken from [`live`].
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Bytes allocated minus bytes freed by this thread.
    static THREAD_LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count_thread(delta: isize) {
    // During thread teardown the slot may be gone: nothing to count then.
    let _ = THREAD_LIVE.try_with(|c| c.set(c.get() + delta));
}

fn grew(n: usize) {
    count_thread(n as isize);
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    // The load first: most allocations do not set a new peak, and a plain load costs less
    // than the read-modify-write.
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

fn shrank(n: usize) {
    count_thread(-(n as isize));
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Bytes allocated and not yet freed, by the whole process.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes this thread allocated minus those it freed: what a measurement on one thread holds,
/// whatever the process's other threads (a test harness printing, say) do meanwhile. Memory
/// freed by another thread than the one that allocated it is not seen here.
pub fn thread_live() -> isize {
    THREAD_LIVE.try_with(Cell::get).unwrap_or(0)
}

/// The most [`live`] has been since the last [`reset_peak`] (since the start, before any).
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the present live figure.
pub fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by each measuring test of a binary for its whole run, so that no other test
/// allocates while it measures. A test that failed (and poisoned the lock) does not stop the
/// others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes as KiB with one decimal, for messages.
pub fn kib(n: usize) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}
