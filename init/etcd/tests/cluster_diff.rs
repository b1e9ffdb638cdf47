//! The membership answers of a three-member cluster, on Debian's etcd and on
//! the server under test (keel-etcd, or `KEEL_ETCD_BIN`; with
//! `KVDIFF_SELF=1`, a second etcd cluster), compared by each URL's role.
//!
//! Each member has two client URLs, and their ranks (the cluster's client
//! URLs sorted as text) interleave across members and run against the order
//! given: listing them member by member, in any member order, or a member's
//! URLs as given, shows a different list than etcd's, which sorts them.
//!
//! It skips with a message when etcd is not installed (Debian: etcd-server).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use keel_kvdiff::http::{send, Request};
use keel_kvdiff::server::ETCD_BIN;
use keel_kvdiff::{Cluster, Layout, Server};

/// a gets the 5th and 1st URLs in sorted order, b the 2nd and 4th, c the
/// 6th and 3rd.
const LAYOUT: Layout = &[("a", &[4, 0]), ("b", &[1, 3]), ("c", &[5, 2])];

/// What each member answers to `target`, its URLs replaced by their roles,
/// once every member lists all six client URLs.
fn answers(c: &Cluster, target: &str, label: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = c.client_urls();
    (0..c.len())
        .map(|i| loop {
            let r = send(c.addr(i), &Request::new("GET", target)).ok();
            if let Some(r) = r.filter(|r| r.status == 200) {
                let text = r.text();
                if all.iter().all(|u| text.contains(u)) {
                    return c.labelled(&text);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{label}: member {i} does not list every client URL at {target} after 20 s\n{}",
                c.log_tails()
            );
            thread::sleep(Duration::from_millis(100));
        })
        .collect()
}

/// `/v2/members` as (name, clientURLs) pairs by name: ids and the order
/// of members (by id) differ between the clusters; each member's list must
/// not.
fn client_urls_by_name(labelled: &str) -> Vec<(String, Vec<String>)> {
    let v: serde_json::Value = serde_json::from_str(labelled).expect("/v2/members is JSON");
    let mut out: Vec<(String, Vec<String>)> = v["members"]
        .as_array()
        .expect("a members list")
        .iter()
        .map(|m| {
            let urls = m["clientURLs"].as_array().expect("clientURLs");
            (
                m["name"].as_str().unwrap_or("").to_string(),
                urls.iter()
                    .map(|u| u.as_str().unwrap_or("").to_string())
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn machines_and_members_list_client_urls_as_etcd_does() {
    if !Server::etcd_available() {
        keel_testkit::skip(format!(
            "{ETCD_BIN} is not installed (Debian package etcd-server)"
        ));
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let other = keel_under_test();
    let label_b = other
        .as_ref()
        .map_or("etcd#2".to_string(), |b| b.display().to_string());
    let bin_b = other.unwrap_or_else(|| PathBuf::from(ETCD_BIN));
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| Cluster::start(Path::new(ETCD_BIN), &tmp.path().join("etcd"), LAYOUT));
        let b = s.spawn(|| Cluster::start(&bin_b, &tmp.path().join("other"), LAYOUT));
        (a.join().expect("start etcd"), b.join().expect("start B"))
    });
    let a = a.unwrap_or_else(|e| panic!("start etcd: {e}"));
    let b = b.unwrap_or_else(|e| panic!("start {label_b}: {e}"));

    // etcd, the reference: every client URL of the cluster, sorted as text.
    let etcd = answers(&a, "/v2/machines", "etcd");
    let sorted = "<a.1>, <b.0>, <c.1>, <b.1>, <a.0>, <c.0>";
    assert!(etcd.iter().all(|m| m == sorted), "etcd: {etcd:?}");
    let other = answers(&b, "/v2/machines", &label_b);
    assert_eq!(other, etcd, "/v2/machines: {label_b} against etcd");

    let etcd: Vec<_> = answers(&a, "/v2/members", "etcd")
        .iter()
        .map(|m| client_urls_by_name(m))
        .collect();
    assert_eq!(
        etcd[0][0],
        (
            "a".to_string(),
            vec!["<a.1>".to_string(), "<a.0>".to_string()]
        ),
        "etcd sorts a member's own client URLs"
    );
    let other: Vec<_> = answers(&b, "/v2/members", &label_b)
        .iter()
        .map(|m| client_urls_by_name(m))
        .collect();
    assert_eq!(other, etcd, "/v2/members: {label_b} against etcd");
}

/// keel-etcd, unless `KVDIFF_SELF=1` asks for etcd against itself.
fn keel_under_test() -> Option<PathBuf> {
    keel_kvdiff::keel_under_test(env!("CARGO_BIN_EXE_keel-etcd"))
}
