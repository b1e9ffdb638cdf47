//! keel's modelled types: the ground every crate that reads a setting
//! stands on.
//!
//! A setting is text in a cloud-config, on etcd's command line or on the
//! kernel's; downstream it is a value. This crate is where one turns into
//! the other, once:
//!
//! 1. each type parses from its text through `TryFrom<&str>` (or a named
//!    constructor where the text alone is not enough, such as a mode read
//!    from YAML), with the message the validator shows (the validator adds
//!    the field's path and position), "did you mean" included;
//! 2. each type shows itself (`Display`) in the form it parses from, so
//!    `parse(display(x)) == x` (each module's property tests check it);
//! 3. code downstream takes the value and never parses a string again.
//!
//! No I/O here, and no dependency on another keel crate: the config crate,
//! the containers, the confinement policy, the KV and PID 1 all use these
//! types, so none of them may be below it.

mod caps;
mod docker;
mod error;
pub mod etcd;
mod host;
mod ids;
mod image;
mod net;
mod rlimit;
mod signal;
pub mod text;
mod units;
mod update;

pub use caps::{CapEntry, CapSet, Capability, DEFAULT_CAPS, LAST_CAP};
pub use docker::RunFlag;
pub use error::Invalid;
pub use host::{hostname, url_list, Host, HttpUrl, Registry};
pub use ids::{Id, UserSpec};
pub use image::{ImageRef, Sha256};
pub use net::{ip, Cidr, DhcpMode, Port, Protocol};
pub use rlimit::{Limits, Resource, Rlimit};
pub use signal::{Signal, SIGNAL_NAMES, SIGRTMAX, SIGRTMIN};
pub use units::{Bytes, GoDuration, Millis, Mode};
pub use update::{Group, RebootStrategy, Weekday, WindowStart};

pub use etcd::{Discovery, EtcdSettings};
