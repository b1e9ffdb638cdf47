//! What keel applies from a cloud-config: the typed result of validation.

/// A user to create or update (`users:`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub gecos: Option<String>,
    /// A crypt(3) hash: keel stores hashes only.
    pub passwd_hash: Option<String>,
    pub homedir: Option<String>,
    pub no_create_home: bool,
    pub primary_group: Option<String>,
    pub groups: Vec<String>,
    pub no_user_group: bool,
    pub ssh_authorized_keys: Vec<String>,
    pub system: bool,
    pub shell: Option<String>,
}

/// A file to write (`write_files:`), content already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    pub path: String,
    pub content: Vec<u8>,
    pub permissions: u32,
    /// `(user, group)`; `None` means root.
    pub owner: Option<(String, Option<String>)>,
}

/// `coreos.update`: keel's update agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub reboot_strategy: Option<String>,
    pub server: Option<String>,
    pub group: Option<String>,
}

/// `coreos.locksmith`: keel's reboot coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locksmith {
    pub endpoint: Vec<String>,
    pub group: Option<String>,
    pub window_start: Option<String>,
    pub window_length: Option<String>,
    pub etcd_cafile: Option<String>,
    pub etcd_certfile: Option<String>,
    pub etcd_keyfile: Option<String>,
}

/// A route of a `.network` unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: String,
    pub gateway: Option<String>,
}

/// A `.network` unit translated to keel's network settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    pub unit: String,
    /// `[Match] Name=` globs.
    pub match_names: Vec<String>,
    pub dhcp: Option<String>,
    /// CIDRs.
    pub addresses: Vec<String>,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

/// Everything keel applies or translates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub users: Vec<User>,
    /// Top-level `ssh_authorized_keys`: for the `core` user.
    pub ssh_authorized_keys: Vec<String>,
    pub write_files: Vec<WriteFile>,
    pub manage_etc_hosts: bool,
    pub update: Option<Update>,
    pub locksmith: Option<Locksmith>,
    /// `coreos.etcd2` (and the translated `coreos.etcd`) settings, by key.
    pub etcd2: Vec<(String, String)>,
    pub networks: Vec<Network>,
}
