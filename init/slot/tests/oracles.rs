//! keel's formats checked by the reference tools: `veritysetup verify` for
//! the hash tree and superblock, `sgdisk --verify` for the GPT. Each test
//! skips with a message when its tool is missing (`make deps` installs them).

use std::fs::File;
use std::path::Path;
use std::process::Command;

use keel_slot::gpt::{Entry, Gpt, Guid, SECTOR, TYPE_KEEL_SLOT, TYPE_KEEL_STATE};
use keel_slot::hex;
use keel_slot::verity::{Tree, BLOCK};

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args([
            "-c",
            &format!("command -v {tool} || test -x /usr/sbin/{tool} || test -x /sbin/{tool}"),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("SKIP: {tool} is not installed (make deps)");
    }
    found
}

fn tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    name.to_string()
}

/// Data with some structure, so blocks differ.
fn data(blocks: usize) -> Vec<u8> {
    (0..blocks * BLOCK)
        .map(|i| ((i / 7) as u8) ^ ((i / BLOCK) as u8).wrapping_mul(31))
        .collect()
}

fn veritysetup_verify(image: &Path, hash_offset: usize, root: &[u8]) -> (bool, String) {
    let out = Command::new(tool("veritysetup"))
        .arg("verify")
        .arg(format!("--hash-offset={hash_offset}"))
        .arg(image)
        .arg(image)
        .arg(hex::encode(root))
        .output()
        .expect("run veritysetup");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn veritysetup_accepts_our_tree_and_rejects_flipped_bytes() {
    if !have("veritysetup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for blocks in [1usize, 2, 127, 128, 129, 1000, 128 * 128 + 3] {
        let d = data(blocks);
        let tree = Tree::build(&d, &[0x5a; 32]).unwrap();
        let mut image = d.clone();
        image.extend_from_slice(&tree.hash_area([7; 16]));
        let path = dir.path().join(format!("img-{blocks}"));
        std::fs::write(&path, &image).unwrap();
        let (ok, out) = veritysetup_verify(&path, d.len(), &tree.root);
        assert!(ok, "{blocks} blocks: veritysetup refused our tree: {out}");

        // One flipped byte in the data area.
        let mut bad = image.clone();
        bad[d.len() / 2 + 3] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let (ok, out) = veritysetup_verify(&path, d.len(), &tree.root);
        assert!(!ok, "{blocks} blocks: a flipped data byte passed: {out}");

        // One flipped byte in the hash tree (past the superblock).
        if !tree.blocks.is_empty() {
            let mut bad = image.clone();
            bad[d.len() + BLOCK + 5] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let (ok, out) = veritysetup_verify(&path, d.len(), &tree.root);
            assert!(!ok, "{blocks} blocks: a flipped hash byte passed: {out}");
        }
    }
}

#[test]
fn veritysetup_reads_our_superblock() {
    if !have("veritysetup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = data(300);
    let tree = Tree::build(&d, &[1, 2, 3]).unwrap();
    let path = dir.path().join("hash");
    std::fs::write(&path, tree.hash_area([9; 16])).unwrap();
    let out = Command::new(tool("veritysetup"))
        .arg("dump")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Data blocks:     \t300") || text.contains("300"),
        "{text}"
    );
    assert!(text.contains("sha256"), "{text}");
    assert!(text.contains("010203"), "{text}");
}

#[test]
fn sgdisk_verifies_our_gpt() {
    if !have("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk");
    let sectors = 64 * 2048;
    let f = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(sectors * SECTOR).unwrap();
    let mut g = Gpt::new(Guid::derived(b"d"), sectors).unwrap();
    g.entries[0] = Entry {
        type_guid: TYPE_KEEL_SLOT,
        unique_guid: Guid::derived(b"a"),
        first_lba: 2048,
        last_lba: 2048 * 10 - 1,
        attributes: 0x0103 << 48,
        name: "KEEL-A".into(),
    };
    g.entries[1] = Entry {
        type_guid: TYPE_KEEL_STATE,
        unique_guid: Guid::derived(b"s"),
        first_lba: 2048 * 10,
        last_lba: 2048 * 20 - 1,
        attributes: 0,
        name: "STATE".into(),
    };
    g.write(&f, sectors).unwrap();
    let out = Command::new(tool("sgdisk"))
        .arg("--verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("No problems found"),
        "{text}"
    );
    let out = Command::new(tool("sgdisk"))
        .args(["--info=1"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("6B65656C-A5A7-4E9C-9B8E-2D1F0C5A7B01") && text.contains("KEEL-A"),
        "{text}"
    );
    assert!(text.contains("0103000000000000"), "attributes: {text}");
}
