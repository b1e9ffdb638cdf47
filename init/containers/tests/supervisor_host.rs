//! Privileged: the supervisor runs real containers on the host from a
//! busybox root (a cgroup2 mounted for the test) and its status shows what
//! `keelctl ps` and the VM tests read: states, pids, restart counts, last
//! exits, errors, health. A thread of the test reaps children as keel's
//! PID 1 does and hands their exits to the supervisor. Skips when not root,
//! or when busybox or cgroup2 is not available.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use keel_api::ContainerStatus;
use keel_config::model::{Container, Healthcheck, NetMode, Probe, Restart};
use keel_containers::runtime::ImageRoot;
use keel_containers::supervisor::{Exits, Settings, Supervisor};

/// A container of busybox with keel's defaults, for the tests to change.
fn a_container() -> Container {
    Container::new(
        "test",
        keel_config::model::ImageRef::try_from("busybox").unwrap(),
    )
}

mod common;

use common::{setup, Env};

/// Every test's containers are children of this process: one reaper for
/// them all (it reaps any child, as keel does).
fn exits() -> Arc<Exits> {
    static EXITS: OnceLock<Arc<Exits>> = OnceLock::new();
    EXITS
        .get_or_init(|| {
            let exits = Arc::new(Exits::default());
            let e = exits.clone();
            std::thread::spawn(move || loop {
                keel_sys::signal::reap_all(|pid, x| e.exited(pid, x));
                std::thread::sleep(Duration::from_millis(5));
            });
            exits
        })
        .clone()
}

fn settings(env: &Env, gate: Option<tokio::sync::watch::Receiver<bool>>) -> Settings {
    let layer = env.layer.clone();
    Settings {
        dirs: env.dirs.clone(),
        logs: env.dirs.state.with_file_name("logs"),
        images: Arc::new(move |_: &Container| {
            Ok(ImageRoot {
                layers: vec![layer.clone()],
                ..Default::default()
            })
        }),
        confiner: None,
        bridge: None,
        start_gate: gate,
    }
}

fn sh(name: &str, script: &str) -> Container {
    Container {
        name: name.into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![script.into()],
        network: NetMode::None,
        restart: Restart::Always,
        backoff_ms: 100,
        backoff_max_ms: 400,
        backoff_reset_ms: 60_000,
        stop_grace_ms: 300,
        ..a_container()
    }
}

fn status(sup: &Supervisor, name: &str) -> ContainerStatus {
    sup.status()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

async fn wait_until(
    sup: &Supervisor,
    name: &str,
    what: &str,
    f: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = status(sup, name);
        if f(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "{name}: not {what}: {c:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn stop_start_restart_and_remove() {
    let Some(env) = setup("sup-cmds") else { return };
    runtime().block_on(async {
        let sup = Supervisor::start(
            settings(&env, None),
            vec![sh("svc", "echo up; exec sleep 1000")],
            exits(),
        );
        let c = wait_until(&sup, "svc", "running", |c| c.state == "running").await;
        assert!(c.pid.is_some(), "{c:?}");
        assert_eq!((c.restarts, c.last_exit, c.error), (0, None, None));

        // sleep, the init of its pid namespace, ignores SIGTERM: killed
        // when the grace ends.
        sup.action("svc", "stop").unwrap();
        let c = wait_until(&sup, "svc", "stopped", |c| c.state == "stopped").await;
        assert_eq!(c.pid, None);
        assert_eq!(c.last_exit.as_deref(), Some("killed by signal 9"));
        assert_eq!(c.restarts, 0);
        // A stopped container stays stopped (its policy is `always`).
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(status(&sup, "svc").state, "stopped");
        sup.action("svc", "stop").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(status(&sup, "svc").state, "stopped");

        sup.action("svc", "start").unwrap();
        let c = wait_until(&sup, "svc", "running", |c| c.state == "running").await;
        assert_eq!(c.restarts, 0, "a start is not a restart");
        let pid = c.pid;
        sup.action("svc", "start").unwrap();
        sup.action("svc", "restart").unwrap();
        let c = wait_until(&sup, "svc", "restarted", |c| {
            c.state == "running" && c.pid != pid
        })
        .await;
        assert_eq!(c.restarts, 1);
        assert!(sup.logs("svc", 0).unwrap().text.contains("up\nup\nup\n"));
        assert!(sup.action("svc", "pause").is_err());

        let state = env.dirs.state.join("svc");
        assert!(state.exists());
        let r = sup.reconcile(vec![]);
        assert_eq!(r.removed, vec!["svc".to_string()]);
        assert!(sup.status().is_empty());
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.exists() {
            assert!(Instant::now() < deadline, "the writable layer stays");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn restart_policies_and_backoff() {
    let Some(env) = setup("sup-policy") else {
        return;
    };
    runtime().block_on(async {
        let never = Container {
            restart: Restart::Never,
            ..sh("never", "exit 4")
        };
        let once = Container {
            restart: Restart::OnFailure,
            ..sh("once", "exit 0")
        };
        let missing = Container {
            command: vec!["nosuch".into()],
            args: vec![],
            restart: Restart::Never,
            ..sh("missing", "")
        };
        let sup = Supervisor::start(
            settings(&env, None),
            vec![sh("crashy", "exit 3"), never, once, missing],
            exits(),
        );
        let c = wait_until(&sup, "never", "exited", |c| c.state == "exited").await;
        assert_eq!(c.last_exit.as_deref(), Some("exited 4"));
        let c = wait_until(&sup, "once", "exited", |c| c.state == "exited").await;
        assert_eq!(c.last_exit.as_deref(), Some("exited 0"));
        assert_eq!(c.restarts, 0);
        let c = wait_until(&sup, "missing", "failed", |c| c.state == "failed").await;
        assert!(c.error.unwrap().contains("not found"));

        // 100, 200, 400, 400 ms: each backoff shows its delay, never
        // more than the cap.
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while status(&sup, "crashy").restarts < 4 {
            let c = status(&sup, "crashy");
            if c.state == "backoff" {
                let ms = c.restart_in_ms.expect("a backoff has its restart time");
                assert!(ms <= 400, "{c:?}");
                seen += 1;
            } else {
                assert_eq!(c.restart_in_ms, None, "{c:?}");
            }
            assert!(Instant::now() < deadline, "{c:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(seen > 0);
        let c = status(&sup, "crashy");
        assert_eq!(c.last_exit.as_deref(), Some("exited 3"));
        // A stop in backoff ends the restarts.
        let c = wait_until(&sup, "crashy", "in backoff", |c| c.state == "backoff").await;
        sup.action("crashy", "stop").unwrap();
        let s = wait_until(&sup, "crashy", "stopped", |c| c.state == "stopped").await;
        assert_eq!((s.restarts, s.restart_in_ms), (c.restarts, None));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(status(&sup, "crashy").state, "stopped");
        sup.stop_all(Duration::from_secs(5)).await;
    });
}

#[test]
fn requires_and_after() {
    let Some(env) = setup("sup-deps") else { return };
    runtime().block_on(async {
        let checked = Container {
            healthcheck: Some(Healthcheck {
                probe: Probe::Command(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "test -e /tmp/ok".into(),
                ]),
                interval_ms: 100,
                timeout_ms: 2000,
                retries: 1000,
                start_period_ms: 0,
            }),
            ..sh("checked", "sleep 1; echo > /tmp/ok; exec sleep 1000")
        };
        let waiter = Container {
            after: vec!["checked".into()],
            ..sh("waiter", "exec sleep 1000")
        };
        let base = sh("base", "exec sleep 1000");
        let dependent = Container {
            requires: vec!["base".into()],
            ..sh("dependent", "exec sleep 1000")
        };
        let (gate_tx, gate) = tokio::sync::watch::channel(false);
        let sup = Supervisor::start(
            settings(&env, Some(gate)),
            vec![checked, waiter, base, dependent],
            exits(),
        );
        // Nothing starts while the gate is shut.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(sup.status().iter().all(|c| c.state == "waiting"));
        gate_tx.send(true).unwrap();

        // `after` a container with a health check: not before it is
        // healthy.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The waiter first: once it has left "waiting", the checked
            // container was healthy and stays so, whenever it is read after.
            // (Read the other way round, a status taken just before the
            // health check passed could be set against a waiter that
            // started just after.)
            let w = status(&sup, "waiter");
            let c = status(&sup, "checked");
            if w.state != "waiting" {
                assert_eq!(c.health.as_deref(), Some("healthy"), "{w:?} before {c:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{w:?}, {c:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_until(&sup, "waiter", "running", |c| c.state == "running").await;

        // `requires`: the dependent stops with base, waits, and comes back
        // with it.
        let before = wait_until(&sup, "dependent", "running", |c| c.state == "running").await;
        sup.action("base", "stop").unwrap();
        let c = wait_until(&sup, "dependent", "waiting", |c| {
            c.state == "waiting" && c.pid.is_none()
        })
        .await;
        assert_eq!(c.restarts, 1);
        assert_eq!(c.last_exit.as_deref(), Some("killed by signal 9"));
        assert_eq!(status(&sup, "base").state, "stopped");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(&sup, "dependent").state, "waiting");
        sup.action("base", "start").unwrap();
        let after = wait_until(&sup, "dependent", "running again", |c| c.state == "running").await;
        assert_ne!(before.pid, after.pid);
        sup.stop_all(Duration::from_secs(5)).await;
        assert!(sup.status().iter().all(|c| c.pid.is_none()));
    });
}

/// A config that replaces a container replaces what `requires` it too (it
/// would stop with it anyway), and what only comes `after` it keeps
/// running but watches the new entry. (Both used to keep watching the old,
/// removed entry: a `requires` dependent stopped for good, an `after` one
/// never started again.)
#[test]
fn replacing_a_dependency_replaces_or_rewires_its_dependents() {
    let Some(env) = setup("sup-replace") else {
        return;
    };
    runtime().block_on(async {
        let base = |v: &str| sh("base", &format!("echo {v}; exec sleep 1000"));
        let dependent = Container {
            requires: vec!["base".into()],
            ..sh("dependent", "exec sleep 1000")
        };
        let waiter = Container {
            after: vec!["dependent".into()],
            ..sh("waiter", "exec sleep 1000")
        };
        let other = sh("other", "exec sleep 1000");
        let v1 = vec![base("v1"), dependent.clone(), waiter.clone(), other.clone()];
        let sup = Supervisor::start(settings(&env, None), v1, exits());
        for n in ["base", "dependent", "waiter", "other"] {
            wait_until(&sup, n, "running", |c| c.state == "running").await;
        }
        let pid = |n: &str| status(&sup, n).pid;
        let (d1, w1, o1) = (pid("dependent"), pid("waiter"), pid("other"));
        let v2 = vec![base("v2"), dependent.clone(), waiter.clone(), other.clone()];
        let plan = sup.diff(&v2);
        assert_eq!(plan.replaced, ["base", "dependent"], "{plan:?}");
        assert_eq!(plan.unchanged, ["waiter", "other"], "{plan:?}");
        let done = sup.reconcile(v2);
        assert_eq!(done.replaced, plan.replaced);
        for n in ["base", "dependent"] {
            wait_until(&sup, n, "running again", |c| c.state == "running").await;
        }
        assert_ne!(pid("dependent"), d1);
        assert_eq!(pid("waiter"), w1, "after-only: kept running");
        assert_eq!(pid("other"), o1);
        // The kept waiter watches the new dependent: stopped and started,
        // it runs again (it waited for the removed one for good before).
        sup.action("waiter", "stop").unwrap();
        wait_until(&sup, "waiter", "stopped", |c| c.state == "stopped").await;
        sup.action("waiter", "start").unwrap();
        wait_until(&sup, "waiter", "running again", |c| c.state == "running").await;
        // The new dependent watches the new base.
        sup.action("base", "stop").unwrap();
        wait_until(&sup, "dependent", "waiting", |c| c.state == "waiting").await;
        sup.action("base", "start").unwrap();
        wait_until(&sup, "dependent", "running", |c| c.state == "running").await;
        // A dependency that gains a health check: what comes after it is
        // replaced too (its readiness now waits for healthy).
        let checked = Container {
            healthcheck: Some(Healthcheck {
                probe: Probe::Command(vec!["/bin/true".into()]),
                interval_ms: 100,
                timeout_ms: 2000,
                retries: 3,
                start_period_ms: 0,
            }),
            ..dependent
        };
        let plan = sup.diff(&[base("v2"), checked, waiter, other]);
        assert_eq!(plan.replaced, ["dependent", "waiter"], "{plan:?}");
        sup.stop_all(Duration::from_secs(5)).await;
    });
}

#[test]
fn an_unhealthy_container_is_restarted() {
    let Some(env) = setup("sup-sick") else { return };
    runtime().block_on(async {
        let sick = Container {
            healthcheck: Some(Healthcheck {
                probe: Probe::Command(vec!["/bin/sh".into(), "-c".into(), "exit 1".into()]),
                interval_ms: 100,
                timeout_ms: 2000,
                retries: 2,
                start_period_ms: 0,
            }),
            ..sh("sick", "exec sleep 1000")
        };
        let sup = Supervisor::start(settings(&env, None), vec![sick], exits());
        let c = wait_until(&sup, "sick", "restarted", |c| c.restarts >= 1).await;
        assert_eq!(
            c.last_exit.as_deref(),
            Some("killed by signal 9 (unhealthy)")
        );
        sup.stop_all(Duration::from_secs(5)).await;
    });
}
