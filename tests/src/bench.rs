//! What the benchmarks share: a series of samples with median, min and max,
//! the table's rows, and reading the work floor's console.
//!
//! A failed run is an error, never a number: a sample that is not a finite
//! figure (a missing task, an absent field, an unparsable line) stops the
//! benchmark with a message naming it, instead of becoming a NaN that sorts
//! last and skews a median.

/// Samples of one figure.
#[derive(Default)]
pub struct Series(Vec<f64>);

impl Series {
    /// Add a sample; panics, naming `what`, when it is not a finite number.
    pub fn push(&mut self, what: &str, v: f64) {
        assert!(
            v.is_finite(),
            "{what}: {v} is not a figure: a failed run stops the benchmark"
        );
        self.0.push(v);
    }
    /// Add a sample that may be missing; panics naming `what` when it is.
    pub fn push_some(&mut self, what: &str, v: Option<f64>) {
        match v {
            Some(v) => self.push(what, v),
            None => panic!("{what}: missing: a failed run stops the benchmark"),
        }
    }
    /// The samples, in the order they were taken.
    pub fn samples(&self) -> &[f64] {
        &self.0
    }
    /// The newest sample (0 before the first).
    pub fn last(&self) -> f64 {
        self.0.last().copied().unwrap_or_default()
    }
    fn sorted(&self) -> Vec<f64> {
        assert!(!self.0.is_empty(), "a figure with no samples");
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    pub fn min(&self) -> f64 {
        self.sorted()[0]
    }
    pub fn max(&self) -> f64 {
        self.sorted()[self.0.len() - 1]
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"median": self.median(), "min": self.min(), "max": self.max(), "runs": self.0})
    }
    /// `[median, min, max]` formatted with one decimal.
    pub fn cols(&self) -> [String; 3] {
        [self.median(), self.min(), self.max()].map(|v| format!("{v:.1}"))
    }
    /// `median (min-max)` in one cell, with `decimals` decimals; the median
    /// alone when there is one sample.
    pub fn spread(&self, decimals: usize) -> String {
        let (m, lo, hi) = (self.median(), self.min(), self.max());
        if self.0.len() > 1 {
            format!("{m:.decimals$} ({lo:.decimals$}-{hi:.decimals$})")
        } else {
            format!("{m:.decimals$}")
        }
    }
}

/// What the work floor (tests/helpers work-floor.rs) printed on a console:
/// its total and the time to the mounted root, both ms since it started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkFloor {
    pub done_ms: f64,
    pub root_mounted_ms: f64,
}

/// Read the work floor's lines off `console`. A step that failed (a
/// `work-floor: ... failed` line), or a missing figure, is an error naming
/// it: a failed floor is never a number.
pub fn work_floor(console: &str) -> Result<WorkFloor, String> {
    let lines: Vec<&str> = console
        .lines()
        .filter_map(|l| l.split_once("work-floor: ").map(|(_, r)| r))
        .collect();
    if let Some(f) = lines.iter().find(|l| l.contains("failed")) {
        return Err(format!("the work floor failed: {f}"));
    }
    let ms = |prefix: &str| -> Result<f64, String> {
        lines
            .iter()
            .find_map(|l| l.split_once(prefix))
            .and_then(|(_, r)| r.trim().strip_suffix(" ms")?.trim().parse().ok())
            .ok_or_else(|| format!("no work-floor line with {prefix:?} on the console"))
    };
    Ok(WorkFloor {
        done_ms: ms("done in ")?,
        root_mounted_ms: ms("root mounted in ")?,
    })
}

/// The environment variable `name` parsed, or `default` when it is unset
/// or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Size of a file, panicking with its path.
pub fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .map(|m| m.len())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Print one row of a benchmark table.
pub fn row(name: &str, cols: [String; 3], target: &str) {
    println!(
        "{name:<40} {:>10} {:>10} {:>10}  {target}",
        cols[0], cols[1], cols[2]
    );
}

/// A row with one value.
pub fn one(v: String) -> [String; 3] {
    [v, String::new(), String::new()]
}

/// The header row of a benchmark table.
pub fn header() {
    row(
        "figure",
        ["median", "min", "max"].map(String::from),
        "target",
    );
}

/// Write `json` to target/bench/NAME and say where.
pub fn write_json(name: &str, json: &serde_json::Value) {
    let dir = crate::root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(json).expect("encode"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("\nwrote {}", path.display());
}

/// Duration of boot task `name` in the node's timeline; panics when the
/// timeline has no such task.
pub fn task_ms(s: &keel_api::Status, name: &str) -> f64 {
    s.boot
        .task(name)
        .map(|t| t.duration_ms)
        .unwrap_or_else(|| panic!("boot task {name} is not in the node's timeline"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_series() {
        let mut s = Series::default();
        for v in [3.0, 1.0, 2.0] {
            s.push("x", v);
        }
        assert_eq!((s.median(), s.min(), s.max()), (2.0, 1.0, 3.0));
        s.push("x", 10.0);
        assert_eq!(s.median(), 2.5);
    }

    #[test]
    #[should_panic(expected = "not a figure")]
    fn a_nan_sample_stops_the_benchmark() {
        Series::default().push("ready", f64::NAN);
    }

    #[test]
    #[should_panic(expected = "no samples")]
    fn an_empty_series_has_no_median() {
        Series::default().median();
    }

    #[test]
    fn the_work_floor_is_read_and_its_failures_are_errors() {
        let ok = "work-floor: mounts     1.000 ms\nwork-floor: root mounted in 12.500 ms\n\
                  work-floor: started at 500.000 ms, done in 40.250 ms\n";
        assert_eq!(
            work_floor(ok),
            Ok(WorkFloor {
                done_ms: 40.25,
                root_mounted_ms: 12.5
            })
        );
        let failed = "work-floor: mounts     1.000 ms\n\
                      work-floor: loop + dm-verity   failed: ENOENT\n";
        assert!(work_floor(failed).unwrap_err().contains("dm-verity"));
        assert!(work_floor("keel: something else\n").is_err());
    }
}
