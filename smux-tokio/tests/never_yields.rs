//! A task that opens and shuts down streams in a loop without any other await: every
//! `shutdown()` completes at once, so the task never yields unless the library makes it (by
//! taking part in Tokio's cooperative budget). It must finish, and a task beside it must keep
//! running meanwhile, on every runtime: on the current-thread runtime the workers and the
//! accept loop run only when the loop yields.
//!
//! A loop that never yields cannot be stopped by a Tokio timer on its own thread, so each run
//! has its own thread, and this test's thread gives up on it after `GUARD` (a hang guard only,
//! not a measurement: the run takes seconds when it works). A run given up on is reported as a
//! hang and left spinning until the test binary exits, which is why this test has a binary of
//! its own.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smux_test_support::tokio::tcp_pair;
use tokio::io::AsyncWriteExt;

mod common;

use common::{panic_message, Flavor, RUNTIMES};

const OPENS: usize = 200_000;
const GUARD: Duration = Duration::from_secs(120);

async fn open_shutdown_loop() {
    let rt = common::current_flavor().name();
    let (c, s) = tcp_pair().await;
    let ((connector, _ca, cw), (_sc, mut acceptor, sw)) = common::sessions(c, s);
    let accepted = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(tokio::sync::Notify::new());
    let server = {
        let (accepted, changed) = (Arc::clone(&accepted), Arc::clone(&changed));
        tokio::spawn(async move {
            // Accepts every stream and drops it.
            while let Some(s) = acceptor.accept().await {
                drop(s);
                accepted.fetch_add(1, Ordering::SeqCst);
                changed.notify_waiters();
            }
        })
    };
    let ticks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (ticks, stop) = (Arc::clone(&ticks), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let before = ticks.load(Ordering::SeqCst);
    // Windows of 10,000 opens in which the ticker did not move (reported, not asserted: on a
    // multi-thread runtime it may be descheduled).
    let mut still = 0;
    let mut last = before;
    for i in 0..OPENS {
        let mut s = connector
            .connect()
            .unwrap_or_else(|e| panic!("connect() {i} of {OPENS}: {e}"));
        s.shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown() {i} of {OPENS}: {e}"));
        drop(s);
        if i % 10_000 == 9_999 {
            let now = ticks.load(Ordering::SeqCst);
            if now == last {
                still += 1;
            }
            last = now;
        }
    }
    let after = ticks.load(Ordering::SeqCst);
    eprintln!(
        "{rt}: {OPENS} opens done; the ticker moved {} times meanwhile ({still} of {} windows of \
         10,000 opens without a tick)",
        after - before,
        OPENS / 10_000
    );
    assert!(after > before, "the task beside the loop never ran");
    common::until(&changed, || accepted.load(Ordering::SeqCst) == OPENS).await;
    stop.store(true, Ordering::SeqCst);
    ticker.await.unwrap();
    connector.close().await.unwrap();
    cw.await.unwrap().unwrap();
    // The server sees the client close the transport: an orderly end, or, seen on
    // multi-thread(4), BrokenPipe when FINs for the streams it dropped were still on their
    // way out as the client's socket closed. Not what this test is about; reported apart.
    match sw.await.unwrap() {
        Ok(()) | Err(smux_tokio::MuxError::IoError(_)) => {}
        other => panic!("the server's worker ended with {other:?}"),
    }
    server.await.unwrap();
}

/// Runs the loop on `flavor` on a thread of its own; `Err` with what went wrong.
fn run_guarded(flavor: Flavor) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(flavor.name())
        .spawn(move || {
            let rt = flavor.build();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(open_shutdown_loop())
            }));
            let _ = tx.send(r.map_err(|p| panic_message(&*p)));
            rt.shutdown_timeout(Duration::from_secs(5));
        })
        .unwrap();
    match rx.recv_timeout(GUARD) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no end within {GUARD:?} (hang; its thread is left running)"
        )),
    }
}

#[test]
fn an_open_shutdown_loop_that_never_yields_completes_and_lets_others_run() {
    // The multi-thread runs first: a current-thread run that hangs spins until the end.
    let order = [RUNTIMES[1], RUNTIMES[2], RUNTIMES[0]];
    let failed: Vec<String> = order
        .iter()
        .filter_map(|f| run_guarded(*f).err().map(|e| format!("{}: {e}", f.name())))
        .collect();
    if !failed.is_empty() {
        panic!(
            "failed on {} of 3 runtimes:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
}
