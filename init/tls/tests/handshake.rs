//! Real handshakes over loopback with the test PKI: client-certificate
//! authentication accepts the CA's clients and refuses the others.

use keel_tls::{ClientFiles, ServerFiles, TlsAcceptor, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn server_files(pki: &keel_tls::testpki::TestPki, client_auth: bool) -> ServerFiles {
    ServerFiles {
        cert: ("cert-file", pki.server_cert.clone()),
        key: ("key-file", pki.server_key.clone()),
        client_ca: client_auth.then(|| ("trusted-ca-file", pki.ca.clone())),
    }
}

fn client(
    pki: &keel_tls::testpki::TestPki,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> ClientFiles {
    ClientFiles {
        ca: ("cacert", pki.ca.clone()),
        identity: cert.map(|(c, k)| (("cert", c.to_path_buf()), ("key", k.to_path_buf()))),
    }
}

/// Serves one connection (echoes 5 bytes) and returns whether the
/// handshake and exchange worked from the client's side.
async fn exchange(server: ServerFiles, client: ClientFiles) -> Result<(), String> {
    let config = keel_tls::client_config(&client).map_err(|e| e.to_string())?;
    exchange_with(server, config).await
}

async fn exchange_with(
    server: ServerFiles,
    config: std::sync::Arc<keel_tls::rustls::ClientConfig>,
) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(keel_tls::server_config(&server).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut t = keel_tls::accept(&acceptor, s)
            .await
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 5];
        t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        t.write_all(&b).await.map_err(|e| e.to_string())?;
        t.shutdown().await.map_err(|e| e.to_string())
    });
    let s = TcpStream::connect(addr).await.unwrap();
    let r = async {
        let mut t = keel_tls::connect(config, keel_tls::server_name("127.0.0.1").unwrap(), s)
            .await
            .map_err(|e| e.to_string())?;
        t.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 5];
        t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        assert_eq!(&b, b"hello");
        Ok::<_, String>(())
    }
    .await;
    let s = srv.await.unwrap();
    r.and(s)
}

#[tokio::test]
async fn client_certificates() {
    let t = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1", "localhost"]).unwrap();
    // No client auth: any client.
    exchange(server_files(&pki, false), client(&pki, None))
        .await
        .unwrap();
    // Client auth: the CA's client is let in.
    exchange(
        server_files(&pki, true),
        client(&pki, Some((&pki.client_cert, &pki.client_key))),
    )
    .await
    .unwrap();
    // No certificate, or one from another CA: refused.
    let e = exchange(server_files(&pki, true), client(&pki, None))
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = exchange(
        server_files(&pki, true),
        client(&pki, Some((&pki.rogue_cert, &pki.rogue_key))),
    )
    .await
    .unwrap_err();
    assert!(!e.is_empty());
}

#[tokio::test]
async fn server_trust_by_bundle_or_pin() {
    use keel_tls::{CertPin, ServerTrust};
    use rustls_pki_types::pem::PemObject;
    let t = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
    let ca_der = rustls_pki_types::CertificateDer::from_pem_file(&pki.ca).unwrap();
    // The server sends its CA along, as a pinned CA must be.
    let mut files = server_files(&pki, false);
    let chain = t.path().join("chain.pem");
    let text = std::fs::read_to_string(&pki.server_cert).unwrap()
        + &std::fs::read_to_string(&pki.ca).unwrap();
    std::fs::write(&chain, text).unwrap();
    files.cert.1 = chain;
    let config = |trust| keel_tls::server_auth_config(&trust).unwrap();
    // Pinned: the handshake completes (the signatures check out).
    let pinned = ServerTrust::Pinned(CertPin::of(&ca_der));
    exchange_with(files.clone(), config(pinned)).await.unwrap();
    // A pin of another certificate: refused.
    let other = ServerTrust::Pinned(CertPin::of(b"another certificate"));
    let e = exchange_with(files.clone(), config(other))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A bundle with the CA: accepted; without it: refused.
    let bundle = ServerTrust::Bundle(("ca-bundle", pki.ca.clone()));
    exchange_with(files.clone(), config(bundle)).await.unwrap();
    let without = ServerTrust::Bundle(("ca-bundle", pki.rogue_cert.clone()));
    let e = exchange_with(files, config(without)).await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn a_plain_http_answer_to_the_handshake_is_named() {
    let t = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
    let config = keel_tls::server_auth_config(&keel_tls::ServerTrust::Bundle((
        "ca-bundle",
        pki.ca.clone(),
    )))
    .unwrap();
    let handshake = |answer: &'static [u8]| {
        let config = config.clone();
        async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let srv = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut hello = [0u8; 5];
                s.read_exact(&mut hello).await.unwrap();
                s.write_all(answer).await.unwrap();
            });
            let s = TcpStream::connect(addr).await.unwrap();
            let name = keel_tls::server_name("127.0.0.1").unwrap();
            let e = keel_tls::connect(config, name, s)
                .await
                .map(|_| ())
                .unwrap_err();
            srv.await.unwrap();
            keel_tls::rustls_error(&e).is_some_and(keel_tls::answered_plain_http)
        }
    };
    assert!(handshake(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await);
    // Control: a TLS alert record (handshake_failure) is TLS, not http.
    assert!(!handshake(&[21, 3, 3, 0, 2, 2, 40]).await);
}

#[tokio::test]
async fn a_server_with_a_name_not_in_its_certificate_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(t.path(), &["10.9.9.9"]).unwrap();
    let e = exchange(server_files(&pki, false), client(&pki, None))
        .await
        .unwrap_err();
    assert!(
        e.contains("NotValidForName") || e.contains("not valid for"),
        "{e}"
    );
}

#[test]
fn a_key_that_does_not_fit_is_named() {
    let t = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
    let mut f = server_files(&pki, false);
    f.key.1 = pki.client_key.clone();
    let e = keel_tls::server_config(&f).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Config {
                setting: "key-file",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("does not fit"), "{e}");
}
