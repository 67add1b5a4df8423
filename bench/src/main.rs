//! Side-by-side benchmarks over loopback TCP: raw TCP (one connection per stream, the
//! ceiling), smux-tokio version 1 and 2 with default settings, `async_smux` 0.4, `yamux` 0.13
//! and, when `go` is installed, the Go reference (Debian's smux 1.5.16, `interop/go-bench`).
//!
//! ```text
//! cargo run --release -p smux-bench [-- --reps 3 --quick --multi-thread
//!                                       --impls raw-tcp,smux-tokio-v1,... --workloads stream,...]
//! ```
//!
//! Every measurement runs in a child process of its own (this binary with `--child`, or the Go
//! program), so peak RSS is that implementation's alone. Repetitions are interleaved: each
//! round runs every implementation once, in an order that rotates from round to round. The
//! table gives medians, with ratios against raw TCP and against `async_smux`.

mod impls;
mod workloads;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use impls::Impl;
use workloads::{Params, Workload};

#[global_allocator]
static ALLOC: smux_test_support::alloc::CountingAlloc = smux_test_support::alloc::CountingAlloc;

/// A measured implementation: one of ours in a child of this binary, or the Go program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Rust(usize),
    Go(u8),
}

impl Subject {
    fn name(self) -> String {
        match self {
            Subject::Rust(i) => Impl::ALL[i].name().to_string(),
            Subject::Go(v) => format!("go-smux-v{v}"),
        }
    }
}

struct Options {
    reps: usize,
    params: Params,
    multi_thread: bool,
    subjects: Vec<Subject>,
    workloads: Vec<Workload>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let opts = parse(&args);
    parent(&opts);
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: smux-bench [--reps N] [--quick] [--multi-thread] [--no-go] \
         [--impls a,b] [--workloads a,b]\n  impls: {}, go-smux-v1, go-smux-v2\n  workloads: {}",
        Impl::ALL.map(Impl::name).join(", "),
        Workload::ALL.map(Workload::name).join(", ")
    );
    std::process::exit(2)
}

fn parse(args: &[String]) -> Options {
    let mut o = Options {
        reps: 3,
        params: Params::FULL,
        multi_thread: false,
        subjects: (0..Impl::ALL.len()).map(Subject::Rust).collect(),
        workloads: Workload::ALL.to_vec(),
    };
    let mut go = true;
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--reps" => o.reps = value().parse().unwrap_or_else(|_| usage("--reps N")),
            "--quick" => o.params = Params::QUICK,
            "--multi-thread" => o.multi_thread = true,
            "--no-go" => go = false,
            "--impls" => only = Some(value().split(',').map(str::to_string).collect()),
            "--workloads" => {
                o.workloads = value()
                    .split(',')
                    .map(|w| {
                        Workload::parse(w)
                            .unwrap_or_else(|| usage(&format!("unknown workload {w}")))
                    })
                    .collect()
            }
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if go {
        o.subjects.extend([Subject::Go(1), Subject::Go(2)]);
    }
    if let Some(only) = only {
        for name in &only {
            if !o.subjects.iter().any(|s| &s.name() == name) {
                usage(&format!("unknown implementation {name}"));
            }
        }
        o.subjects.retain(|s| only.contains(&s.name()));
    }
    o
}

// ------------------------------------------------------------------------------ the child

fn child(args: &[String]) {
    let (Some(imp), Some(w)) = (
        args.first().and_then(|s| Impl::parse(s)),
        args.get(1).and_then(|s| Workload::parse(s)),
    ) else {
        usage("--child IMPL WORKLOAD [key=value ...] [multi-thread]")
    };
    let multi = args.iter().any(|a| a == "multi-thread");
    let params = Params::from_args(&args[2..]);
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("a Tokio runtime");
    // In a task of its own, as application code runs: Tokio polls the `block_on` future only
    // after a pass over its I/O driver, which would add a syscall to every wake-up by a task.
    let run = rt.block_on(async move { tokio::spawn(workloads::run(imp, w, params)).await });
    match run.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
        Ok(fields) => {
            let mut line = String::from("RESULT");
            for (k, v) in fields {
                line += &format!(" {k}={v:.6}");
            }
            line += &format!(" peak_rss_kib={}", peak_rss_kib());
            println!("{line}");
        }
        Err(e) => {
            eprintln!("{} {}: {e}", imp.name(), w.name());
            std::process::exit(1);
        }
    }
}

/// This process's high-water mark of resident memory (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------ the parent

/// Builds the Go program into `target/go-bench`; `None` (with a note) without `go`.
fn build_go() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/go-bench/go-bench");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(root.join("interop/go-bench"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .output();
    match built {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => {
            eprintln!(
                "note: go build failed, Go left out:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("note: no Go toolchain ({e}), Go left out");
            None
        }
    }
}

/// How long one measurement may take before it counts as a hang.
const CHILD_LIMIT: Duration = Duration::from_secs(180);

/// Runs one measurement; `None` if it outlived [`CHILD_LIMIT`] (it is killed).
fn run_child(mut cmd: Command) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child");
    let start = Instant::now();
    while child.try_wait().expect("wait for a child").is_none() {
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().ok()
}

/// Pairs of implementation and workload that cannot run as specified, and why.
fn not_applicable(s: Subject, w: Workload) -> Option<&'static str> {
    match (s, w) {
        (Subject::Rust(0), Workload::Idle) => Some(
            "10,000 idle TCP connections need more descriptors than the default limit, and \
             their memory is the kernel's, not the heap's",
        ),
        (Subject::Rust(i), Workload::OpenClose | Workload::Idle) if Impl::ALL[i] == Impl::Yamux => {
            Some(
                "yamux 0.13 sends a stream's SYN with its first frame, and a close before any \
             data goes out without it: the peer never sees the stream",
            )
        }
        _ => None,
    }
}

type Results = BTreeMap<(usize, Subject), Vec<BTreeMap<String, f64>>>;

fn parent(o: &Options) {
    let go = if o.subjects.iter().any(|s| matches!(s, Subject::Go(_))) {
        build_go()
    } else {
        None
    };
    let subjects: Vec<Subject> = o
        .subjects
        .iter()
        .copied()
        .filter(|s| matches!(s, Subject::Rust(_)) || go.is_some())
        .collect();
    let exe = std::env::current_exe().expect("own path");
    let mut results: Results = BTreeMap::new();
    let started = Instant::now();
    for rep in 0..o.reps {
        for (wi, &w) in o.workloads.iter().enumerate() {
            for k in 0..subjects.len() {
                let s = subjects[(k + rep) % subjects.len()];
                if let Some(why) = not_applicable(s, w) {
                    if rep == 0 {
                        eprintln!("{} {}: left out: {why}", s.name(), w.name());
                    }
                    continue;
                }
                let mut cmd = match s {
                    Subject::Rust(i) => {
                        let mut c = Command::new(&exe);
                        c.args(["--child", Impl::ALL[i].name(), w.name()]);
                        if o.multi_thread {
                            c.arg("multi-thread");
                        }
                        c
                    }
                    Subject::Go(v) => {
                        let mut c = Command::new(go.as_ref().expect("built"));
                        c.arg(w.name()).arg(format!("v={v}"));
                        c
                    }
                };
                cmd.args(o.params.args(w));
                let t = Instant::now();
                let Some(out) = run_child(cmd) else {
                    eprintln!(
                        "{} {}: no result in {CHILD_LIMIT:?}, killed",
                        s.name(),
                        w.name()
                    );
                    continue;
                };
                let text = String::from_utf8_lossy(&out.stdout);
                let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT")) else {
                    eprintln!(
                        "{} {}: failed ({}): {}",
                        s.name(),
                        w.name(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    continue;
                };
                let fields: BTreeMap<String, f64> = line
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                    .collect();
                eprintln!(
                    "rep {} {:>10} {:>14} ({:.1} s):{line}",
                    rep + 1,
                    w.name(),
                    s.name(),
                    t.elapsed().as_secs_f64()
                );
                results.entry((wi, s)).or_default().push(fields);
            }
        }
    }
    report(o, &subjects, &results);
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One reported figure of a workload, computed from a run's fields.
struct Metric {
    name: &'static str,
    unit: &'static str,
    /// Larger is better (throughput) or smaller is better (latency, memory).
    higher_better: bool,
    value: fn(&BTreeMap<String, f64>) -> f64,
}

fn field(f: &BTreeMap<String, f64>, k: &str) -> f64 {
    f.get(k).copied().unwrap_or(f64::NAN)
}

fn metrics(w: Workload) -> Vec<Metric> {
    let gib_s = Metric {
        name: "throughput",
        unit: "GiB/s",
        higher_better: true,
        value: |f| field(f, "bytes") / field(f, "secs") / (1u64 << 30) as f64,
    };
    let rss = Metric {
        name: "peak RSS",
        unit: "MiB",
        higher_better: false,
        value: |f| field(f, "peak_rss_kib") / 1024.0,
    };
    let rate = Metric {
        name: "rate",
        unit: "K/s",
        higher_better: true,
        value: |f| field(f, "ops") / field(f, "secs") / 1000.0,
    };
    match w {
        Workload::Stream | Workload::Streams64 => vec![gib_s, rss],
        Workload::Handshake | Workload::OpenClose => vec![rate],
        Workload::PingPong => vec![
            Metric {
                name: "p50",
                unit: "µs",
                higher_better: false,
                value: |f| field(f, "p50_us"),
            },
            Metric {
                name: "p99",
                unit: "µs",
                higher_better: false,
                value: |f| field(f, "p99_us"),
            },
        ],
        Workload::Idle => vec![
            Metric {
                name: "heap per stream",
                unit: "bytes",
                higher_better: false,
                value: |f| field(f, "mem_per_stream"),
            },
            Metric {
                name: "last/first 1000 open rate",
                unit: "x",
                higher_better: true,
                value: |f| field(f, "first_secs") / field(f, "last_secs"),
            },
        ],
    }
}

fn describe(w: Workload, p: &Params) -> String {
    match w {
        Workload::Stream => format!("one stream, {} MiB in 64 KiB writes", p.mib),
        Workload::Streams64 => format!("{} streams at once, {} MiB in all", p.streams, p.mib),
        Workload::Handshake => format!("open, 8-byte echo, close; {} in sequence", p.ops),
        Workload::OpenClose => format!("{} pipelined open+close, no payload", p.ops * 5 / 2),
        Workload::PingPong => format!("64-byte ping-pong, {} round trips", p.iters),
        Workload::Idle => format!("{} idle streams, both ends", p.idle),
    }
}

fn report(o: &Options, subjects: &[Subject], results: &Results) {
    let raw = Subject::Rust(0);
    let asm = Subject::Rust(
        Impl::ALL
            .iter()
            .position(|&i| i == Impl::AsyncSmux)
            .expect("listed"),
    );
    println!(
        "\nmedians of {} interleaved runs, {} runtime; ratio = ours / theirs, > 1 is better\n",
        o.reps,
        if o.multi_thread {
            "multi-thread (2 workers)"
        } else {
            "current-thread"
        }
    );
    println!("| workload | figure | implementation | median | vs raw TCP | vs async_smux |");
    println!("|---|---|---|---:|---:|---:|");
    for (wi, &w) in o.workloads.iter().enumerate() {
        for m in metrics(w) {
            let med = |s: Subject| {
                results
                    .get(&(wi, s))
                    .map(|runs| median(runs.iter().map(m.value).collect()))
                    .unwrap_or(f64::NAN)
            };
            let ratio = |a: f64, b: f64| {
                let r = if m.higher_better { a / b } else { b / a };
                if r.is_finite() {
                    format!("{r:.2}")
                } else {
                    "–".to_string()
                }
            };
            for &s in subjects {
                let v = med(s);
                if v.is_nan() {
                    continue;
                }
                println!(
                    "| {} | {} ({}) | {} | {:.3} | {} | {} |",
                    describe(w, &o.params),
                    m.name,
                    m.unit,
                    s.name(),
                    v,
                    ratio(v, med(raw)),
                    ratio(v, med(asm)),
                );
            }
        }
    }
}
