//! Privileged: start real containers on the host from a busybox root, with
//! a cgroup2 mounted for the test. Skips when not root, or when busybox or
//! cgroup2 is not available.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use keel_config::model::{Container, NetMode};
use keel_containers::runtime::{self, Dirs, ImageRoot};

struct Env {
    _tmp: tempfile::TempDir,
    dirs: Dirs,
    layer: PathBuf,
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

fn setup(tag: &str) -> Option<Env> {
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
    };
    Some(Env {
        _tmp: tmp,
        dirs,
        layer,
        cg2,
    })
}

fn read_all(fd: OwnedFd) -> String {
    // The read end is non-blocking: poll it until the writers are gone.
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "timed out");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn run(env: &Env, c: &Container) -> (String, String, i32) {
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let r = runtime::start(&env.dirs, c, &img, None, None).expect("start");
    let (out, err) = (read_all(r.stdout), read_all(r.stderr));
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.pid), None).unwrap();
    let code = match status {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        s => panic!("{s:?}"),
    };
    runtime::stop_run(&env.dirs, &c.name, &r.cgroup, None);
    (out, err, code)
}

#[test]
fn a_container_sees_its_own_world() {
    let Some(env) = setup("world") else { return };
    let c = Container {
        name: "world".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![concat!(
            "echo pid=$$; hostname; ls /dev | sort | tr '\\n' ' '; echo; ",
            "cat /proc/kcore | wc -c; echo x > /proc/sysrq-trigger && echo sysrq-writable; ",
            "cat /proc/1/cgroup; echo lo=$(cat /sys/class/net/lo/flags); ls /sys/class/net; ",
            "grep 'open files' /proc/self/limits; exit 3"
        )
        .into()],
        network: NetMode::None,
        rlimits: vec![keel_config::model::Rlimit {
            name: "nofile".into(),
            soft: 321,
            hard: 654,
        }],
        ..Default::default()
    };
    let (out, err, code) = run(&env, &c);
    assert_eq!(code, 3, "stdout {out}\nstderr {err}");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("\nworld\n"), "{out}");
    for d in ["null", "zero", "urandom", "pts", "shm", "ptmx", "fd"] {
        assert!(out.contains(d), "/dev lacks {d}: {out}");
    }
    assert!(!out.contains("sysrq-writable"), "{out}");
    assert!(out.contains("0::/\n"), "cgroup namespace: {out}");
    // Its own network namespace: only lo, and up (IFF_UP | IFF_LOOPBACK).
    assert!(out.contains("lo=0x9\nlo\n"), "{out}");
    assert!(
        out.contains("Max open files            321                  654"),
        "{out}"
    );
    assert!(err.contains("sysrq-trigger"), "{err}");
}

#[test]
fn a_missing_program_is_an_error_before_the_clone() {
    let Some(env) = setup("missing") else { return };
    let c = Container {
        name: "missing".into(),
        command: vec!["nosuch".into()],
        network: NetMode::None,
        ..Default::default()
    };
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let e = runtime::start(&env.dirs, &c, &img, None, None).unwrap_err();
    assert!(e.to_string().contains("nosuch: not found"), "{e}");
}

#[test]
fn exec_failures_name_the_step() {
    let Some(env) = setup("noexec") else { return };
    std::fs::write(env.layer.join("bin/data"), "not a program").unwrap();
    let c = Container {
        name: "noexec".into(),
        command: vec!["/bin/data".into()],
        network: NetMode::None,
        ..Default::default()
    };
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let e = runtime::start(&env.dirs, &c, &img, None, None).unwrap_err();
    assert!(e.to_string().contains("exec"), "{e}");
}

#[test]
fn a_command_runs_inside_a_running_container() {
    let Some(env) = setup("exec") else { return };
    let c = Container {
        name: "exec".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec!["echo inside > /tmp/mark; sleep 100".into()],
        network: NetMode::None,
        ..Default::default()
    };
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let r = runtime::start(&env.dirs, &c, &img, None, None).expect("start");
    let status = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let s = runtime::exec_in(&r.joinable, &c, &argv, None).expect("exec_in");
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        }
    };
    // Its mount namespace (its /tmp, written by its own process), its host
    // name, its cgroup namespace, its network namespace (only lo).
    let mut tries = 0;
    while status(&["/bin/sh", "-c", "test -e /tmp/mark"]) != 0 {
        tries += 1;
        assert!(tries < 100, "the container never wrote its mark");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status(&["/bin/sh", "-c", "test \"$(hostname)\" = exec"]), 0);
    assert_eq!(
        status(&["/bin/sh", "-c", "grep -q '^0::/$' /proc/self/cgroup"]),
        0
    );
    assert_eq!(
        status(&["/bin/sh", "-c", "test \"$(ls /sys/class/net)\" = lo"]),
        0
    );
    assert_eq!(status(&["/bin/sh", "-c", "exit 7"]), 7);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r.pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = r.cgroup.kill();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.pid), None);
    runtime::stop_run(&env.dirs, &c.name, &r.cgroup, None);
}
