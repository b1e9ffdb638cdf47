//! The reference side of the container benchmark: Debian's crun, run in the
//! node by the test helper (`keel.run=/usr/lib/keel/test-helper,crun-bench,N`)
//! on the same busybox layer keel's containers use.
//!
//! 1. Wait until keel has unpacked the busybox image's layer into its store
//!    (the benchmark's config runs busybox containers from boot).
//! 2. Write two bundles' `config.json` ([`config`]): a process of
//!    `/bin/sleep 100000` and one of `/bin/true`, set up as keel sets up a
//!    container (see the function's docs).
//! 3. N times, start: mount the root (overlayfs of that layer and an upper
//!    on STATE, as keel does at every start), `crun create`, `crun start`,
//!    then wait until the container's process has exec'd `sleep` (its
//!    `/proc/PID/comm`, which the kernel sets during execve); the figure
//!    ends there, like keel's `start_ms`, which ends when the parent sees
//!    the exec happen. Then, untimed, `crun delete -f` and unmount.
//! 4. N times, run: mount the root, `crun run` of `/bin/true` until crun
//!    has been reaped (crun waits for its container). Then, untimed,
//!    `crun delete -f` (if anything is left) and unmount.
//!
//! The helper is a child subreaper, as containerd's shim is: the container
//! processes `crun create` leaves behind are its children, not keel's.
//! Every time is CLOCK_MONOTONIC (`std::time::Instant`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_config::model::Container;
use keel_confine::tables::{ALWAYS, BY_CAPABILITY, CLONE_NAMESPACE_FLAGS, PERSONALITY_ALLOWED};
use keel_confine::{CapSet, DEFAULT_CAPS};
use keel_containers::mounts::{MASKED, READ_ONLY};
use keel_containers::runtime::{environment, ImageRoot};
use serde_json::{json, Value};

/// A container of busybox with keel's defaults, for the tests to change.
fn a_container() -> Container {
    Container::new(
        "test",
        keel_config::model::ImageRef::try_from("busybox").unwrap(),
    )
}

/// keel's image store, where the busybox layer is unpacked (overlay form).
const LAYERS: &str = "/var/lib/keel/images/layers";
const CRUN: &str = "/usr/bin/crun";
/// Bundles and crun's state: a tmpfs, as crun's default /run/crun is.
const RUN: &str = "/run/crun-bench";
/// The writable layer, on STATE like keel's `/var/lib/keel/containers/NAME`.
const STATE: &str = "/var/lib/keel/crun-bench";
/// The container's name (and host name, and cgroup leaf).
pub const NAME: &str = "crunbench";
/// The busybox image's config environment (`keel-image oci --env PATH=/bin`).
const IMAGE_ENV: &str = "PATH=/bin";

/// The seccomp profile keel's filter enforces (`keel_confine`), in the OCI
/// form crun compiles with libseccomp: moby's default for x86_64 with
/// `caps`' conditional groups.
pub fn seccomp(caps: &CapSet) -> Value {
    let name = |n: &str| n.trim_start_matches("SYS_").to_string();
    let mut allowed: Vec<String> = ALWAYS.iter().map(|(n, _)| name(n)).collect();
    for (cap, group) in BY_CAPABILITY {
        if caps.contains(*cap) {
            allowed.extend(group.iter().map(|(n, _)| name(n)));
        }
    }
    allowed.sort();
    allowed.dedup();
    let mut rules = vec![json!({"names": allowed.clone(), "action": "SCMP_ACT_ALLOW"})];
    let arg_rule = |syscall: &str, op: &str, value: u64| {
        json!({"names": [syscall], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": value, "valueTwo": 0, "op": op}]})
    };
    let unconditional = |s: &str| allowed.iter().any(|a| a == s);
    if !caps.contains(keel_confine::Capability::SysAdmin) {
        // clone without namespace flags (OCI: value is the mask, valueTwo
        // the datum); clone3 looks absent.
        rules.push(arg_rule(
            "clone",
            "SCMP_CMP_MASKED_EQ",
            CLONE_NAMESPACE_FLAGS,
        ));
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": libc::ENOSYS}));
    }
    if !unconditional("personality") {
        for v in PERSONALITY_ALLOWED {
            rules.push(arg_rule("personality", "SCMP_CMP_EQ", v));
        }
    }
    if !unconditional("socket") {
        rules.push(arg_rule("socket", "SCMP_CMP_NE", libc::AF_VSOCK as u64));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    })
}

/// The OCI runtime config for a container running `args` in `rootfs`, set
/// up as keel sets up a `network: none` container of the busybox image:
/// new mount, pid, uts, ipc, cgroup and network namespaces; keel's /proc,
/// /dev, /sys and cgroup mounts with their flags; the same masked and
/// read-only paths (containerd's); containerd's default capabilities as
/// bounding, effective and permitted (none inheritable or ambient);
/// no_new_privs; the same seccomp policy; root, `/` as the working
/// directory, keel's environment; a cgroup with `memory.oom.group=1`.
///
/// Differences left: crun makes the device nodes in /dev with mknod on a
/// tmpfs without `nodev`, where keel binds the node's on a `nodev` tmpfs.
pub fn config(args: &[&str], rootfs: &Path) -> Value {
    let caps = CapSet::defaults();
    let cap_names: Vec<&str> = DEFAULT_CAPS.iter().map(|c| c.name()).collect();
    let c = Container {
        name: NAME.into(),
        ..a_container()
    };
    let img = ImageRoot {
        env: vec![IMAGE_ENV.into()],
        ..Default::default()
    };
    let env = environment(&c, &img, NAME);
    let mount = |dest: &str, typ: &str, src: &str, opts: &[&str]| json!({"destination": dest, "type": typ, "source": src, "options": opts});
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env,
            "cwd": "/",
            "capabilities": {
                "bounding": cap_names, "effective": cap_names, "permitted": cap_names,
                "inheritable": [], "ambient": [],
            },
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": NAME,
        "mounts": [
            mount("/proc", "proc", "proc", &["nosuid", "nodev", "noexec"]),
            mount("/dev", "tmpfs", "tmpfs", &["nosuid", "noexec", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", "devpts",
                  &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
            mount("/dev/shm", "tmpfs", "shm",
                  &["nosuid", "nodev", "noexec", "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "nodev", "noexec"]),
            mount("/sys", "sysfs", "sysfs", &["nosuid", "nodev", "noexec", "ro"]),
            mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "nodev", "noexec", "ro"]),
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
            ],
            "cgroupsPath": format!("/crun-bench/{NAME}"),
            "resources": {"unified": {"memory.oom.group": "1"}},
            "maskedPaths": MASKED,
            "readonlyPaths": READ_ONLY,
            "rootfsPropagation": "private",
            "seccomp": seccomp(&caps),
        },
    })
}

fn crun(args: &[&str]) -> Command {
    let mut c = Command::new(CRUN);
    c.args([
        "--cgroup-manager=cgroupfs",
        "--root",
        &format!("{RUN}/state"),
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    c
}

/// Run crun to completion; its stderr goes to a file so that a failure can
/// say why (a pipe would stay open in a detached container).
fn crun_ok(args: &[&str]) -> Result<(), String> {
    let log = format!("{RUN}/crun.err");
    let err = File::create(&log).map_err(|e| format!("create {log}: {e}"))?;
    let st = crun(args)
        .stderr(err)
        .status()
        .map_err(|e| format!("run {CRUN}: {e}"))?;
    if st.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    Err(format!("crun {}: {st}: {}", args.join(" "), text.trim()))
}

/// The busybox layer keel unpacked: the store directory holding
/// `bin/busybox` (complete: not a `.tmp-` one), waited for up to `limit`.
fn busybox_layer(limit: Duration) -> Result<PathBuf, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(rd) = std::fs::read_dir(LAYERS) {
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                // `.tmp-*` is a layer still being unpacked.
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
                })
                .filter(|p| p.join("bin/busybox").exists())
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no busybox layer under {LAYERS} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mount_root(layer: &Path, rootfs: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let (upper, work) = (format!("{STATE}/upper"), format!("{STATE}/work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {d}: {e}"))?;
    }
    let data = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        layer.display()
    );
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| format!("mount overlay on {}: {e}", rootfs.display()))
}

fn unmount_root(rootfs: &Path) {
    let _ = nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH);
}

/// Reap whatever exited among our adopted children (container processes
/// `crun create` left to us as their subreaper).
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Wait until `pid` runs `comm` (the kernel sets it in execve, once the old
/// image is gone). Yields the CPU between looks: the VM has one vCPU.
fn wait_exec(pid: i32, comm: &str, limit: Duration) -> Result<(), String> {
    let path = format!("/proc/{pid}/comm");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(t) = std::fs::read_to_string(&path) {
            if t.trim_end() == comm {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("pid {pid} did not exec {comm} within {limit:?}"));
        }
        // SAFETY: sched_yield has no arguments and no memory effects.
        unsafe { libc::sched_yield() };
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The figures of `n` runs of each kind, in milliseconds.
#[derive(Default)]
pub struct Figures {
    /// mount + create + start until the process has exec'd sleep.
    pub start: Vec<f64>,
    /// mount + run of /bin/true until crun is reaped.
    pub run_true: Vec<f64>,
    /// The overlay mount alone, within `start`.
    pub mount: Vec<f64>,
}

/// Run the benchmark (see the module docs).
pub fn run(n: u32) -> Result<Figures, String> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "become a subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    let layer = busybox_layer(Duration::from_secs(120))?;
    let rootfs = PathBuf::from(format!("{RUN}/rootfs"));
    for d in [&rootfs, &PathBuf::from(format!("{RUN}/state"))] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let bundle = |name: &str, args: &[&str]| -> Result<String, String> {
        let dir = format!("{RUN}/{name}");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {dir}: {e}"))?;
        let text = serde_json::to_string_pretty(&config(args, &rootfs)).unwrap_or_default();
        std::fs::write(format!("{dir}/config.json"), text)
            .map_err(|e| format!("write {dir}/config.json: {e}"))?;
        Ok(dir)
    };
    let sleep = bundle("sleep", &["/bin/sleep", "100000"])?;
    let truth = bundle("true", &["/bin/true"])?;
    let pid_file = format!("{RUN}/pid");
    let mut f = Figures::default();
    for i in 0..n {
        let t0 = Instant::now();
        mount_root(&layer, &rootfs)?;
        let mounted = t0.elapsed();
        crun_ok(&["create", "--bundle", &sleep, "--pid-file", &pid_file, NAME])
            .map_err(|e| format!("start {i}: {e}"))?;
        crun_ok(&["start", NAME]).map_err(|e| format!("start {i}: {e}"))?;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("start {i}: no pid in {pid_file}"))?;
        wait_exec(pid, "sleep", Duration::from_secs(30))?;
        f.start.push(ms(t0.elapsed()));
        f.mount.push(ms(mounted));
        crun_ok(&["delete", "-f", NAME]).map_err(|e| format!("delete {i}: {e}"))?;
        reap();
        unmount_root(&rootfs);
    }
    for i in 0..n {
        let t0 = Instant::now();
        mount_root(&layer, &rootfs)?;
        crun_ok(&["run", "--bundle", &truth, NAME]).map_err(|e| format!("run {i}: {e}"))?;
        f.run_true.push(ms(t0.elapsed()));
        let _ = crun(&["delete", "-f", NAME]).stderr(Stdio::null()).status();
        reap();
        unmount_root(&rootfs);
    }
    Ok(f)
}

/// `v` as the console line's comma-separated milliseconds.
pub fn line(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_matches_keel_setup() {
        let c = config(&["/bin/true"], Path::new("/r"));
        assert_eq!(c["process"]["args"][0], "/bin/true");
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(
            c["linux"]["maskedPaths"].as_array().unwrap().len(),
            MASKED.len()
        );
        assert_eq!(c["linux"]["readonlyPaths"][3], "/proc/sys");
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for want in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
            assert!(ns.contains(&want), "{want} missing from {ns:?}");
        }
        let caps = c["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        assert!(caps.iter().any(|c| c == "CAP_NET_BIND_SERVICE"));
        assert_eq!(c["process"]["env"][1], "PATH=/bin");
    }

    #[test]
    fn seccomp_follows_keel_filter() {
        let s = seccomp(&CapSet::defaults());
        let rules = s["syscalls"].as_array().unwrap();
        let allowed = rules[0]["names"].as_array().unwrap();
        // Plain names, no SYS_ prefix; chroot comes with CAP_SYS_CHROOT.
        assert!(allowed.iter().any(|n| n == "openat"));
        assert!(allowed.iter().any(|n| n == "chroot"));
        assert!(!allowed.iter().any(|n| n == "mount" || n == "clone"));
        let clone = rules.iter().find(|r| r["names"][0] == "clone").unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let clone3 = rules.iter().find(|r| r["names"][0] == "clone3").unwrap();
        assert_eq!(clone3["errnoRet"], libc::ENOSYS);
    }
}
