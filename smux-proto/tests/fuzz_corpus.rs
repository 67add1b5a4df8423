//! Replays the fuzz corpus (`fuzz/corpus/`) through the fuzz target bodies on stable Rust, and
//! runs the same bodies on random inputs.

#[path = "../../fuzz/src/bodies.rs"]
mod bodies;
#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/pair.rs"]
mod pair;

use std::path::Path;

use proptest::prelude::*;

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        if let Err(e) = std::panic::catch_unwind(|| body(&data)) {
            eprintln!("{target}: {} failed", path.display());
            std::panic::resume_unwind(e);
        }
        n += 1;
    }
    n
}

#[test]
fn decode_corpus() {
    assert!(
        replay("decode", bodies::decode) > 0,
        "the decode corpus is empty"
    );
}

#[test]
fn session_corpus() {
    assert!(
        replay("session", bodies::session) > 0,
        "the session corpus is empty"
    );
}

#[test]
fn pair_corpus() {
    assert!(replay("pair", pair::pair) > 0, "the pair corpus is empty");
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
