//! A throwaway public key infrastructure for tests: a CA, a server
//! certificate for the given hosts, client certificates with the API's
//! admin role, its read-only role and no role, and a client certificate
//! from a second CA the servers do not trust. And [`serve`]: a server on
//! loopback that answers every request with one body, over TLS or not.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The files [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Subject O=keel:admin.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Subject O=keel:reader.
    pub reader_cert: PathBuf,
    pub reader_key: PathBuf,
    /// Signed by the CA, but with no keel role in its subject.
    pub norole_cert: PathBuf,
    pub norole_key: PathBuf,
    /// Signed by another CA: a server trusting `ca` must refuse it.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let pem = p.self_signed(&key).expect("CA certificate").pem();
    (pem, rcgen::Issuer::new(p, key))
}

fn leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    cn: &str,
    org: Option<&str>,
    hosts: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut p =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    if let Some(o) = org {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, o.to_string());
    }
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

/// Writes the files into `dir`. The server certificate names `hosts` (IP
/// addresses or DNS names) and also serves as a client certificate, as
/// etcd's peer certificates do.
pub fn generate(dir: &Path, hosts: &[&str]) -> std::io::Result<TestPki> {
    let (ca_pem, issuer) = ca("keel test CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut p =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("server params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "keel test server".to_string());
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server = p.signed_by(&key, &issuer).expect("server certificate");
    let client_leaf = |cn: &str, org: Option<&str>| {
        leaf(
            &issuer,
            cn,
            org,
            &[],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    };
    let (client, client_key) = client_leaf("keel test client", Some("keel:admin"));
    let (reader, reader_key) = client_leaf("keel test reader", Some("keel:reader"));
    let (norole, norole_key) = client_leaf("keel test nobody", Some("example"));
    let (_, rogue_issuer) = ca("rogue CA");
    let (rogue, rogue_key) = leaf(
        &rogue_issuer,
        "rogue client",
        Some("keel:admin"),
        &[],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let pki = TestPki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
        reader_cert: dir.join("reader.pem"),
        reader_key: dir.join("reader-key.pem"),
        norole_cert: dir.join("norole.pem"),
        norole_key: dir.join("norole-key.pem"),
        rogue_cert: dir.join("rogue.pem"),
        rogue_key: dir.join("rogue-key.pem"),
    };
    std::fs::write(&pki.ca, ca_pem)?;
    std::fs::write(&pki.server_cert, server.pem())?;
    std::fs::write(&pki.server_key, key.serialize_pem())?;
    std::fs::write(&pki.client_cert, client)?;
    std::fs::write(&pki.client_key, client_key)?;
    std::fs::write(&pki.reader_cert, reader)?;
    std::fs::write(&pki.reader_key, reader_key)?;
    std::fs::write(&pki.norole_cert, norole)?;
    std::fs::write(&pki.norole_key, norole_key)?;
    std::fs::write(&pki.rogue_cert, rogue)?;
    std::fs::write(&pki.rogue_key, rogue_key)?;
    Ok(pki)
}

/// A server on 127.0.0.1 (its own thread and runtime) that answers every
/// request head with `200 OK` and `body`, over TLS when `tls` is given,
/// and a first byte no request starts with (a TLS ClientHello) with `400
/// Bad Request`, as an http server does. Returns its address and the count
/// of connections accepted (handshakes tried).
pub fn serve(
    tls: Option<&crate::ServerFiles>,
    body: String,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor =
        tls.map(|f| crate::TlsAcceptor::from(crate::server_config(f).expect("server files")));
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = l.local_addr().expect("its address");
    l.set_nonblocking(true).expect("non-blocking");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("a tokio listener");
            while let Ok((s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let Ok(mut conn) = crate::Conn::accept(acceptor.as_ref(), s).await else {
                    continue;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.ends_with(b"\r\n\r\n") && req.first().is_none_or(u8::is_ascii_uppercase)
                {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = if req.ends_with(b"\r\n\r\n") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .into()
                };
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
    });
    (addr, count)
}
