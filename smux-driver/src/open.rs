//! Opening streams (`connect()`, `open()` and its line of waiters) and accepting them.

use std::task::{Context, Poll};

use smux_proto::{OpenError, StreamId};

use crate::conn::{Conn, State};
use crate::wakers::{Slot, Wakes};
use crate::{MuxError, MuxResult, Transport};

/// Opens a stream in the session, with a slot for its handle.
fn open_stream(st: &mut State) -> MuxResult<StreamId> {
    let id = st.session.open().map_err(|e| match e {
        OpenError::IdsExhausted => MuxError::StreamIdsExhausted,
        OpenError::TooManyStreams { .. } => MuxError::TooManyStreams,
        OpenError::Draining => MuxError::Draining,
        _ => MuxError::ConnectionClosed,
    })?;
    st.slots.insert(id.0, Slot::default());
    st.handles += 1;
    st.notify_worker();
    crate::trace::event_debug!(st, stream = id.0, "stream opened");
    Ok(id)
}

impl<T: Transport> Conn<T> {
    /// Opens a stream. While `open()` calls wait for room, they go first: this fails with
    /// `TooManyStreams`.
    pub fn connect(&self) -> MuxResult<StreamId> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        if !st.open_waiters.is_empty() && !st.session.is_closing() {
            return Err(MuxError::TooManyStreams);
        }
        open_stream(&mut st)
    }

    /// Opens a stream once the stream limit leaves room, after the `open()` calls that came
    /// first. `ticket` is the caller's place in line, `None` before the first poll; pass it to
    /// [`Conn::cancel_open`] if the caller gives up.
    pub fn poll_open(
        &self,
        ticket: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<MuxResult<StreamId>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        let refused = if st.session.is_closing() || st.finished {
            Some(MuxError::ConnectionClosed)
        } else if st.session.is_draining() {
            Some(MuxError::Draining)
        } else {
            None
        };
        if let Some(e) = refused {
            if let Some(t) = ticket.take() {
                st.open_waiters.retain(|w| w.0 != t);
            }
            return Poll::Ready(Err(e));
        }
        let front = st.open_waiters.front().map(|w| w.0);
        if front.is_none() || front == *ticket {
            let opened = open_stream(&mut st);
            if !matches!(opened, Err(MuxError::TooManyStreams)) {
                if ticket.take().is_some() {
                    st.open_waiters.pop_front();
                }
                // There may be room for the next one too (or it must hear of the end).
                st.wake_opener();
                return Poll::Ready(opened);
            }
        }
        let t = *ticket.get_or_insert_with(|| {
            st.next_open_ticket += 1;
            st.next_open_ticket
        });
        let st = &mut *st;
        match st.open_waiters.iter_mut().find(|w| w.0 == t) {
            Some((_, w)) => st.wakes.register(w, cx),
            None => st.open_waiters.push_back((t, Some(cx.waker().clone()))),
        }
        Poll::Pending
    }

    /// An `open()` gave up its place in line.
    pub fn cancel_open(&self, ticket: u64) {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        if let Some(i) = st.open_waiters.iter().position(|w| w.0 == ticket) {
            let _ = st.open_waiters.remove(i);
            if i == 0 {
                st.wake_opener();
            }
        }
    }

    /// Takes the next peer-opened stream; `None` once the session is closing or over and no
    /// stream that arrived before waits.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<StreamId>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        match st.session.accept() {
            Some(id) => {
                crate::trace::event_debug!(st, stream = id.0, "stream accepted");
                st.slots.insert(id.0, Slot::default());
                st.handles += 1;
                // A SYN held for room in the backlog can be taken now.
                if st.paused_input_can_go_on() {
                    st.notify_worker();
                }
                Poll::Ready(Some(id))
            }
            None if st.session.is_closing() || st.finished => Poll::Ready(None),
            None => {
                let st = &mut *st;
                st.wakes.register(&mut st.accept_waker, cx);
                Poll::Pending
            }
        }
    }
}
