//! The restart policy as a pure function: given how a run ended, what to do
//! next. The supervisor carries out the answer.
//!
//! Backoff: the first restart waits `backoff_ms` (10 s), each next one
//! twice as long, capped at `backoff_max_ms` (5 min). A run that stayed up
//! `backoff_reset_ms` (10 min) counts as healthy: the delay starts over.

use keel_config::model::{Container, Restart};

/// How a run of a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The process exited with this code.
    Exited(i32),
    /// Killed by this signal (an OOM kill is SIGKILL).
    Signaled(i32),
    /// It could not be started at all.
    StartFailed,
    /// Killed by its health check.
    Unhealthy,
    /// Stopped by the operator or the shutdown: never restarted.
    Stopped,
}

impl Ended {
    pub fn success(self) -> bool {
        matches!(self, Ended::Exited(0) | Ended::Stopped)
    }
}

/// The restart state carried from run to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    /// Restarts in a row without a healthy run between them.
    pub streak: u32,
}

/// What the supervisor does after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RestartAfter(u64),
    Stay,
}

/// Decide what follows a run that lasted `up_ms` and ended as `ended`.
pub fn after_run(c: &Container, b: &mut Backoff, ended: Ended, up_ms: u64) -> Next {
    if ended == Ended::Stopped {
        return Next::Stay;
    }
    let restart = match c.restart {
        Restart::Always => true,
        Restart::OnFailure => !ended.success(),
        Restart::Never => false,
    };
    if !restart {
        return Next::Stay;
    }
    if up_ms >= c.backoff_reset_ms {
        b.streak = 0;
    }
    let first = c.backoff_ms.max(1);
    let delay = first
        .saturating_mul(1u64 << b.streak.min(40))
        .min(c.backoff_max_ms.max(first));
    b.streak = b.streak.saturating_add(1);
    Next::RestartAfter(delay)
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

    fn c(restart: Restart) -> Container {
        Container {
            restart,
            backoff_ms: 10_000,
            backoff_max_ms: 300_000,
            backoff_reset_ms: 600_000,
            ..a_container()
        }
    }

    #[test]
    fn delays_double_to_the_cap_and_reset_after_a_long_run() {
        let c = c(Restart::Always);
        let mut b = Backoff::default();
        let d: Vec<Next> = (0..7)
            .map(|_| after_run(&c, &mut b, Ended::Exited(1), 1000))
            .collect();
        let ms = [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000];
        assert_eq!(d, ms.map(Next::RestartAfter));
        assert_eq!(
            after_run(&c, &mut b, Ended::Exited(1), 600_000),
            Next::RestartAfter(10_000)
        );
        assert_eq!(
            after_run(&c, &mut b, Ended::Exited(1), 1),
            Next::RestartAfter(20_000)
        );
    }

    #[test]
    fn policies() {
        let mut b = Backoff::default();
        for (r, e, restart) in [
            (Restart::Always, Ended::Exited(0), true),
            (Restart::Always, Ended::Stopped, false),
            (Restart::OnFailure, Ended::Exited(0), false),
            (Restart::OnFailure, Ended::Exited(2), true),
            (Restart::OnFailure, Ended::Signaled(9), true),
            (Restart::OnFailure, Ended::Unhealthy, true),
            (Restart::OnFailure, Ended::StartFailed, true),
            (Restart::Never, Ended::Exited(2), false),
        ] {
            let n = after_run(&c(r), &mut b, e, 0);
            assert_eq!(matches!(n, Next::RestartAfter(_)), restart, "{r:?} {e:?}");
        }
    }

    #[test]
    fn delay_never_overflows() {
        let c = c(Restart::Always);
        let mut b = Backoff { streak: u32::MAX };
        assert_eq!(
            after_run(&c, &mut b, Ended::Exited(1), 0),
            Next::RestartAfter(300_000)
        );
    }
}
