//! The images are reproducible: the real image tool, run twice on the real
//! specs, gives the same bytes (initramfs, root image, slot, disk); the real
//! zstd and cpio read the initramfs back, and veritysetup checks the slot.

use std::process::Command;

use keel_vmtests::{build_dir, keel_image, release_bin, root, Scratch};

fn build(out: &std::path::Path, epoch: &str) {
    let r = root();
    let rel = release_bin("");
    let st = Command::new(release_bin("keel-image"))
        .arg("initramfs")
        .args(["--spec", "initramfs/keel.list", "--out"])
        .arg(out)
        .arg(format!("--var=SRC={}", r.display()))
        .arg(format!("--var=KEEL_BIN={}", rel.join("keel").display()))
        .arg(format!(
            "--var=PUBKEY={}",
            r.join("keys/keel-dev.pub").display()
        ))
        .arg(format!(
            "--var=BUILD_ID_FILE={}",
            build_dir().join("build-id").display()
        ))
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
        "sysroot",
        "etc/keel/keys/keel-dev.pub",
        "etc/keel/build-id",
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

fn same_bytes(a: &std::path::Path, b: &std::path::Path, what: &str) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(x == y, "two builds of the same {what} differ");
}

#[test]
fn root_image_slot_and_disk_are_reproducible_and_veritysetup_checks_the_slot() {
    let s = Scratch::new("repro-images");
    let b = build_dir();
    let r = root();
    let vars = [
        format!("--var=SRC={}", r.display()),
        format!("--var=BUILD_ID_FILE={}", b.join("build-id").display()),
        "--var=CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt".to_string(),
        format!("--var=BUSYBOX_OCI={}", b.join("busybox-oci").display()),
        format!(
            "--var=INIT_BIN={}",
            keel_vmtests::release_bin("keel-init").display()
        ),
    ];
    let build_id = std::fs::read_to_string(b.join("build-id")).unwrap();
    let key = r.join("keys/keel-dev.key");
    for i in ["1", "2"] {
        let erofs = s.path(&format!("root{i}.erofs"));
        let mut args: Vec<String> = vec![
            "rootfs".into(),
            "--spec".into(),
            "initramfs/root.list".into(),
        ];
        args.extend(vars.iter().cloned());
        args.extend(["--out".into(), erofs.to_string_lossy().into_owned()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        keel_image(&argv);
        let slot = s.path(&format!("slot{i}.img"));
        keel_image(&[
            "slot",
            "--root",
            &erofs.to_string_lossy(),
            "--kernel",
            &b.join("kernel/bzImage").to_string_lossy(),
            "--initramfs",
            &b.join("initramfs-disk.cpio.zst").to_string_lossy(),
            "--key",
            &key.to_string_lossy(),
            "--version",
            "0.1.0",
            "--build-id",
            build_id.trim(),
            "--size-mib",
            "20",
            "--out",
            &slot.to_string_lossy(),
        ]);
        let state = s.path("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("README"), "keel state\n").unwrap();
        keel_image(&[
            "disk",
            "--efi-kernel",
            &b.join("kernel/bzImage-efi").to_string_lossy(),
            "--slot-a",
            &slot.to_string_lossy(),
            "--slot-b",
            &slot.to_string_lossy(),
            "--state-dir",
            &state.to_string_lossy(),
            "--build-id",
            build_id.trim(),
            "--out",
            &s.path(&format!("disk{i}.img")).to_string_lossy(),
        ]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    same_bytes(&s.path("root1.erofs"), &s.path("root2.erofs"), "root image");
    same_bytes(&s.path("slot1.img"), &s.path("slot2.img"), "slot");
    same_bytes(&s.path("disk1.img"), &s.path("disk2.img"), "disk image");

    // veritysetup, the reference implementation, accepts the slot's tree.
    let slot = std::fs::read(s.path("slot1.img")).unwrap();
    let at = slot.len() - 64 * 1024;
    let len = u32::from_le_bytes(slot[at + 8..at + 12].try_into().unwrap()) as usize;
    let m: serde_json::Value = serde_json::from_slice(&slot[at + 108..at + 108 + len]).unwrap();
    let out = Command::new("veritysetup")
        .arg("verify")
        .arg(format!("--hash-offset={}", m["verity"]["hash"]["offset"]))
        .arg(s.path("slot1.img"))
        .arg(s.path("slot1.img"))
        .arg(m["verity"]["root_hash"].as_str().unwrap())
        .output()
        .expect("veritysetup (make deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // fsck of STATE inside the disk image: ext4 made right.
    let g = std::fs::File::open(s.path("disk1.img")).unwrap();
    let sectors = g.metadata().unwrap().len() / 512;
    let gpt = keel_slot::gpt::Gpt::read(&g, sectors).unwrap();
    let (_, st) = gpt.partitions().find(|(_, e)| e.name == "STATE").unwrap();
    let img = std::fs::read(s.path("disk1.img")).unwrap();
    let part = &img[(st.first_lba * 512) as usize..((st.last_lba + 1) * 512) as usize];
    std::fs::write(s.path("state.ext4"), part).unwrap();
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(s.path("state.ext4"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
