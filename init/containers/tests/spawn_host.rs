//! Privileged: start real containers on the host from a busybox root, with
//! a cgroup2 mounted for the test. Skips when not root, or when busybox or
//! cgroup2 is not available.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use keel_config::model::{Container, NetMode};
use keel_containers::runtime::{self, ImageRoot};

/// A container of busybox with keel's defaults, for the tests to change.
fn a_container() -> Container {
    Container::new(
        "test",
        keel_config::model::ImageRef::try_from("busybox").unwrap(),
    )
}

mod common;

use common::{setup, Env};

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
            resource: keel_types::Resource::Nofile,
            limits: keel_types::Limits::new(321, 654).unwrap(),
        }],
        ..a_container()
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
        ..a_container()
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
        ..a_container()
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
        ..a_container()
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

/// The owner of `/proc/PID/mem`: the process's uid while it is dumpable,
/// root while it is not (the kernel's `task_dump_owner`, which reads the
/// flag its ptrace and process_vm_readv access checks read; the
/// `/proc/PID` directory itself is always the process's).
fn proc_owner(pid: i32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/mem"))
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// What the hold below fails with when the child is dumpable.
const STILL_DUMPABLE: i32 = libc::EUCLEAN;

/// A confinement that checks PR_GET_DUMPABLE, as the child's last step
/// before execve and before any change of its credentials (a change resets
/// the flag by itself: a root container's process has none), failing with
/// [`STILL_DUMPABLE`] if it is set; then becomes `nobody` and sleeps `hold`
/// in the window before execve, for the test to look at it from outside.
/// Async-signal-safe: nix's wrappers are single system calls.
fn hold_before_exec(hold: std::time::Duration) -> runtime::Confinement {
    Box::new(move || {
        use nix::unistd::{setresgid, setresuid, Gid, Uid};
        let e = |e: nix::Error| e as i32;
        if nix::sys::prctl::get_dumpable().map_err(e)? {
            return Err(STILL_DUMPABLE);
        }
        let nobody = (Gid::from_raw(65534), Uid::from_raw(65534));
        setresgid(nobody.0, nobody.0, nobody.0).map_err(e)?;
        setresuid(nobody.1, nobody.1, nobody.1).map_err(e)?;
        std::thread::sleep(hold);
        Ok(())
    })
}

/// The pid `held` finds while `t` (a start) is held before its execve; a
/// start that ends first was not held: it failed the confinement's check
/// (its error says so).
fn wait_held<'s, T: std::fmt::Debug>(
    t: std::thread::ScopedJoinHandle<'s, T>,
    held: impl Fn() -> Option<i32>,
) -> (i32, std::thread::ScopedJoinHandle<'s, T>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(p) = held() {
            return (p, t);
        }
        if t.is_finished() {
            panic!("never held before its execve: {:?}", t.join());
        }
        assert!(std::time::Instant::now() < deadline, "not held after 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Poll `f` for up to 10 s until it gives something.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "no {what} after 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every process keel puts into a container is not dumpable until its
/// execve: a container's root (or a process of the same user) cannot
/// ptrace it or read its memory, a copy of PID 1's, in that window. The
/// control is the same process after its execve: dumpable again, owned by
/// its user. Both paths: a container's start, and a command run inside a
/// running one (a health check's `command`, `exec_in`).
#[test]
fn processes_are_not_dumpable_before_exec() {
    let Some(env) = setup("dumpable") else { return };
    // The control of the child's check: this process, which did not ask,
    // is dumpable.
    assert!(nix::sys::prctl::get_dumpable().unwrap());
    let c = Container {
        name: "dumpable".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec!["echo exec-done; sleep 100".into()],
        network: NetMode::None,
        ..a_container()
    };
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let hold = std::time::Duration::from_millis(1500);
    let confiner = move |_: &Container, _: &runtime::Ident| Ok(hold_before_exec(hold));
    let confiner: &runtime::Confiner = &confiner;
    let cgroup_procs = env.dirs.cgroup.join("dumpable/cgroup.procs");
    // A process of the container's cgroup that confinement made nobody and
    // that has not exec'd yet (its program is still this test's binary,
    // not busybox).
    let held = || {
        let procs = std::fs::read_to_string(&cgroup_procs).unwrap_or_default();
        procs
            .lines()
            .filter_map(|l| l.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/status"))
                    .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t65534")))
                    && std::fs::read_link(format!("/proc/{p}/exe"))
                        .is_ok_and(|e| !e.ends_with("busybox"))
            })
    };
    // runtime::start returns once the child has exec'd: look at the child
    // from here while its confinement holds it.
    let r = std::thread::scope(|s| {
        let t = s.spawn(|| runtime::start(&env.dirs, &c, &img, Some(confiner), None));
        let (pid, t) = wait_held(t, held);
        assert_eq!(proc_owner(pid), 0, "dumpable before its execve");
        let r = t.join().unwrap().expect("start");
        assert_eq!(r.pid, pid);
        r
    });
    // The control: after the execve the same process is dumpable again.
    assert_eq!(proc_owner(r.pid), 65534, "the program is not dumpable");

    // A command run inside it (the join path): the same.
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let argv = vec!["/bin/sleep".to_string(), "100".to_string()];
            runtime::exec_in(&r.joinable, &c, &argv, Some(confiner))
        });
        let (cmd, t) = wait_held(t, held);
        assert_ne!(cmd, r.pid);
        assert_eq!(
            proc_owner(cmd),
            0,
            "a joined command is dumpable before its execve"
        );
        t.join().unwrap().expect("exec_in");
        eventually("command dumpable after its execve", || {
            (proc_owner(cmd) == 65534).then_some(())
        });
    });
    let _ = r.cgroup.kill();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.pid), None);
    runtime::stop_run(&env.dirs, &c.name, &r.cgroup, None);
}

/// Bind mounts come from the clones the parent resolved: a directory
/// volume (read-write), a file (read-only), each nosuid and nodev; a
/// source that is a link to the node's root fails the start and mounts
/// nothing.
#[test]
fn bind_mounts_are_attached_from_what_was_resolved() {
    let Some(env) = setup("binds") else { return };
    let vols = env.dirs.source_root.join("var/lib/keel/volumes");
    std::fs::create_dir_all(vols.join("data")).unwrap();
    std::fs::write(vols.join("data/marker"), "from-the-volume\n").unwrap();
    std::fs::write(vols.join("conf"), "a-file\n").unwrap();
    let bind = |source: &str, target: &str, readonly| keel_config::model::MountSpec::Bind {
        source: source.into(),
        target: target.into(),
        readonly,
    };
    let c = Container {
        name: "binds".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![concat!(
            "cat /data/marker /etc/app.conf; echo new > /data/written && echo rw-ok; ",
            "echo x > /etc/app.conf || echo ro-refused; ",
            "grep -E ' /(data|etc/app.conf) ' /proc/self/mountinfo"
        )
        .into()],
        network: NetMode::None,
        mounts: vec![
            bind("/var/lib/keel/volumes/data", "/data", false),
            bind("/var/lib/keel/volumes/conf", "/etc/app.conf", true),
        ],
        ..a_container()
    };
    let (out, err, code) = run(&env, &c);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(
        out.contains("from-the-volume\na-file\nrw-ok\nro-refused\n"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(vols.join("data/written")).unwrap(),
        "new\n"
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" - ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in &lines {
        assert!(l.contains("nosuid") && l.contains("nodev"), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains(" /etc/app.conf ro,")),
        "{out}"
    );

    // Control of the refusal: a link in place of the volume.
    std::fs::rename(vols.join("data"), vols.join("data.away")).unwrap();
    std::os::unix::fs::symlink("/", vols.join("data")).unwrap();
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let e = runtime::start(&env.dirs, &c, &img, None, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("/var/lib/keel/volumes/data: is or goes through a symbolic link"),
        "{e}"
    );
}

/// The signal state a container's program starts with, from its
/// `/proc/self/status`: (SigBlk, SigIgn).
fn sig_lines(status: &str) -> (String, String) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("SigBlk:"), field("SigIgn:"))
}

/// A program in a container starts as a fresh process would: nothing
/// blocked, nothing ignored, whatever keel's own thread blocks for its
/// signalfd (SIGCHLD, SIGTERM, SIGINT here) and ignores (SIGPIPE: Rust
/// ignores it in every program). The control is the starting thread itself,
/// which does block and ignore them. Both paths: a start, and a command run
/// inside a running container.
#[test]
fn programs_start_with_no_signal_blocked_or_ignored() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let Some(env) = setup("signals") else { return };
    let all_zero = "0000000000000000";
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut set = SigSet::empty();
            for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
                set.add(sig);
            }
            pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
            let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let (blk, ign) = sig_lines(&own);
            assert_eq!(
                blk, "0000000000014002",
                "the control: this thread blocks them"
            );
            assert_ne!(ign, all_zero, "the control: SIGPIPE is ignored here");

            let c = Container {
                name: "signals".into(),
                command: vec!["/bin/cat".into(), "/proc/self/status".into()],
                network: NetMode::None,
                ..a_container()
            };
            let (out, err, code) = run(&env, &c);
            assert_eq!(code, 0, "{err}");
            assert_eq!(sig_lines(&out), (all_zero.into(), all_zero.into()), "{out}");

            let c = Container {
                name: "signals-exec".into(),
                command: vec!["/bin/sleep".into(), "100".into()],
                network: NetMode::None,
                ..a_container()
            };
            let img = ImageRoot {
                layers: vec![env.layer.clone()],
                ..Default::default()
            };
            let r = runtime::start(&env.dirs, &c, &img, None, None).expect("start");
            // A command run inside: its process (the child of the waiter
            // exec_in starts in the container's pid namespace), read from
            // here once it runs sleep.
            let argv: Vec<String> = ["/bin/sleep", "30"].iter().map(|s| s.to_string()).collect();
            let e = runtime::exec_in(&r.joinable, &c, &argv, None).expect("exec_in");
            let status = eventually("the command running sleep", || {
                let kids =
                    std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", e.pid)).ok()?;
                let kid: i32 = kids.split_whitespace().next()?.parse().ok()?;
                let st = std::fs::read_to_string(format!("/proc/{kid}/status")).ok()?;
                st.starts_with("Name:\tsleep\n").then_some(st)
            });
            assert_eq!(
                sig_lines(&status),
                (all_zero.into(), all_zero.into()),
                "{status}"
            );
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(e.pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(e.pid), None);
            let _ = r.cgroup.kill();
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.pid), None);
            runtime::stop_run(&env.dirs, &c.name, &r.cgroup, None);
        });
    });
}

/// A confinement that makes the program `nobody` with no capability: the
/// change of uid from 0 clears the permitted and effective sets, and the
/// program (busybox, no file capabilities) gains none at its execve.
/// Async-signal-safe: nix's wrappers are single system calls.
fn as_nobody(
    _: &Container,
    _: &runtime::Ident,
) -> Result<runtime::Confinement, runtime::HookError> {
    Ok(Box::new(|| {
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let e = |e: nix::Error| e as i32;
        setgroups(&[]).map_err(e)?;
        let (g, u) = (Gid::from_raw(65534), Uid::from_raw(65534));
        setresgid(g, g, g).map_err(e)?;
        setresuid(u, u, u).map_err(e)?;
        Ok(())
    }))
}

/// The first line of the node's /proc/sys file `name`.
fn node_sysctl(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .unwrap()
        .trim()
        .to_string()
}

/// A non-root container binds port 80 in its own network namespace, as in
/// Docker (`net.ipv4.ip_unprivileged_port_start=0` there), and sees the
/// IPC sysctl it sets; the node's values are untouched. The control: the
/// same program with the port limit set back to 1024 through `sysctls:` is
/// refused the bind (EACCES).
#[test]
fn sysctls_are_the_containers_own() {
    let Some(env) = setup("sysctl") else { return };
    for a in ["nc", "kill"] {
        std::os::unix::fs::symlink("/bin/busybox", env.layer.join("bin").join(a)).unwrap();
    }
    let node_ports = node_sysctl("net/ipv4/ip_unprivileged_port_start");
    let node_shmmax = node_sysctl("kernel/shmmax");
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    let sysctl = |n: &str, v: &str| keel_config::containers::sysctl(n, v).unwrap();
    let mut c = Container {
        name: "sysctl".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        // Listening on port 80 is `0050` in state `0A` in /proc/net/tcp
        // (the container's own network namespace's).
        args: vec![concat!(
            "id -u; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmax; ",
            "nc -l -p 80 & sleep 0.5; ",
            "grep -q ':0050 0*:0000 0A' /proc/net/tcp /proc/net/tcp6 && echo listening-on-80; ",
            "kill $! 2>/dev/null; exit 0"
        )
        .into()],
        network: NetMode::None,
        sysctls: vec![sysctl("kernel.shmmax", "1048576")],
        ..a_container()
    };
    let confiner: &runtime::Confiner = &as_nobody;
    let start = |c: &Container| {
        let r = runtime::start(&env.dirs, c, &img, Some(confiner), None).expect("start");
        let (out, err) = (read_all(r.stdout), read_all(r.stderr));
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.pid), None).unwrap();
        runtime::stop_run(&env.dirs, &c.name, &r.cgroup, None);
        (out, err)
    };
    let (out, err) = start(&c);
    assert_eq!(out, "65534\n0\n1048576\nlistening-on-80\n", "stderr {err}");
    assert_eq!(
        node_sysctl("net/ipv4/ip_unprivileged_port_start"),
        node_ports
    );
    assert_eq!(node_sysctl("kernel/shmmax"), node_shmmax);
    assert_ne!(node_shmmax, "1048576");

    // Control: the container's own value replaces Docker's default.
    c.sysctls
        .push(sysctl("net.ipv4.ip_unprivileged_port_start", "1024"));
    let (out, err) = start(&c);
    assert_eq!(out, "65534\n1024\n1048576\n", "stderr {err}");
    assert!(err.contains("Permission denied"), "{err}");

    // A sysctl the kernel refuses fails the start, naming it.
    c.sysctls = vec![sysctl("net.ipv4.ip_unprivileged_port_start", "-5")];
    let e = runtime::start(&env.dirs, &c, &img, Some(confiner), None).unwrap_err();
    assert!(
        e.to_string().contains(
            "write sysctl /proc/sys/net/ipv4/ip_unprivileged_port_start = \"-5\": Invalid argument"
        ),
        "{e}"
    );
}

/// A mount target that is a link in the image is mounted on what the link
/// names inside the container's root, as Docker does (Debian's
/// `/etc/nginx/sites-enabled/default`); a link to a host path names that
/// path inside the root, and the host's file is neither mounted over nor
/// changed.
#[test]
fn mount_targets_follow_the_images_links_inside_the_root() {
    let Some(env) = setup("linktargets") else {
        return;
    };
    let vols = env.dirs.source_root.join("var/lib/keel/volumes");
    std::fs::create_dir_all(&vols).unwrap();
    std::fs::write(vols.join("site"), "from-the-volume\n").unwrap();
    let host_file = env.dirs.source_root.join("host-secret");
    std::fs::write(&host_file, "host\n").unwrap();
    let etc = env.layer.join("etc");
    std::fs::create_dir_all(etc.join("nginx/sites-available")).unwrap();
    std::fs::create_dir_all(etc.join("nginx/sites-enabled")).unwrap();
    std::fs::write(etc.join("nginx/sites-available/default"), "image\n").unwrap();
    std::os::unix::fs::symlink(
        "../sites-available/default",
        etc.join("nginx/sites-enabled/default"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&host_file, etc.join("abs")).unwrap();
    let bind = |target: &str| keel_config::model::MountSpec::Bind {
        source: "/var/lib/keel/volumes/site".into(),
        target: target.into(),
        readonly: true,
    };
    let c = Container {
        name: "linktargets".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![format!(
            "cat /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default {}",
            host_file.display()
        )],
        network: NetMode::None,
        mounts: vec![bind("/etc/nginx/sites-enabled/default"), bind("/etc/abs")],
        ..a_container()
    };
    let (out, err, code) = run(&env, &c);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    // The link's destination has the volume's file, and the host path the
    // absolute link names exists inside the root, with the volume's file.
    assert_eq!(out, "from-the-volume\n".repeat(3), "{err}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host\n");
    // The image's file under the mount is untouched.
    assert_eq!(
        std::fs::read_to_string(etc.join("nginx/sites-available/default")).unwrap(),
        "image\n"
    );
}

/// A program that is not root may open `/dev/stdout` (`/proc/self/fd/1`,
/// which checks the log pipe's owner, as nginx's `access_log /dev/stdout`
/// does): the child gives fds 1 and 2 to the container's user, as runc
/// does. The control is fd 0, /dev/null, which stays root's.
#[test]
fn a_user_that_is_not_root_owns_its_stdout() {
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    let Some(env) = setup("stdio") else { return };
    let c = Container {
        name: "stdio".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![
            "id -u; ls -lL /proc/self/fd/0 /proc/self/fd/1; echo via-dev-stdout > /dev/stdout; echo via-dev-stderr > /dev/stderr"
                .into(),
        ],
        user: Some(keel_config::containers::user("nobody").unwrap()),
        network: NetMode::None,
        ..a_container()
    };
    let img = ImageRoot {
        layers: vec![env.layer.clone()],
        ..Default::default()
    };
    // Becomes the resolved user, as keel's confinement does.
    let confiner =
        |_: &Container, who: &runtime::Ident| -> Result<runtime::Confinement, runtime::HookError> {
            let (uid, gid) = (who.uid, who.gid);
            Ok(Box::new(move || {
                let e = |e: nix::Error| e as i32;
                setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid)).map_err(e)?;
                setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid)).map_err(e)?;
                Ok(())
            }))
        };
    let confiner: &runtime::Confiner = &confiner;
    let r = runtime::start(&env.dirs, &c, &img, Some(confiner), None).expect("start");
    let (out, err) = (read_all(r.stdout), read_all(r.stderr));
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.pid), None);
    runtime::stop_run(&env.dirs, &c.name, &r.cgroup, None);
    assert!(out.starts_with("65534\n"), "{out}\n{err}");
    assert!(out.contains("via-dev-stdout"), "{out}\n{err}");
    assert!(err.contains("via-dev-stderr"), "{out}\n{err}");
    let owner = |fd: &str| {
        out.lines()
            .find(|l| l.ends_with(&format!("/proc/self/fd/{fd}")))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_else(|| panic!("no ls line for fd {fd}: {out}"))
            .to_string()
    };
    assert_eq!(owner("1"), "nobody", "{out}");
    assert_eq!(owner("0"), "root", "the control, /dev/null: {out}");
}
