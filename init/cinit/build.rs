//! keel-init links without libc's start files or libraries: its entry is
//! keel-sysraw's `keel_sysraw_entry`. It is linked static and not PIE, so
//! that nothing has to relocate it at start (no dynamic loader, no libc).
//! For the binary only, and only with `panic = "abort"` (release): the
//! library's test harness and the dev build are normal std programs.

fn main() {
    // A build that unwinds is a std program (see keel-sysraw): glibc's.
    // Cargo tells a build script the profile, not its panic strategy:
    // release (and the profiles that inherit it) is the one that aborts.
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,-no-pie",
        "-Wl,-e,keel_sysraw_entry",
        "-Wl,-u,keel_sysraw_entry",
    ] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
