use std::path::PathBuf;

/// A failed system call, naming the operation and what it was applied to.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("raise the open-file limit (RLIMIT_NOFILE): {0}")]
    Rlimit(nix::Error),
    #[error("start a container: {step}: {source}")]
    Spawn {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("container process {pid}: {step}: {source}")]
    Child {
        pid: i32,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("container process {pid}: write sysctl {path} = {value:?}: {source}")]
    ChildSysctl {
        pid: i32,
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("mount {fstype} on {target}: {source}")]
    Mount {
        fstype: String,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("move mount {from} to {to}: {source}")]
    MoveMount {
        from: PathBuf,
        to: PathBuf,
        source: nix::Error,
    },
    #[error("unmount {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
    #[error("freeze the filesystem on {target}: {source}")]
    Freeze { target: PathBuf, source: nix::Error },
    #[error("chroot to {path}: {source}")]
    Chroot { path: PathBuf, source: nix::Error },
    #[error("statfs {path}: {source}")]
    Statfs { path: PathBuf, source: nix::Error },
    #[error("reboot ({cmd}): {source}")]
    Reboot {
        cmd: &'static str,
        source: nix::Error,
    },
    #[error("block signals: {0}")]
    SigMask(nix::Error),
    #[error("signalfd: {0}")]
    SignalFd(nix::Error),
    #[error("clock_gettime: {0}")]
    Clock(nix::Error),
    #[error("socket for {what}: {source}")]
    Socket {
        what: &'static str,
        source: nix::Error,
    },
    #[error("set host name {name:?}: {source}")]
    Hostname { name: String, source: nix::Error },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} on {path}: {source}")]
    BlockIoctl {
        op: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("device-mapper {op} {name}: {source}")]
    DeviceMapper {
        op: &'static str,
        name: String,
        source: nix::Error,
    },
    #[error("kexec ({op}): {source}")]
    Kexec {
        op: &'static str,
        source: nix::Error,
    },
    #[error("rtnetlink {op} {target}: {source}")]
    Netlink {
        op: &'static str,
        target: String,
        source: nix::Error,
    },
    #[error("network namespace: {op} {target}: {source}")]
    Netns {
        op: &'static str,
        target: String,
        source: nix::Error,
    },
    #[error("nftables {op} {target}: {source}")]
    Nftables {
        op: &'static str,
        target: String,
        source: nix::Error,
    },
    #[error("confine child: {step} failed: {source}")]
    Confine {
        step: crate::confine::Step,
        source: nix::Error,
    },
    #[error("capability mask {caps:#x} has bits above the last capability")]
    CapabilityMask { caps: u64 },
    #[error("send signal {sig} to process {pid}: {source}")]
    SignalProcess {
        pid: i32,
        sig: i32,
        source: nix::Error,
    },
    #[error("reap a child: {0}")]
    Reap(nix::Error),
    #[error("start {program}: {source}")]
    StartProgram { program: String, source: nix::Error },
    #[error("seccomp filter of {len} instructions: the kernel takes 1 to {max}")]
    SeccompFilterLength { len: usize, max: usize },
}
