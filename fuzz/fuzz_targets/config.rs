//! The configuration reader: any text in, a configuration or located errors out, never a panic.
//! A configuration it accepts compiles into a policy snapshot, and recompiles as a reload of
//! itself; the `[dataplane]` reader takes the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::dataplane::DataplaneConfig;
use weir::policy::{Config, PolicySnapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, "fuzz.toml") {
        Ok(config) => {
            let snapshot = PolicySnapshot::build(&config, 1);
            let _ = PolicySnapshot::rebuild(&config, 2, &snapshot);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a message");
            let lines = text.lines().count().max(1);
            for e in &errors.0 {
                assert!(e.line >= 1 && e.line <= lines + 1, "{e:?} in {lines} lines");
                assert!(e.column >= 1, "{e:?}");
            }
        }
    }
    if let Err(e) = DataplaneConfig::from_toml_str(text, "fuzz.toml") {
        let _ = e.to_string();
    }
});
