//! docs/crates.md is the crate map: each crate's keel dependencies stay
//! within its row, every crate under init/ has a row, and `unsafe` appears
//! only in the crates whose row allows it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

struct Row {
    name: String,
    path: String,
    may: BTreeSet<String>,
    unsafe_ok: bool,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rows() -> Vec<Row> {
    let doc = std::fs::read_to_string(root().join("docs/crates.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| keel"))
        .map(|l| {
            let c: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(c.len(), 5, "docs/crates.md row {l:?}");
            Row {
                name: c[0].to_string(),
                path: c[1].trim_matches('`').to_string(),
                may: c[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                unsafe_ok: c[4] == "yes",
            }
        })
        .collect()
}

/// The keel crates of a manifest's `[dependencies]` section.
fn keel_deps(manifest: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && line.starts_with("keel") {
            let name = line.split(['=', ' ', '.']).next().unwrap_or("");
            out.insert(name.to_string());
        }
    }
    out
}

fn name_of(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = "))
        .map(|n| n.trim_matches('"').to_string())
        .unwrap_or_default()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of code (not comments) that open an unsafe block, fn, impl or
/// extern block.
fn unsafe_lines(src: &str) -> Vec<String> {
    src.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| {
            ["unsafe {", "unsafe fn ", "unsafe impl", "unsafe extern"]
                .iter()
                .any(|k| l.contains(k))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn every_crate_keeps_to_its_row_of_the_crate_map() {
    let rows = rows();
    assert!(rows.len() >= 10, "docs/crates.md has {} rows", rows.len());
    for r in &rows {
        let manifest = std::fs::read_to_string(root().join(&r.path).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{}: {}/Cargo.toml: {e}", r.name, r.path));
        assert_eq!(name_of(&manifest), r.name, "{}", r.path);
        let deps = keel_deps(&manifest);
        let extra: Vec<&String> = deps.difference(&r.may).collect();
        assert!(
            extra.is_empty(),
            "{} depends on {extra:?}, which docs/crates.md does not allow",
            r.name
        );
        if !r.unsafe_ok {
            let mut files = Vec::new();
            rust_files(&root().join(&r.path).join("src"), &mut files);
            for f in files {
                let found = unsafe_lines(&std::fs::read_to_string(&f).unwrap());
                assert!(found.is_empty(), "{}: unsafe: {found:?}", f.display());
            }
        }
    }
    // Every crate under init/ has its row.
    let mapped: BTreeSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    for e in std::fs::read_dir(root().join("init")).unwrap().flatten() {
        if e.path().join("Cargo.toml").exists() {
            let p = format!("init/{}", e.file_name().to_string_lossy());
            assert!(
                mapped.contains(p.as_str()),
                "{p} has no row in docs/crates.md"
            );
        }
    }
}

#[test]
fn the_checks_see_what_they_look_for() {
    // Controls: a dependency and an unsafe block are found.
    let m = "[package]\nname = \"x\"\n[dependencies]\nkeel-sys.workspace = true\nkeel-api = { path = \"a\" }\nlibc = \"1\"\n[dev-dependencies]\nkeel-testkit.workspace = true\n";
    assert_eq!(
        keel_deps(m).into_iter().collect::<Vec<_>>(),
        ["keel-api", "keel-sys"]
    );
    assert_eq!(
        unsafe_lines("// unsafe { no }\n let x = unsafe { y() };\n").len(),
        1
    );
}

/// The docs link only within the repository: a link out goes stale, and
/// the docs must hold what they say.
#[test]
fn the_docs_link_nowhere_outside_the_repository() {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.push(root().join("README.md"));
    for d in docs {
        let text = std::fs::read_to_string(&d).unwrap();
        for (i, line) in text.lines().enumerate() {
            assert!(
                !line.contains("](http://") && !line.contains("](https://"),
                "{}:{}: a link outside the repository: {line}",
                d.display(),
                i + 1
            );
        }
    }
}
