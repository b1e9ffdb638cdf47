//! Issuing keel's certificates (for `keelctl gen`): a CA, server
//! certificates that name the addresses clients use, and client
//! certificates whose subject Organization carries a role. Keys are ECDSA
//! P-256 (rcgen over ring). Never linked into PID 1.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Why a certificate could not be issued or a CA not loaded.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("generate a key for {what}: {source}")]
    Key { what: String, source: rcgen::Error },
    #[error("issue the certificate of {what}: {source}")]
    Sign { what: String, source: rcgen::Error },
    #[error("load the CA: {what}: {source}")]
    LoadCa {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("{host:?} is not an IP address or DNS name a certificate can name")]
    Host { host: String },
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that can sign.
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// How long certificates are valid from now; they start a minute ago so a
/// node whose clock is slightly behind accepts them.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(60);
    p.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
}

fn key(what: &str) -> Result<KeyPair, IssueError> {
    KeyPair::generate().map_err(|source| IssueError::Key {
        what: what.into(),
        source,
    })
}

impl Ca {
    /// A new self-signed CA named `name`, valid `days`.
    pub fn generate(name: &str, days: u32) -> Result<Ca, IssueError> {
        let what = format!("CA {name:?}");
        let key = key(&what)?;
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p, days);
        let cert = p
            .self_signed(&key)
            .map_err(|source| IssueError::Sign { what, source })?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(p, key),
        })
    }

    /// An existing CA from its PEM certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, IssueError> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| IssueError::LoadCa {
            what: "its key",
            source,
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|source| IssueError::LoadCa {
                what: "its certificate",
                source,
            })?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    fn leaf(
        &self,
        what: String,
        mut p: CertificateParams,
        days: u32,
    ) -> Result<Issued, IssueError> {
        let key = key(&what)?;
        validity(&mut p, days);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|source| IssueError::Sign { what, source })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for `hosts` (IP addresses or DNS names, the
    /// names clients connect to). With `client_too` it also authenticates
    /// as a client (what an etcd peer certificate does).
    pub fn server(
        &self,
        cn: &str,
        hosts: &[String],
        client_too: bool,
        days: u32,
    ) -> Result<Issued, IssueError> {
        for h in hosts {
            if h.parse::<std::net::IpAddr>().is_err() && crate::server_name(h).is_err() {
                return Err(IssueError::Host { host: h.clone() });
            }
        }
        let mut p = CertificateParams::new(hosts.to_vec()).map_err(|source| IssueError::Sign {
            what: format!("server {cn:?}"),
            source,
        })?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if client_too {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        self.leaf(format!("server {cn:?}"), p, days)
    }

    /// A client certificate named `cn`, with `organization` (a role) as its
    /// subject's O= when given.
    pub fn client(
        &self,
        cn: &str,
        organization: Option<&str>,
        days: u32,
    ) -> Result<Issued, IssueError> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = organization {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(format!("client {cn:?}"), p, days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn issued_certificates_carry_role_names_and_validity() {
        let ca = Ca::generate("keel test CA", 3650).unwrap();
        let admin = ca.client("alice", Some("keel:admin"), 30).unwrap();
        let info = crate::cert::inspect(&der(&admin.cert_pem)).unwrap();
        assert_eq!(info.organizations, ["keel:admin"]);
        assert_eq!(info.common_name.as_deref(), Some("alice"));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((info.not_after - now - 30 * 86_400).abs() < 120, "{info:?}");
        assert!(info.not_before <= now);

        // A CA loaded back from its files signs certificates that chain to
        // the same root.
        let again = Ca::load(&ca.cert_pem, &ca.key_pem).unwrap();
        let srv = again
            .server("n1", &["10.0.0.1".into(), "node-1".into()], false, 10)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = crate::server_name("10.0.0.1").unwrap();
        verifier
            .verify_server_cert(
                &der(&srv.cert_pem),
                &[],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
        let other = crate::server_name("10.0.0.2").unwrap();
        assert!(verifier
            .verify_server_cert(
                &der(&srv.cert_pem),
                &[],
                &other,
                &[],
                rustls_pki_types::UnixTime::now()
            )
            .is_err());

        assert!(matches!(
            ca.server("n", &["bad name".into()], false, 1),
            Err(IssueError::Host { .. })
        ));
        assert!(Ca::load("junk", &ca.key_pem).is_err());
    }
}
