//! Random histories of a real linearizable register, for the tests.
//!
//! Clients issue ops back to back; each op gets a linearization point inside
//! its [call, ret] interval and the ops are applied to the model in point order,
//! which gives every answer. The history is therefore linearizable by
//! construction. An op marked unknown hides its return and answer; half of them
//! took effect (at a point up to three durations after the call, possibly after
//! the client gave up), half never did.
//!
//! For cross-checking the search itself, [`random_small`] and
//! [`nearly_linearizable`] make short histories, linearizable or not, and
//! [`brute_force`] decides them by trying every order.

use std::collections::HashMap;

use crate::bits::mix64;
use crate::history::Op;
use crate::model::{apply, Input, Output};

/// A small deterministic generator (SplitMix64).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix64(self.0)
    }

    /// Uniform in `0..n` (the modulo bias is irrelevant at these sizes).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// The shape of a simulated run.
pub(crate) struct Sim {
    pub(crate) clients: u64,
    pub(crate) ops_per_client: usize,
    pub(crate) keys: u64,
    /// Distinct values written; few values make CAS succeed and reads
    /// ambiguous. 0: every value is new, as a campaign's writes should be.
    pub(crate) values: u64,
    pub(crate) unknown_percent: u64,
}

pub(crate) fn simulate(rng: &mut Rng, sim: &Sim) -> Vec<Op> {
    let mut ops = Vec::new();
    // Linearization point of each op that took effect.
    let mut points = Vec::new();
    for client in 0..sim.clients {
        let mut t = rng.below(100);
        for _ in 0..sim.ops_per_client {
            let key = format!("/k{}", rng.below(sim.keys));
            let input = random_input(rng, sim.values);
            let duration = 1 + rng.below(1000);
            let point = if rng.percent(sim.unknown_percent) {
                ops.push(Op::unknown(client, key, t, input));
                rng.percent(50).then(|| t + rng.below(3 * duration + 1))
            } else {
                ops.push(Op::returned(
                    client,
                    key,
                    t,
                    t + duration,
                    input,
                    Output::Ok,
                ));
                Some(t + rng.below(duration + 1))
            };
            if let Some(point) = point {
                points.push((point, ops.len() - 1));
            }
            t += duration + rng.below(200);
        }
    }
    points.sort_unstable();
    let mut registers: HashMap<String, Option<String>> = HashMap::new();
    for (_, i) in points {
        let op = &mut ops[i];
        let register = registers.entry(op.key.clone()).or_default();
        let (after, output) = apply(register, &op.input);
        *register = after;
        if op.ret.is_some() {
            op.output = Some(output);
        }
    }
    ops
}

fn random_input(rng: &mut Rng, values: u64) -> Input {
    let mut value = || match values {
        0 => format!("u{:x}", rng.next_u64()),
        n => format!("v{}", rng.below(n)),
    };
    let (a, b) = (value(), value());
    match rng.below(20) {
        0..=6 => Input::Get,
        7..=9 => Input::Set { value: a },
        10..=11 => Input::Create { value: a },
        12..=13 => Input::Update { value: a },
        14..=16 => Input::Cas { prev: a, value: b },
        17 => Input::Delete,
        _ => Input::Cad { prev: a },
    }
}

/// A history of up to seven ops on one key with random intervals, inputs over
/// two values, and random answers each input can give; a quarter of the ops
/// have an unknown outcome. Most are not linearizable.
pub(crate) fn random_small(rng: &mut Rng) -> Vec<Op> {
    let len = 1 + rng.below(7);
    (0..len)
        .map(|client| {
            let call = rng.below(20);
            let input = random_input(rng, 2);
            if rng.percent(25) {
                return Op::unknown(client, "/k", call, input);
            }
            let output = random_output(rng, &input);
            Op::returned(client, "/k", call, call + rng.below(10), input, output)
        })
        .collect()
}

/// A simulated run of three clients doing three ops each on one key, many of
/// them with unknown outcomes; in half of them one answer is replaced by a
/// random one. These are the histories where the search's shortcuts matter.
pub(crate) fn nearly_linearizable(rng: &mut Rng) -> Vec<Op> {
    let sim = Sim {
        clients: 3,
        ops_per_client: 3,
        keys: 1,
        values: 2,
        unknown_percent: 40,
    };
    let mut history = simulate(rng, &sim);
    let i = rng.below(history.len() as u64) as usize;
    if rng.percent(50) && history[i].ret.is_some() {
        history[i].output = Some(random_output(rng, &history[i].input));
    }
    history
}

/// An answer `input` can give, over the values `v0` and `v1`.
fn random_output(rng: &mut Rng, input: &Input) -> Output {
    let outputs: Vec<Output> = [
        Output::Value("v0".to_string()),
        Output::Value("v1".to_string()),
        Output::Ok,
        Output::NotFound,
        Output::Exists,
        Output::Failed,
    ]
    .into_iter()
    .filter(|o| input.can_return(o))
    .collect();
    outputs[rng.below(outputs.len() as u64) as usize].clone()
}

/// Whether one key's ops are linearizable, by trying every order that respects
/// real time (an op that returned before another was called goes first) and
/// every choice of unknown ops to leave out: the reference the search is
/// checked against.
pub(crate) fn brute_force(ops: &[Op]) -> bool {
    fn extend(ops: &[Op], placed: &mut [bool], state: &Option<String>) -> bool {
        if (0..ops.len()).all(|i| placed[i] || ops[i].ret.is_none()) {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            let must_wait =
                (0..ops.len()).any(|j| !placed[j] && ops[j].ret.is_some_and(|r| r < ops[i].call));
            let (after, output) = apply(state, &ops[i].input);
            if must_wait || ops[i].output.as_ref().is_some_and(|o| *o != output) {
                continue;
            }
            placed[i] = true;
            if extend(ops, placed, &after) {
                return true;
            }
            placed[i] = false;
        }
        false
    }
    extend(ops, &mut vec![false; ops.len()], &None)
}
