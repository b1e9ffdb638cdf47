//! The durable Raft log: segment files on disk, every entry also in memory
//! until a snapshot lets it be purged.
//!
//! 1. A record is `[len u32][crc32 u32][payload]`, little-endian; records
//!    are appended to the newest segment `<first index>.wal`, which is
//!    closed and a new one begun past [`SEGMENT_BYTES`]. The payload is the
//!    entry in [postcard](https://docs.rs/postcard) after a format byte
//!    ([`RECORD_POSTCARD_V1`]); a payload that begins with `{` is an entry
//!    in JSON, as versions before it wrote them, and still reads. postcard
//!    is not self-describing: a change to the entry's types needs a new
//!    format byte, with the old decoder kept for the old records.
//! 2. `append` writes the batch with one `write` and hands openraft's
//!    callback to the flusher thread. The flusher takes every callback queued
//!    meanwhile, calls `fdatasync` once for all of them and then reports them
//!    flushed: group commit. openraft acknowledges a write only after its
//!    callback, so nothing is acknowledged before it is on disk.
//! 3. `truncate` (a follower's conflicting suffix) first waits for the flusher
//!    to drain, so that no flush is reported for an entry already cut, then
//!    shortens the file and syncs it.
//! 4. Memory holds where every entry's record is, and only the newest
//!    entries themselves (up to [`CACHE_BYTES`], which covers apply and
//!    replication to followers that keep up); older ones are read back from
//!    their segment.
//! 5. `purge` forgets entries up to a snapshotted index, records the purge
//!    point in `purged` (atomically) and deletes segments that hold only
//!    purged entries. After segments are removed (by `purge`, `truncate` or
//!    at open) the directory is fsynced, so a crash cannot bring a removed
//!    segment back behind the purge point or the truncation.
//! 6. Opening reads every segment. A bad record (short, failed checksum,
//!    undecodable, or data past the zeros that end the records) is a torn
//!    write, one that never finished its fsync and so was never
//!    acknowledged, only at the end of the newest segment: nothing valid
//!    may follow it, unless a zero-filled disk sector lies between (a write
//!    torn at a sector boundary, as etcd's `isTornEntry` allows). Then it
//!    is cut off. Anything else (a bad record before the newest segment,
//!    or one valid records follow) refuses the start with an error that
//!    names the segment file and the byte offset, as etcd refuses a
//!    corrupt WAL: cutting it would drop acknowledged writes.
//! 7. For fault tests, `KEEL_ETCD_CRASH_FSYNC=before:N` (or `after:N`)
//!    aborts the process right before (after) its N-th log fsync: the two
//!    crash points that decide whether a write was acknowledged.
//! 8. The vote is a small file replaced atomically (write, fsync, rename,
//!    fsync the directory).
//! 9. Segments are zero-filled ahead of time when the disk has room: a
//!    thread writes a spare file of [`SEGMENT_BYTES`] zeros and syncs it,
//!    and the next segment is that file renamed. Records then overwrite
//!    blocks that already exist, so `fdatasync` writes the data alone: an
//!    append would also change the file's size and make ext4 commit its
//!    journal on every sync (measured here: 0.19 ms instead of 0.32 ms per
//!    sync with three members on one disk). A record header of eight zero
//!    bytes is where the data ends; the zeros after it must be zeros to the
//!    end of the file, or the tail is torn (step 6).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb};

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// A segment is closed past this size. Small, because purging frees whole
/// segments and keel's STATE partition can be a few MiB.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// The format byte of a record payload in postcard (step 1).
pub const RECORD_POSTCARD_V1: u8 = 1;
/// No single record may claim more than this (a corrupt length).
const RECORD_MAX: u32 = 64 << 20;
/// The newest entries kept in memory (step 4), by encoded size.
pub const CACHE_BYTES: usize = 256 << 10;

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("log {path}: record at byte {offset} is corrupt ({why}): refusing to start; the segment is left as it is for inspection or restore")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("log {path}: entry {found} follows {expected_before}: the log has a hole")]
    Hole {
        path: PathBuf,
        found: u64,
        expected_before: u64,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn lock_spare(s: &Mutex<Spare>) -> MutexGuard<'_, Spare> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Step 9: whether the disk under `dir` keeps an eighth of itself and
/// three more segments free after one more spare. The space alarm's line
/// is at most an eighth of the disk, so a spare never raises it; on a
/// nearly full or small disk segments are simply appended to.
fn room_for_spare(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir).is_ok_and(|s| {
        let free = s.blocks_available().saturating_mul(s.fragment_size());
        let size = s.blocks().saturating_mul(s.fragment_size());
        free >= 4 * SEGMENT_BYTES + size / 8
    })
}

/// What spares are written from: static, so that the spare thread
/// allocates nothing (a thread's first allocation would give it a malloc
/// arena of its own, kept after the thread ends). One page, written 16
/// times per call: a 64 KiB array would be 64 KiB of zeros in keel's binary.
static ZEROS: [u8; 4096] = [0; 4096];

/// Step 9: a new file of [`SEGMENT_BYTES`] zeros, synced.
fn fill_spare(path: &Path) -> io::Result<()> {
    let f = private_file(path, true)?;
    let mut left = SEGMENT_BYTES;
    while left > 0 {
        // Every byte is zero, so a short write simply goes on from where it
        // stopped, with the same pages.
        let mut pages = [io::IoSlice::new(&ZEROS); 16];
        let full = (left / ZEROS.len() as u64).min(pages.len() as u64) as usize;
        let count = if full == 0 {
            pages[0] = io::IoSlice::new(&ZEROS[..left as usize]);
            1
        } else {
            full
        };
        let n = (&f).write_vectored(&pages[..count])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        left -= n as u64;
    }
    f.sync_all()
}

/// Step 9: makes a spare unless one is ready or being made: on a thread of
/// its own, or right here when `wait`.
fn refill(spare: &Arc<Mutex<Spare>>, dir: &Path, wait: bool) {
    let path = {
        let mut s = lock_spare(spare);
        if s.ready.is_some() || s.filling {
            return;
        }
        s.filling = true;
        s.next += 1;
        dir.join(format!("{:06}.spare", s.next))
    };
    let (spare2, dir2) = (spare.clone(), dir.to_path_buf());
    let work = move || {
        let made = room_for_spare(&dir2)
            && fill_spare(&path)
                .map_err(|e| eprintln!("keel-etcd: log: spare segment {}: {e}", path.display()))
                .is_ok();
        if !made {
            let _ = fs::remove_file(&path);
        }
        let mut s = lock_spare(&spare2);
        s.filling = false;
        if made {
            s.ready = Some(path);
        }
    };
    if wait {
        work();
    } else if std::thread::Builder::new()
        .name("kv-log-spare".into())
        .spawn(work)
        .is_err()
    {
        lock_spare(spare).filling = false;
    }
}

/// A member's files are its own, as etcd keeps them: the store can hold
/// secrets. Directories are 0700 (an existing one is made so), files 0600.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// A new file, 0600: `create_new` or else truncated.
fn private_file(path: &Path, create_new: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.write(true).mode(0o600);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    o.open(path)
}

/// Makes the directory's entries durable (a removal or a rename in it).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` so that a crash leaves the old or the new file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = private_file(&tmp, false)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

struct Segment {
    first: u64,
    path: PathBuf,
    /// The append handle (the flusher syncs it).
    file: Arc<File>,
    /// A read handle for entries no longer cached.
    reader: File,
    len: u64,
}

/// Where an entry's record is.
#[derive(Clone, Copy)]
struct Pos {
    segment: u64,
    offset: u64,
    len: u32,
}

/// Step 9: the spare segment, when one is ready.
#[derive(Default)]
struct Spare {
    /// A zero-filled, synced file that can become the next segment.
    ready: Option<PathBuf>,
    /// A thread is filling one.
    filling: bool,
    /// Names the next spare file.
    next: u64,
}

struct Inner {
    dir: PathBuf,
    spare: Arc<Mutex<Spare>>,
    /// Every unpurged entry's record, in index order from `first`.
    positions: VecDeque<Pos>,
    first: u64,
    /// The last entry's id (or the purge point when there is none).
    last: Option<LogId>,
    /// The newest entries (a suffix of the log) and their encoded sizes.
    cache: VecDeque<(Entry, usize)>,
    cache_bytes: usize,
    segments: Vec<Segment>,
    purged: Option<LogId>,
    vote: Option<Vote>,
}

enum Flush {
    Entries(Arc<File>, LogFlushed<TypeConfig>),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The log; cheap to clone for readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    flusher: mpsc::Sender<Flush>,
    flushes: tokio::sync::watch::Receiver<u64>,
}

fn storage_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageError::from_io_error(subject, verb, io::Error::other(e.to_string()))
}

/// Lets postcard write into a borrowed buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<T: IntoIterator<Item = u8>>(&mut self, iter: T) {
        self.0.extend(iter);
    }
}

/// Appends the format byte and `v` in postcard: a record's payload, or a
/// peer request's body.
pub fn to_postcard<T: serde::Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    out.push(RECORD_POSTCARD_V1);
    postcard::to_extend(v, Append(out))?;
    Ok(())
}

/// A value from the postcard bytes after the format byte, all of them;
/// `what` names it in the error.
pub fn from_postcard<T: serde::de::DeserializeOwned>(rest: &[u8], what: &str) -> Result<T, String> {
    match postcard::take_from_bytes(rest) {
        Ok((v, [])) => Ok(v),
        Ok((_, extra)) => Err(format!("{} bytes after the {what}", extra.len())),
        Err(e) => Err(format!("postcard: {e}")),
    }
}

/// The payload's entry (step 1).
pub fn decode(payload: &[u8]) -> Result<Entry, String> {
    match payload.first() {
        Some(&RECORD_POSTCARD_V1) => from_postcard(&payload[1..], "entry"),
        Some(b'{') => serde_json::from_slice(payload).map_err(|e| e.to_string()),
        Some(b) => Err(format!("unknown record format {b}")),
        None => Err("empty record".into()),
    }
}

/// Appends `entry`'s record to `out`.
fn encode(entry: &Entry, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    to_postcard(entry, out)?;
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads a segment's records: the entries with their offsets, and where the
/// valid part ends with the reason it ended, if not at the end of the file.
/// A segment as read: (offset, entry) pairs, the valid length, and why the
/// rest is not valid.
type SegmentRead = (Vec<(u64, u32, Entry)>, u64, Option<String>);

#[cfg(test)]
fn read_segment(path: &Path) -> Result<SegmentRead, LogError> {
    Ok(parse_segment(&read_file(path)?))
}

fn read_file(path: &Path) -> Result<Vec<u8>, LogError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("read", path))?;
    Ok(bytes)
}

/// The disk sector a torn write loses or keeps whole (step 6).
const SECTOR: usize = 512;
/// Most payload bytes [`valid_record_after`] checksums before it gives up
/// (then the tail counts as corrupt: refusing is safe, cutting may not be).
const SCAN_BUDGET: usize = 256 << 20;

/// Step 6: the offset of the first valid record (whole, checksum right,
/// decodable) that starts after `from`, if any; `Err(())` when the scan ran
/// out of its budget.
fn valid_record_after(bytes: &[u8], from: usize) -> Result<Option<usize>, ()> {
    let mut budget = SCAN_BUDGET;
    for off in from + 1..bytes.len().saturating_sub(8) {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default()) as usize;
        if len == 0 || len > RECORD_MAX as usize || len > bytes.len() - off - 8 {
            continue;
        }
        budget = budget.checked_sub(len).ok_or(())?;
        let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
        let payload = &bytes[off + 8..off + 8 + len];
        if crc32fast::hash(payload) == crc && decode(payload).is_ok() {
            return Ok(Some(off));
        }
    }
    Ok(None)
}

/// Step 6: whether the bad record at `from` in the newest segment may be
/// cut as a torn write: no valid record follows it, or a zero-filled
/// sector lies between it and the next one. `Err` says why not.
fn torn_tail(bytes: &[u8], from: usize) -> Result<(), String> {
    let next = match valid_record_after(bytes, from) {
        Ok(None) => return Ok(()),
        Ok(Some(next)) => next,
        Err(()) => {
            return Err(format!(
                "more than {} MiB after it could not be told from records",
                SCAN_BUDGET >> 20
            ))
        }
    };
    let first = from / SECTOR;
    let last = next.div_ceil(SECTOR);
    let zero_sector = (first..last).any(|i| {
        let s = &bytes[i * SECTOR..((i + 1) * SECTOR).min(bytes.len())];
        s.len() == SECTOR && s.iter().all(|&b| b == 0)
    });
    if zero_sector {
        Ok(())
    } else {
        Err(format!("a valid record follows at byte {next}"))
    }
}

fn parse_segment(bytes: &[u8]) -> SegmentRead {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < bytes.len() {
        let bad = |why: &str| Some(why.to_string());
        if bytes.len() - off < 8 {
            return (out, off as u64, bad("short header"));
        }
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
        if len == 0 && crc == 0 {
            // Step 9: the zero-filled rest of a preallocated segment.
            if bytes[off..].iter().all(|&b| b == 0) {
                return (out, off as u64, None);
            }
            return (out, off as u64, bad("data after the end of the records"));
        }
        if len > RECORD_MAX || bytes.len() - off - 8 < len as usize {
            return (out, off as u64, bad("short record"));
        }
        let payload = &bytes[off + 8..off + 8 + len as usize];
        if crc32fast::hash(payload) != crc {
            return (out, off as u64, bad("checksum mismatch"));
        }
        match decode(payload) {
            Ok(e) => out.push((off as u64, len, e)),
            Err(e) => return (out, off as u64, Some(format!("undecodable entry: {e}"))),
        }
        off += 8 + len as usize;
    }
    (out, off as u64, None)
}

impl LogStore {
    /// Opens (or creates) the log in `dir` and starts its flusher thread.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        private_dir(dir).map_err(io_err("create directory", dir))?;
        let read_json = |name: &str| -> Result<Option<Vec<u8>>, LogError> {
            let p = dir.join(name);
            match fs::read(&p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err("read", &p)(e)),
            }
        };
        fn parse<T: serde::de::DeserializeOwned>(
            dir: &Path,
            name: &str,
            b: Vec<u8>,
        ) -> Result<T, LogError> {
            serde_json::from_slice(&b).map_err(|e| LogError::Corrupt {
                path: dir.join(name),
                offset: 0,
                why: e.to_string(),
            })
        }
        let vote: Option<Vote> = read_json("vote")?
            .map(|b| parse(dir, "vote", b))
            .transpose()?;
        let purged: Option<LogId> = read_json("purged")?
            .map(|b| parse(dir, "purged", b))
            .transpose()?;

        let mut firsts: Vec<u64> = fs::read_dir(dir)
            .map_err(io_err("list", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        // Step 9: a spare left by an earlier run may be half made.
        let mut removed = false;
        for e in fs::read_dir(dir).map_err(io_err("list", dir))?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".spare") {
                let p = e.path();
                fs::remove_file(&p).map_err(io_err("remove stale spare", &p))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir).map_err(io_err("fsync directory", dir))?;
        }
        let spare = Arc::new(Mutex::new(Spare::default()));
        // A new member writes its first segment at once: that one is made
        // here; later ones on the spare thread.
        refill(&spare, dir, firsts.is_empty());
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            spare,
            positions: VecDeque::new(),
            first: purged.map_or(0, |p| p.index + 1),
            last: purged,
            cache: VecDeque::new(),
            cache_bytes: 0,
            segments: Vec::new(),
            purged,
            vote,
        };
        let purged_index = purged.map(|l| l.index);
        for (i, first) in firsts.iter().enumerate() {
            let path = dir.join(format!("{first:020}.wal"));
            let bytes = read_file(&path)?;
            let (records, valid, broken) = parse_segment(&bytes);
            let last = i + 1 == firsts.len();
            if let Some(why) = broken {
                let cut = if last {
                    torn_tail(&bytes, valid as usize)
                } else {
                    Err("not in the newest segment".to_string())
                };
                if let Err(more) = cut {
                    return Err(LogError::Corrupt {
                        path,
                        offset: valid,
                        why: format!("{why}; {more}"),
                    });
                }
                // Step 5: an unfinished write at the tail is cut off.
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err("open", &path))?;
                f.set_len(valid)
                    .map_err(io_err("truncate torn tail", &path))?;
                f.sync_all().map_err(io_err("fsync", &path))?;
            }
            for (offset, len, e) in records {
                let index = e.log_id.index;
                if purged_index.is_some_and(|p| index <= p) {
                    continue;
                }
                let expected = if inner.positions.is_empty() {
                    purged_index.map(|p| p + 1)
                } else {
                    inner.last.map(|l| l.index + 1)
                };
                if expected.is_some_and(|x| x != index) {
                    return Err(LogError::Hole {
                        path,
                        found: index,
                        expected_before: expected.unwrap_or(0),
                    });
                }
                inner.push(
                    e,
                    Pos {
                        segment: *first,
                        offset,
                        len,
                    },
                );
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            let reader = File::open(&path).map_err(io_err("open", &path))?;
            inner.segments.push(Segment {
                first: *first,
                path,
                file: Arc::new(file),
                reader,
                len: valid,
            });
        }
        let (tx, rx) = mpsc::channel();
        let (count, flushes) = tokio::sync::watch::channel(0);
        let crash = CrashPoint::from_env();
        std::thread::Builder::new()
            .name("kv-log-flush".into())
            .spawn(move || flusher(rx, count, crash))
            .map_err(io_err("start flusher thread", dir))?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            flusher: tx,
            flushes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic in another thread while holding it;
        // the data (plain collections) is still consistent for reading.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries in the log (for status).
    pub fn len(&self) -> usize {
        self.lock().positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this member has never stored anything (no vote, no entry, no
    /// purge point): the first start of a member.
    pub fn is_pristine(&self) -> bool {
        let i = self.lock();
        i.vote.is_none() && i.positions.is_empty() && i.purged.is_none()
    }

    /// A member that was the leader when it stopped comes back as a
    /// follower: its vote is kept but no longer counts as granted.
    ///
    /// openraft would otherwise resume leadership at once, in the same term,
    /// without knowing how far the log was committed (the commit index is
    /// not stored). Its read index (the larger of its term's first entry and
    /// what it knows to be committed) would then lag writes it acknowledged
    /// before it stopped, and a read could miss them: `make soak` found such
    /// stale reads after a leader was killed and restarted before the others
    /// elected a new one. As a follower it waits for the next election,
    /// whose leader commits an entry of its own term before it answers a
    /// read index. The vote on disk is left as it is.
    pub fn forget_leadership(&self, id: crate::types::NodeId) {
        let mut i = self.lock();
        if let Some(v) = i.vote.as_mut() {
            if v.committed && v.leader_id.voted_for() == Some(id) {
                v.committed = false;
            }
        }
    }

    /// Counts completed fsyncs: the batcher proposes the next batch once the
    /// previous one is on disk.
    pub fn flushes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.flushes.clone()
    }

    async fn barrier(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.flusher.send(Flush::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Step 7: where a fault test asks the process to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    Never,
    BeforeFsync(u64),
    AfterFsync(u64),
}

impl CrashPoint {
    pub fn parse(v: &str) -> Option<CrashPoint> {
        let (when, n) = v.split_once(':')?;
        let n = n.parse().ok()?;
        match when {
            "before" => Some(CrashPoint::BeforeFsync(n)),
            "after" => Some(CrashPoint::AfterFsync(n)),
            _ => None,
        }
    }

    /// `KEEL_ETCD_CRASH_FSYNC` (the soak's fsync crashes), read only in a
    /// build with the `fault-injection` feature: a production keel-etcd,
    /// and PID 1 whose environment comes from the kernel command line,
    /// never read it.
    fn from_env() -> CrashPoint {
        #[cfg(feature = "fault-injection")]
        {
            std::env::var("KEEL_ETCD_CRASH_FSYNC")
                .ok()
                .and_then(|v| CrashPoint::parse(&v))
                .unwrap_or(CrashPoint::Never)
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            CrashPoint::Never
        }
    }
}

/// Step 2: one fdatasync per batch of queued appends.
fn flusher(rx: mpsc::Receiver<Flush>, count: tokio::sync::watch::Sender<u64>, crash: CrashPoint) {
    let mut n = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut synced: Vec<*const File> = Vec::new();
        let mut result: Result<(), String> = Ok(());
        for f in &batch {
            if let Flush::Entries(file, _) = f {
                let p = Arc::as_ptr(file);
                if !synced.contains(&p) {
                    synced.push(p);
                    n += 1;
                    if crash == CrashPoint::BeforeFsync(n) {
                        eprintln!("keel-etcd: crashing before fsync {n} (KEEL_ETCD_CRASH_FSYNC)");
                        std::process::abort();
                    }
                    let r = file.sync_data();
                    if crash == CrashPoint::AfterFsync(n) {
                        eprintln!("keel-etcd: crashing after fsync {n} (KEEL_ETCD_CRASH_FSYNC)");
                        std::process::abort();
                    }
                    if let Err(e) = r {
                        result = Err(e.to_string());
                    }
                }
            }
        }
        for f in batch {
            match f {
                Flush::Entries(_, cb) => {
                    cb.log_io_completed(result.clone().map_err(io::Error::other));
                }
                Flush::Barrier(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        count.send_modify(|c| *c += 1);
    }
}

impl Inner {
    fn index_of(&self, index: u64) -> Option<usize> {
        let i = index.checked_sub(self.first)? as usize;
        (i < self.positions.len()).then_some(i)
    }

    /// Appends an entry already written at `pos`, caching it (step 4).
    fn push(&mut self, e: Entry, pos: Pos) {
        if self.positions.is_empty() {
            self.first = e.log_id.index;
        }
        self.positions.push_back(pos);
        self.last = Some(e.log_id);
        let size = pos.len as usize + 8;
        self.cache.push_back((e, size));
        self.cache_bytes += size;
        while self.cache_bytes > CACHE_BYTES && self.cache.len() > 1 {
            if let Some((_, s)) = self.cache.pop_front() {
                self.cache_bytes -= s;
            }
        }
    }

    /// The index of the oldest cached entry.
    fn cache_first(&self) -> u64 {
        self.cache.front().map_or(u64::MAX, |(e, _)| e.log_id.index)
    }

    /// Entry `index`, from the cache or its segment.
    fn get(&self, index: u64) -> io::Result<Entry> {
        let cf = self.cache_first();
        if index >= cf {
            if let Some((e, _)) = self.cache.get((index - cf) as usize) {
                return Ok(e.clone());
            }
        }
        let pos = self
            .index_of(index)
            .map(|i| self.positions[i])
            .ok_or_else(|| io::Error::other(format!("entry {index} is not in the log")))?;
        let seg = self
            .segments
            .iter()
            .find(|s| s.first == pos.segment)
            .ok_or_else(|| io::Error::other(format!("segment of entry {index} is gone")))?;
        let mut buf = vec![0u8; pos.len as usize + 8];
        std::os::unix::fs::FileExt::read_exact_at(&seg.reader, &mut buf, pos.offset)?;
        let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
        if crc32fast::hash(&buf[8..]) != crc {
            return Err(io::Error::other(format!(
                "entry {index} in {}: checksum mismatch",
                seg.path.display()
            )));
        }
        decode(&buf[8..]).map_err(io::Error::other)
    }

    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        if let Some(last) = self.segments.last() {
            last.file.sync_all()?;
        }
        let path = self.dir.join(format!("{first:020}.wal"));
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("new segment {}: already exists", path.display()),
            ));
        }
        // Step 9: the spare when one is ready, else an empty file.
        let spare = lock_spare(&self.spare).ready.take();
        let file = match spare {
            Some(spare) => {
                fs::rename(&spare, &path)?;
                OpenOptions::new().write(true).open(&path)?
            }
            None => private_file(&path, true)?,
        };
        let reader = File::open(&path)?;
        sync_dir(&self.dir)?;
        refill(&self.spare, &self.dir, false);
        self.segments.push(Segment {
            first,
            path,
            file: Arc::new(file),
            reader,
            len: 0,
        });
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let i = self.lock();
        let Some(last) = i.last.filter(|_| !i.positions.is_empty()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => i.first,
        }
        .max(i.first);
        let end = match range.end_bound() {
            Bound::Included(e) => e + 1,
            Bound::Excluded(e) => *e,
            Bound::Unbounded => last.index + 1,
        }
        .min(last.index + 1);
        let mut out = Vec::with_capacity((end.saturating_sub(start)) as usize);
        for index in start..end {
            out.push(i.get(index).map_err(|e| {
                StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
            })?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let i = self.lock();
        Ok(LogState {
            last_purged_log_id: i.purged,
            last_log_id: i.last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut i = self.lock();
        let bytes = serde_json::to_vec(vote)
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        write_atomic(&i.dir, "vote", &bytes)
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        i.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut i = self.lock();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let werr =
            |e: io::Error| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, e);
        let mut buf = Vec::with_capacity(entries.len() * 256);
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            let start = buf.len();
            encode(e, &mut buf).map_err(|e| werr(io::Error::other(e)))?;
            offsets.push((start as u64, (buf.len() - start - 8) as u32));
        }
        // A batch that would overflow the (preallocated) segment starts the
        // next one; an empty segment takes any batch.
        if i.segments
            .last()
            .is_none_or(|s| s.len > 0 && s.len + buf.len() as u64 > SEGMENT_BYTES)
        {
            i.new_segment(first).map_err(werr)?;
        }
        let seg = i
            .segments
            .last_mut()
            .ok_or_else(|| werr(io::Error::other("no segment")))?;
        seg.file.write_all_at(&buf, seg.len).map_err(werr)?;
        let base = seg.len;
        seg.len += buf.len() as u64;
        let (segment, file) = (seg.first, seg.file.clone());
        for (e, (off, len)) in entries.into_iter().zip(offsets) {
            i.push(
                e,
                Pos {
                    segment,
                    offset: base + off,
                    len,
                },
            );
        }
        drop(i);
        self.flusher
            .send(Flush::Entries(file, callback))
            .map_err(|_| werr(io::Error::other("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.barrier().await;
        let mut i = self.lock();
        let Some(at) = i.index_of(log_id.index) else {
            return Ok(());
        };
        let pos = i.positions[at];
        let werr =
            |e: io::Error| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
        let mut removed = false;
        while i.segments.last().is_some_and(|s| s.first > pos.segment) {
            if let Some(s) = i.segments.pop() {
                fs::remove_file(&s.path).map_err(werr)?;
                removed = true;
            }
        }
        if removed {
            // Step 5: a removed segment must not come back after a crash
            // with the entries this truncation cut.
            sync_dir(&i.dir).map_err(werr)?;
        }
        if let Some(s) = i.segments.last_mut() {
            s.file.set_len(pos.offset).map_err(werr)?;
            s.file.sync_all().map_err(werr)?;
            s.len = pos.offset;
        }
        i.positions.truncate(at);
        while i
            .cache
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= log_id.index)
        {
            if let Some((_, s)) = i.cache.pop_back() {
                i.cache_bytes -= s;
            }
        }
        i.last = match log_id.index.checked_sub(1).filter(|_| at > 0) {
            Some(prev) => Some(i.get(prev).map_err(werr)?.log_id),
            None => i.purged,
        };
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut i = self.lock();
        let werr =
            |e: io::Error| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
        let bytes = serde_json::to_vec(&log_id)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        write_atomic(&i.dir, "purged", &bytes).map_err(werr)?;
        i.purged = Some(log_id);
        while !i.positions.is_empty() && i.first <= log_id.index {
            i.positions.pop_front();
            i.first += 1;
        }
        if i.positions.is_empty() {
            i.first = log_id.index + 1;
        }
        while i
            .cache
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= log_id.index)
        {
            if let Some((_, s)) = i.cache.pop_front() {
                i.cache_bytes -= s;
            }
        }
        if i.last.is_none_or(|l| l.index < log_id.index) {
            i.last = Some(log_id);
        }
        // A segment goes when the next one starts at or before the first
        // entry still needed; the newest segment always stays.
        let mut removed = false;
        while i.segments.len() > 1 && i.segments[1].first <= log_id.index + 1 {
            let s = i.segments.remove(0);
            fs::remove_file(&s.path).map_err(werr)?;
            removed = true;
        }
        if removed {
            // Step 5: the removals are durable before anything relies on
            // them.
            sync_dir(&i.dir).map_err(werr)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn a_production_build_never_reads_the_crash_hook() {
        std::env::set_var("KEEL_ETCD_CRASH_FSYNC", "before:1");
        assert_eq!(CrashPoint::from_env(), CrashPoint::Never);
        std::env::remove_var("KEEL_ETCD_CRASH_FSYNC");
    }
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    #[test]
    fn a_spare_is_a_synced_segment_of_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spare");
        fill_spare(&path).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, SEGMENT_BYTES);
        assert!(data.iter().all(|b| *b == 0));
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// A segment path in a new directory, and three records for it.
    fn three_records() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("00000000000000000001.wal");
        let mut buf = Vec::new();
        for i in 1..=3 {
            encode(&entry(i, 1), &mut buf).unwrap();
        }
        (d, path, buf)
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let (_d, path, mut buf) = three_records();
        let whole = buf.len();
        buf.extend_from_slice(&[9, 0, 0]);
        fs::write(&path, &buf).unwrap();
        let (records, valid, broken) = read_segment(&path).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(valid as usize, whole);
        assert_eq!(broken.as_deref(), Some("short header"));
        // A flipped byte in the payload is caught by the checksum.
        buf.truncate(whole);
        buf[10] ^= 1;
        fs::write(&path, &buf).unwrap();
        let (records, _, broken) = read_segment(&path).unwrap();
        assert_eq!(records.len(), 0);
        assert_eq!(broken.as_deref(), Some("checksum mismatch"));
    }

    fn big(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(crate::types::Request::Set {
                key: format!("/k{index}"),
                opts: keel_kv::SetOptions {
                    value: "v".repeat(20_000),
                    ..Default::default()
                },
                now: index,
            }),
        }
    }

    /// Entries past the cache come back from disk; truncate, purge and a
    /// reopen keep the log consistent.
    #[tokio::test]
    async fn entries_outlive_the_cache_and_a_reopen() {
        use openraft::storage::RaftLogStorageExt;
        let d = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(d.path()).unwrap();
        log.blocking_append((0..300).map(big)).await.unwrap();
        assert!(log.lock().cache.len() < 300, "the cache is bounded");
        let all = log.try_get_log_entries(0..300).await.unwrap();
        assert_eq!(all.len(), 300);
        assert!(all.iter().enumerate().all(|(i, e)| e == &big(i as u64)));

        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 250))
            .await
            .unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(249));
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 100))
            .await
            .unwrap();
        log.blocking_append([big(250)]).await.unwrap();
        drop(log);

        let mut log = LogStore::open(d.path()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(100));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(250));
        let rest = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(rest.first().map(|e| e.log_id.index), Some(101));
        assert_eq!(rest.len(), 150);
        assert_eq!(rest[120], big(221));
    }

    /// Records as versions before postcard wrote them (JSON) still read,
    /// next to postcard ones; an unknown format byte is not taken for an
    /// entry.
    #[test]
    fn json_records_of_older_versions_still_read() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("00000000000000000001.wal");
        let record = |payload: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            out.extend_from_slice(payload);
        };
        let mut buf = Vec::new();
        record(&serde_json::to_vec(&big(1)).unwrap(), &mut buf);
        encode(&big(2), &mut buf).unwrap();
        let json_len = serde_json::to_vec(&big(2)).unwrap().len();
        assert!(
            buf.len() - json_len - 8 < json_len,
            "postcard is the smaller"
        );
        let whole = buf.len();
        record(&[7, 1, 2, 3], &mut buf);
        fs::write(&path, &buf).unwrap();
        let (records, valid, broken) = read_segment(&path).unwrap();
        let entries: Vec<Entry> = records.into_iter().map(|r| r.2).collect();
        assert_eq!(entries, vec![big(1), big(2)]);
        assert_eq!(valid as usize, whole);
        assert_eq!(
            broken.as_deref(),
            Some("undecodable entry: unknown record format 7")
        );
    }

    /// The record decoder takes any bytes without a panic: truncations and
    /// flipped bytes of real records, and lengths that claim more than
    /// there is, come back as errors (or as some other valid entry).
    #[test]
    fn mangled_records_are_errors_not_panics() {
        let mut seeds = Vec::new();
        for e in [entry(1, 1), big(2)] {
            let mut b = Vec::new();
            encode(&e, &mut b).unwrap();
            seeds.push(b[8..].to_vec());
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut errors = 0;
        for round in 0..20_000 {
            let mut p = seeds[round % 2].clone();
            match next() % 3 {
                0 => p.truncate((next() % p.len() as u64) as usize),
                1 => {
                    for _ in 0..1 + next() % 4 {
                        let i = (next() % p.len() as u64) as usize;
                        p[i] = next() as u8;
                    }
                }
                _ => {
                    // A huge length prefix where a string's length goes.
                    let i = 1 + (next() % (p.len() as u64 - 1)) as usize;
                    p.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
                }
            }
            if decode(&p).is_err() {
                errors += 1;
            }
        }
        assert!(
            errors > 10_000,
            "most mangled records are refused: {errors}"
        );
    }

    #[test]
    fn zeros_end_the_records_and_anything_after_them_is_torn() {
        let (_d, path, mut buf) = three_records();
        let whole = buf.len();
        buf.resize(whole + 4096, 0);
        fs::write(&path, &buf).unwrap();
        let (records, valid, broken) = read_segment(&path).unwrap();
        assert_eq!((records.len(), valid as usize, broken), (3, whole, None));
        // A record whose header never reached the disk but whose payload
        // did: not a clean end.
        buf[whole + 100] = 7;
        fs::write(&path, &buf).unwrap();
        let (records, valid, broken) = read_segment(&path).unwrap();
        assert_eq!((records.len(), valid as usize), (3, whole));
        assert_eq!(broken.as_deref(), Some("data after the end of the records"));
    }

    /// Step 9: segments are zero-filled files when the disk has room, a
    /// reopen goes on writing where the records end, and a torn tail in the
    /// zeros is cut.
    #[tokio::test]
    async fn preallocated_segments_reopen_where_the_records_end() {
        use openraft::storage::RaftLogStorageExt;
        let d = tempfile::tempdir().unwrap();
        let room = room_for_spare(d.path());
        let mut log = LogStore::open(d.path()).unwrap();
        log.blocking_append((0..10).map(big)).await.unwrap();
        let seg = d.path().join(format!("{:020}.wal", 0));
        let written = log.lock().segments[0].len;
        let size = fs::metadata(&seg).unwrap().len();
        if room {
            assert_eq!(size, SEGMENT_BYTES, "the first segment is preallocated");
        } else {
            assert_eq!(size, written, "no room: the segment is appended to");
        }
        drop(log);

        let mut log = LogStore::open(d.path()).unwrap();
        assert_eq!(log.lock().segments[0].len, written);
        log.blocking_append((10..20).map(big)).await.unwrap();
        drop(log);
        // Garbage in the zeros past the last record: a torn write.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let end = written * 2 + 64;
        f.write_all_at(b"torn", end).unwrap();
        drop(f);

        let mut log = LogStore::open(d.path()).unwrap();
        let all = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(all.len(), 20);
        assert!(all.iter().enumerate().all(|(i, e)| e == &big(i as u64)));
        assert!(
            fs::metadata(&seg).unwrap().len() < end,
            "the torn tail is cut"
        );
        log.blocking_append([big(20)]).await.unwrap();
        assert_eq!(
            log.try_get_log_entries(20..21).await.unwrap(),
            vec![big(20)]
        );
        let spares = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".spare"))
            .count();
        assert!(spares <= 1, "at most one spare at a time");
    }

    /// The log's directory is 0700 (also one an earlier version made 0755)
    /// and its files 0600.
    #[tokio::test]
    async fn the_log_is_private_to_its_member() {
        use openraft::storage::RaftLogStorageExt;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("wal");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let mut log = LogStore::open(&dir).unwrap();
        log.blocking_append((0..3).map(big)).await.unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for e in fs::read_dir(&dir).unwrap().flatten() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }

    #[test]
    fn corruption_before_the_last_segment_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Vec::new();
        encode(&entry(1, 1), &mut a).unwrap();
        a[12] ^= 1;
        fs::write(d.path().join("00000000000000000001.wal"), &a).unwrap();
        let mut b = Vec::new();
        encode(&entry(2, 1), &mut b).unwrap();
        fs::write(d.path().join("00000000000000000002.wal"), &b).unwrap();
        assert!(matches!(
            LogStore::open(d.path()),
            Err(LogError::Corrupt { .. })
        ));
    }

    /// Step 6: a record that valid records follow is corruption, not a
    /// torn write, even in the newest segment: the start is refused with
    /// the file and the offset, and the file is left as it was.
    #[test]
    fn a_corrupt_record_that_valid_ones_follow_refuses_the_start() {
        let (d, path, mut buf) = three_records();
        let mut one = Vec::new();
        encode(&entry(1, 1), &mut one).unwrap();
        let second = one.len();
        buf[second + 9] ^= 0x40; // in the second record's payload
        fs::write(&path, &buf).unwrap();
        let e = LogStore::open(d.path()).err().expect("refused");
        match &e {
            LogError::Corrupt {
                path: p,
                offset,
                why,
            } => {
                assert_eq!((p, *offset), (&path, second as u64));
                assert!(
                    why.contains("checksum mismatch; a valid record follows at byte"),
                    "{why}"
                );
            }
            e => panic!("not Corrupt: {e}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("00000000000000000001.wal")
                && msg.contains(&format!("record at byte {second} is corrupt")),
            "{msg}"
        );
        assert_eq!(fs::read(&path).unwrap(), buf, "nothing was cut");

        // The same with the header gone (zeros where it was): data after
        // the end of the records, and a valid record after that.
        let (d, path, mut buf) = three_records();
        buf[second..second + 8].fill(0);
        fs::write(&path, &buf).unwrap();
        assert!(matches!(
            LogStore::open(d.path()),
            Err(LogError::Corrupt { offset, .. }) if offset == second as u64
        ));
    }

    /// Step 6: a torn tail is cut: a record cut short at the end of the
    /// newest segment, and a write torn at a sector (a zero-filled sector
    /// inside it) even when a later record of the same write landed.
    #[tokio::test]
    async fn a_torn_tail_is_cut() {
        let (d, path, mut buf) = three_records();
        let whole = buf.len();
        let mut fourth = Vec::new();
        encode(&big(4), &mut fourth).unwrap();
        buf.extend_from_slice(&fourth[..fourth.len() / 2]);
        fs::write(&path, &buf).unwrap();
        let mut log = LogStore::open(d.path()).unwrap();
        assert_eq!(log.try_get_log_entries(..).await.unwrap().len(), 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), whole as u64);
        drop(log);

        let (d, path, mut buf) = three_records();
        let whole = buf.len();
        encode(&big(4), &mut buf).unwrap();
        encode(&entry(5, 1), &mut buf).unwrap();
        // A sector of the big record never reached the disk.
        let sector = (whole / SECTOR + 2) * SECTOR;
        buf[sector..sector + SECTOR].fill(0);
        fs::write(&path, &buf).unwrap();
        let mut log = LogStore::open(d.path()).unwrap();
        let all = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(all, (1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&path).unwrap().len(), whole as u64);
    }

    /// Step 5: purge and truncate remove segments (and sync the directory):
    /// what is left reopens the same.
    #[tokio::test]
    async fn removed_segments_stay_removed() {
        use openraft::storage::RaftLogStorageExt;
        let d = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(d.path()).unwrap();
        // 20 KB entries in batches of 50: a segment holds about 200.
        for b in 0..14 {
            log.blocking_append((b * 50..(b + 1) * 50).map(big))
                .await
                .unwrap();
        }
        let wals = || {
            fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                .count()
        };
        let before = wals();
        assert!(before >= 3, "{before} segments");
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 450))
            .await
            .unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 600))
            .await
            .unwrap();
        let after = wals();
        assert!(after < before, "{after} of {before} segments left");
        drop(log);
        let mut log = LogStore::open(d.path()).unwrap();
        let rest = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(rest.first().map(|e| e.log_id.index), Some(451));
        assert_eq!(rest.last().map(|e| e.log_id.index), Some(599));
    }
}
