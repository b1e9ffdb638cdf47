//! VM tests of the cluster store: a booted node serves etcd's v2 API on
//! port 2379, Debian's `etcdctl` (API v2) and curl work against it through
//! qemu's port forward, and what was written survives a reboot from disk.

use std::process::Command;
use std::time::{Duration, Instant};

use keel_vmtests::{free_port, Scratch, Variant, Vm, VmConfig};

const EXIT: Duration = Duration::from_secs(60);

fn etcdctl(port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args)
        .output()
        .expect("etcdctl (Debian package etcd-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "10"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the member answers `/health` with a leader.
fn wait_healthy(vm: &Vm, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = curl(&[&format!("http://127.0.0.1:{port}/health")]);
        if h.contains("\"health\":\"true\"") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kv not healthy after 60 s: {h:?}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn boot(name: &str, disk: Option<&std::path::Path>, user_data: &std::path::Path, port: u16) -> Vm {
    let mut cfg = VmConfig::new(name);
    if let Some(d) = disk {
        cfg.variant = Variant::Disk;
        cfg.disk = Some(d.to_path_buf());
    }
    cfg.cloud_config(user_data);
    cfg.hostfwd = vec![format!("tcp:127.0.0.1:{port}-:2379")];
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    wait_healthy(&vm, port);
    vm
}

#[test]
fn etcdctl_and_curl_use_the_nodes_kv_and_it_survives_a_reboot() {
    let s = Scratch::new("kv-node");
    let disk = s.path("disk.img");
    std::fs::copy(keel_vmtests::build_dir().join("disk.img"), &disk)
        .expect("build/disk.img (make disk)");
    // The member advertises the forwarded address, as an operator behind
    // NAT would configure it: etcdctl syncs to the advertised URLs.
    let port = free_port();
    let user_data = s.path("user-data");
    std::fs::write(
        &user_data,
        format!(
            "#cloud-config\nhostname: kv-node\ncoreos:\n  etcd2:\n    advertise-client-urls: http://127.0.0.1:{port}\n"
        ),
    )
    .unwrap();
    let vm = boot("kv-node-1", Some(&disk), &user_data, port);

    // The member is named after the host and is its own leader.
    let (ok, out, err) = etcdctl(port, &["member", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("name=kv-node") && out.contains("isLeader=true"),
        "{out}"
    );
    let (ok, out, err) = etcdctl(port, &["cluster-health"]);
    assert!(ok && out.contains("cluster is healthy"), "{out}{err}");

    // etcdctl's everyday verbs, as a user types them.
    assert_eq!(
        etcdctl(port, &["mk", "/app/greeting", "hello"]).1,
        "hello\n"
    );
    let (ok, _, err) = etcdctl(port, &["mk", "/app/greeting", "again"]);
    assert!(!ok && err.contains("105: Key already exists"), "{err}");
    assert_eq!(etcdctl(port, &["set", "/app/count", "1"]).1, "1\n");
    assert_eq!(etcdctl(port, &["update", "/app/count", "2"]).1, "2\n");
    assert!(etcdctl(port, &["mkdir", "/app/empty"]).0);
    assert_eq!(
        etcdctl(port, &["ls", "--recursive", "--sort", "/app"]).1,
        "/app/count\n/app/empty\n/app/greeting\n"
    );
    assert!(etcdctl(port, &["rmdir", "/app/empty"]).0);
    let (ok, _, err) = etcdctl(port, &["get", "/app/missing"]);
    assert!(
        !ok && err.contains("100: Key not found (/app/missing)"),
        "{err}"
    );

    // A watch sees the next write.
    let watcher = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .args([
            "--endpoints",
            &format!("http://127.0.0.1:{port}"),
            "watch",
            "/app/count",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let body = curl(&[
        "-X",
        "PUT",
        &format!("http://127.0.0.1:{port}/v2/keys/app/count"),
        "-d",
        "value=3",
    ]);
    assert!(body.contains("\"value\":\"3\""), "{body}");
    let out = watcher.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");

    // Power off and boot again from the same disk: the data is on STATE.
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    let mut vm = vm;
    vm.wait_exit(EXIT);
    let vm = boot("kv-node-2", Some(&disk), &user_data, port);
    assert_eq!(etcdctl(port, &["get", "/app/greeting"]).1, "hello\n");
    assert_eq!(etcdctl(port, &["get", "/app/count"]).1, "3\n");
    vm.assert_no_fatal();
}
