//! Property tests of the lifecycle on random event sequences, through a
//! model of the supervisor's shell: it answers each start (as the random
//! outcomes say) and each release at once, fires the armed timer when the
//! clock passes it, and reports a run's exit and health only while it is
//! up, as `supervisor::run_loop` does. After each event it checks:
//!
//! - the backoff never decreases before its reset (a run up
//!   `backoff_reset_ms`), and stays between `backoff_ms` and its cap;
//! - `requires`: the container is never running while a container it
//!   requires is down (the event that showed it down stopped the run);
//! - a container stopped by a command (or removed) is not started again
//!   until a start or restart command, and a down state moves only on a
//!   command;
//! - `after`: it starts only when the gate is open and every dependency is
//!   running, and healthy when it has a health check; and it does not stay
//!   waiting when it could start;
//! - the timer the shell holds is the one the view shows; restarts never
//!   go down; `removed` is the end.

use std::collections::VecDeque;

use keel_config::model::{Healthcheck, Probe, Restart};
use proptest::prelude::*;

use super::*;

/// A container of busybox with keel's defaults, for the tests to change.
fn a_container() -> Container {
    Container::new(
        "test",
        keel_config::model::ImageRef::try_from("busybox").unwrap(),
    )
}

#[derive(Debug, Clone)]
enum Op {
    Command(Command),
    Gate(bool),
    Dependency {
        i: usize,
        state: ContainerState,
        health: Option<Health>,
    },
    Health(Health),
    Exit(Option<ChildExit>, u64),
    /// Time passes: the armed timer fires when due.
    Advance(u64),
}

/// The supervisor as the lifecycle sees it, and what the properties need
/// to remember.
struct Model {
    lc: Lifecycle,
    spec: Container,
    deps: Vec<(Dependency, Option<ContainerState>, Option<Health>)>,
    gate: bool,
    now: u64,
    timer: Option<(u64, TimerKind)>,
    /// A run is up: started, not yet exited.
    live: bool,
    run_started: u64,
    outcomes: Vec<bool>,
    starts: usize,
    /// The last command of start, restart, stop, remove was a stop or a
    /// removal.
    held: bool,
    removed: bool,
    /// How long the run whose end the policy judges next was up.
    last_up: u64,
    last_backoff: Option<u64>,
}

fn ready(d: &(Dependency, Option<ContainerState>, Option<Health>)) -> bool {
    d.1 == Some(ContainerState::Running)
        && match d.2 {
            None => !d.0.checked,
            Some(h) => h == Health::Healthy,
        }
}

impl Model {
    fn new(spec: Container, deps: Vec<Dependency>, outcomes: Vec<bool>) -> Model {
        Model {
            lc: Lifecycle::new(spec.clone(), deps.clone()),
            spec,
            deps: deps.into_iter().map(|d| (d, None, None)).collect(),
            gate: false,
            now: 0,
            timer: None,
            live: false,
            run_started: 0,
            outcomes,
            starts: 0,
            held: false,
            removed: false,
            last_up: 0,
            last_backoff: None,
        }
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::Command(c) => {
                self.held = match c {
                    Command::Start | Command::Restart => false,
                    Command::Stop | Command::Remove => true,
                };
                self.feed(Event::Command(c));
            }
            Op::Gate(open) => {
                self.gate = open;
                self.feed(Event::Gate(open));
            }
            Op::Dependency { i, state, health } => {
                let Some(d) = self.deps.get_mut(i) else {
                    return;
                };
                (d.1, d.2) = (Some(state), health);
                let name = d.0.name.clone();
                self.feed(Event::Dependency {
                    name,
                    state,
                    health,
                });
            }
            Op::Health(h) => {
                if self.live && self.spec.healthcheck.is_some() {
                    self.feed(Event::Health(h));
                }
            }
            Op::Exit(exit, oom_kills) => {
                if self.live {
                    self.live = false;
                    self.feed(Event::Exited { exit, oom_kills });
                }
            }
            Op::Advance(ms) => {
                let until = self.now + ms;
                while let Some((at, kind)) = self.timer.filter(|(at, _)| *at <= until) {
                    self.now = at;
                    self.timer = None;
                    self.feed(Event::Timer(kind));
                }
                self.now = until;
            }
        }
        self.settled();
    }

    /// Feed one event, carry out its actions, feed their answers.
    fn feed(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let before = self.lc.view().clone();
            let step = self.lc.handle(self.now, event.clone());
            let after = self.lc.view().clone();
            assert_eq!(step.from, before.state);
            assert_eq!(step.to, after.state);
            assert!(after.restarts >= before.restarts, "{event:?}");
            if self.removed {
                assert_eq!(after.state, ContainerState::Removed);
                assert!(step.actions.is_empty(), "{event:?}: {step:?}");
            }
            let moved_by_command = matches!(
                event,
                Event::Command(Command::Start | Command::Restart | Command::Remove)
            );
            if before.state.is_down() && !moved_by_command {
                assert_eq!(after, before, "{event:?} moved a down container");
                assert!(step.actions.is_empty(), "{event:?}: {step:?}");
            }
            for a in step.actions {
                if let Some(answer) = self.act(a) {
                    queue.push_back(answer);
                }
            }
        }
    }

    fn act(&mut self, a: Action) -> Option<Event> {
        let state = self.lc.state();
        match a {
            Action::Start => {
                assert!(!self.held, "started after a stop");
                assert!(self.gate, "started with the gate shut");
                for d in &self.deps {
                    assert!(ready(d), "started before {d:?} was ready");
                }
                assert_eq!(state, ContainerState::Starting);
                let ok = self.outcomes[self.starts % self.outcomes.len()];
                self.starts += 1;
                if ok {
                    self.live = true;
                    self.run_started = self.now;
                    Some(Event::Started(Ok(())))
                } else {
                    // The policy judges a failed start as up 0 ms.
                    self.last_up = 0;
                    Some(Event::Started(Err("no".into())))
                }
            }
            Action::Signal(_) => {
                assert!(self.live && state == ContainerState::Stopping);
                None
            }
            Action::Kill => {
                assert!(self.live && state == ContainerState::Stopping);
                None
            }
            Action::ArmTimer { kind, delay_ms } => {
                if kind == TimerKind::Backoff {
                    self.check_backoff(delay_ms);
                }
                self.timer = Some((self.now + delay_ms, kind));
                None
            }
            Action::CancelTimer => {
                assert!(self.timer.is_some(), "cancelled no timer");
                self.timer = None;
                None
            }
            Action::Release { last_exit } => {
                assert!(!self.live);
                assert!(!last_exit.is_empty());
                self.last_up = self.now - self.run_started;
                Some(Event::Released)
            }
            Action::Remove => {
                assert_eq!(state, ContainerState::Removed);
                assert!(!self.live && !self.removed);
                self.removed = true;
                None
            }
        }
    }

    /// Never less than the last delay, unless the run before it was up
    /// long enough to reset it.
    fn check_backoff(&mut self, d: u64) {
        let first = self.spec.backoff_ms.max(1);
        let cap = self.spec.backoff_max_ms.max(first);
        assert!((first..=cap).contains(&d), "{d} outside {first}..={cap}");
        if self.last_up >= self.spec.backoff_reset_ms {
            assert_eq!(d, first, "no reset after {} ms up", self.last_up);
        } else if let Some(prev) = self.last_backoff {
            assert!(d >= prev, "backoff {d} after {prev} without a reset");
        }
        self.last_backoff = Some(d);
    }

    /// What holds between events.
    fn settled(&self) {
        use ContainerState as S;
        let v = self.lc.view();
        // The shell answers starts and releases at once.
        assert!(!matches!(v.state, S::Starting));
        assert_eq!(self.live, matches!(v.state, S::Running | S::Stopping));
        if v.state == S::Running {
            for d in self.deps.iter().filter(|d| d.0.required) {
                assert!(
                    !d.1.is_some_and(ContainerState::is_down),
                    "running while {d:?} is down"
                );
            }
        }
        if self.held {
            assert!(
                matches!(
                    v.state,
                    S::Stopping | S::Stopped | S::Exited | S::Failed | S::Removed
                ),
                "{} after a stop",
                v.state
            );
        }
        if v.state == S::Waiting {
            let could = self.gate && self.deps.iter().all(ready);
            assert!(
                !could,
                "waiting with the gate open and every dependency ready"
            );
        }
        match self.timer {
            Some((at, TimerKind::Backoff)) => {
                assert_eq!(v.state, S::Backoff);
                assert_eq!(v.restart_at, Some(at));
            }
            Some((_, TimerKind::Kill)) => {
                assert_eq!(v.state, S::Stopping);
                assert_eq!(v.restart_at, None);
            }
            None => {
                assert_ne!(v.state, S::Backoff);
                assert_eq!(v.restart_at, None);
            }
        }
        if v.health.is_some() {
            assert!(self.live && self.spec.healthcheck.is_some());
        }
    }
}

fn spec() -> impl Strategy<Value = Container> {
    let restart = prop_oneof![
        Just(Restart::Always),
        Just(Restart::OnFailure),
        Just(Restart::Never)
    ];
    (
        restart,
        0u64..500,
        0u64..3000,
        0u64..5000,
        0u64..300,
        any::<bool>(),
    )
        .prop_map(|(restart, first, max, reset, grace, check)| Container {
            name: "c".into(),
            restart,
            backoff_ms: first,
            backoff_max_ms: max,
            backoff_reset_ms: reset,
            stop_grace_ms: grace,
            healthcheck: check.then_some(Healthcheck {
                probe: Probe::Tcp(80),
                interval_ms: 100,
                timeout_ms: 100,
                retries: 1,
                start_period_ms: 0,
            }),
            ..a_container()
        })
}

fn deps() -> impl Strategy<Value = Vec<Dependency>> {
    prop::collection::vec((any::<bool>(), any::<bool>()), 0..4).prop_map(|flags| {
        flags
            .into_iter()
            .enumerate()
            .map(|(i, (required, checked))| Dependency {
                name: format!("d{i}"),
                required,
                checked,
            })
            .collect()
    })
}

fn state() -> impl Strategy<Value = ContainerState> {
    prop::sample::select(ContainerState::ALL.to_vec())
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Starting),
        Just(Health::Healthy),
        Just(Health::Unhealthy)
    ]
}

fn exit() -> impl Strategy<Value = Option<ChildExit>> {
    prop_oneof![
        4 => (0i32..3).prop_map(|c| Some(ChildExit::Exited(c))),
        2 => prop_oneof![Just(9), Just(15)].prop_map(|s| Some(ChildExit::Signaled(s))),
        1 => Just(None),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => Just(Command::Start),
        4 => Just(Command::Stop),
        4 => Just(Command::Restart),
        1 => Just(Command::Remove),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => command().prop_map(Op::Command),
        1 => prop::bool::weighted(0.8).prop_map(Op::Gate),
        4 => (0usize..4, state(), prop::option::of(health()))
            .prop_map(|(i, state, health)| Op::Dependency { i, state, health }),
        2 => health().prop_map(Op::Health),
        3 => (exit(), prop_oneof![4 => Just(0u64), 1 => 1u64..3]).prop_map(|(x, o)| Op::Exit(x, o)),
        4 => prop_oneof![0u64..50, 0u64..6000].prop_map(Op::Advance),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        command().prop_map(Event::Command),
        any::<bool>().prop_map(Event::Gate),
        (0usize..4, state(), prop::option::of(health())).prop_map(|(i, state, health)| {
            Event::Dependency {
                name: format!("d{i}"),
                state,
                health,
            }
        }),
        any::<bool>().prop_map(|ok| Event::Started(if ok { Ok(()) } else { Err("no".into()) })),
        health().prop_map(Event::Health),
        prop_oneof![Just(TimerKind::Backoff), Just(TimerKind::Kill)].prop_map(Event::Timer),
        exit().prop_map(|exit| Event::Exited { exit, oom_kills: 0 }),
        Just(Event::Released),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lifecycles_keep_their_invariants(
        spec in spec(),
        deps in deps(),
        outcomes in prop::collection::vec(prop::bool::weighted(0.8), 1..8),
        ops in prop::collection::vec(op(), 0..300),
    ) {
        let mut m = Model::new(spec, deps, outcomes);
        for op in ops {
            m.op(op);
        }
    }

    /// Any event in any order, answers or not: nothing panics, a stopped
    /// container is not started, `removed` is the end, and the view holds
    /// together.
    #[test]
    fn events_out_of_order_break_nothing(
        spec in spec(),
        deps in deps(),
        events in prop::collection::vec(event(), 0..300),
    ) {
        let mut lc = Lifecycle::new(spec, deps);
        let mut held = false;
        let mut now = 0;
        for e in events {
            now += 7;
            if let Event::Command(c) = &e {
                held = matches!(c, Command::Stop | Command::Remove);
            }
            let before = lc.view().clone();
            let step = lc.handle(now, e.clone());
            let v = lc.view();
            prop_assert!(v.restarts >= before.restarts);
            if before.state == ContainerState::Removed {
                prop_assert!(step.actions.is_empty());
                prop_assert_eq!(v.state, ContainerState::Removed);
            }
            if held {
                prop_assert!(!step.actions.contains(&Action::Start), "{:?}", e);
            }
            prop_assert_eq!(v.restart_at.is_some(), v.state == ContainerState::Backoff);
            // (A start deferred while a start failed starts it again in
            // the same step: starting to starting.)
            let started = step.actions.contains(&Action::Start);
            prop_assert!(!started || v.state == ContainerState::Starting);
            if before.state != ContainerState::Starting && v.state == ContainerState::Starting {
                prop_assert!(started);
            }
        }
    }
}
