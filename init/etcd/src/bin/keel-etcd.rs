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
    /// Client TLS: the server certificate and key for https client URLs.
    #[arg(long, default_value = "")]
    cert_file: String,
    #[arg(long, default_value = "")]
    key_file: String,
    /// The CA that signs client certificates.
    #[arg(long, default_value = "")]
    trusted_ca_file: String,
    /// Require a client certificate signed by --trusted-ca-file.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    client_cert_auth: String,
    /// Peer TLS: this member's certificate and key (served, and presented
    /// to other members).
    #[arg(long, default_value = "")]
    peer_cert_file: String,
    #[arg(long, default_value = "")]
    peer_key_file: String,
    /// The CA that signs the members' certificates.
    #[arg(long, default_value = "")]
    peer_trusted_ca_file: String,
    /// Require members to present a certificate signed by
    /// --peer-trusted-ca-file.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    peer_client_cert_auth: String,
    /// Take a snapshot (and compact the log) after this many applied
    /// entries.
    #[arg(long, default_value = "")]
    snapshot_count: String,
    /// Origins whose pages may read the client API's answers (`*` for any);
    /// none by default.
    #[arg(long, default_value = "")]
    cors: String,
    /// Past this many bytes of keys and values the member raises the
    /// NOSPACE alarm and the cluster refuses writes that add data
    /// (default 128 MiB).
    #[arg(long, default_value = "")]
    quota_backend_bytes: String,
    /// Accepted for etcd compatibility: the v2 API is always on.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enable_v2: Option<String>,
}

/// etcd's boolean flags: `--flag`, `--flag=true`, `--flag=false`.
fn flag(name: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => anyhow::bail!("--{name}: {v:?} is not true or false"),
    }
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
        cert_file: a.cert_file,
        key_file: a.key_file,
        trusted_ca_file: a.trusted_ca_file,
        client_cert_auth: flag("client-cert-auth", &a.client_cert_auth)?,
        peer_cert_file: a.peer_cert_file,
        peer_key_file: a.peer_key_file,
        peer_trusted_ca_file: a.peer_trusted_ca_file,
        peer_client_cert_auth: flag("peer-client-cert-auth", &a.peer_client_cert_auth)?,
        snapshot_count: a.snapshot_count,
        cors: a.cors,
        quota_backend_bytes: a.quota_backend_bytes,
    }
    .check()?;
    keel_etcd::run_blocking(config)
}
