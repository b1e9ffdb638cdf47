//! keel-image: host tool that builds keel's images.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use keel_slot::manifest;

#[derive(Parser)]
#[command(name = "keel-image", about = "Build keel's images", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct SpecArgs {
    /// Spec files (gen_init_cpio syntax), merged; a path defined twice is an error.
    #[arg(long = "spec", required = true)]
    specs: Vec<PathBuf>,
    /// NAME=VALUE for ${NAME} in spec source paths.
    #[arg(long = "var")]
    vars: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a reproducible zstd-compressed newc initramfs from spec files.
    Initramfs {
        #[command(flatten)]
        spec: SpecArgs,
        /// Output file (written atomically).
        #[arg(long)]
        out: PathBuf,
        /// zstd level.
        #[arg(long, default_value_t = 19)]
        level: i32,
        /// Write the archive uncompressed (for a kernel's built-in initramfs).
        #[arg(long)]
        raw: bool,
        /// Spec files whose entries go into a second, uncompressed segment
        /// after the compressed archive (content compressed already, such as
        /// the root slot): the kernel copies it without decompressing.
        #[arg(long = "uncompressed-spec")]
        uncompressed_specs: Vec<PathBuf>,
    },
    /// Write an iPXE script that boots the kernel and initramfs next to it.
    Ipxe {
        #[arg(long, default_value = "bzImage")]
        kernel: String,
        #[arg(long, default_value = "initramfs.cpio.zst")]
        initramfs: String,
        /// Kernel command line.
        #[arg(long)]
        cmdline: String,
        #[arg(long)]
        build_id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build the EROFS root image from spec files.
    Rootfs {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a reproducible OCI image layout (one tar+gzip layer) from spec files.
    Oci {
        #[command(flatten)]
        spec: SpecArgs,
        /// Reference name in index.json (org.opencontainers.image.ref.name), e.g. busybox:latest.
        #[arg(long)]
        name: String,
        /// Entrypoint, one argument per flag.
        #[arg(long, allow_hyphen_values = true)]
        entrypoint: Vec<String>,
        /// Cmd (arguments to the entrypoint), one argument per flag.
        #[arg(long, allow_hyphen_values = true)]
        cmd: Vec<String>,
        /// KEY=VALUE for the container's environment.
        #[arg(long)]
        env: Vec<String>,
        #[arg(long)]
        workdir: Option<String>,
        /// User (name or uid[:gid]) the container runs as.
        #[arg(long)]
        user: Option<String>,
        /// Exposed port, e.g. 80/tcp.
        #[arg(long = "port")]
        ports: Vec<String>,
        /// Output directory (replaced if it holds a layout).
        #[arg(long)]
        out: PathBuf,
        /// Compress the layer with zstd (tar+zstd) instead of gzip.
        #[arg(long)]
        zstd: bool,
    },
    /// Create a development ed25519 key pair (DIR/keel-dev.key, DIR/keel-dev.pub) unless it exists.
    Keygen {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the build id: BLAKE3 over the given files (kernel, keel, key), 32 hex digits.
    BuildId {
        #[arg(long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Assemble a signed slot: root image, dm-verity tree, kernel, initramfs, manifest.
    Slot {
        #[arg(long)]
        root: PathBuf,
        #[arg(long, requires = "initramfs")]
        kernel: Option<PathBuf>,
        #[arg(long, requires = "kernel")]
        initramfs: Option<PathBuf>,
        /// Secret key file (keel-image keygen).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        version: String,
        #[arg(long, default_value = "dev")]
        channel: String,
        #[arg(long)]
        build_id: String,
        /// Pad to this size (a partition); default: as small as possible.
        #[arg(long)]
        size_mib: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a slot file: manifest signature and the BLAKE3 of its content.
    Verify {
        #[arg(long)]
        slot: PathBuf,
        /// Public key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Assemble the GPT disk image (ESP, KEEL-A, KEEL-B, STATE), raw and qcow2.
    Disk {
        /// The EFI-stub kernel with the initramfs built in.
        #[arg(long)]
        efi_kernel: PathBuf,
        #[arg(long)]
        slot_a: PathBuf,
        #[arg(long)]
        slot_b: PathBuf,
        /// Files for the STATE partition.
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        build_id: String,
        /// The EFI kernel carries the disk initramfs (keel included): 8 MiB
        /// leaves room for keel's growth.
        #[arg(long, default_value_t = 8)]
        esp_mib: u64,
        #[arg(long, default_value_t = 20)]
        slot_mib: u64,
        #[arg(long, default_value_t = 12)]
        state_mib: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        qcow2: Option<PathBuf>,
    },
}

fn epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number")),
        Err(_) => Ok(0),
    }
}

fn load_spec(a: &SpecArgs) -> Result<Vec<keel_image::Entry>> {
    let mut map = HashMap::new();
    for v in &a.vars {
        let Some((k, val)) = v.split_once('=') else {
            bail!("--var {v:?}: expected NAME=VALUE");
        };
        map.insert(k.to_string(), val.to_string());
    }
    let mut spec = keel_image::Spec::default();
    for p in &a.specs {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("read spec {}", p.display()))?;
        spec.add(&p.display().to_string(), &text, &map)?;
    }
    Ok(spec.entries())
}

fn write_atomic(out: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("rename to {}", out.display()))
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("read {}", p.display()))
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Initramfs {
            spec,
            out,
            level,
            raw: uncompressed,
            uncompressed_specs,
        } => {
            let entries = load_spec(&spec)?;
            let mtime = u32::try_from(epoch()?).context("SOURCE_DATE_EPOCH past 2106")?;
            let raw = keel_image::cpio::archive(&entries, mtime)?;
            let mut packed = if uncompressed {
                raw.clone()
            } else {
                keel_image::cpio::compress(&raw, level).context("zstd")?
            };
            let mut count = entries.len();
            let mut unpacked = raw.len();
            if !uncompressed_specs.is_empty() {
                if uncompressed {
                    bail!(
                        "--uncompressed-spec with --raw: the whole archive is uncompressed already"
                    );
                }
                let second = load_spec(&SpecArgs {
                    specs: uncompressed_specs,
                    vars: spec.vars.clone(),
                })?;
                let first: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                if let Some(e) = second.iter().find(|e| {
                    !matches!(e.kind, keel_image::Kind::Dir) && first.contains(e.name.as_str())
                }) {
                    bail!(
                        "{}: in both the compressed and the uncompressed segment",
                        e.name
                    );
                }
                let seg = keel_image::cpio::archive(&second, mtime)?;
                count += second.len();
                unpacked += seg.len();
                packed = keel_image::cpio::with_raw_segment(&packed, &seg);
            }
            write_atomic(&out, &packed)?;
            eprintln!(
                "keel-image: {} ({} entries, {} bytes, {} bytes uncompressed)",
                out.display(),
                count,
                packed.len(),
                unpacked
            );
        }
        Cmd::Ipxe {
            kernel,
            initramfs,
            cmdline,
            build_id,
            out,
        } => {
            for (what, v) in [("--kernel", &kernel), ("--initramfs", &initramfs)] {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    bail!("{what} {v:?}: a file name without spaces");
                }
            }
            if cmdline.chars().any(|c| c.is_control()) {
                bail!("--cmdline: one line");
            }
            let script = format!(
                "#!ipxe\n# keel {}, build {build_id}: diskless boot. The kernel and the\n# initramfs (with the verified root inside) are fetched next to this script.\nkernel {kernel} {cmdline}\ninitrd {initramfs}\nboot\n",
                env!("CARGO_PKG_VERSION")
            );
            write_atomic(&out, script.as_bytes())?;
            eprintln!("keel-image: {}", out.display());
        }
        Cmd::Rootfs { spec, out } => {
            let entries = load_spec(&spec)?;
            let stage = tempfile::tempdir().context("staging directory")?;
            keel_image::rootfs::stage(&entries, stage.path())?;
            let mut h = blake3::Hasher::new();
            for e in &entries {
                h.update(e.name.as_bytes());
            }
            let uuid = keel_slot::gpt::Guid::derived(h.finalize().as_bytes()).to_string();
            keel_image::rootfs::mkfs_erofs(stage.path(), &out, epoch()?, &uuid)?;
            let size = std::fs::metadata(&out)?.len();
            eprintln!(
                "keel-image: {} (EROFS, {} entries, {size} bytes)",
                out.display(),
                entries.len()
            );
        }
        Cmd::Oci {
            spec,
            name,
            entrypoint,
            cmd,
            env,
            workdir,
            user,
            ports,
            out,
            zstd,
        } => {
            if let Some(e) = env.iter().find(|e| !e.contains('=')) {
                bail!("--env {e:?}: expected KEY=VALUE");
            }
            let entries = load_spec(&spec)?;
            let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let image = keel_oci::ImageSpec {
                name: Some(name.clone()),
                platform: keel_oci::Platform::linux_amd64(),
                config: keel_oci::ContainerConfig {
                    entrypoint: some(entrypoint),
                    cmd: some(cmd),
                    env: some(env),
                    working_dir: workdir,
                    user,
                    exposed_ports: some(ports)
                        .map(|p| p.into_iter().map(|p| (p, serde_json::json!({}))).collect()),
                    ..Default::default()
                },
            };
            let digest = keel_image::oci::build(&entries, epoch()?, &image, &out, zstd)?;
            eprintln!(
                "keel-image: {} ({name}, {} entries, manifest {digest})",
                out.display(),
                entries.len()
            );
        }
        Cmd::Keygen { dir } => {
            let (sk, pk) = (dir.join("keel-dev.key"), dir.join("keel-dev.pub"));
            if sk.exists() && pk.exists() {
                eprintln!("keel-image: {} exists: kept", sk.display());
                return Ok(());
            }
            std::fs::create_dir_all(&dir)?;
            let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
            let tmp = sk.with_extension("tmp");
            {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("create {}", tmp.display()))?;
                f.write_all(manifest::secret_key_text(&key).as_bytes())?;
            }
            std::fs::rename(&tmp, &sk)?;
            write_atomic(
                &pk,
                manifest::public_key_text(&key.verifying_key()).as_bytes(),
            )?;
            eprintln!(
                "keel-image: new development key {} (id {})",
                pk.display(),
                manifest::key_id(&key.verifying_key())
            );
        }
        Cmd::BuildId { files } => {
            let mut h = blake3::Hasher::new();
            for f in &files {
                let b = read(f)?;
                h.update(&(b.len() as u64).to_le_bytes());
                h.update(&b);
            }
            println!("{}", &h.finalize().to_hex()[..32]);
        }
        Cmd::Slot {
            root,
            kernel,
            initramfs,
            key,
            version,
            channel,
            build_id,
            size_mib,
            out,
        } => {
            let key = manifest::parse_secret_key(
                &std::fs::read_to_string(&key)
                    .with_context(|| format!("read {}", key.display()))?,
            )?;
            let root = read(&root)?;
            let kernel = kernel.as_deref().map(read).transpose()?;
            let initramfs = initramfs.as_deref().map(read).transpose()?;
            let meta = keel_image::slot::Meta {
                version,
                channel,
                build_id,
            };
            let (bytes, m) = keel_image::slot::assemble(
                &root,
                kernel.as_deref(),
                initramfs.as_deref(),
                &meta,
                &key,
                size_mib.map(|m| m * 1024 * 1024),
            )?;
            write_atomic(&out, &bytes)?;
            eprintln!(
                "keel-image: {} (slot {} bytes: root {} + hash {} + kernel {} + initramfs {}; verity root {})",
                out.display(),
                bytes.len(),
                m.root.size,
                m.verity.hash.size,
                m.kernel.as_ref().map_or(0, |p| p.size),
                m.initramfs.as_ref().map_or(0, |p| p.size),
                m.verity.root_hash
            );
        }
        Cmd::Verify { slot, key } => {
            let trusted = manifest::TrustedKey::parse(
                &std::fs::read_to_string(&key)
                    .with_context(|| format!("read {}", key.display()))?,
            )?;
            let bytes = read(&slot)?;
            let at = keel_slot::layout::footer_offset(bytes.len() as u64)
                .context("slot smaller than a footer")? as usize;
            let v = manifest::open(&bytes[at..], &[trusted])?;
            let m = &v.manifest;
            let t = std::time::Instant::now();
            let got = blake3::hash(&bytes[..m.content.size as usize]);
            let secs = t.elapsed().as_secs_f64();
            if keel_slot::hex::encode(got.as_bytes()) != m.content.blake3 {
                bail!(
                    "slot {}: content digest mismatch: corrupted",
                    slot.display()
                );
            }
            println!(
                "{}: version {} build {} signed by {}; content {} bytes verified in {:.1} ms ({:.0} MiB/s)",
                slot.display(),
                m.version,
                m.build_id,
                v.key_id,
                m.content.size,
                secs * 1e3,
                m.content.size as f64 / (1024.0 * 1024.0) / secs
            );
        }
        Cmd::Disk {
            efi_kernel,
            slot_a,
            slot_b,
            state_dir,
            build_id,
            esp_mib,
            slot_mib,
            state_mib,
            out,
            qcow2,
        } => {
            let a = read(&slot_a)?;
            let b = read(&slot_b)?;
            let work = tempfile::tempdir().context("scratch directory")?;
            let inp = keel_image::disk::Inputs {
                efi_kernel: &efi_kernel,
                slot_a: &a,
                slot_b: &b,
                state_dir: &state_dir,
                build_id: &build_id,
                epoch: epoch()?,
                sizes: keel_image::disk::Sizes {
                    esp_mib,
                    slot_mib,
                    state_mib,
                },
                work: work.path(),
            };
            keel_image::disk::build(&inp, &out)?;
            eprintln!(
                "keel-image: {} ({} bytes)",
                out.display(),
                std::fs::metadata(&out)?.len()
            );
            if let Some(q) = qcow2 {
                keel_image::disk::qcow2(&out, &q)?;
                eprintln!(
                    "keel-image: {} ({} bytes)",
                    q.display(),
                    std::fs::metadata(&q)?.len()
                );
            }
        }
    }
    Ok(())
}
