//! Opening streams (`connect()`, `open()` and its line of waiters) and accepting them.

use std::task::{Context, Poll};

use smux_proto::{OpenError, StreamId};

use crate::conn::{Conn, State};
use crate::{MuxError, MuxResult, TransportWrite};

/// Opens a stream in the session, with a slot for its handle.
fn open_stream(st: &mut State) -> MuxResult<StreamId> {
    let id = st.session.open().map_err(|e| match e {
        OpenError::IdsExhausted => MuxError::StreamIdsExhausted,
        OpenError::TooManyStreams { .. } => MuxError::TooManyStreams,
        OpenError::Draining => MuxError::Draining,
        _ => MuxError::ConnectionClosed,
    })?;
    st.waiters.add_stream(id);
    st.handles += 1;
    st.waiters.notify_worker();
    crate::trace::event_debug!(st, stream = id.0, "stream opened");
    Ok(id)
}

impl<W: TransportWrite> Conn<W> {
    /// Opens a stream. While `open()` calls wait for room, they go first: this fails with
    /// `TooManyStreams`.
    pub fn connect(&self) -> MuxResult<StreamId> {
        self.with_state(|st| {
            if st.waiters.has_openers() && !st.session.is_closing() {
                return Err(MuxError::TooManyStreams);
            }
            open_stream(st)
        })
    }

    /// Opens a stream once the stream limit leaves room, after the `open()` calls that came
    /// first. `ticket` is the caller's place in line, `None` before the first poll; pass it to
    /// [`Conn::cancel_open`] if the caller gives up.
    pub fn poll_open(
        &self,
        ticket: &mut Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<MuxResult<StreamId>> {
        self.with_state(|st| {
            let refused = if st.session.is_closing() || st.finished {
                Some(MuxError::ConnectionClosed)
            } else if st.session.is_draining() {
                Some(MuxError::Draining)
            } else {
                None
            };
            if let Some(e) = refused {
                if let Some(t) = ticket.take() {
                    st.waiters.leave_open(t);
                }
                return Poll::Ready(Err(e));
            }
            let front = st.waiters.first_opener();
            if front.is_none() || front == *ticket {
                let opened = open_stream(st);
                if !matches!(opened, Err(MuxError::TooManyStreams)) {
                    if let Some(t) = ticket.take() {
                        st.waiters.leave_open(t);
                    }
                    // There may be room for the next one too (or it must hear of the end).
                    st.waiters.wake_opener(&st.session);
                    return Poll::Ready(opened);
                }
            }
            st.waiters.wait_open(ticket, cx);
            Poll::Pending
        })
    }

    /// An `open()` gave up its place in line.
    pub fn cancel_open(&self, ticket: u64) {
        self.with_state(|st| {
            if st.waiters.leave_open(ticket) {
                st.waiters.wake_opener(&st.session);
            }
        })
    }

    /// Takes the next peer-opened stream; `None` once the session is closing or over and no
    /// stream that arrived before waits.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<StreamId>> {
        self.with_state(|st| match st.session.accept() {
            Some(id) => {
                crate::trace::event_debug!(st, stream = id.0, "stream accepted");
                st.waiters.add_stream(id);
                st.handles += 1;
                // A SYN held for room in the backlog can be taken now.
                if st.paused_input_can_go_on() {
                    st.waiters.notify_worker();
                }
                Poll::Ready(Some(id))
            }
            None if st.session.is_closing() || st.finished => Poll::Ready(None),
            None => {
                st.waiters.register_acceptor(cx);
                Poll::Pending
            }
        })
    }
}
