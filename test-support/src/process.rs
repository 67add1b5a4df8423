//! Other programs run by a test or a benchmark (Go's kcptun, the tunnel binary), whose log a
//! caller waits on; and free loopback ports to give them. Standard library only.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running program whose stderr (its log) is read line by line on a thread of its own;
/// killed when dropped. Its stdin and stdout are null.
#[derive(Debug)]
pub struct LoggedProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl LoggedProcess {
    /// Starts `program` with `args`. The error names the program.
    pub fn start(program: impl AsRef<OsStr>, args: &[String]) -> io::Result<LoggedProcess> {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let name = Path::new(program).display();
                io::Error::new(e.kind(), format!("{name}: {e}"))
            })?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Once the caller stops listening, the rest is read and dropped.
                let _ = tx.send(line);
            }
        });
        Ok(LoggedProcess { child, lines })
    }

    /// Waits until a line of its log contains `marker` (the lines before it are dropped).
    /// Fails if the log ends first (the program exited), or after `limit`, a guard against a
    /// program that hangs.
    pub fn wait_for(&self, marker: &str, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::other(format!(
                        "no {marker:?} in its log within {limit:?}"
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(format!(
                        "it exited before logging {marker:?}"
                    )))
                }
            }
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port free on 127.0.0.1 at the time of asking.
pub fn free_udp_port() -> io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A TCP port free on 127.0.0.1 at the time of asking.
pub fn free_tcp_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_line_and_sees_the_end_of_the_log() {
        let script = "echo starting >&2; echo listening on 1 >&2; echo done >&2";
        let p = LoggedProcess::start("sh", &["-c".into(), script.into()]).unwrap();
        p.wait_for("listening on", Duration::from_secs(300))
            .unwrap();
        let e = p.wait_for("never", Duration::from_secs(300)).unwrap_err();
        assert!(e.to_string().contains("exited before"), "{e}");
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = LoggedProcess::start("/nonexistent/program", &[]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/program"), "{e}");
    }
}
