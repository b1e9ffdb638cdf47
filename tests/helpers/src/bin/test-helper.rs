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

/// The escape attempts a container must not get through, each as
/// `denied NAME (errno)` or `ESCAPED NAME`: system calls the seccomp filter
/// or the capability set refuse, processes of the node it must not see, and
/// keel's binary it must not reach.
fn escape() -> Result<String, String> {
    let mut out = Vec::new();
    let mut verdict = |name: &str, r: i64| {
        let e = std::io::Error::last_os_error();
        out.push(if r < 0 {
            format!("denied {name} ({e})")
        } else {
            format!("ESCAPED {name}")
        });
    };
    // SAFETY: each call passes null or zero arguments the kernel checks
    // before doing anything (they are expected to fail); nothing is read
    // back through a pointer.
    unsafe {
        verdict(
            "bpf",
            libc::syscall(libc::SYS_bpf, 5 /* BPF_PROG_LOAD */, 0usize, 0usize),
        );
        verdict(
            "kexec_load",
            libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize),
        );
        verdict(
            "init_module",
            libc::syscall(libc::SYS_init_module, 0usize, 0usize, c"".as_ptr()),
        );
        verdict(
            "unshare-user",
            libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
        );
        verdict(
            "mount",
            libc::mount(
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) as i64,
        );
        verdict(
            "open_by_handle_at",
            libc::syscall(libc::SYS_open_by_handle_at, 3, 0usize, 0),
        );
        verdict(
            "reboot",
            libc::syscall(
                libc::SYS_reboot,
                0xfee1dead_u32,
                672274793,
                0x4321fedc,
                0usize,
            ),
        );
    }
    // ptrace: every pid the kernel has, none of the node's reachable.
    let mine: Vec<i32> = std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let me = std::process::id() as i32;
    let mut attached = Vec::new();
    for pid in 1..2048 {
        if pid == me {
            continue;
        }
        // SAFETY: PTRACE_ATTACH with a pid and null addr/data.
        let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) };
        if r == 0 {
            attached.push(pid);
            // SAFETY: detaching the process just attached.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize) };
        }
    }
    let foreign: Vec<&i32> = attached.iter().filter(|p| !mine.contains(p)).collect();
    out.push(if foreign.is_empty() {
        format!("denied ptrace-node (attached only to own pids {attached:?})")
    } else {
        format!("ESCAPED ptrace-node {foreign:?}")
    });
    // keel's binary: no process this container sees runs it, and its own
    // init's exe cannot be opened for writing.
    let keel = mine.iter().any(|p| {
        std::fs::read_link(format!("/proc/{p}/exe"))
            .map(|l| l.to_string_lossy().contains("keel"))
            .unwrap_or(false)
    });
    out.push(if keel {
        "ESCAPED keel-visible".into()
    } else {
        "denied keel-visible".into()
    });
    out.push(
        match std::fs::OpenOptions::new().write(true).open("/proc/1/exe") {
            Ok(_) => "ESCAPED write-exe".into(),
            Err(e) => format!("denied write-exe ({e})"),
        },
    );
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

fn unix_get(socket: &str, path: &str) -> Result<String, String> {
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
    let text = String::from_utf8_lossy(&answer);
    Ok(format!(
        "unix-get {path}: {}",
        text.lines().next().unwrap_or("(no answer)")
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        ["contains", path, needle] => std::fs::read_to_string(path)
            .map(|t| format!("contains {path} {needle}: {}", t.contains(needle)))
            .map_err(|e| format!("{path}: {e}")),
        ["unix-get", socket, path] => unix_get(socket, path),
        ["reread", path, secs] => match secs.parse() {
            Ok(secs) => reread(path, secs),
            Err(_) => Err(format!("reread: {secs:?} is not a number of seconds")),
        },
        _ => Err(format!(
            "usage: test-helper orphans N | signal TERM|INT | pivot-root | ignore-term | syscall-cost N | crun-bench N | read PATH... | write PATH... | contains PATH TEXT | unix-get SOCKET PATH | reread PATH SECONDS (got {args:?})"
        )),
    };
    match result {
        Ok(msg) => println!("test-helper: {msg}"),
        Err(e) => {
            println!("test-helper: error: {e}");
            std::process::exit(1);
        }
    }
}
