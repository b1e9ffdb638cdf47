//! The supervisor: one task per container on keel's async runtime.
//!
//! Each task loops: wait until the container is wanted and its `after` /
//! `requires` containers are running; start a run (on the blocking pool:
//! `runtime::start` mounts, clones and waits for the exec); read its output
//! into the log ring and file; wait for its exit (delivered by keel's
//! reaper through [`Exits`]) or a command; on a stop, SIGTERM through the
//! pidfd, the grace period, then `cgroup.kill`; release the run; ask
//! `policy::after_run` whether and when to start again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_api::{ContainerLogs, ContainerStats, ContainerStatus};
use keel_config::model::{Container, NetMode, NodePort};
use keel_sys::signal::ChildExit;
use tokio::sync::{mpsc, oneshot};

use crate::logs::{LogFile, Ring, RING};
use crate::policy::{self, Backoff, Ended, Next};
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
pub type Images = dyn Fn(&Container) -> Result<ImageRoot, String> + Send + Sync;

pub use crate::runtime::{Confinement, Confiner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Start,
    Stop,
    Restart,
    /// Stop for good, remove the writable layer, end the task (the
    /// container left the config, or changed).
    Remove,
}

#[derive(Debug, Clone, Default)]
struct State {
    state: &'static str,
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
    cmd: mpsc::UnboundedSender<Cmd>,
    /// Wakes tasks waiting on this container's state (dependents).
    changed: tokio::sync::watch::Sender<&'static str>,
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
        v.sort();
        v
    }
}

fn describe(e: ChildExit) -> (String, Ended) {
    match e {
        ChildExit::Exited(c) => (format!("exited {c}"), Ended::Exited(c)),
        ChildExit::Signaled(s) => (format!("killed by signal {s}"), Ended::Signaled(s)),
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
        for c in containers {
            match map.get(&c.name) {
                Some(old) if old.spec == *c => out.unchanged.push(c.name.clone()),
                Some(_) => out.replaced.push(c.name.clone()),
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
    /// (the old run stops first), unchanged ones are left alone.
    pub fn reconcile(&self, containers: Vec<Container>) -> Reconciled {
        let mut out = Reconciled::default();
        let Ok(mut map) = self.entries.lock() else {
            return out;
        };
        let mut before: BTreeMap<String, Arc<Entry>> = std::mem::take(&mut *map);
        let mut fresh = Vec::new();
        for c in containers {
            match before.remove(&c.name) {
                Some(old) if old.spec == c => {
                    out.unchanged.push(c.name.clone());
                    map.insert(c.name.clone(), old);
                }
                Some(old) => {
                    let _ = old.cmd.send(Cmd::Remove);
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
            let _ = old.cmd.send(Cmd::Remove);
            out.removed.push(name);
        }
        let mut new_entries = Vec::new();
        for (c, pred) in fresh {
            let (tx, rx) = mpsc::unbounded_channel();
            let e = Arc::new(Entry {
                spec: c.clone(),
                task: Mutex::new(None),
                state: Mutex::new(State {
                    state: "waiting",
                    ..Default::default()
                }),
                logs: Mutex::new(Ring::new(RING)),
                cmd: tx,
                changed: tokio::sync::watch::channel("waiting").0,
            });
            map.insert(c.name.clone(), e.clone());
            new_entries.push((e, rx, pred));
        }
        for (e, rx, pred) in new_entries {
            let deps: Vec<Arc<Entry>> = e
                .spec
                .after
                .iter()
                .chain(&e.spec.requires)
                .filter_map(|d| map.get(d).cloned())
                .collect();
            let (settings, exits, entry) = (self.settings.clone(), self.exits.clone(), e.clone());
            let task = self.runtime.spawn(async move {
                if let Some(p) = pred {
                    let _ = p.await;
                }
                run_loop(entry, rx, deps, settings, exits).await;
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
            "start" => Cmd::Start,
            "stop" => Cmd::Stop,
            "restart" => Cmd::Restart,
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
            let _ = e.cmd.send(Cmd::Stop);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let busy = all.iter().any(|e| {
                e.state
                    .lock()
                    .map(|s| s.pid.is_some() || s.state == "starting")
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
        image: e.spec.image.clone(),
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
    e.set(|s| s.state = "removed");
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

/// The stop signal (the spec's, the image's, else SIGTERM) through the
/// pidfd, `grace`, then `cgroup.kill`; the exit.
async fn stop_run_gracefully(
    pidfd: &std::os::fd::OwnedFd,
    cgroup: &crate::cgroup::Cgroup,
    (signal, grace): (keel_config::model::Signal, Duration),
    exit_rx: &mut oneshot::Receiver<ChildExit>,
) -> Option<ChildExit> {
    let _ = keel_sys::spawn::pidfd_signal(pidfd, signal.0);
    match tokio::time::timeout(grace, &mut *exit_rx).await {
        Ok(x) => x.ok(),
        Err(_) => {
            let _ = cgroup.kill();
            exit_rx.await.ok()
        }
    }
}

/// Whether a dependency is ready: running, and healthy when it has a
/// health check keel runs.
fn ready(d: &Entry) -> bool {
    d.state.lock().is_ok_and(|s| {
        s.state == "running"
            && match s.health {
                None => true,
                Some(h) => h == crate::health::Health::Healthy,
            }
    })
}

/// Wait until every dependency is ready.
async fn deps_running(deps: &[Arc<Entry>]) {
    for d in deps {
        let mut rx = d.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if ready(d) {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
}

/// Resolves when one of `required` has stopped for good (exited, stopped,
/// failed without a restart pending, or removed).
async fn required_gone(required: &[Arc<Entry>]) {
    if required.is_empty() {
        return std::future::pending().await;
    }
    let mut rxs: Vec<_> = required.iter().map(|d| d.changed.subscribe()).collect();
    loop {
        for rx in rxs.iter_mut() {
            rx.borrow_and_update();
        }
        let gone = required.iter().any(|d| {
            d.state
                .lock()
                .is_ok_and(|s| matches!(s.state, "exited" | "stopped" | "failed" | "removed"))
        });
        if gone {
            return;
        }
        let changes = rxs.iter_mut().map(|rx| Box::pin(rx.changed()));
        let _ = futures_select_any(changes).await;
    }
}

/// The first of several futures to finish (they are all `watch` changes).
async fn futures_select_any<F: std::future::Future + Unpin>(fs: impl Iterator<Item = F>) {
    let mut fs: Vec<F> = fs.collect();
    std::future::poll_fn(|cx| {
        for f in fs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Probe a run every interval; says once on `unhealthy` when the run has
/// failed `retries` probes in a row.
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

async fn health_loop(
    e: Arc<Entry>,
    pid: i32,
    started: Instant,
    unhealthy: mpsc::UnboundedSender<()>,
    joinable: Arc<runtime::Joinable>,
    settings: Arc<Settings>,
    exits: Arc<Exits>,
) {
    let Some(hc) = e.spec.healthcheck.clone() else {
        return;
    };
    let mut t = crate::health::Tracker::default();
    e.set(|s| s.health = Some(t.health));
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
        e.set(|s| s.health = Some(h));
        if h != before {
            let name = &e.spec.name;
            match &r {
                Ok(()) => keel_boot::info!("container {name}: {}", h.as_str()),
                Err(m) => keel_boot::warn!("container {name}: {} ({m})", h.as_str()),
            }
        }
        if h == crate::health::Health::Unhealthy {
            let _ = unhealthy.send(());
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

async fn run_loop(
    e: Arc<Entry>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    deps: Vec<Arc<Entry>>,
    settings: Arc<Settings>,
    exits: Arc<Exits>,
) {
    let name = e.spec.name.clone();
    let file = Arc::new(Mutex::new(LogFile::open(&settings.logs, &name)));
    let mut backoff = Backoff::default();
    let mut wanted = true;
    loop {
        if !wanted {
            match cmds.recv().await {
                Some(Cmd::Start | Cmd::Restart) => wanted = true,
                Some(Cmd::Stop) => continue,
                Some(Cmd::Remove) | None => return remove(&settings, &e).await,
            }
        }
        e.set(|s| {
            s.state = "waiting";
            s.restart_at = None;
        });
        if let Some(mut gate) = settings.start_gate.clone() {
            let _ = gate.wait_for(|open| *open).await;
        }
        tokio::select! {
            _ = deps_running(&deps) => {}
            c = cmds.recv() => match c {
                Some(Cmd::Stop) => {
                    e.set(|s| s.state = "stopped");
                    wanted = false;
                    continue;
                }
                Some(Cmd::Remove) | None => return remove(&settings, &e).await,
                Some(_) => continue,
            }
        }
        e.set(|s| s.state = "starting");
        let t_start = Instant::now();
        let (spec, st) = (e.spec.clone(), settings.clone());
        let started = tokio::task::spawn_blocking(move || {
            let img = (st.images)(&spec)?;
            runtime::start(
                &st.dirs,
                &spec,
                &img,
                st.confiner.as_deref(),
                st.bridge.as_deref(),
            )
            .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|j| Err(format!("the start task failed: {j}")));
        let t0 = Instant::now();
        let (ended, stopped_by_cmd) = match started {
            Err(err) => {
                keel_boot::warn!("container {name}: start failed: {err}");
                e.set(|s| {
                    s.state = "failed";
                    s.error = Some(err);
                    s.pid = None;
                });
                (Ended::StartFailed, None)
            }
            Ok(run) => {
                let exit_rx = exits.wait(run.pid);
                keel_boot::info!("container {name}: started, pid {}", run.pid);
                let start_ms = t_start.elapsed().as_secs_f64() * 1e3;
                e.set(|s| {
                    s.state = "running";
                    // In the same update as `running`: a container waiting
                    // on this one (`after`) must not see it running with
                    // no health yet and take it for one without a check.
                    s.health = e
                        .spec
                        .healthcheck
                        .as_ref()
                        .map(|_| crate::health::Health::Starting);
                    s.address = run.address;
                    s.start_ms = Some(start_ms);
                    s.pid = Some(run.pid);
                    s.started = Some(Instant::now());
                    s.error = None;
                    s.cgroup = Some(run.cgroup.clone());
                });
                tokio::spawn(pump(e.clone(), run.stdout, file.clone()));
                tokio::spawn(pump(e.clone(), run.stderr, file.clone()));
                let (unhealthy_tx, mut unhealthy_rx) = mpsc::unbounded_channel();
                let joinable = Arc::new(run.joinable);
                let health = e.spec.healthcheck.as_ref().map(|_| {
                    tokio::spawn(health_loop(
                        e.clone(),
                        run.pid,
                        Instant::now(),
                        unhealthy_tx,
                        joinable.clone(),
                        settings.clone(),
                        exits.clone(),
                    ))
                });
                let mut exit_rx = exit_rx;
                let mut by_cmd = None;
                let mut sick = false;
                let required: Vec<Arc<Entry>> = deps
                    .iter()
                    .filter(|d| e.spec.requires.contains(&d.spec.name))
                    .cloned()
                    .collect();
                let mut orphaned = false;
                let stop = (
                    run.stop_signal,
                    Duration::from_millis(e.spec.stop_grace_ms.max(1)),
                );
                let exit = loop {
                    tokio::select! {
                        x = &mut exit_rx => break x.ok(),
                        _ = required_gone(&required) => {
                            orphaned = true;
                            keel_boot::info!("container {name}: a container it requires stopped: stopping");
                            e.set(|s| s.state = "stopping");
                            break stop_run_gracefully(&run.pidfd, &run.cgroup, stop, &mut exit_rx).await;
                        }
                        Some(()) = unhealthy_rx.recv() => {
                            sick = true;
                            e.set(|s| s.state = "stopping");
                            break stop_run_gracefully(&run.pidfd, &run.cgroup, stop, &mut exit_rx).await;
                        }
                        c = cmds.recv() => match c {
                            Some(Cmd::Start) => continue,
                            Some(c) => {
                                by_cmd = Some(c);
                                e.set(|s| s.state = "stopping");
                                break stop_run_gracefully(&run.pidfd, &run.cgroup, stop, &mut exit_rx).await;
                            }
                            None => {
                                let _ = run.cgroup.kill();
                                break (&mut exit_rx).await.ok();
                            }
                        }
                    }
                };
                if let Some(h) = health {
                    h.abort();
                }
                let run_ms = t_start.elapsed().as_secs_f64() * 1e3;
                e.set(|s| s.run_ms = Some(run_ms));
                let (text, ended) = match exit {
                    Some(x) if sick => (format!("{} (unhealthy)", describe(x).0), Ended::Unhealthy),
                    Some(x) => describe(x),
                    None => ("gone".to_string(), Ended::Signaled(9)),
                };
                let last = run.cgroup.stats();
                let text = if last.oom_kills > 0 {
                    format!("{text} (out of memory: {} killed)", last.oom_kills)
                } else {
                    text
                };
                keel_boot::info!("container {name}: {text}");
                e.set(|s| {
                    s.oom_kills += last.oom_kills;
                    s.oom_group_kills += last.oom_group_kills;
                    s.last_stats = last;
                });
                let (st, cg, n) = (settings.clone(), run.cgroup.clone(), name.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    runtime::stop_run(&st.dirs, &n, &cg, st.bridge.as_deref())
                })
                .await;
                e.set(|s| {
                    s.pid = None;
                    s.health = None;
                    s.last_exit = Some(text);
                });
                if orphaned {
                    // Back to waiting: it starts again with what it requires.
                    (Ended::Stopped, Some(Cmd::Restart))
                } else {
                    (ended, by_cmd)
                }
            }
        };
        let up = t0.elapsed().as_millis() as u64;
        match stopped_by_cmd {
            Some(Cmd::Remove) => return remove(&settings, &e).await,
            Some(Cmd::Stop) => {
                e.set(|s| s.state = "stopped");
                wanted = false;
                continue;
            }
            Some(Cmd::Restart) => {
                e.set(|s| s.restarts += 1);
                continue;
            }
            _ => {}
        }
        match policy::after_run(&e.spec, &mut backoff, ended, up) {
            Next::Stay => {
                e.set(|s| {
                    if s.state != "failed" {
                        s.state = "exited";
                    }
                });
                wanted = false;
            }
            Next::RestartAfter(ms) => {
                e.set(|s| {
                    s.state = "backoff";
                    s.restart_at = Some(Instant::now() + Duration::from_millis(ms));
                });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {
                        e.set(|s| s.restarts += 1);
                    }
                    c = cmds.recv() => match c {
                        Some(Cmd::Stop) => {
                            e.set(|s| { s.state = "stopped"; s.restart_at = None; });
                            wanted = false;
                        }
                        Some(Cmd::Remove) | None => return remove(&settings, &e).await,
                        Some(_) => e.set(|s| s.restarts += 1),
                    }
                }
            }
        }
    }
}
