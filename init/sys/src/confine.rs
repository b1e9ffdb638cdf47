//! Confining a container's first process between clone and execve.
//!
//! keel clones containers from a multi-threaded PID 1. Until the child
//! execs, it runs on a copy of one thread of a process whose other threads
//! may have held the allocator's or libc's locks at the moment of the clone,
//! so the child may only do async-signal-safe work: no allocation, no locks,
//! no panics, no formatting. Everything is therefore worked out in the parent
//! into a [`Prepared`] (plain numbers and a BPF instruction array), and
//! [`confine_child`] only reads it and makes raw syscalls.
//!
//! The child's steps, in order, and why this order:
//!
//! 1. Drop every capability outside the set from the bounding set
//!    (`PR_CAPBSET_DROP`). This needs CAP_SETPCAP, which the child still has
//!    as long as it is root with PID 1's full set, so it goes first.
//! 2. Clear the ambient set, so nothing inherited from keel leaks through
//!    execve.
//! 3. `PR_SET_KEEPCAPS`, so that switching from uid 0 to another user keeps
//!    the permitted set (the kernel would clear it otherwise) and step 7 can
//!    still pick the container's capabilities from it.
//! 4. `setgroups`, 5. `setresgid`, 6. `setresuid`: groups and gid first,
//!    because changing them needs CAP_SETGID, which the uid switch takes out
//!    of the effective set. These are raw syscalls on purpose: glibc's
//!    wrappers broadcast the change to every thread it knows of, and in a
//!    cloned child the threads it knows of are the parent's.
//! 7. `capset`: effective = permitted = the container's set, inheritable
//!    empty (as containerd since CVE-2022-24769: an inheritable set would
//!    let file capabilities of a program in the image grant more). The uid
//!    switch emptied the effective set; this restores the chosen
//!    capabilities and drops the rest from permitted for good.
//! 8. Only when asked (`Prepared::with_ambient`): raise the set as ambient
//!    capabilities (and inheritable, which ambient requires), so that a
//!    non-root user keeps them across execve. By default a non-root user
//!    ends with no capabilities after execve, as under docker and
//!    containerd; root gets the set back from the bounding set.
//! 9. `PR_SET_NO_NEW_PRIVS`: setuid binaries and file capabilities can no
//!    longer raise privileges, and it lets an unprivileged process install a
//!    seccomp filter.
//! 10. `seccomp(SECCOMP_SET_MODE_FILTER)` last: the steps above use syscalls
//!     (setgroups, capset, prctl) a container filter may refuse, and the
//!     filter must allow execve, which comes next.

use std::fmt;

use crate::SysError;

/// The highest capability number keel knows (CAP_CHECKPOINT_RESTORE, 40);
/// keel-confine's capability table ends at the same number.
pub const LAST_CAP: u32 = 40;

/// The kernel's limit on a seccomp program's length (BPF_MAXINSNS).
const MAX_FILTER_LEN: usize = 4096;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets as two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// One step of [`confine_child`], named so the parent can say which failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    DropBounding = 1,
    ClearAmbient = 2,
    KeepCaps = 3,
    SetGroups = 4,
    SetGid = 5,
    SetUid = 6,
    CapSet = 7,
    RaiseAmbient = 8,
    NoNewPrivs = 9,
    Seccomp = 10,
}

impl Step {
    const ALL: [Step; 10] = [
        Step::DropBounding,
        Step::ClearAmbient,
        Step::KeepCaps,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::CapSet,
        Step::RaiseAmbient,
        Step::NoNewPrivs,
        Step::Seccomp,
    ];

    /// What the step does, as the syscall or prctl a user would look up.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DropBounding => "prctl(PR_CAPBSET_DROP)",
            Step::ClearAmbient => "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            Step::KeepCaps => "prctl(PR_SET_KEEPCAPS)",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setresgid",
            Step::SetUid => "setresuid",
            Step::CapSet => "capset",
            Step::RaiseAmbient => "prctl(PR_CAP_AMBIENT_RAISE)",
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)",
            Step::Seccomp => "seccomp(SECCOMP_SET_MODE_FILTER)",
        }
    }

    /// A one-byte code, for sending a failure back to the parent over a pipe.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The step a [`Step::code`] stands for.
    pub fn from_code(code: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.code() == code)
    }

    /// The parent's error for a failure the child reported as (step, errno).
    pub fn error(self, errno: i32) -> SysError {
        SysError::Confine {
            step: self,
            source: nix::Error::from_raw(errno),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container's confinement, worked out in the parent for the child.
#[derive(Debug, Clone)]
pub struct Prepared {
    caps: u64,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    filter: Vec<libc::sock_filter>,
    ambient: bool,
}

impl Prepared {
    /// Check and copy everything the child will need.
    ///
    /// `caps` is the capability mask (bit n = capability n), `filter` the
    /// seccomp program as the kernel's instructions, `groups` the
    /// supplementary groups (empty for none).
    pub fn new(
        caps: u64,
        filter: &[libc::sock_filter],
        uid: u32,
        gid: u32,
        groups: &[u32],
    ) -> Result<Prepared, SysError> {
        if caps >> (LAST_CAP + 1) != 0 {
            return Err(SysError::CapabilityMask { caps });
        }
        if filter.is_empty() || filter.len() > MAX_FILTER_LEN {
            return Err(SysError::SeccompFilterLength {
                len: filter.len(),
                max: MAX_FILTER_LEN,
            });
        }
        Ok(Prepared {
            caps,
            uid,
            gid,
            groups: groups.to_vec(),
            filter: filter.to_vec(),
            ambient: false,
        })
    }

    /// Keep the capabilities across execve for a non-root user too
    /// (ambient capabilities).
    pub fn with_ambient(mut self) -> Prepared {
        self.ambient = true;
        self
    }

    pub fn caps(&self) -> u64 {
        self.caps
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two, low word first.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Apply `p` to the calling process, in the order the module docs explain.
///
/// Meant for a freshly cloned child before execve: it is async-signal-safe
/// (no allocation, locks, panics or formatting; raw syscalls only). On
/// failure it returns the step and the errno, and the process is left partly
/// confined: the caller should report and `_exit`, never exec.
pub fn confine_child(p: &Prepared) -> Result<(), (Step, i32)> {
    // 1. Bounding set.
    let mut cap: u32 = 0;
    while cap <= LAST_CAP {
        if p.caps & (1u64 << cap) == 0 {
            // EINVAL: a capability this kernel does not know, so nothing to drop.
            prctl(libc::PR_CAPBSET_DROP, cap.into(), 0)
                .or_else(|e| if e == libc::EINVAL { Ok(()) } else { Err(e) })
                .map_err(|e| (Step::DropBounding, e))?;
        }
        cap += 1;
    }

    // 2. Ambient set.
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )
    .map_err(|e| (Step::ClearAmbient, e))?;

    // 3. Keep the permitted set across the uid switch.
    prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| (Step::KeepCaps, e))?;

    // 4-6. Groups, gid, uid.
    // SAFETY: setgroups reads `groups.len()` gid_t values from a pointer into
    // a live Vec owned by `p`, which outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            p.groups.len() as libc::size_t,
            p.groups.as_ptr(),
        )
    };
    check(ret).map_err(|e| (Step::SetGroups, e))?;
    // SAFETY: setresgid takes three integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) };
    check(ret).map_err(|e| (Step::SetGid, e))?;
    // SAFETY: setresuid takes three integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) };
    check(ret).map_err(|e| (Step::SetUid, e))?;

    // 7. The capability sets themselves.
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let low = p.caps as u32;
    let high = (p.caps >> 32) as u32;
    let inh = if p.ambient { p.caps } else { 0 };
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: inh as u32,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: capset reads one header and, for version 3, two data structs;
    // both are #[repr(C)] locals matching the kernel's layout that live
    // until the call returns.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    check(ret).map_err(|e| (Step::CapSet, e))?;

    // 8. Ambient capabilities, when asked, so a non-root user keeps them
    // across execve.
    if p.ambient && p.uid != 0 {
        let mut cap: u32 = 0;
        while cap <= LAST_CAP {
            if p.caps & (1u64 << cap) != 0 {
                prctl_ambient_raise(cap).map_err(|e| (Step::RaiseAmbient, e))?;
            }
            cap += 1;
        }
    }

    // 9. No new privileges.
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(|e| (Step::NoNewPrivs, e))?;

    // 10. The seccomp filter.
    let program = libc::sock_fprog {
        // Prepared::new checked 1..=4096 instructions, so this fits a u16.
        len: p.filter.len() as libc::c_ushort,
        // The kernel only reads the program; the field is `*mut` in the C header.
        filter: p.filter.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp copies `program.len` instructions from `program.filter`,
    // which points into a live Vec owned by `p` of exactly that length; the
    // sock_fprog itself is a local that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &program as *const libc::sock_fprog,
        )
    };
    check(ret).map_err(|e| (Step::Seccomp, e))
}

/// prctl with two arguments (the rest zero, as prctl requires for the
/// options used here).
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: the options passed here (capability and keep-caps/no-new-privs
    // flags) take integers only; prctl touches no memory of ours.
    let ret = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    check(ret.into())
}

fn prctl_ambient_raise(cap: u32) -> Result<(), i32> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
        cap.into(),
    )
}

/// Turn a raw syscall result into the errno it set. Reading errno is a plain
/// thread-local load, safe in the child.
fn check(ret: libc::c_long) -> Result<(), i32> {
    if ret == -1 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_insn() -> Vec<libc::sock_filter> {
        vec![libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }]
    }

    #[test]
    fn prepared_checks_its_inputs() {
        assert!(Prepared::new(0xa80425fb, &one_insn(), 0, 0, &[]).is_ok());
        assert!(Prepared::new(1 << 40, &one_insn(), 0, 0, &[]).is_ok());
        let err = Prepared::new(1 << 41, &one_insn(), 0, 0, &[]).unwrap_err();
        assert!(err.to_string().contains("0x20000000000"), "{err}");
        let err = Prepared::new(0, &[], 0, 0, &[]).unwrap_err();
        assert!(err.to_string().contains("0 instructions"), "{err}");
        let long = vec![one_insn()[0]; MAX_FILTER_LEN + 1];
        assert!(Prepared::new(0, &long, 0, 0, &[]).is_err());
    }

    #[test]
    fn step_codes_round_trip_and_errors_read_well() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step.code()), Some(step));
        }
        assert_eq!(Step::from_code(0), None);
        let err = Step::CapSet.error(libc::EPERM);
        assert_eq!(
            err.to_string(),
            "confine child: capset failed: EPERM: Operation not permitted"
        );
    }
}
