//! keel-etcd: one member of keel's cluster store as a host process, with
//! etcd's flag names, for tests, benchmarks and operators who want it
//! outside a keel node.

use std::path::PathBuf;

use clap::Parser;
use keel_etcd::config::RawConfig;

#[derive(Parser)]
#[command(version, about = "keel's etcd v2 compatible cluster store")]
struct Args {
    #[arg(long, default_value = "default")]
    name: String,
    #[arg(long, default_value = "default.etcd")]
    data_dir: PathBuf,
    #[arg(long, default_value = "")]
    listen_client_urls: String,
    #[arg(long, default_value = "")]
    advertise_client_urls: String,
    #[arg(long, default_value = "")]
    listen_peer_urls: String,
    #[arg(long, default_value = "")]
    initial_advertise_peer_urls: String,
    #[arg(long, default_value = "")]
    initial_cluster: String,
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    #[arg(long, default_value = "")]
    initial_cluster_token: String,
    /// Bootstrap through this etcd discovery URL.
    #[arg(long, default_value = "")]
    discovery: String,
    /// Accepted for etcd compatibility: the v2 API is always on.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enable_v2: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let config = RawConfig {
        name: a.name,
        data_dir: a.data_dir,
        listen_client_urls: a.listen_client_urls,
        advertise_client_urls: a.advertise_client_urls,
        listen_peer_urls: a.listen_peer_urls,
        initial_advertise_peer_urls: a.initial_advertise_peer_urls,
        initial_cluster: a.initial_cluster,
        initial_cluster_state: a.initial_cluster_state,
        initial_cluster_token: a.initial_cluster_token,
        discovery: a.discovery,
    }
    .check()?;
    keel_etcd::run_blocking(config)
}
