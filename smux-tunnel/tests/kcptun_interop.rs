//! The tunnel against Debian's kcptun (20210922: smux 1.5.16, kcp-go 5.6.1), both ways:
//! kcptun-client into our tunnel server, and our tunnel client into kcptun-server, each end
//! given the same kcptun flags (ours through the tunnel's own command line parser). Behind
//! each server, a TCP echo target; each connection's echo is read in full and checked before
//! the connection closes (kcptun ends both directions of a connection when one ends).
//!
//! - `interop_*`: 50 connections × 1 MiB at once, over every combination in [`matrix`];
//! - `bulk_*`: one 16 MiB echo, with kcptun's defaults and with everything off, each runtime;
//! - `loss_*`: kcptun's defaults through a seeded relay that drops 1% of the datagrams each
//!   way and reorders some, each runtime; FEC must have rebuilt at least one packet on our
//!   side (our codec's counters);
//! - `idle_*`: a connection through kcptun-client idle for 90 s, on the real clock (kcptun is
//!   a real process), then used again;
//! - `kcptun_flags_are_all_in_the_table`: every flag in kcptun's sources is in the tunnel's
//!   table and in docs/tunnel.md.
//!
//! All need the `kcptun` package, so all are `#[ignore]`d; `.ci/run` installs it and runs them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    all_passed, echo_exact, lossy_relay, on_runtime, parallel_echoes, pattern, tcp_echo_target,
    Flavor, RUNTIMES,
};
use smux_test_support::process::{free_tcp_port, free_udp_port, LoggedProcess};
use smux_test_support::runtimes::HANG_GUARD;
use smux_tunnel::cli::{self, Parsed, KCPTUN_FLAGS};
use smux_tunnel::{Kcp, ServerListener, Transport};
use tokio::net::{TcpListener, TcpStream};

/// Starts Debian's kcptun `program` (kcptun-client or kcptun-server) with `args`, and waits
/// until it says it listens.
fn kcptun(program: &str, args: &[String]) -> LoggedProcess {
    let p = LoggedProcess::start(program, args)
        .unwrap_or_else(|e| panic!("{e} (Debian's package kcptun)"));
    p.wait_for("listening on:", HANG_GUARD).unwrap();
    p
}

/// Which end is kcptun's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// kcptun-client into our tunnel server.
    KcptunClient,
    /// Our tunnel client into kcptun-server.
    KcptunServer,
}

/// A tunnel from an entry (a TCP address that carries connections) to an echo target, one end
/// ours and the other kcptun's. Everything stops when it is dropped.
struct Pair {
    entry: SocketAddr,
    /// Our end's KCP transport: its codec counters.
    kcp: Kcp,
    _kcptun: LoggedProcess,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Our end: `words` (its role and addresses) and then `flags`, parsed by the tunnel's own
/// parser; and its KCP transport (a clone: its codec counters are shared).
fn our_end(words: &[&str], flags: &[String]) -> (cli::Command, Kcp) {
    let mut words = strings(words);
    words.extend(strings(&["--transport", "kcp", "--quiet"]));
    words.extend_from_slice(flags);
    let cmd = match cli::parse(words, None).expect("our flags") {
        Parsed::Run(c) => *c,
        Parsed::Help => unreachable!(),
    };
    let Transport::Kcp(kcp) = &cmd.opts.transport else {
        unreachable!()
    };
    let kcp = (**kcp).clone();
    (cmd, kcp)
}

/// `server`, or, if `loss` is above 0, a relay in front of it that drops `loss` per mille
/// (seeded by `seed`), its task added to `tasks`.
async fn maybe_lossy(
    server: SocketAddr,
    loss: u64,
    seed: u64,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> SocketAddr {
    if loss == 0 {
        return server;
    }
    let (relay, task) = lossy_relay(server, seed, loss).await;
    tasks.push(task);
    relay
}

/// Starts a pair, both ends with `flags` (kcptun's, `--smuxver` among them), with a relay
/// that drops `loss` per mille (seeded by `seed`) between them if `loss` is above 0.
async fn start(kind: Kind, flags: &[String], loss: u64, seed: u64) -> Pair {
    let (target, echo) = tcp_echo_target().await;
    let target = target.to_string();
    let mut tasks = vec![echo];
    match kind {
        Kind::KcptunClient => {
            let (cmd, kcp) = our_end(&["server", "-l", "127.0.0.1:0", "-t", &target], flags);
            let listener = ServerListener::bind(&cmd.listen, &cmd.opts.transport)
                .await
                .unwrap();
            let server = listener.local_addr().unwrap();
            tasks.push(tokio::spawn(async move {
                let _ =
                    smux_tunnel::run_server(listener, cmd.remote, cmd.opts, std::future::pending())
                        .await;
            }));
            let server = maybe_lossy(server, loss, seed, &mut tasks).await;
            let local = free_tcp_port().unwrap();
            let mut args = strings(&["-r", &server.to_string()]);
            args.extend(strings(&["-l", &format!("127.0.0.1:{local}"), "--quiet"]));
            args.extend_from_slice(flags);
            let client = kcptun("kcptun-client", &args);
            Pair {
                entry: ([127, 0, 0, 1], local).into(),
                kcp,
                _kcptun: client,
                tasks,
            }
        }
        Kind::KcptunServer => {
            let port = free_udp_port().unwrap();
            let mut args = strings(&["-l", &format!("127.0.0.1:{port}")]);
            args.extend(strings(&["-t", &target, "--quiet"]));
            args.extend_from_slice(flags);
            let server = kcptun("kcptun-server", &args);
            let server_addr =
                maybe_lossy(([127, 0, 0, 1], port).into(), loss, seed, &mut tasks).await;
            let server_addr = server_addr.to_string();
            let (cmd, kcp) = our_end(&["client", "-l", "127.0.0.1:0", "-r", &server_addr], flags);
            let listener = TcpListener::bind(&cmd.listen).await.unwrap();
            let entry = listener.local_addr().unwrap();
            tasks.push(tokio::spawn(async move {
                let _ =
                    smux_tunnel::run_client(listener, cmd.remote, cmd.opts, std::future::pending())
                        .await;
            }));
            Pair {
                entry,
                kcp,
                _kcptun: server,
                tasks,
            }
        }
    }
}

/// One combination of the interop matrix.
#[derive(Debug, Clone, Copy)]
struct Case {
    smuxver: u8,
    crypt: &'static str,
    fec: bool,
    comp: bool,
    runtime: Flavor,
}

impl Case {
    /// kcptun's flags for it.
    fn flags(&self) -> Vec<String> {
        let mut f = strings(&[
            "--smuxver",
            &self.smuxver.to_string(),
            "--crypt",
            self.crypt,
        ]);
        f.extend(strings(&["--key", "interop test key"]));
        if !self.fec {
            f.extend(strings(&["--datashard", "0", "--parityshard", "0"]));
        }
        if !self.comp {
            f.push("--nocomp".into());
        }
        f
    }
}

const CRYPTS: [&str; 3] = ["none", "aes", "salsa20"];

/// The interop matrix, as the issue asks: smux version (1, 2) × crypt (none, aes, salsa20) ×
/// FEC (10+3, off) × compression (on, off), all 24 combinations, each run with kcptun at either
/// end: 48 runs. Each combination runs on one runtime, in turn (current-thread, multi-thread
/// with 2 and with 4 workers), so that every runtime meets every value of every factor
/// (`every_runtime_meets_every_value` checks it); all 72 would take three times as long.
fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for smuxver in [1, 2] {
        for crypt in CRYPTS {
            for fec in [true, false] {
                for comp in [true, false] {
                    cases.push(Case {
                        smuxver,
                        crypt,
                        fec,
                        comp,
                        runtime: RUNTIMES[cases.len() % RUNTIMES.len()],
                    });
                }
            }
        }
    }
    cases
}

#[test]
fn every_runtime_meets_every_value() {
    let cases = matrix();
    assert_eq!(cases.len(), 2 * CRYPTS.len() * 2 * 2);
    for runtime in RUNTIMES {
        let on = |f: &dyn Fn(&Case) -> bool| cases.iter().any(|c| c.runtime == runtime && f(c));
        for v in [1, 2] {
            assert!(on(&|c| c.smuxver == v), "{runtime:?} never runs smux v{v}");
        }
        for crypt in CRYPTS {
            assert!(on(&|c| c.crypt == crypt), "{runtime:?} never runs {crypt}");
        }
        for b in [true, false] {
            assert!(on(&|c| c.fec == b), "{runtime:?} never runs FEC {b}");
            assert!(
                on(&|c| c.comp == b),
                "{runtime:?} never runs compression {b}"
            );
        }
    }
}

fn run_matrix(kind: Kind) {
    all_passed(matrix().into_iter().enumerate().map(|(n, c)| {
        on_runtime(c.runtime, async move {
            let pair = start(kind, &c.flags(), 0, 0).await;
            parallel_echoes(pair.entry, 50, 1 << 20, 1000 * n as u64).await;
        })
        .map_err(|e| format!("{c:?}: {e}"))
    }));
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn interop_kcptun_client_into_our_server() {
    run_matrix(Kind::KcptunClient);
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn interop_our_client_into_kcptun_server() {
    run_matrix(Kind::KcptunServer);
}

/// kcptun's flags with everything off.
fn everything_off() -> Vec<String> {
    strings(&[
        "--crypt",
        "none",
        "--nocomp",
        "--datashard",
        "0",
        "--parityshard",
        "0",
    ])
}

fn run_bulk(kind: Kind) {
    let runs = [Vec::new(), everything_off()]
        .into_iter()
        .flat_map(|flags| RUNTIMES.map(|flavor| (flags.clone(), flavor)));
    all_passed(runs.map(|(flags, flavor)| {
        on_runtime(flavor, async {
            let pair = start(kind, &flags, 0, 0).await;
            parallel_echoes(pair.entry, 1, 16 << 20, 7).await;
        })
        .map_err(|e| format!("{flags:?}: {e}"))
    }));
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn bulk_kcptun_client_into_our_server() {
    run_bulk(Kind::KcptunClient);
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn bulk_our_client_into_kcptun_server() {
    run_bulk(Kind::KcptunServer);
}

/// kcptun's defaults through a relay that loses 1% each way: 8 connections × 1 MiB, all
/// checked, and FEC rebuilt packets on our side.
fn run_loss(kind: Kind) {
    all_passed(RUNTIMES.into_iter().enumerate().map(|(i, flavor)| {
        on_runtime(flavor, async move {
            let pair = start(kind, &[], 10, 24 + i as u64).await;
            parallel_echoes(pair.entry, 8, 1 << 20, 500).await;
            let stats = pair.kcp.codec_stats();
            assert!(
                stats.recovered >= 1,
                "no packet rebuilt by FEC on our side: {stats:?}"
            );
            assert!(stats.parity_shards > 0, "{stats:?}");
        })
    }));
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn loss_kcptun_client_into_our_server() {
    run_loss(Kind::KcptunClient);
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn loss_our_client_into_kcptun_server() {
    run_loss(Kind::KcptunServer);
}

/// A connection through kcptun-client, kcptun's defaults, idle for 90 s (past smux's 30 s
/// keep-alive timeout and our KCP session's 60 s idle timeout, which the keep-alives reset):
/// it still echoes, and so does a new one. The real clock: kcptun is a real process.
#[test]
#[ignore = "needs Debian's kcptun"]
fn idle_90_s_through_kcptun_client() {
    on_runtime(Flavor::MultiThread(2), async {
        let pair = start(Kind::KcptunClient, &[], 0, 0).await;
        let mut tcp = TcpStream::connect(pair.entry).await.unwrap();
        let first = pattern(1, 100_000);
        assert!(echo_exact(&mut tcp, &first).await == first);
        tokio::time::sleep(Duration::from_secs(90)).await;
        let again = pattern(2, 100_000);
        assert!(
            echo_exact(&mut tcp, &again).await == again,
            "the idle connection"
        );
        parallel_echoes(pair.entry, 2, 100_000, 3).await;
    })
    .unwrap();
}

/// Every flag kcptun's sources declare (`Name: "long,short"` in client/main.go and
/// server/main.go) is in [`KCPTUN_FLAGS`] for the same roles, and in docs/tunnel.md's table.
#[test]
#[ignore = "needs Debian's kcptun"]
fn kcptun_flags_are_all_in_the_table() {
    let src = "/usr/share/gocode/src/github.com/xtaci/kcptun";
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tunnel.md")).unwrap();
    for (file, client) in [("client/main.go", true), ("server/main.go", false)] {
        let text = std::fs::read_to_string(format!("{src}/{file}")).unwrap();
        let mut n = 0;
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("Name:") else {
                continue;
            };
            let names: Vec<String> = rest
                .trim()
                .trim_end_matches(',')
                .trim_matches('"')
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            n += 1;
            let known = KCPTUN_FLAGS
                .iter()
                .find(|f| f.names[0] == names[0] && if client { f.client } else { f.server });
            let f = known.unwrap_or_else(|| panic!("{file}: {names:?} is not in KCPTUN_FLAGS"));
            assert_eq!(f.names, names, "{file}: its names");
            let n = &names[0];
            assert!(
                docs.lines()
                    .any(|l| l.starts_with(&format!("| `--{n}"))
                        || l.starts_with(&format!("| `-{n}"))),
                "docs/tunnel.md has no row for --{n}"
            );
        }
        assert!(n > 20, "{file}: only {n} flags found");
    }
    // urfave/cli's own --help and --version.
    for name in ["help", "version"] {
        assert!(docs.contains(&format!("| `--{name}")), "{name}");
    }
}
