//! Privileged tests: fork, confine the child with `keel_sys::confine`, and
//! check from inside what a container process can and cannot do. Each child
//! reports the first failed check through a pipe and its exit status.
//!
//! They need root (to change uid and drop capabilities) and skip otherwise.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Command;

use keel_confine::{default_filter, to_kernel, CapSet, Capability};
use keel_sys::confine::{confine_child, Prepared, Step};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

const DEFAULT_MASK: u64 = 0x0000_0000_a804_25fb;
const NOBODY: u32 = 65534;

/// The confinement tests need root (setuid, capability drops); they skip
/// otherwise (and fail in CI).
fn is_root() -> bool {
    keel_testkit::need_root()
}

fn prepared(caps: CapSet, uid: u32, gid: u32, groups: &[u32]) -> Prepared {
    let filter = to_kernel(&default_filter(&caps).expect("compile filter"));
    Prepared::new(caps.bits(), &filter, uid, gid, groups).expect("prepare")
}

/// Run `check` in a forked child and return what it reported.
fn in_child(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the child only runs `check` and then `_exit`s; it never returns
    // into the test harness. Other test threads are not copied; glibc resets
    // its allocator locks in the child of fork(), so the checks may allocate.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(read);
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
                Ok(Ok(())) => 0,
                Ok(Err(msg)) => report(&write, &msg),
                Err(_) => report(&write, "check panicked"),
            };
            // SAFETY: _exit ends the child at once, without running the
            // harness's atexit handlers or unwinding into its frames.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write);
            let mut msg = String::new();
            File::from(read)
                .read_to_string(&mut msg)
                .expect("read child's report");
            match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, _) => Err(msg),
                other => Err(format!("child ended with {other:?}; it said: {msg}")),
            }
        }
    }
}

fn report(pipe: &OwnedFd, msg: &str) -> i32 {
    let _ = nix::unistd::write(pipe, msg.as_bytes());
    1
}

/// A raw syscall with integer (or null) arguments only.
fn raw(nr: libc::c_long, args: [libc::c_long; 3]) -> Result<libc::c_long, Errno> {
    // SAFETY: callers pass integers and null pointers, never addresses of our
    // memory: the kernel (or the filter before it) rejects or ignores them.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn expect_errno<T: std::fmt::Debug>(
    what: &str,
    got: Result<T, Errno>,
    want: Errno,
) -> Result<(), String> {
    match got {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: expected {want}, got {other:?}")),
    }
}

fn expect_ok<T, E: std::fmt::Debug>(what: &str, got: Result<T, E>) -> Result<T, String> {
    got.map_err(|e| format!("{what}: expected success, got {e:?}"))
}

/// A field of a /proc/<pid>/status text, e.g. `CapEff`.
fn field<'a>(status: &'a str, name: &str) -> Result<&'a str, String> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .ok_or_else(|| format!("no {name} in status"))
}

fn expect_field(status: &str, name: &str, want: &str) -> Result<(), String> {
    let got = field(status, name)?;
    if got == want {
        Ok(())
    } else {
        Err(format!("{name}: expected {want:?}, got {got:?}"))
    }
}

fn own_status() -> Result<String, String> {
    std::fs::read_to_string("/proc/self/status").map_err(|e| format!("read status: {e}"))
}

fn confine(p: &Prepared) -> Result<(), String> {
    confine_child(p).map_err(|(step, errno)| step.error(errno).to_string())
}

/// What the default profile refuses, checked from a confined process.
fn refusals() -> Result<(), String> {
    expect_errno(
        "unshare(CLONE_NEWUSER)",
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER),
        Errno::EPERM,
    )?;
    expect_errno(
        "mount tmpfs",
        nix::mount::mount(
            Some("none"),
            "/mnt",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ),
        Errno::EPERM,
    )?;
    // Without the filter, clone3 with no arguments is EINVAL.
    expect_errno("clone3", raw(libc::SYS_clone3, [0, 0, 0]), Errno::ENOSYS)?;
    expect_errno(
        "kexec_load",
        raw(libc::SYS_kexec_load, [0, 0, 0]),
        Errno::EPERM,
    )?;
    expect_errno(
        "init_module",
        raw(libc::SYS_init_module, [0, 0, 0]),
        Errno::EPERM,
    )?;
    expect_errno("bpf", raw(libc::SYS_bpf, [0, 0, 0]), Errno::EPERM)?;
    // Without the filter, setns on a bad fd is EBADF.
    expect_errno("setns", raw(libc::SYS_setns, [-1, 0, 0]), Errno::EPERM)?;
    // The filter lets ptrace through (as moby does); the kernel refuses to
    // attach to a process holding capabilities we lack.
    expect_errno(
        "ptrace(PTRACE_ATTACH, 1)",
        nix::sys::ptrace::attach(Pid::from_raw(1)),
        Errno::EPERM,
    )?;
    expect_errno(
        "socket(AF_VSOCK)",
        raw(
            libc::SYS_socket,
            [libc::AF_VSOCK.into(), libc::SOCK_STREAM.into(), 0],
        ),
        Errno::EPERM,
    )?;
    // ADDR_NO_RANDOMIZE is not among moby's personality values.
    expect_errno(
        "personality(ADDR_NO_RANDOMIZE)",
        raw(libc::SYS_personality, [0x0040000, 0, 0]),
        Errno::EPERM,
    )?;
    // An x32 getpid: without the filter ENOSYS (or a pid with x32 enabled).
    let x32_getpid = libc::SYS_getpid | 0x4000_0000;
    expect_errno("x32 getpid", raw(x32_getpid, [0, 0, 0]), Errno::EPERM)?;
    Ok(())
}

/// Ordinary work a container does, which must still succeed.
fn ordinary_work() -> Result<(), String> {
    let pid = expect_ok("getpid", raw(libc::SYS_getpid, [0, 0, 0]))?;
    if pid != libc::c_long::from(nix::unistd::getpid().as_raw()) {
        return Err(format!("getpid returned {pid}"));
    }
    let (r, w) = expect_ok("pipe2", nix::unistd::pipe())?;
    expect_ok("write", nix::unistd::write(&w, b"ok"))?;
    let mut buf = [0u8; 2];
    expect_ok(
        "read",
        nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut buf),
    )?;
    expect_ok("openat", File::open("/proc/self/status"))?;
    let len: libc::size_t = 1 << 20;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing overlaps nothing of ours; it is unmapped right after.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(format!("mmap: {}", Errno::last()));
    }
    // SAFETY: `addr` is the mapping of `len` bytes made just above.
    unsafe { libc::munmap(addr, len) };
    expect_ok(
        "socket(AF_UNIX)",
        raw(
            libc::SYS_socket,
            [libc::AF_UNIX.into(), libc::SOCK_STREAM.into(), 0],
        ),
    )?;
    expect_ok(
        "personality query",
        raw(libc::SYS_personality, [0xffff_ffff, 0, 0]),
    )?;

    // fork is clone without namespace flags.
    // SAFETY: the grandchild only calls _exit.
    match expect_ok("fork", unsafe { fork() })? {
        // SAFETY: _exit ends the grandchild at once.
        ForkResult::Child => unsafe { libc::_exit(7) },
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 7)) => {}
            other => return Err(format!("forked child: {other:?}")),
        },
    }
    // posix_spawn tries clone3 first and must fall back to clone on ENOSYS;
    // then execve.
    let status = expect_ok("spawn /bin/true", Command::new("/bin/true").status())?;
    if !status.success() {
        return Err(format!("/bin/true: {status}"));
    }
    Ok(())
}

#[test]
fn last_capability_agrees_with_sys() {
    assert_eq!(
        u32::from(keel_confine::LAST_CAP),
        keel_sys::confine::LAST_CAP
    );
}

#[test]
fn root_with_default_caps() {
    if !is_root() {
        return;
    }
    let p = prepared(CapSet::defaults(), 0, 0, &[0]);
    let outcome = in_child(|| {
        confine(&p)?;
        let status = own_status()?;
        expect_field(&status, "NoNewPrivs", "1")?;
        expect_field(&status, "Seccomp", "2")?;
        let mask = format!("{DEFAULT_MASK:016x}");
        for set in ["CapBnd", "CapEff", "CapPrm"] {
            expect_field(&status, set, &mask)?;
        }
        expect_field(&status, "CapAmb", "0000000000000000")?;
        refusals()?;
        ordinary_work()
    });
    if let Err(msg) = outcome {
        panic!("confined root child: {msg}");
    }
}

#[test]
fn unprivileged_user_has_no_caps_after_execve() {
    if !is_root() {
        return;
    }
    let p = prepared(CapSet::defaults(), NOBODY, NOBODY, &[NOBODY]);
    let outcome = in_child(|| {
        confine(&p)?;
        refusals()?;
        let out = expect_ok(
            "run cat",
            Command::new("/bin/cat").arg("/proc/self/status").output(),
        )?;
        let exec_status = String::from_utf8_lossy(&out.stdout);
        expect_field(&exec_status, "CapBnd", &format!("{DEFAULT_MASK:016x}"))?;
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            expect_field(&exec_status, set, "0000000000000000")?;
        }
        expect_field(&exec_status, "NoNewPrivs", "1")
    });
    if let Err(msg) = outcome {
        panic!("confined nobody child: {msg}");
    }
}

#[test]
fn unprivileged_user_with_ambient_keeps_caps_across_execve() {
    if !is_root() {
        return;
    }
    let p = prepared(CapSet::defaults(), NOBODY, NOBODY, &[NOBODY]).with_ambient();
    let outcome = in_child(|| {
        confine(&p)?;
        let status = own_status()?;
        expect_field(&status, "Uid", "65534\t65534\t65534\t65534")?;
        expect_field(&status, "Gid", "65534\t65534\t65534\t65534")?;
        expect_field(&status, "Groups", "65534")?;
        refusals()?;
        ordinary_work()?;
        // After execve, the ambient set is what keeps the capabilities of a
        // non-root process.
        let out = expect_ok(
            "run cat",
            Command::new("/bin/cat").arg("/proc/self/status").output(),
        )?;
        let exec_status = String::from_utf8_lossy(&out.stdout);
        let mask = format!("{DEFAULT_MASK:016x}");
        for set in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
            expect_field(&exec_status, set, &mask)?;
        }
        expect_field(&exec_status, "NoNewPrivs", "1")?;
        expect_field(&exec_status, "Seccomp", "2")
    });
    if let Err(msg) = outcome {
        panic!("confined nobody child: {msg}");
    }
}

#[test]
fn sys_admin_opens_namespaces_and_clone3() {
    if !is_root() {
        return;
    }
    let mut caps = CapSet::defaults();
    caps.insert(Capability::SysAdmin);
    let p = prepared(caps, 0, 0, &[]);
    let outcome = in_child(|| {
        confine(&p)?;
        expect_ok(
            "unshare(CLONE_NEWUTS)",
            nix::sched::unshare(CloneFlags::CLONE_NEWUTS),
        )?;
        // The kernel itself now sees clone3, and refuses the empty arguments.
        expect_errno("clone3", raw(libc::SYS_clone3, [0, 0, 0]), Errno::EINVAL)?;
        // Still no module loading: that needs CAP_SYS_MODULE.
        expect_errno(
            "init_module",
            raw(libc::SYS_init_module, [0, 0, 0]),
            Errno::EPERM,
        )
    });
    if let Err(msg) = outcome {
        panic!("confined sys_admin child: {msg}");
    }
}

#[test]
fn a_failing_step_is_named() {
    if !is_root() {
        return;
    }
    let p = prepared(CapSet::empty(), NOBODY, NOBODY, &[]);
    let outcome = in_child(|| {
        confine(&p)?;
        // A second round, now without CAP_SETPCAP, fails at its first step.
        match confine_child(&p) {
            Err((Step::DropBounding, libc::EPERM)) => Ok(()),
            other => Err(format!("second confinement: {other:?}")),
        }
    });
    if let Err(msg) = outcome {
        panic!("confined child: {msg}");
    }
}
