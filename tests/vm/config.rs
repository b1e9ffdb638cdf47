//! VM tests of the cloud-config: delivered through qemu's fw_cfg, a
//! config-drive ISO, a NoCloud seed and the copy kept on STATE; applied as a
//! user would see it, and refused whole (maintenance mode) when invalid.

use std::time::Duration;

use keel_vmtests::{Scratch, Vm, VmConfig};

const EXIT: Duration = Duration::from_secs(60);

/// Boot `cfg` running the test helper with `helper` once ready.
fn boot_helper(mut cfg: VmConfig, helper: &str) -> Vm {
    cfg.append = format!("keel.run=/usr/lib/keel/test-helper,{helper}");
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.assert_kernel_alive();
    vm
}

/// Boot the test image with `config` in fw_cfg under `fw_name`.
fn boot_with(s: &Scratch, name: &str, fw_name: &str, config: &str, helper: &str) -> Vm {
    let file = s.path("user-data");
    std::fs::write(&file, config).unwrap();
    let mut cfg = VmConfig::new(name);
    cfg.qemu_args = vec![
        "-fw_cfg".into(),
        format!("name={fw_name},file={}", file.display()),
    ];
    boot_helper(cfg, helper)
}

#[test]
fn a_config_from_fw_cfg_is_applied() {
    let s = Scratch::new("config-fwcfg");
    let config = "#cloud-config
hostname: web-7
manage_etc_hosts: localhost
users:
  - name: alice
    groups: [sudo]
    ssh-authorized-keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@laptop
write_files:
  - path: /etc/app/settings.conf
    permissions: 0640
    encoding: b64
    content: aGVsbG8gZnJvbSBjbG91ZC1jb25maWcK
coreos:
  update:
    reboot-strategy: off
  units:
    - name: fleet.service
      command: start
";
    let mut vm = boot_with(
        &s,
        "config-fwcfg",
        "opt/keel/config",
        config,
        "read,/etc/hostname,/etc/hosts,/etc/app/settings.conf,/etc/group,/home/alice/.ssh/authorized_keys",
    );
    vm.wait_for("/home/alice/.ssh/authorized_keys: ", EXIT);
    vm.wait_for("alice@laptop\"", EXIT);
    let c = vm.console();
    assert!(
        c.contains("/etc/hostname: 6 bytes, first line \"web-7\""),
        "{c}"
    );
    assert!(
        c.contains("/etc/hosts: ") && c.contains("first line \"127.0.0.1 web-7 localhost\""),
        "{c}"
    );
    assert!(
        c.contains("/etc/app/settings.conf: 24 bytes, first line \"hello from cloud-config\""),
        "{c}"
    );
    assert!(c.contains("config: refused coreos.units[0]"), "{c}");
    let st = vm.status();
    assert_eq!(st.hostname, "web-7");
    let cs = &st.config;
    assert_eq!(cs.source.as_deref(), Some("fw_cfg opt/keel/config"));
    assert!(!cs.maintenance, "{:?}", cs.errors);
    assert!(cs.changed.contains(&"/etc/app/settings.conf".to_string()));
    let verdict = |p: &str| {
        cs.items
            .iter()
            .find(|i| i.path == p)
            .map(|i| i.verdict.as_str())
    };
    assert_eq!(verdict("hostname"), Some("applied"));
    assert_eq!(verdict("users[0]"), Some("applied"));
    assert_eq!(verdict("coreos.update"), Some("accepted"));
    assert_eq!(verdict("coreos.units[0]"), Some("refused"));
}

#[test]
fn an_invalid_config_boots_into_maintenance_and_writes_nothing() {
    let s = Scratch::new("config-invalid");
    let config = "#cloud-config
hostname: web-8
write_files:
  - path: /etc/app/settings.conf
    content: should never be written
  - path: /etc/app/other
    permissions: 644
users:
  - name: Bad Name
";
    // The config is refused, its api: with it: the TCP port stays closed,
    // so the status comes through the unix socket (the test helper).
    let mut vm = boot_with(
        &s,
        "config-invalid",
        "opt/keel/config",
        config,
        "read,/etc/app/settings.conf,/etc/hostname,+,unix-json,/run/keel/api.sock,/v1/status",
    );
    vm.wait_for("/etc/hostname: ", EXIT);
    vm.wait_for("first line \"keel\"", EXIT);
    let c = vm.console();
    assert!(
        c.contains("/etc/app/settings.conf: No such file or directory"),
        "nothing written: {c}"
    );
    assert!(
        c.contains("config: 2 errors: maintenance mode, nothing applied"),
        "{c}"
    );
    let st: keel_api::Status = vm.unix_json("/v1/status");
    assert_eq!(st.hostname, "keel", "the host name was not applied either");
    assert_eq!(st.api.tcp_port, None, "{:?}", st.api);
    assert!(
        st.api
            .note
            .contains("closed: the cloud-config was refused (maintenance mode)"),
        "{:?}",
        st.api
    );
    let cs = &st.config;
    assert!(cs.maintenance);
    assert_eq!(cs.errors.len(), 2, "{:?}", cs.errors);
    // The harness put the test PKI's write_files entries first (3 files of
    // 5 lines each and more): the document's own come after them.
    let own = |e: &str, want: &str| {
        e.split_once(": ")
            .is_some_and(|(_, rest)| rest.starts_with(want))
    };
    assert!(
        own(&cs.errors[0], "write_files[4].permissions: 644 unquoted"),
        "{:?}",
        cs.errors
    );
    assert!(own(&cs.errors[1], "users[0].name:"), "{:?}", cs.errors);
    assert!(cs.changed.is_empty());
    // What `keelctl status` shows of it: the mode on the first line, the
    // errors right under it.
    assert_eq!(st.mode, keel_api::NodeMode::Maintenance);
    let t = keelctl::table::status(&st);
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].contains(", MAINTENANCE: the config has errors, nothing of it was applied,"),
        "{t}"
    );
    assert_eq!(lines[1], format!("  {}", cs.errors[0]), "{t}");
    assert_eq!(lines[2], format!("  {}", cs.errors[1]), "{t}");
}

#[test]
fn ignition_json_is_refused_with_what_keel_reads_instead() {
    let s = Scratch::new("config-ignition");
    let mut vm = boot_with(
        &s,
        "config-ignition",
        "opt/com.coreos/config",
        "{\"ignition\": {\"version\": \"3.3.0\"}, \"storage\": {}}\n",
        "read,/etc/hostname,+,unix-json,/run/keel/api.sock,/v1/config",
    );
    let cs: keel_api::ConfigStatus = vm.unix_json("/v1/config");
    assert_eq!(cs.source.as_deref(), Some("fw_cfg opt/com.coreos/config"));
    assert!(cs.maintenance);
    assert!(
        cs.errors[0].contains("Ignition JSON, which keel does not support"),
        "{:?}",
        cs.errors
    );
}

fn run(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .expect("run a host tool (make deps installs it)");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// Boot the test image with `disk` attached.
fn boot_with_disk(name: &str, disk: &std::path::Path, helper: &str) -> Vm {
    let mut cfg = VmConfig::new(name);
    cfg.disk = Some(disk.to_path_buf());
    // The disk's config carries the test PKI's api: (fw_cfg would win).
    cfg.api = false;
    boot_helper(cfg, helper)
}

#[test]
fn a_config_drive_iso_is_read() {
    let s = Scratch::new("config-drive");
    let dir = s.path("cd/openstack/latest");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("user_data"),
        keel_vmtests::with_api("#cloud-config\nhostname: from-config-drive\n"),
    )
    .unwrap();
    let iso = s.path("config-2.iso");
    run(std::process::Command::new("genisoimage")
        .args(["-quiet", "-V", "config-2", "-r", "-J", "-o"])
        .arg(&iso)
        .arg(s.path("cd")));
    let mut vm = boot_with_disk("config-drive", &iso, "read,/etc/hostname");
    vm.wait_for("first line \"from-config-drive\"", EXIT);
    let cs = vm.status().config;
    assert_eq!(
        cs.source.as_deref(),
        Some("config-drive /dev/vda (config-2)")
    );
    assert!(!cs.maintenance, "{:?}", cs.errors);
}

#[test]
fn a_nocloud_seed_made_with_mtools_is_read_with_its_meta_data() {
    let s = Scratch::new("config-nocloud");
    let img = s.path("seed.img");
    let img_s = img.to_string_lossy().to_string();
    run(std::process::Command::new("mformat")
        .args(["-i", &img_s, "-C", "-f", "1440", "-v", "cidata", "::"]));
    let ud = s.path("user-data");
    std::fs::write(
        &ud,
        keel_vmtests::with_api(
            "#cloud-config\nwrite_files:\n  - path: /etc/seeded\n    content: yes\n",
        ),
    )
    .unwrap();
    let md = s.path("meta-data");
    std::fs::write(
        &md,
        "instance-id: iid-local01\nlocal-hostname: seeded-node\n",
    )
    .unwrap();
    run(std::process::Command::new("mcopy")
        .args(["-i", &img_s])
        .arg(&ud)
        .arg(&md)
        .arg("::/"));
    let mut vm = boot_with_disk("config-nocloud", &img, "read,/etc/seeded,/etc/hostname");
    vm.wait_for("first line \"seeded-node\"", EXIT);
    assert!(vm
        .console()
        .contains("/etc/seeded: 3 bytes, first line \"yes\""));
    let st = vm.status();
    assert_eq!(
        st.config.source.as_deref(),
        Some("NoCloud /dev/vda (cidata)")
    );
    assert_eq!(st.hostname, "seeded-node");
}

#[test]
fn the_last_applied_config_is_kept_on_state_for_the_next_boot() {
    let s = Scratch::new("config-last-applied");
    let disk = s.path("disk.img");
    std::fs::copy(keel_vmtests::build_dir().join("disk.img"), &disk)
        .expect("build/disk.img (make disk)");
    let user_data = s.path("user-data");
    std::fs::write(&user_data, "#cloud-config\nhostname: remembered\n").unwrap();
    let boot = |name: &str, fw_cfg: bool| {
        let mut cfg = VmConfig::new(name);
        cfg.variant = keel_vmtests::Variant::Disk;
        cfg.disk = Some(disk.clone());
        // The second boot's config (and its api:) comes from STATE.
        cfg.api = fw_cfg;
        if fw_cfg {
            cfg.qemu_args = vec![
                "-fw_cfg".into(),
                format!("name=opt/keel/config,file={}", user_data.display()),
            ];
        }
        let mut vm = Vm::start(cfg);
        vm.wait_ready();
        vm
    };
    let vm = boot("config-last-applied-1", true);
    assert_eq!(vm.status().hostname, "remembered");
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    let mut vm = vm;
    vm.wait_exit(EXIT);
    let vm = boot("config-last-applied-2", false);
    let st = vm.status();
    assert_eq!(
        st.config.source.as_deref(),
        Some("state /var/lib/keel/config/last-applied.yaml")
    );
    assert_eq!(st.hostname, "remembered");
}

/// A one-file HTTP server on the host's loopback (what the guest reaches as
/// 10.0.2.2 through qemu's user network). The first `fail_first` requests
/// get a 503; every request is counted.
fn serve(
    body: &'static str,
    fail_first: usize,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let resp = if n < fail_first {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_string()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/yaml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    (port, count)
}

#[test]
fn a_config_url_is_fetched_once_the_network_is_up_with_retries() {
    let body = keel_vmtests::with_api("#cloud-config\nhostname: from-url\n");
    let (port, count) = serve(Box::leak(body.into_boxed_str()), 2);
    let mut cfg = VmConfig::new("config-url");
    // The config comes from the URL (a fw_cfg one would win).
    cfg.api = false;
    cfg.append = format!(
        "keel.config.url=http://10.0.2.2:{port}/user-data keel.run=/usr/lib/keel/test-helper,read,/etc/hostname"
    );
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.wait_for("first line \"from-url\"", EXIT);
    let st = vm.status();
    assert_eq!(st.hostname, "from-url");
    // Plain http is spelled out, and said to be unverified: in the status
    // and in the log.
    assert_eq!(
        st.config.source.as_deref(),
        Some(format!("url http://10.0.2.2:{port}/user-data (plain http, unverified)").as_str())
    );
    let c = vm.console();
    assert!(
        c.contains(&format!(
            "config: http://10.0.2.2:{port}/user-data: fetched unverified over plain http: anyone on the path can change it"
        )),
        "{c}"
    );
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two 503s, then the config"
    );
}

/// A CA, and a server certificate it signed for 10.0.2.2 (the host as
/// the guest reaches it through qemu's user networking), written as the
/// server's files: the chain (server certificate, then the CA) and key.
fn https_pki(s: &Scratch) -> (keel_tls::ServerFiles, keel_tls::CertPin) {
    use keel_tls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let ca = keel_tls::issue::Ca::generate("config server CA", 2).unwrap();
    let server = ca
        .server("config server", &["10.0.2.2".into()], false, 2)
        .unwrap();
    let chain = s.path("server-chain.pem");
    std::fs::write(&chain, format!("{}{}", server.cert_pem, ca.cert_pem)).unwrap();
    let key = s.path("server-key.pem");
    std::fs::write(&key, &server.key_pem).unwrap();
    let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
    let files = keel_tls::ServerFiles {
        cert: ("cert", chain),
        key: ("key", key),
        client_ca: None,
    };
    (files, keel_tls::CertPin::of(&der))
}

/// Serve `body` over TLS (rustls) on 127.0.0.1: returns the port and the
/// count of connections accepted (handshakes tried).
fn serve_https(
    files: &keel_tls::ServerFiles,
    body: String,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (addr, count) = keel_tls::testpki::serve(Some(files), body);
    (addr.port(), count)
}

/// `keel.config.url=https://` with `keel.config.ca=` pinning the server's
/// CA: the config is fetched and applied, and the status, `keelctl status`
/// and the log name the source as https, verified against the pin. The
/// control of the next test.
#[test]
fn an_https_config_url_is_verified_against_the_pinned_ca() {
    let s = Scratch::new("config-https");
    let (files, pin) = https_pki(&s);
    let body = keel_vmtests::with_api("#cloud-config\nhostname: from-https\n");
    let (port, count) = serve_https(&files, body);
    let mut cfg = VmConfig::new("config-https");
    cfg.api = false;
    cfg.append = format!(
        "keel.config.url=https://10.0.2.2:{port}/user-data keel.config.ca={pin} keel.run=/usr/lib/keel/test-helper,read,/etc/hostname"
    );
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.wait_for("first line \"from-https\"", EXIT);
    let st = vm.status();
    assert_eq!(st.hostname, "from-https");
    assert!(!st.config.maintenance, "{:?}", st.config);
    let source =
        format!("url https://10.0.2.2:{port}/user-data (https, verified: only the pinned certificate {pin})");
    assert_eq!(st.config.source.as_deref(), Some(source.as_str()));
    let c = vm.console();
    assert!(c.contains(&format!("config: from {source} (")), "{c}");
    assert!(!c.contains("unverified"), "{c}");
    let (ok, out, err) = vm.keelctl(&["status"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("config     {source}\n")), "{out}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The same server, with a pin of another CA: the certificate fails at
/// once (no retries), the log and the status name the URL and rustls's
/// reason, nothing is applied, and the node is in maintenance mode.
#[test]
fn an_https_config_url_whose_chain_lacks_the_pinned_ca_is_refused_at_once() {
    let s = Scratch::new("config-https-refused");
    let (files, _) = https_pki(&s);
    let other = keel_tls::issue::Ca::generate("another CA", 2).unwrap();
    let other_pin = {
        use keel_tls::rustls::pki_types::{pem::PemObject, CertificateDer};
        keel_tls::CertPin::of(&CertificateDer::from_pem_slice(other.cert_pem.as_bytes()).unwrap())
    };
    let body = keel_vmtests::with_api("#cloud-config\nhostname: from-https\n");
    let (port, count) = serve_https(&files, body);
    let mut cfg = VmConfig::new("config-https-refused");
    cfg.api = false;
    cfg.append = format!(
        "keel.config.url=https://10.0.2.2:{port}/user-data keel.config.ca={other_pin} keel.run=/usr/lib/keel/test-helper,unix-json,/run/keel/api.sock,/v1/status"
    );
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    let want = format!(
        "https://10.0.2.2:{port}/user-data: TLS: invalid peer certificate: UnknownIssuer (trusted: only the pinned certificate {other_pin})"
    );
    let c = vm.console();
    assert!(c.contains(&format!("config: {want}")), "{c}");
    assert!(!c.contains("attempts"), "final at once, not retried: {c}");
    let st: keel_api::Status = vm.unix_json("/v1/status");
    assert!(st.config.maintenance, "{:?}", st.config);
    assert_eq!(st.config.source, None);
    assert_eq!(st.config.errors, vec![want]);
    assert_eq!(st.hostname, "keel", "the name a node has without a config");
    assert!(count.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[test]
fn keelctl_config_apply_dry_runs_applies_idempotently_and_refuses_bad_configs() {
    let s = Scratch::new("config-apply");
    let mut vm = Vm::start(VmConfig::new("config-apply"));
    vm.wait_ready();
    let text =
        "#cloud-config\nhostname: applied-live\nwrite_files:\n  - path: /etc/live.conf\n    content: live\n";
    // Without api:, the next boot would close the TCP port this apply
    // comes in on: refused, naming the way to do it on purpose.
    let closing = s.path("closing.yaml");
    std::fs::write(&closing, text).unwrap();
    let c = closing.to_string_lossy().to_string();
    for args in [
        &["config", "apply", &c][..],
        &["config", "apply", "--dry-run", &c],
    ] {
        let (ok, out, _) = vm.keelctl(args);
        assert!(!ok, "{args:?}: refused: exit status 1");
        assert!(
            out.contains("error      api: this config has no api: section")
                && out.contains("--close-api")
                && out.contains("refused: 1 errors, nothing changed"),
            "{out}"
        );
    }
    assert_eq!(
        vm.status().hostname,
        "keel",
        "a refused config changes nothing"
    );

    let good = s.path("good.yaml");
    std::fs::write(&good, keel_vmtests::with_api(text)).unwrap();
    let g = good.to_string_lossy().to_string();

    let (ok, out, err) = vm.keelctl(&["config", "apply", "--dry-run", &g]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("would change /etc/live.conf"), "{out}");
    assert!(out.contains("would change /etc/hostname"), "{out}");
    assert_eq!(vm.status().hostname, "keel", "a dry run changes nothing");

    let (ok, out, err) = vm.keelctl(&["config", "apply", &g]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("changed    /etc/live.conf"), "{out}");
    assert_eq!(vm.status().hostname, "applied-live");
    assert_eq!(
        vm.status().config.source.as_deref(),
        Some("api POST /v1/config")
    );

    let (ok, out, _) = vm.keelctl(&["config", "apply", &g]);
    assert!(ok);
    assert!(
        out.contains("applied: 0 files changed"),
        "applying twice changes nothing: {out}"
    );

    let bad = s.path("bad.yaml");
    std::fs::write(
        &bad,
        "#cloud-config\nhostname: other\nwrite_files:\n  - path: relative\n",
    )
    .unwrap();
    let (ok, out, _) = vm.keelctl(&["config", "apply", &bad.to_string_lossy()]);
    assert!(!ok, "refused: exit status 1");
    assert!(
        out.contains("error      4:11: write_files[0].path"),
        "{out}"
    );
    assert!(out.contains("refused: 1 errors, nothing changed"), "{out}");
    assert_eq!(vm.status().hostname, "applied-live", "nothing changed");

    let (ok, out, _) = vm.keelctl(&["config", "show"]);
    assert!(ok);
    assert!(out.contains("source     api POST /v1/config"), "{out}");

    // On purpose, the same config without api: is applied (the control);
    // the port stays open for this boot.
    let (ok, out, err) = vm.keelctl(&["config", "apply", "--close-api", &c]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("applied: "), "{out}");
    let (ok, out, err) = vm.keelctl(&["config", "show"]);
    assert!(ok, "{out}{err}");
}

#[test]
fn a_static_network_unit_configures_the_link_through_netlink() {
    let s = Scratch::new("config-network");
    let config = "#cloud-config
coreos:
  units:
    - name: 00-eth.network
      content: |
        [Match]
        Name=eth*

        [Network]
        Address=10.0.2.15/24
        Gateway=10.0.2.2
        DNS=10.0.2.3
        Domains=example.internal

        [Route]
        Destination=192.168.77.0/24
        Gateway=10.0.2.2
";
    // 192.168.77.0/24 is "004DA8C0" in /proc/net/route.
    let mut vm = boot_with(
        &s,
        "config-network",
        "opt/keel/config",
        config,
        "contains,/proc/net/route,004DA8C0",
    );
    vm.wait_for("test-helper: contains /proc/net/route 004DA8C0: true", EXIT);
    let c = vm.console();
    assert!(c.contains("eth0: configured by 00-eth.network"), "{c}");
    // The API answers through the forwarded port: the address is up.
    let st = vm.status();
    assert_eq!(st.config.items[0].verdict, "translated");
    drop(vm);
    // resolv.conf, from a second boot reading it.
    let mut vm = boot_with(
        &s,
        "config-network-dns",
        "opt/keel/config",
        config,
        "read,/etc/resolv.conf",
    );
    vm.wait_for("first line \"nameserver 10.0.2.3\"", EXIT);
}

#[test]
fn keelctl_network_shows_the_static_address_routes_and_dns() {
    let s = Scratch::new("config-network-show");
    let config = "#cloud-config
coreos:
  units:
    - name: 10-eth0.network
      content: |
        [Match]
        Name=eth0
        [Network]
        Address=10.0.2.15/24
        Address=10.0.2.77/24
        DNS=10.0.2.3
        # A route with a gateway and no destination: the default route.
        [Route]
        Gateway=10.0.2.2
";
    let vm = boot_with(
        &s,
        "config-network-show",
        "opt/keel/config",
        config,
        "read,/etc/hostname",
    );
    let (ok, out, err) = vm.keelctl(&["network"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("configured by config (10-eth0.network)"),
        "{out}"
    );
    let eth0 = out
        .lines()
        .find(|l| l.starts_with("eth0 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        eth0.contains("10.0.2.15/24") && eth0.contains("10.0.2.77/24"),
        "{eth0}"
    );
    let (ok, json, _) = vm.keelctl(&["network", "--json"]);
    assert!(ok);
    let n: keel_api::NetworkStatus = serde_json::from_str(&json).unwrap();
    let l = n.links.iter().find(|l| l.name == "eth0").unwrap();
    assert!(l.up, "{l:?}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("default") && l.contains("10.0.2.2") && l.ends_with("eth0")),
        "{out}"
    );
    assert!(out.contains("dns        10.0.2.3"), "{out}");
    let lo = out.lines().find(|l| l.starts_with("lo ")).unwrap();
    assert!(lo.contains("127.0.0.1/8"), "{lo}");
}

#[test]
fn dhcp_from_qemu_user_net_gives_the_address_and_the_api_is_reachable() {
    let mut cfg = VmConfig::new("dhcp");
    // The launcher passes a static keel.ip; a later keel.ip=dhcp wins.
    cfg.append = "keel.ip=dhcp".into();
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    // The API answering through the forwarded port is the host -> guest TCP
    // connection.
    let (ok, out, err) = vm.keelctl(&["network"]);
    assert!(ok, "{err}");
    assert!(out.contains("configured by dhcp on eth0"), "{out}");
    assert!(
        out.contains("dhcp       eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("default") && l.contains("10.0.2.2")),
        "{out}"
    );
    let (_, json, _) = vm.keelctl(&["network", "--json"]);
    let n: keel_api::NetworkStatus = serde_json::from_str(&json).unwrap();
    let lease = n.dhcp.expect("a lease");
    assert!(
        lease.first_lease_ms > 0.0 && lease.first_lease_ms < 5000.0,
        "{lease:?}"
    );
    assert!(vm
        .console()
        .contains("eth0: DHCP lease 10.0.2.15/24 router 10.0.2.2"));
}

/// Never strand a remote node: a node whose config had a good `api:`
/// reboots with a config that has a typo elsewhere. It comes up in
/// maintenance mode, and the admin certificate still reaches its API
/// through the last good `api:` kept on STATE, applies the corrected
/// config, and the node leaves maintenance mode. The control: the same
/// typo on a fresh disk (nothing kept) leaves the port closed.
#[test]
fn a_refused_config_keeps_the_last_good_api_so_the_node_can_be_fixed() {
    let s = Scratch::new("config-strand");
    let disk = s.path("disk.img");
    std::fs::copy(keel_vmtests::build_dir().join("disk.img"), &disk)
        .expect("build/disk.img (make disk)");
    let good = s.path("good.yaml");
    std::fs::write(&good, "#cloud-config\nhostname: good\n").unwrap();
    let typo = s.path("typo.yaml");
    std::fs::write(&typo, "#cloud-config\nhostname: [typo]\n").unwrap();
    let boot = |name: &str, disk: &std::path::Path, config: &std::path::Path, api: bool| {
        let mut cfg = VmConfig::new(name);
        cfg.variant = keel_vmtests::Variant::Disk;
        cfg.disk = Some(disk.to_path_buf());
        cfg.api = api;
        cfg.cloud_config(config);
        let mut vm = Vm::start(cfg);
        vm.wait_ready();
        vm
    };
    let mut vm = boot("config-strand-1", &disk, &good, true);
    assert_eq!(vm.status().hostname, "good");
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    vm.wait_exit(EXIT);

    // The typo config: no api: of its own, and refused.
    let vm = boot("config-strand-2", &disk, &typo, false);
    let st = vm.status();
    assert!(st.config.maintenance, "{:?}", st.config);
    assert!(
        st.api
            .note
            .contains("with the last good api: kept in /var/lib/keel/api")
            && st.api.note.contains("the cloud-config was refused"),
        "{:?}",
        st.api
    );
    assert!(vm
        .console()
        .contains("api: tcp port 9420 serves https with the last good api:"));
    let fixed = s.path("fixed.yaml");
    std::fs::write(
        &fixed,
        keel_vmtests::with_api("#cloud-config\nhostname: fixed\n"),
    )
    .unwrap();
    let (ok, out, err) = vm.keelctl(&["config", "apply", &fixed.to_string_lossy()]);
    assert!(ok, "{out}{err}");
    let st = vm.status();
    assert!(!st.config.maintenance, "{:?}", st.config);
    assert_eq!(st.hostname, "fixed");
    drop(vm);

    // The control: a disk that never served an api: keeps the port closed.
    let fresh = s.path("fresh.img");
    std::fs::copy(keel_vmtests::build_dir().join("disk.img"), &fresh).unwrap();
    let mut cfg = VmConfig::new("config-strand-fresh");
    cfg.variant = keel_vmtests::Variant::Disk;
    cfg.disk = Some(fresh);
    cfg.api = false;
    cfg.cloud_config(&typo);
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    // (The disk's root has no test helper: the console tells.)
    let c = vm.console();
    assert!(
        c.contains("api: tcp port 9420 closed: the cloud-config was refused (maintenance mode)"),
        "{c}"
    );
    match vm
        .client()
        .call_blocking::<keel_api::Status>(hyper::Method::GET, "/v1/status")
    {
        Err(keel_api::ClientError::Handshake { .. } | keel_api::ClientError::Http { .. }) => {}
        other => panic!("the closed port answered: {other:?}"),
    }
}

/// A node in maintenance mode reads its datasource again (after 10 s, then
/// at doubling intervals): the corrected config the URL serves later is
/// applied without a console, and the node leaves maintenance mode.
#[test]
fn a_node_in_maintenance_mode_picks_up_a_corrected_config() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = served.clone();
    std::thread::spawn(move || {
        for mut stream in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            // The boot's fetch gets the typo; every later one the fix.
            let body = if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                "#cloud-config\nhostname: [typo]\n"
            } else {
                "#cloud-config\nhostname: corrected\n"
            };
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let mut cfg = VmConfig::new("config-reread");
    cfg.api = false;
    cfg.append = format!(
        "keel.config.url=http://10.0.2.2:{port}/user-data keel.run=/usr/lib/keel/test-helper,sleep,30,+,unix-json,/run/keel/api.sock,/v1/status"
    );
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    assert!(
        vm.console().contains("maintenance mode, nothing applied"),
        "{}",
        vm.console()
    );
    vm.wait_for(
        &format!("config: re-read url http://10.0.2.2:{port}/user-data (plain http, unverified): accepted and applied: maintenance mode left"),
        Duration::from_secs(60),
    );
    let st: keel_api::Status = vm.unix_json("/v1/status");
    assert!(!st.config.maintenance, "{:?}", st.config);
    assert_eq!(st.hostname, "corrected");
    assert_eq!(
        st.config.source.as_deref(),
        Some(
            format!("url http://10.0.2.2:{port}/user-data (plain http, unverified) (re-read)")
                .as_str()
        )
    );
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}
