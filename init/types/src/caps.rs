//! Linux capabilities: names and numbers, the entries of a container's
//! add and drop lists, and the set a container runs with.
//!
//! A [`CapSet`] is the kernel's own representation, a 64-bit mask with bit
//! `n` standing for capability `n`, so the child can hand it to `capset(2)`
//! and `PR_CAPBSET_DROP` without any conversion.

use std::fmt;
use std::str::FromStr;

use crate::Invalid;

/// One Linux capability. The discriminant is the kernel's capability number
/// (include/uapi/linux/capability.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Capability {
    Chown = 0,
    DacOverride = 1,
    DacReadSearch = 2,
    Fowner = 3,
    Fsetid = 4,
    Kill = 5,
    Setgid = 6,
    Setuid = 7,
    Setpcap = 8,
    LinuxImmutable = 9,
    NetBindService = 10,
    NetBroadcast = 11,
    NetAdmin = 12,
    NetRaw = 13,
    IpcLock = 14,
    IpcOwner = 15,
    SysModule = 16,
    SysRawio = 17,
    SysChroot = 18,
    SysPtrace = 19,
    SysPacct = 20,
    SysAdmin = 21,
    SysBoot = 22,
    SysNice = 23,
    SysResource = 24,
    SysTime = 25,
    SysTtyConfig = 26,
    Mknod = 27,
    Lease = 28,
    AuditWrite = 29,
    AuditControl = 30,
    Setfcap = 31,
    MacOverride = 32,
    MacAdmin = 33,
    Syslog = 34,
    WakeAlarm = 35,
    BlockSuspend = 36,
    AuditRead = 37,
    Perfmon = 38,
    Bpf = 39,
    CheckpointRestore = 40,
}

/// Every capability with its canonical name, indexed by capability number
/// (a unit test checks that index and discriminant agree).
const TABLE: [(Capability, &str); 41] = [
    (Capability::Chown, "CAP_CHOWN"),
    (Capability::DacOverride, "CAP_DAC_OVERRIDE"),
    (Capability::DacReadSearch, "CAP_DAC_READ_SEARCH"),
    (Capability::Fowner, "CAP_FOWNER"),
    (Capability::Fsetid, "CAP_FSETID"),
    (Capability::Kill, "CAP_KILL"),
    (Capability::Setgid, "CAP_SETGID"),
    (Capability::Setuid, "CAP_SETUID"),
    (Capability::Setpcap, "CAP_SETPCAP"),
    (Capability::LinuxImmutable, "CAP_LINUX_IMMUTABLE"),
    (Capability::NetBindService, "CAP_NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "CAP_NET_BROADCAST"),
    (Capability::NetAdmin, "CAP_NET_ADMIN"),
    (Capability::NetRaw, "CAP_NET_RAW"),
    (Capability::IpcLock, "CAP_IPC_LOCK"),
    (Capability::IpcOwner, "CAP_IPC_OWNER"),
    (Capability::SysModule, "CAP_SYS_MODULE"),
    (Capability::SysRawio, "CAP_SYS_RAWIO"),
    (Capability::SysChroot, "CAP_SYS_CHROOT"),
    (Capability::SysPtrace, "CAP_SYS_PTRACE"),
    (Capability::SysPacct, "CAP_SYS_PACCT"),
    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
    (Capability::SysBoot, "CAP_SYS_BOOT"),
    (Capability::SysNice, "CAP_SYS_NICE"),
    (Capability::SysResource, "CAP_SYS_RESOURCE"),
    (Capability::SysTime, "CAP_SYS_TIME"),
    (Capability::SysTtyConfig, "CAP_SYS_TTY_CONFIG"),
    (Capability::Mknod, "CAP_MKNOD"),
    (Capability::Lease, "CAP_LEASE"),
    (Capability::AuditWrite, "CAP_AUDIT_WRITE"),
    (Capability::AuditControl, "CAP_AUDIT_CONTROL"),
    (Capability::Setfcap, "CAP_SETFCAP"),
    (Capability::MacOverride, "CAP_MAC_OVERRIDE"),
    (Capability::MacAdmin, "CAP_MAC_ADMIN"),
    (Capability::Syslog, "CAP_SYSLOG"),
    (Capability::WakeAlarm, "CAP_WAKE_ALARM"),
    (Capability::BlockSuspend, "CAP_BLOCK_SUSPEND"),
    (Capability::AuditRead, "CAP_AUDIT_READ"),
    (Capability::Perfmon, "CAP_PERFMON"),
    (Capability::Bpf, "CAP_BPF"),
    (Capability::CheckpointRestore, "CAP_CHECKPOINT_RESTORE"),
];

/// The highest capability number keel knows (CAP_CHECKPOINT_RESTORE, Linux 5.9).
pub const LAST_CAP: u8 = Capability::CheckpointRestore as u8;

/// containerd's (and Docker's) default set: what a container gets unless its
/// spec adds or drops capabilities.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

impl Capability {
    /// Every capability, by number.
    pub fn all() -> impl Iterator<Item = Capability> {
        TABLE.iter().map(|(cap, _)| *cap)
    }

    /// The capability with kernel number `n`, if there is one.
    pub fn from_number(n: u8) -> Option<Capability> {
        TABLE.get(usize::from(n)).map(|(cap, _)| *cap)
    }

    /// The kernel's number for this capability.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The canonical name, e.g. `CAP_SYS_ADMIN`.
    pub fn name(self) -> &'static str {
        TABLE[usize::from(self.number())].1
    }

    /// Parse `CAP_SYS_ADMIN`, `SYS_ADMIN` or `sys_admin`: the prefix is
    /// optional and case does not matter, as in OCI specs and `docker run
    /// --cap-add`. An unknown name is refused with the closest one.
    pub fn parse(name: &str) -> Result<Capability, Invalid> {
        let trimmed = name.trim();
        let bare = strip_prefix_ignore_case(trimmed, "CAP_").unwrap_or(trimmed);
        if let Some((cap, _)) = TABLE
            .iter()
            .find(|(_, canonical)| canonical["CAP_".len()..].eq_ignore_ascii_case(bare))
        {
            return Ok(*cap);
        }
        let up = bare.to_ascii_uppercase();
        let near = crate::text::nearest(&up, TABLE.iter().map(|(_, n)| &n["CAP_".len()..]))
            .map(|c| format!(" (did you mean CAP_{c}?)"))
            .unwrap_or_default();
        Err(Invalid(format!("{name:?} is not a Linux capability{near}")))
    }

    fn bit(self) -> u64 {
        1 << self.number()
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::parse(s)
    }
}

/// One entry of a container's capability `add` or `drop` list: a
/// capability, or `ALL` (either case) for every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapEntry {
    All,
    Cap(Capability),
}

impl TryFrom<&str> for CapEntry {
    type Error = Invalid;
    fn try_from(s: &str) -> Result<CapEntry, Invalid> {
        if s.trim().eq_ignore_ascii_case("ALL") {
            Ok(CapEntry::All)
        } else {
            Capability::parse(s).map(CapEntry::Cap)
        }
    }
}

impl FromStr for CapEntry {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<CapEntry, Invalid> {
        CapEntry::try_from(s)
    }
}

/// `ALL` or the canonical `CAP_NAME`.
impl fmt::Display for CapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapEntry::All => f.write_str("ALL"),
            CapEntry::Cap(c) => f.write_str(c.name()),
        }
    }
}

/// A set of capabilities as the kernel's 64-bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    /// No capabilities.
    pub const fn empty() -> CapSet {
        CapSet(0)
    }

    /// Every capability keel knows (0..=[`LAST_CAP`]).
    pub fn all() -> CapSet {
        Capability::all().collect()
    }

    /// containerd's default set of 14 ([`DEFAULT_CAPS`]).
    pub fn defaults() -> CapSet {
        DEFAULT_CAPS.iter().copied().collect()
    }

    /// The default set adjusted by a container's `add` and `drop` lists.
    ///
    /// 1. Start from the defaults, or from nothing when `drop` holds `ALL`.
    /// 2. Add every capability in `add` (all of them when it holds `ALL`).
    /// 3. Remove every capability named in `drop`.
    ///
    /// So `drop: [ALL], add: [NET_ADMIN]` gives exactly NET_ADMIN,
    /// `add: [ALL], drop: [SYS_ADMIN]` gives everything but SYS_ADMIN, and a
    /// capability named in both lists is dropped.
    pub fn from_defaults_with(add: &[CapEntry], drop: &[CapEntry]) -> CapSet {
        let mut set = if drop.contains(&CapEntry::All) {
            CapSet::empty()
        } else {
            CapSet::defaults()
        };
        if add.contains(&CapEntry::All) {
            set = CapSet::all();
        }
        for e in add {
            if let CapEntry::Cap(cap) = e {
                set.insert(*cap);
            }
        }
        for e in drop {
            if let CapEntry::Cap(cap) = e {
                set.remove(*cap);
            }
        }
        set
    }

    /// The set whose mask is `bits`; bits above [`LAST_CAP`] are an error
    /// naming the first of them.
    pub fn from_bits(bits: u64) -> Result<CapSet, Invalid> {
        let unknown = bits & !CapSet::all().0;
        if unknown != 0 {
            return Err(Invalid(format!(
                "unknown capability bit {}",
                unknown.trailing_zeros()
            )));
        }
        Ok(CapSet(bits))
    }

    /// The kernel's mask: bit `n` set for capability `n`.
    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= cap.bit();
    }

    pub fn remove(&mut self, cap: Capability) {
        self.0 &= !cap.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, by number.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::all().filter(move |cap| self.contains(*cap))
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = CapSet::empty();
        for cap in iter {
            set.insert(cap);
        }
        set
    }
}

/// Comma-separated canonical names, e.g. `CAP_CHOWN,CAP_KILL`.
impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cap) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(cap.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(names: &[&str]) -> Vec<CapEntry> {
        names
            .iter()
            .map(|s| CapEntry::try_from(*s).unwrap())
            .collect()
    }

    #[test]
    fn table_index_is_the_kernel_number() {
        for (i, (cap, name)) in TABLE.iter().enumerate() {
            assert_eq!(usize::from(cap.number()), i, "{name}");
            assert!(name.starts_with("CAP_"));
        }
        assert_eq!(LAST_CAP, 40);
        assert_eq!(Capability::all().count(), 41);
    }

    #[test]
    fn known_numbers_match_the_kernel_header() {
        assert_eq!(Capability::SysAdmin.number(), 21);
        assert_eq!(Capability::Setfcap.number(), 31);
        assert_eq!(Capability::Bpf.number(), 39);
        assert_eq!(
            Capability::from_number(40),
            Some(Capability::CheckpointRestore)
        );
        assert_eq!(Capability::from_number(41), None);
    }

    #[test]
    fn default_mask_is_containerds() {
        assert_eq!(CapSet::defaults().bits(), 0x0000_0000_a804_25fb);
        assert_eq!(CapSet::defaults().iter().count(), 14);
    }

    #[test]
    fn parse_accepts_prefix_and_any_case() {
        for s in [
            "CAP_SYS_ADMIN",
            "SYS_ADMIN",
            "sys_admin",
            "cap_Sys_Admin",
            " SYS_ADMIN ",
        ] {
            assert_eq!(Capability::parse(s).unwrap(), Capability::SysAdmin, "{s}");
        }
        assert_eq!("chown".parse::<Capability>().unwrap(), Capability::Chown);
    }

    #[test]
    fn parse_error_names_the_bad_name() {
        let err = Capability::parse("CAP_SYS_WIZARD").unwrap_err();
        assert!(err.to_string().contains("CAP_SYS_WIZARD"), "{err}");
        assert!(Capability::parse("").is_err());
        assert!(Capability::parse("CAP_").is_err());
        assert!(Capability::parse("ALL").is_err());
        assert_eq!(
            Capability::parse("CAP_SYS_ADMN").unwrap_err().to_string(),
            "\"CAP_SYS_ADMN\" is not a Linux capability (did you mean CAP_SYS_ADMIN?)"
        );
        assert_eq!(CapEntry::try_from("all"), Ok(CapEntry::All));
    }

    #[test]
    fn adjusting_the_defaults() {
        let none = CapSet::from_defaults_with(&[], &[]);
        assert_eq!(none, CapSet::defaults());

        let only = CapSet::from_defaults_with(&entries(&["NET_ADMIN"]), &entries(&["all"]));
        assert_eq!(only.iter().collect::<Vec<_>>(), vec![Capability::NetAdmin]);

        let most = CapSet::from_defaults_with(&entries(&["ALL"]), &entries(&["CAP_SYS_ADMIN"]));
        assert_eq!(most.bits(), CapSet::all().bits() & !(1 << 21));

        let both = CapSet::from_defaults_with(&entries(&["KILL"]), &entries(&["kill"]));
        assert!(!both.contains(Capability::Kill));

        let err = CapEntry::try_from("nope").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn from_bits_refuses_unknown_bits() {
        assert_eq!(CapSet::from_bits(0xa80425fb).unwrap(), CapSet::defaults());
        let err = CapSet::from_bits(1 << 41 | 1).unwrap_err();
        assert!(err.to_string().contains("41"), "{err}");
    }

    #[test]
    fn display_lists_names() {
        let set: CapSet = [Capability::Kill, Capability::Chown].into_iter().collect();
        assert_eq!(set.to_string(), "CAP_CHOWN,CAP_KILL");
    }

    /// A capability name as a user might write it: with or without the
    /// prefix, in random case.
    fn spelled(cap: Capability, prefix: bool, case: Vec<bool>) -> String {
        let base = if prefix {
            cap.name()
        } else {
            &cap.name()["CAP_".len()..]
        };
        base.chars()
            .zip(case.into_iter().chain(std::iter::repeat(false)))
            .map(|(c, lower)| if lower { c.to_ascii_lowercase() } else { c })
            .collect()
    }

    fn any_cap() -> impl Strategy<Value = Capability> {
        (0..=LAST_CAP).prop_map(|n| Capability::from_number(n).unwrap())
    }

    proptest! {
        #[test]
        fn any_spelling_parses_back(
            cap in any_cap(),
            prefix in any::<bool>(),
            case in proptest::collection::vec(any::<bool>(), 0..32),
        ) {
            prop_assert_eq!(Capability::parse(&spelled(cap, prefix, case)).unwrap(), cap);
        }

        #[test]
        fn add_and_drop_laws(
            add in proptest::collection::vec(any_cap(), 0..8),
            drop in proptest::collection::vec(any_cap(), 0..8),
            add_all in any::<bool>(),
            drop_all in any::<bool>(),
        ) {
            let mut add_names: Vec<CapEntry> = add.iter().map(|c| CapEntry::Cap(*c)).collect();
            let mut drop_names: Vec<CapEntry> = drop.iter().map(|c| CapEntry::Cap(*c)).collect();
            if add_all { add_names.push(CapEntry::All); }
            if drop_all { drop_names.push(CapEntry::All); }
            let set = CapSet::from_defaults_with(&add_names, &drop_names);

            // Named drops always win.
            for cap in &drop {
                prop_assert!(!set.contains(*cap));
            }
            // Named adds are present unless dropped.
            for cap in add.iter().filter(|c| !drop.contains(c)) {
                prop_assert!(set.contains(*cap));
            }
            // Nothing outside the known capabilities.
            prop_assert_eq!(set.bits() & !CapSet::all().bits(), 0);
            // Without ALL anywhere, the result is defaults + adds - drops.
            if !add_all && !drop_all {
                for cap in Capability::all() {
                    let expect = (CapSet::defaults().contains(cap) || add.contains(&cap))
                        && !drop.contains(&cap);
                    prop_assert_eq!(set.contains(cap), expect);
                }
            }
            // Dropping ALL keeps only what was added.
            if drop_all && !add_all {
                for cap in set.iter() {
                    prop_assert!(add.contains(&cap));
                }
            }
        }

        #[test]
        fn entries_parse_from_what_they_show(cap in any_cap(), all in any::<bool>()) {
            let e = if all { CapEntry::All } else { CapEntry::Cap(cap) };
            prop_assert_eq!(CapEntry::try_from(e.to_string().as_str()), Ok(e));
        }

        #[test]
        fn bits_round_trip(bits in 0u64..(1 << 41)) {
            prop_assert_eq!(CapSet::from_bits(bits).unwrap().bits(), bits);
        }
    }
}
