//! The end of a connection: `close()`, transport failures, shutting the transport down, the
//! worker's result, and a worker dropped before the end.

use std::io;
use std::task::{Context, Poll};

use smux_proto::SessionEnd;

use crate::conn::{Conn, IoState, State};
use crate::error::worker_result;
use crate::wakers::Wakes;
use crate::{MuxError, MuxResult, Transport};

impl State {
    pub fn record_error(&mut self, e: io::Error) {
        if self.transport_error_msg.is_none() {
            self.transport_error_msg = Some(e.to_string());
            self.transport_error_kind = Some(e.kind());
            self.transport_error = Some(e);
        }
    }

    /// What `close()` and `closed()` report once the session is over: the worker's result,
    /// with a transport error rebuilt from its kind and message (`io::Error` is not `Clone`).
    pub fn close_result(&self) -> MuxResult<()> {
        if self.abandoned {
            return Err(MuxError::ConnectionClosed);
        }
        if let (Some(kind), Some(msg)) = (self.transport_error_kind, &self.transport_error_msg) {
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
        let result = match (self.session.end_reason(), self.transport_error.take()) {
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

/// Records a transport failure: the session ends and unwritten output is dropped.
pub(crate) fn fail<T>(io: &mut IoState<T>, st: &mut State, e: io::Error) {
    st.record_error(e);
    st.session.handle_transport_error();
    io.out.clear();
    st.dispatch_events();
}

/// Nothing more will move: mark the end, wake everyone (the worker too), and hand back the
/// transport for the caller to drop once it holds no lock (dropping it may be a syscall), or
/// keep it for the worker to linger on (`Conn::poll_linger`).
fn finish<T>(io: &mut IoState<T>, st: &mut State, linger: bool) -> Option<T> {
    st.finished = true;
    io.out.clear();
    st.wake_all();
    st.wakes.take(&mut st.worker_waker);
    if linger {
        None
    } else {
        io.io.take()
    }
}

impl<T: Transport> Conn<T> {
    /// Once the session has ended and its output is written: flushes and shuts down the
    /// transport (after an orderly end), drops it, and wakes everyone. The transport's calls
    /// are made without the state lock.
    pub fn poll_finish(
        &self,
        io: &mut IoState<T>,
        wakes: &mut Wakes,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let (orderly, ours) = {
            let st = self.state(wakes);
            if st.finished {
                return Poll::Ready(());
            }
            if !st.session.is_ended() {
                return Poll::Pending;
            }
            (
                st.ended_orderly() && st.transport_error.is_none(),
                matches!(st.session.end_reason(), Some(SessionEnd::Closed)),
            )
        };
        let mut shut = Ok(());
        if let (true, Some(t)) = (orderly, io.io.as_mut()) {
            if !io.out.is_empty() {
                return Poll::Pending;
            }
            shut = match t.poll_flush(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => match t.poll_shutdown(cx) {
                    Poll::Pending => return Poll::Pending,
                    // The peer may have closed first; shutting down is then moot.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    Poll::Ready(r) => r,
                },
                Poll::Ready(Err(e)) => Err(e),
            };
        }
        let dead = {
            let mut st = self.state(wakes);
            // We ended first: the peer may still be sending, so linger (unless told not to).
            let linger = orderly && ours && shut.is_ok() && !self.linger.is_zero();
            if let Err(e) = shut {
                st.record_error(e);
            }
            finish(io, &mut st, linger)
        };
        drop(dead);
        Poll::Ready(())
    }

    /// Closes the session in order: data already taken by writes reaches the wire, every open
    /// stream gets FIN, then the transport is shut down. Works without the worker. `Ok` once
    /// that is done (or was done before); an error if the session had ended otherwise, or the
    /// transport failed before all of it was written.
    pub fn poll_close(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        let mut wakes = Wakes::default();
        {
            let mut st = self.state(&mut wakes);
            if st.finished {
                return Poll::Ready(st.close_result());
            }
            if !st.session.is_closing() {
                st.session.close();
                // Accepts end and writes fail now: let their tasks see it.
                let st = &mut *st;
                st.wakes.take(&mut st.accept_waker);
                st.wake_writers();
            }
            st.dispatch_events();
        }
        let mut more = false;
        let mut held = false;
        if let Some(mut io) = self.try_io() {
            held = true;
            let io = &mut *io;
            more = self.drive_output(io, &mut wakes, cx);
            if self.poll_finish(io, &mut wakes, cx).is_ready() {
                return Poll::Ready(self.state(&mut wakes).close_result());
            }
        }
        let mut st = self.state(&mut wakes);
        if st.finished {
            return Poll::Ready(st.close_result());
        }
        // The transport may now hold this task's waker: hand the waiting back to the worker,
        // which would otherwise wait on readiness reported to a close() that may be gone.
        st.notify_worker();
        if more {
            // Stopped for the write budget, not for the transport: go on soon.
            cx.waker().wake_by_ref();
        } else {
            st.register_closer(cx);
        }
        drop(st);
        if !held && self.try_io().is_some() {
            // Whoever held the transport released it after we looked (a task that then waits
            // wakes the closers, but it may have looked before we registered): go on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Drains, then closes: no new streams either way from the first call; once every open
    /// stream is over in both directions and read, the session closes as `poll_close` does.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        let mut wakes = Wakes::default();
        {
            let mut st = self.state(&mut wakes);
            if !st.session.is_draining() {
                st.session.drain();
                // Waiting opens fail now; the acceptor still takes streams that arrived before.
                let st = &mut *st;
                for (_, w) in &mut st.open_waiters {
                    st.wakes.take(w);
                }
            }
            if !st.finished && !st.session.is_closing() && !st.session.is_drained() {
                st.register_closer(cx);
                return Poll::Pending;
            }
        }
        self.poll_close(cx)
    }

    /// Ready once the session has ended and nothing more will move, with what the worker
    /// reports (or `ConnectionClosed` if the worker was dropped).
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        if st.finished {
            return Poll::Ready(st.close_result());
        }
        st.register_closer(cx);
        Poll::Pending
    }

    /// The worker is gone without finishing (or while lingering): nothing will move again.
    pub fn abandon(&self) {
        let mut wakes = Wakes::default();
        let mut io = self.io();
        let dead = {
            let mut st = self.state(&mut wakes);
            if st.finished {
                // Dropped while lingering: stop.
                io.io.take()
            } else {
                st.abandoned = true;
                st.transport_error_msg = Some("the worker was dropped".into());
                st.session.handle_transport_error();
                st.dispatch_events();
                finish(&mut io, &mut st, false)
            }
        };
        drop(io);
        drop(dead);
    }
}
