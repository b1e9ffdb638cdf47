//! Checking a history: validate it, split it by key, search each key (steps 1,
//! 2 and 7 of the crate docs) and turn a failed search into a report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use crate::history::Op;
use crate::model::{apply, Input, Output};
use crate::search::{search, Compiled, DeadEnd, Limit, Outcome};

/// The default search steps per key. A step is one try of one candidate (tens
/// of ns in a release build); the linearizable 5,000-op histories of the tests
/// need under 3 million, so this is a few seconds of work and leaves room for
/// histories an order of magnitude harder.
pub const DEFAULT_STEPS_PER_KEY: u64 = 50_000_000;

/// How much searching a check may do before it answers [`CheckError::Undecided`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps allowed for each key; deterministic, so a result reproduces.
    pub steps_per_key: u64,
    /// Wall-clock time allowed for the whole check.
    pub time: Option<Duration>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps_per_key: DEFAULT_STEPS_PER_KEY,
            time: None,
        }
    }
}

/// Which part of a [`Budget`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Steps,
    Time,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exhausted::Steps => "step budget",
            Exhausted::Time => "time budget",
        })
    }
}

/// What a successful check looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keys (independent registers) checked.
    pub keys: usize,
    /// Operations checked, unknown outcomes included.
    pub ops: usize,
    /// Operations with an unknown outcome.
    pub unknown: usize,
    /// Search steps taken over all keys.
    pub steps: u64,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.keys += other.keys;
        self.ops += other.ops;
        self.unknown += other.unknown;
        self.steps += other.steps;
    }
}

/// An op of the history with its position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Index into the checked history.
    pub index: usize,
    pub op: Op,
}

/// An op that could have come after the longest linearizable prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the checked history.
    pub index: usize,
    pub op: Op,
    pub rejected: Rejection,
}

/// Why a [`Candidate`] could not come next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Its recorded answer is not what the register answers there.
    Output { model: Output },
    /// Its answer fits (or is unknown), but no order of the remaining ops
    /// linearizes after it.
    DeadEnd,
}

/// Why one key's history is not linearizable: where the search got furthest
/// and what it could not get past.
///
/// `Debug` prints the report, not the fields: the prefix can hold thousands
/// of ops, and an `unwrap()` in a campaign should show something readable.
#[derive(Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// Operations the key has, unknown outcomes included.
    pub ops: usize,
    /// The longest linearizable prefix the search found, in linearization order.
    pub prefix: Vec<Placed>,
    /// The register after that prefix (`None`: absent).
    pub value: Option<String>,
    /// Index of the earliest-returning op left out of the prefix: it had to be
    /// placed before anything called after it returned, and could not be.
    pub blocker: usize,
    /// Every op that could have come right after the prefix, with why it could
    /// not; the blocker is among them.
    pub candidates: Vec<Candidate>,
}

/// How many prefix ops a report prints: the ones just before the dead end are
/// what explain it; the whole prefix is in [`Violation::prefix`].
const PREFIX_SHOWN: usize = 8;

impl Violation {
    /// The report without its first words ("key ... is not linearizable: "),
    /// for [`CheckError::Undecided`] to show where its search got furthest.
    pub fn details(&self) -> impl fmt::Display + '_ {
        Details(self)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {:?} is not linearizable: {}",
            self.key,
            self.details()
        )
    }
}

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct Details<'a>(&'a Violation);

impl fmt::Display for Details<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "at most {} of its {} ops linearize, leaving it ",
            v.prefix.len(),
            v.ops
        )?;
        match &v.value {
            Some(value) => write!(f, "holding {value:?}")?,
            None => write!(f, "absent")?,
        }
        let shown = v.prefix.len().saturating_sub(PREFIX_SHOWN);
        if !v.prefix.is_empty() {
            write!(f, "\n  the last of them, in linearization order:")?;
            for placed in &v.prefix[shown..] {
                write!(f, "\n    #{} {}", placed.index, placed.op)?;
            }
        }
        write!(
            f,
            "\n  op #{} must come before anything called after it returned, \
             and none of the ops that could come next works:",
            v.blocker
        )?;
        for candidate in &v.candidates {
            write!(f, "\n    #{} {}: ", candidate.index, candidate.op)?;
            match (&candidate.rejected, &candidate.op.output) {
                (Rejection::Output { model }, _) => write!(f, "the register answers {model} here")?,
                (Rejection::DeadEnd, Some(_)) => {
                    write!(f, "fits here, but nothing linearizes after it")?
                }
                (Rejection::DeadEnd, None) => write!(f, "taking effect here does not help")?,
            }
        }
        Ok(())
    }
}

/// The tail of [`CheckError::Undecided`]'s message.
fn furthest_note(furthest: &Option<Box<Violation>>) -> String {
    match furthest {
        Some(v) => format!("; where the search got furthest, {}", v.details()),
        None => String::new(),
    }
}

/// Why a check did not pass: a history that was recorded wrongly, a key that
/// is not linearizable, or a key the budget did not suffice for.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "op #{index} (client {client}, key {key:?}) returns at {ret}, before its call at {call}"
    )]
    ReturnBeforeCall {
        index: usize,
        client: u64,
        key: String,
        call: u64,
        ret: u64,
    },
    #[error("op #{index} (client {client}, key {key:?}) returned at {ret} without an output")]
    MissingOutput {
        index: usize,
        client: u64,
        key: String,
        ret: u64,
    },
    #[error("op #{index} (client {client}, key {key:?}) has an output but no return time")]
    OutputWithoutReturn {
        index: usize,
        client: u64,
        key: String,
    },
    #[error("op #{index} (client {client}, key {key:?}): {input} cannot answer {output}")]
    ImpossibleOutput {
        index: usize,
        client: u64,
        key: String,
        input: Input,
        output: Output,
    },
    #[error("{0}")]
    NotLinearizable(Box<Violation>),
    /// The budget ran out. `furthest` is the deepest dead end met so far,
    /// where a violation most likely is, reported as one would be.
    #[error(
        "key {key:?} is undecided: the {limit} ran out after {steps} search steps, \
         with at most {longest} of its {ops} ops linearized{}",
        furthest_note(.furthest)
    )]
    Undecided {
        key: String,
        ops: usize,
        steps: u64,
        longest: usize,
        limit: Exhausted,
        furthest: Option<Box<Violation>>,
    },
}

/// [`check_with`] with the default [`Budget`].
pub fn check(history: &[Op]) -> Result<Stats, CheckError> {
    check_with(history, &Budget::default())
}

/// Checks that the history is linearizable, key by key, in key order.
///
/// A violation on any key is returned at once; a key that runs out of budget
/// does not stop the others, so a violation elsewhere still wins over it.
pub fn check_with(history: &[Op], budget: &Budget) -> Result<Stats, CheckError> {
    let limit = limit(budget);
    let mut keys: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        validate(index, op)?;
        keys.entry(&op.key).or_default().push(index);
    }
    let mut total = Stats::default();
    let mut undecided = None;
    for (key, indices) in keys {
        match check_ops(history, key, indices, &limit) {
            Ok(stats) => total.add(stats),
            Err(e @ CheckError::Undecided { .. }) => {
                undecided.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    undecided.map_or(Ok(total), Err)
}

/// Checks only the ops on `key`; reported indices still refer to `history`.
pub fn check_key(history: &[Op], key: &str, budget: &Budget) -> Result<Stats, CheckError> {
    let mut indices = Vec::new();
    for (index, op) in history.iter().enumerate().filter(|(_, op)| op.key == key) {
        validate(index, op)?;
        indices.push(index);
    }
    check_ops(history, key, indices, &limit(budget))
}

fn limit(budget: &Budget) -> Limit {
    Limit {
        steps: budget.steps_per_key,
        deadline: budget.time.map(|t| Instant::now() + t),
    }
}

/// Refuses ops the client could not have recorded: they would otherwise show
/// up as confusing violations.
fn validate(index: usize, op: &Op) -> Result<(), CheckError> {
    let (client, key) = (op.client, op.key.clone());
    match (op.ret, &op.output) {
        (Some(ret), _) if ret < op.call => Err(CheckError::ReturnBeforeCall {
            index,
            client,
            key,
            call: op.call,
            ret,
        }),
        (Some(ret), None) => Err(CheckError::MissingOutput {
            index,
            client,
            key,
            ret,
        }),
        (None, Some(_)) => Err(CheckError::OutputWithoutReturn { index, client, key }),
        (Some(_), Some(output)) if !op.input.can_return(output) => {
            Err(CheckError::ImpossibleOutput {
                index,
                client,
                key,
                input: op.input.clone(),
                output: output.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Step 2 and 7 for one key: compile its ops, search, report.
fn check_ops(
    history: &[Op],
    key: &str,
    mut indices: Vec<usize>,
    limit: &Limit,
) -> Result<Stats, CheckError> {
    indices.sort_by_key(|&i| (history[i].call, i));
    let unknown = indices
        .iter()
        .filter(|&&i| history[i].ret.is_none())
        .count();
    // A get with an unknown outcome changes nothing and has no answer to check:
    // it fits anywhere, so the search need not carry it.
    let searched: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| history[i].ret.is_some() || history[i].input != Input::Get)
        .collect();
    let mut values = Values::new(searched.iter().map(|&i| &history[i]));
    let compiled: Vec<Compiled> = searched
        .iter()
        .map(|&i| {
            let op = &history[i];
            Compiled {
                call: op.call,
                ret: op.ret,
                input: op.input.map(|v| values.id(v)),
                output: op.output.as_ref().map(|o| o.map(|v| values.id(v))),
            }
        })
        .collect();
    let (outcome, steps) = search(&compiled, limit);
    match outcome {
        Outcome::Linearizable => Ok(Stats {
            keys: usize::from(!indices.is_empty()),
            ops: indices.len(),
            unknown,
            steps,
        }),
        Outcome::NotLinearizable(dead_end) => {
            let violation = report(history, key, indices.len(), &searched, dead_end);
            Err(CheckError::NotLinearizable(Box::new(violation)))
        }
        Outcome::OutOfBudget {
            limit,
            longest,
            deepest,
        } => Err(CheckError::Undecided {
            key: key.to_string(),
            ops: indices.len(),
            steps,
            longest,
            limit,
            furthest: deepest.map(|dead_end| {
                let ops = indices.len();
                Box::new(report(history, key, ops, &searched, dead_end))
            }),
        }),
    }
}

/// Translates the search's dead end back to the history's ops, and says for
/// each candidate why it could not come next.
fn report(
    history: &[Op],
    key: &str,
    ops: usize,
    searched: &[usize],
    dead_end: DeadEnd,
) -> Violation {
    let placed = |local: usize| Placed {
        index: searched[local],
        op: history[searched[local]].clone(),
    };
    let prefix: Vec<Placed> = dead_end.prefix.iter().map(|&local| placed(local)).collect();
    // Replayed on the real values: the search made unread values one.
    let value = prefix
        .iter()
        .fold(None, |state, p| apply(&state, &p.op.input).0);
    let candidates = dead_end
        .candidates
        .iter()
        .map(|&local| {
            let Placed { index, op } = placed(local);
            let (_, model) = apply(&value, &op.input);
            let rejected = match &op.output {
                Some(output) if *output != model => Rejection::Output { model },
                _ => Rejection::DeadEnd,
            };
            Candidate {
                index,
                op,
                rejected,
            }
        })
        .collect();
    Violation {
        key: key.to_string(),
        ops,
        prefix,
        value,
        blocker: searched[dead_end.blocker],
        candidates,
    }
}

/// Numbers a key's values so the search compares and hashes `u32`s.
///
/// A value that no op reads (no get answered it, no cas or cad names it as
/// `prev`) can only ever show as "the key is present": every such value gets
/// the one id [`Values::UNREAD`]. The register then behaves exactly as before
/// for every op, and writes of unread values, typically writes that timed out
/// and never took effect, become interchangeable, which the search exploits.
struct Values<'a> {
    read: HashSet<&'a str>,
    ids: HashMap<&'a str, u32>,
}

impl<'a> Values<'a> {
    const UNREAD: u32 = 0;

    fn new(ops: impl Iterator<Item = &'a Op>) -> Values<'a> {
        let mut read = HashSet::new();
        for op in ops {
            match (&op.input, &op.output) {
                (Input::Cas { prev, .. } | Input::Cad { prev }, _) => {
                    read.insert(prev.as_str());
                }
                (Input::Get, Some(Output::Value(value))) => {
                    read.insert(value.as_str());
                }
                _ => {}
            }
        }
        Values {
            read,
            ids: HashMap::new(),
        }
    }

    fn id(&mut self, value: &'a str) -> u32 {
        if !self.read.contains(value) {
            return Values::UNREAD;
        }
        let next = self.ids.len() + 1;
        // A key's history holds far fewer than 2^32 values.
        *self.ids.entry(value).or_insert(next as u32)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::testgen::{brute_force, nearly_linearizable, random_small, simulate, Rng, Sim};

    const K: &str = "/k";

    fn done(client: u64, call: u64, ret: u64, input: Input, output: Output) -> Op {
        Op::returned(client, K, call, ret, input, output)
    }

    fn unknown(client: u64, call: u64, input: Input) -> Op {
        Op::unknown(client, K, call, input)
    }

    fn set(value: &str) -> Input {
        Input::Set {
            value: value.into(),
        }
    }

    fn val(value: &str) -> Output {
        Output::Value(value.into())
    }

    fn violation(history: &[Op]) -> Violation {
        match check(history) {
            Err(CheckError::NotLinearizable(v)) => *v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn sequential_ops_linearize() {
        let cas = |prev: &str, value: &str| Input::Cas {
            prev: prev.into(),
            value: value.into(),
        };
        let inputs = [
            (set("a"), Output::Ok),
            (Input::Get, val("a")),
            (Input::Create { value: "b".into() }, Output::Exists),
            (Input::Update { value: "b".into() }, Output::Ok),
            (cas("b", "c"), Output::Ok),
            (cas("b", "d"), Output::Failed),
            (Input::Cad { prev: "x".into() }, Output::Failed),
            (Input::Cad { prev: "c".into() }, Output::Ok),
            (Input::Get, Output::NotFound),
            (Input::Delete, Output::NotFound),
            (Input::Update { value: "x".into() }, Output::NotFound),
            (cas("x", "y"), Output::NotFound),
            (Input::Create { value: "x".into() }, Output::Ok),
            (Input::Delete, Output::Ok),
        ];
        let history: Vec<Op> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, (input, output))| {
                let t = 10 * i as u64;
                done(i as u64 % 3, t, t + 5, input, output)
            })
            .collect();
        let stats = check(&history).unwrap();
        assert_eq!((stats.keys, stats.ops, stats.unknown), (1, 14, 0));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in ["a", "b"] {
            let history = [
                done(1, 0, 10, set("a"), Output::Ok),
                done(1, 20, 40, set("b"), Output::Ok),
                done(2, 25, 35, Input::Get, val(seen)),
            ];
            check(&history).unwrap();
        }
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_reported() {
        let history = [
            done(1, 0, 10, set("a"), Output::Ok),
            done(2, 20, 30, set("b"), Output::Ok),
            done(3, 40, 50, Input::Get, val("a")),
        ];
        let v = violation(&history);
        assert_eq!(v.key, K);
        assert_eq!(v.ops, 3);
        let prefix: Vec<usize> = v.prefix.iter().map(|p| p.index).collect();
        assert_eq!(prefix, [0, 1]);
        assert_eq!(v.value.as_deref(), Some("b"));
        assert_eq!(v.blocker, 2);
        assert_eq!(
            v.candidates,
            [Candidate {
                index: 2,
                op: history[2].clone(),
                rejected: Rejection::Output { model: val("b") },
            }]
        );
        let report = v.to_string();
        assert!(
            report.starts_with("key \"/k\" is not linearizable"),
            "{report}"
        );
        assert!(
            report.contains("#2 client 3 [40, 50] get = \"a\": the register answers \"b\" here"),
            "{report}"
        );
    }

    #[test]
    fn a_lost_write_is_reported() {
        let history = [
            done(1, 0, 10, Input::Create { value: "a".into() }, Output::Ok),
            done(2, 20, 30, Input::Get, Output::NotFound),
        ];
        let v = violation(&history);
        assert_eq!((v.blocker, v.value.as_deref()), (1, Some("a")));
    }

    #[test]
    fn a_cas_cannot_succeed_twice_from_one_value() {
        let cas = |value: &str| Input::Cas {
            prev: "0".into(),
            value: value.into(),
        };
        let mut history = vec![
            done(1, 0, 10, set("0"), Output::Ok),
            done(1, 20, 40, cas("1"), Output::Ok),
            done(2, 25, 45, cas("2"), Output::Ok),
        ];
        let v = violation(&history);
        assert_eq!(v.prefix.len(), 2);
        let rejected: Vec<_> = v.candidates.iter().map(|c| &c.rejected).collect();
        assert_eq!(
            rejected,
            [&Rejection::Output {
                model: Output::Failed
            }]
        );
        // One of the two failing is fine, whichever it is.
        history[1].output = Some(Output::Failed);
        check(&history).unwrap();
    }

    #[test]
    fn an_unknown_write_explains_an_otherwise_impossible_read() {
        let read_b = done(2, 100, 110, Input::Get, val("b"));
        let acked = done(1, 0, 10, set("a"), Output::Ok);
        let history = [acked.clone(), unknown(1, 15, set("b")), read_b.clone()];
        let stats = check(&history).unwrap();
        assert_eq!((stats.ops, stats.unknown), (3, 1));
        // Without it, or called only after the read returned, nothing wrote "b".
        violation(&[acked.clone(), read_b.clone()]);
        violation(&[acked.clone(), read_b.clone(), unknown(1, 111, set("b"))]);
        // An unknown cas takes effect only if its precondition held.
        let cas = |prev: &str| Input::Cas {
            prev: prev.into(),
            value: "b".into(),
        };
        check(&[acked.clone(), unknown(1, 15, cas("a")), read_b.clone()]).unwrap();
        violation(&[acked, unknown(1, 15, cas("x")), read_b]);
    }

    #[test]
    fn an_unknown_op_may_never_happen() {
        let history = [
            done(1, 0, 10, set("a"), Output::Ok),
            unknown(1, 15, Input::Delete),
            unknown(2, 16, set("b")),
            unknown(3, 17, Input::Get),
            done(3, 100, 110, Input::Get, val("a")),
            done(2, 200, 210, Input::Get, val("a")),
        ];
        check(&history).unwrap();
    }

    #[test]
    fn an_unknown_op_takes_effect_at_most_once() {
        let history = [
            done(1, 0, 10, set("a"), Output::Ok),
            unknown(1, 15, set("b")),
            done(2, 20, 30, Input::Get, val("b")),
            done(3, 40, 50, set("c"), Output::Ok),
            done(2, 60, 70, Input::Get, val("b")),
        ];
        assert_eq!(violation(&history).blocker, 4);
    }

    #[test]
    fn failed_ops_leave_the_register_alone() {
        let mut history = vec![
            done(1, 0, 10, set("a"), Output::Ok),
            done(
                2,
                20,
                30,
                Input::Create { value: "b".into() },
                Output::Exists,
            ),
            done(3, 40, 50, Input::Cad { prev: "b".into() }, Output::Failed),
            done(1, 60, 70, Input::Get, val("a")),
        ];
        check(&history).unwrap();
        history[3].output = Some(val("b"));
        violation(&history);
        history[3].output = Some(Output::NotFound);
        violation(&history);
    }

    #[test]
    fn touching_intervals_count_as_concurrent() {
        let mut history = vec![
            done(1, 0, 10, set("a"), Output::Ok),
            done(2, 10, 20, Input::Get, Output::NotFound),
        ];
        check(&history).unwrap();
        history[1].call = 11;
        violation(&history);
    }

    #[test]
    fn keys_are_checked_independently() {
        let on = |key: &str, mut op: Op| {
            op.key = key.into();
            op
        };
        let mut history = vec![
            on("/a", done(1, 0, 10, set("1"), Output::Ok)),
            on("/b", done(2, 20, 30, Input::Get, Output::NotFound)),
            on("/a", done(2, 40, 50, Input::Get, val("1"))),
            on("/b", done(1, 60, 70, set("2"), Output::Ok)),
        ];
        let stats = check(&history).unwrap();
        assert_eq!((stats.keys, stats.ops), (2, 4));
        // A read of /b that sees /a's value.
        history.push(on("/b", done(3, 80, 90, Input::Get, val("1"))));
        let v = violation(&history);
        assert_eq!((v.key.as_str(), v.blocker), ("/b", 4));
        // check_key looks at one key only and keeps the history's indices.
        let budget = Budget::default();
        assert_eq!(check_key(&history, "/a", &budget).unwrap().ops, 2);
        match check_key(&history, "/b", &budget) {
            Err(CheckError::NotLinearizable(v)) => assert_eq!(v.blocker, 4),
            other => panic!("expected a violation on /b, got {other:?}"),
        }
        assert_eq!(
            check_key(&history, "/c", &budget).unwrap(),
            Stats::default()
        );
    }

    #[test]
    fn malformed_ops_are_refused() {
        let ok = done(1, 0, 10, set("a"), Output::Ok);
        let mut early = ok.clone();
        early.ret = Some(5);
        early.call = 6;
        let mut silent = ok.clone();
        silent.output = None;
        let mut answered = unknown(1, 0, set("a"));
        answered.output = Some(Output::Ok);
        let impossible = done(1, 0, 10, Input::Get, Output::Exists);
        let errors: Vec<String> = [early, silent, answered, impossible]
            .into_iter()
            .map(|op| check(&[ok.clone(), op]).unwrap_err().to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "op #1 (client 1, key \"/k\") returns at 5, before its call at 6",
                "op #1 (client 1, key \"/k\") returned at 10 without an output",
                "op #1 (client 1, key \"/k\") has an output but no return time",
                "op #1 (client 1, key \"/k\"): get cannot answer exists",
            ]
        );
    }

    /// The search's shortcuts (the memo, unknown ops only in chains that an
    /// answered op needs, one of several like unknown ops, unread values made
    /// one) must not change its answer: on thousands of short histories,
    /// linearizable or not, it agrees with trying every order.
    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        type Generator = fn(&mut Rng) -> Vec<Op>;
        let generators: [(&str, Generator); 2] = [
            ("random", random_small),
            ("nearly linearizable", nearly_linearizable),
        ];
        for (name, generate) in generators {
            let mut rng = Rng::new(7);
            let (mut yes, mut no) = (0, 0);
            for case in 0..20_000 {
                let history = generate(&mut rng);
                let expected = brute_force(&history);
                let got = match check(&history) {
                    Ok(_) => true,
                    Err(CheckError::NotLinearizable(_)) => false,
                    Err(e) => panic!("{name} case {case}: {e}"),
                };
                assert_eq!(got, expected, "{name} case {case}: {history:#?}");
                if expected {
                    yes += 1;
                } else {
                    no += 1;
                }
            }
            // Both answers must be common for the comparison to mean anything.
            assert!(
                yes > 1000 && no > 1000,
                "{name}: {yes} linearizable, {no} not"
            );
        }
    }

    /// Simulated runs of a linearizable register: many small ones with several
    /// keys, unknown outcomes and few values (so cas succeeds and reads are
    /// ambiguous).
    fn small_runs() -> impl Iterator<Item = (Rng, Vec<Op>)> {
        (0..64).map(|seed| {
            let mut rng = Rng::new(seed);
            let sim = Sim {
                clients: 5,
                ops_per_client: 40,
                keys: 3,
                values: 3,
                unknown_percent: 10,
            };
            let history = simulate(&mut rng, &sim);
            (rng, history)
        })
    }

    #[test]
    fn simulated_linearizable_histories_pass() {
        for (seed, (_, history)) in small_runs().enumerate() {
            let stats = check(&history).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(stats.ops, 200);
            assert!(stats.unknown > 0, "seed {seed} has no unknown op");
        }
    }

    #[test]
    fn simulated_histories_with_a_read_of_a_never_written_value_fail() {
        for (seed, (mut rng, mut history)) in small_runs().enumerate() {
            let reads: Vec<usize> = (0..history.len())
                .filter(|&i| history[i].input == Input::Get && history[i].ret.is_some())
                .collect();
            let mutated = reads[rng.below(reads.len() as u64) as usize];
            history[mutated].output = Some(val("never written"));
            match check(&history) {
                Err(CheckError::NotLinearizable(v)) => {
                    assert_eq!(v.key, history[mutated].key, "seed {seed}");
                    assert!(
                        v.candidates.iter().any(|c| c.index == mutated),
                        "seed {seed}: {v}"
                    );
                }
                other => panic!("seed {seed}: expected a violation, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_spent_budget_leaves_the_key_undecided() {
        let (_, history) = small_runs().next().unwrap();
        let budget = Budget {
            steps_per_key: 10,
            time: None,
        };
        match check_with(&history, &budget) {
            Err(CheckError::Undecided {
                steps: 10,
                limit: Exhausted::Steps,
                ..
            }) => {}
            other => panic!("expected undecided, got {other:?}"),
        }
    }

    /// The size the fault-injection campaign needs: 5,000 ops on one key from
    /// 8 concurrent clients, 1% of them with an unknown outcome, with fresh
    /// values (as a campaign writes) and with 4 values (every read ambiguous).
    /// The time budget turns a slow check into a failure; the time is printed.
    #[test]
    fn five_thousand_ops_on_one_key_from_eight_clients() {
        for values in [0, 4] {
            let history = campaign_sized(values, 1);
            let start = Instant::now();
            let stats = check_with(&history, &campaign_budget()).unwrap();
            let elapsed = start.elapsed();
            assert_eq!((stats.keys, stats.ops), (1, 5000));
            println!(
                "5000 ops, 8 clients, {} unknown, values {values}: linearizable in {elapsed:?} \
                 ({} steps)",
                stats.unknown, stats.steps
            );
        }
    }

    /// A read late in a 5,000-op run that returns a value never written: the
    /// search has to rule out every order of everything before it.
    #[test]
    fn a_bad_read_late_in_five_thousand_ops_is_found() {
        let (history, bad) = with_bad_late_read(campaign_sized(0, 0));
        let start = Instant::now();
        let v = match check_with(&history, &campaign_budget()) {
            Err(CheckError::NotLinearizable(v)) => v,
            other => panic!("expected a violation, got {other:?}"),
        };
        assert_eq!(v.blocker, bad);
        println!(
            "5000 ops, bad late read: violation found in {:?}",
            start.elapsed()
        );
    }

    /// With unknown outcomes, ruling out every order is exponential in the
    /// worst case; a run that exhausts its budget still names the op it got
    /// stuck on.
    #[test]
    fn an_undecided_check_names_where_it_got_stuck() {
        let (history, bad) = with_bad_late_read(campaign_sized(4, 1));
        let budget = Budget {
            steps_per_key: 1_000_000,
            time: None,
        };
        let result = check_with(&history, &budget);
        let message = result
            .as_ref()
            .map_or_else(ToString::to_string, |_| String::new());
        match result {
            Err(CheckError::Undecided { furthest, .. }) => {
                assert_eq!(furthest.map(|v| v.blocker), Some(bad));
                assert!(
                    message.contains(&format!("op #{bad} must come")),
                    "{message}"
                );
            }
            Err(CheckError::NotLinearizable(v)) => assert_eq!(v.blocker, bad),
            other => panic!("expected no linearization, got {other:?}"),
        }
    }

    fn campaign_sized(values: u64, unknown_percent: u64) -> Vec<Op> {
        let sim = Sim {
            clients: 8,
            ops_per_client: 625,
            keys: 1,
            values,
            unknown_percent,
        };
        simulate(&mut Rng::new(5000), &sim)
    }

    fn campaign_budget() -> Budget {
        Budget {
            steps_per_key: DEFAULT_STEPS_PER_KEY,
            time: Some(Duration::from_secs(20)),
        }
    }

    /// The history with its last-called answered get changed to read a value
    /// nobody wrote, and that get's index.
    fn with_bad_late_read(mut history: Vec<Op>) -> (Vec<Op>, usize) {
        let bad = (0..history.len())
            .filter(|&i| history[i].input == Input::Get && history[i].ret.is_some())
            .max_by_key(|&i| history[i].call)
            .unwrap();
        history[bad].output = Some(val("never written"));
        (history, bad)
    }
}
