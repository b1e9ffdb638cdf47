//! The kernel command line: keel's `keel.*` parameters.
//!
//! Parsed from the raw text of /proc/cmdline. A malformed or unknown `keel.*`
//! parameter is reported by name and its default is used instead: a typo on
//! the command line must never keep a node from booting.
//!
//! | parameter | meaning |
//! |---|---|
//! | `keel.on_panic=reboot\|poweroff\|halt` | what the guard does after a fatal error (default reboot) |
//! | `keel.ip=ADDR/PREFIX[,GATEWAY]` | static IPv4 address of the first Ethernet link (`keel.ip=dhcp`: DHCP, the default) |
//! | `keel.api.port=N` | TCP port of the management API (default 9420) |
//! | `keel.api.connections=N` | connections the API's TCP port serves at once (1-65536, default 1024) |
//! | `keel.run=PATH[,ARG...]` | run one program once the node is ready (debugging, tests) |
//! | `keel.debug.panic=early\|ready` | panic on purpose at that point (tests the guard) |
//! | `keel.debug.reboot=fail` | the guard's reboot(2) call fails on purpose (tests its fallback to halt) |
//! | `keel.debug.lockdown=none` | leave the kernel unlocked (debugging; the status says `lockdown none`) |
//! | `keel.slot=A\|B` | boot this slot (set by keel itself when it kexecs into a slot's kernel) |
//! | `keel.verify=full` | check the BLAKE3 digest of the whole slot even when it is known good |
//! | `keel.healthy_after=SECONDS` | mark the booted slot successful after this long up (default 30) |
//! | `keel.state=DEVICE` | diskless: mount this ext4 device on /var/lib/keel instead of a tmpfs |
//! | `keel.config.url=https://IP[:PORT]/PATH` | fetch the cloud-config from this URL once the network is up; the server's certificate must name the IP and chain to the root image's CA bundle (default port 443) |
//! | `keel.config.url=http://IP[:PORT]/PATH` | the same over plain http, unverified: anyone on the path can change the config; the log and the node's status say so (default port 80) |
//! | `keel.config.ca=sha256:HEX` | with an https `keel.config.url`: the only certificate trusted for it, by the SHA-256 of its DER (a CA the server's chain holds, or a self-signed server certificate) |

use std::net::Ipv4Addr;

use keel_sys::power::PowerAction;
use keel_tls::{CertPin, Scheme, ServerTrust};

/// The kernel limits its command line to 2048 bytes on x86; anything much
/// longer is not a command line.
pub const MAX_LEN: usize = 4096;

/// Default TCP port of the management API.
pub const DEFAULT_API_PORT: u16 = 9420;

/// A static IPv4 configuration for the first Ethernet link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpConfig {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// Where `keel.debug.panic` makes PID 1 panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicPoint {
    Early,
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub on_panic: PowerAction,
    /// The kernel's own `panic=` is on the command line (keel then leaves
    /// kernel.panic as it says).
    pub kernel_panic: bool,
    pub ip: Option<IpConfig>,
    /// `keel.ip=dhcp`: DHCP even when something else set a static address.
    pub dhcp: bool,
    pub api_port: u16,
    /// The API's TCP connection cap.
    pub api_connections: usize,
    pub run: Option<Vec<String>>,
    pub debug_panic: Option<PanicPoint>,
    /// `keel.debug.reboot=fail`: the guard's reboot(2) call for its action
    /// fails as if the kernel refused it (a test knob).
    pub debug_reboot_fail: bool,
    /// `keel.debug.lockdown=none`: keel leaves the kernel unlocked (a
    /// debugging door, reported in the status).
    pub debug_no_lockdown: bool,
    pub slot: Option<String>,
    pub verify_full: bool,
    pub healthy_after_s: u64,
    pub state_device: Option<String>,
    pub config_url: Option<ConfigUrl>,
}

/// Where `keel.config.url` points: the scheme, an IP address (PID 1
/// resolves no names before the network issue's DNS lands) and a path, and
/// for https the certificate `keel.config.ca` pins, if any (never with
/// http: [`Cmdline::parse`] refuses that pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrl {
    pub scheme: Scheme,
    pub addr: std::net::SocketAddr,
    pub path: String,
    pub ca: Option<CertPin>,
}

impl ConfigUrl {
    /// Whom the fetch trusts to be the server: the pinned certificate, else
    /// the CAs of `ca_bundle`; None over plain http (nothing is verified).
    pub fn trust(&self, ca_bundle: &std::path::Path) -> Option<ServerTrust> {
        match (self.scheme, self.ca) {
            (Scheme::Http, _) => None,
            (Scheme::Https, Some(pin)) => Some(ServerTrust::Pinned(pin)),
            (Scheme::Https, None) => {
                Some(ServerTrust::Bundle(("CA bundle", ca_bundle.to_path_buf())))
            }
        }
    }
}

impl std::fmt::Display for ConfigUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.addr, self.path)
    }
}

fn parse_config_url(v: &str) -> Result<ConfigUrl, &'static str> {
    let (scheme, rest) = Scheme::split(v)
        .ok_or("expected https://ADDRESS[:PORT]/PATH or http://ADDRESS[:PORT]/PATH")?;
    let default_port = match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse::<std::net::SocketAddr>()
        .or_else(|_| {
            host.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, default_port))
        })
        .map_err(|_| "the host must be an IP address (keel resolves no names at boot yet)")?;
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the path must not contain spaces");
    }
    Ok(ConfigUrl {
        scheme,
        addr,
        path: path.to_string(),
        ca: None,
    })
}

/// Default for `keel.api.connections` (keel-api's MAX_TCP_CONNECTIONS).
pub const DEFAULT_API_CONNECTIONS: usize = 1024;

/// Default for `keel.healthy_after`.
pub const DEFAULT_HEALTHY_AFTER_S: u64 = 30;

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            on_panic: PowerAction::Reboot,
            kernel_panic: false,
            ip: None,
            dhcp: false,
            api_port: DEFAULT_API_PORT,
            api_connections: DEFAULT_API_CONNECTIONS,
            run: None,
            debug_panic: None,
            debug_reboot_fail: false,
            debug_no_lockdown: false,
            slot: None,
            verify_full: false,
            healthy_after_s: DEFAULT_HEALTHY_AFTER_S,
            state_device: None,
            config_url: None,
        }
    }
}

/// A `keel.*` parameter that was ignored, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("kernel command line is {0} bytes, over the {MAX_LEN} byte limit: ignored")]
    TooLong(usize),
    #[error("kernel command line parameter {name}={value:?}: {reason}")]
    BadValue {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("kernel command line parameter {0} is not a keel parameter: ignored")]
    Unknown(String),
}

/// Split the command line into `name[=value]` words the way the kernel does:
/// on spaces, with double quotes grouping spaces into a value.
pub fn words(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut push = |w: &mut String| {
        if !w.is_empty() {
            let word = std::mem::take(w);
            match word.split_once('=') {
                Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                None => out.push((word, None)),
            }
        }
    };
    for c in text.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => push(&mut cur),
            c => cur.push(c),
        }
    }
    push(&mut cur);
    out
}

impl Cmdline {
    /// Parse the raw command line. Returns the settings and the parameters
    /// that were ignored; the settings are always usable.
    pub fn parse(text: &str) -> (Cmdline, Vec<CmdlineError>) {
        let mut c = Cmdline::default();
        let mut errs = Vec::new();
        if text.len() > MAX_LEN {
            errs.push(CmdlineError::TooLong(text.len()));
            return (c, errs);
        }
        // keel.config.ca with its text, joined to keel.config.url below.
        let mut config_ca: Option<(CertPin, String)> = None;
        for (name, value) in words(text) {
            if !name.starts_with("keel.") {
                c.kernel_panic |= name == "panic";
                continue;
            }
            let v = value.unwrap_or_default();
            let bad = |reason| CmdlineError::BadValue {
                name: name.clone(),
                value: v.clone(),
                reason,
            };
            match name.as_str() {
                "keel.on_panic" => match v.as_str() {
                    "reboot" => c.on_panic = PowerAction::Reboot,
                    "poweroff" => c.on_panic = PowerAction::PowerOff,
                    "halt" => c.on_panic = PowerAction::Halt,
                    _ => errs.push(bad("expected reboot, poweroff or halt")),
                },
                "keel.ip" if v == "dhcp" => {
                    c.ip = None;
                    c.dhcp = true;
                }
                "keel.ip" => match parse_ip(&v) {
                    Some(ip) => {
                        c.ip = Some(ip);
                        c.dhcp = false;
                    }
                    None => errs.push(bad(
                        "expected ADDR/PREFIX[,GATEWAY], e.g. 10.0.2.15/24,10.0.2.2",
                    )),
                },
                "keel.api.connections" => match v.parse::<usize>() {
                    Ok(n) if (1..=65_536).contains(&n) => c.api_connections = n,
                    _ => errs.push(bad("expected a count 1-65536")),
                },
                "keel.api.port" => match v.parse::<u16>() {
                    Ok(p) if p > 0 => c.api_port = p,
                    _ => errs.push(bad("expected a port number 1-65535")),
                },
                "keel.run" => {
                    let argv: Vec<String> = v.split(',').map(str::to_string).collect();
                    if argv[0].starts_with('/') {
                        c.run = Some(argv);
                    } else {
                        errs.push(bad(
                            "expected an absolute path, then arguments separated by commas",
                        ));
                    }
                }
                "keel.debug.panic" => match v.as_str() {
                    "early" => c.debug_panic = Some(PanicPoint::Early),
                    "ready" => c.debug_panic = Some(PanicPoint::Ready),
                    _ => errs.push(bad("expected early or ready")),
                },
                "keel.debug.reboot" => match v.as_str() {
                    "fail" => c.debug_reboot_fail = true,
                    _ => errs.push(bad("expected fail")),
                },
                "keel.debug.lockdown" => match v.as_str() {
                    "none" => c.debug_no_lockdown = true,
                    _ => errs.push(bad("expected none")),
                },
                "keel.slot" => match v.as_str() {
                    "A" | "B" => c.slot = Some(v.clone()),
                    _ => errs.push(bad("expected A or B")),
                },
                "keel.verify" => match v.as_str() {
                    "full" => c.verify_full = true,
                    "lazy" => c.verify_full = false,
                    _ => errs.push(bad("expected full or lazy")),
                },
                "keel.healthy_after" => match v.parse::<u64>() {
                    Ok(s) if s <= 86_400 => c.healthy_after_s = s,
                    _ => errs.push(bad("expected seconds, 0-86400")),
                },
                "keel.config.url" => match parse_config_url(&v) {
                    Ok(u) => c.config_url = Some(u),
                    Err(reason) => errs.push(bad(reason)),
                },
                "keel.config.ca" => match CertPin::parse(&v) {
                    Some(pin) => config_ca = Some((pin, v.clone())),
                    None => errs.push(bad(
                        "expected sha256: and 64 hex digits, the SHA-256 of the certificate's DER",
                    )),
                },
                "keel.state" => {
                    if v.starts_with("/dev/") && !v.contains("..") {
                        c.state_device = Some(v.clone());
                    } else {
                        errs.push(bad("expected a device path under /dev"));
                    }
                }
                _ => errs.push(CmdlineError::Unknown(name.clone())),
            }
        }
        if let Some((pin, value)) = config_ca {
            let bad = |reason| CmdlineError::BadValue {
                name: "keel.config.ca".into(),
                value,
                reason,
            };
            match &mut c.config_url {
                Some(u) if u.scheme == Scheme::Https => u.ca = Some(pin),
                // The pin asks for a verified config; fetching it unverified
                // instead would go against that, so neither is used.
                Some(_) => {
                    errs.push(bad("pins the certificate of an https:// keel.config.url, and plain http verifies nothing: keel.config.ca and keel.config.url ignored"));
                    c.config_url = None;
                }
                None => errs.push(bad(
                    "pins the certificate of keel.config.url, which is not given: ignored",
                )),
            }
        }
        (c, errs)
    }
}

fn parse_ip(v: &str) -> Option<IpConfig> {
    let (cidr, gw) = match v.split_once(',') {
        Some((a, g)) => (a, Some(g.parse().ok()?)),
        None => (v, None),
    };
    let (addr, prefix) = cidr.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    Some(IpConfig {
        addr: addr.parse().ok()?,
        prefix,
        gateway: gw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_no_keel_params() {
        let (c, errs) = Cmdline::parse("console=ttyS0 quiet root=/dev/vda\n");
        assert_eq!(c, Cmdline::default());
        assert!(errs.is_empty());
    }

    #[test]
    fn parses_every_parameter() {
        let (c, errs) = Cmdline::parse(
            "console=ttyS0 keel.on_panic=poweroff keel.ip=10.0.2.15/24,10.0.2.2 \
             keel.api.port=8080 keel.run=/usr/lib/keel/helper,orphans,100 keel.debug.panic=ready",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.on_panic, PowerAction::PowerOff);
        assert!(!c.kernel_panic);
        assert_eq!(c.api_connections, DEFAULT_API_CONNECTIONS);
        assert_eq!(
            Cmdline::parse("keel.api.connections=8").0.api_connections,
            8
        );
        assert_eq!(Cmdline::parse("keel.api.connections=0").1.len(), 1);
        assert!(Cmdline::parse("quiet panic=-1").0.kernel_panic);
        assert!(
            !Cmdline::parse("quiet panicky=1 keel.panic=1")
                .0
                .kernel_panic
        );
        assert_eq!(
            c.ip,
            Some(IpConfig {
                addr: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2))
            })
        );
        assert_eq!(c.api_port, 8080);
        assert_eq!(
            c.run.as_deref(),
            Some(
                &[
                    "/usr/lib/keel/helper".to_string(),
                    "orphans".into(),
                    "100".into()
                ][..]
            )
        );
        assert_eq!(c.debug_panic, Some(PanicPoint::Ready));
        assert!(!c.debug_reboot_fail);
    }

    #[test]
    fn debug_lockdown_none() {
        let (c, errs) = Cmdline::parse("quiet");
        assert!(errs.is_empty() && !c.debug_no_lockdown);
        let (c, errs) = Cmdline::parse("keel.debug.lockdown=none");
        assert!(errs.is_empty(), "{errs:?}");
        assert!(c.debug_no_lockdown);
        let (c, errs) = Cmdline::parse("keel.debug.lockdown=off");
        assert!(!c.debug_no_lockdown);
        assert!(
            errs[0].to_string().contains("keel.debug.lockdown"),
            "{errs:?}"
        );
    }

    #[test]
    fn debug_reboot_fail() {
        let (c, errs) = Cmdline::parse("keel.debug.reboot=fail");
        assert!(errs.is_empty(), "{errs:?}");
        assert!(c.debug_reboot_fail);
        let (c, errs) = Cmdline::parse("keel.debug.reboot=yes");
        assert!(!c.debug_reboot_fail);
        assert!(
            errs[0].to_string().contains("keel.debug.reboot"),
            "{errs:?}"
        );
    }

    #[test]
    fn bad_values_name_the_parameter_and_keep_defaults() {
        let (c, errs) = Cmdline::parse(
            "keel.on_panic=explode keel.ip=10.0.2.15/33 keel.api.port=0 keel.run=relative keel.bogus=1",
        );
        assert_eq!(c, Cmdline::default());
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 5, "{msgs:?}");
        assert!(msgs[0].contains("keel.on_panic=\"explode\""));
        assert!(msgs[1].contains("keel.ip"));
        assert!(msgs[2].contains("keel.api.port"));
        assert!(msgs[3].contains("keel.run"));
        assert!(msgs[4].contains("keel.bogus"));
    }

    #[test]
    fn slot_parameters() {
        let (c, errs) =
            Cmdline::parse("keel.slot=B keel.verify=full keel.healthy_after=2 keel.state=/dev/vdb");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.slot.as_deref(), Some("B"));
        assert!(c.verify_full);
        assert_eq!(c.healthy_after_s, 2);
        assert_eq!(c.state_device.as_deref(), Some("/dev/vdb"));
        let (c, errs) = Cmdline::parse(
            "keel.slot=C keel.verify=maybe keel.healthy_after=-1 keel.state=/etc/../dev/x",
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!(c, Cmdline::default());
    }

    #[test]
    fn config_urls() {
        let bundle = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
        let (c, e) = Cmdline::parse("keel.config.url=http://10.0.2.2:8000/nodes/a.yaml");
        assert!(e.is_empty(), "{e:?}");
        let u = c.config_url.unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.to_string(), "http://10.0.2.2:8000/nodes/a.yaml");
        assert_eq!(u.trust(bundle), None);
        let (c, _) = Cmdline::parse("keel.config.url=http://10.0.0.1");
        assert_eq!(c.config_url.unwrap().to_string(), "http://10.0.0.1:80/");
        // https: port 443 unless given; the CA bundle is trusted.
        let (c, e) = Cmdline::parse("keel.config.url=https://10.0.0.1/x");
        assert!(e.is_empty(), "{e:?}");
        let u = c.config_url.unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.addr, "10.0.0.1:443".parse().unwrap());
        assert_eq!(u.to_string(), "https://10.0.0.1:443/x");
        assert_eq!(
            u.trust(bundle),
            Some(ServerTrust::Bundle(("CA bundle", bundle.to_path_buf())))
        );
        let (c, _) = Cmdline::parse("keel.config.url=https://[fd00::1]:8443");
        assert_eq!(c.config_url.unwrap().to_string(), "https://[fd00::1]:8443/");
        for bad in [
            "https://config.example/x",
            "http://config.example/x",
            "ftp://1.2.3.4/",
            "https://1.2.3.4:99999/",
            "https://1.2.3.4/a b",
        ] {
            let (c, e) = Cmdline::parse(&format!("keel.config.url=\"{bad}\""));
            assert!(c.config_url.is_none() && e.len() == 1, "{bad}: {e:?}");
            assert!(e[0].to_string().contains("keel.config.url"), "{e:?}");
        }
    }

    #[test]
    fn config_ca_pins() {
        let hex = "0123456789abcdef".repeat(4);
        let pin = CertPin::parse(&format!("sha256:{hex}")).unwrap();
        // Either order on the line.
        for line in [
            format!("keel.config.url=https://10.0.2.2:8443/u keel.config.ca=sha256:{hex}"),
            format!(
                "keel.config.ca=sha256:{} keel.config.url=https://10.0.2.2:8443/u",
                hex.to_uppercase()
            ),
        ] {
            let (c, e) = Cmdline::parse(&line);
            assert!(e.is_empty(), "{line}: {e:?}");
            let u = c.config_url.unwrap();
            assert_eq!(u.ca, Some(pin));
            assert_eq!(
                u.trust(std::path::Path::new("/bundle")),
                Some(ServerTrust::Pinned(pin))
            );
        }
        // Malformed pins: named, ignored, the URL kept (with the bundle).
        for bad in [
            hex.clone(),
            format!("sha1:{hex}"),
            format!("sha256:{}", &hex[2..]),
            format!("sha256:{hex}00"),
            format!("sha256:{}zz", &hex[2..]),
        ] {
            let (c, e) = Cmdline::parse(&format!(
                "keel.config.url=https://10.0.2.2/u keel.config.ca={bad}"
            ));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].to_string().starts_with(&format!(
                    "kernel command line parameter keel.config.ca=\"{bad}\""
                )),
                "{e:?}"
            );
            assert_eq!(c.config_url.unwrap().ca, None, "{bad}");
        }
        // A pin with plain http: both ignored (no silent downgrade).
        let (c, e) = Cmdline::parse(&format!(
            "keel.config.ca=sha256:{hex} keel.config.url=http://10.0.2.2/u"
        ));
        assert_eq!(c.config_url, None);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].to_string().contains("keel.config.ca") && e[0].to_string().contains("plain http"),
            "{e:?}"
        );
        // A pin without a URL.
        let (c, e) = Cmdline::parse(&format!("keel.config.ca=sha256:{hex}"));
        assert_eq!(c, Cmdline::default());
        assert!(
            e.len() == 1 && e[0].to_string().contains("not given"),
            "{e:?}"
        );
    }

    #[test]
    fn quotes_group_spaces() {
        let w = words("a=\"b c\" d");
        assert_eq!(
            w,
            vec![("a".into(), Some("b c".into())), ("d".into(), None)]
        );
    }

    #[test]
    fn over_long_command_line_is_refused_whole() {
        let text = format!("keel.on_panic=halt {}", "x".repeat(MAX_LEN));
        let (c, errs) = Cmdline::parse(&text);
        assert_eq!(c.on_panic, PowerAction::Reboot);
        assert!(matches!(errs[0], CmdlineError::TooLong(_)));
    }
}
