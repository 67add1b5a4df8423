//! Timers. The session's own timers sit in a fixed table indexed by [`Timer`]; per-stream idle
//! deadlines sit in a min-heap so that no tick scans every stream.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A session-wide timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Send the next NOP.
    KeepAlive = 0,
    /// End the session if no header has arrived by then.
    KeepAliveTimeout = 1,
    /// Refuse SYNs past the accept backlog if nothing has been accepted by then.
    AcceptStall = 2,
    /// Version 1: reset a stream if input still waits for readers by then.
    StalledInput = 3,
}

const TIMER_COUNT: usize = 4;

/// Deadlines of the session-wide timers.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; TIMER_COUNT],
}

impl TimerTable {
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.deadlines[t as usize] = Some(at);
    }

    pub fn get(&self, t: Timer) -> Option<Instant> {
        self.deadlines[t as usize]
    }

    pub fn stop(&mut self, t: Timer) {
        self.deadlines[t as usize] = None;
    }

    pub fn stop_all(&mut self) {
        self.deadlines = [None; TIMER_COUNT];
    }

    /// Whether `t` is armed and due at `now`.
    pub fn is_due(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|at| at <= now)
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

/// Per-stream deadlines. Entries are checked when they come due: one whose stream has seen
/// activity since is pushed again for its new deadline, so activity itself never touches the
/// heap. Entries for streams that are gone are dropped when they surface, or in a compaction
/// when they outnumber the live streams.
#[derive(Debug, Default)]
pub(crate) struct DeadlineQueue {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl DeadlineQueue {
    pub fn push(&mut self, at: Instant, id: u32) {
        self.heap.push(Reverse((at, id)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, id))| id),
            _ => None,
        }
    }

    /// Drops entries whose stream `live` says is gone, once stale ones could dominate.
    pub fn compact(&mut self, live_streams: usize, live: impl Fn(u32) -> bool) {
        if self.heap.len() > 2 * live_streams + 64 {
            self.heap.retain(|Reverse((_, id))| live(*id));
        }
    }

    pub fn clear(&mut self) {
        self.heap = BinaryHeap::new();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_reports_earliest() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::KeepAliveTimeout, t0 + Duration::from_secs(30));
        t.set(Timer::KeepAlive, t0 + Duration::from_secs(10));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(10)));
        assert!(!t.is_due(Timer::KeepAlive, t0));
        assert!(t.is_due(Timer::KeepAlive, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn queue_pops_in_deadline_order_and_compacts() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::default();
        for id in (0..200u32).rev() {
            q.push(t0 + Duration::from_millis(id as u64), id);
        }
        assert_eq!(q.pop_due(t0), Some(0));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + Duration::from_millis(2)), Some(1));
        q.compact(10, |id| id < 10);
        assert_eq!(q.len(), 8);
    }
}
