//! Test helper started in the node by `keel.run=/usr/lib/keel/test-helper,MODE,ARG`.
//!
//! * `orphans,N`: create N orphaned grandchildren. Each round forks a child
//!   that forks a grandchild and exits at once; the grandchild is reparented
//!   to PID 1, which must reap it.
//! * `signal,TERM|INT`: send that signal to PID 1.
//! * `pivot-root`: what a container runtime does: a new mount namespace, a
//!   tmpfs, `pivot_root` into it. Fails with EINVAL while `/` is the
//!   initramfs rootfs, which is why keel leaves it.
//! * `ignore-term`: stay alive ignoring SIGTERM, so that a shutdown has to
//!   escalate to SIGKILL.
//! * `read,PATH...`: print each file's size and first line (or the error).
//! * `write,PATH...`: try to create each file and print how it went.
//! * `contains,PATH,TEXT`: say whether the file contains TEXT.
//! * `reread,PATH,SECONDS`: read PATH every 100 ms, dropping the page cache
//!   before each read so that each one goes to the block device (and
//!   dm-verity) again, until a read fails or SECONDS pass. Says when the
//!   first read succeeded, so a test can change the disk under it then.
//! * `unix-get,SOCKET,PATH`: `GET PATH` over HTTP/1.1 on a unix socket (the
//!   API's) and print the answer's status line.
//! * `syscall-cost,N`: time N warm calls each of a few syscalls and print
//!   the cost per call (what a boot task's syscalls cost in this guest).
//! * `connect,[--wait,S,]ADDR:PORT...`: a TCP connection to each, with a
//!   2 s timeout, and one line each: `connect ADDR:PORT: open`, `refused`
//!   (a RST: the node's stack answered), `dropped` (no answer: a firewall
//!   dropped the SYN) or `error E`. After `--wait S`, a target that was not
//!   open or refused is tried again until S seconds pass (a port that is
//!   not up yet); `--wait 0` goes back to one try. After `--local`, each
//!   target's address must be one of this machine's before it is tried (it
//!   waits for it within `--wait`): run on the node, a connection to an
//!   address the node does not have yet (the bridge's, before the first
//!   bridge container) would leave through qemu's user network to the
//!   host's. Ends with `connect-done`.
//! * `crun-bench,N`: the container benchmark's reference: N starts and N
//!   runs of `/bin/true` with Debian's crun
//!   (`keel_testhelpers::crun_bench`); prints `crun-bench: FIGURE MS,...`
//!   lines.
//!
//! Single-threaded, so fork is sound; between fork and _exit the children
//! call only async-signal-safe functions.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

fn orphans(n: u32) -> Result<(), String> {
    let mut failed = 0u32;
    for i in 0..n {
        // SAFETY: this process is single-threaded; the child only forks again
        // and calls _exit, both async-signal-safe.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: as above; the grandchild calls only _exit.
                let code = match unsafe { fork() } {
                    Ok(_) => 0,
                    // Out of pids or threads (unreaped zombies pile up
                    // against threads-max): tell the parent.
                    Err(_) => 1,
                };
                // SAFETY: _exit is async-signal-safe and ends the process
                // without running destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => {}
                Ok(_) => failed += 1,
                Err(e) => return Err(format!("wait for child {i}: {e}")),
            },
            Err(e) => return Err(format!("fork child {i}: {e}")),
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {n} grandchildren could not be forked"));
    }
    Ok(())
}

fn pivot_root() -> Result<String, String> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / private: {e}"))?;
    let new_root = "/tmp/pivot-test";
    std::fs::create_dir_all(new_root).map_err(|e| format!("mkdir {new_root}: {e}"))?;
    mount(
        Some("test"),
        new_root,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("mount tmpfs on {new_root}: {e}"))?;
    std::fs::create_dir(format!("{new_root}/old")).map_err(|e| format!("mkdir old: {e}"))?;
    std::fs::write(format!("{new_root}/marker"), b"inside")
        .map_err(|e| format!("write marker: {e}"))?;
    nix::unistd::pivot_root(new_root, &*format!("{new_root}/old"))
        .map_err(|e| format!("pivot_root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    let marker = std::fs::read_to_string("/marker").map_err(|e| format!("read /marker: {e}"))?;
    nix::mount::umount2("/old", nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| format!("detach old root: {e}"))?;
    Ok(format!("pivot_root ok, / holds {marker:?}"))
}

fn ignore_term() -> ! {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: SIG_IGN installs no handler code; nothing runs in signal context.
    if let Err(e) = unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) } {
        println!("test-helper: error: ignore SIGTERM: {e}");
        std::process::exit(1);
    }
    println!("test-helper: ignoring SIGTERM");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn syscall_cost(n: u32) -> Result<String, String> {
    use std::time::Instant;
    let mut out = String::new();
    let mut time = |name: &str, f: &mut dyn FnMut()| {
        f(); // warm: translated once
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        out.push_str(&format!(
            " {name}={:.1}us",
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        ));
    };
    time("getppid", &mut || {
        let _ = nix::unistd::getppid();
    });
    time("stat", &mut || {
        let _ = std::fs::symlink_metadata("/etc/os-release");
    });
    time("open+close", &mut || {
        let _ = std::fs::File::open("/etc/os-release");
    });
    time("mkdir+rmdir", &mut || {
        let _ = std::fs::create_dir("/tmp/x");
        let _ = std::fs::remove_dir("/tmp/x");
    });
    Ok(format!("syscall cost ({n} calls each):{out}"))
}

fn crun_bench(n: u32) -> Result<String, String> {
    use keel_testhelpers::crun_bench::{line, run};
    let f = run(n)?;
    // One line per figure: the benchmark reads them off the console.
    println!("crun-bench: start_ms {}", line(&f.start));
    println!("crun-bench: true_ms {}", line(&f.run_true));
    println!("crun-bench: mount_ms {}", line(&f.mount));
    Ok(format!("crun-bench done ({n} runs each)"))
}

/// Read files and say what they hold (first line, size): what a container
/// or an operator would find on the node.
fn read(paths: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read(p) {
            Ok(b) => {
                let first = String::from_utf8_lossy(&b);
                let first = first.lines().next().unwrap_or("").to_string();
                out.push(format!("{p}: {} bytes, first line {first:?}", b.len()));
            }
            Err(e) => out.push(format!("{p}: {e}")),
        }
    }
    Ok(format!("read {}", out.join("; ")))
}

/// Copy a kernel image from `src` (fw_cfg's raw file, which kexec cannot
/// take: it wants a regular file with a size) to /tmp, and load it with
/// kexec_file_load without an initramfs: what root on the node would do to
/// replace the running kernel. A load that succeeds is unloaded again.
fn kexec_load(src: &str) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let image = "/tmp/kexec-probe.bzImage";
    let bytes = std::fs::read(src).map_err(|e| format!("kexec {src}: {e}"))?;
    std::fs::write(image, &bytes).map_err(|e| format!("kexec {image}: {e}"))?;
    let f = std::fs::File::open(image).map_err(|e| format!("kexec {image}: {e}"))?;
    const KEXEC_FILE_UNLOAD: usize = 1;
    const KEXEC_FILE_NO_INITRAMFS: usize = 4;
    // SAFETY: a kernel fd open for the call, no initramfs fd (-1 with
    // NO_INITRAMFS) and no command line (length 0).
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            f.as_raw_fd(),
            -1,
            0usize,
            0usize,
            KEXEC_FILE_NO_INITRAMFS,
        )
    });
    let line = format!(
        "{} ({} bytes)",
        verdict("kexec-load", r.map(|_| ())),
        bytes.len()
    );
    if r.is_ok() {
        // SAFETY: as above; UNLOAD drops the loaded image.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_kexec_file_load,
                f.as_raw_fd(),
                -1,
                0usize,
                0usize,
                KEXEC_FILE_UNLOAD | KEXEC_FILE_NO_INITRAMFS,
            )
        };
    }
    let _ = std::fs::remove_file(image);
    Ok(line)
}

/// Try to create a file at each path and say how it went.
fn write(paths: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::write(p, b"x") {
            Ok(()) => out.push(format!("{p}: written")),
            Err(e) => out.push(format!("{p}: {e}")),
        }
    }
    Ok(format!("write {}", out.join("; ")))
}

/// How one escape attempt ended.
///
/// The errno tells who stopped it: confinement (keel's seccomp filter
/// answers EPERM, and so do missing capabilities) or the kernel itself
/// (ENOSYS for a syscall this kernel lacks, EINVAL for arguments it
/// refuses after the permission checks). Only the first is a denial: a call
/// that fails for another reason proves nothing about confinement, and the
/// test sees it as `reached`.
fn verdict(name: &str, r: Result<(), nix::errno::Errno>) -> String {
    use nix::errno::Errno;
    match r {
        Ok(()) => format!("ESCAPED {name}"),
        Err(e @ (Errno::EPERM | Errno::EACCES)) => format!("denied {name} ({e})"),
        Err(e) => format!("reached {name} ({e})"),
    }
}

/// `syscall(2)`'s result as a Result (the fd or value is dropped).
fn sys(r: libc::c_long) -> Result<libc::c_long, nix::errno::Errno> {
    if r < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(r)
    }
}

/// BPF_PROG_LOAD of a valid two-instruction socket filter (`r0 = 0; exit`):
/// loads wherever bpf(2) is allowed.
fn bpf_load() -> Result<(), nix::errno::Errno> {
    // struct bpf_insn { u8 code; u8 dst:4, src:4; s16 off; s32 imm; }
    let insns: [u64; 2] = [
        0xb7, // BPF_ALU64 | BPF_MOV | BPF_K, r0 = 0
        0x95, // BPF_JMP | BPF_EXIT
    ];
    let license = c"GPL";
    // union bpf_attr, the BPF_PROG_LOAD part; the rest must be zero.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes()); // insn_cnt
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: attr is a zeroed bpf_attr of the size passed, whose pointers
    // point at live buffers (insns, license) for the duration of the call.
    let fd = sys(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            5, /* BPF_PROG_LOAD */
            attr.as_mut_ptr(),
            attr.len(),
        )
    })?;
    // SAFETY: fd was just returned by the kernel and is closed once.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// open_by_handle_at(2) of a handle that name_to_handle_at(2) (allowed to
/// every container) made for /dev, a tmpfs both on the node and in a
/// container: what CAP_DAC_READ_SEARCH (and seccomp) decide. Returns the
/// probe's line.
fn open_by_handle() -> String {
    // struct file_handle { u32 handle_bytes; int handle_type; u8 f_handle[]; }
    let mut handle = [0u32; 2 + 32];
    handle[0] = 128; // MAX_HANDLE_SZ
    let mut mount_id: libc::c_int = 0;
    // SAFETY: handle is a file_handle with 128 bytes of room after its
    // header, mount_id a live int; the path is a NUL-terminated string.
    let made = sys(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/dev".as_ptr(),
            handle.as_mut_ptr(),
            &mut mount_id as *mut libc::c_int,
            0,
        )
    });
    if let Err(e) = made {
        return format!("unknown open_by_handle_at (no handle for /dev: {e})");
    }
    let dir = match std::fs::File::open("/dev") {
        Ok(d) => d,
        Err(e) => return format!("unknown open_by_handle_at (open /dev: {e})"),
    };
    // SAFETY: a valid directory fd and the handle the kernel just filled.
    let r = sys(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            handle.as_mut_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
    });
    if let Ok(fd) = r {
        // SAFETY: fd was just returned by the kernel and is closed once.
        unsafe { libc::close(fd as i32) };
    }
    verdict("open_by_handle_at", r.map(|_| ()))
}

/// unshare(CLONE_NEWUSER) in a child, so that this process keeps its own
/// namespaces for the probes after it.
fn unshare_user() -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    // SAFETY: this process is single-threaded; the child calls only
    // unshare and _exit, both async-signal-safe.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: plain syscalls; _exit ends the child without unwinding.
            unsafe {
                let r = libc::unshare(libc::CLONE_NEWUSER);
                let code = if r == 0 { 0 } else { *libc::__errno_location() };
                libc::_exit(code)
            }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, code)) => Err(Errno::from_raw(code)),
            _ => Err(Errno::ECHILD),
        },
        Err(e) => Err(e),
    }
}

/// Mount a tmpfs on a scratch directory (and unmount it at once).
fn mount_tmpfs() -> Result<(), nix::errno::Errno> {
    use nix::mount::{mount, umount, MsFlags};
    let dir = "/tmp/escape-probe";
    let _ = std::fs::create_dir_all(dir);
    mount(
        Some("none"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )?;
    let _ = umount(dir);
    Ok(())
}

/// The processes this one sees (from /proc), but itself and PID 1's
/// process: a user process of another namespace or container is what
/// ptrace must not reach. The node's PID 1 is never attached (a traced
/// keel would stop on its next signal).
fn others() -> Result<Vec<i32>, String> {
    let me = std::process::id() as i32;
    let mut v: Vec<i32> = std::fs::read_dir("/proc")
        .map_err(|e| format!("read /proc: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| *p != me && *p != 1)
        // User processes only: a kernel thread has an empty cmdline.
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| !c.is_empty()))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// PTRACE_SEIZE each process of [`others`]; the ones attached to. SEIZE,
/// not ATTACH: it sends no SIGSTOP, so a tracee is never left stopped
/// (ATTACH's stop, not waited for under load before this helper exited,
/// left a container stopped for good). Each is interrupted, waited for
/// (bounded) and detached; one still held when the helper exits is let go
/// by the kernel, running.
fn ptrace_others(others: &[i32]) -> Vec<i32> {
    use nix::sys::ptrace;
    use nix::sys::wait::WaitPidFlag;
    let mut attached = Vec::new();
    for &pid in others {
        let p = Pid::from_raw(pid);
        if ptrace::seize(p, ptrace::Options::empty()).is_err() {
            continue;
        }
        attached.push(pid);
        if ptrace::interrupt(p).is_err() {
            continue;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            match waitpid(p, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Ok(WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) => {
                    let _ = ptrace::detach(p, None);
                    break;
                }
                _ => break,
            }
        }
    }
    attached
}

/// The escape attempts a container must not get through, one line each:
/// `denied NAME (EPERM)` when confinement stopped it, `ESCAPED NAME` when
/// it worked, `reached NAME (ERRNO)` when it got past confinement and the
/// kernel refused it for another reason (a syscall this kernel lacks).
///
/// Every system call gets valid arguments, so that it succeeds wherever it
/// is allowed: run on the node itself (keel.run) or in a container given
/// the capabilities, the same probe prints ESCAPED or reached, which is
/// how the VM test knows it can tell the difference.
fn escape() -> Result<String, String> {
    let mut out = Vec::new();
    out.push(verdict("bpf", bpf_load()));
    // SAFETY: kexec_load with no segments (unload), a valid call; nothing
    // is read through a pointer.
    out.push(verdict(
        "kexec_load",
        sys(unsafe { libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize) })
            .map(|_| ()),
    ));
    // SAFETY: no file descriptors (-1), no command line, flags
    // KEXEC_FILE_NO_INITRAMFS (4): the kernel fails it on the descriptor
    // (EBADF) once the permission checks let it through.
    out.push(verdict(
        "kexec_file_load",
        sys(unsafe { libc::syscall(libc::SYS_kexec_file_load, -1, -1, 0usize, 0usize, 4usize) })
            .map(|_| ()),
    ));
    let image = [0u8; 64];
    // SAFETY: a 64-byte image buffer, its length and an empty parameter
    // string, all live for the call.
    out.push(verdict(
        "init_module",
        sys(unsafe {
            libc::syscall(
                libc::SYS_init_module,
                image.as_ptr(),
                image.len(),
                c"".as_ptr(),
            )
        })
        .map(|_| ()),
    ));
    out.push(verdict("unshare-user", unshare_user()));
    out.push(verdict("mount", mount_tmpfs()));
    out.push(open_by_handle());
    // LINUX_REBOOT_CMD_CAD_OFF: harmless (Ctrl-Alt-Del then signals init)
    // and, in a pid namespace, refused by the kernel with EINVAL after the
    // capability check, so a container allowed to call reboot shows
    // `reached` without rebooting anything.
    // SAFETY: reboot with its magic numbers and a null argument.
    out.push(verdict(
        "reboot",
        sys(unsafe {
            libc::syscall(
                libc::SYS_reboot,
                0xfee1dead_u32,
                672274793,
                0u32, /* LINUX_REBOOT_CMD_CAD_OFF */
                0usize,
            )
        })
        .map(|_| ()),
    ));
    // Processes outside its own: on the node there are (the containers',
    // keel's), in a container with its own pid namespace there are none.
    // On the node, wait for some to show, so that the node's control run
    // does not race the containers' starts (which follow the image
    // imports: more than a few seconds on a loaded host). The container's
    // first process is pid 1 in its namespace: nothing to wait for there.
    let patience = if std::process::id() == 1 { 0 } else { 60 };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(patience);
    let mut seen = others()?;
    while seen.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = others()?;
    }
    let attached = ptrace_others(&seen);
    out.push(if attached.is_empty() {
        format!(
            "denied ptrace-node ({} other processes visible, none attachable)",
            seen.len()
        )
    } else {
        format!("ESCAPED ptrace-node (attached to {attached:?})")
    });
    // The node's init: in a container with its own pid namespace, pid 1
    // is the container's first process (this probe); anywhere else it is
    // keel.
    let me_pid1 = std::process::id() == 1;
    out.push(match std::fs::read("/proc/1/cmdline") {
        Ok(c) if !me_pid1 => format!(
            "ESCAPED keel-visible (pid 1 is {:?})",
            String::from_utf8_lossy(&c).trim_end_matches('\0')
        ),
        Ok(_) => "denied keel-visible (pid 1 is this probe)".into(),
        Err(e) => format!("denied keel-visible ({e})"),
    });
    // The node's verified root: its build id is in no container image.
    out.push(match std::fs::read("/usr/lib/keel/build-id") {
        Ok(_) => "ESCAPED node-files (/usr/lib/keel/build-id)".into(),
        Err(e) => format!("denied node-files ({e})"),
    });
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    for l in status.lines().filter(|l| {
        l.starts_with("NoNewPrivs") || l.starts_with("CapBnd") || l.starts_with("Seccomp:")
    }) {
        out.push(l.to_string());
    }
    Ok(format!("escape\n{}\nescape-done", out.join("\n")))
}

/// Read `path` from the block device again and again (see the module doc)
/// until it fails: what a process finds when the disk changes under a
/// mounted root.
fn reread(path: &str, secs: u64) -> Result<String, String> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut good = 0u32;
    loop {
        // Clean page-cache pages only ("1"): the file's pages, verified by
        // the last read, would otherwise answer the next one from memory.
        std::fs::write("/proc/sys/vm/drop_caches", "1").map_err(|e| format!("drop caches: {e}"))?;
        match std::fs::read(path) {
            Ok(b) => {
                good += 1;
                if good == 1 {
                    println!(
                        "test-helper: reread {path}: first read ok ({} bytes)",
                        b.len()
                    );
                }
            }
            Err(e) => return Ok(format!("reread {path}: {e} after {good} good reads")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "reread {path}: still readable after {secs} s ({good} reads)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` over the unix socket, `Connection: close`: the whole answer.
fn unix_request(socket: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect to {socket}: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| format!("{socket}: {e}"))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to {socket}: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read from {socket}: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `unix-get SOCKET PATH`: the answer's status line.
fn unix_get(socket: &str, path: &str) -> Result<String, String> {
    let text = unix_request(socket, path)?;
    Ok(format!(
        "unix-get {path}: {}",
        text.lines().next().unwrap_or("(no answer)")
    ))
}

/// One TCP connection attempt: `open`, `refused`, `dropped` or `error E`.
fn connect_once(to: std::net::SocketAddr) -> String {
    match std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(2)) {
        Ok(_) => "open".into(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".into(),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "dropped".into(),
        Err(e) => format!("error {e}"),
    }
}

fn connect(args: &[&str]) -> Result<String, String> {
    let mut wait = 0u64;
    let mut local = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == "--local" {
            local = true;
            continue;
        }
        if *a == "--wait" {
            let s = it.next().ok_or("connect: --wait needs seconds")?;
            wait = s
                .parse()
                .map_err(|_| format!("connect: {s:?} is not a number of seconds"))?;
            continue;
        }
        let to: std::net::SocketAddr = a
            .parse()
            .map_err(|_| format!("connect: {a:?} is not ADDR:PORT"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
        // Binding succeeds only to an address of this machine.
        let is_local = || std::net::UdpSocket::bind((to.ip(), 0)).is_ok();
        while local && !is_local() {
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "connect: {} is not an address of this machine",
                    to.ip()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let verdict = loop {
            let v = connect_once(to);
            if v == "open" || v == "refused" || std::time::Instant::now() >= deadline {
                break v;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        // As it goes: a test waiting on the logs sees each verdict.
        println!("connect {a}: {verdict}");
    }
    Ok("connect-done".into())
}

/// `unix-json SOCKET PATH`: the API's answer body on one line (JSON keeps
/// its meaning with its newlines made spaces), for tests that read a node
/// whose TCP port is closed.
fn unix_json(socket: &str, path: &str) -> Result<String, String> {
    let text = unix_request(socket, path)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(format!("unix-json {path}: {}", body.replace('\n', " ")))
}

/// Each command of `args`, in order: commands are separated by `+`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut code = 0;
    for cmd in args.split(|a| a == "+") {
        code = code.max(run(cmd));
    }
    std::process::exit(code);
}

fn run(args: &[String]) -> i32 {
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["orphans", n] => match n.parse() {
            Ok(n) => orphans(n).map(|()| format!("created {n} orphans")),
            Err(_) => Err(format!("orphans: {n:?} is not a count")),
        },
        ["signal", s] => {
            let sig = match s {
                "TERM" => Signal::SIGTERM,
                "INT" => Signal::SIGINT,
                other => {
                    eprintln!("test-helper: signal {other:?}: expected TERM or INT");
                    std::process::exit(2)
                }
            };
            kill(Pid::from_raw(1), sig)
                .map(|()| format!("sent SIG{s} to pid 1"))
                .map_err(|e| format!("kill 1 {s}: {e}"))
        }
        ["pivot-root"] => pivot_root(),
        ["syscall-cost", n] => match n.parse() {
            Ok(n) => syscall_cost(n),
            Err(_) => Err(format!("syscall-cost: {n:?} is not a count")),
        },
        ["crun-bench", n] => match n.parse() {
            Ok(n) => crun_bench(n),
            Err(_) => Err(format!("crun-bench: {n:?} is not a count")),
        },
        ["ignore-term"] => ignore_term(),
        ["escape"] => escape(),
        ["read", ref paths @ ..] => read(paths),
        ["write", ref paths @ ..] => write(paths),
        ["kexec", src] => kexec_load(src),
        ["sleep", secs] => match secs.parse() {
            Ok(secs) => {
                std::thread::sleep(std::time::Duration::from_secs(secs));
                Ok(format!("slept {secs} s"))
            }
            Err(_) => Err(format!("sleep: {secs:?} is not a number of seconds")),
        },
        ["put", path, text] => std::fs::write(path, text)
            .map(|()| format!("put {path}: written"))
            .map_err(|e| format!("put {path}: {e}")),
        ["contains", path, needle] => std::fs::read_to_string(path)
            .map(|t| format!("contains {path} {needle}: {}", t.contains(needle)))
            .map_err(|e| format!("{path}: {e}")),
        ["unix-get", socket, path] => unix_get(socket, path),
        ["unix-json", socket, path] => unix_json(socket, path),
        ["connect", ref targets @ ..] => connect(targets),
        ["reread", path, secs] => match secs.parse() {
            Ok(secs) => reread(path, secs),
            Err(_) => Err(format!("reread: {secs:?} is not a number of seconds")),
        },
        _ => Err(format!(
            "usage: test-helper orphans N | signal TERM|INT | pivot-root | ignore-term | syscall-cost N | crun-bench N | read PATH... | write PATH... | kexec IMAGE | put PATH TEXT | sleep SECONDS | contains PATH TEXT | unix-get SOCKET PATH | unix-json SOCKET PATH | connect [--wait S] [--local] ADDR:PORT... | reread PATH SECONDS, several joined by + (got {args:?})"
        )),
    };
    match result {
        Ok(msg) => {
            println!("test-helper: {msg}");
            0
        }
        Err(e) => {
            println!("test-helper: error: {e}");
            1
        }
    }
}
