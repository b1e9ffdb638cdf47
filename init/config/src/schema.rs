//! The value checks of the dialect: each returns the problem with a value,
//! phrased for the error message, or the value as keel will use it.

use std::net::IpAddr;

use keel_types::{Bytes, Cidr, GoDuration, HttpUrl, Millis, Mode, Signal, WindowStart};

// The modelled types of the ground crate, as the validator's checks take
// them: the text in, the value or the message out.

/// File permissions as CoreOS read them (see [`Mode::from_yaml`]).
pub fn permissions(text: &str, quoted: bool) -> Result<u32, String> {
    Ok(Mode::from_yaml(text, quoted)?.bits())
}

pub fn cidr(s: &str) -> Result<Cidr, String> {
    Ok(Cidr::try_from(s)?)
}

pub fn ip(s: &str) -> Result<IpAddr, String> {
    Ok(keel_types::ip(s)?)
}

/// A Go duration (`1h30m`, `45s`, `500ms`).
pub fn duration(s: &str) -> Result<GoDuration, String> {
    Ok(GoDuration::try_from(s)?)
}

/// A duration of keel's own settings in milliseconds (see [`Millis`]).
pub fn duration_ms(s: &str) -> Result<u64, String> {
    Ok(Millis::try_from(s)?.0)
}

/// A size in bytes (see [`Bytes`]).
pub fn size(s: &str) -> Result<u64, String> {
    Ok(Bytes::try_from(s)?.0)
}

/// A stop signal (see [`Signal::stop`]).
pub fn stop_signal(s: &str) -> Result<Signal, String> {
    Ok(Signal::stop(s)?)
}

/// locksmith's window start: `[Day] HH:MM`.
pub fn window_start(s: &str) -> Result<WindowStart, String> {
    Ok(WindowStart::try_from(s)?)
}

/// A plain-scalar boolean as YAML 1.1 (and so CoreOS) read it.
pub fn bool_1_1(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            Some(false)
        }
        _ => None,
    }
}

/// A POSIX user or group name (what useradd accepts by default).
pub fn name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid name: 1-32 of a-z 0-9 _ -, starting with a letter or _"
        ))
    }
}

/// An absolute path without `..` or NUL.
pub fn abs_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path"));
    }
    if s.contains('\0') || s.split('/').any(|c| c == "..") || s.len() > 4096 {
        return Err(format!(
            "{s:?} is not a clean path (no .., no NUL, at most 4096 bytes)"
        ));
    }
    Ok(())
}

/// A host name: dot-separated labels of 1-63 letters, digits and hyphens.
pub fn hostname(s: &str) -> Result<(), String> {
    Ok(keel_types::hostname(s)?)
}

/// An http(s) URL with a host.
pub fn url(s: &str) -> Result<(), String> {
    http_url(s).map(|_| ())
}

/// An http(s) URL with a host, as a value.
pub fn http_url(s: &str) -> Result<HttpUrl, String> {
    Ok(HttpUrl::try_from(s)?)
}

/// A comma-separated list of URLs (etcd's flag syntax).
pub fn url_list(s: &str) -> Result<Vec<HttpUrl>, String> {
    Ok(keel_types::url_list(s)?)
}

/// An SSH public key line: a known key type, then base64.
pub fn ssh_key(s: &str) -> Result<(), String> {
    let mut parts = s.split_whitespace();
    let ty = parts.next().unwrap_or("");
    let blob = parts.next().unwrap_or("");
    let known = ty.starts_with("ssh-") || ty.starts_with("ecdsa-sha2-") || ty.starts_with("sk-");
    let b64 = !blob.is_empty()
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=');
    if known && b64 {
        Ok(())
    } else {
        Err(format!(
            "{} is not an SSH public key (ssh-ed25519 AAAA..., ssh-rsa ..., ecdsa-sha2-...)",
            shorten(s)
        ))
    }
}

/// A crypt(3) hash (`$id$...`): keel stores password hashes, never passwords.
pub fn passwd_hash(s: &str) -> Result<(), String> {
    if s.starts_with('$')
        && s.len() >= 13
        && !s.contains(':')
        && !s.chars().any(char::is_whitespace)
    {
        Ok(())
    } else {
        Err("is not a crypt(3) hash such as $6$salt$hash: keel stores hashes only".into())
    }
}

/// One DNS label (RFC 1123): 1-63 letters, digits and hyphens, not at
/// either end.
pub fn label(s: &str) -> Result<(), String> {
    if !s.contains('.') && hostname(s).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a host name label: 1-63 letters, digits and -, no dots"
        ))
    }
}

fn shorten(s: &str) -> String {
    if s.len() > 40 {
        format!(
            "{:?}...",
            &s[..s.char_indices().nth(37).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert!(name("core").is_ok() && name("_svc-1").is_ok());
        assert!(name("Core").is_err() && name("1a").is_err() && name(&"a".repeat(33)).is_err());
        assert!(abs_path("/etc/x").is_ok());
        assert!(abs_path("etc/x").is_err() && abs_path("/etc/../x").is_err());
        assert!(hostname("node-1.example.com").is_ok());
        assert!(hostname("-a").is_err() && hostname("a_b").is_err());
        assert!(
            url("http://10.0.0.1:2379").is_ok() && url("https://discovery.etcd.io/abc").is_ok()
        );
        assert!(url("http://[fe80::1]:2380").is_ok());
        assert!(
            url("10.0.0.1:2379").is_err()
                && url("http://:80").is_err()
                && url("http://h:99999").is_err()
        );
        assert_eq!(url_list("http://a:1, http://b:2").unwrap().len(), 2);
        assert!(ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3 me@host").is_ok());
        assert!(ssh_key("not a key").is_err());
        assert!(passwd_hash("$6$rounds=4096$salt$abcdefghijk").is_ok());
        assert!(passwd_hash("hunter2").is_err());
        assert!(label("web-1").is_ok());
        assert!(label("a.b").is_err() && label("-a").is_err() && label(&"a".repeat(64)).is_err());
        assert_eq!(bool_1_1("yes"), Some(true));
        assert_eq!(bool_1_1("Off"), Some(false));
        assert_eq!(bool_1_1("maybe"), None);
    }
}
