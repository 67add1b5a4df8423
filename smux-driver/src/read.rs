//! The read side: the transport's read half, the pages it reads into, and feeding the
//! session. The worker owns it outright: no lock is taken to read, and a read never waits
//! for a write.

use std::collections::VecDeque;
use std::io;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::conn::{Conn, State};
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::Mutex;
use crate::waiters::Wakes;
use crate::{MuxResult, TransportRead, TransportWrite};

/// Bytes asked of the transport per read. Payloads of at least a quarter of this are kept
/// without copying (see `smux_proto`'s decoder), so a kept slice pins at most four times its
/// size.
const PAGE: usize = 64 * 1024;
/// Pages remembered for reuse; older ones still in use are left to their readers (and freed
/// when they are done). This many pages may be held while nothing is read.
const MAX_PAGES: usize = 4;
/// Reads per worker round, so that one busy connection cannot starve the runtime.
const MAX_READS: usize = 4;

/// How a round of input ended.
pub(crate) enum Input {
    /// The session ended before it: the worker's result.
    Ended(MuxResult<()>),
    /// It stopped for its budget, with the transport perhaps still readable.
    Budget,
    /// Nothing more to read for now (the transport, a stream read or an accept wakes the
    /// worker when there is); whether the session has something to write (or has ended, and
    /// the transport is to be shut down).
    Stopped(bool),
}

/// The transport's read half, and what was read from it.
#[derive(Debug)]
pub(crate) struct ReadSide<R> {
    /// Dropped with the worker, or once the session is over and lingering is done.
    io: Option<R>,
    pages: Pages,
    /// The waker the transport's reads get.
    wake: std::sync::Arc<ReadWake>,
    waker: Waker,
    /// The last read returned `Pending`: until [`ReadWake`] fires, there is nothing to read.
    armed: bool,
}

/// The waker the worker gives the transport's reads: it notes that the transport woke the
/// worker before waking it. While the last read returned `Pending` and this has not fired,
/// the transport has nothing new (it wakes the last waker it was given, this one), so a poll
/// of the worker for another reason (a stream queued a frame) does not read.
///
/// Every write of `fired` is a read-modify-write: the transport may wake it from another
/// thread with no other ordering to the worker (a stream's task that wrote to the transport,
/// say), and plain stores from two threads may then be ordered either way, so that the worker's
/// earlier "not fired" would overwrite the wake's "fired" and the read it calls for be skipped
/// for good. Read-modify-writes of one atomic follow each other (the loom model (e) found it).
#[derive(Debug, Default)]
struct ReadWake {
    fired: AtomicBool,
    /// The worker's own waker, as of its last poll.
    worker: Mutex<Option<Waker>>,
}

impl Wake for ReadWake {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.fired.swap(true, Ordering::AcqRel);
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &*worker {
            w.wake_by_ref();
        }
    }
}

impl<R> ReadSide<R> {
    pub fn new(io: R) -> Self {
        let wake = std::sync::Arc::new(ReadWake::default());
        ReadSide {
            io: Some(io),
            pages: Pages::default(),
            waker: Waker::from(std::sync::Arc::clone(&wake)),
            wake,
            armed: false,
        }
    }

    /// Whether a read may find something: the last one did not return `Pending`, or the
    /// transport woke us since. Keeps the worker's waker for the transport's wake.
    fn may_read(wake: &ReadWake, armed: bool, cx: &Context<'_>) -> bool {
        {
            let mut worker = wake.worker.lock().unwrap_or_else(|e| e.into_inner());
            match &*worker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *worker = Some(cx.waker().clone()),
            }
        }
        !armed || wake.fired.swap(false, Ordering::AcqRel)
    }

    /// Drops the read half.
    pub fn close(&mut self) {
        self.io = None;
    }

    pub fn is_open(&self) -> bool {
        self.io.is_some()
    }
}

/// Read buffers: each read fills a whole page, zeroed once when allocated and reused, without
/// zeroing, once the session has dropped every slice of it. Payloads it keeps are slices of a
/// page, so a page is free again once the application has read them.
#[derive(Debug, Default)]
struct Pages {
    /// Pages handed out, oldest first.
    pages: VecDeque<Bytes>,
    /// A page taken for a read that brought nothing.
    spare: Option<BytesMut>,
    /// What the session has not taken of the last read.
    input: Bytes,
    eof: bool,
}

impl Pages {
    /// A page to read into: the oldest one if nothing uses it any more, else a new one.
    fn page(&mut self) -> BytesMut {
        if let Some(page) = self.spare.take() {
            return page;
        }
        if let Some(oldest) = self.pages.pop_front() {
            match oldest.try_into_mut() {
                Ok(page) if page.len() == PAGE => return page,
                Ok(_) => {}
                Err(oldest) if self.pages.len() + 1 < MAX_PAGES => self.pages.push_front(oldest),
                Err(_) => {}
            }
        }
        BytesMut::zeroed(PAGE)
    }

    /// Pages allocated and remembered (for tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.pages.len()
    }
}

impl<R: TransportRead> ReadSide<R> {
    /// Reads from the transport and feeds the session, while it takes input. `first` runs
    /// under the first state lock taken (the worker's timers and end); if it returns the
    /// result of an end, nothing is read. The state lock is taken once, plus once per read
    /// that brought bytes. The tasks it wakes are queued in `key`.
    pub fn drive<W: TransportWrite>(
        &mut self,
        conn: &Conn<W>,
        key: &mut Wakes,
        cx: &mut Context<'_>,
        now: Instant,
        first: impl FnOnce(&mut State, &Context<'_>) -> Option<MuxResult<()>>,
    ) -> Input {
        let r = &mut self.pages;
        let mut st = conn.state(key);
        if let Some(end) = first(&mut st, cx) {
            return Input::Ended(end);
        }
        let mut reads = 0;
        loop {
            st.last_now = now;
            if st.session.is_ended() || !st.session.wants_input() {
                st.read_paused |= !st.session.is_ended();
                return Input::Stopped(st.wants_write());
            }
            if st.read_paused || !r.input.is_empty() {
                // Resume a held-back frame, then what is left of the last read.
                st.read_paused = false;
                st.session.handle_input(now, &mut r.input);
                st.dispatch_events();
                if r.input.is_empty() {
                    // An empty slice still pins its page: let the page be reused.
                    r.input = Bytes::new();
                }
                // A frame may wait with all of the input taken (a SYN for a full backlog at
                // the end of a read): paused all the same, so that an accept or a timer
                // resumes it.
                if !r.input.is_empty() || !st.session.wants_input() {
                    st.read_paused = true;
                    return Input::Stopped(st.wants_write());
                }
            }
            if r.eof {
                return Input::Stopped(st.wants_write());
            }
            if reads == MAX_READS {
                return Input::Budget;
            }
            reads += 1;
            let Some(t) = self.io.as_mut() else {
                return Input::Stopped(st.wants_write());
            };
            if reads == 1 && !Self::may_read(&self.wake, self.armed, cx) {
                return Input::Stopped(st.wants_write());
            }
            let wants_write = st.wants_write();
            drop(st);
            let mut page = r.page();
            self.wake.fired.swap(false, Ordering::AcqRel);
            let read = t.poll_read(&mut Context::from_waker(&self.waker), &mut page[..]);
            self.armed = read.is_pending();
            if read.is_pending() {
                r.spare = Some(page);
                return Input::Stopped(wants_write);
            }
            st = conn.state(key);
            match read {
                Poll::Ready(Ok(0)) => {
                    r.eof = true;
                    st.session.handle_eof();
                    st.dispatch_events();
                    return Input::Stopped(st.wants_write());
                }
                Poll::Ready(Ok(n)) => {
                    let page = page.freeze();
                    r.input = page.slice(..n);
                    r.pages.push_back(page);
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    r.spare = Some(page);
                    reads -= 1;
                }
                Poll::Ready(Err(e)) => {
                    st.fail(e);
                    // Ended: the write side is to be finished.
                    return Input::Stopped(st.wants_write());
                }
                Poll::Pending => unreachable!("returned above"),
            }
        }
    }

    /// After an orderly end we began: reads and drops what the peer still sends, until its
    /// end of input (or a failure), so that closing the transport with unread input does not
    /// make the kernel reset the connection and throw away what the peer has not read yet.
    /// `Ready` once the peer's end is seen (or there is no transport); `Pending` with the
    /// task woken when the read budget ran out.
    pub fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let r = &mut self.pages;
        for _ in 0..MAX_READS {
            let Some(t) = self.io.as_mut() else {
                return Poll::Ready(());
            };
            if r.eof {
                return Poll::Ready(());
            }
            let mut page = r.page();
            match t.poll_read(cx, &mut page[..]) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => r.eof = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    r.spare = Some(page);
                    return Poll::Pending;
                }
            }
            r.spare = Some(page);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_reused_once_its_slices_are_dropped_and_not_before() {
        let mut r = Pages::default();
        let mut page = r.page();
        page[..3].copy_from_slice(b"abc");
        let first = page.as_ptr();
        let page = page.freeze();
        let kept = page.slice(..3);
        r.pages.push_back(page);
        // In use: a new page.
        let other = r.page();
        assert_ne!(other.as_ptr(), first);
        drop(other);
        drop(kept);
        // Free: the same memory, its bytes as they were (not zeroed again).
        let again = r.page();
        assert_eq!(again.as_ptr(), first);
        assert_eq!(&again[..3], b"abc");
        assert_eq!(again.len(), PAGE);
    }

    #[test]
    fn a_page_that_read_nothing_is_kept() {
        let mut r = Pages::default();
        let page = r.page();
        let p = page.as_ptr();
        r.spare = Some(page);
        assert_eq!(r.page().as_ptr(), p);
    }

    #[test]
    fn pages_in_use_are_forgotten_past_the_limit() {
        let mut r = Pages::default();
        let mut kept = Vec::new();
        for _ in 0..MAX_PAGES * 2 {
            let page = r.page().freeze();
            kept.push(page.slice(..1));
            r.pages.push_back(page);
        }
        assert!(r.remembered() <= MAX_PAGES + 1);
    }
}
