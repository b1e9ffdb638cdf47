//! Spec files: one entry per line, `gen_init_cpio` syntax.
//!
//! ```text
//! dir   /dev            0755 0 0
//! nod   /dev/console    0600 0 0 c 5 1
//! file  /init           ${KEEL_BIN} 0755 0 0
//! slink /bin/sh         /init 0777 0 0
//! ```
//! `#` starts a comment. Paths are absolute; `${NAME}` in a source is taken
//! from the variables given on the command line.
//!
//! keel adds one line type: `tree DEST SRC UID GID` takes the directory
//! SRC whole (an OCI layout, say) as DEST: directories 0755, files 0644,
//! symbolic links as they are, in sorted order.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(PathBuf),
    /// Character (`c`) or block (`b`) device with major and minor numbers.
    Node {
        block: bool,
        major: u32,
        minor: u32,
    },
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without the leading `/`.
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: Kind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: {name} is already defined (at {first})")]
    Duplicate {
        file: String,
        line: usize,
        name: String,
        first: String,
    },
}

/// The merged entries of several spec files, keyed (and so sorted) by path.
#[derive(Debug, Default)]
pub struct Spec {
    entries: BTreeMap<String, (Entry, String)>,
}

fn expand(s: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let name = &rest[i + 2..i + end];
        let v = vars
            .get(name)
            .ok_or_else(|| format!("variable {name} is not set (pass --var {name}=...)"))?;
        out.push_str(v);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn num(field: &str, what: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(field, radix).map_err(|_| format!("{what} {field:?} is not a number"))
}

fn parse_line(words: &[&str], vars: &HashMap<String, String>) -> Result<Entry, String> {
    let need = |n: usize| {
        if words.len() != n {
            Err(format!(
                "{} takes {} fields, found {}",
                words[0],
                n - 1,
                words.len() - 1
            ))
        } else {
            Ok(())
        }
    };
    let name_of = |p: &str| -> Result<String, String> {
        let n = p
            .strip_prefix('/')
            .ok_or_else(|| format!("path {p:?} is not absolute"))?;
        if n.is_empty() || n.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(format!("path {p:?} is not a clean absolute path"));
        }
        Ok(n.to_string())
    };
    let ids = |m: &str, u: &str, g: &str| -> Result<(u32, u32, u32), String> {
        let mode = num(m, "mode", 8)?;
        if mode > 0o7777 {
            return Err(format!("mode {m} is over 07777"));
        }
        Ok((mode, num(u, "uid", 10)?, num(g, "gid", 10)?))
    };
    let (name, (mode, uid, gid), kind) = match words[0] {
        "dir" => {
            need(5)?;
            (
                name_of(words[1])?,
                ids(words[2], words[3], words[4])?,
                Kind::Dir,
            )
        }
        "file" => {
            need(6)?;
            let src = PathBuf::from(expand(words[2], vars)?);
            (
                name_of(words[1])?,
                ids(words[3], words[4], words[5])?,
                Kind::File(src),
            )
        }
        "nod" => {
            need(8)?;
            let block = match words[5] {
                "c" => false,
                "b" => true,
                t => return Err(format!("device type {t:?} is not c or b")),
            };
            let kind = Kind::Node {
                block,
                major: num(words[6], "major", 10)?,
                minor: num(words[7], "minor", 10)?,
            };
            (name_of(words[1])?, ids(words[2], words[3], words[4])?, kind)
        }
        "slink" => {
            need(6)?;
            (
                name_of(words[1])?,
                ids(words[3], words[4], words[5])?,
                Kind::Symlink(words[2].to_string()),
            )
        }
        other => {
            return Err(format!(
                "unknown entry type {other:?} (dir, file, nod, slink)"
            ))
        }
    };
    Ok(Entry {
        name,
        mode,
        uid,
        gid,
        kind,
    })
}

/// `tree DEST SRC UID GID`: DEST and everything under SRC.
fn tree(words: &[&str], vars: &HashMap<String, String>) -> Result<Vec<Entry>, String> {
    if words.len() != 5 {
        return Err(format!("tree takes 4 fields, found {}", words.len() - 1));
    }
    let dest = parse_line(&["dir", words[1], "0755", words[3], words[4]], vars)?;
    let src = PathBuf::from(expand(words[2], vars)?);
    let mut out = vec![dest.clone()];
    fn walk(
        dir: &std::path::Path,
        name: &str,
        base: &Entry,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let mut items: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("read directory {}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .collect();
        items.sort_unstable_by_key(|e| e.file_name());
        for it in items {
            let child = format!("{name}/{}", it.file_name().to_string_lossy());
            let path = it.path();
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("stat {}: {e}", path.display()))?;
            let (mode, kind) = if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&path)
                    .map_err(|e| format!("read link {}: {e}", path.display()))?;
                (0o777, Kind::Symlink(to.to_string_lossy().into_owned()))
            } else if meta.is_dir() {
                (0o755, Kind::Dir)
            } else if meta.is_file() {
                (0o644, Kind::File(path.clone()))
            } else {
                return Err(format!("{}: not a file, directory or link", path.display()));
            };
            out.push(Entry {
                name: child.clone(),
                mode,
                kind: kind.clone(),
                ..base.clone()
            });
            if kind == Kind::Dir {
                walk(&path, &child, base, out)?;
            }
        }
        Ok(())
    }
    walk(&src, &dest.name, &dest, &mut out)?;
    Ok(out)
}

impl Spec {
    /// Add the entries of one spec file's text; `file` names it in errors.
    pub fn add(
        &mut self,
        file: &str,
        text: &str,
        vars: &HashMap<String, String>,
    ) -> Result<(), SpecError> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let line_err = |message| SpecError::Line {
                file: file.to_string(),
                line: i + 1,
                message,
            };
            let entries = if words[0] == "tree" {
                tree(&words, vars).map_err(line_err)?
            } else {
                vec![parse_line(&words, vars).map_err(line_err)?]
            };
            let at = format!("{file}:{}", i + 1);
            for entry in entries {
                if let Some((_, first)) = self.entries.get(&entry.name) {
                    return Err(SpecError::Duplicate {
                        file: file.to_string(),
                        line: i + 1,
                        name: format!("/{}", entry.name),
                        first: first.clone(),
                    });
                }
                self.entries.insert(entry.name.clone(), (entry, at.clone()));
            }
        }
        Ok(())
    }

    /// All entries sorted by path, with missing parent directories added
    /// (mode 0755, root-owned).
    pub fn entries(&self) -> Vec<Entry> {
        let mut all: BTreeMap<String, Entry> = self
            .entries
            .iter()
            .map(|(k, (e, _))| (k.clone(), e.clone()))
            .collect();
        for name in self.entries.keys() {
            let mut p = name.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                all.entry(parent.to_string()).or_insert_with(|| Entry {
                    name: parent.to_string(),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    kind: Kind::Dir,
                });
                p = parent;
            }
        }
        all.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        HashMap::from([("BIN".to_string(), "/build/keel".to_string())])
    }

    #[test]
    fn tree_takes_a_directory_whole_and_sorted() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("blobs/sha256")).unwrap();
        std::fs::write(t.path().join("blobs/sha256/ab"), "x").unwrap();
        std::fs::write(t.path().join("index.json"), "{}").unwrap();
        std::os::unix::fs::symlink("index.json", t.path().join("link")).unwrap();
        let v = HashMap::from([("T".to_string(), t.path().display().to_string())]);
        let mut s = Spec::default();
        s.add("a.list", "tree /usr/lib/img ${T} 0 0\n", &v).unwrap();
        let got: Vec<(String, u32)> = s
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("usr".to_string(), 0o755),
                ("usr/lib".into(), 0o755),
                ("usr/lib/img".into(), 0o755),
                ("usr/lib/img/blobs".into(), 0o755),
                ("usr/lib/img/blobs/sha256".into(), 0o755),
                ("usr/lib/img/blobs/sha256/ab".into(), 0o644),
                ("usr/lib/img/index.json".into(), 0o644),
                ("usr/lib/img/link".into(), 0o777),
            ]
        );
        let e = s
            .add("b.list", "tree /x /nonexistent 0 0\n", &v)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("b.list:1: read directory /nonexistent"),
            "{e}"
        );
    }

    #[test]
    fn parses_every_kind_and_adds_parents_sorted() {
        let mut s = Spec::default();
        s.add(
            "a.list",
            "# comment\nfile /init ${BIN} 0755 0 0\nnod /dev/console 0600 0 0 c 5 1\nslink /usr/bin/sh /init 0777 0 0\ndir /tmp 1777 0 0 # sticky\n",
            &vars(),
        )
        .unwrap();
        let names: Vec<String> = s.entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/sh"
            ]
        );
        let e = s.entries();
        assert_eq!(e[2].kind, Kind::File("/build/keel".into()));
        assert_eq!(
            e[1].kind,
            Kind::Node {
                block: false,
                major: 5,
                minor: 1
            }
        );
        assert_eq!(e[3].mode, 0o1777);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            ("file /init ${NOPE} 0755 0 0", "variable NOPE is not set"),
            ("dir tmp 0755 0 0", "not absolute"),
            ("dir /a/../b 0755 0 0", "not a clean absolute path"),
            ("dir /a 0855 0 0", "mode \"0855\" is not a number"),
            ("dir /a 0755 0", "dir takes 4 fields, found 3"),
            ("nod /x 0600 0 0 z 1 1", "device type \"z\""),
            ("pipe /x 0600 0 0", "unknown entry type"),
        ];
        for (line, want) in cases {
            let err = Spec::default()
                .add("t.list", &format!("\n{line}\n"), &vars())
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("t.list:2: ") && msg.contains(want),
                "{line}: {msg}"
            );
        }
    }

    #[test]
    fn duplicates_across_files_are_refused() {
        let mut s = Spec::default();
        s.add("a.list", "dir /etc 0755 0 0\n", &vars()).unwrap();
        let err = s.add("b.list", "dir /etc 0700 0 0\n", &vars()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.list:1: /etc is already defined (at a.list:1)"
        );
    }
}
