use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;
use crate::manifest::{OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::testutil::{is_root, snapshot};
use crate::writer::{layer_tar, EntryKind, Layer, LayerEntry as E};

fn tar(entries: &[E]) -> Vec<u8> {
    layer_tar(entries).unwrap()
}

fn apply(entries: &[E], dest: &Path) -> Result<Stats, ExtractError> {
    extract_layer(
        &tar(entries)[..],
        OCI_LAYER_TAR,
        dest,
        "sha256:test",
        Whiteouts::Apply,
        &Limits::default(),
    )
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn round_trip_keeps_kinds_modes_times_and_links() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("root");
    let entries = [
        E::dir("./"),
        E::dir("etc").with_mtime(1_000_000),
        E::file("etc/passwd", b"root:x:0:0::/:/bin/sh\n").with_mtime(1_700_000_000),
        E::file("bin/busybox", b"\x7fELF").with_mode(0o4755),
        E::symlink("bin/sh", "busybox").with_mtime(1_600_000_000),
        E::symlink("bin/abs", "/etc/passwd"),
        E::hardlink("bin/ls", "bin/busybox"),
        E::dir("tmp").with_mode(0o1777),
        E::dir("ro").with_mode(0o555),
        E::file("ro/inside", b"x"),
        E::file("owned", b"o").with_owner(1000, 1001),
        E::file(&format!("long/{}", "n".repeat(150)), b"long name"),
    ];
    let s = apply(&entries, &dest).unwrap();
    assert_eq!(s.entries, entries.len() as u64);
    assert_eq!(
        fs::read(dest.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/:/bin/sh\n"
    );
    let passwd = fs::metadata(dest.join("etc/passwd")).unwrap();
    assert_eq!(passwd.mtime(), 1_700_000_000);
    assert_eq!(passwd.mode() & 0o7777, 0o644);
    assert_eq!(fs::metadata(dest.join("etc")).unwrap().mtime(), 1_000_000);
    // setuid is dropped, the rest kept.
    assert_eq!(mode(&dest.join("bin/busybox")), 0o755);
    assert_eq!(mode(&dest.join("tmp")), 0o1777);
    assert_eq!(mode(&dest.join("ro")), 0o555);
    assert_eq!(
        fs::read_link(dest.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::symlink_metadata(dest.join("bin/sh")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::read_link(dest.join("bin/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::metadata(dest.join("bin/ls")).unwrap().ino(),
        fs::metadata(dest.join("bin/busybox")).unwrap().ino()
    );
    assert_eq!(
        fs::read(dest.join(format!("long/{}", "n".repeat(150)))).unwrap(),
        b"long name"
    );
    if is_root() {
        let m = fs::metadata(dest.join("owned")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
    }
}

#[test]
fn gzip_and_zstd_layers_unpack_alike() {
    let entries = [E::dir("a"), E::file("a/f", b"data")];
    let raw = tar(&entries);
    for l in [
        Layer::tar_gzip(&raw).unwrap(),
        Layer::tar_zstd(&raw).unwrap(),
        Layer::tar(raw.clone()),
    ] {
        let t = tempfile::tempdir().unwrap();
        extract_layer(
            &l.blob[..],
            &l.media_type,
            t.path(),
            "l",
            Whiteouts::Apply,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            fs::read(t.path().join("a/f")).unwrap(),
            b"data",
            "{}",
            l.media_type
        );
    }
    assert!([OCI_LAYER_GZIP, OCI_LAYER_ZSTD]
        .iter()
        .all(|m| Compression::of_layer(m).is_some()));
    let err = extract_layer(
        &raw[..],
        "text/plain",
        Path::new("/nonexistent"),
        "l",
        Whiteouts::Apply,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"text/plain\""), "{err}");
}

#[test]
fn whiteouts_remove_lower_content_but_spare_their_own_layer() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    apply(
        &[
            E::file("a/x", b"x"),
            E::file("a/y", b"y"),
            E::file("b/z", b"z"),
            E::file("c/d/e", b"e"),
            E::file("c/old", b"o"),
            E::file("k/keep", b"k"),
        ],
        d,
    )
    .unwrap();
    let s = apply(
        &[
            E::file("a/.wh.x", b""),
            E::file(".wh.b", b""),
            E::file(".wh.missing", b""),
            // Written before the opaque marker in the same layer: kept.
            E::dir("c"),
            E::file("c/new", b"n"),
            E::dir("c/d"),
            E::file("c/d/mine", b"m"),
            E::file("c/.wh..wh..opq", b""),
            E::file("k/.wh.k2", b""),
            E::file("k/k2", b"same layer"),
        ],
        d,
    )
    .unwrap();
    assert_eq!(s.whiteouts, 5);
    assert!(!d.join("a/x").exists());
    assert!(d.join("a/y").exists());
    assert!(!d.join("b").exists());
    assert!(d.join("c/new").exists());
    assert!(d.join("c/d/mine").exists());
    assert!(!d.join("c/d/e").exists());
    assert!(!d.join("c/old").exists());
    assert!(d.join("k/keep").exists() && d.join("k/k2").exists());
    assert!(!d.join("a/.wh.x").exists() && !d.join("c/.wh..wh..opq").exists());
}

#[test]
fn overlay_mode_writes_overlayfs_whiteouts() {
    if !keel_testkit::need_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    extract_layer(
        &tar(&[
            E::dir("etc"),
            E::file("etc/.wh.motd", b""),
            E::dir("var/cache"),
            E::file("var/cache/.wh..wh..opq", b""),
        ])[..],
        OCI_LAYER_TAR,
        d,
        "sha256:l",
        Whiteouts::Overlay,
        &Limits::default(),
    )
    .unwrap();
    let m = fs::symlink_metadata(d.join("etc/motd")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert!(!d.join("etc/.wh.motd").exists());
    assert_eq!(
        xattr::get(d.join("var/cache"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}

/// Run `layers` onto `dest` inside a parent holding an outside directory
/// with a marker; check the last layer is refused with `want` naming
/// `entry`, and that nothing outside dest changed.
fn refused(case: &str, layers: &[Vec<E>], entry: &str, want: &str, limits: Limits) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("marker"), b"keep").unwrap();
    fs::create_dir(outside.join("etc")).unwrap();
    fs::write(outside.join("etc/passwd"), b"root").unwrap();
    let dest = t.path().join("dest");
    let layers: Vec<Vec<E>> = layers
        .iter()
        .map(|l| {
            l.iter()
                .map(|e| {
                    let mut e = e.clone();
                    if let EntryKind::Symlink(s) | EntryKind::Hardlink(s) = &mut e.kind {
                        *s = s.replace("@OUT", &outside.display().to_string());
                    }
                    e
                })
                .collect()
        })
        .collect();
    let before = snapshot(t.path(), &dest);
    let mut result = Ok(Stats::default());
    for l in &layers {
        result = extract_layer(
            &tar(l)[..],
            OCI_LAYER_TAR,
            &dest,
            "sha256:evil",
            Whiteouts::Apply,
            &limits,
        );
        if result.is_err() {
            break;
        }
    }
    let after = snapshot(t.path(), &dest);
    assert_eq!(before, after, "{case}: something outside dest changed");
    let err = result.expect_err(case).to_string();
    assert!(err.contains("sha256:evil"), "{case}: {err}");
    assert!(err.contains(&format!("entry {entry:?}")), "{case}: {err}");
    assert!(err.contains(want), "{case}: {err}");
}

#[test]
fn malicious_layers_are_refused_and_write_nothing_outside() {
    let d = Limits::default();
    let cases: Vec<(&str, Vec<Vec<E>>, &str, &str)> = vec![
        (
            "dotdot",
            vec![vec![E::file("../outside/evil", b"x")]],
            "../outside/evil",
            "`..`",
        ),
        (
            "inner dotdot",
            vec![vec![E::file("a/../../evil", b"x")]],
            "a/../../evil",
            "`..`",
        ),
        (
            "absolute",
            vec![vec![E::file("/tmp/evil", b"x")]],
            "/tmp/evil",
            "absolute",
        ),
        (
            "relative symlink escaping",
            vec![vec![E::symlink("l", "../outside")]],
            "l",
            "leads outside",
        ),
        (
            "nested symlink to ../../etc",
            vec![vec![E::symlink("a/b/l", "../../../etc")]],
            "a/b/l",
            "leads outside",
        ),
        (
            "file through absolute symlink",
            vec![vec![E::symlink("l", "@OUT"), E::file("l/evil", b"x")]],
            "l/evil",
            "parent \"l\" is a symlink",
        ),
        (
            "file through symlink from a lower layer",
            vec![
                vec![E::symlink("etc", "@OUT/etc")],
                vec![E::file("etc/passwd", b"pwned")],
            ],
            "etc/passwd",
            "is a symlink",
        ),
        (
            "directory through symlink",
            vec![vec![E::symlink("l", "@OUT"), E::dir("l/sub")]],
            "l/sub/",
            "is a symlink",
        ),
        (
            "hardlink through symlink",
            vec![vec![
                E::symlink("l", "@OUT/etc"),
                E::hardlink("h", "l/passwd"),
            ]],
            "h",
            "is a symlink",
        ),
        (
            "hardlink absolute",
            vec![vec![E::hardlink("h", "/etc/passwd")]],
            "h",
            "absolute or has `..`",
        ),
        (
            "hardlink dotdot",
            vec![vec![E::hardlink("h", "../outside/marker")]],
            "h",
            "absolute or has `..`",
        ),
        (
            "hardlink missing",
            vec![vec![E::hardlink("h", "nothere")]],
            "h",
            "does not exist",
        ),
        (
            "hardlink to dir",
            vec![vec![E::dir("d"), E::hardlink("h", "d")]],
            "h",
            "is a directory",
        ),
        (
            "whiteout through symlink",
            vec![vec![E::symlink("l", "@OUT"), E::file("l/.wh.marker", b"")]],
            "l/.wh.marker",
            "is a symlink",
        ),
        (
            "opaque through symlink",
            vec![
                vec![E::symlink("l", "@OUT")],
                vec![E::file("l/.wh..wh..opq", b"")],
            ],
            "l/.wh..wh..opq",
            "is a symlink",
        ),
        (
            "whiteout of ..",
            vec![vec![E::file("a/.wh...", b"")]],
            "a/.wh...",
            "names no file",
        ),
        (
            "fifo",
            vec![vec![E {
                kind: EntryKind::Fifo,
                ..E::file("p", b"")
            }]],
            "p",
            "FIFOs",
        ),
    ];
    for (case, layers, entry, want) in cases {
        refused(case, &layers, entry, want, d);
    }
}

/// Device nodes are not created, and do not fail the layer: the rest of
/// it is unpacked and the nodes are reported, for the log.
#[test]
fn device_nodes_are_skipped_and_reported() {
    for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("root");
        let entries = [
            E::dir("dev"),
            E {
                kind: EntryKind::CharDevice { major: 1, minor: 3 },
                ..E::file("dev/xyz", b"")
            },
            E {
                kind: EntryKind::BlockDevice { major: 8, minor: 0 },
                ..E::file("dev/sda", b"")
            },
            E::file("etc/app.conf", b"kept"),
        ];
        let s = extract_layer(
            &tar(&entries)[..],
            OCI_LAYER_TAR,
            &dest,
            "sha256:dev",
            mode,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(s.devices, 2);
        assert_eq!(s.skipped_devices, ["/dev/xyz", "/dev/sda"]);
        // Nothing in their place; the control, the file, is there.
        assert!(fs::symlink_metadata(dest.join("dev/xyz")).is_err());
        assert!(fs::symlink_metadata(dest.join("dev/sda")).is_err());
        assert_eq!(fs::read(dest.join("etc/app.conf")).unwrap(), b"kept");
    }
    // Beyond the named ones, only counted.
    let t = tempfile::tempdir().unwrap();
    let many: Vec<E> = (0..MAX_NAMED_SKIPS + 3)
        .map(|i| E {
            kind: EntryKind::CharDevice { major: 1, minor: 3 },
            ..E::file(&format!("d{i}"), b"")
        })
        .collect();
    let s = apply(&many, t.path()).unwrap();
    assert_eq!(s.devices, MAX_NAMED_SKIPS as u64 + 3);
    assert_eq!(s.skipped_devices.len(), MAX_NAMED_SKIPS);
}

#[test]
fn limits_stop_huge_layers() {
    let many: Vec<E> = (0..11).map(|i| E::file(&format!("f{i}"), b"")).collect();
    let t = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 10,
        max_entries: 10,
    };
    let err = extract_layer(
        &tar(&many)[..],
        OCI_LAYER_TAR,
        t.path(),
        "sha256:big",
        Whiteouts::Apply,
        &limits,
    )
    .unwrap_err();
    assert!(
        matches!(err, ExtractError::TooManyEntries { limit: 10, .. }),
        "{err}"
    );
    refused(
        "bytes",
        &[vec![E::file("small", b"12345"), E::file("big", b"123456")]],
        "big",
        "more than 10 bytes",
        limits,
    );
}

#[test]
fn a_symlink_replacing_a_directory_is_not_chmodded_through() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let before = snapshot(t.path(), &t.path().join("dest"));
    apply(
        &[
            E::dir("d").with_mode(0o700),
            E::symlink("d", &outside.display().to_string()),
        ],
        &t.path().join("dest"),
    )
    .unwrap();
    assert_eq!(before, snapshot(t.path(), &t.path().join("dest")));
    assert!(fs::symlink_metadata(t.path().join("dest/d"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// GNU tar as an independent writer: GNU long names and PAX records, hard
/// links and symlinks as another tool encodes them unpack to the same tree.
#[test]
fn archives_from_gnu_tar_unpack_to_the_same_tree() {
    use std::process::Command;
    if !keel_testkit::need_command("tar", "tar") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    fs::create_dir_all(src.join(&long).parent().unwrap()).unwrap();
    fs::write(src.join(&long), b"long").unwrap();
    fs::create_dir(src.join("bin")).unwrap();
    fs::write(src.join("bin/busybox"), b"bb").unwrap();
    fs::hard_link(src.join("bin/busybox"), src.join("bin/ls")).unwrap();
    std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink(format!("../{long}"), src.join("bin/deep")).unwrap();
    for format in ["gnu", "pax"] {
        let archive = t.path().join(format!("{format}.tar"));
        let o = Command::new("tar")
            .args([
                "--sort=name",
                "--numeric-owner",
                &format!("--format={format}"),
                "-cf",
            ])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dest = t.path().join(format!("out-{format}"));
        extract_layer(
            File::open(&archive).unwrap(),
            OCI_LAYER_TAR,
            &dest,
            format,
            Whiteouts::Apply,
            &Limits::default(),
        )
        .unwrap();
        let rel = |root: &Path| -> Vec<String> {
            snapshot(root, Path::new("/nonexistent"))
                .into_iter()
                .map(|(p, v)| format!("{} {v}", p.strip_prefix(root).unwrap().display()))
                .collect()
        };
        assert_eq!(rel(&src), rel(&dest), "{format}");
        assert_eq!(
            fs::metadata(dest.join("bin/ls")).unwrap().ino(),
            fs::metadata(dest.join("bin/busybox")).unwrap().ino()
        );
    }
}
