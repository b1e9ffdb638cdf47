//! The update agent's and reboot coordinator's settings (`coreos.update`,
//! `coreos.locksmith`): the reboot strategy, the reboot window and the
//! group a node updates and reboots with.

use std::fmt;

use crate::Invalid;

/// When an installed update is applied (`reboot-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RebootStrategy {
    /// As soon as the update is installed.
    Reboot,
    /// After taking a slot of the cluster's reboot semaphore in the KV.
    EtcdLock,
    /// `etcd-lock` on a member of a KV cluster, else `reboot` (CoreOS's
    /// default).
    #[default]
    BestEffort,
    /// Never by itself.
    Off,
}

const STRATEGIES: [(RebootStrategy, &str); 4] = [
    (RebootStrategy::Reboot, "reboot"),
    (RebootStrategy::EtcdLock, "etcd-lock"),
    (RebootStrategy::BestEffort, "best-effort"),
    (RebootStrategy::Off, "off"),
];

impl TryFrom<&str> for RebootStrategy {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<RebootStrategy, Invalid> {
        STRATEGIES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(r, _)| *r)
            .ok_or_else(|| {
                Invalid(format!(
                    "{s:?} is not reboot, etcd-lock, best-effort or off"
                ))
            })
    }
}

impl fmt::Display for RebootStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = STRATEGIES
            .iter()
            .find(|(r, _)| r == self)
            .map(|(_, n)| *n)
            .unwrap_or("?");
        f.write_str(name)
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// A day of the week, Sunday first (locksmith's `Sun`..`Sat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weekday(u8);

impl Weekday {
    /// 0 for Sunday to 6 for Saturday.
    pub fn from_sunday(n: u8) -> Option<Weekday> {
        (n < 7).then_some(Weekday(n))
    }

    pub fn days_from_sunday(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DAYS[usize::from(self.0)])
    }
}

/// locksmith's `window-start`: `[Day] HH:MM`; without a day, every day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowStart {
    pub day: Option<Weekday>,
    pub hour: u8,
    pub minute: u8,
}

impl TryFrom<&str> for WindowStart {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<WindowStart, Invalid> {
        let (day, time) = match s.split_once(' ') {
            Some((d, t)) => (Some(d), t),
            None => (None, s),
        };
        let day = match day {
            Some(d) => Some(
                DAYS.iter()
                    .position(|x| x.eq_ignore_ascii_case(d))
                    .and_then(|n| Weekday::from_sunday(n as u8))
                    .ok_or_else(|| Invalid(format!("{s:?}: {d:?} is not a day (Sun..Sat)")))?,
            ),
            None => None,
        };
        let two = |x: &str| {
            (!x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit()))
                .then(|| x.parse::<u8>().ok())
                .flatten()
        };
        time.split_once(':')
            .and_then(|(h, m)| Some((two(h)?, two(m)?)))
            .filter(|(h, m)| *h < 24 && *m < 60)
            .map(|(hour, minute)| WindowStart { day, hour, minute })
            .ok_or_else(|| Invalid(format!("{s:?} is not [Day] HH:MM")))
    }
}

/// `Thu 04:00`, `04:00`.
impl fmt::Display for WindowStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = self.day {
            write!(f, "{d} ")?;
        }
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// An update group (`coreos.update.group`, the update service's track) or
/// a reboot group (`coreos.locksmith.group`, a key of the reboot
/// semaphore): 1-64 of `A-Z a-z 0-9 . _ -`, not starting with a dot, so it
/// is one path component of a KV key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group(String);

impl Group {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Group {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Group, Invalid> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            Ok(Group(s.to_string()))
        } else {
            Err(Invalid(format!(
                "{s:?} is not a group name (1-64 of A-Z a-z 0-9 . _ -, not starting with a dot)"
            )))
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strategies_and_windows() {
        assert_eq!(
            RebootStrategy::try_from("etcd-lock"),
            Ok(RebootStrategy::EtcdLock)
        );
        assert_eq!(
            RebootStrategy::try_from("sometimes")
                .unwrap_err()
                .to_string(),
            "\"sometimes\" is not reboot, etcd-lock, best-effort or off"
        );
        let w = WindowStart::try_from("thu 04:00").unwrap();
        assert_eq!(w.day.map(Weekday::days_from_sunday), Some(4));
        assert_eq!(w.to_string(), "Thu 04:00");
        assert_eq!(
            WindowStart::try_from("Fun 04:00").unwrap_err().to_string(),
            "\"Fun 04:00\": \"Fun\" is not a day (Sun..Sat)"
        );
        assert_eq!(
            WindowStart::try_from("24:00").unwrap_err().to_string(),
            "\"24:00\" is not [Day] HH:MM"
        );
        assert!(WindowStart::try_from("04:00").is_ok());
        assert!(WindowStart::try_from("Thursday 4").is_err());
        assert!(WindowStart::try_from("25:00").is_err());
    }

    #[test]
    fn groups_are_one_key_component() {
        for ok in ["stable", "beta", "edge-eu_1.2", "0f3c9a"] {
            assert_eq!(
                Group::try_from(ok).map(|g| g.to_string()),
                Ok(ok.to_string())
            );
        }
        for bad in ["", ".", "..", "a/b", "a b", &"g".repeat(65)] {
            assert_eq!(
                Group::try_from(bad).unwrap_err().to_string(),
                format!("{bad:?} is not a group name (1-64 of A-Z a-z 0-9 . _ -, not starting with a dot)")
            );
        }
    }

    proptest! {
        #[test]
        fn windows_parse_from_what_they_show(day in proptest::option::of(0u8..7), hour in 0u8..24, minute in 0u8..60) {
            let w = WindowStart { day: day.and_then(Weekday::from_sunday), hour, minute };
            prop_assert_eq!(WindowStart::try_from(w.to_string().as_str()), Ok(w));
        }

        #[test]
        fn groups_parse_from_what_they_show(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}") {
            let g = Group::try_from(s.as_str()).unwrap();
            prop_assert_eq!(Group::try_from(g.to_string().as_str()), Ok(g));
        }

        #[test]
        fn strategies_parse_from_what_they_show(i in 0usize..4) {
            let r = STRATEGIES[i].0;
            prop_assert_eq!(RebootStrategy::try_from(r.to_string().as_str()), Ok(r));
        }
    }
}
