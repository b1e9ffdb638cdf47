//! `make bench`: where keel's bytes go, against the size budgets.
//!
//! 1. The keel binary: its size as shipped, its ELF sections, and each
//!    crate's share of its code (`cargo bloat --crates` on the same build
//!    with its symbols kept, the `bloat` profile).
//! 2. The diskless initramfs (`make run`'s): each entry, uncompressed and
//!    compressed on its own at the build's zstd level.
//! 3. The kernel.
//! 4. The smallest guest RAM of 32, 40, 48, 56 and 64 MB in which the demo
//!    node (`make run`'s config, diskless microvm) boots and its web
//!    container becomes healthy.
//!
//! Prints the tables and writes target/bench/size.json. A figure over its
//! budget is printed as such; the benchmark never fails for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keel_vmtests::bench::{size, write_json};
use keel_vmtests::size::{self, against};
use keel_vmtests::{build_dir, root, Variant, Vm, VmConfig};

/// The level `keel-image initramfs` compresses with.
const ZSTD_LEVEL: &str = "-19";
const MEMS_MB: [u32; 5] = [32, 40, 48, 56, 64];

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn zstd(data: &[u8]) -> u64 {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .args([ZSTD_LEVEL, "-q", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run zstd");
    let mut stdin = child.stdin.take().expect("zstd's stdin");
    let owned = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&owned));
    let out = child.wait_with_output().expect("zstd");
    writer.join().expect("zstd writer").expect("feed zstd");
    out.stdout.len() as u64
}

/// `size -A`: each section of the binary with its size.
fn sections(bin: &Path) -> Vec<(String, u64)> {
    let text = String::from_utf8(run(Command::new("size").arg("-A").arg(bin))).expect("size -A");
    let mut v: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let n = w.next()?.parse().ok()?;
            (name.starts_with('.') && n > 0).then(|| (name.to_string(), n))
        })
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v
}

/// The smallest of [`MEMS_MB`] in which the demo node gets healthy, with
/// what each size tried gave.
fn min_mem() -> (Option<u32>, Vec<(u32, String)>) {
    let demo = root().join("initramfs/demo-config.yaml");
    let mut tried = Vec::new();
    for mb in MEMS_MB {
        let mut cfg = VmConfig::new(&format!("size-mem-{mb}"));
        cfg.variant = Variant::Keel;
        cfg.mem = format!("{mb}M");
        cfg.cloud_config(&demo);
        let mut vm = Vm::start(cfg);
        let r = vm.try_wait_for("container web: healthy", Duration::from_secs(120));
        drop(vm);
        match r {
            Ok(t) => {
                tried.push((mb, format!("healthy at {:.0} ms", t.as_secs_f64() * 1e3)));
                return (Some(mb), tried);
            }
            Err(e) => {
                let (why, tail) = e
                    .split_once("; console tail:\n")
                    .unwrap_or((e.as_str(), ""));
                let last = tail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("(nothing on the console)")
                    .trim()
                    .to_string();
                eprintln!("{mb} MB: {why}; last line: {last}");
                tried.push((mb, format!("{why}; console's last line: {last}")));
            }
        }
    }
    (None, tried)
}

fn main() {
    let build = build_dir();
    // As shipped: the release binary without its unwind tables (make binaries).
    let keel_bin = build.join("keel");
    let keel = size(&keel_bin);
    let kernel = size(&build.join("kernel/bzImage"));
    let initrd_path = build.join("initramfs.cpio.zst");
    let initrd = size(&initrd_path);

    // 1. The binary's crates, from the same build with its symbols.
    let json = run(Command::new("cargo").current_dir(root()).args([
        "bloat",
        "--profile",
        "bloat",
        "--locked",
        "-p",
        "keel",
        "--bin",
        "keel",
        "--crates",
        "-n",
        "0",
        "--message-format",
        "json",
    ]));
    let bloat = size::bloat(&String::from_utf8_lossy(&json)).unwrap_or_else(|e| panic!("{e}"));
    let mut crates: Vec<(&String, &u64)> = bloat.crates.iter().collect();
    crates.sort_by_key(|x| std::cmp::Reverse(*x.1));

    println!(
        "keel binary {} bytes (stripped, as shipped): sections",
        keel
    );
    for (name, n) in sections(&keel_bin).iter().take(8) {
        println!("  {name:<24} {n:>10}");
    }
    println!(
        "\nkeel's code (.text {} bytes, cargo bloat --crates; [Unknown] is mostly glibc)",
        bloat.text_size
    );
    let shown = 25;
    for (name, n) in crates.iter().take(shown) {
        println!(
            "  {name:<24} {n:>10}  {:>5.1}%",
            **n as f64 * 100.0 / bloat.text_size as f64
        );
    }
    let rest: u64 = crates.iter().skip(shown).map(|(_, n)| **n).sum();
    println!(
        "  {:<24} {rest:>10}",
        format!("{} more crates", crates.len().saturating_sub(shown))
    );

    // 2. The initramfs, entry by entry.
    let raw = run(Command::new("zstd").arg("-dc").arg(&initrd_path));
    let entries =
        size::cpio_entries(&raw).unwrap_or_else(|e| panic!("{}: {e}", initrd_path.display()));
    println!(
        "\n{} ({initrd} bytes; {} uncompressed): entries, compressed alone at zstd {ZSTD_LEVEL}",
        initrd_path.display(),
        raw.len()
    );
    let mut files = Vec::new();
    for e in entries.iter().filter(|e| e.mode & 0o170000 == 0o100000) {
        let z = zstd(&e.data);
        println!("  {:<28} {:>10} {:>10}", e.name, e.data.len(), z);
        files.push(serde_json::json!({"name": e.name, "bytes": e.data.len(), "zstd_bytes": z}));
    }

    // 4. The smallest machine.
    let (min_mb, tried) = min_mem();

    // 3 and the budgets.
    println!("\nbudgets");
    let line = |what: &str, v: u64, budget: u64| {
        println!("  {what:<32} {v:>10}  {}", against(v, budget));
    };
    line("keel binary (bytes)", keel, size::KEEL_BUDGET);
    line("initramfs.cpio.zst (bytes)", initrd, size::INITRAMFS_BUDGET);
    println!("  {:<32} {kernel:>10}", "kernel bzImage (bytes)");
    line(
        "kernel + initramfs (bytes)",
        kernel + initrd,
        size::KERNEL_AND_INITRAMFS_BUDGET,
    );
    match min_mb {
        Some(mb) => line(
            "demo node's smallest RAM (MB)",
            mb.into(),
            size::MIN_MEM_BUDGET_MB.into(),
        ),
        None => println!(
            "  {:<32} {:>10}  <= {}: OVER (not healthy in any of {MEMS_MB:?} MB)",
            "demo node's smallest RAM (MB)",
            "-",
            size::MIN_MEM_BUDGET_MB
        ),
    }
    for (mb, what) in &tried {
        println!("    {mb} MB: {what}");
    }

    let crates_json: BTreeMap<&String, &u64> = bloat.crates.iter().collect();
    write_json(
        "size.json",
        &serde_json::json!({
            "keel_bytes": keel,
            "initramfs_bytes": initrd,
            "initramfs_uncompressed_bytes": raw.len(),
            "kernel_bytes": kernel,
            "text_bytes": bloat.text_size,
            "crates": crates_json,
            "initramfs_entries": files,
            "min_mem_mb": min_mb,
            "min_mem_tried": tried.iter().map(|(mb, w)| serde_json::json!({"mb": mb, "outcome": w})).collect::<Vec<_>>(),
            "budgets": {
                "keel_bytes": size::KEEL_BUDGET,
                "initramfs_bytes": size::INITRAMFS_BUDGET,
                "kernel_and_initramfs_bytes": size::KERNEL_AND_INITRAMFS_BUDGET,
                "min_mem_mb": size::MIN_MEM_BUDGET_MB,
            },
        }),
    );
}
