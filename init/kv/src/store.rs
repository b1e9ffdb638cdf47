//! The keys tree and etcd v2's operations on it.
//!
//! Every mutation follows the same steps, so that a failed operation leaves the
//! tree and the index untouched and a successful one is fully determined by its
//! inputs:
//!
//! 1. Normalise the key the way etcd does (`path.Clean("/" + key)`): leading `/`,
//!    empty and `.` segments dropped, `..` pops a segment.
//! 2. Refuse the root (`107`) for writes, then walk the tree: a value met where a
//!    directory is needed is `104 Not a directory`, a missing segment is
//!    `100 Key not found` (cause = the path up to that segment).
//! 3. Check the operation's precondition (`prevExist`, `prevValue`, `prevIndex`,
//!    directory vs. file) and fail with etcd's code and cause.
//! 4. Take the next index (`index + 1`), apply the change, and build the event
//!    (`node` as it is now, `prevNode` as it was, without children).
//! 5. Append the event to the watch history, except for `refresh`, which etcd
//!    does not show to watchers.
//!
//! Time is an input (`now`, ms since the epoch): a TTL becomes an absolute
//! `expiration`, and [`Store::expire`] removes every node whose expiration is at
//! or before `now`, one `expire` event (and index) per node, oldest first.

use std::collections::BTreeMap;

use crate::error::{ErrorCode, EtcdError};
use crate::watch::{EventHistory, DEFAULT_HISTORY};

/// What an event did; the strings are etcd's `action` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Get,
    Set,
    Create,
    Update,
    CompareAndSwap,
    Delete,
    CompareAndDelete,
    Expire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Set => "set",
            Action::Create => "create",
            Action::Update => "update",
            Action::CompareAndSwap => "compareAndSwap",
            Action::Delete => "delete",
            Action::CompareAndDelete => "compareAndDelete",
            Action::Expire => "expire",
        }
    }
}

/// A node as an event shows it: a snapshot, detached from the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    pub key: String,
    /// `Some` for a value node that carries its value; `None` for directories and
    /// for the `node` of delete/expire events.
    pub value: Option<String>,
    pub dir: bool,
    /// Absolute expiration, ms since the epoch.
    pub expiration: Option<u64>,
    /// Seconds left at the time of the operation, rounded up as etcd does.
    pub ttl: i64,
    /// Children (only for a listed directory), sorted by name, hidden ones left out.
    pub nodes: Vec<NodeView>,
    pub modified_index: u64,
    pub created_index: u64,
}

/// The outcome of an operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub action: Action,
    pub node: NodeView,
    pub prev_node: Option<NodeView>,
    /// The store's index after the operation (etcd's `X-Etcd-Index`).
    pub etcd_index: u64,
}

impl Event {
    /// The HTTP status etcd answers a write or get with: 201 when the node is
    /// new (`create`, or `set` without a previous node). Watch answers are 200.
    pub fn http_status(&self) -> u16 {
        if self.action == Action::Create || (self.action == Action::Set && self.prev_node.is_none())
        {
            201
        } else {
            200
        }
    }

    /// The index the event happened at (its node's `modifiedIndex`).
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }
}

/// The parameters of a PUT, as etcd's form fields carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetOptions {
    pub value: String,
    pub dir: bool,
    pub ttl: Option<u64>,
    pub prev_exist: Option<bool>,
    /// An empty string counts as absent, as in etcd.
    pub prev_value: Option<String>,
    /// Zero counts as absent, as in etcd.
    pub prev_index: Option<u64>,
    pub refresh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Kind {
    File(String),
    Dir(BTreeMap<String, Node>),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Node {
    created_index: u64,
    modified_index: u64,
    expiration: Option<u64>,
    kind: Kind,
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }
    fn value(&self) -> &str {
        match &self.kind {
            Kind::File(v) => v,
            Kind::Dir(_) => "",
        }
    }
}

/// How much of a directory's subtree a view lists.
#[derive(Clone, Copy)]
enum Listing {
    None,
    OneLevel,
    All,
}

/// `path.Clean("/" + key)`: the form every key is stored and reported under.
pub fn normalize_key(key: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in key.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn segments(key: &str) -> Vec<&str> {
    key.split('/').filter(|s| !s.is_empty()).collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// etcd's `_`-prefixed names are stored but never listed.
fn is_hidden(name: &str) -> bool {
    name.starts_with('_')
}

/// Seconds left, rounded up like etcd's `expirationAndTTL` (truncate, then +1 on
/// a positive remainder).
fn ttl_secs(expiration: u64, now: u64) -> i64 {
    let left = expiration as i128 - now as i128;
    let mut secs = left / 1000;
    if left % 1000 > 0 {
        secs += 1;
    }
    secs.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn expiration_of(ttl: Option<u64>, now: u64) -> Option<u64> {
    ttl.map(|t| now.saturating_add(t.saturating_mul(1000)))
}

fn view(n: &Node, key: &str, now: u64, listing: Listing) -> NodeView {
    let nodes = match (&n.kind, listing) {
        (Kind::Dir(children), Listing::OneLevel | Listing::All) => {
            let next = match listing {
                Listing::All => Listing::All,
                _ => Listing::None,
            };
            children
                .iter()
                .filter(|(name, _)| !is_hidden(name))
                .map(|(name, c)| view(c, &join(key, name), now, next))
                .collect()
        }
        _ => Vec::new(),
    };
    NodeView {
        key: key.to_string(),
        value: match &n.kind {
            Kind::File(v) => Some(v.clone()),
            Kind::Dir(_) => None,
        },
        dir: n.is_dir(),
        expiration: n.expiration,
        ttl: n.expiration.map_or(0, |e| ttl_secs(e, now)),
        nodes,
        modified_index: n.modified_index,
        created_index: n.created_index,
    }
}

/// The `node` of a delete or expire event: key, indexes and the dir flag only.
fn removed_view(n: &Node, key: &str, index: u64) -> NodeView {
    NodeView {
        key: key.to_string(),
        value: None,
        dir: n.is_dir(),
        expiration: None,
        ttl: 0,
        nodes: Vec::new(),
        modified_index: index,
        created_index: n.created_index,
    }
}

/// `[prevValue != value]`, `[prevIndex != modifiedIndex]` or both, as etcd words it.
fn compare(n: &Node, prev_value: Option<&str>, prev_index: Option<u64>) -> Result<(), String> {
    let value_ok = prev_value.is_none_or(|v| v == n.value());
    let index_ok = prev_index.is_none_or(|i| i == n.modified_index);
    let pv = prev_value.unwrap_or("");
    let pi = prev_index.unwrap_or(0);
    match (value_ok, index_ok) {
        (true, true) => Ok(()),
        (false, true) => Err(format!("[{pv} != {}]", n.value())),
        (true, false) => Err(format!("[{pi} != {}]", n.modified_index)),
        (false, false) => Err(format!(
            "[{pv} != {}] [{pi} != {}]",
            n.value(),
            n.modified_index
        )),
    }
}

/// Parses a `ttl` form field: empty means no TTL, anything else must be a
/// non-negative integer (`202`). Form errors never reach the store, so etcd
/// reports them with index 0.
pub fn parse_ttl(field: &str) -> Result<Option<u64>, EtcdError> {
    parse_u64(field, "ttl", ErrorCode::TtlNaN)
}

/// Parses an index form field (`prevIndex`, `waitIndex`): empty means absent,
/// anything else must be a non-negative integer (`203`, index 0).
pub fn parse_index(field: &str, name: &str) -> Result<Option<u64>, EtcdError> {
    parse_u64(field, name, ErrorCode::IndexNaN)
}

fn parse_u64(field: &str, name: &str, code: ErrorCode) -> Result<Option<u64>, EtcdError> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse::<u64>()
        .map(Some)
        .map_err(|_| EtcdError::new(code, format!("invalid value for \"{name}\""), 0))
}

/// What a node costs in [`Store::bytes`] beyond its name and value: its
/// indexes, expiration and its place in its parent's map, roughly as the
/// store holds them in memory.
pub const NODE_BYTES: u64 = 64;

/// A node's share of [`Store::bytes`]: its name, its value, and for a
/// directory everything under it.
fn subtree_bytes(name: &str, n: &Node) -> u64 {
    let own = name.len() as u64 + NODE_BYTES;
    match &n.kind {
        Kind::File(v) => own + v.len() as u64,
        Kind::Dir(children) => {
            own + children
                .iter()
                .map(|(c, n)| subtree_bytes(c, n))
                .sum::<u64>()
        }
    }
}

/// The etcd v2 keys store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoreData")]
pub struct Store {
    root: Node,
    index: u64,
    history: EventHistory,
    /// The tree's size as [`subtree_bytes`] counts it, kept up to date by
    /// every change (counted once when a store is read back).
    #[serde(skip)]
    bytes: u64,
}

/// [`Store`] as it is written: the size is counted again on reading.
#[derive(serde::Deserialize)]
struct StoreData {
    root: Node,
    index: u64,
    history: EventHistory,
}

impl From<StoreData> for Store {
    fn from(d: StoreData) -> Store {
        let bytes = subtree_bytes("", &d.root) - NODE_BYTES;
        Store {
            root: d.root,
            index: d.index,
            history: d.history,
            bytes,
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store at index 0 with etcd's default watch window.
    pub fn new() -> Self {
        Store::with_history(DEFAULT_HISTORY)
    }

    /// An empty store keeping the last `capacity` events for watches.
    pub fn with_history(capacity: usize) -> Self {
        Store {
            root: Node {
                created_index: 0,
                modified_index: 0,
                expiration: None,
                kind: Kind::Dir(BTreeMap::new()),
            },
            index: 0,
            history: EventHistory::new(capacity),
            bytes: 0,
        }
    }

    /// The keys' size: each node's name and value plus [`NODE_BYTES`]
    /// (what `quota-backend-bytes` is measured against).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The index of the last successful change.
    pub fn index(&self) -> u64 {
        self.index
    }

    fn err(&self, code: ErrorCode, cause: impl Into<String>) -> EtcdError {
        EtcdError::new(code, cause, self.index)
    }

    fn lookup(&self, key: &str) -> Result<&Node, EtcdError> {
        let mut cur = &self.root;
        let mut path = String::new();
        for seg in segments(key) {
            let Kind::Dir(children) = &cur.kind else {
                return Err(self.err(ErrorCode::NotDir, path));
            };
            path.push('/');
            path.push_str(seg);
            cur = children
                .get(seg)
                .ok_or_else(|| self.err(ErrorCode::KeyNotFound, path.clone()))?;
        }
        Ok(cur)
    }

    /// The node at `key`; [`Store::lookup`] has already vouched that it exists.
    fn node_mut(&mut self, key: &str) -> Option<&mut Node> {
        let mut cur = &mut self.root;
        for seg in segments(key) {
            cur = match &mut cur.kind {
                Kind::Dir(children) => children.get_mut(seg)?,
                Kind::File(_) => return None,
            };
        }
        Some(cur)
    }

    /// The children map of `key`'s parent, creating missing directories at
    /// `index` (etcd's `checkDir` walk). A value on the way is `104`.
    fn parent_mkdir(
        &mut self,
        key: &str,
        index: u64,
    ) -> Result<&mut BTreeMap<String, Node>, EtcdError> {
        let segs = segments(key);
        let cur_index = self.index;
        let bytes = &mut self.bytes;
        let mut cur = &mut self.root;
        let mut path = String::new();
        for seg in &segs[..segs.len().saturating_sub(1)] {
            path.push('/');
            path.push_str(seg);
            let Kind::Dir(children) = &mut cur.kind else {
                unreachable!("parent_mkdir only descends into directories");
            };
            let child = children.entry(seg.to_string()).or_insert_with(|| {
                *bytes += seg.len() as u64 + NODE_BYTES;
                Node {
                    created_index: index,
                    modified_index: index,
                    expiration: None,
                    kind: Kind::Dir(BTreeMap::new()),
                }
            });
            if !child.is_dir() {
                return Err(EtcdError::new(ErrorCode::NotDir, path, cur_index));
            }
            cur = child;
        }
        match &mut cur.kind {
            Kind::Dir(children) => Ok(children),
            Kind::File(_) => unreachable!("parent_mkdir ends on a directory"),
        }
    }

    fn remove(&mut self, key: &str) -> Option<Node> {
        let segs = segments(key);
        let (name, parents) = segs.split_last()?;
        let parent = self.node_mut(&parents.join("/"))?;
        let gone = match &mut parent.kind {
            Kind::Dir(children) => children.remove(*name),
            Kind::File(_) => None,
        }?;
        self.bytes = self.bytes.saturating_sub(subtree_bytes(name, &gone));
        Some(gone)
    }

    fn record(&mut self, event: Event, refresh: bool) -> Event {
        if !refresh {
            self.history.push(event.clone());
        }
        event
    }

    /// GET: the node at `key`; a directory lists its children, and with
    /// `recursive` the whole subtree. Children are always in name order (the
    /// `sorted` flag is accepted for API parity: a BTreeMap is already sorted).
    pub fn get(
        &self,
        key: &str,
        recursive: bool,
        _sorted: bool,
        now: u64,
    ) -> Result<Event, EtcdError> {
        let key = normalize_key(key);
        let n = self.lookup(&key)?;
        let listing = if recursive {
            Listing::All
        } else {
            Listing::OneLevel
        };
        Ok(Event {
            action: Action::Get,
            node: view(n, &key, now, listing),
            prev_node: None,
            etcd_index: self.index,
        })
    }

    /// PUT: dispatches like etcd's server: `prevExist=true` is `update` (or
    /// `compareAndSwap` with a prevValue/prevIndex), `prevExist=false` is
    /// `create`, a prevValue/prevIndex alone is `compareAndSwap`, else `set`.
    pub fn set(&mut self, key: &str, opts: &SetOptions, now: u64) -> Result<Event, EtcdError> {
        let key = normalize_key(key);
        // Form errors, checked before the store is touched: etcd reports
        // them with index 0 and these causes.
        if opts.refresh {
            if !opts.value.is_empty() {
                return Err(EtcdError::new(
                    ErrorCode::RefreshValue,
                    "A value was provided on a refresh",
                    0,
                ));
            }
            if opts.ttl.is_none() {
                return Err(EtcdError::new(
                    ErrorCode::RefreshTtlRequired,
                    "No TTL value set",
                    0,
                ));
            }
        }
        let prev_value = opts.prev_value.as_deref().filter(|v| !v.is_empty());
        let prev_index = opts.prev_index.filter(|i| *i != 0);
        let compared = prev_value.is_some() || prev_index.is_some();
        match opts.prev_exist {
            Some(true) if !compared => self.update(&key, &opts.value, opts.ttl, opts.refresh, now),
            Some(false) => self.create(
                &key,
                opts.dir,
                &opts.value,
                opts.ttl,
                false,
                Action::Create,
                false,
                now,
            ),
            _ if compared => self.compare_and_swap(
                &key,
                prev_value,
                prev_index,
                &opts.value,
                opts.ttl,
                opts.refresh,
                now,
            ),
            _ => self.create(
                &key,
                opts.dir,
                &opts.value,
                opts.ttl,
                true,
                Action::Set,
                opts.refresh,
                now,
            ),
        }
    }

    /// POST: creates `dir/<next index, 20 digits>` holding `value` (or, with
    /// `make_dir`, an empty directory).
    pub fn create_in_order(
        &mut self,
        dir: &str,
        value: &str,
        make_dir: bool,
        ttl: Option<u64>,
        now: u64,
    ) -> Result<Event, EtcdError> {
        let key = join(&normalize_key(dir), &format!("{:020}", self.index + 1));
        self.create(
            &key,
            make_dir,
            value,
            ttl,
            false,
            Action::Create,
            false,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        key: &str,
        dir: bool,
        value: &str,
        ttl: Option<u64>,
        replace: bool,
        action: Action,
        refresh: bool,
        now: u64,
    ) -> Result<Event, EtcdError> {
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let value = if refresh {
            self.lookup(key)?.value().to_string()
        } else {
            value.to_string()
        };
        let index = self.index + 1;
        let cur_index = self.index;
        let name = segments(key)
            .last()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let children = self.parent_mkdir(key, index)?;
        let prev_node = match children.get(&name) {
            Some(_) if !replace => {
                return Err(EtcdError::new(ErrorCode::NodeExist, key, cur_index))
            }
            Some(n) if n.is_dir() => {
                return Err(EtcdError::new(ErrorCode::NotFile, key, cur_index))
            }
            Some(n) => Some(view(n, key, now, Listing::None)),
            None => None,
        };
        let node = Node {
            created_index: index,
            modified_index: index,
            expiration: expiration_of(ttl, now),
            kind: if dir {
                Kind::Dir(BTreeMap::new())
            } else {
                Kind::File(value)
            },
        };
        let nv = view(&node, key, now, Listing::None);
        let added = subtree_bytes(&name, &node);
        let replaced = children.insert(name.clone(), node);
        let removed = replaced.map_or(0, |old| subtree_bytes(&name, &old));
        self.bytes = (self.bytes + added).saturating_sub(removed);
        self.index = index;
        Ok(self.record(
            Event {
                action,
                node: nv,
                prev_node,
                etcd_index: index,
            },
            refresh,
        ))
    }

    fn update(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<u64>,
        refresh: bool,
        now: u64,
    ) -> Result<Event, EtcdError> {
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let n = self.lookup(key)?;
        let value = if refresh {
            n.value().to_string()
        } else {
            value.to_string()
        };
        if n.is_dir() && !value.is_empty() {
            return Err(self.err(ErrorCode::NotFile, key));
        }
        let prev_node = Some(view(n, key, now, Listing::None));
        self.rewrite(key, value, ttl, Action::Update, prev_node, refresh, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn compare_and_swap(
        &mut self,
        key: &str,
        prev_value: Option<&str>,
        prev_index: Option<u64>,
        value: &str,
        ttl: Option<u64>,
        refresh: bool,
        now: u64,
    ) -> Result<Event, EtcdError> {
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let n = self.lookup(key)?;
        if n.is_dir() {
            return Err(self.err(ErrorCode::NotFile, key));
        }
        compare(n, prev_value, prev_index)
            .map_err(|cause| self.err(ErrorCode::TestFailed, cause))?;
        let value = if refresh {
            n.value().to_string()
        } else {
            value.to_string()
        };
        let prev_node = Some(view(n, key, now, Listing::None));
        self.rewrite(
            key,
            value,
            ttl,
            Action::CompareAndSwap,
            prev_node,
            refresh,
            now,
        )
    }

    /// The in-place write shared by update and compareAndSwap: keeps
    /// `createdIndex` and children, replaces value, TTL and `modifiedIndex`.
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &mut self,
        key: &str,
        value: String,
        ttl: Option<u64>,
        action: Action,
        prev_node: Option<NodeView>,
        refresh: bool,
        now: u64,
    ) -> Result<Event, EtcdError> {
        let index = self.index + 1;
        let missing = self.err(ErrorCode::KeyNotFound, key);
        let n = self.node_mut(key).ok_or(missing)?;
        // etcd writes a directory's new modifiedIndex only into the event:
        // its node.Write refuses directories, so the stored index stays.
        let mut grown = 0i64;
        let dir = match &mut n.kind {
            Kind::File(v) => {
                grown = value.len() as i64 - v.len() as i64;
                *v = value;
                n.modified_index = index;
                false
            }
            Kind::Dir(_) => true,
        };
        n.expiration = expiration_of(ttl, now);
        let mut nv = view(n, key, now, Listing::None);
        if dir {
            nv.modified_index = index;
        }
        self.bytes = self.bytes.saturating_add_signed(grown);
        self.index = index;
        Ok(self.record(
            Event {
                action,
                node: nv,
                prev_node,
                etcd_index: index,
            },
            refresh,
        ))
    }

    /// DELETE: `delete`, or `compareAndDelete` when a prevValue/prevIndex is
    /// given. A directory needs `dir` (empty) or `recursive` (any).
    pub fn delete(
        &mut self,
        key: &str,
        dir: bool,
        recursive: bool,
        prev_value: Option<&str>,
        prev_index: Option<u64>,
        now: u64,
    ) -> Result<Event, EtcdError> {
        let key = normalize_key(key);
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let prev_value = prev_value.filter(|v| !v.is_empty());
        let prev_index = prev_index.filter(|i| *i != 0);
        let n = self.lookup(&key)?;
        let action = if prev_value.is_some() || prev_index.is_some() {
            if n.is_dir() {
                return Err(self.err(ErrorCode::NotFile, key));
            }
            compare(n, prev_value, prev_index)
                .map_err(|cause| self.err(ErrorCode::TestFailed, cause))?;
            Action::CompareAndDelete
        } else {
            if let Kind::Dir(children) = &n.kind {
                if !dir && !recursive {
                    return Err(self.err(ErrorCode::NotFile, key));
                }
                if !children.is_empty() && !recursive {
                    return Err(self.err(ErrorCode::DirNotEmpty, key));
                }
            }
            Action::Delete
        };
        let index = self.index + 1;
        let prev_node = Some(view(n, &key, now, Listing::None));
        let node = removed_view(n, &key, index);
        self.remove(&key);
        self.index = index;
        Ok(self.record(
            Event {
                action,
                node,
                prev_node,
                etcd_index: index,
            },
            false,
        ))
    }

    /// Removes every node whose expiration is at or before `now`, in
    /// (expiration, key) order, one `expire` event and index each. A node
    /// under an expired directory goes with it, without an event of its own.
    pub fn expire(&mut self, now: u64) -> Vec<Event> {
        let mut due = Vec::new();
        collect_due(&self.root, "/", now, &mut due);
        due.sort_unstable();
        let mut events = Vec::new();
        for (_, key) in due {
            let Ok(n) = self.lookup(&key) else { continue };
            let index = self.index + 1;
            let prev_node = Some(view(n, &key, now, Listing::None));
            let node = removed_view(n, &key, index);
            self.remove(&key);
            self.index = index;
            events.push(self.record(
                Event {
                    action: Action::Expire,
                    node,
                    prev_node,
                    etcd_index: index,
                },
                false,
            ));
        }
        events
    }

    /// The earliest expiration in the tree: when the next [`Store::expire`]
    /// has something to do.
    pub fn next_expiration(&self) -> Option<u64> {
        let mut due = Vec::new();
        collect_due(&self.root, "/", u64::MAX, &mut due);
        due.into_iter().map(|(e, _)| e).min()
    }

    /// `?wait=true`: the first recorded event at or after `wait_index` on `key`
    /// (or under it with `recursive`), `Ok(None)` to wait, `401` when the
    /// window no longer reaches back to `wait_index`. `wait_index == 0` means
    /// "the next change", which is always a wait.
    pub fn watch(
        &self,
        key: &str,
        recursive: bool,
        wait_index: u64,
    ) -> Result<Option<Event>, EtcdError> {
        if wait_index == 0 {
            return Ok(None);
        }
        self.history
            .scan(&normalize_key(key), recursive, wait_index, self.index)
    }

    /// Checks the tree's invariants (for tests): no child is newer than the
    /// store's index, createdIndex <= modifiedIndex.
    pub fn check_consistency(&self) -> Result<(), String> {
        check(&self.root, "/", self.index)?;
        let counted = subtree_bytes("", &self.root) - NODE_BYTES;
        if counted != self.bytes {
            return Err(format!(
                "size: kept {} bytes, counted {counted}",
                self.bytes
            ));
        }
        Ok(())
    }
}

fn collect_due(n: &Node, key: &str, now: u64, out: &mut Vec<(u64, String)>) {
    if let Some(e) = n.expiration {
        if e <= now {
            out.push((e, key.to_string()));
        }
    }
    if let Kind::Dir(children) = &n.kind {
        for (name, c) in children {
            collect_due(c, &join(key, name), now, out);
        }
    }
}

fn check(n: &Node, key: &str, index: u64) -> Result<(), String> {
    if n.created_index > n.modified_index || n.modified_index > index {
        return Err(format!(
            "{key}: created {} modified {} store {index}",
            n.created_index, n.modified_index
        ));
    }
    if let Kind::Dir(children) = &n.kind {
        for (name, c) in children {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!("{key}: bad child name {name:?}"));
            }
            check(c, &join(key, name), index)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(v: &str) -> SetOptions {
        SetOptions {
            value: v.into(),
            ..Default::default()
        }
    }

    fn code(r: Result<Event, EtcdError>) -> (u16, String, u64) {
        let e = r.unwrap_err();
        (e.code.code(), e.cause, e.index)
    }

    #[test]
    fn normalizes_keys_like_path_clean() {
        assert_eq!(normalize_key(""), "/");
        assert_eq!(normalize_key("a"), "/a");
        assert_eq!(normalize_key("//a//b/"), "/a/b");
        assert_eq!(normalize_key("/a/./b/../c"), "/a/c");
        assert_eq!(normalize_key("/../.."), "/");
    }

    #[test]
    fn set_creates_then_replaces() {
        let mut s = Store::new();
        let e = s.set("a", &val("1"), 0).unwrap();
        assert_eq!(
            (e.action, e.node.key.as_str(), e.node.value.as_deref()),
            (Action::Set, "/a", Some("1"))
        );
        assert_eq!(
            (e.node.created_index, e.node.modified_index, e.prev_node),
            (1, 1, None)
        );
        let e = s.set("/a", &val("2"), 0).unwrap();
        assert_eq!((e.node.created_index, e.node.modified_index), (2, 2));
        assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("1"));
        assert_eq!(s.index(), 2);
    }

    #[test]
    fn set_makes_parent_dirs_at_the_new_index() {
        let mut s = Store::new();
        s.set("/x", &val("0"), 0).unwrap();
        s.set("/a/b/c", &val("1"), 0).unwrap();
        let e = s.get("/a", false, false, 0).unwrap();
        assert!(e.node.dir);
        assert_eq!((e.node.created_index, e.node.modified_index), (2, 2));
        assert_eq!(e.node.nodes.len(), 1);
        assert!(
            e.node.nodes[0].dir && e.node.nodes[0].nodes.is_empty(),
            "one level only"
        );
        let e = s.get("/a", true, false, 0).unwrap();
        assert_eq!(e.node.nodes[0].nodes[0].value.as_deref(), Some("1"));
    }

    #[test]
    fn set_errors() {
        let mut s = Store::new();
        assert_eq!(code(s.set("/", &val("1"), 0)), (107, "/".into(), 0));
        s.set("/f", &val("1"), 0).unwrap();
        assert_eq!(code(s.set("/f/g", &val("1"), 0)), (104, "/f".into(), 1));
        s.set(
            "/d",
            &SetOptions {
                dir: true,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(code(s.set("/d", &val("1"), 0)), (102, "/d".into(), 2));
        assert_eq!(
            code(s.set(
                "/d",
                &SetOptions {
                    dir: true,
                    ..Default::default()
                },
                0
            )),
            (102, "/d".into(), 2)
        );
        assert_eq!(s.index(), 2, "failures take no index");
    }

    #[test]
    fn create_and_update_follow_prev_exist() {
        let mut s = Store::new();
        let create = SetOptions {
            value: "1".into(),
            prev_exist: Some(false),
            ..Default::default()
        };
        assert_eq!(s.set("/a", &create, 0).unwrap().action, Action::Create);
        assert_eq!(code(s.set("/a", &create, 0)), (105, "/a".into(), 1));
        let update = SetOptions {
            value: "2".into(),
            prev_exist: Some(true),
            ..Default::default()
        };
        let e = s.set("/a", &update, 0).unwrap();
        assert_eq!(
            (e.action, e.node.created_index, e.node.modified_index),
            (Action::Update, 1, 2)
        );
        assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("1"));
        assert_eq!(code(s.set("/b", &update, 0)), (100, "/b".into(), 2));
        assert_eq!(code(s.set("/", &update, 0)), (107, "/".into(), 2));
        s.set(
            "/d",
            &SetOptions {
                dir: true,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(code(s.set("/d", &update, 0)), (102, "/d".into(), 3));
        let dir_ttl = SetOptions {
            dir: true,
            prev_exist: Some(true),
            ttl: Some(9),
            ..Default::default()
        };
        let e = s.set("/d", &dir_ttl, 0).unwrap();
        assert!(e.node.dir && e.node.ttl == 9);
    }

    #[test]
    fn compare_and_swap() {
        let mut s = Store::new();
        s.set("/a", &val("1"), 0).unwrap();
        let cas = |pv: Option<&str>, pi: Option<u64>| SetOptions {
            value: "2".into(),
            prev_value: pv.map(String::from),
            prev_index: pi,
            ..Default::default()
        };
        assert_eq!(
            code(s.set("/a", &cas(Some("x"), None), 0)),
            (101, "[x != 1]".into(), 1)
        );
        assert_eq!(
            code(s.set("/a", &cas(None, Some(7)), 0)),
            (101, "[7 != 1]".into(), 1)
        );
        assert_eq!(
            code(s.set("/a", &cas(Some("x"), Some(7)), 0)),
            (101, "[x != 1] [7 != 1]".into(), 1)
        );
        assert_eq!(
            code(s.set("/b", &cas(Some("x"), None), 0)),
            (100, "/b".into(), 1)
        );
        let e = s.set("/a", &cas(Some("1"), Some(1)), 0).unwrap();
        assert_eq!(
            (e.action, e.node.created_index, e.node.modified_index),
            (Action::CompareAndSwap, 1, 2)
        );
        s.set(
            "/d",
            &SetOptions {
                dir: true,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(
            code(s.set("/d", &cas(Some("x"), None), 0)),
            (102, "/d".into(), 3)
        );
        assert_eq!(
            code(s.set("/", &cas(Some("x"), None), 0)),
            (107, "/".into(), 3)
        );
        // prevExist=true with a comparison is still compareAndSwap.
        let mut both = cas(Some("2"), None);
        both.prev_exist = Some(true);
        assert_eq!(
            s.set("/a", &both, 0).unwrap().action,
            Action::CompareAndSwap
        );
    }

    #[test]
    fn refresh_keeps_value_and_skips_watchers() {
        let mut s = Store::new();
        s.set(
            "/a",
            &SetOptions {
                value: "1".into(),
                ttl: Some(5),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        let refresh = SetOptions {
            ttl: Some(10),
            refresh: true,
            prev_exist: Some(true),
            ..Default::default()
        };
        let e = s.set("/a", &refresh, 1_000).unwrap();
        assert_eq!(
            (e.node.value.as_deref(), e.node.ttl, e.node.expiration),
            (Some("1"), 10, Some(11_000))
        );
        assert_eq!(
            s.watch("/a", false, 2).unwrap(),
            None,
            "refresh is not a watch event"
        );
        let bad = SetOptions {
            value: "x".into(),
            ..refresh.clone()
        };
        assert_eq!(code(s.set("/a", &bad, 0)).0, 211);
        let bad = SetOptions {
            ttl: None,
            ..refresh.clone()
        };
        assert_eq!(code(s.set("/a", &bad, 0)).0, 212);
        assert_eq!(
            code(s.set(
                "/nope",
                &SetOptions {
                    prev_exist: None,
                    ..refresh
                },
                0
            ))
            .0,
            100
        );
    }

    #[test]
    fn post_makes_in_order_keys() {
        let mut s = Store::new();
        s.set("/x", &val("0"), 0).unwrap();
        let e = s.create_in_order("/q", "job", false, None, 0).unwrap();
        assert_eq!(
            (e.action, e.node.key.as_str()),
            (Action::Create, "/q/00000000000000000002")
        );
        let e = s.create_in_order("/q", "job2", false, None, 0).unwrap();
        assert_eq!(e.node.key, "/q/00000000000000000003");
        assert_eq!(
            code(s.create_in_order("/x", "v", false, None, 0)),
            (104, "/x".into(), 3)
        );
    }

    #[test]
    fn get_errors_and_hidden_keys() {
        let mut s = Store::new();
        assert_eq!(code(s.get("/a/b", false, false, 0)), (100, "/a".into(), 0));
        s.set("/f", &val("1"), 0).unwrap();
        assert_eq!(code(s.get("/f/g", false, false, 0)), (104, "/f".into(), 1));
        s.set("/_hidden", &val("h"), 0).unwrap();
        assert_eq!(s.get("/", true, false, 0).unwrap().node.nodes.len(), 1);
        assert_eq!(
            s.get("/_hidden", false, false, 0)
                .unwrap()
                .node
                .value
                .as_deref(),
            Some("h")
        );
    }

    #[test]
    fn delete_files_and_dirs() {
        let mut s = Store::new();
        s.set("/a", &val("1"), 0).unwrap();
        let e = s.delete("/a", false, false, None, None, 0).unwrap();
        assert_eq!(
            (
                e.action,
                e.node.modified_index,
                e.node.created_index,
                e.node.value.clone()
            ),
            (Action::Delete, 2, 1, None)
        );
        assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("1"));
        assert_eq!(
            code(s.delete("/a", false, false, None, None, 0)),
            (100, "/a".into(), 2)
        );
        assert_eq!(
            code(s.delete("/", true, true, None, None, 0)),
            (107, "/".into(), 2)
        );
        s.set("/d/x", &val("1"), 0).unwrap();
        assert_eq!(
            code(s.delete("/d", false, false, None, None, 0)),
            (102, "/d".into(), 3)
        );
        assert_eq!(
            code(s.delete("/d", true, false, None, None, 0)),
            (108, "/d".into(), 3)
        );
        let e = s.delete("/d", false, true, None, None, 0).unwrap();
        assert!(e.node.dir && e.prev_node.unwrap().dir);
        assert_eq!(code(s.get("/d/x", false, false, 0)).0, 100);
        s.set(
            "/e",
            &SetOptions {
                dir: true,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(
            s.delete("/e", true, false, None, None, 0).unwrap().action,
            Action::Delete
        );
    }

    #[test]
    fn compare_and_delete() {
        let mut s = Store::new();
        s.set("/a", &val("1"), 0).unwrap();
        assert_eq!(
            code(s.delete("/a", false, false, Some("2"), None, 0)),
            (101, "[2 != 1]".into(), 1)
        );
        assert_eq!(
            code(s.delete("/a", false, false, None, Some(5), 0)),
            (101, "[5 != 1]".into(), 1)
        );
        s.set(
            "/d",
            &SetOptions {
                dir: true,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(
            code(s.delete("/d", true, true, Some("x"), None, 0)),
            (102, "/d".into(), 2)
        );
        let e = s.delete("/a", false, false, Some("1"), Some(1), 0).unwrap();
        assert_eq!(e.action, Action::CompareAndDelete);
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let mut s = Store::new();
        let e = s
            .set(
                "/t",
                &SetOptions {
                    value: "1".into(),
                    ttl: Some(2),
                    ..Default::default()
                },
                10_000,
            )
            .unwrap();
        assert_eq!((e.node.expiration, e.node.ttl), (Some(12_000), 2));
        assert_eq!(
            s.get("/t", false, false, 10_001).unwrap().node.ttl,
            2,
            "rounded up"
        );
        assert_eq!(s.get("/t", false, false, 11_000).unwrap().node.ttl, 1);
        assert_eq!(s.next_expiration(), Some(12_000));
        assert!(s.expire(11_999).is_empty());
        let ev = s.expire(12_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (
                ev[0].action,
                ev[0].node.modified_index,
                ev[0].node.created_index
            ),
            (Action::Expire, 2, 1)
        );
        assert_eq!(
            ev[0].prev_node.as_ref().unwrap().value.as_deref(),
            Some("1")
        );
        assert_eq!(code(s.get("/t", false, false, 12_000)).0, 100);
    }

    #[test]
    fn expiring_dir_takes_children_in_one_event() {
        let mut s = Store::new();
        s.set(
            "/d",
            &SetOptions {
                dir: true,
                ttl: Some(1),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        s.set(
            "/d/x",
            &SetOptions {
                value: "v".into(),
                ttl: Some(1),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        s.set(
            "/y",
            &SetOptions {
                value: "v".into(),
                ttl: Some(1),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        let ev = s.expire(5_000);
        let keys: Vec<_> = ev
            .iter()
            .map(|e| (e.node.key.as_str(), e.node.modified_index, e.node.dir))
            .collect();
        assert_eq!(keys, [("/d", 4, true), ("/y", 5, false)]);
    }

    #[test]
    fn update_without_ttl_makes_permanent() {
        let mut s = Store::new();
        s.set(
            "/t",
            &SetOptions {
                value: "1".into(),
                ttl: Some(2),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        let e = s
            .set(
                "/t",
                &SetOptions {
                    value: "2".into(),
                    prev_exist: Some(true),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
        assert_eq!(e.node.expiration, None);
        assert!(s.expire(u64::MAX).is_empty());
    }

    #[test]
    fn form_parsers() {
        assert_eq!(parse_ttl(""), Ok(None));
        assert_eq!(parse_ttl("5"), Ok(Some(5)));
        let e = parse_ttl("abc").unwrap_err();
        assert_eq!(
            (e.code.code(), e.cause.as_str(), e.index),
            (202, "invalid value for \"ttl\"", 0)
        );
        assert_eq!(parse_ttl("-1").unwrap_err().code, ErrorCode::TtlNaN);
        assert_eq!(parse_index("x", "prevIndex").unwrap_err().code.code(), 203);
    }

    #[test]
    fn size_follows_every_change_and_is_counted_again_on_reading() {
        let mut s = Store::new();
        let now = 1_000;
        assert_eq!(s.bytes(), 0);
        s.set("/a/b/c", &val("12345"), now).unwrap();
        // a, b (dirs) and c with its value.
        assert_eq!(s.bytes(), 3 * NODE_BYTES + 3 + 5);
        s.set("/a/b/c", &val("1"), now).unwrap();
        assert_eq!(s.bytes(), 3 * NODE_BYTES + 3 + 1);
        let cas = SetOptions {
            value: "123456789".into(),
            prev_value: Some("1".into()),
            ..SetOptions::default()
        };
        s.set("/a/b/c", &cas, now).unwrap();
        assert_eq!(s.bytes(), 3 * NODE_BYTES + 3 + 9);
        s.create_in_order("/q", "v", false, Some(1), now).unwrap();
        assert_eq!(
            s.bytes(),
            3 * NODE_BYTES + 3 + 9 + 2 * NODE_BYTES + 1 + 20 + 1
        );
        s.check_consistency().unwrap();
        let copy: Store = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(copy.bytes(), s.bytes());
        s.expire(now + 1_000);
        assert_eq!(s.bytes(), 3 * NODE_BYTES + 3 + 9 + NODE_BYTES + 1);
        s.delete("/a", true, true, None, None, now).unwrap();
        assert_eq!(s.bytes(), NODE_BYTES + 1);
        s.check_consistency().unwrap();
        // A failed change changes nothing.
        assert!(s.set("/q/x/y", &val("v"), now).is_ok());
        let before = s.bytes();
        assert!(s.set("/q/x/y/z", &val("v"), now).is_err());
        assert_eq!(s.bytes(), before);
        s.check_consistency().unwrap();
    }
}
