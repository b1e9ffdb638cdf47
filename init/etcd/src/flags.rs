//! keel-etcd's command line, read as etcd reads its own (Go's `flag`
//! package), so that scripts and test suites written for etcd start
//! keel-etcd unchanged:
//!
//! 1. A flag is `-name` or `--name`; its value follows after `=` or as the
//!    next argument (`-name a`, `--name=a`).
//! 2. A boolean flag needs no value (`-client-cert-auth`); `=false` turns
//!    it off. It never takes the next argument as its value.
//! 3. A flag given again replaces its earlier value: the last one wins.
//! 4. An empty value is the flag's default (`--initial-cluster ""`).
//! 5. etcd 2's deprecated flags and etcd 0.4's addresses set what replaced
//!    them ([`keel_types::etcd::RENAMED`], the table the cloud-config
//!    validator uses too), each with a warning naming the replacement.
//! 6. The flags end at `--` or at the first argument that is not one;
//!    keel-etcd takes no other arguments, so one is an error, as in etcd.
//!    So is a flag keel-etcd does not know.
//!
//! Each value is parsed once, into [`EtcdSettings`].

use keel_types::etcd::{Applied, SettingError};
use keel_types::EtcdSettings;

/// Why the command line was refused; each names the flag or argument.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("unknown flag {flag} (keel-etcd --help lists the flags it takes)")]
    Unknown { flag: String },
    #[error("flag {flag} needs a value")]
    NoValue { flag: String },
    #[error("bad flag syntax: {arg}")]
    Syntax { arg: String },
    #[error("{arg:?} is not a flag: keel-etcd takes flags only")]
    NotAFlag { arg: String },
    /// The value's problem, as the validator says it after the key
    /// (`snapshot-count: "5" is not ...`).
    #[error(transparent)]
    Value(#[from] SettingError),
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run a member with these settings; say these warnings first.
    Run {
        settings: Box<EtcdSettings>,
        warnings: Vec<String>,
    },
    Help,
    Version,
}

/// etcd's flags keel-etcd takes and does nothing with, all booleans.
const IGNORED: &[(&str, &str)] = &[("enable-v2", "the v2 API is always on")];

/// Reads the arguments after the program's name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, FlagError> {
    let mut settings = EtcdSettings::default();
    let mut warnings = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            // Go stops at `--`; what follows would be arguments.
            return match args.next() {
                Some(arg) => Err(FlagError::NotAFlag { arg }),
                None => Ok(Command::Run {
                    settings: Box::new(settings),
                    warnings,
                }),
            };
        }
        let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) else {
            return Err(FlagError::NotAFlag { arg });
        };
        let (dashes, body) = match body.strip_prefix('-') {
            Some(b) => ("--", b),
            None => ("-", body),
        };
        if body.is_empty() || body.starts_with(['-', '=']) {
            return Err(FlagError::Syntax { arg });
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let flag = format!("{dashes}{name}");
        let boolean = |v: Option<&str>| -> Result<bool, FlagError> {
            keel_types::etcd::parse_bool(v.unwrap_or("true")).map_err(|why| {
                FlagError::Value(SettingError {
                    key: name.to_string(),
                    why,
                })
            })
        };
        match name {
            "h" | "help" => return Ok(Command::Help),
            "version" => {
                if boolean(inline)? {
                    return Ok(Command::Version);
                }
                continue;
            }
            _ if IGNORED.iter().any(|(n, _)| *n == name) => {
                boolean(inline)?;
                continue;
            }
            _ => {}
        }
        let renamed = keel_types::etcd::Renamed::find(name);
        if !EtcdSettings::KEYS.contains(&name) && renamed.is_none() {
            return Err(FlagError::Unknown { flag });
        }
        let value = match inline {
            Some(v) => v.to_string(),
            None if EtcdSettings::is_bool(name) => "true".to_string(),
            None => args
                .next()
                .ok_or_else(|| FlagError::NoValue { flag: flag.clone() })?,
        };
        if value.trim().is_empty() && !EtcdSettings::is_bool(name) {
            settings.unset(name);
            continue;
        }
        match settings.set(name, &value) {
            Ok(Applied::Renamed(r)) => warnings.push(format!(
                "{flag} is deprecated: taken as {}; use --{} instead",
                r.replacement(),
                r.new
            )),
            Ok(Applied::Set | Applied::Unsupported) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Command::Run {
        settings: Box::new(settings),
        warnings,
    })
}

/// `keel-etcd --help`.
pub fn usage() -> String {
    let mut out = String::from(
        "keel's etcd v2 compatible cluster store\n\n\
         Usage: keel-etcd [flags]\n\n\
         Flags, as etcd's (-flag or --flag; a value after = or as the next argument;\n\
         a repeated flag: the last wins):\n",
    );
    for k in EtcdSettings::KEYS {
        if EtcdSettings::is_bool(k) {
            out.push_str(&format!("  --{k}[=true|false]\n"));
        } else {
            out.push_str(&format!("  --{k} VALUE\n"));
        }
    }
    for (k, why) in IGNORED {
        out.push_str(&format!("  --{k}  (accepted: {why})\n"));
    }
    out.push_str("  --version\n  --help\n\nDeprecated, taken as their replacements:\n");
    for r in keel_types::etcd::RENAMED {
        out.push_str(&format!("  --{} VALUE  ({})\n", r.old, r.replacement()));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn run(args: &[&str]) -> Result<(EtcdSettings, Vec<String>), FlagError> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run { settings, warnings } => Ok((*settings, warnings)),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn settings(args: &[&str]) -> EtcdSettings {
        run(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).0
    }

    fn name(s: &EtcdSettings) -> Option<&str> {
        s.name.as_ref().map(|n| n.as_str())
    }

    #[test]
    fn every_form_of_a_value_flag() {
        for args in [
            &["-name", "a"][..],
            &["-name=a"],
            &["--name", "a"],
            &["--name=a"],
        ] {
            assert_eq!(name(&settings(args)), Some("a"), "{args:?}");
        }
        // The next argument is the value, whatever it looks like; `=` only
        // splits the flag's own argument once.
        assert_eq!(
            settings(&["-initial-cluster-token", "-x"]).initial_cluster_token,
            Some("-x".into())
        );
        assert_eq!(
            settings(&["--initial-cluster=a=http://127.0.0.1:2380"])
                .initial_cluster
                .unwrap()
                .to_string(),
            "a=http://127.0.0.1:2380"
        );
    }

    #[test]
    fn every_form_of_a_boolean_flag() {
        for (args, want) in [
            (&["-client-cert-auth"][..], true),
            (&["--client-cert-auth"], true),
            (&["-client-cert-auth=true"], true),
            (&["--client-cert-auth=true"], true),
            (&["-client-cert-auth=false"], false),
            (&["--client-cert-auth=false"], false),
            (&["--client-cert-auth=1"], true),
            (&["--client-cert-auth=F"], false),
            (&["--client-cert-auth", "--client-cert-auth=false"], false),
            (&["-client-cert-auth=false", "-client-cert-auth"], true),
        ] {
            assert_eq!(settings(args).client_cert_auth, want, "{args:?}");
        }
        // A boolean never takes the next argument: Go leaves it as an
        // argument, which etcd refuses.
        assert_eq!(
            run(&["-client-cert-auth", "true"]).unwrap_err(),
            FlagError::NotAFlag { arg: "true".into() }
        );
        assert_eq!(
            run(&["--peer-client-cert-auth=yes"])
                .unwrap_err()
                .to_string(),
            "peer-client-cert-auth: \"yes\" is not true or false"
        );
        assert!(run(&["--enable-v2", "-enable-v2=true", "--enable-v2=false"]).is_ok());
        assert!(run(&["--enable-v2=maybe"]).is_err());
    }

    #[test]
    fn the_last_of_a_repeated_flag_wins() {
        let s = settings(&[
            "-listen-client-urls",
            "http://127.0.0.1:1",
            "--listen-client-urls=http://127.0.0.1:2",
            "--name",
            "a",
            "-name=b",
        ]);
        assert_eq!(
            s.listen_client_urls.as_ref().unwrap().to_string(),
            "http://127.0.0.1:2"
        );
        assert_eq!(name(&s), Some("b"));
        // An empty value is the default again.
        let s = settings(&["--name", "a", "--name", ""]);
        assert_eq!(name(&s), None);
        let s = settings(&["--data-dir", "/d", "--data-dir="]);
        assert_eq!(s.data_dir, None);
    }

    #[test]
    fn values_are_parsed_once_with_the_settings_messages() {
        let e = run(&["-snapshot-count", "5"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "snapshot-count: \"5\" is not a whole number from 10 to 10000000"
        );
        let e = run(&["--listen-client-urls=https://x:1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "listen-client-urls: \"https://x:1\" is not an http://IP:PORT or https://IP:PORT URL"
        );
        let s = settings(&[
            "-quota-backend-bytes",
            "65536",
            "-cors",
            "*",
            "-initial-cluster-state=existing",
            "-data-dir",
            "rel/dir",
        ]);
        assert_eq!(s.quota_backend_bytes.unwrap().get(), 65536);
        assert_eq!(s.cors, keel_types::etcd::Cors::Any);
        assert_eq!(
            s.initial_cluster_state,
            Some(keel_types::etcd::ClusterState::Existing)
        );
        assert_eq!(s.data_dir, Some(PathBuf::from("rel/dir")));
    }

    #[test]
    fn deprecated_flags_set_their_replacements_and_say_so() {
        let (s, w) = run(&["-ca-file", "/ca.pem", "--peer-ca-file=/pca.pem"]).unwrap();
        assert_eq!(s.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
        assert!(s.client_cert_auth);
        assert_eq!(s.peer_trusted_ca_file, Some(PathBuf::from("/pca.pem")));
        assert!(s.peer_client_cert_auth);
        assert_eq!(
            w,
            vec![
                "-ca-file is deprecated: taken as trusted-ca-file with client-cert-auth; use --trusted-ca-file instead",
                "--peer-ca-file is deprecated: taken as peer-trusted-ca-file with peer-client-cert-auth; use --peer-trusted-ca-file instead",
            ]
        );
        let (s, w) = run(&[
            "-addr",
            "127.0.0.1:4001",
            "-peer-addr=127.0.0.1:7001",
            "--bind-addr",
            "0.0.0.0:4001",
            "--peer-bind-addr=0.0.0.0:7001",
        ])
        .unwrap();
        let shown = |u: Option<keel_types::etcd::UrlList>| u.unwrap().to_string();
        assert_eq!(shown(s.advertise_client_urls), "http://127.0.0.1:4001");
        assert_eq!(
            shown(s.initial_advertise_peer_urls),
            "http://127.0.0.1:7001"
        );
        assert_eq!(shown(s.listen_client_urls), "http://0.0.0.0:4001");
        assert_eq!(shown(s.listen_peer_urls), "http://0.0.0.0:7001");
        assert_eq!(w.len(), 4);
        assert_eq!(
            w[0],
            "-addr is deprecated: taken as advertise-client-urls (as http://ADDRESS); use --advertise-client-urls instead"
        );
        // The current flag after the old one wins, as any repeat.
        let s = settings(&["-ca-file", "/a.pem", "--trusted-ca-file", "/b.pem"]);
        assert_eq!(s.trusted_ca_file, Some(PathBuf::from("/b.pem")));
        assert!(run(&["-ca-file"]).is_err());
    }

    #[test]
    fn what_is_not_a_known_flag_is_an_error_naming_it() {
        for (args, e) in [
            (
                &["--heartbeat-interval", "100"][..],
                FlagError::Unknown {
                    flag: "--heartbeat-interval".into(),
                },
            ),
            (
                &["-proxy=on"],
                FlagError::Unknown {
                    flag: "-proxy".into(),
                },
            ),
            (
                &["--name"],
                FlagError::NoValue {
                    flag: "--name".into(),
                },
            ),
            (&["name"], FlagError::NotAFlag { arg: "name".into() }),
            (&["-"], FlagError::NotAFlag { arg: "-".into() }),
            (
                &["---name=a"],
                FlagError::Syntax {
                    arg: "---name=a".into(),
                },
            ),
            (&["-=a"], FlagError::Syntax { arg: "-=a".into() }),
            (&["--", "x"], FlagError::NotAFlag { arg: "x".into() }),
        ] {
            assert_eq!(run(args).unwrap_err(), e, "{args:?}");
        }
        assert_eq!(
            FlagError::Unknown {
                flag: "-proxy".into()
            }
            .to_string(),
            "unknown flag -proxy (keel-etcd --help lists the flags it takes)"
        );
        assert_eq!(name(&settings(&["-name", "a", "--"])), Some("a"));
    }

    #[test]
    fn help_and_version() {
        for a in ["-h", "--help", "-help"] {
            assert_eq!(parse([a.to_string()]), Ok(Command::Help));
        }
        for a in ["-version", "--version", "--version=true"] {
            assert_eq!(parse([a.to_string()]), Ok(Command::Version));
        }
        let u = usage();
        assert!(u.contains("  --client-cert-auth[=true|false]\n"), "{u}");
        assert!(u.contains("  --listen-client-urls VALUE\n"), "{u}");
        assert!(
            u.contains("  --ca-file VALUE  (trusted-ca-file with client-cert-auth)\n"),
            "{u}"
        );
    }
}
