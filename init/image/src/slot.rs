//! Assembling a slot: root image, dm-verity hash area, kernel, initramfs,
//! signed footer (the layout of [`keel_slot::layout`]).
//!
//! 1. Pad the root image to whole 4 KiB blocks.
//! 2. Salt: BLAKE3 of a label and the padded root, so the same root gives
//!    the same bytes (reproducible) and different roots get different salts.
//! 3. Hash tree and superblock ([`keel_slot::verity`]) right after the root.
//! 4. Kernel and initramfs, each 4 KiB aligned, with their BLAKE3 digests.
//! 5. BLAKE3 of everything so far: the content digest.
//! 6. The manifest, signed, in the footer at the end of the slot: right
//!    after the content, or at the end of `size` bytes when the slot must
//!    fill a partition.

use ed25519_dalek::SigningKey;
use keel_slot::layout::{align, FOOTER_SIZE};
use keel_slot::manifest::{self, Extent, Manifest, Part, Verity};
use keel_slot::{hex, verity};

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("slot content is {content} bytes; with the footer it does not fit in {size} bytes")]
    TooBig { content: u64, size: u64 },
    #[error(transparent)]
    Verity(#[from] verity::VerityError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

/// What the manifest says about the build.
#[derive(Debug, Clone)]
pub struct Meta {
    pub version: String,
    pub channel: String,
    pub build_id: String,
}

/// Build a slot. Returns its bytes (content, zeros, footer) and the manifest.
pub fn assemble(
    root: &[u8],
    kernel: Option<&[u8]>,
    initramfs: Option<&[u8]>,
    meta: &Meta,
    key: &SigningKey,
    size: Option<u64>,
) -> Result<(Vec<u8>, Manifest), SlotError> {
    let mut out = root.to_vec();
    out.resize(align(out.len() as u64) as usize, 0);
    let root_size = out.len() as u64;
    let mut salt_h = blake3::Hasher::new();
    salt_h.update(b"keel-verity-salt\n");
    salt_h.update(&out);
    let salt = salt_h.finalize().as_bytes().to_vec();
    let tree = verity::Tree::build(&out, &salt)?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&tree.root[..16]);
    let hash_area = tree.hash_area(uuid);
    out.extend_from_slice(&hash_area);
    let part = |bytes: Option<&[u8]>, out: &mut Vec<u8>| {
        bytes.map(|b| {
            let offset = align(out.len() as u64);
            out.resize(offset as usize, 0);
            out.extend_from_slice(b);
            Part {
                offset,
                size: b.len() as u64,
                blake3: hex::encode(blake3::hash(b).as_bytes()),
            }
        })
    };
    let kernel = part(kernel, &mut out);
    let initramfs = part(initramfs, &mut out);
    out.resize(align(out.len() as u64) as usize, 0);
    let content = Part {
        offset: 0,
        size: out.len() as u64,
        blake3: hex::encode(blake3::hash(&out).as_bytes()),
    };
    let m = Manifest {
        format: 1,
        name: "keel".into(),
        version: meta.version.clone(),
        channel: meta.channel.clone(),
        build_id: meta.build_id.clone(),
        fs: "erofs".into(),
        root: Extent {
            offset: 0,
            size: root_size,
        },
        verity: Verity {
            algorithm: "sha256".into(),
            data_blocks: tree.data_blocks,
            hash: Extent {
                offset: root_size,
                size: hash_area.len() as u64,
            },
            root_hash: hex::encode(&tree.root),
            salt: hex::encode(&salt),
        },
        kernel,
        initramfs,
        content,
    };
    let footer = manifest::seal(&m, key)?;
    let total = size.unwrap_or(out.len() as u64 + FOOTER_SIZE);
    if out.len() as u64 + FOOTER_SIZE > total {
        return Err(SlotError::TooBig {
            content: out.len() as u64,
            size: total,
        });
    }
    out.resize((total - FOOTER_SIZE) as usize, 0);
    out.extend_from_slice(&footer);
    Ok((out, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_slot::manifest::TrustedKey;

    fn meta() -> Meta {
        Meta {
            version: "0.1.0".into(),
            channel: "dev".into(),
            build_id: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn assembled_slot_opens_and_checks() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let root = vec![0x42u8; 3 * 4096 + 100];
        let (slot, m) = assemble(
            &root,
            Some(b"kernel"),
            Some(b"initrd"),
            &meta(),
            &key,
            Some(1 << 20),
        )
        .unwrap();
        assert_eq!(slot.len(), 1 << 20);
        let footer = &slot[slot.len() - FOOTER_SIZE as usize..];
        let v = manifest::open(footer, &[TrustedKey::new(key.verifying_key())]).unwrap();
        assert_eq!(v.manifest, m);
        assert_eq!(m.root.size, 4 * 4096);
        let c = &slot[..m.content.size as usize];
        assert_eq!(hex::encode(blake3::hash(c).as_bytes()), m.content.blake3);
        let k = m.kernel.as_ref().unwrap();
        assert_eq!(
            &slot[k.offset as usize..(k.offset + k.size) as usize],
            b"kernel"
        );
        // Same inputs, same bytes.
        let (again, _) = assemble(
            &root,
            Some(b"kernel"),
            Some(b"initrd"),
            &meta(),
            &key,
            Some(1 << 20),
        )
        .unwrap();
        assert_eq!(slot, again);
    }

    #[test]
    fn too_small_a_partition_is_an_error() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let err = assemble(&[1; 4096], None, None, &meta(), &key, Some(64 * 1024)).unwrap_err();
        assert!(matches!(err, SlotError::TooBig { .. }), "{err}");
    }
}
