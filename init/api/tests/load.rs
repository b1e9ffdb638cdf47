//! The API's TCP port under load, on the host's loopback (qemu's port
//! forwarding cannot carry thousands of sockets): a client holding a
//! connection is answered within 1 s while the cap's worth of idle
//! connections plus 1,000 more and a slowloris client press on the port;
//! the extra connections are closed at once; the slowloris is cut at the
//! head timeout; and once the flood ends new connections get in again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_api::server::{HEAD_TIMEOUT, MAX_TCP_CONNECTIONS};
use keel_tls::{ServerFiles, TlsAcceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Tls = keel_tls::ClientStream<TcpStream>;

async fn connect_tls(addr: std::net::SocketAddr, pki: &keel_tls::testpki::TestPki) -> Tls {
    let config = keel_tls::client_config(&keel_tls::ClientFiles {
        ca: ("ca", pki.ca.clone()),
        identity: Some((
            ("cert", pki.client_cert.clone()),
            ("key", pki.client_key.clone()),
        )),
    })
    .unwrap();
    let s = TcpStream::connect(addr).await.unwrap();
    keel_tls::connect(config, keel_tls::server_name("127.0.0.1").unwrap(), s)
        .await
        .unwrap()
}

/// One keep-alive GET /v1/status on `t`; the answer's status line.
async fn get(t: &mut Tls) -> String {
    t.write_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = t.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer");
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
                .unwrap();
            if body.len() >= len {
                return head.lines().next().unwrap().to_string();
            }
        }
    }
}

/// Whether the server closes `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[test]
fn the_port_keeps_serving_its_established_clients_under_a_flood() {
    // Client and server sockets of 2,000+ connections live in this process.
    if !keel_testkit::is_root() {
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        if hard < 8192 {
            keel_testkit::skip(format!(
                "needs an open-file hard limit of 8192 (have {soft}/{hard}) or root"
            ));
            return;
        }
    }
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.max(16_384);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, want).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let config = keel_tls::server_config(&ServerFiles {
        cert: ("api.cert_file", pki.server_cert.clone()),
        key: ("api.key_file", pki.server_key.clone()),
        client_ca: Some(("api.client_ca_file", pki.ca.clone())),
    })
    .unwrap();
    let addr = keel_api::fake::spawn_tcp(TlsAcceptor::from(config)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let pki = Arc::new(pki);
        // The client that keeps within the cap: connected first.
        let mut good = connect_tls(addr, &pki).await;
        assert!(get(&mut good).await.starts_with("HTTP/1.1 200"));
        // A slowloris: a head sent a byte a second.
        let mut slow = connect_tls(addr, &pki).await;
        let slow_start = Instant::now();
        let slow_task = tokio::spawn(async move {
            for b in b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if slow.write_all(&[*b]).await.is_err() {
                    break;
                }
                let mut probe = [0u8; 64];
                match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut probe)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => {}
                }
                if slow_start.elapsed() > Duration::from_secs(60) {
                    return None;
                }
            }
            Some(slow_start.elapsed())
        });
        // The flood: idle connections to the cap, then 1,000 more.
        let mut idle = Vec::new();
        for _ in 0..MAX_TCP_CONNECTIONS - 2 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the server take them all before the extra ones come.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut extra = Vec::new();
        for _ in 0..1000 {
            extra.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut refused = 0;
        for s in extra.iter_mut() {
            if closed_within(s, Duration::from_millis(50)).await {
                refused += 1;
            }
        }
        // The held connection is answered within 1 s, with the port full.
        for _ in 0..3 {
            let t = Instant::now();
            let line = get(&mut good).await;
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "answered after {:?}",
                t.elapsed()
            );
        }
        assert!(
            refused >= 990,
            "only {refused} of the 1,000 extra connections were closed at once"
        );
        // The idle ones are still open (the cap holds them, it does not
        // shed them): a new connection is refused while they are.
        let mut late = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut late, Duration::from_secs(2)).await,
            "a connection past the cap got in"
        );
        let cut = slow_task
            .await
            .unwrap()
            .expect("the slowloris was never cut");
        assert!(
            cut >= HEAD_TIMEOUT - Duration::from_secs(1)
                && cut < HEAD_TIMEOUT + Duration::from_secs(5),
            "the slowloris was cut after {cut:?}"
        );
        // The flood ends: the port takes new connections again.
        drop(idle);
        drop(extra);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut again = connect_tls(addr, &pki).await;
        assert!(get(&mut again).await.starts_with("HTTP/1.1 200"));
    });
}
