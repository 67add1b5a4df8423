//! Input: reading the transport into recycled pages and feeding the session. Only the worker
//! reads, so all of this is the worker's own, outside both locks; the transport lock is held
//! for each read alone.

use std::collections::VecDeque;
use std::io;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::conn::Conn;
use crate::lifecycle::fail;
use crate::wakers::Wakes;
use crate::Transport;

/// Bytes asked of the transport per read. Payloads of at least a quarter of this are kept
/// without copying (see `smux_proto`'s decoder), so a kept slice pins at most four times its
/// size.
const PAGE: usize = 64 * 1024;
/// Pages remembered for reuse; older ones still in use are left to their readers (and freed
/// when they are done). This many pages may be held while nothing is read.
const MAX_PAGES: usize = 4;
/// Reads per worker round, so that one busy connection cannot starve the runtime.
const MAX_READS: usize = 4;

/// Read buffers: each read fills a whole page, zeroed once when allocated and reused, without
/// zeroing, once the session has dropped every slice of it. Payloads it keeps are slices of a
/// page, so a page is free again once the application has read them.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// Pages handed out, oldest first.
    pages: VecDeque<Bytes>,
    /// A page taken for a read that brought nothing.
    spare: Option<BytesMut>,
    /// What the session has not taken of the last read.
    input: Bytes,
    eof: bool,
}

impl Reader {
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

impl<T: Transport> Conn<T> {
    /// Reads from the transport and feeds the session, while it takes input. Returns whether
    /// it stopped for its budget with the transport perhaps still readable: otherwise the
    /// transport, a stream read or an accept wakes the worker when there is more to do.
    pub fn drive_input(
        &self,
        r: &mut Reader,
        wakes: &mut Wakes,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> bool {
        let mut reads = 0;
        loop {
            {
                let mut st = self.state(wakes);
                st.last_now = now;
                if st.session.is_ended() {
                    return false;
                }
                if !st.session.wants_input() {
                    st.read_paused = true;
                    return false;
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
                    // A frame may wait with all of the input taken (a SYN for a full backlog
                    // at the end of a read): paused all the same, so that an accept or a
                    // timer resumes it.
                    if !r.input.is_empty() || !st.session.wants_input() {
                        st.read_paused = true;
                        return false;
                    }
                }
            }
            if r.eof {
                return false;
            }
            if reads == MAX_READS {
                return true;
            }
            reads += 1;
            let mut page = r.page();
            let mut io = self.io();
            let Some(t) = io.io.as_mut() else {
                return false;
            };
            let res = t.poll_read(cx, &mut page[..]);
            match res {
                Poll::Ready(Ok(0)) => {
                    drop(io);
                    r.eof = true;
                    let mut st = self.state(wakes);
                    st.session.handle_eof();
                    st.dispatch_events();
                    return false;
                }
                Poll::Ready(Ok(n)) => {
                    drop(io);
                    let page = page.freeze();
                    r.input = page.slice(..n);
                    r.pages.push_back(page);
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    r.spare = Some(page);
                    reads -= 1;
                }
                Poll::Ready(Err(e)) => {
                    fail(&mut io, &mut self.state(wakes), e);
                    return false;
                }
                Poll::Pending => {
                    r.spare = Some(page);
                    return false;
                }
            }
        }
    }
}

impl<T: Transport> Conn<T> {
    /// After an orderly end we began: reads and drops what the peer still sends, until its
    /// end of input (or a failure), so that closing the transport with unread input does not
    /// make the kernel reset the connection and throw away what the peer has not read yet.
    /// `Ready` once the peer's end is seen (or there is no transport); `Pending` with the
    /// task woken when the read budget ran out.
    pub fn poll_linger(&self, r: &mut Reader, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..MAX_READS {
            if r.eof {
                return Poll::Ready(());
            }
            let mut page = r.page();
            let mut io = self.io();
            let Some(t) = io.io.as_mut() else {
                return Poll::Ready(());
            };
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
        let mut r = Reader::default();
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
        let mut r = Reader::default();
        let page = r.page();
        let p = page.as_ptr();
        r.spare = Some(page);
        assert_eq!(r.page().as_ptr(), p);
    }

    #[test]
    fn pages_in_use_are_forgotten_past_the_limit() {
        let mut r = Reader::default();
        let mut kept = Vec::new();
        for _ in 0..MAX_PAGES * 2 {
            let page = r.page().freeze();
            kept.push(page.slice(..1));
            r.pages.push_back(page);
        }
        assert!(r.remembered() <= MAX_PAGES + 1);
    }
}
