//! Where keel's bytes go: the keel binary per crate (cargo bloat's JSON),
//! the initramfs per entry (its newc cpio archive), and the budgets each
//! figure is shown against (`make bench`, keel-size-bench).

use std::collections::BTreeMap;

/// The keel binary as shipped (stripped static-pie), bytes.
pub const KEEL_BUDGET: u64 = 4_000_000;
/// build/initramfs.cpio.zst (`make run`'s diskless initramfs, with the root
/// slot), bytes.
pub const INITRAMFS_BUDGET: u64 = 2_500_000;
/// The kernel and that initramfs together, bytes.
pub const KERNEL_AND_INITRAMFS_BUDGET: u64 = 5_500_000;
/// The smallest guest RAM, in MB, in which the demo node boots and its web
/// container becomes healthy.
pub const MIN_MEM_BUDGET_MB: u32 = 48;

/// A figure against its budget, in words: `within budget (N left)` or
/// `OVER budget by N`.
pub fn against(value: u64, budget: u64) -> String {
    if value <= budget {
        format!("<= {budget}: within ({} left)", budget - value)
    } else {
        format!("<= {budget}: OVER by {}", value - budget)
    }
}

/// One file of a newc cpio archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// The entries of a newc ("070701") archive up to its trailer; an error
/// names the offset where the archive stopped making sense.
pub fn cpio_entries(mut a: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let pad = |n: usize| (4 - n % 4) % 4;
    loop {
        if a.len() < 110 || &a[..6] != b"070701" {
            return Err(format!("offset {off}: not a newc header"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i])
                .map_err(|_| format!("offset {off}: header field {i} is not text"))?;
            u32::from_str_radix(s, 16).map_err(|_| format!("offset {off}: header field {i} {s:?}"))
        };
        let mode = field(1)?;
        let size = field(6)? as usize;
        let namesize = field(11)? as usize;
        let name_end = 110 + namesize;
        let data_start = name_end + pad(name_end);
        let data_end = data_start + size;
        if namesize == 0 || a.len() < data_end {
            return Err(format!("offset {off}: entry runs past the archive"));
        }
        let name = String::from_utf8_lossy(&a[110..name_end - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(CpioEntry {
            name,
            mode,
            data: a[data_start..data_end].to_vec(),
        });
        let next = data_end + pad(data_end);
        off += next.min(a.len());
        a = &a[next.min(a.len())..];
    }
}

/// `cargo bloat --crates --message-format json`: the binary's file size, its
/// .text size and each crate's share of .text.
#[derive(Debug, Clone, PartialEq)]
pub struct Bloat {
    pub file_size: u64,
    pub text_size: u64,
    pub crates: BTreeMap<String, u64>,
}

pub fn bloat(json: &str) -> Result<Bloat, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("cargo bloat's JSON: {e}"))?;
    let n = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_u64())
            .ok_or_else(|| format!("cargo bloat's JSON has no {k:?}"))
    };
    let mut crates = BTreeMap::new();
    for c in v
        .get("crates")
        .and_then(|c| c.as_array())
        .ok_or("cargo bloat's JSON has no \"crates\"")?
    {
        let name = c.get("name").and_then(|x| x.as_str());
        let size = c.get("size").and_then(|x| x.as_u64());
        match (name, size) {
            (Some(name), Some(size)) => {
                crates.insert(name.to_string(), size);
            }
            _ => {
                return Err(format!(
                    "cargo bloat's JSON: a crate without name or size: {c}"
                ))
            }
        }
    }
    Ok(Bloat {
        file_size: n("file-size")?,
        text_size: n("text-section-size")?,
        crates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |name: &str, mode: u32, data: &[u8]| {
            let head = format!(
                "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                0, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0
            );
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for (n, m, d) in entries {
            push(n, *m, d);
        }
        push("TRAILER!!!", 0, b"");
        out
    }

    #[test]
    fn entries_of_an_archive() {
        let a = newc(&[
            ("init", 0o100755, b"hello"),
            ("keel", 0o40755, b""),
            ("keel/x", 0o100644, b"abcd"),
        ]);
        let e = cpio_entries(&a).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].name.as_str(), e[0].data.as_slice()),
            ("init", &b"hello"[..])
        );
        assert_eq!((e[2].name.as_str(), e[2].data.len()), ("keel/x", 4));
        assert!(
            cpio_entries(&a[..a.len() - 130]).is_err(),
            "cut before the trailer"
        );
        assert!(cpio_entries(b"070707 old format").is_err());
    }

    #[test]
    fn bloat_json() {
        let b = bloat(r#"{"file-size": 100, "text-section-size": 60, "crates": [{"name": "std", "size": 40}, {"name": "keel", "size": 20}]}"#).unwrap();
        assert_eq!((b.file_size, b.text_size, b.crates["keel"]), (100, 60, 20));
        assert!(bloat(r#"{"file-size": 1}"#).is_err());
        assert!(
            bloat(r#"{"file-size": 1, "text-section-size": 1, "crates": [{"name": "x"}]}"#)
                .is_err()
        );
    }

    #[test]
    fn budgets_in_words() {
        assert_eq!(against(90, 100), "<= 100: within (10 left)");
        assert_eq!(against(100, 100), "<= 100: within (0 left)");
        assert_eq!(against(130, 100), "<= 100: OVER by 30");
    }
}
