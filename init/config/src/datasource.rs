//! Where a node finds its cloud-config: the local datasources, in order,
//! behind [`Media`], the small seam that reads a device. PID 1 reads real
//! fw_cfg files and mounts real disks through it; the tests read images
//! they build (an ISO, a vfat image) through the same trait, without a VM.
//!
//! In order (the first found wins):
//! 1. qemu fw_cfg [`FW_CFG_NAMES`]: `opt/keel/config`, then
//!    `opt/com.coreos/config` and `opt/org.flatcar-linux/config`.
//! 2. A config-drive: a whole disk with an ISO9660 or vfat filesystem
//!    labelled `config-2` (any case), file `openstack/latest/user_data`.
//! 3. A NoCloud seed: label `cidata` (any case), files `user-data` and
//!    `meta-data` (`local-hostname` names the node when the user-data does
//!    not).
//!
//! The URL on the kernel command line and the copy kept on STATE come
//! after these; PID 1 reads them (the URL once the network is up).

use crate::yaml;

/// fw_cfg names keel reads, in order.
pub const FW_CFG_NAMES: &[&str] = &[
    "opt/keel/config",
    "opt/com.coreos/config",
    "opt/org.flatcar-linux/config",
];

/// The largest NoCloud meta-data keel reads.
pub const META_DATA_MAX: usize = 64 * 1024;

/// A config found on a datasource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where it came from, as the status shows it.
    pub source: String,
    pub user_data: Vec<u8>,
    /// NoCloud meta-data `local-hostname`.
    pub meta_hostname: Option<String>,
}

/// A disk that carries a filesystem label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// The device as the status names it (`/dev/vdb`).
    pub device: String,
    pub label: String,
}

/// What the datasources read: fw_cfg files and the files of labelled
/// disks. Reads are bounded: each returns at most `max + 1` bytes, so the
/// caller tells "too big" from "exactly max" (the validator refuses the
/// first with its limit).
pub trait Media {
    /// fw_cfg file `name`, when the machine has it.
    fn fw_cfg(&mut self, name: &str, max: usize) -> Option<Vec<u8>>;
    /// The whole disks that carry a filesystem label, in name order.
    fn labelled(&mut self) -> Vec<Labelled>;
    /// Files of `device`'s filesystem, each `(path inside it, max)`: one
    /// answer per file, None when it is missing. An error (the filesystem
    /// cannot be read) skips the disk.
    fn read(
        &mut self,
        device: &str,
        files: &[(&str, usize)],
    ) -> Result<Vec<Option<Vec<u8>>>, String>;
}

/// `local-hostname` from NoCloud meta-data (YAML or JSON), when it is a
/// valid host name.
pub fn meta_hostname(meta: &str) -> Option<String> {
    let root = yaml::parse(meta).ok()?;
    let yaml::Value::Map(entries) = &root.value else {
        return None;
    };
    entries.iter().find_map(|(k, v)| {
        let name = v.scalar()?.0;
        (k.scalar()?.0 == "local-hostname" && crate::schema::hostname(name).is_ok())
            .then(|| name.to_string())
    })
}

/// The first config of the local datasources, in the order above; a disk
/// that cannot be read is passed over with `warn`.
pub fn find_local(m: &mut dyn Media, warn: &dyn Fn(&str)) -> Option<Found> {
    let max = yaml::MAX_BYTES;
    for name in FW_CFG_NAMES {
        if let Some(user_data) = m.fw_cfg(name, max) {
            return Some(Found {
                source: format!("fw_cfg {name}"),
                user_data,
                meta_hostname: None,
            });
        }
    }
    // Config-drives first, then NoCloud seeds, each in name order.
    let disks = m.labelled();
    let drives = disks
        .iter()
        .filter(|d| d.label.eq_ignore_ascii_case("config-2"))
        .map(|d| (d, true));
    let seeds = disks
        .iter()
        .filter(|d| d.label.eq_ignore_ascii_case("cidata"))
        .map(|d| (d, false));
    for (d, config_drive) in drives.chain(seeds).collect::<Vec<_>>() {
        let found = if config_drive {
            match m.read(&d.device, &[("openstack/latest/user_data", max)]) {
                Ok(mut files) => files.remove(0).map(|user_data| Found {
                    source: format!("config-drive {} (config-2)", d.device),
                    user_data,
                    meta_hostname: None,
                }),
                Err(e) => {
                    warn(&format!("config: {}: {e}", d.device));
                    None
                }
            }
        } else {
            match m.read(
                &d.device,
                &[("user-data", max), ("meta-data", META_DATA_MAX)],
            ) {
                Ok(mut files) => {
                    let meta = files.pop().flatten();
                    files.remove(0).map(|user_data| Found {
                        source: format!("NoCloud {} (cidata)", d.device),
                        user_data,
                        meta_hostname: meta
                            .and_then(|m| String::from_utf8(m).ok())
                            .as_deref()
                            .and_then(meta_hostname),
                    })
                }
                Err(e) => {
                    warn(&format!("config: {}: {e}", d.device));
                    None
                }
            }
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A disk in memory: its files, or why its filesystem cannot be read.
    type Disk = (Labelled, Result<BTreeMap<String, Vec<u8>>, String>);

    /// Media in memory: fw_cfg files, and disks with their files.
    #[derive(Default)]
    struct Mem {
        fw_cfg: BTreeMap<String, Vec<u8>>,
        disks: Vec<Disk>,
    }

    impl Media for Mem {
        fn fw_cfg(&mut self, name: &str, max: usize) -> Option<Vec<u8>> {
            self.fw_cfg
                .get(name)
                .map(|b| b[..b.len().min(max + 1)].to_vec())
        }
        fn labelled(&mut self) -> Vec<Labelled> {
            self.disks.iter().map(|(l, _)| l.clone()).collect()
        }
        fn read(
            &mut self,
            device: &str,
            files: &[(&str, usize)],
        ) -> Result<Vec<Option<Vec<u8>>>, String> {
            let (_, fs) = self
                .disks
                .iter()
                .find(|(l, _)| l.device == device)
                .ok_or("no such disk")?;
            let fs = fs.as_ref().map_err(Clone::clone)?;
            Ok(files.iter().map(|(f, _)| fs.get(*f).cloned()).collect())
        }
    }

    fn disk(
        device: &str,
        label: &str,
        files: &[(&str, &str)],
    ) -> (Labelled, Result<BTreeMap<String, Vec<u8>>, String>) {
        (
            Labelled {
                device: device.into(),
                label: label.into(),
            },
            Ok(files
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()),
        )
    }

    #[test]
    fn fw_cfg_first_then_config_drives_then_nocloud() {
        let mut m = Mem::default();
        m.disks.push(disk(
            "/dev/vdb",
            "CIDATA",
            &[
                ("user-data", "#cloud-config\n"),
                ("meta-data", "local-hostname: seed-1\n"),
            ],
        ));
        m.disks.push(disk(
            "/dev/vdc",
            "config-2",
            &[(
                "openstack/latest/user_data",
                "#cloud-config\nhostname: drive\n",
            )],
        ));
        let warn = |_: &str| {};
        let f = find_local(&mut m, &warn).unwrap();
        assert_eq!(f.source, "config-drive /dev/vdc (config-2)");
        m.disks.truncate(1);
        let f = find_local(&mut m, &warn).unwrap();
        assert_eq!(f.source, "NoCloud /dev/vdb (cidata)");
        assert_eq!(f.meta_hostname.as_deref(), Some("seed-1"));
        m.fw_cfg
            .insert("opt/com.coreos/config".into(), b"#cloud-config\n".to_vec());
        assert_eq!(
            find_local(&mut m, &warn).unwrap().source,
            "fw_cfg opt/com.coreos/config"
        );
        m.fw_cfg.insert("opt/keel/config".into(), b"x".to_vec());
        assert_eq!(
            find_local(&mut m, &warn).unwrap().source,
            "fw_cfg opt/keel/config"
        );
    }

    #[test]
    fn an_unreadable_or_empty_disk_is_passed_over() {
        let mut m = Mem::default();
        m.disks.push((
            Labelled {
                device: "/dev/vdb".into(),
                label: "config-2".into(),
            },
            Err("bad superblock".into()),
        ));
        m.disks
            .push(disk("/dev/vdc", "cidata", &[("meta-data", "x: 1\n")]));
        m.disks.push(disk(
            "/dev/vdd",
            "other",
            &[("user-data", "#cloud-config\n")],
        ));
        let warned = std::cell::RefCell::new(Vec::new());
        let warn = |w: &str| warned.borrow_mut().push(w.to_string());
        assert_eq!(find_local(&mut m, &warn), None);
        assert_eq!(*warned.borrow(), ["config: /dev/vdb: bad superblock"]);
        // Control: the same seed with its user-data is found.
        m.disks.push(disk(
            "/dev/vde",
            "cidata",
            &[("user-data", "#cloud-config\n")],
        ));
        assert_eq!(
            find_local(&mut m, &warn).unwrap().source,
            "NoCloud /dev/vde (cidata)"
        );
    }

    #[test]
    fn reads_are_bounded_so_an_oversized_config_is_seen_as_one() {
        let mut m = Mem::default();
        m.fw_cfg
            .insert("opt/keel/config".into(), vec![b'#'; yaml::MAX_BYTES + 100]);
        let f = find_local(&mut m, &|_| {}).unwrap();
        assert_eq!(f.user_data.len(), yaml::MAX_BYTES + 1);
    }

    #[test]
    fn meta_data_names_the_host_when_valid() {
        assert_eq!(
            meta_hostname("local-hostname: web-1\n").as_deref(),
            Some("web-1")
        );
        assert_eq!(
            meta_hostname("{\"local-hostname\": \"db\"}").as_deref(),
            Some("db")
        );
        assert_eq!(meta_hostname("local-hostname: bad_name!\n"), None);
        assert_eq!(meta_hostname("instance-id: x\n"), None);
        assert_eq!(
            meta_hostname("instance-id: i-1\nlocal-hostname: seed-1\n").as_deref(),
            Some("seed-1")
        );
        assert_eq!(meta_hostname("local-hostname: -bad-\n"), None);
        assert_eq!(meta_hostname("[1, 2"), None);
    }
}
