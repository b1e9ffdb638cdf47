//! Start a container's first process: `clone3` into new namespaces and
//! straight into its cgroup, then, in the child, build its mount table,
//! enter its root and exec.
//!
//! keel is multi-threaded, so the child (a copy of one thread of a process
//! whose other threads may hold the allocator's or any other lock) does only
//! async-signal-safe work: raw system calls on data the parent prepared
//! ([`ChildSpec`]: every path, argument and variable is a `CString` built
//! before the clone). No allocation, no locks, no panics, no `std::io`.
//!
//! The child, in order:
//! 00. `prctl(PR_SET_DUMPABLE, 0)`, before anything else: until its execve
//!    the child is a copy of PID 1 (its memory, its descriptors), and once
//!    it is in a container's namespaces that container's root could
//!    ptrace it or read its memory (`process_vm_readv`, /proc/PID/mem) and
//!    take over a process that still holds keel's privileges (runc's
//!    CVE-2016-9962). A non-dumpable process is out of reach of anyone
//!    without CAP_SYS_PTRACE over it; the forked process of a joined pid
//!    namespace inherits it, and execve makes the program dumpable again
//!    (with the container's credentials by then);
//! 0. join the network namespace the parent prepared, if any;
//! 0b. write the container's sysctls ([`ChildSpec::sysctls`]): open,
//!    write, close of files under the node's /proc/sys (PID 1's /proc,
//!    still this process's until step 4). A sysctl file acts on the
//!    namespaces of the process that writes it, not on those of the proc
//!    mount it is found through: the child is now in the container's
//!    network namespace (joined above, or its own from `CLONE_NEWNET`) and
//!    IPC namespace (`CLONE_NEWIPC`), so these are the container's. Before
//!    the mount plan, which makes the container's /proc/sys read-only;
//! 1. make every mount private, so nothing it mounts propagates to the host;
//! 2. run the mount plan ([`MountOp`]s: /proc, /dev and its nodes, /sys,
//!    masked and read-only paths, the container's own mounts), all under
//!    the root's host path, before the root changes;
//! 3. set the host name (it has its own UTS namespace);
//! 4. `pivot_root(".", ".")` in the root and detach the old root, so no
//!    path leads back to the host's tree;
//! 5. put /dev/null and the log pipes on fds 0, 1, 2 and *close* every
//!    other descriptor (not only mark it close-on-exec: a directory fd left
//!    open until exec is a way out through `/proc/self/fd/N`);
//! 6. change to the working directory (after 5, for the same reason), and
//!    set the resource limits (before 7 drops CAP_SYS_RESOURCE);
//! 7. the confinement hook (user, capabilities, no_new_privs, seccomp:
//!    seccomp last, and it allows execve);
//! 8. execve.
//!
//! A failing step writes `(step, errno)` to a close-on-exec pipe and exits
//! 127; the parent reads the pipe: end of file means the exec happened.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::SysError;

/// The steps of the child, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    MakePrivate = 1,
    NotDumpable = 18,
    JoinNetns = 15,
    JoinContainer = 17,
    Mount = 2,
    Mkdir = 3,
    CreateFile = 4,
    Symlink = 5,
    Hostname = 6,
    Loopback = 14,
    Rlimit = 16,
    PivotRoot = 7,
    DetachOldRoot = 8,
    Stdio = 9,
    CloseFds = 10,
    Chdir = 11,
    Signals = 19,
    Sysctl = 20,
    Confine = 12,
    Exec = 13,
}

impl Step {
    fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        [
            NotDumpable,
            JoinContainer,
            JoinNetns,
            MakePrivate,
            Mount,
            Mkdir,
            CreateFile,
            Symlink,
            Hostname,
            Loopback,
            Rlimit,
            PivotRoot,
            DetachOldRoot,
            Stdio,
            CloseFds,
            Chdir,
            Signals,
            Sysctl,
            Confine,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::NotDumpable => "prctl(PR_SET_DUMPABLE, 0)",
            Step::JoinNetns => "join the network namespace",
            Step::JoinContainer => "join the container's namespaces",
            Step::MakePrivate => "make mounts private",
            Step::Mount => "mount",
            Step::Mkdir => "create a mount point",
            Step::CreateFile => "create a device node's mount point",
            Step::Symlink => "create a /dev link",
            Step::Hostname => "set the host name",
            Step::Loopback => "bring lo up",
            Step::Rlimit => "set a resource limit",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detach the old root",
            Step::Stdio => "set up fds 0-2",
            Step::CloseFds => "close inherited fds",
            Step::Chdir => "change to the working directory",
            Step::Signals => "reset the signal mask and ignored signals",
            Step::Sysctl => "write a sysctl",
            Step::Confine => "confine (user, capabilities, seccomp)",
            Step::Exec => "exec",
        }
    }
}

/// What a mount step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `mount(source, target, fstype, flags, data)`; the target directory is
    /// created first when missing.
    Mount,
    /// A bind mount of `source`, then a read-only remount of it when `flags`
    /// has `MS_RDONLY`. Creates the target as a file (for device nodes and
    /// files) when `file` is set, else as a directory.
    Bind { file: bool },
    /// Attach the detached mount tree `fd` (from
    /// [`crate::fs::clone_tree`]: a bind source resolved and cloned in the
    /// parent) at `target` with `move_mount`, make it private, then remount
    /// it nosuid, nodev, and read-only when `flags` has `MS_RDONLY`. The
    /// target is created first as a file when `file` is set, else as a
    /// directory. No path of the source is looked up in the child.
    Tree { fd: RawFd, file: bool },
    /// Hide `target`: /dev/null bound over a file, a read-only empty tmpfs
    /// over a directory. A missing target is skipped.
    Mask,
    /// Make `target` read-only where it is (bind onto itself, remount).
    /// A missing target is skipped.
    ReadOnly,
    /// A symbolic link `target` -> `source`.
    Symlink,
}

/// One step of the child's mount plan; paths are host paths (under the
/// container root's host path), prepared by the parent.
#[derive(Debug)]
pub struct MountOp {
    pub kind: MountKind,
    pub source: Option<CString>,
    pub target: CString,
    pub fstype: Option<CString>,
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
}

/// A hook the child runs after the root change and just before exec: it
/// must be async-signal-safe. Returns the errno on failure.
pub type ConfineFn<'a> = &'a (dyn Fn() -> Result<(), i32> + Sync);

/// A sysctl the child writes in its own namespaces: `value` into the file
/// `path` (the node's `/proc/sys/...`).
#[derive(Debug)]
pub struct SysctlWrite {
    pub path: CString,
    pub value: CString,
}

/// Everything the child needs, prepared by the parent.
pub struct ChildSpec<'a> {
    /// The root's host path (already an overlay mount).
    pub root: CString,
    pub mounts: Vec<MountOp>,
    pub hostname: Option<CString>,
    /// The working directory inside the container.
    pub cwd: CString,
    /// Absolute path of the program inside the container.
    pub program: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// New namespaces (`CLONE_NEW*`).
    pub namespaces: u64,
    /// An open directory fd of the cgroup the child starts in.
    pub cgroup: RawFd,
    /// fds 1 and 2 of the child (write ends of the log pipes).
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub confine: Option<ConfineFn<'a>>,
    /// Bring `lo` up (the child has a network namespace of its own).
    pub loopback_up: bool,
    /// A network namespace prepared by the parent (connected to a bridge
    /// before the child exists): the child joins it first, instead of a
    /// new one from `CLONE_NEWNET`.
    pub netns: Option<RawFd>,
    /// `(resource, soft, hard)` for setrlimit, before the confinement
    /// drops CAP_SYS_RESOURCE; `u64::MAX` is unlimited.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Written after the network namespace is joined, before the mount
    /// plan (see the module's doc, step 0b).
    pub sysctls: Vec<SysctlWrite>,
    /// Join the namespaces (`namespaces`) of a running container, by the
    /// pidfd of its first process, instead of building new ones: a command
    /// run inside it (a health check). `root`, `mounts`, `hostname`,
    /// `loopback_up`, `netns` and `sysctls` are then unused.
    pub join: Option<RawFd>,
    /// The owner fds 1 and 2 (the log pipes) are given, for a program that
    /// is not root: it may then open `/dev/stdout` (`/proc/self/fd/1`),
    /// which checks the pipe's owner, as runc's fixStdioPermissions does.
    pub stdio_owner: Option<(u32, u32)>,
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// A pidfd of the child: signals sent through it cannot reach a
    /// recycled pid.
    pub pidfd: OwnedFd,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn opt_ptr(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Start the child. Blocks only until the child has exec'd or failed.
pub fn spawn(spec: &ChildSpec) -> Result<Spawned, SysError> {
    let argv = ptrs(&spec.argv);
    let envp = ptrs(&spec.env);
    let devnull = c"/dev/null";
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: `pipe` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SysError::Spawn {
            step: "error pipe",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let (err_r, err_w) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let mut pidfd: RawFd = -1;
    let new_namespaces = if spec.join.is_some() {
        0
    } else {
        spec.namespaces
    };
    let args = CloneArgs {
        flags: new_namespaces | libc::CLONE_PIDFD as u64 | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: spec.cgroup as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM forks: the child gets a copy of this
    // thread's memory. `args` is a valid clone_args of the size passed, and
    // `pidfd` outlives the call. In the child (return value 0) only
    // `child()` runs, which does async-signal-safe syscalls on memory
    // prepared above, then execs or `_exit`s: it never returns here.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        let Failed { step, errno, index } = child(spec, &argv, &envp, devnull, err_w.as_raw_fd());
        let (s, e, i) = (
            (step as u32).to_ne_bytes(),
            errno.to_ne_bytes(),
            index.to_ne_bytes(),
        );
        let msg = [
            s[0], s[1], s[2], s[3], e[0], e[1], e[2], e[3], i[0], i[1], i[2], i[3],
        ];
        // SAFETY: writing 12 bytes from a stack array to our pipe fd, then
        // `_exit`: both async-signal-safe.
        unsafe {
            libc::write(err_w.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return Err(SysError::Spawn {
            step: "clone3",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: clone3 succeeded with CLONE_PIDFD: the kernel stored a new
    // pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(err_w);
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of a stack buffer from a
        // pipe fd we own.
        let n = unsafe {
            libc::read(
                err_r.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    if got == 0 {
        return Ok(Spawned {
            pid: pid as i32,
            pidfd,
        });
    }
    let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let index = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if step == Step::Sysctl as u32 {
        if let Some(w) = spec.sysctls.get(index as usize) {
            return Err(SysError::ChildSysctl {
                pid: pid as i32,
                path: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(w.path.as_bytes())),
                value: w.value.to_string_lossy().into_owned(),
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
    }
    Err(SysError::Child {
        pid: pid as i32,
        step: Step::from_u32(step).map_or("unknown step", Step::as_str),
        source: std::io::Error::from_raw_os_error(errno),
    })
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// How the child failed: the step, its errno, and which item of the step
/// (the index of a sysctl; 0 for the others).
struct Failed {
    step: Step,
    errno: i32,
    index: u32,
}

impl From<(Step, i32)> for Failed {
    fn from((step, errno): (Step, i32)) -> Failed {
        Failed {
            step,
            errno,
            index: 0,
        }
    }
}

/// Returns only on failure.
fn child(
    spec: &ChildSpec,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    devnull: &CStr,
    err_fd: RawFd,
) -> Failed {
    // SAFETY: raw system calls with pointers into NUL-terminated strings
    // and arrays the parent built before the clone and that live in this
    // process's copy of its memory; nothing here allocates or takes a lock.
    unsafe {
        // Step 00: first, before any namespace is joined or built.
        if libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) != 0 {
            return (Step::NotDumpable, errno()).into();
        }
        if let Some(pidfd) = spec.join {
            // One call joins them all (Linux 5.8); joining the mount
            // namespace also moves root and cwd to the container's root.
            if libc::setns(pidfd, spec.namespaces as libc::c_int) != 0 {
                return (Step::JoinContainer, errno()).into();
            }
            // A pid namespace is entered by children only: fork once (a raw
            // clone, without glibc's fork handlers and their locks). This
            // process waits and exits as the command did; the command dies
            // with it (a timeout kills this one).
            if spec.namespaces & libc::CLONE_NEWPID as u64 != 0 {
                let pid = libc::syscall(
                    libc::SYS_clone,
                    libc::SIGCHLD as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                );
                if pid < 0 {
                    return (Step::JoinContainer, errno()).into();
                }
                if pid > 0 {
                    libc::close(err_fd);
                    let mut status = 0;
                    while libc::waitpid(pid as libc::pid_t, &mut status, 0) < 0
                        && errno() == libc::EINTR
                    {}
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code);
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return (Step::JoinContainer, errno()).into();
                }
            }
        } else if let Err(e) = build(spec, devnull) {
            return e;
        }
        let null = libc::open(devnull.as_ptr(), libc::O_RDWR);
        if null < 0 {
            return (Step::Stdio, errno()).into();
        }
        for (from, to) in [(null, 0), (spec.stdout, 1), (spec.stderr, 2)] {
            if from != to && libc::dup2(from, to) < 0 {
                return (Step::Stdio, errno()).into();
            }
        }
        if let Some((uid, gid)) = spec.stdio_owner {
            for fd in [1, 2] {
                if libc::fchown(fd, uid, gid) != 0 {
                    return (Step::Stdio, errno()).into();
                }
            }
        }
        // Close everything from 3 up but the error pipe (close-on-exec).
        let hi = libc::c_uint::MAX;
        let e = err_fd as libc::c_uint;
        if e > 3 && libc::syscall(libc::SYS_close_range, 3u32, e - 1, 0u32) != 0 {
            return (Step::CloseFds, errno()).into();
        }
        if libc::syscall(libc::SYS_close_range, e + 1, hi, 0u32) != 0 {
            return (Step::CloseFds, errno()).into();
        }
        if libc::chdir(spec.cwd.as_ptr()) != 0 {
            return (Step::Chdir, errno()).into();
        }
        if let Err(e) = default_signals() {
            return (Step::Signals, e).into();
        }
        for &(resource, soft, hard) in &spec.rlimits {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource as _, &lim) != 0 {
                return (Step::Rlimit, errno()).into();
            }
        }
        if let Some(confine) = spec.confine {
            if let Err(e) = confine() {
                return (Step::Confine, e).into();
            }
        }
        libc::execve(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        (Step::Exec, errno()).into()
    }
}

/// The highest signal number (SIGRTMAX on Linux x86-64).
const NSIG: libc::c_int = 64;

/// The kernel's `struct sigaction` for rt_sigaction on x86-64.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// A program starts as a fresh process would: no signal blocked, none
/// ignored. The clone copies PID 1's thread, which blocks the signals its
/// signalfd reads (SIGCHLD, SIGTERM, SIGINT, ...) and ignores SIGPIPE;
/// execve keeps both the mask and ignored dispositions (handled ones it
/// resets itself). Raw rt_sigaction and rt_sigprocmask: glibc's wrappers
/// hide its own two real-time signals, which may be ignored too.
/// Async-signal-safe.
unsafe fn default_signals() -> Result<(), i32> {
    let set_size = std::mem::size_of::<u64>();
    for sig in 1..=NSIG {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        if libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            std::ptr::null::<KernelSigaction>(),
            &mut old as *mut KernelSigaction,
            set_size,
        ) != 0
        {
            return Err(errno());
        }
        if old.handler == libc::SIG_IGN {
            let dfl = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            if libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                set_size,
            ) != 0
            {
                return Err(errno());
            }
        }
    }
    let none: u64 = 0;
    if libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &none as *const u64,
        std::ptr::null_mut::<u64>(),
        set_size,
    ) != 0
    {
        return Err(errno());
    }
    Ok(())
}

/// Steps 0 to 4 of a new container: its network, mounts, host name and
/// root. Async-signal-safe.
unsafe fn build(spec: &ChildSpec, devnull: &CStr) -> Result<(), Failed> {
    // SAFETY: as in `child`: syscalls on prepared strings.
    unsafe {
        // First, so that /sys (mounted below) shows this namespace's links.
        if let Some(fd) = spec.netns {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err((Step::JoinNetns, errno()).into());
            }
        }
        // Step 0b: in the container's network and IPC namespaces now.
        for (i, w) in spec.sysctls.iter().enumerate() {
            if let Err(errno) = write_file(&w.path, &w.value) {
                return Err(Failed {
                    step: Step::Sysctl,
                    errno,
                    index: i as u32,
                });
            }
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err((Step::MakePrivate, errno()).into());
        }
        for m in &spec.mounts {
            mount_op(m, devnull).map_err(Failed::from)?;
        }
        if let Some(h) = &spec.hostname {
            if libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0 {
                return Err((Step::Hostname, errno()).into());
            }
        }
        if spec.loopback_up {
            if let Err(e) = loopback_up() {
                return Err((Step::Loopback, e).into());
            }
        }
        if libc::chdir(spec.root.as_ptr()) != 0 {
            return Err((Step::PivotRoot, errno()).into());
        }
        // pivot_root(".", "."): the old root ends up stacked under the new
        // one at "/", and the detach below takes it away.
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
            return Err((Step::PivotRoot, errno()).into());
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
            return Err((Step::DetachOldRoot, errno()).into());
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err((Step::DetachOldRoot, errno()).into());
        }
    }
    Ok(())
}

/// One mount step in the child. Async-signal-safe.
unsafe fn mount_op(m: &MountOp, devnull: &CStr) -> Result<(), (Step, i32)> {
    let t = m.target.as_ptr();
    // SAFETY: as in `child`: syscalls on prepared strings.
    unsafe {
        match m.kind {
            MountKind::Mount => {
                if libc::mkdir(t, 0o755) != 0 && errno() != libc::EEXIST {
                    return Err((Step::Mkdir, errno()));
                }
                if libc::mount(
                    opt_ptr(&m.source),
                    t,
                    opt_ptr(&m.fstype),
                    m.flags,
                    opt_ptr(&m.data).cast(),
                ) != 0
                {
                    return Err((Step::Mount, errno()));
                }
            }
            MountKind::Tree { fd, file } => {
                mount_point(t, file)?;
                if libc::syscall(
                    libc::SYS_move_mount,
                    fd,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    t,
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) != 0
                {
                    return Err((Step::Mount, errno()));
                }
                // The clone kept its source's propagation: nothing mounted
                // under it here may show on the node.
                if libc::mount(
                    std::ptr::null(),
                    t,
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err((Step::Mount, errno()));
                }
                remount(t, m.flags & libc::MS_RDONLY)?;
            }
            MountKind::Bind { file } => {
                mount_point(t, file)?;
                let flags = libc::MS_BIND | libc::MS_REC | (m.flags & !libc::MS_RDONLY);
                if libc::mount(
                    opt_ptr(&m.source),
                    t,
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) != 0
                {
                    return Err((Step::Mount, errno()));
                }
                // Device nodes (file binds of /dev/null and the like) keep
                // their mount's flags; a directory of the node's gets nosuid
                // and nodev, and read-only when asked.
                if !file || m.flags & libc::MS_RDONLY != 0 {
                    remount(t, m.flags & libc::MS_RDONLY)?;
                }
            }
            MountKind::Mask => {
                if libc::mount(
                    devnull.as_ptr(),
                    t,
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) == 0
                {
                    return Ok(());
                }
                match errno() {
                    libc::ENOENT => {}
                    libc::ENOTDIR => {
                        if libc::mount(
                            c"tmpfs".as_ptr(),
                            t,
                            c"tmpfs".as_ptr(),
                            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            c"size=0,mode=0755".as_ptr().cast(),
                        ) != 0
                        {
                            return Err((Step::Mount, errno()));
                        }
                    }
                    e => return Err((Step::Mount, e)),
                }
            }
            MountKind::ReadOnly => {
                if libc::mount(
                    t,
                    t,
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return match errno() {
                        libc::ENOENT => Ok(()),
                        e => Err((Step::Mount, e)),
                    };
                }
                remount(t, libc::MS_RDONLY)?;
            }
            MountKind::Symlink => {
                if libc::symlink(opt_ptr(&m.source), t) != 0 && errno() != libc::EEXIST {
                    return Err((Step::Symlink, errno()));
                }
            }
        }
    }
    Ok(())
}

/// Write `value` into the existing file `path` (a sysctl): open, one
/// write, close. Async-signal-safe.
fn write_file(path: &CStr, value: &CStr) -> Result<(), i32> {
    let bytes = value.to_bytes();
    // SAFETY: open, write and close on a NUL-terminated path and a byte
    // slice the parent prepared; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        );
        if fd < 0 {
            return Err(errno());
        }
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let e = errno();
        libc::close(fd);
        if n < 0 {
            return Err(e);
        }
        if n as usize != bytes.len() {
            return Err(libc::EIO);
        }
    }
    Ok(())
}

/// `lo` up in the calling process's network namespace, through the
/// SIOCSIFFLAGS ioctl (no netlink message to build). Async-signal-safe.
fn loopback_up() -> Result<(), i32> {
    // SAFETY: a datagram socket and two ioctls on a zeroed ifreq whose name
    // is a NUL-terminated "lo"; the socket is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let e = errno();
        libc::close(fd);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// Remount the bind mount `t` nosuid, nodev, plus `extra` (MS_RDONLY).
/// `move_mount`'s flag for a source given by descriptor, which libc does
/// not name.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Create the mount point `t`: a file when `file`, else a directory; one
/// that exists is kept. Async-signal-safe.
unsafe fn mount_point(t: *const libc::c_char, file: bool) -> Result<(), (Step, i32)> {
    // SAFETY: as in `child`: syscalls on a prepared string.
    unsafe {
        if file {
            let fd = libc::open(t, libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
            if fd < 0 {
                return Err((Step::CreateFile, errno()));
            }
            libc::close(fd);
        } else if libc::mkdir(t, 0o755) != 0 && errno() != libc::EEXIST {
            return Err((Step::Mkdir, errno()));
        }
    }
    Ok(())
}

unsafe fn remount(t: *const libc::c_char, extra: libc::c_ulong) -> Result<(), (Step, i32)> {
    // SAFETY: a remount of an existing bind mount; `t` is a prepared string.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            t,
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV | extra,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err((Step::Mount, errno()));
    }
    Ok(())
}

/// Send `sig` through a pidfd.
pub fn pidfd_signal(pidfd: &OwnedFd, sig: i32) -> Result<(), std::io::Error> {
    // SAFETY: pidfd_send_signal with a pidfd we own, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe whose read end is close-on-exec and non-blocking (for the log
/// reader) and whose write end is close-on-exec too (the child dup2s it
/// onto fd 1 or 2, which clears the flag there).
pub fn log_pipe() -> Result<(OwnedFd, OwnedFd), SysError> {
    let mut p = [0 as RawFd; 2];
    // SAFETY: `p` is a valid array of two ints.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SysError::Spawn {
            step: "log pipe",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded: both fds are new and ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(r.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(r.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    Ok((r, w))
}
