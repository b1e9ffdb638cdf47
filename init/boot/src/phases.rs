//! Boot as data: phases of named tasks, run in order and timed.
//!
//! Each task's start (time since the kernel booted), duration and outcome are
//! logged on the console and kept in a `Timeline` that the API serves. A
//! failing `Required` task stops the boot (the caller hands the error to the
//! guard); a failing `Optional` task is logged and the boot goes on degraded.

use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a task's failure stops the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
}

/// A named step of the boot over a context `C`, failing with `E`.
pub struct Task<C, E> {
    pub name: &'static str,
    pub need: Need,
    pub run: fn(&mut C) -> Result<(), E>,
    /// The tasks whose output (a value they leave in the context, or an
    /// effect on the system) this one takes: they must come before it in
    /// the table, which [`check_order`] proves.
    pub after: &'static [&'static str],
}

impl<C, E> Task<C, E> {
    pub const fn required(name: &'static str, run: fn(&mut C) -> Result<(), E>) -> Task<C, E> {
        Task {
            name,
            need: Need::Required,
            run,
            after: &[],
        }
    }

    pub const fn optional(name: &'static str, run: fn(&mut C) -> Result<(), E>) -> Task<C, E> {
        Task {
            name,
            need: Need::Optional,
            run,
            after: &[],
        }
    }

    /// This task takes the output of `tasks`.
    pub const fn after(self, tasks: &'static [&'static str]) -> Task<C, E> {
        Task {
            after: tasks,
            ..self
        }
    }
}

/// Why a table's order does not hold: a task that takes the output of a
/// task the table lacks or runs later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("boot table: {task} takes the output of {missing}, which is not in the table")]
    Missing {
        task: &'static str,
        missing: &'static str,
    },
    #[error("boot table: {task} takes the output of {later}, which runs after it")]
    Later {
        task: &'static str,
        later: &'static str,
    },
    #[error("boot table: two tasks are named {0}")]
    Twice(&'static str),
}

/// Every task's `after` names a task that runs before it, and names are
/// unique. The hand-overs through the context are declared in the table
/// and checked here, not left to comments.
pub fn check_order<C, E>(table: &[Phase<C, E>]) -> Result<(), OrderError> {
    let order: Vec<&'static str> = table
        .iter()
        .flat_map(|p| p.tasks.iter().map(|t| t.name))
        .collect();
    for (i, name) in order.iter().enumerate() {
        if order[..i].contains(name) {
            return Err(OrderError::Twice(name));
        }
    }
    for (i, t) in table.iter().flat_map(|p| p.tasks.iter()).enumerate() {
        for &before in t.after {
            match order.iter().position(|n| *n == before) {
                None => {
                    return Err(OrderError::Missing {
                        task: t.name,
                        missing: before,
                    })
                }
                Some(j) if j >= i => {
                    return Err(OrderError::Later {
                        task: t.name,
                        later: before,
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// A named list of tasks.
pub struct Phase<C: 'static, E: 'static> {
    pub name: &'static str,
    pub tasks: &'static [Task<C, E>],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub name: String,
    pub start_ms: f64,
    pub duration_ms: f64,
    /// `None` when the task succeeded, else its error message.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseRecord {
    pub name: String,
    pub start_ms: f64,
    pub duration_ms: f64,
    pub tasks: Vec<TaskRecord>,
}

/// The boot timeline: when PID 1 started (time since kernel boot), each
/// phase and task, and when the node became ready.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Timeline {
    pub pid1_start_ms: f64,
    pub ready_ms: Option<f64>,
    pub phases: Vec<PhaseRecord>,
}

/// The boot stopped at a required task.
#[derive(Debug, thiserror::Error)]
#[error("boot phase {phase}, task {task}: {message}")]
pub struct BootFailed {
    pub phase: &'static str,
    pub task: &'static str,
    pub message: String,
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Timeline {
    /// The record of the task called `name`, in any phase.
    pub fn task(&self, name: &str) -> Option<&TaskRecord> {
        self.phases
            .iter()
            .flat_map(|p| &p.tasks)
            .find(|t| t.name == name)
    }

    pub fn new(pid1_start: Duration) -> Self {
        Timeline {
            pid1_start_ms: ms(pid1_start),
            ready_ms: None,
            phases: Vec::new(),
        }
    }

    /// PID 1 start → ready, once ready.
    pub fn pid1_to_ready_ms(&self) -> Option<f64> {
        self.ready_ms
            .map(|r| ((r - self.pid1_start_ms) * 1e3).round() / 1e3)
    }
}

/// Run `phases` in order over `ctx`, timing each task with `clock` (time since
/// boot) and recording it in `timeline`; `log` receives one line per task.
pub fn run<C, E: Display>(
    phases: &[Phase<C, E>],
    ctx: &mut C,
    timeline: &mut Timeline,
    clock: &dyn Fn() -> Duration,
    log: &dyn Fn(bool, &str),
) -> Result<(), BootFailed> {
    for phase in phases {
        let p_start = clock();
        let mut rec = PhaseRecord {
            name: phase.name.to_string(),
            start_ms: ms(p_start),
            duration_ms: 0.0,
            tasks: Vec::with_capacity(phase.tasks.len()),
        };
        let mut failed = None;
        for task in phase.tasks {
            let t_start = clock();
            let result = (task.run)(ctx);
            let t_end = clock();
            let dur = ms(t_end.saturating_sub(t_start));
            let error = result.err().map(|e| e.to_string());
            match &error {
                None => log(
                    false,
                    &format!(
                        "[{:9.3} ms] {}/{} ok in {dur:.3} ms",
                        ms(t_start),
                        phase.name,
                        task.name
                    ),
                ),
                Some(e) => log(
                    true,
                    &format!(
                        "[{:9.3} ms] {}/{} FAILED in {dur:.3} ms: {e}",
                        ms(t_start),
                        phase.name,
                        task.name
                    ),
                ),
            }
            rec.tasks.push(TaskRecord {
                name: task.name.to_string(),
                start_ms: ms(t_start),
                duration_ms: dur,
                error: error.clone(),
            });
            if let (Some(message), Need::Required) = (error, task.need) {
                failed = Some(BootFailed {
                    phase: phase.name,
                    task: task.name,
                    message,
                });
                break;
            }
        }
        rec.duration_ms = ms(clock().saturating_sub(p_start));
        timeline.phases.push(rec);
        if let Some(f) = failed {
            return Err(f);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Default)]
    struct Ctx {
        ran: Vec<&'static str>,
    }

    fn a(c: &mut Ctx) -> Result<(), String> {
        c.ran.push("a");
        Ok(())
    }
    fn b(c: &mut Ctx) -> Result<(), String> {
        c.ran.push("b");
        Err("disk on fire".into())
    }
    fn never(c: &mut Ctx) -> Result<(), String> {
        c.ran.push("never");
        Ok(())
    }

    static OPTIONAL: [Phase<Ctx, String>; 2] = [
        Phase {
            name: "one",
            tasks: &[Task::required("A", a), Task::optional("B", b)],
        },
        Phase {
            name: "two",
            tasks: &[Task::required("Never", never)],
        },
    ];

    static REQUIRED: [Phase<Ctx, String>; 2] = [
        Phase {
            name: "one",
            tasks: &[Task::required("B", b), Task::required("A", a)],
        },
        Phase {
            name: "two",
            tasks: &[Task::required("Never", never)],
        },
    ];

    fn fake_clock() -> impl Fn() -> Duration {
        let t = Cell::new(0u64);
        move || {
            t.set(t.get() + 500);
            Duration::from_micros(t.get())
        }
    }

    #[test]
    fn hand_overs_run_after_their_source() {
        static GOOD: [Phase<Ctx, String>; 2] = [
            Phase {
                name: "one",
                tasks: &[Task::required("A", a), Task::optional("B", b).after(&["A"])],
            },
            Phase {
                name: "two",
                tasks: &[Task::required("C", never).after(&["A", "B"])],
            },
        ];
        assert_eq!(check_order(&GOOD), Ok(()));
        static LATER: [Phase<Ctx, String>; 2] = [
            Phase {
                name: "one",
                tasks: &[Task::required("A", a).after(&["C"]), Task::optional("B", b)],
            },
            Phase {
                name: "two",
                tasks: &[Task::required("C", never)],
            },
        ];
        assert_eq!(
            check_order(&LATER).unwrap_err().to_string(),
            "boot table: A takes the output of C, which runs after it"
        );
        static ITSELF: [Phase<Ctx, String>; 1] = [Phase {
            name: "one",
            tasks: &[Task::required("A", a).after(&["A"])],
        }];
        assert!(matches!(
            check_order(&ITSELF),
            Err(OrderError::Later { .. })
        ));
        static MISSING: [Phase<Ctx, String>; 1] = [Phase {
            name: "one",
            tasks: &[Task::required("A", a).after(&["Gone"])],
        }];
        assert_eq!(
            check_order(&MISSING).unwrap_err().to_string(),
            "boot table: A takes the output of Gone, which is not in the table"
        );
        static TWICE: [Phase<Ctx, String>; 1] = [Phase {
            name: "one",
            tasks: &[Task::required("A", a), Task::optional("A", b)],
        }];
        assert_eq!(check_order(&TWICE), Err(OrderError::Twice("A")));
    }

    #[test]
    fn optional_failure_is_recorded_and_boot_goes_on() {
        let mut ctx = Ctx::default();
        let mut tl = Timeline::new(Duration::from_millis(460));
        let lines = std::cell::RefCell::new(Vec::new());
        run(&OPTIONAL, &mut ctx, &mut tl, &fake_clock(), &|err, l| {
            lines.borrow_mut().push((err, l.to_string()))
        })
        .unwrap();
        assert_eq!(ctx.ran, ["a", "b", "never"]);
        assert_eq!(tl.phases.len(), 2);
        assert_eq!(tl.phases[0].tasks[1].error.as_deref(), Some("disk on fire"));
        assert_eq!(tl.phases[0].tasks[0].duration_ms, 0.5);
        let lines = lines.into_inner();
        assert!(
            lines[1].0 && lines[1].1.contains("one/B FAILED"),
            "{lines:?}"
        );
        assert!(!lines[0].0 && lines[0].1.contains("one/A ok"));
    }

    #[test]
    fn required_failure_stops_the_boot_with_its_name() {
        let mut ctx = Ctx::default();
        let mut tl = Timeline::new(Duration::ZERO);
        let err = run(&REQUIRED, &mut ctx, &mut tl, &fake_clock(), &|_, _| {}).unwrap_err();
        assert_eq!(ctx.ran, ["b"]);
        assert_eq!(err.to_string(), "boot phase one, task B: disk on fire");
        assert_eq!(tl.phases.len(), 1);
    }

    #[test]
    fn pid1_to_ready() {
        let mut tl = Timeline::new(Duration::from_micros(460_250));
        assert_eq!(tl.pid1_to_ready_ms(), None);
        tl.ready_ms = Some(472.5);
        assert_eq!(tl.pid1_to_ready_ms(), Some(12.25));
    }
}
