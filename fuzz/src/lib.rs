//! Fuzz target bodies: plain Rust with no libFuzzer in it, so that stable tests include these
//! files (`#[path]`) and replay the corpus in `fuzz/corpus/` through them.
//!
//! - `bodies.rs`: `decode` and `session`, replayed by `smux-proto/tests/fuzz_corpus.rs`;
//! - `pair.rs`: `pair`, replayed there too.

mod bodies;
mod pair;

pub use bodies::{decode, session};
pub use pair::pair;
