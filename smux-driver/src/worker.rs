//! The worker future: the connection's I/O loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::conn::Conn;
use crate::input::Reader;
use crate::sync::Arc;
use crate::wakers::Wakes;
use crate::{Adapter, MuxResult, Runtime};

type Sleep<A> = <<A as Adapter>::Runtime as Runtime>::Sleep;

/// Drives one connection: reads the transport into the session, writes the session's frames
/// to the transport, runs the timers. It ends when the session does (all handles dropped,
/// `close()`, the peer closing the transport, a keep-alive timeout, a protocol or transport
/// error) with `Ok` for an orderly end.
#[must_use = "the worker does nothing unless polled: spawn it"]
pub struct Worker<A: Adapter> {
    conn: Arc<Conn<A::Io>>,
    reader: Reader,
    sleep: Option<(Sleep<A>, Instant)>,
    /// This poll yielded once before writing; the next one writes.
    deferred: bool,
    done: bool,
}

impl<A: Adapter> Worker<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Io>>) -> Self {
        Worker {
            conn,
            reader: Reader::default(),
            sleep: None,
            deferred: false,
            done: false,
        }
    }

    /// Timers, and the end once every handle is gone. Returns the result once finished.
    fn housekeeping(
        &mut self,
        wakes: &mut Wakes,
        cx: &Context<'_>,
        now: Instant,
    ) -> Option<MuxResult<()>> {
        let mut st = self.conn.state(wakes);
        st.register_worker(cx);
        if st.finished {
            self.done = true;
            return Some(st.take_result());
        }
        if st.session.poll_timeout().is_some_and(|t| t <= now) {
            st.session.handle_timeout(now);
            st.dispatch_events();
        }
        if st.handles == 0 && !st.session.is_closing() {
            st.session.close();
        }
        None
    }

    /// Writes what is queued; returns whether a budget ran out with more to write.
    fn write(&mut self, wakes: &mut Wakes, cx: &mut Context<'_>) -> bool {
        let conn = &*self.conn;
        let mut io = conn.io();
        let io = &mut *io;
        let more = conn.drive_output(io, wakes, cx);
        let ended = conn.state(wakes).session.is_ended();
        if ended {
            let _ = conn.poll_finish(io, wakes, cx);
        }
        more
    }

    /// Sleeps until the next timer, if any (reads, writes and handles wake us otherwise).
    fn sleep(&mut self, wakes: &mut Wakes, cx: &mut Context<'_>) {
        let Some(deadline) = self.conn.state(wakes).session.poll_timeout() else {
            return;
        };
        let sleep = match &mut self.sleep {
            Some((sleep, at)) => {
                if *at != deadline {
                    A::Runtime::reset(sleep, deadline);
                    *at = deadline;
                }
                sleep
            }
            None => {
                &mut self
                    .sleep
                    .insert((A::Runtime::sleep_until(deadline), deadline))
                    .0
            }
        };
        if A::Runtime::poll_sleep(sleep, cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }
}

impl<A: Adapter> Future for Worker<A> {
    type Output = MuxResult<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let mut wakes = Wakes::default();
        let now = A::Runtime::now();
        if let Some(result) = this.housekeeping(&mut wakes, cx, now) {
            return Poll::Ready(result);
        }
        let mut more = this.conn.drive_input(&mut this.reader, &mut wakes, cx, now);
        let has_output = {
            let pulled = this.conn.try_io().is_none_or(|io| !io.out.is_empty());
            pulled || this.conn.state(&mut wakes).session.has_output()
        };
        if !this.deferred && has_output {
            // Let the tasks this poll woke, and those already queued, add their frames first,
            // so that they share one write: an echo then costs one write per side, not one per
            // task that touched the connection.
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.deferred = false;
        more |= this.write(&mut wakes, cx);
        let mut st = this.conn.state(&mut wakes);
        if st.finished {
            this.done = true;
            return Poll::Ready(st.take_result());
        }
        // Writing may have made room for input that waited (refusals of peer SYNs).
        more |= st.paused_input_can_go_on();
        drop(st);
        if more {
            // A budget ran out with work left: yield to the other tasks, then go on.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.sleep(&mut wakes, cx);
        Poll::Pending
    }
}

impl<A: Adapter> Drop for Worker<A> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.abandon();
        }
    }
}
