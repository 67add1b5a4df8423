//! kcptun's KCP settings: the mode presets (`-mode`), the windows, the MTU and the socket
//! options, with kcptun's names and defaults for each role.

use std::time::Duration;

/// KCP's `nodelay` parameters, as kcp-go's `SetNoDelay(nodelay, interval, resend, nc)` takes
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoDelay {
    /// Quicker retransmission: a 30 ms floor on the retransmission timeout instead of 100 ms,
    /// and a gentler backoff.
    pub nodelay: bool,
    /// Milliseconds between KCP's internal updates (flushes); KCP keeps it within 10..=5000.
    pub interval: u32,
    /// Duplicate acknowledgements that trigger a fast retransmit; 0 turns it off.
    pub resend: u32,
    /// No congestion window: send as fast as the windows allow.
    pub nc: bool,
}

/// kcptun's `-mode`: a preset of [`NoDelay`] parameters, or `manual` with kcptun's hidden
/// `-nodelay -interval -resend -nc` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// nodelay 0, interval 40, resend 2, nc 1.
    Normal,
    /// nodelay 0, interval 30, resend 2, nc 1 (kcptun's default).
    #[default]
    Fast,
    /// nodelay 1, interval 20, resend 2, nc 1.
    Fast2,
    /// nodelay 1, interval 10, resend 2, nc 1.
    Fast3,
    /// The parameters given; kcptun's defaults for them are [`Mode::MANUAL_DEFAULT`].
    Manual(NoDelay),
}

impl Mode {
    /// kcptun's defaults for the hidden flags that `-mode manual` uses: 0, 50, 0, 0.
    pub const MANUAL_DEFAULT: NoDelay = NoDelay {
        nodelay: false,
        interval: 50,
        resend: 0,
        nc: false,
    };

    /// The parameters this mode sets.
    pub fn params(self) -> NoDelay {
        let preset = |nodelay, interval| NoDelay {
            nodelay,
            interval,
            resend: 2,
            nc: true,
        };
        match self {
            Mode::Normal => preset(false, 40),
            Mode::Fast => preset(false, 30),
            Mode::Fast2 => preset(true, 20),
            Mode::Fast3 => preset(true, 10),
            Mode::Manual(p) => p,
        }
    }

    /// The mode kcptun's `-mode` names (`normal`, `fast`, `fast2`, `fast3`, `manual`, the last
    /// with [`Mode::MANUAL_DEFAULT`]). kcptun itself takes an unknown name as `manual`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "normal" => Mode::Normal,
            "fast" => Mode::Fast,
            "fast2" => Mode::Fast2,
            "fast3" => Mode::Fast3,
            "manual" => Mode::Manual(Mode::MANUAL_DEFAULT),
            _ => return None,
        })
    }
}

/// The largest datagram kcp-go sends or reads (its `mtuLimit`).
pub const MTU_LIMIT: usize = 1500;

/// The settings of a KCP session, named after kcptun's flags. [`KcpSettings::client`] and
/// [`KcpSettings::server`] give kcptun's defaults for each role; the two differ only in the
/// windows.
///
/// kcptun also fixes, for every session, stream mode on and write delay off (each write is
/// flushed at once); so does this crate, so they are not settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpSettings {
    /// `-mode`.
    pub mode: Mode,
    /// `-mtu`: the largest datagram, headers of the [`Codec`](super::Codec) included; KCP's own
    /// MTU is this less the codec's overhead. At most [`MTU_LIMIT`].
    pub mtu: usize,
    /// `-sndwnd`, in packets: 128 for a client, 1024 for a server.
    pub sndwnd: u16,
    /// `-rcvwnd`, in packets: 512 for a client, 1024 for a server. The kcp crate raises a
    /// value under 128 to 128. A session buffers at most about twice this many packets of
    /// received data.
    pub rcvwnd: u16,
    /// `-acknodelay`: acknowledge each received packet at once instead of at the next update.
    pub acknodelay: bool,
    /// `-dscp`: the DSCP bits of outgoing datagrams (IPv4 sockets only here).
    pub dscp: u8,
    /// `-sockbuf`: the UDP socket's send and receive buffer sizes, in bytes (the kernel may cap
    /// them).
    pub sockbuf: usize,
    /// A session that receives no valid datagram for this long is dead: its reads and writes
    /// fail with `TimedOut` and the server forgets it. kcp-go has no such timer and leaves it
    /// to smux's keep-alive (kcptun's `-keepalive`, 10 s), so this must be longer than the
    /// peer's keep-alive interval. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// How long a session closed (or shut down) with data not yet acknowledged goes on sending
    /// it before it gives up.
    pub linger: Duration,
}

impl KcpSettings {
    /// kcptun-client's defaults.
    pub fn client() -> KcpSettings {
        KcpSettings {
            mode: Mode::Fast,
            mtu: 1350,
            sndwnd: 128,
            rcvwnd: 512,
            acknodelay: false,
            dscp: 0,
            sockbuf: 4 * 1024 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
            linger: Duration::from_secs(10),
        }
    }

    /// kcptun-server's defaults.
    pub fn server() -> KcpSettings {
        KcpSettings {
            sndwnd: 1024,
            rcvwnd: 1024,
            ..KcpSettings::client()
        }
    }

    /// KCP's MTU under a codec that adds `overhead` bytes, or why the settings cannot work.
    pub(crate) fn kcp_mtu(&self, overhead: usize) -> Result<usize, String> {
        if self.mtu > MTU_LIMIT {
            return Err(format!("mtu {} is over {MTU_LIMIT}", self.mtu));
        }
        // The kcp crate refuses an MTU under 50; a segment needs room for its 24-byte header
        // and some data.
        match self.mtu.checked_sub(overhead) {
            Some(m) if m >= 50 => Ok(m),
            _ => Err(format!(
                "mtu {} leaves less than 50 bytes for KCP after the codec's {overhead}",
                self.mtu
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_kcptuns() {
        let p = |m: Mode| {
            let p = m.params();
            (p.nodelay, p.interval, p.resend, p.nc)
        };
        assert_eq!(p(Mode::Normal), (false, 40, 2, true));
        assert_eq!(p(Mode::Fast), (false, 30, 2, true));
        assert_eq!(p(Mode::Fast2), (true, 20, 2, true));
        assert_eq!(p(Mode::Fast3), (true, 10, 2, true));
        assert_eq!(p(Mode::from_name("manual").unwrap()), (false, 50, 0, false));
        assert_eq!(Mode::from_name("fast3"), Some(Mode::Fast3));
        assert_eq!(Mode::from_name("turbo"), None);
        assert_eq!(Mode::default(), Mode::Fast);
    }

    #[test]
    fn role_defaults() {
        let c = KcpSettings::client();
        let s = KcpSettings::server();
        assert_eq!((c.sndwnd, c.rcvwnd, c.mtu), (128, 512, 1350));
        assert_eq!((s.sndwnd, s.rcvwnd, s.mtu), (1024, 1024, 1350));
        assert_eq!(c.kcp_mtu(20), Ok(1330));
        assert!(KcpSettings {
            mtu: 1501,
            ..c.clone()
        }
        .kcp_mtu(0)
        .is_err());
        assert!(KcpSettings { mtu: 60, ..c }.kcp_mtu(20).is_err());
    }
}
