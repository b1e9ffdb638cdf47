//! VM tests of containers: started from the busybox system image by the
//! cloud-config, seen through `keelctl ps|logs|stats` and the API, stopped,
//! started and restarted, confined (the escape battery), limited (an OOM
//! kill of the whole group, a fork bomb held at pids.max), and restarted
//! with the configured backoff.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use keel_api::ContainerStatus;
use keel_vmtests::{free_port, Scratch, Vm, VmConfig};

fn boot(s: &Scratch, name: &str, config: &str, hostfwd: Vec<String>) -> Vm {
    let file = s.path("user-data");
    std::fs::write(&file, config).unwrap();
    let mut cfg = VmConfig::new(name);
    cfg.cloud_config(&file);
    cfg.hostfwd = hostfwd;
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm
}

/// Poll until `f` holds for container `name`; panics with its last status.
fn wait_until(
    vm: &Vm,
    name: &str,
    what: &str,
    f: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = vm.container(name);
        if f(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not {what} after 60 s: {c:?}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logs(vm: &Vm, name: &str) -> String {
    let (ok, out, err) = vm.keelctl(&["logs", name]);
    assert!(ok, "keelctl logs {name}: {err}");
    out
}

/// Wait until the logs of `name` contain `marker`; returns them.
fn wait_logs(vm: &Vm, name: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = logs(vm, name);
        if l.contains(marker) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no {marker:?} in its logs after 60 s:\n{l}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Panic unless `text` (what `what` printed) has every one of `lines`.
fn assert_lines(what: &str, text: &str, lines: &[&str]) {
    for l in lines {
        assert!(text.contains(l), "{l:?} not in {what}:\n{text}");
    }
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: node\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The escape battery, run inside a container: each line says `denied` or
/// `ESCAPED`. (No /proc/kcore line: the kernel has no PROC_KCORE, so reading
/// it fails whatever the confinement and would prove nothing.)
const BATTERY: &str = r#"
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "ESCAPED $name"; else echo "denied $name"; fi; }
for n in $(seq 3 63); do try cwd-fd-$n cd /proc/self/fd/$n; done
try sysrq sh -c 'echo h > /proc/sysrq-trigger'
try mount mount -t tmpfs none /tmp
try unshare-user unshare -U true
try unshare-net unshare -n true
try setns nsenter -t 1 -m true
try write-proc-sys sh -c 'echo 1 > /proc/sys/kernel/panic'
try write-cgroup sh -c 'echo max > /sys/fs/cgroup/pids.max'
try mknod-root sh -c 'mknod /tmp/kmsg c 1 11 && head -c 1 /tmp/kmsg'
try mknod-dev sh -c 'mknod /dev/mem2 c 1 1 && head -c 1 /dev/mem2'
echo "pids: $(ls /proc | grep -c '^[0-9]')"
grep -E '^(NoNewPrivs|CapBnd|CapEff|Seccomp):' /proc/self/status
echo battery-done
sleep 100000
"#;

#[test]
fn containers_run_confined_and_are_managed() {
    let s = Scratch::new("containers-life");
    let port = free_port();
    let config = format!(
        r#"#cloud-config
hostname: node-c
containers:
  - name: hello
    image: busybox
    command: ["/bin/sh", "-c"]
    args: ["echo hello from $(hostname) as uid $(id -u); cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; sleep 100000"]
    network: none
    resources:
      memory: 64M
      pids: 32
  - name: web
    image: busybox
    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/var/www"]
    network: host
    after: [hello]
  - name: escape
    image: busybox
    command: ["/bin/sh", "-c"]
    args:
      - |{battery}
    network: none
  - name: nobody
    image: busybox
    user: nobody
    command: ["/bin/sh", "-c", "id; grep -E '^Cap(Eff|Bnd):' /proc/self/status; touch /x || echo read-only-root-for-nobody; sleep 100000"]
    network: none
  - name: badcwd
    image: busybox
    workdir: /proc/self/fd/5
    command: ["/bin/true"]
    restart: never
    network: none
  - name: probe
    image: probe
    args: ["escape"]
    restart: never
    network: none
  - name: probe-open
    image: probe
    args: ["escape"]
    restart: never
    network: none
    capabilities:
      add: [SYS_ADMIN, BPF, SYS_BOOT, SYS_MODULE, DAC_READ_SEARCH, SYS_PTRACE]
  - name: battery-open
    image: busybox
    command: ["/bin/sh", "-c"]
    args:
      - |{battery}
    network: none
    capabilities:
      add: [SYS_ADMIN]
"#,
        battery = BATTERY.replace('\n', "\n        ")
    );
    let file = s.path("user-data");
    std::fs::write(&file, &config).unwrap();
    let mut cfg = VmConfig::new("containers-life");
    cfg.cloud_config(&file);
    cfg.hostfwd = vec![format!("tcp:127.0.0.1:{port}-:8080")];
    // The probe's control run on the node itself: no seccomp filter, every
    // capability, the node's pid namespace and root.
    cfg.append = "keel.run=/usr/lib/keel/test-helper,escape".into();
    let mut vm = Vm::start(cfg);
    vm.wait_ready();

    // Started, in order, and shown by keelctl ps.
    wait_until(&vm, "hello", "running", |c| c.state == "running");
    wait_until(&vm, "web", "running", |c| c.state == "running");
    let (ok, table, err) = vm.keelctl(&["ps"]);
    assert!(ok, "{err}");
    assert_lines(
        "keelctl ps",
        &table,
        &[
            "hello",
            "web",
            "escape",
            "nobody",
            "badcwd",
            "probe",
            "probe-open",
            "battery-open",
        ],
    );
    let hello = wait_logs(&vm, "hello", "\n32\n");
    assert!(hello.contains("hello from hello as uid 0"), "{hello}");
    assert!(
        hello.contains("67108864\n32\n"),
        "limits seen inside: {hello}"
    );

    // The web container answers on the node's port, forwarded from here.
    let page = http_get(port).expect("GET the web container");
    assert!(page.contains("hello from keel"), "{page}");

    // The escape battery: every attempt fails, the process is confined.
    let b = wait_logs(&vm, "escape", "battery-done");
    assert!(!b.contains("ESCAPED"), "{b}");
    assert_eq!(b.matches("denied ").count(), 61 + 9, "{b}");
    assert!(b.contains("NoNewPrivs:\t1"), "{b}");
    assert!(b.contains("CapBnd:\t00000000a80425fb"), "{b}");
    assert!(b.contains("Seccomp:\t2"), "{b}");
    // Only its own processes are visible: the shell, the command
    // substitution's subshell, ls and grep (the node runs dozens).
    let pids: usize = b
        .lines()
        .find_map(|l| l.strip_prefix("pids: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(99);
    assert!(pids <= 5, "{b}");
    // Its control: the same battery with CAP_SYS_ADMIN gets through where
    // capabilities and seccomp were what stopped it, and stays out where
    // the mount table does (read-only /proc/sys, sysrq-trigger and cgroup,
    // no inherited fds). (Its device nodes are not compared: having
    // mounted its own tmpfs, it may read a node it made there.)
    let open = wait_logs(&vm, "battery-open", "battery-done");
    assert_lines(
        "the control battery",
        &open,
        &[
            "ESCAPED mount",
            // The kernel has no user namespaces (USER_NS=n): even with
            // CAP_SYS_ADMIN and the filter's namespace group open, unshare
            // -U fails, while unshare -n of the same container works.
            "denied unshare-user",
            "ESCAPED unshare-net",
            "denied write-proc-sys",
            "denied write-cgroup",
            "denied sysrq",
        ],
    );
    assert!(!open.contains("ESCAPED cwd-fd"), "{open}");

    // System calls and reaches only a compiled program tries, each with
    // valid arguments. Confined, each is refused by confinement (EPERM from
    // the seccomp filter or a missing capability), not by the kernel.
    let p = wait_logs(&vm, "probe", "escape-done");
    assert_lines(
        "the probe",
        &p,
        &[
            "denied bpf (EPERM",
            "denied kexec_load (EPERM",
            "denied kexec_file_load (EPERM",
            "denied init_module (EPERM",
            "denied unshare-user (EPERM",
            "denied mount (EPERM",
            "denied open_by_handle_at (EPERM",
            "denied reboot (EPERM",
            "denied ptrace-node",
            "denied keel-visible",
            "denied node-files",
            "NoNewPrivs:\t1",
            "CapBnd:\t00000000a80425fb",
        ],
    );
    assert!(!p.contains("ESCAPED") && !p.contains("reached"), "{p}");
    // Control 1, the same probe in a container given the capabilities:
    // what the capability groups of the filter allow gets through (or
    // reaches the kernel, which lacks modules and refuses reboot in a pid
    // namespace); the pid namespace and the root still hold.
    let o = wait_logs(&vm, "probe-open", "escape-done");
    assert_lines(
        "the capability control",
        &o,
        &[
            "ESCAPED bpf",
            "denied kexec_load (EPERM",
            "reached init_module (ENOSYS",
            // Past the filter and the capability check, the kernel itself
            // refuses: it has no user namespaces (EINVAL, not EPERM).
            "reached unshare-user (EINVAL",
            "ESCAPED mount",
            "ESCAPED open_by_handle_at",
            "reached reboot (EINVAL",
            "denied ptrace-node",
            "denied keel-visible",
            "denied node-files",
        ],
    );
    // Control 2, the same probe on the node (keel.run): every attempt gets
    // past where a container is stopped. kexec_load and init_module reach
    // the kernel, which has neither (ENOSYS): in a container, EPERM came
    // from the filter. kexec_file_load gets past the capability check to
    // the kernel's own checks of its arguments (6.1 wants file descriptors
    // even to unload).
    vm.wait_for("escape-done", Duration::from_secs(60));
    let c = vm.console();
    let node = &c[c.find("test-helper: escape").expect("the node's probe")..];
    assert!(
        node.lines()
            .any(|l| l.starts_with("ESCAPED kexec_file_load")
                || l.starts_with("reached kexec_file_load")),
        "kexec_file_load stopped on the node:\n{node}"
    );
    assert_lines(
        "the node's control run",
        node,
        &[
            "ESCAPED bpf",
            "reached kexec_load (ENOSYS",
            "reached init_module (ENOSYS",
            "reached unshare-user (EINVAL",
            "ESCAPED mount",
            "ESCAPED open_by_handle_at",
            "ESCAPED reboot",
            "ESCAPED ptrace-node",
            "ESCAPED keel-visible",
            "ESCAPED node-files",
        ],
    );

    let nobody = wait_logs(&vm, "nobody", "CapBnd");
    assert!(nobody.contains("uid=65534(nobody)"), "{nobody}");
    assert!(nobody.contains("CapEff:\t0000000000000000"), "{nobody}");

    // A working directory through an inherited fd does not exist: the
    // start fails, naming the step.
    let bad = wait_until(&vm, "badcwd", "failed", |c| c.state == "failed");
    let e = bad.error.unwrap_or_default();
    assert!(e.contains("working directory"), "{e}");

    // stop, start, restart.
    let (ok, _, err) = vm.keelctl(&["stop", "web"]);
    assert!(ok, "{err}");
    let web = wait_until(&vm, "web", "stopped", |c| c.state == "stopped");
    assert!(web.pid.is_none());
    assert!(http_get(port)
        .map(|p| !p.contains("hello from keel"))
        .unwrap_or(true));
    let (ok, _, err) = vm.keelctl(&["start", "web"]);
    assert!(ok, "{err}");
    wait_until(&vm, "web", "running", |c| c.state == "running");
    let pid = vm.container("hello").pid;
    let (ok, _, err) = vm.keelctl(&["restart", "hello"]);
    assert!(ok, "{err}");
    let h = wait_until(&vm, "hello", "restarted", |c| {
        c.state == "running" && c.pid != pid
    });
    assert_eq!(h.restarts, 1);
    let (ok, _, err) = vm.keelctl(&["stop", "nosuch"]);
    assert!(!ok && err.contains("nosuch"), "{err}");

    // stats shows live use.
    let (ok, st, err) = vm.keelctl(&["stats", "hello"]);
    assert!(ok, "{err}");
    assert!(st.contains("hello") && st.contains("64.0 MiB"), "{st}");

    // A new config at runtime: web stays as it is (same pid), hello is
    // replaced (its command changed), the rest go, late is added.
    let web_pid = vm.container("web").pid;
    let next = config
        .split("  - name: escape")
        .next()
        .unwrap()
        .replace("sleep 100000\"]", "echo second life; sleep 100000\"]")
        + "  - name: late\n    image: busybox\n    command: [\"/bin/sleep\", \"100000\"]\n    network: none\n";
    let file = s.path("next.yaml");
    std::fs::write(&file, keel_vmtests::with_api(&next)).unwrap();
    let (ok, out, err) = vm.keelctl(&["config", "apply", "--dry-run", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_lines(
        "the dry run",
        &out,
        &[
            "would      late: added",
            "would      hello: replaced",
            "would      escape: removed",
        ],
    );
    assert!(!out.contains("web:"), "{out}");
    assert_eq!(vm.containers().len(), 8, "a dry run changes nothing");
    let (ok, out, err) = vm.keelctl(&["config", "apply", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("container  late: added"), "{out}");
    wait_until(&vm, "late", "running", |c| c.state == "running");
    let h = wait_until(&vm, "hello", "replaced", |c| {
        c.state == "running" && c.restarts == 0
    });
    assert!(
        wait_logs(&vm, "hello", "second life").contains("second life"),
        "{h:?}"
    );
    assert_eq!(
        vm.container("web").pid,
        web_pid,
        "an unchanged container keeps running"
    );
    let names: Vec<String> = vm.containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["hello", "late", "web"]);
    vm.assert_no_fatal();
}

#[test]
fn limits_hold_and_restarts_back_off() {
    let s = Scratch::new("containers-limits");
    let config = r#"#cloud-config
containers:
  - name: calm
    image: busybox
    command: ["/bin/sleep", "100000"]
    network: none
  - name: hog
    image: busybox
    command: ["/bin/sh", "-c", "sleep 100000 & dd if=/dev/zero of=/dev/null bs=48M count=1; echo survived"]
    restart: never
    network: none
    resources:
      memory: 16M
  - name: bomb
    image: busybox
    command: ["/bin/sh", "-c", "(i=0; while [ $i -lt 64 ]; do sleep 100000 & i=$((i+1)); done); echo spawned; sleep 100000"]
    restart: on-failure
    network: none
    resources:
      pids: 16
  - name: crashy
    image: busybox
    command: ["/bin/sh", "-c", "echo crash at $(cut -d ' ' -f 1 /proc/uptime); exit 3"]
    restart: on-failure
    network: none
    backoff:
      initial: 1s
      max: 4s
  - name: checked
    image: busybox
    command: ["/bin/httpd", "-f", "-p", "80", "-h", "/var/www"]
    network: none
    healthcheck:
      http: {port: 80, path: /}
      interval: 500ms
      timeout: 400ms
  - name: waiter
    image: busybox
    command: ["/bin/sleep", "100000"]
    network: none
    after: [checked]
  - name: cmdcheck
    image: busybox
    command: ["/bin/sh", "-c", "sleep 1; touch /tmp/ready; sleep 100000"]
    network: none
    user: nobody
    healthcheck:
      command: ["/bin/sh", "-c", "test -e /tmp/ready && test $(id -u) = 65534 && test -e /proc/self/status"]
      interval: 500ms
      timeout: 400ms
  - name: sick
    image: busybox
    command: ["/bin/sleep", "100000"]
    network: none
    healthcheck:
      tcp: 9999
      interval: 500ms
      timeout: 400ms
      retries: 2
    backoff:
      initial: 1s
  - name: throttled
    image: busybox
    command: ["/bin/sh", "-c", "cat /sys/fs/cgroup/io.max; echo io-done; sleep 100000"]
    network: none
    resources:
      io_max:
        - {device: /dev/loop0, rbps: 1M, wiops: 100}
  - name: base
    image: busybox
    command: ["/bin/sleep", "100000"]
    network: none
  - name: dependent
    image: busybox
    command: ["/bin/sleep", "100000"]
    network: none
    requires: [base]
  - name: polite
    image: busybox
    command: ["/bin/sh", "-c", "trap 'echo got USR1; exit 0' USR1; echo trapping; while :; do sleep 1; done"]
    network: none
    restart: never
    stop_signal: SIGUSR1
    stop_grace: 20s
  - name: who
    image: busybox
    command: ["/bin/sh", "-c", "id; echo who-done; sleep 100000"]
    network: none
    user: www
    group_add: [staff, "1234"]
  - name: whonum
    image: busybox
    command: ["/bin/sh", "-c", "id; echo whonum-done; sleep 100000"]
    network: none
    user: "33"
  - name: whonew
    image: busybox
    command: ["/bin/sh", "-c", "id; echo whonew-done; sleep 100000"]
    network: none
    user: "1000"
  - name: deaf
    image: busybox
    command: ["/bin/sh", "-c", "trap 'echo got USR1; exit 0' USR1; echo trapping; while :; do sleep 1; done"]
    network: none
    restart: never
    stop_grace: 2s
  - name: webinit
    image: busybox
    command: ["/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/var/www"]
    user: nobody
    init: true
    network: none
    restart: never
    stop_grace: 20s
    healthcheck:
      http: {port: 8080, path: /}
      interval: 500ms
      timeout: 400ms
  - name: webbare
    image: busybox
    command: ["/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/var/www"]
    user: nobody
    network: none
    restart: never
    stop_grace: 2s
    healthcheck:
      http: {port: 8080, path: /}
      interval: 500ms
      timeout: 400ms
  - name: initps
    image: busybox
    command: ["/bin/sh", "-c", "echo pid=$$ ppid=$PPID; ps -o pid,ppid,user,args; echo ps-done; exec sleep 100000"]
    user: nobody
    init: true
    network: none
  - name: orphans
    image: busybox
    command: ["/bin/sh", "-c", "(sleep 1 &); (sleep 3; echo zombies=$(cat /proc/[0-9]*/stat | grep -c ') Z '); echo check-done) & exec sleep 100000"]
    init: true
    network: none
  - name: orphansbare
    image: busybox
    command: ["/bin/sh", "-c", "(sleep 1 &); (sleep 3; echo zombies=$(cat /proc/[0-9]*/stat | grep -c ') Z '); echo check-done) & exec sleep 100000"]
    network: none
  - name: seven
    image: busybox
    command: ["/bin/sh", "-c", "exit 7"]
    init: true
    network: none
    restart: never
"#;
    let vm = boot(&s, "containers-limits", config, Vec::new());

    // The hog is OOM-killed as a group (its sleep too); nothing else is.
    let hog = wait_until(&vm, "hog", "exited", |c| c.state == "exited");
    assert_eq!(
        hog.last_exit
            .as_deref()
            .map(|x| x.starts_with("killed by signal 9")),
        Some(true),
        "{hog:?}"
    );
    assert!(hog.stats.oom_kills >= 1, "{hog:?}");
    assert!(hog.stats.oom_group_kills >= 1, "{hog:?}");
    assert!(!logs(&vm, "hog").contains("survived"));
    assert_eq!(vm.container("calm").state, "running");

    // The fork bomb stops at pids.max; keel and the others live on.
    let bomb = wait_logs(&vm, "bomb", "spawned");
    assert!(bomb.contains("can't fork"), "{bomb}");
    let b = vm.container("bomb");
    assert_eq!(b.stats.pids_max, Some(16));
    assert!((14..=16).contains(&b.stats.pids), "{b:?}");
    assert_eq!(b.state, "running", "{b:?}");
    assert_eq!(vm.container("calm").state, "running");
    assert!(vm.status().processes.total > 0);

    // crashy restarts with doubling delays: 1 s, 2 s, 4 s, 4 s. Each run
    // prints the guest's uptime as it starts, so the gaps are measured on
    // the guest's clock, not by polling from the host: a gap between two
    // starts is the backoff plus one run, never less than the backoff.
    let deadline = Instant::now() + Duration::from_secs(90);
    let starts: Vec<f64> = loop {
        let starts: Vec<f64> = logs(&vm, "crashy")
            .lines()
            .filter_map(|l| l.strip_prefix("crash at ")?.trim().parse().ok())
            .collect();
        if starts.len() >= 5 {
            break starts;
        }
        assert!(
            Instant::now() < deadline,
            "crashy: {} starts after 90 s: {starts:?}",
            starts.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (i, backoff) in [1.0, 2.0, 4.0, 4.0].iter().enumerate() {
        let gap = starts[i + 1] - starts[i];
        // /proc/uptime has 10 ms steps; a start and an exit under TCG
        // take well under 2 s.
        assert!(
            gap >= backoff - 0.011 && gap <= backoff + 2.0,
            "start {} came {gap:.2} s after start {i}, want the {backoff} s backoff plus a run ({starts:?})",
            i + 1
        );
    }
    let c = vm.container("crashy");
    assert_eq!(c.last_exit.as_deref(), Some("exited 3"));

    // Health checks run inside each container's own network namespace: an
    // HTTP check passes, and its dependent started; a TCP check against a
    // closed port fails `retries` times and the container is restarted.
    let checked = wait_until(&vm, "checked", "healthy", |c| {
        c.health.as_deref() == Some("healthy")
    });
    assert_eq!(checked.state, "running");
    wait_until(&vm, "waiter", "running", |c| c.state == "running");
    // A command check runs inside the container, as its user.
    wait_until(&vm, "cmdcheck", "healthy", |c| {
        c.health.as_deref() == Some("healthy")
    });
    // io.max on the root's loop device (7:0), as the cgroup shows it inside.
    let io = wait_logs(&vm, "throttled", "io-done");
    assert!(
        io.contains("7:0 rbps=1048576 wbps=max riops=max wiops=100"),
        "{io}"
    );

    // requires: a container stops with what it requires, and comes back
    // with it.
    let before = wait_until(&vm, "dependent", "running", |c| c.state == "running").pid;
    let (ok, _, err) = vm.keelctl(&["stop", "base"]);
    assert!(ok, "{err}");
    wait_until(&vm, "dependent", "waiting", |c| {
        c.state == "waiting" && c.pid.is_none()
    });
    let (ok, _, err) = vm.keelctl(&["start", "base"]);
    assert!(ok, "{err}");
    let after = wait_until(&vm, "dependent", "running again", |c| c.state == "running").pid;
    assert_ne!(before, after);

    // Users and groups as Docker resolves them in the image: a name's
    // passwd group, the groups that list it, group_add; a uid with an
    // entry gets that entry's group; one without gets group 0.
    let who = wait_logs(&vm, "who", "who-done");
    assert!(
        // (the kernel keeps them sorted)
        who.contains("uid=33(www) gid=33(www) groups=4(logs),33(www),50(staff),1234"),
        "{who}"
    );
    let who = wait_logs(&vm, "whonum", "whonum-done");
    assert!(
        who.contains("uid=33(www) gid=33(www) groups=4(logs),33(www)\n"),
        "{who}"
    );
    let who = wait_logs(&vm, "whonew", "whonew-done");
    assert!(who.contains("uid=1000 gid=0(root) groups=0(root)"), "{who}");

    // A stop sends the container's stop_signal: the shell that traps it
    // ends at once on its own; the same shell sent the default SIGTERM
    // (no handler: the init of a pid namespace ignores it) is killed when
    // its grace period ends.
    for name in ["polite", "deaf"] {
        wait_logs(&vm, name, "trapping");
    }
    let t = std::time::Instant::now();
    let (ok, _, err) = vm.keelctl(&["stop", "polite"]);
    assert!(ok, "{err}");
    let c = wait_until(&vm, "polite", "stopped", |c| c.state == "stopped");
    let polite = t.elapsed();
    assert_eq!(c.last_exit.as_deref(), Some("exited 0"), "{c:?}");
    assert!(logs(&vm, "polite").contains("got USR1"));
    let (ok, _, err) = vm.keelctl(&["stop", "deaf"]);
    assert!(ok, "{err}");
    let c = wait_until(&vm, "deaf", "stopped", |c| c.state == "stopped");
    assert_eq!(c.last_exit.as_deref(), Some("killed by signal 9"), "{c:?}");
    assert!(!logs(&vm, "deaf").contains("got USR1"));
    assert!(
        polite < std::time::Duration::from_secs(15),
        "the polite stop took {polite:?} of its 20 s grace"
    );

    // init: true (keel-init as PID 1, the program its child): busybox
    // httpd, which has no SIGTERM handler, dies of the SIGTERM keel-init
    // passes on, at once, well inside its 20 s grace (exit 128+15, as
    // tini reports it). Control: the same httpd as PID 1 ignores SIGTERM
    // and is killed when its 2 s grace ends. Both serve (healthy) first,
    // as nobody: the init needs no privilege.
    for name in ["webinit", "webbare"] {
        wait_until(&vm, name, "healthy", |c| {
            c.health.as_deref() == Some("healthy")
        });
    }
    let stop = |name: &str| {
        let t = Instant::now();
        let (ok, _, err) = vm.keelctl(&["stop", name]);
        assert!(ok, "{err}");
        let c = wait_until(&vm, name, "stopped", |c| c.state == "stopped");
        (t.elapsed(), c)
    };
    let (with_init, c) = stop("webinit");
    assert_eq!(c.last_exit.as_deref(), Some("exited 143"), "{c:?}");
    let (without, c) = stop("webbare");
    assert_eq!(c.last_exit.as_deref(), Some("killed by signal 9"), "{c:?}");
    eprintln!(
        "stop of busybox httpd (the demo's web): with init {:.3} s (grace 20 s), without {:.3} s (grace 2 s: killed at its end)",
        with_init.as_secs_f64(),
        without.as_secs_f64()
    );
    assert!(
        with_init < Duration::from_secs(5),
        "the stop under init took {with_init:?} of its 20 s grace"
    );
    assert!(without >= Duration::from_secs(2), "{without:?}");
    // Inside: keel-init is PID 1, the program its child (pid 2), with
    // its own argv, both the container's user.
    let ps = wait_logs(&vm, "initps", "ps-done");
    assert!(ps.contains("pid=2 ppid=1\n"), "{ps}");
    let line = |pid: &str| {
        ps.lines()
            .find(|l| l.split_whitespace().next() == Some(pid))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert!(
        line("1").starts_with("1 0 nobody /dev/init /bin/sh -- /bin/sh -c echo pid="),
        "{ps}"
    );
    assert!(
        line("2").starts_with("2 1 nobody /bin/sh -c echo pid="),
        "{ps}"
    );
    // An orphan that ends is reaped by keel-init. Control: with the
    // program as PID 1 (a sleep, which waits for nobody), it stays a
    // zombie.
    let o = wait_logs(&vm, "orphans", "check-done");
    assert!(o.contains("zombies=0\n"), "{o}");
    let o = wait_logs(&vm, "orphansbare", "check-done");
    assert!(o.contains("zombies=1\n"), "{o}");
    // The program's exit code is the container's.
    let c = wait_until(&vm, "seven", "exited", |c| c.state == "exited");
    assert_eq!(c.last_exit.as_deref(), Some("exited 7"), "{c:?}");

    let sick = wait_until(&vm, "sick", "restarted", |c| c.restarts >= 1);
    assert!(
        sick.last_exit
            .as_deref()
            .is_some_and(|x| x.contains("unhealthy")),
        "{sick:?}"
    );
    vm.assert_no_fatal();
}

/// What `make run` boots (the user image, diskless, microvm), in 48 MB of
/// guest RAM (the size budget's smallest machine, docs/boot.md): the demo
/// config's web container answers curl on the forwarded port and is
/// announced in the node's cluster store.
#[test]
fn the_demo_node_serves_its_page_in_48_mb() {
    let port = free_port();
    let kv = free_port();
    let mut cfg = VmConfig::new("containers-demo");
    cfg.variant = keel_vmtests::Variant::Keel;
    cfg.mem = "48M".into();
    cfg.cloud_config(&keel_vmtests::root().join("initramfs/demo-config.yaml"));
    cfg.hostfwd = vec![
        format!("tcp:127.0.0.1:{port}-:8080"),
        format!("tcp:127.0.0.1:{kv}-:2379"),
    ];
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    wait_until(&vm, "web", "running", |c| c.state == "running");
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let out = std::process::Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/")])
            .output()
            .expect("run curl");
        let page = String::from_utf8_lossy(&out.stdout).into_owned();
        if page.contains("hello from keel") || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains("hello from keel"), "curl got {page:?}");
    // httpd -v logs each answer.
    let l = wait_logs(&vm, "web", "response:200");
    assert!(l.contains("10.0.2.2"), "{l}");
    let st = vm.status();
    assert_eq!(st.hostname, "keel-demo");
    assert!(st.memory.total_kb < 48 * 1024, "{:?}", st.memory);

    // The healthy web container is announced; etcdctl lists it (--no-sync:
    // the test forwards another port than the 2379 the demo advertises).
    let etcdctl = |args: &[&str]| {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "2")
            .args([
                "--no-sync",
                "--endpoints",
                &format!("http://127.0.0.1:{kv}"),
            ])
            .args(args)
            .output()
            .expect("etcdctl (Debian package etcd-client)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let l = etcdctl(&["ls", "--recursive", "/services"]);
        if l.contains("/services/web/keel-demo-web") || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(listed, "/services/web\n/services/web/keel-demo-web\n");
    let v: serde_json::Value =
        serde_json::from_str(etcdctl(&["get", "/services/web/keel-demo-web"]).trim()).unwrap();
    assert_eq!(v["port"], 8080);
    assert_eq!(v["version"], "busybox:latest");
    assert_eq!(v["host"], "10.0.2.15");

    // Stopped, it leaves the store; started again, it comes back. It runs
    // under keel-init (init: true), so httpd gets the SIGTERM and the stop
    // takes well under its 10 s grace.
    let t = Instant::now();
    let (ok, _, err) = vm.keelctl(&["stop", "web"]);
    assert!(ok, "{err}");
    let c = wait_until(&vm, "web", "stopped", |c| c.state == "stopped");
    let took = t.elapsed();
    eprintln!(
        "demo web container stop (init: true): {:.3} s",
        took.as_secs_f64()
    );
    assert_eq!(c.last_exit.as_deref(), Some("exited 143"), "{c:?}");
    assert!(
        took < Duration::from_secs(5),
        "the demo's stop took {took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while etcdctl(&["ls", "/services/web"]).contains("keel-demo-web") {
        assert!(Instant::now() < deadline, "still announced after stop");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, err) = vm.keelctl(&["start", "web"]);
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !etcdctl(&["ls", "/services/web"]).contains("keel-demo-web") {
        assert!(Instant::now() < deadline, "not announced again after start");
        std::thread::sleep(Duration::from_millis(500));
    }

    // `keelctl poweroff` of the demo: the web container (init: true) stops
    // at once, so the node is off in well under its 10 s grace.
    wait_until(&vm, "web", "running", |c| c.state == "running");
    let t = Instant::now();
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    vm.wait_for("reboot: Power down", Duration::from_secs(60));
    let took = t.elapsed();
    assert!(vm.wait_exit(Duration::from_secs(30)).success());
    eprintln!("demo: keelctl poweroff to power down in {took:?}");
    assert!(took < Duration::from_secs(5), "poweroff took {took:?}");
}

/// A registry on the host (Debian's docker-registry, reached from the VM
/// through qemu's user network at 10.0.2.2).
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(s: &Scratch) -> Registry {
    let port = free_port();
    let config = s.path("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            s.path("registry").display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry (scripts/deps.sh installs it)");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "docker-registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry { child, port }
}

fn skopeo_push(layout: &std::path::Path, reference: &str, dest: &str) {
    let out = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{reference}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy to {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A layer that tries to write through a symlink out of its directory.
fn push_evil(s: &Scratch, registry: &str) {
    use keel_oci::manifest::{ContainerConfig, Platform};
    use keel_oci::writer::{layer_tar, write_layout, ImageSpec, Layer, LayerEntry};
    let entries = vec![
        LayerEntry::symlink("x", "/var/lib/keel/volumes/shared"),
        LayerEntry::file("x/pwned", b"escaped\n"),
        LayerEntry::file(
            "../../../../var/lib/keel/volumes/shared/pwned2",
            b"escaped\n",
        ),
    ];
    let layer = Layer::tar_gzip(&layer_tar(&entries).unwrap()).unwrap();
    let spec = ImageSpec {
        name: Some("evil:1".into()),
        platform: Platform::linux_amd64(),
        config: ContainerConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        },
    };
    let dir = s.path("evil-layout");
    write_layout(&dir, &spec, &[layer]).unwrap();
    skopeo_push(&dir, "evil:1", &format!("{registry}/test/evil:1"));
}

/// Push `test/devs:1`: one layer with a character device node beside a
/// file (as old base images carry `/dev/console`), and no program: its
/// start gets past the unpack and stops at the missing `cat`.
fn push_devs(s: &Scratch, registry: &str) {
    use keel_oci::manifest::{ContainerConfig, Platform};
    use keel_oci::writer::{layer_tar, write_layout, EntryKind, ImageSpec, Layer, LayerEntry};
    let entries = vec![
        LayerEntry::dir("dev"),
        LayerEntry {
            kind: EntryKind::CharDevice { major: 1, minor: 1 },
            ..LayerEntry::file("dev/xyz", b"")
        },
        LayerEntry::file("etc/devs-layer", b"beside-the-node\n"),
    ];
    let layer = Layer::tar_gzip(&layer_tar(&entries).unwrap()).unwrap();
    let spec = ImageSpec {
        name: Some("devs:1".into()),
        platform: Platform::linux_amd64(),
        config: ContainerConfig {
            entrypoint: Some(vec!["cat".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        },
    };
    let dir = s.path("devs-layout");
    write_layout(&dir, &spec, &[layer]).unwrap();
    skopeo_push(&dir, "devs:1", &format!("{registry}/test/devs:1"));
}

/// A host TCP server answering every connection with `text`.
fn serve_text(text: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
        }
    });
    port
}

#[test]
fn pulled_images_run_on_the_bridge_and_evil_layers_are_refused() {
    let s = Scratch::new("containers-net");
    let reg = start_registry(&s);
    let host_reg = format!("127.0.0.1:{}", reg.port);
    let oci = keel_vmtests::build_dir().join("busybox-oci");
    skopeo_push(
        &oci,
        "busybox:latest",
        &format!("{host_reg}/test/busybox:1"),
    );
    push_evil(&s, &host_reg);
    push_devs(&s, &host_reg);
    let outside = serve_text("outside-ok");
    let web = free_port();
    let config = format!(
        r#"#cloud-config
registries:
  insecure: ["10.0.2.2:{port}"]
containers:
  - name: srv
    image: 10.0.2.2:{port}/test/busybox:1
    command: ["/bin/httpd", "-f", "-p", "80", "-h", "/var/www"]
    ports: ["8088:80"]
  - name: client
    image: busybox
    after: [srv]
    command: ["/bin/sh", "-c"]
    args: ["ip -4 addr show eth0; cat /etc/resolv.conf; wget -q -O - http://10.0.2.2:{outside}/ && echo; wget -q -O - http://10.0.2.15:8088/ && echo client-done; sleep 100000"]
  - name: evil
    image: 10.0.2.2:{port}/test/evil:1
    network: none
    restart: never
  - name: devs
    image: 10.0.2.2:{port}/test/devs:1
    network: none
    restart: never
  - name: checker
    image: busybox
    network: none
    mounts:
      - {{type: bind, source: /var/lib/keel/volumes/shared, target: /vol}}
    command: ["/bin/sh", "-c", "ls -la /vol; echo listed; sleep 100000"]
  - name: same1
    image: 10.0.2.2:{port}/test/busybox:1
    network: none
    restart: never
    command: ["/bin/sleep", "100000"]
  - name: same2
    image: 10.0.2.2:{port}/test/busybox:1
    network: none
    restart: never
    command: ["/bin/sleep", "100000"]
  - name: same3
    image: 10.0.2.2:{port}/test/busybox:1
    network: none
    restart: never
    command: ["/bin/sleep", "100000"]
"#,
        port = reg.port
    );
    let vm = boot(
        &s,
        "containers-net",
        &config,
        vec![format!("tcp:127.0.0.1:{web}-:8088")],
    );

    // Pulled from the registry, on the bridge with an address.
    let srv = wait_until(&vm, "srv", "running", |c| c.state == "running");
    let addr = srv.address.clone().unwrap_or_default();
    assert!(addr.starts_with("10.88."), "{srv:?}");
    // The published port from the host: qemu forwards to the node's 8088,
    // keel's DNAT to the container's 80.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        match http_get(web) {
            Ok(p) if p.contains("hello from keel") => break p,
            r if Instant::now() > deadline => {
                panic!("GET the published port: {r:?}\n{}", vm.console())
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(page.contains("200"), "{page}");

    // From inside a bridge container: its own address, the outside through
    // the masquerade, the other container through the node's published port.
    let l = wait_logs(&vm, "client", "client-done");
    assert!(l.contains("inet 10.88."), "{l}");
    assert!(l.contains("outside-ok"), "{l}");
    assert!(l.contains("hello from keel"), "{l}");
    assert!(l.contains("nameserver"), "{l}");

    // The evil layer is refused by name, and nothing reached the volumes.
    let evil = wait_until(&vm, "evil", "failed", |c| c.state == "failed");
    let e = evil.error.unwrap_or_default();
    assert!(e.contains("x/pwned") || e.contains("pwned2"), "{e}");
    let out = wait_logs(&vm, "checker", "listed");
    assert!(!out.contains("pwned"), "{out}");

    // A device node in a layer is skipped, and said so, not a refusal of
    // the image: the start gets past the unpack (to the missing program).
    let devs = wait_until(&vm, "devs", "failed", |c| c.state == "failed");
    let e = devs.error.unwrap_or_default();
    assert!(e.contains("cat: not found in the image"), "{e}");
    let console = vm.console();
    let note = console
        .lines()
        .find(|l| l.contains("/test/devs:1: layer sha256:"))
        .unwrap_or_else(|| panic!("no note of the skipped node:\n{console}"));
    assert!(
        note.ends_with(": skipped device node /dev/xyz (keel creates no device nodes from images)"),
        "{note}"
    );

    // Four containers on one image, started together at boot: one pull,
    // one unpack of its layer, and all four running.
    for name in ["same1", "same2", "same3"] {
        wait_until(&vm, name, "running", |c| c.state == "running");
    }
    let image = format!("10.0.2.2:{}/test/busybox:1", reg.port);
    let console = vm.console();
    let pulls = console
        .matches(&format!("images: pulled {image} ("))
        .count();
    assert_eq!(pulls, 1, "{console}");
    // One unpack per layer digest. The pulled busybox shares its layer with
    // the system busybox another container imports: whichever image comes
    // first unpacks it, under its own name, and the other finds it.
    let mut unpacked: Vec<&str> = console
        .lines()
        .filter_map(|l| l.split(": unpacked layer ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let all = unpacked.len();
    unpacked.sort_unstable();
    unpacked.dedup();
    assert_eq!(unpacked.len(), all, "a layer unpacked twice: {console}");
    assert!(
        console.contains(&format!("images: {image}: unpacked layer "))
            || console.contains("images: busybox:latest: unpacked layer "),
        "{console}"
    );
    vm.assert_no_fatal();
    drop(reg);
}

/// The verdict `test-helper connect` printed for `target` in `text`.
fn verdict<'a>(text: &'a str, target: &str) -> &'a str {
    let prefix = format!("connect {target}: ");
    text.lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("no verdict for {target} in:\n{text}"))
}

/// Containers on the bridge reach no port of the node itself: keel's input
/// filter drops what comes from the bridge to any of the node's addresses
/// (the bridge's 10.88.0.1, eth0's 10.0.2.15), so a connection times out
/// (`dropped`) where the node's own stack would have answered. The KV is
/// told to listen on every address here, and the peer port too, so that
/// the ports are there to be reached: the controls, from the node itself
/// (keel.run), reach them. The API's 9420 may be open or closed on a node
/// without `api:` (either is the node's stack answering): from a
/// container, it is dropped either way. A container with `node_port: kv`
/// reaches the KV, and only it; a published port of another container, on
/// the node's address, stays reachable (DNAT happens before the filter).
///
/// In the same node: a root container leaves a FIFO at /etc/passwd in its
/// upper layer (kept across restarts); its next start, which looks its
/// `user:` up there, fails saying so instead of blocking PID 1 on the
/// FIFO, and the node keeps answering. And a container replaces a
/// directory of a shared volume with a link to `/` after the config was
/// validated and before another container that binds that directory
/// starts (its health check, which `after:` waits for, passes once the
/// link is there): that start fails naming the link, nothing of the node
/// is mounted, while a third container binding a real directory of the
/// same volume runs (the control).
#[test]
fn containers_reach_nothing_of_the_node() {
    let s = Scratch::new("containers-walled");
    let node_ports = [
        "10.88.0.1:9420",
        "10.88.0.1:2379",
        "10.88.0.1:2380",
        "10.0.2.15:9420",
        "10.0.2.15:2379",
        "10.0.2.15:2380",
    ];
    let quoted = |t: &[&str]| {
        t.iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        r#"#cloud-config
coreos:
  etcd2:
    listen-client-urls: http://0.0.0.0:2379
    listen-peer-urls: http://0.0.0.0:2380
containers:
  - name: web
    image: busybox
    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/var/www"]
    ports: ["8080:8080"]
  - name: walled
    image: probe
    after: [web]
    restart: never
    args: ["connect", "--wait", "120", "10.0.2.15:8080", "--wait", "0", {ports}]
  - name: kv-client
    image: probe
    restart: never
    node_port: kv
    args: ["connect", "--wait", "120", "10.88.0.1:2379", "10.0.2.15:2379", "--wait", "0", "10.88.0.1:9420", "10.0.2.15:2380"]
  - name: fifo
    image: busybox
    user: root
    network: none
    restart: on-failure
    backoff: {{initial: 1s, max: 1s}}
    command: ["/bin/sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd && echo planted; exit 1"]
  - name: swapper
    image: busybox
    network: none
    restart: never
    mounts:
      - {{type: bind, source: /var/lib/keel/volumes/shared, target: /vol}}
    command: ["/bin/sh", "-c", "mkdir -p /vol/real /vol/data && echo in-the-volume > /vol/real/marker && rm -rf /vol/data && ln -s / /vol/data && echo swapped; sleep 100000"]
    healthcheck: {{command: ["/bin/sh", "-c", "test -L /vol/data"], interval: 1s, timeout: 1s}}
  - name: victim
    image: busybox
    network: none
    restart: never
    after: [swapper]
    mounts:
      - {{type: bind, source: /var/lib/keel/volumes/shared/data, target: /data}}
    command: ["/bin/sh", "-c", "ls /data; echo victim-ran; sleep 100000"]
  - name: neighbour
    image: busybox
    network: none
    restart: never
    after: [swapper]
    mounts:
      - {{type: bind, source: /var/lib/keel/volumes/shared/real, target: /data}}
    command: ["/bin/sh", "-c", "cat /data/marker; ls /data; echo neighbour-ran; sleep 100000"]
  - name: low-bridge
    image: busybox
    user: nobody
    command: ["/bin/httpd", "-f", "-p", "80", "-h", "/var/www"]
    healthcheck: {{http: {{port: 80, path: /}}, interval: 1s, timeout: 1s}}
  - name: low-none
    image: busybox
    user: nobody
    network: none
    command: ["/bin/httpd", "-f", "-p", "80", "-h", "/var/www"]
    healthcheck: {{http: {{port: 80, path: /}}, interval: 1s, timeout: 1s}}
  - name: low-refused
    image: busybox
    user: nobody
    network: none
    restart: never
    sysctls: {{net.ipv4.ip_unprivileged_port_start: 1024}}
    command: ["/bin/sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; /bin/httpd -f -p 80 -h /var/www"]
"#,
        ports = quoted(&node_ports)
    );
    let file = s.path("user-data");
    std::fs::write(&file, &config).unwrap();
    let mut cfg = VmConfig::new("containers-walled");
    cfg.cloud_config(&file);
    // The control: the same connections from the node itself, once the
    // bridge's address exists.
    cfg.append = format!(
        "keel.run=/usr/lib/keel/test-helper,connect,--local,--wait,120,{}",
        node_ports.join(",")
    );
    let mut vm = Vm::start(cfg);
    vm.wait_ready();

    // The container is networked: a published port on the node's address
    // is reached (through DNAT to the web container).
    let w = wait_logs(&vm, "walled", "connect-done");
    assert_eq!(verdict(&w, "10.0.2.15:8080"), "open", "{w}");
    // Every port of the node: dropped, not refused.
    for t in node_ports {
        assert_eq!(
            verdict(&w, t),
            "dropped",
            "{t} from a bridge container:\n{w}"
        );
    }
    let st = vm.container("walled");
    assert_eq!(st.node_port, None, "{st:?}");

    // The control, from the node: its stack answers on each (open, or
    // refused for a port nothing listens on), and the KV's ports are open.
    vm.wait_for("test-helper: connect-done", Duration::from_secs(180));
    let c = vm.console();
    let node = &c[c.find("keel.run: started").unwrap_or(0)..];
    for t in node_ports {
        let v = verdict(node, t);
        assert!(
            v == "open" || v == "refused",
            "{t} from the node: {v}\n{node}"
        );
    }
    for t in ["10.88.0.1:2379", "10.0.2.15:2379"] {
        assert_eq!(verdict(node, t), "open", "{t} from the node:\n{node}");
    }
    // A lone member keeps its peer port closed: the node is refused, a
    // container dropped (below), which tells the filter from the port.
    assert_eq!(
        verdict(node, "10.0.2.15:2380"),
        "refused",
        "10.0.2.15:2380 from the node:\n{node}"
    );

    // The one door: the KV, and nothing else.
    let k = wait_logs(&vm, "kv-client", "connect-done");
    assert_eq!(verdict(&k, "10.88.0.1:2379"), "open", "{k}");
    assert_eq!(verdict(&k, "10.0.2.15:2379"), "open", "{k}");
    assert_eq!(verdict(&k, "10.88.0.1:9420"), "dropped", "{k}");
    assert_eq!(verdict(&k, "10.0.2.15:2380"), "dropped", "{k}");
    // The API says the door is open.
    let st = vm.container("kv-client");
    let door = st.node_port.clone().unwrap_or_default();
    assert!(door.starts_with("kv: ") && door.contains("door"), "{st:?}");
    assert!(vm
        .console()
        .contains("container kv-client: node_port opens the node's port 2379 to it"));

    // The FIFO: planted by the first run, refused by the next start.
    wait_logs(&vm, "fifo", "planted");
    let f = wait_until(&vm, "fifo", "refused", |c| {
        c.error.as_deref().is_some_and(|e| e.contains("FIFO"))
    });
    let e = f.error.unwrap_or_default();
    assert!(
        e.contains("/etc/passwd") && e.contains("is a FIFO, not a regular file"),
        "{e}"
    );
    // PID 1 still answers, and still starts it (and refuses it) on schedule.
    let restarts = f.restarts;
    let (ok, table, err) = vm.keelctl(&["ps"]);
    assert!(ok && table.contains("fifo"), "{err}");
    wait_until(&vm, "fifo", "retried", |c| c.restarts > restarts);

    // The swap: the victim's start is refused, naming the link; it never
    // ran, so nothing of the node was mounted in it.
    wait_logs(&vm, "swapper", "swapped");
    let v = wait_until(&vm, "victim", "refused", |c| c.state == "failed");
    let e = v.error.unwrap_or_default();
    assert!(
        e.contains("/var/lib/keel/volumes/shared/data")
            && e.contains("symbolic link, which is not followed"),
        "{e}"
    );
    assert_eq!(v.pid, None);
    assert!(!logs(&vm, "victim").contains("victim-ran"));
    // The control: a real directory of the same volume is bound, after
    // the same health check.
    let n = wait_logs(&vm, "neighbour", "neighbour-ran");
    assert!(
        n.contains(
            "in-the-volume
marker
neighbour-ran"
        ),
        "{n}"
    );

    // Privileged ports in a container's own network namespace, as under
    // Docker: httpd as nobody, without capabilities, serves port 80 on
    // the bridge and with network: none (its health check fetches the
    // page inside its namespace). The control: the kernel's 1024 set back
    // through sysctls:, and the same bind is refused.
    for name in ["low-bridge", "low-none"] {
        let c = wait_until(&vm, name, "healthy", |c| {
            c.health.as_deref() == Some("healthy")
        });
        assert_eq!(c.state, "running", "{c:?}");
    }
    let l = wait_logs(&vm, "low-refused", "Permission denied");
    assert!(l.starts_with("1024\n"), "{l}");
    let c = wait_until(&vm, "low-refused", "exited", |c| c.state == "exited");
    assert_eq!(c.last_exit.as_deref(), Some("exited 1"), "{c:?}");
    vm.assert_no_fatal();
}

/// Containers together cannot starve the node: the `containers` group's
/// memory.max leaves keel, the KV and the kernel their reserve (an eighth
/// of 1 GiB here). A container without a limit of its own that fills
/// 900 MiB, which the node's free memory would hold, is OOM-killed inside
/// the group; one that asks for 8 MiB finishes. keel answers throughout.
#[test]
fn containers_together_leave_the_node_its_reserve() {
    let s = Scratch::new("containers-reserve");
    let config = r#"#cloud-config
containers:
  - name: greedy
    image: busybox
    command: ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=900M count=1 && echo survived"]
    restart: never
    network: none
  - name: modest
    image: busybox
    command: ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=8M count=1 && echo fine"]
    restart: never
    network: none
"#;
    let file = s.path("user-data");
    std::fs::write(&file, config).unwrap();
    let mut cfg = VmConfig::new("containers-reserve");
    cfg.mem = "1024M".into();
    cfg.cloud_config(&file);
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.wait_for("containers: together at most", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let c = vm.console();
    let line = c
        .lines()
        .find(|l| l.contains("containers: together at most"))
        .unwrap_or_else(|| panic!("no cap line:\n{c}"));
    let cap: u64 = line
        .split("at most ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((800..900).contains(&cap), "{line}");
    let greedy = wait_until(&vm, "greedy", "exited", |c| c.state == "exited");
    assert_eq!(
        greedy
            .last_exit
            .as_deref()
            .map(|x| x.starts_with("killed by signal 9")),
        Some(true),
        "{greedy:?}"
    );
    assert!(greedy.stats.oom_kills >= 1, "{greedy:?}");
    assert!(!logs(&vm, "greedy").contains("survived"));
    wait_logs(&vm, "modest", "fine");
    assert_eq!(vm.status().state, keel_api::NodeState::Ready);
    vm.assert_no_fatal();
}

/// The suite and packages of the real image (`scripts/debian-rootfs.sh`).
const DEBIAN: (&str, &str) = ("bookworm", "nginx-light,redis-server");

/// A Debian image made the way a user makes one: `mmdebstrap` (cached by
/// `scripts/debian-rootfs.sh`), one tar+zstd layer, pushed to a registry
/// with skopeo as `{registry}/debian/web:12`. Its config sets only PATH,
/// as `docker import` would.
fn push_debian(s: &Scratch, registry: &str) {
    use keel_oci::manifest::{ContainerConfig, Platform, OCI_LAYER_ZSTD};
    use keel_oci::writer::{write_layout, ImageSpec, Layer};
    let out = std::process::Command::new(keel_vmtests::root().join("scripts/debian-rootfs.sh"))
        .args([DEBIAN.0, DEBIAN.1])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/debian-rootfs.sh");
    assert!(out.status.success(), "scripts/debian-rootfs.sh: {out:?}");
    let tar = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // The tools do the heavy lifting (a debug build hashes 190 MB slowly).
    let sum = std::process::Command::new("sha256sum")
        .arg(&tar)
        .output()
        .unwrap();
    let hex = String::from_utf8(sum.stdout).unwrap();
    let diff_id = keel_oci::digest::Digest::from_hex(hex.split_whitespace().next().unwrap())
        .expect("sha256sum's hex");
    let zst = s.path("debian.tar.zst");
    let ok = std::process::Command::new("zstd")
        .args(["-q", "-3", "-T0", "-f", "-o"])
        .arg(&zst)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(ok.success());
    let layer = Layer {
        media_type: OCI_LAYER_ZSTD.into(),
        blob: std::fs::read(&zst).unwrap(),
        diff_id,
    };
    let spec = ImageSpec {
        name: Some("web:12".into()),
        platform: Platform::linux_amd64(),
        config: ContainerConfig {
            env: Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ]),
            cmd: Some(vec!["/bin/bash".into()]),
            ..Default::default()
        },
    };
    let dir = s.path("debian-layout");
    write_layout(&dir, &spec, &[layer]).unwrap();
    skopeo_push(&dir, "web:12", &format!("{registry}/debian/web:12"));
}

/// Real programs from a Debian image behave as under Docker: nginx serves
/// its welcome page, as root and as www-data on port 80 on a read-only root
/// with its site bound over a link of the image; redis runs as its image's user on a read-only root,
/// answers redis-cli, and on `keelctl stop` gets SIGTERM, saves and exits
/// on its own long before its grace period; and four containers on the
/// image, started together at boot, pull and unpack it once.
#[test]
fn a_debian_image_runs_nginx_and_redis_as_under_docker() {
    let s = Scratch::new("containers-debian");
    let reg = start_registry(&s);
    push_debian(&s, &format!("127.0.0.1:{}", reg.port));
    let (web, web_ro, redis) = (free_port(), free_port(), free_port());
    let image = format!("10.0.2.2:{}/debian/web:12", reg.port);
    let config = format!(
        r#"#cloud-config
registries:
  insecure: ["10.0.2.2:{port}"]
write_files:
  - path: /var/lib/keel/volumes/nginx/nginx.conf
    content: |
      worker_processes 1;
      pid /tmp/nginx.pid;
      error_log stderr;
      events {{ worker_connections 64; }}
      http {{
        include /etc/nginx/mime.types;
        access_log /dev/stdout;
        client_body_temp_path /tmp/client_body;
        proxy_temp_path /tmp/proxy;
        fastcgi_temp_path /tmp/fastcgi;
        uwsgi_temp_path /tmp/uwsgi;
        scgi_temp_path /tmp/scgi;
        include /etc/nginx/sites-enabled/*;
      }}
  - path: /var/lib/keel/volumes/nginx/site
    content: |
      server {{
        listen 80 default_server;
        root /var/www/html;
        index index.nginx-debian.html;
        location = /who {{ return 200 "served by an unprivileged nginx\n"; }}
      }}
containers:
  - name: nginx
    image: {image}
    command: ["/usr/sbin/nginx", "-g", "daemon off;"]
    ports: ["8080:80"]
  # As www-data on port 80 (Docker's ip_unprivileged_port_start=0), on a
  # read-only root, with its site bound over /etc/nginx/sites-enabled/default,
  # a link in the image (mounted on what it names, inside the root).
  - name: nginx-ro
    image: {image}
    user: www-data
    readonly: true
    command: ["/usr/sbin/nginx", "-g", "daemon off;"]
    mounts:
      - {{type: bind, source: /var/lib/keel/volumes/nginx/nginx.conf, target: /etc/nginx/nginx.conf, readonly: true}}
      - {{type: bind, source: /var/lib/keel/volumes/nginx/site, target: /etc/nginx/sites-enabled/default, readonly: true}}
    ports: ["8081:80"]
  - name: redis
    image: {image}
    user: redis
    readonly: true
    command: ["/usr/bin/redis-server", "/etc/redis/redis.conf", "--daemonize", "no", "--supervised", "no", "--logfile", "", "--bind", "0.0.0.0", "--protected-mode", "no"]
    ports: ["6379:6379"]
    stop_grace: 30s
    restart: never
  - name: idle1
    image: {image}
    network: none
    command: ["/bin/sleep", "infinity"]
  - name: idle2
    image: {image}
    network: none
    command: ["/bin/sleep", "infinity"]
"#,
        port = reg.port
    );
    // The image is ~190 MB unpacked: a disk with room for it and its blob.
    let disk = s.path("disk.img");
    std::fs::copy(keel_vmtests::build_dir().join("disk.img"), &disk).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(1536 << 20)
        .unwrap();
    let file = s.path("user-data");
    std::fs::write(&file, &config).unwrap();
    let mut cfg = VmConfig::new("containers-debian");
    cfg.variant = keel_vmtests::Variant::Disk;
    cfg.disk = Some(disk);
    cfg.mem = "1024M".into();
    cfg.cloud_config(&file);
    cfg.hostfwd = vec![
        format!("tcp:127.0.0.1:{web}-:8080"),
        format!("tcp:127.0.0.1:{web_ro}-:8081"),
        format!("tcp:127.0.0.1:{redis}-:6379"),
    ];
    let mut vm = Vm::start(cfg);
    vm.wait_ready();

    for name in ["nginx", "nginx-ro", "redis", "idle1", "idle2"] {
        wait_until(&vm, name, "running", |c| c.state == "running");
    }
    // One pull, one unpack, for the four.
    let console = vm.console();
    let pulls = console
        .matches(&format!("images: pulled {image} ("))
        .count();
    let unpacks = console
        .matches(&format!("images: {image}: unpacked layer "))
        .count();
    assert_eq!((pulls, unpacks), (1, 1), "{console}");

    // nginx's welcome page, through the published port.
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        match http_get(web) {
            Ok(p) if p.contains("Welcome to nginx!") => break p,
            r if Instant::now() > deadline => panic!("GET nginx: {r:?}\n{}", logs(&vm, "nginx")),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // The unprivileged one: its own site, through the link's destination.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{web_ro}/who")])
            .output()
            .expect("curl");
        if String::from_utf8_lossy(&out.stdout) == "served by an unprivileged nginx\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nginx-ro: {:?}\n{}",
            out,
            logs(&vm, "nginx-ro")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let page = http_get(web_ro).unwrap();
    assert!(page.contains("Welcome to nginx!"), "{page}");

    // redis as its image's user, on a read-only root: PONG.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &redis.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (scripts/deps.sh installs redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while cli(&["ping"]) != "PONG" {
        assert!(
            Instant::now() < deadline,
            "redis never answered PONG: {}",
            logs(&vm, "redis")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(cli(&["set", "k", "v"]), "OK");
    let who = vm.container("redis");
    let ps = logs(&vm, "redis");
    assert!(ps.contains("Ready to accept connections"), "{ps}");
    assert!(who.pid.is_some(), "{who:?}");

    // keelctl stop: redis gets SIGTERM (not blocked, not ignored), saves
    // and exits 0 on its own, long before its 30 s grace.
    let t = Instant::now();
    let (ok, _, err) = vm.keelctl(&["stop", "redis"]);
    assert!(ok, "{err}");
    let c = wait_until(&vm, "redis", "stopped", |c| c.state == "stopped");
    let took = t.elapsed();
    let l = logs(&vm, "redis");
    assert!(l.contains("Received SIGTERM scheduling shutdown"), "{l}");
    assert!(l.contains("ready to exit, bye bye"), "{l}");
    assert_eq!(c.last_exit.as_deref(), Some("exited 0"), "{c:?}");
    assert!(
        took < Duration::from_secs(10),
        "redis took {took:?} to stop"
    );
    eprintln!("debian: redis stopped in {took:?} of its 30 s grace");
    vm.assert_no_fatal();
    drop(reg);
}
