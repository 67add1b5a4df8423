//! Running a test scenario on each kind of Tokio runtime (feature `tokio`): scenarios that
//! involve scheduling run on the current-thread runtime and on the multi-thread one with two
//! and four workers, each on a fresh runtime and under a hang guard; and, with the feature
//! `test-util`, on a paused clock.

use std::future::Future;
use std::time::Duration;

/// A Tokio runtime a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    /// The multi-thread scheduler with this many worker threads.
    MultiThread(usize),
}

/// Every scenario runs on these: one thread, and two and four worker threads.
pub const RUNTIMES: [Flavor; 3] = [
    Flavor::CurrentThread,
    Flavor::MultiThread(2),
    Flavor::MultiThread(4),
];

impl Flavor {
    pub fn name(self) -> String {
        match self {
            Flavor::CurrentThread => "current-thread".into(),
            Flavor::MultiThread(n) => format!("multi-thread({n})"),
        }
    }

    /// The runtime, with I/O and time enabled.
    pub fn build(self) -> ::tokio::runtime::Runtime {
        let mut b = match self {
            Flavor::CurrentThread => ::tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread(n) => {
                let mut b = ::tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(n);
                b
            }
        };
        b.enable_all().build().expect("a Tokio runtime")
    }
}

/// The flavour of the runtime the caller runs on (inside a runtime).
pub fn current_flavor() -> Flavor {
    let h = ::tokio::runtime::Handle::current();
    match h.runtime_flavor() {
        ::tokio::runtime::RuntimeFlavor::CurrentThread => Flavor::CurrentThread,
        _ => Flavor::MultiThread(h.metrics().num_workers()),
    }
}

/// How long one run may take before it counts as a hang. A guard only: the scenarios finish
/// in seconds, and none asserts anything about how long it took.
pub const HANG_GUARD: Duration = Duration::from_secs(300);

/// The text of a panic's payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

/// Runs `body` on a fresh runtime of `flavor`, under [`HANG_GUARD`]. A panic (a failed
/// assertion, or the hang guard) comes back as the error: the runtime's name and the message.
/// Tasks the body left behind are dropped with the runtime.
pub fn on_runtime<Fut: Future<Output = ()>>(flavor: Flavor, body: Fut) -> Result<(), String> {
    let rt = flavor.build();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            if ::tokio::time::timeout(HANG_GUARD, body).await.is_err() {
                panic!("no end within {HANG_GUARD:?} (hang)");
            }
        })
    }));
    rt.shutdown_timeout(Duration::from_secs(10));
    run.map_err(|p| format!("{}: {}", flavor.name(), panic_message(&*p)))
}

/// Panics, listing every failure, if any of `runs` failed; each run is taken (and so, when
/// they are lazy, made) even after one failed.
pub fn all_passed(runs: impl IntoIterator<Item = Result<(), String>>) {
    let mut total = 0;
    let mut failed = Vec::new();
    for run in runs {
        total += 1;
        if let Err(e) = run {
            failed.push(e);
        }
    }
    if !failed.is_empty() {
        panic!(
            "failed on {} of {total} runs:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
}

/// Runs the body `f` makes on each runtime of [`RUNTIMES`] in turn, each with
/// [`on_runtime`]. Every runtime runs even when an earlier one failed; then, if any failed,
/// panics naming each runtime that failed and its panic message.
pub fn on_runtimes<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    on_these_runtimes(&RUNTIMES, f);
}

/// [`on_runtimes`] on the two multi-thread runtimes only.
pub fn on_multi_thread<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    on_these_runtimes(&RUNTIMES[1..], f);
}

/// [`on_runtimes`] on the runtimes given.
pub fn on_these_runtimes<F, Fut>(flavors: &[Flavor], f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    // The body is made inside the runtime: `f` may spawn before it returns its future.
    all_passed(
        flavors
            .iter()
            .map(|&flavor| on_runtime(flavor, async { f().await })),
    );
}

/// Runs the body on a current-thread runtime whose clock starts paused: Tokio moves a paused
/// clock only when every task is idle, so timers fire in order and at their exact instants,
/// whatever the machine's load. Needs the feature `test-util` (Tokio's, which makes its clock
/// pausable: benchmarks leave it off).
#[cfg(feature = "test-util")]
pub fn on_paused_clock<Fut: Future<Output = ()>>(body: Fut) {
    ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a Tokio runtime")
        .block_on(body);
}
