//! A static file server on the host's loopback, for what the guest fetches
//! over qemu's user network (it reaches the host's 127.0.0.1 as 10.0.2.2):
//! iPXE's boot script, kernel and initramfs over HTTP.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the server answered, one `METHOD /TARGET STATUS` line per request.
pub type Requests = Arc<Mutex<Vec<String>>>;

/// Serve the plain files of `dir` (no subfolders) on a free port of
/// 127.0.0.1, each connection on its own thread, until the process ends.
/// Answers GET and HEAD of `/NAME` with 200 and the file, anything else
/// with 404 or 405. Returns the port and the log of requests.
pub fn serve(dir: &Path) -> (u16, Requests) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the file server");
    let port = l.local_addr().expect("the file server's address").port();
    let dir = dir.to_path_buf();
    let log = Requests::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (dir, seen) = (dir.clone(), seen.clone());
            std::thread::spawn(move || {
                let _ = connection(s, &dir, &seen);
            });
        }
    });
    (port, log)
}

/// The answer's head and whether a body follows: `(status, file)`.
fn answer(dir: &Path, method: &str, target: &str) -> (&'static str, Option<PathBuf>) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", None);
    }
    let name = target.strip_prefix('/').unwrap_or("");
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\');
    let path = dir.join(name);
    if plain && path.is_file() {
        ("200 OK", Some(path))
    } else {
        ("404 Not Found", None)
    }
}

/// Requests of one keep-alive connection, until the client closes it.
fn connection(s: TcpStream, dir: &Path, seen: &Requests) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // The headers: nothing in them changes the answer.
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, file) = answer(dir, method, target);
        if let Ok(mut l) = seen.lock() {
            l.push(format!("{method} {target} {}", &status[..3]));
        }
        let body = match &file {
            Some(p) => std::fs::read(p)?,
            None => Vec::new(),
        };
        write!(
            w,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
            body.len()
        )?;
        if method != "HEAD" {
            w.write_all(&body)?;
        }
        w.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(port: u16, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_files_of_its_folder_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("boot.ipxe"), "#!ipxe\n").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/x"), "no").unwrap();
        let (port, log) = serve(d.path());
        let ok = get(port, "GET /boot.ipxe HTTP/1.1\r\nhost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n#!ipxe\n"), "{ok}");
        for bad in ["/sub/x", "/../etc/passwd", "/", "/missing", "/sub"] {
            let r = get(port, &format!("GET {bad} HTTP/1.1\r\n\r\n"));
            assert!(r.starts_with("HTTP/1.1 404 "), "{bad}: {r}");
        }
        let r = get(port, "POST /boot.ipxe HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let log = log.lock().unwrap().clone();
        assert_eq!(log[0], "GET /boot.ipxe 200");
        assert_eq!(log.last().unwrap(), "POST /boot.ipxe 405");
        assert_eq!(log.len(), 7);
    }

    #[test]
    fn keeps_a_connection_open_for_the_next_request() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "1").unwrap();
        std::fs::write(d.path().join("b"), "22").unwrap();
        let (port, _) = serve(d.path());
        let r = get(
            port,
            "GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        );
        assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 3, "{r}");
        assert!(r.contains("content-length: 2\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n22"), "{r}");
    }
}
