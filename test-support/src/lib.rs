//! Helpers shared by the workspace's tests and benchmarks, so that each exists once:
//!
//! - [`alloc`]: a counting global allocator (live and peak heap bytes of the process), with a
//!   lock that makes the measuring tests of one binary take turns;
//! - [`content`]: deterministic pseudo-random numbers and content, a running hash and a
//!   reference CRC;
//! - [`corpus`]: replaying a fuzz target's corpus through its body on stable Rust;
//! - [`process`]: another program (kcptun, the tunnel binary) whose log the caller waits on,
//!   and free loopback ports;
//! - `runtimes` (feature `tokio`): running a scenario on each kind of Tokio runtime (and, with
//!   the feature `test-util`, on a paused clock);
//! - `tokio` (feature `tokio`): connected pairs of loopback TCP streams on Tokio;
//! - `smol` (feature `smol`): the same over async-net (`smol::net`), for the futures-io tests;
//! - `link` (feature `tokio`): an emulated WAN link (delay, rate, router buffer, stalls)
//!   between two loopback TCP streams, usable from any runtime.
//!
//! Every `tcp_pair` returns `(client, server)`: the stream of the side that connected first,
//! the stream of the side that accepted second.
//!
//! No feature is on by default: smux-futures uses this crate with `smol` only, and its
//! dependency tree, dev-dependencies included, must hold no Tokio (`.ci/run` checks).

pub mod alloc;
pub mod content;
pub mod corpus;
pub mod process;

#[cfg(feature = "tokio")]
pub mod link;
#[cfg(feature = "tokio")]
pub mod runtimes;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;
