//! The tunnel: a TCP port forwarder over smux, on TCP or on kcptun's KCP transport, and able to
//! stand in for either end of kcptun.
//!
//! - [`run_server`] and [`run_client`] are the two ends ([`forward`]);
//! - [`transport`] is what the smux connections run on: TCP, or KCP as kcptun makes it;
//! - [`kcp`] is kcptun's transport itself: kcp-go's crypts, FEC and datagram layout, KCP
//!   sessions over UDP, and kcptun's snappy compression;
//! - [`cli`] is the command line of the `tunnel` binary, with kcptun's flags.

pub mod cli;
pub mod forward;
pub mod kcp;
pub mod log;
pub mod transport;

pub use forward::{run_client, run_server, Options};
pub use transport::{Conn, Kcp, ServerListener, Transport};
