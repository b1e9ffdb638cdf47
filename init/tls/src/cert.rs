//! What keel reads from a certificate it already verified (or its own): the
//! subject's Common Name and Organization values (a client's role) and the
//! validity. Parsing is RustCrypto's `x509-cert` (on the `der` crate);
//! nothing here checks signatures.

use rustls_pki_types::CertificateDer;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Any, Decode, Tag, Tagged};

/// The fields keel uses of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's Common Name, if any.
    pub common_name: Option<String>,
    /// Every Organization (O=) value of the subject, in order.
    pub organizations: Vec<String>,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: i64,
}

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
#[error("read certificate: {0}")]
pub struct CertError(String);

/// commonName (2.5.4.3) and organizationName (2.5.4.10).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");

/// An attribute value as text: the string types whose content is UTF-8 (or
/// a subset of it); others (BMPString, UniversalString) read as none.
fn text(v: &Any) -> Option<String> {
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::TeletexString => std::str::from_utf8(v.value()).ok().map(str::to_string),
        _ => None,
    }
}

/// A validity bound, seconds since the Unix epoch (x509-cert's times start
/// there; a certificate valid before 1970 is not one keel issues or reads).
fn secs(t: &x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// The subject and validity of a DER certificate.
pub fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let cert =
        x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| CertError(e.to_string()))?;
    let tbs = &cert.tbs_certificate;
    let mut common_name = None;
    let mut organizations = Vec::new();
    for atv in tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
        if atv.oid == COMMON_NAME && common_name.is_none() {
            common_name = text(&atv.value);
        } else if atv.oid == ORGANIZATION {
            organizations.extend(text(&atv.value));
        }
    }
    Ok(CertInfo {
        common_name,
        organizations,
        not_after: secs(&tbs.validity.not_after),
        not_before: secs(&tbs.validity.not_before),
    })
}

/// [`inspect`] of the first certificate of a PEM file (a server's own
/// chain: its leaf).
pub fn inspect_file(
    setting: &'static str,
    path: &std::path::Path,
) -> Result<CertInfo, crate::TlsError> {
    let certs = crate::load_certs(setting, path)?;
    inspect(&certs[0]).map_err(|e| crate::TlsError::Pem {
        setting,
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    /// What x509-parser (the reader before) makes of the same certificate.
    fn reference(der: &[u8]) -> CertInfo {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let subject = cert.subject();
        let text =
            |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_string);
        let info = CertInfo {
            common_name: subject.iter_common_name().find_map(text),
            organizations: subject.iter_organization().filter_map(text).collect(),
            not_after: cert.validity().not_after.timestamp(),
            not_before: cert.validity().not_before.timestamp(),
        };
        info
    }

    fn cert(dn: &[(DnType, DnValue)], before: (i32, u8, u8), after: (i32, u8, u8)) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["node.example".into()]).unwrap();
        let mut name = DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), v.clone());
        }
        p.distinguished_name = name;
        p.not_before = rcgen::date_time_ymd(before.0, before.1, before.2);
        p.not_after = rcgen::date_time_ymd(after.0, after.1, after.2);
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_what_x509_parser_reads() {
        let utf8 = |s: &str| DnValue::Utf8String(s.into());
        let cases: Vec<Vec<u8>> = vec![
            // UTCTime both ends (before 2050), one O.
            cert(
                &[
                    (DnType::CommonName, utf8("admin")),
                    (DnType::OrganizationName, utf8("keel:admin")),
                ],
                (2026, 1, 2),
                (2036, 12, 31),
            ),
            // GeneralizedTime after 2049, several O values, 19xx start.
            cert(
                &[
                    (DnType::OrganizationName, utf8("keel:reader")),
                    (
                        DnType::CommonName,
                        DnValue::PrintableString("ops-1".try_into().unwrap()),
                    ),
                    (
                        DnType::OrganizationName,
                        DnValue::Ia5String("keel:admin".try_into().unwrap()),
                    ),
                ],
                (1999, 6, 30),
                (2051, 1, 1),
            ),
            // A BMPString O (not UTF-8: read as none by both) and no CN.
            cert(
                &[
                    (
                        DnType::OrganizationName,
                        DnValue::BmpString("keel:admin".try_into().unwrap()),
                    ),
                    (DnType::OrganizationName, utf8("ünïcode")),
                ],
                (2026, 12, 7),
                (2027, 12, 7),
            ),
        ];
        for der in &cases {
            let got = inspect(&CertificateDer::from(der.clone())).unwrap();
            assert_eq!(got, reference(der));
        }
        let first = inspect(&CertificateDer::from(cases[0].clone())).unwrap();
        assert_eq!(first.common_name.as_deref(), Some("admin"));
        assert_eq!(first.organizations, ["keel:admin"]);
        // 2036-12-31T00:00:00Z
        assert_eq!(first.not_after, 2_114_294_400);
        let third = inspect(&CertificateDer::from(cases[2].clone())).unwrap();
        assert_eq!(third.organizations, ["ünïcode"]);
        assert_eq!(third.common_name, None);
    }

    #[test]
    fn what_is_not_a_certificate_is_an_error() {
        let der = cert(&[], (2026, 1, 1), (2027, 1, 1));
        for bad in [&der[..der.len() - 1], &der[1..], &b"not DER"[..], &[][..]] {
            let e = inspect(&CertificateDer::from(bad.to_vec())).unwrap_err();
            assert!(e.to_string().starts_with("read certificate: "), "{e}");
        }
    }
}
