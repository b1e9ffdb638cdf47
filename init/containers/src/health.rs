//! Health checks: the probes, and the verdict as a pure function.
//!
//! A probe runs against the container from inside its network namespace
//! (`keel_sys::netns`): TCP connects to its 127.0.0.1:PORT, HTTP sends a GET
//! there and wants a 2xx or 3xx status. A command runs inside the container
//! (its namespaces joined through its pidfd, its cgroup, user, capabilities
//! and seccomp filter: `runtime::exec_in`) and wants exit status 0 within
//! the timeout (else it is killed). Failures during `start_period` do
//! not count (a slow start is not a failure), a success then already
//! counts as healthy; `retries` failures in a row make the container
//! unhealthy, and the supervisor restarts it under its restart policy.

use std::io::{Read, Write};
use std::time::Duration;

use keel_config::model::{Healthcheck, Probe};

/// What a container's health is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// The running verdict of one run's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    pub health: Health,
    /// Failures in a row (outside the start period).
    pub failures: u32,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            health: Health::Starting,
            failures: 0,
        }
    }
}

impl Tracker {
    /// Record a probe result `since_start_ms` after the run started.
    pub fn record(&mut self, hc: &Healthcheck, ok: bool, since_start_ms: u64) -> Health {
        if ok {
            self.failures = 0;
            self.health = Health::Healthy;
        } else if since_start_ms >= hc.start_period_ms {
            self.failures += 1;
            if self.failures >= hc.retries.max(1) {
                self.health = Health::Unhealthy;
            }
        }
        self.health
    }
}

/// Run one probe against the container whose process is `pid`.
pub fn probe(pid: i32, p: &Probe, timeout: Duration) -> Result<(), String> {
    match p {
        Probe::Tcp(port) => keel_sys::netns::connect_in(pid, *port, timeout)
            .map(|_| ())
            .map_err(|e| format!("tcp {port}: {e}")),
        Probe::Http { port, path } => {
            let mut s = keel_sys::netns::connect_in(pid, *port, timeout)
                .map_err(|e| format!("http {port}: {e}"))?;
            let _ = s.set_read_timeout(Some(timeout));
            let _ = s.set_write_timeout(Some(timeout));
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: keel-health\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .map_err(|e| format!("http {port}{path}: send: {e}"))?;
            let mut head = [0u8; 64];
            let mut got = 0;
            while got < 12 {
                match s.read(&mut head[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(format!("http {port}{path}: read: {e}")),
                }
            }
            status_ok(&head[..got]).map_err(|m| format!("http {port}{path}: {m}"))
        }
        // Run by the supervisor (`runtime::exec_in`): it needs the run.
        Probe::Command(_) => Err("a command probe runs through the supervisor".into()),
    }
}

/// `HTTP/1.x NNN`: 2xx and 3xx are healthy.
pub fn status_ok(head: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => {
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("status {code}"))
            }
        }
        _ => Err(format!(
            "not an HTTP answer: {:?}",
            text.lines().next().unwrap_or("")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(retries: u32, start_period_ms: u64) -> Healthcheck {
        Healthcheck {
            probe: Probe::Tcp(80),
            interval_ms: 1000,
            timeout_ms: 1000,
            retries,
            start_period_ms,
        }
    }

    #[test]
    fn retries_in_a_row_make_it_unhealthy() {
        let h = hc(3, 0);
        let mut t = Tracker::default();
        assert_eq!(t.record(&h, false, 10), Health::Starting);
        assert_eq!(t.record(&h, false, 20), Health::Starting);
        assert_eq!(t.record(&h, true, 30), Health::Healthy);
        assert_eq!(t.record(&h, false, 40), Health::Healthy);
        assert_eq!(t.record(&h, false, 50), Health::Healthy);
        assert_eq!(t.record(&h, false, 60), Health::Unhealthy);
    }

    #[test]
    fn the_start_period_forgives_failures_but_not_success() {
        let h = hc(1, 5000);
        let mut t = Tracker::default();
        for ms in [0, 1000, 4999] {
            assert_eq!(t.record(&h, false, ms), Health::Starting);
        }
        assert_eq!(t.failures, 0);
        assert_eq!(t.record(&h, false, 5000), Health::Unhealthy);
        let mut t = Tracker::default();
        assert_eq!(t.record(&h, true, 10), Health::Healthy);
    }

    #[test]
    fn http_status_lines() {
        assert!(status_ok(b"HTTP/1.0 200 OK\r\n").is_ok());
        assert!(status_ok(b"HTTP/1.1 302 Found\r\n").is_ok());
        assert_eq!(
            status_ok(b"HTTP/1.1 503 Busy\r\n").unwrap_err(),
            "status 503"
        );
        assert!(status_ok(b"SSH-2.0-x")
            .unwrap_err()
            .contains("not an HTTP answer"));
    }
}
