//! Durations and sizes with their units, and octal file modes.

use std::fmt;

use crate::Invalid;

/// A duration of keel's own settings, in milliseconds: a number with a
/// unit (`ms`, `s`, `m`, `h`), or several (`1m30s`). A bare number is
/// refused: seconds or milliseconds would be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

const MS_UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)];

impl TryFrom<&str> for Millis {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Millis, Invalid> {
        let bad = || {
            Invalid(format!(
                "{s:?} is not a duration such as 500ms, 10s, 5m or 1h"
            ))
        };
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
            // "ms" before "m": the longer unit first.
            let (unit, ms) = [("ms", 1), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
                .into_iter()
                .find(|(u, _)| rest.starts_with(u))
                .ok_or_else(bad)?;
            rest = &rest[unit.len()..];
            total = n
                .checked_mul(ms)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(|| Invalid(format!("{s:?} is too long")))?;
        }
        Ok(Millis(total))
    }
}

/// `1h30m`, `10s`, `1s500ms`, `0ms`: the largest units first.
impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0ms");
        }
        let mut left = self.0;
        for (unit, ms) in MS_UNITS {
            if left >= ms {
                write!(f, "{}{unit}", left / ms)?;
                left %= ms;
            }
        }
        Ok(())
    }
}

/// A size in bytes: a number, optionally with `K`, `M` or `G` (powers of
/// 1024, either case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl TryFrom<&str> for Bytes {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Bytes, Invalid> {
        let bad = || {
            Invalid(format!(
                "{s:?} is not a size such as 512K, 256M, 2G or a number of bytes"
            ))
        };
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
            .map(Bytes)
            .ok_or_else(|| Invalid(format!("{s:?} is too large")))
    }
}

/// The largest unit that divides the size: `256M`, `1536K`, `1000`.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, b) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if self.0 != 0 && self.0.is_multiple_of(b) {
                return write!(f, "{}{unit}", self.0 / b);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A Go duration (`1h30m`, `45s`, `1.5h`, `500ms`), as locksmith's
/// `window-length` and etcd's flags take one; kept in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub u64);

impl GoDuration {
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }
}

const GO_UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl TryFrom<&str> for GoDuration {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<GoDuration, Invalid> {
        let bad = || Invalid(format!("{s:?} is not a duration such as 1h30m"));
        if s.is_empty() {
            return Err(Invalid("empty duration".into()));
        }
        if s == "0" {
            return Ok(GoDuration(0));
        }
        let mut rest = s;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let (int, frac) = rest[..end].split_once('.').unwrap_or((&rest[..end], ""));
            if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
                return Err(bad());
            }
            rest = &rest[end..];
            // The longest unit that matches: "ms" is not "m" then "s".
            let (unit, ns) = GO_UNITS
                .iter()
                .filter(|(u, _)| rest.starts_with(u))
                .max_by_key(|(u, _)| u.len())
                .ok_or_else(bad)?;
            rest = &rest[unit.len()..];
            let whole: u128 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| bad())?
            };
            let mut part = whole * u128::from(*ns);
            let mut scale = u128::from(*ns);
            for d in frac.bytes().take(18) {
                scale /= 10;
                part += u128::from(d - b'0') * scale;
            }
            total += part;
            if total > u128::from(u64::MAX) {
                return Err(Invalid(format!("{s:?} is too long")));
            }
        }
        Ok(GoDuration(total as u64))
    }
}

/// As Go's `Duration.String` for whole seconds and above (`1h30m0s`,
/// `45s`); sub-second amounts in the unit that keeps them whole.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns == 0 {
            return f.write_str("0s");
        }
        if !ns.is_multiple_of(1_000_000_000) {
            let (n, unit) = if ns.is_multiple_of(1_000_000) {
                (ns / 1_000_000, "ms")
            } else if ns.is_multiple_of(1_000) {
                (ns / 1_000, "us")
            } else {
                (ns, "ns")
            };
            return write!(f, "{n}{unit}");
        }
        let s = ns / 1_000_000_000;
        let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
        if h > 0 {
            write!(f, "{h}h{m}m{sec}s")
        } else if m > 0 {
            write!(f, "{m}m{sec}s")
        } else {
            write!(f, "{sec}s")
        }
    }
}

/// File permissions (`write_files` `permissions:`), at most 07777.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u32);

impl Mode {
    pub fn new(bits: u32) -> Option<Mode> {
        (bits <= 0o7777).then_some(Mode(bits))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// As CoreOS read them from YAML: an unquoted `0644` is the YAML 1.1
    /// octal integer 0644; a quoted string is parsed as octal. An unquoted
    /// `644` is the decimal integer 644 in YAML 1.1 (mode 01204 to
    /// CoreOS): almost always a mistake, so it is an error that says so.
    pub fn from_yaml(text: &str, quoted: bool) -> Result<Mode, Invalid> {
        let t = text.trim();
        let octal = |s: &str| u32::from_str_radix(s, 8).ok();
        let bits = if quoted {
            octal(t.strip_prefix("0o").unwrap_or(t))
                .ok_or_else(|| Invalid(format!("{text:?} is not an octal mode")))?
        } else if let Some(rest) = t.strip_prefix("0o") {
            octal(rest).ok_or_else(|| Invalid(format!("{text} is not an octal mode")))?
        } else if t.len() > 1 && t.starts_with('0') {
            octal(&t[1..]).ok_or_else(|| Invalid(format!("{text} is not an octal mode")))?
        } else if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            let n: u32 = t
                .parse()
                .map_err(|_| Invalid(format!("{text} is not a mode")))?;
            return Err(Invalid(format!(
                "{text} unquoted is the decimal number {n} in YAML 1.1 (mode {n:o} octal, as CoreOS read it): write 0{text} or '{text}'"
            )));
        } else {
            return Err(Invalid(format!(
                "{text:?} is not an octal mode such as 0644"
            )));
        };
        Mode::new(bits).ok_or_else(|| Invalid(format!("{text} is over 07777")))
    }
}

/// The quoted form: octal digits, with or without a leading `0o`.
impl TryFrom<&str> for Mode {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Mode, Invalid> {
        Mode::from_yaml(s, true)
    }
}

/// `0644`, `04755`.
impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn millis() {
        let p = |s: &str| Millis::try_from(s).map(|m| m.0);
        assert_eq!(p("500ms"), Ok(500));
        assert_eq!(p("1m30s"), Ok(90_000));
        assert_eq!(p("2h"), Ok(7_200_000));
        assert!(p("10").is_err() && p("").is_err() && p("1d").is_err());
        assert_eq!(Millis(90_500).to_string(), "1m30s500ms");
        assert_eq!(p("1h"), Ok(3_600_000));
        assert!(p("10").unwrap_err().to_string().contains("not a duration"));
        assert!(p("1.5s").is_err() && p("5d").is_err());
    }

    #[test]
    fn sizes() {
        let p = |s: &str| Bytes::try_from(s).map(|b| b.0);
        assert_eq!(p("512K"), Ok(512 << 10));
        assert_eq!(p("2g"), Ok(2 << 30));
        assert_eq!(p("1000"), Ok(1000));
        assert!(p("1T").is_err() && p("").is_err() && p("K").is_err());
        assert_eq!(Bytes(1536 << 10).to_string(), "1536K");
        assert_eq!(p("64M"), Ok(64 << 20));
        assert_eq!(p("512k"), Ok(512 << 10));
        assert!(p("1.5G").is_err() && p("M").is_err() && p("10T").is_err());
        assert!(p("99999999999999G")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn go_durations() {
        let p = |s: &str| GoDuration::try_from(s).map(|d| d.0);
        assert_eq!(p("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(p("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(p("500ms"), Ok(500_000_000));
        assert_eq!(p("0"), Ok(0));
        assert_eq!(
            p("1x").unwrap_err().to_string(),
            "\"1x\" is not a duration such as 1h30m"
        );
        assert_eq!(p("").unwrap_err().to_string(), "empty duration");
        assert_eq!(GoDuration(5_400_000_000_000).to_string(), "1h30m0s");
        assert!(p("1 hour").is_err());
    }

    #[test]
    fn modes_as_coreos_read_them() {
        let y = |s: &str, q: bool| Mode::from_yaml(s, q).map(Mode::bits);
        assert_eq!(y("0644", false), Ok(0o644));
        assert_eq!(y("644", true), Ok(0o644));
        assert_eq!(y("0o600", false), Ok(0o600));
        let e = y("644", false).unwrap_err().to_string();
        assert!(
            e.contains("decimal number 644") && e.contains("1204"),
            "{e}"
        );
        assert!(y("017777", false).is_err());
        assert_eq!(y("0644", true), Ok(0o644));
        assert_eq!(y("04755", false), Ok(0o4755));
        assert!(y("0999", false).is_err());
        assert!(y("rw-r--r--", true).is_err());
    }

    proptest! {
        #[test]
        fn millis_parse_from_what_they_show(n in any::<u64>()) {
            prop_assert_eq!(Millis::try_from(Millis(n).to_string().as_str()), Ok(Millis(n)));
        }

        #[test]
        fn sizes_parse_from_what_they_show(n in any::<u64>()) {
            prop_assert_eq!(Bytes::try_from(Bytes(n).to_string().as_str()), Ok(Bytes(n)));
        }

        #[test]
        fn go_durations_parse_from_what_they_show(n in any::<u64>()) {
            let d = GoDuration(n);
            prop_assert_eq!(GoDuration::try_from(d.to_string().as_str()), Ok(d));
        }

        #[test]
        fn modes_parse_from_what_they_show(bits in 0u32..=0o7777) {
            let m = Mode::new(bits).unwrap();
            prop_assert_eq!(Mode::try_from(m.to_string().as_str()), Ok(m));
        }
    }
}
