//! A throwaway public key infrastructure for tests: a CA, a server
//! certificate for the given hosts, a client certificate, and a client
//! certificate from a second CA the servers do not trust.

use std::path::{Path, PathBuf};

/// The files [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
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
    hosts: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut p =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
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
    let (client, client_key) = leaf(
        &issuer,
        "keel test client",
        &[],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (_, rogue_issuer) = ca("rogue CA");
    let (rogue, rogue_key) = leaf(
        &rogue_issuer,
        "rogue client",
        &[],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let pki = TestPki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
        rogue_cert: dir.join("rogue.pem"),
        rogue_key: dir.join("rogue-key.pem"),
    };
    std::fs::write(&pki.ca, ca_pem)?;
    std::fs::write(&pki.server_cert, server.pem())?;
    std::fs::write(&pki.server_key, key.serialize_pem())?;
    std::fs::write(&pki.client_cert, client)?;
    std::fs::write(&pki.client_key, client_key)?;
    std::fs::write(&pki.rogue_cert, rogue)?;
    std::fs::write(&pki.rogue_key, rogue_key)?;
    Ok(pki)
}
