//! Fuzz target bodies: plain Rust with no libFuzzer in it, so that stable tests include these
//! files (`#[path]`) and replay the corpus in `fuzz/corpus/` through them.
//!
//! - `bodies.rs`: `decode` and `session`, replayed by `smux-proto/tests/fuzz_corpus.rs`;
//! - `pair.rs`: `pair`, replayed there too;
//! - `worker.rs`: `worker`, replayed by `smux-futures/tests/fuzz_corpus_worker.rs`;
//! - `kcp.rs`: `kcp_datagram`, replayed by `smux-tunnel/tests/fuzz_corpus.rs`;
//! - `input.rs`: the input read as a small program, for `bodies.rs` and `kcp.rs`; a stable
//!   test that includes either includes it too, at its crate's root.

mod bodies;
mod input;
mod kcp;
mod pair;
mod worker;

pub use bodies::{decode, session};
pub use kcp::kcp_datagram;
pub use pair::pair;
pub use worker::worker;
