//! The Flow-Description (IPFilterRule) parser: any text in, a filter or a located error out.
//! A filter prints in its canonical form, and that form parses back to the same filter and
//! prints the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::policy::FlowDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<FlowDescription>() {
        Ok(flow) => {
            let canonical = flow.to_string();
            let again: FlowDescription = canonical
                .parse()
                .unwrap_or_else(|e| panic!("{canonical:?} does not parse back: {e}"));
            assert_eq!(again, flow, "{text:?} -> {canonical:?}");
            assert_eq!(again.to_string(), canonical);
        }
        Err(e) => {
            assert!(e.column >= 1 && e.column <= text.len() + 1, "{e:?}");
            let _ = e.to_string();
        }
    }
});
