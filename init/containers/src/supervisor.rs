//! The supervisor: one task per container on keel's async runtime.
//!
//! Each task is a thin shell around the container's [`Lifecycle`] (the
//! pure state machine of `lifecycle`): it waits for the next event (a
//! command, the start gate, a dependency's new state, the run's health,
//! its exit delivered by keel's reaper through [`Exits`], a timer), feeds
//! it to the lifecycle, publishes the lifecycle's view in the status, and
//! carries out the actions it returns: start a run (on the blocking pool:
//! `runtime::start` mounts, clones and waits for the exec) and read its
//! output into the log ring and file; send the stop signal through the
//! pidfd, arm the grace or backoff timer, `cgroup.kill`; release a run;
//! remove the writable layer. An action's outcome (started, released) is
//! the next event.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use keel_api::{ContainerLogs, ContainerStats, ContainerStatus};
use keel_config::model::{Container, NetMode, NodePort};
use keel_sys::signal::ChildExit;
use tokio::sync::{mpsc, oneshot, watch};

use crate::health::Health;
use crate::lifecycle::{
    describe, Action, Command, ContainerState, Dependency, Event, Lifecycle, StopReason, TimerKind,
    View,
};
use crate::logs::{LogFile, Ring, RING};
use crate::runtime::{self, Dirs, ImageRoot};

/// Exits of container processes, from keel's reaper to the supervisor.
/// An exit may arrive before its waiter registers (a process that dies at
/// once): it is kept until claimed, up to `UNCLAIMED` of them.
#[derive(Default)]
pub struct Exits {
    inner: Mutex<ExitBook>,
}

/// Waiters by pid, and exits nobody waits for yet.
type ExitBook = (
    HashMap<i32, oneshot::Sender<ChildExit>>,
    Vec<(i32, ChildExit)>,
);

const UNCLAIMED: usize = 256;

impl Exits {
    /// Called by the reaper for every reaped child.
    pub fn exited(&self, pid: i32, exit: ChildExit) {
        let Ok(mut g) = self.inner.lock() else { return };
        match g.0.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None => {
                if g.1.len() >= UNCLAIMED {
                    g.1.remove(0);
                }
                g.1.push((pid, exit));
            }
        }
    }

    fn wait(&self, pid: i32) -> oneshot::Receiver<ChildExit> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut g) = self.inner.lock() {
            if let Some(i) = g.1.iter().position(|(p, _)| *p == pid) {
                let (_, e) = g.1.remove(i);
                let _ = tx.send(e);
            } else {
                g.0.insert(pid, tx);
            }
        }
        rx
    }
}

/// Finds an image's root for a container.
pub type Images = dyn Fn(&Container) -> Result<ImageRoot, HookError> + Send + Sync;

pub use crate::runtime::{Confinement, Confiner, HookError};

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node's image hook: the image names itself in its error.
    #[error("{0}")]
    Image(#[source] HookError),
    #[error(transparent)]
    Run(#[from] runtime::RunError),
    #[error("the start task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the status shows of a container: its lifecycle's view, as its
/// task publishes it, and its run's facts.
#[derive(Debug, Clone, Default)]
struct State {
    state: ContainerState,
    pid: Option<i32>,
    started: Option<Instant>,
    restarts: u32,
    last_exit: Option<String>,
    error: Option<String>,
    restart_at: Option<Instant>,
    cgroup: Option<crate::cgroup::Cgroup>,
    /// The last run's final use, read just before its cgroup went away.
    last_stats: crate::cgroup::Stats,
    /// OOM kills over every run so far (a restart must not hide them).
    oom_kills: u64,
    oom_group_kills: u64,
    start_ms: Option<f64>,
    run_ms: Option<f64>,
    /// This run's health, when the container has a check keel runs.
    health: Option<crate::health::Health>,
    address: Option<std::net::Ipv4Addr>,
}

struct Entry {
    spec: Container,
    /// The task running this container; a replacement waits for it.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    state: Mutex<State>,
    logs: Mutex<Ring>,
    cmd: mpsc::UnboundedSender<Command>,
    /// The entries of this container's dependencies, sent again when one
    /// of them was replaced (its task then watches the new one).
    rewire: mpsc::UnboundedSender<Vec<Arc<Entry>>>,
    /// Wakes tasks waiting on this container's state (dependents).
    changed: watch::Sender<ContainerState>,
}

impl Entry {
    fn set(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
            let _ = self.changed.send(s.state);
        }
    }
}

/// Where logs and runs live, and the hooks the node provides.
pub struct Settings {
    pub dirs: Dirs,
    pub logs: std::path::PathBuf,
    pub images: Arc<Images>,
    pub confiner: Option<Arc<Confiner>>,
    /// keel's bridge, for `network: bridge` containers.
    pub bridge: Option<Arc<runtime::BridgeNet>>,
    /// Starts wait until this is true (the node collects the image store's
    /// garbage first); containers are listed meanwhile, `waiting`.
    pub start_gate: Option<tokio::sync::watch::Receiver<bool>>,
}

pub struct Supervisor {
    settings: Arc<Settings>,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    runtime: tokio::runtime::Handle,
    pub exits: Arc<Exits>,
}

/// What `Supervisor::reconcile` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Reconciled {
    /// `NAME: added` lines, sorted by name (unchanged ones left out).
    pub fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            (&self.added, "added"),
            (&self.replaced, "replaced"),
            (&self.removed, "removed"),
        ]
        .iter()
        .flat_map(|(names, what)| names.iter().map(move |n| format!("{n}: {what}")))
        .collect();
        v.sort_unstable();
        v
    }
}

/// The containers of `new` that a reconcile replaces: those whose spec
/// changed, and, until nothing more is added, those that `requires` one
/// being replaced (they stop with it anyway, and start again with the new
/// one), or come `after` one that gained or lost its health check. One
/// that only comes `after` a replaced one keeps running otherwise: its
/// task is rewired to the new entry (see `reconcile`).
fn to_replace(old: &BTreeMap<String, Arc<Entry>>, new: &[Container]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = new
        .iter()
        .filter(|c| old.get(&c.name).is_some_and(|e| e.spec != **c))
        .map(|c| c.name.clone())
        .collect();
    // A dependent's lifecycle knows whether each dependency has a health
    // check: one that gains or loses it replaces its `after` dependents too.
    let checks_changed = |name: &String| {
        let was = old.get(name).map(|e| e.spec.healthcheck.is_some());
        let now = new
            .iter()
            .find(|c| &c.name == name)
            .map(|c| c.healthcheck.is_some());
        was != now
    };
    loop {
        let more: Vec<String> = new
            .iter()
            .filter(|c| old.contains_key(&c.name) && !out.contains(&c.name))
            .filter(|c| {
                c.requires.iter().any(|d| out.contains(d))
                    || c.after.iter().any(|d| out.contains(d) && checks_changed(d))
            })
            .map(|c| c.name.clone())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

impl Supervisor {
    /// Create the tasks for `containers` on the current tokio runtime; each
    /// starts as soon as its dependencies allow.
    pub fn start(settings: Settings, containers: Vec<Container>, exits: Arc<Exits>) -> Supervisor {
        let sup = Supervisor {
            settings: Arc::new(settings),
            entries: Mutex::new(BTreeMap::new()),
            runtime: tokio::runtime::Handle::current(),
            exits,
        };
        sup.reconcile(containers);
        sup
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries.lock().ok()?.get(name).cloned()
    }

    /// What `reconcile(containers)` would do, doing nothing.
    pub fn diff(&self, containers: &[Container]) -> Reconciled {
        let mut out = Reconciled::default();
        let Ok(map) = self.entries.lock() else {
            return out;
        };
        let replaced = to_replace(&map, containers);
        for c in containers {
            match map.get(&c.name) {
                Some(_) if replaced.contains(&c.name) => out.replaced.push(c.name.clone()),
                Some(_) => out.unchanged.push(c.name.clone()),
                None => out.added.push(c.name.clone()),
            }
        }
        for name in map.keys() {
            if !containers.iter().any(|c| &c.name == name) {
                out.removed.push(name.clone());
            }
        }
        out
    }

    /// Make the supervised set `containers`: new ones start, removed ones
    /// stop (their writable layer is deleted), changed ones are replaced
    /// (the old run stops first), unchanged ones are left alone, unless
    /// they depend on a replaced one (see [`to_replace`]).
    pub fn reconcile(&self, containers: Vec<Container>) -> Reconciled {
        let mut out = Reconciled::default();
        let Ok(mut map) = self.entries.lock() else {
            return out;
        };
        let replace = to_replace(&map, &containers);
        let mut before: BTreeMap<String, Arc<Entry>> = std::mem::take(&mut *map);
        let mut fresh = Vec::new();
        for c in containers {
            match before.remove(&c.name) {
                Some(old) if !replace.contains(&c.name) => {
                    out.unchanged.push(c.name.clone());
                    map.insert(c.name.clone(), old);
                }
                Some(old) => {
                    let _ = old.cmd.send(Command::Remove);
                    out.replaced.push(c.name.clone());
                    let pred = old.task.lock().ok().and_then(|mut t| t.take());
                    fresh.push((c, pred));
                }
                None => {
                    out.added.push(c.name.clone());
                    fresh.push((c, None));
                }
            }
        }
        for (name, old) in before {
            let _ = old.cmd.send(Command::Remove);
            out.removed.push(name);
        }
        let mut new_entries = Vec::new();
        for (c, pred) in fresh {
            let (tx, rx) = mpsc::unbounded_channel();
            let (rewire, rewires) = mpsc::unbounded_channel();
            let e = Arc::new(Entry {
                spec: c.clone(),
                task: Mutex::new(None),
                state: Mutex::new(State::default()),
                logs: Mutex::new(Ring::new(RING)),
                cmd: tx,
                rewire,
                changed: watch::channel(ContainerState::Waiting).0,
            });
            map.insert(c.name.clone(), e.clone());
            new_entries.push((e, rx, rewires, pred));
        }
        let deps_of = |e: &Entry| -> Vec<Arc<Entry>> {
            e.spec
                .after
                .iter()
                .chain(&e.spec.requires)
                .filter_map(|d| map.get(d).cloned())
                .collect()
        };
        // Kept containers that come after a new entry watch it from now on.
        let new_names: BTreeSet<&str> = new_entries
            .iter()
            .map(|(e, ..)| e.spec.name.as_str())
            .collect();
        for e in map.values() {
            let kept = !new_names.contains(e.spec.name.as_str());
            if kept && e.spec.after.iter().any(|d| new_names.contains(d.as_str())) {
                let _ = e.rewire.send(deps_of(e));
            }
        }
        for (e, rx, rewires, pred) in new_entries {
            let deps = deps_of(&e);
            let (settings, exits, entry) = (self.settings.clone(), self.exits.clone(), e.clone());
            let task = self.runtime.spawn(async move {
                if let Some(p) = pred {
                    let _ = p.await;
                }
                run_loop(entry, rx, rewires, deps, settings, exits).await;
            });
            if let Ok(mut t) = e.task.lock() {
                *t = Some(task);
            }
        }
        out
    }

    pub fn status(&self) -> Vec<ContainerStatus> {
        self.entries().iter().map(|e| status_of(e)).collect()
    }

    pub fn logs(&self, name: &str, offset: u64) -> Option<ContainerLogs> {
        let e = self.entry(name)?;
        let (bytes, next) = e.logs.lock().ok()?.since(offset);
        Some(ContainerLogs {
            name: name.to_string(),
            next,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    pub fn action(&self, name: &str, action: &str) -> Result<(), Option<String>> {
        let e = self.entry(name).ok_or(None)?;
        let cmd = match action {
            "start" => Command::Start,
            "stop" => Command::Stop,
            "restart" => Command::Restart,
            a => return Err(Some(format!("unknown action {a:?}"))),
        };
        e.cmd
            .send(cmd)
            .map_err(|_| Some("the container's supervisor task has ended".to_string()))
    }

    /// Stop every container (at shutdown): in reverse start order, each
    /// with its grace period; returns when all runs are gone or `limit`
    /// has passed.
    pub async fn stop_all(&self, limit: Duration) {
        let all = self.entries();
        for e in &all {
            let _ = e.cmd.send(Command::Stop);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let busy = all.iter().any(|e| {
                e.state
                    .lock()
                    .map(|s| s.pid.is_some() || s.state == ContainerState::Starting)
                    .unwrap_or(false)
            });
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn status_of(e: &Entry) -> ContainerStatus {
    let s = e.state.lock().map(|s| s.clone()).unwrap_or_default();
    let (st, live) = match (&s.cgroup, s.pid) {
        (Some(cg), Some(_)) => (cg.stats(), true),
        _ => (s.last_stats.clone(), false),
    };
    // Memory and pids are the live run's; OOM kills add up over runs.
    let stats = ContainerStats {
        memory_bytes: if live { st.memory_bytes } else { 0 },
        pids: if live { st.pids } else { 0 },
        oom_kills: s.oom_kills + if live { st.oom_kills } else { 0 },
        oom_group_kills: s.oom_group_kills + if live { st.oom_group_kills } else { 0 },
        ..st
    };
    ContainerStatus {
        name: e.spec.name.clone(),
        image: e.spec.image.to_string(),
        state: s.state.to_string(),
        pid: s.pid,
        uptime_ms: s
            .started
            .filter(|_| s.pid.is_some())
            .map(|t| t.elapsed().as_millis() as u64),
        restarts: s.restarts,
        last_exit: s.last_exit,
        error: s.error,
        restart_in_ms: s
            .restart_at
            .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
        health: s.health.map(|h| h.as_str().to_string()),
        start_ms: s.start_ms,
        run_ms: s.run_ms,
        address: s.address.filter(|_| s.pid.is_some()).map(|a| a.to_string()),
        node_port: e.spec.node_port.map(|p| match p {
            NodePort::Kv => "kv: may reach the node's KV client port (a door into the node)".into(),
        }),
        network: match e.spec.network {
            NetMode::Host => "host",
            NetMode::None => "none",
            NetMode::Bridge => "bridge",
        }
        .into(),
        stats,
    }
}

/// The end of a removed container: its writable layer goes (a container
/// that comes back under the same name starts from its image again).
async fn remove(settings: &Settings, e: &Entry) {
    let dir = settings.dirs.state.join(&e.spec.name);
    let name = e.spec.name.clone();
    let _ = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => keel_boot::warn!("container {name}: remove {}: {err}", dir.display()),
    })
    .await;
    keel_boot::info!("container {}: removed", e.spec.name);
}

/// A `command:` probe: run it inside the container, exit 0 is healthy.
async fn command_probe(
    argv: Vec<String>,
    timeout: Duration,
    e: &Entry,
    joinable: &Arc<runtime::Joinable>,
    settings: &Arc<Settings>,
    exits: &Exits,
) -> Result<(), String> {
    let (j, spec, st) = (joinable.clone(), e.spec.clone(), settings.clone());
    let spawned = tokio::task::spawn_blocking(move || {
        runtime::exec_in(&j, &spec, &argv, st.confiner.as_deref()).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|j| Err(j.to_string()))?;
    let rx = exits.wait(spawned.pid);
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(ChildExit::Exited(0))) => Ok(()),
        Ok(Ok(x)) => Err(format!("command {}", describe(x).0)),
        Ok(Err(_)) => Err("command: its exit was lost".into()),
        Err(_) => {
            let _ = keel_sys::spawn::pidfd_signal(&spawned.pidfd, libc::SIGKILL);
            Err(format!("command: no answer within {timeout:?}"))
        }
    }
}

/// Probe a run every interval and send each change of its health (the
/// lifecycle publishes it, and stops the run when it is `unhealthy`); ends
/// once `unhealthy`, when the run has failed `retries` probes in a row.
async fn health_loop(
    e: Arc<Entry>,
    pid: i32,
    started: Instant,
    changes: mpsc::UnboundedSender<Health>,
    joinable: Arc<runtime::Joinable>,
    settings: Arc<Settings>,
    exits: Arc<Exits>,
) {
    let Some(hc) = e.spec.healthcheck.clone() else {
        return;
    };
    let mut t = crate::health::Tracker::default();
    loop {
        tokio::time::sleep(Duration::from_millis(hc.interval_ms.max(100))).await;
        let (probe, timeout) = (
            hc.probe.clone(),
            Duration::from_millis(hc.timeout_ms.max(100)),
        );
        let r = match probe {
            keel_config::model::Probe::Command(argv) => {
                command_probe(argv, timeout, &e, &joinable, &settings, &exits).await
            }
            probe => {
                tokio::task::spawn_blocking(move || crate::health::probe(pid, &probe, timeout))
                    .await
                    .unwrap_or_else(|j| Err(j.to_string()))
            }
        };
        let before = t.health;
        let h = t.record(&hc, r.is_ok(), started.elapsed().as_millis() as u64);
        if h != before {
            let name = &e.spec.name;
            match &r {
                Ok(()) => keel_boot::info!("container {name}: {}", h.as_str()),
                Err(m) => keel_boot::warn!("container {name}: {} ({m})", h.as_str()),
            }
            let _ = changes.send(h);
        }
        if h == Health::Unhealthy {
            return;
        }
    }
}

async fn pump(e: Arc<Entry>, fd: std::os::fd::OwnedFd, file: Arc<Mutex<LogFile>>) {
    let Ok(rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    // The buffer exists only while there is output to read: an idle
    // container's two pumps hold no memory but their task.
    loop {
        if rx.readable().await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 8 * 1024];
        match rx.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Ok(mut r) = e.logs.lock() {
                    r.push(&buf[..n]);
                }
                if let Ok(mut f) = file.lock() {
                    f.write(&buf[..n]);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// One container's task: feed its lifecycle events and carry out the
/// actions, until it is removed.
async fn run_loop(
    e: Arc<Entry>,
    cmds: mpsc::UnboundedReceiver<Command>,
    rewires: mpsc::UnboundedReceiver<Vec<Arc<Entry>>>,
    deps: Vec<Arc<Entry>>,
    settings: Arc<Settings>,
    exits: Arc<Exits>,
) {
    let known = deps
        .iter()
        .map(|d| Dependency {
            name: d.spec.name.clone(),
            required: e.spec.requires.contains(&d.spec.name),
            checked: d.spec.healthcheck.is_some(),
        })
        .collect();
    let mut lc = Lifecycle::new(e.spec.clone(), known);
    let mut shell = Shell::new(e, cmds, rewires, deps, settings, exits);
    // What the lifecycle starts from: the gate, then each dependency.
    let mut next: VecDeque<Event> = VecDeque::from([Event::Gate(shell.gate_open())]);
    next.extend((0..shell.deps.len()).map(|i| shell.dependency(i)));
    loop {
        let event = match next.pop_front() {
            Some(ev) => ev,
            None => shell.next_event().await,
        };
        let step = lc.handle(shell.now(), event);
        shell.publish(lc.view());
        for a in step.actions {
            match shell.perform(a).await {
                Done::Next(ev) => next.push_back(ev),
                Done::Continue => {}
                Done::End => return,
            }
        }
    }
}

/// A run's handles, from its start until it is released.
struct Live {
    pid: i32,
    pidfd: std::os::fd::OwnedFd,
    cgroup: crate::cgroup::Cgroup,
    stop_signal: keel_config::model::Signal,
    address: Option<std::net::Ipv4Addr>,
    /// When its start began: `start_ms` and `run_ms` count from here.
    t_start: Instant,
    start_ms: f64,
    /// Its health checks' task.
    health: Option<tokio::task::JoinHandle<()>>,
    /// What its cgroup counted at its exit.
    last: Option<crate::cgroup::Stats>,
    _joinable: Arc<runtime::Joinable>,
}

/// What carrying out an action gave.
enum Done {
    /// Its outcome, the next event.
    Next(Event),
    Continue,
    /// The container is removed: the task ends.
    End,
}

/// What woke the shell.
enum Woke {
    Exit(Option<ChildExit>),
    Timer(TimerKind),
    Command(Option<Command>),
    Health(Health),
    Dependency(usize),
    Gate(bool),
    Rewire(Option<Vec<Arc<Entry>>>),
}

/// The I/O around one container's lifecycle.
struct Shell {
    e: Arc<Entry>,
    settings: Arc<Settings>,
    exits: Arc<Exits>,
    file: Arc<Mutex<LogFile>>,
    /// The lifecycle's clock counts ms from here.
    epoch: Instant,
    cmds: mpsc::UnboundedReceiver<Command>,
    rewires: mpsc::UnboundedReceiver<Vec<Arc<Entry>>>,
    deps: Vec<Arc<Entry>>,
    dep_changes: Vec<watch::Receiver<ContainerState>>,
    gate: Option<watch::Receiver<bool>>,
    timer: Option<(tokio::time::Instant, TimerKind)>,
    live: Option<Live>,
    exit: Option<oneshot::Receiver<ChildExit>>,
    health: Option<mpsc::UnboundedReceiver<Health>>,
    /// What was last published: the lifecycle's view and the run's pid.
    shown: Option<(View, Option<i32>)>,
}

impl Shell {
    fn new(
        e: Arc<Entry>,
        cmds: mpsc::UnboundedReceiver<Command>,
        rewires: mpsc::UnboundedReceiver<Vec<Arc<Entry>>>,
        deps: Vec<Arc<Entry>>,
        settings: Arc<Settings>,
        exits: Arc<Exits>,
    ) -> Shell {
        Shell {
            file: Arc::new(Mutex::new(LogFile::open(&settings.logs, &e.spec.name))),
            epoch: Instant::now(),
            dep_changes: deps.iter().map(|d| d.changed.subscribe()).collect(),
            gate: settings.start_gate.clone(),
            e,
            settings,
            exits,
            cmds,
            rewires,
            deps,
            timer: None,
            live: None,
            exit: None,
            health: None,
            shown: None,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// No gate, or an open one (a gate whose sender is gone counts as open).
    fn gate_open(&mut self) -> bool {
        match self.gate.as_mut() {
            None => true,
            Some(g) => *g.borrow_and_update() || g.has_changed().is_err(),
        }
    }

    /// Dependency `i` as it is now.
    fn dependency(&self, i: usize) -> Event {
        let d = &self.deps[i];
        let (state, health) = d
            .state
            .lock()
            .map(|s| (s.state, s.health))
            .unwrap_or((ContainerState::Removed, None));
        Event::Dependency {
            name: d.spec.name.clone(),
            state,
            health,
        }
    }

    async fn next_event(&mut self) -> Event {
        loop {
            // Biased: a run's exit first, so that a command that comes with
            // it applies to what the exit left.
            let woke = tokio::select! {
                biased;
                x = recv_once(&mut self.exit) => Woke::Exit(x),
                k = fire(self.timer) => Woke::Timer(k),
                c = self.cmds.recv() => Woke::Command(c),
                h = recv_or_pend(&mut self.health) => Woke::Health(h),
                i = changed_any(&mut self.dep_changes) => Woke::Dependency(i),
                open = gate_changed(&mut self.gate) => Woke::Gate(open),
                r = self.rewires.recv(), if !self.rewires.is_closed() => Woke::Rewire(r),
            };
            return match woke {
                Woke::Exit(x) => self.exited(x),
                Woke::Timer(k) => {
                    self.timer = None;
                    Event::Timer(k)
                }
                // The sender lives in the entry: None cannot come; were it
                // to, nobody could command this container again.
                Woke::Command(c) => Event::Command(c.unwrap_or(Command::Remove)),
                Woke::Health(h) => Event::Health(h),
                Woke::Dependency(i) => {
                    self.dep_changes[i].borrow_and_update();
                    self.dependency(i)
                }
                Woke::Gate(open) => Event::Gate(open),
                // A dependency was replaced: watch the new entries, each
                // seen as changed so the lifecycle learns where it stands.
                Woke::Rewire(Some(deps)) => {
                    self.dep_changes = deps
                        .iter()
                        .map(|d| {
                            let mut rx = d.changed.subscribe();
                            rx.mark_changed();
                            rx
                        })
                        .collect();
                    self.deps = deps;
                    continue;
                }
                Woke::Rewire(None) => continue,
            };
        }
    }

    /// The run's first process ended: its checks stop, its time and its
    /// cgroup's final counts are kept.
    fn exited(&mut self, x: Option<ChildExit>) -> Event {
        self.exit = None;
        self.health = None;
        let Some(live) = self.live.as_mut() else {
            return Event::Exited {
                exit: x,
                oom_kills: 0,
            };
        };
        if let Some(h) = live.health.take() {
            h.abort();
        }
        let run_ms = live.t_start.elapsed().as_secs_f64() * 1e3;
        self.e.set(|s| s.run_ms = Some(run_ms));
        let last = live.cgroup.stats();
        let oom_kills = last.oom_kills;
        live.last = Some(last);
        Event::Exited { exit: x, oom_kills }
    }

    /// Show the lifecycle's view (and the run's pid, address, cgroup) in
    /// the status, in one update, when it changed.
    fn publish(&mut self, v: &View) {
        let pid = self.live.as_ref().map(|l| l.pid);
        if self
            .shown
            .as_ref()
            .is_some_and(|(w, p)| w == v && *p == pid)
        {
            return;
        }
        self.shown = Some((v.clone(), pid));
        let epoch = self.epoch;
        let live = self.live.as_ref();
        self.e.set(|s| {
            s.state = v.state;
            s.restarts = v.restarts;
            s.error = v.error.clone();
            s.last_exit = v.last_exit.clone();
            s.health = v.health;
            s.restart_at = v.restart_at.map(|ms| epoch + Duration::from_millis(ms));
            match live {
                Some(l) if s.pid != Some(l.pid) => {
                    s.pid = Some(l.pid);
                    s.started = Some(Instant::now());
                    s.cgroup = Some(l.cgroup.clone());
                    s.address = l.address;
                    s.start_ms = Some(l.start_ms);
                }
                Some(_) => {}
                None => s.pid = None,
            }
        });
    }

    async fn perform(&mut self, a: Action) -> Done {
        let name = &self.e.spec.name;
        match a {
            Action::Start => {
                // The lifecycle keeps the reason as the status shows it.
                let started = self.start().await.map_err(|e| e.to_string());
                return Done::Next(Event::Started(started));
            }
            Action::Signal(why) => {
                if why == StopReason::Required {
                    keel_boot::info!("container {name}: a container it requires stopped: stopping");
                }
                if let Some(l) = &self.live {
                    let _ = keel_sys::spawn::pidfd_signal(&l.pidfd, l.stop_signal.0);
                }
            }
            Action::ArmTimer { kind, delay_ms } => {
                let at = tokio::time::Instant::now() + Duration::from_millis(delay_ms);
                self.timer = Some((at, kind));
            }
            Action::CancelTimer => self.timer = None,
            Action::Kill => {
                if let Some(l) = &self.live {
                    let _ = l.cgroup.kill();
                }
            }
            Action::Release { last_exit } => {
                keel_boot::info!("container {name}: {last_exit}");
                if let Some(l) = self.live.take() {
                    let last = l.last.unwrap_or_default();
                    self.e.set(|s| {
                        s.oom_kills += last.oom_kills;
                        s.oom_group_kills += last.oom_group_kills;
                        s.last_stats = last;
                    });
                    let (st, n) = (self.settings.clone(), name.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        runtime::stop_run(&st.dirs, &n, &l.cgroup, st.bridge.as_deref())
                    })
                    .await;
                }
                return Done::Next(Event::Released);
            }
            Action::Remove => {
                remove(&self.settings, &self.e).await;
                return Done::End;
            }
        }
        Done::Continue
    }

    /// Start a run: its output pumped to the logs, its exit awaited, its
    /// health checked.
    async fn start(&mut self) -> Result<(), StartError> {
        let name = &self.e.spec.name;
        let t_start = Instant::now();
        let (spec, st) = (self.e.spec.clone(), self.settings.clone());
        let started = tokio::task::spawn_blocking(move || {
            let img = (st.images)(&spec).map_err(StartError::Image)?;
            Ok(runtime::start(
                &st.dirs,
                &spec,
                &img,
                st.confiner.as_deref(),
                st.bridge.as_deref(),
            )?)
        })
        .await
        .unwrap_or_else(|j| Err(StartError::Task(j)));
        let run = match started {
            Ok(run) => run,
            Err(err) => {
                keel_boot::warn!("container {name}: start failed: {err}");
                return Err(err);
            }
        };
        self.exit = Some(self.exits.wait(run.pid));
        keel_boot::info!("container {name}: started, pid {}", run.pid);
        let start_ms = t_start.elapsed().as_secs_f64() * 1e3;
        tokio::spawn(pump(self.e.clone(), run.stdout, self.file.clone()));
        tokio::spawn(pump(self.e.clone(), run.stderr, self.file.clone()));
        let joinable = Arc::new(run.joinable);
        let health = self.e.spec.healthcheck.as_ref().map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.health = Some(rx);
            tokio::spawn(health_loop(
                self.e.clone(),
                run.pid,
                Instant::now(),
                tx,
                joinable.clone(),
                self.settings.clone(),
                self.exits.clone(),
            ))
        });
        self.live = Some(Live {
            pid: run.pid,
            pidfd: run.pidfd,
            cgroup: run.cgroup,
            stop_signal: run.stop_signal,
            address: run.address,
            t_start,
            start_ms,
            health,
            last: None,
            _joinable: joinable,
        });
        Ok(())
    }
}

/// The exit of a run, once; pending when there is no run.
async fn recv_once(rx: &mut Option<oneshot::Receiver<ChildExit>>) -> Option<ChildExit> {
    match rx.as_mut() {
        Some(r) => r.await.ok(),
        None => std::future::pending().await,
    }
}

/// The next message; pending when there is no channel or it has closed.
async fn recv_or_pend<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> T {
    if let Some(r) = rx.as_mut() {
        if let Some(v) = r.recv().await {
            return v;
        }
    }
    *rx = None;
    std::future::pending().await
}

/// The armed timer, when it fires.
async fn fire(timer: Option<(tokio::time::Instant, TimerKind)>) -> TimerKind {
    match timer {
        Some((at, kind)) => {
            tokio::time::sleep_until(at).await;
            kind
        }
        None => std::future::pending().await,
    }
}

/// The index of a dependency whose state changed.
async fn changed_any(rxs: &mut [watch::Receiver<ContainerState>]) -> usize {
    let mut fs: Vec<_> = rxs.iter_mut().map(|rx| Box::pin(rx.changed())).collect();
    std::future::poll_fn(|cx| {
        for (i, f) in fs.iter_mut().enumerate() {
            // A closed channel (its entry gone) never changes again.
            if let Poll::Ready(Ok(())) = std::future::Future::poll(f.as_mut(), cx) {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    })
    .await
}

/// The start gate's new value; a gate whose sender is gone is open (and
/// no longer watched).
async fn gate_changed(gate: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(g) = gate.as_mut() else {
        return std::future::pending().await;
    };
    match g.changed().await {
        Ok(()) => *g.borrow_and_update(),
        Err(_) => {
            *gate = None;
            true
        }
    }
}
