//! The etcd v2 keys API, replayed on Debian's etcd and on the server under
//! test, answer by answer.
//!
//! Server B is keel-etcd (this package's binary, or the one named by
//! `KEEL_ETCD_BIN`); with `KVDIFF_SELF=1`, B is a second etcd, which checks
//! that the normaliser hides every legitimate difference (the run must then
//! show zero mismatches). The script records nothing about
//! what etcd answers: etcd is the reference. Set `KVDIFF_TRANSCRIPT=path` to
//! write every request with etcd's raw answer to a file.
//!
//! It skips with a message when etcd is not installed (Debian: etcd-server).

use std::path::PathBuf;
use std::thread;

use keel_kvdiff::http::Request;
use keel_kvdiff::server::ETCD_BIN;
use keel_kvdiff::{run, Server, Step, Target};

/// Values, empty values, form bodies against query strings, the root.
fn basics() -> Vec<Step> {
    vec![
        Step::get("/v2/keys/"),
        Step::get("/v2/keys"),
        Step::head("/v2/keys/"),
        Step::get("/v2/keys/missing"),
        Step::head("/v2/keys/missing"),
        Step::get("/v2/keys/missing/deeper"),
        Step::put("/v2/keys/a?value=1"),
        Step::get("/v2/keys/a"),
        Step::head("/v2/keys/a"),
        Step::put("/v2/keys/a?value=2"),
        Step::get("/v2/keys/a/"),
        Step::get("/v2/keys/a?unknown=1&recursive=false&sorted=false&quorum=false&wait=false"),
        Step::put("/v2/keys/a?value=first&value=second"),
        Step::form("PUT", "/v2/keys/b", "value=form"),
        Step::form("PUT", "/v2/keys/b?value=query", "value=body"),
        Step::form("PUT", "/v2/keys/b?ttl=abc", "value=body"),
        Step::send(Request::with_body(
            "PUT",
            "/v2/keys/b?value=query",
            "text/plain",
            "value=body",
        )),
        Step::send(Request::with_body(
            "PUT",
            "/v2/keys/b",
            "application/json",
            r#"{"value":"json"}"#,
        )),
        Step::form("POST", "/v2/keys/fq", "value=posted+form"),
        Step::put("/v2/keys/e"),
        Step::put("/v2/keys/e?value="),
        Step::put("/v2/keys/nv?value=quiet&noValueOnSuccess=true"),
        Step::put("/v2/keys/nv?value=quieter&prevValue=quiet&noValueOnSuccess=true"),
        Step::post("/v2/keys/nvq?value=quiet&noValueOnSuccess=true"),
        Step::get("/v2/keys/nv?noValueOnSuccess=true"),
        Step::delete("/v2/keys/nv?noValueOnSuccess=true"),
        Step::get("/v2/keys/e"),
        Step::get("/v2/keys/?sorted=true"),
        Step::get("/v2/keys?recursive=true&sorted=true"),
        Step::put("/v2/keys?value=1"),
        Step::put("/v2/keys/?value=1"),
        Step::put("/v2/keys/?dir=true"),
        Step::delete("/v2/keys/"),
        Step::delete("/v2/keys/?recursive=true"),
        Step::delete("/v2/keys?dir=true"),
        Step::post("/v2/keys/?value=at-root"),
        Step::get("/v2/keys/?sorted=true"),
    ]
}

/// Spaces, unicode, escapes and percent-encoded key names.
fn encoding() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/sp?value=hello%20world"),
        Step::put("/v2/keys/sp?value=hello+world"),
        Step::form("PUT", "/v2/keys/sp", "value=a+b%26c%3Dd"),
        Step::put("/v2/keys/uni?value=%E2%9C%93%20caf%C3%A9%20%F0%9F%A6%80"),
        Step::get("/v2/keys/uni"),
        Step::put("/v2/keys/html?value=%3Cb%3E%26%27"),
        Step::put("/v2/keys/ctl?value=l1%0Al2%09tab%22q%5C"),
        Step::get("/v2/keys/ctl"),
        Step::put("/v2/keys/sp%20key?value=1"),
        Step::get("/v2/keys/sp%20key"),
        Step::put("/v2/keys/enc%2Fslash?value=1"),
        Step::get("/v2/keys/enc"),
        Step::put("/v2/keys/caf%C3%A9?value=1"),
        Step::get("/v2/keys/caf%C3%A9"),
        Step::put("/v2/keys/pct%25?value=1"),
        Step::get("/v2/keys/pct%25"),
        Step::put("/v2/keys/plus+key?value=1"),
        Step::put("/v2/keys/qm%3Fkey?value=1"),
        Step::get("/v2/keys/qm%3Fkey"),
        Step::put("/v2/keys/bad?value=%zz"),
        Step::form("PUT", "/v2/keys/bad", "value=%zz"),
        Step::get("/v2/keys/bad"),
        Step::put(&format!("/v2/keys/long?value={}", "x".repeat(4096))),
    ]
}

/// Directories, recursive and sorted listings, 102/104/108.
fn directories() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/dir?dir=true"),
        Step::put("/v2/keys/dir?dir=true"),
        Step::get("/v2/keys/dir"),
        Step::put("/v2/keys/dir?value=x"),
        Step::put("/v2/keys/dir/f1?value=1"),
        Step::put("/v2/keys/dir/sub/f2?value=2"),
        Step::put("/v2/keys/dir/sub/f3?value=3"),
        Step::put("/v2/keys/dir/f0?value=0"),
        Step::get("/v2/keys/dir?sorted=true"),
        Step::get("/v2/keys/dir?recursive=true&sorted=true"),
        Step::get("/v2/keys/dir/sub?recursive=true&sorted=true"),
        Step::get("/v2/keys/dir/?recursive=1&sorted=t"),
        Step::head("/v2/keys/dir?recursive=true"),
        Step::put("/v2/keys/dir?dir=true"),
        Step::put("/v2/keys/dir/f1/x?value=1"),
        Step::get("/v2/keys/dir/f1/x"),
        Step::post("/v2/keys/dir/f1?value=x"),
        Step::delete("/v2/keys/dir"),
        Step::delete("/v2/keys/dir?dir=true"),
        Step::delete("/v2/keys/dir/sub?dir=true"),
        Step::delete("/v2/keys/dir/f0?dir=true"),
        Step::delete("/v2/keys/dir/sub/f2"),
        Step::delete("/v2/keys/dir/sub/f3?recursive=true"),
        Step::delete("/v2/keys/dir/sub?dir=true"),
        Step::put("/v2/keys/dir?dir=true&prevExist=true"),
        Step::put("/v2/keys/dir?dir=true&prevExist=false"),
        Step::put("/v2/keys/newdir?dir=true&prevExist=false"),
        Step::put("/v2/keys/dir2?dir=true&value=ignored"),
        Step::put("/v2/keys/dir2?value=x&prevExist=true"),
        Step::get("/v2/keys/dir?recursive=true&sorted=true"),
        Step::delete("/v2/keys/dir?recursive=true"),
        Step::delete("/v2/keys/dir?recursive=true"),
        Step::get("/v2/keys/dir"),
        Step::delete("/v2/keys/newdir?recursive=true&dir=true"),
        Step::delete("/v2/keys/dir2?dir=true"),
        Step::put("/v2/keys/deep/a/b/c/d?value=1"),
        Step::get("/v2/keys/deep?recursive=true"),
        Step::get("/v2/keys/deep/a/b/c/d/e"),
        Step::delete("/v2/keys/deep/a?recursive=true"),
        Step::get("/v2/keys/deep"),
    ]
}

/// Keys whose name starts with `_` are left out of listings and watches.
fn hidden() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/_hidden?value=1"),
        Step::put("/v2/keys/hd/_h?value=1"),
        Step::put("/v2/keys/hd/v?value=1"),
        Step::get("/v2/keys/hd"),
        Step::get("/v2/keys/hd?recursive=true"),
        Step::get("/v2/keys/?recursive=true&sorted=true"),
        Step::get("/v2/keys/_hidden"),
        Step::get("/v2/keys/hd/_h"),
        Step::put("/v2/keys/_hdir/x?value=1"),
        Step::get("/v2/keys/_hdir?recursive=true"),
        Step::post("/v2/keys/_q?value=1"),
        Step::get("/v2/keys/_q?recursive=true"),
        Step::delete("/v2/keys/_hidden"),
        Step::delete("/v2/keys/_hdir?recursive=true"),
    ]
}

/// POST: in-order keys named by their index.
fn in_order() -> Vec<Step> {
    vec![
        Step::post("/v2/keys/queue?value=j1"),
        Step::post("/v2/keys/queue?value=j2"),
        Step::form("POST", "/v2/keys/queue", "value=j3"),
        Step::post("/v2/keys/queue"),
        Step::get("/v2/keys/queue?sorted=true"),
        Step::get("/v2/keys/queue/{q-3}"),
        Step::get("/v2/keys/queue/{q+1}"),
        Step::delete("/v2/keys/queue/{q-3}"),
        Step::get("/v2/keys/queue?recursive=true&sorted=true"),
        Step::post("/v2/keys/queue?value=t&ttl=100"),
        Step::post("/v2/keys/queue?value=x&prevExist=true"),
        Step::post("/v2/keys/queue?dir=true"),
        Step::post("/v2/keys/queue?value=x&ttl=abc"),
        Step::post("/v2/keys/newq/sub?value=1"),
        Step::get("/v2/keys/newq?recursive=true"),
        Step::delete("/v2/keys/queue?recursive=true"),
    ]
}

/// TTLs far from expiring (expiry itself is in [`expiry`]), refresh.
fn ttl() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/t?value=1&ttl=100"),
        Step::get("/v2/keys/t"),
        Step::put("/v2/keys/t?ttl=200&refresh=true&prevExist=true"),
        Step::put("/v2/keys/t?ttl=300&refresh=true"),
        Step::get("/v2/keys/t"),
        Step::put("/v2/keys/t?value=2&ttl=300&refresh=true"),
        Step::put("/v2/keys/t?refresh=true"),
        Step::put("/v2/keys/t?refresh=true&ttl="),
        Step::put("/v2/keys/nope?ttl=5&refresh=true"),
        Step::put("/v2/keys/t?value=3"),
        Step::get("/v2/keys/t"),
        Step::put("/v2/keys/t?value=4&ttl="),
        Step::put("/v2/keys/t?value=1&ttl=abc"),
        Step::put("/v2/keys/t?value=1&ttl=-1"),
        Step::put("/v2/keys/t?value=1&ttl=1.5"),
        Step::put("/v2/keys/t?value=1&ttl=99999999999999999999"),
        Step::put("/v2/keys/tdir?dir=true&ttl=100"),
        Step::get("/v2/keys/tdir"),
        Step::put("/v2/keys/tdir?dir=true&ttl=200&prevExist=true"),
        Step::put("/v2/keys/tdir?dir=true&ttl=300&refresh=true&prevExist=true"),
        Step::put("/v2/keys/tdir?dir=true&ttl=&prevExist=true"),
        Step::get("/v2/keys/tdir"),
        Step::put("/v2/keys/t2?value=v&ttl=100"),
        Step::put("/v2/keys/t2?ttl=200&refresh=true&prevValue=v"),
        Step::put("/v2/keys/t2?ttl=200&refresh=true&prevValue=wrong"),
        Step::put("/v2/keys/t2?ttl=250&refresh=true&prevIndex={p}"),
        // A refresh does not wake watchers: the watch sees the next set.
        Step::watch("refresh", "/v2/keys/t2?wait=true"),
        Step::put("/v2/keys/t2?ttl=300&refresh=true"),
        Step::put("/v2/keys/t2?value=after-refresh"),
        Step::collect("refresh"),
    ]
}

/// prevExist / prevValue / prevIndex on PUT.
fn compare_and_swap() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/cas?value=one"),
        Step::put("/v2/keys/cas?value=two&prevValue=one"),
        Step::put("/v2/keys/cas?value=x&prevValue=one"),
        Step::put("/v2/keys/cas?value=three&prevIndex={p}"),
        Step::put("/v2/keys/cas?value=x&prevIndex={p-1}"),
        Step::put("/v2/keys/cas?value=x&prevValue=three&prevIndex={p-1}"),
        Step::put("/v2/keys/cas?value=x&prevValue=nope&prevIndex={p-1}"),
        Step::put("/v2/keys/cas?value=x&prevValue=nope&prevIndex={p}"),
        Step::put("/v2/keys/cas?value=four&prevValue=three&prevIndex={p}"),
        Step::put("/v2/keys/cas?value=x&prevExist=false"),
        Step::put("/v2/keys/cas?value=five&prevExist=true"),
        Step::form("PUT", "/v2/keys/cas", "value=six&prevValue=five"),
        Step::put("/v2/keys/casnew?value=1&prevExist=true"),
        Step::put("/v2/keys/casnew?value=1&prevExist=false"),
        Step::put("/v2/keys/casnew?value=2&prevExist=true&prevValue=1"),
        Step::put("/v2/keys/casnew?value=3&prevExist=false&prevValue=2"),
        Step::put("/v2/keys/casmissing?value=1&prevValue=x"),
        Step::put("/v2/keys/casmissing?value=1&prevIndex=5"),
        Step::put("/v2/keys/cas?value=x&prevValue="),
        Step::put("/v2/keys/cas?value=x&prevIndex=abc"),
        Step::put("/v2/keys/cas?value=x&prevIndex=-1"),
        Step::put("/v2/keys/cas?value=seven&prevIndex=0"),
        Step::put("/v2/keys/cas?value=x&prevExist=maybe"),
        Step::put("/v2/keys/casdir?dir=true"),
        Step::put("/v2/keys/casdir?value=x&prevValue=y"),
        Step::put("/v2/keys/casdir?dir=true&prevIndex={p}"),
        Step::get("/v2/keys/cas"),
    ]
}

/// prevValue / prevIndex on DELETE.
fn compare_and_delete() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/cad?value=one"),
        Step::delete("/v2/keys/cad?prevValue=two"),
        Step::delete("/v2/keys/cad?prevIndex={p+1}"),
        Step::delete("/v2/keys/cad?prevValue=one&prevIndex={p+5}"),
        Step::delete("/v2/keys/cad?prevValue=two&prevIndex={p+5}"),
        Step::delete("/v2/keys/cad?prevValue=one"),
        Step::delete("/v2/keys/cad?prevValue=one"),
        Step::put("/v2/keys/cad2?value=x"),
        Step::delete("/v2/keys/cad2?prevIndex={p}"),
        Step::delete("/v2/keys/cad?prevValue="),
        Step::delete("/v2/keys/cad?prevIndex=x"),
        Step::put("/v2/keys/caddir/x?value=1"),
        Step::delete("/v2/keys/caddir?prevValue=x&recursive=true"),
        Step::delete("/v2/keys/caddir?prevIndex={p}&dir=true"),
        Step::put("/v2/keys/cad3?value=keep"),
        // DELETE bodies are not parsed (Go's ParseForm): this deletes.
        Step::form("DELETE", "/v2/keys/cad3", "prevValue=wrong"),
        Step::delete("/v2/keys/cad4?prevExist=true"),
        Step::delete("/v2/keys/caddir?recursive=true"),
    ]
}

/// Malformed fields: 2xx error codes with index 0.
fn form_errors() -> Vec<Step> {
    vec![
        Step::get("/v2/keys/a?recursive=maybe"),
        Step::get("/v2/keys/a?sorted=maybe"),
        Step::get("/v2/keys/a?wait=maybe"),
        Step::get("/v2/keys/a?quorum=maybe"),
        Step::get("/v2/keys/a?stream=maybe"),
        Step::get("/v2/keys/a?recursive="),
        Step::get("/v2/keys/a?recursive=TRUE"),
        Step::get("/v2/keys/a?recursive=FALSE&sorted=F&quorum=0"),
        Step::put("/v2/keys/a?value=1&dir=maybe"),
        Step::put("/v2/keys/a?value=1&prevExist=maybe"),
        Step::put("/v2/keys/a?value=1&refresh=maybe"),
        Step::get("/v2/keys/a?wait=true&waitIndex=x"),
        Step::get("/v2/keys/a?wait=true&waitIndex=-1"),
        Step::get("/v2/keys/a?waitIndex=x"),
        Step::post("/v2/keys/a?ttl=x"),
        Step::delete("/v2/keys/a?recursive=maybe"),
        Step::delete("/v2/keys/a?dir=maybe"),
        Step::put("/v2/keys/a?value=1&ttl=x&prevIndex=y"),
        Step::put("/v2/keys/a?value=1&prevIndex=y&ttl=x"),
        Step::put("/v2/keys/a?value=1&refresh=true&ttl=x"),
        Step::put("/v2/keys/a?value=1&wait=true"),
        Step::delete("/v2/keys/a?wait=true"),
        Step::put("/v2/keys/a?value=1&noValueOnSuccess=maybe"),
    ]
}

/// Unclean paths (redirects), other methods, other paths, quorum reads.
fn paths_and_methods() -> Vec<Step> {
    vec![
        Step::get("/v2/keys//a"),
        Step::get("/v2/keys//a/./b"),
        Step::put("/v2/keys//a/./b?value=1"),
        Step::delete("/v2/keys/x/../a"),
        Step::post("/v2/keys/./q?value=1"),
        Step::get("/v2/keys/../a"),
        Step::get("/v2/keys/a%2F%2Fb"),
        Step::get("/v2/keys//sp%20key?x=1"),
        Step::head("/v2/keys//a"),
        Step::get("/v2/keys/a//"),
        Step::method("PATCH", "/v2/keys/a"),
        Step::method("OPTIONS", "/v2/keys/a"),
        Step::method("OPTIONS", "/v2/keys/"),
        Step::method("FOO", "/v2/keys/a"),
        Step::method("PUT", "/version"),
        Step::method("DELETE", "/v2/members/zzz"),
        Step::method("POST", "/v2/members"),
        Step::get("/v2/keysfoo"),
        Step::get("/v2"),
        Step::get("/v2/"),
        Step::get("/"),
        Step::get("/v2/stats"),
        Step::get("/v2/keys/a?quorum=true"),
        Step::get("/v2/keys/missing?quorum=true"),
        Step::get("/v2/keys/?quorum=true&recursive=true&sorted=true"),
        Step::head("/v2/keys/a?quorum=true"),
    ]
}

/// Long polls: with and without waitIndex, recursive, every action.
fn watches() -> Vec<Step> {
    vec![
        Step::watch("w1", "/v2/keys/wk?wait=true"),
        Step::put("/v2/keys/wk?value=1"),
        Step::collect("w1"),
        Step::get("/v2/keys/wk?wait=true&waitIndex={p}"),
        Step::watch("w2", "/v2/keys/wdir?wait=true&recursive=true"),
        Step::put("/v2/keys/wdir/x?value=1"),
        Step::collect("w2"),
        Step::watch("w3", "/v2/keys/wdir?wait=true"),
        Step::put("/v2/keys/wdir/y?value=1"),
        Step::delete("/v2/keys/wdir?recursive=true"),
        Step::collect("w3"),
        Step::watch("w4", "/v2/keys/wk?wait=true&waitIndex={p+2}"),
        Step::put("/v2/keys/wk?value=2"),
        Step::put("/v2/keys/wk?value=3"),
        Step::collect("w4"),
        Step::get("/v2/keys/?wait=true&recursive=true&waitIndex={p-1}"),
        Step::get("/v2/keys/wk?wait=true&waitIndex={p-1}"),
        Step::get("/v2/keys/a?wait=true&waitIndex={i+1}"),
        Step::watch("w5", "/v2/keys/wk?wait=true"),
        Step::delete("/v2/keys/wk"),
        Step::collect("w5"),
        Step::watch("w6", "/v2/keys/wk?wait=true"),
        Step::put("/v2/keys/wk?value=again&prevExist=false"),
        Step::collect("w6"),
        Step::watch("w7", "/v2/keys/wk?wait=true"),
        Step::put("/v2/keys/wk?value=swapped&prevValue=again"),
        Step::collect("w7"),
        Step::watch("w8", "/v2/keys/wk?wait=true"),
        Step::delete("/v2/keys/wk?prevValue=swapped"),
        Step::collect("w8"),
        Step::watch("w9", "/v2/keys/wq?wait=true&recursive=true"),
        Step::post("/v2/keys/wq?value=job"),
        Step::collect("w9"),
        Step::watch("w10", "/v2/keys/?wait=true&recursive=true"),
        Step::put("/v2/keys/_hw?value=hidden"),
        Step::put("/v2/keys/visible?value=1"),
        Step::collect("w10"),
        Step::watch("w11", "/v2/keys/_hw?wait=true"),
        Step::put("/v2/keys/_hw?value=direct"),
        Step::collect("w11"),
        Step::watch("w12", "/v2/keys/wu?wait=true"),
        Step::put("/v2/keys/wu?value=x&prevExist=false"),
        Step::put("/v2/keys/wu?value=y&prevExist=true"),
        Step::collect("w12"),
        Step::watch("w13", "/v2/keys/wdir2?wait=true"),
        Step::put("/v2/keys/wdir2?dir=true"),
        Step::collect("w13"),
        Step::get("/v2/keys/wdir2?wait=true&waitIndex={p}&sorted=true&quorum=true"),
        Step::put("/v2/keys/wdir2/c?value=1"),
        Step::watch("w14", "/v2/keys/wdir2/c?wait=true"),
        Step::delete("/v2/keys/wdir2?recursive=true"),
        Step::collect("w14"),
        Step::head("/v2/keys/wk?wait=true&waitIndex={i+1}"),
    ]
}

/// stream=true: one response, many events.
fn streams() -> Vec<Step> {
    vec![
        Step::stream("s1", "/v2/keys/sk?wait=true&stream=true", 4),
        Step::put("/v2/keys/sk?value=1"),
        Step::put("/v2/keys/sk?value=2"),
        // etcd delivers a deleted key's event twice to a streaming watcher of
        // that key (once as the deleted node, once as the event's key).
        Step::delete("/v2/keys/sk"),
        Step::collect("s1"),
        Step::stream("s2", "/v2/keys/sd?wait=true&stream=true&recursive=true", 3),
        Step::put("/v2/keys/sd/a?value=1"),
        Step::put("/v2/keys/sd/_h?value=1"),
        Step::post("/v2/keys/sd?value=2"),
        Step::delete("/v2/keys/sd/a"),
        Step::collect("s2"),
        Step::put("/v2/keys/sp2?value=1"),
        Step::put("/v2/keys/sp2?value=2"),
        // A stream whose waitIndex is in the history gets that one event and
        // then nothing more (etcd answers it from the history and never
        // registers the watcher); the write after it is not streamed.
        Step::stream(
            "s3",
            "/v2/keys/sp2?wait=true&stream=true&waitIndex={p-1}",
            1,
        ),
        Step::put("/v2/keys/sp2?value=3"),
        Step::collect("s3"),
        Step::get("/v2/keys/sp2?stream=true"),
        Step::get("/v2/keys/sd?recursive=true&sorted=true"),
    ]
}

/// TTL expiry: keys with TTL 1 s, one sleep, then what is left.
fn expiry() -> Vec<Step> {
    vec![
        Step::put("/v2/keys/exp?value=1&ttl=1"),
        Step::get("/v2/keys/exp"),
        Step::put("/v2/keys/expdir?dir=true&ttl=1"),
        Step::put("/v2/keys/expdir/child?value=1"),
        Step::put("/v2/keys/keep?value=1&ttl=1"),
        Step::put("/v2/keys/keep?ttl=100&refresh=true"),
        Step::watch("we1", "/v2/keys/exp?wait=true"),
        Step::watch("we2", "/v2/keys/expdir?wait=true&recursive=true"),
        Step::watch("we3", "/v2/keys/expdir/child?wait=true"),
        // After the watches: a watch's X-Etcd-Index is the index when it
        // was registered, and a TTL of 0 expires at once on one server and
        // at the next expiry tick on the other, so a watch registered after
        // this put would see one index more or less by timing alone.
        Step::put("/v2/keys/zero?value=1&ttl=0"),
        Step::sleep_ms(2000),
        // First, while the refreshed TTL of 100 s still shows as 98.
        Step::get("/v2/keys/keep"),
        Step::collect("we1"),
        Step::collect("we2"),
        Step::collect("we3"),
        Step::get("/v2/keys/exp"),
        Step::get("/v2/keys/expdir"),
        Step::get("/v2/keys/zero"),
        Step::get("/v2/keys/?wait=true&recursive=true&waitIndex={p-2}"),
        Step::put("/v2/keys/keep?value=permanent"),
    ]
}

/// 1000 writes push the first events out of the history window (401).
fn history() -> Vec<Step> {
    vec![
        Step::burst(1005, "PUT", "/v2/keys/burst?value={n}"),
        Step::get("/v2/keys/burst"),
        Step::get("/v2/keys/a?wait=true&waitIndex={i+1}"),
        Step::get("/v2/keys/burst?wait=true&waitIndex={p-999}"),
        Step::get("/v2/keys/burst?wait=true&waitIndex={p-1000}"),
        Step::get("/v2/keys/?wait=true&recursive=true&waitIndex={p-1000}"),
        Step::get("/v2/keys/burst?wait=true&stream=true&waitIndex={i+1}"),
        Step::head("/v2/keys/burst?wait=true&waitIndex={i+1}"),
    ]
}

/// Cluster endpoints: ids, URLs, times and counters differ; shapes must not.
fn cluster() -> Vec<Step> {
    vec![
        Step::shape("/version"),
        Step::shape("/health"),
        Step::shape("/v2/machines"),
        Step::shape("/v2/members"),
        Step::shape("/v2/members/"),
        Step::shape("/v2/members/leader"),
        Step::shape("/v2/stats/self"),
        Step::shape("/v2/stats/store"),
        Step::shape("/v2/stats/leader"),
    ]
}

fn script() -> Vec<Step> {
    [
        basics(),
        encoding(),
        directories(),
        hidden(),
        in_order(),
        ttl(),
        compare_and_swap(),
        compare_and_delete(),
        form_errors(),
        paths_and_methods(),
        watches(),
        streams(),
        expiry(),
        history(),
        cluster(),
    ]
    .concat()
}

#[test]
fn v2_api_answers_like_etcd() {
    if !Server::etcd_available() {
        keel_testkit::skip(format!(
            "{ETCD_BIN} is not installed (Debian package etcd-server)"
        ));
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let other = keel_under_test();
    let label_b = match &other {
        Some(bin) => bin.display().to_string(),
        None => "etcd#2".to_string(),
    };
    // Both servers start at once: each takes about a second to elect itself.
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| Server::etcd(&tmp.path().join("etcd")));
        let b = s.spawn(|| match &other {
            Some(bin) => Server::command(bin, &tmp.path().join("other")),
            None => Server::etcd(&tmp.path().join("etcd2")),
        });
        (a.join().expect("start etcd"), b.join().expect("start B"))
    });
    let a = a.unwrap_or_else(|e| panic!("start etcd: {e}"));
    let b = b.unwrap_or_else(|e| panic!("start {label_b}: {e}"));
    let ta = Target::of(&a, "etcd").unwrap_or_else(|e| panic!("{e}"));
    let tb = Target::of(&b, &label_b).unwrap_or_else(|e| panic!("{e}"));

    let report = run(&script(), &ta, &tb);

    if let Some(path) = std::env::var_os("KVDIFF_TRANSCRIPT") {
        std::fs::write(&path, &report.transcript).expect("write KVDIFF_TRANSCRIPT");
    }
    for m in &report.mismatches {
        eprintln!("{m}\n");
    }
    println!("{}", report.summary("etcd", &label_b));
    assert!(
        report.compared >= 200,
        "only {} requests compared",
        report.compared
    );
    assert!(
        report.mismatches.is_empty(),
        "{} mismatches between etcd and {label_b} (listed above)",
        report.mismatches.len()
    );
}

/// keel-etcd, unless `KVDIFF_SELF=1` asks for etcd against itself.
fn keel_under_test() -> Option<PathBuf> {
    keel_kvdiff::keel_under_test(env!("CARGO_BIN_EXE_keel-etcd"))
}
