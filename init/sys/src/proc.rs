//! Process identity and clocks.

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use crate::SysError;

/// This process's id.
pub fn pid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// Time since the machine booted, including suspend (`CLOCK_BOOTTIME`).
pub fn uptime() -> Result<Duration, SysError> {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).map_err(SysError::Clock)?;
    Ok(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32))
}

/// Set the kernel host name (`sethostname(2)`).
pub fn set_hostname(name: &str) -> Result<(), SysError> {
    nix::unistd::sethostname(name).map_err(|source| SysError::Hostname {
        name: name.to_string(),
        source,
    })
}

/// Let glibc's allocator use at most `n` arenas. By default every thread
/// that allocates may get an arena of its own (up to 8 per CPU), and memory
/// freed in one stays resident for that arena: PID 1's short-lived blocking
/// threads (a burst of container starts) would leave their arenas behind.
pub fn limit_malloc_arenas(n: i32) {
    // SAFETY: mallopt only sets a tunable of the allocator; M_ARENA_MAX is
    // a valid parameter and any positive value is accepted.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
}

/// Raise this process's open-file limit (soft and hard) to `want`, or keep
/// it when it is higher. Returns the limit now in force. Children inherit
/// it.
pub fn raise_nofile(want: u64) -> Result<u64, SysError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(SysError::Rlimit)?;
    let (soft, hard) = (soft.max(want), hard.max(want));
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(SysError::Rlimit)?;
    Ok(soft)
}
