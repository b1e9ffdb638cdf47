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
/// Console lines held back while the boot runs; `None` when not deferring.
static DEFERRED: Mutex<Option<String>> = Mutex::new(None);

/// Hold info lines back from the console until `flush`.
pub fn defer() {
    if let Ok(mut d) = DEFERRED.lock() {
        d.get_or_insert_with(String::new);
    }
}

/// Take the held-back lines without blocking (for the guard); stops deferring.
pub fn take_deferred() -> Option<String> {
    DEFERRED.try_lock().ok().and_then(|mut d| d.take())
}

fn write_console(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Write the held-back lines to the console in one go and stop deferring.
pub fn flush() {
    if let Some(text) = DEFERRED.lock().ok().and_then(|mut d| d.take()) {
        write_console(&text);
    }
}

/// Write one info line to the console at once, ahead of the held-back
/// lines (and to the kernel log like any line).
pub fn line_now(msg: &str) {
    write_console(&format!("keel: {msg}\n"));
    kmsg(Level::Info, msg);
}

fn kmsg(level: Level, msg: &str) {
    if let Ok(mut g) = KMSG.try_lock() {
        if let Some(f) = g.as_mut() {
            // One write(2) per record: /dev/kmsg makes each write a record.
            let record = format!("<{}>keel: {msg}\n", level as u8);
            let _ = f.write_all(record.as_bytes());
        }
    }
}

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
    let text = format!("keel: {msg}\n");
    // What goes to the console now: this line, or (when deferring) nothing
    // for info, everything pending for a warning or an error.
    let now = match DEFERRED.lock() {
        Ok(mut d) => match d.as_mut() {
            Some(buf) => {
                buf.push_str(&text);
                (level != Level::Info).then(|| std::mem::take(buf))
            }
            None => Some(text),
        },
        Err(_) => Some(text),
    };
    if let Some(t) = now {
        write_console(&t);
    }
    // The kernel log copy is for the ring buffer. The kernel echoes only
    // urgent levels to the console under `quiet`, so errors may appear twice
    // there; that is the safe side.
    kmsg(level, msg);
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

#[cfg(test)]
mod tests {
    use super::*;

    // One test: DEFERRED is process-global.
    #[test]
    fn deferral_holds_info_and_flushes_on_warning_or_take() {
        defer();
        line(Level::Info, "one");
        line(Level::Info, "two");
        assert_eq!(
            DEFERRED.lock().unwrap().as_deref(),
            Some("keel: one\nkeel: two\n")
        );
        line(Level::Warn, "three");
        // Printed, and still deferring.
        assert_eq!(DEFERRED.lock().unwrap().as_deref(), Some(""));
        line(Level::Info, "four");
        assert_eq!(take_deferred().as_deref(), Some("keel: four\n"));
        assert_eq!(take_deferred(), None);
        flush();
    }
}
