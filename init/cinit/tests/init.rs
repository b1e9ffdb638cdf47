//! keel-init on the host, as a normal program (not PID 1: it makes itself a
//! child subreaper, so orphans below it come to it as in a container):
//! signals reach the child, orphans are reaped, the status comes through.
//! Each check has a control that shows what it rules out.
//!
//! They run the binary cargo built for the test (the dev build: a std
//! program, see keel-sysraw), or the one named by `KEEL_INIT_BIN`, e.g. the
//! release build that ships (`no_std`, no libc):
//! `KEEL_INIT_BIN=$PWD/target/x86_64-unknown-linux-gnu/release/keel-init
//! cargo test -p keel-init --test init`.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The keel-init under test.
fn init() -> String {
    std::env::var("KEEL_INIT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keel-init").to_string())
}

/// `keel-init /bin/sh -- sh -c SCRIPT`, its stdout's lines.
fn init_sh(script: &str) -> (Child, Receiver<String>) {
    let mut c = Command::new(init())
        .args(["/bin/sh", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start keel-init");
    let out = lines(c.stdout.take().unwrap());
    (c, out)
}

/// The lines of `out`, read by a thread (a test waits for one with a
/// deadline, never for ever).
fn lines(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn line(r: &Receiver<String>) -> String {
    r.recv_timeout(Duration::from_secs(5))
        .expect("a line within 5 s")
}

fn wait(c: &mut Child, within: Duration) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code().expect("keel-init exits, it is not killed");
        }
        if t.elapsed() > within {
            let _ = c.kill();
            panic!("keel-init did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pid(c: &Child) -> Pid {
    Pid::from_raw(c.id() as i32)
}

/// Each signal sent to keel-init reaches its child: a shell that traps
/// them prints each name as it comes, and its pid is not keel-init's (the
/// signal went through keel-init, it was not delivered to the shell).
#[test]
fn signals_sent_to_the_init_reach_the_child() {
    let sigs = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGTERM,
    ];
    let mut script = String::new();
    for s in &sigs[..6] {
        let n = &s.as_str()[3..];
        script.push_str(&format!("trap 'echo got {n}' {n}; "));
    }
    script.push_str("trap 'echo got TERM; exit 0' TERM; echo $$; i=0; while [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done");
    let (mut c, out) = init_sh(&script);
    let child: i32 = line(&out).parse().unwrap();
    assert_ne!(child, c.id() as i32, "the shell is keel-init's child");
    for s in sigs {
        kill(pid(&c), s).unwrap();
        assert_eq!(line(&out), format!("got {}", &s.as_str()[3..]));
    }
    // The shell's trap exits 0, and so does keel-init.
    assert_eq!(wait(&mut c, Duration::from_secs(5)), 0);
}

/// A child without a handler dies of the forwarded signal, and keel-init
/// reports it as 128+N, real-time signals (a `stop_signal` may be one)
/// included. Control: the same child, not signalled, is still running.
#[test]
fn a_child_killed_by_a_forwarded_signal_is_128_plus_n() {
    for (sig, code) in [
        (libc::SIGTERM, 143),
        (libc::SIGRTMIN() + 2, 128 + libc::SIGRTMIN() + 2),
    ] {
        let (mut c, out) = init_sh("echo up; exec sleep 10");
        assert_eq!(line(&out), "up");
        std::thread::sleep(Duration::from_millis(100));
        // Control: nothing ended it yet.
        assert!(c.try_wait().unwrap().is_none(), "ended before the signal");
        keel_sys::child::signal(pid(&c), sig).unwrap();
        let t = Instant::now();
        assert_eq!(wait(&mut c, Duration::from_secs(5)), code, "signal {sig}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}

/// The child's exit code comes through; a child killed (not through
/// keel-init) is 128+N too; a missing program is 127 with a message.
#[test]
fn the_exit_status_comes_through() {
    let status = |script: &str| {
        let (mut c, _) = init_sh(script);
        wait(&mut c, Duration::from_secs(5))
    };
    assert_eq!(status("exit 7"), 7);
    assert_eq!(status("exit 0"), 0, "control");
    assert_eq!(status("kill -KILL $$"), 137);
    let o = Command::new(init())
        .args(["/nonexistent/prog", "--", "prog"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("keel-init: start /nonexistent/prog: ENOENT"),
        "{err}"
    );
    // A file that is there but not executable: 126, as a shell says.
    let plain = std::env::temp_dir().join(format!("keel-init-plain-{}", std::process::id()));
    std::fs::write(&plain, "not a program\n").unwrap();
    let o = Command::new(init())
        .args([plain.to_str().unwrap(), "--", "plain"])
        .output()
        .unwrap();
    std::fs::remove_file(&plain).unwrap();
    assert_eq!(o.status.code(), Some(126));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(": EACCES: Permission denied"), "{err}");
    let o = Command::new(init())
        .args(["/bin/sh", "sh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: keel-init PROGRAM --"));
}

/// The state of process `pid` from /proc ("Z" for a zombie), None once it
/// is gone, with its parent.
fn state(pid: i32) -> Option<(String, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let st = field("State:").chars().next().unwrap_or('?').to_string();
    Some((st, field("PPid:").parse().unwrap_or(0)))
}

/// The script: a subshell starts a short sleep in the background and
/// exits, so the sleep is orphaned (it goes to the nearest subreaper) and
/// ends 0.3 s later, while the shell itself runs on for a while.
const ORPHAN: &str = "( sleep 0.3 & echo $! ); sleep 1.5";

/// An orphan that ends is reaped by keel-init: it was keel-init's child
/// (adopted), and once it has ended no zombie is left. Control: under a
/// subreaper that does not reap (this test process), the same orphan stays
/// a zombie.
#[test]
fn orphans_are_reaped() {
    let (mut c, out) = init_sh(ORPHAN);
    let orphan: i32 = line(&out).parse().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (_, parent) = state(orphan).expect("the orphan runs");
    assert_eq!(parent, c.id() as i32, "keel-init adopted the orphan");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(state(orphan), None, "the orphan was reaped");
    assert!(c.try_wait().unwrap().is_none(), "the shell still runs");
    assert_eq!(wait(&mut c, Duration::from_secs(5)), 0);

    // Control: this process as the subreaper, which reaps only its shell.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut sh = Command::new("/bin/sh")
        .args(["-c", ORPHAN])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(sh.stdout.take().unwrap());
    let orphan: i32 = line(&out).parse().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        state(orphan),
        Some(("Z".to_string(), std::process::id() as i32)),
        "unreaped, the orphan is a zombie"
    );
    nix::sys::wait::waitpid(Pid::from_raw(orphan), None).unwrap();
    sh.kill().unwrap();
    sh.wait().unwrap();
}

/// The program starts with no signal blocked or ignored, though keel-init
/// blocks almost all and inherited an ignored SIGHUP (nohup): a fresh
/// process's signal state. Control: under nohup alone, SIGHUP is ignored.
#[test]
fn the_program_gets_a_fresh_signal_state() {
    let masks = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let script = "exec grep -E '^Sig(Blk|Ign)' /proc/self/status";
    let got = masks(Command::new("nohup").args([&init(), "/bin/sh", "--", "sh", "-c", script]));
    assert_eq!(
        got,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    let control = masks(Command::new("nohup").args(["/bin/sh", "-c", script]));
    let ign = control
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .expect("a SigIgn line");
    assert_eq!(ign & 1, 1, "SIGHUP ignored under nohup: {control}");
}

/// The program gets keel-init's environment, and its argv from ARGV0 on.
#[test]
fn the_program_gets_the_environment_and_its_argv() {
    let script = r#"tr '\0' ' ' </proc/$$/cmdline; echo "|$KEEL_T""#;
    let o = Command::new(init())
        .args(["/bin/sh", "--", "zero", "-c", script, "one"])
        .env("KEEL_T", "a=b c")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("zero -c ") && out.ends_with(" one |a=b c\n"),
        "{out}"
    );
}
