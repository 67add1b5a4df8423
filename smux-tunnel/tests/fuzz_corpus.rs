//! Replays the `kcp_datagram` fuzz corpus (`fuzz/corpus/kcp_datagram/`) through the target
//! body on stable Rust, and runs the body on random inputs.

#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/kcp.rs"]
mod kcp_fuzz;

use proptest::prelude::*;
use smux_test_support::corpus::replay;

#[test]
fn kcp_datagram_corpus() {
    replay("kcp_datagram", kcp_fuzz::kcp_datagram);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn kcp_datagram_random(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        kcp_fuzz::kcp_datagram(&data);
    }
}
