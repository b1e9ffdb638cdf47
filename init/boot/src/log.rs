//! The console and kernel log writer.
//!
//! Lines go to stdout (the kernel opened /dev/console for PID 1) and, once
//! /dev exists, to /dev/kmsg so that `dmesg`-style readers and the kernel's
//! ring buffer keep them. Writes never fail the caller: a node that cannot log
//! must still boot.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Kernel log levels used by keel (`<N>` prefixes of /dev/kmsg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Crit = 2,
    Err = 3,
    Warn = 4,
    Info = 6,
}

static KMSG: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Start copying log lines to the kernel log at `path` (normally /dev/kmsg).
pub fn attach_kmsg(path: &Path) {
    if let Ok(f) = OpenOptions::new().write(true).open(path) {
        if let Ok(mut g) = KMSG.lock() {
            *g = Some(f);
        }
    }
}

/// Write one line to the console, and to the kernel log when attached.
pub fn line(level: Level, msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("keel: {msg}\n").as_bytes());
    let _ = out.flush();
    // Info lines are already on the console: the kernel log copy is for the
    // ring buffer. The kernel echoes only urgent levels to the console under
    // `quiet`, so errors may appear twice there; that is the safe side.
    if let Ok(mut g) = KMSG.try_lock() {
        if let Some(f) = g.as_mut() {
            // One write(2) per record: /dev/kmsg makes each write a record.
            let record = format!("<{}>keel: {msg}\n", level as u8);
            let _ = f.write_all(record.as_bytes());
        }
    }
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::line($crate::log::Level::Info, &format!($($t)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::line($crate::log::Level::Warn, &format!($($t)*)) };
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::line($crate::log::Level::Err, &format!($($t)*)) };
}
