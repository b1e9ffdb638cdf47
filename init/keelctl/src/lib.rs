//! keelctl: a keel node's management API from the command line.
//!
//! Where the node is and how to prove who you are come from, in order:
//! the flags (`--endpoint`, `--cacert`, `--cert`, `--key`), their
//! environment variables (`KEEL_ENDPOINT`, `KEEL_CACERT`, `KEEL_CERT`,
//! `KEEL_KEY`), then the client config (`--config FILE`, else `KEELCONFIG`,
//! else `$XDG_CONFIG_HOME/keel/config` or `~/.config/keel/config`), which
//! `keelctl gen pki` writes. A node's TCP port speaks HTTPS only and asks
//! for a client certificate; `unix:/run/keel/api.sock` is the endpoint on
//! the node itself. Output is a human table by default, the API's JSON
//! with `--json`.

pub mod gen;
pub mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hyper::Method;
use keel_api::{Accepted, Client, Endpoint, Status};

#[derive(Parser)]
#[command(name = "keelctl", about = "Talk to a keel node", version)]
struct Cli {
    /// API endpoint: https://ADDRESS:PORT or unix:/PATH (default: the
    /// client config's).
    #[arg(long, env = "KEEL_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// The client config (JSON, written by `keelctl gen pki`).
    #[arg(long, env = "KEELCONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// For https: the CA certificate (PEM) that signed the node's certificate.
    #[arg(long, env = "KEEL_CACERT", global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// For https: this client's certificate (PEM).
    #[arg(long, env = "KEEL_CERT", global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// For https: the private key (PEM) of --cert.
    #[arg(long, env = "KEEL_KEY", global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The client config keelctl reads when `--config` and `KEELCONFIG` say
/// nothing: `$XDG_CONFIG_HOME/keel/config`, else `$HOME/.config/keel/config`.
pub fn default_client_config() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CONFIG_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("keel/config"))
}

#[derive(Subcommand)]
enum GenCmd {
    /// A CA, each node's server certificates and cloud-config fragment, an
    /// admin and a read-only client certificate, and a client config.
    Pki {
        /// The directory to write to (its CA is reused when present).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A node and the addresses clients reach it at; repeat per node.
        #[arg(long = "node", value_name = "NAME=IP[,IP...]", required = true)]
        nodes: Vec<gen::NodeSpec>,
        /// Validity of the node and client certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Validity of a new CA, in days.
        #[arg(long, default_value_t = 3650)]
        ca_days: u32,
        /// Leave the KV's TLS (coreos.etcd2) out of the fragments.
        #[arg(long)]
        no_kv: bool,
    },
    /// A new client certificate NAME.pem from the CA in DIR.
    Client {
        #[arg(long, value_name = "DIR")]
        pki: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: gen::Role,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, uptime, memory, processes and the boot timeline.
    Status,
    /// Orderly reboot of the node.
    Reboot,
    /// Orderly power-off of the node.
    Poweroff,
    /// Links, addresses, routes and DNS of the node.
    Network,
    /// Cloud-config: check a file offline, with the node's own validator.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The containers: state, pid, uptime, restarts, memory.
    Ps,
    /// A container's output (the last 256 KiB the node keeps).
    Logs {
        name: String,
        /// Keep printing new output until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// Start a stopped container.
    Start { name: String },
    /// Stop a container: SIGTERM, its grace period, then every process killed.
    Stop { name: String },
    /// Stop, then start a container.
    Restart { name: String },
    /// Resource use of the containers (or of one).
    Stats { name: Option<String> },
    /// Credentials: a PKI for a cluster, or one more client certificate.
    #[command(subcommand)]
    Gen(GenCmd),
    /// The node's KV (the cluster store).
    #[command(subcommand)]
    Kv(KvCmd),
}

#[derive(Subcommand)]
enum KvCmd {
    /// The cluster's NOSPACE alarms: list them, or disarm them once room
    /// is made.
    #[command(subcommand)]
    Alarm(AlarmCmd),
}

#[derive(Subcommand)]
enum AlarmCmd {
    /// The raised alarms (none: the store takes writes).
    List,
    /// Clear every alarm, so that writes are taken again. An alarm whose
    /// cause remains (a store still over its quota at the next write, a
    /// disk still short) is raised again.
    Disarm,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print every error (with its YAML path, line and column) and the verdict
    /// on every item: applied, translated or refused. Exit status 0 when a
    /// node would accept the file, 1 when it would not.
    Validate {
        /// The #cloud-config file (at most 1 MiB).
        file: std::path::PathBuf,
    },
    /// Send a config to the node: it validates it and applies it all or
    /// nothing (exit status 1 with every error when it refuses it).
    Apply {
        file: std::path::PathBuf,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply a config without `api:` over the TCP port: the node's
        /// next boot closes that port (without this flag such a config is
        /// refused, so that one apply cannot strand a remote node).
        #[arg(long)]
        close_api: bool,
    },
    /// The node's config of this boot: source, verdicts, errors.
    Show,
}

/// `keelctl config apply`: the node's answer as text.
pub fn applied_report(a: &keel_api::ConfigApplied) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for e in &a.errors {
        let _ = writeln!(o, "error      {e}");
    }
    for i in &a.items {
        let _ = writeln!(
            o,
            "{:<10} {} (line {}): {}",
            i.verdict, i.path, i.line, i.note
        );
    }
    let verb = if a.dry_run { "would change" } else { "changed" };
    for d in &a.created {
        let _ = writeln!(
            o,
            "{:<10} {d}/ (directory)",
            if a.dry_run { "would add" } else { "added" }
        );
    }
    for f in &a.changed {
        let _ = writeln!(o, "{verb:<10} {f}");
    }
    for c in &a.containers {
        let _ = writeln!(
            o,
            "{:<10} {c}",
            if a.dry_run { "would" } else { "container" }
        );
    }
    let _ = writeln!(
        o,
        "{}",
        match (a.accepted, a.dry_run) {
            (false, _) => format!("refused: {} errors, nothing changed", a.errors.len()),
            (true, true) => format!(
                "dry run: {} files would change, {} already as planned",
                a.changed.len(),
                a.unchanged.len()
            ),
            (true, false) => format!(
                "applied: {} files changed, {} already as planned",
                a.changed.len(),
                a.unchanged.len()
            ),
        }
    );
    o
}

fn read_config_file(file: &std::path::Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if meta.len() > keel_config::yaml::MAX_BYTES as u64 {
        anyhow::bail!(
            "{}: {} bytes, over the {} byte limit",
            file.display(),
            meta.len(),
            keel_config::yaml::MAX_BYTES
        );
    }
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", file.display()))
}

/// `keelctl config validate`: the report as text, and whether it is accepted.
pub fn config_report(file: &str, text: &str) -> (String, bool) {
    use std::fmt::Write;
    let r = keel_config::validate(text);
    let mut o = String::new();
    for i in &r.items {
        let _ = writeln!(
            o,
            "{:<10} {} (line {}): {}",
            i.verdict.as_str(),
            i.path,
            i.line,
            i.note
        );
    }
    for e in &r.errors {
        let _ = writeln!(o, "error      {file}:{e}");
    }
    let count = |v: keel_config::Verdict| r.items.iter().filter(|i| i.verdict == v).count();
    let (applied, translated, accepted, refused) = (
        count(keel_config::Verdict::Applied),
        count(keel_config::Verdict::Translated),
        count(keel_config::Verdict::Accepted),
        count(keel_config::Verdict::Refused),
    );
    let _ = writeln!(
        o,
        "{file}: {} ({applied} applied, {translated} translated, {accepted} accepted but not yet applied, {refused} refused, {} errors)",
        if r.accepted() {
            "a node would accept it"
        } else {
            "a node would refuse it (maintenance mode)"
        },
        r.errors.len()
    );
    (o, r.accepted())
}

/// The endpoint and TLS files: flags and variables first, then the client
/// config; errors name the option or file.
fn connection(cli: &Cli) -> anyhow::Result<(String, Option<keel_api::ClientFiles>)> {
    let explicit = cli.config.is_some();
    let config_path = cli.config.clone().or_else(default_client_config);
    let config = match &config_path {
        Some(p) if explicit || p.exists() => Some(gen::ClientConfig::load(p)?),
        _ => None,
    };
    let Some(endpoint) = cli
        .endpoint
        .clone()
        .or_else(|| config.as_ref().map(|c| c.endpoint.clone()))
    else {
        anyhow::bail!(
            "no endpoint: pass --endpoint https://ADDRESS:9420 (or KEEL_ENDPOINT), or write a client config with `keelctl gen pki` ({})",
            config_path
                .map(|p| format!("looked for {}", p.display()))
                .unwrap_or_else(|| "no HOME to look in".into())
        );
    };
    if !endpoint.starts_with("https://") {
        return Ok((endpoint, None));
    }
    let from_config = |f: fn(&gen::ClientConfig) -> &PathBuf| config.as_ref().map(|c| f(c).clone());
    let Some(ca) = cli.cacert.clone().or_else(|| from_config(|c| &c.ca)) else {
        anyhow::bail!(
            "{endpoint}: an https endpoint needs --cacert FILE (or KEEL_CACERT, or a client config): the CA that signed the node's certificate"
        );
    };
    let identity = match (cli.cert.clone(), cli.key.clone()) {
        (Some(c), Some(k)) => Some((("--cert", c), ("--key", k))),
        (None, None) => match (from_config(|c| &c.cert), from_config(|c| &c.key)) {
            (Some(c), Some(k)) => Some((("client config cert", c), ("client config key", k))),
            _ => None,
        },
        (Some(_), None) => anyhow::bail!("--cert needs --key FILE (or KEEL_KEY)"),
        (None, Some(_)) => anyhow::bail!("--key needs --cert FILE (or KEEL_CERT)"),
    };
    Ok((
        endpoint,
        Some(keel_api::ClientFiles {
            ca: ("--cacert", ca),
            identity,
        }),
    ))
}

fn run_gen(cmd: GenCmd) -> anyhow::Result<()> {
    match cmd {
        GenCmd::Pki {
            out,
            nodes,
            days,
            ca_days,
            no_kv,
        } => {
            let r = gen::pki(&gen::PkiOptions {
                out,
                nodes,
                ca_days,
                days,
                no_kv,
            })?;
            if r.ca_created {
                println!("created    a new CA");
            }
            for p in &r.written {
                println!("wrote      {}", p.display());
            }
            for p in &r.kept {
                println!("kept       {}", p.display());
            }
        }
        GenCmd::Client {
            pki,
            name,
            role,
            days,
        } => {
            for p in gen::client(&pki, &name, role, days)? {
                println!("wrote      {}", p.display());
            }
        }
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Config(ConfigCmd::Validate { file }) = &cli.cmd {
        let text = read_config_file(file)?;
        let (report, ok) = config_report(&file.display().to_string(), &text);
        print!("{report}");
        if !ok {
            return Err(Refused.into());
        }
        return Ok(());
    }
    if let Cmd::Gen(g) = cli.cmd {
        return run_gen(g);
    }
    let (endpoint, tls) = connection(&cli)?;
    let mut client = Client::new(Endpoint::parse(&endpoint)?);
    if let Some(files) = tls {
        client = client.with_tls(&files)?;
    }
    client.timeout = std::time::Duration::from_secs(cli.timeout.max(1));
    match cli.cmd {
        Cmd::Status => {
            let s: Status = client.call_blocking(Method::GET, "/v1/status")?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", table::status(&s));
            }
        }
        Cmd::Config(ConfigCmd::Apply {
            file,
            dry_run,
            close_api,
        }) => {
            let text = read_config_file(&file)?;
            let path = match (dry_run, close_api) {
                (false, false) => "/v1/config",
                (true, false) => "/v1/config?dry_run=1",
                (false, true) => "/v1/config?close_api=1",
                (true, true) => "/v1/config?dry_run=1&close_api=1",
            };
            let (status, body) = client.request_blocking(Method::POST, path, text.into_bytes())?;
            let a: keel_api::ConfigApplied = serde_json::from_slice(&body).map_err(|_| {
                anyhow::anyhow!(
                    "POST {path}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                )
            })?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                print!("{}", applied_report(&a));
            }
            if !a.accepted {
                return Err(Refused.into());
            }
        }
        Cmd::Network => {
            let n: keel_api::NetworkStatus = client.call_blocking(Method::GET, "/v1/network")?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&n)?);
            } else {
                print!("{}", table::network(&n));
            }
        }
        Cmd::Config(ConfigCmd::Show) => {
            let c: keel_api::ConfigStatus = client.call_blocking(Method::GET, "/v1/config")?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("source     {}", table::config_source(&c));
                for e in &c.errors {
                    println!("error      {e}");
                }
                for i in &c.items {
                    println!("{:<10} {} (line {}): {}", i.verdict, i.path, i.line, i.note);
                }
            }
        }
        Cmd::Config(ConfigCmd::Validate { .. }) | Cmd::Gen(_) => {}
        Cmd::Ps => {
            let cs: Vec<keel_api::ContainerStatus> =
                client.call_blocking(Method::GET, "/v1/containers")?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&cs)?);
            } else {
                print!("{}", table::containers(&cs));
            }
        }
        Cmd::Stats { name } => {
            let mut cs: Vec<keel_api::ContainerStatus> =
                client.call_blocking(Method::GET, "/v1/containers")?;
            if let Some(n) = &name {
                cs.retain(|c| &c.name == n);
                if cs.is_empty() {
                    anyhow::bail!("no container named {n:?}");
                }
            }
            if cli.json {
                let stats: Vec<_> = cs.iter().map(|c| (&c.name, &c.stats)).collect();
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", table::stats(&cs));
            }
        }
        Cmd::Logs { name, follow } => {
            let mut offset = 0u64;
            loop {
                let path = format!("/v1/containers/{name}/logs?offset={offset}");
                let l: keel_api::ContainerLogs = client.call_blocking(Method::GET, &path)?;
                if cli.json {
                    println!("{}", serde_json::to_string(&l)?);
                } else {
                    use std::io::Write;
                    print!("{}", l.text);
                    let _ = std::io::stdout().flush();
                }
                offset = l.next;
                if !follow {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        Cmd::Start { ref name } | Cmd::Stop { ref name } | Cmd::Restart { ref name } => {
            let action = match cli.cmd {
                Cmd::Start { .. } => "start",
                Cmd::Stop { .. } => "stop",
                _ => "restart",
            };
            let a: Accepted =
                client.call_blocking(Method::POST, &format!("/v1/containers/{name}/{action}"))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!("{}", a.message);
            }
        }
        Cmd::Kv(KvCmd::Alarm(a)) => {
            let alarms: keel_api::KvAlarms = match a {
                AlarmCmd::List => client.call_blocking(Method::GET, "/v1/kv/alarms")?,
                AlarmCmd::Disarm => client.call_blocking(Method::POST, "/v1/kv/alarms/disarm")?,
            };
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&alarms)?);
            } else {
                print!(
                    "{}",
                    table::alarms(&alarms.alarms, matches!(a, AlarmCmd::Disarm))
                );
            }
        }
        Cmd::Reboot | Cmd::Poweroff => {
            let path = if matches!(cli.cmd, Cmd::Reboot) {
                "/v1/reboot"
            } else {
                "/v1/poweroff"
            };
            let a: Accepted = client.call_blocking(Method::POST, path)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!("{}", a.message);
            }
        }
    }
    Ok(())
}

/// A validation that found errors (already printed).
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the configuration has errors")
    }
}

impl std::error::Error for Refused {}

/// Run keelctl with the process arguments; returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(e) if e.is::<Refused>() => 1,
        Err(e) => {
            eprintln!("keelctl: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_report_lists_verdicts_errors_and_the_answer() {
        let (out, ok) = super::config_report(
            "a.yaml",
            "#cloud-config\nhostname: web-1\ncoreos:\n  fleet: {}\n",
        );
        assert!(ok);
        assert!(
            out.contains("applied    hostname (line 2): host name web-1"),
            "{out}"
        );
        assert!(out.contains("refused    coreos.fleet"), "{out}");
        assert!(
            out.contains("a node would accept it (1 applied, 0 translated, 0 accepted but not yet applied, 1 refused, 0 errors)"),
            "{out}"
        );
        let (out, ok) = super::config_report("b.yaml", "#cloud-config\nhostname: [x]\n");
        assert!(!ok);
        assert!(
            out.contains("error      b.yaml:2:11: hostname: expected a string, found a list"),
            "{out}"
        );
    }
}
