//! Whom a client without an identity of its own trusts to be the server:
//! every CA of a PEM bundle (the system's), or one certificate pinned by
//! its SHA-256.
//!
//! A pin ([`PinnedVerifier`]) works in three steps, with no X.509 parsing
//! or cryptography of its own:
//! 1. Find the pinned certificate among what the server presented (its
//!    end-entity certificate, then the intermediates) by the SHA-256 of
//!    each certificate's DER (ring's digest). None matches: refused as
//!    `UnknownIssuer`, nothing else is looked at.
//! 2. Make that certificate the only trust anchor of a `RootCertStore`.
//! 3. Hand the chain to rustls's `WebPkiServerVerifier` over that store:
//!    signatures, validity dates, key usage and the server name (an IP
//!    address must be in the certificate's subjectAltName) are checked as
//!    for any other root. The handshake signatures are checked by rustls's
//!    standard functions.
//!
//! So the pin names a CA certificate (the server presents a certificate it
//! signed, and usually the CA too) or a self-signed server certificate; a
//! pinned leaf that some other CA signed does not verify, since its issuer
//! is not the anchor.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{provider, read, Setting, TlsError};

/// The SHA-256 of a certificate's DER, written `sha256:` and 64 hex digits
/// (what `openssl x509 -outform der | sha256sum` prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin([u8; 32]);

impl CertPin {
    /// The pin of a certificate.
    pub fn of(der: &[u8]) -> CertPin {
        let d = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        CertPin(out)
    }

    /// `sha256:` and 64 hex digits, either case; None for anything else.
    pub fn parse(s: &str) -> Option<CertPin> {
        let hex = s.strip_prefix("sha256:")?.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16);
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(hex.chunks(2)) {
            *o = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(CertPin(out))
    }

    pub fn matches(&self, der: &[u8]) -> bool {
        CertPin::of(der) == *self
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPin({self})")
    }
}

/// A server verifier whose only trust anchor is the pinned certificate,
/// taken from the chain the server presents (steps 1-3 above).
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: CertPin,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(pin: CertPin) -> PinnedVerifier {
        PinnedVerifier {
            pin,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Step 1.
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|c| self.pin.matches(c))
            .ok_or(CertificateError::UnknownIssuer)?;
        // Step 2: a certificate webpki cannot take as an anchor is refused
        // like any malformed certificate.
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        // Step 3.
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("pinned certificate: {e}")))?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whom a client that presents no certificate trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// The CAs of a PEM bundle such as `/etc/ssl/certs/ca-certificates.crt`.
    Bundle(Setting),
    /// Only the certificate with this SHA-256.
    Pinned(CertPin),
}

impl fmt::Display for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerTrust::Bundle((_, path)) => write!(f, "the CA bundle {}", path.display()),
            ServerTrust::Pinned(pin) => write!(f, "only the pinned certificate {pin}"),
        }
    }
}

/// The CAs of a PEM bundle as trust roots. A system bundle may hold a
/// certificate webpki cannot use as an anchor, or a damaged PEM block: it
/// is skipped, as other TLS stacks do; a bundle with none usable is an
/// error that says why each was not.
pub fn load_bundle(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read(setting, path)?;
    let mut roots = RootCertStore::empty();
    let mut problems = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert.map(|c| roots.add(c)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(e.to_string()),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            setting,
            path: path.to_path_buf(),
            why: if problems.is_empty() {
                "no PEM certificate in it".into()
            } else {
                format!("no usable CA certificate in it ({})", problems.join("; "))
            },
        });
    }
    Ok(roots)
}

/// A client config that authenticates the server by `trust` and presents
/// no certificate of its own (ring provider, ALPN `http/1.1`).
pub fn server_auth_config(trust: &ServerTrust) -> Result<Arc<ClientConfig>, TlsError> {
    let setting = match trust {
        ServerTrust::Bundle((setting, _)) => setting,
        ServerTrust::Pinned(_) => "pinned certificate",
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            setting,
            why: e.to_string(),
        })?;
    let mut config = match trust {
        ServerTrust::Bundle((setting, path)) => builder
            .with_root_certificates(load_bundle(setting, path)?)
            .with_no_client_auth(),
        ServerTrust::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(*pin)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The rustls error behind a failed handshake, if rustls failed it.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether a handshake failed because the server's first bytes were not a
/// TLS record: what a plain http server's answer (`HTTP/1.1 400`) gives.
pub fn answered_plain_http(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::Ca;

    const IP: &str = "10.0.2.2";

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn verify(pin: CertPin, chain: &[CertificateDer<'static>], ip: &str) -> Result<(), String> {
        let name = ServerName::try_from(ip.to_string()).unwrap();
        PinnedVerifier::new(pin)
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pins_parse_and_print() {
        let hex = "00ff".repeat(16);
        let p = CertPin::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(p.to_string(), format!("sha256:{hex}"));
        assert_eq!(
            CertPin::parse(&format!("sha256:{}", hex.to_uppercase())),
            Some(p)
        );
        for bad in [
            hex.clone(),
            format!("sha1:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}g", &hex[1..]),
            format!("sha256:+{}", &hex[1..]),
            "sha256:".into(),
        ] {
            assert_eq!(CertPin::parse(&bad), None, "{bad}");
        }
        // The digest is SHA-256 (FIPS 180-2 test vector).
        assert_eq!(
            CertPin::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_server_chained_to_the_pinned_ca_is_accepted_others_refused() {
        let ca = Ca::generate("config CA", 1).unwrap();
        let other = Ca::generate("another CA", 1).unwrap();
        let server = ca.server("config", &[IP.into()], false, 1).unwrap();
        let leaf = der(&server.cert_pem);
        let pin = CertPin::of(&der(&ca.cert_pem));
        // The CA in the chain, or not sent at all: found only when sent.
        verify(pin, &[leaf.clone(), der(&ca.cert_pem)], IP).unwrap();
        let e = verify(pin, std::slice::from_ref(&leaf), IP).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        // A pin of another CA: refused, even with the CA sent along.
        let e = verify(
            CertPin::of(&der(&other.cert_pem)),
            &[leaf.clone(), der(&ca.cert_pem)],
            IP,
        )
        .unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        // A rogue CA of the same name whose server sends the pinned CA
        // along: found, but the leaf's signature is not the anchor's.
        let rogue_ca = Ca::generate("config CA", 1).unwrap();
        let rogue = rogue_ca.server("config", &[IP.into()], false, 1).unwrap();
        let e = verify(pin, &[der(&rogue.cert_pem), der(&ca.cert_pem)], IP).unwrap_err();
        assert!(e.contains("BadSignature"), "{e}");
        // The pinned CA, but the certificate does not name the address.
        let elsewhere = ca.server("config", &["10.0.2.3".into()], false, 1).unwrap();
        let e = verify(pin, &[der(&elsewhere.cert_pem), der(&ca.cert_pem)], IP).unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
        // Its control: the same certificate at the address it names.
        verify(
            pin,
            &[der(&elsewhere.cert_pem), der(&ca.cert_pem)],
            "10.0.2.3",
        )
        .unwrap();
    }

    #[test]
    fn a_pinned_self_signed_server_certificate_is_its_own_anchor() {
        let own = rcgen::generate_simple_self_signed(vec![IP.to_string()]).unwrap();
        let cert = own.cert.der().clone();
        verify(CertPin::of(&cert), std::slice::from_ref(&cert), IP).unwrap();
        // Another self-signed certificate for the same address: refused.
        let twin = rcgen::generate_simple_self_signed(vec![IP.to_string()]).unwrap();
        let e = verify(
            CertPin::of(twin.cert.der()),
            std::slice::from_ref(&cert),
            IP,
        )
        .unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        // The right pin, the wrong address.
        let e = verify(CertPin::of(&cert), std::slice::from_ref(&cert), "10.0.2.3").unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
    }

    #[test]
    fn bundles_skip_unusable_certificates_and_need_one_usable() {
        let t = tempfile::tempdir().unwrap();
        let ca = Ca::generate("bundle CA", 1).unwrap();
        let p = t.path().join("bundle.crt");
        // A certificate webpki cannot read next to a good one.
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&p, format!("{junk}{}", ca.cert_pem)).unwrap();
        assert_eq!(load_bundle("ca-bundle", &p).unwrap().len(), 1);
        std::fs::write(&p, junk).unwrap();
        let e = load_bundle("ca-bundle", &p).unwrap_err().to_string();
        assert!(
            e.starts_with("ca-bundle ") && e.contains("no usable"),
            "{e}"
        );
        // A damaged PEM block is skipped too.
        let damaged = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        std::fs::write(&p, format!("{damaged}{}", ca.cert_pem)).unwrap();
        assert_eq!(load_bundle("ca-bundle", &p).unwrap().len(), 1);
        std::fs::write(&p, "no certificates here").unwrap();
        let e = load_bundle("ca-bundle", &p).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = load_bundle("ca-bundle", &t.path().join("none")).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
    }

    /// The bundle the root image ships (the build host's, see the
    /// Makefile's CA_BUNDLE) fits the size limit and gives its roots.
    #[test]
    fn the_system_bundle_loads() {
        let path = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if !path.exists() {
            keel_testkit::skip::skip(format!(
                "{} is missing (package ca-certificates)",
                path.display()
            ));
            return;
        }
        let roots = load_bundle("CA bundle", path).unwrap();
        assert!(roots.len() > 50, "{} roots", roots.len());
        server_auth_config(&ServerTrust::Bundle(("CA bundle", path.to_path_buf()))).unwrap();
    }
}
