//! Resource limits (`rlimits: {nofile: 1024}`, `--ulimit`): setrlimit(2)'s
//! resources by name, and a soft and hard limit.

use std::fmt;

use crate::Invalid;

/// One of setrlimit(2)'s resources. The discriminant is the kernel's
/// number (include/uapi/asm-generic/resource.h, which x86-64 uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Resource {
    Cpu = 0,
    Fsize = 1,
    Data = 2,
    Stack = 3,
    Core = 4,
    Rss = 5,
    Nproc = 6,
    Nofile = 7,
    Memlock = 8,
    As = 9,
    Locks = 10,
    Sigpending = 11,
    Msgqueue = 12,
    Nice = 13,
    Rtprio = 14,
    Rttime = 15,
}

/// Every resource by the name `rlimits:` takes (setrlimit's without
/// `RLIMIT_`, lower case), in name order.
const TABLE: [(Resource, &str); 16] = [
    (Resource::As, "as"),
    (Resource::Core, "core"),
    (Resource::Cpu, "cpu"),
    (Resource::Data, "data"),
    (Resource::Fsize, "fsize"),
    (Resource::Locks, "locks"),
    (Resource::Memlock, "memlock"),
    (Resource::Msgqueue, "msgqueue"),
    (Resource::Nice, "nice"),
    (Resource::Nofile, "nofile"),
    (Resource::Nproc, "nproc"),
    (Resource::Rss, "rss"),
    (Resource::Rtprio, "rtprio"),
    (Resource::Rttime, "rttime"),
    (Resource::Sigpending, "sigpending"),
    (Resource::Stack, "stack"),
];

impl Resource {
    /// Every name, in name order (for "unknown key" and "did you mean").
    pub fn names() -> impl Iterator<Item = &'static str> {
        TABLE.iter().map(|(_, n)| *n)
    }

    /// Every resource.
    pub fn all() -> impl Iterator<Item = Resource> {
        TABLE.iter().map(|(r, _)| *r)
    }

    /// The kernel's number, for setrlimit(2).
    pub fn number(self) -> u32 {
        u32::from(self as u8)
    }

    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

impl TryFrom<&str> for Resource {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Resource, Invalid> {
        TABLE
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(r, _)| *r)
            .ok_or_else(|| {
                let hint = crate::text::nearest(s, Resource::names())
                    .map(|n| format!(" (did you mean {n:?}?)"))
                    .unwrap_or_default();
                Invalid(format!("unknown key {s:?}{hint}"))
            })
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A soft and a hard limit; `u64::MAX` is unlimited (RLIM_INFINITY).
/// Soft is never over hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    soft: u64,
    hard: u64,
}

impl Limits {
    pub const UNLIMITED: u64 = u64::MAX;

    /// Soft and hard, or None when soft is over hard.
    pub fn new(soft: u64, hard: u64) -> Option<Limits> {
        (soft <= hard).then_some(Limits { soft, hard })
    }

    pub fn soft(self) -> u64 {
        self.soft
    }

    pub fn hard(self) -> u64 {
        self.hard
    }
}

/// `N`, `unlimited` (or `infinity`), or `SOFT:HARD` (each a number or
/// `unlimited`), soft not over hard.
impl TryFrom<&str> for Limits {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<Limits, Invalid> {
        let one = |x: &str| match x {
            "unlimited" | "infinity" => Ok(u64::MAX),
            n => n
                .parse::<u64>()
                .map_err(|_| Invalid(format!("{x:?} is not a number or unlimited"))),
        };
        let (soft, hard) = match s.split_once(':') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let v = one(s)?;
                (v, v)
            }
        };
        Limits::new(soft, hard)
            .ok_or_else(|| Invalid(format!("the soft limit of {s:?} is over the hard one")))
    }
}

/// `N` when soft and hard agree, else `SOFT:HARD`; `unlimited` for
/// RLIM_INFINITY.
impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        if self.soft == self.hard {
            f.write_str(&one(self.soft))
        } else {
            write!(f, "{}:{}", one(self.soft), one(self.hard))
        }
    }
}

/// A limit of a container's process (`rlimits: {nofile: 1024}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rlimit {
    pub resource: Resource,
    pub limits: Limits,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(Resource::all().count(), 16);
        let mut numbers: Vec<u32> = Resource::all().map(Resource::number).collect();
        numbers.sort();
        assert_eq!(numbers, (0..16).collect::<Vec<_>>());
        let names: Vec<&str> = Resource::names().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(Resource::try_from("nofile"), Ok(Resource::Nofile));
        assert_eq!(
            Resource::try_from("nofiles").unwrap_err().to_string(),
            "unknown key \"nofiles\" (did you mean \"nofile\"?)"
        );
    }

    #[test]
    fn limits() {
        let l = |s: &str| Limits::try_from(s).map(|l| (l.soft(), l.hard()));
        assert_eq!(l("1024"), Ok((1024, 1024)));
        assert_eq!(l("1024:4096"), Ok((1024, 4096)));
        assert_eq!(l("unlimited"), Ok((u64::MAX, u64::MAX)));
        assert_eq!(l("0:infinity"), Ok((0, u64::MAX)));
        assert_eq!(
            l("4096:1024").unwrap_err().to_string(),
            "the soft limit of \"4096:1024\" is over the hard one"
        );
        assert_eq!(
            l("lots").unwrap_err().to_string(),
            "\"lots\" is not a number or unlimited"
        );
    }

    fn any_limits() -> impl Strategy<Value = Limits> {
        let v = prop_oneof![Just(u64::MAX), any::<u64>(), 0u64..100_000];
        (v.clone(), v).prop_map(|(a, b)| Limits::new(a.min(b), a.max(b)).unwrap())
    }

    proptest! {
        #[test]
        fn limits_parse_from_what_they_show(l in any_limits()) {
            prop_assert_eq!(Limits::try_from(l.to_string().as_str()), Ok(l));
        }

        #[test]
        fn resources_parse_from_what_they_show(i in 0usize..16) {
            let r = TABLE[i].0;
            prop_assert_eq!(Resource::try_from(r.to_string().as_str()), Ok(r));
        }
    }
}
