//! The tunnel's log: one line per event, to stderr, or appended to a file once
//! [`log_to_file`] has been called (the command line's `--log`).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

static FILE: OnceLock<Mutex<File>> = OnceLock::new();

/// From now on, log lines are appended to the file at `path` (created if missing) instead of
/// going to stderr. Only the first call takes effect.
pub fn log_to_file(path: &Path) -> io::Result<()> {
    let file = File::options().create(true).append(true).open(path)?;
    let _ = FILE.set(Mutex::new(file));
    Ok(())
}

/// Writes one line. A line that cannot be written to the file is lost: the log never stops the
/// tunnel. Lines to stderr go through `eprintln!`, which tests capture.
pub fn write_line(args: fmt::Arguments<'_>) {
    match FILE.get() {
        Some(file) => {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{args}");
        }
        None => eprintln!("{args}"),
    }
}

/// `eprintln!` for the tunnel's log.
macro_rules! logln {
    ($($arg:tt)*) => {
        $crate::log::write_line(format_args!($($arg)*))
    };
}
pub(crate) use logln;
