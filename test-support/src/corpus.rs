//! Replaying a fuzz target's corpus on stable Rust: the target bodies in `fuzz/src/` are plain
//! Rust, and each crate's `fuzz_corpus` tests run them on every input libFuzzer kept.

use std::path::Path;

/// Runs `body` on every file of `fuzz/corpus/<target>/` (in the workspace); when one panics,
/// says which file before passing the panic on. Panics if the corpus is missing or empty.
pub fn replay(target: &str, body: fn(&[u8])) {
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
    assert!(n > 0, "the {target} corpus is empty");
}
