//! The Wing–Gong/Lowe search over one key's history (steps 3–6 of the crate
//! docs). It is a pure function of the compiled operations and a budget; the
//! caller turns its answer into a report.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Instant;

use crate::bits::{is_subset, mix64, Bitset, PreHashed};
use crate::check::Exhausted;
use crate::model::{apply, Input, Output};

/// One operation with its values interned; operations are numbered in call order.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) call: u64,
    /// `None`: unknown outcome, returns at +infinity.
    pub(crate) ret: Option<u64>,
    pub(crate) input: Input<u32>,
    /// `None` exactly when `ret` is.
    pub(crate) output: Option<Output<u32>>,
}

/// When to give up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub(crate) steps: u64,
    pub(crate) deadline: Option<Instant>,
}

/// The deepest point the search reached before it ran out of options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadEnd {
    /// Operations in linearization order.
    pub(crate) prefix: Vec<usize>,
    /// The earliest-returning operation not in the prefix: it had to be placed
    /// before anything called after its return, and nothing let it.
    pub(crate) blocker: usize,
    /// Every operation that could have come next (called before the blocker
    /// returned and not placed); each was tried and failed.
    pub(crate) candidates: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Linearizable,
    NotLinearizable(DeadEnd),
    /// With the deepest dead end met so far, if any.
    OutOfBudget {
        limit: Exhausted,
        longest: usize,
        deepest: Option<DeadEnd>,
    },
}

/// How often the deadline is looked at: a clock read per step would cost more
/// than the step.
const DEADLINE_EVERY: u64 = 4096;

/// Where a scan of the candidates for the next placement stands: first the
/// answered ops' event list up to the first unplaced return, then the unknown
/// ops called by then.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// At this entry of the answered ops' event list.
    Known(usize),
    /// At this entry of the unknown ops' call list.
    Unknown(usize),
}

/// Searches for a linearization of `ops` starting from an absent key; returns
/// the outcome and the number of steps taken.
pub(crate) fn search(ops: &[Compiled], limit: &Limit) -> (Outcome, u64) {
    let mut search = Search::new(ops);
    let mut deepest: Option<DeadEnd> = None;
    let mut longest = 0;
    let mut steps = 0;
    let mut cursor = Cursor::Known(search.events.next[HEAD]);
    loop {
        if search.remaining == 0 {
            return (Outcome::Linearizable, steps);
        }
        steps += 1;
        if steps > limit.steps {
            let limit = Exhausted::Steps;
            let outcome = Outcome::OutOfBudget {
                limit,
                longest,
                deepest,
            };
            return (outcome, steps - 1);
        }
        if steps % DEADLINE_EVERY == 0 && limit.deadline.is_some_and(|d| Instant::now() >= d) {
            let limit = Exhausted::Time;
            let outcome = Outcome::OutOfBudget {
                limit,
                longest,
                deepest,
            };
            return (outcome, steps);
        }
        let entry = match cursor {
            Cursor::Known(e) if !search.events.is_call[e] => {
                search.bound = e;
                search.find_blocked();
                cursor = Cursor::Unknown(search.events.next[UHEAD]);
                continue;
            }
            Cursor::Unknown(e) if e == UTAIL || search.events.time[e] > search.bound_time() => {
                // Step 6: the op returning at `bound` is unplaced and every
                // candidate to go before it failed: undo the last choice.
                if deepest
                    .as_ref()
                    .is_none_or(|d| search.stack.len() > d.prefix.len())
                {
                    deepest = Some(DeadEnd {
                        prefix: search.stack.iter().map(|&(op, _)| op).collect(),
                        blocker: search.events.op[search.bound],
                        candidates: search.events.candidates(search.bound),
                    });
                }
                let Some(last) = search.undo() else {
                    let dead_end = deepest.expect("a dead end was just recorded");
                    return (Outcome::NotLinearizable(dead_end), steps);
                };
                // The candidates before `last` were tried in this state already.
                let after = search.events.next[search.events.call_entry[last]];
                cursor = if ops[last].ret.is_some() {
                    Cursor::Known(after)
                } else {
                    search.find_blocked();
                    Cursor::Unknown(after)
                };
                continue;
            }
            Cursor::Known(e) | Cursor::Unknown(e) => e,
        };
        let op = search.events.op[entry];
        cursor = match cursor {
            Cursor::Known(_) => Cursor::Known(search.events.next[entry]),
            Cursor::Unknown(_) => Cursor::Unknown(search.events.next[entry]),
        };
        // Step 4: try `op` as the next linearization point.
        if search.try_place(op) {
            longest = longest.max(search.stack.len());
            cursor = Cursor::Known(search.events.next[HEAD]);
        }
    }
}

/// The search's state between steps.
struct Search<'a> {
    ops: &'a [Compiled],
    events: Events,
    /// Each op's bit in `known` or `unknown`.
    slot: Vec<usize>,
    /// The answered ops placed.
    known: Bitset,
    /// The unknown-outcome ops placed.
    unknown: Bitset,
    memo: Memo,
    state: Option<u32>,
    /// (op, register before it) for every placed op, in linearization order.
    stack: Vec<(usize, Option<u32>)>,
    /// Answered ops not yet placed; unknown ones never have to be (step 5 of
    /// the crate docs).
    remaining: usize,
    /// What the unplaced unknown ops could react to.
    watchers: Watchers,
    /// The first unplaced return event, found at the end of each scan of the
    /// answered ops: unknown ops called after it are not candidates yet.
    /// Placing an unknown op leaves the event list alone, so after undoing one
    /// this is still right.
    bound: usize,
    /// The answered candidates that do not fit the register as it is, when the
    /// last op placed is an answered one: what an unknown op placed now would
    /// have to explain.
    blocked: Vec<usize>,
    classes: Classes,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Compiled]) -> Search<'a> {
        let mut slot = Vec::with_capacity(ops.len());
        let (mut known_count, mut unknown_count) = (0, 0);
        for op in ops {
            let counter = if op.ret.is_some() {
                &mut known_count
            } else {
                &mut unknown_count
            };
            slot.push(*counter);
            *counter += 1;
        }
        let mut watchers = Watchers::default();
        for op in ops.iter().filter(|op| op.ret.is_none()) {
            watchers.count(&op.input, 1);
        }
        Search {
            ops,
            events: Events::new(ops),
            slot,
            known: Bitset::new(known_count),
            unknown: Bitset::new(unknown_count),
            memo: Memo::default(),
            state: None,
            stack: Vec::new(),
            remaining: known_count,
            watchers,
            bound: TAIL,
            blocked: Vec::new(),
            classes: Classes::new(ops),
        }
    }

    /// Whether the answered op `op` gives its recorded answer in `state`.
    fn fits(&self, op: usize, state: &Option<u32>) -> bool {
        self.ops[op].output.as_ref() == Some(&apply(state, &self.ops[op].input).1)
    }

    fn bound_time(&self) -> u64 {
        self.events.time[self.bound]
    }

    fn find_blocked(&mut self) {
        self.blocked.clear();
        let mut e = self.events.next[HEAD];
        while e != self.bound {
            let op = self.events.op[e];
            if !self.fits(op, &self.state) {
                self.blocked.push(op);
            }
            e = self.events.next[e];
        }
    }

    /// When the last ops placed are unknown ones: the register before the last
    /// of them, and before the first of them.
    fn chain(&self) -> Option<(Option<u32>, Option<u32>)> {
        let is_unknown = |&(op, _): &(usize, Option<u32>)| self.ops[op].ret.is_none();
        let &(_, before_last) = self.stack.last().filter(|top| is_unknown(top))?;
        let run = self.stack.iter().rev().take_while(|top| is_unknown(top));
        let (_, before_first) = run.last().expect("the run holds the last op");
        Some((before_last, *before_first))
    }

    /// Places `op` as the next linearization point if that can lead anywhere
    /// new; returns whether it did.
    ///
    /// Unknown ops are only ever placed in chains that end with an answered op
    /// that needs them, which is what keeps a few dozen ever-pending unknown ops
    /// from multiplying the search. Any linearization can be rewritten into one
    /// of that shape without becoming longer: an unknown op whose effect the
    /// next op does not look at can be left out (the next op overwrites it or
    /// does the same either way) or moved after that op (the next op changes
    /// nothing either way); an answered op that fits before its chain can go
    /// before it. So, with `s0` the register before a chain and `p` before its
    /// last unknown op:
    /// - an answered op may end a chain only if it fits neither in `s0` nor `p`;
    /// - an unknown op may extend a chain only if it changes the register and
    ///   its effect depends on the last one's;
    /// - an unknown op may start a chain only if it makes a blocked answered
    ///   candidate fit, or some unplaced unknown op could react to it;
    /// - of unknown ops with the same input, only the earliest called unplaced
    ///   one is tried: all of them are candidates from then on and do the same,
    ///   so any linearization using a later one works with it swapped for the
    ///   earlier;
    /// - an unknown op is not tried while a weaker candidate would do the same
    ///   now (a create, update or cas for a set; a cad for a delete): the
    ///   stronger one left unplaced can do anything the weaker one could have
    ///   done later.
    ///
    /// With unread values made one (see `check`), the last two are what keep
    /// writes that timed out and never took effect from each doubling the
    /// search.
    ///
    /// Configurations in the middle of a chain depend on the chain, not just on
    /// the ops placed and the register, so only the ones after an answered op
    /// go through the memo. The test `agrees_with_brute_force_on_small_histories`
    /// holds all of this to trying every order.
    fn try_place(&mut self, op: usize) -> bool {
        let is_known = self.ops[op].ret.is_some();
        if !is_known && (!self.classes.is_next(op) || self.weaker_candidate(op)) {
            return false;
        }
        let (after, output) = apply(&self.state, &self.ops[op].input);
        let useful = match (is_known, self.chain()) {
            (true, None) => self.ops[op].output.as_ref() == Some(&output),
            (true, Some((p, s0))) => {
                self.ops[op].output.as_ref() == Some(&output)
                    && !self.fits(op, &p)
                    && !self.fits(op, &s0)
            }
            (false, None) => {
                after != self.state
                    && (self.blocked.iter().any(|&k| self.fits(k, &after))
                        || self.watchers.react(self.state, after))
            }
            (false, Some((p, _))) => {
                after != self.state && after != apply(&p, &self.ops[op].input).0
            }
        };
        if !useful {
            return false;
        }
        let bits = if is_known {
            &mut self.known
        } else {
            &mut self.unknown
        };
        bits.flip(self.slot[op]);
        if is_known && !self.memo.visit(&self.known, &self.unknown, after) {
            self.known.flip(self.slot[op]);
            return false;
        }
        if !is_known {
            self.watchers.count(&self.ops[op].input, -1);
            self.classes.placed[self.classes.of[op]] += 1;
        }
        self.stack.push((op, self.state));
        self.state = after;
        self.events.lift(op);
        self.remaining -= usize::from(is_known);
        true
    }

    /// Undoes the last placement; returns its op, `None` when nothing is placed.
    fn undo(&mut self) -> Option<usize> {
        let (op, before) = self.stack.pop()?;
        self.events.unlift(op);
        if self.ops[op].ret.is_some() {
            self.known.flip(self.slot[op]);
            self.remaining += 1;
        } else {
            self.unknown.flip(self.slot[op]);
            self.watchers.count(&self.ops[op].input, 1);
            self.classes.placed[self.classes.of[op]] -= 1;
        }
        self.state = before;
        Some(op)
    }

    /// Whether an unplaced unknown candidate that can do less than `op` would
    /// change the register the same way now.
    fn weaker_candidate(&self, op: usize) -> bool {
        let weaker = match (&self.ops[op].input, self.state) {
            (&Input::Set { value }, None) => [Some(Input::Create { value }), None],
            (&Input::Set { value }, Some(prev)) => [
                Some(Input::Update { value }),
                Some(Input::Cas { prev, value }),
            ],
            (&Input::Update { value }, Some(prev)) => [Some(Input::Cas { prev, value }), None],
            (Input::Delete, Some(prev)) => [Some(Input::Cad { prev }), None],
            _ => [None, None],
        };
        weaker.iter().flatten().any(|input| {
            self.classes
                .next_of(input)
                .is_some_and(|other| self.ops[other].call <= self.bound_time())
        })
    }
}

/// Unknown ops grouped by input. The search places the ops of a group in call
/// order, so the placed ones are always the first `placed` of them.
struct Classes {
    /// Each unknown op's group (unused for answered ops).
    of: Vec<usize>,
    by_input: HashMap<Input<u32>, usize>,
    /// Each group's ops in call order.
    ops: Vec<Vec<usize>>,
    placed: Vec<usize>,
}

impl Classes {
    fn new(ops: &[Compiled]) -> Classes {
        let mut classes = Classes {
            of: vec![usize::MAX; ops.len()],
            by_input: HashMap::new(),
            ops: Vec::new(),
            placed: Vec::new(),
        };
        for (i, op) in ops.iter().enumerate().filter(|(_, op)| op.ret.is_none()) {
            let next = classes.ops.len();
            let class = *classes.by_input.entry(op.input.clone()).or_insert(next);
            if class == next {
                classes.ops.push(Vec::new());
                classes.placed.push(0);
            }
            classes.ops[class].push(i);
            classes.of[i] = class;
        }
        classes
    }

    /// The first unplaced op of the group with this input.
    fn next_of(&self, input: &Input<u32>) -> Option<usize> {
        let class = *self.by_input.get(input)?;
        self.ops[class].get(self.placed[class]).copied()
    }

    /// Whether `op` is the first unplaced op of its group.
    fn is_next(&self, op: usize) -> bool {
        let class = self.of[op];
        self.ops[class].get(self.placed[class]) == Some(&op)
    }
}

/// How many unplaced unknown ops could react to a change of the register: a
/// create to it becoming absent, an update to it becoming present, a cas or
/// cad to it becoming their `prev`. Sets and deletes never react: they do the
/// same whatever the register holds.
#[derive(Debug, Default)]
struct Watchers {
    creates: usize,
    updates: usize,
    /// By value id.
    prevs: Vec<usize>,
}

impl Watchers {
    fn count(&mut self, input: &Input<u32>, delta: isize) {
        let slot = match input {
            Input::Create { .. } => &mut self.creates,
            Input::Update { .. } => &mut self.updates,
            Input::Cas { prev, .. } | Input::Cad { prev } => {
                let i = *prev as usize;
                if self.prevs.len() <= i {
                    self.prevs.resize(i + 1, 0);
                }
                &mut self.prevs[i]
            }
            Input::Get | Input::Set { .. } | Input::Delete => return,
        };
        *slot = slot
            .checked_add_signed(delta)
            .expect("counts stay in range");
    }

    /// Whether some counted op could act differently after the register went
    /// from `before` to `after`.
    fn react(&self, before: Option<u32>, after: Option<u32>) -> bool {
        let prev = |v: u32| self.prevs.get(v as usize).is_some_and(|&n| n > 0);
        match (before, after) {
            (None, Some(v)) => self.updates > 0 || prev(v),
            (Some(_), None) => self.creates > 0,
            (Some(_), Some(v)) => prev(v),
            (None, None) => false,
        }
    }
}

/// The answered ops' list runs from `HEAD` to `TAIL`, the unknown ops' from
/// `UHEAD` to `UTAIL`; events proper start at `FIRST`.
const HEAD: usize = 0;
const TAIL: usize = 1;
const UHEAD: usize = 2;
const UTAIL: usize = 3;
const FIRST: usize = 4;

/// The events as two doubly linked lists (step 3): the call and return events
/// of answered ops in time order, and the calls of unknown ops in time order.
/// An unknown op returns at +infinity, after every other return, so it needs no
/// return event; keeping its call apart lets the scan try it after the
/// answered ops. Placing an op unlinks its events; undoing relinks them in
/// O(1) because undos happen in the reverse order of placements (dancing
/// links).
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    op: Vec<usize>,
    is_call: Vec<bool>,
    time: Vec<u64>,
    call_entry: Vec<usize>,
    /// `None` for unknown-outcome ops.
    ret_entry: Vec<Option<usize>>,
}

impl Events {
    fn new(ops: &[Compiled]) -> Events {
        // (time, is_return, op): at equal times calls sort first, so an op that
        // returns at the instant another is called counts as concurrent with
        // it; that can only accept more histories, never flag a correct one.
        let mut known: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        let mut unknown: Vec<(u64, bool, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op.ret {
                Some(ret) => known.extend([(op.call, false, i), (ret, true, i)]),
                None => unknown.push((op.call, false, i)),
            }
        }
        known.sort_unstable();
        unknown.sort_unstable();
        let len = FIRST + known.len() + unknown.len();
        let mut events = Events {
            next: vec![0; len],
            prev: vec![0; len],
            op: vec![usize::MAX; len],
            is_call: vec![false; len],
            // The unknown list's scan stops at the tail; the answered list's
            // tail is never reached while an answered op is unplaced.
            time: vec![u64::MAX; len],
            call_entry: vec![0; ops.len()],
            ret_entry: vec![None; ops.len()],
        };
        let mut entry = FIRST;
        for (head, tail, order) in [(HEAD, TAIL, &known), (UHEAD, UTAIL, &unknown)] {
            let mut last = head;
            for &(time, is_return, op) in order {
                events.op[entry] = op;
                events.is_call[entry] = !is_return;
                events.time[entry] = time;
                if is_return {
                    events.ret_entry[op] = Some(entry);
                } else {
                    events.call_entry[op] = entry;
                }
                events.next[last] = entry;
                events.prev[entry] = last;
                last = entry;
                entry += 1;
            }
            events.next[last] = tail;
            events.prev[tail] = last;
        }
        events
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_entry[op]);
        if let Some(ret) = self.ret_entry[op] {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(ret) = self.ret_entry[op] {
            self.relink(ret);
        }
        self.relink(self.call_entry[op]);
    }

    /// The unplaced ops that may come next when `bound` is the first unplaced
    /// return: answered ops whose call is linked before it, then unknown ops
    /// called by then.
    fn candidates(&self, bound: usize) -> Vec<usize> {
        let mut ops = Vec::new();
        let mut e = self.next[HEAD];
        while e != bound {
            ops.push(self.op[e]);
            e = self.next[e];
        }
        e = self.next[UHEAD];
        while e != UTAIL && self.time[e] <= self.time[bound] {
            ops.push(self.op[e]);
            e = self.next[e];
        }
        ops
    }
}

/// A configuration the search has explored (or is exploring).
struct Seen {
    state: Option<u32>,
    /// The answered ops placed, as [`Bitset::compact`].
    full: usize,
    known: Box<[u64]>,
    /// The unknown-outcome ops placed.
    unknown: Box<[u64]>,
}

/// The memo of configurations (placed ops, register) already explored.
#[derive(Default)]
struct Memo {
    seen: HashMap<u64, Vec<Seen>, BuildHasherDefault<PreHashed>>,
}

impl Memo {
    /// Records a configuration and says whether it is worth exploring: not when
    /// one with the same answered ops and register but a subset of its unknown
    /// ops was seen. That one can do everything this one can (an unknown op it
    /// has not placed may still be placed, or never), so if it leads to a
    /// linearization the search finds it there. With no unknown ops this is
    /// Lowe's plain "seen (bitset, state)" cache.
    fn visit(&mut self, known: &Bitset, unknown: &Bitset, state: Option<u32>) -> bool {
        let hash = known.hash() ^ mix64(state.map_or(0, |v| u64::from(v) + 1) ^ (1 << 63));
        let (full, words) = known.compact();
        let same = |s: &Seen| s.state == state && s.full == full && *s.known == *words;
        let bucket = self.seen.entry(hash).or_default();
        if bucket
            .iter()
            .any(|s| same(s) && is_subset(&s.unknown, unknown.words()))
        {
            return false;
        }
        // This one now dominates any seen superset of it: drop those.
        bucket.retain(|s| !(same(s) && is_subset(unknown.words(), &s.unknown)));
        bucket.push(Seen {
            state,
            full,
            known: words.into(),
            unknown: unknown.words().into(),
        });
        true
    }
}
