//! A container's lifecycle as a pure state machine: an event goes in, the
//! state change and the actions to take come out. No I/O, no clock: time
//! comes in as a value (milliseconds on the caller's clock), and the
//! supervisor's task (`supervisor::run_loop`) carries out the actions and
//! feeds back what they brought, as openraft's runtime does for its engine.
//!
//! A container's life, step by step:
//!
//! 1. `waiting`: it starts once the node's start gate is open and each of
//!    its `after` / `requires` containers is ready: `running`, and
//!    `healthy` when it has a health check ([`Action::Start`]).
//! 2. `starting`: the supervisor starts a run and answers
//!    [`Event::Started`]: `running`, or the policy's answer to a failed start.
//! 3. `running`: a stop command, an `unhealthy` verdict, or a required
//!    container stopped for good ([`ContainerState::is_down`]) sends the
//!    stop signal and arms the kill timer (`stopping`); when the grace ends
//!    the cgroup is killed.
//! 4. The run's exit ([`Event::Exited`]): the supervisor releases the run
//!    ([`Action::Release`], with the `last exit` line) and answers
//!    [`Event::Released`]. Then: a stop is `stopped`, a removal `removed`,
//!    a restart (or a required container gone) back to `waiting` with one
//!    more restart; otherwise the restart policy (`policy::after_run`) says
//!    `exited` (`failed` after a failed start) or `backoff` with a timer.
//! 5. `backoff`: the timer, a start or a restart go back to `waiting` (one
//!    more restart); a stop is `stopped`.
//! 6. `stopped`, `exited`, `failed` stay until a start or a restart;
//!    `removed` is the end.
//!
//! Commands that come while a run starts or stops wait until it has
//! (`deferred`), in order, as they waited in the supervisor's channel.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use keel_config::model::Container;
use keel_sys::signal::ChildExit;

use crate::health::Health;
use crate::policy::{self, Backoff, Ended, Next};

/// Where a container is in its life. `Display` gives what the API,
/// `keelctl ps` and the VM tests show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ContainerState {
    /// Wanted: waiting for the start gate or its dependencies.
    #[default]
    Waiting,
    /// Its run is being set up (root, cgroup, clone, exec).
    Starting,
    Running,
    /// Sent its stop signal; killed when the grace period ends.
    Stopping,
    /// Stopped by a command: it stays so until started.
    Stopped,
    /// Ended, and its restart policy does not restart it.
    Exited,
    /// Waiting out its restart delay.
    Backoff,
    /// Could not be started, and its restart policy does not retry.
    Failed,
    /// Left the config (or was replaced): its task ends.
    Removed,
}

impl ContainerState {
    pub const ALL: [ContainerState; 9] = [
        ContainerState::Waiting,
        ContainerState::Starting,
        ContainerState::Running,
        ContainerState::Stopping,
        ContainerState::Stopped,
        ContainerState::Exited,
        ContainerState::Backoff,
        ContainerState::Failed,
        ContainerState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Waiting => "waiting",
            ContainerState::Starting => "starting",
            ContainerState::Running => "running",
            ContainerState::Stopping => "stopping",
            ContainerState::Stopped => "stopped",
            ContainerState::Exited => "exited",
            ContainerState::Backoff => "backoff",
            ContainerState::Failed => "failed",
            ContainerState::Removed => "removed",
        }
    }

    /// Stopped for good: nothing but a command brings it back (a restart
    /// pending is `backoff`). A container that `requires` it stops.
    pub fn is_down(self) -> bool {
        matches!(
            self,
            ContainerState::Exited
                | ContainerState::Stopped
                | ContainerState::Failed
                | ContainerState::Removed
        )
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator (`keelctl start|stop|restart`), the shutdown or a
/// new config asks of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Restart,
    /// Stop for good, remove the writable layer, end the task (the
    /// container left the config, or changed).
    Remove,
}

/// Why a run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Stop,
    Restart,
    Remove,
    /// Its health check found it unhealthy `retries` times in a row.
    Unhealthy,
    /// A container it requires stopped for good.
    Required,
}

/// The one timer a lifecycle has armed at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// The restart delay.
    Backoff,
    /// The stop's grace period: then the cgroup is killed.
    Kill,
}

/// A container this one starts after (`after`, `requires`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// In `requires`: this one stops when it stops for good.
    pub required: bool,
    /// It has a health check: ready only when `healthy`.
    pub checked: bool,
}

/// What comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Command(Command),
    /// The node's start gate: starts wait while it is shut. The supervisor
    /// reports it first, then each dependency's state.
    Gate(bool),
    /// A dependency's state and health, as it publishes them.
    Dependency {
        name: String,
        state: ContainerState,
        health: Option<Health>,
    },
    /// The answer to [`Action::Start`]: the run is up, or why not.
    Started(Result<(), String>),
    /// The run's health changed.
    Health(Health),
    /// The armed timer of this kind fired.
    Timer(TimerKind),
    /// The run's first process ended (None: its exit was lost); its cgroup
    /// counted these OOM kills.
    Exited {
        exit: Option<ChildExit>,
        oom_kills: u64,
    },
    /// The answer to [`Action::Release`].
    Released,
}

/// What the supervisor does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a run; answer [`Event::Started`].
    Start,
    /// Send the run its stop signal.
    Signal(StopReason),
    /// Arm the timer (replacing any): `delay_ms` from now, it fires
    /// [`Event::Timer`].
    ArmTimer {
        kind: TimerKind,
        delay_ms: u64,
    },
    CancelTimer,
    /// `cgroup.kill` the run.
    Kill,
    /// The run has ended: log `last_exit`, keep its final statistics,
    /// release its root, cgroup and network; answer [`Event::Released`].
    Release {
        last_exit: String,
    },
    /// Delete the writable layer, and end.
    Remove,
}

/// What the status shows of the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub state: ContainerState,
    pub restarts: u32,
    /// Why the last start failed (until a run starts).
    pub error: Option<String>,
    pub last_exit: Option<String>,
    /// This run's health, when the container has a check keel runs.
    pub health: Option<Health>,
    /// When the backoff ends, on the caller's clock (ms).
    pub restart_at: Option<u64>,
}

/// The result of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: ContainerState,
    pub to: ContainerState,
    pub actions: Vec<Action>,
}

/// A dependency as last reported.
#[derive(Debug, Clone)]
struct Dep {
    required: bool,
    checked: bool,
    state: Option<ContainerState>,
    health: Option<Health>,
}

impl Dep {
    /// Running, and healthy when it has a health check. (Its health is
    /// None between its exit and its next state, hence `checked`.)
    fn ready(&self) -> bool {
        self.state == Some(ContainerState::Running)
            && match self.health {
                None => !self.checked,
                Some(h) => h == Health::Healthy,
            }
    }

    fn down(&self) -> bool {
        self.state.is_some_and(ContainerState::is_down)
    }
}

/// The run under way, from its start until it is released.
#[derive(Debug, Clone)]
struct Run {
    /// When its start returned: a run that stays up `backoff_reset_ms`
    /// resets the backoff.
    up_since: u64,
    stop: Option<StopReason>,
    /// Set at its exit: how it ended, and the `last exit` line.
    ended: Option<(Ended, String)>,
}

/// One container's lifecycle.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    spec: Container,
    view: View,
    backoff: Backoff,
    gate: bool,
    deps: BTreeMap<String, Dep>,
    run: Option<Run>,
    timer: Option<TimerKind>,
    deferred: VecDeque<Command>,
}

/// How a run's first process ended: the `last exit` words, and the
/// policy's view.
pub fn describe(e: ChildExit) -> (String, Ended) {
    match e {
        ChildExit::Exited(c) => (format!("exited {c}"), Ended::Exited(c)),
        ChildExit::Signaled(s) => (format!("killed by signal {s}"), Ended::Signaled(s)),
    }
}

impl Lifecycle {
    /// A container `waiting`, its gate shut and its dependencies unknown
    /// until reported.
    pub fn new(spec: Container, deps: Vec<Dependency>) -> Lifecycle {
        let deps = deps
            .into_iter()
            .map(|d| {
                let dep = Dep {
                    required: d.required,
                    checked: d.checked,
                    state: None,
                    health: None,
                };
                (d.name, dep)
            })
            .collect();
        Lifecycle {
            spec,
            view: View::default(),
            backoff: Backoff::default(),
            gate: false,
            deps,
            run: None,
            timer: None,
            deferred: VecDeque::new(),
        }
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn state(&self) -> ContainerState {
        self.view.state
    }

    /// Take one event at `now` (ms).
    pub fn handle(&mut self, now: u64, event: Event) -> Step {
        let from = self.view.state;
        let mut out = Vec::new();
        if from != ContainerState::Removed {
            self.on(now, event, &mut out);
            // Every command that waited first: a stop among them must
            // win over a start that an earlier one would have made.
            self.replay(&mut out);
            self.advance(&mut out);
        }
        Step {
            from,
            to: self.view.state,
            actions: out,
        }
    }

    fn on(&mut self, now: u64, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Command(c) => self.command(c, out),
            Event::Gate(open) => self.gate = open,
            Event::Dependency {
                name,
                state,
                health,
            } => {
                if let Some(d) = self.deps.get_mut(&name) {
                    d.state = Some(state);
                    d.health = health;
                }
                self.stop_if_required_down(out);
            }
            Event::Started(r) => self.started(now, r, out),
            Event::Health(h) => {
                let live = self.live();
                if self.spec.healthcheck.is_some() && live.is_some() {
                    self.view.health = Some(h);
                    if h == Health::Unhealthy && live == Some(None) {
                        self.stop_run(StopReason::Unhealthy, out);
                    }
                }
            }
            Event::Timer(kind) => self.timer_fired(kind, out),
            Event::Exited { exit, oom_kills } => self.exited(exit, oom_kills, out),
            Event::Released => self.released(now, out),
        }
    }

    /// The run, when it is up and has not exited: why it is being stopped.
    fn live(&self) -> Option<Option<StopReason>> {
        self.run
            .as_ref()
            .filter(|r| r.ended.is_none())
            .map(|r| r.stop)
    }

    fn command(&mut self, c: Command, out: &mut Vec<Action>) {
        use ContainerState as S;
        if self.busy() {
            self.deferred.push_back(c);
            return;
        }
        match (self.view.state, c) {
            (S::Running, Command::Start) => {}
            (S::Running, Command::Stop) => self.stop_run(StopReason::Stop, out),
            (S::Running, Command::Restart) => self.stop_run(StopReason::Restart, out),
            (S::Running, Command::Remove) => self.stop_run(StopReason::Remove, out),
            (_, Command::Remove) => self.remove(out),
            (S::Stopped | S::Exited | S::Failed, Command::Start | Command::Restart) => {
                self.view.state = S::Waiting;
            }
            (S::Waiting | S::Backoff, Command::Stop) => {
                self.cancel_timer(out);
                self.view.state = S::Stopped;
            }
            (S::Backoff, Command::Start | Command::Restart) => {
                self.cancel_timer(out);
                self.restart_now();
            }
            // Already wanted, or already stopped.
            _ => {}
        }
    }

    /// A run being set up, stopped or released: the supervisor's to finish
    /// before a command applies.
    fn busy(&self) -> bool {
        matches!(
            self.view.state,
            ContainerState::Starting | ContainerState::Stopping
        ) || self.run.as_ref().is_some_and(|r| r.ended.is_some())
    }

    /// Waiting, the gate open and every dependency ready: start.
    fn advance(&mut self, out: &mut Vec<Action>) {
        if self.view.state == ContainerState::Waiting
            && self.gate
            && self.deps.values().all(Dep::ready)
        {
            self.view.state = ContainerState::Starting;
            out.push(Action::Start);
        }
    }

    fn started(&mut self, now: u64, r: Result<(), String>, out: &mut Vec<Action>) {
        if self.view.state != ContainerState::Starting {
            return;
        }
        match r {
            Ok(()) => {
                self.view.state = ContainerState::Running;
                // With `running`, in one view: a container waiting on this
                // one must not see it running with no health and take it
                // for one without a check.
                self.view.health = self.spec.healthcheck.as_ref().map(|_| Health::Starting);
                self.view.error = None;
                self.run = Some(Run {
                    up_since: now,
                    stop: None,
                    ended: None,
                });
                // Commands that came while it started apply first, in
                // order, as they did from the supervisor's queue; then
                // what it requires is looked at.
                self.replay(out);
                self.stop_if_required_down(out);
            }
            Err(e) => {
                self.view.error = Some(e);
                self.after_policy(now, Ended::StartFailed, 0, out);
            }
        }
    }

    fn stop_if_required_down(&mut self, out: &mut Vec<Action>) {
        if self.live() == Some(None) && self.deps.values().any(|d| d.required && d.down()) {
            self.stop_run(StopReason::Required, out);
        }
    }

    fn stop_run(&mut self, why: StopReason, out: &mut Vec<Action>) {
        let Some(run) = self.run.as_mut() else { return };
        run.stop = Some(why);
        self.view.state = ContainerState::Stopping;
        out.push(Action::Signal(why));
        self.timer = Some(TimerKind::Kill);
        out.push(Action::ArmTimer {
            kind: TimerKind::Kill,
            delay_ms: self.spec.stop_grace_ms.max(1),
        });
    }

    fn timer_fired(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        if self.timer != Some(kind) {
            return; // cancelled or replaced: stale
        }
        self.timer = None;
        match kind {
            TimerKind::Kill => {
                if self.live().is_some() {
                    out.push(Action::Kill);
                }
            }
            TimerKind::Backoff => {
                self.view.restart_at = None;
                self.restart_now();
            }
        }
    }

    /// Back to `waiting`, one restart more.
    fn restart_now(&mut self) {
        self.view.restarts += 1;
        self.view.state = ContainerState::Waiting;
    }

    fn exited(&mut self, exit: Option<ChildExit>, oom_kills: u64, out: &mut Vec<Action>) {
        if self.live().is_none() {
            return;
        }
        let Some(run) = self.run.as_mut() else { return };
        let sick = run.stop == Some(StopReason::Unhealthy);
        let (text, ended) = match exit {
            Some(x) if sick => (format!("{} (unhealthy)", describe(x).0), Ended::Unhealthy),
            Some(x) => describe(x),
            None => ("gone".to_string(), Ended::Signaled(9)),
        };
        let text = if oom_kills > 0 {
            format!("{text} (out of memory: {oom_kills} killed)")
        } else {
            text
        };
        run.ended = Some((ended, text.clone()));
        if self.timer == Some(TimerKind::Kill) {
            self.cancel_timer(out);
        }
        out.push(Action::Release { last_exit: text });
    }

    fn released(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(Run {
            up_since,
            stop,
            ended: Some((ended, text)),
        }) = self.run.take()
        else {
            return;
        };
        self.view.last_exit = Some(text);
        self.view.health = None;
        match stop {
            Some(StopReason::Remove) => self.remove(out),
            Some(StopReason::Stop) => self.view.state = ContainerState::Stopped,
            // Back to waiting: it starts again with what it requires.
            Some(StopReason::Restart | StopReason::Required) => {
                self.view.restarts += 1;
                self.view.state = ContainerState::Waiting;
            }
            None | Some(StopReason::Unhealthy) => {
                self.after_policy(now, ended, now.saturating_sub(up_since), out)
            }
        }
    }

    /// The restart policy's answer to a run that ended.
    fn after_policy(&mut self, now: u64, ended: Ended, up_ms: u64, out: &mut Vec<Action>) {
        match policy::after_run(&self.spec, &mut self.backoff, ended, up_ms) {
            Next::Stay => {
                self.view.state = if ended == Ended::StartFailed {
                    ContainerState::Failed
                } else {
                    ContainerState::Exited
                };
            }
            Next::RestartAfter(ms) => {
                self.view.state = ContainerState::Backoff;
                self.view.restart_at = Some(now.saturating_add(ms));
                self.timer = Some(TimerKind::Backoff);
                out.push(Action::ArmTimer {
                    kind: TimerKind::Backoff,
                    delay_ms: ms,
                });
            }
        }
    }

    /// Commands that waited for a run to start or end, in order, until one
    /// of them stops a run again.
    fn replay(&mut self, out: &mut Vec<Action>) {
        while !self.busy() {
            let Some(c) = self.deferred.pop_front() else {
                return;
            };
            self.command(c, out);
        }
    }

    fn cancel_timer(&mut self, out: &mut Vec<Action>) {
        self.view.restart_at = None;
        if self.timer.take().is_some() {
            out.push(Action::CancelTimer);
        }
    }

    fn remove(&mut self, out: &mut Vec<Action>) {
        self.cancel_timer(out);
        self.deferred.clear();
        self.view.state = ContainerState::Removed;
        out.push(Action::Remove);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container of busybox with keel's defaults, for the tests to change.
    fn a_container() -> Container {
        Container::new(
            "test",
            keel_config::model::ImageRef::try_from("busybox").unwrap(),
        )
    }
    use keel_config::model::{Healthcheck, Probe, Restart};
    use Action::*;
    use ContainerState as S;

    const GRACE: u64 = 50;

    fn spec(restart: Restart) -> Container {
        Container {
            name: "c".into(),
            restart,
            backoff_ms: 100,
            backoff_max_ms: 400,
            backoff_reset_ms: 1000,
            stop_grace_ms: GRACE,
            ..a_container()
        }
    }

    fn checked(restart: Restart) -> Container {
        Container {
            healthcheck: Some(Healthcheck {
                probe: Probe::Tcp(80),
                interval_ms: 1000,
                timeout_ms: 1000,
                retries: 3,
                start_period_ms: 0,
            }),
            ..spec(restart)
        }
    }

    fn dep(name: &str, required: bool, checked: bool) -> Dependency {
        Dependency {
            name: name.into(),
            required,
            checked,
        }
    }

    fn dep_is(name: &str, state: ContainerState, health: Option<Health>) -> Event {
        Event::Dependency {
            name: name.into(),
            state,
            health,
        }
    }

    fn cmd(c: Command) -> Event {
        Event::Command(c)
    }

    fn exit(code: i32) -> Event {
        Event::Exited {
            exit: Some(ChildExit::Exited(code)),
            oom_kills: 0,
        }
    }

    fn kill_timer() -> Action {
        ArmTimer {
            kind: TimerKind::Kill,
            delay_ms: GRACE,
        }
    }

    fn backoff(ms: u64) -> Action {
        ArmTimer {
            kind: TimerKind::Backoff,
            delay_ms: ms,
        }
    }

    fn release(text: &str) -> Action {
        Release {
            last_exit: text.into(),
        }
    }

    /// Feed `event` at `now`: the state it leads to and the actions.
    fn step(lc: &mut Lifecycle, now: u64, event: Event) -> (ContainerState, Vec<Action>) {
        let s = lc.handle(now, event);
        assert_eq!(s.to, lc.state());
        (s.to, s.actions)
    }

    /// `spec` started at 0 (the gate open, no dependencies): running.
    fn running(spec: Container) -> Lifecycle {
        let mut lc = Lifecycle::new(spec, vec![]);
        assert_eq!(
            step(&mut lc, 0, Event::Gate(true)),
            (S::Starting, vec![Start])
        );
        assert_eq!(
            step(&mut lc, 0, Event::Started(Ok(()))),
            (S::Running, vec![])
        );
        lc
    }

    /// End the run at `now` with `code` and release it.
    fn ends(lc: &mut Lifecycle, now: u64, code: i32) -> (ContainerState, Vec<Action>) {
        let text = format!("exited {code}");
        assert_eq!(step(lc, now, exit(code)).1, vec![release(&text)]);
        step(lc, now, Event::Released)
    }

    #[test]
    fn states_show_as_the_api_has_always_shown_them() {
        let shown: Vec<String> = ContainerState::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            shown,
            [
                "waiting", "starting", "running", "stopping", "stopped", "exited", "backoff",
                "failed", "removed"
            ]
        );
        let down: Vec<_> = ContainerState::ALL
            .into_iter()
            .filter(|s| s.is_down())
            .collect();
        assert_eq!(down, [S::Stopped, S::Exited, S::Failed, S::Removed]);
        assert_eq!(ContainerState::default(), S::Waiting);
    }

    #[test]
    fn waiting_starts_when_the_gate_opens() {
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        assert_eq!(lc.view(), &View::default());
        assert_eq!(step(&mut lc, 0, Event::Gate(false)), (S::Waiting, vec![]));
        assert_eq!(step(&mut lc, 0, cmd(Command::Start)), (S::Waiting, vec![]));
        assert_eq!(
            step(&mut lc, 0, cmd(Command::Restart)),
            (S::Waiting, vec![])
        );
        assert_eq!(
            step(&mut lc, 5, Event::Gate(true)),
            (S::Starting, vec![Start])
        );
    }

    #[test]
    fn after_waits_for_running_and_healthy() {
        let deps = vec![dep("plain", false, false), dep("checked", false, true)];
        let mut lc = Lifecycle::new(spec(Restart::Always), deps);
        assert_eq!(step(&mut lc, 0, Event::Gate(true)), (S::Waiting, vec![]));
        let plain = dep_is("plain", S::Running, None);
        assert_eq!(step(&mut lc, 0, plain), (S::Waiting, vec![]));
        for (state, health) in [
            (S::Starting, None),
            (S::Running, Some(Health::Starting)),
            (S::Running, Some(Health::Unhealthy)),
            // Its run ended, its next state not yet shown.
            (S::Running, None),
            (S::Backoff, None),
        ] {
            let e = dep_is("checked", state, health);
            assert_eq!(
                step(&mut lc, 0, e),
                (S::Waiting, vec![]),
                "{state} {health:?}"
            );
        }
        let healthy = dep_is("checked", S::Running, Some(Health::Healthy));
        assert_eq!(step(&mut lc, 0, healthy), (S::Starting, vec![Start]));
    }

    #[test]
    fn a_dependency_that_was_ready_and_is_no_longer_holds_the_start() {
        let deps = vec![dep("a", false, false), dep("b", false, false)];
        let mut lc = Lifecycle::new(spec(Restart::Always), deps);
        step(&mut lc, 0, Event::Gate(true));
        step(&mut lc, 0, dep_is("a", S::Running, None));
        step(&mut lc, 0, dep_is("a", S::Backoff, None));
        assert_eq!(
            step(&mut lc, 0, dep_is("b", S::Running, None)),
            (S::Waiting, vec![])
        );
        let unknown = dep_is("nosuch", S::Stopped, None);
        assert_eq!(step(&mut lc, 0, unknown), (S::Waiting, vec![]));
    }

    #[test]
    fn waiting_stops_and_is_removed() {
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        assert_eq!(step(&mut lc, 0, cmd(Command::Stop)), (S::Stopped, vec![]));
        // A stopped container waits for a start, gate or not.
        assert_eq!(step(&mut lc, 0, Event::Gate(true)), (S::Stopped, vec![]));
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        assert_eq!(
            step(&mut lc, 0, cmd(Command::Remove)),
            (S::Removed, vec![Remove])
        );
    }

    #[test]
    fn a_start_that_works_is_running_with_its_health_starting() {
        let lc = running(checked(Restart::Always));
        assert_eq!(lc.view().health, Some(Health::Starting));
        let lc = running(spec(Restart::Always));
        assert_eq!(lc.view().health, None);
        assert_eq!(lc.view().restarts, 0);
        // A start clears the last start's error.
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        step(&mut lc, 0, Event::Gate(true));
        step(&mut lc, 0, Event::Started(Err("no image".into())));
        assert_eq!(lc.view().error.as_deref(), Some("no image"));
        step(&mut lc, 100, Event::Timer(TimerKind::Backoff));
        step(&mut lc, 100, Event::Started(Ok(())));
        assert_eq!(lc.view().error, None);
    }

    #[test]
    fn a_start_that_fails_is_failed_or_retried_by_policy() {
        let mut lc = Lifecycle::new(spec(Restart::Never), vec![]);
        step(&mut lc, 0, Event::Gate(true));
        let failed = step(&mut lc, 0, Event::Started(Err("bad cwd".into())));
        assert_eq!(failed, (S::Failed, vec![]));
        assert_eq!(lc.view().error.as_deref(), Some("bad cwd"));
        assert_eq!(lc.view().last_exit, None);
        for r in [Restart::Always, Restart::OnFailure] {
            let mut lc = Lifecycle::new(spec(r), vec![]);
            step(&mut lc, 0, Event::Gate(true));
            let retried = step(&mut lc, 7, Event::Started(Err("bad cwd".into())));
            assert_eq!(retried, (S::Backoff, vec![backoff(100)]));
            assert_eq!(lc.view().restart_at, Some(107));
        }
    }

    #[test]
    fn running_ignores_a_start_and_stops_on_the_other_commands() {
        let mut lc = running(spec(Restart::Always));
        assert_eq!(step(&mut lc, 1, cmd(Command::Start)), (S::Running, vec![]));
        for (c, why) in [
            (Command::Stop, StopReason::Stop),
            (Command::Restart, StopReason::Restart),
            (Command::Remove, StopReason::Remove),
        ] {
            let mut lc = running(spec(Restart::Always));
            let stopping = step(&mut lc, 1, cmd(c));
            assert_eq!(stopping, (S::Stopping, vec![Signal(why), kill_timer()]));
        }
    }

    #[test]
    fn the_grace_ends_in_a_kill_and_an_exit_cancels_it() {
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Stop));
        let t = Event::Timer(TimerKind::Kill);
        assert_eq!(step(&mut lc, 51, t.clone()), (S::Stopping, vec![Kill]));
        // Fired once: a second is stale.
        assert_eq!(step(&mut lc, 52, t), (S::Stopping, vec![]));
        let killed = Event::Exited {
            exit: Some(ChildExit::Signaled(9)),
            oom_kills: 0,
        };
        let released = step(&mut lc, 60, killed);
        assert_eq!(released, (S::Stopping, vec![release("killed by signal 9")]));

        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Stop));
        let released = step(&mut lc, 2, exit(0));
        assert_eq!(
            released,
            (S::Stopping, vec![CancelTimer, release("exited 0")])
        );
        let t = Event::Timer(TimerKind::Kill);
        assert_eq!(step(&mut lc, 51, t), (S::Stopping, vec![]));
    }

    #[test]
    fn a_stopped_run_is_stopped_whatever_its_policy() {
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Stop));
        step(&mut lc, 2, exit(0));
        assert_eq!(step(&mut lc, 3, Event::Released), (S::Stopped, vec![]));
        let v = lc.view();
        assert_eq!(v.last_exit.as_deref(), Some("exited 0"));
        assert_eq!((v.restarts, v.health, v.restart_at), (0, None, None));
    }

    #[test]
    fn a_restart_counts_and_starts_again() {
        let mut lc = running(checked(Restart::Never));
        step(&mut lc, 1, Event::Health(Health::Healthy));
        step(&mut lc, 1, cmd(Command::Restart));
        step(&mut lc, 2, exit(0));
        assert_eq!(
            step(&mut lc, 3, Event::Released),
            (S::Starting, vec![Start])
        );
        assert_eq!(lc.view().restarts, 1);
        assert_eq!(lc.view().health, None);
        step(&mut lc, 4, Event::Started(Ok(())));
        assert_eq!(lc.view().health, Some(Health::Starting));
    }

    #[test]
    fn a_removed_run_is_removed_at_its_end() {
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Remove));
        step(&mut lc, 2, exit(0));
        assert_eq!(
            step(&mut lc, 3, Event::Released),
            (S::Removed, vec![Remove])
        );
        // The end: nothing moves it.
        for e in [
            cmd(Command::Start),
            Event::Gate(true),
            Event::Started(Ok(())),
            Event::Timer(TimerKind::Backoff),
        ] {
            assert_eq!(step(&mut lc, 4, e), (S::Removed, vec![]));
        }
    }

    #[test]
    fn restart_policies_after_an_exit() {
        for (r, code, next) in [
            (Restart::Always, 0, (S::Backoff, vec![backoff(100)])),
            (Restart::Always, 3, (S::Backoff, vec![backoff(100)])),
            (Restart::OnFailure, 0, (S::Exited, vec![])),
            (Restart::OnFailure, 3, (S::Backoff, vec![backoff(100)])),
            (Restart::Never, 3, (S::Exited, vec![])),
        ] {
            let mut lc = running(spec(r));
            assert_eq!(ends(&mut lc, 10, code), next, "{r:?} {code}");
            assert_eq!(lc.view().last_exit, Some(format!("exited {code}")));
        }
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_resets_after_a_long_run() {
        let mut lc = running(spec(Restart::Always));
        let mut now = 0;
        let mut delays = vec![];
        for _ in 0..5 {
            now += 10;
            let (_, actions) = ends(&mut lc, now, 1);
            let Some(ArmTimer { delay_ms, .. }) = actions.first() else {
                panic!("{actions:?}")
            };
            assert_eq!(lc.view().restart_at, Some(now + delay_ms));
            delays.extend(actions);
            let t = Event::Timer(TimerKind::Backoff);
            assert_eq!(step(&mut lc, now, t), (S::Starting, vec![Start]));
            assert_eq!(lc.view().restart_at, None);
            step(&mut lc, now, Event::Started(Ok(())));
        }
        assert_eq!(delays, [100, 200, 400, 400, 400].map(backoff));
        assert_eq!(lc.view().restarts, 5);
        // Up 1000 ms (backoff_reset_ms): the first delay again.
        assert_eq!(ends(&mut lc, now + 1000, 1).1, vec![backoff(100)]);
    }

    #[test]
    fn backoff_ends_by_its_timer_a_command_or_a_stop() {
        let in_backoff = || {
            let mut lc = running(spec(Restart::Always));
            ends(&mut lc, 10, 1);
            lc
        };
        let mut lc = in_backoff();
        // A stale kill timer does nothing.
        let stale = Event::Timer(TimerKind::Kill);
        assert_eq!(step(&mut lc, 20, stale), (S::Backoff, vec![]));
        for c in [Command::Start, Command::Restart] {
            let mut lc = in_backoff();
            let now = step(&mut lc, 20, cmd(c));
            assert_eq!(now, (S::Starting, vec![CancelTimer, Start]));
            assert_eq!((lc.view().restarts, lc.view().restart_at), (1, None));
        }
        let mut lc = in_backoff();
        assert_eq!(
            step(&mut lc, 20, cmd(Command::Stop)),
            (S::Stopped, vec![CancelTimer])
        );
        assert_eq!((lc.view().restarts, lc.view().restart_at), (0, None));
        let t = Event::Timer(TimerKind::Backoff);
        assert_eq!(step(&mut lc, 110, t), (S::Stopped, vec![]));
        let mut lc = in_backoff();
        let removed = step(&mut lc, 20, cmd(Command::Remove));
        assert_eq!(removed, (S::Removed, vec![CancelTimer, Remove]));
    }

    #[test]
    fn down_states_wait_for_a_command() {
        let mut stopped = running(spec(Restart::Always));
        step(&mut stopped, 1, cmd(Command::Stop));
        step(&mut stopped, 2, exit(0));
        step(&mut stopped, 2, Event::Released);
        let mut exited = running(spec(Restart::Never));
        ends(&mut exited, 2, 0);
        let mut failed = Lifecycle::new(spec(Restart::Never), vec![]);
        step(&mut failed, 0, Event::Gate(true));
        step(&mut failed, 0, Event::Started(Err("x".into())));
        for (mut lc, state) in [
            (stopped, S::Stopped),
            (exited, S::Exited),
            (failed, S::Failed),
        ] {
            for e in [
                cmd(Command::Stop),
                Event::Gate(true),
                Event::Health(Health::Unhealthy),
                exit(1),
                Event::Released,
                Event::Timer(TimerKind::Backoff),
                Event::Timer(TimerKind::Kill),
                Event::Started(Ok(())),
            ] {
                assert_eq!(
                    step(&mut lc, 3, e.clone()),
                    (state, vec![]),
                    "{state} {e:?}"
                );
            }
            let mut again = lc.clone();
            let started = step(&mut again, 4, cmd(Command::Start));
            assert_eq!(started, (S::Starting, vec![Start]));
            // Starting a stopped container is no restart; neither is a
            // `restart` of one.
            let mut again = lc.clone();
            let restarted = step(&mut again, 4, cmd(Command::Restart));
            assert_eq!(restarted, (S::Starting, vec![Start]));
            assert_eq!(again.view().restarts, 0);
            assert_eq!(
                step(&mut lc, 4, cmd(Command::Remove)),
                (S::Removed, vec![Remove])
            );
        }
    }

    #[test]
    fn health_checks_restart_an_unhealthy_run() {
        let mut lc = running(checked(Restart::OnFailure));
        let healthy = step(&mut lc, 1, Event::Health(Health::Healthy));
        assert_eq!(healthy, (S::Running, vec![]));
        assert_eq!(lc.view().health, Some(Health::Healthy));
        let sick = step(&mut lc, 2, Event::Health(Health::Unhealthy));
        let stop = vec![Signal(StopReason::Unhealthy), kill_timer()];
        assert_eq!(sick, (S::Stopping, stop));
        assert_eq!(lc.view().health, Some(Health::Unhealthy));
        let killed = Event::Exited {
            exit: Some(ChildExit::Signaled(15)),
            oom_kills: 0,
        };
        let released = step(&mut lc, 3, killed).1;
        let text = "killed by signal 15 (unhealthy)";
        assert_eq!(released, vec![CancelTimer, release(text)]);
        // Unhealthy is a failure even for on-failure.
        assert_eq!(
            step(&mut lc, 4, Event::Released),
            (S::Backoff, vec![backoff(100)])
        );
        assert_eq!(lc.view().last_exit.as_deref(), Some(text));
        assert_eq!(lc.view().health, None);
    }

    #[test]
    fn health_without_a_check_or_a_run_is_ignored() {
        let mut lc = running(spec(Restart::Always));
        let sick = step(&mut lc, 1, Event::Health(Health::Unhealthy));
        assert_eq!(sick, (S::Running, vec![]));
        assert_eq!(lc.view().health, None);
        let mut lc = running(checked(Restart::Always));
        step(&mut lc, 1, cmd(Command::Stop));
        // Recorded while it stops, no second stop.
        let sick = step(&mut lc, 1, Event::Health(Health::Unhealthy));
        assert_eq!(sick, (S::Stopping, vec![]));
        assert_eq!(lc.view().health, Some(Health::Unhealthy));
    }

    #[test]
    fn exits_name_the_signal_the_oom_kills_and_a_lost_exit() {
        let cases = [
            (Some(ChildExit::Exited(0)), 0, "exited 0"),
            (Some(ChildExit::Signaled(9)), 0, "killed by signal 9"),
            (
                Some(ChildExit::Signaled(9)),
                2,
                "killed by signal 9 (out of memory: 2 killed)",
            ),
            (None, 0, "gone"),
        ];
        for (exit, oom_kills, text) in cases {
            let mut lc = running(spec(Restart::Never));
            let e = Event::Exited { exit, oom_kills };
            assert_eq!(step(&mut lc, 1, e), (S::Running, vec![release(text)]));
            assert_eq!(step(&mut lc, 1, Event::Released), (S::Exited, vec![]));
        }
        // A lost exit counts as a kill: on-failure restarts it.
        let mut lc = running(spec(Restart::OnFailure));
        let lost = Event::Exited {
            exit: None,
            oom_kills: 0,
        };
        step(&mut lc, 1, lost);
        assert_eq!(step(&mut lc, 1, Event::Released).0, S::Backoff);
    }

    #[test]
    fn requires_stops_with_what_it_requires_and_comes_back_with_it() {
        let deps = vec![dep("base", true, false), dep("other", false, false)];
        let mut lc = Lifecycle::new(spec(Restart::Never), deps);
        step(&mut lc, 0, Event::Gate(true));
        step(&mut lc, 0, dep_is("other", S::Running, None));
        let started = step(&mut lc, 0, dep_is("base", S::Running, None));
        assert_eq!(started, (S::Starting, vec![Start]));
        step(&mut lc, 1, Event::Started(Ok(())));
        // An `after` container stopping is no reason to stop.
        let other = dep_is("other", S::Stopped, None);
        assert_eq!(step(&mut lc, 2, other), (S::Running, vec![]));
        // A restart pending is not stopped for good.
        let base = dep_is("base", S::Backoff, None);
        assert_eq!(step(&mut lc, 2, base), (S::Running, vec![]));
        for down in [S::Exited, S::Stopped, S::Failed, S::Removed] {
            let mut lc = lc.clone();
            let stop = vec![Signal(StopReason::Required), kill_timer()];
            let e = dep_is("base", down, None);
            assert_eq!(step(&mut lc, 3, e), (S::Stopping, stop), "{down}");
        }
        step(&mut lc, 3, dep_is("base", S::Stopped, None));
        step(&mut lc, 4, exit(0));
        // Waiting, one restart more, even with `restart: never`.
        assert_eq!(step(&mut lc, 5, Event::Released), (S::Waiting, vec![]));
        assert_eq!(lc.view().restarts, 1);
        step(&mut lc, 6, dep_is("other", S::Running, None));
        let back = step(&mut lc, 6, dep_is("base", S::Running, None));
        assert_eq!(back, (S::Starting, vec![Start]));
    }

    #[test]
    fn a_required_container_down_at_the_start_stops_the_new_run() {
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![dep("base", true, false)]);
        step(&mut lc, 0, Event::Gate(true));
        step(&mut lc, 0, dep_is("base", S::Running, None));
        step(&mut lc, 0, dep_is("base", S::Exited, None));
        let stop = vec![Signal(StopReason::Required), kill_timer()];
        assert_eq!(
            step(&mut lc, 1, Event::Started(Ok(()))),
            (S::Stopping, stop)
        );
    }

    #[test]
    fn commands_wait_for_a_start_or_a_stop_to_finish() {
        // A stop that comes while it starts stops the new run.
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        step(&mut lc, 0, Event::Gate(true));
        assert_eq!(step(&mut lc, 0, cmd(Command::Stop)), (S::Starting, vec![]));
        let stop = vec![Signal(StopReason::Stop), kill_timer()];
        assert_eq!(
            step(&mut lc, 1, Event::Started(Ok(()))),
            (S::Stopping, stop)
        );

        // A start that comes while it stops starts it again after.
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Stop));
        assert_eq!(step(&mut lc, 2, cmd(Command::Start)), (S::Stopping, vec![]));
        step(&mut lc, 3, exit(0));
        assert_eq!(
            step(&mut lc, 3, Event::Released),
            (S::Starting, vec![Start])
        );
        assert_eq!(lc.view().restarts, 0);

        // A stop that comes while it restarts wins.
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Restart));
        step(&mut lc, 2, cmd(Command::Stop));
        step(&mut lc, 3, exit(0));
        assert_eq!(step(&mut lc, 3, Event::Released), (S::Stopped, vec![]));
        assert_eq!(lc.view().restarts, 1);

        // All that waited apply before a start: a restart then a stop
        // that came while it stopped leave it stopped, never started.
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, cmd(Command::Stop));
        step(&mut lc, 2, cmd(Command::Restart));
        step(&mut lc, 2, cmd(Command::Stop));
        step(&mut lc, 3, exit(0));
        assert_eq!(step(&mut lc, 3, Event::Released), (S::Stopped, vec![]));

        // Between an exit and its release, too; and in order.
        let mut lc = running(spec(Restart::Always));
        step(&mut lc, 1, exit(0));
        assert_eq!(step(&mut lc, 1, cmd(Command::Stop)), (S::Running, vec![]));
        assert_eq!(step(&mut lc, 1, cmd(Command::Start)), (S::Running, vec![]));
        let (state, actions) = step(&mut lc, 2, Event::Released);
        assert_eq!(state, S::Starting);
        assert_eq!(actions, vec![backoff(100), CancelTimer, Start]);

        // A removal while it starts: removed once the run is over.
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        step(&mut lc, 0, Event::Gate(true));
        step(&mut lc, 0, cmd(Command::Remove));
        let failed = step(&mut lc, 1, Event::Started(Err("x".into())));
        assert_eq!(
            failed,
            (S::Removed, vec![backoff(100), CancelTimer, Remove])
        );
    }

    #[test]
    fn events_out_of_place_are_ignored() {
        let mut lc = Lifecycle::new(spec(Restart::Always), vec![]);
        for e in [
            Event::Started(Ok(())),
            exit(0),
            Event::Released,
            Event::Timer(TimerKind::Kill),
            Event::Timer(TimerKind::Backoff),
            Event::Health(Health::Unhealthy),
        ] {
            assert_eq!(step(&mut lc, 0, e.clone()), (S::Waiting, vec![]), "{e:?}");
        }
        let mut lc = running(spec(Restart::Always));
        assert_eq!(step(&mut lc, 1, Event::Released), (S::Running, vec![]));
        assert_eq!(
            step(&mut lc, 1, Event::Started(Ok(()))),
            (S::Running, vec![])
        );
        step(&mut lc, 1, exit(0));
        assert_eq!(step(&mut lc, 1, exit(1)), (S::Running, vec![]));
    }
}

#[cfg(test)]
mod props;
