//! keel-image: host tool that builds keel's images.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel-image", about = "Build keel's images", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a reproducible zstd-compressed newc initramfs from spec files.
    Initramfs {
        /// Spec files (gen_init_cpio syntax), merged; a path defined twice is an error.
        #[arg(long = "spec", required = true)]
        specs: Vec<PathBuf>,
        /// NAME=VALUE for ${NAME} in spec source paths.
        #[arg(long = "var")]
        vars: Vec<String>,
        /// Output file (written atomically).
        #[arg(long)]
        out: PathBuf,
        /// zstd level.
        #[arg(long, default_value_t = 19)]
        level: i32,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Initramfs {
            specs,
            vars,
            out,
            level,
        } => {
            let mut map = HashMap::new();
            for v in vars {
                let Some((k, val)) = v.split_once('=') else {
                    bail!("--var {v:?}: expected NAME=VALUE");
                };
                map.insert(k.to_string(), val.to_string());
            }
            let mut spec = keel_image::Spec::default();
            for p in &specs {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("read spec {}", p.display()))?;
                spec.add(&p.display().to_string(), &text, &map)?;
            }
            // Reproducible builds: one timestamp for every entry.
            let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(s) => s
                    .parse::<u32>()
                    .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number"))?,
                Err(_) => 0,
            };
            let entries = spec.entries();
            let raw = keel_image::cpio::archive(&entries, mtime)?;
            let packed = keel_image::cpio::compress(&raw, level).context("zstd")?;
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, &packed).with_context(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, &out).with_context(|| format!("rename to {}", out.display()))?;
            eprintln!(
                "keel-image: {} ({} entries, {} bytes, {} bytes uncompressed)",
                out.display(),
                entries.len(),
                packed.len(),
                raw.len()
            );
        }
    }
    Ok(())
}
