//! The space alarm, on a real small file system: a member whose data disk
//! runs out of room refuses writes that add data with a clear error while
//! reads and deletes go on, and takes writes again once room is made. Privileged (mounts a tmpfs);
//! skips with a message otherwise.

use keel_testkit::free_port;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_kvdiff::http::{send, Request};

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_data_disk_refuses_writes_and_keeps_reads() {
    if !keel_testkit::need_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    let _m = Mount(mnt.clone());
    let (client, peer) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_keel-etcd"))
        .arg("--data-dir")
        .arg(mnt.join("data"))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Child(child);
    let addr: SocketAddr = ([127, 0, 0, 1], client).into();
    let put = |v: &str| {
        send(
            addr,
            &Request::form("PUT", "/v2/keys/k", &format!("value={v}")),
        )
    };
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "not {what} after 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    until("serving", &|| put("1").is_ok_and(|r| r.status == 201));
    let r = send(addr, &Request::form("PUT", "/v2/keys/spare", "value=x")).unwrap();
    assert_eq!(r.status, 201, "{}", r.describe());

    // 180 of 200 MiB taken: under the alarm line (64 MiB, or an eighth of a
    // smaller disk: 25 MiB here).
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 180 << 20]).unwrap();
    until("refusing writes", &|| {
        put("2").is_ok_and(|r| r.status == 500)
    });
    let r = put("2").unwrap();
    let v = r.json().unwrap();
    assert_eq!(v["errorCode"], 300, "{}", r.describe());
    assert!(
        v["cause"].as_str().unwrap().contains("no space"),
        "{}",
        r.describe()
    );
    // Reads go on, and see the last accepted write (a "2" may have gone in
    // before the alarm's half-second check saw the filler).
    let r = send(addr, &Request::new("GET", "/v2/keys/k")).unwrap();
    let v = r.json().unwrap()["node"]["value"].clone();
    assert!(v == "1" || v == "2", "{}", r.describe());

    // Deletes go on (they are how room is made in the store).
    let r = send(addr, &Request::new("DELETE", "/v2/keys/spare")).unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());

    std::fs::remove_file(&filler).unwrap();
    until("taking writes again", &|| {
        put("3").is_ok_and(|r| r.status == 200)
    });
}

/// Kills the member however the test ends.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
