//! Pulls from a real registry: Debian's `docker-registry` (the CNCF
//! distribution server) on 127.0.0.1, an image pushed to it by `skopeo`.
//! Skips with a message without the two programs (`apt-get install -y
//! docker-registry skopeo`). Root is not needed: the registry listens on a
//! free port above 1024 and stores under a temporary directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_oci::manifest::ContainerConfig;
use keel_oci::writer::{layer_tar, write_layout, ImageSpec, Layer, LayerEntry};
use keel_oci::{Platform, Store};
use keel_registry::{pull_blocking, Failure, Reference, Settings};

const REGISTRY: &str = "/usr/bin/docker-registry";
const SKOPEO: &str = "/usr/bin/skopeo";

fn skip() -> Option<&'static str> {
    if !Path::new(REGISTRY).exists() || !Path::new(SKOPEO).exists() {
        return Some(
            "docker-registry or skopeo missing (apt-get install -y docker-registry skopeo)",
        );
    }
    None
}

struct Registry {
    child: Child,
    addr: String,
    storage: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the registry; with `tls` (certificate and key files) it speaks
/// HTTPS.
fn start_registry(dir: &Path, tls: Option<(&Path, &Path)>) -> Registry {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let storage = dir.join("storage");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{}",
            storage.display(),
            tls.map_or(String::new(), |(c, k)| format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            ))
        ),
    )
    .unwrap();
    let child = Command::new(REGISTRY)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        addr,
        storage,
    }
}

fn push_image(dir: &Path, registry: &str) {
    let layout = dir.join("layout");
    let layers: Vec<Layer> = [
        vec![
            LayerEntry::dir("bin"),
            LayerEntry::file("bin/hello", b"#!/bin/sh\necho hello\n").with_mode(0o755),
        ],
        vec![LayerEntry::file("etc/motd", b"pulled\n")],
    ]
    .iter()
    .map(|e| Layer::tar_gzip(&layer_tar(e).unwrap()).unwrap())
    .collect();
    let spec = ImageSpec {
        name: Some("busybox:latest".into()),
        platform: Platform::linux_amd64(),
        config: ContainerConfig {
            entrypoint: Some(vec!["/bin/hello".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        },
    };
    write_layout(&layout, &spec, &layers).unwrap();
    let out = Command::new(SKOPEO)
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:busybox:latest", layout.display()))
        .arg(format!("docker://{registry}/test/busybox:1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn settings(insecure: &[&str], ca: &Path) -> Settings {
    Settings {
        insecure: insecure
            .iter()
            .map(|s| keel_types::Registry::try_from(*s).unwrap())
            .collect(),
        auth: vec![],
        ca_bundle: ca.to_path_buf(),
        resolver_root: "/".into(),
    }
}

fn refs(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("images"))
        .unwrap()
        .count()
}

#[test]
fn pull_from_docker_registry() {
    if let Some(why) = skip() {
        keel_testkit::skip(why);
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), None);
    push_image(t.path(), &reg.addr);
    let insecure = settings(&[&reg.addr], Path::new("/nonexistent"));

    // By tag, as insecure: resolves, layers unpack, config matches.
    let store = Store::open(&t.path().join("store")).unwrap();
    let name = format!("{}/test/busybox:1", reg.addr);
    let r = Reference::parse(&name).unwrap();
    let pulled = pull_blocking(&store, &r, &name, &insecure).unwrap();
    assert_eq!((pulled.fetched, pulled.present), (3, 0));
    let img = store.resolve(&name).unwrap();
    assert_eq!(img.manifest_digest.to_string(), pulled.manifest.digest);
    assert_eq!(
        std::fs::read(img.layer_dirs[0].join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        std::fs::read(img.layer_dirs[1].join("etc/motd")).unwrap(),
        b"pulled\n"
    );
    let cfg = img.config.config.clone().unwrap();
    assert_eq!(cfg.entrypoint.unwrap(), ["/bin/hello"]);
    assert_eq!(cfg.env.unwrap(), ["PATH=/bin"]);

    // By digest, into another store.
    let store2 = Store::open(&t.path().join("store2")).unwrap();
    let by_digest = format!("{}/test/busybox@{}", reg.addr, pulled.received);
    let r2 = Reference::parse(&by_digest).unwrap();
    let p2 = pull_blocking(&store2, &r2, &by_digest, &insecure).unwrap();
    assert_eq!(p2.manifest, pulled.manifest);
    assert!(store2.resolve(&by_digest).is_ok());

    // Not listed insecure: refused, naming the setting.
    let ca = t.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&ca, p.self_signed(&key).unwrap().pem()).unwrap();
    let store3 = Store::open(&t.path().join("store3")).unwrap();
    let e = pull_blocking(&store3, &r, &name, &settings(&[], &ca)).unwrap_err();
    assert!(matches!(e.failure, Failure::PlainHttp { .. }), "{e}");
    assert!(e.to_string().contains("registries.insecure"), "{e}");
    assert_eq!(refs(&store3), 0);

    // A blob tampered with in the registry's storage: refused, not kept.
    let layer = img.manifest.layers[1].digest().unwrap();
    let data = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex())
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let store4 = Store::open(&t.path().join("store4")).unwrap();
    let e = pull_blocking(&store4, &r, &name, &insecure).unwrap_err();
    assert!(matches!(e.failure, Failure::Blob { .. }), "{e}");
    assert!(e.to_string().contains(&layer.to_string()), "{e}");
    assert_eq!(refs(&store4), 0);
    assert!(!store4.has_blob(&layer));
    let leftovers: Vec<_> = std::fs::read_dir(store4.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A CA, and a certificate for 127.0.0.1 it signed: (CA PEM, cert PEM, key
/// PEM).
fn ca_and_server() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[test]
fn pull_over_tls() {
    if let Some(why) = skip() {
        keel_testkit::skip(why);
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server();
    let (ca_path, cert_path, key_path) = (
        t.path().join("ca.pem"),
        t.path().join("cert.pem"),
        t.path().join("key.pem"),
    );
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let reg = start_registry(t.path(), Some((&cert_path, &key_path)));
    push_image(t.path(), &reg.addr);

    let name = format!("{}/test/busybox:1", reg.addr);
    let r = Reference::parse(&name).unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let pulled = pull_blocking(&store, &r, &name, &settings(&[], &ca_path)).unwrap();
    assert_eq!(pulled.fetched, 3);
    let img = store.resolve(&name).unwrap();
    assert_eq!(
        std::fs::read(img.layer_dirs[1].join("etc/motd")).unwrap(),
        b"pulled\n"
    );

    // Another CA: the certificate is not trusted, and nothing is stored.
    let (other_ca, _, _) = ca_and_server();
    let other = t.path().join("other.pem");
    std::fs::write(&other, other_ca).unwrap();
    let store2 = Store::open(&t.path().join("store2")).unwrap();
    let e = pull_blocking(&store2, &r, &name, &settings(&[], &other)).unwrap_err();
    assert!(matches!(e.failure, Failure::Tls { .. }), "{e}");
    assert!(e.to_string().contains("TLS handshake with"), "{e}");
    assert_eq!(refs(&store2), 0);
}
