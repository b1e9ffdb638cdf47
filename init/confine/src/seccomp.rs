//! The default seccomp filter: moby's (Docker's) default profile for x86_64,
//! compiled to classic BPF with `seccompiler`.
//!
//! How the program is built:
//!
//! 1. Collect the allowed syscalls: the unconditional list below, plus each
//!    capability's group when the container holds that capability, plus the
//!    argument-checked rules (`clone` without namespace flags, `personality`
//!    with the values moby allows, `socket` other than `AF_VSOCK`).
//! 2. Let `seccompiler` compile that allow list with "allow" on a match and
//!    `ERRNO(EPERM)` otherwise (moby's `defaultErrnoRet: 1`).
//! 3. Put a short hand-assembled prologue in front of it for what a
//!    seccompiler filter cannot say, since it has a single match action and
//!    only compares syscall numbers for equality: kill the process on a foreign
//!    architecture, refuse x32 syscall numbers, and answer `clone3` with
//!    `ENOSYS` (unless CAP_SYS_ADMIN) so glibc falls back to `clone`, whose
//!    flags a filter can inspect. BPF jumps are relative and forward-only, so
//!    the prologue falls through into seccompiler's program unchanged.
//!
//! What is and is not carried over from moby's profile is listed on
//! [`default_filter`] and in docs/security.md.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::ConfineError;
use keel_types::{CapSet, Capability};

/// A syscall as (name, x86_64 number); the name is only for errors and tests.
pub type Syscall = (&'static str, i64);

/// libc's syscall numbers, plus the few x86_64 numbers it lacks.
#[allow(non_upper_case_globals)]
mod nr {
    pub use libc::*;
    /// io_pgetevents (Linux 4.18), arch/x86/entry/syscalls/syscall_64.tbl.
    pub const SYS_io_pgetevents: libc::c_long = 333;
}

/// `(name, SYS_name)` for each name, so a table entry cannot name one
/// syscall and number another.
macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), nr::$name)),*]
    };
}

/// Allowed for every container: moby's unconditional list, keeping the names
/// that exist on x86_64 (its 32-bit-only names such as `chown32`, `_llseek`,
/// `socketcall` or the `*_time64` calls have no x86_64 number).
#[rustfmt::skip]
pub const ALWAYS: &[Syscall] = syscalls![
    // Files, directories and their metadata.
    SYS_access, SYS_faccessat, SYS_faccessat2, SYS_chdir, SYS_fchdir, SYS_getcwd, SYS_chmod,
    SYS_fchmod, SYS_fchmodat, SYS_chown, SYS_fchown, SYS_fchownat, SYS_lchown, SYS_creat,
    SYS_open, SYS_openat, SYS_openat2, SYS_name_to_handle_at, SYS_link, SYS_linkat, SYS_symlink,
    SYS_symlinkat, SYS_unlink, SYS_unlinkat, SYS_rename, SYS_renameat, SYS_renameat2, SYS_mkdir,
    SYS_mkdirat, SYS_rmdir, SYS_mknod, SYS_mknodat, SYS_readlink, SYS_readlinkat, SYS_getdents,
    SYS_getdents64, SYS_stat, SYS_fstat, SYS_lstat, SYS_newfstatat, SYS_statx, SYS_statfs,
    SYS_fstatfs, SYS_truncate, SYS_ftruncate, SYS_fallocate, SYS_umask, SYS_utime, SYS_utimes,
    SYS_utimensat, SYS_futimesat, SYS_getxattr, SYS_lgetxattr, SYS_fgetxattr, SYS_setxattr,
    SYS_lsetxattr, SYS_fsetxattr, SYS_listxattr, SYS_llistxattr, SYS_flistxattr,
    SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr, SYS_flock, SYS_sync, SYS_syncfs,
    SYS_fsync, SYS_fdatasync, SYS_sync_file_range, SYS_fadvise64, SYS_readahead,
    SYS_inotify_init, SYS_inotify_init1, SYS_inotify_add_watch, SYS_inotify_rm_watch,
    SYS_fanotify_mark, SYS_landlock_create_ruleset, SYS_landlock_add_rule,
    SYS_landlock_restrict_self,
    // File descriptors and I/O.
    SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_pread64, SYS_pwrite64, SYS_preadv,
    SYS_pwritev, SYS_preadv2, SYS_pwritev2, SYS_lseek, SYS_close, SYS_close_range, SYS_dup,
    SYS_dup2, SYS_dup3, SYS_fcntl, SYS_ioctl, SYS_pipe, SYS_pipe2, SYS_splice, SYS_tee,
    SYS_vmsplice, SYS_sendfile, SYS_copy_file_range, SYS_select, SYS_pselect6, SYS_poll,
    SYS_ppoll, SYS_epoll_create, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_wait,
    SYS_epoll_pwait, SYS_epoll_pwait2, SYS_epoll_ctl_old, SYS_epoll_wait_old, SYS_eventfd,
    SYS_eventfd2, SYS_signalfd, SYS_signalfd4, SYS_timerfd_create, SYS_timerfd_gettime,
    SYS_timerfd_settime, SYS_memfd_create, SYS_io_setup, SYS_io_destroy, SYS_io_submit,
    SYS_io_cancel, SYS_io_getevents, SYS_io_pgetevents, SYS_io_uring_setup, SYS_io_uring_enter,
    SYS_io_uring_register,
    // Memory.
    SYS_brk, SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_madvise, SYS_mincore,
    SYS_msync, SYS_mlock, SYS_mlock2, SYS_mlockall, SYS_munlock, SYS_munlockall,
    SYS_remap_file_pages, SYS_membarrier, SYS_memfd_secret, SYS_pkey_alloc, SYS_pkey_free,
    SYS_pkey_mprotect,
    // Processes and threads (clone is argument-checked below, clone3 is ENOSYS).
    SYS_fork, SYS_vfork, SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_wait4,
    SYS_waitid, SYS_getpid, SYS_getppid, SYS_gettid, SYS_getpgid, SYS_setpgid, SYS_getpgrp,
    SYS_getsid, SYS_setsid, SYS_set_tid_address, SYS_prctl, SYS_arch_prctl, SYS_modify_ldt,
    SYS_get_thread_area, SYS_set_thread_area, SYS_futex, SYS_futex_waitv, SYS_get_robust_list,
    SYS_set_robust_list, SYS_rseq, SYS_pidfd_open, SYS_pidfd_send_signal, SYS_process_mrelease,
    SYS_seccomp, SYS_getrlimit, SYS_setrlimit, SYS_prlimit64, SYS_getrusage, SYS_times,
    SYS_sysinfo, SYS_uname, SYS_getrandom, SYS_restart_syscall,
    // Since Linux 4.8 a tracer can no longer bypass seccomp, so moby allows
    // ptrace and cross-process memory access to every container; the kernel's
    // own ptrace access checks still apply (same user, capabilities).
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev,
    // Scheduling and priorities.
    SYS_sched_yield, SYS_sched_getaffinity, SYS_sched_setaffinity, SYS_sched_getattr,
    SYS_sched_setattr, SYS_sched_getparam, SYS_sched_setparam, SYS_sched_getscheduler,
    SYS_sched_setscheduler, SYS_sched_get_priority_max, SYS_sched_get_priority_min,
    SYS_sched_rr_get_interval, SYS_getpriority, SYS_setpriority, SYS_ioprio_get, SYS_ioprio_set,
    SYS_getcpu,
    // Signals.
    SYS_kill, SYS_tkill, SYS_tgkill, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigpending,
    SYS_rt_sigqueueinfo, SYS_rt_tgsigqueueinfo, SYS_rt_sigreturn, SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait, SYS_sigaltstack, SYS_pause,
    // Time and timers (setting the clock needs CAP_SYS_TIME, below).
    SYS_time, SYS_gettimeofday, SYS_clock_gettime, SYS_clock_getres, SYS_clock_nanosleep,
    SYS_nanosleep, SYS_adjtimex, SYS_clock_adjtime, SYS_alarm, SYS_getitimer, SYS_setitimer,
    SYS_timer_create, SYS_timer_delete, SYS_timer_gettime, SYS_timer_settime,
    SYS_timer_getoverrun,
    // Identity: user, groups and capabilities (the kernel checks the
    // capabilities these need; the filter does not have to).
    SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid, SYS_getresuid, SYS_getresgid,
    SYS_getgroups, SYS_setuid, SYS_setgid, SYS_setreuid, SYS_setregid, SYS_setresuid,
    SYS_setresgid, SYS_setfsuid, SYS_setfsgid, SYS_setgroups, SYS_capget, SYS_capset,
    // Sockets (socket itself is argument-checked below).
    SYS_socketpair, SYS_bind, SYS_listen, SYS_accept, SYS_accept4, SYS_connect, SYS_shutdown,
    SYS_getsockname, SYS_getpeername, SYS_getsockopt, SYS_setsockopt, SYS_sendto, SYS_sendmsg,
    SYS_sendmmsg, SYS_recvfrom, SYS_recvmsg, SYS_recvmmsg,
    // System V and POSIX IPC (namespaced by the container's IPC namespace).
    SYS_msgget, SYS_msgsnd, SYS_msgrcv, SYS_msgctl, SYS_semget, SYS_semop, SYS_semtimedop,
    SYS_semctl, SYS_shmget, SYS_shmat, SYS_shmdt, SYS_shmctl, SYS_mq_open, SYS_mq_unlink,
    SYS_mq_timedsend, SYS_mq_timedreceive, SYS_mq_notify, SYS_mq_getsetattr,
];

/// Syscalls moby allows only when the container holds a capability: the
/// kernel would refuse most of them anyway, the filter also shuts the attack
/// surface behind them.
#[rustfmt::skip]
pub const BY_CAPABILITY: &[(Capability, &[Syscall])] = &[
    (Capability::DacReadSearch, syscalls![SYS_open_by_handle_at]),
    (
        Capability::SysAdmin,
        syscalls![
            // Mounts, old and new API.
            SYS_mount, SYS_umount2, SYS_mount_setattr, SYS_move_mount, SYS_open_tree,
            SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
            // Namespaces: entering or making new ones (clone without flag
            // checks and clone3 belong here too).
            SYS_unshare, SYS_setns, SYS_clone, SYS_clone3,
            // Host-wide knobs and observability.
            SYS_sethostname, SYS_setdomainname, SYS_syslog, SYS_quotactl, SYS_quotactl_fd,
            SYS_bpf, SYS_perf_event_open, SYS_fanotify_init, SYS_lookup_dcookie,
        ],
    ),
    (Capability::SysBoot, syscalls![SYS_reboot]),
    (Capability::SysChroot, syscalls![SYS_chroot]),
    (
        Capability::SysModule,
        syscalls![SYS_init_module, SYS_finit_module, SYS_delete_module],
    ),
    (Capability::SysPacct, syscalls![SYS_acct]),
    (
        Capability::SysPtrace,
        syscalls![SYS_kcmp, SYS_pidfd_getfd, SYS_process_madvise],
    ),
    (Capability::SysRawio, syscalls![SYS_iopl, SYS_ioperm]),
    (
        Capability::SysTime,
        syscalls![SYS_settimeofday, SYS_clock_settime],
    ),
    (Capability::SysTtyConfig, syscalls![SYS_vhangup]),
    (
        Capability::SysNice,
        syscalls![
            SYS_get_mempolicy, SYS_set_mempolicy, SYS_mbind, SYS_set_mempolicy_home_node,
        ],
    ),
    (Capability::Syslog, syscalls![SYS_syslog]),
    (Capability::Bpf, syscalls![SYS_bpf]),
    (Capability::Perfmon, syscalls![SYS_perf_event_open]),
];

/// The namespace bits of clone's flags (CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET): without CAP_SYS_ADMIN, clone is allowed
/// only with all of them clear, so a container cannot make namespaces.
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// The `personality(2)` values moby allows: PER_LINUX, PER_LINUX32,
/// UNAME26, PER_LINUX32|UNAME26, and 0xffffffff, which only queries.
/// Everything else (e.g. ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) is refused.
pub const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// AUDIT_ARCH_X86_64 (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE),
/// which libc does not export.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// Bit set in the syscall number of x32 ABI calls, which enter through the
/// x86_64 entry point and so carry the x86_64 architecture value.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The kernel's limit on a seccomp program's length (BPF_MAXINSNS).
pub const MAX_INSTRUCTIONS: usize = 4096;

// Offsets into `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// Compile the default filter for a container holding `caps`.
///
/// Carried over from moby's default profile (x86_64): the default action
/// `ERRNO(EPERM)`; the unconditional allow list; ptrace and
/// process_vm_readv/writev allowed (moby's rule for kernels ≥ 4.8, which keel
/// always runs on); every capability-conditional group; `clone` only without
/// namespace flags and `clone3` answered with `ENOSYS`, both unless
/// CAP_SYS_ADMIN; `personality` limited to moby's five values; `socket`
/// refused for `AF_VSOCK`.
///
/// Differences: the 32-bit-only and other-architecture names are left out
/// (there is no x86_64 number for them); x32 syscalls are refused with
/// `EPERM` by an explicit check instead of libseccomp's bad-architecture
/// action; arguments typed `int` (socket's domain, personality's persona) are
/// compared on their low 32 bits, which is what the kernel reads, where
/// libseccomp compares all 64; there is no notion of a minimum kernel
/// version. Syscalls newer than moby's list (e.g. fchmodat2) get `EPERM`,
/// as in moby, not runc's `ENOSYS` for unknown numbers.
pub fn default_filter(caps: &CapSet) -> Result<BpfProgram, ConfineError> {
    let allowed = allow_list(caps)?;
    let filter = SeccompFilter::new(
        allowed,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|source| ConfineError::CompileFilter { source })?;
    let body: BpfProgram = filter
        .try_into()
        .map_err(|source| ConfineError::CompileFilter { source })?;

    let mut program = prologue(caps);
    program.extend(body);
    if program.len() > MAX_INSTRUCTIONS {
        return Err(ConfineError::FilterTooLong {
            len: program.len(),
            max: MAX_INSTRUCTIONS,
        });
    }
    Ok(program)
}

/// The syscalls a container holding `caps` may make, with the argument rules
/// for those allowed only with some arguments (an empty rule list allows the
/// syscall whatever its arguments).
fn allow_list(caps: &CapSet) -> Result<BTreeMap<i64, Vec<SeccompRule>>, ConfineError> {
    let mut unconditional: BTreeSet<i64> = ALWAYS.iter().map(|(_, nr)| *nr).collect();
    for (cap, group) in BY_CAPABILITY {
        if caps.contains(*cap) {
            unconditional.extend(group.iter().map(|(_, nr)| *nr));
        }
    }

    let mut conditional: Vec<(Syscall, SeccompRule)> = Vec::new();
    if !caps.contains(Capability::SysAdmin) {
        let clone = ("clone", libc::SYS_clone);
        // clone(flags, ...): every namespace bit clear.
        conditional.push((
            clone,
            rule(
                clone,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
                0,
            )?,
        ));
    }
    let personality = ("personality", libc::SYS_personality);
    for value in PERSONALITY_ALLOWED {
        conditional.push((
            personality,
            rule(
                personality,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                value,
            )?,
        ));
    }
    // socket(domain, ...): any family but AF_VSOCK, which reaches the host
    // (or other guests) outside the container's network namespace.
    let socket = ("socket", libc::SYS_socket);
    conditional.push((
        socket,
        rule(
            socket,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_VSOCK as u64,
        )?,
    ));

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = unconditional
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    for ((_, nr), rule) in conditional {
        // An unconditional allow wins over argument rules for the same call.
        if !rules.get(&nr).is_some_and(Vec::is_empty) {
            rules.entry(nr).or_default().push(rule);
        }
    }
    Ok(rules)
}

/// A rule of one condition on argument 0, the only argument moby checks on x86_64.
fn rule(
    syscall: Syscall,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompRule, ConfineError> {
    SeccompCondition::new(0, len, op, value)
        .and_then(|condition| SeccompRule::new(vec![condition]))
        .map_err(|source| ConfineError::SeccompRule {
            syscall: syscall.0,
            source,
        })
}

/// The instructions before seccompiler's program (see the module docs).
fn prologue(caps: &CapSet) -> BpfProgram {
    let ld_abs = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let jset = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA);
    let insn = |code, k, jt, jf| sock_filter { code, jt, jf, k };

    let mut program = vec![
        // A syscall of another architecture (i386 via int 0x80) has other
        // numbers: the allow list would mean something else. Kill.
        insn(ld_abs, DATA_ARCH, 0, 0),
        insn(jeq, AUDIT_ARCH_X86_64, 1, 0),
        insn(ret, libc::SECCOMP_RET_KILL_PROCESS, 0, 0),
        // x32 calls carry the x86_64 arch value and numbers with bit 30 set.
        insn(ld_abs, DATA_NR, 0, 0),
        insn(jset, X32_SYSCALL_BIT, 0, 1),
        insn(ret, errno(libc::EPERM), 0, 0),
    ];
    if !caps.contains(Capability::SysAdmin) {
        // clone3 passes its flags in memory, out of a filter's reach: make it
        // look absent so libc retries with clone, whose flags are checked.
        program.extend([
            insn(jeq, libc::SYS_clone3 as u32, 0, 1),
            insn(ret, errno(libc::ENOSYS), 0, 0),
        ]);
    }
    program
}

/// The program as the kernel's `struct sock_filter` array, for
/// `keel_sys::confine::Prepared`. seccompiler keeps its own copy of the
/// struct (for `Debug`/`PartialEq`); the fields are the same.
pub fn to_kernel(program: &[sock_filter]) -> Vec<libc::sock_filter> {
    program
        .iter()
        .map(|insn| libc::sock_filter {
            code: insn.code,
            jt: insn.jt,
            jf: insn.jf,
            k: insn.k,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions seccomp programs use,
    /// so the filter's decisions can be checked without installing it.
    fn run(program: &[sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&(nr as i32).to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0;
        loop {
            let insn = &program[pc];
            let code = u32::from(insn.code);
            pc += 1;
            match code & 0x07 {
                c if c == libc::BPF_LD => {
                    assert_eq!(code, libc::BPF_LD | libc::BPF_W | libc::BPF_ABS);
                    let at = insn.k as usize;
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                c if c == libc::BPF_ALU => {
                    assert_eq!(code, libc::BPF_ALU | libc::BPF_AND | libc::BPF_K);
                    acc &= insn.k;
                }
                c if c == libc::BPF_JMP => {
                    let op = code & 0xf0;
                    if op == libc::BPF_JA {
                        pc += insn.k as usize;
                        continue;
                    }
                    let taken = match op {
                        o if o == libc::BPF_JEQ => acc == insn.k,
                        o if o == libc::BPF_JGT => acc > insn.k,
                        o if o == libc::BPF_JGE => acc >= insn.k,
                        o if o == libc::BPF_JSET => acc & insn.k != 0,
                        _ => panic!("unexpected jump {code:#x}"),
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                c if c == libc::BPF_RET => return insn.k,
                _ => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn call(program: &[sock_filter], nr: i64, arg0: u64) -> u32 {
        run(program, AUDIT_ARCH_X86_64, nr, [arg0, 0, 0, 0, 0, 0])
    }

    fn with(caps: &[Capability]) -> CapSet {
        let mut set = CapSet::defaults();
        for cap in caps {
            set.insert(*cap);
        }
        set
    }

    #[test]
    fn compiles_for_defaults_all_and_none() {
        for caps in [CapSet::defaults(), CapSet::all(), CapSet::empty()] {
            let program = default_filter(&caps).unwrap();
            assert!(program.len() < MAX_INSTRUCTIONS, "{}", program.len());
            assert_eq!(to_kernel(&program).len(), program.len());
        }
    }

    #[test]
    fn table_has_no_duplicates_and_no_x32_numbers() {
        let mut seen = BTreeSet::new();
        for (name, nr) in ALWAYS {
            assert!(seen.insert(*nr), "{name} listed twice");
            assert_eq!(*nr & i64::from(X32_SYSCALL_BIT), 0, "{name}");
        }
        for (cap, group) in BY_CAPABILITY {
            for (name, nr) in *group {
                assert!(!seen.contains(nr), "{name} of {cap} is also always allowed");
            }
        }
    }

    #[test]
    fn ordinary_calls_are_allowed() {
        let p = default_filter(&CapSet::defaults()).unwrap();
        for nr in [
            libc::SYS_getpid,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_mmap,
            libc::SYS_execve,
            libc::SYS_exit_group,
            libc::SYS_chroot, // CAP_SYS_CHROOT is a default
            libc::SYS_ptrace,
        ] {
            assert_eq!(call(&p, nr, 0), ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn unlisted_calls_get_eperm() {
        let p = default_filter(&CapSet::defaults()).unwrap();
        for nr in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_bpf,
            libc::SYS_reboot,
            libc::SYS_open_by_handle_at,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_userfaultfd,
            libc::SYS_swapon,
            libc::SYS_kcmp,
        ] {
            assert_eq!(call(&p, nr, 0), EPERM, "syscall {nr}");
        }
    }

    #[test]
    fn clone_is_checked_and_clone3_is_absent() {
        let p = default_filter(&CapSet::defaults()).unwrap();
        let fork_flags = (libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        assert_eq!(call(&p, libc::SYS_clone, fork_flags), ALLOW);
        for ns in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET] {
            assert_eq!(call(&p, libc::SYS_clone, fork_flags | ns as u64), EPERM);
        }
        assert_eq!(call(&p, libc::SYS_clone3, 0), ENOSYS);

        let admin = default_filter(&with(&[Capability::SysAdmin])).unwrap();
        let newuser = fork_flags | libc::CLONE_NEWUSER as u64;
        assert_eq!(call(&admin, libc::SYS_clone, newuser), ALLOW);
        assert_eq!(call(&admin, libc::SYS_clone3, 0), ALLOW);
        assert_eq!(call(&admin, libc::SYS_mount, 0), ALLOW);
        assert_eq!(call(&admin, libc::SYS_unshare, 0), ALLOW);
    }

    #[test]
    fn clone_namespace_mask_is_mobys() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
    }

    #[test]
    fn capabilities_open_their_groups() {
        let cases = [
            (Capability::SysBoot, libc::SYS_reboot),
            (Capability::SysModule, libc::SYS_init_module),
            (Capability::SysPtrace, libc::SYS_kcmp),
            (Capability::SysTime, libc::SYS_clock_settime),
            (Capability::Bpf, libc::SYS_bpf),
            (Capability::Perfmon, libc::SYS_perf_event_open),
            (Capability::DacReadSearch, libc::SYS_open_by_handle_at),
            (Capability::SysNice, libc::SYS_mbind),
        ];
        for (cap, nr) in cases {
            let p = default_filter(&with(&[cap])).unwrap();
            assert_eq!(call(&p, nr, 0), ALLOW, "{cap}");
            // ... and only their own: mount still needs CAP_SYS_ADMIN.
            assert_eq!(call(&p, libc::SYS_mount, 0), EPERM, "{cap}");
        }
        // Without CAP_SYS_CHROOT, chroot goes too.
        let mut none = CapSet::defaults();
        none.remove(Capability::SysChroot);
        let p = default_filter(&none).unwrap();
        assert_eq!(call(&p, libc::SYS_chroot, 0), EPERM);
    }

    #[test]
    fn personality_and_socket_arguments() {
        let p = default_filter(&CapSet::defaults()).unwrap();
        for value in PERSONALITY_ALLOWED {
            assert_eq!(call(&p, libc::SYS_personality, value), ALLOW, "{value:#x}");
        }
        // ADDR_NO_RANDOMIZE would weaken ASLR for the container's programs.
        assert_eq!(call(&p, libc::SYS_personality, 0x0040000), EPERM);
        assert_eq!(call(&p, libc::SYS_socket, libc::AF_INET as u64), ALLOW);
        assert_eq!(call(&p, libc::SYS_socket, libc::AF_UNIX as u64), ALLOW);
        assert_eq!(call(&p, libc::SYS_socket, libc::AF_VSOCK as u64), EPERM);
    }

    #[test]
    fn foreign_architectures_and_x32_are_refused() {
        let p = default_filter(&CapSet::all()).unwrap();
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        assert_eq!(
            run(&p, AUDIT_ARCH_I386, libc::SYS_getpid, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        let x32_getpid = libc::SYS_getpid | i64::from(X32_SYSCALL_BIT);
        assert_eq!(call(&p, x32_getpid, 0), EPERM);
    }
}
