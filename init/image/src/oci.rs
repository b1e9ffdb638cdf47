//! OCI image layouts from spec files (`keel-image oci`).
//!
//! 1. The spec's entries (sorted by path, parents added: [`crate::Spec`])
//!    become layer entries: directories, files (read from their source),
//!    symlinks. Device nodes are refused: keel's extractor refuses them, and
//!    a container's /dev is a tmpfs the runtime fills.
//! 2. Every entry carries the one mtime (`SOURCE_DATE_EPOCH`) and the
//!    spec's owner; the tar has no user names or host metadata.
//! 3. One tar+gzip layer (fixed gzip header) and the config, manifest and
//!    index are written by [`keel_oci::write_layout`] into a temporary
//!    directory next to the output, which then replaces the output.
//!
//! The same spec, sources and epoch give byte-identical layouts.

use std::path::{Path, PathBuf};

use keel_oci::{layer_tar, write_layout, Digest, EntryKind, ImageSpec, Layer, LayerEntry};

use crate::spec::{Entry, Kind};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("OCI image entry /{name}: {problem}")]
    Entry { name: String, problem: String },
    #[error("read /{name} from {source_path}: {source}")]
    Read {
        name: String,
        source_path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] keel_oci::WriteError),
    #[error("{path} exists and is not an OCI layout: not replacing it")]
    NotALayout { path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The layer entries for `entries` (sorted), stamped `mtime`.
pub fn layer_entries(entries: &[Entry], mtime: u64) -> Result<Vec<LayerEntry>, OciError> {
    entries
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                Kind::Dir => EntryKind::Dir,
                Kind::File(src) => {
                    EntryKind::File(std::fs::read(src).map_err(|source| OciError::Read {
                        name: e.name.clone(),
                        source_path: src.clone(),
                        source,
                    })?)
                }
                Kind::Symlink(target) => EntryKind::Symlink(target.clone()),
                Kind::Node { .. } => {
                    return Err(OciError::Entry {
                        name: e.name.clone(),
                        problem: "device nodes do not belong in an image (the runtime makes /dev)"
                            .into(),
                    })
                }
            };
            Ok(LayerEntry {
                path: e.name.clone(),
                mode: e.mode,
                uid: e.uid.into(),
                gid: e.gid.into(),
                mtime,
                kind,
            })
        })
        .collect()
}

/// Build the layout of `entries` as `image` into `out`, replacing an
/// existing layout there; returns the manifest digest.
pub fn build(
    entries: &[Entry],
    mtime: u64,
    image: &ImageSpec,
    out: &Path,
    zstd: bool,
) -> Result<Digest, OciError> {
    let tar = layer_tar(&layer_entries(entries, mtime)?)?;
    // zstd -19 is about a tenth smaller than gzip for a binary like
    // busybox: what a diskless node carries in its initramfs.
    let layer = if zstd {
        Layer::tar_zstd(&tar)?
    } else {
        Layer::tar_gzip(&tar)?
    };
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| OciError::Io { op, path, source }
    };
    let tmp = out.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
    }
    let digest = write_layout(&tmp, image, &[layer])?;
    if out.exists() {
        // Only ever delete something this command could have written.
        if !out.join("oci-layout").is_file() {
            return Err(OciError::NotALayout {
                path: out.to_path_buf(),
            });
        }
        std::fs::remove_dir_all(out).map_err(io("remove", out))?;
    }
    std::fs::rename(&tmp, out).map_err(io("rename to", out))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::process::Command;

    use keel_oci::{ContainerConfig, Platform};

    use super::*;
    use crate::Spec;

    fn image(name: &str) -> ImageSpec {
        ImageSpec {
            name: Some(name.into()),
            platform: Platform::linux_amd64(),
            config: ContainerConfig {
                entrypoint: Some(vec!["/bin/sh".into()]),
                env: Some(vec!["PATH=/bin".into()]),
                ..Default::default()
            },
        }
    }

    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            );
        }
        for f in ["index.json", "oci-layout"] {
            out.insert(f.into(), std::fs::read(dir.join(f)).unwrap());
        }
        out
    }

    fn small_spec(dir: &Path) -> Vec<Entry> {
        std::fs::write(dir.join("hello"), b"hello from keel\n").unwrap();
        let vars = HashMap::from([("SRC".to_string(), dir.display().to_string())]);
        let mut s = Spec::default();
        s.add(
            "t.list",
            "dir /tmp 1777 0 0\nfile /var/www/index.html ${SRC}/hello 0644 0 0\nslink /bin/sh busybox 0777 0 0\n",
            &vars,
        )
        .unwrap();
        s.entries()
    }

    #[test]
    fn two_builds_are_byte_identical_and_unpack() {
        let t = tempfile::tempdir().unwrap();
        let entries = small_spec(t.path());
        let a = build(
            &entries,
            1_700_000_000,
            &image("x:1"),
            &t.path().join("a"),
            false,
        )
        .unwrap();
        let b = build(
            &entries,
            1_700_000_000,
            &image("x:1"),
            &t.path().join("b"),
            false,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(files(&t.path().join("a")), files(&t.path().join("b")));
        // Rebuilding over an existing layout replaces it.
        build(&entries, 1, &image("x:1"), &t.path().join("a"), false).unwrap();
        assert_ne!(files(&t.path().join("a")), files(&t.path().join("b")));

        let img =
            keel_oci::resolve(&t.path().join("b"), Some("x:1"), &Platform::linux_amd64()).unwrap();
        let root = t.path().join("root");
        keel_oci::apply_layers(
            &t.path().join("b"),
            &img.manifest.layers,
            &root,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(root.join("var/www/index.html")).unwrap(),
            b"hello from keel\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(root.join("tmp")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o1777, 1_700_000_000));
    }

    #[test]
    fn device_nodes_and_non_layouts_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Spec::default();
        s.add("t.list", "nod /dev/null 0666 0 0 c 1 3\n", &HashMap::new())
            .unwrap();
        let e = build(&s.entries(), 0, &image("x"), &t.path().join("o"), false).unwrap_err();
        assert!(e.to_string().contains("/dev/null"), "{e}");
        let not_layout = t.path().join("precious");
        std::fs::create_dir(&not_layout).unwrap();
        let e = build(&small_spec(t.path()), 0, &image("x"), &not_layout, false).unwrap_err();
        assert!(matches!(e, OciError::NotALayout { .. }), "{e}");
    }

    /// The busybox image from `initramfs/busybox-oci.list`, and skopeo (if
    /// installed) as an independent reader of the layout.
    #[test]
    fn busybox_image_builds_and_skopeo_reads_it() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            keel_testkit::skip("/bin/busybox missing (Debian package busybox-static)");
            return;
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let list = src.join("initramfs/busybox-oci.list");
        let vars = HashMap::from([
            ("SRC".to_string(), src.display().to_string()),
            ("BUSYBOX".to_string(), busybox.display().to_string()),
        ]);
        let mut s = Spec::default();
        s.add(
            "busybox-oci.list",
            &std::fs::read_to_string(&list).unwrap(),
            &vars,
        )
        .unwrap();
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("busybox");
        build(&s.entries(), 0, &image("busybox:latest"), &out, true).unwrap();
        let img =
            keel_oci::resolve(&out, Some("busybox:latest"), &Platform::linux_amd64()).unwrap();
        let root = t.path().join("root");
        keel_oci::apply_layers(&out, &img.manifest.layers, &root, &Default::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("var/www/index.html")).unwrap(),
            "hello from keel\n"
        );
        for applet in ["sh", "httpd", "wget", "nc", "sleep"] {
            assert_eq!(
                std::fs::read_link(root.join("bin").join(applet)).unwrap(),
                Path::new("busybox"),
                "{applet}"
            );
        }
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:") && passwd.contains("\nnobody:x:65534:65534:"));
        // The unpacked busybox runs: the image is usable, not only well formed.
        let o = Command::new(root.join("bin/busybox"))
            .args(["cat", "/proc/self/comm"])
            .output()
            .unwrap();
        assert!(o.status.success());

        if !keel_testkit::need_command("skopeo", "skopeo") {
            return;
        }
        let o = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:busybox:latest", out.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let raw = std::fs::read(keel_oci::layout::blob_path(&out, &img.manifest_digest)).unwrap();
        assert_eq!(o.stdout, raw, "skopeo reads the manifest keel wrote");
        let copy = t.path().join("copy");
        let o = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:busybox:latest", out.display()))
            .arg(format!("oci:{}:x", copy.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // skopeo's copy reads back with keel's reader, same layer content.
        let back = keel_oci::resolve(&copy, Some("x"), &Platform::linux_amd64()).unwrap();
        assert_eq!(back.config.rootfs.diff_ids, img.config.rootfs.diff_ids);
    }
}
