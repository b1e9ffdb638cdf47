//! keel-etcd's client port under a flood, on the host's loopback: a client
//! holding a keep-alive connection (and a watch waiting on another) keeps
//! being served within 1 s while the cap's worth of waiting watchers plus
//! 1,000 idle connections press on the port; the extra ones are closed at once and the
//! member says so; once the flood ends new connections get in again.

use keel_testkit::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_etcd::server::MAX_CLIENT_CONNECTIONS;

const BIN: &str = env!("CARGO_BIN_EXE_keel-etcd");

/// One keep-alive request on `s`; the answer's status line.
fn request(s: &mut TcpStream, method: &str, path: &str) -> String {
    try_request(s, method, path).unwrap()
}

/// [`request`], with a failed write or read, or a close before the answer,
/// as an error (the start-up probe, which retries).
fn try_request(s: &mut TcpStream, method: &str, path: &str) -> std::io::Result<String> {
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the answer",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(head.lines().next().unwrap_or_default().to_string());
            }
        }
    }
}

/// A lone member named `name` with its data in `dir`, its stderr to
/// `stderr`; returns it, its client port, and a keep-alive connection on
/// which its first write (`a=1`) was answered.
// The caller kills and waits for the member it gets back.
#[allow(clippy::zombie_processes)]
fn lone_member(
    dir: &std::path::Path,
    name: &str,
    stderr: Stdio,
) -> (std::process::Child, u16, TcpStream) {
    let (client, peer) = (free_port(), free_port());
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut child = Command::new(BIN)
        .args(["--name", name, "--data-dir"])
        .arg(dir.join("m"))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("keel-etcd");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Until the member answers, a refused or reset connection means
        // "not up yet" (seen once in CI: a reset on the first request).
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", client)) {
            match try_request(&mut s, "PUT", "/v2/keys/a?value=1") {
                Ok(line) if line.contains(" 20") => return (child, client, s),
                Ok(_) => {}
                Err(e) => eprintln!("probe of the starting member: {e}"),
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the member did not come up");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the member closed `s` (EOF or reset) rather than keeping it
/// (a read that would block).
fn closed(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn the_client_port_keeps_serving_its_established_clients_under_a_flood() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < 16_384 && !keel_testkit::is_root() {
        keel_testkit::skip(format!(
            "needs an open-file hard limit of 16384 (have {hard}) or root"
        ));
        return;
    }
    let want = hard.max(16_384);
    // This process and the member (which inherits it) hold 5,000+ each.
    setrlimit(Resource::RLIMIT_NOFILE, want, want).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("m.log");
    let (mut child, client, mut good) = lone_member(
        dir.path(),
        "flood",
        std::fs::File::create(&log).unwrap().into(),
    );
    // A watch waiting on its own connection.
    let mut watch = TcpStream::connect(("127.0.0.1", client)).unwrap();
    write!(
        watch,
        "GET /v2/keys/a?wait=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();

    // The held client stays active while the flood comes (an idle
    // keep-alive connection is cut after 10 s).
    let served = |good: &mut TcpStream| {
        let t = Instant::now();
        let line = request(good, "PUT", "/v2/keys/a?value=2");
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "answered after {:?}",
            t.elapsed()
        );
    };
    let flood = Instant::now();
    let mut idle = Vec::new();
    for i in 0..MAX_CLIENT_CONNECTIONS - 2 {
        // Watchers: they hold their connection as long as they wait.
        let mut w = TcpStream::connect(("127.0.0.1", client)).unwrap();
        write!(
            w,
            "GET /v2/keys/w?wait=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        idle.push(w);
        if i % 256 == 0 {
            served(&mut good);
        }
    }
    eprintln!("{} watchers in {:?}", idle.len(), flood.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = Vec::new();
    for i in 0..1000 {
        extra.push(TcpStream::connect(("127.0.0.1", client)).unwrap());
        if i % 256 == 0 {
            served(&mut good);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // The held connection is served within 1 s with the port full.
    for _ in 0..3 {
        served(&mut good);
    }
    let refused = extra.iter().filter(|s| closed(s)).count();
    // The watch saw the write.
    watch
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut w = [0u8; 512];
    let n = watch.read(&mut w).unwrap();
    assert!(String::from_utf8_lossy(&w[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        refused >= 990,
        "only {refused} of 1,000 extra connections were closed at once"
    );
    let l = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        l.contains(&format!(
            "{MAX_CLIENT_CONNECTIONS} are open, the most it serves at once"
        )),
        "{l}"
    );
    // The flood ends: new connections get in again.
    drop(idle);
    drop(extra);
    std::thread::sleep(Duration::from_millis(500));
    let mut again = TcpStream::connect(("127.0.0.1", client)).unwrap();
    assert!(request(&mut again, "GET", "/v2/keys/a").starts_with("HTTP/1.1 200"));
    let _ = child.kill();
    let _ = child.wait();
}

/// Slow clients are cut: a connection idle after its request at 10 s (the
/// head timeout covers a kept-alive connection's wait for its next
/// request), a body that trickles in at 30 s with 408. Meanwhile the
/// member answers a whole request at once (the control).
#[test]
fn an_idle_connection_and_a_trickling_body_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, client, idle) = lone_member(dir.path(), "slow", Stdio::null());
    let start = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", client)).unwrap();
    write!(
        slow,
        "PUT /v2/keys/b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nvalue="
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        closed(&idle),
        "an idle keep-alive connection is cut at 10 s"
    );
    // The body's clock runs on: at 12 s the slow body's connection is open.
    assert!(!closed(&slow), "the body has 30 s");
    slow.set_nonblocking(false).unwrap();
    // A whole request on a new connection is answered at once.
    let mut fresh = TcpStream::connect(("127.0.0.1", client)).unwrap();
    assert!(request(&mut fresh, "GET", "/v2/keys/a").starts_with("HTTP/1.1 200"));
    slow.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    let took = start.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("not complete within 30s"),
        "{answer:?}"
    );
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(40),
        "cut after {took:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
