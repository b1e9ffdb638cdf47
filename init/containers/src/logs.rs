//! A container's output: a ring of the last `RING` bytes in memory (what
//! `keelctl logs` shows), addressed by a running offset so that a follower
//! asks for "everything after N"; and a file on the state disk, rotated at
//! `ROTATE` bytes into `NAME.log.1` (one old file kept).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes kept in memory per container.
pub const RING: usize = 256 * 1024;
/// Size at which the log file is rotated.
pub const ROTATE: u64 = 1 << 20;

#[derive(Debug, Default)]
pub struct Ring {
    buf: VecDeque<u8>,
    /// Offset of the first byte in `buf` since the container was created.
    start: u64,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            buf: VecDeque::new(),
            start: 0,
            cap,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        let over = self.buf.len().saturating_sub(self.cap);
        if over > 0 {
            self.buf.drain(..over);
            self.start += over as u64;
        }
    }

    /// The offset after the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Bytes from `from` on (from the oldest kept when `from` is older),
    /// and the offset to ask for next.
    pub fn since(&self, from: u64) -> (Vec<u8>, u64) {
        let skip = from.saturating_sub(self.start).min(self.buf.len() as u64) as usize;
        (self.buf.iter().skip(skip).copied().collect(), self.end())
    }
}

/// The log file of a container, appended and rotated.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
}

impl LogFile {
    pub fn open(dir: &Path, name: &str) -> LogFile {
        let path = dir.join(format!("{name}.log"));
        let file = std::fs::create_dir_all(dir).ok().and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .ok()
        });
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        LogFile { path, file, size }
    }

    /// Append; a failing disk loses file logs, never the container.
    pub fn write(&mut self, data: &[u8]) {
        if self.size + data.len() as u64 > ROTATE {
            let old = self.path.with_extension("log.1");
            let _ = std::fs::rename(&self.path, old);
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
            self.size = 0;
        }
        if let Some(f) = &mut self.file {
            if f.write_all(data).is_ok() {
                self.size += data.len() as u64;
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_tail_and_offsets_run_on() {
        let mut r = Ring::new(8);
        r.push(b"hello ");
        assert_eq!(r.since(0), (b"hello ".to_vec(), 6));
        r.push(b"world");
        assert_eq!(r.end(), 11);
        assert_eq!(r.since(0), (b"lo world".to_vec(), 11));
        assert_eq!(r.since(6), (b"world".to_vec(), 11));
        assert_eq!(r.since(11), (Vec::new(), 11));
        assert_eq!(r.since(99), (Vec::new(), 11));
    }

    #[test]
    fn file_rotates() {
        let t = tempfile::tempdir().unwrap();
        let mut f = LogFile::open(t.path(), "web");
        let chunk = vec![b'x'; 600 * 1024];
        f.write(&chunk);
        f.write(&chunk);
        assert_eq!(
            std::fs::metadata(t.path().join("web.log.1")).unwrap().len(),
            600 * 1024
        );
        assert_eq!(
            std::fs::metadata(t.path().join("web.log")).unwrap().len(),
            600 * 1024
        );
    }
}
