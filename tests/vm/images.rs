//! The initramfs is reproducible: the real image tool, run twice on the real
//! specs, gives the same bytes; the real zstd and cpio read it back.

use std::process::Command;

use keel_vmtests::{release_bin, root};

fn build(out: &std::path::Path, epoch: &str) {
    let r = root();
    let rel = release_bin("");
    let st = Command::new(release_bin("keel-image"))
        .arg("initramfs")
        .args(["--spec", "initramfs/keel.list", "--out"])
        .arg(out)
        .arg(format!("--var=SRC={}", r.display()))
        .arg(format!("--var=KEEL_BIN={}", rel.join("keel").display()))
        .env("SOURCE_DATE_EPOCH", epoch)
        .current_dir(&r)
        .status()
        .expect("run keel-image (built by make images)");
    assert!(st.success());
}

#[test]
fn same_sources_give_the_same_initramfs_bytes() {
    let dir = std::env::temp_dir().join(format!("keel-repro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c) = (
        dir.join("a.cpio.zst"),
        dir.join("b.cpio.zst"),
        dir.join("c.cpio.zst"),
    );
    build(&a, "1700000000");
    build(&b, "1700000000");
    build(&c, "1700000001");
    let (ab, bb, cb) = (
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        std::fs::read(&c).unwrap(),
    );
    assert_eq!(ab, bb, "two builds of the same sources differ");
    assert_ne!(ab, cb, "SOURCE_DATE_EPOCH must reach the archive");

    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {} | cpio -itv --quiet", a.display()))
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not sorted");
    for want in [
        "init",
        "dev/console",
        "proc",
        "etc/os-release",
        "var/lib/keel",
    ] {
        assert!(names.contains(&want), "{want} missing from:\n{listing}");
    }
    assert!(
        listing.lines().all(|l| l.contains("2023")),
        "every entry carries SOURCE_DATE_EPOCH (2023-11-14):\n{listing}"
    );
    assert!(
        listing.contains("crw-------") && listing.contains("5,"),
        "/dev/console is a char device 5,1:\n{listing}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
