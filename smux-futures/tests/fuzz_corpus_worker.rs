//! Replays the `worker` fuzz corpus (`fuzz/corpus/worker/`) through the target body on stable
//! Rust, and runs the body on random inputs.
//!
//! The body installs a counting global allocator (per thread), so it lives in a test binary
//! of its own.

#[path = "../../fuzz/src/worker.rs"]
mod worker;

use smux_test_support::corpus::replay;

#[test]
fn worker_corpus() {
    replay("worker", worker::worker);
}

/// Random inputs from a fixed-seed generator (no extra dependency), a different set each
/// index.
#[test]
fn worker_random() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for case in 0..300 {
        let len = (case * 37) % 4096;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        if let Err(e) = std::panic::catch_unwind(|| worker::worker(&data)) {
            eprintln!("worker: random case {case} failed: {data:?}");
            std::panic::resume_unwind(e);
        }
    }
}
