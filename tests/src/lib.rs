//! The VM test harness.
//!
//! `Vm::start` boots an image variant through `qemu/launch` (the same
//! launcher `make run` uses), captures the serial console, and forwards a free
//! host port to the node's API. Tests wait for console markers with timeouts,
//! call the API, and look at how qemu ended. Dropping a `Vm` kills qemu; when
//! the test failed, its console log is kept under `target/vm-logs/`.

pub mod bench;
pub mod soak;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use keel_api::{Client, Endpoint, Status};

/// Console text that must never appear: the kernel panicked or PID 1 died.
pub const KERNEL_DEATH: &[&str] = &["Attempted to kill init", "Kernel panic"];

/// Console text after which waiting for anything else is pointless: a dead
/// kernel, or the test helper reporting that it failed.
pub const FAIL_FAST: &[&str] = &[
    "Attempted to kill init",
    "Kernel panic",
    "test-helper: error:",
];

/// The console line keel prints when the node is ready.
pub const READY: &str = "keel: ready in ";

/// The last task line of the boot timeline keel prints after `READY`.
pub const TIMELINE_END: &str = "services/StartApi ";

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where `make images` put the kernel and initramfs variants.
pub fn build_dir() -> PathBuf {
    std::env::var_os("KEEL_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build"))
}

/// A release binary of the workspace (keelctl, ...).
pub fn release_bin(name: &str) -> PathBuf {
    root()
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(name)
}

/// Which initramfs to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// What users boot.
    Keel,
    /// keel plus the test helper.
    Test,
    /// The trivial init of the boot benchmark.
    Floor,
    /// keel's boot work done by a minimal program (the benchmark's work floor).
    WorkFloor,
    /// keel without a slot inside: boots the slots of a disk (the initramfs
    /// that the ESP kernel and the slots carry).
    Disk,
    /// The test variant plus Debian's crun and its libraries: the container
    /// benchmark's reference runtime (`make bench-images`).
    Bench,
}

impl Variant {
    fn file(self) -> &'static str {
        match self {
            Variant::Keel => "initramfs.cpio.zst",
            Variant::Test => "initramfs-test.cpio.zst",
            Variant::Floor => "initramfs-floor.cpio.zst",
            Variant::WorkFloor => "initramfs-workfloor.cpio.zst",
            Variant::Disk => "initramfs-disk.cpio.zst",
            Variant::Bench => "initramfs-bench.cpio.zst",
        }
    }
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub profile: &'static str,
    pub variant: Variant,
    pub append: String,
    pub mem: String,
    /// Exit qemu when the guest reboots (so tests can see it).
    pub no_reboot: bool,
    /// A disk image on virtio-blk (raw or qcow2 by extension); the `uefi`
    /// profile boots it.
    pub disk: Option<PathBuf>,
    /// A second disk.
    pub disk2: Option<PathBuf>,
    /// An initramfs file to boot instead of the variant's.
    pub initrd: Option<PathBuf>,
    /// More qemu arguments (e.g. `-fw_cfg name=opt/keel/config,file=...`).
    pub qemu_args: Vec<String>,
    /// Host ports forwarded into the guest (`tcp:127.0.0.1:HOST-:GUEST`).
    pub hostfwd: Vec<String>,
}

impl VmConfig {
    /// Give the node `file` as its cloud-config, through qemu's fw_cfg.
    pub fn cloud_config(&mut self, file: &Path) {
        self.qemu_args.push("-fw_cfg".into());
        self.qemu_args
            .push(format!("name=opt/keel/config,file={}", file.display()));
    }

    /// Give the node a second NIC on the L2 segment every VM given the same
    /// `group` shares (a multicast `ADDR:PORT`, e.g. `230.0.0.1:PORT` with
    /// a free port per test): qemu's multicast socket netdev. It stays on
    /// the host's loopback (`localaddr=127.0.0.1`), so it needs no route
    /// and sends nothing onto the host's network. The guest sees it as
    /// `eth1` (the launcher's user-mode NIC comes first, as `eth0`); `mac`
    /// must differ between the VMs of a segment.
    pub fn lan_nic(&mut self, group: &str, mac: &str) {
        let device = self.nic_device();
        self.qemu_args.extend([
            "-netdev".into(),
            format!("socket,id=lan0,mcast={group},localaddr=127.0.0.1"),
            "-device".into(),
            format!("{device},netdev=lan0,mac={mac}"),
        ]);
    }

    /// Give the node a second NIC (`eth1`) whose frames travel one per
    /// datagram between the unix socket `local`, which qemu binds, and
    /// `remote`, bound by whatever plays the other end (qemu's dgram
    /// netdev). Unix sockets are reached by path from any network
    /// namespace: a relay in a namespace the test made (socat between the
    /// socket and a tap there) puts the NIC on that namespace's link and
    /// nowhere else.
    pub fn dgram_nic(&mut self, local: &Path, remote: &Path, mac: &str) {
        let device = self.nic_device();
        self.qemu_args.extend([
            "-netdev".into(),
            format!(
                "dgram,id=dg0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                local.display(),
                remote.display()
            ),
            "-device".into(),
            format!("{device},netdev=dg0,mac={mac}"),
        ]);
    }

    /// The virtio NIC of this profile's bus (microvm has no PCI).
    fn nic_device(&self) -> &'static str {
        match self.profile {
            "microvm" => "virtio-net-device",
            _ => "virtio-net-pci",
        }
    }

    pub fn new(name: &str) -> VmConfig {
        VmConfig {
            name: name.to_string(),
            profile: "microvm",
            variant: Variant::Test,
            append: String::new(),
            mem: "256M".to_string(),
            no_reboot: true,
            disk: None,
            disk2: None,
            initrd: None,
            qemu_args: Vec::new(),
            hostfwd: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Console {
    text: String,
    closed: bool,
}

/// A running VM.
pub struct Vm {
    pub name: String,
    child: Child,
    console: Arc<(Mutex<Console>, Condvar)>,
    pub api_port: u16,
    pub started: Instant,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

/// A scratch directory for one test, under target/ (removed when dropped).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let p = root()
            .join("target/vm-scratch")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch directory");
        Scratch(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run keel-image (built by `make images`) with `args`; panics with its
/// output when it fails.
pub fn keel_image(args: &[&str]) {
    let out = Command::new(release_bin("keel-image"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run keel-image");
    assert!(
        out.status.success(),
        "keel-image {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free TCP port on the loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

fn pump(
    mut src: impl Read + Send + 'static,
    console: Arc<(Mutex<Console>, Condvar)>,
    tag: &'static str,
    closes: bool,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = src.read(&mut buf).unwrap_or(0);
            let (lock, cv) = &*console;
            let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
            if n == 0 {
                c.closed |= closes;
                cv.notify_all();
                return;
            }
            c.text.push_str(tag);
            c.text
                .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
            cv.notify_all();
        }
    });
}

impl Vm {
    pub fn start(cfg: VmConfig) -> Vm {
        let build = build_dir();
        let kernel = build.join("kernel/bzImage");
        let initrd = cfg
            .initrd
            .clone()
            .unwrap_or_else(|| build.join(cfg.variant.file()));
        if matches!(cfg.profile, "microvm" | "q35") {
            for f in [&kernel, &initrd] {
                assert!(
                    f.exists(),
                    "{} is missing: run `make images` first (make test does)",
                    f.display()
                );
            }
        }
        let api_port = free_port();
        let mut cmd = Command::new(root().join("qemu/launch"));
        cmd.arg(cfg.profile)
            .args(&cfg.qemu_args)
            .env("KEEL_KERNEL", &kernel)
            .env("KEEL_INITRD", &initrd)
            .env("KEEL_APPEND", &cfg.append)
            .env("KEEL_MEM", &cfg.mem)
            .env("KEEL_API_PORT", api_port.to_string())
            .env("KEEL_NO_REBOOT", if cfg.no_reboot { "1" } else { "0" })
            .env_remove("KEEL_INTERACTIVE")
            .env_remove("KEEL_DISK")
            .env_remove("KEEL_DISK2")
            .env("KEEL_NETBOOT", build.join("netboot"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !cfg.hostfwd.is_empty() {
            cmd.env("KEEL_HOSTFWD", cfg.hostfwd.join(","));
        } else {
            cmd.env_remove("KEEL_HOSTFWD");
        }
        if let Some(d) = &cfg.disk {
            cmd.env("KEEL_DISK", d);
        }
        if let Some(d) = &cfg.disk2 {
            cmd.env("KEEL_DISK2", d);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start qemu/launch");
        let console = Arc::new((Mutex::new(Console::default()), Condvar::new()));
        if let Some(out) = child.stdout.take() {
            pump(out, console.clone(), "", true);
        }
        // qemu's own errors go to the same log, marked, but do not close it.
        if let Some(err) = child.stderr.take() {
            pump(err, console.clone(), "[qemu stderr] ", false);
        }
        let log_path = root()
            .join("target/vm-logs")
            .join(format!("{}.log", cfg.name));
        Vm {
            name: cfg.name,
            child,
            console,
            api_port,
            started,
            log_path,
            exit: None,
        }
    }

    /// Everything the console has printed so far.
    pub fn console(&self) -> String {
        self.console
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }

    /// Wait until the console shows `marker`; return the time since qemu
    /// started. Panics with the console's tail on timeout or qemu exit.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.console;
        let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if c.text.contains(marker) {
                return self.started.elapsed();
            }
            let failed = FAIL_FAST.iter().find(|f| c.text.contains(**f));
            let now = Instant::now();
            if c.closed || now >= deadline || failed.is_some() {
                let why = match failed {
                    Some(f) => format!("console shows {f:?}"),
                    None if c.closed => "qemu exited".to_string(),
                    None => "timed out".to_string(),
                };
                let tail: String = c
                    .text
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                drop(c);
                panic!(
                    "{}: {why} waiting {timeout:?} for {marker:?}; console tail:\n{tail}",
                    self.name
                );
            }
            c = cv
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait for the node's ready line; returns the time it appeared. keel
    /// prints the held-back boot timeline right after it: this also waits
    /// for that, so tests that look at the console see all of it.
    pub fn wait_ready(&mut self) -> Duration {
        let t = self.wait_for(READY, Duration::from_secs(120));
        self.wait_for(TIMELINE_END, Duration::from_secs(30));
        t
    }

    /// Wait for qemu to exit (power-off, or reboot with no_reboot).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.exit_within(timeout) {
            Some(st) => st,
            None => panic!(
                "{}: qemu still running after {timeout:?}; console:\n{}",
                self.name,
                self.console()
            ),
        }
    }

    /// How qemu ended if it exits within `timeout`; `None` when it is still
    /// running then (a halted guest keeps qemu running, even with
    /// no_reboot).
    pub fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = keel_testkit::exited_within(&mut self.child, timeout)?;
        self.exit = Some(st);
        // Let the console pump drain.
        let (lock, cv) = &*self.console;
        let c = lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cv.wait_timeout_while(c, Duration::from_secs(2), |c| !c.closed);
        Some(st)
    }

    /// Kill qemu, as a host losing power would: no shutdown in the guest.
    /// The `Vm` stays, so its console log is still kept if the test fails.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.wait_exit(Duration::from_secs(10))
    }

    /// Panic if the kernel panicked or PID 1 died.
    pub fn assert_kernel_alive(&self) {
        let text = self.console();
        for bad in KERNEL_DEATH {
            assert!(
                !text.contains(bad),
                "{}: console shows {bad:?}:\n{text}",
                self.name
            );
        }
    }

    /// Panic if PID 1 went through its guard (a panic or a fatal error):
    /// for tests of the orderly paths, which must not end that way.
    pub fn assert_no_fatal(&self) {
        let text = self.console();
        assert!(
            !text.contains("keel: FATAL"),
            "{}: keel hit its guard:\n{text}",
            self.name
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::Tcp(([127, 0, 0, 1], self.api_port).into()))
    }

    /// `GET /v1/containers`.
    pub fn containers(&self) -> Vec<keel_api::ContainerStatus> {
        self.client()
            .call_blocking(hyper::Method::GET, "/v1/containers")
            .unwrap_or_else(|e| panic!("{}: GET /v1/containers: {e}", self.name))
    }

    /// The container `name`; panics when there is none.
    pub fn container(&self, name: &str) -> keel_api::ContainerStatus {
        self.containers()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{}: no container {name}", self.name))
    }

    pub fn status(&self) -> Status {
        self.client()
            .call_blocking(hyper::Method::GET, "/v1/status")
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// `GET /v1/network`.
    pub fn network(&self) -> keel_api::NetworkStatus {
        self.client()
            .call_blocking(hyper::Method::GET, "/v1/network")
            .unwrap_or_else(|e| panic!("{}: GET /v1/network: {e}", self.name))
    }

    /// Run the real keelctl against this node; returns (success, stdout, stderr).
    pub fn keelctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(release_bin("keelctl"))
            .args(args)
            .env("KEEL_ENDPOINT", self.endpoint())
            .output()
            .expect("run keelctl (built by make images)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.log_path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if std::fs::write(&self.log_path, self.console()).is_ok() {
                eprintln!(
                    "{}: console log kept at {}",
                    self.name,
                    self.log_path.display()
                );
            }
        }
    }
}
