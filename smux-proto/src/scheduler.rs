//! The send scheduler: which frame goes out next. Its queues of stream ids (`table.rs`) hold
//! control frames owed, data ready to send and writers waiting for the session's output queue
//! to drain; refused peer SYNs wait here as runs of ids.

use std::collections::VecDeque;

use crate::stream::Stream;
use crate::table::{IdQueue, Queue, Streams};
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
        if s.sched.contains(Queue::Fresh.bit()) || s.sched.contains(Queue::Ready.bit()) {
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
