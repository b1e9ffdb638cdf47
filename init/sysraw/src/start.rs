//! The program's entry without libc: the kernel starts a static binary at
//! its entry point with the stack holding argc, then argv (NULL-ended),
//! then envp (NULL-ended), then the aux vector. Steps:
//!
//! 1. `keel_sysraw_entry` (asm): clear the frame pointer (the end of the
//!    stack for a debugger), pass the initial stack pointer, align the
//!    stack to 16 bytes as the ABI wants before a call, call `start`;
//! 2. `start`: argv and envp as [`Argv`]s; the environment's entries
//!    without `=` dropped (std's `env::vars_os` skips them, and keel-init
//!    passed on what it returned);
//! 3. what std does before `main`: fds 0, 1 and 2 opened on /dev/null
//!    when closed (so that a file the program opens never becomes its
//!    stdout), SIGPIPE ignored (a broken stderr is an error, not death);
//! 4. the binary's main (declared with [`crate::main!`]), then exit with
//!    its code.
//!
//! The binary is linked without relocations to apply (static, not PIE):
//! nothing here relocates it.

use core::ffi::{c_char, CStr};

use crate::SigSet;

/// A NULL-ended array of C strings that lives as long as the process
/// (argv, envp, or the tail of argv).
#[derive(Clone, Copy)]
pub struct Argv {
    // Invariant: each pointer is a NUL-terminated string that is neither
    // written nor freed while the process runs, and a NULL pointer follows
    // the last one.
    ptrs: &'static [*const c_char],
}

impl Argv {
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'static CStr> {
        // SAFETY: by the invariant, a NUL-terminated string for 'static.
        self.ptrs.get(i).map(|&p| unsafe { cstr(p) })
    }

    pub fn iter(&self) -> impl Iterator<Item = &'static CStr> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The strings from index `i` on (none when past the end). Clamped
    /// to the end so that the tail still points at the array's NULL.
    pub fn tail(&self, i: usize) -> Argv {
        Argv {
            ptrs: &self.ptrs[i.min(self.ptrs.len())..],
        }
    }

    /// The array as execve takes it: NULL-ended.
    pub(crate) fn as_ptr(&self) -> *const *const c_char {
        // An empty tail still points at the NULL: tail() slices within the
        // array, which the NULL follows.
        self.ptrs.as_ptr()
    }
}

/// The string at `p`: CStr::from_ptr without libc's strlen, which core
/// calls and this binary does not have. The reads are volatile so that
/// LLVM does not turn the loop back into a call to strlen.
///
/// # Safety
/// `p` points to a NUL-terminated string that lives and stays unchanged
/// for 'static.
unsafe fn cstr(p: *const c_char) -> &'static CStr {
    let mut n = 0;
    // SAFETY: the bytes up to the NUL are the string's (caller's promise).
    while unsafe { p.add(n).read_volatile() } != 0 {
        n += 1;
    }
    // SAFETY: n + 1 bytes, the NUL last and the only one, for 'static.
    unsafe { CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(p.cast(), n + 1)) }
}

/// What the kernel gave the process.
pub struct Process {
    pub args: Argv,
    pub env: Argv,
}

impl Process {
    /// The process as std sees it, for the unwinding (dev, test) build:
    /// argv, and the environment as `env::vars_os` gives it (the entries
    /// with a `=`), leaked: they live as long as the process, as the
    /// kernel's do.
    #[cfg(panic = "unwind")]
    pub fn from_std() -> Process {
        use std::boxed::Box;
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::vec::Vec;
        fn leak(strings: impl Iterator<Item = Vec<u8>>) -> Argv {
            let mut ptrs: Vec<*const c_char> = strings
                .filter_map(|s| CString::new(s).ok())
                .map(|c| c.into_raw().cast_const())
                .collect();
            let len = ptrs.len();
            ptrs.push(core::ptr::null());
            // The invariant: leaked strings, never freed nor written, and
            // the NULL after the last.
            Argv {
                ptrs: &Box::leak(ptrs.into_boxed_slice())[..len],
            }
        }
        Process {
            args: leak(std::env::args_os().map(|a| a.as_bytes().to_vec())),
            env: leak(std::env::vars_os().map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                kv
            })),
        }
    }
}

/// The kernel's `struct sigaction` on x86_64.
#[repr(C)]
pub(crate) struct KernelSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: SigSet,
}

/// The entry, in the `no_std` (`panic = "abort"`) build only.
#[cfg(panic = "abort")]
mod entry {
    use core::ffi::c_char;

    use super::{cstr, Argv, KernelSigaction, Process};
    use crate::errnos::EBADF;
    use crate::syscall::{syscall, syscall4, FCNTL, OPEN, RT_SIGACTION};
    use crate::SigSet;

    core::arch::global_asm!(
        ".globl keel_sysraw_entry",
        ".type keel_sysraw_entry,@function",
        "keel_sysraw_entry:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start,
    );

    extern "Rust" {
        /// The binary's main, defined by [`crate::main!`].
        fn keel_sysraw_main(p: Process) -> i32;
    }

    const O_RDWR: usize = 2;
    const F_GETFD: usize = 1;
    const SIGPIPE: usize = 13;
    const SIG_IGN: usize = 1;

    /// # Safety
    /// Called once, by `keel_sysraw_entry`, with the initial stack pointer.
    unsafe extern "C" fn start(sp: *const usize) -> ! {
        // SAFETY: at entry the stack holds argc, argc pointers and a NULL,
        // then the environment's pointers and a NULL (the ELF ABI); that memory
        // is ours for the life of the process and nothing else refers to it,
        // so we may compact envp in place. The strings are NUL-terminated.
        let (args, env) = unsafe {
            let argc = *sp;
            let argv = sp.add(1) as *mut *const c_char;
            let envp = argv.add(argc + 1);
            let mut n = 0;
            let mut kept = 0;
            while !(*envp.add(n)).is_null() {
                let e = *envp.add(n);
                if cstr(e).to_bytes().iter().skip(1).any(|&b| b == b'=') {
                    *envp.add(kept) = e;
                    kept += 1;
                }
                n += 1;
            }
            *envp.add(kept) = core::ptr::null();
            (
                Argv {
                    ptrs: core::slice::from_raw_parts(argv, argc),
                },
                Argv {
                    ptrs: core::slice::from_raw_parts(envp, kept),
                },
            )
        };
        for fd in 0..3 {
            // SAFETY: fcntl(F_GETFD) on an integer reads no memory of ours.
            if unsafe { syscall(FCNTL, fd, F_GETFD, 0) } == Err(EBADF) {
                // SAFETY: the path is a NUL-terminated literal.
                let opened = unsafe { syscall(OPEN, c"/dev/null".as_ptr() as usize, O_RDWR, 0) };
                if opened != Ok(fd) {
                    crate::abort();
                }
            }
        }
        let ign = KernelSigaction {
            handler: SIG_IGN,
            flags: 0,
            restorer: 0,
            mask: SigSet::empty(),
        };
        // SAFETY: the kernel reads the sigaction we borrow and writes no old one.
        let _ = unsafe {
            syscall4(
                RT_SIGACTION,
                SIGPIPE,
                &ign as *const _ as usize,
                0,
                crate::signal::SIGSET_SIZE,
            )
        };
        // SAFETY: main! defines this function with this signature; the
        // binary links only when it does.
        let code = unsafe { keel_sysraw_main(Process { args, env }) };
        crate::exit(code)
    }
}

#[cfg(all(test, panic = "unwind"))]
mod tests {
    use super::*;

    /// The strings read back as std has them; a tail, even past the end,
    /// still ends at a NULL (execve reads it).
    #[test]
    fn argv_as_std_has_it() {
        let p = Process::from_std();
        let std_args: std::vec::Vec<_> = std::env::args_os().collect();
        assert_eq!(p.args.len(), std_args.len());
        for (a, b) in p.args.iter().zip(&std_args) {
            assert_eq!(
                a.to_bytes(),
                std::os::unix::ffi::OsStrExt::as_bytes(b.as_os_str())
            );
        }
        let n = p.args.len();
        for t in [p.args.tail(n), p.args.tail(n + 5), p.env.tail(usize::MAX)] {
            assert!(t.is_empty() && t.get(0).is_none());
            // SAFETY: an Argv's pointer is valid up to and with its NULL.
            assert!(unsafe { *t.as_ptr() }.is_null());
        }
        assert_eq!(p.args.tail(1).get(0), p.args.get(1));
    }
}
