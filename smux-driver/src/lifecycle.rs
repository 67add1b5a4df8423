//! The end of a connection: `close()`, transport failures, shutting the transport down, the
//! worker's result, and a worker dropped before the end.

use std::io;
use std::task::{Context, Poll};

use smux_proto::SessionEnd;

use crate::conn::{Conn, State};
use crate::error::worker_result;
use crate::waiters::Wakes;
use crate::{MuxError, MuxResult, TransportWrite};

impl State {
    /// The transport failed: the session ends.
    pub fn fail(&mut self, e: io::Error) {
        self.record_error(e);
        self.session.handle_transport_error();
        self.dispatch_events();
    }

    pub fn record_error(&mut self, e: io::Error) {
        let f = &mut self.failure;
        if f.msg.is_none() {
            f.msg = Some(e.to_string());
            f.kind = Some(e.kind());
            f.error = Some(e);
        }
    }

    /// What `close()` and `closed()` report once the session is over: the worker's result,
    /// with a transport error rebuilt from its kind and message (`io::Error` is not `Clone`).
    pub fn close_result(&self) -> MuxResult<()> {
        if self.abandoned {
            return Err(MuxError::ConnectionClosed);
        }
        if let (Some(kind), Some(msg)) = (self.failure.kind, &self.failure.msg) {
            return Err(MuxError::IoError(io::Error::new(kind, msg.clone())));
        }
        match self.session.end_reason() {
            Some(SessionEnd::Closed | SessionEnd::PeerClosed) | None => Ok(()),
            Some(end) => worker_result(end, None),
        }
    }

    /// The worker's result, once.
    pub fn take_result(&mut self) -> MuxResult<()> {
        if self.result_taken {
            return Ok(());
        }
        self.result_taken = true;
        let result = match (self.session.end_reason(), self.failure.error.take()) {
            // Data was lost on the way out: an orderly end is not one.
            (_, Some(e)) => Err(MuxError::IoError(e)),
            (Some(end), None) => worker_result(&end.clone(), None),
            (None, None) => Ok(()),
        };
        #[cfg(feature = "tracing")]
        match &result {
            Ok(()) => tracing::debug!(parent: &self.span, "session ended"),
            Err(e) => tracing::warn!(parent: &self.span, error = %e, "session ended"),
        }
        result
    }
}

impl<W: TransportWrite> Conn<W> {
    /// Closes the session in order: data already taken by writes reaches the wire, every open
    /// stream gets FIN, then the transport is shut down. Works without the worker. `Ok` once
    /// that is done (or was done before); an error if the session had ended otherwise, or the
    /// transport failed before all of it was written.
    pub fn poll_close(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        let mut key = Wakes::default();
        {
            let mut st = self.state(&mut key);
            if st.finished {
                return Poll::Ready(st.close_result());
            }
            if !st.session.is_closing() {
                st.session.close();
                // Accepts end and writes fail now: let their tasks see it.
                st.waiters.wake_acceptor();
                st.waiters.wake_writers();
            }
            st.dispatch_events();
        }
        let mut more = false;
        let mut held = false;
        if let Some(mut w) = self.writer(&mut key) {
            held = true;
            more = self.drive(&mut w, cx);
            if self.poll_finish(&mut w, cx).is_ready() {
                return Poll::Ready(w.state().close_result());
            }
        }
        let mut st = self.state(&mut key);
        if st.finished {
            return Poll::Ready(st.close_result());
        }
        // The transport may now hold this task's waker: hand the waiting back to the worker,
        // which would otherwise wait on readiness reported to a close() that may be gone.
        st.waiters.notify_worker();
        if more {
            // Stopped for the write budget, not for the transport: go on soon.
            cx.waker().wake_by_ref();
        } else {
            st.waiters.register_closer(cx);
        }
        drop(st);
        if !held && self.writer(&mut key).is_some() {
            // Whoever held the write side released it after we looked (a task that then
            // waits wakes the closers, but it may have looked before we registered): go on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Drains, then closes: no new streams either way from the first call; once every open
    /// stream is over in both directions and read, the session closes as `poll_close` does.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        let waiting = self.with_state(|st| {
            if !st.session.is_draining() {
                st.session.drain();
                // Waiting opens fail now; the acceptor still takes streams that arrived before.
                st.waiters.wake_openers();
            }
            let waiting = !st.finished && !st.session.is_closing() && !st.session.is_drained();
            if waiting {
                st.waiters.register_closer(cx);
            }
            waiting
        });
        if waiting {
            return Poll::Pending;
        }
        self.poll_close(cx)
    }

    /// Ready once the session has ended and nothing more will move, with what the worker
    /// reports (or `ConnectionClosed` if the worker was dropped).
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        self.with_state(|st| {
            if st.finished {
                return Poll::Ready(st.close_result());
            }
            st.waiters.register_closer(cx);
            Poll::Pending
        })
    }

    /// The worker is gone without finishing (or while lingering): nothing will move again.
    pub fn abandon(&self) {
        let mut key = Wakes::default();
        let mut w = self.writer_blocking(&mut key);
        let dead = {
            let (ws, mut st) = w.parts();
            if st.finished {
                None
            } else {
                st.abandoned = true;
                st.failure.msg = Some("the worker was dropped".into());
                st.session.handle_transport_error();
                st.dispatch_events();
                ws.finish(&mut st)
            }
        };
        drop(w);
        drop(dead);
    }
}
