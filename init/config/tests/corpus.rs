//! A corpus of cloud-configs written the way CoreOS deployments wrote them:
//! each parses, is accepted, and gets the expected verdict per item.

use keel_config::{validate, Verdict};
use keel_types::etcd::ClusterState;

fn corpus(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn verdicts(name: &str) -> (keel_config::Report, Vec<(String, Verdict)>) {
    let r = validate(&corpus(name));
    assert!(r.accepted(), "{name}: {:#?}", r.errors);
    let v = r
        .items
        .iter()
        .map(|i| (i.path.clone(), i.verdict))
        .collect();
    (r, v)
}

fn has(v: &[(String, Verdict)], path: &str, verdict: Verdict) {
    assert!(
        v.iter().any(|(p, x)| p == path && *x == verdict),
        "expected {path} {}: {v:#?}",
        verdict.as_str()
    );
}

#[test]
fn etcd2_cluster_node() {
    let (r, v) = verdicts("etcd2-cluster-node.yaml");
    has(&v, "hostname", Verdict::Applied);
    has(&v, "ssh_authorized_keys", Verdict::Applied);
    has(&v, "coreos.etcd2", Verdict::Translated);
    has(&v, "coreos.fleet", Verdict::Refused);
    has(&v, "coreos.update", Verdict::Accepted);
    has(&v, "coreos.locksmith", Verdict::Accepted);
    has(&v, "coreos.units[0]", Verdict::Translated);
    has(&v, "coreos.units[1]", Verdict::Translated);
    has(&v, "coreos.units[2]", Verdict::Refused);
    has(&v, "write_files[0]", Verdict::Applied);
    has(&v, "write_files[1]", Verdict::Applied);
    let c = &r.config;
    assert_eq!(c.hostname.as_deref(), Some("node-01"));
    assert_eq!(c.etcd2.initial_cluster_state, Some(ClusterState::New));
    assert_eq!(c.etcd2.initial_cluster.as_ref().unwrap().members().len(), 3);
    assert!(c.etcd2.client_cert_auth);
    assert!(c.etcd2.unsupported.is_empty(), "{:?}", c.etcd2.unsupported);
    assert_eq!(shown(&c.networks[0].addresses), ["10.0.1.11/24"]);
    assert_eq!(shown(&c.networks[0].dns), ["10.0.1.2", "10.0.1.3"]);
    assert_eq!(shown(c.networks[0].gateway), ["10.0.1.1"]);
    let ca = &c.write_files[0];
    assert_eq!(
        ca.permissions, 0o644,
        "unquoted 0644 is octal, as CoreOS read it"
    );
    assert!(String::from_utf8_lossy(&ca.content).starts_with("-----BEGIN CERTIFICATE-----"));
    let key = &c.write_files[1];
    assert_eq!(key.permissions, 0o600);
    assert_eq!(key.owner, Some(("etcd".into(), Some("etcd".into()))));
    assert_eq!(
        shown(c.update.as_ref().unwrap().reboot_strategy),
        ["etcd-lock"]
    );
    assert_eq!(
        shown(c.locksmith.as_ref().unwrap().window_start),
        ["Thu 04:00"]
    );
}

/// Typed values as the config wrote them.
fn shown<T: ToString>(values: impl IntoIterator<Item = T>) -> Vec<String> {
    values.into_iter().map(|v| v.to_string()).collect()
}

#[test]
fn web_node_with_docker_units() {
    let (r, v) = verdicts("web-node-docker.yaml");
    has(&v, "manage_etc_hosts", Verdict::Applied);
    has(&v, "users[0]", Verdict::Applied);
    has(&v, "users[0].coreos-ssh-import-github", Verdict::Refused);
    has(&v, "coreos.units[0]", Verdict::Refused); // docker.service
    has(&v, "coreos.units[0].drop-ins[0]", Verdict::Refused);
    has(&v, "coreos.units[1]", Verdict::Translated); // docker run: a container
    has(&v, "coreos.units[2]", Verdict::Refused); // timer
    has(&v, "coreos.units[3]", Verdict::Accepted); // update-engine stopped
    let web = r
        .items
        .iter()
        .find(|i| i.path == "coreos.units[1]")
        .unwrap();
    assert!(
        web.note
            .starts_with("container web (nginx:1.25) from docker run"),
        "{}",
        web.note
    );
    assert!(web.note.contains("ExecStartPre docker rm"), "{}", web.note);
    let c = &r.config.containers[0];
    assert_eq!((c.name.as_str(), c.ports[0].host_port), ("web", 80));
    let ue = r
        .items
        .iter()
        .find(|i| i.path == "coreos.units[3]")
        .unwrap();
    assert!(ue.note.contains("off"), "{}", ue.note);
    let u = &r.config.users[0];
    assert_eq!(u.groups, ["sudo", "docker"]);
    assert!(u.passwd_hash.as_deref().unwrap().starts_with("$6$"));
    let f = &r.config.write_files[0];
    assert_eq!(f.content, b"{\"listen\": \":80\", \"workers\": 4}\n");
    assert_eq!(f.permissions, 0o640);
}

#[test]
fn legacy_etcd_flannel_oem_and_a_socket() {
    let (r, v) = verdicts("legacy-etcd-flannel.yaml");
    has(&v, "coreos.etcd", Verdict::Translated);
    has(&v, "coreos.flannel", Verdict::Refused);
    has(&v, "coreos.oem", Verdict::Applied);
    has(&v, "coreos.units[0]", Verdict::Translated); // etcd.service
    has(&v, "coreos.units[1].drop-ins[0]", Verdict::Refused);
    has(&v, "coreos.units[2]", Verdict::Refused); // socket
    has(&v, "coreos.units[3]", Verdict::Translated); // DHCP .network
    let c = &r.config;
    assert_eq!(
        c.etcd2.advertise_client_urls.as_ref().unwrap().to_string(),
        "http://172.17.8.101:4001"
    );
    assert_eq!(
        c.etcd2
            .initial_advertise_peer_urls
            .as_ref()
            .unwrap()
            .to_string(),
        "http://172.17.8.101:7001"
    );
    has(&v, "coreos.etcd.addr", Verdict::Translated);
    // discovery.etcd.io is kept, but the KV cannot reach it, and says so.
    has(&v, "coreos.etcd.discovery", Verdict::Accepted);
    assert_eq!(c.networks[0].match_names, ["en*"]);
    assert_eq!(shown(c.networks[0].dhcp), ["yes"]);
    let n = r
        .items
        .iter()
        .find(|i| i.path == "coreos.units[3]")
        .unwrap();
    assert!(
        n.note.contains("ignored: [Network] LinkLocalAddressing"),
        "{}",
        n.note
    );
}

#[test]
fn keel_containers() {
    use keel_config::model::{MountSpec, NetMode, Probe, Restart};
    let (r, v) = verdicts("keel-containers.yaml");
    has(&v, "containers[0]", Verdict::Applied);
    has(&v, "containers[1]", Verdict::Applied);
    has(&v, "containers[2]", Verdict::Applied);
    let web = r.items.iter().find(|i| i.path == "containers[1]").unwrap();
    assert_eq!(
        web.note,
        "container web (registry.example.com:5000/shop/web:2.4.1)"
    );
    let [db, web, metrics] = &r.config.containers[..] else {
        panic!("{:#?}", r.config.containers)
    };
    assert_eq!(db.resources.memory, Some(1 << 30));
    assert_eq!(db.resources.millicpus, Some(2000));
    assert_eq!(db.stop_grace_ms, 60_000);
    assert!(matches!(&db.mounts[1], MountSpec::Tmpfs { size, .. } if *size == 16 << 20));
    assert_eq!(web.after, ["db"]);
    assert_eq!(web.requires, ["db"]);
    assert_eq!(web.ports[0].host_port, 80);
    assert_eq!(web.ports[0].container_port, 8080);
    assert_eq!(web.restart, Restart::OnFailure);
    assert_eq!(web.backoff_ms, 1000);
    assert_eq!(shown(&web.cap_add), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(
        web.healthcheck.as_ref().unwrap().probe,
        Probe::Http {
            port: 8080,
            path: "/healthz".into()
        }
    );
    assert_eq!(metrics.network, NetMode::Host);
}

#[test]
fn coreos_docker_units() {
    use keel_config::model::Restart;
    let (r, v) = verdicts("coreos-docker-units.yaml");
    has(&v, "coreos.units[0]", Verdict::Refused); // docker.service
    has(&v, "coreos.units[1]", Verdict::Translated);
    has(&v, "coreos.units[2]", Verdict::Translated);
    has(&v, "coreos.units[3]", Verdict::Refused); // ${COREOS_PRIVATE_IPV4}
    has(&v, "coreos.units[4]", Verdict::Refused); // --privileged
    let note = |p: &str| &r.items.iter().find(|i| i.path == p).unwrap().note;
    assert!(note("coreos.units[3]").contains("$COREOS_PRIVATE_IPV4"));
    assert!(note("coreos.units[4]").contains("docker run flag --privileged is not supported"));
    assert!(note("coreos.units[2]").contains("retry limit is ignored"));
    let [redis, app] = &r.config.containers[..] else {
        panic!("{:#?}", r.config.containers)
    };
    assert_eq!(redis.args, ["redis-server", "--appendonly", "yes"]);
    assert_eq!(redis.restart, Restart::Always);
    assert_eq!(redis.backoff_ms, 5000);
    assert_eq!(redis.resources.memory, Some(512 << 20));
    assert_eq!(app.env[0], ("GREETING".into(), "hello world".into()));
    assert_eq!(app.restart, Restart::OnFailure);
    assert_eq!(shown(&app.cap_drop), ["ALL"]);
    assert_eq!(app.args, ["serve", "--port=8080"]);
}

#[test]
fn minimal() {
    let (r, _) = verdicts("minimal.yaml");
    assert_eq!(r.config.hostname.as_deref(), Some("tiny"));
}

#[test]
fn every_error_is_reported_with_its_path_and_position() {
    let text = "#cloud-config
hostnmae: x
hostname: -bad-
users:
  - name: Root
    passwd: hunter2
    groups: wheel
  - gecos: no name
write_files:
  - path: relative/file
    permissions: 644
  - path: /etc/x
    encoding: b64
    content: '%%%'
  - path: /etc/y
    permissions: 0999
    owner: 'a b'
coreos:
  update:
    reboot-strategy: sometimes
    server: ftp://updates
  locksmith:
    window-start: Thursday
  etcd2:
    initial-cluster-state: maybe
    listen-client-urls: 0.0.0.0:2379
  units:
    - name: x.network
      content: |
        [Match]
        Name=eth0
        [Network]
        Address=10.0.0.300/24
    - command: start
    - name: y.service
      enable: sure
manage_etc_hosts: true
";
    let r = validate(text);
    assert!(!r.accepted());
    let find = |path: &str| {
        r.errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {:#?}", r.errors))
    };
    let e = find("hostnmae");
    assert_eq!((e.line, e.col), (2, 1));
    assert!(
        e.message.contains("did you mean \"hostname\""),
        "{}",
        e.message
    );
    assert_eq!(find("hostname").line, 3);
    assert!(find("users[0].name").message.contains("not a valid name"));
    assert!(find("users[0].passwd").message.contains("hashes only"));
    assert!(find("users[0].groups").message.contains("expected a list"));
    assert!(find("users[1]").message.contains("needs a name"));
    assert!(find("write_files[0].path").message.contains("absolute"));
    let p = find("write_files[0].permissions");
    assert!(p.message.contains("decimal number 644"), "{}", p.message);
    assert_eq!((p.line, p.col), (11, 18));
    assert!(find("write_files[1].content").message.contains("base64"));
    assert!(find("write_files[2].permissions").message.contains("octal"));
    assert!(find("write_files[2].owner").message.contains("owner user"));
    assert!(find("coreos.update.reboot-strategy")
        .message
        .contains("etcd-lock"));
    assert!(find("coreos.update.server").message.contains("http"));
    assert!(find("coreos.locksmith.window-start")
        .message
        .contains("HH:MM"));
    assert!(find("coreos.etcd2.initial-cluster-state")
        .message
        .contains("new or existing"));
    assert!(find("coreos.etcd2.listen-client-urls")
        .message
        .contains("URL"));
    let n = find("coreos.units[0].content");
    assert_eq!(n.line, 33, "the line of Address= inside the unit: {n:?}");
    assert!(n.message.contains("Address"), "{}", n.message);
    assert!(find("coreos.units[1]").message.contains("needs a name"));
    assert!(find("coreos.units[2].enable")
        .message
        .contains("true or false"));
    assert!(find("manage_etc_hosts").message.contains("localhost"));
    assert_eq!(
        r.errors.len(),
        20,
        "all errors, not the first, and nothing else: {:#?}",
        r.errors
    );
}

#[test]
fn a_reboot_window_needs_both_ends() {
    let r = validate("#cloud-config\ncoreos:\n  locksmith:\n    window-start: Sun 03:00\n");
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(r.errors[0].path, "coreos.locksmith");
    assert!(r.errors[0].message.contains("go together"));
}

#[test]
fn documents_keel_cannot_read_say_what_it_reads() {
    let r = validate("#!/bin/bash\necho hi\n");
    assert!(r.errors[0].message.contains("keel has no shell"));
    let r = validate("{\"ignition\": {\"version\": \"3.0.0\"}}");
    assert!(r.errors[0].message.contains("Ignition"));
    let r = validate("hostname: x\n");
    assert!(r.errors[0].message.contains("#cloud-config"));
    assert!(validate("").accepted());
    let r = validate("#cloud-config\na: [1\n");
    assert!(r.errors[0].line >= 2, "{:?}", r.errors);
}

#[test]
fn a_gzip_bomb_is_refused() {
    use std::io::Write;
    let mut enc = flate2_write();
    enc.write_all(&vec![0u8; 20 * 1024 * 1024]).unwrap();
    let gz = enc.finish().unwrap();
    let b64 = base64_encode(&gz);
    let text = format!(
        "#cloud-config\nwrite_files:\n  - path: /x\n    encoding: gz+b64\n    content: {b64}\n"
    );
    let r = validate(&text);
    assert!(r.errors[0].message.contains("more than"), "{:?}", r.errors);
}

fn flate2_write() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best())
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn an_etcd2_quota_out_of_range_is_an_error_naming_it() {
    let config =
        |q: &str| format!("#cloud-config\ncoreos:\n  etcd2:\n    quota-backend-bytes: {q}\n");
    let r = validate(&config("1048576"));
    assert!(r.accepted(), "{:#?}", r.errors);
    assert_eq!(
        r.config.etcd2.quota_backend_bytes.map(|q| q.get()),
        Some(1048576)
    );
    for bad in ["1024", "9999999999", "1G"] {
        let r = validate(&config(bad));
        assert!(!r.accepted(), "{bad}");
        let e: Vec<String> = r.errors.iter().map(|i| i.to_string()).collect();
        let e = e.join("\n");
        assert!(
            e.contains("coreos.etcd2.quota-backend-bytes")
                && e.contains("is not a whole number of bytes from 65536 to 8589934592"),
            "{e}"
        );
    }
}

#[test]
fn etcd2_settings_are_typed_once_with_errors_at_their_keys() {
    let r = validate(
        "#cloud-config
coreos:
  etcd2:
    name: n1
    listen-client-urls: https://0.0.0.0:2379, http://127.0.0.1:2379
    ca-file: /etc/ssl/ca.pem
    snapshot-count: 5000
    cors: '*'
    auto-tls: true
    heartbeat-interval: 100
",
    );
    assert!(r.accepted(), "{:#?}", r.errors);
    let e = &r.config.etcd2;
    assert_eq!(e.name.as_ref().map(|n| n.as_str()), Some("n1"));
    assert_eq!(
        e.listen_client_urls.as_ref().unwrap().to_string(),
        "https://0.0.0.0:2379,http://127.0.0.1:2379"
    );
    // etcd 2's ca-file: the trusted CA, with client certificates asked for.
    assert_eq!(
        e.trusted_ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ssl/ca.pem"))
    );
    assert!(e.client_cert_auth);
    let item = r
        .items
        .iter()
        .find(|i| i.path == "coreos.etcd2.ca-file")
        .unwrap();
    assert_eq!(
        (item.verdict, item.note.as_str()),
        (
            Verdict::Translated,
            "deprecated: taken as trusted-ca-file with client-cert-auth"
        )
    );
    assert_eq!(e.snapshot_count.map(|n| n.get()), Some(5000));
    assert_eq!(e.cors, keel_types::etcd::Cors::Any);
    assert_eq!(e.unsupported, ["auto-tls", "heartbeat-interval"]);

    let r = validate(
        "#cloud-config
coreos:
  etcd2:
    client-cert-auth: yes
    snapshot-count: 5
    advertise-client-urls: http://node-1:2379
    initial-cluster: a
    cors: nope
    name: a,b
    peer-trusted-ca-file: ca.pem
  etcd:
    bind-addr: 0.0.0.0
",
    );
    let e: Vec<String> = r.errors.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        e,
        [
            "4:23: coreos.etcd2.client-cert-auth: \"yes\" is not true or false",
            "5:21: coreos.etcd2.snapshot-count: \"5\" is not a whole number from 10 to 10000000",
            "6:28: coreos.etcd2.advertise-client-urls: \"http://node-1:2379\" is not an http://IP:PORT or https://IP:PORT URL",
            "7:22: coreos.etcd2.initial-cluster: \"a\" is not NAME=URL",
            "8:11: coreos.etcd2.cors: \"nope\" is not \"*\" or a list of http:// and https:// origins",
            "9:11: coreos.etcd2.name: \"a,b\" is not a member name",
            "10:27: coreos.etcd2.peer-trusted-ca-file: \"ca.pem\" is not an absolute path",
            "12:16: coreos.etcd.bind-addr: \"http://0.0.0.0\" is not an http://IP:PORT or https://IP:PORT URL",
        ]
    );
}

#[test]
fn etcd_0_4_addresses_become_etcd2_urls() {
    let r = validate(
        "#cloud-config
coreos:
  etcd:
    bind-addr: 0.0.0.0:4001
    peer-bind-addr: 0.0.0.0:7001
",
    );
    assert!(r.accepted(), "{:#?}", r.errors);
    let e = &r.config.etcd2;
    assert_eq!(
        e.listen_client_urls.as_ref().unwrap().to_string(),
        "http://0.0.0.0:4001"
    );
    assert_eq!(
        e.listen_peer_urls.as_ref().unwrap().to_string(),
        "http://0.0.0.0:7001"
    );
    assert!(e.unsupported.is_empty());
}
