//! The session handles, written once for both adapters: [`Connector`] and [`Acceptor`],
//! generic over an [`Adapter`]. The adapters name them (`MuxConnector<T>`, `MuxAcceptor<T>`);
//! streams are in `mux_stream.rs` and `stream.rs`. Every `poll_*` and `async` operation takes
//! part in the runtime's cooperative budget.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::conn::Conn;
use crate::stream::StreamHandle;
use crate::sync::Arc;
use crate::{Adapter, MuxResult, MuxStats, MuxStream, Runtime};

pub(crate) type Budget<A> = <<A as Adapter>::Runtime as Runtime>::Budget;

/// Runs `op` under the runtime's cooperative budget: `Pending` (the task woken) instead, once
/// the task has done enough without yielding; only a ready outcome spends the budget.
pub(crate) fn cooperate<R: Runtime, O>(
    budget: &R::Budget,
    cx: &mut Context<'_>,
    op: impl FnOnce(&mut Context<'_>) -> Poll<O>,
) -> Poll<O> {
    let Poll::Ready(proceed) = R::poll_proceed(budget, cx) else {
        return Poll::Pending;
    };
    let out = op(cx);
    R::done(budget, proceed, out.is_ready());
    out
}

/// Opens streams. Cloneable; the session lives while any handle does.
pub struct Connector<A: Adapter> {
    conn: Arc<Conn<A::Write>>,
    budget: Budget<A>,
}

impl<A: Adapter> Connector<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Write>>) -> Self {
        Connector {
            conn,
            budget: Budget::<A>::default(),
        }
    }

    /// Opens a stream. Its SYN goes out ahead of any data, so it can be written to at once.
    ///
    /// Fails with [`MuxError::ConnectionClosed`](crate::MuxError::ConnectionClosed) once the
    /// session is closed, [`MuxError::TooManyStreams`](crate::MuxError::TooManyStreams) at the
    /// stream limit, [`MuxError::StreamIdsExhausted`](crate::MuxError::StreamIdsExhausted) when
    /// this connection has used every id. While [`open`](Self::open) calls wait for room, they
    /// go first: `connect()` fails with `TooManyStreams`.
    pub fn connect(&self) -> MuxResult<MuxStream<A>> {
        let id = self.conn.connect()?;
        Ok(MuxStream::new(StreamHandle::new(
            Arc::clone(&self.conn),
            id,
        )))
    }

    /// Opens a stream like [`connect`](Self::connect), but at the stream limit waits for a
    /// stream to go instead of failing with `TooManyStreams`. Waiting calls are served first
    /// come, first served, and ahead of `connect()`, which fails while any wait.
    ///
    /// Fails with [`MuxError::ConnectionClosed`](crate::MuxError::ConnectionClosed) once the
    /// session is closed (waiting calls too), and
    /// [`MuxError::StreamIdsExhausted`](crate::MuxError::StreamIdsExhausted) when this
    /// connection has used every id.
    ///
    /// Cancel safe: dropping the future gives up its place in line, and the next call in
    /// line goes on.
    pub async fn open(&self) -> MuxResult<MuxStream<A>> {
        struct Place<'a, T: crate::TransportWrite> {
            conn: &'a Conn<T>,
            ticket: Option<u64>,
        }
        impl<T: crate::TransportWrite> Drop for Place<'_, T> {
            fn drop(&mut self) {
                if let Some(t) = self.ticket {
                    self.conn.cancel_open(t);
                }
            }
        }
        let mut place = Place {
            conn: &self.conn,
            ticket: None,
        };
        let id = std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| {
                place.conn.poll_open(&mut place.ticket, cx)
            })
        })
        .await?;
        Ok(MuxStream::new(StreamHandle::new(
            Arc::clone(&self.conn),
            id,
        )))
    }

    /// Resolves once the session has ended and nothing more will move: closed by either side,
    /// failed, or timed out. Any number of tasks may wait. Each gets what the worker returns:
    /// `Ok` for an orderly end, else the same [`MuxError`](crate::MuxError) variant (an
    /// `IoError` rebuilt from the original's kind and message), or `ConnectionClosed` if the
    /// worker was dropped. Cancel safe.
    pub async fn closed(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_closed(cx))
        })
        .await
    }

    /// Drains the connection, then closes it. From the first call on, `connect()` and `open()`
    /// fail with [`MuxError::Draining`](crate::MuxError::Draining), and a stream the peer opens
    /// is refused with a FIN (smux has no GOAWAY, so the peer reads a clean end of stream with
    /// no data). Streams already open go on in both directions; once every one of them is
    /// over both ways (FIN sent and received) and its data read (or its handle dropped), the
    /// session closes as [`close`](Self::close) does, and this returns what `close` would.
    /// Streams that arrived before the call can still be accepted.
    ///
    /// There is no deadline of its own: wrap it in a timeout, then close.
    ///
    /// With Tokio (`tests/production.rs` runs the same):
    ///
    /// ```text
    /// use std::time::Duration;
    /// if tokio::time::timeout(Duration::from_secs(10), connector.drain()).await.is_err() {
    ///     // Streams still open after 10 s get FIN now; their peers read a clean end.
    ///     let _ = connector.close().await;
    /// }
    /// ```
    ///
    /// Cancel safe: the session stays draining.
    pub async fn drain(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_drain(cx))
        })
        .await
    }

    /// The connection's counters (bytes and frames each way, streams opened, accepted and
    /// refused, keep-alives sent) and gauges (streams open and waiting for accept, bytes
    /// unread and queued). O(1); it takes the session's state lock briefly, never a lock
    /// held across transport I/O.
    pub fn stats(&self) -> MuxStats {
        self.conn.stats()
    }

    /// The protocol version the connection speaks: `None` on a server built with
    /// `with_auto_version` until the client's first frame has arrived; always `Some` for a
    /// client and without auto.
    pub fn version(&self) -> Option<crate::smux_proto::Version> {
        self.conn.version()
    }

    /// Stream handles alive on this connection, in both directions.
    pub fn get_num_streams(&self) -> usize {
        self.conn.num_streams()
    }

    /// Closes the connection in order: data already taken by `poll_write` reaches the wire,
    /// every open stream gets FIN (so the peer reads to a clean end), then the transport is
    /// shut down. Works whether or not the worker is being polled, and may be called more than
    /// once. Afterwards `connect()` fails, the acceptor ends, and reads on open streams return
    /// what had arrived, then a `ConnectionAborted` error. An error means the session had
    /// ended otherwise (e.g. the worker was dropped) or the transport failed before
    /// everything was written.
    pub async fn close(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_close(cx))
        })
        .await
    }
}

impl<A: Adapter> Clone for Connector<A> {
    fn clone(&self) -> Self {
        self.conn.add_connector();
        Connector::new(Arc::clone(&self.conn))
    }
}

impl<A: Adapter> Drop for Connector<A> {
    fn drop(&mut self) {
        self.conn.release_connector();
    }
}

impl<A: Adapter> fmt::Debug for Connector<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxConnector").finish_non_exhaustive()
    }
}

/// Receives the streams the peer opens; also a `futures_core::Stream` of them. Dropping it
/// closes those that arrive later.
pub struct Acceptor<A: Adapter> {
    conn: Arc<Conn<A::Write>>,
    budget: Budget<A>,
}

impl<A: Adapter> Acceptor<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Write>>) -> Self {
        Acceptor {
            conn,
            budget: Budget::<A>::default(),
        }
    }

    /// The next stream the peer opened; `None` once the session is closed.
    pub async fn accept(&mut self) -> Option<MuxStream<A>> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next stream the peer opened; `None` once the session is closed.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<MuxStream<A>>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| {
            self.conn.poll_accept(cx).map(|id| {
                id.map(|id| MuxStream::new(StreamHandle::new(Arc::clone(&self.conn), id)))
            })
        })
    }
}

impl<A: Adapter> futures_core::Stream for Acceptor<A> {
    type Item = MuxStream<A>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx)
    }
}

impl<A: Adapter> Drop for Acceptor<A> {
    fn drop(&mut self) {
        self.conn.release_acceptor();
    }
}

impl<A: Adapter> fmt::Debug for Acceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxAcceptor").finish_non_exhaustive()
    }
}
