//! Any input, valid or not, gets a report: no panic, no hang, bounded
//! memory (the limits of keel_config::yaml), and an accepted report never
//! carries errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let r = keel_config::validate(text);
        assert_eq!(r.accepted(), r.errors.is_empty());
        // The same text with the header the validator requires, so the
        // fuzzer reaches the YAML walk too.
        let r = keel_config::validate(&format!("#cloud-config\n{text}"));
        assert_eq!(r.accepted(), r.errors.is_empty());
    }
});
