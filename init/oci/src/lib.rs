//! OCI images for keel: read image layouts, verify every blob, unpack layers
//! safely, and keep images in a content-addressed store.
//!
//! - [`digest`]: `sha256:` digests, strictly parsed (they become file names).
//! - [`manifest`]: index, manifest and config documents (OCI and Docker
//!   schema 2 media types), size-limited and checked field by field.
//! - [`layout`]: an OCI layout directory: resolve a reference to a manifest
//!   and config; every blob's size and sha256 checked before use.
//! - [`extract`]: layers unpacked without following symlinks or leaving the
//!   destination; whiteouts applied or kept as overlayfs markers.
//! - [`store`]: `blobs/`, `images/`, `layers/` under one root; import,
//!   resolve (extracting layers once), list, remove, gc.
//! - [`writer`]: reproducible layouts from in-memory entries (keel-image,
//!   tests).

pub mod digest;
pub mod extract;
pub mod layout;
pub mod manifest;
pub mod once;
pub mod store;
pub mod writer;

pub use digest::{Digest, DigestError};
pub use extract::{apply_layers, extract_layer, ExtractError, Limits, Refusal, Stats, Whiteouts};
pub use layout::{resolve, Image, LayoutError};
pub use manifest::{ContainerConfig, Descriptor, ImageConfig, Manifest, Platform};
pub use store::{GcReport, ResolvedImage, Store, StoreError, Unpacked};
pub use writer::{layer_tar, write_layout, EntryKind, ImageSpec, Layer, LayerEntry, WriteError};

#[cfg(test)]
pub(crate) mod testutil;
