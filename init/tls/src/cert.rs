//! What keel reads from a certificate it already verified (or its own): the
//! subject's Organization values (a client's role) and the validity end.
//! Parsing is x509-parser's; nothing here checks signatures.

use rustls_pki_types::CertificateDer;

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

/// The subject and validity of a DER certificate.
pub fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| CertError(e.to_string()))?;
    let subject = cert.subject();
    let text =
        |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_string);
    let common_name = subject.iter_common_name().find_map(text);
    let organizations = subject.iter_organization().filter_map(text).collect();
    let info = CertInfo {
        common_name,
        organizations,
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    };
    Ok(info)
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
