//! What the benchmarks share: a series of samples with median, min and max.

/// Samples of one figure.
#[derive(Default)]
pub struct Series(pub Vec<f64>);

impl Series {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
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

/// Duration of boot task `name` in the node's timeline (NaN when absent).
pub fn task_ms(s: &keel_api::Status, name: &str) -> f64 {
    s.boot.task(name).map(|t| t.duration_ms).unwrap_or(f64::NAN)
}
