//! Replays the `kcp_datagram` fuzz corpus (`fuzz/corpus/kcp_datagram/`) through the target
//! body on stable Rust, and runs the body on random inputs.

#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/kcp.rs"]
mod kcp_fuzz;

use std::path::Path;

use proptest::prelude::*;

#[test]
fn kcp_datagram_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/kcp_datagram");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        if let Err(e) = std::panic::catch_unwind(|| kcp_fuzz::kcp_datagram(&data)) {
            eprintln!("kcp_datagram: {} failed", path.display());
            std::panic::resume_unwind(e);
        }
        n += 1;
    }
    assert!(n > 0, "the kcp_datagram corpus is empty");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn kcp_datagram_random(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        kcp_fuzz::kcp_datagram(&data);
    }
}
