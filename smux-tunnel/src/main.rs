//! The `tunnel` binary: a TCP port forwarder over smux, on TCP or on kcptun's KCP transport.
//!
//! ```text
//! tunnel server --listen 127.0.0.1:7000 --target 127.0.0.1:8000
//! tunnel client --listen 127.0.0.1:7001 --server 127.0.0.1:7000
//! tunnel server --transport kcp --listen :29900 --target 127.0.0.1:22 --key K
//! ```
//!
//! `tunnel --help` lists the options; docs/tunnel.md describes them, kcptun's among them.
//! Ctrl-C stops accepting and drains: open connections finish, for at most the drain timeout.

use std::process::ExitCode;

use smux_tunnel::cli::{self, Parsed, Role};

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = cli::parse(std::env::args().skip(1), std::env::var("KCPTUN_KEY").ok());
    let cmd = match parsed {
        Ok(Parsed::Run(c)) => c,
        Ok(Parsed::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cmd.log {
        if let Err(e) = smux_tunnel::log::log_to_file(path) {
            eprintln!("--log {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    for w in &cmd.warnings {
        smux_tunnel::log::write_line(format_args!("warning: {w}"));
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = match cmd.role {
        Role::Server => {
            let listener =
                match smux_tunnel::ServerListener::bind(&cmd.listen, &cmd.opts.transport).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("cannot listen on {}: {e}", cmd.listen);
                        return ExitCode::FAILURE;
                    }
                };
            announce(listener.local_addr(), &cmd);
            smux_tunnel::run_server(listener, cmd.remote.clone(), cmd.opts.clone(), ctrl_c).await
        }
        Role::Client => {
            let listener = match tokio::net::TcpListener::bind(&cmd.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("cannot listen on {}: {e}", cmd.listen);
                    return ExitCode::FAILURE;
                }
            };
            announce(listener.local_addr(), &cmd);
            smux_tunnel::run_client(listener, cmd.remote.clone(), cmd.opts.clone(), ctrl_c).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            smux_tunnel::log::write_line(format_args!("{e}"));
            ExitCode::FAILURE
        }
    }
}

/// The first log line: the address it listens on (tests and scripts read it), and the
/// transport.
fn announce(local: std::io::Result<std::net::SocketAddr>, cmd: &cli::Command) {
    let local = local.map(|a| a.to_string()).unwrap_or_default();
    smux_tunnel::log::write_line(format_args!("listening on {local}"));
    if let smux_tunnel::Transport::Kcp(k) = &cmd.opts.transport {
        let c = k.codec_config();
        smux_tunnel::log::write_line(format_args!(
            "kcp: crypt {}, datashard {}, parityshard {}, compression {}, {:?}",
            c.crypt, c.data_shards, c.parity_shards, k.compression, k.settings
        ));
    }
}
