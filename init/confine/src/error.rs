/// What went wrong preparing a container's confinement.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("seccomp rule for {syscall}: {source}")]
    SeccompRule {
        syscall: &'static str,
        source: seccompiler::BackendError,
    },
    #[error("compile seccomp filter: {source}")]
    CompileFilter { source: seccompiler::BackendError },
    #[error("seccomp filter has {len} instructions, the kernel takes at most {max}")]
    FilterTooLong { len: usize, max: usize },
}
