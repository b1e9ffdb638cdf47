//! keelctl: a keel node's management API from the command line.
//!
//! The endpoint comes from `--endpoint`, else `KEEL_ENDPOINT`, else
//! `http://127.0.0.1:9420` (what `make run` forwards from the host).
//! Output is a human table by default, the API's JSON with `--json`.

pub mod table;

use clap::{Parser, Subcommand};
use hyper::Method;
use keel_api::{Accepted, Client, Endpoint, Status};

/// Where keelctl looks when nothing says otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9420";

#[derive(Parser)]
#[command(name = "keelctl", about = "Talk to a keel node", version)]
struct Cli {
    /// API endpoint: http://ADDRESS:PORT or unix:/PATH.
    #[arg(long, env = "KEEL_ENDPOINT", default_value = DEFAULT_ENDPOINT, global = true)]
    endpoint: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, uptime, memory, processes and the boot timeline.
    Status,
    /// Orderly reboot of the node.
    Reboot,
    /// Orderly power-off of the node.
    Poweroff,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut client = Client::new(Endpoint::parse(&cli.endpoint)?);
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

/// Run keelctl with the process arguments; returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("keelctl: {e}");
            1
        }
    }
}
