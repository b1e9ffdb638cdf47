//! Signals by name or number, as Docker takes them (`--stop-signal`, an
//! image's `StopSignal`).

use std::fmt;

use crate::Invalid;

/// A signal by its Linux number (1 to 64); shown by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

/// The names of the standard signals (x86-64 numbering), without `SIG`.
/// Where two names share a number (IOT, POLL) the first is shown.
pub const SIGNAL_NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The first and last real-time signals a program may use (glibc keeps
/// 32 and 33).
pub const SIGRTMIN: i32 = 34;
pub const SIGRTMAX: i32 = 64;

impl Signal {
    pub const TERM: Signal = Signal(15);
    pub const KILL: Signal = Signal(9);
    pub const STOP: Signal = Signal(19);

    /// A number from 1 to 64, or a name with or without `SIG` in any case
    /// (`SIGTERM`, `term`), or `SIGRTMIN+N` / `SIGRTMAX-N`. Any signal a
    /// process can be sent is a signal here; [`Signal::stop`] refuses the
    /// ones that cannot stop a container.
    pub fn parse(s: &str) -> Result<Signal, Invalid> {
        let bad = || {
            Invalid(format!(
                "{s:?} is not a signal (a name such as SIGTERM or TERM, or a number from 1 to 64)"
            ))
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

    /// A stop signal: a signal other than SIGKILL or SIGSTOP (the grace
    /// period ends in `cgroup.kill` anyway; SIGSTOP would only freeze it).
    pub fn stop(s: &str) -> Result<Signal, Invalid> {
        let sig = Signal::parse(s)?;
        if sig == Signal::KILL || sig == Signal::STOP {
            return Err(Invalid(format!(
                "{s:?}: {sig} cannot be a stop signal (the grace period ends with every process killed anyway)"
            )));
        }
        Ok(sig)
    }
}

impl TryFrom<&str> for Signal {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Signal, Invalid> {
        Signal::parse(s)
    }
}

/// `SIGTERM`, `SIGRTMIN+3`; 32 and 33 (glibc's own) by number.
impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SIGNAL_NAMES.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None if self.0 >= SIGRTMIN => write!(f, "SIGRTMIN+{}", self.0 - SIGRTMIN),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_numbers_and_real_time() {
        let p = |s: &str| Signal::parse(s).map(|s| s.0);
        assert_eq!(p("SIGTERM"), Ok(15));
        assert_eq!(p("quit"), Ok(3));
        assert_eq!(p("9"), Ok(9));
        assert_eq!(p("SIGRTMIN+3"), Ok(37));
        assert_eq!(p("RTMAX-1"), Ok(63));
        assert!(p("65").is_err() && p("0").is_err() && p("SIGFOO").is_err());
        assert_eq!(
            Signal::stop("KILL").unwrap_err().to_string(),
            "\"KILL\": SIGKILL cannot be a stop signal (the grace period ends with every process killed anyway)"
        );
        assert_eq!(Signal(37).to_string(), "SIGRTMIN+3");
        assert_eq!(Signal(6).to_string(), "SIGABRT");
        for (s, n) in [
            ("term", 15),
            ("15", 15),
            ("sigwinch", 28),
            ("SIGRTMIN", 34),
            ("SIGRTMAX", 64),
            ("64", 64),
        ] {
            assert_eq!(p(s), Ok(n), "{s}");
        }
        for s in [
            "", "0", "65", "-1", "SIGFOO", "SIG", "RTMIN+31", "RTMAX-31", "RTMIN-1", "TERM ", "1.5",
        ] {
            assert!(
                Signal::parse(s)
                    .unwrap_err()
                    .to_string()
                    .contains("is not a signal"),
                "{s:?}"
            );
        }
        assert_eq!(Signal(15).to_string(), "SIGTERM");
        assert!(Signal::stop("stop").is_err());
        assert_eq!(Signal::stop("SIGINT"), Ok(Signal(2)));
    }

    proptest! {
        #[test]
        fn signals_parse_from_what_they_show(n in 1i32..=64) {
            prop_assert_eq!(Signal::parse(&Signal(n).to_string()), Ok(Signal(n)));
        }
    }
}
