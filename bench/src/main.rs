//! Side-by-side benchmarks over loopback TCP:
//!
//! - on Tokio, each on the current-thread runtime (`ct`) and on the multi-thread runtime with
//!   two workers (`mt`): raw TCP (one connection per stream, the ceiling), smux-tokio version 1
//!   and 2 with default settings, `async_smux` 0.4 and `yamux` 0.13;
//! - on smol (`smol::block_on` and its global executor): smux-futures version 1 and 2 over
//!   smol's TCP socket;
//! - when `go` is installed, the Go reference (Debian's smux 1.5.16, `interop/go-bench`);
//! - with `--before COMMIT`, smux-tokio and smux-futures as they were at COMMIT (`before-v1`,
//!   `before-v2` on each Tokio runtime, `before-futures-v1`, `before-futures-v2` on smol);
//! - for the `kcptun` workloads, when Debian's kcptun is installed: our tunnel server
//!   (`smux-tunnel`, the `tunnel` binary, built in release by this run) and Go's
//!   `kcptun-server` (left out with `--no-go`), each behind `kcptun-client`.
//!
//! ```text
//! cargo run --release -p smux-bench [-- --reps 3 --quick --runtimes ct,mt --no-go
//!                                       --before COMMIT --impls raw-tcp,smux-tokio-v1,...
//!                                       --workloads stream,... --timeout 180
//!                                       --write-size 65536
//!                                       --link 100,50,50 --notsent-lowat 128
//!                                       --no-window-tuning]
//! cargo run --release -p smux-bench -- --instructions [--impls ... --workloads ... --top 15
//!                                                      --before COMMIT --quick
//!                                                      --write-size 65536]
//! ```
//!
//! The workloads (`--workloads`, all by default): `stream` (one stream's bulk transfer, 64 KiB
//! writes unless `--write-size` says), `streams64` (64 at once), `bidi` (two streams at once
//! over one connection, one bulk transfer each way, 64 KiB writes; raw TCP: one connection, its
//! halves split, a direction each way; aggregate throughput), `copy` (`stream` with the
//! receiver `tokio::io::copy`ing into `tokio::io::sink()`: the plain `AsyncRead` path, through
//! Tokio's 8 KiB copy buffer), `copy-bidi` (one stream through a relay,
//! `tokio::io::copy_bidirectional_with_sizes` with 64 KiB each way, to an in-memory service
//! that discards what it gets and sends the same amount of its own; both directions' bytes;
//! raw TCP: the same with a TCP connection in place of the stream; Go does not run `copy` or
//! `copy-bidi`), `handshake` (open, 8-byte echo, close, in sequence, no flush),
//! `echo-seq` (the same with each write flushed, as a request/response protocol does; a rate,
//! with its ratio to `async_smux`; raw TCP: a new connection each), `openclose` (pipelined
//! open+close), `pingpong` and `pingpong-noflush` (64-byte round trips), `idle` (memory per
//! idle stream), the `wan-*` ones below, and `kcptun` and `kcptun-off` (64 MiB each way from
//! kcptun-client through our tunnel server and through Go's kcptun-server, with kcptun's
//! defaults and with `-crypt none -nocomp -datashard 0 -parityshard 0`; throughput, and the
//! server's CPU time and peak RSS: `bench/src/kcptun.rs`). `bench/src/workloads.rs` describes
//! the others.
//!
//! `--instructions` counts instead of timing (`bench/src/instructions.rs`): each chosen
//! implementation's child runs under `valgrind --tool=cachegrind --cache-sim=no` on the
//! current-thread runtime at N and 3N operations, and the difference over the 2N extra
//! operations is the user-space instructions per ping-pong round trip (`pingpong`, 64 B,
//! flushed), per open+8-byte echo+close (`echo-seq`) and per MiB of one stream's transfer
//! (`stream`); by default for raw TCP, smux-tokio v1 and v2, `async_smux` and, with `--before`,
//! the before build. The out files, their `cg_diff` and its `cg_annotate` go to
//! `target/bench-instructions/`, and the report lists each diff's top `--top K` (15)
//! functions by self instructions per operation.
//!
//! The `wan-*` workloads cross an emulated WAN link (`smux_test_support::link`; see
//! `bench/src/wan.rs`): `--link MBIT,RTT_MS,QUEUE_MS` sets its rate, round trip and router
//! buffer (default `100,50,50`), and `--notsent-lowat KIB` sets Linux's `TCP_NOTSENT_LOWAT`
//! on both ends' sockets (not set by default). Raw TCP does not run them (it opens a
//! connection per stream); the Go program runs them across a link this process runs
//! (`wan_forward`), and `wan-tunnel` is ours only.
//!
//! `--write-size BYTES` sets the write size of `stream`, `streams64`, `copy` and `copy-bidi`
//! (65536 by default; the Go program's `stream` and `streams64` take it too); the report's
//! header and those tables' titles say it. With `--instructions` it applies to `stream`.
//!
//! `--multi-thread`, the flag of old, is `--runtimes mt`. A measurement still running after
//! `--timeout` seconds (180) is killed and shows as "timeout" in its row.
//!
//! Every measurement runs in a child process of its own (this binary with `--child`, the
//! "before" build of it, or the Go program), so peak RSS is that implementation's alone.
//! Repetitions are interleaved: each round runs every implementation on every runtime once,
//! in an order that rotates from round to round. The tables (markdown) give medians, with
//! ratios against raw TCP and against `async_smux` on the same Tokio runtime.
//!
//! `--before COMMIT` checks COMMIT out in a git worktree `target/bench-before/<hash>` (made
//! once, then reused), copies this tree's `bench/`, `test-support/` and `Cargo.lock` over it, so that the
//! benchmark code and the dependencies are this run's and only the libraries are COMMIT's,
//! builds `smux-bench` there (release, target dir `target/bench-before/<hash>/target`) and
//! runs that binary's children beside ours.

mod impls;
mod instructions;
mod kcptun;
#[cfg(feature = "tunnel")]
mod tunnel;
mod wan;
mod workloads;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use impls::Impl;
use workloads::{Params, Workload, OPENCLOSE_WINDOW, WRITE_SIZE};

#[global_allocator]
static ALLOC: smux_test_support::alloc::CountingAlloc = smux_test_support::alloc::CountingAlloc;

/// Where a measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Runtime {
    /// Tokio's current-thread runtime.
    Ct,
    /// Tokio's multi-thread runtime, two workers.
    Mt,
    /// smol: `block_on` and the global executor (one thread by default).
    Smol,
    /// Go's own scheduler.
    Go,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Ct => "ct",
            Runtime::Mt => "mt",
            Runtime::Smol => "smol",
            Runtime::Go => "go",
        }
    }

    fn parse(s: &str) -> Option<Runtime> {
        match s {
            "ct" | "current-thread" => Some(Runtime::Ct),
            "mt" | "multi-thread" => Some(Runtime::Mt),
            _ => None,
        }
    }
}

/// What runs: one of ours in a child of this binary, the same built from the `--before`
/// commit, or the Go program with a protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Rust(Impl),
    Before(Impl),
    Go(u8),
    /// Our tunnel server (the `tunnel` binary), for the kcptun workloads.
    Tunnel,
    /// Go's kcptun-server, for the kcptun workloads.
    KcptunServer,
}

impl Kind {
    /// Measured by the kcptun workloads only (and those measure nothing else).
    fn kcptun(self) -> bool {
        matches!(self, Kind::Tunnel | Kind::KcptunServer)
    }
}

/// A measured implementation on a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Subject {
    kind: Kind,
    rt: Runtime,
}

impl Subject {
    fn name(self) -> String {
        match self.kind {
            Kind::Rust(i) => i.name().to_string(),
            Kind::Before(i) => before_name(i).to_string(),
            Kind::Go(v) => format!("go-smux-v{v}"),
            Kind::Tunnel => "smux-tunnel".to_string(),
            Kind::KcptunServer => "go-kcptun-server".to_string(),
        }
    }

    fn label(self) -> String {
        format!("{} {}", self.name(), self.rt.name())
    }
}

/// The name of the `--before` build of `i` (one of smux-tokio's or smux-futures').
fn before_name(i: Impl) -> &'static str {
    match i {
        Impl::SmuxV1 => "before-v1",
        Impl::SmuxV2 => "before-v2",
        Impl::FuturesV1 => "before-futures-v1",
        Impl::FuturesV2 => "before-futures-v2",
        _ => unreachable!("only smux-tokio and smux-futures have a before build"),
    }
}

const BEFORE: [Impl; 4] = [Impl::SmuxV1, Impl::SmuxV2, Impl::FuturesV1, Impl::FuturesV2];

#[derive(Clone)]
struct Options {
    /// The arguments as given, for the report.
    args: Vec<String>,
    reps: usize,
    params: Params,
    quick: bool,
    /// How long a measurement may take before it is killed and counted as a timeout.
    limit: Duration,
    /// The Tokio runtimes; smol and Go rows run once either way.
    runtimes: Vec<Runtime>,
    go: bool,
    before: Option<String>,
    only: Option<Vec<String>>,
    workloads: Vec<Workload>,
    /// `--workloads` was given.
    workloads_given: bool,
    /// `--instructions`: count instructions per operation under cachegrind instead.
    instructions: bool,
    /// `--top K`: the functions listed per count in `--instructions`.
    top: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("--child-kcptun") {
        kcptun::child(&args[1..]);
        return;
    }
    let opts = parse(&args);
    if opts.instructions {
        instructions::run(&opts);
    } else {
        parent(&opts);
    }
}

/// Prints `msg` and the usage to stderr and exits with status 2.
fn usage(msg: &str) -> ! {
    eprintln!("{msg}\n{}", usage_text());
    std::process::exit(2)
}

/// What `--help` prints.
fn usage_text() -> String {
    format!(
        "usage: smux-bench [--reps N] [--quick] [--runtimes ct,mt] [--multi-thread] \
         [--no-go] [--before COMMIT] [--impls a,b] [--workloads a,b] [--timeout SECS] \
         [--write-size BYTES] [--link MBIT,RTT_MS,QUEUE_MS] [--notsent-lowat KIB] \
         [--no-window-tuning]\n       \
         smux-bench --instructions [--impls a,b] [--workloads pingpong,echo-seq,stream] \
         [--top K] [--before COMMIT] [--quick] [--write-size BYTES]\n  \
         --runtimes: the Tokio runtimes, ct (current-thread) and/or mt (multi-thread, 2 \
         workers); default both. --multi-thread is --runtimes mt. smux-futures rows run once, \
         on smol; Go rows once.\n  \
         --before COMMIT: also smux-tokio and smux-futures built from COMMIT\n  \
         --timeout SECS: a measurement still running after SECS (default 180) is killed \
         and reported as a timeout\n  \
         --link, --notsent-lowat, --no-window-tuning: the wan-* workloads' emulated link \
         (default 100,50,50), TCP_NOTSENT_LOWAT on its sockets, ours without window tuning \
         (bench/src/wan.rs)\n  \
         --write-size BYTES: the sender's write size in stream, streams64, copy and copy-bidi \
         (default {WRITE_SIZE}); in the report's header and those tables' titles\n  \
         --instructions: user-space instructions per operation under cachegrind (N and 3N \
         operations, current-thread runtime), for raw-tcp, smux-tokio-v1/v2, async_smux and \
         the before build unless --impls says; --top K: the functions listed per count (15)\n  \
         impls: {}, {}, go-smux-v1, go-smux-v2, smux-tunnel, go-kcptun-server (the last two: \
         the kcptun workloads only)\n  workloads: {} (copy: the receiver is tokio::io::copy \
         into tokio::io::sink(); copy-bidi: a relay, copy_bidirectional_with_sizes with 64 KiB \
         each way, between the stream and an in-memory service; neither runs on Go)",
        Impl::ALL.map(Impl::name).join(", "),
        BEFORE.map(before_name).join(", "),
        Workload::ALL.map(Workload::name).join(", ")
    )
}

fn parse(args: &[String]) -> Options {
    let mut o = Options {
        args: args.to_vec(),
        reps: 3,
        params: Params::FULL,
        quick: false,
        limit: CHILD_LIMIT,
        runtimes: vec![Runtime::Ct, Runtime::Mt],
        go: true,
        before: None,
        only: None,
        workloads: Workload::ALL.to_vec(),
        workloads_given: false,
        instructions: false,
        top: 15,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--help" | "-h" => {
                println!("{}", usage_text());
                std::process::exit(0)
            }
            "--reps" => o.reps = value().parse().unwrap_or_else(|_| usage("--reps N")),
            "--write-size" => {
                o.params.write = value()
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .unwrap_or_else(|| usage("--write-size BYTES (at least 1)"))
            }
            "--timeout" => {
                let secs = value().parse().unwrap_or_else(|_| usage("--timeout SECS"));
                o.limit = Duration::from_secs(secs);
            }
            "--quick" => {
                // The sizes only: what other options set (before it or after) stays.
                let p = o.params;
                o.params = Params {
                    write: p.write,
                    mbit: p.mbit,
                    rtt_ms: p.rtt_ms,
                    queue_ms: p.queue_ms,
                    lowat_kib: p.lowat_kib,
                    no_tuning: p.no_tuning,
                    ..Params::QUICK
                };
                o.quick = true;
            }
            "--runtimes" => {
                let mut rts: Vec<Runtime> = value()
                    .split(',')
                    .map(|r| {
                        Runtime::parse(r).unwrap_or_else(|| usage(&format!("unknown runtime {r}")))
                    })
                    .collect();
                rts.sort();
                rts.dedup();
                o.runtimes = rts;
            }
            // The flag of old, kept for old command lines.
            "--multi-thread" => o.runtimes = vec![Runtime::Mt],
            "--no-go" => o.go = false,
            "--link" => {
                let v: Vec<u64> = value()
                    .split(',')
                    .map(|n| {
                        n.parse()
                            .unwrap_or_else(|_| usage("--link MBIT,RTT_MS,QUEUE_MS"))
                    })
                    .collect();
                let [mbit, rtt, queue] = v[..] else {
                    usage("--link MBIT,RTT_MS,QUEUE_MS")
                };
                if mbit == 0 {
                    usage("--link: the rate must be above 0");
                }
                (o.params.mbit, o.params.rtt_ms, o.params.queue_ms) = (mbit, rtt, queue);
            }
            "--notsent-lowat" => {
                o.params.lowat_kib = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--notsent-lowat KIB"))
            }
            "--no-window-tuning" => o.params.no_tuning = true,
            "--before" => o.before = Some(value()),
            "--impls" => o.only = Some(value().split(',').map(str::to_string).collect()),
            "--instructions" => o.instructions = true,
            "--top" => o.top = value().parse().unwrap_or_else(|_| usage("--top K")),
            "--workloads" => {
                o.workloads_given = true;
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
    if let Some(only) = &o.only {
        let known: Vec<String> = Impl::ALL
            .map(|i| i.name().to_string())
            .into_iter()
            .chain(BEFORE.map(|i| before_name(i).to_string()))
            .chain(
                [
                    "go-smux-v1",
                    "go-smux-v2",
                    "smux-tunnel",
                    "go-kcptun-server",
                ]
                .map(str::to_string),
            )
            .collect();
        for name in only {
            if !known.contains(name) {
                usage(&format!("unknown implementation {name}"));
            }
            if name.starts_with("before-") && o.before.is_none() {
                usage(&format!("{name} needs --before COMMIT"));
            }
        }
    }
    o
}

/// The subjects of a run, in the order of the tables: by runtime, then implementation.
fn subjects(o: &Options) -> Vec<Subject> {
    let before = o.before.is_some();
    let mut v = Vec::new();
    let mut add = |kind, rt| v.push(Subject { kind, rt });
    for &rt in &o.runtimes {
        for i in [Impl::Raw, Impl::SmuxV1, Impl::SmuxV2] {
            add(Kind::Rust(i), rt);
        }
        if before {
            for i in [Impl::SmuxV1, Impl::SmuxV2] {
                add(Kind::Before(i), rt);
            }
        }
        for i in [Impl::AsyncSmux, Impl::Yamux] {
            add(Kind::Rust(i), rt);
        }
    }
    for i in [Impl::FuturesV1, Impl::FuturesV2] {
        add(Kind::Rust(i), Runtime::Smol);
    }
    if before {
        for i in [Impl::FuturesV1, Impl::FuturesV2] {
            add(Kind::Before(i), Runtime::Smol);
        }
    }
    if o.go {
        for version in [1, 2] {
            add(Kind::Go(version), Runtime::Go);
        }
    }
    if o.workloads.iter().all(|w| w.kcptun()) {
        // No workload measures the libraries.
        v.clear();
    }
    let mut add = |kind, rt| v.push(Subject { kind, rt });
    if o.workloads.iter().any(|w| w.kcptun()) {
        // The tunnel binary runs on Tokio's multi-thread runtime, a worker per CPU.
        add(Kind::Tunnel, Runtime::Mt);
        if o.go {
            add(Kind::KcptunServer, Runtime::Go);
        }
    }
    if let Some(only) = &o.only {
        v.retain(|s| only.contains(&s.name()));
    }
    v
}

// ------------------------------------------------------------------------------ the child

fn child(args: &[String]) {
    let (Some(imp), Some(w)) = (
        args.first().and_then(|s| Impl::parse(s)),
        args.get(1).and_then(|s| Workload::parse(s)),
    ) else {
        usage("--child IMPL WORKLOAD [key=value ...] [multi-thread]")
    };
    // Tokio's runtime: current-thread unless `multi-thread` (the smux-futures ones run on smol).
    let multi = args.iter().any(|a| a == "multi-thread");
    let params = Params::from_args(&args[2..]);
    let run = if imp.on_smol() {
        // In a task of the global executor, as the workers and the servers are.
        smol::block_on(smol::spawn(workloads::run(imp, w, params)))
    } else {
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
        // In a task of its own, as application code runs: Tokio polls the `block_on` future
        // only after a pass over its I/O driver, which would add a syscall to every wake-up
        // by a task.
        rt.block_on(async move { tokio::spawn(workloads::run(imp, w, params)).await })
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    match run {
        Ok(fields) => {
            let mut line = String::from("RESULT");
            for (k, v) in fields {
                line += &format!(" {k}={v:.6}");
            }
            line += &format!(" peak_rss_kib={}", status_kib("VmHWM"));
            println!("{line}");
        }
        Err(e) => {
            eprintln!("{} {}: {e}", imp.name(), w.name());
            std::process::exit(1);
        }
    }
}

/// A figure of this process's memory in KiB from `/proc/self/status` (0 if unknown): `VmHWM`,
/// the high-water mark of resident memory, or `VmRSS`, resident memory now.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------ the parent

/// The root of this tree (the workspace).
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// The target directory this binary was built into (`target/release/smux-bench`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| repo_root().join("target"))
}

/// `git -C dir args`: its trimmed output, or `None` if it failed.
fn git<I, S>(dir: &Path, args: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the Go program into `target/go-bench`; `None` (with a note) without `go`.
fn build_go() -> Option<PathBuf> {
    let root = repo_root();
    let out = target_dir().join("go-bench/go-bench");
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

/// Makes `dst` a copy of the directory `src`: files whose content differs are copied (the
/// others keep their time stamps, so that cargo does not rebuild), files `src` lacks removed;
/// entries of `src` itself named in `except` are left alone.
fn mirror(src: &Path, dst: &Path, except: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(dst)? {
        let entry = entry?;
        if except.iter().any(|e| entry.file_name() == *e) {
            continue;
        }
        if !src.join(entry.file_name()).exists() {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(path)?;
            } else {
                std::fs::remove_file(path)?;
            }
        }
    }
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        if except.iter().any(|e| entry.file_name() == *e) {
            continue;
        }
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            mirror(&entry.path(), &to, &[])?;
        } else {
            copy_if_changed(&entry.path(), &to)?;
        }
    }
    Ok(())
}

fn copy_if_changed(from: &Path, to: &Path) -> std::io::Result<()> {
    write_if_changed(to, &std::fs::read(from)?)
}

fn write_if_changed(to: &Path, new: &[u8]) -> std::io::Result<()> {
    if std::fs::read(to).ok().as_deref() != Some(new) {
        std::fs::write(to, new)?;
    }
    Ok(())
}

/// bench/Cargo.toml for the `--before` build: this tree's, without the smux-tunnel
/// dependency (older commits have no smux-tunnel; the before build is made without the
/// `tunnel` feature anyway), written only if it changed.
fn before_manifest(root: &Path, dir: &Path) -> std::io::Result<()> {
    let ours = std::fs::read_to_string(root.join("bench/Cargo.toml"))?;
    let stripped: String = ours
        .lines()
        .filter(|l| !l.trim_start().starts_with("smux-tunnel"))
        .map(|l| {
            if l.trim_start().starts_with("tunnel =") {
                "tunnel = []\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    write_if_changed(&dir.join("bench/Cargo.toml"), stripped.as_bytes())
}

/// The `--before` build: `commit` checked out in a worktree of its own, with this tree's
/// `bench/` and `Cargo.lock` copied over it, built in release. The binary's path and a line
/// that names the commit.
fn build_before(commit: &str) -> Result<(PathBuf, String), String> {
    let root = repo_root();
    let hash = git(
        &root,
        ["rev-parse", "--verify", &format!("{commit}^{{commit}}")],
    )
    .ok_or_else(|| format!("{commit}: not a commit of {}", root.display()))?;
    let dir = target_dir().join("bench-before").join(&hash[..12]);
    if dir.join(".git").exists() {
        let head = git(&dir, ["rev-parse", "HEAD"]);
        if head.as_deref() != Some(hash.as_str()) {
            return Err(format!(
                "{} is at {}, not at {hash}: remove it (git worktree remove --force)",
                dir.display(),
                head.as_deref().unwrap_or("?")
            ));
        }
    } else {
        std::fs::create_dir_all(dir.parent().expect("under target")).map_err(|e| e.to_string())?;
        eprintln!("before: git worktree add --detach {} {hash}", dir.display());
        // -f: the path may be registered from an earlier run whose directory is gone.
        let added = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["worktree", "add", "-f", "--detach"])
            .arg(&dir)
            .arg(&hash)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("git: {e}"))?;
        if !added.success() {
            return Err(format!("git worktree add failed ({added})"));
        }
    }
    // Our benchmark code (with its helpers, the link emulator among them) and our
    // dependencies' versions: only the libraries are the commit's.
    mirror(&root.join("bench"), &dir.join("bench"), &["Cargo.toml"])
        .and_then(|()| before_manifest(&root, &dir))
        .and_then(|()| mirror(&root.join("test-support"), &dir.join("test-support"), &[]))
        .and_then(|()| copy_if_changed(&root.join("Cargo.lock"), &dir.join("Cargo.lock")))
        .map_err(|e| format!("copying bench/, test-support/ and Cargo.lock: {e}"))?;
    let target = dir.join("target");
    eprintln!(
        "before: cargo build --release -p smux-bench in {}",
        dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        // Without `split`: a commit before `Split` gives its transports whole.
        .args([
            "build",
            "--release",
            "-p",
            "smux-bench",
            "--no-default-features",
        ])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !built.success() {
        return Err(format!("cargo build failed ({built})"));
    }
    let subject = git(&dir, ["log", "-1", "--format=%h %s"]).unwrap_or_default();
    Ok((target.join("release/smux-bench"), subject))
}

/// How long one measurement may take before it counts as a hang, unless `--timeout` says.
const CHILD_LIMIT: Duration = Duration::from_secs(180);

/// Runs one measurement; `None` if it outlived `limit` (it is killed, and so is its process
/// group if it leads one: a kcptun child's servers and clients).
fn run_child(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child");
    let start = Instant::now();
    while child.try_wait().expect("wait for a child").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            // Only a group the child made has its id: nothing else can be hit.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().ok()
}

/// Starts an emulated link for a Go child of a WAN workload: it listens on a free port and
/// dials the link's end, which connects to that port.
fn go_link(cmd: &mut Command, p: &Params) -> std::io::Result<smux_test_support::link::Link> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let forward = smux_test_support::link::wan_forward(p.link(), target)?;
    cmd.arg(format!("listen={port}"))
        .arg(format!("dial={}", forward.addr.port()));
    Ok(forward.link)
}

/// Pairs of implementation and workload that cannot run as specified, and why.
fn not_applicable(s: Subject, w: Workload) -> Option<&'static str> {
    if s.kind.kcptun() {
        return None;
    }
    let imp = match s.kind {
        Kind::Rust(i) | Kind::Before(i) => Some(i),
        Kind::Go(_) | Kind::Tunnel | Kind::KcptunServer => None,
    };
    match (imp, w) {
        (Some(Impl::Raw), Workload::Idle) => Some(
            "10,000 idle TCP connections need more descriptors than the default limit, and \
             their memory is the kernel's, not the heap's",
        ),
        (Some(Impl::Yamux), Workload::OpenClose | Workload::Idle) => Some(
            "yamux 0.13 sends a stream's SYN with its first frame, and a close before any \
             data goes out without it: the peer never sees the stream",
        ),
        (Some(i), Workload::WanTunnel) if !matches!(i, Impl::SmuxV1 | Impl::SmuxV2) => {
            Some("the tunnel example is built on smux-tokio")
        }
        (Some(_), Workload::WanTunnel) if matches!(s.kind, Kind::Before(_)) => {
            Some("the \"before\" build has no tunnel workload")
        }
        (Some(Impl::Raw), w) if w.over_link() => Some(
            "raw TCP opens a connection per stream, and the link emulates one connection: \
             the link's own rate, beside each row, is the ceiling",
        ),
        (None, Workload::WanTunnel) => Some("the tunnel example is built on smux-tokio"),
        (None, Workload::Bidi) => Some("the Go program has no bidi workload"),
        (None, Workload::Copy | Workload::CopyBidi) => Some(
            "tokio::io::copy and copy_bidirectional are Tokio's: the Go program has no copy \
             workloads",
        ),
        (None, w) if w.go_name().is_none() => Some(
            "Go's writes go out at once, with nothing to flush: its pingpong row is this \
             measurement",
        ),
        _ => None,
    }
}

/// The runs of one subject on one workload.
#[derive(Default)]
struct Runs {
    ok: Vec<BTreeMap<String, f64>>,
    /// Killed after the time limit.
    timed_out: usize,
    /// Ended without a result.
    failed: usize,
}

type Results = BTreeMap<(usize, Subject), Runs>;

/// The programs the children are.
struct Programs {
    this: PathBuf,
    before: Option<PathBuf>,
    go: Option<PathBuf>,
    /// The tunnel binary, for the kcptun workloads.
    tunnel: Option<PathBuf>,
}

impl Programs {
    fn command(&self, s: Subject, w: Workload, p: &Params) -> Command {
        match s.kind {
            Kind::Rust(i) | Kind::Before(i) => {
                let exe = match s.kind {
                    Kind::Before(_) => self.before.as_ref().expect("built"),
                    _ => &self.this,
                };
                let mut c = Command::new(exe);
                c.args(["--child", i.name(), w.name()]);
                c.args(p.args(w));
                if s.rt == Runtime::Mt {
                    c.arg("multi-thread");
                }
                c
            }
            Kind::Go(v) => {
                let mut c = Command::new(self.go.as_ref().expect("built"));
                c.arg(w.go_name().expect("applicable"))
                    .arg(format!("v={v}"));
                c.args(p.args(w));
                c
            }
            Kind::Tunnel | Kind::KcptunServer => {
                let mut c = Command::new(&self.this);
                let server = if s.kind == Kind::Tunnel { "ours" } else { "go" };
                let config = if w == Workload::KcptunOff {
                    "off"
                } else {
                    "defaults"
                };
                let tunnel = self.tunnel.as_deref().unwrap_or(Path::new(""));
                // A process group of its own, which the processes it starts join: a child
                // killed at the time limit takes them along (see `run_child`).
                #[cfg(unix)]
                std::os::unix::process::CommandExt::process_group(&mut c, 0);
                c.args(["--child-kcptun", server, config]);
                c.arg(format!("tunnel={}", tunnel.display()));
                c.args(p.args(w));
                c
            }
        }
    }
}

/// The command line as given, for the report.
fn command_line(o: &Options) -> String {
    let quote = |a: &String| {
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-,.=/:@+".contains(c));
        if plain {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    let args: String = o.args.iter().map(|a| format!(" {}", quote(a))).collect();
    if std::env::var_os("CARGO").is_some() {
        // Run by `cargo run`.
        let release = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        let tail = if args.is_empty() {
            String::new()
        } else {
            format!(" --{args}")
        };
        format!("cargo run{release} -p smux-bench{tail}")
    } else {
        let exe = std::env::args()
            .next()
            .unwrap_or_else(|| "smux-bench".into());
        format!("{}{args}", quote(&exe))
    }
}

fn parent(o: &Options) {
    let command = command_line(o);
    eprintln!("{command}");
    let mut subjects = subjects(o);
    let go = if subjects.iter().any(|s| matches!(s.kind, Kind::Go(_))) {
        build_go()
    } else {
        None
    };
    let mut before_line = None;
    let before = match &o.before {
        Some(commit) if subjects.iter().any(|s| matches!(s.kind, Kind::Before(_))) => {
            match build_before(commit) {
                Ok((exe, line)) => {
                    before_line = Some(line);
                    Some(exe)
                }
                Err(e) => {
                    eprintln!("note: the --before build failed, its rows left out: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let mut tunnel = None;
    if subjects.iter().any(|s| s.kind.kcptun()) {
        if !kcptun::installed("kcptun-client") {
            eprintln!(
                "note: no kcptun-client (Debian's package kcptun): the kcptun workloads left out"
            );
        } else {
            match kcptun::build_tunnel(&target_dir()) {
                Ok(path) => tunnel = Some(path),
                Err(e) => eprintln!(
                    "note: the tunnel binary did not build, the kcptun workloads left out: {e}"
                ),
            }
        }
    }
    let kcptun_server = tunnel.is_some() && kcptun::installed("kcptun-server");
    subjects.retain(|s| match s.kind {
        Kind::Rust(_) => true,
        Kind::Before(_) => before.is_some(),
        Kind::Go(_) => go.is_some(),
        Kind::Tunnel => tunnel.is_some(),
        Kind::KcptunServer => kcptun_server,
    });
    let programs = Programs {
        this: std::env::current_exe().expect("own path"),
        before,
        go,
        tunnel,
    };
    let mut results: Results = BTreeMap::new();
    let started = Instant::now();
    for rep in 0..o.reps {
        for (wi, &w) in o.workloads.iter().enumerate() {
            for k in 0..subjects.len() {
                let s = subjects[(k + rep) % subjects.len()];
                // The kcptun workloads measure the two kcptun servers, and nothing else them.
                if s.kind.kcptun() != w.kcptun() {
                    continue;
                }
                if let Some(why) = not_applicable(s, w) {
                    if rep == 0 {
                        eprintln!("{} {}: left out: {why}", s.label(), w.name());
                    }
                    continue;
                }
                let runs = results.entry((wi, s)).or_default();
                let t = Instant::now();
                let mut cmd = programs.command(s, w, &o.params);
                // The Go program crosses a link that runs here (ours runs in the child).
                let go_link = match s.kind {
                    Kind::Go(_) if w.over_link() => match go_link(&mut cmd, &o.params) {
                        Ok(link) => Some(link),
                        Err(e) => {
                            eprintln!("{} {}: no link: {e}", s.label(), w.name());
                            runs.failed += 1;
                            continue;
                        }
                    },
                    _ => None,
                };
                let Some(out) = run_child(cmd, o.limit) else {
                    eprintln!(
                        "{} {}: no result in {:?}, killed",
                        s.label(),
                        w.name(),
                        o.limit
                    );
                    runs.timed_out += 1;
                    continue;
                };
                let text = String::from_utf8_lossy(&out.stdout);
                let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT")) else {
                    eprintln!(
                        "{} {}: failed ({}): {}",
                        s.label(),
                        w.name(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    runs.failed += 1;
                    continue;
                };
                let mut fields: BTreeMap<String, f64> = line
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                    .collect();
                if let Some(link) = go_link {
                    for (k, v) in wan::link_fields(&link, &o.params) {
                        fields.insert(k.to_string(), v);
                    }
                }
                eprintln!(
                    "rep {} {:>16} {:>17} {:>4} ({:.1} s):{line}",
                    rep + 1,
                    w.name(),
                    s.name(),
                    s.rt.name(),
                    t.elapsed().as_secs_f64()
                );
                runs.ok.push(fields);
            }
        }
    }
    let header = Header {
        command,
        before: before_line,
    };
    report(o, &header, &subjects, &results);
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
    let link = Metric {
        name: "link's own rate",
        unit: "Mbit/s",
        higher_better: true,
        value: |f| field(f, "link_mbit"),
    };
    let rate = Metric {
        name: "rate",
        unit: "K/s",
        higher_better: true,
        value: |f| field(f, "ops") / field(f, "secs") / 1000.0,
    };
    match w {
        Workload::Kcptun | Workload::KcptunOff => vec![
            Metric {
                name: "upload, kcptun-client to the server",
                unit: "MiB/s",
                higher_better: true,
                value: |f| field(f, "bytes") / field(f, "up_secs") / (1u64 << 20) as f64,
            },
            Metric {
                name: "download, the server to kcptun-client",
                unit: "MiB/s",
                higher_better: true,
                value: |f| field(f, "bytes") / field(f, "down_secs") / (1u64 << 20) as f64,
            },
            Metric {
                name: "server CPU time, upload",
                unit: "s",
                higher_better: false,
                value: |f| field(f, "up_cpu_secs"),
            },
            Metric {
                name: "server CPU time, download",
                unit: "s",
                higher_better: false,
                value: |f| field(f, "down_cpu_secs"),
            },
            Metric {
                name: "server peak RSS",
                unit: "MiB",
                higher_better: false,
                value: |f| field(f, "up_rss_kib").max(field(f, "down_rss_kib")) / 1024.0,
            },
        ],
        Workload::Stream
        | Workload::Streams64
        | Workload::Bidi
        | Workload::Copy
        | Workload::CopyBidi => vec![gib_s, rss],
        Workload::Handshake | Workload::EchoSeq | Workload::OpenClose => vec![rate],
        Workload::PingPong | Workload::PingPongNoFlush => vec![
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
        Workload::WanStream => vec![
            Metric {
                name: "fraction of the link rate",
                unit: "x",
                higher_better: true,
                value: |f| field(f, "link_fraction"),
            },
            Metric {
                name: "time to 80% of the rate",
                unit: "s",
                higher_better: false,
                value: |f| field(f, "t80_secs"),
            },
            link,
        ],
        Workload::WanMixed => vec![
            Metric {
                name: "bulk rate",
                unit: "Mbit/s",
                higher_better: true,
                value: |f| field(f, "bulk_mbit"),
            },
            Metric {
                name: "interactive p50",
                unit: "ms",
                higher_better: false,
                value: |f| field(f, "p50_ms"),
            },
            Metric {
                name: "interactive p99",
                unit: "ms",
                higher_better: false,
                value: |f| field(f, "p99_ms"),
            },
            Metric {
                name: "queued ahead of a request, max",
                unit: "frames",
                higher_better: false,
                value: |f| field(f, "ahead_max_frames"),
            },
            Metric {
                name: "queued ahead of a request, max",
                unit: "KiB",
                higher_better: false,
                value: |f| field(f, "ahead_max_kib"),
            },
            link,
        ],
        Workload::WanTunnel => vec![
            Metric {
                name: "N=1: interactive p50",
                unit: "ms",
                higher_better: false,
                value: |f| field(f, "n1_p50_ms"),
            },
            Metric {
                name: "N=4: interactive p50",
                unit: "ms",
                higher_better: false,
                value: |f| field(f, "n4_p50_ms"),
            },
            Metric {
                name: "N=1: interactive p99",
                unit: "ms",
                higher_better: false,
                value: |f| field(f, "n1_p99_ms"),
            },
            Metric {
                name: "N=4: interactive p99",
                unit: "ms",
                higher_better: false,
                value: |f| field(f, "n4_p99_ms"),
            },
            Metric {
                name: "N=1: bulk rate",
                unit: "Mbit/s",
                higher_better: true,
                value: |f| field(f, "n1_bulk_mbit"),
            },
            Metric {
                name: "N=4: bulk rate",
                unit: "Mbit/s",
                higher_better: true,
                value: |f| field(f, "n4_bulk_mbit"),
            },
        ],
        Workload::WanFetch => vec![
            Metric {
                name: "1 MiB fetch, cold",
                unit: "RTT",
                higher_better: false,
                value: |f| field(f, "cold_rtts"),
            },
            Metric {
                name: "1 MiB fetch, warm",
                unit: "RTT",
                higher_better: false,
                value: |f| field(f, "warm_rtts"),
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
                name: "RSS per stream",
                unit: "bytes",
                higher_better: false,
                value: |f| field(f, "rss_per_stream"),
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
    let line = describe_workload(w, p);
    if p.no_tuning && w.over_link() {
        format!("{line}; ours with window tuning off")
    } else {
        line
    }
}

/// The `TCP_NOTSENT_LOWAT` setting, for a description.
fn lowat(p: &Params) -> String {
    if p.lowat_kib > 0 {
        format!(", TCP_NOTSENT_LOWAT {} KiB", p.lowat_kib)
    } else {
        String::new()
    }
}

/// A write size for a description: `64 KiB`, `1000 B`.
pub(crate) fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn describe_workload(w: Workload, p: &Params) -> String {
    match w {
        Workload::Stream => format!("one stream, {} MiB in {} writes", p.mib, size(p.write)),
        Workload::Streams64 => format!(
            "{} streams at once, {} MiB in all in {} writes",
            p.streams,
            p.mib,
            size(p.write)
        ),
        Workload::Copy => format!(
            "copy: one stream, {} MiB in {} writes, the receiver tokio::io::copy into \
             tokio::io::sink() (8 KiB buffer)",
            p.mib,
            size(p.write)
        ),
        Workload::CopyBidi => format!(
            "copy-bidi: one stream through a relay, copy_bidirectional_with_sizes (64 KiB each \
             way) to an in-memory service; {} MiB each way, the client's in {} writes (raw TCP: \
             a TCP connection in place of the stream); both directions' bytes",
            p.mib,
            size(p.write)
        ),
        Workload::Bidi => format!(
            "two streams at once, one each way, {} MiB each in 64 KiB writes (raw TCP: one \
             connection, a direction each way); both directions' bytes",
            p.mib
        ),
        Workload::Handshake => format!(
            "open, 8-byte echo, close, no flush; {} in sequence (raw TCP: a connection each)",
            p.ops
        ),
        Workload::EchoSeq => format!(
            "echo-seq: open, 8-byte echo, close, each write flushed; {} in sequence (raw TCP: \
             a connection each)",
            p.ops
        ),
        Workload::OpenClose => format!(
            "{} pipelined open+close, no payload, at most {OPENCLOSE_WINDOW} in flight",
            p.openclose
        ),
        Workload::PingPong => format!(
            "64-byte ping-pong, each write flushed, {} round trips",
            p.iters
        ),
        Workload::PingPongNoFlush => {
            format!("64-byte ping-pong, no flush, {} round trips", p.iters)
        }
        Workload::Idle => format!("{} idle streams, both ends", p.idle),
        Workload::WanStream => format!(
            "over a {} Mbit/s, {} ms link: one stream, {} MiB",
            p.mbit, p.rtt_ms, p.wan_mib
        ),
        Workload::WanMixed => format!(
            "over a {} Mbit/s, {} ms link ({} ms router buffer{}): 8 bulk streams and 64-byte \
             requests on a ninth, {} s",
            p.mbit,
            p.rtt_ms,
            p.queue_ms,
            lowat(p),
            p.wan_secs
        ),
        Workload::WanTunnel => format!(
            "the tunnel over a {} Mbit/s, {} ms link ({} ms router buffer{}) that stalls for \
             200 ms about every second: 4 bulk and 4 interactive users (64-byte requests), {} s, \
             on N smux connections",
            p.mbit,
            p.rtt_ms,
            p.queue_ms,
            lowat(p),
            p.wan_secs
        ),
        Workload::WanFetch => format!(
            "over a {} Mbit/s, {} ms link: a new stream fetching 1 MiB, on a new connection \
             (cold) and after 16 MiB and 1 s idle (warm)",
            p.mbit, p.rtt_ms
        ),
        Workload::Kcptun => format!(
            "kcptun-client through each server, kcptun's defaults (aes, FEC 10+3, snappy, \
             fast, mtu 1350): one {} MiB transfer each way, pseudo-random data",
            p.kcptun_mib
        ),
        Workload::KcptunOff => format!(
            "kcptun-client through each server, -crypt none -nocomp -datashard 0 \
             -parityshard 0: one {} MiB transfer each way",
            p.kcptun_mib
        ),
    }
}

/// What the report says about the run besides the figures.
struct Header {
    command: String,
    /// The `--before` commit, `hash subject`, when its rows were built.
    before: Option<String>,
}

fn cpu_model() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs, {model}")
}

/// This tree's commit, `hash subject`, and whether it has uncommitted changes.
fn this_tree() -> String {
    let root = repo_root();
    let mut this = git(&root, ["log", "-1", "--format=%h %s"]).unwrap_or_default();
    if git(&root, ["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty())
    {
        this += " (with uncommitted changes)";
    }
    this
}

fn report(o: &Options, h: &Header, subjects: &[Subject], results: &Results) {
    let this = this_tree();
    // The baselines of a row: those on its Tokio runtime; smol and Go rows take the first
    // Tokio runtime of the run.
    let base_rt = |rt: Runtime| match rt {
        Runtime::Ct | Runtime::Mt => rt,
        _ => o.runtimes.first().copied().unwrap_or(Runtime::Ct),
    };
    println!("\n`{}`\n", h.command);
    println!("- this tree: {this}");
    if let Some(b) = &h.before {
        println!("- before: {b} (its smux-tokio and smux-futures, this tree's benchmark)");
    }
    println!("- {}", cpu_model());
    println!(
        "- {} sizes, medians of {} interleaved run{} per row",
        if o.quick { "quick" } else { "full" },
        o.reps,
        if o.reps == 1 { "" } else { "s" }
    );
    let sized: Vec<&str> = o
        .workloads
        .iter()
        .filter(|w| w.sized_writes())
        .map(|w| w.name())
        .collect();
    if !sized.is_empty() {
        println!(
            "- write size: {} bytes{} ({})",
            o.params.write,
            if o.params.write == WRITE_SIZE {
                ", the default"
            } else {
                ", --write-size"
            },
            sized.join(", ")
        );
    }
    // What the tables of the library workloads need said; a kcptun table says its own.
    if o.workloads.iter().any(|w| !w.kcptun()) {
        println!(
            "- runtime: `ct` Tokio current-thread, `mt` Tokio multi-thread with 2 workers, \
             `smol` smol::block_on with smol's global executor (1 thread), `go` Go's scheduler"
        );
        println!(
            "- ratio = ours / theirs, > 1 is better (for latency and memory: theirs / ours), \
             against raw TCP and async_smux on the same Tokio runtime; smol and Go rows against \
             `{}`",
            base_rt(Runtime::Go).name()
        );
        if subjects.iter().any(|s| matches!(s.kind, Kind::Go(_))) {
            println!(
                "- Go (`interop/go-bench`): its writes go out at once, so it has one ping-pong, \
                 shown as the flushed one, and its handshake is also the echo-seq row; its open+close is not windowed (the client opens and \
                 closes all streams without reading the server's close)"
            );
        }
        println!(
            "- \"timeout\": no result within {} s, killed; \"failed\": the run ended without one; \
             \"–\" as a median: not reported (queued ahead is ours only) or never reached (time to 80 %)",
            o.limit.as_secs()
        );
    } else {
        println!(
            "- the server: `smux-tunnel` our tunnel's release binary (`tunnel server \
             --transport kcp`, Tokio's multi-thread runtime), `go-kcptun-server` Debian's \
             kcptun-server; the client kcptun-client either way; ours vs Go > 1 is better"
        );
    }
    for (wi, &w) in o.workloads.iter().enumerate() {
        if w.kcptun() {
            report_kcptun(o, wi, w, subjects, results);
            continue;
        }
        println!("\n#### {}\n", describe(w, &o.params));
        println!("| figure | runtime | implementation | median | vs raw TCP | vs async_smux |");
        println!("|---|---|---|---:|---:|---:|");
        for m in metrics(w) {
            let med = |s: Subject| {
                results
                    .get(&(wi, s))
                    .map(|runs| median(runs.ok.iter().map(m.value).collect()))
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
                let Some(runs) = results.get(&(wi, s)) else {
                    continue;
                };
                let v = med(s);
                if v.is_nan() && !runs.ok.is_empty() {
                    // A figure this implementation does not report (ours-only statistics).
                    continue;
                }
                let total = runs.ok.len() + runs.timed_out + runs.failed;
                let mut why = Vec::new();
                if runs.timed_out > 0 {
                    why.push(format!("{} timeout", runs.timed_out));
                }
                if runs.failed > 0 {
                    why.push(format!("{} failed", runs.failed));
                }
                let cell = if runs.ok.is_empty() {
                    match (runs.timed_out, runs.failed) {
                        (t, 0) if t > 0 => format!("timeout ({} s)", o.limit.as_secs()),
                        (0, _) => "failed".to_string(),
                        _ => why.join(", "),
                    }
                } else if why.is_empty() {
                    format!("{v:.3}")
                } else {
                    format!(
                        "{v:.3} ({} of {total} runs; {})",
                        runs.ok.len(),
                        why.join(", ")
                    )
                };
                let base = |i: Impl| {
                    med(Subject {
                        kind: Kind::Rust(i),
                        rt: base_rt(s.rt),
                    })
                };
                println!(
                    "| {} ({}) | {} | {} | {} | {} | {} |",
                    m.name,
                    m.unit,
                    s.rt.name(),
                    s.name(),
                    cell,
                    ratio(v, base(Impl::Raw)),
                    ratio(v, base(Impl::AsyncSmux)),
                );
            }
        }
    }
}

/// A kcptun workload's table: each server's medians, and ours against Go's.
fn report_kcptun(o: &Options, wi: usize, w: Workload, subjects: &[Subject], results: &Results) {
    println!("\n#### {}\n", describe(w, &o.params));
    let ran: Vec<Subject> = subjects
        .iter()
        .copied()
        .filter(|s| s.kind.kcptun() && results.contains_key(&(wi, *s)))
        .collect();
    if ran.is_empty() {
        println!("(not run: no kcptun)");
        return;
    }
    println!("| figure | server | median | ours vs Go |");
    println!("|---|---|---:|---:|");
    for m in metrics(w) {
        let med = |kind: Kind| {
            ran.iter()
                .find(|s| s.kind == kind)
                .and_then(|s| results.get(&(wi, *s)))
                .map(|runs| median(runs.ok.iter().map(m.value).collect()))
                .unwrap_or(f64::NAN)
        };
        let (ours, go) = (med(Kind::Tunnel), med(Kind::KcptunServer));
        let r = if m.higher_better {
            ours / go
        } else {
            go / ours
        };
        for &s in &ran {
            let runs = &results[&(wi, s)];
            let v = med(s.kind);
            let cell = if runs.ok.is_empty() {
                "failed or timed out".to_string()
            } else if runs.failed + runs.timed_out > 0 {
                format!(
                    "{v:.3} ({} of {} runs)",
                    runs.ok.len(),
                    runs.ok.len() + runs.failed + runs.timed_out
                )
            } else {
                format!("{v:.3}")
            };
            let ratio = if s.kind == Kind::Tunnel && r.is_finite() {
                format!("{r:.2}")
            } else {
                "–".to_string()
            };
            println!(
                "| {} ({}) | {} | {} | {} |",
                m.name,
                m.unit,
                s.name(),
                cell,
                ratio
            );
        }
    }
}
