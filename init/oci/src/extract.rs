//! Unpacking layers without trusting them.
//!
//! The `tar` crate reads the entries; creating them is done here, because a
//! layer is untrusted input and the rules are keel's:
//!
//! 1. Decompress by media type (tar, tar+gzip, tar+zstd) and read entries.
//!    Count them and their bytes against [`Limits`] before writing any.
//! 2. Clean each path: `.` and empty components dropped; an absolute path
//!    or a `..` component is refused.
//! 3. Walk the parent components under `dest` with `lstat`: a missing one is
//!    created (0755), a directory is fine, a symlink or a file is refused.
//!    Nothing is ever opened through a symlink: files are created with
//!    `O_CREAT|O_EXCL|O_NOFOLLOW`, and whatever is in the way of an entry
//!    (from an earlier entry or layer) is removed first, never followed.
//! 4. Create the entry:
//!    - regular files, directories: contents, owner, mode, mtime;
//!    - symlinks: a relative target must stay inside the layer root when
//!      resolved lexically from the link's directory; an absolute target is
//!      allowed, because the container resolves it inside its own root (and
//!      extraction never follows it);
//!    - hard links: the target is a clean path that exists in the tree
//!      (the layer, or the tree it is applied onto) and is not a directory;
//!    - device nodes are skipped, as rootless runtimes do: keel creates no
//!      device node from an image (a node in a layer directory, a host
//!      path, would be a door to the device), and most images that carry
//!      some (`/dev/null`, `/dev/console` of old base images) run without
//!      them, since a container gets its /dev from keel. Nothing is
//!      created in their place; [`Stats::skipped_devices`] names them, for
//!      the caller to log;
//!    - FIFOs, sparse files and unknown types are refused.
//! 5. Whiteouts, two ways ([`Whiteouts`]):
//!    - `Apply` (layers applied in order onto one tree): `.wh.NAME` removes
//!      NAME as left by lower layers; `.wh..wh..opq` removes everything in
//!      its directory that lower layers left. What this layer itself created
//!      is kept, as the spec says whiteouts only hide lower layers.
//!    - `Overlay` (each layer in its own directory, an overlayfs lower):
//!      `.wh.NAME` becomes a 0/0 character device NAME and the opaque marker
//!      becomes `trusted.overlay.opaque=y` on the directory. Both need
//!      CAP_MKNOD / CAP_SYS_ADMIN, so this mode needs root.
//! 6. Directory modes and mtimes are set last (deepest first does not
//!    matter: setting a child's times does not touch its parent), so a
//!    read-only directory does not block its own entries and creating
//!    children does not bump the recorded mtime.
//!
//! Modes keep the permission and sticky bits; setuid and setgid are
//! dropped. A container image is not trusted to grant privilege: a
//! setuid-root file in a layer directory (a host path) would let any local
//! user or container process that reaches it become root, and keel's
//! containers run with no_new_privs, where those bits do nothing anyway.
//! Owners are applied when running as root; `EPERM`/`EINVAL` (unprivileged,
//! or an unmapped id in a user namespace) leave the extracting user's.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::layout::{open_blob, LayoutError};
use crate::manifest::{Compression, Descriptor};

/// Bits of a tar mode that are kept: permissions and sticky (for /tmp).
const MODE_MASK: u32 = 0o1777;
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sum of the sizes of regular files in one layer.
    pub max_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 8 << 30,
            max_entries: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Remove what whiteouts name (layers applied onto one merged tree).
    Apply,
    /// Write overlayfs whiteouts (each layer its own lower directory; root).
    Overlay,
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Absolute,
    ParentComponent,
    ThroughSymlink(String),
    NotADirectory(String),
    SymlinkEscapes(String),
    EmptyLinkTarget,
    HardlinkEscapes(String),
    HardlinkMissing(String),
    HardlinkToDirectory(String),
    Fifo,
    Unsupported(u8),
    BadWhiteout,
    RootNotDirectory,
    Owner(u64),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Absolute => write!(f, "absolute path"),
            Refusal::ParentComponent => write!(f, "path has a `..` component"),
            Refusal::ThroughSymlink(p) => write!(f, "parent {p:?} is a symlink"),
            Refusal::NotADirectory(p) => write!(f, "parent {p:?} is not a directory"),
            Refusal::SymlinkEscapes(t) => {
                write!(f, "symlink target {t:?} leads outside the layer root")
            }
            Refusal::EmptyLinkTarget => write!(f, "empty link target"),
            Refusal::HardlinkEscapes(t) => {
                write!(f, "hard link target {t:?} is absolute or has `..`")
            }
            Refusal::HardlinkMissing(t) => write!(f, "hard link target {t:?} does not exist"),
            Refusal::HardlinkToDirectory(t) => {
                write!(
                    f,
                    "hard link target {t:?} is a directory or the link itself"
                )
            }
            Refusal::Fifo => write!(f, "FIFOs are not allowed in layers"),
            Refusal::Unsupported(t) => write!(f, "unsupported entry type {:?}", char::from(*t)),
            Refusal::BadWhiteout => write!(f, "whiteout names no file"),
            Refusal::RootNotDirectory => write!(f, "the layer root must be a directory"),
            Refusal::Owner(id) => write!(f, "owner id {id} is over 2^32"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("layer {layer}: entry {entry:?}: {refusal}")]
    Refused {
        layer: String,
        entry: String,
        refusal: Refusal,
    },
    #[error("layer {layer}: entry {entry:?}: {op} {path}: {source}")]
    Io {
        layer: String,
        entry: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("layer {layer}: read archive: {source}")]
    Archive { layer: String, source: io::Error },
    #[error("layer {layer}: media type {media_type:?} is not a layer keel unpacks")]
    MediaType { layer: String, media_type: String },
    #[error("layer {layer}: more than {limit} entries")]
    TooManyEntries { layer: String, limit: u64 },
    #[error("layer {layer}: entry {entry:?}: more than {limit} bytes of files")]
    TooManyBytes {
        layer: String,
        entry: String,
        limit: u64,
    },
    #[error("layer {layer}: entry {entry:?}: overlay whiteouts need root ({op} {path}: {source})")]
    NeedsRoot {
        layer: String,
        entry: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("create {path}: {source}")]
    Dest { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Blob(#[from] LayoutError),
}

/// What one layer held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    /// Device nodes skipped (character and block), all of them counted.
    pub devices: u64,
    /// The paths of the first [`MAX_NAMED_SKIPS`] of them, `/dev/xyz`.
    pub skipped_devices: Vec<String>,
}

/// How many skipped entries [`Stats`] names; the rest are only counted.
pub const MAX_NAMED_SKIPS: usize = 64;

/// A cleaned archive path: its components, none empty, `.` or `..`.
type Rel = Vec<OsString>;

fn clean(raw: &[u8]) -> Result<Rel, Refusal> {
    if raw.first() == Some(&b'/') {
        return Err(Refusal::Absolute);
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Refusal::ParentComponent),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

fn join(dest: &Path, rel: &[OsString]) -> PathBuf {
    let mut p = dest.to_path_buf();
    p.extend(rel);
    p
}

fn show(rel: &[OsString]) -> String {
    rel.iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Does a relative symlink target, read from the directory holding the
/// link (`depth` components below the root), stay under the root?
fn relative_target_stays_inside(target: &[u8], depth: usize) -> bool {
    let mut depth = depth;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if depth == 0 => return false,
            b".." => depth -= 1,
            _ => depth += 1,
        }
    }
    true
}

fn owner(id: u64) -> Result<u32, Refusal> {
    u32::try_from(id).map_err(|_| Refusal::Owner(id))
}

/// The errors that mean "not allowed to set this owner": unprivileged
/// (EPERM), or an id not mapped in this user namespace (EINVAL).
fn is_denied(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EPERM | Errno::EINVAL)
    )
}

fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if is_denied(&e) => Ok(()),
        r => r,
    }
}

fn timespec(mtime: u64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0)
}

/// Set a path's times without following a symlink at the end.
fn set_mtime_nofollow(path: &Path, mtime: u64) -> io::Result<()> {
    let t = timespec(mtime);
    nix::sys::stat::utimensat(
        None,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

struct Extractor<'a> {
    dest: &'a Path,
    layer: &'a str,
    mode: Whiteouts,
    /// Directories under dest known to be real directories (not symlinks);
    /// cleared whenever something is removed, since a path can change kind.
    verified: HashSet<PathBuf>,
    /// Paths this layer created (for `Apply` whiteouts, which spare them).
    created: HashSet<PathBuf>,
    /// Directory entries whose mode and mtime are set at the end.
    dirs: Vec<(PathBuf, u32, u64)>,
    entry: String,
}

impl Extractor<'_> {
    fn refused(&self, refusal: Refusal) -> ExtractError {
        ExtractError::Refused {
            layer: self.layer.to_string(),
            entry: self.entry.clone(),
            refusal,
        }
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExtractError {
        let (layer, entry, path) = (
            self.layer.to_string(),
            self.entry.clone(),
            path.to_path_buf(),
        );
        move |source| ExtractError::Io {
            layer,
            entry,
            op,
            path,
            source,
        }
    }

    /// Check (and with `create`, make) each directory of `rel` under dest;
    /// returns false if one is missing and `create` is off.
    fn parents(&mut self, rel: &[OsString], create: bool) -> Result<bool, ExtractError> {
        let mut cur = self.dest.to_path_buf();
        for (i, c) in rel.iter().enumerate() {
            cur.push(c);
            if self.verified.contains(&cur) {
                continue;
            }
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refused(Refusal::ThroughSymlink(show(&rel[..=i]))))
                }
                Ok(_) => return Err(self.refused(Refusal::NotADirectory(show(&rel[..=i])))),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&cur).map_err(self.io("create directory", &cur))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(self.io("stat", &cur)(e)),
            }
            self.verified.insert(cur.clone());
        }
        Ok(true)
    }

    /// Remove whatever is at `path` (never following it), except a
    /// directory when a directory is wanted. Returns whether one was kept.
    fn clear(&mut self, path: &Path, keep_dir: bool) -> Result<bool, ExtractError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("stat", path)(e)),
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            Ok(m) => {
                self.remove(path, m.is_dir())?;
                Ok(false)
            }
        }
    }

    fn remove(&mut self, path: &Path, dir: bool) -> Result<(), ExtractError> {
        // remove_dir_all does not follow symlinks inside the tree.
        let r = if dir {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        r.map_err(self.io("remove", path))?;
        self.verified.clear();
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        stats: &mut Stats,
        limits: &Limits,
    ) -> Result<(), ExtractError> {
        use tar::EntryType as T;
        let raw = e.path_bytes().into_owned();
        self.entry = String::from_utf8_lossy(&raw).into_owned();
        let ty = e.header().entry_type();
        if ty.is_pax_global_extensions() {
            return Ok(());
        }
        let rel = clean(&raw).map_err(|r| self.refused(r))?;
        let Some(base) = rel.last() else {
            // The layer's root (`./`): the destination already is it.
            return match ty {
                T::Directory => Ok(()),
                _ => Err(self.refused(Refusal::RootNotDirectory)),
            };
        };
        if let Some(name) = base.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            stats.whiteouts += 1;
            return self.whiteout(&rel, name);
        }
        let header = e.header();
        let mode = header.mode().map_err(|s| self.archive_err(s))? & MODE_MASK;
        let uid =
            owner(header.uid().map_err(|s| self.archive_err(s))?).map_err(|r| self.refused(r))?;
        let gid =
            owner(header.gid().map_err(|s| self.archive_err(s))?).map_err(|r| self.refused(r))?;
        let mtime = header.mtime().map_err(|s| self.archive_err(s))?;
        let path = join(self.dest, &rel);
        match ty {
            T::Regular | T::Continuous => {
                stats.bytes = stats.bytes.saturating_add(e.size());
                if stats.bytes > limits.max_bytes {
                    return Err(ExtractError::TooManyBytes {
                        layer: self.layer.to_string(),
                        entry: self.entry.clone(),
                        limit: limits.max_bytes,
                    });
                }
                self.parents(&rel[..rel.len() - 1], true)?;
                self.clear(&path, false)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .mode(0o600)
                    .open(&path)
                    .map_err(self.io("create", &path))?;
                io::copy(e, &mut f).map_err(self.io("write", &path))?;
                // Owner before mode: chown clears setuid/setgid and some
                // filesystems reset the mode on it.
                match std::os::unix::fs::fchown(&f, Some(uid), Some(gid)) {
                    Err(err) if !is_denied(&err) => return Err(self.io("chown", &path)(err)),
                    _ => {}
                }
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(self.io("chmod", &path))?;
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
                f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                    .map_err(self.io("set times", &path))?;
            }
            T::Directory => {
                self.parents(&rel[..rel.len() - 1], true)?;
                if !self.clear(&path, true)? {
                    fs::create_dir(&path).map_err(self.io("create directory", &path))?;
                }
                lchown(&path, uid, gid).map_err(self.io("chown", &path))?;
                self.dirs.push((path.clone(), mode, mtime));
            }
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() {
                    return Err(self.refused(Refusal::EmptyLinkTarget));
                }
                if target[0] != b'/' && !relative_target_stays_inside(&target, rel.len() - 1) {
                    return Err(self.refused(Refusal::SymlinkEscapes(
                        String::from_utf8_lossy(&target).into_owned(),
                    )));
                }
                self.parents(&rel[..rel.len() - 1], true)?;
                self.clear(&path, false)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(self.io("symlink", &path))?;
                lchown(&path, uid, gid).map_err(self.io("chown", &path))?;
                set_mtime_nofollow(&path, mtime).map_err(self.io("set times", &path))?;
            }
            T::Link => {
                let raw_target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let shown = String::from_utf8_lossy(&raw_target).into_owned();
                let target = clean(&raw_target)
                    .map_err(|_| self.refused(Refusal::HardlinkEscapes(shown.clone())))?;
                if target.is_empty() || target == rel {
                    return Err(self.refused(Refusal::HardlinkToDirectory(shown)));
                }
                if !self.parents(&target[..target.len() - 1], false)? {
                    return Err(self.refused(Refusal::HardlinkMissing(shown)));
                }
                let target_path = join(self.dest, &target);
                match fs::symlink_metadata(&target_path) {
                    Ok(m) if m.is_dir() => {
                        return Err(self.refused(Refusal::HardlinkToDirectory(shown)))
                    }
                    Ok(_) => {}
                    Err(_) => return Err(self.refused(Refusal::HardlinkMissing(shown))),
                }
                self.parents(&rel[..rel.len() - 1], true)?;
                self.clear(&path, false)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is
                // linked itself, not what it points at.
                fs::hard_link(&target_path, &path).map_err(self.io("link", &path))?;
            }
            T::Char | T::Block => {
                stats.devices += 1;
                if stats.skipped_devices.len() < MAX_NAMED_SKIPS {
                    stats.skipped_devices.push(format!("/{}", show(&rel)));
                }
                return Ok(());
            }
            T::Fifo => return Err(self.refused(Refusal::Fifo)),
            other => return Err(self.refused(Refusal::Unsupported(other.as_byte()))),
        }
        if self.mode == Whiteouts::Apply {
            self.created.insert(path);
        }
        Ok(())
    }

    fn archive_err(&self, source: io::Error) -> ExtractError {
        ExtractError::Archive {
            layer: format!("{} (entry {:?})", self.layer, self.entry),
            source,
        }
    }

    fn whiteout(&mut self, rel: &[OsString], name: &[u8]) -> Result<(), ExtractError> {
        let dir = &rel[..rel.len() - 1];
        if rel.last().is_some_and(|b| b == OPAQUE) {
            return match self.mode {
                Whiteouts::Apply => {
                    // The marker says its directory exists in this layer.
                    self.parents(dir, true)?;
                    self.clear_lower(&join(self.dest, dir))
                }
                Whiteouts::Overlay => {
                    self.parents(dir, true)?;
                    let at = join(self.dest, dir);
                    xattr::set(&at, "trusted.overlay.opaque", b"y").map_err(|source| {
                        self.overlay_err("set trusted.overlay.opaque on", &at, source)
                    })
                }
            };
        }
        // Other `.wh..wh.` names are aufs bookkeeping (hard link dirs), not
        // whiteouts of a file.
        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Ok(());
        }
        if matches!(name, b"" | b"." | b"..") {
            return Err(self.refused(Refusal::BadWhiteout));
        }
        let mut target: Rel = dir.to_vec();
        target.push(OsStr::from_bytes(name).to_os_string());
        let path = join(self.dest, &target);
        match self.mode {
            Whiteouts::Apply => {
                if !self.parents(dir, false)? || self.created.contains(&path) {
                    return Ok(());
                }
                match fs::symlink_metadata(&path) {
                    Ok(m) => self.remove(&path, m.is_dir()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io("stat", &path)(e)),
                }
            }
            Whiteouts::Overlay => {
                self.parents(dir, true)?;
                self.clear(&path, false)?;
                use nix::sys::stat::{mknod, Mode, SFlag};
                mknod(&path, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| self.overlay_err("mknod", &path, e.into()))
            }
        }
    }

    fn overlay_err(&self, op: &'static str, path: &Path, source: io::Error) -> ExtractError {
        if is_denied(&source) {
            ExtractError::NeedsRoot {
                layer: self.layer.to_string(),
                entry: self.entry.clone(),
                op,
                path: path.to_path_buf(),
                source,
            }
        } else {
            self.io(op, path)(source)
        }
    }

    /// Remove what lower layers left in `dir`, keeping this layer's entries
    /// (and recursing into directories this layer re-declared).
    fn clear_lower(&mut self, dir: &Path) -> Result<(), ExtractError> {
        let rd = fs::read_dir(dir).map_err(self.io("read directory", dir))?;
        for child in rd {
            let child = child.map_err(self.io("read directory", dir))?;
            let path = child.path();
            let is_dir = child.file_type().map_err(self.io("stat", &path))?.is_dir();
            if !self.created.contains(&path) {
                self.remove(&path, is_dir)?;
            } else if is_dir {
                self.clear_lower(&path)?;
            }
        }
        Ok(())
    }
}

/// Unpack one layer blob of `media_type` into `dest` (created if missing).
/// `layer` names the layer (its digest) in errors.
pub fn extract_layer(
    blob: impl Read,
    media_type: &str,
    dest: &Path,
    layer: &str,
    whiteouts: Whiteouts,
    limits: &Limits,
) -> Result<Stats, ExtractError> {
    let reader: Box<dyn Read + '_> = match Compression::of_layer(media_type) {
        Some(Compression::None) => Box::new(blob),
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        Some(Compression::Zstd) => {
            Box::new(zstd::stream::read::Decoder::new(blob).map_err(|source| {
                ExtractError::Archive {
                    layer: layer.to_string(),
                    source,
                }
            })?)
        }
        None => {
            return Err(ExtractError::MediaType {
                layer: layer.to_string(),
                media_type: media_type.to_string(),
            })
        }
    };
    fs::create_dir_all(dest).map_err(|source| ExtractError::Dest {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut x = Extractor {
        dest,
        layer,
        mode: whiteouts,
        verified: HashSet::new(),
        created: HashSet::new(),
        dirs: Vec::new(),
        entry: String::new(),
    };
    let mut stats = Stats::default();
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|source| ExtractError::Archive {
        layer: layer.to_string(),
        source,
    })?;
    for e in entries {
        let mut e = e.map_err(|source| ExtractError::Archive {
            layer: layer.to_string(),
            source,
        })?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                layer: layer.to_string(),
                limit: limits.max_entries,
            });
        }
        x.entry(&mut e, &mut stats, limits)?;
    }
    x.entry = String::new();
    for (path, mode, mtime) in std::mem::take(&mut x.dirs).into_iter().rev() {
        // A later entry may have replaced the directory with a symlink;
        // chmod follows symlinks, so only a directory still there is touched.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            _ => continue,
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(x.io("chmod", &path))?;
        set_mtime_nofollow(&path, mtime).map_err(x.io("set times", &path))?;
    }
    Ok(stats)
}

/// Apply `layers` (blobs under `root`, verified first) in order onto `dest`.
pub fn apply_layers(
    root: &Path,
    layers: &[Descriptor],
    dest: &Path,
    limits: &Limits,
) -> Result<Stats, ExtractError> {
    let mut total = Stats::default();
    for d in layers {
        let blob = open_blob(root, d)?;
        let s = extract_layer(
            blob,
            &d.media_type,
            dest,
            &d.digest,
            Whiteouts::Apply,
            limits,
        )?;
        total.entries += s.entries;
        total.bytes += s.bytes;
        total.whiteouts += s.whiteouts;
        total.devices += s.devices;
        for d in s.skipped_devices {
            if total.skipped_devices.len() < MAX_NAMED_SKIPS {
                total.skipped_devices.push(d);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
