//! The worker future: the connection's I/O loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::conn::{Conn, State};
use crate::read::{Input, ReadSide};
use crate::sync::atomic::Ordering;
use crate::sync::Arc;
use crate::waiters::Wakes;
use crate::{Adapter, MuxResult, Runtime};

type Sleep<A> = <<A as Adapter>::Runtime as Runtime>::Sleep;

/// Drives one connection: reads the transport into the session, writes the session's frames
/// to the transport, runs the timers. It ends when the session does (all handles dropped,
/// `close()`, the peer closing the transport, a keep-alive timeout, a protocol or transport
/// error) with `Ok` for an orderly end.
///
/// **Never spawned** (or never polled): nothing reads the transport, so reads, accepts and
/// `closed()` wait for ever, no timer runs (no keep-alive), and small writes stay queued
/// until a task flushes (a flushing task writes the queue itself, and a write of a frame or
/// more goes straight to the transport). `close()` still works: it writes what is queued and
/// shuts the transport down from the calling task.
///
/// **Dropped** (before it finished, polled or not): the session ends at once, as if the
/// transport had failed: queued output is dropped, the transport is dropped, `connect()` and
/// `open()` fail with `ConnectionClosed`, reads return what had arrived and then an error,
/// writes fail, and `close()` and `closed()` report `ConnectionClosed`.
#[must_use = "the worker does nothing unless polled: spawn it"]
pub struct Worker<A: Adapter> {
    conn: Arc<Conn<A::Write>>,
    /// The transport's read side: the worker's alone.
    read: ReadSide<A::Read>,
    sleep: Option<(Sleep<A>, Instant)>,
    /// This poll yielded once before writing; the next one writes.
    deferred: bool,
    /// Whether to yield before writing ([`Runtime::batch_by_yielding`]), asked at the first
    /// poll.
    batch: Option<bool>,
    /// The session is over: the result to return once the transport is dropped.
    ending: Option<MuxResult<()>>,
    /// When lingering on the transport after an orderly end we began stops at the latest.
    linger_until: Option<Instant>,
    done: bool,
    /// The session's span, entered while the worker runs (feature `tracing`).
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl<A: Adapter> Worker<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Write>>, read: A::Read) -> Self {
        #[cfg(feature = "tracing")]
        let span = conn.with_state(|st| st.span.clone());
        Worker {
            conn,
            read: ReadSide::new(read),
            sleep: None,
            deferred: false,
            batch: None,
            ending: None,
            linger_until: None,
            done: false,
            #[cfg(feature = "tracing")]
            span,
        }
    }

    /// Timers, and the end once every handle is gone. Returns the result once finished.
    fn housekeeping(st: &mut State, cx: &Context<'_>, now: Instant) -> Option<MuxResult<()>> {
        st.waiters.register_worker(cx);
        if st.finished {
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

    /// Writes what is queued; returns whether a budget ran out with more to write. If a
    /// handle holds the write side, it writes, and wakes the worker as it lets go.
    fn write(&mut self, wakes: &mut Wakes, cx: &mut Context<'_>) -> bool {
        let conn = &*self.conn;
        let Some(mut w) = conn.writer_or_hand_off(wakes) else {
            return false;
        };
        let more = conn.drive(&mut w, cx);
        if w.state().session.is_ended() {
            let _ = conn.poll_finish(&mut w, cx);
        }
        more
    }

    /// Sleeps until `deadline`, if any (reads, writes and handles wake us otherwise).
    fn sleep(&mut self, deadline: Option<Instant>, cx: &mut Context<'_>) {
        if let Some(deadline) = deadline {
            if self.poll_sleep(deadline, cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
    }

    /// Polls the worker's one timer, set to `deadline`.
    fn poll_sleep(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
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
        A::Runtime::poll_sleep(sleep, cx)
    }

    /// The session is over with `result`: lingers on the read side if the end was ours and
    /// orderly (until the peer's end, at most `Conn::linger`), drops it, and returns `result`.
    fn poll_end(&mut self, result: MuxResult<()>, cx: &mut Context<'_>) -> Poll<MuxResult<()>> {
        if self.read.is_open() && self.conn.with_state(|st| st.linger) {
            let now = A::Runtime::now();
            let until = *self.linger_until.get_or_insert(now + self.conn.linger);
            let peer_done = self.read.poll_linger(cx).is_ready();
            if !peer_done && now < until && self.poll_sleep(until, cx).is_pending() {
                self.ending = Some(result);
                return Poll::Pending;
            }
        }
        self.read.close();
        self.done = true;
        Poll::Ready(result)
    }
}

impl<A: Adapter> Future for Worker<A> {
    type Output = MuxResult<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        #[cfg(feature = "tracing")]
        let _span = this.span.clone().entered();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        if let Some(result) = this.ending.take() {
            return this.poll_end(result, cx);
        }
        let now = A::Runtime::now();
        // The tasks this poll wakes run once it is over, every lock released: on several
        // threads, they then queue their frames for the worker's next write rather than race
        // with this one.
        let mut key = Wakes::default();
        let input = this.read.drive(&this.conn, &mut key, cx, now, |st, cx| {
            Self::housekeeping(st, cx, now)
        });
        let (mut more, has_output) = match input {
            Input::Ended(result) => {
                drop(key);
                return this.poll_end(result, cx);
            }
            Input::Budget => (true, true),
            Input::Stopped(has_output) => (false, has_output),
        };
        let batch = *this.batch.get_or_insert_with(A::Runtime::batch_by_yielding);
        if batch && !this.deferred && has_output {
            // Let the tasks this poll woke, and those already queued, add their frames first,
            // so that they share one write: an echo then costs one write per side, not one per
            // task that touched the connection.
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.deferred = false;
        if has_output || this.conn.signals.queued.load(Ordering::Relaxed) {
            more |= this.write(&mut key, cx);
        }
        let mut st = this.conn.state(&mut key);
        if st.finished {
            let result = st.take_result();
            drop(st);
            drop(key);
            return this.poll_end(result, cx);
        }
        // Writing may have made room for input that waited (refusals of peer SYNs).
        more |= st.paused_input_can_go_on();
        let deadline = st.session.poll_timeout();
        drop(st);
        drop(key);
        if more {
            // A budget ran out with work left: yield to the other tasks, then go on.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.sleep(deadline, cx);
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
