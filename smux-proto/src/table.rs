//! The stream table, and the queues of stream ids kept beside it: the scheduler's, and those
//! that schedule nothing (streams waiting for `accept` and, in version 2, for window credit).
//!
//! Each queue keeps its own membership: a stream is in a queue at most once, and leaving one
//! is O(1). A stream that leaves (or is removed) stays behind as a stale entry that the queue
//! skips when it reaches it, so no departure scans the queue; stale entries are dropped in a
//! compaction once they outnumber the live ones, which keeps the cost amortised O(1) and the
//! memory proportional to the live entries.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::hasher::IdHasher;
use crate::stream::Stream;
use crate::wire::StreamId;

/// The stream table: streams by id. Each stream is boxed: the table keeps spare buckets (an
/// eighth of them at least, over half just after it grows), each as wide as an entry, so an
/// entry of a key and a pointer keeps their cost to a few bytes per stream whatever a
/// [`Stream`] holds. Growing the table moves pointers, not streams.
pub(crate) type Streams = HashMap<u32, Box<Stream>, IdHasher>;

/// One of the session's queues of stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Queue {
    /// Streams with a SYN, UPD or due FIN to send; served before any data.
    Ctrl = 1,
    /// Streams with data to send, served round-robin one frame at a time.
    Ready = 2,
    /// Writers refused because the session's output queue was full.
    TxBlocked = 4,
    /// Peer-opened streams not yet taken by `accept`.
    Accept = 8,
    /// Version 2: streams whose window could not grow because the receive budget was spent.
    CreditWait = 16,
    /// Streams that got data to send while they had none queued: their first frame goes
    /// before the ready queue's.
    Fresh = 32,
}

impl Queue {
    /// The queue's bit in a stream's [`Membership`](crate::stream::Membership).
    pub fn bit(self) -> u8 {
        self as u8
    }
}

/// A FIFO of stream ids with O(1) membership and O(1) leaving.
#[derive(Debug)]
pub(crate) struct IdQueue {
    queue: Queue,
    ids: VecDeque<StreamId>,
    live: usize,
    /// Entries looked at, stale ones included (for tests of the amortised cost).
    #[cfg(test)]
    pub visits: u64,
}

impl IdQueue {
    pub fn new(queue: Queue) -> IdQueue {
        IdQueue {
            queue,
            ids: VecDeque::new(),
            live: 0,
            #[cfg(test)]
            visits: 0,
        }
    }

    /// Streams in the queue.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Appends `id` unless `s` is in the queue already.
    pub fn push(&mut self, id: StreamId, s: &mut Stream) {
        if !s.sched.contains(self.queue.bit()) {
            s.sched.insert(self.queue.bit());
            self.live += 1;
            self.ids.push_back(id);
        }
    }

    /// Takes `s` out of the queue (its entry goes stale: call [`IdQueue::tidy`] once the table
    /// is at hand).
    pub fn leave(&mut self, s: &mut Stream) {
        if s.sched.contains(self.queue.bit()) {
            s.sched.remove(self.queue.bit());
            self.live -= 1;
        }
    }

    /// The first live stream, stale entries before it dropped.
    pub fn front(&mut self, streams: &Streams) -> Option<StreamId> {
        while let Some(&id) = self.ids.front() {
            #[cfg(test)]
            {
                self.visits += 1;
            }
            if streams
                .get(&id.0)
                .is_some_and(|s| s.sched.contains(self.queue.bit()))
            {
                return Some(id);
            }
            self.ids.pop_front();
        }
        self.shrink();
        None
    }

    /// Takes the first live stream out of the queue.
    pub fn pop(&mut self, streams: &mut Streams) -> Option<StreamId> {
        let id = self.front(streams)?;
        self.ids.pop_front();
        let s = streams.get_mut(&id.0).expect("front checked it");
        s.sched.remove(self.queue.bit());
        self.live -= 1;
        Some(id)
    }

    /// Empties the queue; `streams` forget their membership.
    pub fn clear(&mut self, streams: &mut Streams) {
        for id in self.ids.drain(..) {
            if let Some(s) = streams.get_mut(&id.0) {
                s.sched.remove(self.queue.bit());
            }
        }
        self.live = 0;
        self.ids = VecDeque::new();
    }

    /// A stream is being removed from the table: its entry goes stale (call
    /// [`IdQueue::tidy`] afterwards).
    pub fn forget(&mut self, s: &Stream) {
        if s.sched.contains(self.queue.bit()) {
            self.live -= 1;
        }
    }

    /// Drops stale entries once they outnumber the live ones: amortised O(1) per departure.
    pub fn tidy(&mut self, streams: &Streams) {
        if self.ids.len() <= 2 * self.live + 32 {
            return;
        }
        #[cfg(test)]
        {
            self.visits += self.ids.len() as u64;
        }
        let queue = self.queue;
        // An id may stand twice (it left, then joined again): keep its first entry.
        let mut seen = HashSet::with_capacity(self.live);
        self.ids.retain(|id| {
            streams
                .get(&id.0)
                .is_some_and(|s| s.sched.contains(queue.bit()))
                && seen.insert(id.0)
        });
        self.shrink();
    }

    fn shrink(&mut self) {
        if self.ids.capacity() > 64 && self.ids.len() * 4 < self.ids.capacity() {
            self.ids.shrink_to(self.ids.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[u32]) -> Streams {
        let mut t = Streams::with_hasher(IdHasher::new());
        for id in ids {
            t.insert(*id, Stream::new(0));
        }
        t
    }

    #[test]
    fn fifo_with_membership() {
        let mut t = table(&[1, 2, 3]);
        let mut q = IdQueue::new(Queue::Ready);
        for id in [1, 2, 1, 3] {
            q.push(StreamId(id), t.get_mut(&id).unwrap());
        }
        assert_eq!(q.len(), 3);
        q.leave(t.get_mut(&2).unwrap());
        assert_eq!(q.pop(&mut t), Some(StreamId(1)));
        assert_eq!(q.pop(&mut t), Some(StreamId(3)));
        assert_eq!(q.pop(&mut t), None);
        assert!(q.is_empty());
    }

    #[test]
    fn rejoining_keeps_one_live_entry() {
        let mut t = table(&[5, 7]);
        let mut q = IdQueue::new(Queue::Accept);
        q.push(StreamId(5), t.get_mut(&5).unwrap());
        q.push(StreamId(7), t.get_mut(&7).unwrap());
        q.leave(t.get_mut(&5).unwrap());
        q.push(StreamId(5), t.get_mut(&5).unwrap());
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(&mut t), Some(StreamId(5)));
        assert_eq!(q.pop(&mut t), Some(StreamId(7)));
        assert_eq!(q.pop(&mut t), None);
    }

    #[test]
    fn leaving_costs_amortised_o1() {
        let n = 10_000u32;
        let ids: Vec<u32> = (0..n).collect();
        let mut t = table(&ids);
        let mut q = IdQueue::new(Queue::TxBlocked);
        for id in &ids {
            q.push(StreamId(*id), t.get_mut(id).unwrap());
        }
        for id in &ids {
            let s = t.remove(id).unwrap();
            q.forget(&s);
            q.tidy(&t);
        }
        assert!(q.is_empty());
        assert!(q.visits <= 4 * u64::from(n), "{} visits", q.visits);
        assert!(q.ids.len() <= 32 + 1);
    }
}
