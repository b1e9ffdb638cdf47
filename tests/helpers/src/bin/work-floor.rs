//! The boot benchmark's second floor: the work keel's boot asks for, done by
//! the smallest program that can do it. No runtime, no logging, no phase
//! table: the same mounts, the same check of the slot's signed manifest
//! (keel's own code), the same loop device, dm-verity mapping and EROFS
//! mount, root switch, cgroup controllers, hostname, links, address, route
//! and listening sockets as keel, one call after the other, in keel's order.
//! The work the cloud-config asks for is in it too: the kernel's lockdown,
//! a writable /etc, the config read from fw_cfg and checked by keel's own
//! parser, its `write_files` written, and the API's TLS server context made
//! from them by keel's own TLS code (the config of every benchmark boot
//! has an `api:` section: a node without one serves no TCP).
//! It prints how long that took since it started (and when the root was
//! mounted), one line per step, then powers off.
//!
//! Under TCG every kernel path runs cold the first time (qemu translates it
//! before it runs), so this is what keel's "PID 1 start → ready" cannot go
//! below while it does the same work. The benchmark prints keel's figure next
//! to this one.

use std::net::Ipv4Addr;
use std::time::Duration;

use keel_sys::power::{machine, PowerAction};
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, UnixAddr,
};
use nix::unistd::{chdir, chroot, mkdir, sethostname};

fn now() -> Duration {
    keel_sys::proc::uptime().unwrap_or_default()
}

struct Steps {
    start: Duration,
    last: Duration,
    lines: Vec<String>,
}

impl Steps {
    /// Record a step's time, or its failure. A failed step ends the run
    /// (the caller returns the error): timing the steps after one that
    /// failed would measure less work than keel does.
    fn step(&mut self, name: &str, r: Result<(), String>) -> Result<(), String> {
        let t = now();
        let took = (t - self.last).as_secs_f64() * 1e3;
        self.last = t;
        match r {
            Ok(()) => {
                self.lines
                    .push(format!("work-floor: {name:<18} {took:7.3} ms"));
                Ok(())
            }
            Err(e) => {
                self.lines
                    .push(format!("work-floor: {name:<18} failed: {e}"));
                Err(format!("{name}: {e}"))
            }
        }
    }
}

fn e<T>(what: &str, r: nix::Result<T>) -> Result<(), String> {
    r.map(|_| ()).map_err(|err| format!("{what}: {err}"))
}

fn mounts(root: &str) -> Result<(), String> {
    let nsd = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let table: [(&str, &str, &str, MsFlags, Option<&str>); 8] = [
        ("proc", "/proc", "proc", nsd | MsFlags::MS_NOEXEC, None),
        ("sysfs", "/sys", "sysfs", nsd | MsFlags::MS_NOEXEC, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
        ),
        ("shm", "/dev/shm", "tmpfs", nsd, Some("mode=1777")),
        ("run", "/run", "tmpfs", nsd, Some("mode=0755")),
        ("tmp", "/tmp", "tmpfs", nsd, Some("mode=1777")),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nsd | MsFlags::MS_NOEXEC,
            Some("nsdelegate"),
        ),
    ];
    for (src, target, fstype, flags, data) in table {
        let target = format!("{root}{target}");
        let _ = mkdir(
            target.as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        );
        e(
            &target,
            mount(Some(src), target.as_str(), Some(fstype), flags, data),
        )?;
    }
    Ok(())
}

fn main() {
    let start = now();
    let mut s = Steps {
        start,
        last: start,
        lines: Vec::new(),
    };
    let result = work(&mut s);
    // First, before the step lines: the benchmark times qemu start -> this
    // line as the work floor's whole boot (the floor of qemu -> ready).
    if result.is_ok() {
        println!("work-floor: finished");
    }
    for l in &s.lines {
        println!("{l}");
    }
    match result {
        Ok(root_mounted) => {
            let total = (s.last - s.start).as_secs_f64() * 1e3;
            println!(
                "work-floor: root mounted in {:.3} ms",
                (root_mounted - s.start).as_secs_f64() * 1e3
            );
            println!(
                "work-floor: started at {:.3} ms, done in {total:.3} ms",
                s.start.as_secs_f64() * 1e3
            );
        }
        // No figure: the benchmark reads this line as a failed run.
        Err(e) => println!("work-floor: failed at {e}"),
    }
    let err = machine(PowerAction::PowerOff);
    println!("work-floor: {err}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The cloud-config from fw_cfg, checked by keel's parser; its files
/// written with their modes. Returns its `api:` section.
fn config() -> Result<keel_config::model::Api, String> {
    use std::os::unix::fs::PermissionsExt;
    let raw = "/sys/firmware/qemu_fw_cfg/by_name/opt/keel/config/raw";
    let bytes = std::fs::read(raw).map_err(|e| format!("{raw}: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "the config is not UTF-8".to_string())?;
    let report = keel_config::validate::validate(&text);
    if !report.accepted() {
        return Err(format!("the config has {} errors", report.errors.len()));
    }
    for f in &report.config.write_files {
        let path = std::path::Path::new(&f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, &f.content).map_err(|e| format!("{}: {e}", f.path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(f.permissions))
            .map_err(|e| format!("{}: {e}", f.path))?;
    }
    report
        .config
        .api
        .ok_or_else(|| "the config has no api: section".to_string())
}

/// keel's boot work, step by step, in keel's order; stops at the first
/// step that fails. Returns when the root was mounted.
fn work(s: &mut Steps) -> Result<Duration, String> {
    let none: Option<&str> = None;

    s.step("mounts", mounts(""))?;
    s.step(
        "cmdline",
        std::fs::read_to_string("/proc/cmdline")
            .map(|_| ())
            .map_err(|e| e.to_string()),
    )?;
    let slot = std::path::Path::new("/keel/root.slot");
    let manifest = (|| {
        let text =
            std::fs::read_to_string("/etc/keel/keys/keel-dev.pub").map_err(|e| e.to_string())?;
        let key = keel_slot::manifest::TrustedKey::parse(&text).map_err(|e| e.to_string())?;
        let bytes = std::fs::read(slot).map_err(|e| e.to_string())?;
        let at = bytes.len() - keel_slot::layout::FOOTER_SIZE as usize;
        keel_slot::manifest::open(&bytes[at..], &[key]).map_err(|e| e.to_string())
    })();
    s.step(
        "manifest",
        manifest.as_ref().map(|_| ()).map_err(|e| e.clone()),
    )?;
    let mapped = manifest.as_ref().map_err(|e| e.clone()).and_then(|v| {
        use std::os::unix::fs::MetadataExt;
        let (loop_dev, _f) =
            keel_sys::block::attach_loop_ro(slot, 4096).map_err(|e| e.to_string())?;
        let rdev = std::fs::metadata(&loop_dev)
            .map_err(|e| e.to_string())?
            .rdev();
        let (maj, min) = keel_sys::block::devno(rdev);
        let devno = format!("{maj}:{min}");
        let p = v.manifest.verity_params();
        keel_sys::dm::create_ro(
            "keel-root",
            "KEEL-VERITY",
            "verity",
            p.sectors(),
            &p.table(&devno, &devno),
        )
        .map_err(|e| e.to_string())
    });
    s.step(
        "loop + dm-verity",
        mapped.as_ref().map(|_| ()).map_err(|e| e.clone()),
    )?;
    let mounted = mapped.and_then(|d| {
        e(
            "mount erofs",
            mount(
                Some(d.path().as_path()),
                "/sysroot",
                Some("erofs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
                none,
            ),
        )
    });
    s.step("mount root", mounted)?;
    let root_mounted = s.last;
    // keel locks the kernel down once the root is mounted. The reference
    // kernel (kernel-plain) has no lockdown LSM: keel's write fails there
    // and its boot goes on, so does this one.
    let _ = mount(
        Some("securityfs"),
        "/sys/kernel/security",
        Some("securityfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    );
    let _ = std::fs::write("/sys/kernel/security/lockdown", "integrity");
    s.step("lockdown", Ok(()))?;
    let root = (|| {
        for m in ["/proc", "/sys", "/dev", "/run", "/tmp"] {
            let to = format!("/sysroot{m}");
            e(m, mount(Some(m), to.as_str(), none, MsFlags::MS_MOVE, none))?;
        }
        e("chdir", chdir("/sysroot"))?;
        e(
            "move root",
            mount(Some("."), "/", none, MsFlags::MS_MOVE, none),
        )?;
        e("chroot", chroot("."))?;
        e("chdir /", chdir("/"))
    })();
    s.step("switch root", root)?;
    let etc = (|| {
        e(
            "mount /etc",
            mount(
                Some("etc"),
                "/etc",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=0755"),
            ),
        )?;
        std::fs::write("/etc/hostname", "keel\n").map_err(|e| e.to_string())?;
        std::fs::write("/etc/hosts", "127.0.0.1 localhost keel\n").map_err(|e| e.to_string())
    })();
    s.step("etc", etc)?;
    s.step(
        "cgroup controllers",
        std::fs::write(
            "/sys/fs/cgroup/cgroup.subtree_control",
            "+cpuset +cpu +io +memory +pids",
        )
        .map_err(|e| e.to_string()),
    )?;
    s.step("hostname", e("sethostname", sethostname("keel")))?;
    let api = config();
    s.step("config", api.as_ref().map(|_| ()).map_err(|e| e.clone()))?;
    let tls = api.and_then(|api| {
        let files = keel_tls::ServerFiles {
            cert: ("api.cert_file", api.cert_file.into()),
            key: ("api.key_file", api.key_file.into()),
            client_ca: Some(("api.client_ca_file", api.client_ca_file.into())),
        };
        keel_tls::server_config(&files)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    s.step("tls", tls)?;
    s.step(
        "lo up",
        keel_sys::netlink::Rtnl::open()
            .and_then(|mut r| r.link_up("lo"))
            .map_err(|e| e.to_string()),
    )?;
    let net = (|| {
        let mut r = keel_sys::netlink::Rtnl::open()?;
        r.link_up("eth0")?;
        r.add_address("eth0", Ipv4Addr::new(10, 0, 2, 15).into(), 24)?;
        r.add_route(
            "eth0",
            Ipv4Addr::UNSPECIFIED.into(),
            0,
            Some(Ipv4Addr::new(10, 0, 2, 2).into()),
        )
    })()
    .map_err(|e| e.to_string());
    s.step("eth0", net)?;
    let listeners = (|| {
        let tcp = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("tcp socket: {e}"))?;
        e(
            "tcp bind",
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&tcp),
                &SockaddrIn::new(0, 0, 0, 0, 9420),
            ),
        )?;
        e(
            "tcp listen",
            listen(&tcp, Backlog::new(128).unwrap_or(Backlog::MAXCONN)),
        )?;
        let _ = mkdir("/run/keel", nix::sys::stat::Mode::from_bits_truncate(0o755));
        let unix = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("unix socket: {e}"))?;
        let addr = UnixAddr::new("/run/keel/api.sock").map_err(|e| e.to_string())?;
        e(
            "unix bind",
            bind(std::os::fd::AsRawFd::as_raw_fd(&unix), &addr),
        )?;
        e(
            "unix listen",
            listen(&unix, Backlog::new(128).unwrap_or(Backlog::MAXCONN)),
        )?;
        std::mem::forget((tcp, unix));
        Ok(())
    })();
    s.step("listen", listeners)?;
    Ok(root_mounted)
}
