//! keel's `api:` section: TLS with client certificates on the management
//! API's TCP port.
//!
//! ```yaml
//! api:
//!   cert_file: /etc/keel/api.pem        # server certificate chain (PEM)
//!   key_file: /etc/keel/api-key.pem
//!   client_ca_file: /etc/keel/ca.pem    # clients must present a certificate this CA signed
//! ```
//!
//! 1. The section is a mapping with exactly these three keys, all
//!    required: a missing one is an error at the section naming it
//!    (`api.client_ca_file: required`); any other key is an error with a
//!    "did you mean".
//! 2. Each value is an absolute path without `..`. Whether the file exists
//!    and holds what it should is known only on the node, when the API
//!    starts (the files usually come from `write_files` in the same
//!    config, which is applied first).
//! 3. The section gets one `applied` verdict saying what the port serves.
//!
//! [`declared`] tells whether a document asks for `api:` at all, even one
//! that is refused: a node must not serve plain HTTP on its TCP port when
//! its config asked for TLS and could not be applied.

use crate::model::Api;
use crate::schema;
use crate::validate::{entry, join, key_of, Verdict, V};
use crate::yaml::{self, Node, Value};

/// The section's keys, all required.
pub const FIELDS: [&str; 3] = ["cert_file", "key_file", "client_ca_file"];

pub(crate) fn section(v: &mut V, k: &Node, n: &Node) {
    let path = "api";
    let Some(entries) = v.map(path, n) else {
        return;
    };
    v.known(path, entries, &FIELDS);
    let got = FIELDS.map(|field| {
        let fp = join(path, field);
        match entry(entries, field) {
            Some(val) => v.checked(&fp, &val, schema::abs_path),
            None => {
                v.err(&fp, k, "required");
                None
            }
        }
    });
    let [Some(cert_file), Some(key_file), Some(client_ca_file)] = got else {
        return;
    };
    v.item(
        path,
        k,
        Verdict::Applied,
        format!(
            "the API's TCP port serves HTTPS only, to clients with a certificate signed by {client_ca_file} (read when the API starts, at boot)"
        ),
    );
    v.report.config.api = Some(Api {
        cert_file,
        key_file,
        client_ca_file,
    });
}

/// Whether the document has a top-level `api` key, valid or not. A
/// document that is not YAML is scanned for a line starting `api:`.
pub fn declared(text: &str) -> bool {
    let text = text.trim_start_matches('\u{feff}');
    match yaml::parse(text) {
        Ok(root) => match &root.value {
            Value::Map(entries) => entries.iter().any(|(k, _)| key_of(k) == "api"),
            _ => false,
        },
        Err(_) => text.lines().any(|l| {
            l.strip_prefix("api")
                .is_some_and(|r| r.trim_start().starts_with(':'))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate;

    #[test]
    fn the_section() {
        let r = validate(
            "#cloud-config
hostname: n1
api:
  cert_file: /etc/keel/api.pem
  key_file: /etc/keel/api-key.pem
  client_ca_file: /etc/keel/ca.pem
",
        );
        assert!(r.accepted(), "{:#?}", r.errors);
        assert_eq!(
            r.config.api,
            Some(Api {
                cert_file: "/etc/keel/api.pem".into(),
                key_file: "/etc/keel/api-key.pem".into(),
                client_ca_file: "/etc/keel/ca.pem".into(),
            })
        );
        let item = r.items.iter().find(|i| i.path == "api").unwrap();
        assert_eq!((item.verdict, item.line), (Verdict::Applied, 3));
        assert!(item.note.contains("/etc/keel/ca.pem"), "{}", item.note);
        // Without the section: no TLS.
        assert_eq!(validate("#cloud-config\nhostname: n1\n").config.api, None);
    }

    fn errors(text: &str) -> Vec<String> {
        let r = validate(text);
        assert!(r.config.api.is_none(), "{:?}", r.config.api);
        assert!(r.items.iter().all(|i| i.path != "api"), "{:#?}", r.items);
        r.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn every_field_is_required() {
        assert_eq!(
            errors(
                "#cloud-config
api:
  cert_file: /etc/keel/api.pem
  key_file: /etc/keel/api-key.pem
"
            ),
            ["2:1: api.client_ca_file: required"]
        );
        assert_eq!(
            errors("#cloud-config\napi:\n"),
            [
                "2:1: api.cert_file: required",
                "2:1: api.key_file: required",
                "2:1: api.client_ca_file: required",
            ]
        );
    }

    #[test]
    fn paths_types_and_unknown_keys() {
        let got = errors(
            "#cloud-config
api:
  cert_file: etc/keel/api.pem
  key_file: /etc/keel/../api-key.pem
  client_ca_file: [/etc/keel/ca.pem]
  cert-file: /etc/keel/api.pem
",
        );
        let want = [
            "6:3: api.cert-file: unknown key \"cert-file\" (did you mean \"cert_file\"?)",
            "3:14: api.cert_file: \"etc/keel/api.pem\" is not an absolute path",
            "4:13: api.key_file: \"/etc/keel/../api-key.pem\" is not a clean path (no .., no NUL, at most 4096 bytes)",
            "5:19: api.client_ca_file: expected a string, found a list",
        ];
        assert_eq!(got, want);
        assert_eq!(
            errors("#cloud-config\napi: /etc/keel/api.pem\n"),
            ["2:6: api: expected a mapping, found a scalar"]
        );
        // A near miss at the top level.
        assert_eq!(
            errors("#cloud-config\napis: {}\n"),
            ["2:1: apis: unknown key \"apis\" (did you mean \"api\"?)"]
        );
    }

    #[test]
    fn declared_even_when_invalid() {
        assert!(declared("#cloud-config\napi:\n  cert_file: x\n"));
        assert!(declared("#cloud-config\napi: {}\n"));
        // Not YAML: the line scan still sees it.
        assert!(declared(
            "#cloud-config\napi:\n  cert_file: [\nhostname: x\n"
        ));
        assert!(declared("#cloud-config\napi :\n\t- x\n"));
        assert!(!declared("#cloud-config\nhostname: api\n"));
        assert!(!declared(
            "#cloud-config\nwrite_files:\n  - path: /etc/api\n    content: \"api: 1\"\n"
        ));
        assert!(!declared("#cloud-config\napis: {}\n"));
        assert!(!declared(""));
    }
}
