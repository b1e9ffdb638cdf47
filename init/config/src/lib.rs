//! keel's cloud-config: the CoreOS dialect, strictly.
//!
//! 1. [`yaml`] turns the text into a tree of nodes that each know their line
//!    and column, within limits: 1 MiB of input, 64 levels of nesting, and a
//!    budget on alias expansion so that a "billion laughs" document fails
//!    fast in bounded memory. YAML 1.1 habits survive because scalars keep
//!    their raw text and style: `permissions: 0644` unquoted is octal, as
//!    CoreOS read it.
//! 2. [`validate`] walks the tree against the model of the dialect
//!    ([`schema`]): every unknown key, wrong type and bad value is an error
//!    naming its YAML path, line and column, all of them reported together.
//!    Every item gets a verdict: applied, translated (to keel's own
//!    settings) or refused (with what keel offers instead).
//!    [`containers`] walks the `containers:` section the same way, and
//!    [`docker`] translates `docker run` units into the same containers;
//!    [`registries`] reads how missing images are pulled, [`api`] the
//!    management API's TLS files.
//! 3. The result is a typed [`model::CloudConfig`] of what keel applies.
//! 4. [`plan`] turns it into the exact files (the user database, homes and
//!    keys, `write_files`, hostname), and [`apply`] writes them under a root,
//!    all or nothing, idempotently.
//!
//! Pure: text in, report out. The node and `keelctl config validate` run the
//! same code. [`datasource`] finds the text, in order, through a small seam
//! that reads a device.

pub mod api;
pub mod apply;
pub mod containers;
pub mod datasource;
pub mod docker;
pub mod model;
pub mod plan;
pub mod registries;
pub mod schema;
pub mod validate;
pub mod yaml;

pub use validate::{validate, Issue, Item, Report, Verdict};
