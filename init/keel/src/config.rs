//! The boot tasks of the cloud-config: load it from the first datasource that
//! has one, validate it, apply it all or nothing. A config with errors puts
//! the node in maintenance mode: every error on the console and in the API,
//! nothing written.
//!
//! Datasources, in order (the first found wins):
//! 1.-3. The local ones, found by `keel_config::datasource` through
//!    [`NodeMedia`]: qemu fw_cfg (Ignition JSON there is refused, with
//!    what keel reads instead), a config-drive (`config-2`), a NoCloud
//!    seed (`cidata`).
//! 4. A URL on the kernel command line (`keel.config.url=`), fetched once
//!    the network is up (the FetchConfig task), retried with backoff for up
//!    to 30 s. An https server must present a certificate for its IP
//!    address that chains to the root image's CA bundle, or to the one
//!    certificate `keel.config.ca=sha256:HEX` pins; a certificate that
//!    fails that, or a plain http answer, ends the attempts at once. A
//!    plain `http://` URL is fetched unverified, and the log (each fetch)
//!    and the config's source in the node's status say so.
//! 5. The last config this node applied, kept on STATE
//!    (`/var/lib/keel/config/last-applied.yaml`).
//!
//! Disks are probed by their first bytes (`keel_boot::probe`) and mounted
//! read-only, `nosuid,nodev,noexec`, only long enough to read the files.

use std::path::Path;

use keel_api::{ConfigApplied, ConfigItem, ConfigStatus};
use keel_boot::cmdline::ConfigUrl;
use keel_boot::{error, info};

use crate::boot_table::{Ctx, TaskError};
use crate::services::TcpApi;

/// Where the kernel shows qemu's fw_cfg files.
pub const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name";

/// Read at most `max + 1` bytes of `path` (to tell "too big" from "exactly
/// max").
fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Where the last applied config is kept.
pub const LAST_APPLIED: &str = "/var/lib/keel/config/last-applied.yaml";
/// Where a config disk is mounted while it is read.
pub const DATASOURCE_MNT: &str = "/run/keel/datasource";

pub use keel_config::datasource::Found;

/// The node's fw_cfg files and disks, for `keel_config::datasource`:
/// disks are probed by their first bytes (`keel_boot::probe`) and mounted
/// read-only, `nosuid,nodev,noexec`, only long enough to read the files.
pub struct NodeMedia<'a> {
    pub fw_cfg: &'a Path,
    pub sys_block: &'a Path,
    pub dev: &'a Path,
    pub mnt: &'a Path,
}

impl keel_config::datasource::Media for NodeMedia<'_> {
    fn fw_cfg(&mut self, name: &str, max: usize) -> Option<Vec<u8>> {
        read_bounded(&self.fw_cfg.join(name).join("raw"), max).ok()
    }

    fn labelled(&mut self) -> Vec<keel_config::datasource::Labelled> {
        use std::io::Read;
        let mut out = Vec::new();
        for disk in keel_boot::root::disks(self.sys_block) {
            let path = self.dev.join(&disk);
            let mut head = vec![0u8; keel_boot::probe::PROBE_BYTES];
            let n = std::fs::File::open(&path)
                .and_then(|mut f| f.read(&mut head))
                .unwrap_or(0);
            // Short reads from a block device are possible: read the rest.
            if n < head.len() {
                if let Ok(mut f) = std::fs::File::open(&path) {
                    let _ = f.read_exact(&mut head);
                }
            }
            if let Some((_, label)) = keel_boot::probe::label(&head) {
                out.push(keel_config::datasource::Labelled {
                    device: path.to_string_lossy().into_owned(),
                    label,
                });
            }
        }
        out
    }

    fn read(
        &mut self,
        device: &str,
        files: &[(&str, usize)],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        use std::io::Read;
        let mut head = vec![0u8; keel_boot::probe::PROBE_BYTES];
        std::fs::File::open(device)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(|e| e.to_string())?;
        let (fs, _) = keel_boot::probe::label(&head).ok_or("no filesystem keel reads")?;
        std::fs::create_dir_all(self.mnt).map_err(|e| format!("{}: {e}", self.mnt.display()))?;
        let flags = keel_sys::fs::MountFlags::MS_RDONLY
            | keel_sys::fs::MountFlags::MS_NOSUID
            | keel_sys::fs::MountFlags::MS_NODEV
            | keel_sys::fs::MountFlags::MS_NOEXEC;
        keel_sys::fs::mount(device, self.mnt, fs.mount_type(), flags, None)
            .map_err(|e| e.to_string())?;
        let out = files
            .iter()
            .map(|(f, max)| read_bounded(&self.mnt.join(f), *max).ok())
            .collect();
        let _ = keel_sys::fs::unmount(self.mnt, false);
        Ok(out)
    }
}

/// The first config of the local datasources (fw_cfg, config-drive,
/// NoCloud), in the documented order.
pub fn find_local() -> Option<Found> {
    let mut media = NodeMedia {
        fw_cfg: Path::new(FW_CFG),
        sys_block: Path::new("/sys/block"),
        dev: Path::new("/dev"),
        mnt: Path::new(DATASOURCE_MNT),
    };
    keel_config::datasource::find_local(&mut media, &|w| keel_boot::warn!("{w}"))
}

/// The config kept on STATE by the last successful apply.
pub fn find_last_applied() -> Option<Found> {
    read_bounded(Path::new(LAST_APPLIED), keel_config::yaml::MAX_BYTES)
        .ok()
        .map(|user_data| Found {
            source: format!("state {LAST_APPLIED}"),
            user_data,
            meta_hostname: None,
        })
}

/// How long FetchConfig keeps trying.
pub const FETCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The config's source as the node's status shows it: the URL, and how
/// far the server was verified.
pub fn url_source(url: &ConfigUrl, ca_bundle: &Path) -> String {
    match url.trust(ca_bundle) {
        None => format!("url {url} (plain http, unverified)"),
        Some(trust) => format!("url {url} (https, verified: {trust})"),
    }
}

/// GET `url`, retrying with backoff (100 ms doubling to 2 s) until a 200 or
/// the deadline. An https server is verified against `ca_bundle` or the
/// URL's pin. Final at once: a 4xx answer other than 404/408/429, a server
/// certificate that fails verification, a plain http answer to the TLS
/// handshake, a CA bundle that cannot be read. A plain http fetch is
/// logged as unverified.
pub fn fetch(
    url: &ConfigUrl,
    ca_bundle: &Path,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, String> {
    let start = std::time::Instant::now();
    let trust = url.trust(ca_bundle);
    let mut client = match &trust {
        None => keel_api::Client::new(keel_api::Endpoint::Tcp(url.addr)),
        Some(t) => keel_api::Client::new(keel_api::Endpoint::https(url.addr))
            .with_server_trust(t)
            .map_err(|e| format!("{url}: {e}"))?,
    };
    client.timeout = std::time::Duration::from_secs(5);
    let mut wait = std::time::Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match client.request_blocking(hyper::Method::GET, &url.path, Vec::new()) {
            Ok((status, body)) if status == hyper::StatusCode::OK => {
                if body.len() > keel_config::yaml::MAX_BYTES {
                    return Err(format!(
                        "{url}: {} bytes, over the {} byte limit",
                        body.len(),
                        keel_config::yaml::MAX_BYTES
                    ));
                }
                if trust.is_none() {
                    keel_boot::warn!(
                        "config: {url}: fetched unverified over plain http: anyone on the path can change it"
                    );
                }
                return Ok(body.to_vec());
            }
            Ok((status, _))
                if status.is_client_error() && ![404, 408, 429].contains(&status.as_u16()) =>
            {
                return Err(format!("{url}: HTTP {status}"));
            }
            Ok((status, _)) => format!("HTTP {status}"),
            Err(e) => {
                if let Some(why) = handshake_refusal(&e, trust.as_ref()) {
                    return Err(format!("{url}: {why}"));
                }
                e.to_string()
            }
        };
        if start.elapsed() + wait > deadline {
            return Err(format!(
                "{url}: no config after {attempts} attempts in {:.1} s (last: {last})",
                start.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Why a request failed for good in its TLS handshake, if it did: the
/// server's certificate failed verification (rustls's reason and what was
/// trusted), or the server answered in plain http. Other failures (refused,
/// timed out, reset) may pass and are retried.
fn handshake_refusal(
    e: &keel_api::ClientError,
    trust: Option<&keel_tls::ServerTrust>,
) -> Option<String> {
    let keel_api::ClientError::Handshake { source, .. } = e else {
        return None;
    };
    let r = keel_tls::rustls_error(source)?;
    if keel_tls::answered_plain_http(r) {
        return Some("the server answered the TLS handshake in plain http".into());
    }
    match (r, trust) {
        (keel_tls::rustls::Error::InvalidCertificate(_), Some(t)) => {
            Some(format!("TLS: {r} (trusted: {t})"))
        }
        _ => None,
    }
}

/// A config read from a datasource: LoadConfig's (or FetchConfig's)
/// output, which ApplyConfig takes.
#[derive(Debug)]
pub struct Loaded {
    pub text: Vec<u8>,
    /// NoCloud meta-data `local-hostname`.
    pub meta_hostname: Option<String>,
}

/// ApplyConfig's output: the parts of the accepted config that the later
/// tasks apply, each taking its own (ConfigureNetwork the units, StartApi
/// the TCP port, StartKv the store's settings, StartContainers the
/// containers and registries). Empty when there was no config.
#[derive(Debug, Default)]
pub struct NodeConfig {
    pub networks: Vec<keel_config::model::Network>,
    pub containers: Vec<keel_config::model::Container>,
    pub registries: keel_config::model::Registries,
    pub etcd2: keel_types::EtcdSettings,
    /// What the API's TCP port serves (the config's `api:`).
    pub api: TcpApi,
}

/// Where a config was read: its source goes to the node's status, the
/// text to ApplyConfig.
fn loaded(ctx: &mut Ctx, f: Found) {
    ctx.node.update_config(|st| st.source = Some(f.source));
    ctx.loaded = Some(Loaded {
        text: f.user_data,
        meta_hostname: f.meta_hostname,
    });
}

/// After the network is up: fetch `keel.config.url` when no local datasource
/// had a config, then validate and apply it (or fall back to the config
/// kept on STATE).
pub fn fetch_config(ctx: &mut Ctx) -> Result<(), TaskError> {
    if keel_api::Node::config(&*ctx.node).source.is_some() {
        return Ok(());
    }
    let Some(url) = ctx.cmdline.config_url.clone() else {
        return Ok(());
    };
    let bundle = Path::new(crate::containers::CA_BUNDLE);
    match fetch(&url, bundle, FETCH_DEADLINE) {
        Ok(bytes) => {
            let source = url_source(&url, bundle);
            info!("config: from {source} ({} bytes)", bytes.len());
            let f = Found {
                source,
                user_data: bytes,
                meta_hostname: None,
            };
            loaded(ctx, f);
        }
        Err(e) => {
            error!("config: {e}");
            match find_last_applied() {
                Some(f) => {
                    info!("config: using the config kept on STATE instead");
                    loaded(ctx, f);
                }
                None => {
                    ctx.node.update_config(|st| {
                        st.errors.push(e);
                        st.maintenance = true;
                    });
                    return Ok(());
                }
            }
        }
    }
    apply_config(ctx)
}

/// The first wait before a node in maintenance mode reads its datasource
/// again; it doubles up to [`REREAD_MAX`].
pub const REREAD_FIRST: std::time::Duration = std::time::Duration::from_secs(10);
pub const REREAD_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// The datasource again, in the boot's order: a local one (fw_cfg,
/// config-drive, NoCloud), else `keel.config.url` (one attempt round of
/// 10 s). Returns (source, text, meta-data host name).
fn reread(url: Option<&ConfigUrl>) -> Option<(String, Vec<u8>, Option<String>)> {
    if let Some(f) = find_local() {
        return Some((f.source, f.user_data, f.meta_hostname));
    }
    let url = url?;
    let bundle = Path::new(crate::containers::CA_BUNDLE);
    match fetch(url, bundle, std::time::Duration::from_secs(10)) {
        Ok(bytes) => Some((url_source(url, bundle), bytes, None)),
        Err(e) => {
            keel_boot::warn!("config: re-read: {e}");
            None
        }
    }
}

/// A node in maintenance mode reads its datasource again, after 10 s, then
/// at doubling intervals up to 5 min, until a config there is accepted (it
/// is applied as `keelctl config apply` would, and the node leaves
/// maintenance mode) or the node leaves maintenance mode another way.
/// A corrected config is picked up without a console.
pub fn spawn_reread(node: std::sync::Arc<crate::node::NodeShared>, url: Option<ConfigUrl>) {
    let run = move || {
        let mut wait = REREAD_FIRST;
        let mut last: Option<Vec<u8>> = None;
        loop {
            std::thread::sleep(wait);
            wait = (wait * 2).min(REREAD_MAX);
            if !keel_api::Node::config(&*node).maintenance || !node.is_ready() {
                return;
            }
            let Some((source, bytes, meta)) = reread(url.as_ref()) else {
                continue;
            };
            if last.as_ref() == Some(&bytes) {
                continue;
            }
            let Ok(text) = String::from_utf8(bytes.clone()) else {
                last = Some(bytes);
                continue;
            };
            last = Some(bytes);
            let done = node.apply(
                &text,
                meta,
                keel_api::ApplyOptions::default(),
                &format!("{source} (re-read)"),
            );
            if done.accepted {
                info!("config: re-read {source}: accepted and applied: maintenance mode left");
                return;
            }
            error!(
                "config: re-read {source}: still {} errors: maintenance mode goes on (next look in {} s)",
                done.errors.len(),
                wait.as_secs()
            );
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("config-reread".into())
        .spawn(run)
    {
        error!("config: cannot start re-reading the datasource: {e}");
    }
}

pub fn load_config(ctx: &mut Ctx) -> Result<(), TaskError> {
    let found = match find_local() {
        Some(f) => Some(f),
        None if ctx.cmdline.config_url.is_some() => {
            info!("config: none on the local datasources; keel.config.url is fetched once the network is up");
            return Ok(());
        }
        None => find_last_applied(),
    };
    match found {
        Some(f) => {
            info!("config: from {} ({} bytes)", f.source, f.user_data.len());
            loaded(ctx, f);
        }
        None => info!("config: no datasource has one: defaults"),
    }
    Ok(())
}

/// Keep the applied config on STATE for boots that find no other. It
/// may carry secrets (`write_files` with private keys), so the file is
/// readable by root only.
fn save_last_applied(text: &str) {
    if let Err(e) = write_private(Path::new(LAST_APPLIED), text.as_bytes()) {
        keel_boot::warn!("config: cannot keep the applied config in {LAST_APPLIED}: {e}");
    }
}

/// Replace `path` atomically (temporary file, fsync, rename) with `text`,
/// readable by its owner only, in a directory only its owner can enter.
pub(crate) fn write_private(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.keel-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Validate, plan and apply (or with `dry_run` only plan) a config: what
/// the boot and `POST /v1/config` both do. The host name is set when the
/// files are written; the text is kept on STATE when `keep` is set. Also
/// returns the accepted config (the boot's ConfigureNetwork applies its
/// `.network` units, StartContainers and the API run its containers).
pub fn apply_text(
    text: &str,
    meta_hostname: Option<String>,
    opts: keel_api::ApplyOptions,
    keep: bool,
) -> (ConfigApplied, Option<keel_config::model::CloudConfig>) {
    let dry_run = opts.dry_run;
    let t = std::time::Instant::now();
    let mut out = ConfigApplied {
        dry_run,
        ..ConfigApplied::default()
    };
    let mut r = keel_config::validate(text);
    out.errors = r.errors.iter().map(|e| e.to_string()).collect();
    out.items = r
        .items
        .iter()
        .map(|i| ConfigItem {
            path: i.path.clone(),
            line: i.line,
            verdict: i.verdict.as_str().into(),
            note: i.note.clone(),
        })
        .collect();
    if let Some(h) = meta_hostname {
        if r.config.hostname.is_none() {
            info!("config: host name {h} from the NoCloud meta-data");
            r.config.hostname = Some(h);
        }
    }
    if !r.accepted() {
        return (out, None);
    }
    if opts.keep_api && r.config.api.is_none() {
        out.errors.push(CLOSES_API.into());
        return (out, None);
    }
    let plan = match keel_config::plan::plan(&r.config) {
        Ok(p) => p,
        Err(e) => {
            out.errors.push(e.to_string());
            return (out, None);
        }
    };
    let checked = t.elapsed();
    out.checked_ms = checked.as_secs_f64() * 1e3;
    let mut accepted = None;
    let t = std::time::Instant::now();
    // A tmpfs (/etc) needs no fsync; STATE does.
    let durable = |dir: &Path| {
        keel_sys::fs::fs_magic(dir)
            .map(|m| !keel_boot::switch_root::is_memory_fs(m))
            .unwrap_or(true)
    };
    match keel_config::apply::apply_with(&plan, Path::new("/"), dry_run, &durable) {
        Ok(done) => {
            out.written_ms = if dry_run {
                0.0
            } else {
                t.elapsed().as_secs_f64() * 1e3
            };
            if !dry_run {
                if let Some(h) = &plan.hostname {
                    if let Err(e) = keel_sys::proc::set_hostname(h) {
                        out.errors.push(format!("set the host name: {e}"));
                        return (out, None);
                    }
                }
                info!(
                    "config: applied ({} files changed, {} unchanged, {} directories created; {} items): validated and planned in {:.1} ms, written in {:.1} ms",
                    done.files_changed.len(),
                    done.files_unchanged.len(),
                    done.dirs_created.len(),
                    out.items.len(),
                    checked.as_secs_f64() * 1e3,
                    t.elapsed().as_secs_f64() * 1e3
                );
                for i in out.items.iter().filter(|i| i.verdict == "refused") {
                    info!("config: refused {} (line {}): {}", i.path, i.line, i.note);
                }
                if keep {
                    save_last_applied(text);
                }
            }
            out.accepted = true;
            accepted = Some(r.config);
            out.changed = done.files_changed;
            out.created = done.dirs_created;
            out.unchanged = done.files_unchanged;
        }
        Err(e) => out.errors.push(format!("apply: {e} (nothing was changed)")),
    }
    (out, accepted)
}

/// Why a config without `api:` sent over the TCP port is refused.
pub const CLOSES_API: &str = "api: this config has no api: section, so the node's next boot would close its TCP API port, the one this request came in on, and leave the node reachable only from its console; keep the api: section, or apply with `keelctl config apply --close-api` (POST /v1/config?close_api=1) to close the port on purpose";

/// What the API's TCP port serves after this boot's config: its `api:`
/// when it was applied, closed when it has none, and [`TcpApi::Refused`]
/// when the config was refused (its files were not written; the API
/// falls back to the last good `api:` kept on STATE, if any).
pub fn tcp_api(applied: Option<&keel_config::model::CloudConfig>) -> TcpApi {
    match applied {
        Some(c) => c.api.clone().map_or(TcpApi::Closed, TcpApi::Tls),
        None => TcpApi::Refused,
    }
}

pub fn apply_config(ctx: &mut Ctx) -> Result<(), TaskError> {
    let Some(Loaded {
        text: bytes,
        meta_hostname,
    }) = ctx.loaded.take()
    else {
        return Ok(());
    };
    let mut st = keel_api::Node::config(&*ctx.node);
    let refused = |ctx: &mut Ctx, mut st: ConfigStatus| {
        ctx.config.api = tcp_api(None);
        maintenance(&mut st);
        ctx.node.set_config(st);
        Ok(())
    };
    if bytes.len() > keel_config::yaml::MAX_BYTES {
        st.errors.push(format!(
            "1:1: (document): over the {} byte limit",
            keel_config::yaml::MAX_BYTES
        ));
        return refused(ctx, st);
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            st.errors.push("1:1: (document): not UTF-8 text".into());
            return refused(ctx, st);
        }
    };
    let from_state = st
        .source
        .as_deref()
        .is_some_and(|s| s.starts_with("state "));
    let (done, config) = apply_text(
        &text,
        meta_hostname,
        keel_api::ApplyOptions::default(),
        !from_state,
    );
    ctx.config.api = tcp_api(config.as_ref());
    if let Some(c) = config {
        ctx.config.networks = c.networks;
        ctx.config.containers = c.containers;
        ctx.config.registries = c.registries;
        ctx.config.etcd2 = c.etcd2;
    }
    st.errors = done.errors;
    st.items = done.items;
    st.changed = done.changed;
    st.checked_ms = done.checked_ms;
    st.written_ms = done.written_ms;
    if !done.accepted {
        maintenance(&mut st);
    }
    ctx.node.set_config(st);
    Ok(())
}

fn maintenance(st: &mut ConfigStatus) {
    st.maintenance = true;
    error!(
        "config: {} errors: maintenance mode, nothing applied",
        st.errors.len()
    );
    for e in &st.errors {
        error!("config: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn serve(tls: Option<keel_tls::ServerFiles>, body: &str) -> std::net::SocketAddr {
        keel_tls::testpki::serve(tls.as_ref(), body.into()).0
    }

    /// The test PKI's server (for 127.0.0.1) sending its CA along.
    fn tls_files(pki: &keel_tls::testpki::TestPki, dir: &Path) -> keel_tls::ServerFiles {
        let chain = dir.join("chain.pem");
        let text = std::fs::read_to_string(&pki.server_cert).unwrap()
            + &std::fs::read_to_string(&pki.ca).unwrap();
        std::fs::write(&chain, text).unwrap();
        keel_tls::ServerFiles {
            cert: ("cert", chain),
            key: ("key", pki.server_key.clone()),
            client_ca: None,
        }
    }

    fn pin_of(pem: &Path) -> keel_tls::CertPin {
        use keel_tls::rustls::pki_types::pem::PemObject;
        let der = keel_tls::rustls::pki_types::CertificateDer::from_pem_file(pem).unwrap();
        keel_tls::CertPin::of(&der)
    }

    fn url(
        scheme: keel_tls::Scheme,
        addr: std::net::SocketAddr,
        ca: Option<keel_tls::CertPin>,
    ) -> ConfigUrl {
        ConfigUrl {
            scheme,
            addr,
            path: "/user-data".into(),
            ca,
        }
    }

    const CONFIG: &str = "#cloud-config\nhostname: fetched\n";

    #[test]
    fn https_is_verified_by_pin_or_bundle_and_a_bad_certificate_is_final() {
        use keel_tls::Scheme::Https;
        let t = tempfile::tempdir().unwrap();
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        let addr = serve(Some(tls_files(&pki, t.path())), CONFIG);
        let no_bundle = t.path().join("no-bundle");
        let long = Duration::from_secs(30);
        // The pinned CA: fetched.
        let pinned = url(Https, addr, Some(pin_of(&pki.ca)));
        assert_eq!(fetch(&pinned, &no_bundle, long).unwrap(), CONFIG.as_bytes());
        let source = url_source(&pinned, &no_bundle);
        assert!(
            source.starts_with(&format!("url https://{addr}/user-data (https, verified: only the pinned certificate sha256:")),
            "{source}"
        );
        // Another pin: refused at once, naming the URL and rustls's reason.
        let t0 = Instant::now();
        let e = fetch(
            &url(Https, addr, Some(pin_of(&pki.rogue_cert))),
            &no_bundle,
            long,
        )
        .unwrap_err();
        assert!(
            e.starts_with(&format!("https://{addr}/user-data: TLS: invalid peer certificate: UnknownIssuer (trusted: only the pinned certificate sha256:")),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        // No pin: the bundle. With the CA in it: fetched; without: refused
        // at once; unreadable: refused, naming the file.
        let bundled = url(Https, addr, None);
        assert_eq!(fetch(&bundled, &pki.ca, long).unwrap(), CONFIG.as_bytes());
        assert_eq!(
            url_source(&bundled, &pki.ca),
            format!(
                "url https://{addr}/user-data (https, verified: the CA bundle {})",
                pki.ca.display()
            )
        );
        let t0 = Instant::now();
        let e = fetch(&bundled, &pki.rogue_cert, long).unwrap_err();
        assert!(
            e.contains(": TLS: invalid peer certificate: UnknownIssuer (trusted: the CA bundle"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let e = fetch(&bundled, &no_bundle, long).unwrap_err();
        assert!(e.contains("CA bundle") && e.contains("no-bundle"), "{e}");
    }

    #[test]
    fn plain_http_is_fetched_unverified_and_named_when_tls_was_asked() {
        use keel_tls::Scheme::{Http, Https};
        let t = tempfile::tempdir().unwrap();
        let addr = serve(None, CONFIG);
        let bundle = t.path().join("bundle");
        let plain = url(Http, addr, None);
        assert_eq!(
            fetch(&plain, &bundle, Duration::from_secs(30)).unwrap(),
            CONFIG.as_bytes()
        );
        assert_eq!(
            url_source(&plain, &bundle),
            format!("url http://{addr}/user-data (plain http, unverified)")
        );
        // https to the same server: named, at once.
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        let t0 = Instant::now();
        let e = fetch(&url(Https, addr, None), &pki.ca, Duration::from_secs(30)).unwrap_err();
        assert_eq!(
            e,
            format!(
                "https://{addr}/user-data: the server answered the TLS handshake in plain http"
            )
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_refused_connection_is_retried_until_the_deadline() {
        // A port nothing listens on (bound, then closed).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t = tempfile::tempdir().unwrap();
        let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
        for scheme in [keel_tls::Scheme::Http, keel_tls::Scheme::Https] {
            let e = fetch(
                &url(scheme, addr, None),
                &pki.ca,
                Duration::from_millis(1500),
            )
            .unwrap_err();
            let attempts: u32 = e
                .split("no config after ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{e}"));
            assert!(attempts > 2, "{e}");
        }
    }

    /// Over the TCP port (keep_api), a config without `api:` is refused
    /// with the reason and changes nothing; the same config from the unix
    /// socket, or with `close_api`, is planned (dry runs: nothing is
    /// written here).
    #[test]
    fn a_config_that_would_close_the_remote_api_is_refused_over_tcp() {
        let text =
            "#cloud-config\nwrite_files:\n  - path: /nonexistent-keel-test/x\n    content: x\n";
        let remote = keel_api::ApplyOptions {
            dry_run: true,
            keep_api: true,
        };
        let (done, config) = apply_text(text, None, remote, false);
        assert!(!done.accepted && config.is_none());
        assert_eq!(done.errors, [CLOSES_API]);
        assert!(done.changed.is_empty());
        let local = keel_api::ApplyOptions {
            dry_run: true,
            keep_api: false,
        };
        let (done, config) = apply_text(text, None, local, false);
        assert!(done.accepted, "{:?}", done.errors);
        assert!(config.is_some());
        assert!(
            done.changed.iter().any(|f| f == "/nonexistent-keel-test/x"),
            "{:?}",
            done.changed
        );
    }

    #[test]
    fn the_kept_config_is_readable_by_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("config/last-applied.yaml");
        write_private(&path, b"write_files: [secret]\n").unwrap();
        write_private(&path, b"hostname: b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hostname: b\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn first_fw_cfg_name_wins() {
        let t = tempfile::tempdir().unwrap();
        let (fw, none) = (t.path().join("fw_cfg"), t.path().join("none"));
        std::fs::create_dir_all(&none).unwrap();
        let find = || {
            let mut m = NodeMedia {
                fw_cfg: &fw,
                sys_block: &none,
                dev: &none,
                mnt: &none,
            };
            keel_config::datasource::find_local(&mut m, &|_| {}).map(|f| f.source)
        };
        assert!(find().is_none());
        let coreos = fw.join("opt/com.coreos/config");
        std::fs::create_dir_all(&coreos).unwrap();
        std::fs::write(coreos.join("raw"), b"#cloud-config\n").unwrap();
        assert_eq!(find().as_deref(), Some("fw_cfg opt/com.coreos/config"));
        let keel = fw.join("opt/keel/config");
        std::fs::create_dir_all(&keel).unwrap();
        std::fs::write(keel.join("raw"), b"#cloud-config\nhostname: a\n").unwrap();
        assert_eq!(find().as_deref(), Some("fw_cfg opt/keel/config"));
    }

    #[test]
    fn the_tcp_port_follows_the_config_and_fails_closed() {
        let with_api = "#cloud-config
api:
  cert_file: /etc/keel/api.pem
  key_file: /etc/keel/api-key.pem
  client_ca_file: /etc/keel/ca.pem
";
        let r = keel_config::validate(with_api);
        assert!(r.accepted(), "{:#?}", r.errors);
        let want = r.config.api.clone().unwrap();
        assert_eq!(tcp_api(Some(&r.config)), TcpApi::Tls(want));
        // A config without api: keeps the port closed.
        let plain = "#cloud-config\nhostname: n1\n";
        let r = keel_config::validate(plain);
        assert_eq!(tcp_api(Some(&r.config)), TcpApi::Closed);
        // Refused configs, whatever is wrong: Refused (the last good api:
        // or nothing).
        for refused in [
            format!("{with_api}hostname: [x]\n"),
            "#cloud-config\napi:\n  cert_file: /etc/keel/api.pem\n".to_string(),
            "#cloud-config\napi: {cert_file: [\n".to_string(),
            "#cloud-config\nhostname: [x]\n".to_string(),
        ] {
            assert!(!keel_config::validate(&refused).accepted(), "{refused}");
            assert_eq!(tcp_api(None), TcpApi::Refused, "{refused}");
        }
    }
}
