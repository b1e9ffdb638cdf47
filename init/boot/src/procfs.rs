//! Readers of /proc text: memory, process state, mounts. Each takes the raw
//! text or the proc root as a parameter so tests use fixtures.

use std::path::Path;

/// `MemTotal` and `MemAvailable` of /proc/meminfo, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    pub total_kb: u64,
    pub available_kb: u64,
}

/// A `Key:   N kB` field of /proc/meminfo or /proc/PID/status (`VmRSS`,
/// `VmHWM`, ...), in KiB.
pub fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn meminfo(text: &str) -> MemInfo {
    MemInfo {
        total_kb: kb_field(text, "MemTotal").unwrap_or(0),
        available_kb: kb_field(text, "MemAvailable").unwrap_or(0),
    }
}

/// `VmRSS` of a /proc/PID/status, in KiB.
pub fn rss_kb(status_text: &str) -> u64 {
    kb_field(status_text, "VmRSS").unwrap_or(0)
}

/// User-space processes under `proc_root` (kernel threads are not counted):
/// how many there are, and how many are zombies (exited, not yet reaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessCount {
    pub total: u64,
    pub zombies: u64,
}

/// The fields of a /proc/PID/stat line after `(comm)` (which may itself
/// contain spaces and parentheses): state is index 0, flags index 6.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// The state letter of a /proc/PID/stat line.
pub fn stat_state(stat: &str) -> Option<char> {
    stat_fields(stat)?.first()?.chars().next()
}

/// `PF_KTHREAD` in the flags field: a kernel thread, not a process.
const PF_KTHREAD: u64 = 0x0020_0000;

/// True when a /proc/PID/stat line is a kernel thread's.
pub fn stat_is_kthread(stat: &str) -> bool {
    stat_fields(stat)
        .and_then(|f| f.get(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

pub fn count_processes(proc_root: &Path) -> ProcessCount {
    let mut c = ProcessCount::default();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return c;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit between readdir and read: not an error.
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            if stat_is_kthread(&stat) {
                continue;
            }
            c.total += 1;
            if stat_state(&stat) == Some('Z') {
                c.zombies += 1;
            }
        }
    }
    c
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: String,
    pub fstype: String,
}

/// Parse /proc/self/mounts (octal escapes such as `\040` for space decoded).
pub fn mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(MountEntry {
                source: unescape(f.next()?),
                target: unescape(f.next()?),
                fstype: f.next()?.to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The order to unmount in at shutdown: deepest (latest) first, never `/`.
pub fn unmount_order(mounts_text: &str) -> Vec<MountEntry> {
    let mut v: Vec<MountEntry> = mounts(mounts_text)
        .into_iter()
        .filter(|m| m.target != "/")
        .collect();
    v.reverse();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_rss() {
        let m = meminfo("MemTotal:        60520 kB\nMemFree:  1 kB\nMemAvailable:    41000 kB\n");
        assert_eq!(
            m,
            MemInfo {
                total_kb: 60520,
                available_kb: 41000
            }
        );
        assert_eq!(rss_kb("Name:\tinit\nVmRSS:\t    3120 kB\n"), 3120);
        assert_eq!(rss_kb("Name:\tkthreadd\n"), 0);
    }

    #[test]
    fn stat_state_survives_odd_comm() {
        assert_eq!(stat_state("42 (a) b) Z 1 42"), Some('Z'));
        assert_eq!(stat_state("1 (init) S 0 1"), Some('S'));
        assert_eq!(stat_state("garbage"), None);
        assert!(stat_is_kthread("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0"));
        assert!(!stat_is_kthread("1 (keel) S 0 1 1 0 -1 4194560 0 0"));
    }

    #[test]
    fn counts_zombies_in_a_fixture_proc() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, st, flags) in [
            ("1", "S", 4194560),
            ("2", "S", 2129984),
            ("7", "Z", 4194316),
            ("9", "Z", 4194316),
            ("12", "R", 4194560),
        ] {
            std::fs::create_dir(dir.path().join(pid)).unwrap();
            std::fs::write(
                dir.path().join(pid).join("stat"),
                format!("{pid} (x) {st} 1 1 1 0 -1 {flags} 0"),
            )
            .unwrap();
        }
        std::fs::create_dir(dir.path().join("self")).unwrap();
        assert_eq!(
            count_processes(dir.path()),
            ProcessCount {
                total: 4,
                zombies: 2
            }
        );
    }

    #[test]
    fn unmount_order_is_deepest_first_and_unescaped() {
        let switched = "none / tmpfs rw 0 0\nproc /proc proc rw 0 0\nx /my\\040dir tmpfs rw 0 0\n";
        let order: Vec<String> = unmount_order(switched)
            .into_iter()
            .map(|m| m.target)
            .collect();
        assert_eq!(order, ["/my dir", "/proc"]);
    }
}
