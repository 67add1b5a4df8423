//! The handle types both adapters export (`MuxConnector`, `MuxAcceptor`, `MuxWorker`,
//! `MuxStream` and `MuxBuilder::build`), written once as a macro: each adapter needs them as
//! its own types, to implement its runtime's I/O traits for `MuxStream`.

/// Defines the handles in the calling crate, after [`define_builder!`](crate::define_builder).
/// Arguments: the crate's transport trait (`T: $conn` for every handle), its wrapper turning a
/// `T` into a [`Transport`](crate::Transport), and its [`Runtime`](crate::Runtime). The caller
/// implements its I/O traits for `MuxStream<T>` over `self.shared` and `self.id`.
#[macro_export]
macro_rules! define_handles {
    ($conn:path, $io:ident, $rt:ty) => {
        impl<T: $conn> MuxBuilder<WithConnection<T>> {
            /// Builds the session: a connector, an acceptor, and the worker to spawn.
            ///
            /// # Panics
            /// If the keep-alive timeout is shorter than the interval.
            pub fn build(self) -> (MuxConnector<T>, MuxAcceptor<T>, MuxWorker<T>) {
                let WithConnection {
                    options,
                    connection,
                } = self.state;
                let config = options.config();
                let now = <$rt as $crate::Runtime>::now();
                let shared = $crate::Shared::new($io(connection), options.role(), config, now, 2);
                (
                    MuxConnector {
                        shared: ::std::sync::Arc::clone(&shared),
                    },
                    MuxAcceptor {
                        shared: ::std::sync::Arc::clone(&shared),
                    },
                    MuxWorker {
                        inner: $crate::Worker::new(shared),
                    },
                )
            }
        }

        /// Opens streams. Cloneable; the session lives while any handle does.
        pub struct MuxConnector<T: $conn> {
            shared: ::std::sync::Arc<$crate::Shared<$io<T>>>,
        }

        impl<T: $conn> MuxConnector<T> {
            /// Opens a stream. Its SYN goes out ahead of any data, so it can be written to at
            /// once.
            ///
            /// Fails with [`MuxError::ConnectionClosed`] once the session is closed,
            /// [`MuxError::TooManyStreams`] at the stream limit,
            /// [`MuxError::StreamIdsExhausted`] when this connection has used every id.
            pub fn connect(&self) -> MuxResult<MuxStream<T>> {
                let id = self.shared.connect()?;
                Ok(MuxStream {
                    shared: ::std::sync::Arc::clone(&self.shared),
                    id,
                })
            }

            /// Stream handles alive on this connection, in both directions.
            pub fn get_num_streams(&self) -> usize {
                self.shared.num_streams()
            }

            /// Closes the connection in order: data already taken by `poll_write` reaches the
            /// wire, every open stream gets FIN (so the peer reads to a clean end), then the
            /// transport is shut down. Works whether or not the worker is being polled, and may
            /// be called more than once. Afterwards `connect()` fails, the acceptor ends, and
            /// reads on open streams return what had arrived, then a `ConnectionAborted` error.
            /// An error means the session had ended otherwise (e.g. the worker was dropped) or
            /// the transport failed before everything was written.
            pub async fn close(&self) -> MuxResult<()> {
                ::std::future::poll_fn(|cx| self.shared.poll_close(cx)).await
            }
        }

        impl<T: $conn> Clone for MuxConnector<T> {
            fn clone(&self) -> Self {
                self.shared.add_connector();
                MuxConnector {
                    shared: ::std::sync::Arc::clone(&self.shared),
                }
            }
        }

        impl<T: $conn> Drop for MuxConnector<T> {
            fn drop(&mut self) {
                self.shared.release_connector();
            }
        }

        /// Receives the streams the peer opens; also a `futures_core::Stream` of them.
        /// Dropping it closes those that arrive later.
        pub struct MuxAcceptor<T: $conn> {
            shared: ::std::sync::Arc<$crate::Shared<$io<T>>>,
        }

        impl<T: $conn> MuxAcceptor<T> {
            /// The next stream the peer opened; `None` once the session is closed.
            pub async fn accept(&mut self) -> Option<MuxStream<T>> {
                ::std::future::poll_fn(|cx| self.poll_accept(cx)).await
            }

            fn poll_accept(
                &self,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Option<MuxStream<T>>> {
                self.shared.poll_accept(cx).map(|id| {
                    id.map(|id| MuxStream {
                        shared: ::std::sync::Arc::clone(&self.shared),
                        id,
                    })
                })
            }
        }

        impl<T: $conn> futures_core::Stream for MuxAcceptor<T> {
            type Item = MuxStream<T>;

            fn poll_next(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Option<Self::Item>> {
                self.poll_accept(cx)
            }
        }

        impl<T: $conn> Drop for MuxAcceptor<T> {
            fn drop(&mut self) {
                self.shared.release_acceptor();
            }
        }

        /// The future that drives the connection; spawn it. See the
        /// [crate docs](crate#lifecycle) for when it ends.
        #[must_use = "the worker does nothing unless polled: spawn it"]
        pub struct MuxWorker<T: $conn> {
            inner: $crate::Worker<$io<T>, $rt>,
        }

        impl<T: $conn> ::std::future::Future for MuxWorker<T> {
            type Output = MuxResult<()>;

            fn poll(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Self::Output> {
                ::std::pin::Pin::new(&mut self.inner).poll(cx)
            }
        }

        /// One stream of the connection. It reads and writes like a TCP stream:
        /// - shutting down (close, in futures-io) sends FIN after the data written so far; the
        ///   read side stays open;
        /// - flushing returns once the data written so far is handed to the transport;
        /// - dropping it sends what it already accepted, then FIN; unread data is dropped.
        ///
        /// Split it to read and write from two tasks: reader and writer wait on separate
        /// wakers.
        pub struct MuxStream<T: $conn> {
            shared: ::std::sync::Arc<$crate::Shared<$io<T>>>,
            id: $crate::smux_proto::StreamId,
        }

        impl<T: $conn> MuxStream<T> {
            /// The stream id on the wire (odd for streams the client opened, even for the
            /// server's).
            pub fn get_stream_id(&self) -> u32 {
                self.id.0
            }

            /// Whether the stream can carry no more data in either direction: both sides sent
            /// FIN, the idle timeout closed it, or the session ended.
            pub fn is_closed(&self) -> bool {
                self.shared.is_stream_closed(self.id)
            }
        }

        impl<T: $conn> ::std::fmt::Debug for MuxStream<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("MuxStream").field("id", &self.id.0).finish()
            }
        }

        impl<T: $conn> Drop for MuxStream<T> {
            fn drop(&mut self) {
                self.shared.release_stream(self.id);
            }
        }
    };
}
