//! From a validated cloud-config to the exact files keel writes: a pure plan
//! (paths, bytes, modes, owners) that [`crate::apply`] carries out.
//!
//! The user database starts from keel's base (root, core, and the accounts
//! CoreOS images shipped for their services, so that existing
//! `owner: etcd:etcd` lines keep working), then the config's users are added
//! or updated: regular users get ids from 1000, system users from 999 down,
//! each with a group of its own unless `no-user-group`. Homes live under
//! /home, which the root image links to STATE. Passwords are stored as the
//! hashes given; accounts without one are locked (`!`).

use std::collections::BTreeMap;

use crate::model::CloudConfig;

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A directory to create when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirCreate {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Everything an apply does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub hostname: Option<String>,
    pub dirs: Vec<DirCreate>,
    pub files: Vec<FileWrite>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("write_files[{index}].owner: no user {name:?} (keel's users: {known})")]
    NoUser {
        index: usize,
        name: String,
        known: String,
    },
    #[error("write_files[{index}].owner: no group {name:?}")]
    NoGroup { index: usize, name: String },
    #[error("users: {0}")]
    Users(String),
}

#[derive(Debug, Clone)]
struct Account {
    uid: u32,
    gid: u32,
    gecos: String,
    home: String,
    shell: String,
    hash: Option<String>,
    keys: Vec<String>,
    create_home: bool,
}

const NOLOGIN: &str = "/sbin/nologin";

type Users = BTreeMap<String, Account>;
/// Group name → (gid, members).
type Groups = BTreeMap<String, (u32, Vec<String>)>;

fn base() -> (Users, Groups) {
    let acct = |uid, gid, gecos: &str, home: &str| Account {
        uid,
        gid,
        gecos: gecos.into(),
        home: home.into(),
        shell: NOLOGIN.into(),
        hash: None,
        keys: Vec::new(),
        create_home: false,
    };
    let mut users = BTreeMap::new();
    users.insert("root".to_string(), acct(0, 0, "root", "/root"));
    users.insert(
        "core".to_string(),
        Account {
            create_home: true,
            ..acct(500, 500, "CoreOS Admin", "/home/core")
        },
    );
    users.insert(
        "etcd".to_string(),
        acct(232, 232, "etcd user", "/var/lib/keel/kv"),
    );
    users.insert("fleet".to_string(), acct(253, 253, "fleet user", "/"));
    let mut groups = BTreeMap::new();
    for (g, id) in [
        ("root", 0),
        ("wheel", 10),
        ("users", 100),
        ("sudo", 150),
        ("systemd-journal", 190),
        ("etcd", 232),
        ("docker", 233),
        ("fleet", 253),
        ("core", 500),
    ] {
        groups.insert(g.to_string(), (id, Vec::new()));
    }
    for g in ["wheel", "sudo", "docker", "systemd-journal"] {
        if let Some((_, m)) = groups.get_mut(g) {
            m.push("core".to_string());
        }
    }
    (users, groups)
}

fn next_free(used: impl Iterator<Item = u32> + Clone, mut id: u32, up: bool) -> u32 {
    while used.clone().any(|u| u == id) {
        id = if up { id + 1 } else { id - 1 };
    }
    id
}

/// The plan for `c`.
pub fn plan(c: &CloudConfig) -> Result<Plan, PlanError> {
    let (mut users, mut groups) = base();
    if let Some(core) = users.get_mut("core") {
        core.keys.extend(c.ssh_authorized_keys.iter().cloned());
    }
    for u in &c.users {
        let existing = users.contains_key(&u.name);
        if !existing {
            let uids = users.values().map(|a| a.uid).collect::<Vec<_>>();
            let uid = if u.system {
                next_free(uids.iter().copied(), 999, false)
            } else {
                next_free(uids.iter().copied(), 1000, true)
            };
            let gid = if u.no_user_group {
                let g = u.primary_group.clone().unwrap_or_else(|| "users".into());
                groups.get(&g).map(|(id, _)| *id).ok_or_else(|| {
                    PlanError::Users(format!("{}: primary group {g:?} does not exist", u.name))
                })?
            } else if let Some(g) = &u.primary_group {
                groups.get(g).map(|(id, _)| *id).ok_or_else(|| {
                    PlanError::Users(format!("{}: primary group {g:?} does not exist", u.name))
                })?
            } else {
                let gids = groups.values().map(|(id, _)| *id).collect::<Vec<_>>();
                let gid = if gids.contains(&uid) {
                    next_free(gids.iter().copied(), uid, !u.system)
                } else {
                    uid
                };
                groups.insert(u.name.clone(), (gid, Vec::new()));
                gid
            };
            users.insert(
                u.name.clone(),
                Account {
                    uid,
                    gid,
                    gecos: String::new(),
                    home: format!("/home/{}", u.name),
                    shell: NOLOGIN.into(),
                    hash: None,
                    keys: Vec::new(),
                    create_home: !u.system,
                },
            );
        }
        let a = users
            .get_mut(&u.name)
            .ok_or_else(|| PlanError::Users(format!("{}: lost", u.name)))?;
        if let Some(g) = &u.gecos {
            a.gecos = g.replace(':', " ");
        }
        if let Some(h) = &u.homedir {
            a.home = h.clone();
        }
        if let Some(s) = &u.shell {
            a.shell = s.clone();
        }
        if u.passwd_hash.is_some() {
            a.hash = u.passwd_hash.clone();
        }
        if u.no_create_home {
            a.create_home = false;
        }
        a.keys.extend(u.ssh_authorized_keys.iter().cloned());
        for g in &u.groups {
            if !groups.contains_key(g) {
                let gids = groups.values().map(|(id, _)| *id).collect::<Vec<_>>();
                let gid = next_free(gids.iter().copied(), 1000, true);
                groups.insert(g.clone(), (gid, Vec::new()));
            }
            if let Some((_, members)) = groups.get_mut(g) {
                if !members.contains(&u.name) {
                    members.push(u.name.clone());
                }
            }
        }
    }

    let mut p = Plan {
        hostname: c.hostname.clone(),
        ..Plan::default()
    };
    let etc = |name: &str, content: String, mode: u32| FileWrite {
        path: format!("/etc/{name}"),
        content: content.into_bytes(),
        mode,
        uid: 0,
        gid: 0,
    };
    let mut by_uid: Vec<(&String, &Account)> = users.iter().collect();
    // uids and gids are unique (base() gives distinct ones, next_free every
    // new one), so the unstable sorts here give the one order there is.
    by_uid.sort_unstable_by_key(|(_, a)| a.uid);
    let passwd: String = by_uid
        .iter()
        .map(|(n, a)| {
            format!(
                "{n}:x:{}:{}:{}:{}:{}\n",
                a.uid, a.gid, a.gecos, a.home, a.shell
            )
        })
        .collect();
    let shadow: String = by_uid
        .iter()
        .map(|(n, a)| format!("{n}:{}:::::::\n", a.hash.as_deref().unwrap_or("!")))
        .collect();
    let mut by_gid: Vec<(&String, &(u32, Vec<String>))> = groups.iter().collect();
    by_gid.sort_unstable_by_key(|(_, (id, _))| *id);
    let group: String = by_gid
        .iter()
        .map(|(n, (id, m))| format!("{n}:x:{id}:{}\n", m.join(",")))
        .collect();
    p.files.push(etc("passwd", passwd, 0o644));
    p.files.push(etc("group", group, 0o644));
    p.files.push(etc("shadow", shadow, 0o600));
    if let Some(h) = &c.hostname {
        p.files.push(etc("hostname", format!("{h}\n"), 0o644));
    }
    if c.manage_etc_hosts {
        let h = c.hostname.as_deref().unwrap_or("keel");
        p.files.push(etc(
            "hosts",
            format!("127.0.0.1 {h} localhost\n::1 {h} localhost\n"),
            0o644,
        ));
    }
    for (name, a) in &by_uid {
        if !a.create_home && a.keys.is_empty() {
            continue;
        }
        p.dirs.push(DirCreate {
            path: a.home.clone(),
            mode: 0o755,
            uid: a.uid,
            gid: a.gid,
        });
        if !a.keys.is_empty() {
            let ssh = format!("{}/.ssh", a.home);
            p.dirs.push(DirCreate {
                path: ssh.clone(),
                mode: 0o700,
                uid: a.uid,
                gid: a.gid,
            });
            let keys: String = a.keys.iter().map(|k| format!("{k}\n")).collect();
            p.files.push(FileWrite {
                path: format!("{ssh}/authorized_keys"),
                content: keys.into_bytes(),
                mode: 0o600,
                uid: a.uid,
                gid: a.gid,
            });
        }
        let _ = name;
    }
    let known = || users.keys().cloned().collect::<Vec<_>>().join(", ");
    for (i, f) in c.write_files.iter().enumerate() {
        let (uid, gid) =
            match &f.owner {
                None => (0, 0),
                Some((u, g)) => {
                    let (uid, ugid) = match u.parse::<u32>() {
                        Ok(n) => (n, n),
                        Err(_) => users.get(u).map(|a| (a.uid, a.gid)).ok_or_else(|| {
                            PlanError::NoUser {
                                index: i,
                                name: u.clone(),
                                known: known(),
                            }
                        })?,
                    };
                    let gid = match g {
                        None => ugid,
                        Some(g) => match g.parse::<u32>() {
                            Ok(n) => n,
                            Err(_) => groups.get(g).map(|(id, _)| *id).ok_or_else(|| {
                                PlanError::NoGroup {
                                    index: i,
                                    name: g.clone(),
                                }
                            })?,
                        },
                    };
                    (uid, gid)
                }
            };
        p.files.push(FileWrite {
            path: f.path.clone(),
            content: f.content.clone(),
            mode: f.permissions,
            uid,
            gid,
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn plan_of(text: &str) -> Plan {
        let r = validate(text);
        assert!(r.accepted(), "{:?}", r.errors);
        plan(&r.config).unwrap()
    }

    fn file<'a>(p: &'a Plan, path: &str) -> &'a FileWrite {
        p.files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    #[test]
    fn users_groups_and_keys() {
        let p = plan_of(
            "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA core@x\nusers:\n  - name: alice\n    passwd: $6$salt$abcdefghijklmnop\n    groups: [sudo, ops]\n    ssh-authorized-keys: [ssh-ed25519 BBBB alice@y]\n  - name: svc\n    system: true\n",
        );
        let passwd = String::from_utf8(file(&p, "/etc/passwd").content.clone()).unwrap();
        assert!(
            passwd.contains("alice:x:1000:1000::/home/alice:/sbin/nologin\n"),
            "{passwd}"
        );
        assert!(passwd.contains("svc:x:999:999::/home/svc:"), "{passwd}");
        assert!(passwd.contains("core:x:500:500:"), "{passwd}");
        let group = String::from_utf8(file(&p, "/etc/group").content.clone()).unwrap();
        assert!(group.contains("sudo:x:150:core,alice\n"), "{group}");
        assert!(group.contains("ops:x:1001:alice\n"), "{group}");
        let shadow = file(&p, "/etc/shadow");
        assert_eq!(shadow.mode, 0o600);
        let shadow = String::from_utf8(shadow.content.clone()).unwrap();
        assert!(shadow.contains("alice:$6$salt$abcdefghijklmnop:::::::\n"));
        assert!(shadow.contains("core:!:::::::\n"), "no password: locked");
        let k = file(&p, "/home/alice/.ssh/authorized_keys");
        assert_eq!((k.uid, k.mode), (1000, 0o600));
        assert_eq!(
            file(&p, "/home/core/.ssh/authorized_keys").content,
            b"ssh-ed25519 AAAA core@x\n"
        );
        assert!(p
            .dirs
            .iter()
            .any(|d| d.path == "/home/alice/.ssh" && d.mode == 0o700));
    }

    #[test]
    fn write_files_owners_resolve_or_fail() {
        let p = plan_of("#cloud-config\nwrite_files:\n  - path: /etc/ssl/etcd/key.pem\n    owner: etcd:etcd\n    permissions: '0600'\n    content: k\n");
        let f = file(&p, "/etc/ssl/etcd/key.pem");
        assert_eq!((f.uid, f.gid, f.mode), (232, 232, 0o600));
        let r = validate("#cloud-config\nwrite_files:\n  - path: /x\n    owner: nobody2\n");
        let e = plan(&r.config).unwrap_err();
        assert!(e.to_string().contains("no user \"nobody2\""), "{e}");
    }

    #[test]
    fn hostname_and_hosts() {
        let p = plan_of("#cloud-config\nhostname: web-1\nmanage_etc_hosts: localhost\n");
        assert_eq!(p.hostname.as_deref(), Some("web-1"));
        assert_eq!(file(&p, "/etc/hostname").content, b"web-1\n");
        assert!(String::from_utf8_lossy(&file(&p, "/etc/hosts").content)
            .contains("127.0.0.1 web-1 localhost"));
    }
}
