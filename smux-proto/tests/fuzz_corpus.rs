//! Replays the fuzz corpus (`fuzz/corpus/`) through the fuzz target bodies on stable Rust, and
//! runs the same bodies on random inputs.

#[path = "../../fuzz/src/bodies.rs"]
mod bodies;
#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/pair.rs"]
mod pair;

use proptest::prelude::*;
use smux_test_support::corpus::replay;

#[test]
fn decode_corpus() {
    replay("decode", bodies::decode);
}

#[test]
fn session_corpus() {
    replay("session", bodies::session);
}

#[test]
fn pair_corpus() {
    replay("pair", pair::pair);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn decode_random(data in prop::collection::vec(any::<u8>(), 0..256)) {
        bodies::decode(&data);
    }

    #[test]
    fn session_random(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        bodies::session(&data);
    }

    #[test]
    fn pair_random(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        pair::pair(&data);
    }
}
