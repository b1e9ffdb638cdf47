//! Pulls from a registry served in the test: a map of paths to answers,
//! with optional token auth, so each rule of the pull is seen on the wire.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use keel_oci::manifest::{ContainerConfig, OCI_INDEX, OCI_MANIFEST};
use keel_oci::writer::{layer_tar, write_layout, ImageSpec, Layer, LayerEntry};

use super::*;

#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn ok(content_type: &str, body: &[u8]) -> Answer {
    Answer {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.to_vec(),
    }
}

#[derive(Default)]
struct Fake {
    routes: HashMap<String, Answer>,
    /// Require `Authorization: Bearer t0k` on /v2/ paths.
    token: bool,
    /// Require basic auth `u:p` on /v2/ paths.
    basic: bool,
    /// Paths asked for, in order.
    log: Vec<String>,
}

async fn serve(fake: Arc<Mutex<Fake>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let fake = fake.clone();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let a = answer(&fake, &req, addr);
                async move {
                    let mut r = Response::builder().status(a.status);
                    for (k, v) in &a.headers {
                        r = r.header(k, v);
                    }
                    Ok::<_, Infallible>(r.body(Full::new(Bytes::from(a.body))).unwrap())
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn answer(fake: &Mutex<Fake>, req: &Request<hyper::body::Incoming>, addr: SocketAddr) -> Answer {
    let mut f = fake.lock().unwrap();
    let path = req.uri().path_and_query().unwrap().to_string();
    f.log.push(path.clone());
    let auth = req
        .headers()
        .get("authorization")
        .map(|h| h.to_str().unwrap().to_string());
    if path.starts_with("/token?") {
        assert!(
            path.contains("scope=repository%3Atest%2Fx%3Apull"),
            "{path}"
        );
        assert!(path.contains("service=fake"), "{path}");
        return ok("application/json", br#"{"token":"t0k"}"#);
    }
    let v2 = path.starts_with("/v2/");
    if v2 && f.token && auth.as_deref() != Some("Bearer t0k") {
        return Answer {
            status: 401,
            headers: vec![(
                "www-authenticate".into(),
                format!(
                    r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:test/x:pull""#
                ),
            )],
            body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                .to_vec(),
        };
    }
    // "u:p"
    if v2 && f.basic && auth.as_deref() != Some("Basic dTpw") {
        return Answer {
            status: 401,
            headers: vec![("www-authenticate".into(), r#"Basic realm="fake""#.into())],
            body: Vec::new(),
        };
    }
    f.routes.get(&path).cloned().unwrap_or(Answer {
        status: 404,
        headers: vec![],
        body:
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
                .to_vec(),
    })
}

/// An image: its layout's blobs, and the manifest digest.
struct Image {
    blobs: HashMap<Digest, Vec<u8>>,
    manifest: Digest,
    _dir: tempfile::TempDir,
}

fn image(content: &[u8]) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let layers: Vec<Layer> = [
        vec![LayerEntry::file("bin/app", content)],
        vec![LayerEntry::file("etc/conf", b"conf")],
    ]
    .iter()
    .map(|e| Layer::tar_gzip(&layer_tar(e).unwrap()).unwrap())
    .collect();
    let spec = ImageSpec {
        name: Some("x".into()),
        platform: Platform::linux_amd64(),
        config: ContainerConfig {
            cmd: Some(vec!["/bin/app".into()]),
            ..Default::default()
        },
    };
    let manifest = write_layout(dir.path(), &spec, &layers).unwrap();
    let mut blobs = HashMap::new();
    for e in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let d = Digest::from_hex(&e.file_name().to_string_lossy()).unwrap();
        blobs.insert(d, std::fs::read(e.path()).unwrap());
    }
    Image {
        blobs,
        manifest,
        _dir: dir,
    }
}

/// Routes for `img` in repository test/x under `tag`.
fn routes(img: &Image, tag: &str) -> HashMap<String, Answer> {
    let mut r = HashMap::new();
    let m = &img.blobs[&img.manifest];
    r.insert(format!("/v2/test/x/manifests/{tag}"), ok(OCI_MANIFEST, m));
    r.insert(
        format!("/v2/test/x/manifests/{}", img.manifest),
        ok(OCI_MANIFEST, m),
    );
    for (d, b) in &img.blobs {
        r.insert(
            format!("/v2/test/x/blobs/{d}"),
            ok("application/octet-stream", b),
        );
    }
    r
}

fn settings(addr: SocketAddr) -> Settings {
    Settings {
        insecure: vec![keel_types::Registry::try_from(addr.to_string().as_str()).unwrap()],
        auth: vec![],
        ca_bundle: "/nonexistent".into(),
        resolver_root: "/nonexistent".into(),
    }
}

fn reference(addr: SocketAddr, rest: &str) -> Reference {
    Reference::parse(&format!("{addr}/test/x{rest}")).unwrap()
}

/// Blob files and refs in a store (temporaries included).
fn contents(store: &Store) -> (Vec<String>, Vec<String>) {
    let ls = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    (
        ls(&store.root().join("blobs/sha256")),
        ls(&store.root().join("images")),
    )
}

#[tokio::test]
async fn pulls_with_a_token_and_a_redirect() {
    let img = image(b"app v1");
    let fake = Arc::new(Mutex::new(Fake {
        routes: routes(&img, "1"),
        token: true,
        ..Fake::default()
    }));
    // One layer answers with a redirect elsewhere (as to object storage).
    let manifest: Manifest = serde_json::from_slice(&img.blobs[&img.manifest]).unwrap();
    let moved = manifest.layers[0].digest().unwrap();
    {
        let mut f = fake.lock().unwrap();
        let blob = f
            .routes
            .remove(&format!("/v2/test/x/blobs/{moved}"))
            .unwrap();
        f.routes
            .insert(format!("/storage/{}?sig=1", moved.hex()), blob);
        f.routes.insert(
            format!("/v2/test/x/blobs/{moved}"),
            Answer {
                status: 307,
                headers: vec![("location".into(), format!("/storage/{}?sig=1", moved.hex()))],
                body: vec![],
            },
        );
    }
    let addr = serve(fake.clone()).await;
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let pulled = pull(&store, &reference(addr, ":1"), "reg/x:1", &settings(addr))
        .await
        .unwrap();
    assert_eq!(pulled.received, img.manifest);
    assert_eq!((pulled.fetched, pulled.present), (3, 0));
    let r = store.resolve("reg/x:1").unwrap();
    assert_eq!(r.manifest_digest, img.manifest);
    assert_eq!(
        std::fs::read(r.layer_dirs[0].join("bin/app")).unwrap(),
        b"app v1"
    );
    assert_eq!(
        std::fs::read(r.layer_dirs[1].join("etc/conf")).unwrap(),
        b"conf"
    );
    assert_eq!(r.config.config.unwrap().cmd.unwrap(), ["/bin/app"]);
    assert!(fake
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|p| p.starts_with("/token?")));

    // A second pull fetches no blob.
    let again = pull(&store, &reference(addr, ":1"), "reg/x:1", &settings(addr))
        .await
        .unwrap();
    assert_eq!((again.fetched, again.present), (0, 3));
}

#[tokio::test]
async fn an_index_gives_the_linux_amd64_manifest() {
    let img = image(b"amd64");
    let mut routes = routes(&img, "1");
    let m = &img.blobs[&img.manifest];
    let other = Digest::of(b"arm64 manifest");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
        {{"mediaType":"{OCI_MANIFEST}","digest":"{other}","size":14,"platform":{{"architecture":"arm64","os":"linux"}}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        img.manifest,
        m.len()
    );
    // Served as plain JSON: the document's own mediaType says what it is.
    routes.insert(
        "/v2/test/x/manifests/multi".into(),
        ok("application/json", index.as_bytes()),
    );
    let fake = Arc::new(Mutex::new(Fake {
        routes,
        ..Fake::default()
    }));
    let addr = serve(fake.clone()).await;
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let pulled = pull(
        &store,
        &reference(addr, ":multi"),
        "x:multi",
        &settings(addr),
    )
    .await
    .unwrap();
    assert_eq!(pulled.received, Digest::of(index.as_bytes()));
    assert_eq!(pulled.manifest.digest, img.manifest.to_string());
    let r = store.resolve("x:multi").unwrap();
    assert_eq!(
        std::fs::read(r.layer_dirs[0].join("bin/app")).unwrap(),
        b"amd64"
    );
    assert!(!fake
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|p| p.contains(other.hex())));

    let idx: Index = serde_json::from_str(&index).unwrap();
    assert_eq!(
        pick_platform(&idx).unwrap().digest,
        img.manifest.to_string()
    );
    let only_arm = Index {
        manifests: idx.manifests[..1].to_vec(),
        ..idx
    };
    assert!(pick_platform(&only_arm).is_none());
}

#[tokio::test]
async fn a_wrong_manifest_digest_writes_nothing() {
    let img = image(b"good");
    let bad = image(b"evil");
    let mut routes = routes(&img, "1");
    // The registry answers the digest asked for with other content.
    routes.insert(
        format!("/v2/test/x/manifests/{}", img.manifest),
        ok(OCI_MANIFEST, &bad.blobs[&bad.manifest]),
    );
    let fake = Arc::new(Mutex::new(Fake {
        routes,
        ..Fake::default()
    }));
    let addr = serve(fake.clone()).await;
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let e = pull(
        &store,
        &reference(addr, &format!("@{}", img.manifest)),
        "x:1",
        &settings(addr),
    )
    .await
    .unwrap_err();
    assert!(matches!(e.failure, Failure::ManifestDigest { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "pull {addr}/test/x@{}: manifest: received content hashes to {}",
            img.manifest, bad.manifest
        )),
        "{msg}"
    );
    assert_eq!(contents(&store), (vec![], vec![]));
}

#[tokio::test]
async fn a_tampered_blob_is_refused_and_not_kept() {
    let img = image(b"good");
    let mut routes = routes(&img, "1");
    let manifest: Manifest = serde_json::from_slice(&img.blobs[&img.manifest]).unwrap();
    let layer = manifest.layers[1].digest().unwrap();
    let a = routes
        .get_mut(&format!("/v2/test/x/blobs/{layer}"))
        .unwrap();
    let last = a.body.len() - 1;
    a.body[last] ^= 1;
    let fake = Arc::new(Mutex::new(Fake {
        routes,
        ..Fake::default()
    }));
    let addr = serve(fake).await;
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let e = pull(&store, &reference(addr, ":1"), "x:1", &settings(addr))
        .await
        .unwrap_err();
    assert!(matches!(e.failure, Failure::Blob { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("blob {layer}: blob {layer}: received")),
        "{e}"
    );
    let (blobs, refs) = contents(&store);
    assert!(refs.is_empty(), "{refs:?}");
    assert!(!blobs.contains(&layer.hex().to_string()), "{blobs:?}");
    assert!(!blobs.iter().any(|b| b.starts_with('.')), "{blobs:?}");
}

#[tokio::test]
async fn registry_errors_and_basic_auth() {
    let img = image(b"x");
    let fake = Arc::new(Mutex::new(Fake {
        routes: routes(&img, "1"),
        basic: true,
        ..Fake::default()
    }));
    let addr = serve(fake).await;
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let e = pull(&store, &reference(addr, ":1"), "x:1", &settings(addr))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(&format!(
            "{addr} asks for basic credentials and registries.auth has none for it"
        )),
        "{e}"
    );
    let mut s = settings(addr);
    s.auth.push(Credentials {
        registry: keel_types::Registry::try_from(addr.to_string().as_str()).unwrap(),
        username: "u".into(),
        password: "p".into(),
    });
    pull(&store, &reference(addr, ":1"), "x:1", &s)
        .await
        .unwrap();
    let e = pull(&store, &reference(addr, ":2"), "x:2", &s)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("pull {addr}/test/x:2: GET http://{addr}/v2/test/x/manifests/2: HTTP 404: MANIFEST_UNKNOWN: manifest unknown")
    );
}

#[tokio::test]
async fn plain_http_is_refused_unless_listed() {
    let img = image(b"x");
    let fake = Arc::new(Mutex::new(Fake {
        routes: routes(&img, "1"),
        ..Fake::default()
    }));
    let addr = serve(fake.clone()).await;
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("ca.pem"), rcgen_ca()).unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let mut s = settings(addr);
    s.insecure.clear();
    s.ca_bundle = t.path().join("ca.pem");
    let e = pull(&store, &reference(addr, ":1"), "x:1", &s)
        .await
        .unwrap_err();
    assert!(matches!(e.failure, Failure::PlainHttp { .. }), "{e}");
    assert!(
        e.to_string().contains("list it in registries.insecure"),
        "{e}"
    );
    assert!(fake.lock().unwrap().log.is_empty());
}

fn rcgen_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&key).unwrap().pem()
}

#[test]
fn error_bodies() {
    assert_eq!(
        detail_of(br#"{"errors":[{"code":"DENIED","message":"no"},{"code":"X"}]}"#),
        ": DENIED: no; X"
    );
    assert_eq!(detail_of(b"<html>oops\nmore"), ": <html>oops");
    assert_eq!(detail_of(b""), "");
}
