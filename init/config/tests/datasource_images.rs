//! The datasources on real images, built here with the tools a user would
//! use (genisoimage for a config-drive ISO, mkfs.vfat and mtools for a
//! NoCloud seed), probed as PID 1 probes disks and read through the
//! `Media` seam with isoinfo and mtools instead of a mount: no VM, no root.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_config::datasource::{find_local, Labelled, Media};

/// Image files standing for disks, in name order.
struct Images {
    files: Vec<PathBuf>,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn head(path: &Path) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    b.truncate(keel_boot::probe::PROBE_BYTES);
    b
}

impl Media for Images {
    fn fw_cfg(&mut self, _: &str, _: usize) -> Option<Vec<u8>> {
        None
    }

    fn labelled(&mut self) -> Vec<Labelled> {
        self.files
            .iter()
            .filter_map(|f| {
                let (_, label) = keel_boot::probe::label(&head(f))?;
                Some(Labelled {
                    device: f.to_string_lossy().into_owned(),
                    label,
                })
            })
            .collect()
    }

    fn read(
        &mut self,
        device: &str,
        files: &[(&str, usize)],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        let (fs, _) = keel_boot::probe::label(&head(Path::new(device))).ok_or("no filesystem")?;
        let bounded = |mut b: Vec<u8>, max: usize| {
            b.truncate(max + 1);
            b
        };
        Ok(match fs {
            keel_boot::probe::Fs::Iso9660 => {
                // Rock Ridge names, as the kernel's iso9660 shows them.
                let list = run(Command::new("isoinfo").args(["-R", "-f", "-i", device]));
                let names = String::from_utf8_lossy(&list.stdout).into_owned();
                files
                    .iter()
                    .map(|(f, max)| {
                        let p = format!("/{f}");
                        names.lines().any(|l| l == p).then(|| {
                            let out = run(Command::new("isoinfo")
                                .args(["-R", "-i", device, "-x"])
                                .arg(&p));
                            bounded(out.stdout, *max)
                        })
                    })
                    .collect()
            }
            keel_boot::probe::Fs::Vfat => files
                .iter()
                .map(|(f, max)| {
                    let out = Command::new("mcopy")
                        .env("MTOOLS_SKIP_CHECK", "1")
                        .args(["-n", "-i", device])
                        .arg(format!("::{f}"))
                        .arg("-")
                        .output()
                        .map_err(|e| format!("mcopy: {e}"))?;
                    Ok(out.status.success().then(|| bounded(out.stdout, *max)))
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

fn tools() -> bool {
    keel_testkit::need_command("genisoimage", "genisoimage")
        && keel_testkit::need_command("isoinfo", "genisoimage")
        && keel_testkit::need_command("mkfs.vfat", "dosfstools")
        && keel_testkit::need_command("mcopy", "mtools")
}

fn config_drive_iso(dir: &Path, name: &str, label: &str, user_data: &str) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    std::fs::create_dir_all(tree.join("openstack/latest")).unwrap();
    std::fs::write(tree.join("openstack/latest/user_data"), user_data).unwrap();
    let iso = dir.join(name);
    run(Command::new("genisoimage")
        .args(["-quiet", "-R", "-J", "-V", label, "-o"])
        .arg(&iso)
        .arg(&tree));
    iso
}

fn nocloud_vfat(dir: &Path, name: &str, label: &str, files: &[(&str, &str)]) -> PathBuf {
    let img = dir.join(name);
    run(Command::new("mkfs.vfat")
        .args(["-n", label, "-C"])
        .arg(&img)
        .arg("1024"));
    for (f, text) in files {
        let src = dir.join(format!("{name}.{f}"));
        std::fs::write(&src, text).unwrap();
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .arg(&src)
            .arg(format!("::{f}")));
    }
    img
}

#[test]
fn a_config_drive_iso_wins_over_a_nocloud_seed_and_a_seed_names_the_host() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let seed = nocloud_vfat(
        t.path(),
        "a-seed.img",
        "CIDATA",
        &[
            ("user-data", "#cloud-config\nssh_authorized_keys: []\n"),
            ("meta-data", "instance-id: i-1\nlocal-hostname: seed-1\n"),
        ],
    );
    let drive = config_drive_iso(
        t.path(),
        "b-drive.iso",
        "config-2",
        "#cloud-config\nhostname: drive-1\n",
    );
    let other = config_drive_iso(
        t.path(),
        "c-other.iso",
        "DATA",
        "#cloud-config\nhostname: no\n",
    );
    let mut media = Images {
        files: vec![seed.clone(), drive.clone(), other],
    };
    let warn = |w: &str| panic!("unexpected warning: {w}");
    let f = find_local(&mut media, &warn).expect("the config-drive");
    assert_eq!(
        f.source,
        format!("config-drive {} (config-2)", drive.display())
    );
    assert_eq!(f.user_data, b"#cloud-config\nhostname: drive-1\n");
    assert_eq!(f.meta_hostname, None);
    // Without the drive, the seed: its user-data and its host name.
    media.files.retain(|f| f != &drive);
    let f = find_local(&mut media, &warn).expect("the NoCloud seed");
    assert_eq!(f.source, format!("NoCloud {} (cidata)", seed.display()));
    assert_eq!(f.user_data, b"#cloud-config\nssh_authorized_keys: []\n");
    assert_eq!(f.meta_hostname.as_deref(), Some("seed-1"));
}

#[test]
fn a_seed_without_user_data_or_with_another_label_is_not_a_datasource() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let empty = nocloud_vfat(
        t.path(),
        "a.img",
        "cidata",
        &[("meta-data", "local-hostname: x\n")],
    );
    let other = nocloud_vfat(
        t.path(),
        "b.img",
        "DATA",
        &[("user-data", "#cloud-config\n")],
    );
    let mut media = Images {
        files: vec![empty, other],
    };
    assert_eq!(find_local(&mut media, &|_| {}), None);
    // Control: the same image labelled cidata is one.
    let seed = nocloud_vfat(
        t.path(),
        "c.img",
        "cidata",
        &[("user-data", "#cloud-config\n")],
    );
    media.files.push(seed);
    assert!(find_local(&mut media, &|_| {}).is_some());
}
