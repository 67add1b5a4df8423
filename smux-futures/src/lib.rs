//! smux for futures-io transports (smol, async-std): **not written yet**.
//!
//! This crate will expose the same `MuxBuilder`, `MuxConnector`, `MuxAcceptor`, `MuxStream`
//! and `MuxWorker` as `smux-tokio`, driven by the same `smux-driver`, over
//! `futures_io::AsyncRead + AsyncWrite`. Until then it has no API: use `smux-tokio`, or drive
//! `smux-proto` from your own event loop.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
