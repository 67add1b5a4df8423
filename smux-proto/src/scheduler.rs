//! The queues of stream ids the session serves: control frames owed, data ready to send,
//! writers waiting for room, streams waiting for `accept`, and (version 2) streams waiting for
//! window credit.
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

/// What goes out next, in the order [`Scheduler`] serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A keep-alive NOP.
    Nop,
    /// The FIN refusing a peer SYN.
    Refusal(StreamId),
    /// A stream at the front of the control queue: its SYN, UPD or FIN.
    Ctrl(StreamId),
    /// A stream whose turn it is to send one data frame.
    Data(StreamId),
}

/// The send scheduler: control frames first (NOP, refusals, then each stream's SYN, UPD and
/// due FIN), then the first frame of each stream that had nothing queued (`fresh`, in the
/// order they got data), then one data frame per stream in turn (`ready`). A stream that
/// sends now and then (requests, keystrokes) thus waits for no bulk stream's frame, while a
/// stream that keeps data queued goes round with the others: each gets one frame per turn,
/// and a fresh stream's head start is one frame. (FQ-CoDel serves its sparse flows first
/// the same way.) It also keeps the writers waiting for the session's output queue to drain.
#[derive(Debug)]
pub(crate) struct Scheduler {
    nop_pending: bool,
    pub refusals: Refusals,
    pub ctrl: IdQueue,
    pub fresh: IdQueue,
    pub ready: IdQueue,
    pub tx_blocked: IdQueue,
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler {
            nop_pending: false,
            refusals: Refusals::default(),
            ctrl: IdQueue::new(Queue::Ctrl),
            fresh: IdQueue::new(Queue::Fresh),
            ready: IdQueue::new(Queue::Ready),
            tx_blocked: IdQueue::new(Queue::TxBlocked),
        }
    }

    pub fn queue_nop(&mut self) {
        self.nop_pending = true;
    }

    /// Whether any frame waits to be sent.
    pub fn has_output(&self) -> bool {
        self.nop_pending
            || !self.refusals.is_empty()
            || !self.ctrl.is_empty()
            || !self.fresh.is_empty()
            || !self.ready.is_empty()
    }

    /// What to send next. A `Ctrl` stream stays at the front until the caller pops it (once
    /// it owes nothing more); a `Data` stream has left its queue, and the caller puts it in
    /// the ready queue if it has more.
    pub fn next(&mut self, streams: &mut Streams) -> Option<Next> {
        self.next_control(streams)
            .or_else(|| self.fresh.pop(streams).map(Next::Data))
            .or_else(|| self.ready.pop(streams).map(Next::Data))
    }

    /// Queues `s`, which has data to send, unless it is queued already: at the back of the
    /// fresh queue if it had nothing queued before (`was_idle`), else of the ready queue.
    /// Returns whether it was not queued before.
    pub fn push_data(&mut self, id: StreamId, s: &mut Stream, was_idle: bool) -> bool {
        if s.sched.contains(Queue::Fresh) || s.sched.contains(Queue::Ready) {
            return false;
        }
        if was_idle {
            self.fresh.push(id, s);
        } else {
            self.ready.push(id, s);
        }
        true
    }

    /// Streams with data to send.
    pub fn sending(&self) -> usize {
        self.fresh.len() + self.ready.len()
    }

    /// What to send next, if it is a control frame (`Nop`, `Refusal` or `Ctrl`).
    pub fn next_control(&mut self, streams: &mut Streams) -> Option<Next> {
        if std::mem::take(&mut self.nop_pending) {
            return Some(Next::Nop);
        }
        if let Some(id) = self.refusals.pop() {
            return Some(Next::Refusal(id));
        }
        self.ctrl.front(streams).map(Next::Ctrl)
    }

    /// A stream is removed from the table.
    pub fn forget(&mut self, s: &Stream, streams_left: &Streams) {
        for q in [
            &mut self.ctrl,
            &mut self.fresh,
            &mut self.ready,
            &mut self.tx_blocked,
        ] {
            q.forget(s);
            q.tidy(streams_left);
        }
    }

    /// The session ended: nothing more goes out.
    pub fn clear(&mut self, streams: &mut Streams) {
        self.nop_pending = false;
        self.refusals.clear();
        self.ctrl.clear(streams);
        self.fresh.clear(streams);
        self.ready.clear(streams);
        self.tx_blocked.clear(streams);
    }
}

/// The stream table: streams by id. Each stream is boxed: the table keeps spare buckets (an
/// eighth of them at least, over half just after it grows), each as wide as an entry, so an
/// entry of a key and a pointer keeps their cost to a few bytes per stream whatever a
/// [`Stream`] holds. Growing the table moves pointers, not streams.
pub(crate) type Streams = HashMap<u32, Box<Stream>, IdHasher>;

/// The queues a stream is in: one bit per [`Queue`]. Only this module changes it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Membership(u8);

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

impl Membership {
    pub fn contains(self, q: Queue) -> bool {
        self.0 & q as u8 != 0
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
        if !s.sched.contains(self.queue) {
            s.sched.0 |= self.queue as u8;
            self.live += 1;
            self.ids.push_back(id);
        }
    }

    /// Takes `s` out of the queue (its entry goes stale: call [`IdQueue::tidy`] once the table
    /// is at hand).
    pub fn leave(&mut self, s: &mut Stream) {
        if s.sched.contains(self.queue) {
            s.sched.0 &= !(self.queue as u8);
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
                .is_some_and(|s| s.sched.contains(self.queue))
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
        s.sched.0 &= !(self.queue as u8);
        self.live -= 1;
        Some(id)
    }

    /// Empties the queue; `streams` forget their membership.
    pub fn clear(&mut self, streams: &mut Streams) {
        for id in self.ids.drain(..) {
            if let Some(s) = streams.get_mut(&id.0) {
                s.sched.0 &= !(self.queue as u8);
            }
        }
        self.live = 0;
        self.ids = VecDeque::new();
    }

    /// A stream is being removed from the table: its entry goes stale (call
    /// [`IdQueue::tidy`] afterwards).
    pub fn forget(&mut self, s: &Stream) {
        if s.sched.contains(self.queue) {
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
            streams.get(&id.0).is_some_and(|s| s.sched.contains(queue)) && seen.insert(id.0)
        });
        self.shrink();
    }

    fn shrink(&mut self) {
        if self.ids.capacity() > 64 && self.ids.len() * 4 < self.ids.capacity() {
            self.ids.shrink_to(self.ids.len() * 2);
        }
    }
}

/// Refused peer SYNs whose FINs wait to be sent, as runs of ids that step by two (a peer
/// allocates its ids in order, so a burst of refusals is one run). Only streams we admitted
/// can split a run, and none of them can leave the table while a refusal waits (refusals go
/// out before any stream's FIN), so a peer that opens ids in order never has more than
/// `max_streams + 1` runs waiting. Beyond that the peer is not such a peer and the session
/// stops reading until the runs drain; memory stays at 8 bytes a run.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    runs: VecDeque<(u32, u32)>,
}

impl Refusals {
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn push(&mut self, id: StreamId) {
        if let Some((first, count)) = self.runs.back_mut() {
            if first.wrapping_add(count.wrapping_mul(2)) == id.0 && *count < u32::MAX {
                *count += 1;
                return;
            }
        }
        self.runs.push_back((id.0, 1));
    }

    pub fn pop(&mut self) -> Option<StreamId> {
        let (first, count) = self.runs.front_mut()?;
        let id = StreamId(*first);
        *first = first.wrapping_add(2);
        *count -= 1;
        if *count == 0 {
            self.runs.pop_front();
            if self.runs.is_empty() && self.runs.capacity() > 64 {
                self.runs = VecDeque::new();
            }
        }
        Some(id)
    }

    pub fn clear(&mut self) {
        self.runs = VecDeque::new();
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

    #[test]
    fn refusals_coalesce_runs() {
        let mut r = Refusals::default();
        for id in (3..2003).step_by(2) {
            r.push(StreamId(id));
        }
        r.push(StreamId(4001));
        assert_eq!(r.len(), 2);
        let popped: Vec<u32> = std::iter::from_fn(|| r.pop()).map(|id| id.0).collect();
        assert_eq!(popped.len(), 1001);
        assert_eq!(popped[..2], [3, 5]);
        assert_eq!(*popped.last().unwrap(), 4001);
        assert!(r.is_empty());
    }
}
