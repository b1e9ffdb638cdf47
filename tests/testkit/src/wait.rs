//! Waits on child processes, each with a deadline.
//!
//! `Child::wait` and `wait_with_output` block for ever on a program that
//! hangs. These poll `try_wait` until a deadline instead; past it the child
//! is killed and the test panics naming what it waited for, with what the
//! child printed so far.

use std::io::Read;
use std::process::{Child, ExitStatus, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Wait up to `timeout` for `child` to exit; kill it and panic naming
/// `what` if it has not.
pub fn exit_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    match exited_within(child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?} (killed)");
        }
    }
}

/// Wait up to `timeout` for `child` to exit and collect its piped stdout
/// and stderr (read on threads while it runs, so a full pipe cannot stall
/// it); kill it and panic naming `what`, with its output so far, if it
/// has not exited.
pub fn output_within(mut child: Child, timeout: Duration, what: &str) -> Output {
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = exited_within(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close when the child (and anything it left holding them)
    // is gone; a grandchild holding one would block here, so the threads
    // are joined only after the kill.
    let stdout = out.map(join).unwrap_or_default();
    let stderr = err.map(join).unwrap_or_default();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{what}: still running after {timeout:?} (killed); stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// How `child` ended if it exits within `timeout`; `None` (and the child
/// left running) when it has not, for callers to whom that is an answer,
/// not a failure.
pub fn exited_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("wait for child {}: {e}", child.id()),
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn join(h: JoinHandle<Vec<u8>>) -> Vec<u8> {
    h.join().unwrap_or_default()
}

/// Poll `f` every 100 ms until it has an answer; panic naming `what` after
/// `secs` seconds without one.
pub fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not {what} after {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback TCP port free at the time of the call (the kernel's pick,
/// released at once for the program under test to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_quick_child_is_waited_for() {
        let mut c = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let st = exit_within(&mut c, Duration::from_secs(10), "sh");
        assert_eq!(st.code(), Some(3));
    }

    #[test]
    fn output_is_collected() {
        let c = Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = output_within(c, Duration::from_secs(10), "sh");
        assert!(o.status.success());
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn a_hung_child_is_killed_and_the_wait_fails() {
        let c = Command::new("sh")
            .args(["-c", "echo started; exec sleep 1000"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = c.id();
        let t = Instant::now();
        let r = std::panic::catch_unwind(move || {
            output_within(c, Duration::from_millis(300), "the sleeper")
        });
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("the sleeper") && msg.contains("started"),
            "{msg}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
