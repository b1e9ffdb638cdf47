//! The value checks of the dialect: each returns the problem with a value,
//! phrased for the error message, or the value as keel will use it.

use std::net::IpAddr;

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

/// File permissions as CoreOS read them: an unquoted `0644` is the YAML 1.1
/// octal integer 0644; a quoted string is parsed as octal. An unquoted
/// `644` is the decimal integer 644 in YAML 1.1 (mode 01204 to CoreOS):
/// almost always a mistake, so it is an error that says so.
pub fn permissions(text: &str, quoted: bool) -> Result<u32, String> {
    let t = text.trim();
    let octal = |s: &str| u32::from_str_radix(s, 8).ok();
    let mode = if quoted {
        octal(t.strip_prefix("0o").unwrap_or(t))
            .ok_or_else(|| format!("{text:?} is not an octal mode"))?
    } else if let Some(rest) = t.strip_prefix("0o") {
        octal(rest).ok_or_else(|| format!("{text} is not an octal mode"))?
    } else if t.len() > 1 && t.starts_with('0') {
        octal(&t[1..]).ok_or_else(|| format!("{text} is not an octal mode"))?
    } else if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
        let n: u32 = t.parse().map_err(|_| format!("{text} is not a mode"))?;
        return Err(format!(
            "{text} unquoted is the decimal number {n} in YAML 1.1 (mode {n:o} octal, as CoreOS read it): write 0{text} or '{text}'"
        ));
    } else {
        return Err(format!("{text:?} is not an octal mode such as 0644"));
    };
    if mode > 0o7777 {
        return Err(format!("{text} is over 07777"));
    }
    Ok(mode)
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
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid host name"))
    }
}

/// An http(s) URL with a host.
pub fn url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL"))?;
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed [ in host"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{s:?}: {h} is not an IPv6 address"));
        }
        if let Some(p) = after.strip_prefix(':') {
            port(s, p)?;
        }
        return Ok(());
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => {
                port(s, p)?;
                h
            }
            None => host_port,
        }
    };
    if host.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} is not a URL with a host"));
    }
    if host.parse::<IpAddr>().is_err() {
        hostname(host).map_err(|_| format!("{s:?}: {host:?} is not a host name or address"))?;
    }
    Ok(())
}

fn port(s: &str, p: &str) -> Result<(), String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(format!("{s:?}: {p:?} is not a port")),
    }
}

/// A comma-separated list of URLs (etcd's flag syntax).
pub fn url_list(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(|u| url(u.trim()).map(|()| u.trim().to_string()))
        .collect()
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6.
pub fn cidr(s: &str) -> Result<(), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match p.parse::<u8>() {
        Ok(n) if n <= max => Ok(()),
        _ => Err(format!("{s:?}: prefix {p:?} is not 0-{max}")),
    }
}

pub fn ip(s: &str) -> Result<(), String> {
    s.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{s:?} is not an IP address"))
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

/// A Go-style duration (`1h30m`, `45s`, `500ms`).
pub fn duration(s: &str) -> Result<(), String> {
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{s:?} is not a duration such as 1h30m"));
        }
        rest = &rest[digits..];
        let unit = ["ms", "us", "ns", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return Err(format!("{s:?} is not a duration such as 1h30m")),
        }
    }
    Ok(())
}

/// A duration in milliseconds: a number with a unit (`ms`, `s`, `m`, `h`),
/// or several (`1m30s`). A bare number is refused: seconds or
/// milliseconds would be a guess.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration such as 500ms, 10s, 5m or 1h");
    let mut rest = s;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, ms) = [("ms", 1), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(ms)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    Ok(total)
}

/// A size in bytes: a number, optionally with `K`, `M` or `G` (powers of
/// 1024, either case).
pub fn size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size such as 512K, 256M, 2G or a number of bytes");
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(bad()),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// One DNS label (RFC 1123): 1-63 letters, digits and hyphens, not at
/// either end.
/// A signal as Docker takes one (`--stop-signal`, an image's
/// `StopSignal`): a number from 1 to 64, or a name with or without `SIG`
/// in any case (`SIGTERM`, `term`), or `SIGRTMIN+N` / `SIGRTMAX-N`.
/// SIGKILL and SIGSTOP are refused as stop signals elsewhere; here any
/// signal a process can be sent is a signal.
pub fn signal(s: &str) -> Result<crate::model::Signal, String> {
    use crate::model::{Signal, SIGNAL_NAMES, SIGRTMAX, SIGRTMIN};
    let bad = || {
        format!("{s:?} is not a signal (a name such as SIGTERM or TERM, or a number from 1 to 64)")
    };
    if s.len() > 16 {
        return Err(bad());
    }
    if let Ok(n) = s.parse::<i32>() {
        return (1..=SIGRTMAX)
            .contains(&n)
            .then_some(Signal(n))
            .ok_or_else(bad);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some((_, n)) = SIGNAL_NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(Signal(*n));
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<Signal> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().ok()?
        };
        let n = base + sign * off;
        (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(Signal(n))
    };
    let found = if let Some(r) = name.strip_prefix("RTMIN") {
        match r.strip_prefix('+') {
            Some(off) => rt(SIGRTMIN, off, 1),
            None if r.is_empty() => rt(SIGRTMIN, "", 1),
            None => None,
        }
    } else if let Some(r) = name.strip_prefix("RTMAX") {
        match r.strip_prefix('-') {
            Some(off) => rt(SIGRTMAX, off, -1),
            None if r.is_empty() => rt(SIGRTMAX, "", 1),
            None => None,
        }
    } else {
        None
    };
    found.ok_or_else(bad)
}

/// A stop signal: a [`signal`] other than SIGKILL or SIGSTOP (the grace
/// period ends in `cgroup.kill` anyway; SIGSTOP would only freeze it).
pub fn stop_signal(s: &str) -> Result<crate::model::Signal, String> {
    let sig = signal(s)?;
    if sig.0 == 9 || sig.0 == 19 {
        return Err(format!(
            "{s:?}: {sig} cannot be a stop signal (the grace period ends with every process killed anyway)"
        ));
    }
    Ok(sig)
}

pub fn label(s: &str) -> Result<(), String> {
    if !s.contains('.') && hostname(s).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a host name label: 1-63 letters, digits and -, no dots"
        ))
    }
}

/// locksmith's window start: `[Day] HH:MM`.
pub fn window_start(s: &str) -> Result<(), String> {
    let (day, time) = match s.split_once(' ') {
        Some((d, t)) => (Some(d), t),
        None => (None, s),
    };
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    if let Some(d) = day {
        if !days.iter().any(|x| x.eq_ignore_ascii_case(d)) {
            return Err(format!("{s:?}: {d:?} is not a day (Sun..Sat)"));
        }
    }
    let ok = time
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
        .is_some_and(|(h, m)| h < 24 && m < 60);
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not [Day] HH:MM"))
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
    fn permissions_as_coreos_read_them() {
        assert_eq!(permissions("0644", false), Ok(0o644));
        assert_eq!(permissions("0644", true), Ok(0o644));
        assert_eq!(permissions("644", true), Ok(0o644));
        assert_eq!(permissions("0o600", false), Ok(0o600));
        assert_eq!(permissions("04755", false), Ok(0o4755));
        let e = permissions("644", false).unwrap_err();
        assert!(
            e.contains("decimal number 644") && e.contains("1204"),
            "{e}"
        );
        assert!(permissions("0999", false).is_err());
        assert!(permissions("017777", false).is_err());
        assert!(permissions("rw-r--r--", true).is_err());
    }

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
        assert!(cidr("10.0.0.5/24").is_ok() && cidr("fd00::1/64").is_ok());
        assert!(cidr("10.0.0.5/33").is_err() && cidr("10.0.0.5").is_err() && cidr("x/1").is_err());
        assert!(ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3 me@host").is_ok());
        assert!(ssh_key("not a key").is_err());
        assert!(passwd_hash("$6$rounds=4096$salt$abcdefghijk").is_ok());
        assert!(passwd_hash("hunter2").is_err());
        assert!(duration("1h30m").is_ok() && duration("500ms").is_ok());
        assert!(duration("1 hour").is_err() && duration("").is_err());
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("1m30s"), Ok(90_000));
        assert_eq!(duration_ms("1h"), Ok(3_600_000));
        assert!(duration_ms("10").unwrap_err().contains("not a duration"));
        assert!(
            duration_ms("1.5s").is_err() && duration_ms("").is_err() && duration_ms("5d").is_err()
        );
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert!(size("1.5G").is_err() && size("M").is_err() && size("10T").is_err());
        assert!(size("99999999999999G").unwrap_err().contains("too large"));
        assert!(label("web-1").is_ok());
        assert!(label("a.b").is_err() && label("-a").is_err() && label(&"a".repeat(64)).is_err());
        assert!(window_start("Thu 04:00").is_ok() && window_start("04:00").is_ok());
        assert!(window_start("Thursday 4").is_err() && window_start("25:00").is_err());
        assert_eq!(bool_1_1("yes"), Some(true));
        assert_eq!(bool_1_1("Off"), Some(false));
        assert_eq!(bool_1_1("maybe"), None);
    }

    #[test]
    fn signals_as_docker_takes_them() {
        use crate::model::Signal;
        for (s, n) in [
            ("SIGTERM", 15),
            ("term", 15),
            ("15", 15),
            ("SIGQUIT", 3),
            ("sigwinch", 28),
            ("SIGRTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("RTMAX-1", 63),
            ("SIGRTMAX", 64),
            ("64", 64),
        ] {
            assert_eq!(signal(s), Ok(Signal(n)), "{s}");
        }
        for s in [
            "", "0", "65", "-1", "SIGFOO", "SIG", "RTMIN+31", "RTMAX-31", "RTMIN-1", "TERM ", "1.5",
        ] {
            assert!(signal(s).unwrap_err().contains("is not a signal"), "{s:?}");
        }
        assert_eq!(Signal(15).to_string(), "SIGTERM");
        assert_eq!(Signal(37).to_string(), "SIGRTMIN+3");
        assert!(stop_signal("SIGKILL")
            .unwrap_err()
            .contains("cannot be a stop signal"));
        assert!(stop_signal("stop").is_err());
        assert_eq!(stop_signal("SIGINT"), Ok(Signal(2)));
    }
}
