//! What the privileged tests share: a busybox root and a cgroup2 mounted
//! for the test.

use std::path::{Path, PathBuf};

use keel_containers::runtime::Dirs;

pub struct Env {
    _tmp: tempfile::TempDir,
    pub dirs: Dirs,
    pub layer: PathBuf,
    cg2: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dirs.cgroup);
        let _ = nix_umount(&self.cg2);
    }
}

fn nix_umount(p: &Path) -> std::io::Result<()> {
    keel_sys::fs::unmount(p, true).map_err(std::io::Error::other)
}

/// The environment of test `tag`; None (the test skips) when not root, or
/// when busybox or cgroup2 is not available.
pub fn setup(tag: &str) -> Option<Env> {
    if !keel_testkit::need_root() {
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        keel_testkit::skip("needs /bin/busybox (Debian package busybox-static)");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cg2 = tmp.path().join("cg2");
    std::fs::create_dir(&cg2).unwrap();
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.ends_with("\tcgroup2")) {
        keel_testkit::skip("the host kernel has no cgroup2");
        return None;
    }
    // As root on a kernel with cgroup2, keel's mount must work: an error
    // fails the test.
    keel_sys::fs::mount(
        "none",
        &cg2,
        "cgroup2",
        keel_sys::fs::MountFlags::empty(),
        None,
    )
    .expect("mount cgroup2 for the test");
    let cgroup = cg2.join(format!("keel-test-{tag}"));
    std::fs::create_dir_all(&cgroup).unwrap();
    let layer = tmp.path().join("layer");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    for a in [
        "sh", "cat", "grep", "hostname", "ls", "echo", "sleep", "mount", "id",
    ] {
        std::os::unix::fs::symlink("/bin/busybox", layer.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
    )
    .unwrap();
    let dirs = Dirs {
        state: tmp.path().join("state"),
        run: tmp.path().join("run"),
        cgroup: cgroup.clone(),
        source_root: tmp.path().join("sources"),
        init: tmp.path().join("no-init"),
    };
    Some(Env {
        _tmp: tmp,
        dirs,
        layer,
        cg2,
    })
}
