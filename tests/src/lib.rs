//! The VM test harness.
//!
//! `Vm::start` boots an image variant through `qemu/launch` (the same
//! launcher `make run` uses), captures the serial console, and forwards a free
//! host port to the node's API. The API's TCP port is closed unless the
//! cloud-config has `api:`, so the harness adds the fragment `keelctl gen
//! pki` wrote for a test node ([`test_pki`]) to the fw_cfg cloud-config it
//! gives a node (one without a config gets one holding only that), and its
//! clients use the admin certificate of that PKI. `VmConfig::api = false`
//! leaves a node as the test made it. Tests wait for console markers with timeouts,
//! call the API, and look at how qemu ended. Dropping a `Vm` kills qemu; when
//! the test failed, its console log is kept under `target/vm-logs/`.

pub mod bench;
pub mod files;
pub mod size;
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
pub const TIMELINE_END: &str = "services/StartContainers ";

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
    /// A kernel to boot instead of build/kernel/bzImage (its folder's
    /// parent holds the shared `cmdline`).
    pub kernel: Option<PathBuf>,
    /// More qemu arguments (e.g. `-fw_cfg name=opt/keel/config,file=...`).
    pub qemu_args: Vec<String>,
    /// Host ports forwarded into the guest (`tcp:127.0.0.1:HOST-:GUEST`).
    pub hostfwd: Vec<String>,
    /// Put the kernel's `panic=-1` on the command line (the launcher's
    /// default); false leaves it out.
    pub panic_arg: bool,
    /// Add the test PKI's `api:` (and its files) to the node's fw_cfg
    /// cloud-config, or give it one with only that (see the module docs).
    pub api: bool,
    /// More environment for qemu/launch (e.g. `KEEL_NETBOOT_URL`).
    pub env: Vec<(String, String)>,
}

/// The test PKI: `keelctl gen pki` for a node `test` reached at 127.0.0.1
/// (the forward) and 10.0.2.15, written once per test process.
pub struct TestPki {
    pub dir: PathBuf,
    /// The node's cloud-config fragment: `write_files` and `api:`.
    pub fragment: String,
}

impl TestPki {
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// TLS files for keel's client: the CA and the certificate `who`
    /// (`admin`, `reader`).
    pub fn client_files(&self, who: &str) -> keel_api::ClientFiles {
        keel_api::ClientFiles {
            ca: ("ca", self.file("ca.pem")),
            identity: Some((
                ("cert", self.file(&format!("{who}.pem"))),
                ("key", self.file(&format!("{who}-key.pem"))),
            )),
        }
    }
}

/// The test PKI of this process (made on first use).
pub fn test_pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = root()
            .join("target/vm-pki")
            .join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(release_bin("keelctl"))
            .args([
                "gen",
                "pki",
                "--no-kv",
                "--node",
                "test=127.0.0.1,10.0.2.15",
                "--out",
            ])
            .arg(&dir)
            .output()
            .expect("run keelctl gen pki (built by make images)");
        assert!(
            out.status.success(),
            "keelctl gen pki: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fragment = std::fs::read_to_string(dir.join("nodes/test.yaml"))
            .expect("keelctl gen pki wrote nodes/test.yaml");
        TestPki { dir, fragment }
    })
}

/// `config` with the test PKI's `api:` and files added: appended when the
/// document has no `write_files`, else its entries go first in the
/// document's list (which moves the lines after it). A document that has
/// `api:` already is returned as it is.
pub fn with_api(config: &str) -> String {
    if keel_config::api::declared(config) {
        return config.to_string();
    }
    let frag = &test_pki().fragment;
    let mut text = config.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match text.lines().position(|l| l.trim_end() == "write_files:") {
        None => text + frag,
        Some(at) => {
            // The fragment is `write_files:` + entries, then `api:...`.
            let (files, api) = frag
                .split_once("\napi:")
                .expect("the fragment has write_files then api");
            // Indented as the document's own entries (the fragment's are
            // two spaces in).
            let indent = text
                .lines()
                .skip(at + 1)
                .find(|l| !l.trim().is_empty())
                .map_or(2, |l| l.len() - l.trim_start().len());
            let entries: String = files
                .lines()
                .skip_while(|l| !l.starts_with("write_files:"))
                .skip(1)
                .map(|l| format!("{}{}\n", " ".repeat(indent), &l[2.min(l.len())..]))
                .collect();
            let mut lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
            lines.insert(at + 1, entries);
            lines.concat() + "api:" + api
        }
    }
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
            kernel: None,
            qemu_args: Vec::new(),
            hostfwd: Vec::new(),
            panic_arg: true,
            api: true,
            env: Vec::new(),
        }
    }

    /// With `api`: the fw_cfg cloud-config through [`with_api`] (a copy
    /// under target/vm-pki), or one with only the test PKI's `api:` when
    /// the node is given none (which, fw_cfg coming first, hides a config
    /// on a disk: tests of those set `api = false` and put [`with_api`]
    /// into their own).
    fn add_api(&mut self) {
        if !self.api {
            return;
        }
        let dir = test_pki().dir.join("configs");
        std::fs::create_dir_all(&dir).expect("create target/vm-pki/…/configs");
        let out = dir.join(format!("{}.yaml", self.name));
        let at = self.qemu_args.iter().position(|a| {
            a.starts_with("name=opt/keel/config,file=")
                || a.starts_with("name=opt/com.coreos/config,file=")
        });
        match at {
            Some(i) => {
                let (head, file) = self.qemu_args[i]
                    .split_once(",file=")
                    .map(|(h, f)| (h.to_string(), f.to_string()))
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("read the cloud-config {file}: {e}"));
                std::fs::write(&out, with_api(&text)).expect("write the config copy");
                self.qemu_args[i] = format!("{head},file={}", out.display());
            }
            None => {
                std::fs::write(&out, with_api("#cloud-config\n")).expect("write the config");
                self.cloud_config(&out);
            }
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

pub use keel_testkit::free_port;

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
    pub fn start(mut cfg: VmConfig) -> Vm {
        cfg.add_api();
        let build = build_dir();
        let kernel = cfg
            .kernel
            .clone()
            .unwrap_or_else(|| build.join("kernel/bzImage"));
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
            .env_remove("KEEL_NETBOOT_URL")
            .env_remove("KEEL_UEFI_NIC_ROM")
            .env("KEEL_NETBOOT", build.join("netboot"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if cfg.panic_arg {
            cmd.env_remove("KEEL_PANIC_ARG");
        } else {
            cmd.env("KEEL_PANIC_ARG", "");
        }
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
        cmd.envs(cfg.env.iter().map(|(k, v)| (k, v)));
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
        self.try_wait_for(marker, timeout)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// Wait until the console shows `marker`; the time since qemu started,
    /// or why it did not (a fatal line, qemu's exit, the timeout) with the
    /// console's tail.
    pub fn try_wait_for(&mut self, marker: &str, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.console;
        let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut fatal_seen: Option<Instant> = None;
        loop {
            if c.text.contains(marker) {
                return Ok(self.started.elapsed());
            }
            let failed = FAIL_FAST.iter().find(|f| c.text.contains(**f));
            let now = Instant::now();
            // A fatal line is reported whole: the serial console may still
            // be printing its reason (up to 2 s more).
            if let Some(f) = failed {
                let whole = c
                    .text
                    .find(*f)
                    .is_some_and(|at| c.text[at..].contains('\n'));
                let seen = *fatal_seen.get_or_insert(now);
                if !whole && !c.closed && now < deadline && now < seen + Duration::from_secs(2) {
                    c = cv
                        .wait_timeout(c, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
            }
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
                return Err(format!(
                    "{why} waiting {timeout:?} for {marker:?}; console tail:\n{tail}"
                ));
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

    /// The forwarded API port's URL (HTTPS; see [`test_pki`]).
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// A client with the test PKI's certificate `who` (`admin`, `reader`).
    pub fn client_as(&self, who: &str) -> Client {
        Client::new(Endpoint::Https {
            addr: ([127, 0, 0, 1], self.api_port).into(),
            host: "127.0.0.1".into(),
        })
        .with_tls(&test_pki().client_files(who))
        .expect("the test PKI's files")
    }

    /// Send `bytes` as they are over a TLS connection to the API (with the
    /// admin certificate) and return what the node answers until it closes
    /// (at most 20 s): for malformed requests no HTTP client would send.
    pub fn raw_tls(&self, bytes: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let files = test_pki().client_files("admin");
        let config = keel_tls::client_config(&files).expect("the test PKI's files");
        let name = keel_tls::server_name("127.0.0.1").expect("an IP address");
        let port = self.api_port;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to the API port");
            let mut t = keel_tls::connect(config, name, s)
                .await
                .expect("TLS handshake with the node");
            let _ = t.write_all(bytes).await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), t.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        })
    }

    /// A client with the test PKI's admin certificate.
    pub fn client(&self) -> Client {
        self.client_as("admin")
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

    /// The answer the test helper's `unix-json,/run/keel/api.sock,PATH`
    /// printed (the API through the node's unix socket: for nodes whose TCP
    /// port is closed).
    pub fn unix_json<T: serde::de::DeserializeOwned>(&mut self, path: &str) -> T {
        let marker = format!("test-helper: unix-json {path}: ");
        self.wait_for(&marker, Duration::from_secs(60));
        // The serial line takes a while to carry a few KiB: wait for the
        // line's end.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.console();
            let rest = c.split_once(&marker).map_or("", |(_, r)| r);
            if let Some((line, _)) = rest.split_once('\n') {
                return serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("{}: {path} over the unix socket: {e}: {line}", self.name)
                });
            }
            assert!(
                Instant::now() < deadline,
                "{}: the unix-json line for {path} never ended: {rest}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
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
            .env("KEELCONFIG", test_pki().file("keelconfig"))
            .env_remove("KEEL_CACERT")
            .env_remove("KEEL_CERT")
            .env_remove("KEEL_KEY")
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
