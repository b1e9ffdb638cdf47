//! keel-etcd: one member of keel's cluster store as a host process, with
//! etcd's command line (see [`keel_etcd::flags`]), for tests, benchmarks
//! and operators who want it outside a keel node.

use keel_etcd::config::{Defaults, ServerConfig};
use keel_etcd::flags::{self, Command};

fn main() -> anyhow::Result<()> {
    // Lossy: a flag's name is ASCII, and a value that is not UTF-8 could
    // not be a URL or a name anyway.
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let (settings, warnings) = match flags::parse(args)? {
        Command::Help => {
            print!("{}", flags::usage());
            return Ok(());
        }
        Command::Version => {
            println!("keel-etcd {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Run { settings, warnings } => (settings, warnings),
    };
    for w in &warnings {
        eprintln!("keel-etcd: {w}");
    }
    let config = ServerConfig::check(&settings, &Defaults::etcd())?;
    keel_etcd::run_blocking(config)
}
