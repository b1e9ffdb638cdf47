use std::fs;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::testutil::layout;
use crate::writer::LayerEntry as E;

fn two_images() -> (tempfile::TempDir, Store) {
    let t = tempfile::tempdir().unwrap();
    layout(
        &t.path().join("a"),
        "a:1",
        &[
            vec![E::file("bin/tool", b"tool"), E::file("shared", b"s")],
            vec![E::file("etc/conf", b"a")],
        ],
    );
    layout(
        &t.path().join("b"),
        "b:1",
        &[vec![E::file("bin/tool", b"tool"), E::file("shared", b"s")]],
    );
    let store = Store::open(&t.path().join("store")).unwrap();
    (t, store)
}

#[test]
fn import_resolve_list_remove_gc() {
    let (t, store) = two_images();
    let da = store
        .import_layout(&t.path().join("a"), Some("a:1"), "registry.example/a:1")
        .unwrap();
    let db = store.import_layout(&t.path().join("b"), None, "b").unwrap();
    assert_eq!(
        store.list().unwrap(),
        [
            ("b".to_string(), db.clone()),
            ("registry.example/a:1".to_string(), da.clone())
        ]
    );
    let img = store.resolve("registry.example/a:1").unwrap();
    assert_eq!(img.manifest_digest, da);
    assert_eq!(img.layer_dirs.len(), 2);
    assert_eq!(
        fs::read(img.layer_dirs[0].join("bin/tool")).unwrap(),
        b"tool"
    );
    assert_eq!(fs::read(img.layer_dirs[1].join("etc/conf")).unwrap(), b"a");
    assert_eq!(img.config.config.unwrap().entrypoint.unwrap(), ["/bin/sh"]);

    // Unpacked once: a second resolve reuses the directories.
    let ino = fs::metadata(img.layer_dirs[0].join("bin/tool"))
        .unwrap()
        .ino();
    let again = store.resolve("registry.example/a:1").unwrap();
    assert_eq!(again.layer_dirs, img.layer_dirs);
    assert_eq!(
        fs::metadata(again.layer_dirs[0].join("bin/tool"))
            .unwrap()
            .ino(),
        ino
    );
    // Both images share the first layer (same bytes, same digest).
    assert_eq!(store.resolve("b").unwrap().layer_dirs[0], img.layer_dirs[0]);

    // Nothing to collect while both are named.
    assert_eq!(store.gc().unwrap(), GcReport::default());
    assert!(store.remove("registry.example/a:1").unwrap());
    assert!(!store.remove("registry.example/a:1").unwrap());
    let report = store.gc().unwrap();
    // a's manifest, config and second layer go; the shared layer stays.
    assert_eq!(report.blobs.len(), 3, "{report:?}");
    assert!(report.blobs.contains(&da));
    assert_eq!(report.layers.len(), 1);
    assert!(!img.layer_dirs[1].exists());
    assert!(img.layer_dirs[0].exists());
    assert!(store.resolve("b").is_ok());
    assert!(matches!(
        store.resolve("registry.example/a:1"),
        Err(StoreError::NoImage { .. })
    ));
}

#[test]
fn put_blob_verifies_while_streaming() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let d = Digest::of(b"hello");
    let err = store.put_blob(&b"hellO"[..], &d, None).unwrap_err();
    assert!(err.to_string().contains(&d.to_string()), "{err}");
    let err = store
        .put_blob(&b"hello world"[..], &d, Some(5))
        .unwrap_err();
    assert!(err.to_string().contains("expected 5 bytes"), "{err}");
    assert!(!store.has_blob(&d));
    // No temporaries left behind.
    assert_eq!(
        fs::read_dir(t.path().join("blobs/sha256")).unwrap().count(),
        0
    );
    let p = store.put_blob(&b"hello"[..], &d, Some(5)).unwrap();
    assert_eq!(fs::read(p).unwrap(), b"hello");
    // Unreferenced: collected.
    assert_eq!(store.gc().unwrap().blobs, [d]);
}

#[test]
fn gc_removes_temporaries_and_names_are_checked() {
    let (_t, store) = two_images();
    let tmp = store.root().join("layers").join(".tmp-abc-1-0");
    fs::create_dir_all(tmp.join("x")).unwrap();
    assert_eq!(store.gc().unwrap().temporaries, [tmp]);
    for bad in ["", "../x", ".hidden", "a//b", "a b", "a/", "x%y"] {
        let e = store.remove(bad).unwrap_err();
        assert!(e.to_string().contains("image name"), "{bad}: {e}");
    }
}

#[test]
fn a_corrupted_blob_is_not_imported() {
    let (t, store) = two_images();
    let lay = t.path().join("b");
    let img = crate::layout::resolve(&lay, None, &Platform::linux_amd64()).unwrap();
    let layer = img.manifest.layers[0].digest().unwrap();
    let p = blob_path(&lay, &layer);
    let mut bytes = fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&p, bytes).unwrap();
    let err = store.import_layout(&lay, None, "b").unwrap_err();
    assert!(err.to_string().contains("corrupted or tampered"), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store.has_blob(&layer));
}

#[test]
fn put_ref_needs_every_blob() {
    let (t, store) = two_images();
    let da = store
        .import_layout(&t.path().join("a"), None, "a:1")
        .unwrap();
    let r = store.read_named("a:1").unwrap();
    // The same manifest under a second name: only the ref is written.
    store.put_ref("copy:1", &r.manifest).unwrap();
    assert_eq!(store.resolve("copy:1").unwrap().manifest_digest, da);
    // Without one of its layers, no ref is written.
    let img = store.resolve("a:1").unwrap();
    let layer = img.manifest.layers[1].digest().unwrap();
    fs::remove_file(blob_path(store.root(), &layer)).unwrap();
    let e = store
        .put_ref("broken:1", &r.manifest)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("layer {layer} is not in the store")),
        "{e}"
    );
    assert!(matches!(
        store.resolve("broken:1"),
        Err(StoreError::NoImage { .. })
    ));
}

/// Callers resolving images at once (containers that share an image, or a
/// layer, starting together) unpack each layer once: one of them does,
/// the others wait and find it unpacked. Each gets every layer.
#[test]
fn concurrent_resolves_unpack_each_layer_once() {
    let (t, store) = two_images();
    store
        .import_layout(&t.path().join("a"), Some("a:1"), "a:1")
        .unwrap();
    store
        .import_layout(&t.path().join("b"), None, "b:1")
        .unwrap();
    let results: Vec<ResolvedImage> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let store = &store;
                s.spawn(move || {
                    store
                        .resolve(if i % 3 == 2 { "b:1" } else { "a:1" })
                        .unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut unpacked: Vec<Digest> = results
        .iter()
        .flat_map(|r| r.unpacked.iter().map(|u| u.digest.clone()))
        .collect();
    unpacked.sort();
    let n = unpacked.len();
    unpacked.dedup();
    assert_eq!(
        n, 2,
        "two distinct layers (b's is a's first), each once: {unpacked:?}"
    );
    assert_eq!(unpacked.len(), 2);
    for r in &results {
        for d in &r.layer_dirs {
            assert!(
                d.join("bin/tool").exists() || d.join("etc/conf").exists(),
                "{d:?}"
            );
        }
    }
    let tmps: Vec<_> = fs::read_dir(t.path().join("store/layers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(tmps.is_empty(), "no temporaries left");
}

/// An image whose layer carries a device node resolves (the node is not
/// created), and the unpack reports it for the log, once.
#[test]
fn device_nodes_are_reported_when_the_layer_is_unpacked() {
    use crate::writer::EntryKind;
    let t = tempfile::tempdir().unwrap();
    layout(
        &t.path().join("d"),
        "d:1",
        &[vec![
            E {
                kind: EntryKind::CharDevice { major: 5, minor: 1 },
                ..E::file("dev/console", b"")
            },
            E::file("bin/tool", b"tool"),
        ]],
    );
    let store = Store::open(&t.path().join("store")).unwrap();
    store.import_layout(&t.path().join("d"), None, "d").unwrap();
    let img = store.resolve("d").unwrap();
    assert_eq!(
        fs::read(img.layer_dirs[0].join("bin/tool")).unwrap(),
        b"tool"
    );
    assert!(fs::symlink_metadata(img.layer_dirs[0].join("dev/console")).is_err());
    let u = &img.unpacked[0];
    assert_eq!(
        u.skip_notes(),
        [format!(
            "layer {}: skipped device node /dev/console (keel creates no device nodes from images)",
            u.digest
        )]
    );
    assert!(u.digest.to_string().starts_with("sha256:"));
    // Unpacked already: nothing to report again.
    assert!(store.resolve("d").unwrap().unpacked.is_empty());
}
