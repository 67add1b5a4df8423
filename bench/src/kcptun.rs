//! `kcptun` and `kcptun-off`: Debian's kcptun-client through our tunnel server
//! (`tunnel server --transport kcp`, the smux-tunnel binary) against the same client through
//! Go's kcptun-server, both given the same kcptun flags: kcptun's defaults (`kcptun`), or
//! `-crypt none -nocomp -datashard 0 -parityshard 0` (`kcptun-off`).
//!
//! A child (`smux-bench --child-kcptun ours|go defaults|off tunnel=PATH mib=N`) makes one
//! transfer of N MiB each way, each with fresh processes: upload, from a TCP connection into
//! kcptun-client to a target behind the server, timed from the connection until the target
//! has read every byte; download, the target writing to the connection, timed until the
//! connection has read every byte. The data is pseudo-random, so compression gains nothing.
//! It also reports the server process's peak RSS and CPU time for each transfer, read from
//! `/proc` before it is stopped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smux_test_support::process::{free_tcp_port, free_udp_port, LoggedProcess};

/// Which server the client goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Our `tunnel server --transport kcp`.
    Ours,
    /// Go's kcptun-server.
    Go,
}

/// kcptun's flags for the configuration named `config` (`defaults` or `off`).
fn flags(config: &str) -> &'static [&'static str] {
    match config {
        "off" => &[
            "-crypt",
            "none",
            "-nocomp",
            "-datashard",
            "0",
            "-parityshard",
            "0",
        ],
        _ => &[],
    }
}

/// Whether `program` runs (`--version` succeeds).
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the tunnel binary (release) into `target`; its path.
pub fn build_tunnel(target: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("kcptun: cargo build --release -p smux-tunnel --bin tunnel");
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", "smux-tunnel", "--bin", "tunnel"])
        .env("CARGO_TARGET_DIR", target)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !built.success() {
        return Err(format!("cargo build failed ({built})"));
    }
    Ok(target.join("release/tunnel"))
}

/// How long a program may take to say it listens before it counts as hung.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Peak RSS in KiB and CPU seconds (user and system) of process `pid`, from `/proc`.
fn process_usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: state is field 3, utime and stime 14 and 15.
    let cpu = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .and_then(|f| Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?))
        // /proc counts in USER_HZ, 100 a second on Linux.
        .map_or(f64::NAN, |ticks| ticks / 100.0);
    (rss, cpu)
}

/// 1 MiB of xorshift output: incompressible, and repeating only a megabyte apart, beyond
/// snappy's 64 KiB blocks.
fn random_block() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..1 << 17)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// One transfer of `bytes` through a fresh server and client: (seconds, server peak RSS KiB,
/// server CPU seconds).
fn transfer(
    server: Server,
    config: &str,
    upload: bool,
    bytes: u64,
    tunnel: &Path,
) -> io::Result<(f64, f64, f64)> {
    let target = TcpListener::bind("127.0.0.1:0")?;
    let target_addr = target.local_addr()?;
    let port = free_udp_port()?;
    let quiet = |mut v: Vec<String>| {
        v.push("--quiet".into());
        v.extend(flags(config).iter().map(|s| s.to_string()));
        v
    };
    let listen = format!("127.0.0.1:{port}");
    let server_proc = match server {
        Server::Ours => {
            let mut args = vec!["server".to_string(), "--transport".into(), "kcp".into()];
            args.extend(["-l".into(), listen, "-t".into(), target_addr.to_string()]);
            let p = LoggedProcess::start(tunnel, &quiet(args))?;
            p.wait_for("listening on", START_LIMIT)?;
            p
        }
        Server::Go => {
            let args = vec!["-l".into(), listen, "-t".into(), target_addr.to_string()];
            let p = LoggedProcess::start("kcptun-server", &quiet(args))?;
            p.wait_for("listening on:", START_LIMIT)?;
            p
        }
    };
    let local = free_tcp_port()?;
    let args = vec![
        "-r".to_string(),
        format!("127.0.0.1:{port}"),
        "-l".into(),
        format!("127.0.0.1:{local}"),
    ];
    let client = LoggedProcess::start("kcptun-client", &quiet(args))?;
    client.wait_for("listening on:", START_LIMIT)?;

    let block = random_block();
    let (done_tx, done_rx) = mpsc::channel();
    let target_block = block.clone();
    // The target: counts what arrives (upload) or sends (download), and keeps the connection
    // open until the other end closes it (kcptun ends both directions when one ends).
    std::thread::spawn(move || -> io::Result<()> {
        let (mut tcp, _) = target.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        if upload {
            let mut got = 0u64;
            while got < bytes {
                match tcp.read(&mut buf)? {
                    0 => break,
                    n => got += n as u64,
                }
            }
            let _ = done_tx.send((Instant::now(), got));
        } else {
            let mut sent = 0u64;
            while sent < bytes {
                let n = (bytes - sent).min(target_block.len() as u64) as usize;
                tcp.write_all(&target_block[..n])?;
                sent += n as u64;
            }
        }
        while tcp.read(&mut buf)? > 0 {}
        Ok(())
    });
    let start = Instant::now();
    let entry: SocketAddr = ([127, 0, 0, 1], local).into();
    let mut tcp = TcpStream::connect(entry)?;
    tcp.set_nodelay(true)?;
    let secs = if upload {
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(block.len() as u64) as usize;
            tcp.write_all(&block[..n])?;
            sent += n as u64;
        }
        let (at, got) = done_rx
            .recv_timeout(Duration::from_secs(600))
            .map_err(|_| io::Error::other("the target never read everything"))?;
        if got != bytes {
            return Err(io::Error::other(format!(
                "the target read {got} of {bytes}"
            )));
        }
        at.duration_since(start).as_secs_f64()
    } else {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        while got < bytes {
            match tcp.read(&mut buf)? {
                0 => return Err(io::Error::other(format!("read {got} of {bytes}, then EOF"))),
                n => got += n as u64,
            }
        }
        start.elapsed().as_secs_f64()
    };
    let (rss, cpu) = process_usage(server_proc.id());
    drop(tcp);
    drop(client);
    drop(server_proc);
    Ok((secs, rss, cpu))
}

/// The child: `ours|go defaults|off tunnel=PATH mib=N`; prints the `RESULT` line.
pub fn child(args: &[String]) {
    let usage = || -> ! {
        eprintln!("usage: smux-bench --child-kcptun ours|go defaults|off tunnel=PATH mib=N");
        std::process::exit(2)
    };
    let server = match args.first().map(String::as_str) {
        Some("ours") => Server::Ours,
        Some("go") => Server::Go,
        _ => usage(),
    };
    let Some(config) = args.get(1).cloned() else {
        usage()
    };
    let (mut tunnel, mut mib) = (PathBuf::new(), 64u64);
    for a in &args[2..] {
        match a.split_once('=') {
            Some(("tunnel", p)) => tunnel = PathBuf::from(p),
            Some(("mib", n)) => mib = n.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let bytes = mib << 20;
    let mut line = format!("RESULT bytes={bytes}");
    for (upload, name) in [(true, "up"), (false, "down")] {
        match transfer(server, &config, upload, bytes, &tunnel) {
            Ok((secs, rss, cpu)) => {
                line +=
                    &format!(" {name}_secs={secs:.6} {name}_rss_kib={rss} {name}_cpu_secs={cpu}");
            }
            Err(e) => {
                eprintln!("kcptun {config} {server:?} {name}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{line}");
}
