//! HTTP form handling the way etcd's Go server does it: query string and
//! `application/x-www-form-urlencoded` body merged (body values first),
//! Go's `strconv` rules for booleans and integers, Go's path cleaning.

/// A decoded form: every (name, value) pair in order, body pairs first.
#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

/// A field's value is not what Go's `strconv` accepts (the caller names
/// the field in its error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadValue;

/// A malformed form (bad `%` escape, not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormError(pub String);

/// `%XX` and `+` decoding, as Go's `url.QueryUnescape`.
pub fn unescape(s: &str, plus_is_space: bool) -> Result<String, FormError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        FormError(format!(
                            "invalid URL escape {:?}",
                            String::from_utf8_lossy(&b[i..(i + 3).min(b.len())])
                        ))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FormError("not UTF-8".into()))
}

impl Form {
    /// Adds the pairs of `a=1&b=2` (empty segments skipped; a pair without
    /// `=` has an empty value). A `;` is refused, as Go does since 1.17.
    pub fn add(&mut self, encoded: &str) -> Result<(), FormError> {
        for part in encoded.split('&').filter(|p| !p.is_empty()) {
            if part.contains(';') {
                return Err(FormError("invalid semicolon separator in query".into()));
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            self.pairs.push((unescape(k, true)?, unescape(v, true)?));
        }
        Ok(())
    }

    /// Whether the field is present (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// The first value, `""` when absent (Go's `FormValue`).
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Go's `strconv.ParseBool` on the first value; absent is false.
    pub fn bool(&self, name: &str) -> Result<bool, BadValue> {
        match self.get(name) {
            None => Ok(false),
            Some(v) => parse_bool(v),
        }
    }

    /// Go's `strconv.ParseUint(v, 10, 64)` on the first value; absent is 0.
    pub fn uint(&self, name: &str) -> Result<u64, BadValue> {
        match self.get(name) {
            None => Ok(0),
            Some(v) => parse_uint(v),
        }
    }
}

pub fn parse_bool(v: &str) -> Result<bool, BadValue> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(BadValue),
    }
}

pub fn parse_uint(v: &str) -> Result<u64, BadValue> {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(BadValue);
    }
    v.parse().map_err(|_| BadValue)
}

/// Go's `url.PathEscape` for a whole path (`/` kept): what a redirect's
/// `Location` carries.
pub fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `path.Clean`.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// What Go's `ServeMux` redirects to: the cleaned path, keeping a trailing
/// `/`; `None` when the path is already clean.
pub fn mux_redirect(p: &str) -> Option<String> {
    if p.is_empty() {
        return Some("/".into());
    }
    let mut c = clean(p);
    if p.ends_with('/') && c != "/" {
        c.push('/');
    }
    (c != p).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_go() {
        let mut f = Form::default();
        f.add("value=a+b%20c&ttl=&dir").unwrap();
        f.add("value=second").unwrap();
        assert_eq!(f.value("value"), "a b c");
        assert!(f.has("ttl") && f.get("ttl") == Some(""));
        assert!(f.has("dir"));
        assert_eq!(f.bool("dir"), Err(BadValue));
        assert_eq!(f.bool("missing"), Ok(false));
        assert!(Form::default().add("a=%zz").is_err());
        assert!(Form::default().add("a=1;b=2").is_err());
        assert_eq!(parse_uint("+5"), Err(BadValue));
        assert_eq!(parse_uint("007"), Ok(7));
        assert_eq!(parse_bool("T"), Ok(true));
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean("/a//b/./c/.."), "/a/b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(mux_redirect("/v2/keys//a"), Some("/v2/keys/a".into()));
        assert_eq!(mux_redirect("/v2/keys/a/"), None);
        assert_eq!(mux_redirect("/v2/keys/./a/"), Some("/v2/keys/a/".into()));
        assert_eq!(mux_redirect("/v2/keys"), None);
    }
}
