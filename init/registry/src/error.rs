//! What a pull fails with: the image (registry, repository, reference) and
//! the step that failed, with its own context.

use std::io;

use keel_oci::manifest::DocError;
use keel_oci::{Digest, StoreError};

use crate::auth::ChallengeError;
use crate::resolve::ResolveError;

/// A failed pull: `pull REGISTRY/REPOSITORY:TAG: what failed`.
#[derive(Debug, thiserror::Error)]
#[error("pull {image}: {failure}")]
pub struct PullError {
    /// The reference as `registry/repository[:tag][@digest]`.
    pub image: String,
    pub failure: Failure,
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("refusing plain http to {authority} ({url}): it is not listed in registries.insecure")]
    Insecure { authority: String, url: String },
    #[error("{authority} answered the TLS handshake in plain http: list it in registries.insecure to pull from it without TLS")]
    PlainHttp { authority: String },
    /// The CA bundle cannot be read or holds no usable certificate (the
    /// error names the file).
    #[error(transparent)]
    CaBundle(keel_tls::TlsError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("connect to {authority} ({addrs}): {source}")]
    Connect {
        authority: String,
        addrs: String,
        source: io::Error,
    },
    #[error("TLS handshake with {authority}: {source}")]
    Tls {
        authority: String,
        source: io::Error,
    },
    #[error("{what}: no progress in {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("GET {url}: {source}")]
    Http { url: String, source: hyper::Error },
    #[error("GET {url}: HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        /// `: CODE: message` from the registry's error body, if any.
        detail: String,
    },
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    #[error("{authority} asks for basic credentials and registries.auth has none for it")]
    NoCredentials { authority: String },
    #[error("GET {url}: still unauthorized after authenticating{detail}")]
    Unauthorized { url: String, detail: String },
    #[error("token from {realm}: {problem}")]
    Token { realm: String, problem: String },
    #[error("GET {url}: redirect: {problem}")]
    Redirect { url: String, problem: String },
    #[error("{what}: larger than the {limit} bytes allowed")]
    TooLarge { what: String, limit: u64 },
    #[error("manifest: received content hashes to {found}, not the {expected} asked for")]
    ManifestDigest { expected: Digest, found: Digest },
    #[error("manifest: Docker-Content-Digest says {header} but the content hashes to {found}")]
    HeaderDigest { header: String, found: Digest },
    #[error(
        "{what} {expected}: received {found} ({size} bytes), descriptor says {expected_size} bytes"
    )]
    Descriptor {
        what: &'static str,
        expected: Digest,
        found: Digest,
        size: u64,
        expected_size: u64,
    },
    #[error(transparent)]
    Document(#[from] DocError),
    #[error("descriptor: {0}")]
    Digest(#[from] keel_oci::DigestError),
    #[error("{digest}: media type {media_type:?} is neither an index nor an image manifest")]
    NotManifest { digest: Digest, media_type: String },
    #[error("index {digest}: no manifest for linux/amd64")]
    NoPlatform { digest: Digest },
    #[error("indexes nested more than {0} deep")]
    Nesting(usize),
    // Boxed: store errors are large, and every Result of the pull carries
    // this enum.
    #[error("blob {digest}: {source}")]
    Blob {
        digest: Digest,
        source: Box<StoreError>,
    },
    #[error("store the image as {name}: {source}")]
    Store {
        name: String,
        source: Box<StoreError>,
    },
    #[error("the pull task failed: {0}")]
    Task(String),
}
