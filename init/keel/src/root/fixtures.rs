//! Slot tables for the root's unit tests.

use keel_boot::root::{Found, Slot, Source};
use keel_slot::gpt::{Gpt, Guid};
use keel_slot::state::SlotState;

pub fn st(priority: u8, tries: u8, successful: bool) -> SlotState {
    SlotState::new(priority, tries, successful)
}

/// /dev/vda with these slots in table order (vda1, vda2, ...) and, when
/// given, STATE as partition `state`.
pub fn disk_with_state(slots: &[(&str, SlotState)], state: Option<usize>) -> Found {
    let sectors = 20_000;
    Found {
        source: Source::Disk {
            disk: "/dev/vda".into(),
            sectors,
            gpt: Gpt::new(Guid::derived(b"disk"), sectors).expect("an empty GPT"),
            state: state.map(|n| (n, format!("/dev/vda{n}").into())),
        },
        slots: slots
            .iter()
            .enumerate()
            .map(|(i, (name, st))| Slot {
                name: (*name).into(),
                path: format!("/dev/vda{}", i + 1).into(),
                number: Some(i + 1),
                state: Some(*st),
            })
            .collect(),
    }
}

/// /dev/vda with these slots and no STATE.
pub fn disk(slots: &[(&str, SlotState)]) -> Found {
    disk_with_state(slots, None)
}

/// The slot a diskless initramfs carries.
pub fn diskless() -> Found {
    Found {
        source: Source::Diskless,
        slots: vec![Slot {
            name: "diskless".into(),
            path: "/keel/root.slot".into(),
            number: None,
            state: None,
        }],
    }
}
