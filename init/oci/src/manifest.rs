//! The JSON documents of an image: index, manifest, config.
//!
//! Parsing is in two steps: serde reads the shape (unknown fields ignored, as
//! the spec asks), then [`Index::check`]/[`Manifest::check`] validate what
//! serde cannot: media types and digests, each error naming the document and
//! the field (`layers[2].digest`). Docker's schema 2 media types are accepted
//! next to OCI's because registries and `docker save` still produce them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// JSON documents (index, manifest, config) larger than this are refused:
/// they are read whole into memory, and real ones are a few KiB.
pub const MAX_JSON: u64 = 4 * 1024 * 1024;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The annotation an index entry's reference name is in.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type says, or `None` for a type that is
    /// not a layer keel can unpack.
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER_TAR | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Some(Compression::None)
            }
            OCI_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("{document}: {message}")]
    Json { document: String, message: String },
    #[error("{document}: {field}: {problem}")]
    Field {
        document: String,
        field: String,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform keel runs on.
    pub fn linux_amd64() -> Platform {
        Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        }
    }

    /// Whether index entry `d` is for this platform (any variant when this
    /// names none).
    pub fn matches(&self, d: &Descriptor) -> bool {
        d.platform.as_ref().is_some_and(|q| {
            q.os == self.os
                && q.architecture == self.architecture
                && (self.variant.is_none() || q.variant == self.variant)
        })
    }
}

/// A reference to a blob: its type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    /// Checked by the document's `check`; use [`Descriptor::digest`].
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The parsed digest. Documents are checked when read, so this only fails
    /// on a descriptor built by hand.
    pub fn digest(&self) -> Result<Digest, crate::digest::DigestError> {
        Digest::parse(&self.digest)
    }

    fn check(&self, document: &str, field: &str) -> Result<(), DocError> {
        Digest::parse(&self.digest).map_err(|e| DocError::Field {
            document: document.to_string(),
            field: format!("{field}.digest"),
            problem: e.to_string(),
        })?;
        Ok(())
    }

    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a container runs: the `config` object of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// The image config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

/// Parse a JSON document; `document` names it in errors. serde_json's
/// messages say what was wrong and where (line, column), not the field path,
/// so the document's name carries the rest.
pub fn parse<T: for<'de> Deserialize<'de>>(document: &str, bytes: &[u8]) -> Result<T, DocError> {
    serde_json::from_slice(bytes).map_err(|e| DocError::Json {
        document: document.to_string(),
        message: e.to_string(),
    })
}

fn field_err(document: &str, field: &str, problem: String) -> DocError {
    DocError::Field {
        document: document.to_string(),
        field: field.to_string(),
        problem,
    }
}

/// The header both documents share: `schemaVersion` 2, and a `mediaType`
/// (when given) that `kind_ok` accepts.
fn check_header(
    document: &str,
    schema_version: u32,
    media_type: Option<&String>,
    kind_ok: fn(&str) -> bool,
    kind: &str,
) -> Result<(), DocError> {
    if schema_version != 2 {
        return Err(field_err(
            document,
            "schemaVersion",
            format!("{schema_version} is not 2"),
        ));
    }
    match media_type {
        Some(t) if !kind_ok(t) => Err(field_err(
            document,
            "mediaType",
            format!("{t:?} is not {kind}"),
        )),
        _ => Ok(()),
    }
}

impl Index {
    pub fn check(&self, document: &str) -> Result<(), DocError> {
        check_header(
            document,
            self.schema_version,
            self.media_type.as_ref(),
            is_index,
            "an index",
        )?;
        for (i, d) in self.manifests.iter().enumerate() {
            d.check(document, &format!("manifests[{i}]"))?;
        }
        Ok(())
    }
}

impl Manifest {
    pub fn check(&self, document: &str) -> Result<(), DocError> {
        check_header(
            document,
            self.schema_version,
            self.media_type.as_ref(),
            is_manifest,
            "an image manifest",
        )?;
        self.config.check(document, "config")?;
        if self.config.media_type != OCI_CONFIG && self.config.media_type != DOCKER_CONFIG {
            return Err(field_err(
                document,
                "config.mediaType",
                format!("{:?} is not an image config", self.config.media_type),
            ));
        }
        for (i, d) in self.layers.iter().enumerate() {
            d.check(document, &format!("layers[{i}]"))?;
            if Compression::of_layer(&d.media_type).is_none() {
                return Err(field_err(
                    document,
                    &format!("layers[{i}].mediaType"),
                    format!("{:?} is not a layer type keel unpacks", d.media_type),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest_json(layer_digest: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{D}","size":0}},
            "layers":[{{"mediaType":"{layer_type}","digest":"{layer_digest}","size":0}}]}}"#
        )
    }

    #[test]
    fn docker_schema2_manifest_is_accepted() {
        let m: Manifest =
            parse("manifest", manifest_json(D, DOCKER_LAYER_GZIP).as_bytes()).unwrap();
        m.check("manifest").unwrap();
        assert_eq!(
            Compression::of_layer(&m.layers[0].media_type),
            Some(Compression::Gzip)
        );
    }

    #[test]
    fn errors_name_document_and_field() {
        let m: Manifest = parse(
            "manifest sha256:x",
            manifest_json("md5:00", OCI_LAYER_TAR).as_bytes(),
        )
        .unwrap();
        let e = m.check("manifest sha256:x").unwrap_err().to_string();
        assert!(
            e.starts_with("manifest sha256:x: layers[0].digest: "),
            "{e}"
        );

        let m: Manifest = parse("m", manifest_json(D, "text/plain").as_bytes()).unwrap();
        let e = m.check("m").unwrap_err().to_string();
        assert!(e.contains("layers[0].mediaType"), "{e}");

        let e = parse::<Manifest>("index.json", br#"{"schemaVersion":"two"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("index.json: invalid type"), "{e}");
    }

    #[test]
    fn config_reads_docker_field_names_and_nulls() {
        let c: ImageConfig = parse(
            "config",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Entrypoint":["/bin/sh"],"Cmd":null,"Env":["A=1"],"WorkingDir":"/w",
            "User":"65534","ExposedPorts":{"80/tcp":{}},"Labels":{"a":"b"},"Extra":1}}"#,
        )
        .unwrap();
        let cc = c.config.unwrap();
        assert_eq!(cc.entrypoint.unwrap(), ["/bin/sh"]);
        assert_eq!(cc.cmd, None);
        assert_eq!(cc.working_dir.as_deref(), Some("/w"));
        assert!(cc.exposed_ports.unwrap().contains_key("80/tcp"));
    }
}
