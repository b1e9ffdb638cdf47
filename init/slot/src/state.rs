//! The A/B slot state: a value type over the GPT attribute bits of a slot
//! partition (the ChromeOS layout), with pure transitions.
//!
//! Bits 48-51 priority (0-15), 52-55 tries left (0-15), 56 successful.
//! A slot is bootable when `(priority > 0 && tries > 0) || successful`. The
//! boot picks the bootable slot of highest priority (A before B on a tie),
//! takes one try from it *before* trusting it when it has not yet been
//! marked successful, and marks it successful after it stayed healthy for a
//! configured time. A slot that fails verification is marked bad (all
//! zero): it is never picked again until an update rewrites it. Every
//! transition returns a new value; writing it to the disk is the caller's
//! explicit step.

/// The state bits of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotState {
    pub priority: u8,
    pub tries: u8,
    pub successful: bool,
}

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_BIT: u64 = 1 << 56;
const MASK: u64 = (0xff << PRIORITY_SHIFT) | SUCCESSFUL_BIT;

impl SlotState {
    pub fn new(priority: u8, tries: u8, successful: bool) -> SlotState {
        SlotState {
            priority: priority.min(15),
            tries: tries.min(15),
            successful,
        }
    }

    /// Read the state from a partition's attribute bits.
    pub fn from_attributes(attributes: u64) -> SlotState {
        SlotState {
            priority: ((attributes >> PRIORITY_SHIFT) & 0xf) as u8,
            tries: ((attributes >> TRIES_SHIFT) & 0xf) as u8,
            successful: attributes & SUCCESSFUL_BIT != 0,
        }
    }

    /// Put the state into `attributes`, keeping every other bit.
    pub fn to_attributes(self, attributes: u64) -> u64 {
        (attributes & !MASK)
            | (u64::from(self.priority.min(15)) << PRIORITY_SHIFT)
            | (u64::from(self.tries.min(15)) << TRIES_SHIFT)
            | if self.successful { SUCCESSFUL_BIT } else { 0 }
    }

    pub fn bootable(self) -> bool {
        (self.priority > 0 && self.tries > 0) || self.successful
    }

    /// The state to write before booting this slot: one try fewer unless it
    /// is already known good.
    pub fn take_try(self) -> SlotState {
        if self.successful {
            self
        } else {
            SlotState {
                tries: self.tries.saturating_sub(1),
                ..self
            }
        }
    }

    /// After the slot stayed healthy: successful, no tries needed.
    pub fn mark_successful(self) -> SlotState {
        SlotState {
            successful: true,
            tries: 0,
            ..self
        }
    }

    /// After the slot failed verification: never picked again.
    pub fn mark_bad(self) -> SlotState {
        SlotState::default()
    }
}

/// The slot to boot among `slots` (in table order: A, then B): the bootable
/// one of highest priority, the earliest on a tie; `None` when none is
/// bootable.
pub fn choose(slots: &[SlotState]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, s) in slots.iter().enumerate() {
        if !s.bootable() {
            continue;
        }
        match best {
            Some(b) if slots[b].priority >= s.priority => {}
            _ => best = Some(i),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bits_round_trip_and_keep_the_rest() {
        let other = 0x8000_0000_0000_0001u64 | (1 << 60);
        let s = SlotState::new(15, 3, true);
        let a = s.to_attributes(other);
        assert_eq!(a & !MASK, other);
        assert_eq!(SlotState::from_attributes(a), s);
        assert_eq!(a >> 48 & 0x1ff, 0x13f);
    }

    #[test]
    fn transitions() {
        let s = SlotState::new(2, 1, false);
        assert!(s.bootable());
        let t = s.take_try();
        assert_eq!(t.tries, 0);
        assert!(
            !t.bootable(),
            "a slot that used its last try is not bootable"
        );
        assert!(t.mark_successful().bootable());
        assert_eq!(
            SlotState::new(2, 0, true).take_try(),
            SlotState::new(2, 0, true)
        );
        assert!(!SlotState::new(9, 9, true).mark_bad().bootable());
        assert!(!SlotState::new(0, 5, false).bootable());
    }

    #[test]
    fn ties_go_to_a() {
        let s = [SlotState::new(1, 3, false), SlotState::new(1, 3, false)];
        assert_eq!(choose(&s), Some(0));
        let s = [SlotState::new(1, 3, false), SlotState::new(2, 3, false)];
        assert_eq!(choose(&s), Some(1));
        assert_eq!(
            choose(&[SlotState::default(), SlotState::new(0, 0, false)]),
            None
        );
    }

    fn state() -> impl Strategy<Value = SlotState> {
        (0u8..16, 0u8..16, any::<bool>()).prop_map(|(p, t, s)| SlotState::new(p, t, s))
    }

    proptest! {
        /// Over both slots × priority × tries × successful: a bootable slot
        /// is chosen whenever one exists, an unbootable one never is, and no
        /// bootable slot has a higher priority than the chosen one.
        #[test]
        fn choice_is_sound(a in state(), b in state()) {
            let slots = [a, b];
            match choose(&slots) {
                Some(i) => {
                    prop_assert!(slots[i].bootable());
                    for s in slots.iter().filter(|s| s.bootable()) {
                        prop_assert!(s.priority <= slots[i].priority);
                    }
                }
                None => prop_assert!(!a.bootable() && !b.bootable()),
            }
        }

        /// Taking tries always ends: a slot that is never marked successful
        /// stops being bootable after at most 15 boots (no reboot loop).
        #[test]
        fn tries_run_out(s in state()) {
            let mut s = SlotState { successful: false, ..s };
            let mut boots = 0;
            while s.bootable() {
                s = s.take_try();
                boots += 1;
                prop_assert!(boots <= 15);
            }
        }

        #[test]
        fn attributes_round_trip(s in state(), other in any::<u64>()) {
            prop_assert_eq!(SlotState::from_attributes(s.to_attributes(other)), s);
        }
    }
}
