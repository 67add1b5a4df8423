//! A TCP port forwarder over one smux connection.
//!
//! ```text
//! cargo run --release --example tunnel -- server --listen 127.0.0.1:7000 --target 127.0.0.1:8000
//! cargo run --release --example tunnel -- client --listen 127.0.0.1:7001 --server 127.0.0.1:7000
//! ```
//!
//! Both take `--version 1|2` (the server also `auto`: each client's), `--keep-alive SECONDS`
//! (0 turns it off; default 10), `--drain-timeout SECONDS` (default 10) and
//! `--notsent-lowat KIB` (Linux's `TCP_NOTSENT_LOWAT` on the smux connections; default 128,
//! 0 leaves the system's). The client also takes `--conns N` (default 1): it spreads the
//! connections it accepts over N smux connections, in turn. Ctrl-C stops accepting and
//! drains: open connections finish, for at most the drain timeout.

use std::num::NonZeroU64;
use std::process::ExitCode;

use smux_tokio::Version;
use tunnel::Options;

const USAGE: &str = "usage:
  tunnel server --listen ADDR --target HOST:PORT [--version 1|2|auto] [--keep-alive SECONDS]
                [--drain-timeout SECONDS] [--notsent-lowat KIB]
  tunnel client --listen ADDR --server HOST:PORT [--version 1|2] [--keep-alive SECONDS]
                [--drain-timeout SECONDS] [--notsent-lowat KIB] [--conns N]";

struct Args {
    server_mode: bool,
    listen: String,
    remote: String,
    opts: Options,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let server_mode = match args.next().as_deref() {
        Some("server") => true,
        Some("client") => false,
        _ => return Err("the first argument is `server` or `client`".into()),
    };
    let (mut listen, mut remote) = (None, None);
    let mut opts = Options::default();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--target" if server_mode => remote = Some(value),
            "--server" if !server_mode => remote = Some(value),
            "--version" => match value.as_str() {
                "1" => opts.version = Version::V1,
                "2" => opts.version = Version::V2,
                "auto" if server_mode => opts.auto_version = true,
                _ => {
                    return Err(format!(
                        "--version is 1, 2 (or auto, on the server), not {value}"
                    ))
                }
            },
            "--drain-timeout" => {
                let secs: u64 = value.parse().map_err(|e| format!("--drain-timeout: {e}"))?;
                opts.drain_timeout = std::time::Duration::from_secs(secs);
            }
            "--conns" if !server_mode => {
                opts.conns = value.parse().map_err(|e| format!("--conns: {e}"))?;
                if opts.conns == 0 {
                    return Err("--conns is at least 1".into());
                }
            }
            "--notsent-lowat" => {
                let kib: u32 = value.parse().map_err(|e| format!("--notsent-lowat: {e}"))?;
                opts.notsent_lowat = (kib > 0).then(|| kib.saturating_mul(1024));
            }
            "--keep-alive" => {
                let secs: u64 = value.parse().map_err(|e| format!("--keep-alive: {e}"))?;
                opts.keep_alive = NonZeroU64::new(secs);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let what = if server_mode { "--target" } else { "--server" };
    Ok(Args {
        server_mode,
        listen: listen.ok_or("--listen is required")?,
        remote: remote.ok_or(format!("{what} is required"))?,
        opts,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    eprintln!("listening on {local}");
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = if args.server_mode {
        tunnel::run_server(listener, args.remote, args.opts, ctrl_c).await
    } else {
        tunnel::run_client(listener, args.remote, args.opts, ctrl_c).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
