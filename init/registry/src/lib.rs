//! Pulling images from a registry into keel's image store, over the OCI
//! distribution API, without libc's resolver.
//!
//! - [`reference`]: `[REGISTRY[:PORT]/]PATH[:TAG][@DIGEST]` into registry,
//!   repository, tag and digest (docker's rules).
//! - [`auth`]: `WWW-Authenticate` challenges, strictly parsed; credentials.
//! - [`resolve`]: IP literals, `/etc/hosts`, then an A query to the
//!   nameservers of `/etc/resolv.conf`.
//! - [`http`]: one GET over rustls (CA bundle from a path) or, for
//!   registries listed insecure only, plain http; timeouts.
//! - [`pull`]: manifest (through an index to linux/amd64), blobs streamed
//!   into the store verified, then the ref.
//!
//! A crate of its own rather than part of keel-oci: the network stack
//! (tokio, hyper, rustls, ring) would otherwise weigh on keel-oci's pure
//! users (keel-image, the layout tests).

pub mod auth;
pub mod error;
pub mod http;
pub mod pull;
pub mod reference;
pub mod resolve;

pub use auth::{parse_challenge, Challenge, Credentials};
pub use error::{Failure, PullError};
pub use pull::{pull, pull_blocking, Pulled, Settings};
pub use reference::{Reference, ReferenceError};
