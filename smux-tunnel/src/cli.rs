//! The `tunnel` command line: the tunnel's own flags, and kcptun's, under kcptun's names and
//! with kcptun's defaults (which differ by role), so that either end can stand in for
//! kcptun's. [`KCPTUN_FLAGS`] says what the tunnel does with each of kcptun's flags; the table
//! in docs/tunnel.md is the same.
//!
//! Flags are written `--name value`, `-name value` or `--name=value`, as kcptun's command line
//! (urfave/cli) takes them; a boolean flag stands alone, or takes `=true` or `=false`.
//! `-c FILE` reads kcptun's JSON configuration, whose keys are the flags' names and whose
//! values override the command line's, as in kcptun.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use smux_tokio::Version;

use crate::forward::Options;
use crate::kcp::codec::{CRYPT_HEADER, KCPTUN_DEFAULT_KEY};
use crate::kcp::fec::FEC_HEADER_DATA;
use crate::kcp::{CodecConfig, Crypt, KcpSettings, ListenerLimits, Mode, MTU_LIMIT};
use crate::transport::{Kcp, Transport};

/// The usage text.
pub const USAGE: &str = "usage:
  tunnel server --listen ADDR --target HOST:PORT [options]
  tunnel client --listen ADDR --server HOST:PORT [options]

options of both ends:
  --transport tcp|kcp     what the smux connections run on (default tcp)
  --version 1|2           smux version (kcptun: --smuxver; default 1); the server also
                          takes auto (each client's version)
  --keep-alive SECONDS    smux keep-alive interval, 0 for none (kcptun: --keepalive; 10)
  --drain-timeout SECONDS on Ctrl-C, how long open connections may finish (default 10)
  --notsent-lowat KIB     TCP_NOTSENT_LOWAT on TCP smux connections, 0 for the system's (128)
  --smuxbuf BYTES         the smux receive budget (kcptun's default with kcp: 4194304)
  --streambuf BYTES       smux v2's per-stream window (kcptun's default with kcp: 2097152)
  --quiet                 no log line per connection
  --log FILE              append the log to FILE instead of stderr
  -c FILE                 kcptun's JSON configuration; its values override the flags'
options of the client:
  --conns N               smux connections to spread connections over (kcptun: --conn; 1)
  --autoexpire SECONDS    replace a smux connection this old, 0 for never (default 0)
  --scavengettl SECONDS   how long a replaced one may drain (default 600)
options of the server, with --transport kcp:
  --max-sessions N        KCP sessions alive at once (default 1024); each may hold about
                          twice --rcvwnd packets (2.5 MiB at the server's defaults)
kcptun's KCP options (with --transport kcp), kcptun's defaults:
  --key KEY (it's a secrect, or $KCPTUN_KEY)   --crypt aes|aes-128|aes-192|salsa20|xor|none (aes)
  --mode fast3|fast2|fast|normal|manual (fast) --mtu BYTES (1350)
  --sndwnd N, --rcvwnd N (client 128, 512; server 1024, 1024)
  --datashard N / --ds N (10)   --parityshard N / --ps N (3)   --nocomp   --dscp N (0)
  --sockbuf BYTES (4194304)   --acknodelay   with --mode manual: --nodelay 0|1 (0)
  --interval MS (50) --resend N (0) --nc 0|1 (0)
kcptun's -l, -r, -t, --localaddr, --remoteaddr, --conn, --smuxver and --keepalive are taken as
the tunnel's flags of the same meaning; see docs/tunnel.md for every kcptun flag.";

/// Which end the tunnel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `tunnel client`: kcptun-client's place.
    Client,
    /// `tunnel server`: kcptun-server's place.
    Server,
}

/// What the tunnel does with one of kcptun's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Taken, with kcptun's meaning.
    Supported,
    /// Taken and ignored, with a warning.
    Ignored,
    /// Refused: the tunnel will not start with it.
    Refused,
}

/// One of kcptun's flags (kcptun 20210922, client and server).
#[derive(Debug, Clone, Copy)]
pub struct KcptunFlag {
    /// kcptun's name for it, and its short name if it has one.
    pub names: &'static [&'static str],
    /// kcptun-client has it.
    pub client: bool,
    /// kcptun-server has it.
    pub server: bool,
    /// What the tunnel does with it.
    pub support: Support,
}

const fn flag(
    names: &'static [&'static str],
    client: bool,
    server: bool,
    s: Support,
) -> KcptunFlag {
    KcptunFlag {
        names,
        client,
        server,
        support: s,
    }
}

use Support::{Ignored, Refused, Supported};

/// Every flag of kcptun-client and kcptun-server, and what the tunnel does with it.
pub const KCPTUN_FLAGS: &[KcptunFlag] = &[
    flag(&["localaddr", "l"], true, false, Supported),
    flag(&["remoteaddr", "r"], true, false, Supported),
    flag(&["listen", "l"], false, true, Supported),
    flag(&["target", "t"], false, true, Supported),
    flag(&["key"], true, true, Supported),
    flag(&["crypt"], true, true, Supported),
    flag(&["mode"], true, true, Supported),
    flag(&["conn"], true, false, Supported),
    flag(&["autoexpire"], true, false, Supported),
    flag(&["scavengettl"], true, false, Supported),
    flag(&["mtu"], true, true, Supported),
    flag(&["sndwnd"], true, true, Supported),
    flag(&["rcvwnd"], true, true, Supported),
    flag(&["datashard", "ds"], true, true, Supported),
    flag(&["parityshard", "ps"], true, true, Supported),
    flag(&["dscp"], true, true, Supported),
    flag(&["nocomp"], true, true, Supported),
    flag(&["acknodelay"], true, true, Supported),
    flag(&["nodelay"], true, true, Supported),
    flag(&["interval"], true, true, Supported),
    flag(&["resend"], true, true, Supported),
    flag(&["nc"], true, true, Supported),
    flag(&["sockbuf"], true, true, Supported),
    flag(&["smuxver"], true, true, Supported),
    flag(&["smuxbuf"], true, true, Supported),
    flag(&["streambuf"], true, true, Supported),
    flag(&["keepalive"], true, true, Supported),
    flag(&["snmplog"], true, true, Ignored),
    flag(&["snmpperiod"], true, true, Ignored),
    flag(&["pprof"], false, true, Ignored),
    flag(&["log"], true, true, Supported),
    flag(&["quiet"], true, true, Supported),
    flag(&["tcp"], true, true, Refused),
    flag(&["c"], true, true, Supported),
    flag(&["help", "h"], true, true, Supported),
    flag(&["version", "v"], true, true, Refused),
];

/// A parsed command line.
#[derive(Debug)]
pub struct Command {
    /// Which end.
    pub role: Role,
    /// Where to listen: for TCP connections to carry (client), or for smux connections
    /// (server).
    pub listen: String,
    /// The client's server, or the server's target.
    pub remote: String,
    /// The tunnel's settings.
    pub opts: Options,
    /// `--log FILE`.
    pub log: Option<PathBuf>,
    /// What to warn about before starting: flags taken and ignored.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the tunnel.
    Run(Box<Command>),
    /// Print the usage.
    Help,
}

/// The flag spellings the tunnel takes, each for the flag (by its canonical name) it sets.
struct Spec {
    names: &'static [&'static str],
    client: bool,
    server: bool,
    /// Takes a value (otherwise it is a boolean).
    value: bool,
    canonical: &'static str,
}

const fn spec(
    names: &'static [&'static str],
    client: bool,
    server: bool,
    value: bool,
    canonical: &'static str,
) -> Spec {
    Spec {
        names,
        client,
        server,
        value,
        canonical,
    }
}

const SPECS: &[Spec] = &[
    spec(&["listen", "l"], true, true, true, "listen"),
    spec(&["localaddr"], true, false, true, "listen"),
    spec(&["server", "r", "remoteaddr"], true, false, true, "remote"),
    spec(&["target", "t"], false, true, true, "remote"),
    spec(&["transport"], true, true, true, "transport"),
    spec(&["version"], true, true, true, "version"),
    spec(&["smuxver"], true, true, true, "smuxver"),
    spec(&["keep-alive", "keepalive"], true, true, true, "keepalive"),
    spec(&["drain-timeout"], true, true, true, "drain-timeout"),
    spec(&["notsent-lowat"], true, true, true, "notsent-lowat"),
    spec(&["conns", "conn"], true, false, true, "conns"),
    spec(&["autoexpire"], true, false, true, "autoexpire"),
    spec(&["scavengettl"], true, false, true, "scavengettl"),
    spec(&["key"], true, true, true, "key"),
    spec(&["crypt"], true, true, true, "crypt"),
    spec(&["mode"], true, true, true, "mode"),
    spec(&["mtu"], true, true, true, "mtu"),
    spec(&["sndwnd"], true, true, true, "sndwnd"),
    spec(&["rcvwnd"], true, true, true, "rcvwnd"),
    spec(&["datashard", "ds"], true, true, true, "datashard"),
    spec(&["parityshard", "ps"], true, true, true, "parityshard"),
    spec(&["dscp"], true, true, true, "dscp"),
    spec(&["nocomp"], true, true, false, "nocomp"),
    spec(&["acknodelay"], true, true, false, "acknodelay"),
    spec(&["nodelay"], true, true, true, "nodelay"),
    spec(&["interval"], true, true, true, "interval"),
    spec(&["resend"], true, true, true, "resend"),
    spec(&["nc"], true, true, true, "nc"),
    spec(&["sockbuf"], true, true, true, "sockbuf"),
    spec(&["max-sessions"], false, true, true, "max-sessions"),
    spec(&["smuxbuf"], true, true, true, "smuxbuf"),
    spec(&["streambuf"], true, true, true, "streambuf"),
    spec(&["quiet"], true, true, false, "quiet"),
    spec(&["log"], true, true, true, "log"),
    spec(&["snmplog"], true, true, true, "snmplog"),
    spec(&["snmpperiod"], true, true, true, "snmpperiod"),
    spec(&["pprof"], false, true, false, "pprof"),
    spec(&["tcp"], true, true, false, "tcp"),
    spec(&["c"], true, true, true, "c"),
    spec(&["help", "h"], true, true, false, "help"),
    spec(&["v"], true, true, false, "v"),
];

/// The flags that configure KCP: refused with `--transport tcp`.
const KCP_ONLY: &[&str] = &[
    "key",
    "crypt",
    "mode",
    "mtu",
    "sndwnd",
    "rcvwnd",
    "datashard",
    "parityshard",
    "dscp",
    "nocomp",
    "acknodelay",
    "nodelay",
    "interval",
    "resend",
    "nc",
    "sockbuf",
    "max-sessions",
];

fn find(name: &str, role: Role) -> Option<&'static Spec> {
    SPECS.iter().find(|s| {
        s.names.contains(&name)
            && match role {
                Role::Client => s.client,
                Role::Server => s.server,
            }
    })
}

/// One flag as given: its spec, its value (a boolean's is `None` or `"true"`/`"false"`), and
/// how it was written, for messages.
struct Given {
    spec: &'static Spec,
    value: Option<String>,
    written: String,
}

/// Parses the arguments after the program's name. `env_key` is `$KCPTUN_KEY`, kcptun's
/// default for `--key`.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env_key: Option<String>,
) -> Result<Parsed, String> {
    let mut args = args.into_iter();
    let role = match args.next().as_deref() {
        Some("server") => Role::Server,
        Some("client") => Role::Client,
        Some("-h" | "--help" | "-help" | "help") => return Ok(Parsed::Help),
        _ => return Err("the first argument is `server` or `client`".into()),
    };
    let mut given = Vec::new();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let spec = find(name, role).ok_or_else(|| unknown(&arg, name, role))?;
        let value = match (spec.value, inline) {
            (_, Some(v)) => Some(v),
            (true, None) => Some(args.next().ok_or_else(|| needs_value(spec, &arg))?),
            (false, None) => None,
        };
        given.push(Given {
            spec,
            value,
            written: format!("-{}{name}", if arg.starts_with("--") { "-" } else { "" }),
        });
    }
    let mut warnings = Vec::new();
    // kcptun's -c: the file's values come after, so they win.
    if let Some(path) = given
        .iter()
        .rev()
        .find(|g| g.spec.canonical == "c")
        .and_then(|g| g.value.clone())
    {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("-c {path}: {e}"))?;
        let pairs = json::parse_flat_object(&text).map_err(|e| format!("-c {path}: {e}"))?;
        for (key, value) in pairs {
            let key = key.to_ascii_lowercase();
            let Some(spec) = find(&key, role).filter(|s| s.canonical != "c") else {
                warnings.push(format!(
                    "-c {path}: key {key:?} is ignored (not a kcptun flag)"
                ));
                continue;
            };
            given.push(Given {
                spec,
                value: Some(value),
                written: format!("-c {path}: {key:?}"),
            });
        }
    }
    build(role, given, env_key, warnings)
}

fn unknown(arg: &str, name: &str, role: Role) -> String {
    let other = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    if find(name, other).is_some() {
        format!("{arg} is not an option of the {}", role_name(role))
    } else {
        format!("unknown option {arg}")
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Server => "server",
    }
}

fn needs_value(spec: &Spec, arg: &str) -> String {
    if spec.canonical == "version" {
        format!(
            "{arg} needs a value: the smux version, 1 or 2 (kcptun's --version, which prints \
             kcptun's version, is not an option here)"
        )
    } else {
        format!("{arg} needs a value")
    }
}

/// Everything the flags set, before it is checked and turned into [`Options`].
#[derive(Default)]
struct Raw {
    listen: Option<String>,
    remote: Option<String>,
    kcp: bool,
    log: Option<PathBuf>,
    help: bool,
    version: Option<String>,
    smuxver: Option<String>,
    nodelay_flags: Vec<String>,
    kcp_only: Vec<String>,
    notsent_lowat: Option<String>,
}

fn number<T: std::str::FromStr>(written: &str, v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.trim()
        .parse()
        .map_err(|e| format!("{written} {v:?}: {e}"))
}

fn boolean(written: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("{written}: {other:?} is not true or false")),
    }
}

fn build(
    role: Role,
    given: Vec<Given>,
    env_key: Option<String>,
    mut warnings: Vec<String>,
) -> Result<Parsed, String> {
    let mut raw = Raw::default();
    let mut opts = Options::default();
    let mut settings = match role {
        Role::Client => KcpSettings::client(),
        Role::Server => KcpSettings::server(),
    };
    let mut key = env_key.unwrap_or_else(|| KCPTUN_DEFAULT_KEY.to_string());
    let mut crypt = Crypt::Aes;
    let mut mode_name = "fast".to_string();
    let mut manual = Mode::MANUAL_DEFAULT;
    let (mut data_shards, mut parity_shards) = (10usize, 3usize);
    let mut compression = true;
    let mut smuxbuf: Option<usize> = None;
    let mut streambuf: Option<usize> = None;
    let mut keep_alive: Option<u64> = None;
    let mut limits = ListenerLimits::default();

    for g in &given {
        let w = g.written.as_str();
        let v = g.value.as_deref();
        let val = || v.expect("a value flag has a value");
        let name = g.spec.canonical;
        if KCP_ONLY.contains(&name) {
            raw.kcp_only.push(w.to_string());
        }
        match name {
            "listen" => raw.listen = Some(val().to_string()),
            "remote" => raw.remote = Some(val().to_string()),
            "transport" => {
                raw.kcp = match val() {
                    "tcp" => false,
                    "kcp" => true,
                    other => return Err(format!("{w}: {other:?} is not tcp or kcp")),
                }
            }
            "version" => raw.version = Some(val().to_string()),
            "smuxver" => raw.smuxver = Some(val().to_string()),
            "keepalive" => keep_alive = Some(number(w, val())?),
            "drain-timeout" => opts.drain_timeout = Duration::from_secs(number(w, val())?),
            "notsent-lowat" => raw.notsent_lowat = Some(val().to_string()),
            "conns" => {
                opts.conns = number(w, val())?;
                if opts.conns == 0 {
                    return Err(format!("{w} is at least 1"));
                }
            }
            "autoexpire" => {
                let secs: u64 = number(w, val())?;
                opts.auto_expire = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "scavengettl" => opts.scavenge_ttl = Duration::from_secs(number(w, val())?),
            "key" => key = val().to_string(),
            "crypt" => crypt = val().parse().map_err(|e| format!("{w}: {e}"))?,
            "mode" => {
                if Mode::from_name(val()).is_none() {
                    return Err(format!(
                        "{w}: {:?} is not fast3, fast2, fast, normal or manual (kcptun takes \
                         an unknown mode as manual; the tunnel refuses it, so that a typo \
                         cannot pass for a mode)",
                        val()
                    ));
                }
                mode_name = val().to_string();
            }
            "mtu" => settings.mtu = number(w, val())?,
            "sndwnd" => settings.sndwnd = window(w, val())?,
            "rcvwnd" => settings.rcvwnd = window(w, val())?,
            "datashard" => data_shards = number(w, val())?,
            "parityshard" => parity_shards = number(w, val())?,
            "dscp" => {
                let dscp: u8 = number(w, val())?;
                if dscp > 63 {
                    return Err(format!("{w}: DSCP is 6 bits, 0 to 63"));
                }
                settings.dscp = dscp;
            }
            "nocomp" => compression = !boolean(w, v)?,
            "acknodelay" => settings.acknodelay = boolean(w, v)?,
            "nodelay" => {
                manual.nodelay = number::<i64>(w, val())? != 0;
                raw.nodelay_flags.push(w.to_string());
            }
            "interval" => {
                manual.interval = number(w, val())?;
                raw.nodelay_flags.push(w.to_string());
            }
            "resend" => {
                manual.resend = number(w, val())?;
                raw.nodelay_flags.push(w.to_string());
            }
            "nc" => {
                manual.nc = number::<i64>(w, val())? != 0;
                raw.nodelay_flags.push(w.to_string());
            }
            "sockbuf" => settings.sockbuf = number(w, val())?,
            "max-sessions" => {
                limits.max_sessions = number(w, val())?;
                if limits.max_sessions == 0 {
                    return Err(format!("{w} is at least 1"));
                }
            }
            "smuxbuf" => smuxbuf = Some(number(w, val())?),
            "streambuf" => streambuf = Some(number(w, val())?),
            "quiet" => opts.quiet = boolean(w, v)?,
            "log" => raw.log = Some(PathBuf::from(val())).filter(|p| !p.as_os_str().is_empty()),
            // kcptun's configurations often carry these at their defaults (no log): only
            // a value that would do something is worth a warning.
            "snmplog" | "snmpperiod" if matches!(val(), "" | "60") => {}
            "snmplog" | "snmpperiod" => warnings.push(format!(
                "{w} is ignored: the tunnel keeps no SNMP log (KCP's counts are in \
                 smux_tunnel::kcp::KcpStats)"
            )),
            "pprof" => {
                if boolean(w, v)? {
                    warnings.push(format!(
                        "{w} is ignored: the tunnel has no profiling server"
                    ));
                }
            }
            "tcp" => {
                if boolean(w, v)? {
                    return Err(format!(
                        "{w} is not supported: kcptun's TCP emulation (tcpraw) needs raw \
                         sockets; the tunnel's KCP runs on UDP only (for a tunnel over TCP, \
                         use --transport tcp against another tunnel)"
                    ));
                }
            }
            "c" => {}
            "help" => raw.help = boolean(w, v)?,
            "v" => {
                return Err(format!(
                    "{w} is not supported: kcptun's -v prints kcptun's version; here --version \
                     N sets the smux version"
                ))
            }
            _ => unreachable!("every spec is handled: {name}"),
        }
    }
    if raw.help {
        return Ok(Parsed::Help);
    }

    // smux.
    let version = match (raw.version.as_deref(), raw.smuxver.as_deref()) {
        (Some(_), Some(_)) => return Err("give --version or --smuxver, not both".into()),
        (Some(v), None) | (None, Some(v)) => Some(v),
        (None, None) => None,
    };
    match version {
        None | Some("1") => opts.version = Version::V1,
        Some("2") => opts.version = Version::V2,
        Some("auto") if role == Role::Server && raw.smuxver.is_none() => opts.auto_version = true,
        Some(v) => {
            return Err(format!(
                "the smux version is 1 or 2{}, not {v:?}",
                if role == Role::Server {
                    " (or auto, with --version)"
                } else {
                    ""
                }
            ))
        }
    }
    if let Some(secs) = keep_alive {
        opts.keep_alive = NonZeroU64::new(secs);
    }
    // kcptun's smux buffers are its defaults with KCP; over TCP, smux-tokio's unless given.
    if raw.kcp {
        smuxbuf = smuxbuf.or(Some(4 * 1024 * 1024));
        streambuf = streambuf.or(Some(2 * 1024 * 1024));
    }
    if let Some(b) = smuxbuf {
        // Go's smux refuses a zero buffer; smux-tokio needs room for a full frame and its
        // queue slot.
        if b < 65_599 {
            return Err(format!(
                "--smuxbuf {b}: at least 65599 bytes (a full frame)"
            ));
        }
        opts.smux_buffer = Some(b);
    }
    if let Some(b) = streambuf {
        if !(65_535..=i32::MAX as usize).contains(&b) {
            return Err(format!(
                "--streambuf {b}: between 65535 (a full frame) and 2147483647 bytes"
            ));
        }
        if smuxbuf.is_some_and(|s| b > s) {
            return Err(format!(
                "--streambuf {b} is larger than --smuxbuf {} (Go's smux refuses it too)",
                smuxbuf.unwrap_or_default()
            ));
        }
        opts.stream_buffer = Some(b as u32);
    }

    // The transport.
    if raw.kcp {
        let mode = Mode::from_name(&mode_name).expect("checked");
        settings.mode = match mode {
            Mode::Manual(_) => Mode::Manual(manual),
            preset => {
                for w in &raw.nodelay_flags {
                    warnings.push(format!(
                        "{w} is ignored: --mode {mode_name} sets it (as in kcptun, it counts \
                         with --mode manual only)"
                    ));
                }
                preset
            }
        };
        // kcp-go has no timer for a silent peer; smux's keep-alive ends the session. The KCP
        // session's own timeout only has to outlast the keep-alive interval by far, and is
        // off with it.
        settings.idle_timeout = opts
            .keep_alive
            .map(|k| Duration::from_secs(k.get().saturating_mul(6).max(60)));
        let codec = if crypt == Crypt::None {
            // The key plays no part: no need to derive it.
            CodecConfig {
                data_shards,
                parity_shards,
                ..CodecConfig::plain()
            }
        } else {
            CodecConfig::new(crypt, &key, data_shards, parity_shards)
        };
        let overhead = CRYPT_HEADER + if codec.fec() { FEC_HEADER_DATA } else { 0 };
        if settings.mtu > MTU_LIMIT {
            return Err(format!("--mtu {}: at most {MTU_LIMIT}", settings.mtu));
        }
        settings
            .kcp_mtu(overhead)
            .map_err(|e| format!("--mtu: {e}"))?;
        let mut kcp = Kcp::new(settings, codec, compression).map_err(|e| e.to_string())?;
        kcp.limits = limits;
        opts.transport = Transport::Kcp(Box::new(kcp));
        if raw.notsent_lowat.is_some() {
            warnings.push(
                "--notsent-lowat is ignored: it is a TCP socket option, and the smux \
                 connections run on KCP"
                    .into(),
            );
        }
    } else {
        if let Some(w) = raw.kcp_only.first() {
            return Err(format!("{w} configures KCP: it needs --transport kcp"));
        }
        if let Some(v) = raw.notsent_lowat {
            let kib: u32 = number("--notsent-lowat", &v)?;
            opts.notsent_lowat = (kib > 0).then(|| kib.saturating_mul(1024));
        }
    }

    let (what, aliases) = match role {
        Role::Server => ("--target", "-t"),
        Role::Client => ("--server", "-r, --remoteaddr"),
    };
    let listen = raw
        .listen
        .ok_or("--listen is required (kcptun: -l)")?
        .to_string();
    let remote = raw
        .remote
        .ok_or_else(|| format!("{what} is required (kcptun: {aliases})"))?;
    if !remote
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    {
        return Err(format!(
            "{what} {remote:?}: HOST:PORT{}",
            if role == Role::Server {
                " (kcptun-server also takes a Unix socket's path; the tunnel does not)"
            } else {
                ""
            }
        ));
    }
    Ok(Parsed::Run(Box::new(Command {
        role,
        // kcptun's ":PORT" means every address, as Go's listeners take it.
        listen: if listen.starts_with(':') {
            format!("0.0.0.0{listen}")
        } else {
            listen
        },
        remote,
        opts,
        log: raw.log,
        warnings,
    })))
}

fn window(written: &str, v: &str) -> Result<u16, String> {
    let n: u32 = number(written, v)?;
    match u16::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{written} {n}: between 1 and 65535 packets")),
    }
}

/// kcptun's JSON configuration: one flat object of strings, numbers and booleans.
mod json {
    /// The object's members in order, each value as text (a string's contents, a number's
    /// digits, `true` or `false`; `null` members are left out).
    pub fn parse_flat_object(text: &str) -> Result<Vec<(String, String)>, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        p.ws();
        p.expect(b'{')?;
        let mut out = Vec::new();
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            loop {
                p.ws();
                let key = p.string()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                if let Some(value) = p.value()? {
                    out.push((key, value));
                }
                p.ws();
                match p.next() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err(p.error("expected , or }")),
                }
            }
        }
        p.ws();
        if p.i != p.s.len() {
            return Err(p.error("text after the object"));
        }
        Ok(out)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> String {
            format!("JSON: {what} at byte {}", self.i)
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let b = self.peek()?;
            self.i += 1;
            Some(b)
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }

        fn expect(&mut self, b: u8) -> Result<(), String> {
            if self.next() == Some(b) {
                Ok(())
            } else {
                Err(self.error(&format!("expected {}", b as char)))
            }
        }

        fn value(&mut self) -> Result<Option<String>, String> {
            match self.peek() {
                Some(b'"') => self.string().map(Some),
                Some(b't') => self.word("true").map(|_| Some("true".into())),
                Some(b'f') => self.word("false").map(|_| Some("false".into())),
                Some(b'n') => self.word("null").map(|_| None),
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.i;
                    while matches!(
                        self.peek(),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        self.i += 1;
                    }
                    let n = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
                    Ok(Some(n.to_string()))
                }
                _ => Err(self.error("expected a string, number, boolean or null")),
            }
        }

        fn word(&mut self, w: &str) -> Result<(), String> {
            if self.s[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(())
            } else {
                Err(self.error(&format!("expected {w}")))
            }
        }

        fn string(&mut self) -> Result<String, String> {
            self.expect(b'"')?;
            let mut out: Vec<u8> = Vec::new();
            loop {
                match self.next() {
                    None => return Err(self.error("unterminated string")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let c = match self.next() {
                            Some(b'"') => '"',
                            Some(b'\\') => '\\',
                            Some(b'/') => '/',
                            Some(b'b') => '\u{8}',
                            Some(b'f') => '\u{c}',
                            Some(b'n') => '\n',
                            Some(b'r') => '\r',
                            Some(b't') => '\t',
                            Some(b'u') => {
                                let hi = self.hex4()?;
                                let code = if (0xd800..0xdc00).contains(&hi) {
                                    self.word("\\u")?;
                                    let lo = self.hex4()?;
                                    if !(0xdc00..0xe000).contains(&lo) {
                                        return Err(self.error("unpaired surrogate"));
                                    }
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    hi
                                };
                                char::from_u32(code)
                                    .ok_or_else(|| self.error("invalid \\u escape"))?
                            }
                            _ => return Err(self.error("invalid escape")),
                        };
                        let mut buf = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    Some(b) => out.push(b),
                }
            }
            String::from_utf8(out).map_err(|_| self.error("a string that is not UTF-8"))
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let digits = self
                .s
                .get(self.i..self.i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .ok_or_else(|| self.error("expected 4 hex digits"))?;
            self.i += 4;
            Ok(digits)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::parse_flat_object;

        #[test]
        fn kcptun_configs() {
            let text = r#" {"listen": ":29900", "target":"127.0.0.1:22",
                "key":"a \"quoted\" \\ \u00e9\ud83d\ude00", "mtu": 1350, "nocomp": true,
                "log": null, "quiet": false} "#;
            let got = parse_flat_object(text).unwrap();
            let want: Vec<(String, String)> = [
                ("listen", ":29900"),
                ("target", "127.0.0.1:22"),
                ("key", "a \"quoted\" \\ é😀"),
                ("mtu", "1350"),
                ("nocomp", "true"),
                ("quiet", "false"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            assert_eq!(got, want);
            assert_eq!(parse_flat_object("{}").unwrap(), vec![]);
        }

        #[test]
        fn malformed_configs_are_errors() {
            for text in [
                "",
                "[]",
                "{",
                r#"{"a"}"#,
                r#"{"a":}"#,
                r#"{"a":1,}"#,
                r#"{"a":{"b":1}}"#,
                r#"{"a":"\x"}"#,
                r#"{"a":"\ud800"}"#,
                r#"{"a":1} x"#,
                r#"{"a":"unterminated"#,
            ] {
                assert!(parse_flat_object(text).is_err(), "{text:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kcp::NoDelay;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn run(s: &str) -> Command {
        match parse(args(s), None) {
            Ok(Parsed::Run(c)) => *c,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match parse(args(s), None) {
            Err(e) => e,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn kcp(c: &Command) -> &Kcp {
        match &c.opts.transport {
            Transport::Kcp(k) => k,
            Transport::Tcp => panic!("not kcp"),
        }
    }

    #[test]
    fn tcp_by_default_with_our_flags() {
        let c = run("client --listen 127.0.0.1:1 --server h:2 --conns 3 --version 2");
        assert_eq!(c.role, Role::Client);
        assert_eq!(
            (c.listen.as_str(), c.remote.as_str()),
            ("127.0.0.1:1", "h:2")
        );
        assert!(!c.opts.transport.is_kcp());
        assert_eq!(c.opts.conns, 3);
        assert_eq!(c.opts.version, Version::V2);
        assert_eq!(c.opts.smux_buffer, None);
        assert!(c.warnings.is_empty());
        let s = run("server --listen :1 --target h:2 --version auto");
        assert!(s.opts.auto_version);
        assert_eq!(s.listen, "0.0.0.0:1");
    }

    #[test]
    fn kcptun_defaults_differ_by_role() {
        let c = run("client --transport kcp -l :1 -r h:2");
        let k = kcp(&c);
        assert_eq!((k.settings.sndwnd, k.settings.rcvwnd), (128, 512));
        assert_eq!(k.settings.mtu, 1350);
        assert_eq!(k.settings.mode, Mode::Fast);
        assert!(k.compression);
        let codec = k.codec_config();
        assert_eq!(codec.crypt, Crypt::Aes);
        assert_eq!((codec.data_shards, codec.parity_shards), (10, 3));
        assert_eq!(codec.key, CodecConfig::kcptun_default().key);
        assert_eq!(c.opts.smux_buffer, Some(4 << 20));
        assert_eq!(c.opts.stream_buffer, Some(2 << 20));
        assert_eq!(c.opts.keep_alive, NonZeroU64::new(10));
        let s = run("server --transport=kcp -t h:2 -l :1");
        let k = kcp(&s);
        assert_eq!((k.settings.sndwnd, k.settings.rcvwnd), (1024, 1024));
        assert_eq!(k.limits, ListenerLimits::default());
    }

    #[test]
    fn the_servers_session_cap() {
        let s = run("server --transport kcp -t h:2 -l :1 --max-sessions 16");
        assert_eq!(kcp(&s).limits.max_sessions, 16);
        assert!(err("server --transport kcp -t h:2 -l :1 --max-sessions 0").contains("at least 1"));
        assert!(err("server -t h:2 -l :1 --max-sessions 16").contains("needs --transport kcp"));
        assert!(err("client --transport kcp -r h:2 -l :1 --max-sessions 16")
            .contains("not an option of the client"));
    }

    #[test]
    fn kcptun_names_and_spellings() {
        let c = run(
            "client --transport kcp --localaddr :1 --remoteaddr h:2 -crypt none -nocomp \
             --ds 0 -ps=0 --conn 2 --smuxver 2 --keepalive 5 --sndwnd 64 --rcvwnd 256 \
             --mode manual --nodelay 1 --interval 15 --resend 2 --nc 1 --acknodelay=true \
             --dscp 46 --sockbuf 1048576 --smuxbuf 1048576 --streambuf 65536 --quiet \
             --autoexpire 30 --scavengettl 5 --mtu 1400",
        );
        let k = kcp(&c);
        assert!(!k.compression);
        assert_eq!(k.codec_config().crypt, Crypt::None);
        assert!(!k.codec_config().fec());
        assert_eq!(
            k.settings.mode,
            Mode::Manual(NoDelay {
                nodelay: true,
                interval: 15,
                resend: 2,
                nc: true
            })
        );
        assert!(k.settings.acknodelay);
        assert_eq!(
            (k.settings.sndwnd, k.settings.rcvwnd, k.settings.mtu),
            (64, 256, 1400)
        );
        assert_eq!((k.settings.dscp, k.settings.sockbuf), (46, 1 << 20));
        assert_eq!(c.opts.conns, 2);
        assert_eq!(c.opts.version, Version::V2);
        assert_eq!(c.opts.keep_alive, NonZeroU64::new(5));
        assert_eq!(c.opts.smux_buffer, Some(1 << 20));
        assert_eq!(c.opts.stream_buffer, Some(65536));
        assert!(c.opts.quiet);
        assert_eq!(c.opts.auto_expire, Some(Duration::from_secs(30)));
        assert_eq!(c.opts.scavenge_ttl, Duration::from_secs(5));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn the_key_comes_from_the_flag_the_environment_or_kcptuns_default() {
        let p = |env: Option<&str>, extra: &str| {
            let a = args(&format!("server --transport kcp -l :1 -t h:2 {extra}"));
            match parse(a, env.map(str::to_string)).unwrap() {
                Parsed::Run(c) => kcp(&c).codec_config().key,
                Parsed::Help => unreachable!(),
            }
        };
        assert_eq!(p(None, ""), crate::kcp::derive_key(KCPTUN_DEFAULT_KEY));
        assert_eq!(p(Some("E"), ""), crate::kcp::derive_key("E"));
        assert_eq!(p(Some("E"), "--key F"), crate::kcp::derive_key("F"));
    }

    #[test]
    fn ignored_flags_warn() {
        let c = run(
            "server --transport kcp -l :1 -t h:2 --snmplog x --snmpperiod 5 --pprof \
             --nodelay 1 --notsent-lowat 4",
        );
        let w = c.warnings.join("\n");
        for flag in [
            "--snmplog",
            "--snmpperiod",
            "--pprof",
            "--nodelay",
            "--notsent-lowat",
        ] {
            assert!(w.contains(flag), "{flag}: {w}");
        }
    }

    #[test]
    fn refused_and_malformed() {
        for (line, says) in [
            ("client -l :1 -r h:2 --tcp", "--tcp"),
            ("client -l :1 -r h:2 -v", "-v"),
            ("client -l :1 -r h:2 --version", "prints kcptun's version"),
            ("client -l :1 -r h:2 --crypt aes", "needs --transport kcp"),
            (
                "client --transport kcp -l :1 -r h:2 --crypt blowfish",
                "blowfish",
            ),
            ("client --transport kcp -l :1 -r h:2 --mode turbo", "turbo"),
            ("client --transport kcp -l :1 -r h:2 --mtu 1501", "1500"),
            ("client --transport kcp -l :1 -r h:2 --mtu 60", "50 bytes"),
            (
                "client --transport kcp -l :1 -r h:2 --ds 200 --ps 100",
                "256",
            ),
            (
                "client --transport kcp -l :1 -r h:2 --sndwnd 0",
                "between 1",
            ),
            (
                "client --transport kcp -l :1 -r h:2 --sndwnd 70000",
                "between 1",
            ),
            ("client --transport kcp -l :1 -r h:2 --dscp 64", "0 to 63"),
            ("client --transport udp -l :1 -r h:2", "tcp or kcp"),
            ("client -l :1 -r h:2 --smuxbuf 100", "65599"),
            (
                "client -l :1 -r h:2 --streambuf 9000000 --smuxbuf 4194304",
                "larger",
            ),
            ("client -l :1 -r h:2 --smuxver 3", "1 or 2"),
            ("client -l :1 -r h:2 --smuxver 2 --version 2", "not both"),
            ("client -l :1 -r h:2 --version auto", "1 or 2"),
            ("client -l :1 -r h:2 --pprof", "not an option of the client"),
            (
                "server -l :1 -t h:2 --conn 2",
                "not an option of the server",
            ),
            ("server -l :1 -t h:2 --bogus 2", "unknown option --bogus"),
            ("server -l :1", "--target is required"),
            ("client -r h:2", "--listen is required"),
            ("client -l :1 -r h:2 --conns 0", "at least 1"),
            ("client -l :1 -r h:2 --quiet=maybe", "true or false"),
            ("client -l :1 -r h:2 stray", "unexpected argument"),
            ("relay -l :1", "first argument"),
            ("server -l :1 -t /run/app.sock", "Unix socket"),
            ("client -l :1 -r :2", "HOST:PORT"),
        ] {
            let e = err(line);
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn help() {
        assert!(matches!(parse(args("--help"), None), Ok(Parsed::Help)));
        assert!(matches!(parse(args("client -h"), None), Ok(Parsed::Help)));
    }

    #[test]
    fn every_spelling_is_a_known_flag() {
        // Each kcptun flag is taken by the parser under each of its names, for its roles.
        for f in KCPTUN_FLAGS {
            for name in f.names {
                for (role, has) in [(Role::Client, f.client), (Role::Server, f.server)] {
                    if has {
                        assert!(find(name, role).is_some(), "{name} ({role:?})");
                    }
                }
            }
        }
    }

    #[test]
    fn a_json_configuration_overrides_the_flags() {
        let dir = std::env::temp_dir().join(format!("tunnel-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.json");
        std::fs::write(
            &path,
            r#"{"listen": ":29900", "target": "127.0.0.1:22", "crypt": "salsa20",
                "nocomp": true, "SndWnd": 2048, "smuxver": 2, "unknown": 1}"#,
        )
        .unwrap();
        let line = format!(
            "server --transport kcp -l :1 -t h:2 --crypt none --sndwnd 16 -c {}",
            path.display()
        );
        let c = run(&line);
        let k = kcp(&c);
        assert_eq!(c.listen, "0.0.0.0:29900");
        assert_eq!(c.remote, "127.0.0.1:22");
        assert_eq!(k.codec_config().crypt, Crypt::Salsa20);
        assert!(!k.compression);
        assert_eq!(k.settings.sndwnd, 2048);
        assert_eq!(c.opts.version, Version::V2);
        assert!(c.warnings.join(" ").contains("unknown"), "{:?}", c.warnings);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
