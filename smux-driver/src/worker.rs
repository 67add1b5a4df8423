//! The worker future: the connection's I/O loop.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::shared::Shared;
use crate::{MuxResult, Runtime, Transport};

/// Drives one connection: reads the transport into the session, writes the session's frames
/// to the transport, runs the timers. It ends when the session does (all handles dropped,
/// `close()`, the peer closing the transport, a keep-alive timeout, a protocol or transport
/// error) with `Ok` for an orderly end.
pub struct Worker<T: Transport, R: Runtime> {
    shared: Arc<Shared<T>>,
    sleep: Option<(R::Sleep, Instant)>,
    /// This poll yielded once before writing; the next one writes.
    deferred: bool,
    done: bool,
    _runtime: PhantomData<fn() -> R>,
}

impl<T: Transport, R: Runtime> Worker<T, R> {
    /// The worker of `shared`.
    pub fn new(shared: Arc<Shared<T>>) -> Self {
        Worker {
            shared,
            sleep: None,
            deferred: false,
            done: false,
            _runtime: PhantomData,
        }
    }
}

impl<T: Transport, R: Runtime> Future for Worker<T, R> {
    type Output = MuxResult<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let shared = Arc::clone(&this.shared);
        let mut st = shared.lock();
        st.register_worker(cx);
        loop {
            if st.finished {
                this.done = true;
                return Poll::Ready(st.take_result());
            }
            let now = R::now();
            if st.session.poll_timeout().is_some_and(|t| t <= now) {
                st.session.handle_timeout(now);
                st.dispatch_events();
            }
            if st.all_handles_gone() && !st.session.is_closing() {
                st.session.close();
            }
            let mut more = st.drive_input(cx, now);
            if !this.deferred && st.has_output() {
                // Let the tasks this poll woke, and those already queued, add their frames
                // first, so that they share one write: an echo then costs one write per side,
                // not one per task that touched the connection.
                this.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.deferred = false;
            match st.drive_output(cx, now) {
                Ok(budget_spent) => more |= budget_spent,
                Err(e) => st.fail(e),
            }
            st.dispatch_events();
            if st.session.is_ended() && st.poll_finish(cx).is_ready() {
                continue;
            }
            // Writing may have made room for input that waited (refusals of peer SYNs).
            more |= st.paused_input_can_go_on();
            if more {
                // A budget ran out with work left: yield to the other tasks, then go on.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Everything that could move did: the transport, the handles and the timer wake
            // this task when there is more.
            break;
        }
        // Idle: sleep until the next timer (reads, writes and handles wake us otherwise).
        if let Some(deadline) = st.session.poll_timeout() {
            drop(st);
            let sleep = match &mut this.sleep {
                Some((sleep, at)) => {
                    if *at != deadline {
                        R::reset(sleep, deadline);
                        *at = deadline;
                    }
                    sleep
                }
                None => &mut this.sleep.insert((R::sleep_until(deadline), deadline)).0,
            };
            if R::poll_sleep(sleep, cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }
}

impl<T: Transport, R: Runtime> Drop for Worker<T, R> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().abandon();
        }
    }
}
